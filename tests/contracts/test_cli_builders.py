"""Instrument builders named in a spec give the same estimates as the Python API with the
same builder called by hand (Nevo data, plain logit: fast).

Reference: ``estimate_logit`` with ``build_demographic_instruments`` and
``build_hausman_instruments`` called directly (same computation; exact equality).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import blpdemand as bd
from blpdemand.cli import main
from blpdemand.results.io import load_results

SPEC = """
[data]
products = "{data}/nevo_products.csv"
agents = "{data}/nevo_agents.csv"
[model]
linear = "prices + sugar + mushy"
[[instruments.build]]
kind = "demographic"
characteristics = "sugar + mushy"
demographics = "income + age"
[[instruments.build]]
kind = "hausman"
[logit]
covariance = "unadjusted"
[output]
plots = false
latex = false
html = false
"""


def test_builders_match_api(tmp_path: Path, data_path: Path, nevo_products: pd.DataFrame,
                            nevo_agents: pd.DataFrame, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "s.toml").write_text(SPEC.replace("{data}", str(data_path)))
    assert main(["logit", str(tmp_path / "s.toml"), "-o", str(tmp_path / "out"), "-q"]) == 0
    saved = load_results(tmp_path / "out" / "results.json")
    instruments = [
        bd.build_demographic_instruments(nevo_products, nevo_agents, "sugar + mushy",
                                         "income + age"),
        bd.build_hausman_instruments(nevo_products)]
    live = bd.estimate_logit(nevo_products, linear="prices + sugar + mushy",
                             instruments=instruments, covariance="unadjusted")
    np.testing.assert_array_equal(saved.estimates.to_numpy(), live.params.to_numpy())
    np.testing.assert_array_equal(saved.standard_errors.to_numpy(), live.bse.to_numpy())
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["results.json"]
    # a builder without its required option: one line naming it
    (tmp_path / "bad.toml").write_text(
        SPEC.replace("{data}", str(data_path)).replace('demographics = "income + age"\n', ""))
    assert main(["logit", str(tmp_path / "bad.toml"), "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].endswith('(kind = "demographic") in bad.toml needs demographics')
