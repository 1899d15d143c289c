"""The estimator over market shards: GMM steps, starts, Hessian and standard errors.

``EstimationConfig(shards=k)`` splits the problem's markets into k shards (``split_markets``)
placed once: held here and run on ``workers`` threads, or scattered to the workers of a
``dask.distributed.Client``. Each start of each GMM step minimizes Q with a
:class:`ShardedDemandObjective` (theta broadcast, per-shard Z'delta and adjoint gradients
gathered, ``solve.shards``); at the few thetas where the estimator needs more (a start's end,
step 1's estimate for the step-2 W = S(xi)^{-1}, the final estimate for the sandwich) the
shards send delta (N,) and, for standard errors, d delta/d theta (N, P), and the client forms
xi, beta, g, Q and d xi/d theta with the one-process formulas (``solve.gmm``):
beta = (X1~'Z W Z'X1~)^{-1} X1~'Z W Z'delta~, xi = delta~ - X1~ beta, g = Z~'xi / N,
dQ/dtheta = 2 (Z~' d xi/d theta)' W g. Demand side only (Berry, Levinsohn and Pakes 1995).
"""

from __future__ import annotations

import time
from typing import Any, Self

import numpy as np

from blpdemand._types import FloatArray, OnFailure
from blpdemand.errors import ConvergenceError, SpecificationError
from blpdemand.model.parameters import ParameterLayout
from blpdemand.model.problem import Problem
from blpdemand.solve.fixed_point import FixedPointConfig
from blpdemand.solve.gmm import ObjectiveEvaluation, hessian_from
from blpdemand.solve.moments import problem_stack
from blpdemand.solve.multistart import StartJob, StartRun, run_start_on
from blpdemand.solve.progress import EvaluationRecord, Reporter, SilentReporter
from blpdemand.solve.shard_workers import is_dask, place
from blpdemand.solve.shards import (
    ShardedObjective,
    ShardEvaluation,
    split_markets,
)

__all__ = ["ShardPool", "ShardedDemandObjective"]


class ShardedDemandObjective:
    """Q(theta), dQ/dtheta and the estimator's evaluations over market shards, with the
    interface of :class:`blpdemand.solve.gmm.DemandObjective` (demand side only)."""

    def __init__(self, problem: Problem, layout: ParameterLayout, W: FloatArray,
                 pool: ShardPool, *, contraction: FixedPointConfig | None = None,
                 on_failure: OnFailure = "warn", reporter: Reporter | None = None,
                 step: int = 1, start: int = 0, clock: float | None = None,
                 delta0: FloatArray | None = None) -> None:
        self.problem, self.layout, self.W, self.W_full = problem, layout, W, W
        self.stack = problem_stack(problem)
        self.Z = self.stack.Z
        self.iv = self.stack.linear_iv(W)
        if delta0 is not None and not np.all(np.isfinite(delta0)):
            delta0 = None  # as DemandObjective: a warm start with a failed market is not used
        self.sharded = ShardedObjective(pool.parts, layout, W, contraction=contraction,
                                        executor=pool.executor, workers=pool.workers,
                                        delta0=delta0, sizes=pool.sizes)
        self.on_failure = on_failure
        self.reporter = reporter if reporter is not None else SilentReporter()
        self.step, self.start = step, start
        self.clock = time.perf_counter() if clock is None else clock
        self.evaluations = self.iterations = self.failures = 0
        self.supply_failures = 0  # shards carry no supply side (split_markets refuses one)
        self.contraction_iterations = self.contraction_evaluations = 0
        self.last: ObjectiveEvaluation | None = None

    def _shards_at(self, theta: FloatArray, *, report: bool) -> ShardEvaluation:
        """Q and dQ/dtheta from the shards (counted and reported once per new theta)."""
        before = self.sharded.evaluations
        evaluation = self.sharded.evaluate(theta)
        if self.sharded.evaluations == before:
            return evaluation
        self.evaluations += 1
        self.contraction_iterations += evaluation.contraction_iterations
        self.contraction_evaluations += evaluation.contraction_evaluations
        if evaluation.failed:
            self.failures += 1
            if self.on_failure == "raise":
                raise ConvergenceError(
                    f"the contraction did not converge in market(s) "
                    f"{evaluation.failed_markets.tolist()[:10]} at theta="
                    f"{evaluation.theta.tolist()}; loosen the contraction tolerance, raise its "
                    "maximum iterations, tighten the parameter bounds, or use on_failure='warn'")
        if report:
            self.reporter.on_evaluation(EvaluationRecord(
                step=self.step, start=self.start, evaluation=self.evaluations,
                iteration=self.iterations, time=time.perf_counter() - self.clock,
                contraction_iterations=evaluation.contraction_iterations,
                contraction_evaluations=evaluation.contraction_evaluations,
                objective=evaluation.objective,
                gradient_norm=float(np.max(np.abs(evaluation.gradient), initial=0.0)),
                theta=evaluation.theta))
        return evaluation

    def evaluate(self, theta: FloatArray, *, report: bool = True, adjoint: bool = False,
                 gradient: bool = True) -> ObjectiveEvaluation:
        """Everything at theta, as ``DemandObjective.evaluate``: delta gathered from the
        shards, and d delta/d theta too unless ``adjoint`` (then the shards' gradient)."""
        theta = np.array(theta, dtype=np.float64)
        last = self.last
        if last is not None and np.array_equal(theta, last.theta) and (
                adjoint or not last.adjoint):
            return last
        shards = self._shards_at(theta, report=report)
        p, N, P = self.problem, self.problem.N, self.layout.P
        if shards.failed:
            nan = np.full(N, np.nan)
            self.last = ObjectiveEvaluation(
                theta=theta, delta=nan, xi=nan, beta=np.full(p.K1, np.nan),
                g=np.full(self.Z.shape[1], np.nan), objective=shards.objective,
                gradient=np.zeros(P), xi_jacobian=np.full((N, P), np.nan),
                contraction_iterations=shards.contraction_iterations,
                contraction_evaluations=shards.contraction_evaluations,
                failed_markets=shards.failed_markets)
            return self.last
        delta = self.sharded.gather(theta)
        delta_tilde = p.residualize(delta)
        beta = self.iv.beta(delta_tilde)
        xi = delta_tilde - p.X1_tilde @ beta
        g = self.stack.mean_moments((xi,))
        if adjoint:
            xi_jacobian, grad = np.zeros((N, 0)), shards.gradient
        else:
            xi_jacobian = p.residualize(self.sharded.gather(theta, jacobian=True))
            grad = 2.0 * (self.Z.T @ xi_jacobian).T @ (self.W @ g)
        self.last = ObjectiveEvaluation(
            theta=theta, delta=delta, xi=xi, beta=beta, g=g, objective=float(N * g @ self.W @ g),
            gradient=grad, xi_jacobian=xi_jacobian,
            contraction_iterations=shards.contraction_iterations,
            contraction_evaluations=shards.contraction_evaluations,
            failed_markets=shards.failed_markets, adjoint=adjoint)
        return self.last

    def __call__(self, theta: FloatArray) -> tuple[float, FloatArray]:
        evaluation = self._shards_at(np.asarray(theta, dtype=np.float64), report=True)
        return evaluation.objective, evaluation.gradient

    def objective(self, theta: FloatArray) -> float:
        """Q(theta) (the shards' adjoint gradient comes with it)."""
        return self(theta)[0]

    def gradient(self, theta: FloatArray) -> FloatArray:
        """dQ/dtheta."""
        return self(theta)[1]

    def hessian(self, theta: FloatArray, *, step: float = 1e-6) -> FloatArray:
        """The exact Hessian as ``DemandObjective.exact_hessian`` forms it, from the shards'
        parts: H = 2N G'WG + 2 v' d^2 delta, G = (I - Z'X1 proj) Z~' M d delta/d theta / N.
        Where a shard cannot form them, forward differences of the shards' gradient,
        symmetrized (the steps of ``DemandObjective.hessian``, h_k = step max(1, |theta_k|))."""
        theta = np.asarray(theta, dtype=np.float64)
        parts = self.sharded.second_order(theta)
        if parts is not None:
            second, ZJ = parts
            sharded = self.sharded
            G = (ZJ - sharded.ZX @ (sharded.projector @ ZJ)) / sharded.N
            return hessian_from(G, self.W, sharded.N, second)
        H = np.zeros((theta.size, theta.size))
        base = self._shards_at(theta, report=False).gradient
        for k in range(theta.size):
            up = theta.copy()
            up[k] += step * max(1.0, abs(theta[k]))
            H[:, k] = (self._shards_at(up, report=False).gradient - base) / (up[k] - theta[k])
        return (H + H.T) / 2

    def mark_iteration(self) -> None:
        """Count one optimizer iteration (shown in the progress records)."""
        self.iterations += 1

    def close(self) -> None:
        """Release this objective's shard states (inner loops, cached exp(mu))."""
        self.sharded.close()


class ShardPool:
    """The shards of one estimation, split and placed once: Problems held here (run on
    ``workers`` threads) or, with a ``dask.distributed.Client``, scattered to its workers.
    Every objective built from the pool is released by ``close()`` (or ``with``)."""

    def __init__(self, problem: Problem, shards: int, *, executor: Any = None,
                 workers: int = 1) -> None:
        if executor is not None and not is_dask(executor):
            raise SpecificationError(
                f"shards={shards} with executor={executor!r}: shards keep their inner loops on "
                "the workers that hold them, which a process pool cannot address; give a "
                "dask.distributed.Client, or executor=None for shards on threads here")
        parts = split_markets(problem, shards)
        self.executor, self.workers = executor, int(workers)
        self.sizes = [p.N for p in parts]
        #: starts run at once over the shards: on Dask the client's threads only wait for the
        #: workers, so ``workers`` of them; here the threads already go to the shards
        self.starts_at_once = self.workers if executor is not None else 1
        self.parts: list[Any] = list(parts) if executor is None else [
            future for future, _ in place(executor, list(parts))]
        self.objectives: list[ShardedDemandObjective] = []

    def objective(self, problem: Problem, layout: ParameterLayout, W: FloatArray,
                  **options: Any) -> ShardedDemandObjective:
        """A :class:`ShardedDemandObjective` for weighting matrix W over the pool."""
        objective = ShardedDemandObjective(problem, layout, W, self, **options)
        self.objectives.append(objective)
        return objective

    def run_start(self, job: StartJob) -> StartRun:
        """One start of a GMM step over the shards (``multistart.run_start``)."""
        objective = self.objective(job.problem, job.layout, job.W, contraction=job.contraction,
                                   on_failure=job.on_failure, reporter=job.reporter,
                                   step=job.step, start=job.index, clock=job.clock,
                                   delta0=job.delta0)
        try:
            return run_start_on(objective, job)
        finally:
            objective.close()

    def close(self) -> None:
        """Release every objective's shard states and the scattered shards."""
        for objective in self.objectives:
            objective.close()
        self.objectives = []
        if self.executor is not None and self.parts:
            self.executor.cancel(self.parts)
        self.parts = []

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
