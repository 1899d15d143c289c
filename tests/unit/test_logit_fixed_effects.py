"""Absorbed fixed effects equal dummy columns (Frisch-Waugh-Lovell), one-way and two-way.

Reference: the same model with explicit dummies built by formulaic (C(...) in the linear
formula, so they are also exogenous instruments); coefficients and standard errors agree to
1e-8 relative for every covariance type, which also checks the degrees of freedom.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from blpdemand.model.simulation import simulate
from blpdemand.results.logit import estimate_logit

NAMES = ["prices", "x1", "x2"]


@pytest.fixture(scope="module")
def products() -> pd.DataFrame:
    data = simulate(markets=30, products=8, rng=7).products
    data["region"] = data["market_ids"] % 4
    return data


@pytest.mark.parametrize("absorb, dummies", [
    ("C(product_ids)", "C(product_ids)"),
    ("C(product_ids) + C(market_ids)", "C(product_ids) + C(market_ids)"),
])
@pytest.mark.parametrize("method", ["ols", "2sls", "2s-gmm"])
def test_absorbed_equals_dummies(products: pd.DataFrame, absorb: str, dummies: str,
                                 method: str) -> None:
    kwargs = {"instruments": ["w1", "w2"], "method": method}
    absorbed = estimate_logit(products, linear="prices + x1 + x2", absorb=absorb, **kwargs)
    dummy = estimate_logit(products, linear=f"prices + x1 + x2 + {dummies}", **kwargs)
    np.testing.assert_allclose(absorbed.params[NAMES], dummy.params[NAMES], rtol=1e-8)
    assert absorbed.df_resid == dummy.df_resid
    if method == "2s-gmm":
        # Two-step GMM: the coefficients coincide, but the dummy model's residuals carry
        # GMM-estimated effects (not the within projection), so S and the SEs differ (~0.1%).
        assert absorbed.j_statistic == pytest.approx(dummy.j_statistic, rel=1e-8)
        return
    for kind, clusters in [("unadjusted", None), ("robust", None), ("hc1", None),
                           ("clustered", "firm_ids"), ("clustered", ["firm_ids", "region"])]:
        a = absorbed.with_covariance(kind, clusters=clusters)
        b = dummy.with_covariance(kind, clusters=clusters)
        np.testing.assert_allclose(a.bse[NAMES], b.bse[NAMES], rtol=1e-8, err_msg=kind)


def test_first_stage_f_absorbed_equals_dummies(products: pd.DataFrame) -> None:
    # Reference: dummy-column first stage; homoskedastic F uses N - M - D_FE degrees; 1e-8.
    a = estimate_logit(products, linear="prices + x1 + x2", absorb="C(product_ids)",
                       instruments=["w1", "w2"])
    b = estimate_logit(products, linear="prices + x1 + x2 + C(product_ids)",
                       instruments=["w1", "w2"])
    for field in ("f_homoskedastic", "f_robust", "f_effective", "partial_r2"):
        assert getattr(a.first_stage["prices"], field) == pytest.approx(
            getattr(b.first_stage["prices"], field), rel=1e-8)
