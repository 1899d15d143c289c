"""Diversion ratios: where the sales lost by a price increase go.

D_jk = -(ds_k/dp_j) / (ds_j/dp_j) for k != j, the share of j's lost sales that go to k; the
diagonal holds diversion to the outside good D_jj = -(ds_0/dp_j) / (ds_j/dp_j) with
ds_0/dp_j = -sum_k ds_k/dp_j, so each row sums to one (Conlon and Mortimer 2021).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from blpdemand.model.pricing import market_demands
from blpdemand.results.elasticities import MarketMatrices, _record, as_fitted, market_jacobians


def compute_diversion_ratios(results: Any, name: str = "prices") -> MarketMatrices:
    """Diversion ratios of every market, rows j (the product whose ``name`` rises), columns k.

    Returns MarketMatrices whose (J_t, J_t) matrices have D_jk off the diagonal and the
    diversion to the outside good on the diagonal.
    """
    fitted = as_fitted(results)
    out = []
    for jac in market_jacobians(market_demands(fitted, name)):
        # jac[k, j] = ds_k / dx_j; row j of the ratio matrix reads column j of jac.
        own = np.diag(jac)
        ratios = -jac.T / own[:, None]
        np.fill_diagonal(ratios, jac.sum(axis=0) / own)
        out.append(ratios)
    return _record(fitted, "diversion ratios", name, out)
