"""Joint demand-supply results: gamma in every view (names, to_frame, summary, JSON), the
conduct recorded, and save/load rebuilding the same estimates from the data."""

from __future__ import annotations

import numpy as np
import pytest

import blpdemand as bd
from blpdemand.results.io import save_results


def _results() -> tuple[bd.BLPResults, object, object]:
    sim = bd.simulate(markets=6, products=4, firms=2, sigma={"x1": 1.0}, draws=30,
                      pricing="bertrand", rng=2)
    agents = sim.agents.copy()
    agents["one"] = 1.0
    problem = bd.Problem(sim.products, linear="1 + x1 + x2", nonlinear="0 + x1 + prices",
                         demographics="0 + one", agents=agents, instruments=["w1", "w2"],
                         supply=sim.supply, supply_instruments=["x1"], costs="log",
                         conduct={(0, 1): 0.5}, costs_bounds=(0.01, None))
    results = bd.evaluate(problem, sigma=np.diag([1.0, 0.0]), pi=np.c_[[0.0, -1.0]],
                          config=bd.EstimationConfig(hessian=False))
    return results, sim.products, agents


def test_gamma_and_conduct_appear_in_every_view(tmp_path) -> None:
    results, products, agents = _results()
    assert results.conduct == "bertrand"
    assert results.gamma.shape == (3,) and results.gamma_se.shape == (3,)
    frame = results.to_frame()
    assert list(frame.index[-3:]) == ["gamma[1]", "gamma[w1]", "gamma[w2]"]
    np.testing.assert_array_equal(frame["estimate"].to_numpy()[-3:], results.gamma)
    notes = " ".join(results.summary().notes)
    assert "conduct bertrand with partial ownership kappa" in notes and "log" in notes
    # Hansen's J counts both blocks: M = (3 exogenous + 2) + (3 + 1), K = 3 + 3 + 2
    assert results.hansen_j.df == 9 - 8
    saved = bd.load_results(save_results(results, tmp_path / "r.json"))
    assert list(saved.parameters.loc[saved.parameters["group"] == "gamma"].index) == [
        "gamma[1]", "gamma[w1]", "gamma[w2]"]
    rebuilt = bd.load_results(tmp_path / "r.json", products=products, agents=agents)
    np.testing.assert_allclose(rebuilt.gamma, results.gamma, rtol=1e-12)
    assert rebuilt.problem.supply is not None and rebuilt.problem.supply.kappa == {(0, 1): 0.5}
    assert rebuilt.problem.supply.bounds == (0.01, None)


def test_with_covariance_uses_the_joint_stack() -> None:
    # the same kind again gives the same covariance (the stack, both residuals); another kind
    # gives finite standard errors for gamma too
    results, _, _ = _results()
    np.testing.assert_allclose(results.with_covariance("robust").covariance,
                               results.covariance, rtol=1e-12)
    assert np.all(np.isfinite(results.with_covariance("unadjusted").gamma_se))


def test_post_estimation_uses_the_demand_block_and_shards_refuse_supply() -> None:
    # the bootstrap draws (theta, beta) from their marginal, the (P + K1) block of the joint
    # covariance; market shards do not carry the supply side and say so
    from blpdemand.errors import SpecificationError
    from blpdemand.solve.shards import split_markets

    results, _, _ = _results()
    draws = results.bootstrap(draws=5, rng=1)
    assert draws is not None
    with pytest.raises(SpecificationError, match="supply side"):
        split_markets(results.problem, 2)


def test_optimal_instruments_refuse_a_supply_side_by_name() -> None:
    from blpdemand.errors import SpecificationError

    results, _, _ = _results()
    with pytest.raises(SpecificationError, match="supply"):
        bd.optimal_instruments(results)


@pytest.mark.parametrize("conduct", ["monopoly", "perfect"])
def test_post_estimation_markups_follow_the_estimated_conduct(conduct: str) -> None:
    # results.markups() / costs() default to the conduct of the supply side: the same c = p - eta
    # as the estimation's marginal costs (rel 1e-12: the same computation); perfect: eta = 0
    results, products, agents = _results()
    problem = bd.Problem(products, linear="1 + x1 + x2", nonlinear="0 + x1 + prices",
                         demographics="0 + one", agents=agents, instruments=["w1", "w2"],
                         supply="1 + w1 + w2", supply_instruments=["x1"], conduct=conduct)
    other = bd.evaluate(problem, sigma=np.diag([1.0, 0.0]), pi=np.c_[[0.0, -1.0]],
                        config=bd.EstimationConfig(hessian=False))
    assert other.marginal_costs is not None
    np.testing.assert_allclose(other.costs(), other.marginal_costs, rtol=1e-12)
    if conduct == "perfect":
        np.testing.assert_array_equal(other.markups(), 0.0)
    # the kappa estimate's own markups, and an explicit firm_ids still overrides the conduct
    assert results.marginal_costs is not None
    np.testing.assert_allclose(results.costs(), results.marginal_costs, rtol=1e-12)
    assert not np.allclose(results.costs(firm_ids=products["firm_ids"]), results.marginal_costs)
