"""``[comparison]`` in a logit spec: the lecture's table through the command line.

References: ``bd.regression_table`` of the same models estimated here with the Python API
(the same computation: the table's cells are equal strings), and the independent numbers of
../shared/data/course/PROVENANCE.md for the model with controls (OLS -0.03367, 2SLS -0.16939).
"""

from __future__ import annotations

import contextlib
import io
import tomllib
from pathlib import Path

import pandas as pd
import pytest

import blpdemand as bd
from blpdemand.cli import main
from blpdemand.cli.spec import parse_spec
from blpdemand.errors import SpecificationError
from blpdemand.results.io import load_results

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CONTROLS = ("prices + np.log(height) + np.log(footprint) + np.log(hp) + np.log(mpg) "
            "+ np.log(weight) + np.log(number_trims) + releaseYear + yearsSinceDesign + sport "
            "+ EV + truck + suv + van")
COLUMNS = {"market_ids": "year", "shares": "market_share", "prices": "price",
           "firm_ids": "parent", "product_ids": "product_id"}


def test_the_lecture_spec_prints_the_table_the_api_gives(tmp_path: Path, data_path: Path,
                                                         cars: pd.DataFrame,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BLPDEMAND_DATA", str(data_path))
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert main(["logit", str(EXAMPLES / "cars_lecture.toml"), "--output",
                     str(tmp_path / "out"), "--quiet"]) == 0
    saved = load_results(tmp_path / "out" / "results.json").tables["comparison"].to_frame()
    common = {"absorb": "C(market_ids) + C(make)", "columns": COLUMNS}
    models = {
        "IV, controls": bd.estimate_logit(cars, linear=CONTROLS, instruments=["RXR"],
                                          method="2sls", **common),
        "OLS, no controls": bd.estimate_logit(cars, linear="prices", method="ols", **common),
        "OLS, controls": bd.estimate_logit(cars, linear=CONTROLS, method="ols", **common),
        "IV, no controls": bd.estimate_logit(cars, linear="prices", instruments=["RXR"],
                                             method="2sls", **common)}
    expected = bd.regression_table(models, parameters=["prices"]).to_frame()
    pd.testing.assert_frame_equal(saved.astype(str), expected.astype(str), check_names=False)
    assert float(saved.loc["prices", "OLS, controls"]) == pytest.approx(-0.03367, abs=5e-5)
    assert float(saved.loc["prices", "IV, controls"]) == pytest.approx(-0.16939, abs=5e-5)


def _spec(text: str, tmp_path: Path) -> Path:
    (tmp_path / "p.csv").write_text("market_ids,product_ids,shares,prices\n1,1,0.2,1.0\n")
    path = tmp_path / "s.toml"
    path.write_text('[data]\nproducts = "p.csv"\n[model]\nlinear = "prices"\n' + text)
    return path


@pytest.mark.parametrize(("text", "message"), [
    ('[comparison]\nmodels = [{method = "ols"}]\n', "needs label"),
    ('[comparison]\nmodels = [{label = "model"}]\n', "labels .* must differ"),
    ('[comparison]\nmodels = [{label = "a", tol = 1}]\n', "unknown key 'tol'"),
    ('[comparison]\nmodels = [{label = "a", instruments = "RXR"}]\n', "list of strings"),
    ('[comparison]\nparameters = "prices"\n', "list of strings"),
])
def test_bad_comparison_sections_are_named(tmp_path: Path, text: str, message: str) -> None:
    path = _spec(text, tmp_path)
    with pytest.raises(SpecificationError, match=message):
        parse_spec(tomllib.loads(path.read_text()), path)


def test_comparison_needs_the_logit_command(tmp_path: Path) -> None:
    path = _spec('[comparison]\nmodels = [{label = "OLS", method = "ols"}]\n', tmp_path)
    errors = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(errors):
        status = main(["estimate", str(path), "--output", str(tmp_path / "out"), "--quiet"])
    assert status == 2 and "[comparison]" in errors.getvalue()
