"""Market shards: Q(theta) and dQ/dtheta summed over shards equal the one-process objective.

Reference: :class:`blpdemand.solve.gmm.DemandObjective` on the whole problem with the same W
(inv(Z'Z/N)), run in the same test. The shards solve the same per-market contractions from the
same starts; only the order of the floating-point sums differs (seen: 1e-14 relative in Q,
4e-12 in the gradient), so Q and dQ/dtheta are compared to 1e-10 relative, and the minimizers
(l-bfgs-b from the same start to gtol 1e-8; Q = 0.19 with curvature 3.5 at the minimum, so
theta is located to about 5e-10) to 1e-8.
"""

from __future__ import annotations

import numpy as np
import pytest

import blpdemand as bd
from blpdemand.errors import ConvergenceError, SpecificationError
from blpdemand.model.problem import Problem
from blpdemand.solve.covariance import moment_covariance, weighting_matrix
from blpdemand.solve.gmm import DemandObjective
from blpdemand.solve.optimizer import minimize
from blpdemand.solve.shards import ShardedObjective, release_token, split_markets

THETAS = (0.3, 0.8, 1.5)


def _demand_covariance(xi: np.ndarray, Z: np.ndarray, kind: str = "robust") -> np.ndarray:
    """S of the demand moments z_j xi_j, centered (as the estimator forms it)."""
    return moment_covariance(Z * xi[:, None], kind=kind,  # type: ignore[arg-type]
                             residuals=xi, instruments=Z, center=True)


def _problem(absorb: str | None = None) -> Problem:
    sim = bd.simulate(markets=40, products=6, sigma={"x1": 1.0}, draws=50, rng=3)
    frame = sim.products.copy()
    extra = []
    for column in ("x1", "x2"):  # BLP rival sums: the excluded instruments
        frame[f"rival_{column}"] = (frame.groupby("market_ids")[column].transform("sum")
                                    - frame[column])
        if absorb:  # rival sums are collinear with market effects: differentiation IVs
            frame[f"far_{column}"] = (frame.groupby("market_ids")[column].transform(
                lambda c: ((c.to_numpy()[:, None] - c.to_numpy()[None, :]) ** 2).sum(axis=1)))
            extra.append(f"far_{column}")
    instruments = [*sim.instruments, *(extra or ["rival_x1", "rival_x2"])]
    return bd.Problem(frame, linear=sim.linear, nonlinear=sim.nonlinear, agents=sim.agents,
                      instruments=instruments, absorb=absorb)


@pytest.fixture(scope="module")
def problem() -> Problem:
    return _problem()


def _W(problem: Problem) -> np.ndarray:
    Z = problem.ZD_tilde
    return np.asarray(np.linalg.inv(Z.T @ Z / problem.N))


def _same_objective(problem: Problem, sharded: ShardedObjective) -> None:
    layout, _ = problem.layout(sigma=[0.5])
    full = DemandObjective(problem, layout, sharded.W)
    for theta in THETAS:
        one = full.evaluate(np.array([theta]), adjoint=True)
        Q_s, grad_s = sharded(np.array([theta]))
        assert Q_s == pytest.approx(one.objective, rel=1e-10)
        np.testing.assert_allclose(grad_s, one.gradient, rtol=1e-10,
                                   atol=1e-10 * np.abs(one.gradient).max())
        # each market's contraction started where the one-process run started it: shards
        # keep their warm start between evaluations (from the logit delta it takes more)
        assert sharded.evaluate(np.array([theta])).contraction_evaluations == (
            one.contraction_evaluations)
        np.testing.assert_allclose(sharded.evaluate(np.array([theta])).beta, one.beta,
                                   rtol=1e-10)


def _minimum(objective: object) -> np.ndarray:
    result = minimize(objective, np.array([0.5]), method="l-bfgs-b",  # type: ignore[arg-type]
                      bounds=[(0.0, np.inf)], gtol=1e-8, max_iterations=200)
    assert result.converged, result.message
    return result.theta


def test_split_markets_keeps_rows_columns_and_agents_of_each_market(problem: Problem) -> None:
    for count in (2, 4):
        shards = split_markets(problem, count)
        assert len(shards) == count and all(s.T == 40 // count for s in shards)
        assert np.array_equal(np.concatenate([s.products.markets.ids for s in shards]),
                              problem.products.markets.ids)
        for name in ("X1_tilde", "ZD_tilde"):
            assert np.array_equal(np.vstack([getattr(s, name) for s in shards]),
                                  getattr(problem, name))
        assert all(s.X1.names == problem.X1.names and s.ZD.names == problem.ZD.names
                   for s in shards)
        assert problem.agents is not None
        assert np.array_equal(np.concatenate([s.agents.weights for s in shards if s.agents]),
                              problem.agents.weights)
        assert np.array_equal(np.vstack([s.agents.nodes for s in shards if s.agents]),
                              problem.agents.nodes)


@pytest.mark.parametrize("count", [2, 4])
def test_sharded_objective_and_gradient_equal_the_one_process_objective(
        problem: Problem, count: int) -> None:
    layout, _ = problem.layout(sigma=[0.5])
    _same_objective(problem, ShardedObjective(split_markets(problem, count), layout,
                                              _W(problem), workers=2))


@pytest.mark.parametrize("count", [2, 4])
def test_minimizing_the_sharded_objective_reaches_the_one_process_minimum(
        problem: Problem, count: int) -> None:
    layout, _ = problem.layout(sigma=[0.5])
    W = _W(problem)
    theta = _minimum(DemandObjective(problem, layout, W))
    sharded = _minimum(ShardedObjective(split_markets(problem, count), layout, W))
    np.testing.assert_allclose(sharded, theta, rtol=1e-8)


def test_a_failed_contraction_gives_the_one_process_penalty_and_names_the_markets(
        problem: Problem) -> None:
    layout, _ = problem.layout(sigma=[0.5])
    full = DemandObjective(problem, layout, _W(problem))
    sharded = ShardedObjective(split_markets(problem, 4), layout, _W(problem))
    for theta in (0.8, 1e4):  # shares underflow at sigma = 1e4: no delta solves the market
        one = full.evaluate(np.array([theta]), adjoint=True)
        evaluation = sharded.evaluate(np.array([theta]))
        assert evaluation.objective == pytest.approx(one.objective, rel=1e-10)
        assert np.array_equal(evaluation.failed_markets, one.failed_markets)
    assert evaluation.failed and evaluation.objective == 1e10
    assert np.array_equal(evaluation.gradient, [0.0])


def test_the_moment_covariance_and_a_second_gmm_step_equal_the_one_process_ones(
        problem: Problem) -> None:
    layout, _ = problem.layout(sigma=[0.5])
    W = _W(problem)
    one = DemandObjective(problem, layout, W).evaluate(np.array([0.9]), adjoint=True)
    sharded = ShardedObjective(split_markets(problem, 4), layout, W)
    for kind in ("robust", "unadjusted"):
        S = _demand_covariance(one.xi, problem.ZD_tilde, kind=kind)
        np.testing.assert_allclose(sharded.moment_covariance(np.array([0.9]), kind=kind), S,
                                   rtol=1e-10, atol=1e-10 * np.abs(S).max())
    W2 = weighting_matrix(_demand_covariance(one.xi, problem.ZD_tilde))
    second = ShardedObjective(split_markets(problem, 4), layout,
                              weighting_matrix(sharded.moment_covariance(np.array([0.9]))))
    np.testing.assert_allclose(second.W, W2, rtol=1e-9)
    _same_objective(problem, second)  # the second step's objective, with the shards' W
    with pytest.raises(ConvergenceError, match="xi and S are not defined"):
        sharded.moment_covariance(np.array([1e4]))


def test_the_default_weighting_matrix_is_the_2sls_one_gathered_from_the_shards(
        problem: Problem) -> None:
    layout, _ = problem.layout(sigma=[0.5])
    sharded = ShardedObjective(split_markets(problem, 4), layout)
    np.testing.assert_allclose(sharded.W, _W(problem), rtol=1e-10)
    assert sharded.N == problem.N


def test_effects_within_markets_shard_and_effects_across_markets_are_refused() -> None:
    within = _problem("C(market_ids)")
    layout, _ = within.layout(sigma=[0.5])
    _same_objective(within, ShardedObjective(split_markets(within, 2), layout, _W(within)))
    across = _problem("C(product_ids)")
    with pytest.raises(SpecificationError, match=r"C\(product_ids\).*more than one shard"):
        split_markets(across, 2)
    assert len(split_markets(across, 1)) == 1


def test_bad_shard_counts_and_executors_are_refused(problem: Problem) -> None:
    layout, _ = problem.layout(sigma=[0.5])
    for count in (0, 41, 2.0, True):
        with pytest.raises(SpecificationError, match="shards="):
            split_markets(problem, count)  # type: ignore[arg-type]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool, pytest.raises(SpecificationError, match="dask.distributed.Client"):
        ShardedObjective(split_markets(problem, 2), layout, executor=pool)


def test_shards_on_a_dask_cluster_of_two_processes_equal_the_one_process_objective(
        problem: Problem) -> None:
    distributed = pytest.importorskip("distributed")
    layout, _ = problem.layout(sigma=[0.5])
    W = _W(problem)
    theta = _minimum(DemandObjective(problem, layout, W))
    # the scheduler's HTTP server takes port 8787 when dashboard_address is None, and fails
    # with a warning when another cluster on this machine holds it: a free port instead
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address="127.0.0.1:0") as cluster, \
            distributed.Client(cluster) as client:
        with ShardedObjective(split_markets(problem, 2), layout, W, executor=client) as sharded:
            _same_objective(problem, sharded)
            # each worker holds one shard's inner loop, kept between evaluations
            held = client.run(release_token, "no such token")
            assert sorted(held.values()) == [0, 0]
            token = sharded.token
        # shards already on the workers (futures) are used where they are
        futures = client.scatter(split_markets(problem, 2), hash=False)
        with ShardedObjective(futures, layout, W, executor=client) as sharded:
            np.testing.assert_allclose(_minimum(sharded), theta, rtol=1e-8)
        # closing released the workers' state
        assert sorted(client.run(release_token, token).values()) == [0, 0]
