"""``blpdemand estimate SPEC.toml``: the JSON equals the Python API's results, the progress
display shows one row per objective evaluation, multi-start shows a bar and a starts table.

References: the Python API (``bd.estimate`` on the same data and options, run here), PyBLP's
Nevo tutorial output (objective 4.56, prices -62.7, rounded as printed there), and a simulation
with known truth (``bd.simulate``).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import blpdemand as bd
from blpdemand.cli import main
from blpdemand.results.counterfactual import compute_prices, simulate_merger
from blpdemand.results.elasticities import own_elasticity_summary
from blpdemand.results.io import load_results
from blpdemand.solve.progress import RecordingReporter

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
ROW = re.compile(r"^\s+\d+\s+\d+\s+\d+\s+\d+\s+[\d.]+s\s")


@pytest.fixture(scope="module")
def nevo_run(tmp_path_factory: pytest.TempPathFactory, data_path: Path
             ) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("nevo")
    mp = pytest.MonkeyPatch()
    mp.setenv("BLPDEMAND_DATA", str(data_path))
    import contextlib
    import io

    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            assert main(["estimate", str(EXAMPLES / "nevo.toml"), "--output", str(out)]) == 0
    finally:
        mp.undo()
    return out, err.getvalue()


@pytest.fixture(scope="module")
def nevo_api(nevo_products: pd.DataFrame, nevo_agents: pd.DataFrame
             ) -> tuple[bd.BLPResults, RecordingReporter]:
    problem = bd.Problem(nevo_products, linear="prices", nonlinear="1 + prices + sugar + mushy",
                         demographics="income + income_squared + age + child",
                         agents=nevo_agents, absorb="C(product_ids)",
                         instruments=[f"demand_instruments{k}" for k in range(20)])
    sigma = np.diag([0.3302, 2.4526, 0.0163, 0.2441])
    pi = [[5.4819, 0, 0.2037, 0], [15.8935, -1.2, 0, 2.6342], [-0.2506, 0, 0.0511, 0],
          [1.2650, 0, -0.8091, 0]]
    reporter = RecordingReporter()
    config = bd.EstimationConfig(method="1s", optimizer="bfgs", gtol=1e-5)
    return bd.estimate(problem, sigma=sigma, pi=pi, config=config, reporter=reporter), reporter


def test_nevo_json_equals_python_api(nevo_run: tuple[Path, str], nevo_api,
                                     nevo_products: pd.DataFrame) -> None:
    out, _ = nevo_run
    live, _ = nevo_api
    saved = load_results(out / "results.json")
    # Reference: the Python API with the same data and options (same arithmetic; 1e-10
    # allows only for summation order).
    np.testing.assert_allclose(saved.estimates.to_numpy(), live.estimates, rtol=1e-10)
    np.testing.assert_allclose(saved.standard_errors.to_numpy(), live.standard_errors,
                               rtol=1e-8)
    assert list(saved.estimates.index) == list(live.names)
    assert saved.objective == pytest.approx(live.objective, rel=1e-10)
    assert saved.kind == "blp" and saved.config["optimizer"] == "bfgs"
    assert list(saved.parameters["group"]).count("sigma") == 4
    assert list(saved.parameters["group"]).count("pi") == 9
    # Reference: PyBLP's Nevo tutorial output, objective 4.56E+00 and prices -6.27E+01.
    assert saved.objective == pytest.approx(4.5615, abs=1e-3)
    assert saved.estimates["prices"] == pytest.approx(-62.73, abs=0.01)
    # Post-estimation numbers equal the API's own-elasticity summary.
    own = own_elasticity_summary(live).body.loc["all markets"]
    assert saved.post_estimation["own_price_elasticities"]["mean"] == pytest.approx(
        own["mean"], rel=1e-8)
    assert saved.tables["elasticities"].body.shape == (95, 5)
    # The merger of the spec ([post.merger] firm_ids = {2 = 1}) equals compute_prices.
    merged = compute_prices(live, firm_ids=nevo_products["firm_ids"].replace(2, 1).to_numpy())
    merger = saved.post_estimation["merger"]
    assert merger["converged"] and merger["mean_price_change_percent"] == pytest.approx(
        100 * np.mean(merged.price_changes), rel=1e-8)
    assert saved.tables["merger"].body.shape[0] == 94
    # [post] passthrough: the market's matrix equals the API's (same estimates to 1e-10)
    passthrough = saved.tables["passthrough_market_C01Q1"].body.to_numpy(dtype=float)
    expected = bd.compute_passthrough(live).market("C01Q1").to_numpy()
    np.testing.assert_allclose(passthrough, expected, rtol=0,
                               atol=1e-8 * np.abs(expected).max())
    # Objective profiles: the middle of each parameter's 11-point grid is the estimate itself,
    # where Q equals the reported objective (same theta; 1e-8 for the inner-loop tolerance).
    profiles = saved.tables["objective_profiles"].body
    at_estimate = profiles.groupby("parameter", sort=False)["objective"].nth(5)
    assert len(at_estimate) == 13 and len(profiles) == 13 * 11
    np.testing.assert_allclose(at_estimate.to_numpy(), saved.objective, rtol=1e-8)


def test_nevo_progress_rows(nevo_run: tuple[Path, str], nevo_api) -> None:
    # Reference: the RecordingReporter of the API run sees one record per evaluation; the
    # terminal shows one row per record (same optimizer path, so the same count).
    _, err = nevo_run
    _, recorder = nevo_api
    rows = [line for line in err.splitlines() if ROW.match(line)]
    assert len(rows) == len(recorder.records) > 5
    assert "objective" in err and "|gradient|" in err
    last = rows[-1].split()
    assert float(last[7]) == pytest.approx(recorder.records[-1].objective, rel=1e-6)


def test_nevo_round_trip(nevo_run: tuple[Path, str], nevo_api) -> None:
    # JSON round trip: save the loaded results again; identical numbers and tables.
    out, _ = nevo_run
    live, _ = nevo_api
    saved = load_results(out / "results.json")
    assert saved.summary().to_text() == live.summary().to_text().replace(
        live.summary().notes[2], saved.summary().notes[2])  # the time note differs by run
    again = load_results(bd.save_results(saved, out / "again.json"))
    pd.testing.assert_frame_equal(again.parameters, saved.parameters)
    for name, table in saved.tables.items():
        assert again.tables[name].to_text() == table.to_text()
        pd.testing.assert_frame_equal(again.tables[name].to_frame(), table.to_frame())
    assert {"elasticities_heatmap.png", "diversion_heatmap.png", "convergence.png", "costs.tex",
            "diversion_market_C01Q1.html", "objective_profiles.png", "objective_contour.png",
            "objective_profiles.tex", "passthrough_heatmap.png",
            "passthrough_market_C01Q1.csv"} <= {p.name for p in out.iterdir()}


def test_simulated_multistart_parquet(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # Reference: simulated markets with known truth alpha = -2, sigma_prices = 0.3; Parquet in.
    # The CLI runs its three starts on two threads; the API run below is sequential.
    sim = bd.simulate(markets=60, products=8, alpha=-2.0, sigma={"prices": 0.3}, draws=200, rng=3)
    sim.products.to_parquet(tmp_path / "products.parquet")
    assert sim.agents is not None
    sim.agents.to_csv(tmp_path / "agents.csv", index=False)
    instruments = ", ".join(f'"{z}"' for z in sim.instruments)
    (tmp_path / "sim.toml").write_text(f"""
[data]
products = "products.parquet"
agents = "agents.csv"
[model]
linear = "{sim.linear}"
nonlinear = "0 + prices"
[instruments]
columns = [{instruments}]
[[instruments.build]]
kind = "blp"
characteristics = "0 + x1 + x2"
[parameters]
sigma = [[1.0]]
[estimation]
starts = 2
rng = 1
workers = 2
[post]
diversion = true
[post.merger]
firms = [1, 2]
[output]
plots = false
""")
    import blpdemand.cli.report as cli_report

    pools: list[int] = []

    def recording(jobs, *, workers=1):  # type: ignore[no-untyped-def]
        pools.append(workers)
        return run_jobs(jobs, workers=workers)

    run_jobs = cli_report.run_jobs
    monkeypatch.setattr(cli_report, "run_jobs", recording)
    assert main(["estimate", str(tmp_path / "sim.toml"), "-o", str(tmp_path / "out")]) == 0
    assert 2 in pools  # the spec's workers reached the multi-start runner
    captured = capsys.readouterr()
    assert "multi-start" in captured.err and "post-estimation" in captured.err
    saved = load_results(tmp_path / "out" / "results.json")
    # The merger of firms 1 and 2 equals simulate_merger on the same estimates (rebuilt here
    # from the JSON's spec by the API: same data, same options, so the same estimates).
    problem = bd.Problem(sim.products, linear=sim.linear, nonlinear="0 + prices",
                         agents=sim.agents, instruments=[
                             *sim.instruments, bd.build_blp_instruments(sim.products, "0 + x1 + x2")])
    live = bd.estimate(problem, sigma=[[1.0]], config=bd.EstimationConfig(starts=2, rng=1))
    np.testing.assert_allclose(saved.estimates.to_numpy(), live.estimates, rtol=1e-10)
    merged = simulate_merger(live, [1, 2])
    assert saved.post_estimation["merger"]["mean_price_change_percent"] == pytest.approx(
        100 * np.mean(merged.price_changes), rel=1e-8)
    assert saved.tables["merger"].body.shape[0] == 60
    assert "diversion_market_0" in saved.tables
    assert saved.tables["starts"].body.shape[0] == 3
    # truth within 4 standard errors (a loose simulation check; 480 products)
    # (the sign of sigma is not identified: compare |sigma|)
    for name, truth in (("sigma[prices, prices]", 0.3), ("prices", -2.0)):
        est, se = saved.estimates[name], saved.standard_errors[name]
        est = abs(est) if name.startswith("sigma") else est
        assert abs(est - truth) < 4 * se, (name, est, se)
    assert not any(p.suffix == ".png" for p in (tmp_path / "out").iterdir())


def test_integration_and_draws_stability(tmp_path: Path) -> None:
    # Reference: the API with the same Integration rule and DrawsStability (same computation,
    # exact equality up to 1e-10); the 1x column equals the main estimate.
    from blpdemand.results.diagnostics import DrawsStability

    sim = bd.simulate(markets=30, products=5, sigma={"prices": 0.5}, draws=200, rng=5)
    sim.products.to_csv(tmp_path / "products.csv", index=False)
    instruments = ", ".join(f'"{z}"' for z in sim.instruments)
    (tmp_path / "s.toml").write_text(f"""
[data]
products = "products.csv"
[model]
linear = "{sim.linear}"
nonlinear = "0 + prices"
[instruments]
columns = [{instruments}]
[[instruments.build]]
kind = "blp"
characteristics = "0 + x1 + x2"
[integration]
kind = "sobol"
size = 64
rng = 0
[parameters]
sigma = [[1.0]]
[post]
stability = [1, 2]
[output]
plots = false
""")
    assert main(["estimate", str(tmp_path / "s.toml"), "-o", str(tmp_path / "out"), "-q"]) == 0
    saved = load_results(tmp_path / "out" / "results.json")
    rule = bd.Integration("sobol", 64, rng=0)
    blp = bd.build_blp_instruments(sim.products, "0 + x1 + x2")

    def make_problem(agents: object) -> bd.Problem:
        return bd.Problem(sim.products, linear=sim.linear, nonlinear="0 + prices", agents=agents,
                          instruments=[*sim.instruments, blp])

    live = bd.estimate(make_problem(rule), sigma=[[1.0]])
    np.testing.assert_allclose(saved.estimates.to_numpy(), live.estimates, rtol=1e-10)
    stability = DrawsStability.from_results(live, rule, factors=(1, 2), make_problem=make_problem)
    expected = stability.table().to_frame()
    got = saved.tables["draws_stability"].to_frame()
    np.testing.assert_allclose(got.to_numpy(dtype=float), expected.to_numpy(dtype=float),
                               rtol=1e-10)
    assert saved.post_estimation["stability"]["factors"] == [1, 2]
