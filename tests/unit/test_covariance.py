"""Moment covariance and weighting matrix against hand computations (loops over clusters)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from blpdemand.errors import DataError, SpecificationError
from blpdemand.solve.covariance import moment_covariance, number_of_clusters, weighting_matrix


@pytest.fixture()
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    N = 60
    Z = rng.normal(size=(N, 3))
    xi = rng.normal(size=N)
    a = rng.integers(0, 7, size=N)
    b = rng.integers(0, 5, size=N)
    return Z, xi, a, b


def _hand(g: np.ndarray, ids: list[tuple]) -> np.ndarray:
    # Reference: explicit Python loop over clusters, S = (1/N) sum_c G_c G_c'.
    out = np.zeros((g.shape[1], g.shape[1]))
    for c in set(ids):
        G = g[[i for i, k in enumerate(ids) if k == c]].sum(axis=0)
        out += np.outer(G, G)
    return out / g.shape[0]


def test_robust_and_unadjusted(data) -> None:
    Z, xi, _, _ = data
    g = Z * xi[:, None]
    N = len(xi)
    # Reference: loop sum of outer products; tolerance 1e-13.
    hand = sum(np.outer(g[i], g[i]) for i in range(N)) / N
    np.testing.assert_allclose(moment_covariance(g, kind="robust"), hand, rtol=1e-13)
    hand_u = (xi @ xi / N) * Z.T @ Z / N
    np.testing.assert_allclose(moment_covariance(g, kind="unadjusted", residuals=xi, instruments=Z),
                               hand_u, rtol=1e-13)
    centered = g - g.mean(axis=0)
    np.testing.assert_allclose(moment_covariance(g, kind="robust", center=True),
                               centered.T @ centered / N, rtol=1e-13)


def test_one_and_two_way_clusters(data) -> None:
    Z, xi, a, b = data
    g = Z * xi[:, None]
    # Reference: loop over clusters; two-way = S_a + S_b - S_ab (Cameron, Gelbach, Miller 2011).
    one = _hand(g, [(k,) for k in a])
    np.testing.assert_allclose(moment_covariance(g, kind="clustered", clusters=a), one, rtol=1e-12)
    two = one + _hand(g, [(k,) for k in b]) - _hand(g, list(zip(a, b)))
    got = moment_covariance(g, kind="clustered", clusters=np.column_stack([a, b]))
    np.testing.assert_allclose(got, two, rtol=1e-12)
    frame = pd.DataFrame({"a": [f"m{k}" for k in a], "b": b})
    np.testing.assert_allclose(moment_covariance(g, kind="clustered", clusters=frame), two,
                               rtol=1e-12)
    assert number_of_clusters(np.column_stack([a, b]), len(a)) == min(len(set(a)), len(set(b)))


def test_weighting_matrix_inverse_and_errors(data) -> None:
    Z, xi, a, _ = data
    g = Z * xi[:, None]
    S = moment_covariance(g)
    # Reference: W S = I, tolerance 1e-10.
    np.testing.assert_allclose(weighting_matrix(S) @ S, np.eye(3), atol=1e-10)
    singular = np.column_stack([g, g[:, 0] * 2.0])
    with pytest.raises(SpecificationError, match="singular"):
        weighting_matrix(moment_covariance(singular))
    with pytest.raises(SpecificationError, match=r"\['z'\]"):
        weighting_matrix(np.diag([1.0, 0.0]), names=("w", "z"))
    with pytest.raises(SpecificationError, match="kind"):
        moment_covariance(g, kind="hc7")  # type: ignore[arg-type]
    with pytest.raises(SpecificationError, match="clusters"):
        moment_covariance(g, kind="clustered")
    with pytest.raises(DataError, match="rows"):
        moment_covariance(g, kind="clustered", clusters=a[:-1])
