"""delta(theta) and d delta / d theta equal PyBLP's on Nevo's and BLP's data (run live).

Reference: PyBLP 1.3.0 ``Problem.solve`` at fixed theta with ``Optimization('return')`` and
SQUAREM at atol 1e-14 (its default); its ``delta`` and ``xi_by_theta_jacobian`` (PyBLP's
d xi / d theta, which is d delta / d theta: its xi Jacobian holds beta fixed). Tolerances:
delta 1e-10 absolute, Jacobian 1e-8 relative to each column's largest element. Theta: the
PyBLP tutorials' published starting values / estimates for each data set.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from blpdemand import Problem
from blpdemand.solve.fixed_point import FixedPointConfig
from blpdemand.solve.inversion import solve_delta

pyblp = pytest.importorskip("pyblp")
pyblp.options.verbose = False


def pyblp_at(product_formulations, products, agent_formulation, agents, sigma, pi):
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PyBLP warns that BLP's weights do not sum to one
        problem = pyblp.Problem(product_formulations, products, agent_formulation, agents)
        results = problem.solve(sigma, pi, optimization=pyblp.Optimization("return"),
                                method="1s", check_optimality="gradient",
                                iteration=pyblp.Iteration("squarem", {"atol": 1e-14}))
    return results


def pyblp_order(layout, sigma, pi):
    """Columns of PyBLP's theta in our order: its Sigma diagonal first, then Pi row by row."""
    ours = [("s", r, c) for r, c in zip(*layout.sigma_index)]
    ours += [("p", r, c) for r, c in zip(*layout.pi_index)]
    theirs = [("s", k, k) for k in np.flatnonzero(np.diag(sigma))]
    theirs += [("p", r, c) for r, c in zip(*np.nonzero(pi))]
    return [theirs.index(item) for item in ours]


def compare(problem, layout, theta, results, sigma, pi):
    # delta by the compiled per-market Anderson (the default) and by the numpy block solvers
    for compiled in (True, False):
        ours = solve_delta(problem, layout, theta, jacobian=True,
                           config=FixedPointConfig(compiled=compiled))
        assert ours.converged
        delta = problem.products.sort(np.asarray(results.delta).ravel())
        assert np.max(np.abs(ours.delta - delta)) < 1e-10
        theirs = problem.products.sort(np.asarray(results.xi_by_theta_jacobian))
        theirs = theirs[:, pyblp_order(layout, sigma, pi)]
        scale = np.max(np.abs(theirs), axis=0)
        assert np.all(np.max(np.abs(ours.jacobian - theirs), axis=0) <= 1e-8 * scale)


def test_nevo_delta_and_jacobian_match_pyblp(nevo_products, nevo_agents):
    # PyBLP's Nevo tutorial formulation and agents; theta near its published estimates.
    sigma = np.diag([0.5580, 3.312, -0.005804, 0.09341])
    pi = np.array([[2.292, 0, 1.284, 0], [588.3, -30.19, 0, 11.05],
                   [-0.3849, 0, 0.05237, 0], [0.7481, 0, -1.353, 0]])
    results = pyblp_at((pyblp.Formulation("0 + prices", absorb="C(product_ids)"),
                        pyblp.Formulation("1 + prices + sugar + mushy")), nevo_products,
                       pyblp.Formulation("0 + income + income_squared + age + child"),
                       nevo_agents, sigma, pi)
    problem = Problem(nevo_products, linear="prices", nonlinear="1 + prices + sugar + mushy",
                      demographics="income + income_squared + age + child", agents=nevo_agents,
                      absorb="C(product_ids)",
                      instruments=[f"demand_instruments{k}" for k in range(20)])
    layout, theta = problem.layout(sigma, pi)
    compare(problem, layout, theta, results, sigma, pi)


def test_blp_delta_and_jacobian_match_pyblp(blp_products, blp_agents):
    # PyBLP's BLP tutorial: 5 node columns for 6 X2 columns (zero sigma on prices), weights
    # summing to 0.154, pi on prices interacted with 1 / income; its initial values.
    sigma = np.diag([3.612, 0, 4.628, 1.818, 1.050, 2.056])
    pi = np.array([[0.0], [-43.501], [0.0], [0.0], [0.0], [0.0]])
    results = pyblp_at((pyblp.Formulation("1 + hpwt + air + mpd + space"),
                        pyblp.Formulation("1 + prices + hpwt + air + mpd + space")),
                       blp_products, pyblp.Formulation("0 + I(1 / income)"), blp_agents,
                       sigma, pi)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # our weights warning (they sum to 0.154 by design)
        problem = Problem(blp_products, linear="1 + hpwt + air + mpd + space",
                          nonlinear="1 + prices + hpwt + air + mpd + space",
                          demographics="0 + I(1 / income)", agents=blp_agents,
                          instruments=[f"demand_instruments{k}" for k in range(8)])
    layout, theta = problem.layout(sigma, pi)
    compare(problem, layout, theta, results, sigma, pi)
