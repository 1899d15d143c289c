"""Cars data (Grieco, Murry and Yurukoglu 2024; the Econometrics B BLP example) with a random
coefficient on price, against PyBLP 1.3 estimating the same problem live.

Problem: markets are years, shares = sales / (households / 2.5), X1 = price and the product
characteristics of LINEAR, year and make fixed effects absorbed, X2 = price (sigma_price only),
200 scrambled Sobol draws per market (seed 0). Excluded instruments: the real exchange rate RXR
plus our scaled differentiation instruments (``convention="course"``, local and quadratic, on hp
and log weight). That convention is only the name of an option of ours (see
src/blpdemand/instruments/differentiation.py); the course notebook builds no differentiation
instruments and never estimates sigma, so no course number is a reference here.

Reference: PyBLP given exactly our inputs: the same product rows, the same instrument columns as
``demand_instruments0..4``, the same absorbed effects, and our agents (market ids, weights and
Sobol nodes taken from the built problem) as its ``agent_data``. Both run 1-step GMM with
W = (Z'Z/N)^-1, L-BFGS-B from sigma = 0.1 in the box [0.01, 0.5], the inner loop solved to 1e-14.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import blpdemand as bd

pyblp = pytest.importorskip("pyblp")

LINEAR = ("prices + np.log(height) + np.log(footprint) + np.log(hp) + np.log(mpg) "
          "+ np.log(weight) + np.log(number_trims) + releaseYear + yearsSinceDesign + sport + EV "
          "+ truck + suv + van")
ABSORB = "C(year) + C(make)"
SIGMA0 = 0.1
BOUNDS = (0.01, 0.5)
# Asked of both optimizers; both in fact stop on L-BFGS-B's relative reduction of Q (scipy's
# default ftol on both sides) with |dQ/dsigma| ~ 3e-6.
GTOL = 1e-8


def _cars_data(cars: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """Products with shares = sales / (households / 2.5) and the excluded instruments: RXR and
    the course-convention differentiation instruments (local, quadratic) on hp and log weight."""
    data = cars.rename(columns={"price": "prices"})
    data["market_ids"] = data["year"]
    data["shares"] = data["sales"] / (data["number_households"] / 2.5)
    gh = pd.concat([bd.build_differentiation_instruments(data, "hp + np.log(weight)",
                                                         convention="course", version=v)
                    for v in ("local", "quadratic")], axis=1)
    return data, gh, ["RXR", *gh.columns]


@pytest.mark.slow
def test_cars_random_price_coefficient_matches_pyblp(cars: pd.DataFrame) -> None:
    data, gh, excluded = _cars_data(cars)
    frame = pd.concat([data, gh], axis=1)
    problem = bd.Problem(frame, linear=LINEAR, nonlinear="0 + prices",
                         agents=bd.Integration("sobol", 200, rng=0), absorb=ABSORB,
                         instruments=excluded)
    config = bd.EstimationConfig(gtol=GTOL, method="1s", starts=2, rng=0,
                                 bounds={"sigma[prices, prices]": BOUNDS})
    ours = bd.estimate(problem, sigma=[[SIGMA0]], config=config)

    # PyBLP's inputs: the same columns under its names; the agents of our built problem.
    agents = problem.agents
    assert agents is not None
    agent_data = pd.DataFrame({"market_ids": np.asarray(agents.markets.ids)[agents.markets.codes],
                               "weights": agents.weights, "nodes0": agents.nodes[:, 0]})
    product_data = frame.drop(columns=excluded).assign(
        **{f"demand_instruments{k}": frame[name] for k, name in enumerate(excluded)})
    pyblp.options.verbose = False
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # PyBLP spells numpy's log as log(); the X1 columns are the same (names checked below)
        formulations = (pyblp.Formulation(LINEAR.replace("np.log", "log"), absorb=ABSORB),
                        pyblp.Formulation("0 + prices"))
        pyblp_problem = pyblp.Problem(formulations, product_data, agent_data=agent_data)
        theirs = pyblp_problem.solve(
            sigma=[[SIGMA0]], sigma_bounds=([[BOUNDS[0]]], [[BOUNDS[1]]]), method="1s",
            optimization=pyblp.Optimization("l-bfgs-b", {"gtol": GTOL}),
            iteration=pyblp.Iteration("squarem", {"atol": 1e-14}))
    # Same inputs: X1 and ZD after absorbing the fixed effects (PyBLP puts the excluded
    # instruments first in ZD; both absorb iteratively, agreeing to ~1e-11 of each column's scale)
    # and the same 39 x 200 agents.
    assert [name.replace("np.log", "log") for name in problem.X1.names] == \
        [str(f) for f in pyblp_problem.products.dtype.fields["X1"][2]]
    ZD = np.hstack([problem.ZD_tilde[:, -len(excluded):], problem.ZD_tilde[:, :-len(excluded)]])
    for ours_matrix, theirs_matrix in ((problem.X1_tilde, pyblp_problem.products.X1),
                                       (ZD, pyblp_problem.products.ZD)):
        scale = np.abs(ours_matrix).max(axis=0)
        assert np.all(np.abs(ours_matrix - theirs_matrix).max(axis=0) <= 1e-9 * scale)
    np.testing.assert_array_equal(pyblp_problem.agents.nodes.ravel(), agents.nodes[:, 0])
    np.testing.assert_array_equal(pyblp_problem.agents.weights.ravel(), agents.weights)
    assert pyblp_problem.I == agents.I == 39 * 200

    # Tolerances from the optimizers' stopping points: both end with |dQ/dsigma| <= 1e-5 and
    # d2Q/dsigma2 ~ 1.8e4, so each sigma lies within ~1e-9 (rel ~1e-8) of the exact minimizer
    # and Q within g^2 / 2H ~ 1e-15 of its minimum. beta and the SEs are smooth functions of
    # sigma (beta is linear IV given sigma), so rel 1e-6 on sigma, beta and SEs and rel 1e-9
    # on Q leave two orders of margin while catching any real difference in the model.
    assert ours.converged and theirs.converged
    np.testing.assert_allclose(ours.objective, theirs.objective, rtol=1e-9)
    np.testing.assert_allclose(ours.theta, theirs.sigma.ravel(), rtol=1e-6)
    np.testing.assert_allclose(ours.beta, theirs.beta.ravel(), rtol=1e-6)
    np.testing.assert_allclose(ours.theta_se, theirs.sigma_se.ravel(), rtol=1e-6)
    np.testing.assert_allclose(ours.beta_se, theirs.beta_se.ravel(), rtol=1e-6)
    assert ours.beta[0] < 0 and 0.05 < ours.theta[0] < 0.15   # what PyBLP gives: 0.0907
    # Independent starts (two random ones in the box, besides sigma = 0.1) end at PyBLP's sigma,
    # each within its own stopping tolerance (same bound as above). With a finite Sobol rule nu
    # and -nu are different draws, so sigma and -sigma are different points; sigma = 0 (where
    # dQ/dsigma is proportional to the mean node) is kept out by the box.
    ends = ours.starts_table().to_frame()["sigma[prices, prices]"].to_numpy()
    assert ends.size == 3
    np.testing.assert_allclose(ends, theirs.sigma.ravel()[0], rtol=1e-6)


@pytest.mark.slow
def test_cars_lognormal_price_coefficient_has_no_positive_own_elasticity(
        cars: pd.DataFrame) -> None:
    """The cars problem above with the price coefficient -exp(pi_0 + sigma nu) (issue 20): every
    consumer dislikes price, so every own-price elasticity is negative, and the estimate is an
    interior, converged minimum with finite standard errors."""
    data, gh, excluded = _cars_data(cars)
    problem = bd.Problem(pd.concat([data, gh], axis=1), linear=LINEAR.replace("prices + ", ""),
                         nonlinear="0 + prices", demographics="1", lognormal=["prices"],
                         agents=bd.Integration("sobol", 200, rng=0), absorb=ABSORB,
                         instruments=excluded)
    results = bd.estimate(problem, sigma=[[0.5]], pi=[[-1.0]])
    assert results.converged and np.all(np.isfinite(results.theta_se))
    own = results.elasticities().diagonal()
    assert own.size == problem.N and np.all(own < 0)
