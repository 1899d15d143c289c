"""The BLP estimator's procedure: nested fixed point GMM, one or two steps, multi-start.

theta_hat = argmin_theta N g(theta)' W g(theta), g = (1/N) Z~' xi(theta), beta concentrated out
(Berry, Levinsohn and Pakes 1995; Nevo 2000; Conlon and Gortmaker 2020). Step 1 uses
W = (Z~'Z~/N)^{-1}; step 2 re-optimizes from the step-1 estimate with W = S(xi_1)^{-1}, S the
robust (or clustered) moment covariance. The public entry point ``blpdemand.estimate`` wraps
the :class:`EstimationOutcome` of :func:`run_estimation` into a results object.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from blpdemand._types import AnyArray, FloatArray
from blpdemand.errors import ConvergenceWarning, OptimizationWarning, SpecificationError
from blpdemand.model.parameters import ParameterLayout
from blpdemand.model.problem import Problem
from blpdemand.solve.covariance import moment_covariance, weighting_matrix
from blpdemand.solve.fixed_point import FixedPointConfig
from blpdemand.solve.gmm import DemandObjective, ObjectiveEvaluation
from blpdemand.solve.optimizer import (
    BOUNDED,
    OPTIMIZERS,
    OptimizationResult,
    OptimizationStatus,
    minimize,
    newton_polish,
    run_jobs,
)
from blpdemand.solve.progress import Reporter, SerializedReporter

BOUND_UTILITY = 10.0  # default bounds: see default_bounds


@dataclass(frozen=True, slots=True, kw_only=True)
class EstimationConfig:
    """How to estimate (frozen, validated; stored in the results).

    Parameters
    ----------
    optimizer : one of ``l-bfgs-b`` (default), ``trust-constr``, ``bfgs`` (ignores bounds),
        ``slsqp``, or derivative-free ``nelder-mead``/``powell`` (warned about).
    gtol : the optimizer is asked for inf-norm(dQ/dtheta) <= gtol, and the run counts as
        converged when inf-norm(dQ/dtheta) <= gtol max(1, |Q|). Default 1e-6, relative to Q:
        line searches compare values of Q, which cannot resolve a decrease below about eps |Q|,
        so gradients below ~sqrt(2 eps |Q| lambda_max(H)) are not reliably reachable (1e-7 to
        1e-5 on the Nevo, BLP and cars examples, Q scaled by N); an absolute 1e-8 often ends
        "not converged" at the true minimum.
    max_iterations : optimizer iterations per run.
    bounds : {parameter name: (low, high)} overriding the data-derived default box
        (see ``default_bounds``: a parameter moves typical utility by at most 10, or twice
        its start).
    method : ``"1s"`` or ``"2s"`` GMM.
    weighting : moment covariance for the step-2 W: ``"robust"`` or ``"clustered"``.
    covariance : standard errors: ``"robust"`` (default), ``"unadjusted"``, ``"clustered"``.
    clusters : product-data column of cluster ids for clustered W or standard errors.
    center_moments : center per-observation moments in S (as PyBLP does by default).
    starts : extra random starting values drawn uniformly in the bounds (0 = only the user's).
    rng : seed of those draws.
    contraction : the inner loop's FixedPointConfig (method, tol, max_evaluations, ...), or a
        mapping of its fields; default FixedPointConfig() ("auto": compiled Anderson per market,
        SQUAREM where it stalls; tol 1e-14; threads=N solves blocks of markets on N threads).
    on_failure : ``"warn"`` (continue, warn at the end) or ``"raise"`` when the inner loop or
        the optimizer fails.
    start : ``"given"`` (default) starts from the user's sigma/pi; ``"approximation"`` replaces
        their nonzero elements by the Salanie-Wolak (2019) approximation's estimates
        (``approximation_start``; the pattern of free elements is kept).
    hessian : compute the Hessian of Q at the estimate (forward differences of the gradient);
        it is computed anyway when the optimizer stalled, to judge convergence.
    workers : threads running the starts at once (same results); keep BLAS at 1 thread each.
    runner : function running a list of independent jobs (default ``run_jobs``; overrides workers).
    """

    optimizer: str = "l-bfgs-b"
    gtol: float = 1e-6
    max_iterations: int = 1000
    bounds: Mapping[str, tuple[float, float]] | None = None
    method: Literal["1s", "2s"] = "1s"
    weighting: Literal["robust", "clustered"] = "robust"
    covariance: Literal["robust", "unadjusted", "clustered"] = "robust"
    clusters: str | None = None
    center_moments: bool = True
    start: Literal["given", "approximation"] = "given"
    starts: int = 0
    rng: int | None = 0
    contraction: FixedPointConfig | Mapping[str, Any] | None = None
    on_failure: Literal["warn", "raise"] = "warn"
    hessian: bool = True
    workers: int = 1
    runner: Callable[[Sequence[Callable[[], Any]]], list[Any]] | None = None

    def __post_init__(self) -> None:
        from blpdemand._checks import check_field_types

        check_field_types(self)  # int/float/bool fields typed first: the checks below compare
        choices: dict[str, tuple[Any, ...]] = {
            "optimizer": OPTIMIZERS, "method": ("1s", "2s"), "weighting": ("robust", "clustered"),
            "covariance": ("robust", "unadjusted", "clustered"), "on_failure": ("warn", "raise"),
            "start": ("given", "approximation")}
        for name, valid in choices.items():
            if getattr(self, name) not in valid:
                raise SpecificationError(f"{name}={getattr(self, name)!r} is unknown; valid: {valid}")
        if not (np.isfinite(self.gtol) and self.gtol > 0):
            raise SpecificationError(f"gtol={self.gtol!r} must be a positive number")
        if int(self.max_iterations) < 1 or int(self.starts) < 0:
            raise SpecificationError("max_iterations must be >= 1 and starts >= 0")
        if self.rng is not None and not (np.issubdtype(type(self.rng), np.integer)
                                         and int(self.rng) >= 0):
            raise SpecificationError(f"rng={self.rng!r} must be a non-negative integer seed or None")
        if not np.issubdtype(type(self.workers), np.integer) or self.workers < 1:  # bool is not
            raise SpecificationError(f"workers={self.workers!r} must be an integer >= 1 (threads)")
        if "clustered" in (self.weighting, self.covariance) and self.clusters is None:
            raise SpecificationError("clustered weighting or covariance needs clusters='<column>'")
        if self.contraction is None:
            object.__setattr__(self, "contraction", FixedPointConfig())
        elif not isinstance(self.contraction, FixedPointConfig):
            try:
                object.__setattr__(self, "contraction", FixedPointConfig(**dict(self.contraction)))
            except TypeError as error:
                raise SpecificationError(f"contraction options {dict(self.contraction)} are not "
                                         f"FixedPointConfig fields: {error}") from error
        if self.bounds is not None:
            object.__setattr__(self, "bounds", _bound_pairs(self.bounds))

    @property
    def fixed_point(self) -> FixedPointConfig:
        """The inner loop's configuration (``contraction`` after validation)."""
        assert isinstance(self.contraction, FixedPointConfig)
        return self.contraction


@dataclass(frozen=True, slots=True, kw_only=True)
class StartOutcome:
    """Where one starting value ended (multi-start table row)."""

    start: FloatArray
    optimization: OptimizationResult


@dataclass(frozen=True, slots=True, kw_only=True)
class EstimationOutcome:
    """Everything the estimator computed; wrapped by the public results object."""

    layout: ParameterLayout
    evaluation: ObjectiveEvaluation
    W: FloatArray
    steps: tuple[OptimizationResult, ...]
    starts: tuple[StartOutcome, ...]
    bounds: tuple[tuple[float, float], ...]
    hessian: FloatArray | None
    contraction_iterations: int
    contraction_evaluations: int
    contraction_failures: int
    time: float
    clusters: AnyArray | None
    seeds: dict[str, Any]


def _bound_pairs(bounds: Any) -> dict[str, tuple[float, float]]:
    """{name: (low, high)} as floats; anything else names the parameter and the form wanted."""
    out: dict[str, tuple[float, float]] = {}
    for name, pair in (bounds.items() if isinstance(bounds, Mapping) else [("bounds", bounds)]):
        try:
            low, high = pair
            out[str(name)] = (float(low), float(high))
        except (TypeError, ValueError) as exc:
            raise SpecificationError(f"bounds for {str(name)!r} must be a (low, high) pair of "
                                     f"numbers in a {{name: (low, high)}} dict, got {pair!r}") from exc
    return out


def default_bounds(problem: Problem, layout: ParameterLayout, theta0: FloatArray
                   ) -> list[tuple[float, float]]:
    """Symmetric boxes |theta_p| <= max(10 / (rms(x2_r) rms(v_c)), 2 |theta0_p|).

    v_c is the node or demographic column the parameter multiplies: a parameter may move a
    typical consumer's utility for a typical product by at most 10 (a share ratio of e^10),
    which keeps the optimizer away from regions where shares underflow.
    """
    if layout.P == 0:
        return []
    assert problem.agents is not None

    def rms(values: FloatArray) -> FloatArray:
        return np.sqrt(np.mean(values ** 2, axis=0)) if values.shape[1] else np.zeros(0)

    x2 = rms(problem.X2.values)
    nodes = rms(problem.nodes_for(layout))
    demo = rms(problem.agents.demographics) if layout.D else np.zeros(0)
    scales = [x2[r] * nodes[c] for r, c in zip(*layout.sigma_index)]
    scales += [x2[r] * demo[c] for r, c in zip(*layout.pi_index)]
    out = []
    for scale, start in zip(scales, theta0):
        bound = BOUND_UTILITY / scale if scale > 0 else 1e3
        bound = max(bound, 2 * abs(start))
        out.append((-bound, bound))
    return out


def resolve_bounds(problem: Problem, layout: ParameterLayout, theta0: FloatArray,
                   user: Mapping[str, tuple[float, float]] | None) -> list[tuple[float, float]]:
    """Default bounds with the user's overrides; starting values must lie inside."""
    bounds = default_bounds(problem, layout, theta0)
    names = layout.names
    for name, (lo, hi) in (user or {}).items():
        if name not in names:
            raise SpecificationError(f"bounds given for {name!r}, which is not a free parameter; "
                                     f"free parameters: {list(names)}")
        if not lo < hi:
            raise SpecificationError(f"bounds for {name!r} must satisfy low < high, got ({lo}, {hi})")
        bounds[names.index(name)] = (lo, hi)
    for name, value, (lo, hi) in zip(names, theta0, bounds):
        if not lo <= value <= hi:
            raise SpecificationError(f"the starting value {value} of {name} lies outside its bounds "
                                     f"({lo}, {hi}); change the start or the bounds")
    return bounds


def binding_bounds(bounds: Sequence[tuple[float, float]], config: EstimationConfig
                   ) -> list[tuple[float, float]]:
    """What binds an estimate: the box for optimizers that take bounds, else nothing (scipy's
    bfgs ignores bounds; the box still draws its random starts)."""
    if config.optimizer in BOUNDED:
        return list(bounds)
    return [(-np.inf, np.inf)] * len(bounds)


def start_box(bounds: Sequence[tuple[float, float]], defaults: Sequence[tuple[float, float]]
              ) -> tuple[FloatArray, FloatArray]:
    """Where random starts are drawn: the bounds, with an infinite side (e.g. a PyBLP-style
    (0, inf)) replaced by the default box's half-width d measured from the other side."""
    lo, hi = np.array(bounds, dtype=np.float64).reshape(-1, 2).T
    d = np.array(defaults, dtype=np.float64).reshape(-1, 2)[:, 1]
    lo, hi = (np.where(np.isfinite(lo), lo, np.minimum(-d, hi - d)),
              np.where(np.isfinite(hi), hi, np.maximum(d, lo + d)))
    return lo, hi


def _clusters(problem: Problem, config: EstimationConfig) -> AnyArray | None:
    if config.clusters is None:
        return None
    if not problem.products.has(config.clusters):
        raise SpecificationError(f"clusters column {config.clusters!r} is not in the product data")
    return problem.products.array(config.clusters)


def run_estimation(problem: Problem, layout: ParameterLayout, theta0: FloatArray,
                   config: EstimationConfig, reporter: Reporter | None = None) -> EstimationOutcome:
    """Run one- or two-step GMM from theta0 (plus random starts) and return the outcome."""
    if problem.agents is None or layout.P == 0:
        raise SpecificationError("estimate needs random coefficients: give sigma=/pi= with nonzero "
                                 "starting values (use estimate_logit for the plain logit)")
    _check_moments(problem, layout)
    clock = time.perf_counter()
    theta0 = _starting_theta(problem, layout, np.asarray(theta0, dtype=np.float64), config)
    bounds = resolve_bounds(problem, layout, np.asarray(theta0), config.bounds)
    binding = binding_bounds(bounds, config)
    clusters = _clusters(problem, config)
    runner = config.runner or (lambda jobs: run_jobs(jobs, workers=config.workers))
    reporter = reporter if reporter is None or config.workers == 1 else SerializedReporter(reporter)
    Z = problem.ZD_tilde
    W = weighting_matrix(Z.T @ Z / problem.N, what="instrument cross-product Z'Z/N")
    counts = {"iterations": 0, "evaluations": 0, "failures": 0}

    def make(step: int, start: int, W: FloatArray, delta0: FloatArray | None = None) -> DemandObjective:
        return DemandObjective(problem, layout, W, contraction=config.fixed_point,
                               on_failure=config.on_failure, reporter=reporter, step=step,
                               start=start, clock=clock, delta0=delta0)

    def tally(objective: DemandObjective) -> None:
        counts["iterations"] += objective.contraction_iterations
        counts["evaluations"] += objective.contraction_evaluations
        counts["failures"] += objective.failures

    # step 1, from the user's start and any random starts
    generator = np.random.default_rng(config.rng)
    lo, hi = start_box(bounds, default_bounds(problem, layout, np.asarray(theta0)))
    starts = [np.asarray(theta0, dtype=np.float64)]
    starts += [generator.uniform(lo, hi) for _ in range(config.starts)]

    Job = tuple[OptimizationResult, dict[str, int], FloatArray | None]

    def job(k: int, start: FloatArray) -> Callable[[], Job]:
        # a job shares no mutable state (threads may run jobs) and returns plain data for a
        # process pool: the result, work counts, and delta at the end (the next warm start)
        def run() -> Job:
            objective = make(1, k, W)
            result = minimize(objective, start, method=config.optimizer, bounds=bounds,
                              gtol=config.gtol, max_iterations=config.max_iterations,
                              on_iteration=objective.mark_iteration)
            work = {"iterations": objective.contraction_iterations,
                    "evaluations": objective.contraction_evaluations,
                    "failures": objective.failures}
            last = objective.last
            delta = last.delta if last is not None and np.all(np.isfinite(last.delta)) else None
            return result, work, delta
        return run

    ran = runner([job(k, s) for k, s in enumerate(starts)])
    for _, work, _ in ran:
        for key in counts:
            counts[key] += work[key]
    start_outcomes = tuple(StartOutcome(start=s, optimization=r) for s, (r, _, _) in zip(starts, ran))
    best = min(range(len(ran)),
               key=lambda k: ran[k][0].objective if np.isfinite(ran[k][0].objective) else np.inf)
    result = ran[best][0]
    objective = make(1, best, W, delta0=ran[best][2])
    _check_local_minima(start_outcomes)
    steps = [result]
    if config.method == "2s":
        if not result.converged:  # finish and judge a stalled step 1 as the last step below
            result, first_hessian = newton_polish(objective, objective.hessian, result,
                                                  objective.hessian(result.theta), binding,
                                                  config.gtol)
            steps[0] = result = _at_precision_floor(result, first_hessian)
            start_outcomes = tuple(dataclasses.replace(o, optimization=result) if k == best
                                   else o for k, o in enumerate(start_outcomes))
        first = objective.evaluate(result.theta, report=False)
        tally(objective)  # step 1's evaluation at its estimate (and Hessian, Newton steps)
        _check_step_one(first, result)
        S = moment_covariance(first.xi, Z, kind=config.weighting, clusters=clusters,
                              center=config.center_moments)
        W = weighting_matrix(S, what=f"{config.weighting} moment covariance at the step-1 estimate")
        objective = make(2, best, W, delta0=first.delta)
        result = minimize(objective, result.theta, method=config.optimizer, bounds=bounds,
                          gtol=config.gtol, max_iterations=config.max_iterations,
                          on_iteration=objective.mark_iteration)
        tally(objective)
        steps.append(result)
    before = (objective.contraction_iterations, objective.contraction_evaluations)
    # the Hessian is also computed, even with hessian=False, to judge a run that stalled on
    # line-search precision (see _at_precision_floor)
    needed = config.hessian or not result.converged
    evaluation = objective.evaluate(result.theta, report=False)
    hessian = objective.hessian(result.theta) if needed else None
    if hessian is not None:
        polished, hessian = newton_polish(objective, objective.hessian, steps[-1], hessian,
                                          binding, config.gtol)
        moved = not np.array_equal(polished.theta, steps[-1].theta)
        steps[-1] = result = polished
        if moved:
            evaluation = objective.evaluate(result.theta, report=False)
        steps[-1] = _at_precision_floor(steps[-1], hessian)
        if len(steps) == 1:  # the reported start's row of the starts table says the same
            start_outcomes = tuple(dataclasses.replace(o, optimization=steps[0]) if k == best
                                   else o for k, o in enumerate(start_outcomes))
    counts["iterations"] += objective.contraction_iterations - before[0]
    counts["evaluations"] += objective.contraction_evaluations - before[1]
    _check_optimization(steps, config)
    _check_final(evaluation, config)
    steps[-1] = _contraction_at_estimate(steps[-1], evaluation)
    return EstimationOutcome(
        layout=layout, evaluation=evaluation, W=W, steps=tuple(steps), starts=start_outcomes,
        bounds=tuple(binding), hessian=hessian, contraction_iterations=counts["iterations"],
        contraction_evaluations=counts["evaluations"], contraction_failures=counts["failures"],
        time=time.perf_counter() - clock, clusters=clusters,
        seeds={"starts": config.rng})


def _starting_theta(problem: Problem, layout: ParameterLayout, theta0: FloatArray,
                    config: EstimationConfig) -> FloatArray:
    """theta0, or the Salanie-Wolak approximation's start with the same free elements."""
    if config.start == "given":
        return theta0
    from blpdemand.solve.salanie_wolak import approximation_start

    sigma, pi = layout.unpack(theta0)
    sigma0, pi0 = approximation_start(problem, sigma=sigma, pi=pi if layout.D else None)
    return layout.pack(sigma0, pi0 if layout.D else None)


def _check_moments(problem: Problem, layout: ParameterLayout) -> None:
    """GMM needs at least as many moments as parameters: M_D >= K1 + P."""
    needed = problem.K1 + layout.P
    if problem.MD < needed:
        raise SpecificationError(
            f"under-identified: too few instruments: {problem.MD} moment(s) "
            f"{list(problem.ZD.names)} for {needed} parameter(s) "
            f"{list(problem.X1.names) + list(layout.names)}; add at least {needed - problem.MD} "
            "excluded instrument(s) or fix some Sigma/Pi elements at zero")


def _check_final(evaluation: ObjectiveEvaluation, config: EstimationConfig) -> None:
    """Failures at trial theta are only counted (the line search backs off from them); a failure
    at the estimate itself makes it unreliable: warn or raise."""
    failed = np.asarray(evaluation.failed_markets)
    if failed.size or not np.all(np.isfinite(evaluation.xi)):
        message = (f"the contraction failed at the estimate in market(s) {failed.tolist()[:10]}; "
                   "tighten the parameter bounds, change the start, or raise the contraction's "
                   "max_evaluations")
        if not failed.size:
            message = ("the inner loop converged at the estimate but d delta/d theta or xi is not "
                       "finite (utilities x2'(Sigma nu + Pi y) too large for float64?); rescale "
                       "the X2 columns, tighten the parameter bounds or change the start")
        if config.on_failure == "raise":
            from blpdemand.errors import ConvergenceError
            raise ConvergenceError(message)
        warnings.warn(message, ConvergenceWarning, stacklevel=4)


def _check_step_one(first: ObjectiveEvaluation, result: OptimizationResult) -> None:
    """Step 2's W needs the step-1 residuals: where the contraction failed (xi unconverged or
    not finite) the run stops with a named error instead of weighting by meaningless xi."""
    failed = np.asarray(first.failed_markets).tolist()
    if not failed and np.all(np.isfinite(first.xi)):
        return
    from blpdemand.errors import ConvergenceError
    where = (f"the contraction failed in market(s) {failed[:10]}" if failed
             else "the inner loop gave non-finite delta or d delta/d theta")
    raise ConvergenceError(
        f"GMM step 1 ended at theta={np.round(result.theta, 6).tolist()} (objective "
        f"{result.objective:.6g}, {result.status.value}) where {where}, so the step-2 weighting "
        "matrix cannot be computed from its residuals xi; change the starting values, tighten "
        "the parameter bounds, or raise the contraction's max_evaluations")


def _contraction_at_estimate(step: OptimizationResult,
                             evaluation: ObjectiveEvaluation) -> OptimizationResult:
    """An estimate where the inner loop failed (any market) is never 'converged': its
    objective comes from an unconverged or non-finite delta."""
    failed = np.asarray(evaluation.failed_markets).tolist()
    if not failed and np.all(np.isfinite(evaluation.xi)):
        return step
    what = f"market(s) {failed[:10]}" if failed else "non-finite xi"
    return dataclasses.replace(step, status=OptimizationStatus.NOT_CONVERGED,
                               message=f"{step.message}; the contraction failed at the estimate "
                                       f"({what})")


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


def _check_local_minima(starts: Sequence[StartOutcome]) -> None:
    """Warn when runs that converged ended at clearly different objective values."""
    values = [s.optimization.objective for s in starts if s.optimization.converged]
    if len(values) > 1 and (max(values) - min(values)) > 1e-4 * max(1.0, abs(min(values))):
        warnings.warn(f"multi-start found distinct local minima: converged objectives range from "
                      f"{min(values):.6g} to {max(values):.6g}; the best is reported, see "
                      "results.starts_table()", OptimizationWarning, stacklevel=4)


def _check_optimization(steps: Sequence[OptimizationResult], config: EstimationConfig) -> None:
    for k, step in enumerate(steps, start=1):
        if step.stayed_at_start:
            warnings.warn(f"GMM step {k}: the optimizer returned its starting values "
                          f"({step.iterations} iterations); the estimate may be the start, not a "
                          "minimum. Try another start or optimizer", OptimizationWarning, stacklevel=4)
        if not step.converged:
            message = (f"GMM step {k}: the optimizer stopped with gradient inf-norm "
                       f"{step.projected_gradient_norm:.3g} > gtol max(1, Q) = "
                       f"{config.gtol * max(1.0, abs(step.objective)):.3g} "
                       f"({step.message}); raise max_iterations, loosen gtol or change the start")
            if config.on_failure == "raise":
                from blpdemand.errors import ConvergenceError
                raise ConvergenceError(message)
            warnings.warn(message, OptimizationWarning, stacklevel=4)
