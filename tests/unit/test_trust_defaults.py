"""The default path tells the truth: bounds, limits, failed markets, multi-start, identification.

References: the configuration itself (bounds and limits the user set), closed forms (a failed
inner loop has no objective; a constant demographic moves no residual), and the records of the
run (each start's estimate). Issue: "Trustworthy by default" and "A failure is never a number".
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest

import blpdemand as bd
from blpdemand._types import Status
from blpdemand.errors import (
    ConvergenceWarning,
    IdentificationWarning,
    OptimizationWarning,
    SpecificationError,
)
from blpdemand.solve.gmm import DemandObjective
from blpdemand.solve.multistart import StartOutcome, check_agreement, same_minimum
from blpdemand.solve.optimizer import OptimizationResult


@pytest.fixture(scope="module")
def simulated() -> bd.Problem:
    """60 markets x 6 products, sigma_x1 = 1, over-identified by rivals' sums (BLP 1995)."""
    sim = bd.simulate(markets=60, products=6, sigma={"x1": 1.0}, draws=100, rng=3)
    frame = sim.products.copy()
    for column in ("x1", "x2"):
        total = frame.groupby("market_ids")[column].transform("sum")
        frame[f"rival_{column}"] = total - frame[column]
    return bd.Problem(frame, linear=sim.linear, nonlinear=sim.nonlinear, agents=sim.agents,
                      instruments=[*sim.instruments, "rival_x1", "rival_x2"])


def _quiet(problem: bd.Problem, **kwargs: object) -> bd.BLPResults:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bd.estimate(problem, **kwargs)  # type: ignore[arg-type]


def test_default_bounds_are_the_fields_convention(simulated: bd.Problem) -> None:
    # Reference: the convention (diagonal Sigma is a standard deviation, >= 0; Pi and the
    # off-diagonal elements free), recorded in the results.
    from blpdemand.model.parameters import ParameterLayout
    from blpdemand.solve.bounds import default_bounds

    results = _quiet(simulated, sigma=[0.5], config=bd.EstimationConfig(starts=0))
    assert results.bounds == ((0.0, np.inf),)
    lower = np.array([[True, False], [True, True]])
    layout = ParameterLayout(lower, np.ones((2, 1), dtype=bool), ("1", "x1"), ("income",))
    assert default_bounds(layout) == [(0.0, np.inf), (-np.inf, np.inf), (0.0, np.inf),
                                      (-np.inf, np.inf), (-np.inf, np.inf)]


def test_a_negative_standard_deviation_start_is_refused_for_bounded_optimizers(
        simulated: bd.Problem) -> None:
    with pytest.raises(SpecificationError, match=r"sigma\[x1, x1\].*standard deviations"):
        bd.estimate(simulated, sigma=[-0.5])
    # bfgs takes no bounds: the sign stays what the unconstrained problem gives, noted
    results = _quiet(simulated, sigma=[-0.5], config=bd.EstimationConfig(optimizer="bfgs",
                                                                         starts=0))
    assert results.bounds == ((-np.inf, np.inf),)
    if results.theta[0] < 0:
        assert any("negative diagonal Sigma" in n for n in results.summary().notes)


def test_an_iteration_limit_is_never_converged(simulated: bd.Problem) -> None:
    # Reference: the configuration (max_iterations=3).
    with pytest.warns(OptimizationWarning, match="iteration limit"):
        results = bd.estimate(simulated, sigma=[3.0], config=bd.EstimationConfig(
            max_iterations=3, starts=0))
    assert not results.converged and results.status is Status.MAX_ITERATIONS
    assert results.optimization.iterations == 3
    text = results.summary().to_text()
    assert "stopped at the iteration limit after 3 iterations" in text
    assert "NOT CONVERGED" in text and "converged after" not in text


def test_a_failed_inner_loop_is_never_an_objective(simulated: bd.Problem) -> None:
    # Reference: closed form. Two contraction evaluations cannot reach tol 1e-14 from the logit
    # delta at sigma != 0, so every market fails: the objective there is a penalty larger than
    # Q anywhere the inner loop converged, its evaluation is marked failed, and the results
    # carry no objective and no standard errors.
    layout, _ = simulated.layout([1.0])
    Z = simulated.ZD_tilde
    W = np.linalg.inv(Z.T @ Z / simulated.N)
    good = DemandObjective(simulated, layout, W).evaluate(np.array([1.0]), report=False)
    starved = DemandObjective(simulated, layout, W, contraction=bd.FixedPointConfig(
        max_evaluations=2))
    bad = starved.evaluate(np.array([1.0]), report=False)
    assert not good.failed and bad.failed
    assert bad.objective >= 1e10 > good.objective
    with pytest.warns(ConvergenceWarning, match="contraction failed at the estimate"):
        results = bd.evaluate(simulated, sigma=[1.0], config=bd.EstimationConfig(
            contraction={"max_evaluations": 2}))
    assert not results.converged and np.isnan(results.objective)
    assert results.status is Status.CONTRACTION_FAILED
    assert results.failed_markets.size == simulated.T
    assert np.all(np.isnan(results.standard_errors))


def test_the_optimizer_cannot_end_where_the_contraction_fails(simulated: bd.Problem) -> None:
    # Reference: closed form. With 40 contraction evaluations the inner loop converges near the
    # optimum (sigma ~ 1) but fails at large sigma, where the contraction's modulus approaches
    # one; a start there must not be reported, and every start whose inner loop failed at its
    # end is marked so and can never be the best.
    config = bd.EstimationConfig(contraction={"max_evaluations": 40, "method": "simple"},
                                 starts=0)
    layout, _ = simulated.layout([1.0])
    Z = simulated.ZD_tilde
    objective = DemandObjective(simulated, layout, np.linalg.inv(Z.T @ Z / simulated.N),
                                contraction=config.fixed_point)
    assert objective.evaluate(np.array([8.0]), report=False).failed
    free = _quiet(simulated, sigma=[1.0], config=bd.EstimationConfig(starts=0))
    results = _quiet(simulated, sigma=[8.0], config=bd.EstimationConfig(
        contraction={"max_evaluations": 40, "method": "simple"}, starts=4, rng=0))
    ended_failed = [s for s in results.starts
                    if s.optimization.status is Status.CONTRACTION_FAILED]
    assert all(np.isnan(s.optimization.objective) for s in ended_failed)
    if results.failed_markets.size == 0:
        np.testing.assert_allclose(results.theta, free.theta, rtol=1e-5)
    else:  # no start reached a converged region: a failed status, never a number
        assert not results.converged and np.isnan(results.objective)


def test_multistart_compares_estimates_not_only_objectives() -> None:
    # Reference: the cars case, +0.094 and -0.096 at (nearly) the same objective are two
    # points, not one minimum; equal objectives and equal estimates are one.
    def run(theta: float, objective: float) -> StartOutcome:
        result = OptimizationResult(
            start=np.array([0.5]), theta=np.array([theta]), objective=objective,
            gradient=np.zeros(1), projected_gradient_norm=0.0,
            status=Status.CONVERGED, message="", iterations=3, evaluations=4)
        return StartOutcome(start=np.array([0.5]), optimization=result, beta=np.array([-2.0]))

    plus, minus, again = run(0.094, 12.3401), run(-0.096, 12.3402), run(0.0940001, 12.3401)
    assert same_minimum(plus, again) and not same_minimum(plus, minus)
    with pytest.warns(OptimizationWarning, match="at other estimates"):
        marked = check_agreement([plus, minus, again], 0, 1)
    assert [o.same for o in marked] == [True, False, True]


def test_every_gmm_step_runs_five_starts_by_default(simulated: bd.Problem) -> None:
    # Reference: the lecture's advice, "3-5 starting values; for 2-step GMM do this twice".
    results = _quiet(simulated, sigma=[0.5], config=bd.EstimationConfig(method="2s"))
    table = results.starts_table().to_frame()
    assert table["step"].tolist() == [1] * 5 + [2] * 5
    assert table.index[5] == "step 2: step-1 estimate"
    np.testing.assert_array_equal(results.starts[5].start, results.steps[0].theta)
    assert results.objective == pytest.approx(
        table.loc[table["step"] == 2, "objective"].min(), rel=1e-12)
    assert table["same_minimum"].any()


def _simulated_frame() -> tuple[bd.SimulatedMarkets, Any]:
    """60 markets x 6 products (sigma_x1 = 1) with rivals' sums of x1 and x2 as instruments."""
    sim = bd.simulate(markets=60, products=6, sigma={"x1": 1.0}, draws=100, rng=3)
    frame = sim.products.copy()
    for column in ("x1", "x2"):
        frame[f"rival_{column}"] = (frame.groupby("market_ids")[column].transform("sum")
                                    - frame[column])
    return sim, frame


def test_unidentified_parameters_have_no_standard_error() -> None:
    # Reference: closed form. A demographic equal to 1 for every agent makes pi[x1, d] move
    # utility exactly as beta_x1 does: the pair is not separately identified, so both standard
    # errors are NaN (pinv gave SE 0.127, p = 3e-8) and a warning names them.
    sim, frame = _simulated_frame()
    problem = bd.Problem(frame, linear=sim.linear, nonlinear=sim.nonlinear,
                         demographics="0 + d", agents=sim.agents.assign(d=1.0),
                         instruments=[*sim.instruments, "rival_x1", "rival_x2"])
    with pytest.warns(IdentificationWarning, match=r"pi\[x1, d\]"):
        results = bd.evaluate(problem, sigma=[1.0], pi=[[0.7]])
    se = dict(zip(results.names, results.standard_errors))
    assert np.isnan(se["pi[x1, d]"]) and np.isnan(se["x1"])
    assert np.isfinite(se["sigma[x1, x1]"]) and np.isfinite(se["prices"])
    assert "pi[x1, d]" in results.unidentified
    assert any("not identified" in note for note in results.summary().notes)


def test_a_single_node_identifies_no_standard_deviation() -> None:
    # Reference: closed form. With one node per market sigma nu is a constant: sigma[x1, x1]
    # moves utility as beta_x1 does (its SE was 1e-16).
    sim, frame = _simulated_frame()
    problem = bd.Problem(frame, linear=sim.linear, nonlinear=sim.nonlinear,
                         agents=bd.Integration("monte_carlo", 1, rng=0),
                         instruments=[*sim.instruments, "rival_x1", "rival_x2"])
    with pytest.warns(IdentificationWarning, match=r"sigma\[x1, x1\]"):
        results = bd.evaluate(problem, sigma=[1.0])
    assert "sigma[x1, x1]" in results.unidentified and np.isnan(results.theta_se[0])


def test_a_start_that_cannot_be_evaluated_is_named_not_given_a_penalty_number(
        simulated: bd.Problem) -> None:
    # Reference: closed form (sigma = 500 spreads utilities over e^+-500: no contraction within
    # 200 evaluations). The user is told the contraction failed and where, never the penalty
    # that kept the optimizer away ("gradient inf-norm 0 > gtol max(1, Q) = 1e+04" was shown).
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = bd.estimate(simulated, sigma=[500.0], config=bd.EstimationConfig(
            starts=0, contraction={"max_evaluations": 200}))
    texts = [str(w.message) for w in caught]
    assert results.status is Status.CONTRACTION_FAILED
    assert any("contraction failed at the estimate in market(s)" in t for t in texts)
    assert not any("1e+10" in t or "1e+04" in t or "gtol max(1, Q)" in t for t in texts)
    assert "1e+10" not in results.summary().to_text()
