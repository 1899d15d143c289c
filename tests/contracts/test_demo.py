"""`blpdemand demo` end to end: logit, BLP and a merger checked against the simulation's truth."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from blpdemand.cli import main
from blpdemand.cli.demo import MERGING, DemoReport, run_demo
from blpdemand.results.costs import compute_costs
from blpdemand.results.counterfactual import fitted_from_truth, simulate_merger


@pytest.fixture(scope="module")
def report() -> DemoReport:
    return run_demo()  # the CLI's defaults: 100 markets x 20 products, seed 0


def test_cli_demo_prints_every_part(capsys: pytest.CaptureFixture[str], report: DemoReport) -> None:
    # Reference: the report computed through the API with the same (default) options; the CLI
    # must print the same numbers (4 decimals, the Table's rounding).
    assert main(["demo"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    for heading in ("1. Logit demand: OLS vs IV", "2. Random coefficients (BLP)",
                    f"3. Merger of firms {list(MERGING)}", "4. Demand and supply together"):
        assert heading in out
    match = re.search(r"sigma\[hp, hp\] │ (-?[\d.]+) │ +│ (-?[\d.]+) │ (-?[\d.]+)", out)
    assert match, out
    truth, sigma, se = map(float, match.groups())
    body = report.blp_comparison.to_frame()
    assert truth == 1.0
    assert sigma == pytest.approx(body.loc["sigma[hp, hp]", "BLP"], abs=5e-5)
    assert se == pytest.approx(body.loc["sigma[hp, hp]", "BLP s.e."], abs=5e-5)
    assert "all markets converged" in out and "Merger simulation" in out


def test_joint_demand_and_supply_recover_the_truth(report: DemoReport) -> None:
    # Reference: the simulation's true demand and log-cost parameters (gamma_0 = 0, gamma_w = 1);
    # tolerance: 3 standard errors for every parameter, as for BLP (fixed seed: deterministic).
    # The joint price coefficient equals the demand-only one within their standard errors.
    joint = report.joint
    assert joint is not None and joint.converged and report.joint_comparison is not None
    body = report.joint_comparison.to_frame()
    assert list(body.index[-3:]) == ["gamma[1]", "gamma[w1]", "gamma[w2]"]
    np.testing.assert_array_equal(body["truth"].to_numpy()[-3:], [0.0, 1.0, 1.0])
    np.testing.assert_array_less(np.abs(body["(joint - truth) / s.e."].to_numpy()), 3.0)
    np.testing.assert_allclose(joint.gamma, body["joint"].to_numpy()[-3:], rtol=0)
    gap = abs(body.loc["prices", "joint"] - body.loc["prices", "demand only"])
    assert gap < body.loc["prices", "s.e."]


def test_iv_removes_the_ols_bias(report: DemoReport) -> None:
    # Reference: the simulation's true price coefficient (-1); prices rise with xi, so OLS is
    # biased toward zero and IV (cost shifters) is closer.
    truth, ols, iv = report.alpha
    assert truth == -1.0
    assert truth < ols < 0
    assert abs(iv - truth) < abs(ols - truth)


def test_blp_recovers_the_truth(report: DemoReport) -> None:
    # Reference: the simulation's true sigma (1.0) and beta; tolerance: 3 standard errors for
    # every parameter (the demo's seed is fixed, so this is deterministic).
    blp = report.blp
    assert blp.converged
    body = report.blp_comparison.to_frame()
    assert body.loc["sigma[hp, hp]", "truth"] == 1.0
    assert abs(blp.sigma[0, 0] - 1.0) < 3 * blp.sigma_se[0, 0]
    np.testing.assert_array_less(np.abs(body["(BLP - truth) / s.e."].to_numpy()), 3.0)
    # BLP's price coefficient is closer to the truth than the misspecified IV logit's
    assert (abs(body.loc["prices", "BLP"] - body.loc["prices", "truth"])
            < abs(body.loc["prices", "IV logit"] - body.loc["prices", "truth"]))


def test_merger_raises_the_merging_firms_prices(report: DemoReport) -> None:
    # Reference: Bertrand-Nash theory with substitutes (prices are strategic complements): the
    # merged firm internalizes diversion and raises every one of its prices; rivals respond
    # with (smaller) increases; consumer surplus falls in every market.
    cf = report.counterfactual
    assert cf.converged
    inside = np.isin(cf.firm_ids_before, list(MERGING))
    assert np.all(cf.price_changes[inside] > 0)
    assert cf.price_changes[inside].mean() > cf.price_changes[~inside].mean() > 0
    assert np.all(cf.consumer_surplus_change < 0)
    table = report.merger.to_frame()
    assert np.all(table["price change, merging (%)"] > 0)
    # the demo's point: BLP's predicted price change is closer to the truth's than the logit's
    change = table["price change, merging (%)"]
    assert abs(change["BLP"] - change["truth"]) < abs(change["IV logit"] - change["truth"])
    # the "truth" row is the merger under the true demand: same numbers computed directly
    direct = simulate_merger(fitted_from_truth(report.rc_simulation), list(MERGING))
    assert change["truth"] == pytest.approx(100 * np.mean(direct.price_changes[inside]),
                                            rel=1e-12)


def test_true_demand_recovers_the_true_costs(report: DemoReport) -> None:
    # Reference: the simulation's true marginal costs (prices are its Bertrand-Nash equilibrium),
    # so inverting the first-order conditions under the true demand gives them back (1e-8).
    sim = report.rc_simulation
    implied = compute_costs(fitted_from_truth(sim))
    np.testing.assert_allclose(implied, sim.products["costs"].to_numpy(), rtol=1e-8)


def _frames(report: DemoReport) -> list[pd.DataFrame]:
    return [t.to_frame() for t in report.tables]


def test_demo_is_reproducible() -> None:
    # Reference: the same seed twice gives identical tables (exact equality), another seed not.
    first, second = (run_demo(markets=30, products=8, rng=5) for _ in range(2))
    for a, b in zip(_frames(first), _frames(second), strict=True):
        pd.testing.assert_frame_equal(a, b, check_exact=True)
    assert first.blp.theta.tolist() == second.blp.theta.tolist()
    other = run_demo(markets=30, products=8, rng=6)
    assert other.blp.theta[0] != first.blp.theta[0]
