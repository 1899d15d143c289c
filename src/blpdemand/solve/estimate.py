"""The BLP estimator's procedure: nested fixed point GMM, one or two steps, multi-start.

theta_hat = argmin_theta N g(theta)' W g(theta), g = (1/N) Z~' xi(theta), beta concentrated out
(Berry, Levinsohn and Pakes 1995; Nevo 2000; Conlon and Gortmaker 2020). Step 1 uses
W = (Z~'Z~/N)^{-1}; step 2 re-optimizes from the step-1 estimate with W = S(xi_1)^{-1}, S the
robust (or clustered) moment covariance. The public entry point ``blpdemand.estimate`` wraps
the :class:`EstimationOutcome` of :func:`run_estimation` into a results object.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from blpdemand._types import ON_FAILURE, AnyArray, FloatArray, OnFailure
from blpdemand.errors import SpecificationError
from blpdemand.model.parameters import ParameterLayout
from blpdemand.model.problem import Problem
from blpdemand.solve.bounds import (
    _bound_pairs,
    binding_bounds,
    check_start,
    data_box,
    mark_at_bounds,
    resolve_bounds,
    start_box,
)
from blpdemand.solve.covariance import (
    cluster_ids,
    linear_names,
    stack_covariance,
    weighting_matrix,
)
from blpdemand.solve.fixed_point import FixedPointConfig
from blpdemand.solve.gmm import DemandObjective, ObjectiveEvaluation
from blpdemand.solve.jobs import check_executor, map_jobs, run_jobs
from blpdemand.solve.micro import initial_weighting, with_micro
from blpdemand.solve.moments import problem_stack
from blpdemand.solve.multistart import (
    StartJob,
    StartOutcome,
    check_agreement,
    run_start,
    same_minimum,
)
from blpdemand.solve.optimizer import (
    OPTIMIZERS,
    OptimizationResult,
    contraction_failed,
    newton_polish,
)
from blpdemand.solve.progress import Reporter, SerializedReporter
from blpdemand.solve.sharded_gmm import ShardedDemandObjective, ShardPool
from blpdemand.solve.verdicts import (
    at_precision_floor,
    check_final,
    check_optimization,
    check_step_one,
)


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
    max_iterations : optimizer iterations per run (default 5,000; l-bfgs-b needs 1,000-1,600
        on Nevo's badly scaled objective from sigma 0.5); a run that uses them all is reported
        "stopped at the iteration limit", never converged.
    bounds : None (default): the field's convention (PyBLP's): diagonal Sigma elements are
        standard deviations, bounded below by 0; every other parameter is free (see
        ``default_bounds``). ``"box"``: the data-derived box (``data_box``: a parameter moves
        typical utility by at most 10, or twice its start), which random starts are always
        drawn in. A mapping {parameter name: (low, high)} overrides the default for those
        parameters. Optimizers that take no bounds (bfgs) ignore them. An estimate on a bound
        is reported as such (status, summary, warning).
    method : ``"1s"`` or ``"2s"`` GMM.
    weighting : moment covariance for the step-2 W: ``"robust"`` or ``"clustered"``.
    covariance : standard errors: ``"robust"`` (default), ``"unadjusted"``, ``"clustered"``.
    clusters : product-data column of cluster ids for clustered W or standard errors.
    center_moments : center per-observation moments in S (as PyBLP does by default).
    starts : extra random starting values per GMM step, drawn uniformly in the bounds
        intersected with the data box. Default 4: every step runs 5 starts in all (the user's,
        or step 1's estimate in step 2, and 4 drawn), as the field advises; 0 = only the user's.
    rng : seed of those draws.
    contraction : the inner loop's FixedPointConfig (method, tol, max_evaluations, ...), or a
        mapping of its fields; default FixedPointConfig() ("auto": compiled Anderson per market,
        SQUAREM where it stalls; tol 1e-14; threads=N solves blocks of markets on N threads).
    on_failure : when the inner loop or the optimizer fails: ``"warn"`` (continue, warn at the
        end), ``"raise"`` (ConvergenceError), or ``"report"`` (continue; the failure is in the
        results' status and counts only).
    start : ``"given"`` (default) starts from the user's sigma/pi; ``"approximation"`` replaces
        their nonzero elements by the Salanie-Wolak (2019) approximation's estimates
        (``approximation_start``; the pattern of free elements is kept).
    hessian : compute the Hessian of Q at the estimate (exact on the demand side alone, from
        d delta / d theta and one adjoint pass; else forward differences of the gradient, as
        over market shards); it is computed anyway when the optimizer stalled, to judge
        convergence.
    workers : threads running the starts at once (same results); keep BLAS at 1 thread each.
    runner : function running a list of independent jobs (zero-argument callables; default:
        ``map_jobs`` with ``workers``/``executor``; overrides both).
    executor : runs the starts as jobs elsewhere: a ``concurrent.futures.Executor`` (e.g.
        ``ProcessPoolExecutor(2)``) or a ``dask.distributed.Client``; each start is a picklable
        ``StartJob`` run by ``run_start``, so the results equal the sequential run's (the same
        operations in the same order). Overrides ``workers``.
    shards : None (default), or split the markets into this many shards (``split_markets``)
        for the whole estimate: every contraction, gradient, the step-2 W, the Hessian and the
        standard errors' d xi/d theta are computed shard by shard (``solve.sharded_gmm``),
        on ``workers`` threads here, or on a ``dask.distributed.Client`` given as
        ``executor`` (shards scattered once; a process pool is refused). On Dask, ``workers``
        starts of a step run at once, each over all shards with its own inner loop per shard
        (same results; a worker then holds ``workers`` shard states, so memory grows with
        it); on threads here the starts run one after another. Demand side only: supply,
        micro moments and nests are refused.
    """

    optimizer: str = "l-bfgs-b"
    gtol: float = 1e-6
    max_iterations: int = 5000
    bounds: Mapping[str, tuple[float, float]] | Literal["box"] | None = None
    method: Literal["1s", "2s"] = "1s"
    weighting: Literal["robust", "clustered"] = "robust"
    covariance: Literal["robust", "unadjusted", "clustered"] = "robust"
    clusters: str | None = None
    center_moments: bool = True
    start: Literal["given", "approximation"] = "given"
    starts: int = 4
    rng: int | None = 0
    contraction: FixedPointConfig | Mapping[str, Any] | None = None
    on_failure: OnFailure = "warn"
    hessian: bool = True
    workers: int = 1
    runner: Callable[[Sequence[Callable[[], Any]]], list[Any]] | None = None
    executor: Any = None
    shards: int | None = None

    def __post_init__(self) -> None:
        from blpdemand._checks import check_field_types

        check_field_types(self)  # int/float/bool fields typed first: the checks below compare
        choices: dict[str, tuple[Any, ...]] = {
            "optimizer": OPTIMIZERS, "method": ("1s", "2s"), "weighting": ("robust", "clustered"),
            "covariance": ("robust", "unadjusted", "clustered"), "on_failure": ON_FAILURE,
            "start": ("given", "approximation")}
        for name, valid in choices.items():
            if getattr(self, name) not in valid:
                raise SpecificationError(
                    f"{name}={getattr(self, name)!r} is unknown; valid: {valid}")
        if not (np.isfinite(self.gtol) and self.gtol > 0):
            raise SpecificationError(f"gtol={self.gtol!r} must be a positive number")
        if int(self.max_iterations) < 1 or int(self.starts) < 0:
            raise SpecificationError("max_iterations must be >= 1 and starts >= 0")
        if self.rng is not None and not (np.issubdtype(type(self.rng), np.integer)
                                         and int(self.rng) >= 0):
            raise SpecificationError(
                f"rng={self.rng!r} must be a non-negative integer seed or None")
        if not np.issubdtype(type(self.workers), np.integer) or self.workers < 1:  # bool is not
            raise SpecificationError(f"workers={self.workers!r} must be an integer >= 1 (threads)")
        check_executor(self.executor)
        if self.shards is not None and (not np.issubdtype(type(self.shards), np.integer)
                                        or self.shards < 1):
            raise SpecificationError(f"shards={self.shards!r} must be an integer >= 1 or None")
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
        if self.bounds is not None and not (isinstance(self.bounds, str) and self.bounds == "box"):
            if isinstance(self.bounds, str):
                raise SpecificationError(f"bounds={self.bounds!r} is unknown; give None (the "
                                         "default), 'box', or {name: (low, high)}")
            object.__setattr__(self, "bounds", _bound_pairs(self.bounds))

    @property
    def fixed_point(self) -> FixedPointConfig:
        """The inner loop's configuration (``contraction`` after validation)."""
        assert isinstance(self.contraction, FixedPointConfig)
        return self.contraction


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
    supply_failures: int = 0  # trial theta where the supply side failed (log of c <= 0, ...)


def run_estimation(problem: Problem, layout: ParameterLayout, theta0: FloatArray,
                   config: EstimationConfig, reporter: Reporter | None = None) -> EstimationOutcome:
    """Run one- or two-step GMM (``_estimate``), over market shards with ``config.shards``."""
    if config.shards is None:
        return _estimate(problem, layout, theta0, config, reporter, None)
    with ShardPool(problem, config.shards, executor=config.executor,
                   workers=config.workers) as pool:
        return _estimate(problem, layout, theta0, config, reporter, pool)


def _estimate(problem: Problem, layout: ParameterLayout, theta0: FloatArray,
              config: EstimationConfig, reporter: Reporter | None,
              pool: ShardPool | None) -> EstimationOutcome:
    """Run one- or two-step GMM, each step from several starts, and return the outcome.

    Step 1 starts from theta0 and ``config.starts`` random draws; step 2 from step 1's
    estimate and as many new draws (the lecture: "check that 3-5 different starting values
    give the same theta; for 2-step GMM do this twice, once for each step"). Each step keeps
    its lowest objective among starts whose inner loop converged. With micro moments
    (``Problem(micro=...)``) step 1's W is an initial update at theta0, blockdiag(S_D(xi(theta0)),
    N Cov f(theta0))^{-1} (their block has no 2SLS analogue; as PyBLP's zeroth step).
    """
    if problem.agents is None or layout.P == 0:
        raise SpecificationError("estimate needs random coefficients: give sigma=/pi= with nonzero "
                                 "starting values (use estimate_logit for the plain logit)")
    _check_moments(problem, layout)
    clock = time.perf_counter()
    theta0 = _starting_theta(problem, layout, np.asarray(theta0, dtype=np.float64), config)
    _check_supply_start(problem, layout, theta0, config)
    bounds = resolve_bounds(problem, layout, np.asarray(theta0), config.bounds)
    binding = binding_bounds(bounds, config.optimizer)
    check_start(layout, theta0, binding)
    clusters = cluster_ids(problem, config.clusters)  # before the optimizer
    reporter = reporter if reporter is None or config.workers == 1 else SerializedReporter(reporter)
    Z = problem_stack(problem).Z  # the stacked instruments (demand, supply)
    W = weighting_matrix(Z.T @ Z / problem.N, what="instrument cross-product Z'Z/N")
    counts = {"iterations": 0, "evaluations": 0, "failures": 0, "supply_failures": 0}
    if problem.micro is not None:  # step 1's W: an initial update at theta0 (solve.micro)
        W = updated_weighting(problem, layout, theta0, W, config, clusters)

    def make(step: int, start: int, W: FloatArray, delta0: FloatArray | None = None
             ) -> DemandObjective | ShardedDemandObjective:
        if pool is not None:
            return pool.objective(problem, layout, W, contraction=config.fixed_point,
                                  on_failure=config.on_failure, reporter=reporter, step=step,
                                  start=start, clock=clock, delta0=delta0)
        return DemandObjective(problem, layout, W, contraction=config.fixed_point,
                               on_failure=config.on_failure, reporter=reporter, step=step,
                               start=start, clock=clock, delta0=delta0)

    def tally(objective: DemandObjective | ShardedDemandObjective) -> None:
        counts["iterations"] += objective.contraction_iterations
        counts["evaluations"] += objective.contraction_evaluations
        counts["failures"] += objective.failures
        counts["supply_failures"] += objective.supply_failures

    generator = np.random.default_rng(config.rng)
    lo, hi = start_box(bounds, data_box(problem, layout, np.asarray(theta0)))

    def step_starts(step: int, first: FloatArray, W: FloatArray, delta0: FloatArray | None
                    ) -> tuple[list[StartOutcome], int, FloatArray | None]:
        """Run the starts of one GMM step as jobs; the outcomes, the best one, its delta."""
        starts = [np.asarray(first, dtype=np.float64)]
        starts += [generator.uniform(lo, hi) for _ in range(config.starts)]

        jobs = [StartJob(problem=problem, layout=layout, W=W, theta0=start, step=step, index=k,
                         optimizer=config.optimizer, bounds=tuple(bounds),
                         binding=tuple(binding), gtol=config.gtol,
                         max_iterations=config.max_iterations, contraction=config.fixed_point,
                         on_failure=config.on_failure, delta0=delta0, clock=clock,
                         reporter=reporter if config.executor is None or pool else None)
                for k, start in enumerate(starts)]
        names = [f"start {k} of GMM step {step}" for k in range(len(jobs))]
        if pool is not None:  # each start over all the shards; on Dask, workers at a time
            ran = run_jobs([functools.partial(pool.run_start, job) for job in jobs],
                           workers=pool.starts_at_once, names=names)
        elif config.runner is not None:  # a caller's runner (the CLI's progress bar) takes closures
            ran = config.runner([functools.partial(run_start, job) for job in jobs])
        else:
            ran = map_jobs(run_start, jobs, workers=config.workers, executor=config.executor,
                           names=names)
        for run in ran:
            for key in counts:
                counts[key] += run.work[key]
        outcomes = [StartOutcome(start=start, optimization=run.result, step=step, beta=run.beta)
                    for start, run in zip(starts, ran)]
        best = min(range(len(ran)), key=lambda k: (ran[k].delta is None, _value(ran[k].result)))
        if not outcomes[best].optimization.converged:  # the same minimum, certified by another run
            certified = [k for k, o in enumerate(outcomes)
                         if o.optimization.converged and same_minimum(o, outcomes[best])]
            if certified:
                best = min(certified, key=lambda k: _value(ran[k].result))
        return outcomes, best, ran[best].delta

    # step 1, from the user's start and random starts
    outcomes, best, delta = step_starts(1, theta0, W, None)
    result = outcomes[best].optimization
    objective = make(1, best, W, delta0=delta)
    steps = [result]
    finished: list[StartOutcome] = []
    if config.method == "2s":
        if not result.converged:  # finish and judge a stalled step 1 as the last step below
            result, first_hessian = newton_polish(objective, objective.hessian, result,
                                                  objective.hessian(result.theta), binding,
                                                  config.gtol)
            steps[0] = result = at_precision_floor(result, first_hessian)
        first = objective.evaluate(result.theta, report=False)
        tally(objective)  # step 1's evaluation at its estimate (and Hessian, Newton steps)
        check_step_one(first, result)
        steps[0] = result = mark_at_bounds(result, binding)
        outcomes[best] = dataclasses.replace(outcomes[best], optimization=result, beta=first.beta)
        finished += check_agreement(outcomes, best, 1)
        S = stack_covariance(objective.stack, first.residuals, kind=config.weighting,
                             clusters=clusters, center=config.center_moments)
        S = with_micro(problem, layout, S, result.theta, first.delta)
        W = weighting_matrix(S, what=f"{config.weighting} moment covariance at the step-1 estimate")
        outcomes, best, delta = step_starts(2, result.theta, W, first.delta)
        result = outcomes[best].optimization
        objective = make(2, best, W, delta0=delta if delta is not None else first.delta)
        steps.append(result)
    before = (objective.contraction_iterations, objective.contraction_evaluations)
    # the Hessian is also computed, even with hessian=False, to judge a run that stalled on
    # line-search precision (see solve.verdicts.at_precision_floor)
    needed = config.hessian or not result.converged
    evaluation = objective.evaluate(result.theta, report=False)
    hessian = objective.hessian(result.theta) if needed and not evaluation.failed else None
    if hessian is not None:
        polished, hessian = newton_polish(objective, objective.hessian, steps[-1], hessian,
                                          binding, config.gtol)
        moved = not np.array_equal(polished.theta, steps[-1].theta)
        steps[-1] = result = polished
        if moved:
            evaluation = objective.evaluate(result.theta, report=False)
        steps[-1] = at_precision_floor(steps[-1], hessian)
    counts["iterations"] += objective.contraction_iterations - before[0]
    counts["evaluations"] += objective.contraction_evaluations - before[1]
    steps[-1] = mark_at_bounds(steps[-1], binding)
    if evaluation.failed:
        steps[-1] = contraction_failed(steps[-1], np.asarray(evaluation.failed_markets).tolist())
    outcomes[best] = dataclasses.replace(outcomes[best], optimization=steps[-1],
                                         beta=None if evaluation.failed else evaluation.beta)
    finished += check_agreement(outcomes, best, len(steps))
    check_optimization(steps, config, layout, binding)
    check_final(evaluation, config)
    return EstimationOutcome(
        layout=layout, evaluation=evaluation, W=W, steps=tuple(steps), starts=tuple(finished),
        bounds=tuple(binding), hessian=hessian, contraction_iterations=counts["iterations"],
        contraction_evaluations=counts["evaluations"], contraction_failures=counts["failures"],
        time=time.perf_counter() - clock, clusters=clusters,
        seeds={"starts": config.rng}, supply_failures=counts["supply_failures"])


def updated_weighting(problem: Problem, layout: ParameterLayout, theta: FloatArray,
                      W_D: FloatArray, config: EstimationConfig,
                      clusters: AnyArray | None) -> FloatArray:
    """W = blockdiag(S(r(theta)), S_M(theta))^{-1} at theta, S over the product-level blocks
    (demand, and supply with one): the initial update that micro moments need before step 1
    (their block has no 2SLS analogue; PyBLP's zeroth step)."""
    zeroth = DemandObjective(problem, layout, initial_weighting(problem, W_D),
                             contraction=config.fixed_point, on_failure=config.on_failure)
    evaluation = zeroth.evaluate(theta, report=False, adjoint=True, gradient=False)
    if evaluation.failed:
        from blpdemand.errors import ConvergenceError
        raise ConvergenceError(
            f"the contraction failed at the starting theta in market(s) "
            f"{np.asarray(evaluation.failed_markets).tolist()[:10]}, so the micro moments' "
            "initial weighting matrix cannot be computed; change the starting values")
    S = stack_covariance(zeroth.stack, evaluation.residuals, kind=config.weighting,
                         clusters=clusters, center=config.center_moments)
    S = with_micro(problem, layout, S, theta, evaluation.delta)
    return weighting_matrix(S, what=f"{config.weighting} moment covariance at the start")


def _value(result: OptimizationResult) -> float:
    return result.objective if np.isfinite(result.objective) else np.inf


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
    """GMM needs at least as many moments as parameters: M_D >= K1 + P, or with a supply side
    M_D + M_S (+ M_C) >= K1 + K3 + P (the supply moments and covariance restrictions identify
    theta too)."""
    supply = problem.supply
    covariance = None if supply is None else supply.covariance
    moments = problem_stack(problem).M
    needed = problem.K1 + layout.P + (0 if supply is None else supply.K3)
    if moments < needed:
        names = list(problem.ZD.names) + ([] if supply is None else list(supply.ZS.names))
        names += [] if covariance is None else [f"xi*omega*{c}" for c in covariance.columns]
        raise SpecificationError(
            f"under-identified: too few instruments: {moments} moment(s) {names} for {needed} "
            f"parameter(s) {list(linear_names(problem)) + list(layout.names)}; add at least "
            f"{needed - moments} excluded instrument(s) or fix some Sigma/Pi elements at zero")


def _check_supply_start(problem: Problem, layout: ParameterLayout, theta0: FloatArray,
                        config: EstimationConfig) -> None:
    """The supply side must be defined at the start (positive log costs, regular first-order
    conditions): the optimizer cannot move from a theta where Q is only a penalty."""
    if problem.supply is None:
        return
    Z = problem_stack(problem).Z
    objective = DemandObjective(problem, layout, initial_weighting(problem, np.eye(Z.shape[1])),
                                contraction=config.fixed_point, on_failure="warn")
    start = objective.evaluate(theta0, report=False, gradient=False)
    if start.costs is not None and start.costs.failure is not None:
        raise SpecificationError(f"at the starting values: {start.costs.failure}; start from "
                                 "other sigma/pi (a larger price sensitivity) or clip costs")
