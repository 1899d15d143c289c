"""Estimated fixed effects are retrievable: ``results.fixed_effects``.

Reference: closed form. With one absorbed effect per product, xi is demeaned within product,
so each product's effect is the mean over its markets of delta - X1 beta (pandas groupby here).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

import blpdemand as bd

NEVO_Z = [f"demand_instruments{k}" for k in range(20)]


def test_logit_fixed_effects_are_the_product_means(nevo_products: pd.DataFrame) -> None:
    logit = bd.estimate_logit(nevo_products, linear="prices", absorb="C(product_ids)",
                              instruments=NEVO_Z)
    alpha = logit.alpha
    expected = (pd.Series(logit.delta - alpha * nevo_products["prices"].to_numpy())
                .groupby(nevo_products["product_ids"]).transform("mean").to_numpy())
    np.testing.assert_allclose(logit.fixed_effects, expected, rtol=0,
                               atol=1e-10 * np.abs(expected).max())
    plain = bd.estimate_logit(nevo_products, linear="1 + prices", instruments=NEVO_Z)
    assert np.abs(plain.fixed_effects).max() <= 1e-10 * np.abs(plain.delta).max()


def test_blp_fixed_effects_are_the_product_means(nevo_products: pd.DataFrame,
                                                 nevo_agents: pd.DataFrame) -> None:
    problem = bd.Problem(nevo_products, linear="prices", nonlinear="1 + prices",
                         agents=nevo_agents, absorb="C(product_ids)", instruments=NEVO_Z)
    results = bd.evaluate(problem, sigma=[0.5, 2.0], config=bd.EstimationConfig(hessian=False))
    prices = nevo_products["prices"].to_numpy()
    expected = (pd.Series(results.delta - results.beta[0] * prices)
                .groupby(nevo_products["product_ids"]).transform("mean").to_numpy())
    np.testing.assert_allclose(results.fixed_effects, expected, rtol=0,
                               atol=1e-10 * np.abs(expected).max())
