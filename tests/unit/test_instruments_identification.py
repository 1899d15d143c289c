"""Identification checks: rank, all-zero and collinear columns by name, counts, unused instruments.

References: matrices built here with a known rank (a column equal to the sum of two others, a
zero column), and the Nevo data where an instrument constant within product is absorbed by
product fixed effects exactly (closed form: demeaning a group constant gives zero).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import blpdemand as bd
from blpdemand.errors import SpecificationError


def test_diagnosis_names_zero_and_collinear_columns() -> None:
    # Known structure: d = a + b (rank 3 of 5), e = 0.
    rng = np.random.default_rng(0)
    Z = rng.normal(size=(60, 3))
    Z = np.column_stack([Z, Z[:, 0] + Z[:, 1], np.zeros(60)])
    report = bd.instruments.diagnose_instruments(Z, list("abcde"), n_parameters=2)
    assert report.rank == 3 and report.zero_columns == ("e",)
    assert report.collinear_columns == ("d",) and not report.identified
    with pytest.raises(SpecificationError, match=r"\['e'\] are all zero"):
        bd.check_identification(Z, list("abcde"), n_parameters=2)
    with pytest.raises(SpecificationError, match=r"rank 3 of 4.*\['d'\]"):
        bd.check_identification(Z[:, :4], list("abcd"), n_parameters=2)


def test_too_few_moments_names_the_counts() -> None:
    Z = np.random.default_rng(1).normal(size=(30, 2))
    with pytest.raises(SpecificationError, match=r"2 moment\(s\).*3 parameter\(s\) \['a', 'b', "
                                                  r"'c'\]; add at least 1"):
        bd.check_identification(Z, ["z1", "z2"], n_parameters=3, parameter_names=["a", "b", "c"])
    report = bd.check_identification(Z, ["z1", "z2"], n_parameters=2)
    assert report.identified and report.n_moments == 2


def test_problem_reports_absorbed_and_collinear_instruments(nevo_products: pd.DataFrame) -> None:
    # sugar is constant within product, so product fixed effects absorb it exactly; an excluded
    # instrument equal to an exogenous X1 column is collinear with it.
    with pytest.raises(SpecificationError, match=r"\['sugar'\] are all zero \(after absorbing"):
        bd.Problem(nevo_products, linear="prices", absorb="C(product_ids)",
                   instruments=["demand_instruments0", "sugar"])
    with pytest.raises(SpecificationError, match=r"column\(s\) \['sugar'\] are collinear"):
        bd.Problem(nevo_products, linear="prices + sugar", instruments=["demand_instruments0",
                                                                       "sugar"])
    with pytest.raises(SpecificationError, match=r"too few instruments: 2 moment\(s\)"):
        bd.Problem(nevo_products, linear="prices + sugar")


def test_problem_rejects_unused_instruments(nevo_products: pd.DataFrame) -> None:
    # No endogenous X1 column and no nonlinear part: the excluded instruments do nothing.
    with pytest.raises(SpecificationError, match=r"\['demand_instruments0'\] are given but not"):
        bd.Problem(nevo_products, linear="sugar + mushy", instruments=["demand_instruments0"])


def test_builder_frames_line_up_inside_problem(nevo_products: pd.DataFrame) -> None:
    # A Hausman frame built on shuffled rows enters ZD row by row: Problem sorts it with the
    # products, so ZD's column equals the frame sorted the same way (exact).
    shuffled = nevo_products.sample(frac=1.0, random_state=9)
    z = bd.build_hausman_instruments(shuffled, within="quarter")
    problem = bd.Problem(shuffled, linear="prices", absorb="C(product_ids)", instruments=z)
    column = problem.ZD.column("hausman_prices")
    assert np.array_equal(column, problem.products.sort(z["hausman_prices"].to_numpy()))
