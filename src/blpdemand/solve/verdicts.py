"""Verdicts on an estimate: what a failed inner loop, an unconverged optimizer or a parameter
on its bound means, said as a warning (or raised, by the ``on_failure`` policy) and as a status.

``config`` is the run's EstimationConfig (its ``on_failure`` and ``gtol``). A failure is never a
number: the caller's results carry the status, these carry the words.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from blpdemand._types import FloatArray, Status
from blpdemand.errors import ConvergenceWarning, OptimizationWarning
from blpdemand.model.parameters import ParameterLayout
from blpdemand.solve.bounds import at_bounds
from blpdemand.solve.gmm import ObjectiveEvaluation
from blpdemand.solve.optimizer import OptimizationResult


def check_final(evaluation: ObjectiveEvaluation, config: Any) -> None:
    """Failures at trial theta are only counted (the line search backs off from them); a failure
    at the estimate itself makes it unreliable: warn or raise."""
    failed = np.asarray(evaluation.failed_markets)
    if evaluation.failed:
        message = (f"the contraction failed at the estimate in market(s) {failed.tolist()[:10]}; "
                   "tighten the parameter bounds, change the start, or raise the contraction's "
                   "max_evaluations")
        costs = evaluation.costs
        if not failed.size and costs is not None and costs.failure is not None:
            message = f"the supply side failed at the estimate: {costs.failure}"
        elif not failed.size:
            message = ("the inner loop converged at the estimate but d delta/d theta or xi is not "
                       "finite (utilities x2'(Sigma nu + Pi y) too large for float64?); rescale "
                       "the X2 columns, tighten the parameter bounds or change the start")
        if config.on_failure == "raise":
            from blpdemand.errors import ConvergenceError
            raise ConvergenceError(message)
        if config.on_failure == "warn":
            warnings.warn(message, ConvergenceWarning, stacklevel=4)


def check_step_one(first: ObjectiveEvaluation, result: OptimizationResult) -> None:
    """Step 2's W needs the step-1 residuals: where the contraction failed (xi unconverged or
    not finite) the run stops with a named error instead of weighting by meaningless xi."""
    failed = np.asarray(first.failed_markets).tolist()
    if not first.failed:
        return
    from blpdemand.errors import ConvergenceError
    where = (f"the contraction failed in market(s) {failed[:10]}" if failed
             else "the inner loop gave non-finite delta or d delta/d theta")
    if not failed and first.costs is not None and first.costs.failure is not None:
        where = f"the supply side failed ({first.costs.failure})"
    raise ConvergenceError(
        f"GMM step 1 ended at theta={np.round(result.theta, 6).tolist()} (objective "
        f"{result.objective:.6g}, {result.status.value}) where {where}, so the step-2 weighting "
        "matrix cannot be computed from its residuals xi; change the starting values, tighten "
        "the parameter bounds, or raise the contraction's max_evaluations")


def at_precision_floor(step: OptimizationResult, hessian: FloatArray) -> OptimizationResult:
    """Count a run as converged when its gradient is at the floor a line search on Q can reach.

    A step of size |g| / lambda_max lowers Q by about |g|^2 / (2 lambda_max), invisible once it
    is below the noise in Q, about 10 eps |Q| for an inner loop solved to 1e-14: gradients under
    sqrt(20 eps |Q| lambda_max) cannot be resolved, so an optimizer stopping there ("precision
    loss") is at the minimum if the Hessian is positive definite.
    """
    if step.converged or step.theta.size == 0 or not np.all(np.isfinite(hessian)):
        return step
    eigenvalues = np.linalg.eigvalsh(hessian)
    floor = float(np.sqrt(20 * np.finfo(float).eps * max(1.0, abs(step.objective))
                          * max(float(eigenvalues.max()), 0.0)))
    if eigenvalues.min() > 0 and step.projected_gradient_norm <= floor:
        return dataclasses.replace(step, status=Status.CONVERGED,
                                   message=f"{step.message} (gradient at the line-search "
                                           f"precision floor {floor:.2g})")
    return step


def check_optimization(steps: Sequence[OptimizationResult], config: Any,
                        layout: ParameterLayout, bounds: Sequence[tuple[float, float]]) -> None:
    """Warn (or raise) for each step that did not converge; name the parameters of an
    estimate on a bound. A failed inner loop at the estimate is ``_check_final``'s."""
    failures: list[str] = []
    for k, step in enumerate(steps, start=1):
        if step.status is Status.CONTRACTION_FAILED:
            continue  # _check_final names the markets; the optimizer only met penalties there
        # (step 2 starts at step 1's estimate, where staying is no trap when it converged)
        if step.stayed_at_start and not (k == 2 and step.converged):
            warnings.warn(f"GMM step {k}: the optimizer returned its starting values "
                          f"({step.iterations} iterations); the estimate may be the start, not a "
                          "minimum. Try another start or optimizer", OptimizationWarning,
                          stacklevel=4)
        if step.stopped_by_limit:
            failures.append(f"GMM step {k}: the optimizer {step.status.value} ({step.message}) "
                            f"with projected gradient inf-norm {step.projected_gradient_norm:.3g}; "
                            "raise max_iterations or change the start")
        elif step.status is Status.NOT_CONVERGED:
            failures.append(f"GMM step {k}: the optimizer stopped with projected gradient inf-norm "
                            f"{step.projected_gradient_norm:.3g} > gtol max(1, Q) = "
                            f"{config.gtol * max(1.0, abs(step.objective)):.3g} "
                            f"({step.message}); raise max_iterations, loosen gtol or change the "
                            "start")
    for message in failures:
        if config.on_failure == "raise":
            from blpdemand.errors import ConvergenceError
            raise ConvergenceError(message)
        if config.on_failure == "warn":
            warnings.warn(message, OptimizationWarning, stacklevel=4)
    last = steps[-1]
    if last.status is Status.AT_BOUND:
        active = at_bounds(last.theta, bounds)
        where = ", ".join(f"{layout.names[k]} = {bound:g}" for k, bound in active)
        names = [layout.names[k] for k, _ in active]
        meaning = ("; a standard deviation at 0 means no heterogeneity is found in that "
                   "characteristic" if any(n.startswith("sigma[") for n in names) else "")
        meaning += ("; rho at 0 means no correlation within nests is found (the model without "
                    "nests)" if any(n.startswith("rho") for n in names) else "")
        warnings.warn(f"the estimate is on a bound: {where}. It minimizes Q within the bounds; "
                      "standard errors and t-tests assume an interior estimate and are not "
                      f"valid for a parameter on its bound{meaning}", OptimizationWarning,
                      stacklevel=4)
