"""The compiled kernels built ahead of time at install (``setup.py``, ``blpdemand._compiled``).

The rest of the suite runs numba's JIT (``conftest.py``); here fresh processes run each.

Behaviour, not time (the cold start is timed in benchmarks/bench_cold_start.py): where the
extension was built from the installed sources, a fresh process estimates with it and never
imports numba; it gives the same bits as numba's JIT (``BLPDEMAND_JIT=1``) on problems that run
every kernel (contraction, adjoint, padded exp(mu) and share Jacobians, the zeta pricing
fixed point, the nested logit's step and Jacobians); a changed kernel source is never run from
a stale build.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest

from blpdemand import _compiled

BUILT = importlib.util.find_spec("blpdemand._kernels") is not None
needs_build = pytest.mark.skipif(not BUILT, reason="blpdemand._kernels not built (pip install)")

SCRIPT = """
import json, sys, warnings
warnings.simplefilter("ignore")
import numpy as np
import blpdemand as bd
from blpdemand._compiled import ahead_of_time

# Bertrand prices: the zeta kernel; unequal markets: padded exp(mu) and share Jacobians
sim = bd.simulate(markets=12, products=6, sigma={"x1": 1.0}, draws=40, rng=1,
                  pricing="bertrand")
products = sim.products.drop(index=[0, 7, 8, 20]).reset_index(drop=True)
problem = bd.Problem(products, linear=sim.linear, nonlinear=sim.nonlinear, agents=sim.agents,
                     instruments=list(sim.instruments))
blp = bd.estimate(problem, sigma=[0.5], config=bd.EstimationConfig(starts=0))
nested = bd.simulate(markets=10, products=6, sigma={"x1": 1.0}, draws=30, nests=2,
                     nesting_rho=0.5, rng=6)
extra = nested.products.assign(w1_2=nested.products["w1"] ** 2,
                                w2_2=nested.products["w2"] ** 2)
rcnl = bd.estimate(bd.Problem(extra, linear=nested.linear, nonlinear=nested.nonlinear,
                              agents=nested.agents, nesting="nesting_ids",
                              instruments=[*nested.instruments, "w1_2", "w2_2"]),
                   sigma=[0.5], rho=0.3, config=bd.EstimationConfig(starts=0))
print(json.dumps({"ahead_of_time": ahead_of_time() is not None, "numba": "numba" in sys.modules}))
print(json.dumps({  # NaN (unidentified SEs) written as NaN: the texts are compared
    "prices": sim.products["prices"].tolist(), "blp": blp.estimates.tolist(),
    "blp_se": np.asarray(blp.bse).tolist(), "blp_q": blp.objective,
    "rcnl": rcnl.estimates.tolist(), "rcnl_se": np.asarray(rcnl.bse).tolist(),
    "evaluations": [blp.contraction_evaluations, rcnl.contraction_evaluations]}))
"""


def _run(jit: bool) -> tuple[dict[str, bool], str]:
    env = {**os.environ, "BLPDEMAND_JIT": "1" if jit else "0"}
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                          env=env, check=True)
    flags, numbers = done.stdout.splitlines()[-2:]
    return json.loads(flags), numbers


@needs_build
def test_the_built_kernels_run_without_numba_and_equal_the_jit_bit_for_bit() -> None:
    built_from = importlib.import_module("blpdemand._kernels").source_digest()
    assert built_from == _compiled.source_digest(), (
        "blpdemand._kernels was built from other kernel sources: reinstall (pip install -e .)")
    (built, built_numbers), (jit, jit_numbers) = _run(jit=False), _run(jit=True)
    assert built == {"ahead_of_time": True, "numba": False}  # the extension, current, was used
    assert jit == {"ahead_of_time": False, "numba": True}
    assert json.loads(built_numbers)["blp"]  # a real run
    assert built_numbers == jit_numbers  # every float's shortest repr: the same bits


def test_a_changed_kernel_source_is_not_run_from_a_stale_build(monkeypatch) -> None:
    class Stale:
        @staticmethod
        def source_digest() -> int:
            return _compiled.source_digest() ^ 1

    import blpdemand

    monkeypatch.setenv("BLPDEMAND_JIT", "0")
    monkeypatch.setitem(sys.modules, "blpdemand._kernels", Stale)
    monkeypatch.setattr(blpdemand, "_kernels", Stale, raising=False)
    _compiled.ahead_of_time.cache_clear()
    try:
        assert _compiled.ahead_of_time() is None
        monkeypatch.setattr(Stale, "source_digest", staticmethod(_compiled.source_digest))
        _compiled.ahead_of_time.cache_clear()
        assert _compiled.ahead_of_time() is Stale
        monkeypatch.setenv("BLPDEMAND_JIT", "1")
        _compiled.ahead_of_time.cache_clear()
        assert _compiled.ahead_of_time() is None
    finally:
        monkeypatch.undo()
        _compiled.ahead_of_time.cache_clear()


def test_the_digest_covers_every_kernel_module(tmp_path, monkeypatch) -> None:
    # a copy of the sources with one kernel module changed by one byte changes the digest
    package = tmp_path / "blpdemand"
    for name in ("blpdemand._compiled", *_compiled.KERNEL_MODULES):
        source = _compiled._PACKAGE.parent / (name.replace(".", "/") + ".py")
        target = tmp_path / (name.replace(".", "/") + ".py")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(source.read_bytes())
    monkeypatch.setattr(_compiled, "_PACKAGE", package)
    original = _compiled.source_digest()
    for name in _compiled.KERNEL_MODULES:
        path = tmp_path / (name.replace(".", "/") + ".py")
        text = path.read_bytes()
        path.write_bytes(text + b"\n")
        assert _compiled.source_digest() != original, name
        path.write_bytes(text)
    assert _compiled.source_digest() == original
