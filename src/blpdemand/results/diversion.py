"""Diversion ratios: where the sales lost by a price increase go.

D_jk = -(ds_k/dp_j) / (ds_j/dp_j) for k != j, the share of j's lost sales that go to k; the
diagonal holds diversion to the outside good D_jj = -(ds_0/dp_j) / (ds_j/dp_j) with
ds_0/dp_j = -sum_k ds_k/dp_j, so each row sums to one (Conlon and Mortimer 2021). A nested
logit takes ds/dp from ``nested_jacobians`` (Cardell 1997), a random-coefficients nested logit
from ``rcnl_jacobians``.

Long-run (second-choice) diversion removes product j instead: D_jk = (s_k^(-j) - s_k) / s_j,
where s^(-j) are the shares with j taken off the market at unchanged prices; per agent the
logit gives s_ik^(-j) = s_ik / (1 - s_ij), so s^(-j) needs no new exponentials. The diagonal
again holds the outside good, and each row sums to one.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from blpdemand._types import FloatArray
from blpdemand.model.demand import block_shares, demand_blocks
from blpdemand.results.elasticities import MarketMatrices, _record, as_fitted, demand_jacobians


def compute_diversion_ratios(results: Any, name: str = "prices") -> MarketMatrices:
    """Diversion ratios of every market, rows j (the product whose ``name`` rises), columns k.

    Returns MarketMatrices whose (J_t, J_t) matrices have D_jk off the diagonal and the
    diversion to the outside good on the diagonal.
    """
    fitted = as_fitted(results, nested=True)
    jacobians, _ = demand_jacobians(fitted, name)
    out = []
    for jac in jacobians:
        # jac[k, j] = ds_k / dx_j; row j of the ratio matrix reads column j of jac.
        own = np.diag(jac)
        ratios = -jac.T / own[:, None]
        np.fill_diagonal(ratios, jac.sum(axis=0) / own)
        out.append(ratios)
    return _record(fitted, "diversion ratios", name, out)


def compute_long_run_diversion_ratios(results: Any) -> MarketMatrices:
    """Long-run diversion ratios of every market: rows j (the product removed), columns k.

    D_jk = (s_k^(-j) - s_k) / s_j with s_k^(-j) = sum_i w_i s_ik / (1 - s_ij); the diagonal is
    the diversion to the outside good, (s_0^(-j) - s_0) / s_j. Prices are held fixed.
    """
    fitted = as_fitted(results)
    out: list[FloatArray] = [np.zeros((0, 0))] * fitted.problem.products.markets.T
    for block in demand_blocks(fitted):  # markets of equal size at once
        probabilities = block.probabilities()  # (T_b, J, I)
        shares = block_shares(probabilities, block.weights)  # (T_b, J)
        outside = 1.0 - probabilities.sum(axis=1)  # (T_b, I)
        # agent weights rescaled by 1 / (1 - s_ij): row j is the market without product j
        rescaled = block.weights[:, None, :] / (1.0 - probabilities)
        without = np.matmul(rescaled, probabilities.transpose(0, 2, 1))  # [t, j, k] = s_k^(-j)
        ratios = (without - shares[:, None, :]) / shares[:, :, None]
        j = np.arange(shares.shape[1])
        ratios[:, j, j] = ((np.matmul(rescaled, outside[:, :, None])[:, :, 0]
                            - (outside * block.weights).sum(axis=1)[:, None]) / shares)
        for k, t in enumerate(block.markets.tolist()):
            out[t] = ratios[k]
    return _record(fitted, "long-run diversion ratios", "prices", out)
