"""Estimates side by side: the regression table of applied papers and lectures.

One column per model (e.g. OLS and IV, each without and with controls), one pair of rows per
parameter: the estimate, then its standard error in parentheses; then the number of
observations, the first-stage F of each endogenous regressor (IV only) and the mean own-price
elasticity, e_jj = (d s_j / d p_j) p_j / s_j averaged over products.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from blpdemand.errors import SpecificationError
from blpdemand.results.blp import BLPResults
from blpdemand.results.logit import LogitResults
from blpdemand.results.tables import Table


def _estimates(results: Any) -> tuple[pd.Series, pd.Series]:
    """(estimates, standard errors) by parameter name of logit or BLP results."""
    if isinstance(results, LogitResults):
        return results.params, results.bse
    if isinstance(results, BLPResults):
        names = pd.Index(list(results.names))
        return (pd.Series(results.estimates, index=names),
                pd.Series(results.standard_errors, index=names))
    raise SpecificationError(f"regression_table takes LogitResults or BLPResults, got "
                             f"{type(results).__name__} (for model {results!r:.40})")


def _own_price_elasticity(results: Any) -> float:
    if isinstance(results, LogitResults) and "prices" in results.names:
        return float(np.mean(results.own_price_elasticities()))
    if isinstance(results, BLPResults) and "prices" in results.problem.X1.names:
        from blpdemand.results.elasticities import compute_elasticities

        return float(np.mean(compute_elasticities(results).diagonal()))
    return float("nan")


def regression_table(models: Mapping[str, Any], *, parameters: Sequence[str] | None = None,
                     title: str = "Estimates", digits: int = 4) -> Table:
    """A table with one column per model: estimates over (standard errors), N, first-stage F
    and the mean own-price elasticity.

    Parameters
    ----------
    models : {column label: LogitResults or BLPResults}, in column order.
    parameters : the parameters to show, in order (default: every parameter of any model, in
        order of first appearance); a model without a parameter shows an empty cell.

    Examples
    --------
    >>> table = bd.regression_table({"OLS": ols, "IV": iv}, parameters=["prices"])  # doctest: +SKIP
    >>> print(table)                                                                # doctest: +SKIP
    """
    if not models:
        raise SpecificationError("regression_table needs at least one model")
    estimates = {label: _estimates(results) for label, results in models.items()}
    if parameters is None:
        order: list[str] = []
        for values, _ in estimates.values():
            order += [str(n) for n in values.index if str(n) not in order]
        parameters = order
    unknown = [p for p in parameters if not any(p in v.index for v, _ in estimates.values())]
    if unknown:
        raise SpecificationError(
            f"no model has parameter(s) {unknown}; parameters: "
            f"{sorted({str(n) for v, _ in estimates.values() for n in v.index})}")

    def number(value: float) -> str:
        return "" if not np.isfinite(value) else f"{value:.{digits}f}"

    rows: dict[str, list[str]] = {}
    for name in parameters:
        rows[name] = []
        rows[f"  ({name})"] = []
        for values, errors in estimates.values():
            present = name in values.index
            rows[name].append(number(float(values[name])) if present else "")
            rows[f"  ({name})"].append(f"({number(float(errors[name]))})"
                                       if present and np.isfinite(errors[name]) else "")
    rows["N"] = [str(int(results.problem.N)) for results in models.values()]
    endogenous: list[str] = []
    for results in models.values():
        stages = getattr(results, "first_stage", None)
        for stage in getattr(stages, "stages", ()):
            if stage.endogenous not in endogenous:
                endogenous.append(stage.endogenous)
    for name in endogenous:
        rows[f"first-stage F ({name})"] = []
        for results in models.values():
            stages = getattr(results, "first_stage", None)
            found = [s for s in getattr(stages, "stages", ()) if s.endogenous == name]
            rows[f"first-stage F ({name})"].append(number(found[0].f_statistic) if found else "")
    rows["mean own-price elasticity"] = [number(_own_price_elasticity(r))
                                         for r in models.values()]
    body = pd.DataFrame(rows, index=list(models)).T
    note = ("standard errors in parentheses, as each model computed them; first-stage F of "
            "the excluded instruments (the covariance each model used)")
    notes = (note,)
    return Table(title=title, body=body, notes=notes, digits=digits)
