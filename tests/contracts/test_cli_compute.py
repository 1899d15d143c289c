"""``[compute]`` in ``blpdemand estimate``: the starts and the bootstrap draws on threads, a
spawn process pool, a Dask LocalCluster the run starts, or a running Dask scheduler.

Reference: the same spec run without ``[compute]`` (every start in sequence, in this process).
A start is the same floating-point work on a worker (one BLAS thread: tests/conftest.py, whose
environment the workers inherit; Dask's nanny sets one BLAS thread too), so results.json's
estimates, objective and multi-start table, and the bootstrap tables, are compared for
equality. Errors: the SpecificationError contract (spec file and key named, raised before the
estimation and before any pool or cluster starts).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

import blpdemand as bd
from blpdemand.cli import compute as cli_compute
from blpdemand.cli import main
from blpdemand.cli.run import run
from blpdemand.errors import SpecificationError

ROOT = Path(__file__).resolve().parents[2]
distributed = pytest.importorskip("distributed")  # the [dask] extra; CI installs it

BOOTSTRAP = "[post]\nelasticities = true\n[post.bootstrap]\ndraws = 8\nrng = 2\n"


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """20 simulated markets of 5 products (known truth sigma_x1 = 1) as CSV files."""
    folder = tmp_path_factory.mktemp("compute")
    sim = bd.simulate(markets=20, products=5, sigma={"x1": 1.0}, draws=50, rng=11)
    assert sim.agents is not None
    frame = sim.products.copy()
    for column in ("x1", "x2"):  # rivals' sums (BLP 1995) over-identify sigma
        frame[f"rival_{column}"] = (frame.groupby("market_ids")[column].transform("sum")
                                    - frame[column])
    frame.to_csv(folder / "products.csv", index=False)
    sim.agents.to_csv(folder / "agents.csv", index=False)
    return folder


def _spec(folder: Path, name: str, extra: str = "") -> Path:
    spec = folder / f"{name}.toml"
    spec.write_text(
        '[data]\nproducts = "products.csv"\nagents = "agents.csv"\n'
        '[model]\nlinear = "1 + prices + x1 + x2"\nnonlinear = "0 + x1"\n'
        '[instruments]\ncolumns = ["w1", "w2", "rival_x1", "rival_x2"]\n'
        "[parameters]\nsigma = [[0.5]]\n"
        '[estimation]\nmethod = "2s"\nstarts = 2\n'
        f"{extra}\n[output]\nplots = false\nlatex = false\nhtml = false\n", encoding="utf-8")
    return spec


def _run(spec: Path, out: Path) -> list[list[str]]:
    """Run quietly but for the evaluation rows: those rows (step, start, evaluation, iteration,
    contraction work, objective, gradient norm, theta: all but the time)."""
    progress = io.StringIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the run records warnings itself
        run("estimate", spec, output=out, console=Console(file=io.StringIO()),
            progress=Console(file=progress, width=200), quiet=False)
    rows = [line.split() for line in progress.getvalue().splitlines()]
    return [row[:4] + row[5:] for row in rows if row and row[0].isdigit()]


def _saved(out: Path) -> dict[str, Any]:
    return json.loads((out / "results.json").read_text(encoding="utf-8"))


def _same_estimates(a: dict[str, Any], b: dict[str, Any]) -> None:
    for key in ("parameters", "objective"):
        assert a[key] == b[key], key
    assert a["tables"]["starts"] == b["tables"]["starts"]
    assert a["post_estimation"]["warnings"] == b["post_estimation"]["warnings"]


@pytest.fixture(scope="module")
def sequential(data: Path) -> dict[str, Any]:
    rows = _run(_spec(data, "sequential", BOOTSTRAP), data / "sequential")
    return {**_saved(data / "sequential"), "rows": rows}


@pytest.mark.parametrize("scheduler", ["local", "processes"])
def test_starts_and_bootstrap_equal_the_sequential_run(data: Path, sequential: dict[str, Any],
                                                       scheduler: str) -> None:
    spec = _spec(data, scheduler, BOOTSTRAP + f'[compute]\nscheduler = "{scheduler}"\n'
                                              "workers = 2\n")
    rows = _run(spec, data / scheduler)
    saved = _saved(data / scheduler)
    # every start's evaluation rows are shown, in the sequential run's order
    assert len(rows) > 20 and rows == sequential["rows"]
    assert len(saved["tables"]["starts"]["index"]) == 6  # 3 starts in each of 2 steps
    _same_estimates(saved, sequential)
    assert saved["tables"]["bootstrap_elasticities"] == sequential["tables"][
        "bootstrap_elasticities"]
    assert saved["spec"]["toml"]["compute"] == {"scheduler": scheduler, "workers": 2}


def test_threads_and_a_running_scheduler_equal_the_sequential_run(data: Path,
                                                                  sequential: dict[str, Any]
                                                                  ) -> None:
    # scheduler = "tcp://..." connects to a scheduler this run does not start (nor stop)
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=None,
                                       scheduler_kwargs=cli_compute.QUIET_SCHEDULER)
    with cluster:
        address = cluster.scheduler_address
        for name, section in (("threads", 'scheduler = "threads"\nworkers = 2\n'),
                              ("tcp", f'scheduler = "{address}"\n')):
            _run(_spec(data, name, BOOTSTRAP + f"[compute]\n{section}"), data / name)
            saved = _saved(data / name)
            _same_estimates(saved, sequential)
            assert saved["tables"]["bootstrap_elasticities"] == sequential["tables"][
                "bootstrap_elasticities"]
        assert len(cluster.scheduler_info["workers"]) == 2  # still up after the run
        # the starts (with their evaluation records) and the bootstrap draws ran there
        assert {"run_recorded", "solve_chunk"} <= set(cluster.scheduler.task_prefixes)


def test_a_start_that_raises_is_named(data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # one contraction step at most, and on_failure = "raise": every start fails on a worker
    spec = _spec(data, "raises", '[estimation.contraction]\nmax_evaluations = 1\n'
                                 '[compute]\nscheduler = "processes"\nworkers = 2\n')
    spec.write_text(spec.read_text().replace("starts = 2\n", 'starts = 2\non_failure = "raise"\n'))
    assert main(["estimate", str(spec), "-o", str(data / "raises"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "blpdemand estimate: error: the contraction did not converge" in err
    assert "(raised in GMM step 1, start " in err and " of 3, run on processes)" in err
    assert not (data / "raises").exists()


@pytest.mark.parametrize(("section", "message"), [
    ('scheduler = "thread"', (r"\[compute\] scheduler in s.toml must be \"threads\", "
                              r"\"processes\", \"local\" .* or a Dask scheduler's address "
                              r"\"tcp://host:port\", got 'thread'")),
    ('scheduler = "tcp://localhost"', r"must be .* got 'tcp://localhost'"),
    ("workers = 0", r"\[compute\] workers in s.toml must be an integer >= 1, got 0"),
    ("workers = 1.5", r"\[compute\] workers in s.toml must be an integer, got float 1.5"),
    ("workers = true", r"\[compute\] workers in s.toml must be an integer, got boolean"),
    ("cores = 2", r"unknown key 'cores' in \[compute\] of s.toml; valid: scheduler, workers"),
    ('scheduler = "tcp://127.0.0.1:8786"\nworkers = 2',
     (r"\[compute\] workers in s.toml: the Dask scheduler at tcp://127.0.0.1:8786 has its own "
      r"workers; remove workers")),
])
def test_bad_values_fail_before_the_estimation(data: Path, monkeypatch: pytest.MonkeyPatch,
                                               section: str, message: str) -> None:
    def nothing_started(*args: object, **kwargs: object) -> None:
        raise AssertionError("the spec should fail before the estimation or any cluster")

    monkeypatch.setattr("blpdemand.results.blp.estimate", nothing_started)
    monkeypatch.setattr(distributed, "LocalCluster", nothing_started)
    monkeypatch.setattr(cli_compute, "ProcessPoolExecutor", nothing_started)
    spec = data / "s.toml"
    spec.write_text(_spec(data, "bad", f"[compute]\n{section}\n").read_text())
    with pytest.raises(SpecificationError, match=message):
        _run(spec, data / "bad")
    assert not (data / "bad").exists()


def test_conflicts_logit_and_no_dask(data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = data / "s.toml"
    spec.write_text(_spec(data, "c", '[compute]\nscheduler = "local"\n').read_text()
                    .replace("starts = 2\n", "starts = 2\nworkers = 2\n"))
    with pytest.raises(SpecificationError, match=r"\[estimation\] workers and \[compute\] in "
                                                 r"s.toml both say where the starts run"):
        _run(spec, data / "c")
    logit = data / "logit.toml"
    logit.write_text('[data]\nproducts = "products.csv"\n[model]\nlinear = "1 + prices + x1"\n'
                     '[instruments]\ncolumns = ["w1", "w2"]\n[compute]\nscheduler = "local"\n')
    quiet = Console(file=io.StringIO())
    with pytest.raises(SpecificationError, match=r"\[compute\] in logit.toml runs the jobs of "
                                                 r"'blpdemand estimate'"):
        run("logit", logit, output=data / "c", console=quiet, progress=quiet, quiet=True)
    # without the [dask] extra: a Dask scheduler is refused, naming the install command
    monkeypatch.setattr(cli_compute, "dask_installed", lambda: False)
    spec.write_text(_spec(data, "c", '[compute]\nscheduler = "local"\n').read_text())
    with pytest.raises(SpecificationError, match=r"scheduler = 'local' in s.toml runs the jobs "
                                                 r"on Dask, which is not installed: pip install "
                                                 r"\"blpdemand\[dask\]\""):
        _run(spec, data / "c")
    assert not (data / "c").exists()


# ------------------------------------------------------------------ Ctrl-C with workers up
def _children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            found |= {int(c) for c in (task / "children").read_text().split()}
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")  # a zombie has ended (its parent is gone)


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads child processes in /proc")
@pytest.mark.parametrize(("scheduler", "phase"), [("processes", "workers starting"),
                                                  ("processes", "starts running"),
                                                  ("local", "workers starting"),
                                                  ("local", "starts running")])
def test_sigint_exits_130_and_closes_the_workers(tmp_path: Path, data_path: Path,
                                                 scheduler: str, phase: str) -> None:
    # Contract (examples/README.md): exit 130, one "interrupted" line, no output folder and no
    # staging folder left, and every worker process the run started has ended. Nevo (5 starts
    # of about a second each) keeps the starts running long enough to be interrupted.
    nevo = (ROOT / "examples" / "nevo.toml").read_text(encoding="utf-8")
    spec = tmp_path / "nevo.toml"
    spec.write_text(nevo + f'\n[compute]\nscheduler = "{scheduler}"\nworkers = 2\n',
                    encoding="utf-8")
    out, errors = tmp_path / "out", tmp_path / "stderr"
    env = {**os.environ, "BLPDEMAND_DATA": str(data_path), "OPENBLAS_NUM_THREADS": "1"}
    workers: set[int] = set()
    with open(errors, "wb") as stderr:
        process = subprocess.Popen([sys.executable, "-m", "blpdemand", "estimate", str(spec),
                                    "--output", str(out)], stdout=subprocess.DEVNULL,
                                   stderr=stderr, env=env)
        deadline = time.monotonic() + 120
        while process.poll() is None and time.monotonic() < deadline:
            workers |= _children(process.pid)
            rows = "objective" in errors.read_text(encoding="utf-8", errors="replace")
            if len(workers) >= 2 and (rows or phase == "workers starting"):
                os.kill(process.pid, signal.SIGINT)
                break
            time.sleep(0.01)
        else:
            process.kill()
            pytest.fail("the run ended (or hung) before the phase was reached:\n"
                        + errors.read_text(errors="replace")[-2000:])
        code = process.wait(timeout=60)
    err = errors.read_text(encoding="utf-8", errors="replace")
    assert code == 130, err[-2000:]
    assert err.count("interrupted") == 1 and err.rstrip().endswith("blpdemand estimate: "
                                                                    "interrupted")
    assert not out.exists() and not list(tmp_path.glob("out.*"))
    ended = time.monotonic() + 10
    while any(_alive(pid) for pid in workers) and time.monotonic() < ended:
        time.sleep(0.05)
    assert not [pid for pid in workers if _alive(pid)]
