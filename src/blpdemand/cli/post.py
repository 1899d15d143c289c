"""Post-estimation for the command line: the ``[post]`` section of a specification.

Each requested output is one step (a progress bar runs over them); every number comes from
the library's post-estimation functions and display objects.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from blpdemand.cli.compute import run_executor
from blpdemand.cli.report import Report, head_rows
from blpdemand.cli.spec import Spec, check_keys, firm_mapping, like_column
from blpdemand.errors import SpecificationError
from blpdemand.results.elasticities import MarketMatrices
from blpdemand.results.plots import TOP_PRODUCTS, ElasticityHeatmap, market_shares
from blpdemand.results.tables import Table, top_by_share


def post_estimation(spec: Spec, results: Any, report: Report, products: pd.DataFrame, *,
                    runner: Callable[[list[Callable[[], Any]]], list[Any]] | None = None,
                    refit: dict[str, Any] | None = None) -> dict[str, Any]:
    """Requested post-estimation outputs: tables and plots in the report, a JSON summary back.

    The steps run through ``runner`` (a progress bar in the terminal); their tables are shown
    once all steps are done."""
    post = spec.post
    market = post.get("market")
    ids = spec.columns.get("market_ids", "market_ids")
    if market is not None and ids in products.columns:
        market = like_column(products[ids], market)  # market = "3" for integer ids, 1995 for "1995"
    # the estimate's diagnostics first, then the economics: the profiles' many panels are the
    # slowest figure to draw (nevo.toml: 0.8 s), which the figure helpers then start early
    steps: list[tuple[str, Callable[[], Any]]] = []
    if post.get("profiles", False):
        steps.append(("profiles", lambda: _profiles(spec, results, report)))
    if post.get("contour", False):
        steps.append(("contour", lambda: _contour(spec, results, report)))
    if post.get("stability", False):
        steps.append(("stability", lambda: _stability(spec, results, report, refit or {})))
    if post.get("elasticities", False):
        steps.append(("own_price_elasticities", lambda: _elasticities(results, report, market)))
    if post.get("diversion", False):
        steps.append(("diversion", lambda: _diversion(results, report, market)))
    if post.get("passthrough", False):
        steps.append(("passthrough", lambda: _passthrough(results, report, market)))
    if post.get("costs", False):
        steps.append(("costs", lambda: _costs(spec, results, report, products)))
    if "merger" in post:
        steps.append(("merger", lambda: merger(spec, results, report, products)))
    if "bootstrap" in post:  # after the outputs it summarizes (cli_bootstrap)
        from blpdemand.cli.bootstrap import bootstrap_outputs
        steps.append(("bootstrap", lambda: bootstrap_outputs(spec, results, report, products)))
    run_steps = runner if runner is not None else (lambda jobs: [job() for job in jobs])
    with report.deferred():
        values = run_steps([step for _, step in steps])
    return {key: value for (key, _), value in zip(steps, values) if value is not None}


def _elasticities(results: Any, report: Report, market: Any) -> dict[str, Any]:
    from blpdemand.results.elasticities import compute_elasticities, own_elasticity_summary

    table = own_elasticity_summary(results)
    report.table("elasticities", table, show=head_rows(table, 12))
    matrices = compute_elasticities(results)
    _matrix(results, report, matrices, "elasticities", market)
    return _row(table.body, -1)


def _matrix(results: Any, report: Report, matrices: MarketMatrices, kind: str,
            market: Any) -> None:
    """One market's matrix: in full to CSV (and Parquet) and the JSON; LaTeX, HTML and the
    heatmap show the products with the largest shares (``TOP_PRODUCTS``), as their captions say."""
    chosen = market if market is not None else matrices.market_ids[0]
    name = f"{kind}_market_{chosen}"
    full = matrices.table(chosen)
    csv = report.data(name, full.body)
    shares = market_shares(results, matrices, chosen)
    body, kept = top_by_share(full.body, shares, top=TOP_PRODUCTS)
    cut = None
    if kept:
        where = f"; full matrix in {csv}" if csv is not None else ""
        cut = Table(title=f"{full.title} ({kept}{where})", body=body, notes=full.notes,
                    digits=full.digits)
    report.table(name, full, show=False, files=cut)
    heatmap = ElasticityHeatmap.from_results(matrices, market=chosen, shares=shares)
    report.figure(f"{kind}_heatmap", heatmap.plot)


def _profiles(spec: Spec, results: Any, report: Report) -> None:
    """Q along each nonlinear parameter, the others at the estimate (a panel each)."""
    from blpdemand.results.diagnostics import ObjectiveProfile

    profile = ObjectiveProfile.from_results(results, workers=_cores(), executor=run_executor())
    report.table("objective_profiles", profile.table(), show=False)
    report.figure("objective_profiles", profile.plot, panels=len(profile.names))


def _stability(spec: Spec, results: Any, report: Report, refit: dict[str, Any]) -> Any:
    """Re-estimate with the integration rule refined by each factor (default 1, 2, 4)."""
    from blpdemand.results.diagnostics import DrawsStability

    chosen = spec.post["stability"]
    factors = (1, 2, 4) if chosen is True else tuple(int(f) for f in chosen)
    stability = DrawsStability.from_results(results, refit["integration"], factors=factors,
                                            make_problem=refit["make_problem"],
                                            executor=run_executor())
    table = stability.table()
    report.table("draws_stability", table)
    report.figure("draws_stability", stability.plot)
    return {"factors": list(factors), "table": "draws_stability"}


def _contour(spec: Spec, results: Any, report: Report) -> None:
    """Q on a 2-D grid of two parameters around the estimate."""
    from blpdemand.results.diagnostics import ObjectiveContour

    chosen = spec.post["contour"]
    parameters = (0, 1) if chosen is True else tuple(chosen)
    if len(results.theta) < 2:
        raise SpecificationError(f"[post] contour in {spec.path.name} needs two nonlinear "
                                 f"parameters; the model has {len(results.theta)}")
    report.figure("objective_contour",
                  ObjectiveContour.from_results(results, parameters=parameters, workers=_cores(),
                                                executor=run_executor()).plot)


def _diversion(results: Any, report: Report, market: Any) -> None:
    from blpdemand.results.diversion import compute_diversion_ratios

    _matrix(results, report, compute_diversion_ratios(results), "diversion", market)


def _passthrough(results: Any, report: Report, market: Any) -> None:
    from blpdemand.results.passthrough import compute_passthrough

    _matrix(results, report, compute_passthrough(results), "passthrough", market)


def _costs(spec: Spec, results: Any, report: Report, products: pd.DataFrame) -> list[Any]:
    from blpdemand.results.costs import compute_costs

    costs = np.asarray(compute_costs(results), dtype=np.float64)
    prices = products[spec.columns.get("prices", "prices")].to_numpy(dtype=np.float64)
    markups = prices - costs
    body = pd.DataFrame({"mean": [], "median": [], "min": [], "max": []})
    for name, values in (("marginal costs", costs), ("markups", markups),
                         ("Lerner index", markups / prices)):
        body.loc[name] = (values.mean(), np.median(values), values.min(), values.max())
    report.table("costs", Table(title="Bertrand-Nash marginal costs and markups", body=body,
                                notes=(("c = p - eta(p): markups from the firms' first-order "
                                        "conditions at the observed prices"),)))
    return [_row(body, k) for k in range(len(body))]


def check_post_options(spec: Spec) -> None:
    """``[post]`` values that need no data, before anything is read: stability factors and
    the shape of ``contour``."""
    name = spec.path.name
    stability = spec.post.get("stability", False)
    if isinstance(stability, list) and not (stability and all(
            isinstance(f, int) and not isinstance(f, bool) and f >= 1 for f in stability)):
        raise SpecificationError(f"[post] stability in {name} must be true or a list of "
                                 f"integers >= 1 (draw multipliers like [1, 2, 4]), "
                                 f"got {stability!r}")
    contour = spec.post.get("contour", False)
    if isinstance(contour, list) and not (len(contour) == 2 and all(
            isinstance(p, (str, int)) and not isinstance(p, bool) for p in contour)):
        raise SpecificationError(f"[post] contour in {name} must be true or a list of two "
                                 f"parameter names like [\"sigma[prices, prices]\", "
                                 f"\"pi[prices, income]\"], got {contour!r}")


def check_contour(spec: Spec, names: tuple[str, ...]) -> None:
    """``[post] contour`` names two distinct parameters of the model (``names``, theta's order)."""
    contour = spec.post.get("contour", False)
    if contour is False:
        return
    chosen = [0, 1] if contour is True else list(contour)
    index = [names.index(p) if isinstance(p, str) and p in names
             else p if isinstance(p, int) and 0 <= p < len(names) else None for p in chosen]
    if len(names) < 2 or None in index or index[0] == index[1]:
        raise SpecificationError(f"[post] contour in {spec.path.name} needs two distinct "
                                 f"nonlinear parameters of the model, got {contour!r}; the "
                                 f"model's are {list(names)}")


def check_post_data(spec: Spec, products: pd.DataFrame) -> None:
    """``[post]`` values that name the data, before the estimation: the market of the per-market
    tables and heatmaps, and the firm ids that the costs need."""
    name = spec.path.name
    market = spec.post.get("market")
    ids = spec.columns.get("market_ids", "market_ids")
    if market is not None and ids in products.columns:
        column = products[ids]
        known = set(column.tolist())
        if like_column(column, market) not in known:
            examples = ", ".join(repr(m) for m in list(dict.fromkeys(column.tolist()))[:3])
            raise SpecificationError(f"[post] market in {name}: market {market!r} is not in the "
                                     f"data's market ids (column '{ids}': {examples}, ...)")
    if spec.post.get("costs", False):
        firms = spec.columns.get("firm_ids", "firm_ids")
        if firms not in products.columns:
            raise SpecificationError(f"[post] costs in {name} needs a firm id column '{firms}' "
                                     f"in the products (the firms' first-order conditions), or "
                                     f"map one in [columns] firm_ids")
        if products[firms].isna().any():
            raise SpecificationError(f"[post] costs in {name}: the firm id column '{firms}' has "
                                     f"{int(products[firms].isna().sum())} missing value(s); "
                                     f"every product needs an owner")


def check_merger(spec: Spec, products: pd.DataFrame) -> None:
    """``[post.merger]`` before the estimation: its keys, and firms that are in the data."""
    if "merger" not in spec.post:
        return
    options = dict(spec.post["merger"])
    check_keys(options, ("firms", "firm_ids"), "[post.merger]", spec.path.name)
    if ("firms" in options) == ("firm_ids" in options):
        raise SpecificationError(f"[post.merger] in {spec.path.name} needs exactly one of "
                                 f"firms = [a, b] (a merger) or firm_ids = {{old = new}}")
    name = spec.columns.get("firm_ids", "firm_ids")
    if name not in products.columns:
        raise SpecificationError(f"[post.merger] in {spec.path.name} needs a firm id column "
                                 f"'{name}' in the products")
    column = products[name]
    if "firm_ids" in options:
        firm_mapping(column, options["firm_ids"], spec.path.name)
        return
    firms = [like_column(column, f) for f in options["firms"]]
    unknown = [f for f in firms if f not in set(column.tolist())]
    if unknown:
        raise SpecificationError(f"[post.merger] firms in {spec.path.name}: firm(s) {unknown} "
                                 "are not in the data's firm ids")


def merger(spec: Spec, results: Any, report: Report, products: pd.DataFrame) -> dict[str, Any]:
    """``[post.merger]``: ``firms = [1, 2]`` (they merge under the first id) or
    ``firm_ids = {old = new, ...}`` (any new ownership); equilibrium prices after it."""
    from blpdemand.results.counterfactual import compute_prices, simulate_merger

    check_merger(spec, products)
    options = dict(spec.post["merger"])
    column = products[spec.columns.get("firm_ids", "firm_ids")]
    if "firms" in options:
        outcome = simulate_merger(results, [like_column(column, f) for f in options["firms"]],
                                  executor=run_executor())  # blocks of markets as jobs
    else:
        mapping = firm_mapping(column, options["firm_ids"], spec.path.name)
        outcome = compute_prices(results, firm_ids=column.replace(mapping).to_numpy(),
                                 executor=run_executor())
    table = outcome.summary()
    report.table("merger", table, show=head_rows(table, 12))
    changes = np.asarray(outcome.price_changes, dtype=np.float64)
    return {"converged": bool(outcome.converged),
            "failed_markets": [str(m) for m in outcome.failed_markets],
            "mean_price_change_percent": float(100 * np.nanmean(changes)),
            "mean_consumer_surplus_change": float(np.nanmean(outcome.consumer_surplus_change))}


def _row(body: pd.DataFrame, k: int) -> dict[str, Any]:
    row = body.iloc[k]
    return {"label": str(body.index[k]), **{str(c): row[c] for c in body.columns}}


def _cores() -> int:
    """Threads for the objective evaluations of profiles and contours (the same values for any
    number): the cores this process may use."""
    import os

    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
               else os.cpu_count() or 1)
