"""Grieco, Murry and Yurukoglu (2024) cars data: the seed's running logit example.

References: the numbers recomputed independently with numpy in
../shared/data/course/PROVENANCE.md (OLS -0.03367; 2SLS with RXR -0.16939, HC0 SE 0.02678;
mean own-price elasticity IV -6.10, OLS -1.21; homoskedastic first-stage F 64.6), and a dummy
variable first stage computed here with numpy for the make-clustered F. The paper's Table II
reports F = 14.09 clustered by make; ours (14.45) has no finite-sample cluster factor, while
Stata-style G/(G-1) (N-1)/(N-K) scaling gives about 14.06: a convention, not a discrepancy.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from blpdemand.results.logit import estimate_logit

LINEAR = ("prices + np.log(height) + np.log(footprint) + np.log(hp) + np.log(mpg) "
          "+ np.log(weight) + np.log(number_trims) + releaseYear + yearsSinceDesign + sport + EV "
          "+ truck + suv + van")
EXOGENOUS = ["height", "footprint", "hp", "mpg", "weight", "number_trims"]
LEVELS = ["releaseYear", "yearsSinceDesign", "sport", "EV", "truck", "suv", "van"]


@pytest.fixture(scope="module")
def car_products(cars: pd.DataFrame) -> pd.DataFrame:
    data = cars.rename(columns={"price": "prices"})
    data["market_ids"] = data["year"]
    data["shares"] = data["sales"] / (data["number_households"] / 2.5)
    return data


@pytest.fixture(scope="module")
def iv(car_products: pd.DataFrame):
    return estimate_logit(car_products, linear=LINEAR, absorb="C(year) + C(make)",
                          instruments=["RXR"], covariance="clustered", clusters="make")


def test_ols_price_coefficient(car_products: pd.DataFrame) -> None:
    # Reference: PROVENANCE.md OLS -0.03367 (notebook -0.0337); tolerance 5e-6 (rounding).
    ols = estimate_logit(car_products, linear=LINEAR, absorb="C(year) + C(make)", method="ols")
    assert ols.params["prices"] == pytest.approx(-0.03367, abs=5e-6)
    assert ols.own_price_elasticities().mean() == pytest.approx(-1.21, abs=5e-3)
    assert ols.first_stage is None


def test_iv_price_coefficient_and_hc0_se(iv) -> None:
    # Reference: PROVENANCE.md 2SLS -0.16939, HC0 SE 0.02678; tolerance 5e-6 (rounding).
    assert iv.params["prices"] == pytest.approx(-0.16939, abs=5e-6)
    robust = iv.with_covariance("robust")
    assert robust.bse["prices"] == pytest.approx(0.02678, abs=5e-6)
    assert robust is not iv and iv.covariance_type == "clustered"
    # Reference: mean own-price elasticity alpha p (1 - s), PROVENANCE -6.10 (paper -6.11).
    assert iv.own_price_elasticities().mean() == pytest.approx(-6.10, abs=5e-3)
    assert iv.df_resid == 9694 - 14 - 100  # 39 years + 62 makes - 1 component


def test_first_stage_f_against_dummy_regression(car_products: pd.DataFrame, iv) -> None:
    # Reference: first stage with explicit year and make dummies in numpy; make-clustered Wald
    # F = b^2 / V_cl with V_cl = A (sum_c s_c s_c') A (no finite-sample factor); tolerance 1e-6.
    d = car_products
    X = np.column_stack([np.log(d[c]) for c in EXOGENOUS] + [d[c] for c in LEVELS]
                        + [d["RXR"]])
    year = pd.get_dummies(d["year"]).to_numpy(float)
    make = pd.get_dummies(d["make"]).to_numpy(float)[:, 1:]
    D = np.column_stack([X, year, make])
    p = d["prices"].to_numpy()
    A = np.linalg.inv(D.T @ D)
    b = A @ D.T @ p
    v = p - D @ b
    k = X.shape[1] - 1  # RXR column
    codes = pd.factorize(d["make"])[0]
    sums = np.zeros((codes.max() + 1, D.shape[1]))
    np.add.at(sums, codes, D * v[:, None])
    V = A @ sums.T @ sums @ A
    f_clustered = b[k] ** 2 / V[k, k]
    stage = iv.first_stage["prices"]
    assert stage.f_clustered == pytest.approx(f_clustered, rel=1e-6)
    assert stage.f_statistic == pytest.approx(f_clustered, rel=1e-6)  # one instrument: eff. F
    assert stage.params["RXR"] == pytest.approx(b[k], rel=1e-8)
    # Reference: PROVENANCE homoskedastic F 64.6 and RXR coefficient 4.146.
    assert stage.f_homoskedastic == pytest.approx(64.6, abs=0.1)
    assert stage.params["RXR"] == pytest.approx(4.146, abs=1e-3)
    assert iv.summary().to_frame().loc["prices", "estimate"] == iv.params["prices"]


def test_absorbed_equals_dummies_with_singleton_makes(car_products: pd.DataFrame) -> None:
    # Reference: the same OLS with year and make dummy columns; five makes are singletons, so
    # the degrees of freedom must count their dummies (rank of [year, make] dummies = 100).
    # Unadjusted and HC1 SEs depend on N - K - D_FE; tolerance 1e-8.
    absorbed = estimate_logit(car_products, linear=LINEAR, absorb="C(year) + C(make)",
                              method="ols", covariance="unadjusted")
    dummies = estimate_logit(car_products, linear=LINEAR + " + C(year) + C(make)",
                             method="ols", covariance="unadjusted")
    assert absorbed.absorbed_degrees == 100 and absorbed.df_resid == dummies.df_resid
    np.testing.assert_allclose(absorbed.params["prices"], dummies.params["prices"], rtol=1e-8)
    for kind in ("unadjusted", "hc1"):
        np.testing.assert_allclose(absorbed.with_covariance(kind).bse["prices"],
                                   dummies.with_covariance(kind).bse["prices"], rtol=1e-8)
