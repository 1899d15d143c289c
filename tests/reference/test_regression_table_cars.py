"""The lecture's logit table on the cars data: OLS and IV, without and with controls.

References: the numbers recomputed independently with numpy in
../shared/data/course/PROVENANCE.md for the model with controls (OLS price -0.03367; 2SLS with
RXR -0.16939, HC0-robust SE 0.02678; mean own-price elasticity OLS -1.21, IV -6.10), and each
model's own estimates for every cell (the table must show exactly what the models computed).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import blpdemand as bd

CONTROLS = ("prices + np.log(height) + np.log(footprint) + np.log(hp) + np.log(mpg) "
            "+ np.log(weight) + np.log(number_trims) + releaseYear + yearsSinceDesign + sport "
            "+ EV + truck + suv + van")


@pytest.fixture(scope="module")
def models(cars: pd.DataFrame) -> dict[str, bd.LogitResults]:
    data = cars.rename(columns={"price": "prices"})
    data["market_ids"] = data["year"]
    data["shares"] = data["sales"] / (data["number_households"] / 2.5)
    out = {}
    for label, linear in (("baseline", "prices"), ("controls", CONTROLS)):
        out[f"OLS {label}"] = bd.estimate_logit(data, linear=linear, method="ols",
                                                absorb="C(year) + C(make)")
        out[f"IV {label}"] = bd.estimate_logit(data, linear=linear, instruments=["RXR"],
                                               absorb="C(year) + C(make)")
    return out


def test_the_lecture_table_shows_each_models_numbers(models) -> None:
    table = bd.regression_table(models, parameters=["prices"], title="Logit demand for cars")
    body = table.to_frame()
    assert list(body.columns) == list(models)
    for label, results in models.items():
        assert body.loc["prices", label] == f"{results.params['prices']:.4f}"
        assert body.loc["  (prices)", label] == f"({results.bse['prices']:.4f})"
        assert body.loc["N", label] == "9694"
        own = results.own_price_elasticities().mean()
        assert body.loc["mean own-price elasticity", label] == f"{own:.4f}"
    f = models["IV controls"].first_stage["prices"].f_statistic
    assert body.loc["first-stage F (prices)", "IV controls"] == f"{f:.4f}"
    assert body.loc["first-stage F (prices)", "OLS controls"] == ""
    # the published column (controls): OLS biased toward zero, IV about five times larger
    controls_ols = float(body.loc["prices", "OLS controls"])
    controls_iv = float(body.loc["prices", "IV controls"])
    assert controls_ols == pytest.approx(-0.03367, abs=5e-5)
    assert controls_iv == pytest.approx(-0.16939, abs=5e-5)
    assert float(body.loc["  (prices)", "IV controls"].strip("()")) == pytest.approx(0.02678,
                                                                                     abs=5e-5)
    assert float(body.loc["mean own-price elasticity", "IV controls"]) == pytest.approx(
        -6.10, abs=5e-3)
    assert "OLS controls" in table.to_text()


def test_unknown_parameters_and_empty_tables_are_named(models) -> None:
    with pytest.raises(bd.SpecificationError, match="no model has parameter"):
        bd.regression_table(models, parameters=["price"])
    with pytest.raises(bd.SpecificationError, match="at least one model"):
        bd.regression_table({})
    every = bd.regression_table(models).to_frame()
    assert every.loc["np.log(hp)", "OLS baseline"] == ""  # not in the baseline model
    assert np.isfinite(float(every.loc["np.log(hp)", "IV controls"]))
