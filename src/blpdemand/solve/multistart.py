"""Multi-start: where each start of a GMM step ended, and whether the starts agree.

"Check that 3-5 different starting values give the same theta; for 2-step GMM do this twice,
once for each step." Two runs reached the same minimum when their objectives AND their
estimates (theta, beta) agree: with simulated draws the sign of a diagonal Sigma is no
symmetry, and a flat objective (weak identification) takes one value at distant estimates.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from blpdemand._types import FloatArray, OnFailure
from blpdemand.errors import OptimizationWarning
from blpdemand.model.parameters import ParameterLayout
from blpdemand.model.problem import Problem
from blpdemand.solve.bounds import mark_at_bounds
from blpdemand.solve.fixed_point import FixedPointConfig
from blpdemand.solve.gmm import DemandObjective
from blpdemand.solve.optimizer import OptimizationResult, contraction_failed, minimize
from blpdemand.solve.progress import Reporter


@dataclass(frozen=True, slots=True, kw_only=True)
class StartOutcome:
    """Where one starting value of one GMM step ended (a row of the multi-start table).

    ``beta`` : (K1,) the concentrated linear parameters at the end; ``same`` : whether this run
    ended at the minimum reported for its step (same objective and estimates, see
    ``same_minimum``); ``step`` : the GMM step (1 or 2).
    """

    start: FloatArray
    optimization: OptimizationResult
    step: int = 1
    beta: FloatArray | None = None
    same: bool | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class StartJob:
    """One start of one GMM step as data: picklable (without a reporter), so that threads,
    processes or a Dask cluster can run it with ``run_start``; W and delta0 are the step's."""

    problem: Problem
    layout: ParameterLayout
    W: FloatArray = field(repr=False)
    theta0: FloatArray
    step: int
    index: int
    optimizer: str
    bounds: tuple[tuple[float, float], ...]
    binding: tuple[tuple[float, float], ...]
    gtol: float
    max_iterations: int
    contraction: FixedPointConfig
    on_failure: OnFailure
    delta0: FloatArray | None = field(default=None, repr=False)
    clock: float = 0.0
    reporter: Reporter | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class StartRun:
    """What one start returns: its optimizer record, contraction work counts, and delta and
    beta at its end (None where the inner loop failed there)."""

    result: OptimizationResult
    work: dict[str, int]
    delta: FloatArray | None
    beta: FloatArray | None


def run_start(job: StartJob) -> StartRun:
    """Minimize Q from ``job.theta0`` with the step's W; mark a bound or a failed inner loop."""
    objective = DemandObjective(job.problem, job.layout, job.W, contraction=job.contraction,
                                on_failure=job.on_failure, reporter=job.reporter,
                                step=job.step, start=job.index, clock=job.clock,
                                delta0=job.delta0)
    return run_start_on(objective, job)


def run_start_on(objective: Any, job: StartJob) -> StartRun:
    """``run_start`` with a given objective (a DemandObjective or one over market shards)."""
    result = minimize(objective, job.theta0, method=job.optimizer, bounds=job.bounds,
                      gtol=job.gtol, max_iterations=job.max_iterations,
                      on_iteration=objective.mark_iteration)
    end = objective.evaluate(result.theta, report=False, adjoint=True)
    work = {"iterations": objective.contraction_iterations,
            "evaluations": objective.contraction_evaluations, "failures": objective.failures,
            "supply_failures": objective.supply_failures}
    result = mark_at_bounds(result, job.binding)
    if end.failed:  # the optimizer ended where the inner loop fails: never the best
        result = contraction_failed(result, np.asarray(end.failed_markets).tolist())
        return StartRun(result, work, None, None)
    return StartRun(result, work, end.delta, end.beta)


#: starts agree when objectives differ by at most this, relative to max(1, |Q|) ...
SAME_OBJECTIVE = 1e-4
#: ... and every estimate (theta, beta) by at most this, relative to max(1, |estimate|)
SAME_ESTIMATE = 1e-3


def same_minimum(a: StartOutcome, b: StartOutcome) -> bool:
    """Two runs ended at the same minimum: objectives AND estimates (theta, beta) agree.

    Equal objectives alone do not make one minimum: with simulated draws the sign of a
    diagonal Sigma is no symmetry, and a flat objective (weak identification) takes the same
    value at distant estimates.
    """
    qa, qb = a.optimization.objective, b.optimization.objective
    if not (np.isfinite(qa) and np.isfinite(qb)):
        return False
    if abs(qa - qb) > SAME_OBJECTIVE * max(1.0, abs(min(qa, qb))):
        return False
    ea = np.concatenate([a.optimization.theta, a.beta if a.beta is not None else []])
    eb = np.concatenate([b.optimization.theta, b.beta if b.beta is not None else []])
    if ea.shape != eb.shape:
        return False
    return bool(np.all(np.abs(ea - eb) <= SAME_ESTIMATE * np.maximum(1.0, np.abs(eb))))


def check_agreement(outcomes: Sequence[StartOutcome], best: int, step: int) -> list[StartOutcome]:
    """Mark which starts reached the reported minimum, and warn where the starts disagree.

    Two kinds of disagreement are warned about: converged starts at the reported objective but
    at other estimates (a flat objective, several roots, a sign), and a reported minimum that
    no other start reproduced while converged starts ended at distinct local minima. Starts
    that ended at higher local minima when the reported one was reproduced are only recorded
    (the summary counts them): the multi-start did its job.
    """
    marked = [dataclasses.replace(o, same=same_minimum(o, outcomes[best])) for o in outcomes]
    if len(marked) < 2:
        return marked
    reported = outcomes[best].optimization.objective
    different = [o for o in marked if o.optimization.converged and not o.same]
    flat = [o for o in different
            if abs(o.optimization.objective - reported) <= SAME_OBJECTIVE * max(1.0, abs(reported))]
    if flat:
        warnings.warn(
            f"GMM step {step}: {len(flat)} of {len(marked)} starts converged to the reported "
            f"objective {reported:.6g} at other estimates: the objective is flat or has several "
            "minima of the same value (weakly identified parameters, or a sign of Sigma); see "
            "results.starts_table()", OptimizationWarning, stacklevel=4)
    reproduced = sum(bool(o.same) for o in marked) > 1
    if different and not reproduced and len(different) > len(flat):
        values = [o.optimization.objective for o in different]
        warnings.warn(
            f"GMM step {step}: distinct local minima: no other start reached the reported "
            f"minimum {reported:.6g}; {len(different)} converged elsewhere (objectives "
            f"{min(values):.6g} to {max(values):.6g}); add starts to confirm it is the global "
            "one; see results.starts_table()", OptimizationWarning, stacklevel=4)
    return marked
