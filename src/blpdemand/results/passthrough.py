"""Cost pass-through under Bertrand-Nash pricing: how equilibrium prices move with costs.

The first-order conditions F(p, c) = s(p) + (O * ds/dp')(p - c) = 0 define p(c), so by the
implicit function theorem

    dp/dc' = (dF/dp')^{-1} (O * ds/dp'),
    dF_j/dp_l = ds_j/dp_l + O_jl ds_l/dp_j + sum_k O_jk (p_k - c_k) d^2 s_k / dp_j dp_l,

and for utility linear in prices (agent coefficient alpha_i, weight w_i, s_ij the choice
probabilities) the demand curvature is

    d^2 s_k / dp_j dp_l = sum_i w_i alpha_i^2 [s_ik (1{k=l} - s_il)(1{k=j} - s_ij)
                                               - s_ik s_ij (1{j=l} - s_il)].

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
from blpdemand.errors import DataError, SpecificationError
from blpdemand.model.demand import demand_blocks
from blpdemand.model.pricing import block_share_jacobians
from blpdemand.results.costs import Kappa, markups_sorted, ownership_blocks
from blpdemand.results.elasticities import MarketMatrices, _record, as_fitted

__all__ = ["compute_passthrough", "curvature_term", "passthrough_blocks"]


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


def compute_passthrough(results: Any, *, firm_ids: Any = None, ownership: Any = None,
                        kappa: Kappa | None = None) -> MarketMatrices:
    """Cost pass-through dp_j / dc_l of each market, J_t x J_t, at the observed prices.

    Costs are those the observed prices imply under the ownership (``compute_costs``: the
    estimated conduct with a supply side, else ``firm_ids``, ``ownership`` or ``kappa`` as
    there). Random-coefficients and plain logit demand with prices entering utility linearly;
    DataError names a market whose first-order conditions are singular there.

    Examples
    --------
    >>> rho = compute_passthrough(results).market(market_id)     # doctest: +SKIP
    """
    fitted = as_fitted(results, nested=True)
    if fitted.nests is not None or fitted.problem.nests is not None:
        raise SpecificationError(
            "compute_passthrough needs the curvature of demand, formed here for random-"
            "coefficients and plain logit demand only, not for nested logit")
    blocks = demand_blocks(fitted)
    owners = ownership_blocks(fitted, blocks, firm_ids=firm_ids, ownership=ownership,
                              kappa=kappa)
    eta = markups_sorted(fitted, firm_ids=firm_ids, ownership=ownership, kappa=kappa,
                         blocks=blocks)
    markets = fitted.problem.products.markets
    matrices: list[FloatArray] = [np.zeros((int(J), int(J))) for J in markets.sizes]
    for block, owner in zip(blocks, owners):
        rho = passthrough_blocks(block.probabilities(), block.weights, block.alpha, owner,
                                 eta[block.rows])
        for k, t in enumerate(block.markets.tolist()):
            if not np.all(np.isfinite(rho[k])):
                raise DataError(
                    f"market {np.asarray(markets.ids[t]).tolist()!r}: the derivative of the "
                    "Bertrand first-order conditions in prices is singular, so pass-through is "
                    "not determined there; check the estimates (a price coefficient near 0) "
                    "and the ownership matrix")
            matrices[t] = rho[k]
    return _record(fitted, "pass-through", "costs", matrices)
