"""The outer loop: scipy optimizers behind one record, and the seam that runs independent jobs.

Gradient-based methods use the analytic gradient of Q(theta). Convergence is judged on the
inf-norm of the (projected, when bounded) gradient: max_k |dQ/dtheta_k| <= gtol max(1, |Q|).
``bfgs`` ignores bounds (as in scipy); ``slsqp`` has no gradient tolerance, so its ``ftol`` is
set to gtol^2 and convergence is still judged on the gradient. Derivative-free methods
(nelder-mead, powell) are allowed but warned about (Knittel and Metaxoglou 2014 on BLP
optimizers).
``bfgs`` and ``l-bfgs-b`` runs that stop short of gtol within their iteration budget (a line
search losing precision on a stale curvature estimate) are restarted once from where they
stopped; the restart is kept when Q does not rise.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import scipy.optimize

from blpdemand._types import FloatArray, Status
from blpdemand.errors import OptimizationWarning, SpecificationError

OPTIMIZERS = ("l-bfgs-b", "trust-constr", "bfgs", "slsqp", "nelder-mead", "powell")
DERIVATIVE_FREE = ("nelder-mead", "powell")
BOUNDED = ("l-bfgs-b", "trust-constr", "slsqp", "nelder-mead", "powell")
#: quasi-Newton optimizers restarted once from where they stopped short of gtol (line search)
RESTARTED = ("l-bfgs-b", "bfgs")

T = TypeVar("T")


@dataclass(frozen=True, slots=True, kw_only=True)
class OptimizationResult:
    """One run of the optimizer.

    Attributes
    ----------
    start, theta : (P,) starting and final parameters; objective : Q(theta);
    gradient : (P,) dQ/dtheta at theta; projected_gradient_norm : inf-norm of the gradient with
    components pushing into an active bound removed; status, message : outcome; iterations,
    evaluations : optimizer iterations and objective evaluations.
    """

    start: FloatArray
    theta: FloatArray
    objective: float
    gradient: FloatArray
    projected_gradient_norm: float
    status: Status
    message: str
    iterations: int
    evaluations: int

    @property
    def converged(self) -> bool:
        return self.status.converged

    @property
    def stopped_by_limit(self) -> bool:
        """True when an iteration or evaluation limit ended the run (never 'converged')."""
        return self.status.at_limit

    @property
    def stayed_at_start(self) -> bool:
        """True when no step was taken (a known trap: 'converged' at the starting values)."""
        if self.status is Status.NOT_OPTIMIZED or self.theta.size == 0:
            return False
        return self.iterations == 0 or bool(np.array_equal(self.theta, self.start))


def projected_gradient(theta: FloatArray, gradient: FloatArray,
                       bounds: Sequence[tuple[float, float]] | None) -> FloatArray:
    """Zero the gradient components that point out of an active bound (KKT for boxes)."""
    g = np.array(gradient, dtype=np.float64)
    if bounds is None:
        return g
    lo = np.array([b[0] for b in bounds])
    hi = np.array([b[1] for b in bounds])
    scale = np.maximum(1.0, np.abs(theta))
    at_lo = (theta - lo) <= 1e-10 * scale
    at_hi = (hi - theta) <= 1e-10 * scale
    g[at_lo & (g > 0)] = 0.0
    g[at_hi & (g < 0)] = 0.0
    return g


def minimize(fun: Callable[[FloatArray], tuple[float, FloatArray]], theta0: FloatArray, *,
             method: str, bounds: Sequence[tuple[float, float]] | None, gtol: float,
             max_iterations: int, on_iteration: Callable[[], None] | None = None
             ) -> OptimizationResult:
    """Minimize Q with scipy; ``fun(theta) -> (Q, dQ/dtheta)``; ``on_iteration()`` after each
    optimizer iteration (for progress reports)."""
    if method not in OPTIMIZERS:
        raise SpecificationError(f"optimizer {method!r} is unknown; use one of {OPTIMIZERS}")
    theta0 = np.array(theta0, dtype=np.float64)
    counter = {"iterations": 0, "evaluations": 0}

    def counted(theta: FloatArray) -> tuple[float, FloatArray]:
        counter["evaluations"] += 1
        value, grad = fun(np.asarray(theta, dtype=np.float64))
        return float(value), np.asarray(grad, dtype=np.float64)

    if theta0.size == 0:
        value, grad = counted(theta0)
        return OptimizationResult(start=theta0, theta=theta0, objective=value, gradient=grad,
                                  projected_gradient_norm=0.0,
                                  status=Status.NO_PARAMETERS,
                                  message="no nonlinear parameters", iterations=0, evaluations=1)

    def callback(*_: Any) -> None:
        counter["iterations"] += 1
        if on_iteration is not None:
            on_iteration()

    used_bounds = bounds if method in BOUNDED else None
    options: dict[str, Any] = {"maxiter": max_iterations}
    kwargs: dict[str, Any] = {}
    if method == "l-bfgs-b":
        options.update(gtol=gtol, ftol=0.0, maxfun=max(15_000, 20 * max_iterations))
    elif method == "bfgs":
        options.update(gtol=gtol, norm=np.inf)
    elif method == "trust-constr":
        options.update(gtol=gtol, xtol=1e-14)
    elif method == "slsqp":
        options.update(ftol=gtol ** 2)
    else:
        warnings.warn(f"optimizer {method!r} does not use the analytic gradient and is slow and "
                      "unreliable for BLP (Knittel and Metaxoglou 2014); prefer 'l-bfgs-b'",
                      OptimizationWarning, stacklevel=3)
        options.update(xatol=1e-10, fatol=1e-12) if method == "nelder-mead" else options.update(
            xtol=1e-10, ftol=1e-12)
    if method in DERIVATIVE_FREE:
        objective: Callable[..., Any] = lambda theta: counted(theta)[0]
    else:
        objective = counted
        kwargs["jac"] = True
    if used_bounds is not None and method == "trust-constr":
        kwargs["bounds"] = scipy.optimize.Bounds([b[0] for b in used_bounds],
                                                 [b[1] for b in used_bounds])
    elif used_bounds is not None:
        kwargs["bounds"] = list(used_bounds)
    def run(start: FloatArray, budget: int) -> tuple[Any, FloatArray, float, FloatArray, float]:
        options["maxiter"] = budget
        with _quiet_optimize_warnings():
            raw = scipy.optimize.minimize(objective, start,
                                          method=method.replace("l-bfgs-b", "L-BFGS-B"),
                                          callback=callback, options=options, **kwargs)
        theta = np.asarray(raw.x, dtype=np.float64)
        value, grad = counted(theta)
        if used_bounds is not None:
            theta, value, grad = _snap_to_bounds(counted, theta, value, grad, used_bounds)
        norm = float(np.max(np.abs(projected_gradient(theta, grad, used_bounds))))
        return raw, theta, value, grad, norm

    def done(value: float, norm: float) -> bool:
        # scipy is asked for the absolute gtol; convergence is judged relative to the objective's
        # scale, which bounds the gradient a line search on Q can resolve
        # (see EstimationConfig.gtol)
        return norm <= gtol * max(1.0, abs(value)) and bool(np.isfinite(value)) and value < 1e10

    max_evaluations = options.get("maxfun")

    def limited(raw: Any, iterations: int) -> Status | None:
        # scipy reports a limit by status code only (1 for these methods, 9 for slsqp), so the
        # counts are read directly: a run that used its whole budget was stopped by it
        if iterations >= max_iterations:
            return Status.MAX_ITERATIONS
        if max_evaluations is not None and int(getattr(raw, "nfev", 0) or 0) >= max_evaluations:
            return Status.MAX_EVALUATIONS
        return None

    raw, theta, value, grad, norm = run(theta0, max_iterations)
    last = raw
    iterations = int(getattr(raw, "nit", counter["iterations"]) or counter["iterations"])
    message = str(raw.message)
    if (method in RESTARTED and not done(value, norm) and np.isfinite(value)
            and limited(raw, iterations) is None):
        # a quasi-Newton run that stopped on line-search precision (its curvature estimate gone
        # stale) usually finishes from the same point with a fresh one: restart once there
        raw2, theta2, value2, grad2, norm2 = run(theta, max_iterations - iterations)
        iterations += int(getattr(raw2, "nit", 0) or 0)
        last = raw2
        if np.isfinite(value2) and value2 <= value + 1e-12 * max(1.0, abs(value)):
            theta, value, grad, norm = theta2, value2, grad2, norm2
            message = f"{raw2.message} (restarted once after: {raw.message})"
    converged = done(value, norm) if method not in DERIVATIVE_FREE else (
        bool(raw.success) and bool(np.isfinite(value)) and value < 1e10)
    status = Status.CONVERGED if converged else Status.NOT_CONVERGED
    limit = limited(last, iterations)
    if limit is not None:
        status = limit
        budget = (f"max_iterations = {max_iterations}"
                  if limit is Status.MAX_ITERATIONS
                  else f"{max_evaluations} objective evaluations")
        message = f"{message} ({limit.value}: {budget})"
    return OptimizationResult(
        start=theta0, theta=theta, objective=value, gradient=grad, projected_gradient_norm=norm,
        status=status, message=message, iterations=iterations,
        evaluations=counter["evaluations"])


NEWTON_POLISH_STEPS = 3


def newton_polish(fun: Callable[[FloatArray], tuple[float, FloatArray]],
                  hessian_at: Callable[[FloatArray], FloatArray], step: OptimizationResult,
                  hessian: FloatArray, bounds: Sequence[tuple[float, float]] | None,
                  gtol: float) -> tuple[OptimizationResult, FloatArray]:
    """Finish a run that stopped short of gtol with projected Newton steps on its Hessian.

    Parameters at a bound with the gradient pushing out through it are held (active set A);
    the others take d_F = -H_FF^{-1} g_F, the step clipped to the bounds, kept only when Q
    falls, with H refreshed after each kept step; at most ``NEWTON_POLISH_STEPS``, stopping once
    max |projected g| <= gtol max(1, |Q|) (Bertsekas 1982 on projected Newton methods).
    Quasi-Newton line searches can stall where the Newton decrement g' H^{-1} g / 2 (the fall
    of Q a Newton step promises) is still far above Q's noise: along a flat direction (small
    eigenvalue of H) a gradient that looks small is far from the minimum. Only with H_FF
    positive definite (the second-order condition). Returns the step (its theta unchanged if no
    Newton step was kept; evaluations count every proposal) and the Hessian at its theta.
    """
    if (step.converged or step.stopped_by_limit or step.theta.size == 0
            or not np.all(np.isfinite(hessian)) or not np.isfinite(step.objective)):
        return step, hessian  # a limit the user set is respected: no further steps
    box = bounds if bounds is not None else [(-np.inf, np.inf)] * step.theta.size
    lo, hi = np.array([b[0] for b in box]), np.array([b[1] for b in box])
    theta, value, grad, H = step.theta, step.objective, step.gradient, hessian
    taken = calls = 0
    norm, fresh = step.projected_gradient_norm, True  # fresh: H is the Hessian at theta
    for _ in range(NEWTON_POLISH_STEPS):
        if not fresh:
            H, fresh = hessian_at(theta), True
        scale = np.maximum(1.0, np.abs(theta))
        free = ~((((theta - lo) <= 1e-10 * scale) & (grad > 0))
                 | (((hi - theta) <= 1e-10 * scale) & (grad < 0)))
        H_free = H[np.ix_(free, free)]
        if not free.any() or not np.all(np.isfinite(H_free)) \
                or np.linalg.eigvalsh(H_free).min() <= 0:
            break
        direction = np.zeros_like(theta)
        direction[free] = -np.linalg.solve(H_free, grad[free])
        proposal = np.clip(theta + direction, lo, hi)
        new_value, new_grad = fun(proposal)
        calls += 1
        if not (np.isfinite(new_value) and new_value < value):
            break
        theta, value, grad, fresh = proposal, new_value, new_grad, False
        taken += 1
        norm = float(np.max(np.abs(projected_gradient(theta, grad, bounds))))
        if norm <= gtol * max(1.0, abs(value)):
            break
    if not taken:
        return (dataclasses.replace(step, evaluations=step.evaluations + calls) if calls
                else step), hessian
    converged = norm <= gtol * max(1.0, abs(value))
    polished = dataclasses.replace(
        step, theta=theta, objective=value, gradient=grad, projected_gradient_norm=norm,
        status=Status.CONVERGED if converged else Status.NOT_CONVERGED,
        message=f"{step.message}; then {taken} Newton step(s) on the Hessian",
        iterations=step.iterations + taken, evaluations=step.evaluations + calls)
    return polished, (H if fresh else hessian_at(theta))


SNAP_BAND = 1e-4  # relative distance to a bound within which an interior-point stop is snapped


def _snap_to_bounds(fun: Callable[[FloatArray], tuple[float, FloatArray]], theta: FloatArray,
                    value: float, grad: FloatArray, bounds: Sequence[tuple[float, float]]
                    ) -> tuple[FloatArray, float, FloatArray]:
    """Move parameters that stopped just inside a bound they push against onto it.

    Interior-point methods (trust-constr) stop a small distance inside a binding bound (1e-5
    seen), where the projected gradient cannot vanish. Components within ``SNAP_BAND`` (relative)
    of a bound, with the gradient pointing out through it, are set to the bound; the snapped
    point is kept when Q does not rise (one extra evaluation, only in that case).
    """
    lo = np.array([b[0] for b in bounds])
    hi = np.array([b[1] for b in bounds])
    band = SNAP_BAND * np.maximum(1.0, np.abs(theta))
    to_lo = (theta > lo) & (theta - lo <= band) & (grad > 0)
    to_hi = (theta < hi) & (hi - theta <= band) & (grad < 0)
    if not (to_lo.any() or to_hi.any()):
        return theta, value, grad
    snapped = np.where(to_lo, lo, np.where(to_hi, hi, theta))
    snapped_value, snapped_grad = fun(snapped)
    if np.isfinite(snapped_value) and snapped_value <= value + 1e-12 * max(1.0, abs(value)):
        return snapped, snapped_value, snapped_grad
    return theta, value, grad


class _SharedQuiet:
    """The one ``catch_warnings`` shared by the optimizers running now, and their count."""

    lock = threading.Lock()
    context: warnings.catch_warnings | None = None
    users = 0


@contextlib.contextmanager
def _quiet_optimize_warnings() -> Iterator[None]:
    """Ignore scipy's OptimizeWarning while any optimizer runs, safely across threads.

    ``warnings.catch_warnings`` saves and restores the process-wide filter list, so optimizers
    entering and leaving it in overlapping order on several threads would restore each other's
    lists (an optimizer would lose the filter, and a stale list would outlive the run). Here the
    first optimizer in installs the filter and the last one out restores the list, under a lock.
    Where warnings are context-local (Python 3.14's ``context_aware_warnings``), each thread
    uses its own ``catch_warnings``.
    """
    if getattr(sys.flags, "context_aware_warnings", False):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", scipy.optimize.OptimizeWarning)
            yield
        return
    shared = _SharedQuiet
    with shared.lock:
        if shared.users == 0:
            shared.context = warnings.catch_warnings()
            shared.context.__enter__()
            warnings.simplefilter("ignore", scipy.optimize.OptimizeWarning)
        shared.users += 1
    try:
        yield
    finally:
        with shared.lock:
            shared.users -= 1
            if shared.users == 0 and shared.context is not None:
                shared.context.__exit__(None, None, None)
                shared.context = None


def contraction_failed(step: OptimizationResult,
                       failed_markets: Sequence[Any]) -> OptimizationResult:
    """An estimate where the inner loop failed (any market, or non-finite xi when
    ``failed_markets`` is empty) is never 'converged': Q there is a penalty, not an objective."""
    failed = list(failed_markets)
    what = f"market(s) {failed[:10]}" if failed else "non-finite xi"
    return dataclasses.replace(step, status=Status.CONTRACTION_FAILED,
                               objective=np.nan,
                               message=f"{step.message}; the contraction failed at the estimate "
                                       f"({what})")
