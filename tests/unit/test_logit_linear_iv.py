"""Linear IV estimators against textbook closed forms computed by hand in numpy."""

from __future__ import annotations

import numpy as np
import pytest

from blpdemand.errors import SpecificationError
from blpdemand.solve.linear_iv import fit_linear_iv


@pytest.fixture(scope="module")
def iv_data() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(11)
    N = 400
    z = rng.normal(size=(N, 3))
    u = rng.normal(size=N)
    x1 = rng.normal(size=N)
    p = 1.0 + z @ np.array([1.0, 0.5, -0.5]) + 0.8 * u + rng.normal(size=N)
    xi = u * (1.0 + 0.5 * np.abs(x1))  # heteroskedastic
    y = 2.0 - 1.5 * p + 0.7 * x1 + xi
    X = np.column_stack([np.ones(N), p, x1])
    Z = np.column_stack([np.ones(N), x1, z])
    return {"y": y, "X": X, "Z": Z, "a": rng.integers(0, 12, N), "b": rng.integers(0, 9, N)}


def test_ols_closed_form(iv_data) -> None:
    y, X = iv_data["y"], iv_data["X"]
    N, K = X.shape
    # Reference: b = (X'X)^-1 X'y, s^2 (X'X)^-1 with s^2 = e'e/(N-K), HC0/HC1 sandwich; 1e-10.
    b = np.linalg.lstsq(X, y, rcond=None)[0]
    e = y - X @ b
    XXi = np.linalg.inv(X.T @ X)
    fit = fit_linear_iv(y, X, method="ols", covariance="unadjusted")
    np.testing.assert_allclose(fit.params, b, rtol=1e-10)
    np.testing.assert_allclose(fit.covariance, e @ e / (N - K) * XXi, rtol=1e-10)
    hc0 = XXi @ (X.T * e**2) @ X @ XXi
    np.testing.assert_allclose(fit_linear_iv(y, X, method="ols").covariance, hc0, rtol=1e-10)
    hc1 = fit_linear_iv(y, X, method="ols", covariance="hc1").covariance
    np.testing.assert_allclose(hc1, hc0 * N / (N - K), rtol=1e-10)


def test_2sls_and_two_step_gmm_closed_form(iv_data) -> None:
    y, X, Z = iv_data["y"], iv_data["X"], iv_data["Z"]
    N = len(y)
    # Reference: 2SLS as two literal OLS stages; two-step GMM with W = (sum g g'/N)^-1 (Hansen
    # 1982), covariance (G'WG)^-1 G'WSWG (G'WG)^-1 / N at the final residuals; tolerance 1e-10.
    Xhat = Z @ np.linalg.lstsq(Z, X, rcond=None)[0]
    b2 = np.linalg.lstsq(Xhat, y, rcond=None)[0]
    fit = fit_linear_iv(y, X, Z, method="2sls")
    np.testing.assert_allclose(fit.params, b2, rtol=1e-10)
    np.testing.assert_allclose(fit_linear_iv(y, X, Z, method="gmm").params, b2, rtol=1e-10)
    e = y - X @ b2
    A = np.linalg.inv(Xhat.T @ Xhat)
    np.testing.assert_allclose(fit.covariance, A @ (Xhat.T * e**2) @ Xhat @ A, rtol=1e-9)
    g = Z * e[:, None]
    W = np.linalg.inv(g.T @ g / N)
    bg = np.linalg.solve(X.T @ Z @ W @ Z.T @ X, X.T @ Z @ W @ Z.T @ y)
    gmm = fit_linear_iv(y, X, Z, method="2s-gmm")
    np.testing.assert_allclose(gmm.params, bg, rtol=1e-10)
    eg = y - X @ bg
    gg = Z * eg[:, None]
    S = gg.T @ gg / N
    G = Z.T @ X / N
    B = np.linalg.inv(G.T @ W @ G)
    np.testing.assert_allclose(gmm.covariance, B @ G.T @ W @ S @ W @ G @ B / N, rtol=1e-9)
    gbar = gg.mean(axis=0)
    assert gmm.j_statistic == pytest.approx(N * gbar @ W @ gbar, rel=1e-9)


def test_two_way_clustered_hand_computation(iv_data) -> None:
    y, X, Z, a, b = (iv_data[k] for k in ("y", "X", "Z", "a", "b"))
    # Reference: CGM (2011) two-way V = V_a + V_b - V_ab, each V_c = A (sum_c s_c s_c') A with
    # s_c = sum_{i in c} xhat_i e_i, built with Python loops over clusters; tolerance 1e-10.
    Xhat = Z @ np.linalg.lstsq(Z, X, rcond=None)[0]
    A = np.linalg.inv(Xhat.T @ Xhat)
    e = y - X @ (A @ Xhat.T @ y)

    def meat(ids: list) -> np.ndarray:
        out = np.zeros((3, 3))
        for c in set(ids):
            rows = [i for i, k in enumerate(ids) if k == c]
            s = (Xhat[rows] * e[rows, None]).sum(axis=0)
            out += np.outer(s, s)
        return out

    hand = A @ (meat(list(a)) + meat(list(b)) - meat(list(zip(a, b)))) @ A
    fit = fit_linear_iv(y, X, Z, covariance="clustered", clusters=np.column_stack([a, b]))
    np.testing.assert_allclose(fit.covariance, hand, rtol=1e-10)
    assert fit.clusters == 9
    one = fit_linear_iv(y, X, Z, covariance="clustered", clusters=a)
    np.testing.assert_allclose(one.covariance, A @ meat(list(a)) @ A, rtol=1e-10)


def test_errors(iv_data) -> None:
    y, X, Z = iv_data["y"], iv_data["X"], iv_data["Z"]
    bad = np.column_stack([X, 2.0 * X[:, 2]])
    with pytest.raises(SpecificationError, match="'dup'"):
        fit_linear_iv(y, bad, method="ols", x_names=["1", "p", "x1", "dup"])
    with pytest.raises(SpecificationError, match="under-identified"):
        fit_linear_iv(y, X, Z[:, :2], method="2sls")
    with pytest.raises(SpecificationError, match="method"):
        fit_linear_iv(y, X, Z, method="liml")  # type: ignore[arg-type]
    with pytest.raises(SpecificationError, match="clusters"):
        fit_linear_iv(y, X, Z, covariance="clustered")
