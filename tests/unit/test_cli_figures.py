"""The command line's figures drawn by a helper process (cli/figures.py): the same PNG as
drawn in-process, warnings and errors come back to the command, a closure is drawn here, and
an abort leaves nothing written."""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from blpdemand.cli.figures import FigureWorker
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


def test_the_helper_process_writes_the_same_png_as_this_process(tmp_path: Path) -> None:
    worker = FigureWorker()
    assert worker.background
    worker.draw(tmp_path / "there.png", _profile().plot, panels=2)
    worker.wait(_nothing)
    worker.close()
    render(tmp_path / "here.png", _profile().plot, panels=2)
    assert (tmp_path / "there.png").read_bytes() == (tmp_path / "here.png").read_bytes()


def test_warnings_are_replayed_and_errors_raised_here(tmp_path: Path) -> None:
    worker = FigureWorker()
    worker.draw(tmp_path / "a.png", Warns())
    with pytest.warns(UserWarning, match="drawn with a warning"):
        worker.wait(_nothing)
    worker.draw(tmp_path / "b.png", Fails())
    with pytest.raises(ValueError, match="no such column"):
        worker.wait(_nothing)
    worker.close()
    assert (tmp_path / "a.png").exists() and not (tmp_path / "b.png").exists()


def test_a_closure_is_drawn_in_this_process(tmp_path: Path) -> None:
    drawn: list[int] = []

    def draw(ax: Any) -> None:  # a closure does not pickle
        drawn.append(1)
        ax.plot([0, 1], [1, 0])

    worker = FigureWorker()
    worker.draw(tmp_path / "c.png", draw)
    assert drawn == [1] and (tmp_path / "c.png").exists()
    worker.wait(_nothing)
    worker.close()


def test_an_interrupt_while_waiting_is_raised_and_abort_writes_nothing(tmp_path: Path) -> None:
    worker = FigureWorker()
    worker.draw(tmp_path / "d.png", _profile().plot, panels=2)

    def interrupted() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        worker.wait(interrupted)
    worker.close(abort=True)
    assert not (tmp_path / "d.png").exists()
