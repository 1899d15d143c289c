"""First-stage F statistics against independent hand computations."""

from __future__ import annotations

import numpy as np
import pytest

from blpdemand.errors import WeakInstrumentsWarning
from blpdemand.solve.first_stage import first_stage


@pytest.fixture(scope="module")
def design() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(5)
    N = 300
    w = rng.normal(size=N)
    z = rng.normal(size=(N, 3))
    p = 0.5 * w + z @ np.array([1.0, 0.6, 0.0]) + rng.normal(size=N) * (1 + np.abs(w))
    X = np.column_stack([np.ones(N), w, p])
    Z = np.column_stack([np.ones(N), w, z])
    return {"X": X, "Z": Z, "p": p, "clusters": rng.integers(0, 25, N)}


def _stage(design, **kwargs):
    return first_stage(design["X"], design["Z"], x_names=["1", "w", "prices"],
                       z_names=["1", "w", "z1", "z2", "z3"], endogenous=["prices"],
                       excluded=["z1", "z2", "z3"], **kwargs)["prices"]


def test_homoskedastic_f_from_two_regressions(design) -> None:
    # Reference: classical F = ((RSS_r - RSS_u)/q) / (RSS_u/(N - M)); tolerance 1e-10.
    Z, p = design["Z"], design["p"]
    N = len(p)
    rss_u = np.sum((p - Z @ np.linalg.lstsq(Z, p, rcond=None)[0]) ** 2)
    Zr = Z[:, :2]
    rss_r = np.sum((p - Zr @ np.linalg.lstsq(Zr, p, rcond=None)[0]) ** 2)
    F = ((rss_r - rss_u) / 3) / (rss_u / (N - 5))
    stage = _stage(design, covariance="unadjusted")
    assert stage.f_homoskedastic == pytest.approx(F, rel=1e-10)
    assert stage.f_statistic == stage.f_homoskedastic
    assert stage.partial_r2 == pytest.approx(1 - rss_u / rss_r, rel=1e-10)


def test_effective_f_in_normalized_coordinates(design) -> None:
    # Reference: Montiel Olea and Pflueger (2013) with instruments orthonormalized so that
    # Z~'Z~/N = I: F_eff = N pi'pi / tr(Sigma), Sigma = N Var(pi) (HC0 or clustered, sandwich
    # written out here). Tolerance 1e-10.
    Z, p, ids = design["Z"], design["p"], design["clusters"]
    N = len(p)
    Zx = Z[:, :2]
    ZE = Z[:, 2:] - Zx @ np.linalg.lstsq(Zx, Z[:, 2:], rcond=None)[0]
    L = np.linalg.cholesky(ZE.T @ ZE / N)
    Q = ZE @ np.linalg.inv(L).T  # Q'Q/N = I
    px = p - Zx @ np.linalg.lstsq(Zx, p, rcond=None)[0]
    pi = Q.T @ px / N
    v = px - Q @ pi
    for kind in ("robust", "clustered"):
        if kind == "robust":
            meat = (Q * v[:, None] ** 2).T @ Q
        else:
            sums = np.zeros((ids.max() + 1, 3))
            np.add.at(sums, ids, Q * v[:, None])
            meat = sums.T @ sums
        Sigma = meat / N  # N Var(pi) with bread (Q'Q/N)^-1 = I
        F_eff = N * pi @ pi / np.trace(Sigma)
        stage = _stage(design, covariance=kind, clusters=ids)
        assert stage.f_effective == pytest.approx(F_eff, rel=1e-10), kind
        assert stage.f_statistic == stage.f_effective


def test_weak_warning(design) -> None:
    # Reference: z3 alone has a zero true coefficient, so its F is small (< 10).
    with pytest.warns(WeakInstrumentsWarning, match="'prices'"):
        stage = first_stage(design["X"], design["Z"][:, [0, 1, 4]], x_names=["1", "w", "prices"],
                            z_names=["1", "w", "z3"], endogenous=["prices"], excluded=["z3"])
    assert stage["prices"].weak
    assert stage["prices"].f_effective == pytest.approx(stage["prices"].f_robust, rel=1e-10)
