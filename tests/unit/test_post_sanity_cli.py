"""``blpdemand estimate examples/nevo.toml`` reports the Lerner-index warning with its count.

Reference: the same estimation through the Python API (PyBLP tutorial starting values, 1-step
GMM, BFGS), where the count is ((p - c) / p > 1).sum() over bd.compute_costs in numpy.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import blpdemand as bd
from blpdemand.cli import main
from blpdemand.errors import EconomicWarning

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_nevo_spec_reports_lerner_above_one(tmp_path: Path, data_path: Path,
                                            nevo_products: pd.DataFrame,
                                            nevo_agents: pd.DataFrame,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    problem = bd.Problem(nevo_products, linear="prices", nonlinear="1 + prices + sugar + mushy",
                         demographics="income + income_squared + age + child",
                         agents=nevo_agents, absorb="C(product_ids)",
                         instruments=[f"demand_instruments{k}" for k in range(20)])
    sigma = np.diag([0.3302, 2.4526, 0.0163, 0.2441])
    pi = [[5.4819, 0, 0.2037, 0], [15.8935, -1.2, 0, 2.6342], [-0.2506, 0, 0.0511, 0],
          [1.2650, 0, -0.8091, 0]]
    results = bd.estimate(problem, sigma=sigma, pi=pi,
                          config=bd.EstimationConfig(method="1s", optimizer="bfgs", gtol=1e-5))
    with pytest.warns(EconomicWarning):
        costs = bd.compute_costs(results)
    prices = nevo_products["prices"].to_numpy()
    above = int(np.sum((prices - costs) / prices > 1))
    assert above > 0

    monkeypatch.setenv("BLPDEMAND_DATA", str(data_path))
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        assert main(["estimate", str(EXAMPLES / "nevo.toml"), "--output", str(tmp_path)]) == 0
    expected = f"Lerner index above one: {above} of {len(prices)} products"
    saved = json.loads((tmp_path / "results.json").read_text())
    assert any(expected in w for w in saved["post_estimation"]["warnings"])
    assert expected in " ".join(err.getvalue().split())  # the terminal wraps long lines
