"""Large markets (issue 17): ``blpdemand logit`` on a simulated market of 60 products writes the
full elasticity, diversion and pass-through matrices to CSV (and Parquet with pyarrow), and LaTeX/HTML tables
of the 25 products with the largest shares, saying so in the caption.

Reference: the Python API on the same data (``bd.estimate_logit``, ``bd.compute_elasticities``,
``bd.compute_diversion_ratios``, ``bd.compute_passthrough``): the same computation, so the CSV equals it to 1e-12 (the CSV
writes each float with enough digits to read back the same double; 1e-12 leaves room).
"""

from __future__ import annotations

import contextlib
import io
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import blpdemand as bd
from blpdemand.cli import main

SPEC = """
[data]
products = "products.csv"
[model]
linear = "prices + x1 + x2"
[instruments]
columns = ["w1", "w2"]
[logit]
method = "2sls"
[post]
elasticities = true
diversion = true
passthrough = true
market = 1
"""

J = 60  # products per market: more than the 25 the tables show


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    folder = tmp_path_factory.mktemp("large")
    products = bd.simulate(markets=2, products=J, rng=7).products
    products.to_csv(folder / "products.csv", index=False)
    (folder / "spec.toml").write_text(SPEC, encoding="utf-8")
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["logit", str(folder / "spec.toml"), "--output", str(folder / "out"),
                     "--quiet"])
    assert code == 0, err.getvalue()
    return folder / "out", pd.read_csv(folder / "products.csv")


def _api(products: pd.DataFrame) -> object:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bd.estimate_logit(products, linear="prices + x1 + x2", instruments=["w1", "w2"],
                                 method="2sls")


def _top_ids(products: pd.DataFrame, top: int = 25) -> list[str]:
    market = products[products["market_ids"] == 1]
    return [str(v) for v in market.sort_values("shares", ascending=False,
                                               kind="stable")["product_ids"].head(top)]


def _latex_rows(text: str) -> list[str]:
    body = text.split("\\midrule", 1)[1].split("\\bottomrule", 1)[0]
    return [line.split(" & ", 1)[0] for line in body.strip().splitlines()]


def _html_rows(text: str) -> list[str]:
    body = text.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    return re.findall(r"<tr><th>([^<]*)</th>", body)


@pytest.mark.parametrize("kind", ["elasticities", "diversion", "passthrough"])
def test_tables_show_the_top_25_products_by_share(run: tuple[Path, pd.DataFrame],
                                                  kind: str) -> None:
    # Reference: the 25 largest observed shares of market 1, largest first.
    out, products = run
    top = _top_ids(products)
    latex = (out / f"{kind}_market_1.tex").read_text(encoding="utf-8")
    html = (out / f"{kind}_market_1.html").read_text(encoding="utf-8")
    assert _latex_rows(latex) == top
    assert _html_rows(html) == top
    for text in (latex.replace("\\_", "_"), html):  # LaTeX escapes '_'
        assert "top 25 of 60 products" in text
        assert f"{kind}_market_1.csv" in text  # the caption names the file with every product
    assert latex.count(" & ") <= 26 * 25  # 25 columns as well: (header + 25 rows) x 25 '&'


@pytest.mark.parametrize("kind", ["elasticities", "diversion", "passthrough"])
def test_csv_holds_the_full_matrix(run: tuple[Path, pd.DataFrame], kind: str) -> None:
    out, products = run
    api = _api(products)
    compute = {"elasticities": bd.compute_elasticities, "diversion": bd.compute_diversion_ratios,
               "passthrough": bd.compute_passthrough}[kind]
    expected = compute(api).market(1)
    paths = [out / f"{kind}_market_1.csv"]
    try:
        import pyarrow  # noqa: F401
        paths.append(out / f"{kind}_market_1.parquet")
    except ImportError:
        assert not (out / f"{kind}_market_1.parquet").exists()
    for path in paths:
        frame = (pd.read_csv(path, index_col=0) if path.suffix == ".csv"
                 else pd.read_parquet(path))
        assert frame.shape == (J, J)
        assert [str(v) for v in frame.index] == [str(v) for v in expected.index]
        assert [str(v) for v in frame.columns] == [str(v) for v in expected.columns]
        np.testing.assert_allclose(frame.to_numpy(dtype=float), expected.to_numpy(), rtol=1e-12,
                                   atol=1e-12)


def test_own_price_title(run: tuple[Path, pd.DataFrame]) -> None:
    out, _ = run
    assert "Own-price elasticities" in (out / "elasticities.tex").read_text(encoding="utf-8")
    assert "Own-price elasticities" in (out / "elasticities.html").read_text(encoding="utf-8")



def _main(arguments: list[str]) -> int:
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        return main(arguments)


def test_matrix_files_count_as_a_runs_own(run: tuple[Path, pd.DataFrame], tmp_path: Path) -> None:
    # A run replaces its output folder only when every file in it is one a run writes: a second
    # run into the same folder (holding the matrices' CSV and Parquet files) replaces it, while a
    # folder holding someone's products.csv is refused and left as it was.
    out, _ = run
    spec = str(out.parent / "spec.toml")
    target = tmp_path / "out"
    for _ in range(2):
        assert _main(["logit", spec, "--output", str(target), "--quiet"]) == 0
    assert (target / "elasticities_market_1.csv").is_file()
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "products.csv").write_text("a\n1\n", encoding="utf-8")
    assert _main(["logit", spec, "--output", str(tmp_path / "data"), "--quiet"]) == 2
    assert [p.name for p in (tmp_path / "data").iterdir()] == ["products.csv"]
