"""Terminal progress and report files for the command line (rich, JSON, LaTeX, HTML, PNG)."""

from __future__ import annotations

import os
import re
import shutil
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import pandas as pd
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from blpdemand.cli.figures import FigureWorker
from blpdemand.errors import SpecificationError
from blpdemand.results.figures import render
from blpdemand.results.io import save_results
from blpdemand.results.tables import Table
from blpdemand.solve.jobs import run_jobs
from blpdemand.solve.progress import EvaluationRecord

if TYPE_CHECKING:
    from blpdemand.cli import Interrupts

T = TypeVar("T")

_HEADER = (f"{'step':>4} {'start':>5} {'eval':>5} {'iter':>5} {'time':>8} {'c.iter':>7} "
           f"{'c.eval':>7} {'objective':>14} {'|gradient|':>11}  theta")


class RichReporter:
    """One row per objective evaluation: step, start, evaluation, optimizer iteration, time,
    contraction iterations and evaluations, objective, gradient inf-norm and theta."""

    def __init__(self, console: Console, *, max_theta: int = 5, quiet: bool = False,
                 checkpoint: Callable[[], None] | None = None) -> None:
        self.console = console
        self.checkpoint = checkpoint  # raises on an interrupt that library code swallowed
        self.max_theta = max_theta
        self.quiet = quiet
        self._last: tuple[int, int] | None = None
        self.records: list[EvaluationRecord] = []

    def on_evaluation(self, record: EvaluationRecord) -> None:
        if self.checkpoint is not None:
            self.checkpoint()
        self.records.append(record)
        if self.quiet:
            return
        key = (record.step, record.start)
        if key != self._last:
            self.console.print(_HEADER, style="bold", highlight=False, soft_wrap=True)
            self._last = key
        theta = np.asarray(record.theta, dtype=np.float64).ravel()
        shown = " ".join(f"{v:+.4g}" for v in theta[: self.max_theta])
        if theta.size > self.max_theta:
            shown += f" ... ({theta.size})"
        self.console.print(
            f"{record.step:>4} {record.start:>5} {record.evaluation:>5} {record.iteration:>5} "
            f"{record.time:>7.2f}s {record.contraction_iterations:>7} "
            f"{record.contraction_evaluations:>7} {record.objective:>14.8g} "
            f"{record.gradient_norm:>11.4e}  {shown}", highlight=False, soft_wrap=True)


def progress_runner(console: Console, description: str = "starts", *, workers: int = 1,
                    checkpoint: Callable[[], None] | None = None
                    ) -> Callable[[Sequence[Callable[[], T]]], list[T]]:
    """A job runner (the estimator's ``runner`` seam) that shows a progress bar over jobs.

    ``workers > 1`` runs the jobs on that many threads (``run_jobs``); the bar advances as
    each one finishes (rich's progress is thread-safe). ``checkpoint`` runs before each job.
    """

    def run(jobs: Sequence[Callable[[], T]]) -> list[T]:
        if checkpoint is not None:
            jobs = [_after(checkpoint, job) for job in jobs]
        if len(jobs) <= 1:
            return [job() for job in jobs]
        columns = (TextColumn(f"[bold]{description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn())
        with Progress(*columns, console=console, transient=False) as bar:
            task = bar.add_task(description, total=len(jobs))

            def tracked(job: Callable[[], T]) -> Callable[[], T]:
                def call() -> T:
                    value = job()
                    bar.advance(task)
                    return value
                return call

            return run_jobs([tracked(job) for job in jobs], workers=workers)

    return run


def _after(checkpoint: Callable[[], None], job: Callable[[], T]) -> Callable[[], T]:
    def call() -> T:
        checkpoint()
        return job()
    return call


class Report:
    """Collects tables and plots of one run, shows them, and writes them to a folder."""

    def __init__(self, console: Console, directory: Path | None, *, latex: bool = True,
                 html: bool = True, plots: bool = True, json: bool = True,
                 checkpoint: Callable[[], None] | None = None) -> None:
        self.console = console
        self.checkpoint = checkpoint if checkpoint is not None else _nothing
        self.directory = directory
        self.latex, self.html, self.plots, self.json = latex, html, plots, json
        self.tables: dict[str, Table] = {}
        self.written: list[Path] = []
        self.started = time.perf_counter()
        self._deferred: list[Table] | None = None
        self._figures: FigureWorker | None = None

    def table(self, name: str, table: Table, *, show: Table | bool = True,
              files: Table | None = None) -> None:
        """Keep a table for the JSON, write its LaTeX and HTML files (of ``files``, a readable
        cut of it, when given), and show it (or ``show``, a shorter version of it) in the
        terminal."""
        self.checkpoint()
        self.tables[name] = table
        if show is not False:
            shown = table if show is True else show
            if self._deferred is None:
                self.console.print(shown)
            else:
                self._deferred.append(shown)
        if self.directory is None:
            return
        written = table if files is None else files
        if self.latex:
            self._write(f"{name}.tex", written.to_latex(label=f"tab:{name}") + "\n")
        if self.html:
            self._write(f"{name}.html", written.to_html() + "\n")

    def data(self, name: str, frame: pd.DataFrame) -> str | None:
        """Write ``frame`` in full as ``{name}.csv``, and ``{name}.parquet`` when pyarrow is
        importable; returns the CSV's file name (None when no folder is written)."""
        self.checkpoint()
        if self.directory is None:
            return None
        csv = file_name(f"{name}.csv")
        path = self._folder() / csv
        frame.to_csv(path)  # floats as repr: read back, the same doubles
        self.written.append(path)
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            return csv
        columns = frame.copy()  # Parquet needs string column names and one type per index
        columns.columns = pd.Index([str(c) for c in frame.columns], name=frame.columns.name)
        if columns.index.dtype == object:
            columns.index = columns.index.astype(str)
        parquet = self._folder() / file_name(f"{name}.parquet")
        columns.to_parquet(parquet)
        self.written.append(parquet)
        return csv

    @contextmanager
    def deferred(self) -> Iterator[None]:
        """Hold tables back (e.g. while a progress bar runs) and show them on exit."""
        self._deferred = []
        try:
            yield
        finally:
            held, self._deferred = self._deferred, None
            for table in held:
                self.console.print(table)

    def figure(self, name: str, draw: Callable[[Any], Any], *, panels: int = 1) -> None:
        """Draw onto fresh matplotlib axes with ``draw(ax)`` and save ``{name}.png``;
        ``panels > 1`` passes a list of that many axes (three to a row). The figure is drawn
        beside the run when ``prepare_figures`` started a figure process (``cli.figures``;
        ``wait_figures`` collects it), else here."""
        self.checkpoint()
        if self.directory is None or not self.plots:
            return
        path = self._folder() / file_name(f"{name}.png")
        if self._figures is not None:  # a figure process was started (prepare_figures)
            self._figures.draw(path, draw, panels)
        else:
            for category, message in render(path, draw, panels):
                warnings.warn(message, category, stacklevel=2)
        self.written.append(path)
        self.checkpoint()  # matplotlib's weakref callbacks may have swallowed an interrupt

    def prepare_figures(self) -> FigureWorker:
        """The processes that draw this report's figures, started now (so that loading
        matplotlib overlaps what runs before the first figure)."""
        if self._figures is None:
            self._figures = FigureWorker()
        return self._figures

    def wait_figures(self) -> None:
        """Every figure sent is drawn and saved (its warnings replayed here)."""
        if self._figures is not None:
            self._figures.wait(self.checkpoint)

    def close(self, *, abort: bool = False) -> None:
        """Stop the figure process, at once with ``abort`` (no figure is written into the
        folder after this returns)."""
        if self._figures is not None:
            self._figures.close(abort=abort)
            self._figures = None

    def save(self, results: Any, *, spec: Mapping[str, Any],
             post_estimation: Mapping[str, Any]) -> Path | None:
        """Write ``results.json`` with every table shown."""
        if self.directory is None or not self.json:
            return None
        tables = {k: v for k, v in self.tables.items() if k != "summary"}
        path = self._folder() / "results.json"
        partial = path.with_name(f".results.json.{os.getpid()}.tmp")  # whole file, or none
        try:
            save_results(results, partial, spec=spec, tables=tables,
                         post_estimation=post_estimation)
            os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)
        self.written.append(path)
        return path

    def finish(self, location: Path | None = None) -> None:
        """Say how many files were written where (``location``: the folder they now lie in)."""
        elapsed = time.perf_counter() - self.started
        if self.written:
            self.console.print(f"wrote {len(self.written)} files to "
                               f"{location if location is not None else self.directory} "
                               f"in {elapsed:.1f}s", highlight=False)

    def _folder(self) -> Path:
        """The output folder, created on first use (a failed run leaves no empty folder)."""
        assert self.directory is not None
        self.directory.mkdir(parents=True, exist_ok=True)
        return self.directory

    def _write(self, name: str, text: str) -> None:
        assert self.directory is not None
        path = self._folder() / file_name(name)
        path.write_text(text, encoding="utf-8")
        self.written.append(path)


def head_rows(table: Table, rows: int) -> Table:
    """The first ``rows`` rows and the last (e.g. 'all markets') of a long table, for the
    terminal."""
    body = table.body
    if len(body) <= rows + 1:
        return table
    short = pd.concat([body.iloc[:rows], body.iloc[[-1]]])
    notes = (*table.notes, f"{len(body) - rows - 1} rows not shown; all rows in the files")
    return Table(title=table.title, body=short, notes=notes, digits=table.digits)


def _nothing() -> None:
    pass


def file_name(name: str) -> str:
    """A table or plot name as one file name in the output folder: characters other than
    letters, digits, '.', '-' and '_' (a market id such as "2020/01" or "NY 1") become '_'."""
    return re.sub(r"[^\w.-]", "_", name)


WRITTEN = (".json", ".tex", ".html", ".png")  # what a run writes: a folder of only these is ours
# ... and the full matrices (Report.data): by name only, so a folder of the user's data is never
# taken for an output folder and replaced
WRITTEN_DATA = re.compile(r"(elasticities|diversion|passthrough)_market_[\w.-]*\.(csv|parquet)")


def written_by_a_run(path: Path) -> bool:
    """Whether ``path`` is a file a run writes (by its suffix; data files by their name)."""
    return path.is_file() and (path.suffix.lower() in WRITTEN
                               or WRITTEN_DATA.fullmatch(path.name) is not None)


class OutputFolder:
    """A run's output folder, replaced as a whole at the end of the run.

    Files go to a sibling staging folder ``<name>.partial-<pid>``; ``commit`` moves a previous
    folder aside, moves the staging folder in and deletes the previous one, so a failed or
    interrupted run leaves the previous folder as it was, and a finished one leaves no stale
    file of an earlier run beside its own. ``discard`` deletes the staging folder (and the
    parent folders ``open`` created)."""

    def __init__(self, target: Path) -> None:
        self.shown = target
        self.target = Path(os.path.abspath(target.expanduser()))
        self.staging = self.target.with_name(f"{self.target.name}.partial-{os.getpid()}")
        self._created: list[Path] = []

    def check(self) -> None:
        """Raise SpecificationError unless the folder can be written and replaced."""
        where = f"output folder '{self.shown}'"
        if self.target.exists() and not self.target.is_dir():
            raise SpecificationError(f"{where} is a file, not a folder; choose another --output")
        for parent in self.target.parents:
            if parent.exists():
                if not parent.is_dir():
                    raise SpecificationError(f"{where} lies under '{parent}', which is a file, "
                                             f"not a folder; choose another --output")
                break
        here = Path.cwd().resolve()
        if self.target.resolve() in (here, *here.parents):
            raise SpecificationError(f"{where} holds the current directory; a run replaces its "
                                     f"output folder as a whole: choose a new folder")
        if self.target.is_dir():
            foreign = [p.name for p in sorted(self.target.iterdir())
                       if not written_by_a_run(p)]
            if foreign:
                raise SpecificationError(
                    f"{where} exists and holds {foreign[0]!r}, which a run does not write; a run "
                    f"replaces its output folder as a whole: choose a new --output, or empty it")

    def open(self) -> Path:
        """Check the target, create the staging folder (and missing parents); return it."""
        self.check()
        self._created = [p for p in reversed(self.target.parents) if not p.exists()]
        shutil.rmtree(self.staging, ignore_errors=True)  # left by a killed run of the same pid
        self.staging.mkdir(parents=True)
        return self.staging

    def commit(self, interrupts: Interrupts | None = None) -> Path | None:
        """Move the staging folder into place (None, target untouched, if it is empty)."""
        with interrupts.shielded() if interrupts is not None else nullcontext():
            if interrupts is not None:
                interrupts.check()  # an interrupt some library code swallowed: not committed
            if not any(self.staging.iterdir()):
                self.discard()
                return None
            self.check()  # a folder made meanwhile holding others' files is not deleted
            aside = self.target.with_name(f"{self.target.name}.replaced-{os.getpid()}")
            if self.target.exists():
                os.replace(self.target, aside)
            try:
                os.replace(self.staging, self.target)
            except OSError:
                if aside.exists():
                    os.replace(aside, self.target)
                raise
            shutil.rmtree(aside, ignore_errors=True)
        return self.target

    def discard(self, interrupts: Interrupts | None = None) -> None:
        """Delete the staging folder and the parents ``open`` created (if still empty)."""
        with interrupts.shielded() if interrupts is not None else nullcontext():
            shutil.rmtree(self.staging, ignore_errors=True)
            for parent in reversed(self._created):
                try:
                    parent.rmdir()
                except OSError:
                    break
