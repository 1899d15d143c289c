"""Nested logit by linear IV: closed forms on hand-made markets (Berry 1994; Cardell 1997).

Shares come from known mean utilities V_j = b0 + alpha p_j + b x_j (no xi) and nesting
parameters rho by the nested-logit formula written out here,

    s_j = exp(V_j / (1 - rho)) / D_g * D_g^(1 - rho) / (1 + sum_h D_h^(1 - rho)),

so log(s_j / s_0) = V_j + rho log s_{j|g} holds exactly and 2SLS recovers the parameters
(residuals zero; parameters to 1e-9 relative). Post-estimation is then compared to

    ds_j/dp_k = alpha s_j [1{j=k} / (1 - rho) - rho / (1 - rho) s_{k|g} 1{same nest} - s_k]

(k's within-nest share: the complex-step check below tells it from s_{j|g}, which differs off
the diagonal)
(at the estimated alpha and rho: 1e-12 relative) and to complex-step derivatives of the share
function above (exact to rounding: 1e-12 relative). Single-product-firm markups have the closed
form (1 - rho) / (-alpha (1 - rho s_{j|g} - (1 - rho) s_j)).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import blpdemand as bd
from blpdemand.errors import BLPDemandWarning, EconomicWarning, SpecificationError

ALPHA, B0, BX = -2.0, -1.0, 0.5


def nested_shares(V: np.ndarray, nests: np.ndarray, rho: np.ndarray) -> np.ndarray:
    """Shares of one market (complex-safe: no shifts), rho given per product."""
    labels = np.unique(nests)
    inclusive = {}
    for g in labels:
        members = nests == g
        r = rho[members][0]
        inclusive[g] = np.sum(np.exp(V[members] / (1 - r)))
    denominator = 1 + sum(inclusive[g] ** (1 - rho[nests == g][0]) for g in labels)
    out = np.empty(V.shape, dtype=V.dtype)
    for g in labels:
        members = nests == g
        r = rho[members][0]
        D = inclusive[g]
        out[members] = np.exp(V[members] / (1 - r)) / D * D ** (1 - r) / denominator
    return out


NESTS = np.array(["a", "a", "b", "b", "b", "c"])  # nest c is a single product


def _log_within(shares: np.ndarray, nests: np.ndarray) -> np.ndarray:
    return np.log(shares / np.array([shares[nests == g].sum() for g in nests]))


def _products(rho_by_nest: dict[str, float], *, markets: int = 6, seed: int = 0,
              nests: np.ndarray = NESTS) -> pd.DataFrame:
    """Exact nested-logit shares (no xi). With no xi nothing is endogenous, so the instruments
    are noisy copies of the regressors (strong, any would do): zp for prices, za and zb for the
    log within-nest shares of nests a and of the others."""
    rng = np.random.default_rng(seed)
    frames = []
    for t in range(markets):
        J = nests.size
        prices = rng.uniform(1.0, 3.0, J)
        x = rng.normal(size=J)
        V = B0 + ALPHA * prices + BX * x
        rho = np.array([rho_by_nest[g] for g in nests])
        shares = nested_shares(V, nests, rho)
        within = _log_within(shares, nests)
        frames.append(pd.DataFrame({
            "market_ids": t, "product_ids": [f"p{j}" for j in range(J)],
            "firm_ids": [1, 2, 1, 3, 2, 4], "nesting_ids": nests, "prices": prices, "x": x,
            "zp": prices + 0.1 * rng.normal(size=J),
            "za": np.where(nests == "a", within, 0.0) + 0.1 * rng.normal(size=J),
            "zb": np.where(nests != "a", within, 0.0) + 0.1 * rng.normal(size=J),
            "shares": shares}))
    # rows out of market order, to exercise the sorting
    return pd.concat(frames[::-1], ignore_index=True)


INSTRUMENTS = ["zp", "za", "zb"]


@pytest.fixture(scope="module")
def common() -> tuple[pd.DataFrame, bd.LogitResults]:
    data = _products({"a": 0.6, "b": 0.6, "c": 0.6})
    results = bd.estimate_logit(data, linear="1 + prices + x", instruments=INSTRUMENTS,
                                nesting="nesting_ids")
    return data, results


def _market(data: pd.DataFrame, t: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rows = np.flatnonzero(data["market_ids"].to_numpy() == t)
    return rows, data["prices"].to_numpy()[rows], data["shares"].to_numpy()[rows]


def _analytic(alpha: float, rho: np.ndarray, shares: np.ndarray, nests: np.ndarray) -> np.ndarray:
    same = nests[:, None] == nests[None, :]
    within = shares / np.array([shares[nests == g].sum() for g in nests])
    return alpha * shares[:, None] * (np.eye(shares.size) / (1 - rho)[:, None]
                                      - (rho / (1 - rho))[:, None] * within[None, :] * same
                                      - shares[None, :])


def _complex_step(data: pd.DataFrame, t: int, rho: np.ndarray) -> np.ndarray:
    rows, prices, _ = _market(data, t)
    x = data["x"].to_numpy()[rows]
    h = 1e-30
    out = np.empty((rows.size, rows.size))
    for k in range(rows.size):
        p = prices.astype(complex)
        p[k] += 1j * h
        out[:, k] = nested_shares(B0 + ALPHA * p + BX * x, NESTS, rho.astype(complex)).imag / h
    return out


def test_exact_data_recover_the_parameters(common) -> None:
    _, results = common
    assert np.allclose(results.params[["1", "prices", "x", "rho"]], [B0, ALPHA, BX, 0.6],
                       rtol=1e-9, atol=1e-9)
    assert np.max(np.abs(results.xi)) < 1e-9
    assert results.rho.tolist() == pytest.approx([0.6], rel=1e-9)
    assert "rho" in results.problem.endogenous


def test_nested_elasticities_closed_form_and_complex_step(common) -> None:
    data, results = common
    alpha, rho = results.alpha, float(results.params["rho"])
    elasticities = bd.compute_elasticities(results)
    for t in range(6):
        rows, prices, shares = _market(data, t)
        ds = _analytic(alpha, np.full(rows.size, rho), shares, NESTS)
        expected = ds * prices[None, :] / shares[:, None]
        labels = data["product_ids"].to_numpy()[rows]
        got = elasticities.market(t).loc[labels, labels].to_numpy()
        scale = np.abs(expected).max()
        assert np.abs(got - expected).max() <= 1e-12 * scale
        # within nest b, across nests, and the single-product nest all checked above; the
        # derivative formula itself against complex-step derivatives at the true parameters
        exact = _complex_step(data, t, np.full(rows.size, 0.6))
        truth = _analytic(ALPHA, np.full(rows.size, 0.6), shares, NESTS)
        assert np.abs(exact - truth).max() <= 1e-12 * np.abs(truth).max()
    own = results.own_price_elasticities()
    assert np.abs(own - elasticities.diagonal()).max() <= 1e-12 * np.abs(own).max()


def test_nested_markups_single_and_multi_product_firms(common) -> None:
    data, results = common
    alpha, rho = results.alpha, float(results.params["rho"])
    single = bd.compute_markups(results, firm_ids=np.arange(len(data)))
    multi = bd.compute_markups(results)
    costs = bd.compute_costs(results)
    assert np.abs(costs - (data["prices"].to_numpy() - multi)).max() <= 1e-12 * 3
    for t in range(6):
        rows, _, shares = _market(data, t)
        within = shares / np.array([shares[NESTS == g].sum() for g in NESTS])
        closed = (1 - rho) / (-alpha * (1 - rho * within - (1 - rho) * shares))
        assert np.abs(single[rows] - closed).max() <= 1e-12 * closed.max()
        firms = data["firm_ids"].to_numpy()[rows]
        owner = (firms[:, None] == firms[None, :]).astype(float)
        jac = _analytic(alpha, np.full(rows.size, rho), shares, NESTS)
        expected = -np.linalg.solve(owner * jac.T, shares)
        assert np.abs(multi[rows] - expected).max() <= 1e-12 * expected.max()


def test_share_function_matches_the_formula() -> None:
    from blpdemand.model.nesting import nested_share_jacobian
    from blpdemand.model.nesting import nested_shares as model_shares

    rng = np.random.default_rng(3)
    V = rng.normal(size=NESTS.size)
    rho = np.array([0.2, 0.2, 0.8, 0.8, 0.8, 0.5])
    codes = np.unique(NESTS, return_inverse=True)[1]
    expected = nested_shares(V, NESTS, rho)
    assert np.abs(model_shares(V, codes, rho) - expected).max() <= 1e-14
    # overflow-safe: a common shift of V by 800 / (1 - rho) would overflow exp unshifted
    big = model_shares(V + 800.0, codes, rho)
    assert np.all(np.isfinite(big)) and big.sum() == pytest.approx(1.0, rel=1e-12)
    # the Jacobian (one rho per nest) against complex-step derivatives of the formula
    h = 1e-30
    exact = np.column_stack([nested_shares(V + 1j * h * np.eye(V.size)[k], NESTS,
                                           rho.astype(complex)).imag / h
                             for k in range(V.size)])
    got = nested_share_jacobian(expected, codes, rho, 1.0)
    assert np.abs(got - exact).max() <= 1e-12 * np.abs(exact).max()


def test_one_rho_per_nest() -> None:
    nests = np.array(["a", "a", "b", "b", "b", "b"])
    data = _products({"a": 0.3, "b": 0.7}, seed=1, nests=nests)
    results = bd.estimate_logit(data, linear="1 + prices + x", instruments=INSTRUMENTS,
                                nesting="nesting_ids", rho="per_nest")
    assert results.params[["rho[a]", "rho[b]"]].tolist() == pytest.approx([0.3, 0.7], rel=1e-9)
    assert results.rho.tolist() == pytest.approx([0.3, 0.7], rel=1e-9)
    elasticities = bd.compute_elasticities(results)
    for t in range(6):
        rows, prices, shares = _market(data, t)
        rho = np.where(nests == "a", results.params["rho[a]"], results.params["rho[b]"])
        expected = (_analytic(results.alpha, rho, shares, nests)
                    * prices[None, :] / shares[:, None])
        labels = data["product_ids"].to_numpy()[rows]
        got = elasticities.market(t).loc[labels, labels].to_numpy()
        assert np.abs(got - expected).max() <= 1e-12 * np.abs(expected).max()


def test_nesting_ids_without_nesting_warns() -> None:
    data = _products({"a": 0.6, "b": 0.6, "c": 0.6})
    with pytest.warns(BLPDemandWarning, match="nesting_ids"):
        plain = bd.estimate_logit(data, linear="1 + prices + x", instruments=["zp"])
    assert "rho" not in plain.params.index
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bd.estimate_logit(data.drop(columns="nesting_ids"), linear="1 + prices + x",
                          instruments=["zp"])


def test_unsupported_post_estimation_raises(common) -> None:
    _, results = common
    # mergers are supported (test_nested_logit_pyblp: equal to PyBLP's compute_prices)
    merger = bd.simulate_merger(results, [1, 2])
    assert all(status.converged for status in merger.status)
    # consumer surplus (tests/reference/test_nested_surplus_pyblp) and diversion ratios
    # (test_nested_logit_pyblp) are supported; long-run diversion is not yet
    with pytest.raises(SpecificationError, match="nested"):
        bd.compute_long_run_diversion_ratios(results)
    rows = bd.compute_diversion_ratios(results).stacked()
    np.testing.assert_allclose(np.nansum(rows, axis=1), 1.0, rtol=1e-12)


def test_nesting_instruments() -> None:
    data = pd.DataFrame({"market_ids": [1, 2, 1, 1, 2, 1], "nesting_ids": [0, 0, 1, 0, 0, 1],
                         "x": [1.0, 2.0, 4.0, 8.0, 16.0, 32.0]})
    z = bd.build_nesting_instruments(data, characteristics="x", nesting="nesting_ids")
    assert z.index.equals(data.index)
    assert z["nest_count"].tolist() == [2.0, 2.0, 2.0, 2.0, 2.0, 2.0]
    assert z["nest_other_x"].tolist() == [8.0, 16.0, 32.0, 1.0, 2.0, 4.0]
    counts = data.groupby(["market_ids", "nesting_ids"])["x"].transform("size")
    assert z["nest_count"].tolist() == counts.astype(float).tolist()


def test_nested_logit_is_the_logit_with_log_within_share_as_a_regressor(nevo_products) -> None:
    # Berry (1994): the nested logit is the linear IV regression with log s_{j|g} as one more
    # endogenous regressor, so absorbed effects, clustered SEs and two-step GMM carry over:
    # the same numbers (1e-10 relative) as the plain logit given that column by hand
    data = nevo_products.assign(nesting_ids=nevo_products["mushy"])
    within = data["shares"] / data.groupby(["market_ids", "nesting_ids"])["shares"].transform("sum")
    by_hand = data.drop(columns="nesting_ids").assign(log_within=np.log(within))
    instruments = [f"demand_instruments{k}" for k in range(20)]
    options = {"absorb": "C(product_ids)", "instruments": instruments, "method": "2s-gmm",
               "covariance": "clustered", "clusters": "city_ids"}
    with pytest.warns(EconomicWarning):  # rho > 1 on these data (see the PyBLP reference test)
        nested = bd.estimate_logit(data, linear="prices", nesting="nesting_ids", **options)
    plain = bd.estimate_logit(by_hand, linear="prices + log_within",
                              endogenous=("prices", "log_within"), **options)
    assert nested.params.to_numpy() == pytest.approx(plain.params.to_numpy(), rel=1e-10)
    assert nested.bse.to_numpy() == pytest.approx(plain.bse.to_numpy(), rel=1e-10)
    assert nested.j_statistic == pytest.approx(plain.j_statistic, rel=1e-10)
    assert [s.f_statistic for s in nested.first_stage.stages] == pytest.approx(
        [s.f_statistic for s in plain.first_stage.stages], rel=1e-10)
    hc1 = nested.with_covariance("hc1")
    assert hc1.nests is nested.nests and hc1.rho.tolist() == nested.rho.tolist()


def test_characteristic_elasticities(common) -> None:
    data, results = common
    rho = float(results.params["rho"])
    elasticities = bd.compute_elasticities(results, "x")
    for t in range(6):
        rows, _, shares = _market(data, t)
        x = data["x"].to_numpy()[rows]
        expected = (_analytic(float(results.params["x"]), np.full(rows.size, rho), shares, NESTS)
                    * x[None, :] / shares[:, None])
        labels = data["product_ids"].to_numpy()[rows]
        got = elasticities.market(t).loc[labels, labels].to_numpy()
        assert np.abs(got - expected).max() <= 1e-12 * np.abs(expected).max()
    with pytest.raises(SpecificationError):
        bd.compute_elasticities(results, "rho")


def test_bootstrap_draws_of_a_nested_logit_stay_nested(common) -> None:
    # Reference: the estimate itself. A draw at exactly the estimated parameters is the
    # estimated model: its elasticities equal compute_elasticities(results) (they were the
    # plain logit's: -0.49 for -9.82, the draws had lost their nests).
    _, results = common
    beta = results.params.to_numpy()[None, :]
    draws = bd.BootstrapDraws.from_parameters(results, np.zeros((1, 0)), beta)
    got = bd.compute_elasticities(draws.fitted[0]).stacked()
    want = bd.compute_elasticities(results).stacked()
    finite = np.isfinite(want)
    assert np.array_equal(finite, np.isfinite(got))
    assert np.abs(got[finite] - want[finite]).max() <= 1e-12 * np.abs(want[finite]).max()
