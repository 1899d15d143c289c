"""Market shards: the GMM objective and its gradient as sums over blocks of markets.

Q(theta) = N g'Wg and dQ/dtheta are sums over markets, so the markets can be split into
contiguous shards held where their data live (threads in this process, or Dask workers) while
the optimizer stays on the client. Per evaluation (two passes, theta broadcast):

1. each shard s solves its contraction at theta (warm-started from its own last delta) and
   returns Z_s~' delta_s~ (M,); the client sums, with Z~'X1~ = sum_s Z_s~'X1_s~ from setup:
   beta = (X1~'Z W Z'X1~)^{-1} X1~'Z W Z'delta~,  g = (Z'delta~ - Z'X1~ beta) / N,  Q = N g'Wg;
2. the client broadcasts u = W g; each shard returns (d delta_s/d theta)' M_s Z_s~ u by the
   adjoint (``InnerLoop.gradient``), and dQ/dtheta = 2 sum_s (the form of ``solve.gmm``).

Absorbed effects couple markets through the annihilator M unless every group lies in one
shard (e.g. effects that nest within markets, ``C(market_ids)``): then M is block-diagonal and
each shard applies its own (``solve.market_split`` splits the problem). Equal to
:class:`blpdemand.solve.gmm.DemandObjective` up to the order of floating-point sums, the exact
Hessian's parts included (``second_order``). Reference: Berry, Levinsohn and Pakes (1995);
Nevo (2000).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Self, TypeAlias

import numpy as np

from blpdemand._types import AnyArray, FloatArray
from blpdemand.errors import ConvergenceError, SpecificationError
from blpdemand.model.parameters import ParameterLayout
from blpdemand.model.problem import Problem
from blpdemand.solve.contraction import InnerLoop
from blpdemand.solve.covariance import weighting_matrix
from blpdemand.solve.fixed_point import FixedPointConfig
from blpdemand.solve.jobs import check_executor, run_jobs
from blpdemand.solve.market_split import split_markets
from blpdemand.solve.shard_workers import (
    cache_budget,
    collect,
    is_dask,
    memory_limits,
    place,
)

__all__ = ["ShardEvaluation", "ShardedObjective", "run_shard", "split_markets"]


# ---------------------------------------------------------------------- one shard
Step: TypeAlias = Literal["setup", "moments", "gradient", "covariance", "delta", "jacobian",
                          "second_order", "release"]


@dataclass(frozen=True, slots=True)
class ShardRequest:
    """What a shard is asked: ``setup`` (Z'X1, Z'Z, N), ``moments`` at theta (the first
    from ``delta0``, the shard's rows of a warm start), ``gradient`` at the last theta with
    u = W g, ``covariance`` at the last theta with u = beta, ``delta`` or ``jacobian`` (its
    delta or d delta/d theta at the last theta), ``second_order`` at the last theta with
    u = W g (the exact Hessian's parts), or ``release`` (drop its state)."""

    token: str
    shard: int
    step: Step
    layout: ParameterLayout
    contraction: FixedPointConfig | None = None
    theta: FloatArray | None = None
    u: FloatArray | None = None
    delta0: FloatArray | None = None


@dataclass(frozen=True, slots=True)
class ShardReply:
    """A shard's answer: ``values`` is Z'X1 (M, K1) and Z'Z (M, M) stacked as (M, K1 + M) for
    setup, Z~'delta~ (M,) for moments, (P,) (d delta/d theta)' M Z~ u for gradient, for
    covariance sum_j g_j g_j' (M, M) flattened, then sum_j xi_j^2 and sum_j xi_j, and for
    second_order v' d^2 delta (P, P) then Z~' M d delta/d theta (M, P), flattened (NaN where
    ``InnerLoop.second_order`` does not apply)."""

    values: FloatArray
    N: int = 0
    converged: bool = True
    failed_markets: AnyArray = field(default_factory=lambda: np.zeros(0))
    iterations: int = 0
    evaluations: int = 0


class _Shard:
    """One shard's inner loop and last delta; lives where the shard's data are."""

    def __init__(self, problem: Problem, layout: ParameterLayout,
                 contraction: FixedPointConfig | None, cache_bytes: int = 256 << 20) -> None:
        self.problem = problem
        self.loop = InnerLoop(problem, layout, config=contraction, cache_bytes=cache_bytes)
        self.theta: FloatArray | None = None
        self.delta: FloatArray | None = None
        self.start: FloatArray | None = None  # a warm start, used until a solve converges

    def answer(self, request: ShardRequest) -> ShardReply:
        p = self.problem
        Z = p.ZD_tilde
        if request.step == "setup":
            return ShardReply(values=np.hstack([Z.T @ p.X1_tilde, Z.T @ Z]), N=p.N)
        theta = np.asarray(request.theta, dtype=np.float64)
        if request.step == "moments":
            if request.delta0 is not None and self.theta is None:
                self.start = np.asarray(request.delta0, dtype=np.float64)
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                result = self.loop.solve(theta, delta0=self.start)
                if not result.converged:  # a warm start from a wild theta: retry cold
                    result = self.loop.solve(theta, delta0=p.products.logit_delta)
            self.theta, self.delta = theta, np.asarray(result.delta, dtype=np.float64)
            ok = result.converged and bool(np.all(np.isfinite(self.delta)))
            self.start = None if ok else self.start
            values = Z.T @ p.residualize(self.delta) if ok else np.full(Z.shape[1], np.nan)
            return ShardReply(values=values, N=p.N, converged=ok,
                              failed_markets=np.asarray(result.failed_markets),
                              iterations=int(result.iterations),
                              evaluations=int(result.evaluations))
        if self.delta is None or self.theta is None or not np.array_equal(theta, self.theta):
            raise SpecificationError(f"shard {request.shard} was asked for its {request.step} at "
                                     "a theta whose moments it has not computed")
        if request.step in ("delta", "jacobian"):
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                values = (self.delta if request.step == "delta"
                          else self.loop.jacobian(theta, self.delta))
            return ShardReply(values=np.asarray(values, dtype=np.float64), N=p.N)
        if request.step == "second_order":
            return ShardReply(values=self._second_order(theta, request.u), N=p.N)
        if request.step == "covariance":
            xi = p.residualize(self.delta) - p.X1_tilde @ np.asarray(request.u, dtype=np.float64)
            g = Z * xi[:, None]
            return ShardReply(values=np.concatenate([(g.T @ g).ravel(), [xi @ xi, xi.sum()]]),
                              N=p.N)
        v = p.residualize(Z @ np.asarray(request.u, dtype=np.float64))
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            return ShardReply(values=self.loop.gradient(theta, self.delta, v), N=p.N)


    def _second_order(self, theta: FloatArray, u: FloatArray | None) -> FloatArray:
        p, P = self.problem, self.loop.layout.P
        assert self.delta is not None
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            jacobian = self.loop.jacobian(theta, self.delta)
            v = p.residualize(p.ZD_tilde @ np.asarray(u, dtype=np.float64))
            second = self.loop.second_order(theta, self.delta, v, jacobian)
        if second is None:
            return np.full(P * P + p.ZD_tilde.shape[1] * P, np.nan)
        return np.concatenate([second.ravel(), (p.ZD_tilde.T @ p.residualize(jacobian)).ravel()])


_STATE: dict[tuple[str, int], _Shard] = {}  # shards held by this process (a Dask worker)
_STATE_LOCK = threading.Lock()


def run_shard(request: ShardRequest, problem: Problem) -> ShardReply:
    """Answer a request on the worker holding ``problem``: the shard's inner loop is kept in
    this process under (token, shard) between evaluations (warm starts, and exp(mu) cached
    where it fits the worker's memory headroom, ``cache_budget``)."""
    key = (request.token, request.shard)
    with _STATE_LOCK:
        if request.step == "release":
            _STATE.pop(key, None)
            return ShardReply(values=np.zeros(0))
        state = _STATE.get(key)
    if state is None or state.problem is not problem:  # built outside the lock (it is slow)
        state = _Shard(problem, request.layout, request.contraction,
                       cache_bytes=min(256 << 20, cache_budget()))
        with _STATE_LOCK:
            _STATE[key] = state
    return state.answer(request)


def release_token(token: str) -> int:
    """Drop every shard state of ``token`` held by this process; return how many."""
    with _STATE_LOCK:
        keys = [k for k in _STATE if k[0] == token]
        for k in keys:
            del _STATE[k]
    return len(keys)


# ---------------------------------------------------------------------- the client side
@dataclass(frozen=True, slots=True, kw_only=True)
class ShardEvaluation:
    """Q and its pieces at one theta: theta (P,), objective Q, gradient (P,), beta (K1,),
    g (M,), failed (market ids where a contraction failed; Q is then a penalty), counts."""

    theta: FloatArray
    objective: float
    gradient: FloatArray
    beta: FloatArray
    g: FloatArray
    failed_markets: AnyArray
    contraction_iterations: int
    contraction_evaluations: int

    @property
    def failed(self) -> bool:
        return bool(np.asarray(self.failed_markets).size) or not bool(np.all(np.isfinite(self.g)))


class ShardedObjective:
    """Q(theta) and dQ/dtheta summed over market shards; callable as ``f(theta) -> (Q, grad)``
    like :class:`blpdemand.solve.gmm.DemandObjective`.

    Parameters
    ----------
    shards : sub-problems (``split_markets``), or with a Dask client also futures of them
        already on workers.
    layout : the ParameterLayout.
    W : (M, M) weighting matrix; None for the 2SLS one, inv(Z~'Z~ / N), from the shards.
    contraction : FixedPointConfig for every shard's inner loop.
    executor : None (shards held here, run on ``workers`` threads) or a
        ``dask.distributed.Client`` (shards scattered once, each pinned to a worker that keeps
        its inner loop between evaluations). Call ``close()`` (or use ``with``) to release
        the workers' state.
    delta0 : (N,) warm start of the first contractions (rows in shard order), or None.
    sizes : products per shard, for the error naming a lost shard before its setup reply
        (known here when the shards are Problems).
    """

    def __init__(self, shards: Sequence[Any], layout: ParameterLayout,
                 W: FloatArray | None = None, *, contraction: FixedPointConfig | None = None,
                 executor: Any = None, workers: int = 1, delta0: FloatArray | None = None,
                 sizes: Sequence[int] | None = None) -> None:
        check_executor(executor)
        if not shards:
            raise SpecificationError("ShardedObjective needs at least one shard")
        if executor is not None and not is_dask(executor):
            raise SpecificationError(
                f"executor={executor!r}: shards keep state on their workers, so give a "
                "dask.distributed.Client, or executor=None for shards in this process")
        self.layout, self.contraction, self.workers = layout, contraction, int(workers)
        self.executor = executor
        self.token = uuid.uuid4().hex
        self._local: list[_Shard] = []
        self._remote: list[tuple[Any, str]] = []  # (future of the shard's Problem, worker)
        self._limits: dict[str, int] = {}  # each worker's memory_limit, for a lost shard's error
        self._known_sizes: list[int] = []  # products per shard before setup (0: unknown)
        if executor is None:
            self._local = [_Shard(p, layout, contraction) for p in shards]
        else:
            self._known_sizes = [s.N if isinstance(s, Problem) else 0 for s in shards] if (
                sizes is None) else list(sizes)
            self._remote = place(executor, list(shards))
            self._limits = memory_limits(executor)
        self._delta0: list[FloatArray] | None = None  # sent until a solve converges
        setup = self._ask("setup")
        self.N, self.sizes = sum(r.N for r in setup), [r.N for r in setup]
        if delta0 is not None:
            self._delta0 = np.split(np.asarray(delta0, dtype=np.float64),
                                    np.cumsum(self.sizes)[:-1])
        K1 = setup[0].values.shape[1] - setup[0].values.shape[0]
        stacked = np.sum([r.values for r in setup], axis=0)
        self.ZX, self.ZZ = stacked[:, :K1], stacked[:, K1:]
        self.W = (weighting_matrix(self.ZZ / self.N, what="instrument cross-product Z'Z/N")
                  if W is None else np.asarray(W, dtype=np.float64))
        A = self.ZX.T @ self.W @ self.ZX
        try:
            self.projector = np.asarray(np.linalg.solve(A, self.ZX.T @ self.W)) if K1 else (
                np.zeros((0, self.ZX.shape[0])))
        except np.linalg.LinAlgError as error:
            raise SpecificationError(
                "X1~' Z W Z' X1~ is singular: the linear characteristics are not identified by "
                "the demand instruments; add instruments or drop collinear X1 columns") from error
        self.evaluations = 0
        self.last: ShardEvaluation | None = None
        self.best: ShardEvaluation | None = None

    @property
    def shards(self) -> int:
        return len(self._local) or len(self._remote)

    def _ask(self, step: Step, theta: FloatArray | None = None,
             u: FloatArray | None = None) -> list[ShardReply]:
        """Send one request to every shard; replies in shard order."""
        starts = self._delta0 if step == "moments" else None
        requests = [ShardRequest(token=self.token, shard=s, step=step, layout=self.layout,
                                 contraction=self.contraction, theta=theta, u=u,
                                 delta0=None if starts is None else starts[s])
                    for s in range(self.shards)]
        if self.executor is None:
            return run_jobs([_Bound(shard, r) for shard, r in zip(self._local, requests)],
                            workers=self.workers)
        futures = [self.executor.submit(run_shard, request, data, workers=[address],
                                        allow_other_workers=False, pure=False)
                   for request, (data, address) in zip(requests, self._remote)]
        replies: list[ShardReply] = collect(
            self.executor, futures, [address for _, address in self._remote], step=step,
            sizes=getattr(self, "sizes", self._known_sizes), limits=self._limits)
        return replies

    def evaluate(self, theta: FloatArray) -> ShardEvaluation:
        """Q, dQ/dtheta, beta and g at theta (two passes over the shards)."""
        theta = np.array(theta, dtype=np.float64)
        if self.last is not None and np.array_equal(theta, self.last.theta):
            return self.last
        replies = self._ask("moments", theta)
        iterations = max(r.iterations for r in replies)
        evaluations = sum(r.evaluations for r in replies)
        failed = np.concatenate([np.asarray(r.failed_markets) for r in replies])
        P = self.layout.P
        finite = all(r.converged for r in replies)
        self._delta0 = None if finite else self._delta0
        if finite:
            Zdelta = np.sum([r.values for r in replies], axis=0)
            beta = self.projector @ Zdelta
            g = (Zdelta - self.ZX @ beta) / self.N
            objective = float(self.N * g @ self.W @ g)
            gradient = np.zeros(P)
            if P > 0:
                parts = self._ask("gradient", theta, self.W @ g)
                gradient = 2.0 * np.sum([r.values for r in parts], axis=0)
            finite = bool(np.isfinite(objective)) and bool(np.all(np.isfinite(gradient)))
        if not finite:  # a failed inner loop: a large Q, as DemandObjective gives
            objective = 1e10 if self.best is None else max(1e10, 1e3 * self.best.objective)
            gradient, beta = np.zeros(P), np.full(self.ZX.shape[1], np.nan)
            g = np.full(self.ZX.shape[0], np.nan)
        evaluation = ShardEvaluation(theta=theta, objective=objective, gradient=gradient,
                                     beta=beta, g=g, failed_markets=failed,
                                     contraction_iterations=iterations,
                                     contraction_evaluations=evaluations)
        self.evaluations += 1
        self.last = evaluation
        if finite and (self.best is None or objective < self.best.objective):
            self.best = evaluation
        return evaluation

    def __call__(self, theta: FloatArray) -> tuple[float, FloatArray]:
        evaluation = self.evaluate(theta)
        return evaluation.objective, evaluation.gradient

    def objective(self, theta: FloatArray) -> float:
        """Q(theta) only."""
        return self.evaluate(theta).objective

    def gather(self, theta: FloatArray, *, jacobian: bool = False) -> FloatArray:
        """delta (N,), or d delta/d theta (N, P) with ``jacobian``, at theta from the shards
        (rows in shard order): N (or N P) floats travel, once per call."""
        self.evaluate(theta)
        parts = [r.values for r in self._ask("jacobian" if jacobian else "delta",
                                             np.array(theta, dtype=np.float64))]
        return np.concatenate(parts)

    def second_order(self, theta: FloatArray) -> tuple[FloatArray, FloatArray] | None:
        """v' d^2 delta / d theta d theta' (P, P) and Z~' M d delta/d theta (M, P) at theta,
        summed over the shards (``DemandObjective.exact_hessian``'s parts); None where a
        shard cannot form them."""
        evaluation = self.evaluate(theta)
        P = self.layout.P
        if evaluation.failed or P == 0:
            return None
        parts = self._ask("second_order", np.array(theta, dtype=np.float64),
                          self.W @ evaluation.g)
        total = np.sum([r.values for r in parts], axis=0)
        if not np.all(np.isfinite(total)):
            return None
        return total[: P * P].reshape(P, P), total[P * P:].reshape(-1, P)

    def moment_covariance(self, theta: FloatArray, *,
                          kind: Literal["robust", "unadjusted"] = "robust") -> FloatArray:
        """Centered covariance S (M, M) of the moments z_j xi_j at theta, summed over shards,
        as ``solve.covariance.stack_covariance`` of the demand block (for a second GMM step):
        robust S = (1/N) sum_j g_j g_j' - g g'; unadjusted S = var(xi) Z'Z / N."""
        evaluation = self.evaluate(theta)
        if evaluation.failed:
            raise ConvergenceError(
                f"the contraction failed in market(s) {evaluation.failed_markets.tolist()[:10]} "
                f"at theta={evaluation.theta.tolist()}: xi and S are not defined there")
        M = evaluation.g.size
        total = np.sum([r.values for r in self._ask("covariance", evaluation.theta,
                                                    evaluation.beta)], axis=0)
        if kind == "unadjusted":
            variance = total[-2] / self.N - (total[-1] / self.N) ** 2
            S = variance * self.ZZ / self.N
        elif kind == "robust":
            S = total[:-2].reshape(M, M) / self.N - np.outer(evaluation.g, evaluation.g)
        else:
            raise SpecificationError(f"kind={kind!r}: shards give 'robust' or 'unadjusted' S")
        out: FloatArray = (S + S.T) / 2
        return out

    def close(self) -> None:
        """Release the shards' state on the workers (and the scattered data)."""
        if self.executor is not None and self._remote:
            self.executor.run(release_token, self.token)
            self._remote = []
        self._local = []

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class _Bound:
    """shard.answer(request) as a zero-argument job."""

    __slots__ = ("request", "shard")

    def __init__(self, shard: _Shard, request: ShardRequest) -> None:
        self.shard, self.request = shard, request

    def __call__(self) -> ShardReply:
        return self.shard.answer(self.request)
