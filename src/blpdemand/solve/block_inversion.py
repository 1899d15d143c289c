"""Share inversion for one block of markets: the contraction map and the choice of solver.

Solves delta = G(delta) = delta + log s_obs - log s(delta; theta) for every market of a dense
block (``model.utility``) given its exp(mu):

- Anderson in the compiled per-market kernel (``solve.anderson_compiled``) when the method is
  "anderson", or "auto" (for every block), ``FixedPointConfig.compiled`` is True and numba is
  installed;
- otherwise the numpy block solvers of ``solve.fixed_point`` on ``ContractionMap``; "auto"
  takes Anderson for blocks of at least ``AUTO_CELLS`` exp(mu) cells and SQUAREM for smaller
  ones (the numpy Anderson's per-step least squares costs more than SQUAREM's extra
  evaluations of a small block).

When "auto" ran Anderson, markets where it stalled or broke down are solved again with SQUAREM
from the same start, within what is left of their evaluation budget.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import numpy as np

from blpdemand._types import FloatArray, IntArray
from blpdemand.model.derivatives import share_delta_jacobian
from blpdemand.model.shares import block_shares, choice_probabilities, shares_from_probabilities
from blpdemand.model.utility import ExpUtility
from blpdemand.solve.fixed_point import (
    AUTO_CELLS,
    FixedPointConfig,
    FixedPointResult,
    solve_fixed_point,
)

__all__ = ["ContractionMap", "block_method", "compiled_available", "invert_block"]


class ContractionMap:
    """G(delta) = delta + log s_obs - log s(delta) on a block's work set (a ``BatchedMap``).

    ``owned``: exp(mu) is not needed afterwards, so restricting the work set compacts it in
    place instead of copying.
    """

    def __init__(self, utility: ExpUtility, shares: FloatArray, pad: FloatArray | None, *,
                 owned: bool = False) -> None:
        self.utility, self.shares, self.pad = utility, shares, pad
        self.log_shares = np.log(shares)
        self._last: FloatArray | None = None
        self._last_exp: tuple[FloatArray, FloatArray] | None = None  # exp(x), s_obs / s
        self._reuses = 0
        self._owned = owned

    def _exp(self, x: FloatArray) -> FloatArray:
        # exp(G(x)) = exp(x) s_obs / s is known from the last step: no exp needed (resync at 8).
        if x is self._last and self._last_exp is not None and self._reuses < 8:
            self._reuses += 1
            e, ratio = self._last_exp  # the product is formed only when reused (not by Anderson)
            return e * ratio
        self._reuses = 0
        out: FloatArray = np.exp(x)
        return out

    def evaluate(self, x: FloatArray) -> FloatArray:
        e = self._exp(x)
        s = block_shares(e, self.utility)
        if self.pad is not None:
            s += self.pad
        ratio = self.shares / s
        g = x + np.log(ratio)
        self._last, self._last_exp = g, (e, ratio)
        return g

    def residual_jacobian(self, x: FloatArray) -> tuple[FloatArray, FloatArray]:
        probabilities = choice_probabilities(np.exp(x), self.utility)
        s = shares_from_probabilities(probabilities, self.utility.weights)
        jacobian = share_delta_jacobian(probabilities, self.utility.weights)
        if self.pad is not None:
            s += self.pad
            t, j = np.nonzero(self.pad)
            jacobian[t, j, j] = s[t, j]
        return np.log(s) - self.log_shares, jacobian / s[:, :, None]

    def restrict(self, keep: np.ndarray) -> None:
        # Unless exp(mu) is owned, the first restriction copies (the block's exp(mu) stays
        # intact for the Jacobian or the cache); later ones move the kept markets forward
        # within that copy, allocating nothing.
        if self._owned:
            exp_mu = self.utility.exp_mu
            for i, k in enumerate(keep.tolist()):
                if i != k:
                    exp_mu[i] = exp_mu[k]
            self.utility = ExpUtility(exp_mu=exp_mu[: keep.size],
                                      outside=self.utility.outside[keep],
                                      weights=self.utility.weights[keep],
                                      shifted=self.utility.shifted)
        else:
            self.utility, self._owned = self.utility.take(keep), True
        self.shares, self.log_shares = self.shares[keep], self.log_shares[keep]
        self.pad = None if self.pad is None else self.pad[keep]
        self._last = self._last_exp = None


@functools.cache
def compiled_available() -> bool:
    """Whether the compiled Anderson kernel can be used (numba importable)."""
    try:
        import blpdemand.solve.anderson_compiled  # noqa: F401
    except ImportError:
        return False
    return True


def block_method(config: FixedPointConfig, cells: int) -> FixedPointConfig:
    """Resolve method "auto" for a block of ``cells`` exp(mu) cells (see the module docstring)."""
    if config.method != "auto":
        return config
    anderson = (config.compiled and compiled_available()) or cells >= AUTO_CELLS
    return _resolved(config, "anderson" if anderson else "squarem")


@functools.lru_cache(maxsize=64)
def _resolved(config: FixedPointConfig, method: str) -> FixedPointConfig:
    return dataclasses.replace(config, method=method)  # type: ignore[arg-type]


def invert_block(utility: ExpUtility, shares: FloatArray, pad: FloatArray | None,
                 product_sizes: IntArray, agent_sizes: IntArray,
                 x0: FloatArray, config: FixedPointConfig, *, owned: bool,
                 recompute: Callable[[], ExpUtility]) -> FixedPointResult:
    """delta for every market of one block (see the module docstring).

    Parameters
    ----------
    utility : the block's exp(mu); shares : (T_b, J) s_obs (1 in padded slots); pad :
        (T_b, J) 1.0 in padded slots or None; product_sizes, agent_sizes : real
        J_t and I_t; x0 : (T_b, J) start; config : the caller's FixedPointConfig ("auto"
        resolved here).
    owned : exp(mu) is not needed afterwards (the numpy solvers may compact it in place).
    recompute : builds the block's exp(mu) again, for the fallback after an in-place compaction.
    """
    resolved = block_method(config, int(np.prod(utility.exp_mu.shape)))
    compiled = resolved.method == "anderson" and config.compiled and compiled_available()
    if compiled:  # market by market while its exp(mu) sits in L2 cache
        from blpdemand.solve.anderson_compiled import solve_markets
        fp = solve_markets(utility.exp_mu, utility.outside, utility.weights, shares,
                           product_sizes, agent_sizes, x0, resolved)
    else:
        fp = solve_fixed_point(ContractionMap(utility, shares, pad, owned=owned), x0, resolved)
    if config.method == "auto" and resolved.method == "anderson" and fp.codes.any():
        intact = compiled or not owned  # the numpy map compacts an owned exp(mu)
        fp = _fallback(utility if intact else recompute(), shares, pad, x0, fp, config)
    return fp


def _fallback(utility: ExpUtility, shares: FloatArray, pad: FloatArray | None, x0: FloatArray,
              fp: FixedPointResult, config: FixedPointConfig) -> FixedPointResult:
    """Solve the failed markets again with SQUAREM from the same start, within what is left of
    their evaluation budget; merge.

    Markets whose very first evaluation G(x0) was not finite are not retried: SQUAREM would
    start with the same G(x0) and fail at once, and its NaN row would ride along in the batched
    solver's work set with the others.
    """
    evaluations, codes = fp.evaluations[fp.failed], fp.codes[fp.failed]
    hopeless = (codes == 2) & (evaluations == 1)
    failed = fp.failed[(evaluations < config.max_evaluations) & ~hopeless]
    if not failed.size:
        return fp
    budget = config.max_evaluations - int(fp.evaluations[failed].max())
    retry = solve_fixed_point(
        ContractionMap(utility.take(failed), shares[failed], None if pad is None else pad[failed],
                       owned=True),
        x0[failed], dataclasses.replace(config, method="squarem", max_evaluations=budget))
    x, codes = fp.x.copy(), fp.codes.copy()
    evaluations, change = fp.evaluations.copy(), fp.change.copy()
    x[failed], codes[failed], change[failed] = retry.x, retry.codes, retry.change
    evaluations[failed] += retry.evaluations
    return FixedPointResult(x=x, codes=codes, evaluations=evaluations, change=change)
