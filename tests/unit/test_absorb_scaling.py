"""Absorbing year and make effects from badly scaled columns (sums of squared price gaps).

Reference: the residual of a least-squares regression on explicit year and make dummy columns
(numpy lstsq), the same projection written without alternating projections. Tolerance 1e-8 of
the column's scale max|z| (a 9,694 x 101 well-conditioned dummy regression is accurate to about
1e-12 of the scale; pyhdfe stops at 1e-14 of it). Before the fix pyhdfe stopped on an absolute
change of 1e-14 in a column of size 1e6, ran its 100,000 iterations and raised its own error.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from blpdemand.data import absorb
from blpdemand.errors import ConvergenceError
from blpdemand.results.logit import estimate_logit

LINEAR = "prices + np.log(hp) + np.log(weight) + releaseYear"


@pytest.fixture(scope="module")
def frame(cars: pd.DataFrame) -> pd.DataFrame:
    d = cars.rename(columns={"price": "prices"})
    d["market_ids"] = d["year"]
    d["shares"] = d["sales"] / (d["number_households"] / 2.5)
    p = d["prices"].to_numpy()
    z = np.zeros(len(d))
    for rows in d.groupby("year").indices.values():
        z[rows] = ((p[rows][:, None] - p[rows][None, :]) ** 2).sum(axis=1)
    d["sq_gap"] = z  # sum_k (p_j - p_k)^2 within the year: values up to about 1e7
    return d


@pytest.fixture(scope="module")
def dummies(frame: pd.DataFrame) -> np.ndarray:
    year = pd.get_dummies(frame["year"]).to_numpy(float)
    make = pd.get_dummies(frame["make"]).to_numpy(float)[:, 1:]
    return np.column_stack([year, make])


def _dummy_residual(D: np.ndarray, y: np.ndarray) -> np.ndarray:
    return y - D @ np.linalg.lstsq(D, y, rcond=None)[0]


def test_badly_scaled_column_equals_dummy_residual(frame: pd.DataFrame,
                                                   dummies: np.ndarray) -> None:
    z = frame["sq_gap"].to_numpy()
    assert np.abs(z).max() > 1e5
    effects = absorb.absorb_fixed_effects(frame, ("year", "make"))
    assert effects is not None
    tilde = effects.residualize(z, names=["sq_gap"])  # pyhdfe alone: 100,000 iterations, error
    np.testing.assert_allclose(tilde, _dummy_residual(dummies, z), rtol=0,
                               atol=1e-8 * np.abs(z).max())
    # Mixed scales in one matrix: each column to 1e-8 of its own scale.
    X = np.column_stack([z, np.log(frame["hp"].to_numpy()), frame["prices"].to_numpy()])
    both = effects.residualize(X)
    for k in range(X.shape[1]):
        np.testing.assert_allclose(both[:, k], _dummy_residual(dummies, X[:, k]), rtol=0,
                                   atol=1e-8 * np.abs(X[:, k]).max())


def test_logit_with_badly_scaled_instrument(frame: pd.DataFrame, dummies: np.ndarray) -> None:
    # Reference: 2SLS with the dummy columns in numpy, same instruments [RXR, sq_gap].
    res = estimate_logit(frame, linear=LINEAR, instruments=["RXR", "sq_gap"],
                         absorb="C(year) + C(make)")
    d = frame
    exog = np.column_stack([np.log(d["hp"]), np.log(d["weight"]), d["releaseYear"], dummies])
    X = np.column_stack([d["prices"], exog])
    Z = np.column_stack([d["RXR"], d["sq_gap"], exog])
    y = np.log(d["shares"]) - np.log(1 - d.groupby("year")["shares"].transform("sum"))
    X_hat = Z @ np.linalg.lstsq(Z, X, rcond=None)[0]
    beta = np.linalg.lstsq(X_hat, y.to_numpy(), rcond=None)[0]
    np.testing.assert_allclose(res.params.to_numpy(), beta[:4], rtol=1e-7)


def test_forced_non_convergence_names_the_column(frame: pd.DataFrame,
                                                 dummies: np.ndarray) -> None:
    z = frame["sq_gap"].to_numpy()
    settled = _dummy_residual(dummies, np.log(frame["hp"].to_numpy()))  # already net of effects
    effects = absorb.absorb_fixed_effects(frame, ("year", "make"), iteration_limit=1)
    assert effects is not None
    with pytest.raises(ConvergenceError, match="sq_gap") as info:
        effects.residualize(np.column_stack([settled, z]), names=["settled", "sq_gap"])
    assert "settled" not in str(info.value)
    assert not isinstance(info.value.__cause__, ConvergenceError)


def test_forced_non_convergence_through_estimate_logit(frame: pd.DataFrame,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(absorb, "ITERATION_LIMIT", 1)
    with pytest.raises(ConvergenceError, match="prices"):
        estimate_logit(frame, linear=LINEAR, instruments=["RXR", "sq_gap"],
                       absorb="C(year) + C(make)")
