"""Results JSON: save then load gives identical numbers and tables (exact float round trip)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from blpdemand.errors import DataError
from blpdemand.results.io import (
    SCHEMA_VERSION,
    SavedResults,
    capture,
    load_results,
    save_results,
    table_from_json,
    table_to_json,
)
from blpdemand.results.tables import Table, coefficient_table


class _FakeLogitResults:
    """Stands in for live results: a coefficient summary plus the attributes io reads."""

    objective = 0.123456789012345
    converged = True
    nobs = 2256

    def summary(self) -> Table:
        rng = np.random.default_rng(0)
        return coefficient_table(["prices", "sugar", "1"], rng.normal(size=3),
                                 np.abs(rng.normal(size=3)), title="Logit", notes=["N = 2256"])


def test_round_trip_is_exact(tmp_path: Path) -> None:
    # Reference: the object written. Floats must come back bit for bit (tolerance 0), since
    # JSON numbers use Python's shortest round-trip repr.
    live = _FakeLogitResults()
    path = save_results(live, tmp_path / "r.json", spec={"title": "t"})
    loaded = load_results(path)
    summary = live.summary()
    assert loaded.kind == "logit" and loaded.schema_version == SCHEMA_VERSION
    np.testing.assert_array_equal(loaded.estimates.to_numpy(), summary.body["estimate"].to_numpy())
    np.testing.assert_array_equal(loaded.standard_errors.to_numpy(),
                                  summary.body["std. error"].to_numpy())
    assert list(loaded.estimates.index) == ["prices", "sugar", "1"]
    assert loaded.objective == live.objective
    assert loaded.diagnostics == {"converged": True, "nobs": 2256}
    assert loaded.spec == {"title": "t"}
    assert loaded.summary().to_text() == summary.to_text()
    assert loaded.summary().to_latex() == summary.to_latex()
    assert loaded.summary().to_html() == summary.to_html()
    pd.testing.assert_frame_equal(loaded.summary().to_frame(), summary.to_frame())
    # saving what was loaded writes the same numbers and tables again
    again = load_results(save_results(loaded, tmp_path / "r2.json"))
    pd.testing.assert_frame_equal(again.parameters, loaded.parameters)
    assert again.summary().to_text() == summary.to_text()


def test_nonfinite_and_mixed_tables(tmp_path: Path) -> None:
    # Reference: hand-built table with NaN, inf, int, bool and string columns.
    body = pd.DataFrame({"x": [1.5, math.nan, math.inf], "n": [1, 2, 3], "ok": [True, False, True],
                         "label": ["a", "b", "c"]}, index=pd.Index([10, 20, 30], name="market"))
    table = Table(title="mixed", body=body, notes=("note",), digits=3)
    restored = table_from_json(json.loads(json.dumps(table_to_json(table), allow_nan=False)))
    pd.testing.assert_frame_equal(restored.to_frame(), table.to_frame(), check_dtype=False)
    assert restored.to_text() == table.to_text()
    params = pd.DataFrame({"group": ["sigma"], "estimate": [math.nan], "std_error": [math.inf]},
                          index=pd.Index(["1 x 1"]))
    saved = SavedResults(kind="blp", parameters=params, tables={"mixed": table})
    text = (save_results(saved, tmp_path / "x.json")).read_text()
    assert "NaN" in text and "Infinity" in text
    loaded = load_results(tmp_path / "x.json")
    assert math.isnan(loaded.estimates.iloc[0]) and loaded.standard_errors.iloc[0] == math.inf
    assert loaded.tables["mixed"].to_text() == table.to_text()


def test_capture_reads_config_dataclass() -> None:
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class Config:
        method: str = "2s"
        tolerance: float = 1e-8

    live = _FakeLogitResults()
    live.config = Config()  # type: ignore[attr-defined]
    assert capture(live).config == {"method": "2s", "tolerance": 1e-8}


def test_bad_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_results(tmp_path / "none.json")
    (tmp_path / "other.json").write_text('{"a": 1}')
    with pytest.raises(DataError, match="not a blpdemand results file"):
        load_results(tmp_path / "other.json")
    (tmp_path / "new.json").write_text('{"schema": "blpdemand.results", "schema_version": 99}')
    with pytest.raises(DataError, match="schema_version 99"):
        load_results(tmp_path / "new.json")


def test_live_logit_round_trip(tmp_path: Path) -> None:
    # Reference: the live LogitResults written; exact floats, identical rendered tables.
    from blpdemand.model.simulation import simulate
    from blpdemand.results.logit import estimate_logit

    sim = simulate(markets=30, products=5, rng=2)
    live = estimate_logit(sim.products, linear=sim.linear, instruments=list(sim.instruments))
    path = save_results(live, tmp_path / "logit.json",
                        tables={"first_stage": live.first_stage_table()})
    loaded = load_results(path)
    np.testing.assert_array_equal(loaded.estimates.to_numpy(), live.params.to_numpy())
    np.testing.assert_array_equal(loaded.standard_errors.to_numpy(), live.bse.to_numpy())
    assert loaded.kind == "logit" and loaded.diagnostics["nobs"] == 150
    for name, table in (("summary", live.summary()), ("first_stage", live.first_stage_table())):
        assert loaded.tables[name].to_text() == table.to_text()
        assert loaded.tables[name].to_latex() == table.to_latex()
        pd.testing.assert_frame_equal(loaded.tables[name].to_frame(), table.to_frame())
