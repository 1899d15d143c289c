"""Wald tests against PyBLP 1.3's run_wald_test, run live on Nevo's cereal data at the
tutorial's starting Sigma and Pi (Optimization('return'), 1-step W): the same estimates and
covariances from the same arithmetic, to the inner loop's precision (d xi / d theta from deltas
solved to 1e-14). Measured: the statistics of the three cases below agree to 2.6e-12, 8.5e-12
and 1.5e-11 relative; asserted 1e-8.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import blpdemand as bd

pyblp = pytest.importorskip("pyblp")

SIGMA0 = np.diag([0.3302, 2.4526, 0.0163, 0.2441])
PI0 = np.array([[5.4819, 0, 0.2037, 0], [15.8935, -1.2, 0, 2.6342],
                [-0.2506, 0, 0.0511, 0], [1.2650, 0, -0.8091, 0]])
DEMOGRAPHICS = "0 + income + income_squared + age + child"


def test_wald_statistics_equal_pyblps(nevo_products: pd.DataFrame,
                                      nevo_agents: pd.DataFrame) -> None:
    problem = bd.Problem(nevo_products, linear="0 + prices",
                         nonlinear="1 + prices + sugar + mushy", demographics=DEMOGRAPHICS,
                         agents=nevo_agents, absorb="C(product_ids)",
                         instruments=[f"demand_instruments{k}" for k in range(20)])
    ours = bd.evaluate(problem, sigma=SIGMA0, pi=PI0, config=bd.EstimationConfig(hessian=False))
    pyblp.options.verbose = False
    formulations = (pyblp.Formulation("0 + prices", absorb="C(product_ids)"),
                    pyblp.Formulation("1 + prices + sugar + mushy"))
    with np.errstate(all="ignore"):
        theirs = pyblp.Problem(formulations, nevo_products, pyblp.Formulation(DEMOGRAPHICS),
                               nevo_agents).solve(SIGMA0, PI0, method="1s",
                                                  optimization=pyblp.Optimization("return"))
    layout, P = ours.layout, ours.layout.P

    def theirs_column(k: int) -> int:
        """PyBLP's stacked order: Sigma's free elements, then Pi's, row by row; then beta."""
        if k >= P:
            return k
        unit = np.zeros(P)
        unit[k] = 1.0
        sigma, pi = layout.unpack(unit)
        return int(np.flatnonzero(np.concatenate([sigma[layout.sigma_free],
                                                  pi[layout.pi_free]]))[0])

    names = list(ours.names)
    cases = [{"pi[prices, income]": 0.0, "pi[prices, income_squared]": 0.0},
             {"sigma[prices, prices]": 2.0, "prices": -30.0, "pi[1, age]": 0.1},
             {name: 0.0 for name in names if name.startswith("pi[")}]
    for case in cases:
        test = ours.wald_test(case)
        R = np.zeros((len(case), len(names)))
        for row, name in enumerate(case):
            R[row, theirs_column(names.index(name))] = 1.0
        restrictions = R @ np.r_[np.asarray(theirs.theta).ravel(),
                                 np.asarray(theirs.beta).ravel()] - np.array(list(case.values()))
        with np.errstate(all="ignore"):
            expected = float(np.asarray(theirs.run_wald_test(restrictions[:, None], R)).ravel()[0])
        assert test.df == len(case)
        assert test.statistic == pytest.approx(expected, rel=1e-8), case
