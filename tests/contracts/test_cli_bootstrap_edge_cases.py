"""``[post.bootstrap]`` and ``bd.bootstrap`` in configurations the main tests leave out.

References: the Python API on the same live results, draws, rng and hold, with per-market means
written independently by pandas groupby on the product rows as written in the CSV (string ids
whose sorted order differs from the numeric one, shuffled rows, ``[columns]`` renames, absorbed
fixed effects, ``hold = "xi"``, ``workers = 2``; 1e-10 allows only for summation order); for a
plain logit, the closed form eta_jj = alpha_b p_j (1 - s_j) at each draw (shares observed, or
implied by delta_hat + X1 (beta_b - beta_hat) under hold = "xi"; 1e-12); the error contract.
"""

from __future__ import annotations

import io
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

import blpdemand as bd
from blpdemand.cli.bootstrap import bootstrap_table, check_bootstrap
from blpdemand.cli.run import run
from blpdemand.cli.spec import read_spec
from blpdemand.errors import ConvergenceError, SpecificationError
from blpdemand.model.fitted import FittedDemand
from blpdemand.results.bootstrap import BootstrapSummary
from blpdemand.results.io import load_results

HEAD = ('[data]\nproducts = "products.csv"\nagents = "agents.csv"\n[columns]\nmarket_ids = "mkt"\n'
        'firm_ids = "firm"\n[parameters]\nsigma = [[1.0]]\n[model]\n')
BODY = ('[instruments]\ncolumns = ["w1", "w2", "rival_x1"]\n')
TAIL = "[output]\nplots = false\nlatex = false\nhtml = false\n"


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Simulated markets (alpha = -4, sigma_prices = 0.4) with ids "m0".."m11" (sorted as text:
    m0, m1, m10, m11, m2, ...), firms "f0".., rows shuffled, id columns named mkt and firm."""
    path = tmp_path_factory.mktemp("bootstrap_edges")
    sim = bd.simulate(markets=12, products=6, alpha=-4.0, sigma={"prices": 0.4}, draws=100,
                      rng=4)
    assert sim.agents is not None
    products, agents = sim.products.copy(), sim.agents.copy()
    # rivals' sum of x1 (BLP 1995) over-identifies: with the cost shifters alone the model is
    # exactly identified with no root (Q = 0.08 at the minimum), where G is singular and no
    # standard error exists
    products["rival_x1"] = products.groupby("market_ids")["x1"].transform("sum") - products["x1"]
    products["market_ids"] = "m" + products["market_ids"].astype(str)
    agents["market_ids"] = "m" + agents["market_ids"].astype(str)
    products["firm_ids"] = "f" + products["firm_ids"].astype(str)
    products = products.sample(frac=1, random_state=0).reset_index(drop=True)
    products.rename(columns={"market_ids": "mkt", "firm_ids": "firm"}).to_csv(
        path / "products.csv", index=False)
    agents.to_csv(path / "agents.csv", index=False)
    return path


def _run(folder: Path, name: str, model: str, post: str) -> tuple[Any, Any, pd.DataFrame]:
    spec = folder / f"{name}.toml"
    spec.write_text(HEAD + model + BODY + post + TAIL)
    quiet = Console(file=io.StringIO())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the run records warnings itself
        live = run("estimate", spec, output=folder / name, console=quiet, progress=quiet,
                   quiet=True)
    return live, load_results(folder / name / "results.json"), pd.read_csv(folder / "products.csv")


def _by_market(values: np.ndarray, markets: pd.Series) -> np.ndarray:
    """Per-market means (markets sorted as the CSV's ids sort) then the overall mean (pandas)."""
    series = pd.Series(values)
    return np.append(series.groupby(markets.to_numpy()).mean().to_numpy(), series.mean())


def _check(table: Any, summary: bd.BootstrapSummary, level: float = 0.95) -> None:
    # Reference: the API's summary over the same draws (1e-10: summation order only).
    frame = table.to_frame()
    lo, hi = summary.interval(level)
    for column, reference in (("estimate", summary.estimate), ("std. error", summary.std),
                              ("bootstrap mean", summary.mean), (frame.columns[3], lo),
                              (frame.columns[4], hi)):
        np.testing.assert_allclose(frame[column].to_numpy(float), reference, rtol=1e-10,
                                   atol=1e-13)


LINEAR = 'linear = "1 + prices + x1 + x2"\nnonlinear = "0 + prices"\n'


def test_string_ids_shuffled_rows_renamed_columns_and_market_selection(folder: Path) -> None:
    post = ('[post]\nelasticities = true\ncosts = true\nmarket = "m3"\n[post.merger]\n'
            'firms = ["f0", "f1"]\n[post.bootstrap]\ndraws = 10\nrng = 1\n')
    live, saved, products = _run(folder, "strings", LINEAR, post)
    markets, prices = products["mkt"], products["prices"].to_numpy()
    boot = bd.bootstrap(live, draws=10, rng=1)
    inside = products["firm"].isin(["f0", "f1"]).to_numpy()

    def merger(f: FittedDemand) -> np.ndarray:
        outcome = bd.simulate_merger(f, ["f0", "f1"])
        changes = 100 * outcome.price_changes
        return np.concatenate([_by_market(changes, markets), [changes[inside].mean()],
                               [outcome.consumer_surplus_change.mean()]])

    for name, function in (
            ("bootstrap_elasticities",
             lambda f: _by_market(bd.compute_elasticities(f).diagonal(), markets)),
            ("bootstrap_costs", lambda f: _by_market(prices - bd.compute_costs(f), markets)),
            ("bootstrap_merger", merger)):
        _check(saved.tables[name], boot.apply(function))
    # every market (text order), not only the [post] market = "m3" selection
    ids = sorted(markets.unique())
    assert ids[:4] == ["m0", "m1", "m10", "m11"]
    assert list(saved.tables["bootstrap_elasticities"].body.index) == [*ids, "all markets"]
    assert list(saved.tables["bootstrap_merger"].body.index)[12:] == [
        "all products", "merging firms ['f0', 'f1']",
        "change in CS per consumer (mean over markets)"]
    # the bootstrap's "all markets" estimate is the [post] costs table's mean markup (1e-12)
    np.testing.assert_allclose(saved.tables["bootstrap_costs"].body["estimate"].iloc[-1],
                               saved.tables["costs"].body.loc["markups", "mean"], rtol=1e-12)
    # notes survive results.json
    assert saved.tables["bootstrap_costs"].notes[-1] == (
        "0 of 10 draws left out: the markups (a singular markup system) raised there")
    assert saved.tables["bootstrap_merger"].notes[0].startswith("10 draws of (theta, beta)")


def test_firm_ids_mapping_hold_xi_level_and_two_workers(folder: Path) -> None:
    post = ('[post.merger]\nfirm_ids = { f1 = "f0", f2 = "f0" }\n[post.bootstrap]\ndraws = 10\n'
            'rng = 4\nhold = "xi"\nlevel = 0.9\nworkers = 2\n')
    live, saved, products = _run(folder, "mapping", LINEAR, post)
    after = products["firm"].replace({"f1": "f0", "f2": "f0"}).to_numpy()

    def merger(f: FittedDemand) -> np.ndarray:
        outcome = bd.compute_prices(f, firm_ids=after)
        return np.append(_by_market(100 * outcome.price_changes, products["mkt"]),
                         outcome.consumer_surplus_change.mean())

    # reference on one worker: the result must not depend on workers
    _check(saved.tables["bootstrap_merger"],
           bd.bootstrap(live, draws=10, rng=4, hold="xi").apply(merger), level=0.9)
    assert list(saved.tables["bootstrap_merger"].to_frame().columns[3:]) == ["[0.050", "0.950]"]
    summary = saved.post_estimation["bootstrap"]
    assert (summary["hold"], summary["level"], summary["kept"]) == ("xi", 0.9, 10)


def test_absorbed_product_effects(folder: Path) -> None:
    model = 'linear = "prices + x1 + x2"\nnonlinear = "0 + prices"\nabsorb = "C(product_ids)"\n'
    post = '[post]\ncosts = true\n[post.bootstrap]\ndraws = 8\nrng = 2\nhold = "xi"\n'
    live, saved, products = _run(folder, "absorbed", model, post)
    prices = products["prices"].to_numpy()
    boot = bd.bootstrap(live, draws=8, rng=2, hold="xi")
    _check(saved.tables["bootstrap_costs"],
           boot.apply(lambda f: _by_market(prices - bd.compute_costs(f), products["mkt"])))
    assert set(saved.tables) >= {"bootstrap_costs"}
    assert "bootstrap_elasticities" not in saved.tables


@pytest.mark.parametrize("absorb", [None, "C(product_ids)"])
@pytest.mark.parametrize("hold", ["shares", "xi"])
def test_logit_draws_against_the_closed_form(hold: str, absorb: str | None) -> None:
    sim = bd.simulate(markets=8, products=5, alpha=-2.0, sigma={"prices": 0.0}, draws=10, rng=3)
    products = sim.products.copy()
    products["market_ids"] = "m" + products["market_ids"].astype(str)
    products = products.sample(frac=1, random_state=1).reset_index(drop=True)
    columns = ["prices", "x1", "x2"]
    linear = " + ".join(columns) if absorb else "1 + " + " + ".join(columns)
    results = bd.estimate_logit(products, linear=linear, instruments=["w1", "w2"], absorb=absorb)
    boot = bd.bootstrap(results, draws=20, rng=2, hold=hold)
    names = list(results.covariance.index)
    alpha = boot.beta[:, names.index("prices")]
    X1 = products[columns].to_numpy()
    if not absorb:
        X1 = np.column_stack([np.ones(len(products)), X1])
    shares, prices = products["shares"].to_numpy(), products["prices"].to_numpy()
    markets = products["market_ids"]
    inside = pd.Series(shares).groupby(markets).transform("sum").to_numpy()
    delta = np.log(shares) - np.log(1 - inside)  # Berry's inversion, fixed effects included
    for b in range(boot.draws):
        implied = shares
        if hold == "xi":  # xi and the fixed effects held: delta_b = delta + X1 (beta_b - beta)
            e = pd.Series(np.exp(delta + X1 @ (boot.beta[b] - results.fitted.beta)))
            implied = (e / (1 + e.groupby(markets).transform("sum"))).to_numpy()
        # Reference: logit own elasticity alpha_b p (1 - s) (1e-12: rounding only)
        np.testing.assert_allclose(bd.compute_elasticities(boot.fitted[b]).diagonal(),
                                   alpha[b] * prices * (1 - implied), rtol=1e-12)


def test_logit_draws_have_the_estimated_covariance() -> None:
    # Reference: N(beta_hat, V) by simulation; 4000 draws: the sample covariance scaled by the
    # standard errors has sd about sqrt(2 / 4000) = 0.022, so 0.1 is about 4.5 sd.
    sim = bd.simulate(markets=6, products=4, alpha=-2.0, sigma={"prices": 0.0}, draws=10, rng=3)
    results = bd.estimate_logit(sim.products, linear="1 + prices + x1 + x2",
                                instruments=["w1", "w2"])
    boot = bd.bootstrap(results, draws=4000, rng=0)
    V = results.covariance.to_numpy()
    scale = np.sqrt(np.outer(np.diag(V), np.diag(V)))
    assert np.max(np.abs(np.cov(boot.beta.T) - V) / scale) < 0.1
    np.testing.assert_allclose(boot.beta.mean(axis=0), results.fitted.beta,
                               atol=float(5 * np.sqrt(np.diag(V)).max() / np.sqrt(4000)))


@pytest.mark.parametrize(("line", "message"), [
    ("level = 0", r"level in e.toml must be a number in \(0, 1\), e.g. 0.95, got 0"),
    ("level = 1.0", r"level in e.toml must be a number in \(0, 1\)"),
    ("level = nan", r"level in e.toml must be a number in \(0, 1\), e.g. 0.95, got nan"),
    ("level = true", r"level in e.toml must be a number"),
    ("draws = true", r"draws in e.toml must be an integer >= 2, got True"),
    ("workers = 2.0", r"workers in e.toml must be an integer >= 1, got 2.0"),
    ('hold = "XI"', r"hold in e.toml must be \"shares\" \(delta re-solved at each draw\) or \"xi\""),
    ('hold = ["xi"]', r"hold in e.toml must be \"shares\""),
])
def test_more_bad_values(tmp_path: Path, line: str, message: str) -> None:
    # Reference: the error contract of check_bootstrap (the spec file and the key named).
    spec = tmp_path / "e.toml"
    spec.write_text(f"[data]\nproducts = \"p.csv\"\n[model]\nlinear = \"prices\"\n[post]\n"
                    f"costs = true\n[post.bootstrap]\n{line}\n")
    with pytest.raises(SpecificationError, match=r"\[post.bootstrap\] " + message):
        check_bootstrap(read_spec(spec), "estimate")


def test_defaults_for_an_empty_table(tmp_path: Path) -> None:
    # Reference: the documented defaults (examples/README.md).
    spec = tmp_path / "e.toml"
    spec.write_text('[data]\nproducts = "p.csv"\n[model]\nlinear = "prices"\n[post]\n'
                    'elasticities = true\nbootstrap = {}\n')
    assert check_bootstrap(read_spec(spec), "estimate") == {
        "draws": 200, "rng": 0, "hold": "shares", "level": 0.95, "workers": 1}


def test_table_when_every_draw_failed() -> None:
    # Reference: a summary with no kept draw has NaN statistics and says so in its note.
    summary = BootstrapSummary(estimate=np.array([1.0, 2.0]), draws=np.zeros((0, 2)),
                               names=("a", "b"), failed=5)
    table = bootstrap_table(summary, level=0.95, title="t", raises="the merger")
    frame = table.to_frame()
    assert frame["estimate"].tolist() == [1.0, 2.0]
    assert all(math.isnan(v) for v in frame["std. error"])
    assert table.notes[-1] == "5 of 5 draws left out: the merger raised there"


def _fail_after_estimate(limit: int) -> Any:
    calls = {"n": 0}

    def function(fitted: FittedDemand) -> np.ndarray:
        calls["n"] += 1
        if calls["n"] > limit:
            raise ConvergenceError("no equilibrium at this draw")
        return np.array([1.0, 2.0])

    return function


def test_apply_drop_when_every_draw_raises() -> None:
    # Reference: the drop contract; used to raise numpy's ValueError (cannot reshape an empty
    # stack) instead of an all-dropped summary.
    sim = bd.simulate(markets=8, products=5, alpha=-2.0, sigma={"prices": 0.0}, draws=10, rng=3)
    results = bd.estimate_logit(sim.products, linear="1 + prices + x1 + x2",
                                instruments=["w1", "w2"])
    boot = bd.bootstrap(results, draws=4, rng=0)
    with pytest.warns(bd.errors.ConvergenceWarning, match="raised at 4 of 4 draws"):
        summary = boot.apply(_fail_after_estimate(1), errors="drop", names=["a", "b"])
    assert summary.failed == 4 and summary.draws.shape == (0, 2)


def test_cli_merger_failing_at_every_draw(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Reference: the drop contract through the CLI; it used to crash with numpy's ValueError
    # and leave no results.json.
    from blpdemand.results import counterfactual

    real = counterfactual.simulate_merger
    seen = {"fitted": 0}

    def failing(fitted: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(fitted, FittedDemand):  # the bootstrap (the [post] merger gets results)
            seen["fitted"] += 1
            if seen["fitted"] > 1:  # the estimate first, then every draw
                raise ConvergenceError("no equilibrium at this draw")
        return real(fitted, *args, **kwargs)

    monkeypatch.setattr(counterfactual, "simulate_merger", failing)
    post = ('[post]\ncosts = true\n[post.merger]\nfirms = ["f0", "f1"]\n[post.bootstrap]\n'
            "draws = 4\nrng = 1\n")
    _, saved, _ = _run(folder, "allfail", LINEAR, post)
    assert saved.post_estimation["bootstrap"]["tables"]["bootstrap_merger"]["failed"] == 4
    assert saved.tables["bootstrap_merger"].notes[-1].startswith("4 of 4 draws left out")
    frame = saved.tables["bootstrap_merger"].to_frame()  # NaN survives results.json as floats
    assert frame["std. error"].isna().all() and frame["estimate"].notna().all()
    assert saved.post_estimation["bootstrap"]["tables"]["bootstrap_costs"]["kept"] == 4


def test_every_contraction_failing_names_the_section(folder: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # Reference: the error contract; the contraction is made to fail at every draw.
    from blpdemand.results import bootstrap as module

    def failing(estimate: Any, theta: np.ndarray, *args: Any) -> list[None]:
        return [None] * len(theta)

    monkeypatch.setattr(module, "_solve_chunk", failing)
    post = "[post]\ncosts = true\n[post.bootstrap]\ndraws = 5\n"
    with pytest.raises(SpecificationError, match=(
            r"\[post.bootstrap\] in nodraws.toml: the contraction failed at 5 of 5 parameter "
            r"draws \(0 kept, at least 2 needed\).*hold = \"xi\"")):
        _run(folder, "nodraws", LINEAR, post)


def test_firm_ids_mapping_with_an_unknown_firm(folder: Path) -> None:
    # Reference: the data's firm ids; an unknown old id used to be a silent no-op merger.
    post = ('[post.merger]\nfirm_ids = { f9 = "f0" }\n[post.bootstrap]\ndraws = 3\n')
    with pytest.raises(SpecificationError, match="f9"):
        _run(folder, "typo", LINEAR, post)


@pytest.mark.parametrize("merger", ['firms = ["f0", "f9"]', 'firm_ids = { f9 = "f0" }',
                                    'firm_ids = { f1 = "f0" }\nfirms = ["f0", "f1"]'])
def test_merger_setup_errors_come_before_the_estimation(folder: Path,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        merger: str) -> None:
    # Reference: the data's firm ids ("f0".."f5", column renamed "firm"); an unknown firm, or
    # both forms at once, must stop the run before any estimation (it used to be found after).
    def no_estimation(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the estimation ran before the [post.merger] check")

    # where the CLI looks it up (it imports the estimator from its module, not the package root)
    monkeypatch.setattr("blpdemand.results.blp.estimate", no_estimation)
    with pytest.raises(SpecificationError, match=r"\[post.merger\]"):
        _run(folder, "early", LINEAR, f"[post.merger]\n{merger}\n")
