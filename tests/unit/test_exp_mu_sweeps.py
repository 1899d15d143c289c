"""The two sweeps over a market's exp(mu) that the compiled contraction, adjoint and share
Jacobians share (``model.adjoint_compiled``): column sums u += E' a (and the K2 + 1 of them in
``moment_sums``) and row dots diag(c) E r, four rows of E a sweep, equal numpy's products on the
real J x I corner of padded arrays.

Reference: numpy (matmul) on the same inputs, cut to the real corner. Padded cells hold NaN, so
a sweep that reads a padded row or column (or a coefficient past J, an r_i past I) fails, as
does one that writes past the corner. Tolerance: both sides sum n = J + 1 (I + 1) terms in some
order, with or without FMA, so each is within n eps sum |terms| of the exact sum (Higham 2002,
eq. 3.5); the check is 2 n eps times the summed magnitude (|u0| + |E|' |a|, |c| |E| |r|), with
signed coefficients so that the sums cancel. A dropped row (say the J mod 4 tail) misses a term
of size |a_j E_ji|, far above that.
"""

from __future__ import annotations

import numpy as np
import pytest

from blpdemand.model.sweeps_compiled import column_sums, moment_sums, row_dots

EPS = np.finfo(np.float64).eps
# (J, I): J < 4, J not a multiple of 4, I not a multiple of 4 or 8, Nevo's and BLP's sizes
SHAPES = [(1, 1), (2, 5), (3, 13), (5, 20), (7, 3), (24, 20), (30, 17), (110, 200), (113, 201)]


def _padded(rng: np.random.Generator, J: int, I: int) -> tuple[np.ndarray, np.ndarray]:
    """E (J + 3, I + 5) with exp-like entries (0.1 to 10) in the real corner, NaN elsewhere."""
    E = np.full((J + 3, I + 5), np.nan)
    E[:J, :I] = np.exp(rng.uniform(-2.3, 2.3, (J, I)))
    return E, np.abs(E[:J, :I])


def _within(got: np.ndarray, expected: np.ndarray, magnitude: np.ndarray, n: int) -> None:
    bound = 2 * n * EPS * magnitude
    assert np.all(np.abs(got - expected) <= bound), np.max(np.abs(got - expected) / bound)


@pytest.mark.parametrize(("J", "I"), SHAPES)
def test_column_sums_add_E_transpose_a(J: int, I: int) -> None:
    rng = np.random.default_rng(J * 1000 + I)
    E, real = _padded(rng, J, I)
    a = np.concatenate([rng.normal(size=J), np.full(3, np.nan)])
    u0 = rng.normal(size=I + 5)
    u = u0.copy()
    column_sums(E, a, J, I, u)
    _within(u[:I], u0[:I] + real.T @ a[:J], np.abs(u0[:I]) + real.T @ np.abs(a[:J]), J + 1)
    assert np.array_equal(u[I:], u0[I:])  # columns past I untouched


@pytest.mark.parametrize(("J", "I"), SHAPES)
def test_row_dots_are_diag_c_E_r(J: int, I: int) -> None:
    rng = np.random.default_rng(J * 1000 + I + 1)
    E, real = _padded(rng, J, I)
    r = np.concatenate([rng.normal(size=I), np.full(5, np.nan)])
    c = np.concatenate([rng.normal(size=J), np.full(3, np.nan)])
    out = np.full(J + 3, -7.0)
    row_dots(E, r, c, J, I, out)
    # one rounding more than a sum of I + 1 terms: the product by c_j
    _within(out[:J], c[:J] * (real @ r[:I]), np.abs(c[:J]) * (real @ np.abs(r[:I])), I + 2)
    assert np.all(out[J:] == -7.0)  # rows past J untouched


@pytest.mark.parametrize(("J", "I"), SHAPES)
@pytest.mark.parametrize("K", [1, 2, 6])
def test_moment_sums_add_E_transpose_a_and_a_x2(J: int, I: int, K: int) -> None:
    rng = np.random.default_rng(J * 1000 + I + K)
    E, real = _padded(rng, J, I)
    a = np.concatenate([rng.normal(size=J), np.full(3, np.nan)])
    x2 = rng.normal(size=(3, J + 3, K))  # market t = 1 of three; its padded rows NaN
    x2[1, J:] = np.nan
    first0, rest0 = rng.normal(size=I + 5), rng.normal(size=(K, I + 5))
    first, rest = first0.copy(), rest0.copy()
    moment_sums(E, a, x2, 1, J, I, first, rest)
    coefficients = np.column_stack([a[:J], a[:J, None] * x2[1, :J]])  # (J, K + 1)
    start = np.vstack([first0, rest0])[:, :I]
    got = np.vstack([first, rest])
    _within(got[:, :I], start + (real.T @ coefficients).T,
            np.abs(start) + (real.T @ np.abs(coefficients)).T, J + 1)
    assert np.array_equal(got[:, I:], np.vstack([first0, rest0])[:, I:])
