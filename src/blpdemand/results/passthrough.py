"""Cost pass-through under Bertrand-Nash pricing: how equilibrium prices move with costs.

The first-order conditions F(p, c) = s(p) + (O * ds/dp')(p - c) = 0 define p(c), so by the
implicit function theorem

    dp/dc' = (dF/dp')^{-1} (O * ds/dp'),
    dF_j/dp_l = ds_j/dp_l + O_jl ds_l/dp_j + sum_k O_jk (p_k - c_k) d^2 s_k / dp_j dp_l,

and for utility linear in prices (agent coefficient alpha_i, weight w_i, s_ij the choice
probabilities) the demand curvature is

    d^2 s_k / dp_j dp_l = sum_i w_i alpha_i^2 [s_ik (1{k=l} - s_il)(1{k=j} - s_ij)
                                               - s_ik s_ij (1{j=l} - s_il)].

With nests (the nested logit and RCNL) the curvature has no short closed form: the conditions
in their markup form p = c + zeta(p) (Morrow and Skerlos 2011) are differenced centrally and
extrapolated (``nested_passthrough``, ``NESTED_STEP``): an error of order 1e-11 of the largest
entry.

Entry (j, l) of a market's matrix: the change in product j's price per unit change in product
l's marginal cost, at the observed prices and the costs they imply (c = p - eta, the conduct of
``compute_costs``). Under perfect competition (O = 0) prices equal costs: the identity.
Weyl and Fabinger (2013) on pass-through; Miller, Remer, Ryan and Sheu (2017) on its use in
merger analysis.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from blpdemand._types import FloatArray
from blpdemand.errors import DataError
from blpdemand.model.demand import demand_blocks
from blpdemand.model.nested_demand import NestedMarketDemand, zeta_markup
from blpdemand.model.pricing import block_share_jacobians
from blpdemand.results.costs import Kappa, markups_sorted, ownership_blocks, ownership_matrices
from blpdemand.results.elasticities import MarketMatrices, _record, as_fitted, model_demands

__all__ = ["compute_passthrough", "curvature_term", "nested_passthrough", "passthrough_blocks"]

#: relative step h of the differences of the markup equation (nested demand), extrapolated from
#: h and h/2 (Richardson: error O(h^4) + rounding eps/h). Against PyBLP's nested demand Hessians
#: (a simulated RCNL market; Nevo's nested logit) the error was 3.5e-12 and 6.0e-8, 3.8e-12 and
#: 1.1e-11, 3.8e-11 and 2.4e-11 of the largest entry at h = 1e-3, 1e-4 and 1e-5 (plain central
#: differences at their best, h = 1e-6: 1.6e-10 and 6.1e-10)
NESTED_STEP = 1e-4


def curvature_term(probabilities: FloatArray, weights: FloatArray, alpha: FloatArray,
                   ownership: FloatArray, margins: FloatArray) -> FloatArray:
    """(T_b, J, J) R_jl = sum_k O_jk m_k d^2 s_k / dp_j dp_l for a block of markets.

    With Q_jk = O_jk m_k, B_ji = sum_k Q_jk s_ik and a_i = w_i alpha_i^2 the sum over k
    collapses to O(J^2 I) work:
    R_jl = 1{j=l} sum_i a_i s_ij (Q_jj - B_ji) + sum_i a_i s_ij (2 B_ji - Q_jj) s_il
           - Q_jl sum_i a_i s_ij s_il.
    """
    a = (weights * alpha * alpha)[:, None, :]  # (T_b, 1, I)
    Q = ownership * margins[:, None, :]
    B = np.matmul(Q, probabilities)  # (T_b, J, I)
    own = np.diagonal(Q, axis1=1, axis2=2)[:, :, None]  # Q_jj
    transposed = probabilities.transpose(0, 2, 1)
    gram = np.matmul(probabilities * a, transposed)  # sum_i a_i s_ij s_il
    R: FloatArray = np.matmul(probabilities * (2.0 * B - own) * a, transposed) - Q * gram
    j = np.arange(probabilities.shape[1])
    R[:, j, j] += np.sum(probabilities * (own - B) * a, axis=2)
    return R


def passthrough_blocks(probabilities: FloatArray, weights: FloatArray, alpha: FloatArray,
                       ownership: FloatArray, margins: FloatArray) -> FloatArray:
    """(T_b, J, J) dp/dc' of a block of markets from its (T_b, J, I) probabilities, (T_b, I)
    weights and price coefficients, (T_b, J, J) ownership and (T_b, J) margins p - c."""
    D = block_share_jacobians(probabilities, weights, alpha)  # D_jk = ds_j / dp_k
    cross = ownership * D.transpose(0, 2, 1)  # O_jl ds_l / dp_j
    dF = D + cross + curvature_term(probabilities, weights, alpha, ownership, margins)
    out = np.empty_like(D)
    competitive = ~np.any(ownership != 0.0, axis=(1, 2))
    out[competitive] = np.eye(D.shape[1])
    strategic = ~competitive
    if strategic.any():
        with np.errstate(all="ignore"):
            try:
                out[strategic] = np.linalg.solve(dF[strategic], cross[strategic])
            except np.linalg.LinAlgError:  # one singular market: named by the caller
                for k in np.flatnonzero(strategic).tolist():
                    try:
                        out[k] = np.linalg.solve(dF[k], cross[k])
                    except np.linalg.LinAlgError:
                        out[k] = np.nan
    return out


def nested_passthrough(demand: NestedMarketDemand, ownership: FloatArray,
                       margins: FloatArray) -> FloatArray:
    """(J, J) dp/dc' of one market with nests, from the first-order conditions in their
    markup form G(p, c) = p - c - zeta(p, c) = 0 (``model.nested_demand.zeta_markup``, rows
    divided by Lambda_jj, so a product with a tiny share keeps its row's precision):
    dp/dc' = -(dG/dp')^{-1} dG/dc', each column of dG/dp' by central differences at
    h_l = NESTED_STEP max(1, |p_l|) and h_l / 2, extrapolated (Richardson), of dG/dc' by one
    central difference (G is linear in c: exact there); the identity where O = 0.
    """
    if not np.any(ownership != 0.0):
        return np.eye(demand.J)
    p0 = np.asarray(demand.prices, dtype=np.float64)
    c0 = p0 - margins

    def residual(prices: FloatArray, costs: FloatArray) -> FloatArray:
        out: FloatArray = prices - costs - zeta_markup(demand, ownership, prices, costs)
        return out

    def central(l: int, h: float, in_costs: bool = False) -> FloatArray:
        """(G(. + h e_l) - G(. - h e_l)) / 2h in prices (or in costs)."""
        step = np.zeros(demand.J)
        step[l] = h
        if in_costs:
            out: FloatArray = (residual(p0, c0 + step) - residual(p0, c0 - step)) / (2 * h)
        else:
            out = (residual(p0 + step, c0) - residual(p0 - step, c0)) / (2 * h)
        return out

    d_prices, d_costs = np.empty((demand.J, demand.J)), np.empty((demand.J, demand.J))
    for l in range(demand.J):
        h = NESTED_STEP * max(1.0, abs(float(p0[l])))
        # Richardson: (4 D(h/2) - D(h)) / 3 cancels the h^2 term of the central difference
        d_prices[:, l] = (4.0 * central(l, h / 2) - central(l, h)) / 3.0
        d_costs[:, l] = central(l, h, in_costs=True)
    with np.errstate(all="ignore"):
        try:
            rho: FloatArray = np.asarray(-np.linalg.solve(d_prices, d_costs), np.float64)
        except np.linalg.LinAlgError:
            rho = np.full((demand.J, demand.J), np.nan)
    return rho


def compute_passthrough(results: Any, *, firm_ids: Any = None, ownership: Any = None,
                        kappa: Kappa | None = None) -> MarketMatrices:
    """Cost pass-through dp_j / dc_l of each market, J_t x J_t, at the observed prices.

    Costs are those the observed prices imply under the ownership (``compute_costs``: the
    estimated conduct with a supply side, else ``firm_ids``, ``ownership`` or ``kappa`` as
    there). Random-coefficients and plain logit demand, and nested demand (nested logit and
    RCNL, by differences; see the module), with prices entering utility linearly; DataError
    names a market whose first-order conditions are singular there.

    Examples
    --------
    >>> rho = compute_passthrough(results).market(market_id)     # doctest: +SKIP
    """
    fitted = as_fitted(results, nested=True)
    markets = fitted.problem.products.markets
    matrices: list[FloatArray] = [np.zeros((int(J), int(J))) for J in markets.sizes]
    if fitted.nests is not None or fitted.problem.nests is not None:
        owners = ownership_matrices(fitted, firm_ids=firm_ids, ownership=ownership, kappa=kappa)
        eta = markups_sorted(fitted, firm_ids=firm_ids, ownership=ownership, kappa=kappa)
        for t, demand in enumerate(model_demands(fitted)):
            assert isinstance(demand, NestedMarketDemand)
            matrices[t] = nested_passthrough(demand, owners[t], eta[markets.slice(t)])
    else:
        blocks = demand_blocks(fitted)
        owners = ownership_blocks(fitted, blocks, firm_ids=firm_ids, ownership=ownership,
                                  kappa=kappa)
        eta = markups_sorted(fitted, firm_ids=firm_ids, ownership=ownership, kappa=kappa,
                             blocks=blocks)
        for block, owner in zip(blocks, owners):
            rho = passthrough_blocks(block.probabilities(), block.weights, block.alpha, owner,
                                     eta[block.rows])
            for k, t in enumerate(block.markets.tolist()):
                matrices[t] = rho[k]
    for t, matrix in enumerate(matrices):
        if not np.all(np.isfinite(matrix)):
            raise DataError(
                f"market {np.asarray(markets.ids[t]).tolist()!r}: the derivative of the "
                "Bertrand first-order conditions in prices is singular, so pass-through is not "
                "determined there; check the estimates (a price coefficient near 0, rho near "
                "1) and the ownership matrix")
    return _record(fitted, "pass-through", "costs", matrices)
