"""Simulated Bertrand markets shared by the supply-side tests (gradients, covariance
restrictions, PyBLP comparisons): 10 markets x 5 products, random coefficients on the constant
and x1, income and a third node for Pi and Sigma, and two extra demand instruments."""

from __future__ import annotations

from typing import Any

import numpy as np

import blpdemand as bd


def supply_data() -> tuple[Any, Any]:
    """(products, agents): fresh copies each call."""
    sim = bd.simulate(markets=10, products=5, firms=2, sigma={"1": 0.6, "x1": 0.8}, draws=30,
                      pricing="bertrand", rng=5)
    agents = sim.agents.copy()
    draws = np.random.default_rng(6)
    agents["nodes2"] = draws.standard_normal(len(agents))
    agents["income"] = draws.uniform(0.5, 1.5, len(agents))
    products = sim.products.copy()
    products["z3"] = products["w1"] * products["x1"]
    products["z4"] = products["w2"] ** 2
    return products, agents


def central(function: Any, theta: np.ndarray) -> np.ndarray:
    """Central differences of ``function`` (array-valued) in each element of theta, steps
    1e-5 max(1, |theta_p|): (..., P)."""
    columns = []
    for p in range(theta.size):
        h = 1e-5 * max(1.0, abs(theta[p]))
        up, down = theta.copy(), theta.copy()
        up[p] += h
        down[p] -= h
        columns.append((np.asarray(function(up)) - np.asarray(function(down))) / (2 * h))
    return np.stack(columns, axis=-1)
