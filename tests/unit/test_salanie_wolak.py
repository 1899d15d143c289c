"""Salanie-Wolak approximation: regressors against closed forms, 2SLS against a hand-built one.

frac-blp (the authors' package) needs Python >= 3.12 and cannot be installed here (3.11), so the
estimator is checked against an independent numpy 2SLS with explicit product dummies; the
artificial regressors use frac-blp's convention K = -(e - x / 2) x (log-share ratio = ... +
sigma^2 K), which is ours.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import blpdemand as bd
from blpdemand.errors import SpecificationError
from blpdemand.results.approximation import estimate_approximation
from blpdemand.solve.salanie_wolak import (
    _quadratic,
    artificial_regressors,
    demographic_moments,
)

INSTRUMENTS = [f"demand_instruments{k}" for k in range(20)]


def _logit_market(delta: np.ndarray, mu: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Mixed logit shares of one market by hand: (J,), mu (J, I), weights (I,)."""
    u = np.exp(delta[:, None] + mu)
    return (u / (1.0 + u.sum(axis=0))) @ w


@pytest.fixture(scope="module")
def nevo_plain(nevo_products: pd.DataFrame, nevo_agents: pd.DataFrame) -> bd.Problem:
    return bd.Problem(nevo_products, linear="prices", nonlinear="1 + prices + sugar + mushy",
                      agents=nevo_agents, absorb="C(product_ids)", instruments=INSTRUMENTS)


def _expansion_error(eps: float) -> tuple[float, float, np.ndarray, np.ndarray, np.ndarray]:
    """(max |exact - second-order|, max |second-order term|) in one hand-integrated market."""
    rng = np.random.default_rng(3)
    J, I = 6, 400
    x = np.column_stack([np.ones(J), rng.normal(size=J), rng.normal(size=J)])
    delta = rng.normal(-2, 0.5, size=J)
    nu = rng.normal(size=(I, 3))
    y = rng.normal(size=(I, 2)) @ np.array([[1.0, 0.3], [0.0, 0.8]]) + [0.5, -0.2]
    w = rng.uniform(0.5, 1.5, size=I)
    w /= w.sum()
    sigma = eps * np.array([1.0, 2.0, 0.5])
    Pi = eps * np.array([[0.0, 1.0], [1.5, 0.0], [0.7, -1.2]])
    s = _logit_market(delta, x @ (nu * sigma + y @ Pi.T).T, w)
    lhs = np.log(s / (1 - s.sum())) - delta
    m = w @ y
    C = (y - m).T @ ((y - m) * w[:, None])
    # the weighted sample mean and covariance of v = Sigma nu + Pi y (in the population
    # Omega = Sigma^2 + Pi C Pi'; in this sample nu and y also covary a little)
    v = nu * sigma + y @ Pi.T
    vc = v - w @ v
    Omega = vc.T @ (vc * w[:, None])
    e = s @ x
    second = np.einsum("jk,kl,jl->j", x, Omega, x / 2 - e)
    rhs = x @ (w @ v) + second
    return float(np.abs(lhs - rhs).max()), float(np.abs(second).max()), Pi, C, x


def test_second_order_expansion_matches_mixed_logit_shares() -> None:
    # Closed form: log(s_j / s_0) - delta_j = x_j' E[v] + x_j' Omega (x_j / 2 - e) + O(eps^3)
    # with Omega = Sigma^2 + Pi C Pi'. Shares integrated by hand over 400 weighted agents. The
    # remainder is third order: below 3 eps times the second-order term, and it shrinks ~8x
    # when eps halves (accepted 6x to 10x). This pins the sign convention of d.
    err1, second1, Pi, C, x = _expansion_error(1e-2)
    err2, _, _, _, _ = _expansion_error(5e-3)
    assert err1 < 3e-2 * second1
    assert 6 < err1 / err2 < 10
    # the library's Q(Pi) is the Pi C Pi' part of that term, for any e
    e = np.array([0.3, -0.1, 0.2])
    q, _ = _quadratic(Pi, C[None], x, np.tile(e, (x.shape[0], 1)), np.zeros(x.shape[0], dtype=np.int64),
                      np.array([0]), np.array([1]))
    assert np.allclose(q, np.einsum("jk,kl,jl->j", x, Pi @ C @ Pi.T, x / 2 - e), rtol=1e-12)


def test_quadratic_derivative_matches_finite_differences() -> None:
    # dQ/dpi from the closed form vs central differences (step 1e-6): tolerance 1e-7 relative.
    rng = np.random.default_rng(0)
    N, K2, D, T = 12, 3, 2, 3
    X2 = rng.normal(size=(N, K2))
    e = rng.normal(size=(N, K2))
    codes = np.repeat(np.arange(T), 4)
    A = rng.normal(size=(T, D, D))
    C = A @ A.transpose(0, 2, 1)
    pr, pc = np.array([0, 1, 2, 2]), np.array([0, 0, 0, 1])
    Pi = np.zeros((K2, D))
    Pi[pr, pc] = rng.normal(size=4)
    _, dq = _quadratic(Pi, C, X2, e, codes, pr, pc)
    h = 1e-6
    for k in range(pr.size):
        up, down = Pi.copy(), Pi.copy()
        up[pr[k], pc[k]] += h
        down[pr[k], pc[k]] -= h
        fd = (_quadratic(up, C, X2, e, codes, pr, pc)[0]
              - _quadratic(down, C, X2, e, codes, pr, pc)[0]) / (2 * h)
        assert np.allclose(dq[:, k], fd, rtol=1e-7, atol=1e-8)


def test_artificial_regressors_by_market_loop(nevo_plain: bd.Problem,
                                              nevo_products: pd.DataFrame) -> None:
    # Hand computation market by market on the user's rows (frac-blp's convention):
    # K_j = -(sum_l s_l x_l - x_j / 2) x_j. Tolerance 1e-13.
    columns = np.column_stack([np.ones(len(nevo_products)), nevo_products["prices"],
                               nevo_products["sugar"], nevo_products["mushy"]])
    expected = np.empty_like(columns)
    for rows in nevo_products.groupby("market_ids").indices.values():
        s = nevo_products["shares"].to_numpy()[rows]
        x = columns[rows]
        expected[rows] = -(s @ x - x / 2.0) * x
    got = nevo_plain.products.unsort(artificial_regressors(nevo_plain))
    # the same products and sums in another order: a few ulps of the largest regressor
    assert np.allclose(got, expected, rtol=0,
                       atol=500 * np.finfo(float).eps * max(1.0, np.abs(expected).max()))


def test_linear_2sls_matches_hand_built_with_dummies(nevo_plain: bd.Problem,
                                                     nevo_products: pd.DataFrame) -> None:
    # Independent 2SLS: product dummies as explicit columns (no pyhdfe), numpy lstsq projections,
    # HC0 sandwich by the textbook formula. Estimates to 1e-8 relative, SEs to 1e-6.
    approx = estimate_approximation(nevo_plain, covariance="robust")
    P = nevo_products
    s = P["shares"].to_numpy()
    s0 = 1 - P.groupby("market_ids")["shares"].transform("sum").to_numpy()
    y = np.log(s / s0)
    x2 = np.column_stack([np.ones(len(P)), P["prices"], P["sugar"], P["mushy"]])
    e = P.assign(**{f"c{k}": s * x2[:, k] for k in range(4)}).groupby("market_ids")[
        [f"c{k}" for k in range(4)]].transform("sum").to_numpy()
    K = (x2 / 2 - e) * x2
    dummies = pd.get_dummies(P["product_ids"]).to_numpy(dtype=float)
    X = np.column_stack([P["prices"], K, dummies])
    Z = np.column_stack([P[INSTRUMENTS], dummies])
    Xhat = Z @ np.linalg.lstsq(Z, X, rcond=None)[0]
    b = np.linalg.lstsq(Xhat, y, rcond=None)[0]
    xi = y - X @ b
    bread = np.linalg.inv(Xhat.T @ Xhat)
    V = bread @ (Xhat * xi[:, None] ** 2).T @ Xhat @ bread
    se = np.sqrt(np.diag(V))
    assert np.allclose(approx.estimates, b[:5], rtol=1e-8)
    assert np.allclose(approx.standard_errors, se[:5], rtol=1e-6)
    # sigma from sigma^2 by the delta method: se(sigma) = se(sigma^2) / (2 sigma)
    k = np.flatnonzero(b[1:5] > 0)
    assert np.allclose(np.diag(approx.sigma)[k], np.sqrt(b[1:5][k]), rtol=1e-8)
    assert np.allclose(approx.sigma_se[k], se[1:5][k] / (2 * np.sqrt(b[1:5][k])), rtol=1e-6)


def test_negative_sigma_squared_is_flagged_not_hidden(nevo_plain: bd.Problem) -> None:
    # Nevo without demographics gives sigma^2 < 0 on the constant, prices and mushy (the
    # hand-built 2SLS above has the same signs): those are listed, sigma is 0 with NaN SE, the
    # table says so, and the start keeps the user's value so the element stays free.
    approx = estimate_approximation(nevo_plain)
    assert set(approx.negative_variance) == {"1", "prices", "mushy"}
    assert np.all(np.diag(approx.sigma)[[0, 1, 3]] == 0)
    assert np.all(np.isnan(approx.sigma_se[[0, 1, 3]]))
    frame = approx.to_frame()
    assert frame.loc["sigma[prices]", "note"].startswith("sigma^2 < 0")
    sigma0, _ = approx.start(np.array([0.5, 2.0, 0.3, 0.7]))
    assert np.allclose(np.diag(sigma0)[[0, 1, 3]], [0.5, 2.0, 0.7])
    assert np.isclose(sigma0[2, 2], np.sqrt(approx.sigma_squared[2]))


def test_demographic_moments_by_hand(nevo_agents: pd.DataFrame,
                                     nevo_products: pd.DataFrame) -> None:
    # Weighted mean/covariance of income and age per market by pandas: tolerance 1e-12.
    problem = bd.Problem(nevo_products, linear="prices", nonlinear="1 + prices",
                         agents=nevo_agents, demographics="income + age",
                         absorb="C(product_ids)", instruments=INSTRUMENTS)
    m, C = demographic_moments(problem)
    first = nevo_agents[nevo_agents["market_ids"] == problem.products.markets.ids[0]]
    yy = first[["income", "age"]].to_numpy()
    assert np.allclose(m[0], yy.mean(axis=0), atol=1e-12)
    assert np.allclose(C[0], np.cov(yy.T, ddof=0), atol=1e-12)


def test_nonlinear_fit_solves_the_2sls_first_order_conditions(nevo_agents: pd.DataFrame,
                                                              nevo_products: pd.DataFrame) -> None:
    # With Pi's quadratic term the estimate solves G'P r = 0, G = -dr/db by central differences
    # of a hand-built residual (Q from the closed form with pandas moments): |G'P r| relative to
    # |G'P| |r| below 1e-7.
    problem = bd.Problem(nevo_products, linear="prices", nonlinear="1 + prices",
                         agents=nevo_agents, demographics="income",
                         absorb="C(product_ids)", instruments=INSTRUMENTS)
    approx = estimate_approximation(problem, sigma=[1, 1], pi=[[1.0], [1.0]])
    assert approx.converged
    m, C = demographic_moments(problem)
    codes = problem.products.markets.codes
    x = problem.X2.values
    e = problem.products.markets.expand(problem.products.markets.segment_sum(
        problem.products.shares[:, None] * x))
    d = (x / 2 - e) * x
    y = problem.products.logit_delta

    def residual(b: np.ndarray) -> np.ndarray:
        q = (b[3] * x[:, 0] + b[4] * x[:, 1]) ** 2 * C[codes, 0, 0] * 0.5 \
            - (b[3] * x[:, 0] + b[4] * x[:, 1]) * C[codes, 0, 0] * (b[3] * e[:, 0] + b[4] * e[:, 1])
        fit = (b[0] * problem.X1.values[:, 0] + b[1] * d[:, 0] + b[2] * d[:, 1]
               + (b[3] * x[:, 0] + b[4] * x[:, 1]) * m[codes, 0] + q)
        return problem.residualize(y - fit)

    b = approx.estimates
    r = residual(b)
    assert np.allclose(problem.products.unsort(r), approx.xi, atol=1e-10)  # user order
    G = np.column_stack([(residual(b - h) - residual(b + h)) / (2e-6)
                         for h in np.eye(5) * 1e-6])
    Z = problem.ZD_tilde
    PG = Z @ np.linalg.lstsq(Z, G, rcond=None)[0]
    foc = PG.T @ r
    assert np.max(np.abs(foc) / (np.linalg.norm(PG, axis=0) * np.linalg.norm(r))) < 1e-7


def test_errors_name_the_fix(nevo_products: pd.DataFrame, nevo_agents: pd.DataFrame,
                             nevo_plain: bd.Problem) -> None:
    few = bd.Problem(nevo_products, linear="prices", nonlinear="1 + prices + sugar + mushy",
                     agents=nevo_agents, absorb="C(product_ids)", instruments=INSTRUMENTS[:3])
    with pytest.raises(SpecificationError, match="only 3 demand instruments"):
        estimate_approximation(few)
    with pytest.raises(SpecificationError, match="diagonal"):
        estimate_approximation(nevo_plain, sigma=np.tril(np.ones((4, 4))))
    with pytest.raises(SpecificationError, match="covariance='sandwich' is unknown"):
        estimate_approximation(nevo_plain, covariance="sandwich")  # type: ignore[arg-type]
    with pytest.raises(SpecificationError, match="clusters"):
        estimate_approximation(nevo_plain, covariance="clustered")
