"""The compiled per-market kernels alone, on the arguments an estimate gives them (issue 23).

    python benchmarks/bench_adjoint.py                       # blp nevo blp6, captured now
    python benchmarks/bench_adjoint.py --arguments /tmp/k.pkl   # reuse (or save) the capture

During one estimate per problem (``bench_estimate``'s problems and settings) the arguments of
``adjoint_markets`` (the adjoint gradient, ``model.adjoint_compiled``) and ``solve_markets``
(the Anderson contraction, ``solve.anderson_compiled``) are recorded; then each kernel is timed
on the first, middle and last call's arguments (min over ``--repeat`` calls, one BLAS thread)
and the mean of the three is printed in microseconds, with the cells of exp(mu) and the ns a
cell. With ``--arguments FILE`` the capture is saved there, or loaded when the file exists, so
that two checkouts (``PYTHONPATH=<checkout>/src``, run in turns) time the same inputs.
"""

from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_variable] = "1"

import argparse
import pickle
import time
from pathlib import Path
from typing import Any

import numpy as np
from bench_estimate import blp, blp6, nevo, ours_estimate

import blpdemand.model.adjoint_compiled as adjoint
import blpdemand.solve.anderson_compiled as anderson

PROBLEMS = {"blp": blp, "nevo": nevo, "blp6": blp6}


def capture(names: list[str]) -> dict[str, dict[str, list[Any]]]:
    """Per problem, the (args, kwargs) of every kernel call during one estimate: first, middle
    and last kept."""
    out: dict[str, dict[str, list[Any]]] = {}
    original = adjoint.adjoint_markets, anderson.solve_markets
    for name in names:
        calls: dict[str, list[Any]] = {"adjoint": [], "anderson": []}

        def recorder(kind: str, function: Any, calls: dict[str, list[Any]] = calls) -> Any:
            def record(*args: Any, **kwargs: Any) -> Any:
                calls[kind].append(([a.copy() if isinstance(a, np.ndarray) else a
                                     for a in args], kwargs))
                return function(*args, **kwargs)
            return record

        adjoint.adjoint_markets = recorder("adjoint", original[0])
        anderson.solve_markets = recorder("anderson", original[1])
        try:
            ours_estimate(PROBLEMS[name]())
        finally:
            adjoint.adjoint_markets, anderson.solve_markets = original
        out[name] = {k: [v[0], v[len(v) // 2], v[-1]] for k, v in calls.items()}
    return out


def best(function: Any, args: list[Any], kwargs: dict[str, Any], repeat: int) -> float:
    function(*args, **kwargs)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function(*args, **kwargs)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("problems", nargs="*", default=["blp", "nevo", "blp6"])
    parser.add_argument("--repeat", type=int, default=100)
    parser.add_argument("--arguments", type=Path, default=None)
    args = parser.parse_args()
    if args.arguments is not None and args.arguments.exists():
        captured = pickle.loads(args.arguments.read_bytes())
    else:
        captured = capture(args.problems)
        if args.arguments is not None:
            args.arguments.write_bytes(pickle.dumps(captured))
    kernels = {"adjoint": adjoint.adjoint_markets, "anderson": anderson.solve_markets}
    for name in args.problems:
        for kind, function in kernels.items():
            calls = captured[name][kind]
            repeat = args.repeat if kind == "adjoint" else max(args.repeat // 10, 3)
            seconds = np.mean([best(function, a, k, repeat) for a, k in calls])
            cells = float(np.mean([np.sum(a[4] * a[5]) if kind == "anderson"
                                   else np.sum(a[9] * a[10]) for a, _ in calls]))
            print(f"{name:>5} {kind:>8}: {seconds * 1e6:8.1f} us a call, {cells:,.0f} cells "
                  f"({seconds * 1e9 / cells:.2f} ns a cell)", flush=True)


if __name__ == "__main__":
    main()
