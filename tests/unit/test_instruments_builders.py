"""Cost shifters, demographic and Salanie-Wolak terms, fitted prices, and block memory.

References: pandas group-by computations written out here (weighted market means and
variances, inside-share-weighted characteristic sums), OLS with explicit dummy columns solved by
numpy lstsq for the absorbed first stage, and explicit loops over pairs for the local runs.
Tolerances are stated per test.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import blpdemand as bd
from blpdemand.errors import DataError, SpecificationError


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


def _brute_force(x: np.ndarray, markets: np.ndarray, firms: np.ndarray, sd: np.ndarray,
                 include_self: bool) -> np.ndarray:
    """Local counts and interactions by explicit loops over (j, k) pairs: own, then rival."""
    n, K = x.shape
    own, rival = np.zeros((n, K * K)), np.zeros((n, K * K))
    for j in range(n):
        for k in range(n):
            if markets[k] != markets[j] or (k == j and not include_self):
                continue
            target = own if firms[k] == firms[j] else rival
            for a in range(K):
                if abs(x[j, a] - x[k, a]) < sd[a]:
                    for b in range(K):
                        target[j, a * K + b] += x[j, b] - x[k, b]
    return np.column_stack([own, rival])


def test_local_runs_equal_brute_force_with_ties() -> None:
    # Reference: explicit double loop over pairs, with many ties (integer characteristics) and
    # several firms; the O(N log J) runs must agree exactly for counts, 1e-12 for sums.
    rng = np.random.default_rng(11)
    n = 120
    d = pd.DataFrame({"market_ids": rng.integers(0, 4, n), "firm_ids": rng.integers(0, 3, n),
                      "a": rng.integers(0, 5, n).astype(float), "b": rng.normal(size=n)})
    ours = bd.build_differentiation_instruments(d, ["a", "b"], interact=True)
    x = d[["a", "b"]].to_numpy()
    m = d["market_ids"].to_numpy()
    diffs = np.concatenate([(x[m == t][:, None, :] - x[m == t][None, :, :]).reshape(-1, 2)
                            for t in np.unique(m)])
    off = np.concatenate([~np.eye((m == t).sum(), dtype=bool).ravel() for t in np.unique(m)])
    sd = np.sqrt(np.mean(diffs[off] ** 2, axis=0))
    ref = _brute_force(x, m, d["firm_ids"].to_numpy(), sd, include_self=False)
    np.testing.assert_allclose(ours.to_numpy(), ref, rtol=0, atol=1e-12)
    counts = bd.build_differentiation_instruments(d, ["a", "b"])
    own_counts = [int(((m == m[0]) & (d["firm_ids"] == d["firm_ids"][0])
                       & (np.abs(x[:, 0] - x[0, 0]) < sd[0])).sum()) - 1]
    assert counts["gh_local_own_a"].iloc[0] == own_counts[0]


def test_memory_stays_linear_in_products() -> None:
    # A single 3,000-product market: one J x J float array would take 72 MB; the builders keep
    # work arrays O(N) (traced peak under 10 MB for 3 characteristics, both versions).
    import tracemalloc

    rng = np.random.default_rng(0)
    n = 3000
    d = pd.DataFrame({"market_ids": np.zeros(n, dtype=int), "firm_ids": rng.integers(0, 20, n),
                      "x1": rng.normal(size=n), "x2": rng.normal(size=n),
                      "x3": rng.normal(size=n)})
    for version in ("local", "quadratic"):
        tracemalloc.start()
        bd.build_differentiation_instruments(d, ["x1", "x2", "x3"], version=version,
                                             interact=True)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert peak < 10 * 2**20, (version, peak)


def test_unknown_reserved_column_and_missing_firm() -> None:
    d = pd.DataFrame({"year": [1, 1], "x": [0.0, 1.0]})
    with pytest.raises(DataError, match=r"\['market_ids', 'firm_ids'\]|\['firm_ids'\]"):
        bd.build_blp_instruments(d, ["1", "x"], columns={"market_ids": "year"})
    out = bd.build_differentiation_instruments(d, ["x"], split=False, version="quadratic",
                                               columns={"market_ids": "year"})
    assert out["gh_quad_all_x"].tolist() == [1.0, 1.0]


def test_cost_shifter_frame_drives_logit_iv_on_cars(cars: pd.DataFrame) -> None:
    # Reference: the course notebook's IV logit on the cars data (all controls, year and make
    # effects, RXR as the excluded instrument): alpha = -0.1694, -0.16939 in the independent
    # re-computation of data/course/PROVENANCE.md. The builder's frame (shuffled rows) must
    # line up with the products inside estimate_logit. Tolerance 5e-5.
    from blpdemand.results.logit import estimate_logit

    c = cars.sample(frac=1.0, random_state=0)
    c = c.assign(shares=c["market_share"], prices=c["price"], market_ids=c["year"])
    linear = ("prices + log(height) + log(hp) + log(mpg) + log(weight) + log(footprint) + "
              "log(number_trims) + releaseYear + yearsSinceDesign + sport + EV + truck + suv + van")
    result = estimate_logit(c, linear=linear, instruments=bd.build_cost_shifters(c, ["RXR"]),
                            absorb="C(year) + C(make)")
    assert float(result.params["prices"]) == pytest.approx(-0.16939, abs=5e-5)
