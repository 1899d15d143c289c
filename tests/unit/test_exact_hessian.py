"""The exact Hessian of the GMM objective on the demand side (``DemandObjective.exact_hessian``,
``model.hessian_compiled``).

Reference: central differences of the analytic gradient at two steps, Richardson-extrapolated
(error O(h^4) plus the gradient's noise over h: about 1e-13 / 1e-4 relative), on markets of
unequal sizes with Pi on a demographic, on a correlated Sigma, and on Nevo's cereal data with
product fixed effects absorbed. The formula holds at any theta (beta is concentrated out at
every theta), so the problems are evaluated at their data-generating or published values.
Tolerance 1e-6 of the Hessian's largest element; the second-order term (v' d^2 delta) is shown
to matter at that scale, so that dropping it or flipping its sign fails.
"""

from __future__ import annotations

import numpy as np
import pytest
from contraction_data import nevo_tutorial, simulated

from blpdemand.solve.fixed_point import FixedPointConfig
from blpdemand.solve.gmm import DemandObjective


def _richardson(problem, layout, W, theta: np.ndarray) -> np.ndarray:
    def gradient(at: np.ndarray) -> np.ndarray:
        return DemandObjective(problem, layout, W).evaluate(at, report=False).gradient

    P = theta.size
    H = np.zeros((P, P))
    for k in range(P):
        h = 1e-4 * max(1.0, abs(theta[k]))
        columns = []
        for step in (h, h / 2):
            up, down = theta.copy(), theta.copy()
            up[k] += step
            down[k] -= step
            columns.append((gradient(up) - gradient(down)) / (up[k] - down[k]))
        H[:, k] = (4 * columns[1] - columns[0]) / 3
    return (H + H.T) / 2


def _check(problem, layout, theta, monkeypatch: pytest.MonkeyPatch) -> None:
    W = np.eye(problem.ZD.values.shape[1])
    objective = DemandObjective(problem, layout, W)
    exact = objective.exact_hessian(theta)
    assert exact is not None
    reference = _richardson(problem, layout, W, theta)
    scale = np.max(np.abs(reference))
    assert np.max(np.abs(exact - reference)) <= 1e-6 * scale
    # without its second-order term the Hessian is the Gauss-Newton one, visibly off
    monkeypatch.setattr(objective.loop, "second_order",
                        lambda *args: np.zeros((theta.size, theta.size)))
    objective.last = None
    gauss_newton = objective.exact_hessian(theta)
    assert gauss_newton is not None
    assert np.max(np.abs(gauss_newton - reference)) > 1e-3 * scale


def test_exact_hessian_on_unequal_markets_with_demographics(monkeypatch) -> None:
    problem, layout, theta, _ = simulated(seed=4, sizes=(3, 7, 5, 9, 2, 6, 8, 4), agents=40)
    _check(problem, layout, theta, monkeypatch)


def test_exact_hessian_with_a_correlated_sigma(monkeypatch) -> None:
    problem, _, _, _ = simulated(seed=5, sizes=(6, 4, 8, 5, 7), agents=35)
    layout, theta = problem.layout(np.array([[0.8, 0.0], [0.3, 0.5]]), np.array([[0.3], [-0.2]]))
    _check(problem, layout, theta, monkeypatch)


def test_exact_hessian_on_nevo_with_absorbed_effects(nevo_products, nevo_agents,
                                                    monkeypatch) -> None:
    problem, layout, theta = nevo_tutorial(nevo_products, nevo_agents)
    _check(problem, layout, theta, monkeypatch)


def test_without_the_compiled_kernels_the_hessian_is_differenced_and_agrees() -> None:
    # The numpy inner loop has no second-order kernel: exact_hessian declines and hessian()
    # differences the gradient (forward, step 1e-6: about 1e-6 relative), which agrees with
    # the exact one to its own accuracy.
    problem, layout, theta, _ = simulated(seed=4, sizes=(3, 7, 5, 9, 2, 6, 8, 4), agents=40)
    W = np.eye(problem.ZD.values.shape[1])
    numpy_loop = DemandObjective(problem, layout, W, contraction=FixedPointConfig(compiled=False))
    assert numpy_loop.exact_hessian(theta) is None
    differenced = numpy_loop.hessian(theta)
    exact = DemandObjective(problem, layout, W).hessian(theta)
    assert np.max(np.abs(differenced - exact)) <= 1e-4 * np.max(np.abs(exact))


def test_market_shards_give_the_one_process_hessian() -> None:
    # Over shards the same formula from the shards' parts (their v' d^2 delta and
    # Z~' M d delta / d theta, summed): the same Hessian up to the order of the sums.
    from blpdemand.solve.sharded_gmm import ShardPool

    problem, layout, theta, _ = simulated(seed=4, sizes=(3, 7, 5, 9, 2, 6, 8, 4), agents=40)
    W = np.eye(problem.ZD.values.shape[1])
    one = DemandObjective(problem, layout, W).hessian(theta)
    with ShardPool(problem, 3) as pool:
        sharded = pool.objective(problem, layout, W).hessian(theta)
    assert np.max(np.abs(sharded - one)) <= 1e-9 * np.max(np.abs(one))
