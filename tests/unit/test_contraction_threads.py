"""Markets solved on several threads give the same numbers as in sequence.

References: the sequential inner loop on the same blocks (bit for bit: each block is solved by
the same code whichever thread runs it, and per-block sums are added in block order), the
default blocks (to rounding, 1e-13), and simulated truth (contraction_data: shares from a known
delta by an independent per-market loop).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from contraction_data import nevo_tutorial, simulated

from blpdemand.errors import SpecificationError
from blpdemand.solve.contraction import InnerLoop, _block_cap
from blpdemand.solve.fixed_point import FixedPointConfig


@pytest.fixture(scope="module")
def nevo(nevo_products, nevo_agents):
    return nevo_tutorial(nevo_products, nevo_agents)


@pytest.mark.parametrize("compiled", [True, False])
def test_threads_equal_sequence_on_the_same_blocks(nevo, compiled):
    problem, layout, theta = nevo
    threaded = FixedPointConfig(threads=2, compiled=compiled)
    sequential = dataclasses.replace(threaded, threads=1,
                                     block_bytes=_block_cap(problem, threaded))
    a, b = InnerLoop(problem, layout, config=threaded), InnerLoop(problem, layout, config=sequential)
    assert len(a.blocks) >= 2 and len(a.blocks) == len(b.blocks)
    ra, rb = a.solve(theta, jacobian=True), b.solve(theta, jacobian=True)
    assert ra.converged and ra.evaluations == rb.evaluations
    assert np.array_equal(ra.delta, rb.delta) and np.array_equal(ra.jacobian, rb.jacobian)
    v = np.linspace(-1.0, 1.0, problem.N)
    assert np.array_equal(a.gradient(theta, ra.delta, v), b.gradient(theta, rb.delta, v))
    assert np.array_equal(a.shares(theta, ra.delta), b.shares(theta, rb.delta))


def test_threads_match_the_default_blocks_and_the_truth(nevo):
    problem, layout, theta = nevo
    one = InnerLoop(problem, layout).solve(theta, jacobian=True)
    two = InnerLoop(problem, layout, config=FixedPointConfig(threads=2)).solve(theta,
                                                                               jacobian=True)
    assert np.max(np.abs(one.delta - two.delta)) < 1e-13
    assert np.max(np.abs(one.jacobian - two.jacobian)) <= 1e-10 * np.abs(one.jacobian).max()
    problem, layout, theta, truth = simulated(seed=5)
    three = InnerLoop(problem, layout, config=FixedPointConfig(threads=3)).solve(theta)
    assert three.converged and np.max(np.abs(three.delta - truth)) < 1e-11


@pytest.mark.parametrize("threads", [0, -1, 1.5, True, "2"])
def test_threads_must_be_a_positive_integer(threads):
    with pytest.raises(SpecificationError, match="threads"):
        FixedPointConfig(threads=threads)


def test_estimate_with_threads_equals_sequential(nevo):
    # Reference: the same estimation in sequence; the contraction options arrive as a mapping
    # (as from a spec's [estimation.contraction] table). Same optimum to the optimizer's
    # tolerance (theta 1e-6 relative; the blocks differ, so rounding may differ).
    import blpdemand as bd

    problem, _, _ = nevo
    sigma = np.diag([0.3302, 2.4526, 0.0163, 0.2441])
    pi = np.array([[5.4819, 0, 0.2037, 0], [15.8935, -1.2, 0, 2.6342],
                   [-0.2506, 0, 0.0511, 0], [1.2650, 0, -0.8091, 0]])
    base = {"optimizer": "bfgs", "gtol": 1e-6, "hessian": False}
    one = bd.estimate(problem, sigma=sigma, pi=pi, config=bd.EstimationConfig(**base))
    two = bd.estimate(problem, sigma=sigma, pi=pi,
                      config=bd.EstimationConfig(**base, contraction={"threads": 2}))
    assert one.converged and two.converged
    assert two.config.fixed_point.threads == 2
    np.testing.assert_allclose(two.theta, one.theta, rtol=1e-6, atol=1e-8)
    assert abs(two.objective - one.objective) <= 1e-9 * one.objective
