"""Agent data with negative weights (a sparse grid built elsewhere) against PyBLP run live.

PyBLP's ``Integration('grid', 4)`` on Nevo with X2 = [1, prices, sugar] gives 6486 agents
(1786 with negative weights, summing to one per market). Passed to ``bd.Problem`` as a frame
with ``negative_weights=True``:
- at a fixed Sigma = diag(0.5) (interior, where the negative weights matter), one-step GMM:
  our objective and beta equal PyBLP's 'return' evaluation (1e-8 relative: contraction
  tolerances of 1e-14 in both tools, Q ~ 5e2);
- estimated from the same start with L-BFGS-B (PyBLP gtol 1e-8, ours starts=0): both end on the
  Sigma >= 0 bound at Sigma = 0, so objective (1e-8 relative) and theta (exactly 0, atol 1e-8)
  and beta (1e-7 relative) are compared;
- at a large Sigma = diag(3, 10, 0.5) the contraction fails in 75 markets, the same ones as with
  the built-in Integration("sparse_grid", 4) (same nodes and weights): same verdict;
- without ``negative_weights=True`` the frame is refused with a DataError naming the keyword;
  with it, a market whose weights do not sum to a positive number is still refused.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import blpdemand as bd
from blpdemand.errors import (
    ConvergenceWarning,
    DataError,
    IdentificationWarning,
    OptimizationWarning,
)

pyblp = pytest.importorskip("pyblp")
pyblp.options.verbose = False

NEVO_Z = [f"demand_instruments{k}" for k in range(20)]
NONLINEAR = "1 + prices + sugar"


@pytest.fixture(scope="module")
def pyblp_grid(nevo_products: pd.DataFrame) -> tuple[object, pd.DataFrame]:
    """PyBLP's problem with grid-4 integration, and its agents as a frame."""
    problem = pyblp.Problem(
        (pyblp.Formulation("prices", absorb="C(product_ids)"), pyblp.Formulation(NONLINEAR)),
        nevo_products, integration=pyblp.Integration("grid", 4))
    agents = problem.agents
    frame = pd.DataFrame({"market_ids": agents.market_ids.ravel(),
                          "weights": agents.weights.ravel(),
                          **{f"nodes{k}": agents.nodes[:, k] for k in range(agents.nodes.shape[1])}})
    assert (frame["weights"] < 0).any()
    return problem, frame


def _ours(products: pd.DataFrame, agents: pd.DataFrame, **kwargs: object) -> bd.Problem:
    return bd.Problem(products, linear="prices", nonlinear=NONLINEAR, agents=agents,
                      absorb="C(product_ids)", instruments=NEVO_Z, **kwargs)


def test_negative_weights_refused_unless_asked(nevo_products, pyblp_grid) -> None:
    _, frame = pyblp_grid
    with pytest.raises(DataError, match=r"negative_weights=True"):
        _ours(nevo_products, frame)
    bad = frame.copy()
    first = bad["market_ids"] == bad["market_ids"].iloc[0]
    bad.loc[first, "weights"] = -bad.loc[first, "weights"]  # sums to -1 in that market
    with pytest.raises(DataError, match="sum to"):
        _ours(nevo_products, bad, negative_weights=True)


def test_negative_weights_objective_at_fixed_sigma_equals_pyblp(nevo_products, pyblp_grid) -> None:
    theirs, frame = pyblp_grid
    problem = _ours(nevo_products, frame, negative_weights=True)
    assert problem.agents is not None and problem.agents.negative_weights
    sigma = np.diag([0.5, 0.5, 0.5])
    with np.errstate(all="ignore"):
        ref = theirs.solve(sigma=sigma, method="1s", optimization=pyblp.Optimization("return"))
    ours = bd.evaluate(problem, sigma=sigma, config=bd.EstimationConfig(hessian=False))
    assert ours.failed_markets.size == 0
    assert ours.objective == pytest.approx(float(ref.objective), rel=1e-8)
    np.testing.assert_allclose(ours.beta, np.ravel(ref.beta), rtol=1e-8)


def test_negative_weights_estimate_equals_pyblp(nevo_products, pyblp_grid) -> None:
    theirs, frame = pyblp_grid
    problem = _ours(nevo_products, frame, negative_weights=True)
    with np.errstate(all="ignore"):
        ref = theirs.solve(sigma=np.diag([0.5, 0.5, 0.5]), method="1s",
                           optimization=pyblp.Optimization("l-bfgs-b", {"gtol": 1e-8}))
    with warnings.catch_warnings():
        # both tools stop on the Sigma >= 0 bound, where the moments do not move with Sigma
        warnings.simplefilter("ignore", OptimizationWarning)
        warnings.simplefilter("ignore", IdentificationWarning)
        ours = bd.estimate(problem, sigma=[0.5, 0.5, 0.5], config=bd.EstimationConfig(starts=0))
    ref_theta = np.ravel(ref.theta)
    assert ours.failed_markets.size == 0
    if np.all(ref_theta < 1e-8) and np.all(ours.theta < 1e-8):  # on the bound in both
        assert ours.objective == pytest.approx(float(ref.objective), rel=1e-8)
        np.testing.assert_allclose(ours.theta, ref_theta, atol=1e-8)
        np.testing.assert_allclose(ours.beta, np.ravel(ref.beta), rtol=1e-7)
    else:
        np.testing.assert_allclose(ours.theta, ref_theta, rtol=1e-6)
        np.testing.assert_allclose(ours.beta, np.ravel(ref.beta), rtol=1e-6)


def test_same_verdict_as_the_builtin_sparse_grid(nevo_products, pyblp_grid) -> None:
    # where the contraction fails, the user's frame gets the built-in sparse grid's verdict
    # (the same failed markets, no objective, a ConvergenceWarning)
    _, frame = pyblp_grid
    user = _ours(nevo_products, frame, negative_weights=True)
    builtin = _ours(nevo_products, bd.Integration("sparse_grid", 4))
    config = bd.EstimationConfig(hessian=False)
    verdicts = []
    for problem in (user, builtin):
        with pytest.warns(ConvergenceWarning, match="contraction failed"):
            results = bd.evaluate(problem, sigma=[3.0, 10.0, 0.5], config=config)
        assert results.failed_markets.size > 0 and np.isnan(results.objective)
        verdicts.append(set(results.failed_markets.tolist()))
    assert verdicts[0] == verdicts[1]
