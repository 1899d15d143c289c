"""Checks of the optimizer's steps: the line-search precision floor and step warnings.

A run that stopped where a line search on Q can no longer resolve a decrease is at the minimum
when the Hessian is positive definite; every step that did not converge is warned about (or
raised, ``on_failure="raise"``), and an estimate on a bound is named.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from blpdemand._types import FloatArray
from blpdemand.errors import OptimizationWarning
from blpdemand.model.parameters import ParameterLayout
from blpdemand.solve.bounds import at_bounds
from blpdemand.solve.optimizer import OptimizationResult, OptimizationStatus

if TYPE_CHECKING:
    from blpdemand.solve.estimate import EstimationConfig


def _at_precision_floor(step: OptimizationResult, hessian: FloatArray) -> OptimizationResult:
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
        return dataclasses.replace(step, status=OptimizationStatus.CONVERGED,
                                   message=f"{step.message} (gradient at the line-search "
                                           f"precision floor {floor:.2g})")
    return step


def _check_optimization(steps: Sequence[OptimizationResult], config: EstimationConfig,
                        layout: ParameterLayout, bounds: Sequence[tuple[float, float]]) -> None:
    """Warn (or raise) for each step that did not converge; name the parameters of an
    estimate on a bound. A failed inner loop at the estimate is ``_check_final``'s."""
    failures: list[str] = []
    for k, step in enumerate(steps, start=1):
        if step.status is OptimizationStatus.CONTRACTION_FAILED:
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
        elif step.status is OptimizationStatus.NOT_CONVERGED:
            failures.append(f"GMM step {k}: the optimizer stopped with projected gradient inf-norm "
                            f"{step.projected_gradient_norm:.3g} > gtol max(1, Q) = "
                            f"{config.gtol * max(1.0, abs(step.objective)):.3g} "
                            f"({step.message}); raise max_iterations, loosen gtol or change the "
                            "start")
    for message in failures:
        if config.on_failure == "raise":
            from blpdemand.errors import ConvergenceError
            raise ConvergenceError(message)
        warnings.warn(message, OptimizationWarning, stacklevel=4)
    last = steps[-1]
    if last.status is OptimizationStatus.AT_BOUND:
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
