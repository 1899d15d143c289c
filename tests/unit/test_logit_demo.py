"""`blpdemand demo`: OLS is biased toward zero, IV is close to the simulation's truth."""

from __future__ import annotations

import re

import pytest

from blpdemand.cli import main
from blpdemand.cli.demo import run_demo


def test_cli_demo_shows_ols_bias(capsys: pytest.CaptureFixture[str]) -> None:
    # Reference: the simulation's true price coefficient (-1), printed next to both estimates.
    assert main(["demo", "--markets", "40", "--products", "10"]) == 0
    out = capsys.readouterr().out
    match = re.search(r"price coefficient: truth (-?[\d.]+), OLS (-?[\d.]+).*?IV (-?[\d.]+)",
                      " ".join(out.split()))
    assert match, out
    truth, ols, iv = map(float, match.groups())
    assert truth == -1.0
    assert abs(iv - truth) < abs(ols - truth)
    assert truth < ols < 0  # toward zero
    assert "Logit demand (2SLS)" in out and "Logit demand (OLS)" in out


def test_run_demo_tables() -> None:
    # Reference: the table's numbers are the fitted params (same objects).
    report = run_demo(markets=20, products=8, rng=3)
    truth, ols, iv = report.alpha
    body = report.comparison.to_frame()
    assert body.loc["prices", "truth"] == truth
    assert body.loc["prices", "OLS"] == ols and body.loc["prices", "IV"] == iv
    assert len(report.sections[0].tables) == 3  # comparison, OLS, IV
