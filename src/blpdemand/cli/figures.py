"""The command line's figures, drawn by a helper process while the run goes on.

Laying out and rasterizing one figure with matplotlib costs 0.1-0.6 s (tick labels dominate),
and a run draws several after its estimation, one after another. A ``FigureWorker`` starts one
Python process (``python -m blpdemand.results.figures``) when the report opens, so that loading
matplotlib there overlaps the estimation here, and hands it each figure (a picklable drawing
and the path of its PNG) through a private folder; it draws them on another core while the run
computes its next outputs. ``wait`` collects them before the output folder is moved into place
and replays their warnings here; ``close(abort=True)`` kills the process on a failure or
Ctrl-C (the process is in its own session, so a terminal's Ctrl-C reaches only the command).
On Linux, where this process runs one thread, the helpers are two forks of this process
(each has numpy, pandas and blpdemand loaded already and loads only matplotlib: about 0.3 s
of a core instead of 1.2 s for a fresh interpreter); elsewhere one new interpreter.
Where the process cannot start, or a drawing cannot be pickled, the figure is drawn in this
process by the same ``render``, so the PNG is the same either way.
"""

from __future__ import annotations

import os
import pickle
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import traceback
import warnings
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

from blpdemand.errors import BLPDemandError
from blpdemand.results.figures import READY, Caught, Drawing, Outcome, render, serve

#: forked helpers per run: enough for two cores (the run itself mostly waits by then)
FORKS = 2


class FigureWorker:
    """Figures drawn by helper processes (or in this one: ``background`` is then False).

    Jobs wait in a queue and go to a helper one at a time, when it is free. Forked helpers are
    cheap, so there are ``FORKS`` of them (a run's multi-panel profiles take 0.8 s to draw and
    would hold up the rest behind one helper); a fresh interpreter is one, and once the run
    waits for it this process draws from the other end of the queue too."""

    def __init__(self, *, fork: bool | None = None) -> None:
        """``fork``: the helpers as forks of this process (None: where possible)."""
        self._pending: dict[int, Path] = {}  # every figure sent or queued since the last wait
        self._drawings: dict[int, tuple[Drawing, int]] = {}  # queued ones, for drawing here
        self._queue: deque[int] = deque()  # not yet given to a helper
        self._lock = threading.Lock()
        self._answers: queue.Queue[str | None] = queue.Queue()
        self._folder = Path(tempfile.mkdtemp(prefix="blpdemand-figures-"))
        self._jobs = 0
        self._processes: list[subprocess.Popen[str] | ForkedServer] = []
        self._busy: list[bool] = []  # a job in hand, or still loading (until it says ready)
        self._readers: list[threading.Thread] = []
        if fork is None:
            fork = can_fork()
        self._steal = not fork  # drawing here would first load matplotlib here (0.3 s)
        try:
            if fork:  # all forks before any thread starts (a fork copies only its caller)
                for _ in range(FORKS):
                    self._processes.append(ForkedServer(self._folder, inherited=[
                        pipe.fileno() for p in self._processes for pipe in (p.stdin, p.stdout)
                        if pipe is not None]))
            else:
                self._processes.append(_interpreter(self._folder))
        except OSError:  # no interpreter to start (a frozen application): drawn here
            if not self._processes:
                return
        for index, process in enumerate(self._processes):
            self._busy.append(True)
            assert process.stdout is not None
            reader = threading.Thread(target=self._read, args=(index, process.stdout),
                                      daemon=True)
            self._readers.append(reader)
            reader.start()

    @property
    def background(self) -> bool:
        return bool(self._processes)

    def draw(self, path: Path, draw: Drawing, panels: int = 1) -> None:
        """Queue one figure for the helpers (drawn here when it cannot travel or every helper
        has ended; its warnings are then raised here)."""
        job = _pickled((path, draw, panels))
        if job is None or all(p.poll() is not None for p in self._processes):
            _replay(render(path, draw, panels))
            return
        k = self._jobs
        self._jobs += 1
        (self._folder / f"job-{k}.pkl").write_bytes(job)
        with self._lock:
            self._pending[k] = path
            self._drawings[k] = (draw, panels)
            self._queue.append(k)
            for index, busy in enumerate(self._busy):
                if not busy:
                    self._send_next(index)

    def _send_next(self, index: int) -> None:
        """Give helper ``index`` the oldest queued job (the caller holds the lock; after
        ``close`` took the helpers, a reader's last answer finds nothing to send)."""
        if not self._queue or index >= len(self._processes):
            return
        stdin = self._processes[index].stdin
        if stdin is None:
            return
        k = self._queue.popleft()
        self._drawings.pop(k, None)
        try:
            stdin.write(f"{k}\n")
            stdin.flush()
        except (OSError, ValueError):  # the helper has ended: wait() reports it
            self._answers.put(None)
            return
        self._busy[index] = True

    def _read(self, index: int, stdout: IO[str]) -> None:
        """Helper ``index``'s reader thread: each answer k, then its next job."""
        for line in stdout:
            if line.strip() != READY:
                self._answers.put(line.strip())
            with self._lock:
                self._busy[index] = False
                self._send_next(index)
        self._answers.put(None)

    def wait(self, checkpoint: Callable[[], None]) -> None:
        """Wait for every figure (asking ``checkpoint`` between figures and every 0.1 s),
        drawing the newest queued ones here meanwhile where that pays; replay their warnings
        in the order they were sent, and raise the first drawing's error."""
        done: dict[int, Outcome] = {}
        while len(done) < len(self._pending):
            checkpoint()
            with self._lock:
                k = self._queue.pop() if self._queue and self._steal else None
                local = None if k is None else self._drawings.pop(k)
            if k is not None and local is not None:
                try:
                    done[k] = Outcome(render(self._pending[k], *local))
                except Exception as error:  # noqa: BLE001  (raised below, in order)
                    done[k] = Outcome([], error)
                continue
            try:
                answer = self._answers.get(timeout=0.1)
            except queue.Empty:
                continue
            if answer is None:
                raise BLPDemandError(self._ended(done))
            k = int(answer)
            done[k] = pickle.loads((self._folder / f"result-{k}.pkl").read_bytes())
        self._pending = {}
        for k in sorted(done):
            outcome = done[k]
            _replay(outcome.caught)
            if isinstance(outcome.error, BaseException):
                raise outcome.error
            if outcome.error is not None:
                raise BLPDemandError(f"drawing a figure failed: {outcome.error}")

    def close(self, *, abort: bool = False) -> None:
        """End the helpers and delete the private folder, after drawing what is still pending
        (at once with ``abort``): no figure is written after this returns."""
        if not abort and self._pending and self._processes:
            self.wait(lambda: None)  # the figures sent and not waited for are drawn first
        with self._lock:  # nothing more goes to a helper
            processes, self._processes = self._processes, []
            self._queue.clear()
        for process in processes:
            process.kill()  # nothing left to draw (or abort): no need to let it tidy up
        for process in processes:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for reader in self._readers:
            reader.join(timeout=5)  # it has read the end of the answers
        for process in processes:
            for pipe in (process.stdin, process.stdout):
                if pipe is not None:
                    try:
                        pipe.close()
                    except OSError:  # stdin's last flush into a killed process
                        pass
        self._pending = {}
        shutil.rmtree(self._folder, ignore_errors=True)

    def _ended(self, done: dict[int, Outcome]) -> str:
        ended = [p for p in self._processes if p.poll() is not None] or self._processes
        code = ended[0].wait() if ended else None
        tail = (self._folder / "stderr.txt").read_text(errors="replace").strip()[-1500:]
        missing = [p.name for k, p in self._pending.items() if k not in done]
        return (f"the process drawing the figures ended (exit code {code}) before it drew "
                f"{', '.join(missing)}" + (f":\n{tail}" if tail else ""))


def can_fork() -> bool:
    """Whether a figure helper would be a fork of this process: on Linux, with one thread in
    this process (a fork copies only the calling thread, and a lock another thread held would
    stay locked in the child). Not on macOS, where system libraries that numpy and matplotlib
    load (Accelerate, libdispatch) are not safe to use after a fork: a new interpreter there."""
    return sys.platform.startswith("linux") and threading.active_count() == 1


def _interpreter(folder: Path) -> subprocess.Popen[str]:
    """``python -m blpdemand.results.figures FOLDER`` in its own session."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    with open(folder / "stderr.txt", "wb") as stderr:
        return subprocess.Popen(
            [sys.executable, "-m", "blpdemand.results.figures", str(folder)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, text=True, env=env,
            start_new_session=True)


class ForkedServer:
    """``results.figures.serve(folder)`` in a fork of this process, in its own session, with
    the parts of ``subprocess.Popen`` that ``FigureWorker`` uses (pipes, poll, kill, wait).

    The child never returns into the caller's code: it serves, then leaves by ``os._exit``
    (no atexit handlers, no flushing of buffers it inherited; both are flushed before)."""

    def __init__(self, folder: Path, *, inherited: Sequence[int] = ()) -> None:
        """``inherited``: this process's ends of earlier helpers' pipes, closed in the child
        (else an earlier helper would not see its input end when this process closes it)."""
        jobs_read, jobs_write = os.pipe()
        answers_read, answers_write = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the child
            code = 1
            try:
                os.setsid()
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                for fd in inherited:
                    os.close(fd)
                with open(folder / "stderr.txt", "ab") as stderr:  # shared by the helpers
                    os.dup2(stderr.fileno(), 2)
                os.dup2(jobs_read, 0)
                os.dup2(answers_write, 1)
                for fd in (jobs_read, jobs_write, answers_read, answers_write):
                    os.close(fd)
                sys.stdin = open(0, encoding="utf-8", closefd=False)  # noqa: SIM115
                sys.stdout = open(1, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
                sys.stderr = open(2, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
                serve(folder)
                code = 0
            except BaseException:  # noqa: BLE001  (told to the parent through stderr.txt)
                traceback.print_exc()
            finally:
                try:
                    sys.stdout.flush()
                    sys.stderr.flush()
                finally:
                    os._exit(code)
        os.close(jobs_read)
        os.close(answers_write)
        self.pid = pid
        self.returncode: int | None = None
        self.stdin: IO[str] | None = open(jobs_write, "w", encoding="utf-8")  # noqa: SIM115
        self.stdout: IO[str] | None = open(answers_read, encoding="utf-8")  # noqa: SIM115

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def kill(self) -> None:
        if self.returncode is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:  # ended and reaped already
                pass

    def wait(self, timeout: float | None = None) -> int:
        del timeout  # a killed child ends at once; one that ends by itself, soon
        if self.returncode is None:
            _, status = os.waitpid(self.pid, 0)
            self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode


def _pickled(job: tuple[Path, Drawing, int]) -> bytes | None:
    """The job as bytes (None for a drawing that cannot travel, e.g. a closure)."""
    try:
        return pickle.dumps(job)
    except (pickle.PicklingError, AttributeError, TypeError):
        return None


def _replay(caught: Caught) -> None:
    for category, message in caught:
        warnings.warn(message, category, stacklevel=3)
