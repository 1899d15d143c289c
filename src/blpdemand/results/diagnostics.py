"""Estimation diagnostics as display objects: objective profiles, a 2-D contour, draws stability.

The pictures of "what typically goes wrong" in BLP (Knittel and Metaxoglou 2014; Conlon and
Gortmaker 2020): a flat or non-convex objective along a parameter, a ridge between two
parameters, estimates that move when the number of draws doubles. Each object computes its
numbers in ``from_results(...)`` and draws them with ``plot(ax=None)`` (matplotlib, imported
only when plotting); ``table()`` gives the numbers as a Table.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from blpdemand._types import FloatArray
from blpdemand.errors import SpecificationError
from blpdemand.integration.rule import Integration
from blpdemand.integration.stability import StabilityReport, draws_stability
from blpdemand.model.parameters import ParameterLayout
from blpdemand.model.problem import Problem
from blpdemand.results.blp import BLPResults, estimate
from blpdemand.results.tables import Table
from blpdemand.solve.estimate import EstimationConfig
from blpdemand.solve.fixed_point import FixedPointConfig
from blpdemand.solve.gmm import DemandObjective
from blpdemand.solve.jobs import map_jobs


@dataclass(frozen=True, slots=True, kw_only=True)
class PointsJob:
    """Q at each row of ``points`` (n, P) with the results' last W, warm-started from the
    estimate's delta: data, so threads, processes or Dask workers run it (``q_at_points``)."""

    problem: Problem
    layout: ParameterLayout
    W: FloatArray = field(repr=False)
    contraction: FixedPointConfig
    delta0: FloatArray = field(repr=False)
    points: FloatArray


def _objective(results: BLPResults) -> DemandObjective:
    """Q(theta) with the results' last W, warm-started from the estimate's delta."""
    return DemandObjective(results.problem, results.layout, results.W,
                           contraction=results.config.fixed_point,
                           delta0=results.problem.products.sort(results.delta))


def q_at_points(job: PointsJob) -> FloatArray:
    """Q at the job's points, in order, with one objective (each warm-starts the next)."""
    q = DemandObjective(job.problem, job.layout, job.W, contraction=job.contraction,
                        delta0=job.delta0)
    return np.array([q.objective(point) for point in job.points])


def _jobs(results: BLPResults, lines: list[FloatArray], workers: int,
          executor: Any) -> FloatArray:
    """Q on each line of points, a job per line (the same values on any executor)."""
    delta0 = results.problem.products.sort(results.delta)
    jobs = [PointsJob(problem=results.problem, layout=results.layout, W=results.W,
                      contraction=results.config.fixed_point, delta0=delta0, points=line)
            for line in lines]
    return np.array(map_jobs(q_at_points, jobs, workers=workers, executor=executor))


def _half_width(results: BLPResults, k: int, width: float) -> float:
    se = float(results.theta_se[k])
    value = abs(float(results.theta[k]))
    return max(width * se if np.isfinite(se) else 0.0, 0.25 * value, 1e-3)


@dataclass(frozen=True, slots=True, kw_only=True)
class ObjectiveProfile:
    """Q along each parameter with the others held at the estimate.

    Attributes
    ----------
    names : (P,) parameter names; estimate : (P,) theta-hat; objective : Q(theta-hat).
    grids : (P, n) values of each parameter; values : (P, n) Q on those grids.
    """

    names: tuple[str, ...]
    estimate: FloatArray
    objective: float
    grids: FloatArray = field(repr=False)
    values: FloatArray = field(repr=False)

    @classmethod
    def from_results(cls, results: BLPResults, *, points: int = 11, width: float = 3.0,
                     workers: int = 1, executor: Any = None) -> ObjectiveProfile:
        """Evaluate Q on ``points`` values within max(width SE, 25% |theta|) of each estimate;
        each parameter's line is a job (``workers`` threads, or ``executor``: a
        ``concurrent.futures.Executor`` or ``dask.distributed.Client``; the same values)."""
        if points < 3:
            raise SpecificationError(f"points={points} must be >= 3")
        theta = results.theta
        grids = np.empty((theta.size, points))
        lines = []
        for k in range(theta.size):
            h = _half_width(results, k, width)
            grids[k] = theta[k] + np.linspace(-h, h, points)
            line = np.tile(theta, (points, 1))
            line[:, k] = grids[k]
            lines.append(line)
        values = _jobs(results, lines, workers, executor).reshape(theta.size, points)
        return cls(names=results.layout.names, estimate=theta.copy(), objective=results.objective,
                   grids=grids, values=values)

    def table(self) -> Table:
        """Long table: parameter, value, Q."""
        rows = [(n, g, v) for n, gs, vs in zip(self.names, self.grids, self.values)
                for g, v in zip(gs, vs)]
        body = pd.DataFrame(rows, columns=["parameter", "value", "objective"])
        return Table(title="Objective profiles", body=body)

    def __repr__(self) -> str:
        best = self.values.argmin(axis=1)
        body = pd.DataFrame({"estimate": self.estimate, "from": self.grids[:, 0],
                             "to": self.grids[:, -1], "min Q on grid": self.values.min(axis=1),
                             "at": self.grids[np.arange(best.size), best]},
                            index=pd.Index(self.names))
        note = f"Q at the estimate = {self.objective:.6g}; .table() has every point, .plot() draws"
        return Table(title="ObjectiveProfile", body=body, notes=(note,)).preview()

    def plot(self, ax: Any = None) -> Any:
        """One panel per parameter (``ax``: a sequence of P axes, or None for a new figure)."""
        import matplotlib.pyplot as plt

        P = len(self.names)
        if ax is None:
            cols = min(P, 3)
            rows = -(-P // cols)
            _, grid = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False)
            axes = list(grid.ravel())
            for extra in axes[P:]:
                extra.set_visible(False)
        else:
            axes = list(np.atleast_1d(ax).ravel())
            if len(axes) < P:
                raise SpecificationError(f"plot needs {P} axes, got {len(axes)}")
        for k, axis in enumerate(axes[:P]):
            axis.plot(self.grids[k], self.values[k], marker=".")
            axis.axvline(self.estimate[k], color="grey", linestyle="--")
            axis.set_title(self.names[k], fontsize=9)
            axis.set_ylabel("Q")
        return axes[0].figure


@dataclass(frozen=True, slots=True, kw_only=True)
class ObjectiveContour:
    """Q on a 2-D grid of two parameters around the estimate, others at the estimate.

    Attributes
    ----------
    names : the two parameter names; estimate : (2,) their estimates.
    x, y : (n,) grids; values : (n, n) Q with values[i, j] at (x[j], y[i]).
    """

    names: tuple[str, str]
    estimate: FloatArray
    x: FloatArray = field(repr=False)
    y: FloatArray = field(repr=False)
    values: FloatArray = field(repr=False)

    @classmethod
    def from_results(cls, results: BLPResults, *, parameters: Sequence[int | str] = (0, 1),
                     points: int = 9, width: float = 3.0, workers: int = 1,
                     executor: Any = None) -> ObjectiveContour:
        """Evaluate Q on a points x points grid of two parameters (indices or names); each
        row of the grid is a job (``workers`` threads or ``executor``; the same values)."""
        names = results.layout.names
        index = [names.index(p) if isinstance(p, str) else int(p) for p in parameters]
        if len(index) != 2 or len(set(index)) != 2 or not all(0 <= i < len(names) for i in index):
            raise SpecificationError(f"parameters={parameters!r} must name two distinct free "
                                     f"parameters of {list(names)}")
        theta = results.theta
        a, b = index
        x = theta[a] + np.linspace(-1, 1, points) * _half_width(results, a, width)
        y = theta[b] + np.linspace(-1, 1, points) * _half_width(results, b, width)
        rows = []
        for yv in y:
            row = np.tile(theta, (points, 1))
            row[:, a], row[:, b] = x, yv
            rows.append(row)
        values = _jobs(results, rows, workers, executor).reshape(points, points)
        return cls(names=(names[a], names[b]), estimate=theta[[a, b]].copy(), x=x, y=y,
                   values=values)

    def __repr__(self) -> str:
        i, j = np.unravel_index(int(self.values.argmin()), self.values.shape)
        return (f"ObjectiveContour of Q over {self.names[0]} x {self.names[1]} "
                f"({self.values.shape[1]} x {self.values.shape[0]} points) around the estimate "
                f"({self.estimate[0]:.4f}, {self.estimate[1]:.4f}): Q from "
                f"{self.values.min():.6g} at ({self.x[j]:.4f}, {self.y[i]:.4f}) to "
                f"{self.values.max():.6g}; .plot() draws it")

    def plot(self, ax: Any = None) -> Any:
        """Filled contours of Q with the estimate marked; returns the axes."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(5, 4))
        filled = ax.contourf(self.x, self.y, self.values, levels=20)
        ax.figure.colorbar(filled, ax=ax, label="Q")
        ax.plot(*self.estimate, marker="x", color="red")
        ax.set_xlabel(self.names[0])
        ax.set_ylabel(self.names[1])
        return ax


@dataclass(frozen=True, slots=True, kw_only=True)
class DrawsStability:
    """Estimates re-computed with more integration draws (Train 2009; Conlon and Gortmaker 2020).

    Attributes
    ----------
    report : the integration layer's StabilityReport (values per rule and parameter).
    """

    report: StabilityReport

    @classmethod
    def from_results(cls, results: BLPResults, integration: Integration, *,
                     make_problem: Callable[[Integration], Problem] | None = None,
                     factors: Sequence[int] = (1, 2, 4), runner: Callable[..., Any] = map,
                     workers: int = 1, executor: Any = None) -> DrawsStability:
        """Re-estimate under ``integration.refined(f)`` for each factor, from the original start.

        ``make_problem(rule)`` builds the problem with ``agents=rule``; without it the results'
        problem gets new agents from the rule (problems without demographics only). Each
        re-estimation is a job (``reestimate``): on ``workers`` threads, or on ``executor`` (a
        ``concurrent.futures.Executor`` or ``dask.distributed.Client``; ``make_problem`` must
        then be picklable, e.g. a module-level function or a functools.partial of one), with
        the results' config less its runner and executor; ``runner`` is used otherwise.
        """
        if make_problem is None:
            if results.problem.D > 0:
                raise SpecificationError(
                    "the problem has demographics: pass make_problem=lambda rule: Problem(..., "
                    "agents=rule) so the refined rule can draw them")
            make_problem = functools.partial(_with_agents, results.problem)

        sigma, pi = results.layout.unpack(results.steps[0].start)  # the original start
        config = dataclasses.replace(results.config, runner=None, executor=None)
        run = functools.partial(reestimate, make_problem, sigma, pi, config)
        if executor is not None or workers > 1:
            runner = functools.partial(_map_jobs, workers=workers, executor=executor)
        return cls(report=draws_stability(run, integration, factors=factors, runner=runner))

    def table(self) -> Table:
        """Estimates per number of draws and the last relative change."""
        return Table(title="Draws stability", body=self.report.to_frame())

    def __repr__(self) -> str:
        verdict = ("stable: every estimate moved by less than 1%" if self.report.stable() else
                   "NOT stable: some estimate moved by 1% or more")
        return self.table().preview(heading=f"DrawsStability ({verdict} at the last refinement)")

    def plot(self, ax: Any = None) -> Any:
        """Relative change of each estimate at the last refinement (bar chart)."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(6, 3))
        ax.bar(range(len(self.report.names)), self.report.relative_changes[-1])
        ax.set_xticks(range(len(self.report.names)), self.report.names, rotation=45, ha="right")
        ax.set_ylabel("relative change")
        return ax


def reestimate(make_problem: Callable[[Integration], Problem], sigma: Any, pi: Any,
               config: EstimationConfig, rule: Integration) -> pd.Series:
    """The estimates (theta, beta) of ``make_problem(rule)`` from sigma, pi: a stability job."""
    refit = estimate(make_problem(rule), sigma=sigma, pi=pi, config=config)
    return pd.Series(refit.estimates, index=list(refit.names))


def _map_jobs(function: Callable[[Any], Any], items: Sequence[Any], *, workers: int,
              executor: Any) -> list[Any]:
    return map_jobs(function, items, workers=workers, executor=executor)


def _with_agents(problem: Problem, rule: Integration) -> Problem:
    """The same problem with agents drawn by ``rule`` (no demographics)."""
    agents = rule.build_agents(problem.products.markets, dimensions=problem.K2)
    new = object.__new__(Problem)
    for name in Problem.__dataclass_fields__:
        object.__setattr__(new, name, getattr(problem, name))
    object.__setattr__(new, "agents", agents)
    return new
