"""``[post.bootstrap]`` in ``blpdemand estimate``: bootstrap tables of the [post] outputs.

References: the Python API run here on the live results of the same command (``bd.bootstrap``
with the same draws, rng and hold, then ``apply`` of per-market means written independently
with pandas groupby on the product rows; 1e-10 allows only for summation order), and the
SpecificationError contract (the spec file and the key named, no estimation run).
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

import blpdemand as bd
from blpdemand.cli import main
from blpdemand.cli.bootstrap import bootstrap_outputs
from blpdemand.cli.report import Report
from blpdemand.cli.run import run
from blpdemand.cli.spec import read_spec
from blpdemand.errors import SpecificationError
from blpdemand.model.fitted import FittedDemand
from blpdemand.results.io import load_results

MERGER_FIRMS = "[post.merger]\nfirms = [0, 1]\n"


def _write(folder: Path, post: str, *, logit: bool = False) -> Path:
    """Simulated markets (known truth: alpha = -4, sigma_prices = 0.4: every consumer dislikes higher prices at the estimate and its draws) and a spec over them."""
    products = folder / "products.csv"
    if not products.exists():
        sim = bd.simulate(markets=12, products=6, alpha=-4.0, sigma={"prices": 0.4}, draws=100,
                          rng=4)
        assert sim.agents is not None
        # rivals' sum of x1 (BLP 1995) over-identifies: with the cost shifters alone the model
        # is exactly identified with no root (Q = 0.08 at the minimum), where G is singular
        frame = sim.products.copy()
        frame["rival_x1"] = frame.groupby("market_ids")["x1"].transform("sum") - frame["x1"]
        frame.to_csv(products, index=False)
        sim.agents.to_csv(folder / "agents.csv", index=False)
    instruments = '"w1", "w2", "rival_x1"'  # the simulated cost shifters, a BLP instrument
    model = ('linear = "1 + prices + x1 + x2"' if logit else
             'linear = "1 + prices + x1 + x2"\nnonlinear = "0 + prices"')
    extra = "" if logit else 'agents = "agents.csv"\n[parameters]\nsigma = [[1.0]]\n'
    spec = folder / ("logit.toml" if logit else "s.toml")
    spec.write_text(f'[data]\nproducts = "products.csv"\n{extra}[model]\n{model}\n'
                    f"[instruments]\ncolumns = [{instruments}]\n{post}\n[output]\nplots = false\n")
    return spec


def _run(spec: Path, out: Path) -> Any:
    quiet = Console(file=io.StringIO())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the run records warnings itself
        return run("estimate", spec, output=out, console=quiet, progress=quiet, quiet=True)


@pytest.fixture(scope="module")
def shares_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path, pd.DataFrame]:
    folder = tmp_path_factory.mktemp("bootstrap")
    spec = _write(folder, "[post]\nelasticities = true\ncosts = true\n" + MERGER_FIRMS
                  + "[post.bootstrap]\ndraws = 30\nrng = 1\n")
    live = _run(spec, folder / "out")
    return live, folder / "out", pd.read_csv(folder / "products.csv")


def _by_market(values: np.ndarray, markets: pd.Series) -> np.ndarray:
    """Per-market means (sorted market ids) then the overall mean, NaN skipped (pandas)."""
    series = pd.Series(values)
    return np.append(series.groupby(markets.to_numpy()).mean().to_numpy(), series.mean())


def _check(table: Any, summary: bd.BootstrapSummary, level: float = 0.95) -> None:
    # Reference: the API's summary over the same draws (1e-10: summation order only).
    frame = table.to_frame()
    np.testing.assert_allclose(frame["std. error"].to_numpy(float), summary.std, rtol=1e-10)
    np.testing.assert_allclose(frame["estimate"].to_numpy(float), summary.estimate, rtol=1e-10)
    lo, hi = summary.interval(level)
    np.testing.assert_allclose(frame[f"[{(1 - level) / 2:.3f}"].to_numpy(float), lo, rtol=1e-10)
    np.testing.assert_allclose(frame[f"{(1 + level) / 2:.3f}]"].to_numpy(float), hi, rtol=1e-10)


def test_tables_equal_the_python_api(shares_run) -> None:
    live, out, products = shares_run
    saved = load_results(out / "results.json")
    markets = products["market_ids"]
    prices = products["prices"].to_numpy()
    boot = bd.bootstrap(live, draws=30, rng=1, hold="shares")

    def own(f: FittedDemand) -> np.ndarray:
        return _by_market(bd.compute_elasticities(f).diagonal(), markets)

    def markups(f: FittedDemand) -> np.ndarray:
        return _by_market(prices - bd.compute_costs(f), markets)

    def merger(f: FittedDemand) -> np.ndarray:
        outcome = bd.simulate_merger(f, [0, 1])
        changes = 100 * outcome.price_changes
        inside = products["firm_ids"].isin([0, 1]).to_numpy()
        return np.concatenate([_by_market(changes, markets), [changes[inside].mean()],
                               [outcome.consumer_surplus_change.mean()]])

    for name, function in (("bootstrap_elasticities", own), ("bootstrap_costs", markups),
                           ("bootstrap_merger", merger)):
        _check(saved.tables[name], boot.apply(function))
        assert (out / f"{name}.tex").exists() and (out / f"{name}.html").exists()
    labels = list(saved.tables["bootstrap_merger"].body.index)
    assert labels[:12] == [str(m) for m in sorted(markets.unique())]
    assert labels[12:] == ["all products", "merging firms [0, 1]",
                           "change in CS per consumer (mean over markets)"]
    assert "0 of 30 draws left out" in " ".join(saved.tables["bootstrap_merger"].notes)
    summary = saved.post_estimation["bootstrap"]
    assert summary["draws"] == summary["kept"] == 30 and summary["hold"] == "shares"
    assert set(summary["tables"]) == {"bootstrap_elasticities", "bootstrap_costs",
                                      "bootstrap_merger"}


def test_hold_xi_level_and_firm_ids_merger(tmp_path: Path) -> None:
    # Only the merger is enabled: only its table; hold = "xi" and level = 0.9 reach the API.
    spec = _write(tmp_path, "[post.merger]\nfirm_ids = { 1 = 0 }\n[post.bootstrap]\n"
                            'draws = 12\nrng = 5\nhold = "xi"\nlevel = 0.9\n')
    live = _run(spec, tmp_path / "out")
    saved = load_results(tmp_path / "out" / "results.json")
    assert not {"bootstrap_elasticities", "bootstrap_costs"} & set(saved.tables)
    products = pd.read_csv(tmp_path / "products.csv")
    after = products["firm_ids"].replace({1: 0}).to_numpy()

    def merger(f: FittedDemand) -> np.ndarray:
        outcome = bd.compute_prices(f, firm_ids=after)
        return np.append(_by_market(100 * outcome.price_changes, products["market_ids"]),
                         outcome.consumer_surplus_change.mean())

    _check(saved.tables["bootstrap_merger"],
           bd.bootstrap(live, draws=12, rng=5, hold="xi").apply(merger), level=0.9)
    assert saved.post_estimation["bootstrap"]["hold"] == "xi"


@pytest.mark.parametrize(("line", "message"), [
    ("drawz = 10", r"unknown key 'drawz' in \[post.bootstrap\] of s.toml; valid: draws, hold"),
    ("draws = 1", r"\[post.bootstrap\] draws in s.toml must be an integer >= 2, got 1"),
    ("draws = 2.5", r"\[post.bootstrap\] draws in s.toml must be an integer"),
    ("rng = -1", r"\[post.bootstrap\] rng in s.toml must be an integer >= 0"),
    ("rng = true", r"\[post.bootstrap\] rng in s.toml must be an integer"),
    ('hold = "delta"', r"\[post.bootstrap\] hold in s.toml must be \"shares\""),
    ("level = 1.5", r"\[post.bootstrap\] level in s.toml must be a number in \(0, 1\)"),
    ('level = "0.9"', r"\[post.bootstrap\] level in s.toml must be a number"),
    ("workers = 0", r"\[post.bootstrap\] workers in s.toml must be an integer >= 1"),
])
def test_bad_keys_and_values(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, line: str,
                             message: str) -> None:
    # Reference: the error contract; raised before the estimation (bd.estimate would fail).
    def no_estimation(*args: object, **kwargs: object) -> None:
        raise AssertionError("the spec should fail before the estimation")

    # where the CLI looks it up (it imports the estimator from its module, not the package root)
    monkeypatch.setattr("blpdemand.results.blp.estimate", no_estimation)
    spec = _write(tmp_path, f"[post]\nelasticities = true\n[post.bootstrap]\n{line}\n")
    with pytest.raises(SpecificationError, match=message):
        _run(spec, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_not_a_table_no_outputs_and_logit(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                           ) -> None:
    # Decision: [post.bootstrap] is an error (one line, status 2) unless 'estimate' has an
    # output to summarize; a logit run and a non-table value are errors too.
    spec = _write(tmp_path, "[post]\nbootstrap = 3\n")
    assert main(["estimate", str(spec), "-o", str(tmp_path / "out")]) == 2
    assert "[post] bootstrap in s.toml must be a table" in capsys.readouterr().err
    spec = _write(tmp_path, "[post]\ndiversion = true\n[post.bootstrap]\n")
    assert main(["estimate", str(spec), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "[post.bootstrap] in s.toml summarizes the [post] outputs" in err
    assert "elasticities, costs, merger" in err
    logit = _write(tmp_path, "[post]\nelasticities = true\n[post.bootstrap]\n", logit=True)
    assert main(["logit", str(logit), "-o", str(tmp_path / "out")]) == 2
    assert "[post.bootstrap] in logit.toml needs 'blpdemand estimate'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_logit_results_are_refused(tmp_path: Path) -> None:
    # Reference: the contract of bootstrap_outputs itself: only BLP results are bootstrapped.
    spec = read_spec(_write(tmp_path, "[post]\nelasticities = true\n[post.bootstrap]\n"))
    products = pd.read_csv(tmp_path / "products.csv")
    logit = bd.estimate_logit(products, linear="1 + prices + x1 + x2",
                              instruments=["w1", "w2"])
    report = Report(Console(file=io.StringIO()), None)
    with pytest.raises(SpecificationError, match=r"needs BLP results .* got LogitResults"):
        bootstrap_outputs(spec, logit, report, products)
