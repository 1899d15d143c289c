"""``blpdemand logit examples/cars.toml``: the JSON it writes equals the Python API's results.

References: the Python API (``estimate_logit`` on the same data, run here; tolerance 0, the
same computation), and the independent numbers of ../shared/data/course/PROVENANCE.md
(2SLS price coefficient -0.16939, mean own-price elasticity -6.10; rounding tolerance).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from blpdemand.cli import main
from blpdemand.results.io import load_results
from blpdemand.results.logit import estimate_logit

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(scope="module")
def cars_run(tmp_path_factory: pytest.TempPathFactory, data_path: Path) -> Path:
    out = tmp_path_factory.mktemp("cars")
    mp = pytest.MonkeyPatch()
    mp.setenv("BLPDEMAND_DATA", str(data_path))
    try:
        assert main(["logit", str(EXAMPLES / "cars.toml"), "--output", str(out)]) == 0
    finally:
        mp.undo()
    return out


def test_cars_json_equals_python_api(cars_run: Path, cars: pd.DataFrame) -> None:
    saved = load_results(cars_run / "results.json")
    live = estimate_logit(
        cars, linear=("prices + np.log(height) + np.log(footprint) + np.log(hp) + np.log(mpg) "
                      "+ np.log(weight) + np.log(number_trims) + releaseYear + yearsSinceDesign "
                      "+ sport + EV + truck + suv + van"),
        absorb="C(market_ids) + C(make)", instruments=["RXR"], method="2sls",
        covariance="clustered", clusters="make",
        columns={"market_ids": "year", "shares": "market_share", "prices": "price",
                 "firm_ids": "parent", "product_ids": "product_id"})
    # Reference: the Python API on the same data; the same arithmetic, so exact equality.
    np.testing.assert_array_equal(saved.estimates.to_numpy(), live.params.to_numpy())
    np.testing.assert_array_equal(saved.standard_errors.to_numpy(), live.bse.to_numpy())
    assert list(saved.estimates.index) == list(live.params.index)
    assert saved.summary().to_text() == live.summary().to_text()
    assert saved.kind == "logit"
    # Reference: PROVENANCE.md 2SLS -0.16939 (tolerance 5e-6) and mean elasticity -6.10 (5e-3).
    assert saved.estimates["prices"] == pytest.approx(-0.16939, abs=5e-6)
    own = saved.post_estimation["own_price_elasticities"]
    assert own["label"] == "all markets" and own["mean"] == pytest.approx(-6.10, abs=5e-3)
    assert own["mean"] == pytest.approx(live.own_price_elasticities().mean(), rel=1e-12)


def test_cars_outputs_written(cars_run: Path) -> None:
    # Reference: the file list the report promises (tables as LaTeX and HTML, plots, JSON).
    names = {p.name for p in cars_run.iterdir()}
    for table in ("summary", "first_stage", "elasticities", "costs"):
        assert {f"{table}.tex", f"{table}.html"} <= names
    assert {"results.json", "elasticities_heatmap.png"} <= names
    assert (cars_run / "summary.tex").read_text().startswith("\\begin{table}")
    assert (cars_run / "elasticities_heatmap.png").read_bytes()[:4] == b"\x89PNG"
    saved = load_results(cars_run / "results.json")
    assert saved.spec["toml"]["columns"]["market_ids"] == "year"
    assert saved.spec["command"] == "logit"
    assert Path(saved.spec["data"]["products"]).name == "cars.csv"
    assert saved.versions["blpdemand"] and saved.schema_version == 1
