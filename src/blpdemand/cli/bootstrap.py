"""``[post.bootstrap]``: parametric-bootstrap uncertainty for the ``[post]`` outputs of a run.

The (theta, beta) draws are made once (``bd.bootstrap``: N(estimate, covariance), delta
re-solved or xi held at each draw); every enabled output is then summarized by market over the
draws (``BootstrapDraws.apply``): its estimate, bootstrap mean, standard error and percentile
interval (Krinsky and Robb 1986; Conlon and Gortmaker 2020). Only ``blpdemand estimate``
(BLP results) takes the table; ``check_bootstrap`` runs before the estimation so that a wrong
key, value or command fails at once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from blpdemand._types import FloatArray
from blpdemand.cli.compute import run_executor
from blpdemand.cli.report import Report, head_rows
from blpdemand.cli.spec import Spec, check_keys, firm_mapping, like_column
from blpdemand.errors import SpecificationError
from blpdemand.model.fitted import FittedDemand
from blpdemand.results.bootstrap import BootstrapDraws, BootstrapSummary, bootstrap
from blpdemand.results.tables import Table

SECTION = "[post.bootstrap]"
DEFAULTS: dict[str, Any] = {"draws": 200, "rng": 0, "hold": "shares", "level": 0.95,
                            "workers": 1}
OUTPUTS = ("elasticities", "costs", "merger")  # [post] outputs the bootstrap summarizes


def check_bootstrap(spec: Spec, command: str) -> dict[str, Any] | None:
    """The ``[post.bootstrap]`` options with defaults filled in (None when absent), checked.

    Raises SpecificationError naming the spec file and the key for an unknown key, a bad
    value, the ``logit`` command, or no bootstrapped output enabled in ``[post]``."""
    if "bootstrap" not in spec.post:
        return None
    name = spec.path.name
    given = spec.post["bootstrap"]
    if not isinstance(given, dict):
        raise SpecificationError(f"[post] bootstrap in {name} must be a table {SECTION}")
    check_keys(given, tuple(DEFAULTS), SECTION, name)
    if command != "estimate":
        raise SpecificationError(
            f"{SECTION} in {name} needs 'blpdemand estimate' (BLP results); for a plain logit "
            f"call bd.bootstrap(results) from Python, or remove {SECTION}")
    options = {**DEFAULTS, **given}

    def bad(key: str, expected: str) -> SpecificationError:
        return SpecificationError(f"{SECTION} {key} in {name} must be {expected}, "
                                  f"got {options[key]!r}")

    for key, low in (("draws", 2), ("rng", 0), ("workers", 1)):
        value = options[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise bad(key, f"an integer >= {low}")
    if options["hold"] not in ("shares", "xi"):
        raise bad("hold", "\"shares\" (delta re-solved at each draw) or \"xi\"")
    level = options["level"]
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0 < level < 1:
        raise bad("level", "a number in (0, 1), e.g. 0.95")
    if not (spec.post.get("elasticities", False) or spec.post.get("costs", False)
            or "merger" in spec.post):
        raise SpecificationError(
            f"{SECTION} in {name} summarizes the [post] outputs {', '.join(OUTPUTS)}; enable "
            f"at least one (e.g. elasticities = true in [post])")
    return options


def bootstrap_outputs(spec: Spec, results: Any, report: Report,
                      products: pd.DataFrame) -> dict[str, Any]:
    """One bootstrap table per enabled output; a summary for results.json."""
    from blpdemand.results.blp import BLPResults

    options = check_bootstrap(spec, "estimate")
    assert options is not None
    if not isinstance(results, BLPResults):
        raise SpecificationError(f"{SECTION} in {spec.path.name} needs BLP results "
                                 f"('blpdemand estimate'), got {type(results).__name__}")
    boot = bootstrap(results, draws=options["draws"], rng=options["rng"], hold=options["hold"],
                     workers=options["workers"], executor=run_executor())  # [compute]'s
    if boot.draws < 2:  # apply's own error would not name the section
        raise SpecificationError(
            f"{SECTION} in {spec.path.name}: the contraction failed at {boot.dropped.size} of "
            f"{options['draws']} parameter draws ({boot.draws} kept, at least 2 needed); check "
            f"the estimate's standard errors, or use hold = \"xi\" (no contraction)")
    level, workers = float(options["level"]), int(options["workers"])
    out: dict[str, Any] = {"draws": options["draws"], "kept": boot.draws,
                           "contraction_failed": int(boot.dropped.size), "hold": boot.hold,
                           "level": level, "rng": options["rng"], "tables": {}}
    jobs: list[tuple[str, str, Callable[[FittedDemand], Any], Any, str | None]] = []
    if spec.post.get("elasticities", False):
        jobs.append(("bootstrap_elasticities", "mean own-price elasticity by market",
                     own_elasticity_means, _market_names(boot, "all markets"), None))
    if spec.post.get("costs", False):
        jobs.append(("bootstrap_costs", "mean markup p - c by market", markup_means,
                     _market_names(boot, "all markets"),
                     "the markups (a singular markup system)"))
    if "merger" in spec.post:
        change, labels = merger_changes(spec, products, boot)
        jobs.append(("bootstrap_merger", "merger: mean price change (%) by market", change,
                     labels, "the merger (e.g. non-finite implied costs)"))
    for name, title, function, labels, raises in jobs:
        summary = boot.apply(function, names=labels, workers=workers,
                             errors="raise" if raises is None else "drop")
        table = bootstrap_table(summary, level=level, title=f"Parametric bootstrap: {title}",
                                raises=raises)
        report.table(name, table, show=head_rows(table, 12))
        out["tables"][name] = {"failed": summary.failed, "kept": int(summary.draws.shape[0])}
    return out


def bootstrap_table(summary: BootstrapSummary, *, level: float, title: str,
                    raises: str | None) -> Table:
    """``summary.table`` with a note counting the draws left out because ``raises`` raised."""
    table = summary.table(level=level, title=title)
    if raises is None:
        return table
    note = (f"{summary.failed} of {summary.failed + summary.draws.shape[0]} draws left out: "
            f"{raises} raised there")
    return Table(title=table.title, body=table.body, notes=(*table.notes, note),
                 digits=table.digits)


def own_elasticity_means(fitted: FittedDemand) -> FloatArray:
    """(T + 1,) mean own-price elasticity of each market (problem's market order), then of all
    products."""
    from blpdemand.results.elasticities import own_elasticity_summary

    return np.asarray(own_elasticity_summary(fitted).body["mean"], dtype=np.float64)


def markup_means(fitted: FittedDemand) -> FloatArray:
    """(T + 1,) mean Bertrand-Nash markup p - c of each market, then of all products."""
    from blpdemand.results.costs import compute_markups

    products = fitted.problem.products
    return _market_means(fitted, products.sort(np.asarray(compute_markups(fitted))))


def merger_changes(spec: Spec, products: pd.DataFrame, boot: BootstrapDraws
                   ) -> tuple[Callable[[FittedDemand], FloatArray], list[str]]:
    """The ``[post.merger]`` counterfactual as f(fitted): (T,) mean price change (%) by market,
    then over all products, over the merging firms' products (``firms = [...]`` only), and the
    mean change in consumer surplus per consumer over markets; with the row labels."""
    from blpdemand.results.counterfactual import compute_prices, simulate_merger

    options = dict(spec.post["merger"])
    check_keys(options, ("firms", "firm_ids"), "[post.merger]", spec.path.name)
    if ("firms" in options) == ("firm_ids" in options):  # as the [post.merger] step checks
        raise SpecificationError(f"[post.merger] in {spec.path.name} needs exactly one of "
                                 f"firms = [a, b] (a merger) or firm_ids = {{old = new}}")
    column = products[spec.columns.get("firm_ids", "firm_ids")]
    merging = [like_column(column, f) for f in options.get("firms", [])]
    if merging:
        labels = [*_market_names(boot, "all products"), f"merging firms {merging}"]
    else:
        mapping = firm_mapping(column, options.get("firm_ids", {}), spec.path.name)
        after = column.replace(mapping).to_numpy()
        labels = _market_names(boot, "all products")

    def change(fitted: FittedDemand) -> FloatArray:
        outcome = (simulate_merger(fitted, merging) if merging
                   else compute_prices(fitted, firm_ids=after))
        percent = 100 * fitted.problem.products.sort(outcome.price_changes)
        values = [_market_means(fitted, percent)]
        if merging:
            assert outcome.firm_ids_before is not None
            inside = np.isin(outcome.firm_ids_before, np.asarray(merging))
            values.append(np.array([_nanmean(100 * outcome.price_changes[inside])]))
        # NaN where surplus is undefined in some market (alpha_i >= 0) at this draw: such draws
        # leave this row (counted and warned about), not a mean over a varying set of markets
        values.append(np.array([np.mean(outcome.consumer_surplus_change)]))
        return np.concatenate(values)

    return change, [*labels, "change in CS per consumer (mean over markets)"]


def _market_means(fitted: FittedDemand, values: FloatArray) -> FloatArray:
    """(T + 1,) means of (N,) values in sorted order by market (NaN ignored), then overall."""
    markets = fitted.problem.products.markets
    finite = np.isfinite(values)
    sums = np.bincount(markets.codes[finite], weights=values[finite], minlength=markets.T)
    counts = np.bincount(markets.codes[finite], minlength=markets.T)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums / counts
    return np.append(means, _nanmean(values))


def _nanmean(values: FloatArray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else float("nan")


def _market_names(boot: BootstrapDraws, total: str) -> list[str]:
    return [*(str(m) for m in boot.estimate.problem.products.markets.ids), total]
