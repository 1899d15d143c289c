"""Cost shifters, demographic and Salanie-Wolak terms, fitted prices, and block memory.

References: pandas group-by computations written out here (weighted market means and
variances, inside-share-weighted characteristic sums), OLS with explicit dummy columns solved by
numpy lstsq for the absorbed first stage, and the closed form J_t^2 pair count for the blocks.
Tolerances are stated per test.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import blpdemand as bd
from blpdemand.errors import DataError, SpecificationError
from blpdemand.instruments._prepare import pair_blocks, prepare


def test_cost_shifters_pass_through_and_errors(cars: pd.DataFrame) -> None:
    # The RXR column comes back unchanged in the caller's order; errors name the column.
    shuffled = cars.sample(frac=1.0, random_state=0)
    out = bd.build_cost_shifters(shuffled, ["RXR"])
    assert out.index.equals(shuffled.index) and np.array_equal(out["RXR"], shuffled["RXR"])
    assert bd.build_cost_shifters(shuffled, "log(RXR)").columns.tolist() == ["log_RXR"]
    with pytest.raises(DataError, match=r"\['steel'\]"):
        bd.build_cost_shifters(cars, ["RXR", "steel"])
    with pytest.raises(DataError, match="'RXR'.*NaN"):
        bd.build_cost_shifters(cars.assign(RXR=np.where(cars.index == 5, np.nan, cars["RXR"])),
                               ["RXR"])
    with pytest.raises(SpecificationError, match=r"\['one'\] are constant"):
        bd.build_cost_shifters(cars.assign(one=1.0), ["RXR", "one"])


def test_demographic_interactions_equal_weighted_groupby(blp_products: pd.DataFrame,
                                                         blp_agents: pd.DataFrame) -> None:
    # Reference: m_t = sum_i w_i y_i / sum_i w_i by pandas (BLP weights sum to 0.154, so the
    # normalization matters), times x_jt. Tolerance 1e-12 relative.
    agents = blp_agents.assign(inv=1.0 / blp_agents["income"])
    w = agents["weights"]
    mean = (w * agents["inv"]).groupby(agents["market_ids"]).sum() / w.groupby(
        agents["market_ids"]).sum()
    products = blp_products.sample(frac=1.0, random_state=4)
    out = bd.build_demographic_instruments(products, blp_agents, "0 + prices + hpwt",
                                           "I(1 / income)")
    ref = products["market_ids"].map(mean).to_numpy()[:, None] * products[["prices", "hpwt"]]
    np.testing.assert_allclose(out.to_numpy(), ref.to_numpy(), rtol=1e-12)
    assert out.columns.tolist() == ["demo_I_1_income_x_prices", "demo_I_1_income_x_hpwt"]


def test_salanie_wolak_terms_equal_direct_formula(nevo_products: pd.DataFrame,
                                                  nevo_agents: pd.DataFrame) -> None:
    # Reference: d = (x / 2 - sum_k s_k x_k) x with pandas group sums, and the weighted market
    # variance of income (population form, weights normalized). Tolerance 1e-12 relative.
    d = nevo_products.sample(frac=1.0, random_state=5)
    out = bd.build_salanie_wolak_terms(d, ["prices"], nevo_agents, ["income"])
    e = (d["shares"] * d["prices"]).groupby(d["market_ids"]).transform("sum")
    art = (d["prices"] / 2 - e) * d["prices"]
    a = nevo_agents
    m = a.groupby("market_ids")["income"].transform("mean")  # equal weights 0.05
    var = ((a["income"] - m) ** 2).groupby(a["market_ids"]).mean()
    np.testing.assert_allclose(out["sw_prices"], art, rtol=1e-12)
    np.testing.assert_allclose(out["sw_var_income_x_prices"],
                               d["market_ids"].map(var) * art, rtol=1e-12)
    with pytest.raises(DataError, match=r"\['shares'\]"):
        bd.build_salanie_wolak_terms(d.drop(columns="shares"), ["prices"])


def test_absorbed_first_stage_equals_dummy_regression(blp_products: pd.DataFrame) -> None:
    # Reference (Frisch-Waugh-Lovell): OLS of prices on hpwt, air, trend-free cost shifter and
    # explicit year dummies by numpy lstsq; fitted values equal p_hat to 1e-8 absolute.
    first = bd.fit_prices(blp_products, ["hpwt", "air"], ["supply_instruments10"],
                          absorb="C(market_ids)")
    dummies = pd.get_dummies(blp_products["market_ids"], dtype=float).to_numpy()
    Z = np.column_stack([blp_products[["hpwt", "air", "supply_instruments10"]].to_numpy(),
                         dummies])
    p = blp_products["prices"].to_numpy()
    coef, *_ = np.linalg.lstsq(Z, p, rcond=None)
    assert np.max(np.abs(first.p_hat.to_numpy() - Z @ coef)) < 1e-8
    np.testing.assert_allclose(first.coefficients, coef[:3], rtol=1e-8)
    frame = first.frame()
    assert frame.columns.tolist() == ["p_hat"] and frame.index.equals(blp_products.index)


def test_fitted_prices_enter_demographic_instruments(nevo_products: pd.DataFrame,
                                                     nevo_agents: pd.DataFrame) -> None:
    # m_t^y p_hat_jt: the builder on the substituted frame equals the product computed here.
    first = bd.fit_prices(nevo_products, "1 + sugar + mushy", ["demand_instruments0"])
    out = bd.build_demographic_instruments(bd.with_fitted_prices(nevo_products, first),
                                           nevo_agents, ["prices"], ["income"])
    m = nevo_agents.groupby("market_ids")["income"].mean()
    ref = nevo_products["market_ids"].map(m) * first.p_hat
    np.testing.assert_allclose(out["demo_income_x_prices"], ref, rtol=1e-12)
    with pytest.raises(SpecificationError, match="line up"):
        bd.with_fitted_prices(nevo_products.iloc[:10], first)


def test_pair_blocks_cover_each_pair_once_and_stay_small() -> None:
    # Closed form: the blocks visit sum_t J_t^2 (j, k) pairs, each once, and no block is larger
    # than the budget (a market bigger than the budget is split by rows j).
    sizes = [3, 5, 3, 40, 1, 5, 5]
    d = pd.DataFrame({"market_ids": np.repeat(np.arange(len(sizes)), sizes)})
    markets = prepare(d).markets
    seen = np.zeros((len(d), len(d)), dtype=int)
    for rows_j, rows_k in pair_blocks(markets, budget=100):
        assert rows_j.shape[0] * rows_j.shape[1] * rows_k.shape[1] <= 100 or rows_j.shape[1] == 1
        np.add.at(seen, (rows_j[:, :, None], rows_k[:, None, :]), 1)
    assert seen.sum() == sum(j * j for j in sizes) and seen.max() == 1


def test_unknown_reserved_column_and_missing_firm() -> None:
    d = pd.DataFrame({"year": [1, 1], "x": [0.0, 1.0]})
    with pytest.raises(DataError, match=r"\['market_ids', 'firm_ids'\]|\['firm_ids'\]"):
        bd.build_blp_instruments(d, ["1", "x"], columns={"market_ids": "year"})
    out = bd.build_differentiation_instruments(d, ["x"], split=False, version="quadratic",
                                               columns={"market_ids": "year"})
    assert out["gh_quad_all_x"].tolist() == [1.0, 1.0]
