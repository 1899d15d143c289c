"""Instrument builders, integration rules and the Salanie-Wolak approximation on irregular inputs.

Earlier bugs hid behind regular test data (balanced, sorted, symmetric). Here every input is
irregular: shuffled rows with a non-default string index, string market/firm/product ids,
markets with one product, a market owned by one firm, single-product firms, constant and tied
characteristics, unbalanced panels, unequal agent counts and weights, absorbed effects.
References: PyBLP 1.3.0 live, brute-force loops over rows written here, closed-form moments of
N(0, I), a hand-written nonlinear 2SLS (scipy least_squares), and full BLP for small sigma.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from pair_agents import assert_pair_agents_match_pyblp
from scipy.optimize import least_squares

import blpdemand as bd
from blpdemand.errors import DataError
from blpdemand.instruments.demographic import (
    build_demographic_instruments,
    build_salanie_wolak_terms,
)
from blpdemand.instruments.differentiation import build_differentiation_instruments
from blpdemand.instruments.fitted_prices import fit_prices
from blpdemand.instruments.hausman import build_hausman_instruments
from blpdemand.integration.rule import Integration
from blpdemand.results.approximation import estimate_approximation

pyblp = pytest.importorskip("pyblp")
pyblp.options.verbose = False


# ----------------------------------------------------------------------------- instruments
def _irregular_products(seed: int = 3) -> pd.DataFrame:
    """Markets 'zeta' (one product), 'alpha' (four products, one firm), 'mid' (a single-product
    firm F3 among multi-product firms), 'beta' (two products, two firms); x continuous, c
    constant, y integer with ties; rows shuffled, string index."""
    rng = np.random.default_rng(seed)
    firms = {"zeta": ["F1"], "alpha": ["F2"] * 4, "mid": ["F1", "F1", "F3", "F2", "F2", "F2"],
             "beta": ["F2", "F1"]}
    rows = [(m, f) for m, fs in firms.items() for f in fs]
    frame = pd.DataFrame(rows, columns=["market_ids", "firm_ids"])
    frame["x"] = rng.normal(size=len(frame))
    frame["c"] = 2.0
    frame["y"] = rng.integers(0, 3, len(frame)).astype(float)
    frame = frame.sample(frac=1.0, random_state=1)
    frame.index = [f"row{i}" for i in range(len(frame))][::-1]
    return frame


def test_blp_instruments_equal_pyblp_on_irregular_markets() -> None:
    # Reference: pyblp.build_blp_instruments on the same shuffled frame (PyBLP keeps row order).
    # Tolerance 1e-12 absolute: sums of at most 6 values of order 1.
    frame = _irregular_products()
    ours = bd.build_blp_instruments(frame, "1 + x + c + y")
    assert ours.index.equals(frame.index)
    with np.errstate(all="ignore"):
        ref = pyblp.build_blp_instruments(pyblp.Formulation("1 + x + c + y"), frame)
    np.testing.assert_allclose(ours.to_numpy(), ref, rtol=0, atol=1e-12)
    # the one-product market has no other products at all; the one-firm market no rivals
    zeta = ours.loc[(frame["market_ids"] == "zeta").to_numpy()]
    assert np.all(zeta.to_numpy() == 0.0)
    alpha = ours.loc[(frame["market_ids"] == "alpha").to_numpy()]
    assert np.all(alpha["blp_rival_count"] == 0.0) and np.all(alpha["blp_own_count"] == 3.0)


@pytest.mark.parametrize("version", ["local", "quadratic"])
@pytest.mark.parametrize("interact", [False, True])
def test_differentiation_instruments_equal_pyblp_on_irregular_markets(version: str,
                                                                      interact: bool) -> None:
    # Reference: pyblp.build_differentiation_instruments (same SD of pairwise differences, pooled
    # over markets; the constant column c gives SD 0 and all-zero columns on both sides).
    # Tolerance 1e-12 absolute: counts are exact, quadratic sums are O(10) with a few roundings.
    frame = _irregular_products()
    ours = build_differentiation_instruments(frame, "x + c + y", version=version,
                                             interact=interact)
    with np.errstate(all="ignore"):
        ref = pyblp.build_differentiation_instruments(pyblp.Formulation("0 + x + c + y"), frame,
                                                      version=version, interact=interact)
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours.to_numpy(), ref, rtol=0, atol=1e-12)


def _unbalanced_panel(seed: int = 5) -> pd.DataFrame:
    """Three cities x two quarters; each market sells a random 1..5 of products a..g."""
    rng = np.random.default_rng(seed)
    rows = []
    for city in ("c1", "c2", "c3"):
        for quarter in ("q1", "q2"):
            for product in rng.choice(list("abcdefg"), size=rng.integers(1, 6), replace=False):
                rows.append((f"{city}-{quarter}", city, quarter, product))
    frame = pd.DataFrame(rows, columns=["market_ids", "city", "quarter", "product_ids"])
    frame["prices"] = rng.normal(size=len(frame))
    frame = frame.sample(frac=1.0, random_state=2)
    frame.index = [f"r{i}" for i in range(len(frame))]
    return frame


@pytest.mark.parametrize("within, across", [(None, None), ("quarter", None), (None, "city"),
                                            ("quarter", "city")])
def test_hausman_on_unbalanced_panel_equals_row_loop(within: str | None,
                                                     across: str | None) -> None:
    # Reference: for each row, the mean price of the same product in the other markets of the
    # pool, by a pandas filter; NaN where the pool is empty. Tolerance 1e-14 (means of <= 5).
    frame = _unbalanced_panel()
    ours = build_hausman_instruments(frame, within=within, across=across, on_single="nan")
    assert ours.index.equals(frame.index)
    ref = []
    for _, row in frame.iterrows():
        pool = frame[(frame["product_ids"] == row["product_ids"])
                     & (frame["market_ids"] != row["market_ids"])]
        if within is not None:
            pool = pool[pool[within] == row[within]]
        if across is not None:
            pool = pool[pool[across] != row[across]]
        ref.append(pool["prices"].mean() if len(pool) else np.nan)
    # means of the same prices summed in another order: relative, a few ulps
    np.testing.assert_allclose(ours["hausman_prices"].to_numpy(), ref, rtol=1e-13)


def test_hausman_missing_period_is_an_error_not_another_products_pool() -> None:
    # Bug found here: a missing 'quarter' got factor code -1, which collided in the combined
    # (product, quarter) code with another product's last quarter, so product 'a' in quarter 2
    # got product 'b''s price 100 as its Hausman instrument. Missing within/across values are
    # now a DataError naming the column and the row, like missing ids.
    frame = pd.DataFrame({"market_ids": [1, 2, 3, 4], "product_ids": ["a", "a", "b", "b"],
                          "quarter": [1.0, 2.0, np.nan, 1.0], "city": ["x", "y", None, "x"],
                          "prices": [1.0, 2.0, 100.0, 8.0]})
    with pytest.raises(DataError, match=r"'quarter'.*row 2"):
        build_hausman_instruments(frame, within="quarter", on_single="nan")
    with pytest.raises(DataError, match=r"'city'.*row 2"):
        build_hausman_instruments(frame, across="city", on_single="nan")
    # complete data: 'a' in quarter 2 has no other market in quarter 2 -> NaN, never 100
    complete = frame.assign(quarter=[1.0, 2.0, 2.0, 1.0])
    out = build_hausman_instruments(complete, within="quarter", on_single="nan")["hausman_prices"]
    assert np.isnan(out.iloc[1]) and np.isnan(out.iloc[2])


def _weighted_agents(markets: list[str], seed: int = 11) -> pd.DataFrame:
    """1..6 agents per market with unequal weights (not normalized), shuffled, offset index,
    plus an agent in a market without products (must be ignored)."""
    rng = np.random.default_rng(seed)
    rows = [(m, rng.uniform(0.1, 3.0), rng.normal()) for m in markets
            for _ in range(rng.integers(1, 7))]
    rows.append(("no-products", 1.0, 100.0))
    agents = pd.DataFrame(rows, columns=["market_ids", "weights", "income"])
    agents = agents.sample(frac=1.0, random_state=3)
    agents.index = agents.index + 1000
    return agents


def test_demographic_and_salanie_wolak_terms_with_unequal_weighted_agents() -> None:
    # Reference: per row, np.average of the market's agents with their weights (mean and
    # population variance), e_t = sum_k s_k x_k by a pandas filter. Tolerance 1e-12.
    rng = np.random.default_rng(7)
    products = _unbalanced_panel().assign(x=lambda f: rng.normal(size=len(f)),
                                          shares=lambda f: rng.uniform(0.01, 0.1, len(f)))
    agents = _weighted_agents(sorted(products["market_ids"].unique()))
    demo = build_demographic_instruments(products, agents, ["x"], ["income"])
    terms = build_salanie_wolak_terms(products, ["1", "x"], agents, ["income"])
    assert demo.index.equals(products.index) and terms.index.equals(products.index)
    ref_demo, ref_terms = [], []
    for _, row in products.iterrows():
        a = agents[agents["market_ids"] == row["market_ids"]]
        mean = np.average(a["income"], weights=a["weights"])
        var = np.average((a["income"] - mean) ** 2, weights=a["weights"])
        market = products[products["market_ids"] == row["market_ids"]]
        d1 = 0.5 - market["shares"].sum()
        dx = (row["x"] / 2 - (market["shares"] * market["x"]).sum()) * row["x"]
        ref_demo.append(mean * row["x"])
        ref_terms.append([d1, dx, var * d1, var * dx])
    np.testing.assert_allclose(demo.iloc[:, 0].to_numpy(), ref_demo, rtol=0, atol=1e-12)
    assert list(terms.columns) == ["sw_1", "sw_x", "sw_var_income_x_1", "sw_var_income_x_x"]
    np.testing.assert_allclose(terms.to_numpy(), ref_terms, rtol=0, atol=1e-12)


def test_fitted_prices_with_absorbed_effects_on_shuffled_rows() -> None:
    # Reference: OLS with explicit city and quarter dummies (numpy lstsq) on the same rows;
    # p_hat includes the absorbed effects. Tolerance 1e-10 (two-way demeaning iterates).
    rng = np.random.default_rng(9)
    products = _unbalanced_panel()
    products = products.assign(x=rng.normal(size=len(products)), w=rng.normal(size=len(products)))
    products["prices"] = products["x"] + products["w"] + rng.normal(size=len(products))
    first = fit_prices(products, ["x"], ["w"], absorb="C(city) + C(quarter)")
    dummies = pd.get_dummies(products[["city", "quarter"]], drop_first=True).astype(float)
    Z = np.column_stack([np.ones(len(products)), products[["x", "w"]], dummies])
    b = np.linalg.lstsq(Z, products["prices"].to_numpy(), rcond=None)[0]
    assert first.p_hat.index.equals(products.index)
    np.testing.assert_allclose(first.p_hat.to_numpy(), Z @ b, rtol=0, atol=1e-10)
    np.testing.assert_allclose(first.coefficients, b[1:3], rtol=0, atol=1e-10)


# ----------------------------------------------------------------------------- integration
def _normal_moment(powers: tuple[int, ...]) -> float:
    """E[prod_k nu_k^p_k] = prod_k (p_k - 1)!! (0 for an odd power), nu ~ N(0, I)."""
    out = 1.0
    for p in powers:
        out *= 0.0 if p % 2 else float(np.prod(np.arange(p - 1, 0, -2, dtype=float)))
    return out


@pytest.mark.parametrize("dimensions", [1, 3, 4])
@pytest.mark.parametrize("points", [2, 3])
def test_product_rule_exact_per_coordinate_degree_in_higher_dimensions(dimensions: int,
                                                                        points: int) -> None:
    # Closed form: an n-point Gauss-Hermite product rule integrates every monomial of degree
    # <= 2n - 1 in each coordinate exactly (E[nu^2] = 1, E[nu^2 nu'^2] = 1, odd -> 0), and
    # fails on nu_1^(2n). Tolerance 1e-13 (sums of at most 4^4 terms of order 10).
    nodes, weights = Integration("product", points).nodes_weights(dimensions)
    assert nodes.shape == (points**dimensions, dimensions) and np.all(weights > 0)
    assert abs(weights.sum() - 1.0) < 1e-14
    for powers in np.ndindex(*([2 * points] * dimensions)):
        value = weights @ np.prod(nodes ** np.array(powers), axis=1)
        assert abs(value - _normal_moment(powers)) < 1e-13 * max(1.0, _normal_moment(powers))
    sharp = (2 * points,) + (0,) * (dimensions - 1)
    assert abs(weights @ nodes[:, 0] ** (2 * points) - _normal_moment(sharp)) > 0.5


@pytest.mark.parametrize("dimensions", [1, 2, 4])
def test_latin_hypercube_has_one_node_per_stratum_in_every_margin(dimensions: int) -> None:
    # Definition (McKay, Beckman and Conover 1979): Phi(nu_ik) falls in each of the I strata
    # [r / I, (r + 1) / I) exactly once per coordinate k; same seed -> same nodes.
    from scipy.special import ndtr

    rule = Integration("lhs", 37, rng=12)
    nodes, weights = rule.nodes_weights(dimensions)
    strata = np.floor(ndtr(nodes) * 37).astype(int)
    for k in range(dimensions):
        assert sorted(strata[:, k]) == list(range(37))
    np.testing.assert_array_equal(Integration("lhs", 37, rng=12).nodes_weights(dimensions)[0],
                                  nodes)
    assert np.all(weights == 1.0 / 37)


def _census(seed: int = 0) -> pd.DataFrame:
    """Census draws: R_t = 1, 5, 3, 8 rows in markets zeta, alpha, mid, beta with unequal
    sampling weights; a market without products; shuffled rows, reversed integer index."""
    rng = np.random.default_rng(seed)
    rows = [(m, rng.uniform(0.2, 2.0), rng.normal() + (3.0 if m == "zeta" else 0.0))
            for m, R in zip(["zeta", "alpha", "mid", "beta"], [1, 5, 3, 8]) for _ in range(R)]
    rows.append(("no-products", 1.0, 50.0))
    frame = pd.DataFrame(rows, columns=["market_ids", "weights", "income"])
    frame = frame.sample(frac=1.0, random_state=0)
    frame.index = np.arange(len(frame))[::-1] * 3
    return frame


@pytest.mark.parametrize("kind, size", [("product", 3), ("sparse_grid", 3), ("sobol", 4),
                                        ("monte_carlo", 3)])
def test_cross_pairing_on_unbalanced_markets_reproduces_weighted_census(kind: str,
                                                                        size: int) -> None:
    # Closed form: with pairing 'cross' agent (i, r) has weight w_i c_r / sum c, so in every
    # market sum w = 1, sum w y = the census-weighted mean of y (np.average), and sum w nu_k^2
    # equals the rule's own E[nu^2] (1 exactly for product and sparse-grid rules). Agent count
    # I x R_t. Tolerance 1e-13.
    census = _census()
    product_markets = np.array(["mid", "zeta", "alpha", "mid", "beta", "beta", "alpha"])
    rule = Integration(kind, size, rng=4, per_market=kind in ("sobol", "monte_carlo"),
                       demographics_data=census, pairing="cross")
    frame = rule.agent_frame(product_markets, dimensions=2)
    assert sorted(frame["market_ids"].unique()) == ["alpha", "beta", "mid", "zeta"]
    for t, market in enumerate(sorted(set(product_markets))):
        agents = frame[frame["market_ids"] == market]
        draws = census[census["market_ids"] == market]
        nodes, weights = rule.nodes_weights(2, market=t if rule.per_market else None)
        assert len(agents) == weights.size * len(draws)
        assert abs(agents["weights"].sum() - 1.0) < 1e-13
        expected = np.average(draws["income"], weights=draws["weights"])
        assert abs(agents["weights"] @ agents["income"] - expected) < 1e-13
        assert abs(agents["weights"] @ agents["nodes1"] ** 2 - weights @ nodes[:, 1] ** 2) < 1e-13
        if kind in ("product", "sparse_grid"):
            assert abs(agents["weights"] @ agents["nodes0"] ** 2 - 1.0) < 1e-13


def test_per_market_streams_follow_market_ids_not_product_row_order() -> None:
    # Documented: market position t in sorted market order draws child stream t. The same
    # markets in any row order (and with repeats) give identical agents; market 'b' keeps its
    # nodes when market 'c' is dropped (it stays at position 1), and differs from 'a'.
    rule = Integration("sobol", 8, rng=4, per_market=True)
    one = rule.agent_frame(["b", "a", "c"], dimensions=2)
    two = rule.agent_frame(["c", "a", "b", "c", "a"], dimensions=2)
    pd.testing.assert_frame_equal(one, two)
    fewer = rule.agent_frame(["b", "a"], dimensions=2)
    np.testing.assert_array_equal(fewer.loc[fewer["market_ids"] == "b", ["nodes0", "nodes1"]],
                                  one.loc[one["market_ids"] == "b", ["nodes0", "nodes1"]])
    assert not np.allclose(one.loc[one["market_ids"] == "a", "nodes0"].to_numpy(),
                           one.loc[one["market_ids"] == "b", "nodes0"].to_numpy())


def test_resampled_census_weights_converge_to_the_weighted_mean() -> None:
    # Simulation with known truth: 'resample' draws census row r with probability c_r / sum c,
    # so the agents' mean income is the census-weighted mean up to sampling error. With
    # I = 20000 draws the error's SD is sd_c(y) / sqrt(I) < 0.01; asserted within 5 SDs.
    census = _census()
    rule = Integration("monte_carlo", 20000, rng=1, demographics_data=census,
                       pairing="resample")
    frame = rule.agent_frame(["alpha", "beta"], dimensions=1)
    for market in ("alpha", "beta"):
        agents = frame[frame["market_ids"] == market]
        draws = census[census["market_ids"] == market]
        mean = np.average(draws["income"], weights=draws["weights"])
        sd = np.sqrt(np.average((draws["income"] - mean) ** 2, weights=draws["weights"]))
        assert abs(agents["weights"] @ agents["income"] - mean) < 5 * sd / np.sqrt(20000)


# ----------------------------------------------------------------------------- Salanie-Wolak
def _sw_markets(seed: int = 7, T: int = 120) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """Mixed logit with beta_i(1) = 0.2 nu_1 + 0.3 y2, beta_i(x1) = 1 + 0.3 nu_0 + 0.4 y1 + 0.2 y2,
    y2 correlated with y1; J_t in 2..8, I_t in 30..199 agents with unequal weights, region
    effects, string market ids. Instruments: quadratic differentiation (interacted) and
    demographic interactions."""
    rng = np.random.default_rng(seed)
    effects = {"r0": 0.0, "r1": 0.3, "r2": -0.2, "r3": 0.5}
    products, agents = [], []
    for t in range(T):
        J, I = rng.integers(2, 9), rng.integers(30, 200)
        x1, w, xi = rng.normal(size=J), rng.uniform(size=J), 0.3 * rng.normal(size=J)
        region = f"r{t % 4}"
        prices = np.exp(0.3 * w + 0.5 * xi + 0.1 * rng.normal(size=J))
        delta = -1.0 + effects[region] - prices + x1 + xi
        y1 = rng.uniform(-1, 1) + rng.uniform(0.5, 1.5) * rng.normal(size=I)
        y2 = 0.5 * y1 + rng.normal(size=I)
        weights = rng.uniform(0.2, 1.8, size=I)
        weights /= weights.sum()
        nu = rng.normal(size=(I, 2))
        slope = 0.3 * nu[:, 0] + 0.4 * y1 + 0.2 * y2
        level = 0.2 * nu[:, 1] + 0.3 * y2
        u = np.exp(delta[:, None] + x1[:, None] * slope[None] + level[None])
        shares = (u / (1.0 + u.sum(axis=0, keepdims=True))) @ weights
        market = f"m{t:03d}"
        products += [(market, region, f"f{j % 3}", shares[j], prices[j], x1[j], w[j])
                     for j in range(J)]
        agents += [(market, weights[i], nu[i, 0], nu[i, 1], y1[i], y2[i]) for i in range(I)]
    P = pd.DataFrame(products, columns=["market_ids", "region", "firm_ids", "shares", "prices",
                                        "x1", "w"])
    A = pd.DataFrame(agents, columns=["market_ids", "weights", "nodes0", "nodes1", "y1", "y2"])
    gh = build_differentiation_instruments(P, "x1 + w", version="quadratic", split=False,
                                           interact=True)
    demo = build_demographic_instruments(P, A, "1 + x1 + w", "y1 + y2")
    P = pd.concat([P, gh, demo], axis=1).assign(x1sq=P["x1"] ** 2)
    return P, A, ["w", "x1sq", *gh.columns, *demo.columns]


SW_PI = [[0.0, 1.0], [1.0, 1.0]]  # pi[1, y2], pi[x1, y1], pi[x1, y2] free


def _sw_problem(P: pd.DataFrame, A: pd.DataFrame, instruments: list[str], *,
                linear: str = "prices + x1", absorb: str | None = "C(region)") -> bd.Problem:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # agent weights sum to one; nothing else expected
        return bd.Problem(P, linear=linear, nonlinear="1 + x1", agents=A,
                          demographics="y1 + y2", absorb=absorb, instruments=instruments)


@pytest.fixture(scope="module")
def sw_data() -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    return _sw_markets()


def test_salanie_wolak_equals_hand_nonlinear_2sls_with_dummies(sw_data) -> None:  # type: ignore[no-untyped-def]
    # Reference: the second-order model written out here with full Omega_t = diag(sigma^2) +
    # Pi C_t Pi' (C_t the weighted covariance of the two correlated demographics by np.average),
    # region effects as explicit dummies in X and Z, fitted by scipy least_squares on the
    # whitened moments L^{-1} Z'r (the 2SLS objective). Our estimate (FE partialled out,
    # Gauss-Newton) must agree to 1e-7 (least_squares stops at ~1e-9 here).
    P, A, instruments = sw_data
    ours = estimate_approximation(_sw_problem(P, A, instruments), sigma=[1.0, 1.0], pi=SW_PI)
    assert ours.converged
    markets = P.groupby("market_ids")
    log_ratio = np.log(P["shares"] / (1 - markets["shares"].transform("sum"))).to_numpy()
    X2 = np.column_stack([np.ones(len(P)), P["x1"]])
    e = np.column_stack([markets["shares"].transform("sum"),
                         (P["shares"] * P["x1"]).groupby(P["market_ids"]).transform("sum")])
    moments = {}
    for market, a in A.groupby("market_ids"):
        Y = a[["y1", "y2"]].to_numpy()
        m = np.average(Y, axis=0, weights=a["weights"])
        moments[market] = (m, np.cov(Y.T, aweights=a["weights"], bias=True))
    M = np.array([moments[t][0] for t in P["market_ids"]])
    C = np.array([moments[t][1] for t in P["market_ids"]])
    dummies = pd.get_dummies(P["region"]).astype(float).to_numpy()
    Z = np.column_stack([dummies, P["x1"], P[instruments]])
    L = np.linalg.cholesky(Z.T @ Z)
    free = [(1, 0), (0, 1), (1, 1)]

    def moments_of(theta: np.ndarray) -> np.ndarray:
        Pi = np.zeros((2, 2))
        for (k, y), value in zip(free, theta[4:7]):
            Pi[k, y] = value
        omega = np.einsum("kd,nde,le->nkl", Pi, C, Pi) + np.diag(theta[2:4])[None]
        r = (log_ratio - theta[0] * P["prices"].to_numpy() - theta[1] * P["x1"].to_numpy()
             - dummies @ theta[7:] - np.einsum("nk,kd,nd->n", X2, Pi, M)
             - np.einsum("nk,nkl,nl->n", X2, omega, X2 / 2 - e))
        return np.asarray(np.linalg.solve(L, Z.T @ r))

    ref = least_squares(moments_of, np.zeros(7 + dummies.shape[1]), xtol=1e-15, ftol=1e-15,
                        gtol=1e-15).x
    np.testing.assert_allclose(ours.estimates, ref[:7], rtol=0, atol=1e-7)


def test_salanie_wolak_is_invariant_to_row_order(sw_data) -> None:  # type: ignore[no-untyped-def]
    # Same data with products and agents shuffled (string index): identical estimates, xi in
    # the caller's row order, identical clustered SEs with cluster ids given as an array in the
    # caller's order or as a column. Tolerance 1e-12 (only summation order differs).
    P, A, instruments = sw_data
    P = P.assign(cl=P["region"] + P["firm_ids"])
    base = _sw_problem(P, A, instruments)
    perm = np.random.default_rng(1).permutation(len(P))
    Ps = P.iloc[perm]
    Ps.index = [f"p{i}" for i in range(len(Ps))]
    shuffled = _sw_problem(Ps, A.sample(frac=1.0, random_state=1), instruments)
    a = estimate_approximation(base, sigma=[1, 1], pi=SW_PI, covariance="clustered",
                               clusters=P["cl"].to_numpy())
    b = estimate_approximation(shuffled, sigma=[1, 1], pi=SW_PI, covariance="clustered",
                               clusters=Ps["cl"].to_numpy())
    c = estimate_approximation(shuffled, sigma=[1, 1], pi=SW_PI, covariance="clustered",
                               clusters="cl")
    np.testing.assert_allclose(b.estimates, a.estimates, rtol=0, atol=1e-12)
    np.testing.assert_allclose(b.xi, a.xi[perm], rtol=0, atol=1e-12)
    np.testing.assert_allclose(b.standard_errors, a.standard_errors, rtol=0, atol=1e-12)
    np.testing.assert_allclose(c.standard_errors, a.standard_errors, rtol=0, atol=1e-12)


def test_salanie_wolak_is_invariant_to_shifting_a_demographic(sw_data) -> None:  # type: ignore[no-untyped-def]
    # Closed form: y1 -> y1 + c leaves C_t unchanged and moves m_t by c; the shift pi c x1 is
    # absorbed by beta_x1 (x1 is in X1), so sigma^2 and pi are unchanged. Bug found here: C_t
    # was E[yy'] - mm', which lost 7e-4 of a unit variance at c = 1e6 (cancellation) and moved
    # the estimates by 1e-5; centred first it is exact to rounding (~3e-11).
    from blpdemand.solve.salanie_wolak import demographic_moments

    P, A, instruments = sw_data
    base = _sw_problem(P, A, instruments, linear="1 + prices + x1", absorb=None)
    shifted = _sw_problem(P, A.assign(y1=A["y1"] + 1e6), instruments,
                          linear="1 + prices + x1", absorb=None)
    m0, C0 = demographic_moments(base)
    m1, C1 = demographic_moments(shifted)
    np.testing.assert_allclose(C1, C0, rtol=0, atol=1e-9)
    np.testing.assert_allclose(m1[:, 0] - 1e6, m0[:, 0], rtol=0, atol=1e-8)
    a = estimate_approximation(base, sigma=[1, 1], pi=SW_PI)
    b = estimate_approximation(shifted, sigma=[1, 1], pi=SW_PI)
    # sigma^2 and pi (positions 3..7): x1 m1 has a 1e6 offset, so allow 1e-7
    np.testing.assert_allclose(b.estimates[3:], a.estimates[3:], rtol=0, atol=1e-7)


def test_salanie_wolak_gap_to_full_blp_shrinks_like_sigma_to_the_fourth() -> None:
    # Relation documented by Salanie and Wolak (2019): the expansion error in log shares is
    # O(sigma^4) for symmetric taste shocks, so on the same data (bd.simulate seed 0, 200
    # markets x 8 products, the simulation's 200 draws used by BLP) the gap between the
    # approximation's sigma^2 and full BLP's sigma^2 grows about 16-fold when sigma doubles.
    # Seed 0 gives gaps 0.0008, -0.016, -0.29 at sigma = 0.25, 0.5, 1 (ratio 18.7 from 0.5 to
    # 1; over seeds 0-4 it was 8 to 19). Asserted: the gap relative to sigma^2 is below 5% at
    # 0.25, below 10% at 0.5, the 0.5 -> 1 ratio is in [6, 32], and the beta gap grows too.
    gaps, beta_gaps = [], []
    for sigma in (0.25, 0.5, 1.0):
        sim = bd.simulate(markets=200, products=8, sigma={"x1": sigma}, draws=200, rng=0)
        gh = build_differentiation_instruments(sim.products, "x1 + x2", version="quadratic")
        products = pd.concat([sim.products, gh], axis=1).assign(x1sq=sim.products["x1"] ** 2)
        problem = bd.Problem(products, linear=sim.linear, nonlinear="0 + x1", agents=sim.agents,
                             instruments=[*sim.instruments, *gh.columns, "x1sq"])
        approx = estimate_approximation(problem)
        start = np.array([[max(approx.sigma[0, 0], 0.1)]])
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            blp = bd.estimate(problem, sigma=start, config=bd.EstimationConfig(hessian=False))
        assert blp.converged
        gaps.append(approx.sigma_squared[0] - blp.sigma[0, 0] ** 2)
        beta_gaps.append(float(np.max(np.abs(approx.beta - blp.beta))))
    assert abs(gaps[0]) < 0.05 * 0.25**2 and abs(gaps[1]) < 0.10 * 0.5**2
    assert 6 < abs(gaps[2]) / abs(gaps[1]) < 32
    assert beta_gaps[0] < beta_gaps[1] < beta_gaps[2]


def test_demographic_instruments_accept_sparse_grid_agent_frames() -> None:
    # Closed form: a sparse-grid rule crossed with census draws gives agent (i, r) the weight
    # w_i c_r / sum c with some w_i < 0 but sum_i w_i = 1, so weighted demographic means and
    # variances are exactly the census ones (np.average). Such frames (which Problem accepts)
    # used to be rejected by the demographic builders ("weights must be positive"); now only a
    # non-positive market total is an error. Tolerance 1e-12.
    census = _census()
    products = pd.DataFrame({"market_ids": ["mid", "zeta", "alpha", "mid", "beta"],
                             "shares": [0.1, 0.2, 0.3, 0.2, 0.1], "x": [1.0, -2.0, 0.5, 3.0, 1.5]})
    frame = Integration("sparse_grid", 3, demographics_data=census,
                        pairing="cross").agent_frame(products["market_ids"], dimensions=2)
    assert (frame["weights"] < 0).any()
    demo = build_demographic_instruments(products, frame, ["x"], ["income"])
    terms = build_salanie_wolak_terms(products, ["x"], frame, ["income"])
    for row, (_, product) in enumerate(products.iterrows()):
        draws = census[census["market_ids"] == product["market_ids"]]
        mean = np.average(draws["income"], weights=draws["weights"])
        var = np.average((draws["income"] - mean) ** 2, weights=draws["weights"])
        assert abs(demo.iloc[row, 0] - mean * product["x"]) < 1e-12
        assert abs(terms.iloc[row, 1] - var * terms.iloc[row, 0]) < 1e-12
    broken = frame.assign(weights=np.where(frame["market_ids"] == "beta", -frame["weights"],
                                           frame["weights"]))
    with pytest.raises(DataError, match=r"'beta'.*non-positive total"):
        build_demographic_instruments(products, broken, ["x"], ["income"])


def test_pair_pairing_equals_pyblp_on_shuffled_uneven_agent_data(
        nevo_products: pd.DataFrame, nevo_agents: pd.DataFrame) -> None:
    # Reference: pyblp.Problem(..., agent_data, integration=Integration('product', 2)), which
    # pairs the rule's 16 nodes with the first 16 agent rows of each market in data order.
    # Here 0-4 agent rows are dropped per market (R_t = 16..20) and products and agents are
    # shuffled: nodes, weights and demographics agree to 1e-14 after a stable sort by market.
    rng = np.random.default_rng(0)
    drop = [i for _, g in nevo_agents.groupby("market_ids")
            for i in rng.choice(g.index, rng.integers(0, 5), replace=False)]
    agents = nevo_agents.drop(index=drop).sample(frac=1.0, random_state=3)
    products = nevo_products.sample(frac=1.0, random_state=4)
    assert_pair_agents_match_pyblp(products, agents, ["income", "age"], 2, 16)


@pytest.mark.parametrize("version", ["local", "quadratic"])
def test_instruments_equal_pyblp_on_shuffled_cars_with_string_ids(cars: pd.DataFrame,
                                                                  version: str) -> None:
    # Reference: PyBLP's builders on the course cars data (39 markets of 165-323 products,
    # string market and parent-firm ids, single-product firms), rows shuffled. BLP sums exact to
    # 1e-12; interacted differentiation sums of up to 323 terms of order 1e3-1e4 (hp x weight)
    # agree to 1e-9 relative to max(1, |PyBLP|) (observed 1.4e-10: prefix-sum rounding).
    frame = cars.sample(frac=1.0, random_state=0)
    frame = frame.assign(market_ids=frame["year"].astype(str), firm_ids=frame["parent"])
    with np.errstate(all="ignore"):
        ref_blp = pyblp.build_blp_instruments(pyblp.Formulation("1 + hp + weight + lux"), frame)
        ref = pyblp.build_differentiation_instruments(
            pyblp.Formulation("0 + hp + weight + lux"), frame, version=version, interact=True)
    ours_blp = bd.build_blp_instruments(frame, "1 + hp + weight + lux").to_numpy()
    assert np.max(np.abs(ours_blp - ref_blp) / np.maximum(1.0, np.abs(ref_blp))) < 1e-12
    ours = build_differentiation_instruments(frame, "hp + weight + lux", version=version,
                                             interact=True).to_numpy()
    assert ours.shape == ref.shape
    assert np.max(np.abs(ours - ref) / np.maximum(1.0, np.abs(ref))) < 1e-9
