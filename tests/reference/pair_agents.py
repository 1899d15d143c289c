"""Shared check: our agents from a product rule paired with demographic rows equal PyBLP's.

PyBLP pairs the rule's nodes with the first rows of each market's agent data (in data order);
``bd.Integration(..., pairing="pair")`` must give the same nodes, weights and demographics
after a stable sort by market (1e-14).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyblp

import blpdemand as bd


def assert_pair_agents_match_pyblp(products: pd.DataFrame, agents: pd.DataFrame,
                                   demographics: list[str], points: int, agents_per_market: int
                                   ) -> None:
    formula = " + ".join(demographics)
    instruments = [c for c in products.columns if c.startswith("demand_instruments")]
    rule = bd.Integration("product", points, demographics_data=agents[["market_ids", *demographics]],
                          pairing="pair")
    ours = bd.Problem(products, linear="prices", nonlinear="1 + prices + sugar + mushy",
                      demographics=formula, agents=rule, absorb="C(product_ids)",
                      instruments=instruments).agents
    with np.errstate(all="ignore"):
        theirs = pyblp.Problem(
            (pyblp.Formulation("0 + prices", absorb="C(product_ids)"),
             pyblp.Formulation("1 + prices + sugar + mushy")),
            products, pyblp.Formulation("0 + " + formula), agents,
            integration=pyblp.Integration("product", points)).agents
    order = np.argsort(np.asarray(theirs.market_ids).ravel(), kind="stable")
    assert ours.I == len(order) == products["market_ids"].nunique() * agents_per_market
    np.testing.assert_array_equal(ours.markets.ids[ours.markets.codes],
                                  np.asarray(theirs.market_ids).ravel()[order])
    # the same quadrature formulas in both tools: agreement to a few ulps of each array's scale
    for got, expected in ((ours.nodes, np.asarray(theirs.nodes)[order]),
                          (ours.weights, np.asarray(theirs.weights).ravel()[order]),
                          (ours.demographics, np.asarray(theirs.demographics)[order])):
        np.testing.assert_allclose(got, expected, rtol=0,
                                   atol=64 * np.finfo(float).eps * max(1.0, np.abs(expected).max()))
