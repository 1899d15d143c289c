"""The command line under faults: Ctrl-C at any point of a run, a rerun into an existing output
folder, [post] options and output paths that cannot work, paths and CSVs of the wrong kind.

Contract (examples/README.md, "Interrupts, failures and the output folder"): SIGINT ends a run
with exit status 130 and one line "interrupted" on stderr; the output folder is then exactly
what it was before the run (absent, or the previous run's files), never a mix, and no staging
folder is left; a finished run replaces the folder as a whole. Everything a spec asks for is
checked before the estimation starts.

Reference: the files each test writes (their names and bytes) and our own messages.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from blpdemand.cli import main
from blpdemand.cli import run as cli_run

ROOT = Path(__file__).resolve().parents[2]
NEVO = (ROOT / "examples" / "nevo.toml").read_text(encoding="utf-8")
# the Nevo example (estimation, elasticities, diversion, costs, contour, merger; profiles off to
# save time) with a small parametric bootstrap: every phase of a run, about 4 s on one core
BOOTSTRAP = NEVO.replace("profiles = true", "profiles = false") + "\n[post.bootstrap]\ndraws = 3\n"
OLD = {"results.json": '{"old": true}\n', "summary.tex": "old summary\n",
       "merger.tex": "old merger\n", "objective_profiles.png": "old plot\n"}


def _snapshot(folder: Path) -> dict[str, bytes] | None:
    if not folder.exists():
        return None
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _leftovers(parent: Path) -> list[str]:
    if not parent.exists():
        return []
    return [p.name for p in parent.iterdir() if ".partial-" in p.name or ".replaced-" in p.name]


def _old_folder(folder: Path) -> dict[str, bytes]:
    folder.mkdir(parents=True)
    for name, text in OLD.items():
        (folder / name).write_text(text, encoding="utf-8")
    snapshot = _snapshot(folder)
    assert snapshot is not None
    return snapshot


# ------------------------------------------------------------------ SIGINT at real run phases
def _rows(err: str) -> int:
    return sum(1 for line in err.splitlines() if line.lstrip()[:1].isdigit())


def _staging(out: Path) -> list[Path]:
    return list(out.parent.glob(f"{out.name}.partial-*")) if out.parent.exists() else []


def _made(out: Path, name: str) -> bool:
    """``name`` was written by the run: in its staging folder (or, as the runs before staging
    did, in the output folder itself)."""
    return (out / name).exists() or any((folder / name).exists() for folder in _staging(out))


# (phase, condition on (output folder, stderr so far)): SIGINT is sent as soon as it holds
POINTS: list[tuple[str, Callable[[Path, str], bool]]] = [
    ("reading data, building the problem",  # (before staging: at the first evaluation)
     lambda out, err: any(_staging(out)) or "objective" in err),
    ("first objective evaluation", lambda out, err: "objective" in err),
    ("estimation, optimizer iterations", lambda out, err: _rows(err) >= 12),
    ("summary written, post-estimation starts",
     lambda out, err: _made(out, "summary.html")),
    ("elasticity heatmap plotting",
     lambda out, err: _made(out, "elasticities_market_C01Q1.html")),
    ("diversion heatmap plotting",
     lambda out, err: _made(out, "diversion_market_C01Q1.html")),
    ("costs written, objective contour", lambda out, err: _made(out, "costs.html")),
    ("merger written, bootstrap draws", lambda out, err: _made(out, "merger.html")),
    ("bootstrap apply", lambda out, err: _made(out, "bootstrap_elasticities.html")),
    ("last table written, results.json next",
     lambda out, err: _made(out, "bootstrap_merger.html")),
]


def _interrupt(spec: Path, out: Path, data: Path, ready: Callable[[Path, str], bool],
               logs: Path) -> tuple[int, str]:
    """Run ``python -m blpdemand estimate`` and send it SIGINT once ``ready`` holds."""
    env = {**os.environ, "BLPDEMAND_DATA": str(data), "OPENBLAS_NUM_THREADS": "1",
           "OMP_NUM_THREADS": "1"}
    with open(logs / "stdout", "wb") as stdout, open(logs / "stderr", "wb") as stderr:
        process = subprocess.Popen([sys.executable, "-m", "blpdemand", "estimate", str(spec),
                                    "--output", str(out)], stdout=stdout, stderr=stderr, env=env)
        deadline = time.monotonic() + 120
        while process.poll() is None and time.monotonic() < deadline:
            err = (logs / "stderr").read_text(encoding="utf-8", errors="replace")
            if ready(out, err):
                os.kill(process.pid, signal.SIGINT)
                break
            time.sleep(0.005)
        else:
            process.kill()
            process.wait()
            pytest.fail("the run ended (or hung) before the phase was reached:\n"
                        + (logs / "stderr").read_text(errors="replace")[-2000:])
        code = process.wait(timeout=120)
    return code, (logs / "stderr").read_text(encoding="utf-8", errors="replace")


def test_sigint_at_every_phase_exits_130_and_never_mixes_the_output_folder(
        tmp_path: Path, data_path: Path) -> None:
    """Ctrl-C used to be swallowed in post-estimation (exit 0 with the outputs written), or to
    surface as "internal error: SystemError: CPUDispatcher(...) returned a result with an
    exception set" (exit 1), and an interrupted rerun left new tables beside the old
    results.json. (Exit -2, death by SIGINT, came when the interrupt left an exec() of source
    text: CPython 3.11 under `python -m` remembers it even when caught.) Now every phase gives 130, one "interrupted" line, and the folder as before:
    absent on a first run (even its missing parent is not left), the old files byte for byte
    on a rerun; no staging folder remains."""
    spec = tmp_path / "nevo_boot.toml"
    spec.write_text(BOOTSTRAP, encoding="utf-8")
    rerun = tmp_path / "rerun" / "nevo"
    old = _old_folder(rerun)
    for k, (phase, ready) in enumerate(POINTS):
        first = tmp_path / f"new{k}" / "nevo"  # its parent does not exist either
        out = first if k % 3 == 0 else rerun
        code, err = _interrupt(spec, out, data_path, ready, tmp_path)
        lines = [line for line in err.splitlines() if line.strip()]
        assert code == 130, (phase, err[-3000:])
        assert lines[-1] == "blpdemand estimate: interrupted", (phase, err[-3000:])
        assert err.count("interrupted") == 1, (phase, err[-3000:])
        assert "Traceback" not in err and "internal error" not in err, phase
        if out == first:
            assert not first.parent.exists(), (phase, _snapshot(first))
        else:
            assert _snapshot(rerun) == old, phase
        assert _leftovers(out.parent) == [], phase


# ----------------------------------------------------- interrupts the library would swallow
LOGIT = """
[data]
products = "{data}/nevo_products.csv"
[model]
linear = "prices + sugar"
[instruments]
columns = ["demand_instruments0", "demand_instruments1"]
[post]
elasticities = true
"""


def _logit_spec(tmp_path: Path, data: Path, extra: str = "") -> Path:
    spec = tmp_path / "logit.toml"
    spec.write_text(LOGIT.format(data=data) + extra, encoding="utf-8")
    return spec


def _after_post(monkeypatch: pytest.MonkeyPatch, effect: Callable[[], None]) -> None:
    """Run ``effect`` (inside the run's SIGINT handling) right after the post-estimation."""
    original = cli_run.post_estimation

    def patched(*args: Any, **kwargs: Any) -> Any:
        value = original(*args, **kwargs)
        effect()
        return value

    monkeypatch.setattr(cli_run, "post_estimation", patched)


def _swallowed() -> None:  # as a broad `except Exception` around a compiled kernel would
    try:
        signal.raise_signal(signal.SIGINT)
    except KeyboardInterrupt:
        pass


def _as_system_error() -> None:  # as a numba dispatcher surfaces an interrupt
    try:
        signal.raise_signal(signal.SIGINT)
    except KeyboardInterrupt as interrupt:
        raise SystemError("returned a result with an exception set") from interrupt


class _Finalized:
    def __del__(self) -> None:  # as matplotlib's weakref callbacks during garbage collection
        signal.raise_signal(signal.SIGINT)


def _in_finalizer() -> None:
    _Finalized()  # collected at once: the interrupt is raised inside __del__


@pytest.mark.parametrize("effect", [_swallowed, _as_system_error, _in_finalizer],
                         ids=["swallowed", "system", "finalizer"])
def test_an_interrupt_swallowed_or_wrapped_still_stops_the_run(
        tmp_path: Path, data_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], effect: Callable[[], None]) -> None:
    """A real SIGINT that library code swallowed (the run went on: exit 0 with its outputs),
    that came back as numba's SystemError (exit 1, "internal error") or that was raised in a
    finalizer (Python printed "Exception ignored ... KeyboardInterrupt" and went on) still ends
    the run with 130, one line, and leaves the previous folder as it was."""
    _after_post(monkeypatch, effect)
    out = tmp_path / "out"
    old = _old_folder(out)
    code = main(["logit", str(_logit_spec(tmp_path, data_path)), "-o", str(out), "-q"])
    err = capsys.readouterr().err
    assert code == 130, err
    assert err.strip().splitlines()[-1] == "blpdemand logit: interrupted"
    assert err.count("interrupted") == 1, err
    assert "Traceback" not in err and "Exception ignored" not in err, err
    assert _snapshot(out) == old
    assert _leftovers(tmp_path) == []


def test_interrupt_while_writing_results_json_keeps_the_old_folder(
        tmp_path: Path, data_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """results.json half written when Ctrl-C comes: it was a plain write into the output folder
    (a truncated JSON beside old files); now the old folder is untouched and no partial file
    or folder is left."""
    from blpdemand.cli import report as cli_report

    original = cli_report.save_results

    def half_then_interrupt(results: Any, path: Path, **extra: Any) -> Path:
        original(results, path, **extra)
        Path(path).write_text('{"schema": ', encoding="utf-8")
        signal.raise_signal(signal.SIGINT)
        return Path(path)

    monkeypatch.setattr(cli_report, "save_results", half_then_interrupt)
    out = tmp_path / "out"
    old = _old_folder(out)
    code = main(["logit", str(_logit_spec(tmp_path, data_path)), "-o", str(out), "-q"])
    assert code == 130, capsys.readouterr().err
    assert _snapshot(out) == old
    assert _leftovers(tmp_path) == []


# ------------------------------------------------------------- reruns into an existing folder
def test_a_finished_rerun_replaces_the_folder_as_a_whole(
        tmp_path: Path, data_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An earlier run's files that this run does not write (its merger, its profile plot) used
    to stay beside the new results.json; now the folder holds exactly this run's files."""
    out = tmp_path / "out"
    _old_folder(out)
    (out / "stale_market_X.tex").write_text("old", encoding="utf-8")
    code = main(["logit", str(_logit_spec(tmp_path, data_path)), "-o", str(out), "-q"])
    assert code == 0, capsys.readouterr().err
    names = {p.name for p in out.iterdir()}
    assert "stale_market_X.tex" not in names and "merger.tex" not in names
    assert "objective_profiles.png" not in names
    assert {"results.json", "summary.tex", "elasticities.tex"} <= names
    assert json.loads((out / "results.json").read_text(encoding="utf-8")).get("old") is None
    assert _leftovers(tmp_path) == []


def test_a_folder_holding_other_files_is_not_replaced(
        tmp_path: Path, data_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Replacing the folder as a whole must not delete a user's own files: a folder holding a
    file that a run never writes is refused before anything runs, and kept as it was."""
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("mine", encoding="utf-8")
    code = main(["logit", str(_logit_spec(tmp_path, data_path)), "-o", str(out), "-q"])
    err = capsys.readouterr().err
    assert code == 2
    assert "output folder" in err and "notes.txt" in err
    assert _snapshot(out) == {"notes.txt": b"mine"}
    assert _leftovers(tmp_path) == []


# -------------------------------------------------------- [post] and the output path, checked first
NEVO_SMALL = """
[data]
products = "{data}/nevo_products.csv"
agents = "{data}/nevo_agents.csv"
[model]
linear = "prices"
nonlinear = "0 + prices + sugar"
absorb = "C(product_ids)"
[instruments]
columns = ["demand_instruments0", "demand_instruments1", "demand_instruments2"]
[parameters]
sigma = [[2.0, 0.0], [0.0, 0.02]]
[estimation]
method = "1s"
[post]
elasticities = true
"""


@pytest.mark.parametrize("post, expected", [
    # a market that is not in the data: named, with the market column
    ('market = "ZZZ"\n', ["[post] market", "'ZZZ'", "market_ids"]),
    # a contour over a parameter the model does not have
    ('contour = ["sigma[prices, prices]", "sigma[mushy, mushy]"]\n',
     ["[post] contour", "sigma[mushy, mushy]", "sigma[sugar, sugar]"]),
    # draw multipliers must be integers >= 1 (1.5 was truncated to 1)
    ("stability = [1, 1.5]\n[integration]\nkind = 'sobol'\nsize = 20\n",
     ["[post] stability", "integers >= 1"]),
    # costs need the firms' ids
    ('costs = true\n[columns]\nfirm_ids = "no_such_column"\n',
     ["[post] costs", "'no_such_column'"]),
])
def test_post_options_fail_before_the_estimation(
        tmp_path: Path, data_path: Path, capsys: pytest.CaptureFixture[str], post: str,
        expected: list[str]) -> None:
    """A wrong [post] option used to fail only after the whole estimation (its progress rows
    printed first); now it is one line, status 2, and no objective was evaluated."""
    spec = tmp_path / "spec.toml"
    spec.write_text(NEVO_SMALL.format(data=data_path) + post, encoding="utf-8")
    code = main(["estimate", str(spec), "-o", str(tmp_path / "out")])
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert code == 2, captured.err
    assert len(lines) == 1 and "objective" not in captured.err, captured.err
    assert lines[0].startswith("blpdemand estimate: error:")
    for text in expected:
        assert text in lines[0], lines[0]
    assert captured.out == ""  # no estimates table: nothing was estimated
    assert not (tmp_path / "out").exists() and _leftovers(tmp_path) == []


@pytest.mark.parametrize("kind", ["file", "under_file"])
def test_an_output_path_at_or_under_a_file_fails_before_the_estimation(
        tmp_path: Path, data_path: Path, capsys: pytest.CaptureFixture[str], kind: str) -> None:
    """``--output somefile.txt/sub`` failed only when the first table was written, after the
    estimation; now it is refused first, naming the file."""
    spec = tmp_path / "spec.toml"
    spec.write_text(NEVO_SMALL.format(data=data_path), encoding="utf-8")
    regular = tmp_path / "somefile.txt"
    regular.write_text("not a folder", encoding="utf-8")
    out = regular if kind == "file" else regular / "sub"
    code = main(["estimate", str(spec), "-o", str(out)])
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert code == 2
    assert len(lines) == 1 and "objective" not in captured.err, captured.err
    assert "output folder" in lines[0] and "somefile.txt" in lines[0] and "file" in lines[0]
    assert regular.read_text(encoding="utf-8") == "not a folder"


# ------------------------------------------------------------ paths and CSVs of the wrong kind
def test_a_directory_given_as_the_spec_says_it_is_a_directory(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["logit", str(tmp_path), "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert "is a directory" in err and "does not exist" not in err


def test_a_directory_given_as_data_says_it_is_a_directory(
        tmp_path: Path, data_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = _logit_spec(tmp_path, data_path)
    spec.write_text(spec.read_text().replace("/nevo_products.csv", ""), encoding="utf-8")
    code = main(["logit", str(spec), "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert "[data] products" in err and "is a directory" in err and "does not exist" not in err


@pytest.mark.parametrize("delimiter, word", [(";", "semicolons"), ("\t", "tabs")])
def test_a_csv_with_another_delimiter_gets_a_hint(
        tmp_path: Path, data_path: Path, capsys: pytest.CaptureFixture[str], delimiter: str,
        word: str) -> None:
    """A spreadsheet's ';'-separated export parses to one column; the error used to be the
    missing-column one ("prices" not found), with no word about the delimiter."""
    import pandas as pd

    products = pd.read_csv(data_path / "nevo_products.csv").head(50)
    products.to_csv(tmp_path / "semi.csv", sep=delimiter, index=False)
    spec = _logit_spec(tmp_path, data_path)
    spec.write_text(spec.read_text().replace(f"{data_path}/nevo_products.csv",
                                             str(tmp_path / "semi.csv")), encoding="utf-8")
    code = main(["logit", str(spec), "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert "semi.csv" in err and word in err and "comma-separated" in err
    assert err.count("[data] products") == 1, err  # our message, not wrapped in a read error
