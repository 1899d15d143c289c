"""The inner loop of a random-coefficients nested logit: delta(theta) and d delta / d theta.

The RCNL contraction is damped by each product's lambda_g = 1 - rho_g (Grigolon and Verboven
2014; PyBLP's convention):

    delta^{k+1} = delta^k + (1 - rho_g) [log s_obs - log s(delta^k; theta)],

a contraction where the undamped BLP map is not (its modulus grows to 1/(1 - rho) near the
nest). It is solved block by block with the batched accelerated solvers of
``solve.fixed_point`` (SQUAREM by default); the Jacobian follows from the implicit function
theorem, d delta / d theta = -(ds/ddelta)^{-1} [ds/dSigma, ds/dPi, ds/drho]
(``model.rcnl``). The object has the interface the GMM objective uses (``InnerLoop``'s).
"""

from __future__ import annotations

import dataclasses
from types import ModuleType
from typing import Any

import numpy as np

from blpdemand._types import BoolArray, FloatArray, IntArray
from blpdemand.errors import SpecificationError
from blpdemand.model.derivatives import delta_theta_jacobian
from blpdemand.model.nesting import within_shares
from blpdemand.model.parameters import ParameterLayout
from blpdemand.model.problem import Problem
from blpdemand.model.rcnl import (
    NestedProbabilities,
    nest_maxima,
    nest_membership,
    nested_delta_jacobian,
    nested_probabilities,
)
from blpdemand.model.utility import lognormal_coefficients
from blpdemand.solve.contraction import (
    BlockTally,
    ContractionResult,
    InnerLoop,
    _on_failure,
    _start,
)
from blpdemand.solve.fixed_point import FixedPointConfig, solve_fixed_point
from blpdemand.solve.market_blocks import (
    _Block,
    _coefficient_map,
    _derivative_variables,
    _prepare,
)
from blpdemand.solve.warm_start import DeltaPredictor


def rcnl_compiled() -> ModuleType:
    """The compiled RCNL kernels (``model.rcnl_compiled``), loaded at the first nested problem:
    importing them loads numba and the kernels (0.3 s), which a logit run never needs."""
    from blpdemand.model import rcnl_compiled as module

    return module


NEWTON_RHO = 1.0  # "auto" solves by Newton's method where some rho exceeds this (never: at rho
# near 1 Newton's steps overshoot the nearly discontinuous shares and its safeguard falls back
# to damped steps, slower than SQUAREM from the rho-adjusted start)


class NestedContractionMap:
    """G(delta) = delta + lambda (log s_obs - log s(delta)) on a block's work set
    (a ``solve.fixed_point.BatchedMap``)."""

    def __init__(self, mu: FloatArray, onehot: BoolArray, lam: FloatArray, weights: FloatArray,
                 shares: FloatArray) -> None:
        self.mu, self.onehot, self.lam, self.weights = mu, onehot, lam, weights
        self.real: BoolArray = np.asarray(onehot.any(axis=2))
        self.membership = onehot.astype(np.float64)
        self.lam_j = np.where(self.real, self.membership @ lam, 1.0)
        self.log_shares = np.log(shares)
        # exp(mu / lambda - m_g) once per theta (m_g its maximum in the nest, per agent): each
        # step then needs exp(delta / lambda - c_g) only, c_g delta / lambda's maximum in the nest
        scaled = mu / self.lam_j[:, :, None]
        self.m = nest_maxima(scaled, onehot)  # (T_b, G, I)
        self.E = np.exp(scaled - self.membership @ self.m) * self.real[:, :, None]
        self.codes: IntArray = onehot.argmax(axis=2)  # (T_b, J) nest of each slot
        self._prepare()

    def _prepare(self) -> None:
        """The compiled step's arrays in its layout (no conversion per step)."""
        for name in ("E", "m", "codes", "real", "lam", "weights", "log_shares", "lam_j"):
            setattr(self, name, rcnl_compiled().prepared(getattr(self, name)))

    def _shares(self, x: FloatArray) -> tuple[NestedProbabilities, FloatArray]:
        p = nested_probabilities(x[:, :, None] + self.mu, self.onehot, self.lam)
        s = np.einsum("tji,ti->tj", p.probabilities, self.weights)
        return p, np.where(self.real, s, 1.0)

    def evaluate(self, x: FloatArray) -> FloatArray:
        # compiled (model.rcnl_compiled; model.rcnl.block_nested_shares is its numpy twin):
        # exp(delta / lambda) shifted by the market's largest delta / lambda; where a nest whose
        # every product lies ~700 below it underflows, the log-sum-exp path below
        step: tuple[FloatArray, bool] = rcnl_compiled().nested_step(
            x, self.E, self.m, self.codes, self.real, self.lam, self.weights, self.log_shares,
            self.lam_j)
        if step[1]:
            return step[0]
        s = self._shares(x)[1]
        fallback: FloatArray = x + self.lam_j * (self.log_shares - np.log(s))
        return fallback

    def residual_jacobian(self, x: FloatArray) -> tuple[FloatArray, FloatArray]:
        p, s = self._shares(x)
        jacobian = nested_delta_jacobian(p, self.weights)
        t, j = np.nonzero(~self.real)
        jacobian[t, j, :] = 0.0
        jacobian[t, j, j] = 1.0
        residual = self.lam_j * (np.log(s) - self.log_shares)
        return residual, self.lam_j[:, :, None] * jacobian / s[:, :, None]

    def restrict(self, keep: IntArray) -> None:
        self.mu, self.onehot, self.weights = self.mu[keep], self.onehot[keep], self.weights[keep]
        self.real, self.lam_j = self.real[keep], self.lam_j[keep]
        self.membership, self.log_shares = self.membership[keep], self.log_shares[keep]
        self.E, self.m, self.codes = self.E[keep], self.m[keep], self.codes[keep]
        self._prepare()


class NestedInnerLoop:
    """delta(theta) and its Jacobian for an RCNL problem (the ``InnerLoop`` interface)."""

    caches_exp_mu = False  # the gradient comes from the full Jacobian, not the adjoint

    def __init__(self, problem: Problem, layout: ParameterLayout, *,
                 config: FixedPointConfig | None = None) -> None:
        if problem.nests is None:
            raise SpecificationError("NestedInnerLoop needs a Problem with nesting=...")
        self.problem, self.layout = problem, layout
        self.config = config or FixedPointConfig()
        # "auto": SQUAREM, or Newton where some rho exceeds NEWTON_RHO (the damped map's
        # modulus approaches 1 as rho -> 1: hundreds of steps against Newton's few)
        self.auto = self.config.method == "auto"
        if self.auto:  # the compiled kernels solve the plain logit only
            self.config = dataclasses.replace(self.config, method="squarem")
        self.newton = dataclasses.replace(self.config, method="newton")
        self.blocks = _prepare(problem, layout, self.config.block_bytes)
        nests = problem.nests
        self.G = int(nests.labels.size)
        self.per_nest = nests.per_nest
        codes = nests.codes.astype(np.float64)
        self.onehot = [nest_membership(b.block.gather_products(codes).astype(np.int64),
                                       self.G, b.block.product_pad) for b in self.blocks]
        self.lognormal = problem.lognormal if problem.has_lognormal else None
        self._last_delta: FloatArray | None = None
        self._last_rho: FloatArray | None = None  # (N,) each row's rho at the last delta
        self._predictor = DeltaPredictor(layout.P)
        self.log_within = np.log(within_shares(problem.products.shares, nests.cells))

    # ------------------------------------------------------------------ pieces at theta
    def _lambda(self, theta: FloatArray) -> FloatArray:
        """(G,) lambda_g = 1 - rho_g."""
        rho = self.layout.rho(theta)
        return 1.0 - (rho if self.per_nest else np.full(self.G, float(rho[0])))

    def _row_rho(self, theta: FloatArray) -> FloatArray:
        """(N,) rho_g of each product's nest."""
        assert self.problem.nests is not None
        out: FloatArray = (1.0 - self._lambda(theta))[self.problem.nests.codes]
        return out

    def _start(self, theta: FloatArray) -> FloatArray:
        """The warm start at theta: delta predicted from the last solutions and their
        d delta / d theta (``solve.warm_start``), else the last delta moved by
        -(rho' - rho) log s_{j|g} (exact for the nested logit, where delta = log(s_j / s_0) -
        rho_g log s_{j|g}; Berry 1994), or that nested-logit delta itself before any solve. A
        jump of rho towards 1 otherwise leaves the damped contraction hundreds of steps from
        its fixed point; the prediction halves the steps of bench_rcnl's estimate."""
        rho = self._row_rho(theta)
        if self._last_delta is None or self._last_rho is None:
            out: FloatArray = self.problem.products.logit_delta - rho * self.log_within
            return out
        shifted = self._last_delta - (rho - self._last_rho) * self.log_within
        predicted = self._predictor.predict(theta, default=shifted)
        return shifted if predicted is None else predicted

    def _mu(self, data: _Block, mapping: FloatArray) -> FloatArray:
        coefficients = np.matmul(data.variables, mapping)
        if self.lognormal is not None:
            coefficients = lognormal_coefficients(coefficients, self.lognormal)
        mu: FloatArray = np.matmul(data.x2, coefficients.transpose(0, 2, 1))
        return mu

    def _block_jacobian(self, b: int, theta: FloatArray, delta_block: FloatArray) -> FloatArray:
        """(T_b, J, P) d delta / d theta of block b at its solved delta: the share derivatives
        in one compiled pass per agent (``model.rcnl_compiled.nested_jacobians``)."""
        data, mapping, lam = self.blocks[b], _coefficient_map(self.layout, theta), \
            self._lambda(theta)
        V = delta_block[:, :, None] + self._mu(data, mapping)
        variables, rows, columns = _derivative_variables(data, self.layout, mapping,
                                                         self.lognormal)
        onehot = self.onehot[b]
        ds_ddelta, ds_dtheta = rcnl_compiled().nested_jacobians(
            V, onehot.argmax(axis=2), np.any(onehot, axis=2), lam, data.weights, data.x2,
            variables, rows, columns, self.per_nest)
        return delta_theta_jacobian(ds_ddelta, ds_dtheta, data.block.product_pad)

    # ------------------------------------------------------------------ the interface
    def solve(self, theta: FloatArray, *, delta0: FloatArray | None = None,
              jacobian: bool = False) -> ContractionResult:
        """delta(theta) (and d delta / d theta if ``jacobian`` and every market converged)."""
        theta = np.asarray(theta, dtype=np.float64)
        problem = self.problem
        if delta0 is not None:
            start = _start(delta0, problem.N)
        else:
            start = self._start(theta)
        mapping, lam = _coefficient_map(self.layout, theta), self._lambda(theta)
        config = self.newton if self.auto and lam.min() < 1.0 - NEWTON_RHO else self.config
        tally = BlockTally(start.copy())
        for b, data in enumerate(self.blocks):
            system = NestedContractionMap(self._mu(data, mapping), self.onehot[b], lam,
                                          data.weights, data.shares)
            with np.errstate(all="ignore"):
                fp = solve_fixed_point(system, data.block.gather_products(start), config)
            tally.add(data.block, fp)
        jac = self.jacobian(theta, tally.delta) if jacobian and not tally.failed else None
        result = tally.result(problem, jac)
        if not result.converged:
            _on_failure(self.config, result)
        else:
            self._last_delta, self._last_rho = tally.delta, self._row_rho(theta)
            self._predictor.record(theta, tally.delta, jac)
        return result

    def shares(self, theta: FloatArray, delta: FloatArray) -> FloatArray:
        """(N,) s_jt(delta; theta)."""
        mapping, lam = _coefficient_map(self.layout, theta), self._lambda(theta)
        out = np.empty(self.problem.N)
        for b, data in enumerate(self.blocks):
            system = NestedContractionMap(self._mu(data, mapping), self.onehot[b], lam,
                                          data.weights, data.shares)
            data.block.scatter_products(system._shares(data.block.gather_products(delta))[1],
                                        out)
        return out

    def jacobian(self, theta: FloatArray, delta: FloatArray) -> FloatArray:
        """(N, P) d delta / d theta at (theta, delta) by the implicit function theorem."""
        out = np.empty((self.problem.N, self.layout.P))
        delta = np.asarray(delta, dtype=np.float64)
        for b, data in enumerate(self.blocks):
            with np.errstate(under="ignore"):
                values = self._block_jacobian(b, theta, data.block.gather_products(delta))
            data.block.scatter_products(values, out)
        return out

    def gradient(self, theta: FloatArray, delta: FloatArray, v: FloatArray) -> FloatArray:
        """(P,) v' d delta / d theta."""
        out: FloatArray = np.asarray(v, dtype=np.float64) @ self.jacobian(theta, delta)
        return out


def inner_loop(problem: Problem, layout: ParameterLayout, *,
               config: FixedPointConfig | None = None, **options: Any
               ) -> InnerLoop | NestedInnerLoop:
    """The inner loop for ``problem``: the nested one when it has nests."""
    if problem.nests is not None:
        return NestedInnerLoop(problem, layout, config=config)
    return InnerLoop(problem, layout, config=config, **options)
