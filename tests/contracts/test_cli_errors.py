"""Bad specifications end with exit status 2 and ONE line on stderr that names the culprit,
never a traceback; --version and --help work for every sub-command.

Reference: the specification text written in each test (the key, type or path it breaks).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from blpdemand import __version__
from blpdemand.cli import main

GOOD = """
[data]
products = "{data}/nevo_products.csv"

[model]
linear = "prices + sugar"

[instruments]
columns = ["demand_instruments0"]
"""


def _run(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str,
         command: str = "logit") -> tuple[int, str]:
    spec = tmp_path / "spec.toml"
    spec.write_text(text)
    code = main([command, str(spec), "--output", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err
    return code, err


def _one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize("text, expected", [
    # unknown top-level section: named with the valid ones
    (GOOD + "\n[modle]\nlinear = 'x'\n", "unknown section 'modle'"),
    # unknown key inside a known section: named with the valid keys
    (GOOD.replace('linear = "prices + sugar"', 'linear = "prices"\nlinaer = "x"'),
     "unknown key 'linaer' in [model]"),
    # wrong type: a number where a formula string is expected
    (GOOD.replace('"prices + sugar"', "3"), "[model] linear in spec.toml must be a string"),
    # wrong type in a list
    (GOOD.replace('["demand_instruments0"]', '["demand_instruments0", 7]'), "must be a list of strings"),
    # missing data file
    (GOOD.replace("nevo_products.csv", "no_such_file.csv"), "does not exist"),
    # unset environment variable without a default
    (GOOD.replace("{data}", "${BLPDEMAND_UNSET_FOR_TEST}"), "BLPDEMAND_UNSET_FOR_TEST"),
    # invalid TOML
    (GOOD + "\n[broken\n", "not valid TOML"),
    # unknown key of a library option set ([logit] takes estimate_logit's keywords)
    (GOOD + "\n[logit]\ncovarance = 'robust'\n", "unknown key 'covarance' in [logit]"),
    # a library option with an unknown value (the library's own error, still one line)
    (GOOD + "\n[logit]\nmethod = 'lasso'\n", "lasso"),
    # a library option of the wrong type, checked against the function's annotations
    (GOOD + "\n[logit]\nmethod = 3\n", "[logit] method in spec.toml must be one of 'ols'"),
    # unknown instrument builder
    (GOOD + "\n[[instruments.build]]\nkind = 'magic'\n", "unknown instrument builder kind 'magic'"),
    # a data error from the library (column not in the data)
    (GOOD.replace("prices + sugar", "prices + sugarr"), "sugarr"),
])
def test_bad_spec_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], data_path: Path,
                           text: str, expected: str) -> None:
    code, err = _run(tmp_path, capsys, text.replace("{data}", str(data_path)))
    assert code == 2
    line = _one_line(err)
    assert line.startswith("blpdemand logit: error:")
    assert expected in line


def test_estimate_section_checks(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                 data_path: Path) -> None:
    # [estimation] keys are EstimationConfig's fields: a typo is named with the valid ones.
    text = (GOOD.replace("{data}", str(data_path))
            .replace('linear = "prices + sugar"', 'linear = "prices"\nnonlinear = "0 + prices"')
            + "\n[integration]\nkind = 'sobol'\nsize = 10\n[parameters]\nsigma = [[1.0]]\n"
            + "[estimation]\noptimiser = 'bfgs'\n")
    code, err = _run(tmp_path, capsys, text, command="estimate")
    line = _one_line(err)
    assert code == 2 and "unknown key 'optimiser' in [estimation]" in line and "optimizer" in line
    code, err = _run(tmp_path, capsys, text.replace("optimiser = 'bfgs'", "gtol = 'tight'"),
                     command="estimate")
    assert code == 2 and "[estimation] gtol in spec.toml must be a number" in _one_line(err)
    code, err = _run(tmp_path, capsys, text.replace("size = 10", "size = 'ten'"),
                     command="estimate")
    assert code == 2 and "size='ten'" in _one_line(err)
    # the logit command refuses the BLP estimator's section, and the other way round
    code, err = _run(tmp_path, capsys, text, command="logit")
    assert code == 2 and "[estimation]" in _one_line(err)


def test_missing_spec_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["estimate", str(tmp_path / "nope.toml")])
    assert code == 2
    assert "does not exist" in _one_line(capsys.readouterr().err)


def test_subprocess_one_line_no_traceback(tmp_path: Path) -> None:
    # The real entry point (python -m blpdemand): exit status and stderr as a user sees them.
    spec = tmp_path / "bad.toml"
    spec.write_text('[data]\nproducts = "x.csv"\n[model]\nlinear = "prices"\nweird = 1\n')
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    done = subprocess.run([sys.executable, "-m", "blpdemand", "estimate", str(spec)],
                          capture_output=True, text=True, env=env, timeout=120, check=False)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        ("blpdemand estimate: error: unknown key 'weird' in [model] of bad.toml; valid: absorb, "
        "demographics, endogenous, linear, lognormal, nesting, nonlinear, rho")]


def test_version_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.strip() == f"blpdemand {__version__}"
    for command in ("estimate", "logit"):
        with pytest.raises(SystemExit) as stop:
            main([command, "--help"])
        assert stop.value.code == 0
        out = capsys.readouterr().out
        assert "SPEC.toml" in out and "--output" in out and "examples/README.md" in out
