"""Simulated BLP markets of unequal size with shares built from a known delta (test data).

The shares are computed here by an independent per-market loop (plain numpy logit formula),
so tests can check that the inner loop recovers the delta that generated them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from blpdemand import Problem


def simulated(seed: int = 0, sizes: tuple[int, ...] = (3, 7, 5, 7, 1, 6), agents: int = 30):
    """Markets of unequal size (padded blocks) with shares from a known delta and theta."""
    rng = np.random.default_rng(seed)
    rows, agent_rows = [], []
    theta_sigma, theta_pi = np.array([0.8, 0.5]), np.array([[0.3], [-0.2]])
    truth = []
    for t, J in enumerate(sizes):
        I = agents + t  # unequal I_t too
        x = rng.normal(size=J)
        prices = 1 + rng.uniform(size=J)
        delta = rng.normal(-1.0, 0.7, size=J)
        nodes = rng.normal(size=(I, 2))
        income = rng.normal(size=I)
        weights = rng.uniform(0.5, 1.5, size=I)
        weights /= weights.sum()
        X2 = np.column_stack([np.ones(J), prices])
        coef = nodes * theta_sigma + income[:, None] * theta_pi[:, 0]
        u = delta[:, None] + X2 @ coef.T  # (J, I): independent per-market reference
        p = np.exp(u) / (1 + np.exp(u).sum(axis=0))
        shares = p @ weights
        truth.append(delta)
        for j in range(J):
            rows.append({"market_ids": f"m{t}", "shares": shares[j], "prices": prices[j], "x": x[j],
                             "z1": rng.normal(), "z2": rng.normal()})
        for i in range(I):
            agent_rows.append({"market_ids": f"m{t}", "weights": weights[i], "nodes0": nodes[i, 0],
                                   "nodes1": nodes[i, 1], "income": income[i]})
    problem = Problem(pd.DataFrame(rows), linear="prices + x", nonlinear="1 + prices",
                      demographics="0 + income", agents=pd.DataFrame(agent_rows),
                      instruments=["z1", "z2"])
    layout, theta = problem.layout(np.diag(theta_sigma), theta_pi)
    return problem, layout, theta, problem.products.sort(np.concatenate(truth))


def nevo_tutorial(products: pd.DataFrame, agents: pd.DataFrame):
    """PyBLP's Nevo tutorial problem (product FE, Pi on 4 demographics) at its published
    estimates: (problem, layout, theta)."""
    problem = Problem(products, linear="prices", nonlinear="1 + prices + sugar + mushy",
                      demographics="income + income_squared + age + child", agents=agents,
                      absorb="C(product_ids)",
                      instruments=[f"demand_instruments{k}" for k in range(20)])
    sigma = np.diag([0.5580, 3.312, -0.005804, 0.09341])
    pi = np.array([[2.292, 0, 1.284, 0], [588.3, -30.19, 0, 11.05],
                   [-0.3849, 0, 0.05237, 0], [0.7481, 0, -1.353, 0]])
    layout, theta = problem.layout(sigma, pi)
    return problem, layout, theta
