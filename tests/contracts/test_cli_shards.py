"""``[estimation] shards = k`` in ``blpdemand estimate``: the whole estimate over market shards
on ``[compute]``'s threads or Dask LocalCluster.

Reference: the same spec without shards (one process), run in the same test. The shards'
sums run in another order, so results.json's estimates and objective are compared to 1e-8
relative (both runs driven to the minimum with gtol 1e-10; the inner loops' warm starts differ,
so the estimates agree to 1e-8: measured 1.0e-9), not for equality. [post] profiles and stability
run as jobs on [compute]'s workers and equal the sequential tables. Errors: a process pool is
refused naming [estimation] shards before any pool starts.
"""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rich.console import Console

import blpdemand as bd
from blpdemand.cli.run import run
from blpdemand.errors import SpecificationError

distributed = pytest.importorskip("distributed")  # the [dask] extra; CI installs it


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("shards")
    sim = bd.simulate(markets=20, products=5, sigma={"x1": 1.0}, draws=50, rng=11)
    assert sim.agents is not None
    frame = sim.products.copy()
    for column in ("x1", "x2"):  # rivals' sums (BLP 1995) over-identify sigma
        frame[f"rival_{column}"] = (frame.groupby("market_ids")[column].transform("sum")
                                    - frame[column])
    frame.to_csv(folder / "products.csv", index=False)
    sim.agents.to_csv(folder / "agents.csv", index=False)
    return folder


def _run(folder: Path, name: str, extra: str = "",
         agents: str = 'agents = "agents.csv"\n') -> dict[str, Any]:
    spec = folder / f"{name}.toml"
    spec.write_text(
        '[data]\nproducts = "products.csv"\n' + agents +
        '[model]\nlinear = "1 + prices + x1 + x2"\nnonlinear = "0 + x1"\n'
        '[instruments]\ncolumns = ["w1", "w2", "rival_x1", "rival_x2"]\n'
        "[parameters]\nsigma = [[0.5]]\n"
        '[estimation]\nmethod = "2s"\nstarts = 1\ngtol = 1e-10\n'
        f"{extra}\n[output]\nplots = false\nlatex = false\nhtml = false\n", encoding="utf-8")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the run records warnings itself
        run("estimate", spec, output=folder / name, console=Console(file=io.StringIO()),
            progress=Console(file=io.StringIO()), quiet=True)
    saved: dict[str, Any] = json.loads((folder / name / "results.json").read_text("utf-8"))
    return saved


def _numbers(value: Any) -> list[float]:
    if isinstance(value, dict):
        return [x for key in sorted(value) for x in _numbers(value[key])]
    if isinstance(value, list):
        return [x for item in value for x in _numbers(item)]
    return [float(value)] if isinstance(value, (int, float)) and value is not None else []


def test_shards_on_threads_and_a_local_cluster_equal_one_process(data: Path) -> None:
    one = _run(data, "one")
    for name, extra in (("threads", 'shards = 2\n[compute]\nscheduler = "threads"\nworkers = 2'),
                        ("local", 'shards = 2\n[compute]\nscheduler = "local"\nworkers = 2')):
        saved = _run(data, name, extra)
        a, b = np.array(_numbers(one["parameters"])), np.array(_numbers(saved["parameters"]))
        assert a.size == 10 and a.shape == b.shape  # sigma and 4 betas: estimates and SEs
        # each shard solves delta to 1e-14 from its own predicted warm start (solve.warm_start),
        # one process from another: the minimizer moves by H^-1 times that gradient noise,
        # measured 1.0e-9 relative (SEs follow it), Q 1e-10
        np.testing.assert_allclose(b, a, rtol=1e-8, atol=1e-8 * np.abs(a).max(), err_msg=name)
        assert saved["objective"] == pytest.approx(one["objective"], rel=1e-9)


def test_post_profiles_and_stability_on_a_local_cluster_equal_the_sequential_ones(
        data: Path) -> None:
    # Reference: the same [post] run in this process; each profile line and each stability
    # re-estimation is a job doing the same floating-point work on a worker: equal tables
    post = "[post]\nprofiles = true\nstability = [1, 2]\n"
    rule = '[integration]\nkind = "sobol"\nsize = 30\nrng = 1\n'
    one = _run(data, "post_one", post, agents=rule)
    local = _run(data, "post_local", post + '[compute]\nscheduler = "local"\nworkers = 2',
                 agents=rule)
    for table in ("objective_profiles", "draws_stability"):
        assert local["tables"][table] == one["tables"][table], table
    assert len(one["tables"]["draws_stability"]["index"]) == 5  # sigma and 4 betas


def test_shards_on_a_process_pool_are_refused_by_name(data: Path) -> None:
    with pytest.raises(SpecificationError, match=r"\[estimation\] shards.*processes"):
        _run(data, "pool", 'shards = 2\n[compute]\nscheduler = "processes"\nworkers = 2')
