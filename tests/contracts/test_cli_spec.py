"""The specification reader: environment expansion, path resolution, key and type checks.

Reference: the TOML text and environment written in each test (hand-derived expectations).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from blpdemand.cli.spec import expand_env, read_spec, read_table
from blpdemand.errors import DataError, SpecificationError


def _spec(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sub" / "s.toml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    return path


def test_paths_and_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BD_TEST_DATA", raising=False)
    text = ('[data]\nproducts = "${BD_TEST_DATA:-../data}/p.csv"\nagents = "/abs/a.parquet"\n'
            '[model]\nlinear = "prices"\n[output]\ndirectory = "out"\n')
    spec = read_spec(_spec(tmp_path, text))
    # default: relative to the spec file's folder (tmp/sub/../data = tmp/data)
    assert spec.data["products"] == (tmp_path / "data" / "p.csv").resolve()
    assert spec.data["agents"] == Path("/abs/a.parquet")
    assert spec.output["directory"] == (tmp_path / "sub" / "out").resolve()
    assert spec.title == "s"
    # a variable that is set wins; a relative value is relative to the current directory
    monkeypatch.setenv("BD_TEST_DATA", "rel")
    monkeypatch.chdir(tmp_path)
    spec = read_spec(_spec(tmp_path, text))
    assert spec.data["products"] == (tmp_path / "rel" / "p.csv").resolve()
    assert expand_env("x${BD_TEST_DATA}y", "k", "s.toml") == "xrely"


def test_checks_name_the_key(tmp_path: Path) -> None:
    base = '[data]\nproducts = "p.csv"\n[model]\nlinear = "prices"\n'
    cases = {
        base + "[post]\nelasticities = 1\n": "[post] elasticities in s.toml must be true or false",
        base + "[parameters]\nsigma = [[1, 'a']]\n": "[parameters] sigma in s.toml must be a list",
        base + "[columns]\nmarkets = 'year'\n": "unknown key 'markets' in [columns]",
        "title = 3\n" + base: "'title' in s.toml must be a string",
        # after a table header a key belongs to that table: named there
        base + "title = 'x'\n": "unknown key 'title' in [model]",
        base + "model = 3\n": "",  # duplicate table/key: invalid TOML
        '[model]\nlinear = "prices"\n': "[data] products is missing",
        '[data]\nproducts = "p.csv"\n': "[model] linear is missing",
        base + "[[instruments.build]]\ncharacteristics = 'x'\n": "needs kind",
        "data = 'x'\n[model]\nlinear = 'p'\n": "'data' in s.toml must be a table [data]",
    }
    for text, message in cases.items():
        with pytest.raises(SpecificationError) as info:
            read_spec(_spec(tmp_path, text))
        assert message in str(info.value)
        assert "\n" not in str(info.value)


def test_read_table_formats(tmp_path: Path) -> None:
    frame = pd.DataFrame({"market_ids": [1, 1], "shares": [0.1, 0.2]})
    frame.to_csv(tmp_path / "a.csv", index=False)
    frame.to_parquet(tmp_path / "a.parquet")
    pd.testing.assert_frame_equal(read_table(tmp_path / "a.csv", "w"), frame)
    pd.testing.assert_frame_equal(read_table(tmp_path / "a.parquet", "w"), frame)
    (tmp_path / "a.xlsx").write_text("x")
    with pytest.raises(DataError, match="use .csv or .parquet"):
        read_table(tmp_path / "a.xlsx", "w")
    with pytest.raises(DataError, match="does not exist"):
        read_table(tmp_path / "none.csv", "[data] products")
