"""Reference distributions against their closed forms (solve/distributions.py).

Each closed form is evaluated in double precision; the functions are accurate to a few ulps
of the probability, so the tolerance is 1e-13 relative (well above the ~1e-15 seen, far below
any digit a table prints).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from blpdemand.solve.distributions import chi2_sf, f_sf, normal_ppf, normal_sf, t_ppf, t_sf

RTOL = 1e-13


@pytest.mark.parametrize("z", [0.0, 0.5, 1.0, 1.96, 3.0, 6.0])
def test_normal_tail_is_half_erfc(z: float) -> None:
    np.testing.assert_allclose(normal_sf(z), 0.5 * math.erfc(z / math.sqrt(2.0)), rtol=RTOL)


@pytest.mark.parametrize("p", [0.5, 0.9, 0.975, 0.995])
def test_normal_quantile_inverts_the_tail(p: float) -> None:
    np.testing.assert_allclose(normal_sf(normal_ppf(p)), 1.0 - p, rtol=RTOL)


@pytest.mark.parametrize("t", [0.0, 0.3, 1.0, 12.7])
def test_t_with_one_degree_is_cauchy(t: float) -> None:
    np.testing.assert_allclose(t_sf(t, 1.0), 0.5 - math.atan(t) / math.pi, rtol=RTOL)


@pytest.mark.parametrize("t", [0.2, 1.0, 4.3])
def test_t_with_two_degrees(t: float) -> None:
    # P(T_2 > t) = (1 - t / sqrt(2 + t^2)) / 2
    np.testing.assert_allclose(t_sf(t, 2.0), 0.5 * (1.0 - t / math.sqrt(2.0 + t * t)),
                               rtol=RTOL)


@pytest.mark.parametrize("p", [0.9, 0.975])
def test_t_quantile_of_two_degrees(p: float) -> None:
    # the inverse of the closed form above: t = (2p - 1) sqrt(2 / (1 - (2p - 1)^2))
    a = 2.0 * p - 1.0
    np.testing.assert_allclose(t_ppf(p, 2.0), a * math.sqrt(2.0 / (1.0 - a * a)), rtol=RTOL)


@pytest.mark.parametrize(("x", "df"), [(0.5, 2.0), (3.0, 2.0), (10.0, 2.0)])
def test_chi2_with_two_degrees_is_exponential(x: float, df: float) -> None:
    np.testing.assert_allclose(chi2_sf(x, df), math.exp(-x / 2.0), rtol=RTOL)


@pytest.mark.parametrize(("f", "dfd"), [(0.7, 5.0), (3.2, 40.0), (14.05, 61.0)])
def test_f_with_two_numerator_degrees(f: float, dfd: float) -> None:
    # P(F_{2, d} > f) = (1 + 2 f / d)^(-d / 2)
    np.testing.assert_allclose(f_sf(f, 2.0, dfd), (1.0 + 2.0 * f / dfd) ** (-dfd / 2.0),
                               rtol=RTOL)
