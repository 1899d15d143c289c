"""Table renderers and the coefficient table, checked against closed forms."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from blpdemand.errors import SpecificationError
from blpdemand.results.tables import Table, coefficient_table, format_value, latex_escape


def test_coefficient_table_closed_form() -> None:
    # Reference: closed form. t = b/se; normal two-sided p = erfc(|t|/sqrt 2); CI = b -+ 1.95996 se.
    table = coefficient_table(["prices", "x"], [-2.0, 0.5], [0.5, 1.0], title="t")
    body = table.to_frame()
    assert body.loc["prices", "t"] == pytest.approx(-4.0, abs=1e-14)
    assert body.loc["x", "p-value"] == pytest.approx(math.erfc(0.5 / math.sqrt(2)), rel=1e-12)
    assert body.loc["prices", "[0.025"] == pytest.approx(-2.0 - 1.959963984540054 * 0.5, rel=1e-12)
    assert body.loc["prices", "0.975]"] == pytest.approx(-2.0 + 1.959963984540054 * 0.5, rel=1e-12)


def test_coefficient_table_student_t() -> None:
    # Reference: Student t with 10 df, 0.975 quantile 2.228138851986 (standard tables), 1e-10.
    body = coefficient_table(["a"], [1.0], [1.0], df=10).to_frame()
    assert body.loc["a", "0.975]"] == pytest.approx(1.0 + 2.228138851986, abs=1e-10)


def test_zero_standard_error_gives_blank_t() -> None:
    # Reference: t undefined when se = 0 -> NaN rendered blank.
    table = coefficient_table(["a"], [1.0], [0.0])
    assert np.isnan(table.to_frame().loc["a", "t"])
    assert table.rows[0][3] == ""


def test_renderers_contain_the_numbers() -> None:
    body = pd.DataFrame({"estimate": [-0.169394, 1.5], "n": [9694, 3]}, index=["prices", "1"])
    table = Table(title="IV logit_x & y", body=body, notes=("N = 9,694",))
    text = table.to_text()
    assert "-0.1694" in text and "9,694" in text and text.splitlines()[0] == "IV logit_x & y"
    latex = table.to_latex(label="tab:iv")
    assert "\\toprule" in latex and "IV logit\\_x \\& y" in latex and "-0.1694" in latex
    html = table.to_html()
    assert "<caption>IV logit_x &amp; y</caption>" in html and "-0.1694" in html
    from rich.console import Console

    console = Console(record=True, width=120)
    console.print(table)
    assert "-0.1694" in console.export_text()
    assert table.to_frame().equals(body)


def test_table_is_frozen_and_copies_body() -> None:
    body = pd.DataFrame({"a": [1.0]})
    table = Table(title="x", body=body)
    body.loc[0, "a"] = 2.0
    assert table.to_frame().loc[0, "a"] == 1.0
    with pytest.raises(AttributeError):
        table.title = "y"  # type: ignore[misc]


def test_bad_inputs() -> None:
    with pytest.raises(SpecificationError, match="DataFrame"):
        Table(title="x", body=[1, 2])  # type: ignore[arg-type]
    with pytest.raises(SpecificationError, match="names"):
        coefficient_table(["a", "b"], [1.0], [1.0])


def test_format_value() -> None:
    assert format_value(float("nan")) == ""
    assert format_value(1.23456e-7) == "1.235e-07"
    assert format_value(3) == "3"
    assert latex_escape("50%") == "50\\%"
