"""The command line's figures drawn by a helper process (cli/figures.py): the same PNG as
drawn in-process, warnings and errors come back to the command, a closure is drawn here, and
an abort leaves nothing written; each for the helper forked from this process and for a new
interpreter. A forked helper leaves the parent's buffered output alone."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from blpdemand.cli.figures import FORKS, FigureWorker, ForkedServer
from blpdemand.results.diagnostics import ObjectiveProfile
from blpdemand.results.figures import render


def _profile() -> ObjectiveProfile:
    grids = np.array([np.linspace(-1.0, 1.0, 9), np.linspace(0.5, 3.0, 9)])
    return ObjectiveProfile(names=("a", "b"), estimate=grids[:, 4], objective=1.0, grids=grids,
                            values=1.0 + grids ** 2)


@dataclasses.dataclass(frozen=True)
class Warns:
    """A picklable drawing that warns."""

    def __call__(self, ax: Any) -> None:
        ax.plot([0, 1], [0, 1])
        warnings.warn("drawn with a warning", UserWarning, stacklevel=1)


@dataclasses.dataclass(frozen=True)
class Fails:
    """A picklable drawing that raises."""

    def __call__(self, ax: Any) -> None:
        raise ValueError("no such column: 'z'")


def _nothing() -> None:
    pass


LINUX = sys.platform.startswith("linux")
START = pytest.mark.parametrize("fork", [pytest.param(True, marks=pytest.mark.skipif(
    not LINUX, reason="figure helpers fork on Linux only")), False],
    ids=["forked", "interpreter"])


@START
def test_the_helper_process_writes_the_same_png_as_this_process(tmp_path: Path, fork: bool) -> None:
    worker = FigureWorker(fork=fork)
    assert worker.background
    assert [isinstance(p, ForkedServer) for p in worker._processes] == [fork] * (
        FORKS if fork else 1)
    for k in range(3):  # more figures than helpers: each is drawn once, by one of them
        worker.draw(tmp_path / f"there-{k}.png", _profile().plot, panels=2)
    worker.wait(_nothing)
    worker.close()
    render(tmp_path / "here.png", _profile().plot, panels=2)
    for k in range(3):
        assert (tmp_path / f"there-{k}.png").read_bytes() == (tmp_path / "here.png").read_bytes()


@START
def test_warnings_are_replayed_and_errors_raised_here(tmp_path: Path, fork: bool) -> None:
    worker = FigureWorker(fork=fork)
    worker.draw(tmp_path / "a.png", Warns())
    with pytest.warns(UserWarning, match="drawn with a warning"):
        worker.wait(_nothing)
    worker.draw(tmp_path / "b.png", Fails())
    with pytest.raises(ValueError, match="no such column"):
        worker.wait(_nothing)
    worker.close()
    assert (tmp_path / "a.png").exists() and not (tmp_path / "b.png").exists()


@START
def test_a_closure_is_drawn_in_this_process(tmp_path: Path, fork: bool) -> None:
    drawn: list[int] = []

    def draw(ax: Any) -> None:  # a closure does not pickle
        drawn.append(1)
        ax.plot([0, 1], [1, 0])

    worker = FigureWorker(fork=fork)
    worker.draw(tmp_path / "c.png", draw)
    assert drawn == [1] and (tmp_path / "c.png").exists()
    worker.wait(_nothing)
    worker.close()


@START
def test_an_interrupt_while_waiting_is_raised_and_abort_writes_nothing(tmp_path: Path, fork: bool) -> None:
    worker = FigureWorker(fork=fork)
    worker.draw(tmp_path / "d.png", _profile().plot, panels=2)

    def interrupted() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        worker.wait(interrupted)
    worker.close(abort=True)
    assert not (tmp_path / "d.png").exists()


@pytest.mark.skipif(not LINUX, reason="figure helpers fork on Linux only")
def test_a_forked_helper_does_not_repeat_the_parents_buffered_output(tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from blpdemand.cli.figures import FigureWorker\n"
        "from blpdemand.results.diagnostics import ObjectiveProfile\n"
        "import numpy as np\n"
        "sys.stdout.write('before ')\n"  # buffered (a pipe), not yet written
        "worker = FigureWorker(fork=True)\n"
        "g = np.array([np.linspace(-1.0, 1.0, 5)])\n"
        "p = ObjectiveProfile(names=('a',), estimate=g[:, 2], objective=1.0, grids=g,\n"
        "                     values=1.0 + g ** 2)\n"
        f"worker.draw(Path({str(tmp_path / 'e.png')!r}), p.plot)\n"
        "worker.wait(lambda: None)\n"
        "worker.close()\n"
        "sys.stdout.write('after')\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "before after"
    assert (tmp_path / "e.png").stat().st_size > 0


def test_the_command_takes_one_blas_thread_unless_the_user_chose() -> None:
    from blpdemand.cli import BLAS_THREADS, one_blas_thread

    untouched: dict[str, str] = {"PATH": "/bin"}
    one_blas_thread(untouched)
    assert all(untouched[name] == "1" for name in BLAS_THREADS)
    chosen = {"OMP_NUM_THREADS": "8"}
    one_blas_thread(chosen)
    assert chosen == {"OMP_NUM_THREADS": "8"}  # the user's choice stands, for every library
    # in a real command the variables are set before numpy loads: numpy sees them
    script = ("import os, sys\n"
              "from blpdemand.cli import one_blas_thread\n"
              "one_blas_thread(os.environ)\n"
              "assert 'numpy' not in sys.modules\n"
              "import numpy\n"
              "print(os.environ['OPENBLAS_NUM_THREADS'])\n")
    env = {k: v for k, v in os.environ.items() if k not in BLAS_THREADS}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, check=False, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "1"


@START
def test_an_answer_read_after_close_sends_nothing(tmp_path: Path, fork: bool) -> None:
    # A helper's last answer can reach its reader thread while the run is closing (Ctrl-C in
    # the post-estimation): the reader then asks for the next job, of helpers already taken
    # away. That once raised IndexError in the reader thread, a traceback beside "interrupted".
    worker = FigureWorker(fork=fork)
    worker.draw(tmp_path / "f.png", _profile().plot, panels=2)
    worker.close(abort=True)
    with worker._lock:
        for index in range(FORKS):
            worker._send_next(index)  # what the reader thread does after an answer
    assert not worker.background and not worker._queue
