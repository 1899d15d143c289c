"""The BLP inner loop: delta(theta) by the contraction, its Jacobian, and shares, for all markets.

delta^{k+1} = delta^k + log(s_obs) - log(s(delta^k; theta))   (Berry 1994; BLP 1995)

Public API (stable; the estimator builds on it):

- ``solve_delta`` (in ``solve.inversion``: any problem, nests too) -> ``ContractionResult``
  with ``.delta`` (N,), ``.jacobian`` (N, P) or None, ``.converged``, ``.status`` (Status),
  ``.iterations`` (largest number of share evaluations of one market), ``.evaluations``
  (share evaluations summed over markets), ``.failed_markets`` (market ids), ``.max_change``
  (largest last |delta step| over markets).
- ``compute_shares(problem, layout, theta, delta)`` -> (N,) s_jt(delta; theta).
- ``delta_jacobian(problem, layout, theta, delta)`` -> (N, P) d delta / d theta (IFT).
- ``InnerLoop(problem, layout, config=...)``: the same with work reused across calls. The
  estimator should hold one and call ``loop.solve(theta, jacobian=True)`` once per objective
  evaluation: delta and its Jacobian come from one exp(mu) per block; ``delta0=None`` warm-starts
  from the last converged delta; calling again at the same theta returns the stored result (and
  adds the Jacobian from stored exp(mu) when it was not asked for before); ``loop.shares`` and
  ``loop.jacobian`` at the stored theta reuse exp(mu) too while it fits in ``cache_bytes``.

How it is fast: markets are grouped into dense blocks (T_b, J, I) capped at
``config.block_bytes`` (see ``model.utility``). For each block, exp(mu) is computed once and
the block is iterated to convergence while it stays in cache (see ``solve.block_inversion``):
by default market by market in a compiled Anderson kernel, each market's exp(mu) in L2; or by
the numpy block solvers, two batched matrix-vector products per step (``model.shares``).
Then d delta / d theta is computed from the same exp(mu) if asked
(``model.derivatives.share_jacobians``). Memory stays at a few blocks, never the whole
problem's exp(mu). Rows are in the problem's sorted order (``problem.products.order``).
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from blpdemand._types import AnyArray, FloatArray, Status
from blpdemand.errors import ConvergenceError, ConvergenceWarning, SpecificationError
from blpdemand.model.derivatives import adjoint_theta_gradient
from blpdemand.model.parameters import ParameterLayout
from blpdemand.model.problem import Problem
from blpdemand.model.shares import block_shares
from blpdemand.model.utility import ExpUtility, MarketBlock
from blpdemand.solve.block_inversion import compiled_available, invert_block
from blpdemand.solve.fixed_point import FIXED_POINT_CODES, FixedPointConfig, FixedPointResult
from blpdemand.solve.jobs import run_jobs
from blpdemand.solve.market_blocks import (  # noqa: F401 (_parameter_index: tests use it)
    _block_cap,
    _block_jacobian,
    _block_utility,
    _coefficient_map,
    _derivative_variables,
    _parameter_index,
    _prepare,
)
from blpdemand.solve.warm_start import DeltaPredictor

__all__ = ["ContractionResult", "InnerLoop", "compute_shares", "delta_jacobian"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ContractionResult:
    """The inverted mean utilities delta(theta) and how the inner loop went.

    Attributes
    ----------
    delta : (N,) mean utilities (last finite iterate in failed markets).
    converged : True when every market met the tolerance.
    iterations : largest number of share evaluations spent on one market.
    evaluations : share evaluations summed over markets.
    failed_markets : ids of markets that did not converge.
    jacobian : (N, P) d delta / d theta, or None (not asked, or some market failed).
    status : Status (the worst over markets).
    max_change : largest last max_j |delta step| over markets.
    """

    delta: FloatArray
    converged: bool
    iterations: int
    evaluations: int
    failed_markets: AnyArray
    jacobian: FloatArray | None = None
    status: Status = Status.CONVERGED
    max_change: float = 0.0


class BlockTally:
    """delta and the counts of an inner loop solved block by block: each block's
    FixedPointResult is scattered into ``delta`` and summed; ``result`` makes the record."""

    def __init__(self, delta: FloatArray) -> None:
        self.delta = delta
        self.failed: list[int] = []
        self.evaluations = self.iterations = self.worst = 0
        self.max_change = 0.0

    def add(self, block: MarketBlock, fp: FixedPointResult) -> None:
        block.scatter_products(fp.x, self.delta)
        self.evaluations += int(fp.evaluations.sum())
        self.iterations = max(self.iterations, int(fp.evaluations.max()))
        finite = fp.change[np.isfinite(fp.change)]
        self.max_change = max(self.max_change, float(finite.max()) if finite.size else np.inf)
        self.worst = max(self.worst, int(fp.codes.max()))
        if fp.codes.any():
            self.failed.extend(int(t) for t in block.positions[fp.failed])

    def result(self, problem: Problem, jacobian: FloatArray | None) -> ContractionResult:
        """The ContractionResult (no Jacobian where some market failed)."""
        failed = sorted(self.failed)
        return ContractionResult(
            delta=self.delta, converged=not failed, iterations=self.iterations,
            evaluations=self.evaluations,
            failed_markets=problem.products.markets.ids[np.asarray(failed, dtype=np.int64)],
            jacobian=None if failed else jacobian, status=FIXED_POINT_CODES[self.worst],
            max_change=self.max_change)


class InnerLoop:
    """The inner loop for one problem and layout, reusing work across calls (see module doc).

    Parameters
    ----------
    problem, layout : the Problem and its ParameterLayout.
    config : FixedPointConfig (method, tolerance, failure policy, block size).
    cache_bytes : keep exp(mu) of the last theta when all blocks together fit in this many bytes.
    """

    def __init__(self, problem: Problem, layout: ParameterLayout, *,
                 config: FixedPointConfig | None = None, cache_bytes: int = 256 << 20) -> None:
        self.problem, self.layout = problem, layout
        self.config = config or FixedPointConfig()
        self.cache_bytes = cache_bytes
        self.blocks = _prepare(problem, layout, _block_cap(problem, self.config))
        self._exp_mu_bytes = sum(8 * int(np.prod(b.block.shape)) for b in self.blocks)
        self.lognormal = problem.lognormal if problem.has_lognormal else None
        self._key: bytes | None = None
        self._mapping: FloatArray | None = None  # the coefficient map at the cached theta
        self._utilities: dict[int, ExpUtility] = {}
        self._spare: dict[int, FloatArray] = {}  # exp(mu) memory of the last theta, per block
        self._result: ContractionResult | None = None
        self._last_delta: FloatArray | None = None
        self._predictor = DeltaPredictor(layout.P)
        self._pool: ThreadPoolExecutor | None = None
        # theta-free, per block: the adjoint's agent variables and parameter index (normal
        # coefficients), and whether its weights are non-negative (the compiled adjoint's CG)
        self._normal_variables = [_derivative_variables(b, layout, np.zeros(0), None)
                                  for b in self.blocks]
        self._nonnegative = [bool((b.weights >= 0).all()) for b in self.blocks]

    @property
    def caches_exp_mu(self) -> bool:
        """Whether exp(mu) of all blocks fits in ``cache_bytes`` (kept between calls at one
        theta)."""
        return self._exp_mu_bytes <= self.cache_bytes

    def _at(self, theta: FloatArray) -> tuple[FloatArray, bool]:
        """Switch the cache to theta; return the coefficient map and whether to store exp(mu)."""
        theta = np.asarray(theta, dtype=np.float64)
        key = theta.tobytes()
        if key != self._key or self._mapping is None:
            # the cached exp(mu) of the old theta becomes the memory of the new one's
            self._spare = {b: u.exp_mu for b, u in self._utilities.items()}
            self._key, self._utilities, self._result = key, {}, None
            self._mapping = _coefficient_map(self.layout, theta)
            self._mapping.flags.writeable = False
        return self._mapping, self.caches_exp_mu

    def _utility(self, b: int, mapping: FloatArray, store: bool) -> ExpUtility:
        utility = self._utilities.get(b)
        if utility is None:
            spare = self._spare.pop(b, None) if store else None
            utility = _block_utility(self.blocks[b], mapping, self.lognormal, out=spare)
            if store:
                self._utilities[b] = utility
        return utility

    def _each(self, work: Callable[[int], T]) -> list[T]:
        """work(b) for every block, on ``config.threads`` threads; results in block order.

        The thread pool is made once per loop (its start-up costs about 0.75 ms a call) and shut
        down when the loop is garbage collected.
        """
        jobs = [functools.partial(work, b) for b in range(len(self.blocks))]
        if self.config.threads == 1 or len(jobs) <= 1:
            return [job() for job in jobs]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self.config.threads,
                                            thread_name_prefix="blpdemand-markets")
            weakref.finalize(self, self._pool.shutdown, wait=False)
        return run_jobs(jobs, workers=self.config.threads, pool=self._pool)

    def _solve_block(self, b: int, *, mapping: FloatArray, store: bool, start: FloatArray,
                     jacobian: bool) -> tuple[FixedPointResult, FloatArray | None]:
        """One block's delta (and its d delta / d theta when asked and every market converged).

        Its exp(mu) is released on return, before the next block (on this thread) allocates
        its own: the allocator then hands back the same, cache-warm memory.
        """
        data = self.blocks[b]
        utility = self._utility(b, mapping, store)
        fp = invert_block(utility, data.shares, data.pad, data.product_sizes, data.agent_sizes,
                          data.block.gather_products(start), self.config,
                          owned=not (store or jacobian),
                          recompute=functools.partial(_block_utility, data, mapping,
                                                      self.lognormal))
        if fp.codes.any() or not jacobian:
            return fp, None
        with np.errstate(under="ignore"):
            return fp, _block_jacobian(data, utility, fp.x, self.layout, mapping=mapping,
                                       lognormal=self.lognormal, overwrite=not store)

    def solve(self, theta: FloatArray, *, delta0: FloatArray | None = None,
              jacobian: bool = False) -> ContractionResult:
        """delta(theta) (and d delta / d theta if ``jacobian``); see ``solve_delta``."""
        mapping, store = self._at(theta)
        cached = self._result
        if cached is not None and delta0 is None:
            if not jacobian or cached.jacobian is not None:
                return cached
            if cached.converged:
                result = dataclasses.replace(cached, jacobian=self.jacobian(theta, cached.delta))
                self._result = result
                self._predictor.record(theta, result.delta, result.jacobian)
                return result
        problem, layout, config = self.problem, self.layout, self.config
        if delta0 is not None:
            start = _start(delta0, problem.N)
        elif self._last_delta is not None:
            # the last solution moved along the secant (or tangent) of the ones before it
            predicted = self._predictor.predict(theta)
            start = self._last_delta if predicted is None else predicted
        else:
            start = problem.products.logit_delta
        delta = start.copy()
        jac = np.zeros((problem.N, layout.P)) if jacobian else None
        tally = BlockTally(delta)
        outcomes = self._each(functools.partial(self._solve_block, mapping=mapping, store=store,
                                                start=start, jacobian=jacobian))
        for data, (fp, jac_block) in zip(self.blocks, outcomes):
            tally.add(data.block, fp)
            if jac is not None and jac_block is not None and not fp.codes.any():
                data.block.scatter_products(jac_block, jac)
        result = tally.result(problem, jac)
        if not result.converged:
            _on_failure(config, result)
        else:
            self._last_delta = delta
            self._predictor.record(theta, delta, jac)
        self._result = result
        return result

    def shares(self, theta: FloatArray, delta: FloatArray) -> FloatArray:
        """(N,) s_jt(delta; theta)."""
        mapping, store = self._at(theta)
        delta = np.asarray(delta, dtype=np.float64)
        out = np.empty(self.problem.N)

        def block(b: int) -> FloatArray:
            data = self.blocks[b]
            with np.errstate(under="ignore"):
                return block_shares(np.exp(data.block.gather_products(delta)),
                                    self._utility(b, mapping, store))

        for data, values in zip(self.blocks, self._each(block)):
            data.block.scatter_products(values, out)
        return out

    def jacobian(self, theta: FloatArray, delta: FloatArray) -> FloatArray:
        """(N, P) d delta / d theta at (theta, delta) by the implicit function theorem."""
        mapping, store = self._at(theta)
        delta = np.asarray(delta, dtype=np.float64)
        out = np.empty((self.problem.N, self.layout.P))

        def block(b: int) -> FloatArray:
            data = self.blocks[b]
            with np.errstate(under="ignore"):
                return _block_jacobian(data, self._utility(b, mapping, store),
                                       data.block.gather_products(delta), self.layout,
                                       mapping=mapping, lognormal=self.lognormal)

        for data, values in zip(self.blocks, self._each(block)):
            data.block.scatter_products(values, out)
        result = self._result  # the last solve's, if it was at this theta
        if result is not None and result.converged and np.array_equal(delta, result.delta):
            self._predictor.record(theta, result.delta, out)  # d delta / d theta at a solution
        return out

    def gradient(self, theta: FloatArray, delta: FloatArray, v: FloatArray) -> FloatArray:
        """(P,) v' d delta / d theta at (theta, delta) by the adjoint: market by market in the
        compiled kernel (``model.adjoint_compiled``) unless ``config.compiled`` is False, else
        ``adjoint_theta_gradient`` (numpy, per block).

        Blocks where the adjoint cannot be used (negative weights, CG not converging) take the
        full Jacobian instead.
        """
        mapping, store = self._at(theta)
        delta, v = np.asarray(delta, dtype=np.float64), np.asarray(v, dtype=np.float64)
        compiled = self.config.compiled and compiled_available()

        def block(b: int) -> FloatArray:
            data = self.blocks[b]
            variables, rows, columns = (
                _derivative_variables(data, self.layout, mapping, self.lognormal)
                if self.lognormal is not None else self._normal_variables[b])
            utility = self._utility(b, mapping, store)
            delta_block = data.block.gather_products(delta)
            v_block = data.block.gather_products(v)
            with np.errstate(under="ignore"):
                if compiled and self._nonnegative[b]:  # market by market, in L2
                    from blpdemand.model.adjoint_compiled import adjoint_markets
                    parts, ok = adjoint_markets(
                        utility.exp_mu, utility.outside, utility.weights, np.exp(delta_block),
                        data.x2, variables, rows, columns, v_block, data.product_sizes,
                        data.agent_sizes)
                    part = parts if ok.all() else None
                else:
                    part = adjoint_theta_gradient(np.exp(delta_block), utility, data.x2,
                                                  variables, rows, columns, v_block)
                if part is None:
                    jac = _block_jacobian(data, utility, delta_block, self.layout,
                                          mapping=mapping, lognormal=self.lognormal)
                    return np.asarray(np.einsum("tj,tjp->p", v_block, jac))
            return np.asarray(part.sum(axis=0))

        out = np.zeros(self.layout.P)
        for part in self._each(block):  # summed in block order: the same with any threads
            out += part
        return out

    def second_order(self, theta: FloatArray, delta: FloatArray, v: FloatArray,
                     jacobian: FloatArray) -> FloatArray | None:
        """(P, P) v' d^2 delta / d theta d theta' at a solution delta, from d delta / d theta
        (N, P) and the adjoint's lambda (``model.hessian_compiled``); None where it does not
        apply (lognormal coefficients, negative weights, the numpy kernels, CG not converging
        in some market): the caller then differences gradients."""
        if self.lognormal is not None or not (self.config.compiled and compiled_available()):
            return None
        if not all(self._nonnegative):
            return None
        from blpdemand.model.adjoint_compiled import adjoint_markets
        from blpdemand.model.hessian_compiled import second_order_markets

        mapping, store = self._at(theta)
        delta, v = np.asarray(delta, dtype=np.float64), np.asarray(v, dtype=np.float64)

        def block(b: int) -> FloatArray | None:
            data = self.blocks[b]
            variables, rows, columns = self._normal_variables[b]
            utility = self._utility(b, mapping, store)
            e_delta = np.exp(data.block.gather_products(delta))
            v_block = data.block.gather_products(v)
            multipliers = np.zeros(v_block.shape)
            with np.errstate(under="ignore"):
                _, ok = adjoint_markets(utility.exp_mu, utility.outside, utility.weights,
                                        e_delta, data.x2, variables, rows, columns, v_block,
                                        data.product_sizes, data.agent_sizes,
                                        multipliers=multipliers)
                if not ok.all():
                    return None
                terms = second_order_markets(
                    utility.exp_mu, utility.outside, utility.weights, e_delta, data.x2,
                    variables, rows, columns, multipliers,
                    data.block.gather_products(jacobian), data.product_sizes, data.agent_sizes)
            return np.asarray(-terms.sum(axis=0))

        out = np.zeros((self.layout.P, self.layout.P))
        for part in self._each(block):  # summed in block order: the same with any threads
            if part is None:
                return None
            out += part
        return out


def _start(delta0: FloatArray, N: int) -> FloatArray:
    """A user's starting delta: (N,) finite numbers, in the problem's sorted row order."""
    try:
        start = np.asarray(delta0, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise SpecificationError(f"delta0 must be numbers, one per product row: {error}") from error
    if start.shape != (N,):
        raise SpecificationError(f"delta0 has shape {start.shape}; it must be ({N},), one mean "
                                 "utility per product row (in the problem's sorted order)")
    if not np.all(np.isfinite(start)):
        rows = np.flatnonzero(~np.isfinite(start))[:5].tolist()
        raise SpecificationError(f"delta0 has non-finite values (rows {rows} in sorted order); "
                                 "start from finite values, e.g. the logit delta (delta0=None)")
    return start


def _on_failure(config: FixedPointConfig, result: ContractionResult) -> None:
    shown = ", ".join(repr(m) for m in result.failed_markets[:10].tolist())
    more = ("" if result.failed_markets.size <= 10
            else f" and {result.failed_markets.size - 10} more")
    message = (f"the contraction did not converge ({result.status.value}) in market(s) "
               f"{shown}{more}; max change {result.max_change:.3g} > tol {config.tol:g}. Check "
               "for implausibly large Sigma/Pi, raise max_evaluations, or try method='newton'")
    if config.on_failure == "raise":
        raise ConvergenceError(message)
    if config.on_failure == "warn":
        warnings.warn(message, ConvergenceWarning, stacklevel=3)


def compute_shares(problem: Problem, layout: ParameterLayout, theta: FloatArray,
                   delta: FloatArray) -> FloatArray:
    """s_jt = sum_i w_it s_ijt(delta; theta) for all markets: (N,)."""
    return InnerLoop(problem, layout, cache_bytes=0).shares(theta, delta)


def delta_jacobian(problem: Problem, layout: ParameterLayout, theta: FloatArray,
                   delta: FloatArray) -> FloatArray:
    """d delta / d theta = -(d s / d delta)^{-1} (d s / d theta), batched over markets: (N, P)."""
    return InnerLoop(problem, layout, cache_bytes=0).jacobian(theta, delta)
