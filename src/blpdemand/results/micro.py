"""The micro-moments table: each survey statistic observed, fitted at the estimate, and apart.

For moment m: observed f_m(v_bar), fitted f_m(v(theta_hat)), difference f_m(v_bar) - f_m(v),
its survey standard error sqrt(Cov(f)_mm) (the delta method over the survey's N_d draws at the
estimate; Conlon and Gortmaker 2023) and the difference in those standard errors.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from blpdemand.errors import SpecificationError
from blpdemand.results.tables import Table

NOTE = ("survey SE: sqrt of the delta-method variance of f(v) over the survey's N_d draws at "
        "the estimate")


def micro_table(results: Any) -> Table:
    """Observed, fitted, difference and difference / survey SE for every micro moment."""
    problem, values = results.problem, results.micro
    if problem.micro is None or values is None:
        raise SpecificationError("these results have no micro moments; pass micro=[...] to "
                                 "bd.Problem")
    se = np.sqrt(np.clip(np.diag(values.covariance), 0.0, None))
    difference = values.observed - values.values
    surveys, observations = [], []
    for m in problem.micro.moments:
        used = {p.survey.name: p.survey.observations for p in m.parts}
        surveys.append(", ".join(used))
        observations.append(", ".join(str(n) for n in used.values()))
    body = pd.DataFrame({
        "moment": list(problem.micro.names), "observed": values.observed,
        "fitted": values.values, "difference": difference, "survey SE": se,
        "difference / SE": np.divide(difference, se, out=np.full(se.shape, np.nan),
                                     where=se > 0),
        "survey": surveys, "observations": observations})
    return Table(title="Micro moments at the estimate", body=body,
                 notes=(NOTE,))
