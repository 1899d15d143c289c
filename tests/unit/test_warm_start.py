"""Warm starts predicted from earlier solutions (solve.warm_start).

References: closed forms (for delta linear in theta the secant and tangent predictions are
exact), and the inner loop solved from the logit delta at the same theta (the predicted start
changes the number of share evaluations, never the solution beyond the 1e-14 tolerance).
"""

from __future__ import annotations

import numpy as np
import pytest
from contraction_data import nevo_tutorial, simulated

from blpdemand.solve.contraction import InnerLoop
from blpdemand.solve.warm_start import DeltaPredictor

RNG = np.random.default_rng(3)
A, B = RNG.standard_normal(50), RNG.standard_normal((50, 3))


def linear(theta: np.ndarray) -> np.ndarray:
    return A + B @ theta


def test_nothing_recorded_predicts_nothing():
    assert DeltaPredictor(3).predict(np.zeros(3)) is None


def test_secant_is_exact_for_a_linear_delta():
    predictor = DeltaPredictor(3)
    thetas = [np.array([0.1, 0.2, 0.3]), np.array([0.3, 0.1, 0.2]), np.array([0.2, 0.5, 0.1]),
              np.array([0.4, 0.4, 0.4])]
    for theta in thetas:
        predictor.record(theta, linear(theta))
    target = np.array([0.35, 0.3, 0.25])  # inside the steps' reach
    np.testing.assert_allclose(predictor.predict(target), linear(target), rtol=0, atol=1e-12)
    # with one solution only, the last delta itself
    single = DeltaPredictor(3)
    single.record(thetas[0], linear(thetas[0]))
    np.testing.assert_array_equal(single.predict(target), linear(thetas[0]))


def test_far_extrapolation_falls_back_to_the_last_solution():
    predictor = DeltaPredictor(1)
    predictor.record(np.array([0.0]), linear(np.zeros(3))[:50])
    predictor.record(np.array([1e-3]), A + 1.0)
    np.testing.assert_array_equal(predictor.predict(np.array([1.0])), A + 1.0)  # c = -999


def test_tangent_is_exact_for_a_linear_delta_near_its_point():
    predictor = DeltaPredictor(3)
    base = np.array([0.1, 0.2, 0.3])
    predictor.record(base - 0.05, linear(base - 0.05))
    predictor.record(base, linear(base), B)
    step = base + np.array([1e-6, 0.0, 0.0])
    predictor.record(step, linear(step))  # a Hessian column: the next one is nearer the base
    target = base + np.array([0.0, 1e-6, 0.0])
    expected = linear(target)  # exact in exact arithmetic: a few ulps of delta's scale
    np.testing.assert_allclose(predictor.predict(target), expected, rtol=0,
                               atol=100 * np.finfo(float).eps * np.abs(expected).max())


@pytest.fixture(scope="module")
def nevo(nevo_products, nevo_agents):
    return nevo_tutorial(nevo_products, nevo_agents)


def test_predicted_starts_give_the_same_delta_in_fewer_evaluations(nevo):
    problem, layout, theta = nevo
    warm = InnerLoop(problem, layout)
    path = [theta * (1 + 0.01 * k) for k in range(5)]
    for point in path[:-1]:
        assert warm.solve(point).converged
    before = warm._predictor.predict(path[-1])
    last = warm._last_delta
    result = warm.solve(path[-1])
    cold = InnerLoop(problem, layout).solve(path[-1])
    np.testing.assert_allclose(result.delta, cold.delta, rtol=0, atol=1e-12)
    # the prediction is nearer the solution than the last delta, and it takes fewer evaluations
    assert before is not None and last is not None
    assert np.max(np.abs(before - cold.delta)) < 0.1 * np.max(np.abs(last - cold.delta))
    from_last = InnerLoop(problem, layout).solve(path[-1], delta0=last)
    assert result.evaluations < from_last.evaluations


@pytest.mark.parametrize("padded", [False, True])
def test_exp_mu_memory_is_reused_across_thetas_with_the_same_numbers(nevo, padded):
    # Reference: a fresh inner loop at the same theta (bit for bit: every cell of the reused
    # memory is overwritten, padded slots included), and the memory itself (the old theta's
    # exp(mu) holds the new one)
    problem, layout, theta = simulated()[:3] if padded else nevo
    loop = InnerLoop(problem, layout)
    assert loop.caches_exp_mu
    first = loop.solve(theta)
    memory = loop._utilities[0].exp_mu
    assert first.converged
    memory[...] = np.nan  # whatever the old theta left there must be overwritten
    other = theta * 1.05
    again = loop.solve(other, delta0=problem.products.logit_delta)
    assert loop._utilities[0].exp_mu is memory
    assert not padded or loop.blocks[0].block.product_pad is not None
    fresh = InnerLoop(problem, layout).solve(other, delta0=problem.products.logit_delta)
    np.testing.assert_array_equal(again.delta, fresh.delta)
    v = np.linspace(-1.0, 1.0, problem.N)
    fresh_loop = InnerLoop(problem, layout)
    fresh_loop.solve(other, delta0=problem.products.logit_delta)
    np.testing.assert_array_equal(loop.gradient(other, again.delta, v),
                                  fresh_loop.gradient(other, fresh.delta, v))
