"""The compiled per-market Anderson kernel (solve.anderson_compiled) against independent references.

References: shares built from a known delta by a per-market log-sum-exp loop written here
(simulation with known truth), including utilities large enough to trigger the overflow shift
(exp(mu - m_i) with an outside term exp(-m_i)); the numpy block Anderson (the reference
implementation) on the Nevo data; and the kernel's contract on padded slots, warm starts and
evaluation counts.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from contraction_data import nevo_tutorial, simulated

from blpdemand import Problem
from blpdemand._types import Status
from blpdemand.solve.anderson_compiled import solve_markets
from blpdemand.solve.block_inversion import block_method, compiled_available
from blpdemand.solve.fixed_point import FixedPointConfig
from blpdemand.solve.inversion import solve_delta


def _large_utilities(seed: int = 4) -> tuple[Problem, np.ndarray, np.ndarray]:
    """Markets where mu reaches about 100 (the shift applies) with shares from a known delta."""
    rng = np.random.default_rng(seed)
    rows, agent_rows, truth = [], [], []
    sigma = 25.0
    for t, J in enumerate((4, 6, 5)):
        I = 50 + t
        prices = rng.uniform(1.0, 2.0, size=J)
        delta = rng.normal(-3.0, 1.0, size=J)
        nodes = rng.normal(size=I)
        weights = np.full(I, 1.0 / I)
        u = delta[:, None] + sigma * prices[:, None] * nodes[None, :]  # (J, I)
        top = np.maximum(u.max(axis=0), 0.0)  # log-sum-exp with the outside good's 0
        p = np.exp(u - top) / (np.exp(-top) + np.exp(u - top).sum(axis=0))
        truth.append(delta)
        for j in range(J):
            rows.append({"market_ids": t, "shares": p[j] @ weights, "prices": prices[j],
                         "z": rng.normal()})
        for i in range(I):
            agent_rows.append({"market_ids": t, "weights": weights[i], "nodes0": nodes[i]})
    problem = Problem(pd.DataFrame(rows), linear="prices", nonlinear="0 + prices",
                      agents=pd.DataFrame(agent_rows), instruments=["z"])
    _, theta = problem.layout(np.array([[sigma]]))
    return problem, theta, problem.products.sort(np.concatenate(truth))


def test_kernel_is_importable():
    # numba is a dependency: the default path must be the compiled one
    assert compiled_available()
    assert block_method(FixedPointConfig(), 10).method == "anderson"
    assert block_method(FixedPointConfig(compiled=False), 10).method == "squarem"
    assert block_method(FixedPointConfig(compiled=False), 1 << 20).method == "anderson"


def test_shifted_utilities_recover_truth():
    # Reference: the delta that generated the shares (log-sum-exp loop above); 1e-10 for both
    # solvers. (They are not compared with each other more tightly: numpy's SQUAREM stops on a
    # step below 1e-14 where outside shares near 0 make the map contract slowly, about 1e-12
    # from the truth; the compiled Anderson kernel ends about 1e-14 from it.)
    problem, theta, truth = _large_utilities()
    layout, _ = problem.layout(np.array([[25.0]]))
    compiled = solve_delta(problem, layout, theta)
    numpy = solve_delta(problem, layout, theta, config=FixedPointConfig(compiled=False))
    assert compiled.converged and numpy.converged
    assert np.max(np.abs(compiled.delta - truth)) < 1e-10
    assert np.max(np.abs(numpy.delta - truth)) < 1e-10


def test_same_delta_as_numpy_anderson_on_nevo(nevo_products, nevo_agents):
    # Reference: the numpy block Anderson at PyBLP's tutorial estimates; both solve to 1e-14
    # on the step, so the two deltas agree to 1e-12 (the contraction's modulus < 1).
    problem, layout, theta = nevo_tutorial(nevo_products, nevo_agents)
    compiled = solve_delta(problem, layout, theta, config=FixedPointConfig(method="anderson"))
    numpy = solve_delta(problem, layout, theta,
                        config=FixedPointConfig(method="anderson", compiled=False))
    assert compiled.converged and numpy.converged
    assert np.max(np.abs(compiled.delta - numpy.delta)) < 1e-12
    assert compiled.max_change < 1e-14


def test_kernel_contract_on_a_padded_block():
    # Reference: simulated truth (contraction_data: independent per-market loop). Padded
    # product slots come back as given; a market started at its solution takes one evaluation
    # and keeps its delta; a one-evaluation budget reports MAX_EVALUATIONS for the others.
    problem, layout, theta, truth = simulated()
    from blpdemand.solve import contraction

    (data,) = contraction._prepare(problem, layout, FixedPointConfig().block_bytes)
    utility = contraction._block_utility(data, contraction._coefficient_map(layout, theta))
    x0 = data.block.gather_products(problem.products.logit_delta)
    pad = data.block.product_pad
    assert pad is not None
    exact = data.block.gather_products(truth)
    x0[0] = exact[0]
    x0[pad] = 7.0
    args = (utility.exp_mu, utility.outside, utility.weights, data.shares,
            data.product_sizes, data.agent_sizes)
    result = solve_markets(*args, x0, FixedPointConfig())
    assert np.all(result.codes == 0)
    assert np.all(result.x[pad] == 7.0)
    assert np.max(np.abs(result.x[~pad] - exact[~pad])) < 1e-11
    assert result.evaluations[0] == 1 and np.all(result.evaluations[1:] > 1)
    assert np.all(result.change < 1e-14)
    short = solve_markets(*args, x0, FixedPointConfig(max_evaluations=1))
    assert short.codes[0] == 0 and np.all(short.codes[1:] == 1)
    assert Status.MAX_EVALUATIONS is short.status
    assert np.all(np.isfinite(short.x))


@pytest.mark.parametrize("memory", [1, 2, 8])
def test_any_memory_converges(memory):
    # Reference: simulated truth; Anderson's memory changes the path, never the answer.
    problem, layout, theta, truth = simulated(seed=2)
    result = solve_delta(problem, layout, theta,
                         config=FixedPointConfig(method="anderson", memory=memory))
    assert result.converged and np.max(np.abs(result.delta - truth)) < 1e-11
