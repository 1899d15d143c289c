"""Saving a figure, and a process that saves figures for another one.

``render(path, draw, panels)`` draws onto fresh matplotlib axes (no pyplot: no global state
and no GUI backend), makes numeric tick labels readable and writes the PNG. Run as
``python -m blpdemand.results.figures FOLDER``, this module serves ``render`` to a parent
process: it reads job numbers k from stdin, loads ``FOLDER/job-k.pkl`` (path, drawing,
panels), draws, writes ``FOLDER/result-k.pkl`` (the warnings raised, or the error) and answers
k on stdout (its first line, ``READY``, says it has loaded). The command line's
``cli.figures.FigureWorker`` is the other end.
"""

from __future__ import annotations

import os
import pickle
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Drawing = Callable[[Any], Any]  # draw(ax) with one panel, draw(list of axes) with several
Caught = list[tuple[type[Warning], str]]
READY = "ready"  # the serving process's first line: loaded, send jobs


def render(path: Path, draw: Drawing, panels: int = 1) -> Caught:
    """Draw onto fresh axes (``panels > 1``: a list of that many, three to a row), lay the
    figure out with readable ticks and save it at ``path`` (120 dpi); returns the warnings
    raised meanwhile as (category, message)."""
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        from matplotlib.figure import Figure

        from blpdemand.results.plots import readable_ticks

        if panels == 1:
            fig = Figure(figsize=(7, 5))
            draw(fig.subplots())
        else:
            cols = min(panels, 3)
            rows = -(-panels // cols)
            fig = Figure(figsize=(4 * cols, 3 * rows))
            axes = list(fig.subplots(rows, cols, squeeze=False).ravel())
            for extra in axes[panels:]:
                extra.set_visible(False)
            draw(axes[:panels])
        readable_ticks(fig)  # lays the figure out; numeric tick labels that do not collide
        fig.savefig(path, dpi=120)
    return [(w.category, str(w.message)) for w in records]


@dataclass(frozen=True)
class Outcome:
    """What drawing job k gave back: its warnings, or the error it raised (``error`` is the
    exception itself when it pickles, else its text)."""

    caught: Caught
    error: BaseException | str | None = None


def serve(folder: Path) -> None:
    """Draw the jobs whose numbers arrive on stdin until stdin closes."""
    # loaded before the first job arrives (while the parent estimates): matplotlib, and the
    # modules whose drawings the parent sends (unpickling them imports these)
    import matplotlib.figure  # noqa: F401
    from matplotlib.backends import backend_agg  # noqa: F401

    import blpdemand.results.diagnostics
    import blpdemand.results.plots  # noqa: F401

    _answer(READY)  # jobs wait in the parent (which may draw them) until now

    for line in sys.stdin:
        k = line.strip()
        try:
            path, draw, panels = pickle.loads((folder / f"job-{k}.pkl").read_bytes())
            outcome = Outcome(render(path, draw, panels))
        except Exception as error:  # noqa: BLE001  (handed back to the parent, who raises it)
            outcome = Outcome([], error)
        try:
            data = pickle.dumps(outcome)
        except Exception:  # noqa: BLE001  (an error that does not pickle goes back as text)
            data = pickle.dumps(Outcome(outcome.caught, f"{type(outcome.error).__name__}: "
                                                         f"{outcome.error}"))
        partial = folder / f".result-{k}.pkl"
        partial.write_bytes(data)
        os.replace(partial, folder / f"result-{k}.pkl")  # whole, or not there
        _answer(k)


def _answer(line: str) -> None:
    """One line to the parent on stdout, the channel of this serving process (not output)."""
    sys.stdout.write(f"{line}\n")
    sys.stdout.flush()


if __name__ == "__main__":  # as the module itself, so that Outcome pickles by its own name
    from blpdemand.results.figures import serve as serve_here

    serve_here(Path(sys.argv[1]))
