"""Agent data built from integration rules: pairing with demographics, checks, end to end.

References: hand computations of the pairing rules; shares recomputed directly from the rule's
nodes (numpy, no blpdemand kernels); a simulation with known delta recovered by the reference
contraction (Berry 1994).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import blpdemand as bd
from blpdemand.data.agents import load_agents
from blpdemand.data.markets import sort_by_market
from blpdemand.errors import DataError, IntegrationWarning, SpecificationError
from blpdemand.integration import Integration, build_agent_frame, draws_stability

DEMOGRAPHICS = pd.DataFrame({"market_ids": ["b", "a", "a", "b", "a", "c", "c", "c"],
                             "income": [10.0, 1.0, 2.0, 20.0, 3.0, 100.0, 200.0, 300.0]})


# a market's weights sum to 1 up to the rounding of a sum of I terms: I eps (I <= a few hundred)
SUM_TOLERANCE = 512 * np.finfo(np.float64).eps

def per_market_sums(frame: pd.DataFrame) -> np.ndarray:
    return frame.groupby("market_ids")["weights"].sum().to_numpy()


def test_frame_without_demographics() -> None:
    # T = 2 markets (ids given per product, unsorted, repeated), I = 8 Sobol nodes in K = 3:
    # same nodes in both markets, weights 1/8, columns in agent format
    rule = Integration("sobol", 8, rng=0)
    frame = build_agent_frame(rule, ["z", "y", "z"], dimensions=3)
    assert list(frame.columns) == ["market_ids", "weights", "nodes0", "nodes1", "nodes2"]
    assert frame["market_ids"].tolist() == ["y"] * 8 + ["z"] * 8
    np.testing.assert_array_equal(frame.iloc[:8, 2:].to_numpy(), frame.iloc[8:, 2:].to_numpy())
    np.testing.assert_array_equal(frame.iloc[:8, 2:].to_numpy(), rule.nodes_weights(3)[0])
    np.testing.assert_allclose(per_market_sums(frame), 1.0, rtol=0, atol=SUM_TOLERANCE)


def test_cross_pairing_is_the_product_of_rule_and_sample() -> None:
    # 3-point Gauss-Hermite in 1 dimension x R_t demographic rows: I R_t agents with weights
    # w_i / R_t (hand computation); 'auto' means 'cross' for quadrature rules
    rule = Integration("product", 3, demographics_data=DEMOGRAPHICS)
    frame = rule.agent_frame(["a", "b", "c"], dimensions=1)
    x, w = rule.nodes_weights(1)
    market_a = frame[frame.market_ids == "a"]
    assert len(market_a) == 9 and len(frame) == 9 + 6 + 9
    np.testing.assert_allclose(market_a["weights"], np.repeat(w / 3, 3), rtol=1e-15)
    np.testing.assert_array_equal(market_a["nodes0"], np.repeat(x[:, 0], 3))
    assert market_a["income"].tolist() == [1.0, 2.0, 3.0] * 3
    np.testing.assert_allclose(per_market_sums(frame), 1.0, rtol=0, atol=SUM_TOLERANCE)
    # the exact product: E[nu^2 * income] = 1 * mean income in each market
    by_market = (frame.weights * frame.nodes0**2 * frame.income).groupby(frame.market_ids).sum()
    np.testing.assert_allclose(by_market.to_numpy(), [2.0, 15.0, 200.0], rtol=1e-14)


def test_census_weights_make_a_weighted_empirical_distribution() -> None:
    # census weights c = (1, 2, 1) on market a's incomes (1, 2, 3): weighted mean income 2,
    # weighted mean income^2 = (1 + 8 + 9) / 4 = 4.5 (hand computation).
    # cross: exact, E[nu^2 income^2] = 4.5 to 1e-14; resample (I = 20,000 Sobol nodes): row
    # frequencies within 0.01 of (1/4, 1/2, 1/4) (binomial sd 0.0035)
    census = DEMOGRAPHICS.assign(weights=[1.0, 1.0, 2.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    cross = Integration("product", 3, demographics_data=census).agent_frame(["a"], dimensions=1)
    assert "weights" in cross.columns and len(cross) == 9
    assert abs(cross.weights.sum() - 1) < 1e-15
    assert abs((cross.weights * cross.nodes0**2 * cross.income**2).sum() - 4.5) < 1e-14
    drawn = Integration("sobol", 20_000, rng=3, demographics_data=census).agent_frame(
        ["a"], dimensions=1)
    frequencies = drawn.income.value_counts(normalize=True).sort_index().to_numpy()
    np.testing.assert_allclose(frequencies, [0.25, 0.5, 0.25], atol=0.01)


def test_pair_and_resample_pairings() -> None:
    # pair: node i with the market's row i (rows past I unused); resample: rows drawn from the
    # market's own rows, reproducible from the seed; weights stay 1/I
    pair = Integration("halton", 2, rng=4, demographics_data=DEMOGRAPHICS, pairing="pair")
    frame = pair.agent_frame(["a", "b", "c"], dimensions=2)
    assert frame["income"].tolist() == [1.0, 2.0, 10.0, 20.0, 100.0, 200.0]
    resample = Integration("halton", 5, rng=4, demographics_data=DEMOGRAPHICS)  # auto: resample
    first = resample.agent_frame(["a", "b", "c"], dimensions=2)
    pd.testing.assert_frame_equal(first, resample.agent_frame(["a", "b", "c"], dimensions=2))
    own = DEMOGRAPHICS.groupby("market_ids")["income"].apply(set)
    for market, rows in first.groupby("market_ids"):
        assert set(rows["income"]) <= own[market] and len(rows) == 5
    np.testing.assert_allclose(per_market_sums(first), 1.0, rtol=0, atol=SUM_TOLERANCE)
    with pytest.raises(DataError, match="market 'b' has 2 rows and 3 nodes"):
        Integration("sobol", 3, rng=0, demographics_data=DEMOGRAPHICS,
                    pairing="pair").agent_frame(["a", "b"], dimensions=1)


def test_demographic_checks_name_the_culprit() -> None:
    with pytest.raises(DataError, match=r"no rows for market\(s\) \['d'\]"):
        Integration("sobol", 4, rng=0, demographics_data=DEMOGRAPHICS).agent_frame(
            ["a", "d"], dimensions=1)
    clash = DEMOGRAPHICS.assign(nodes0=1.0)
    with pytest.raises(SpecificationError, match="'nodes0'"):
        Integration("sobol", 4, rng=0, demographics_data=clash).agent_frame(["a"], dimensions=1)
    negative = DEMOGRAPHICS.assign(weights=[1.0, 1, 1, 1, 1, 1, -1, 1])
    with pytest.raises(DataError, match="must be positive; found -1.0 in market 'c'"):
        Integration("sobol", 4, rng=0, demographics_data=negative).agent_frame(
            ["c"], dimensions=1)
    with pytest.raises(SpecificationError, match="pairing='pair' cannot use"):
        Integration("sobol", 2, rng=0, demographics_data=DEMOGRAPHICS.assign(weights=1.0),
                    pairing="pair").agent_frame(["a"], dimensions=1)
    with pytest.raises(SpecificationError, match="market_ids"):
        Integration("sobol", 4, demographics_data=DEMOGRAPHICS.drop(columns="market_ids"))
    markets = sort_by_market(pd.DataFrame({"market_ids": ["a", "b"]}), "market_ids")[1]
    with pytest.raises(SpecificationError, match="demographics_data"):
        Integration("sobol", 4, rng=0).build_agents(markets, dimensions=1, demographics="income")


def test_load_agents_weight_checks(blp_agents: pd.DataFrame) -> None:
    # BLP (1995) agent weights sum to 0.1540704 in each of the 20 markets (computed from the
    # file): kept as given, with an IntegrationWarning naming the markets
    markets = sort_by_market(blp_agents, "market_ids")[1]
    with pytest.warns(IntegrationWarning, match=r"20 of 20 market\(s\).*1971: 0.15407"):
        agents = load_agents(blp_agents, markets, demographics="income")
    np.testing.assert_allclose(agents.markets.segment_sum(agents.weights), 0.1540704, rtol=1e-6)
    # negative weights: rejected from a frame unless the rule allows them (sparse grids)
    frame = Integration("sparse_grid", 3).agent_frame(["a", "b"], dimensions=2)
    index = sort_by_market(frame, "market_ids")[1]
    with pytest.raises(DataError, match="must be positive.*sparse_grid"):
        load_agents(frame, index)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        allowed = load_agents(frame, index, allow_negative_weights=True)
    assert allowed.negative_weights and allowed.I == 26
    zero_sum = pd.DataFrame({"market_ids": ["a", "a"], "weights": [0.5, -0.5], "nodes0": [0, 1.0]})
    with pytest.raises(DataError, match="market 'a' sum to 0"):
        load_agents(zero_sum, sort_by_market(zero_sum, "market_ids")[1], allow_negative_weights=True)


def simulated_products(rng: int, T: int = 12, J: int = 4) -> pd.DataFrame:
    generator = np.random.default_rng(rng)
    frame = pd.DataFrame({
        "market_ids": np.repeat(np.arange(T), J), "product_ids": np.tile(np.arange(J), T),
        "x": generator.normal(size=T * J), "z": generator.normal(size=T * J)})
    frame["prices"] = 1 + 0.5 * frame["z"] + 0.3 * generator.normal(size=T * J)
    frame["shares"] = 0.1
    return frame


@pytest.mark.parametrize(("kind", "size"), [("sobol", 128), ("sparse_grid", 4)])
def test_problem_with_integration_end_to_end(kind: str, size: int) -> None:
    # Known truth: delta_jt = 1 + x - 2 prices + xi, Sigma = diag(0.8, 0.5) on (1, x),
    # Pi = 0.3 on income. Shares from the reference kernel equal shares computed here from the
    # rule's own nodes (numpy, 1e-13); the reference contraction then recovers delta (1e-9).
    from blpdemand.solve.contraction import compute_shares
    from blpdemand.solve.inversion import solve_delta

    frame = simulated_products(3)
    demographics = pd.DataFrame({"market_ids": np.repeat(np.arange(12), 30),
                                 "income": np.random.default_rng(9).normal(size=360)})
    per_market = kind == "sobol"
    rule = Integration(kind, size, rng=1, per_market=per_market, demographics_data=demographics)
    spec = {"linear": "1 + prices + x", "nonlinear": "1 + x", "demographics": "income",
            "agents": rule, "instruments": ["z"]}
    problem = bd.Problem(frame, **spec)
    assert problem.agents.negative_weights == (kind == "sparse_grid")
    layout, theta = problem.layout(sigma=np.diag([0.8, 0.5]), pi=[[0.3], [0.0]])
    xi = np.random.default_rng(5).normal(scale=0.3, size=problem.N)
    X = problem.products.frame
    delta = (1 + X["x"] - 2 * X["prices"]).to_numpy() + xi
    shares = compute_shares(problem, layout, theta, delta)
    # independent hand computation, market 7: nodes and demographics straight from the frame
    agents = rule.agent_frame(np.arange(12), dimensions=2)
    a7 = agents[agents.market_ids == 7]
    rows = (X["market_ids"] == 7).to_numpy()
    beta_i = np.column_stack([a7.nodes0 * 0.8 + 0.3 * a7.income, a7.nodes1 * 0.5])
    utility = delta[rows][:, None] + np.column_stack([np.ones(4), X["x"][rows]]) @ beta_i.T
    probabilities = np.exp(utility) / (1 + np.exp(utility).sum(axis=0))
    np.testing.assert_allclose(shares[rows], probabilities @ a7.weights.to_numpy(), rtol=1e-13)
    if per_market:  # market 7 (position 7) carries its own Sobol stream
        np.testing.assert_array_equal(a7[["nodes0", "nodes1"]].to_numpy(),
                                      rule.nodes_weights(2, market=7)[0])
    truth = frame.assign(shares=problem.products.unsort(shares))
    solved = solve_delta(bd.Problem(truth, **spec), layout, theta, tol=1e-13)
    assert solved.converged
    np.testing.assert_allclose(solved.delta, delta, rtol=0, atol=1e-9)


def test_draws_stability_reports_refinements() -> None:
    # E[exp(0.5 nu_1 + 0.5 nu_2)] = exp(0.25) (closed form). Sobol with 1024, 2048, 4096 nodes:
    # each value within 5e-3 of the truth (observed errors 1.8e-3, 8.8e-5, 7.0e-6), the report's
    # changes are the successive absolute differences, and the last relative change is below
    # 1e-3.
    truth = np.exp(0.25)
    calls: list[int] = []

    def evaluate(rule: Integration) -> dict[str, float]:
        calls.append(rule.size)
        nodes, weights = rule.nodes_weights(2)
        return {"mgf": float(weights @ np.exp(nodes @ [0.5, 0.5])), "size": float(weights.size)}

    report = draws_stability(evaluate, Integration("sobol", 1024, rng=2),
                             runner=lambda f, rules: [f(r) for r in rules])
    assert calls == [1024, 2048, 4096] and report.names == ("mgf", "size")
    np.testing.assert_allclose(report.values[:, 0], truth, atol=5e-3)
    np.testing.assert_allclose(report.changes[:, 0], np.abs(np.diff(report.values[:, 0])))
    assert report.relative_changes[-1, 0] < 1e-3
    assert not report.stable(1e-2)  # "size" doubles: relative change 0.5
    frame = report.to_frame()
    assert list(frame.columns[:3]) == ["sobol(1024)", "sobol(2048)", "sobol(4096)"]
    assert report.records()[0]["quantity"] == "mgf"
    # deterministic rule: the product rule at 10, 20, 40 points moves by < 1e-12
    exact = draws_stability(lambda rule: evaluate(rule)["mgf"], Integration("product", 10))
    assert exact.stable(1e-12)
    with pytest.raises(SpecificationError, match="factors"):
        draws_stability(evaluate, Integration("sobol", 8), factors=(2, 1))
