"""Nested logit on Nevo's cereal data (nests: mushy or not) against PyBLP, run live.

Reference: PyBLP 1.3.0's "Logit and Nested Logit" tutorial specification,
products["nesting_ids"] = products["mushy"]; demand_instruments20 = number of products in the
(market, nest) cell; pyblp.Problem(pyblp.Formulation("0 + prices"), products).solve(rho=0.7)
(the tutorial leaves product fixed effects out: the count does not vary across markets, so they
would absorb it; a second case absorbs them with demand_instruments0..19 only).

PyBLP treats rho as a nonlinear parameter: xi(rho) = log(s/s0) - rho log s_{j|g} - X1 beta, its
optimizer minimizing the GMM objective over rho with beta concentrated out. Our estimate is the
linear IV regression of log(s/s0) on [X1, log s_{j|g}]: the same minimizer in closed form
(one step with W = (Z'Z/N)^-1 is 2SLS). Its Jacobian d xi / d rho = -log s_{j|g} is the
regressor's column, so PyBLP's robust sandwich (moments centered in S, its default) equals our
covariance="robust" with center_moments=True. PyBLP's optimizer is run to gtol 1e-12 so that its
rho sits on the optimum to about 1e-9; tolerances 1e-6 relative (estimates and SEs).

One rho per nest, and product effects with instruments 0..19, put rho above 1 on these data
(rho[1] = 1.33; 1.18 with a positive price coefficient): outside PyBLP's default bounds
[0, 0.99], where its optimizer stops on the bound. Those cases lift PyBLP's bounds to [-5, 5]
to compare the same (unconstrained) optimum, and ours warns (EconomicWarning: rho outside
[0, 1) is not a random utility model).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import blpdemand as bd
from blpdemand.errors import EconomicWarning

pyblp = pytest.importorskip("pyblp")

INSTRUMENTS = [f"demand_instruments{k}" for k in range(20)]


@pytest.fixture(scope="module")
def products(nevo_nested_products: pd.DataFrame) -> pd.DataFrame:
    return nevo_nested_products


def _pyblp(products: pd.DataFrame, *, method: str, rho: object, absorb: str | None = None,
           drop: tuple[str, ...] = (), bounds: object = None):
    pyblp.options.verbose = False
    data = products.drop(columns=list(drop))
    with np.errstate(all="ignore"):
        problem = pyblp.Problem(pyblp.Formulation("0 + prices", absorb=absorb), data)
        return problem.solve(rho=rho, method=method, rho_bounds=bounds,
                             optimization=pyblp.Optimization("l-bfgs-b", {"gtol": 1e-12}))


def _compare(ours: bd.LogitResults, reference, rho_names: list[str]) -> None:
    rho, rho_se = reference.rho.ravel(), reference.rho_se.ravel()
    assert ours.params[rho_names].to_numpy() == pytest.approx(rho, rel=1e-6)
    assert ours.bse[rho_names].to_numpy() == pytest.approx(rho_se, rel=1e-6)
    assert ours.params["prices"] == pytest.approx(float(reference.beta[0, 0]), rel=1e-6)
    assert ours.bse["prices"] == pytest.approx(float(reference.beta_se[0, 0]), rel=1e-6)


def test_tutorial_one_step_is_2sls(products: pd.DataFrame) -> None:
    reference = _pyblp(products, method="1s", rho=0.7)
    instruments = [*INSTRUMENTS, "demand_instruments20"]
    ours = bd.estimate_logit(products, linear="0 + prices", instruments=instruments,
                             nesting="nesting_ids", center_moments=True)
    _compare(ours, reference, ["rho"])
    gmm = bd.estimate_logit(products, linear="0 + prices", instruments=instruments,
                            nesting="nesting_ids", method="gmm", center_moments=True)
    assert gmm.params.to_numpy() == pytest.approx(ours.params.to_numpy(), rel=1e-12)
    # the builder's count is the tutorial's demand_instruments20
    built = bd.build_nesting_instruments(products, nesting="nesting_ids")
    assert np.array_equal(built["nest_count"].to_numpy(),
                          products["demand_instruments20"].to_numpy())


def test_tutorial_two_step(products: pd.DataFrame) -> None:
    reference = _pyblp(products, method="2s", rho=0.7)
    ours = bd.estimate_logit(products, linear="0 + prices", nesting="nesting_ids",
                             instruments=[*INSTRUMENTS, "demand_instruments20"],
                             method="2s-gmm", center_moments=True)
    _compare(ours, reference, ["rho"])
    # the tutorial's printed estimates (two digits): rho 0.89, alpha -7.8
    assert round(float(ours.params["rho"]), 2) == 0.89
    assert round(float(ours.params["prices"]), 1) == -7.8
    # post-estimation at the two estimates (equal to ~1e-9; 1/(1 - rho) amplifies that 8-fold):
    # PyBLP's stacked elasticities and its Bertrand costs with the data's firm_ids, 1e-6
    with np.errstate(all="ignore"):
        elasticities = np.asarray(reference.compute_elasticities())
        costs = np.asarray(reference.compute_costs()).ravel()
        diversion = np.asarray(reference.compute_diversion_ratios())
    got = bd.compute_elasticities(ours).stacked()
    # diversion ratios: ratios of the same Jacobian's entries, each row summing to one
    ratios = bd.compute_diversion_ratios(ours).stacked()
    assert np.nanmax(np.abs(ratios - diversion)) <= 1e-6
    assert np.abs(got - elasticities).max() <= 1e-6 * np.abs(elasticities).max()
    with pytest.warns(EconomicWarning):  # two products with costs below zero, in both
        ours_costs = bd.compute_costs(ours)
    assert np.abs(ours_costs - costs).max() <= 1e-6 * np.abs(costs).max()


def test_one_rho_per_nest(products: pd.DataFrame) -> None:
    reference = _pyblp(products, method="1s", rho=[0.7, 0.7], bounds=([-5, -5], [5, 5]))
    with pytest.warns(EconomicWarning, match=r"rho\[1\]"):
        ours = bd.estimate_logit(products, linear="0 + prices", nesting="nesting_ids",
                                 rho="per_nest", center_moments=True,
                                 instruments=[*INSTRUMENTS, "demand_instruments20"])
    _compare(ours, reference, ["rho[0]", "rho[1]"])


def test_product_fixed_effects_absorbed(products: pd.DataFrame) -> None:
    reference = _pyblp(products, method="1s", rho=0.7, absorb="C(product_ids)",
                       drop=("demand_instruments20",), bounds=(-5, 5))
    with pytest.warns(EconomicWarning, match="rho"):
        ours = bd.estimate_logit(products, linear="prices", absorb="C(product_ids)",
                                 nesting="nesting_ids", instruments=INSTRUMENTS,
                                 center_moments=True)
    _compare(ours, reference, ["rho"])


def test_merger_prices_equal_pyblp(products: pd.DataFrame) -> None:
    # The tutorial's 2-step nested logit; firm 2 merges into firm 1 at the costs each tool
    # implies. Prices solve the nested Bertrand first-order conditions in both (ours: the
    # markup equation p = c + eta(p)); they agree to the FOC tolerance (1e-12) amplified by
    # the estimates' 1e-9 difference and 1 / (1 - rho) ~ 9: 1e-7 of the price scale.
    reference = _pyblp(products, method="2s", rho=0.7)
    ours = bd.estimate_logit(products, linear="0 + prices", nesting="nesting_ids",
                             instruments=[*INSTRUMENTS, "demand_instruments20"],
                             method="2s-gmm", center_moments=True)
    merged = products["firm_ids"].replace(2, 1).to_numpy()
    with np.errstate(all="ignore"):
        with pytest.warns(EconomicWarning):  # costs below zero
            costs = bd.compute_costs(ours)
        theirs = np.ravel(reference.compute_prices(firm_ids=merged[:, None],
                                                   costs=reference.compute_costs()))
    counterfactual = bd.compute_prices(ours, firm_ids=merged, costs=costs)
    assert all(s.converged for s in counterfactual.status)
    assert np.abs(counterfactual.prices - theirs).max() <= 1e-7 * np.abs(theirs).max()
    # the merged firm raises its prices; consumer surplus falls
    assert np.all(counterfactual.prices[merged == 1] >= products["prices"][merged == 1] - 1e-12)
    assert np.all(counterfactual.consumer_surplus <= counterfactual.consumer_surplus_before)


def test_passthrough_equals_pyblp(products: pd.DataFrame) -> None:
    # The tutorial's 2-step nested logit, each tool at its own estimate (1e-9 apart) and the
    # costs it implies; ours differences the nested markup equation (results/passthrough.py).
    # Measured 1.1e-11 of the largest entry; asserted 1e-9.
    reference = _pyblp(products, method="2s", rho=0.7)
    ours = bd.estimate_logit(products, linear="0 + prices", nesting="nesting_ids",
                             instruments=[*INSTRUMENTS, "demand_instruments20"],
                             method="2s-gmm", center_moments=True)
    with np.errstate(all="ignore"):
        expected = np.asarray(reference.compute_passthrough())
    got = bd.compute_passthrough(ours).stacked()
    assert np.array_equal(np.isfinite(got), np.isfinite(expected))
    scale = np.nanmax(np.abs(expected))
    assert np.nanmax(np.abs(got - expected)) <= 1e-9 * scale
