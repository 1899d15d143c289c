"""The floor of issue 23 for a whole estimation: the arithmetic no inner loop can avoid.

    floor = share evaluations x 2 J I flops / (measured dgemm rate)
            + exp(mu) cells computed x (measured time of numpy's exp per element)

Share evaluations are the contraction evaluations summed over markets (the Hessian's included:
they are counted with the rest); 2 J I is taken at the mean J_t I_t of the problem's markets
(the totals do not say which markets took the evaluations). exp(mu) cells are counted by
wrapping the package's ``exp_utility`` for the timed run: every theta at which exp(mu) was
formed (optimizer trials, the final evaluation, the Hessian's steps), real cells only. The
dgemm rate is one thread's on 512 x 512 matrices (the best a share evaluation could reach if it
ran at gemm speed; it is two matrix-vector products, bound by cache bandwidth instead), numpy's
exp is timed on 64 Ki elements in cache. Not counted: derivatives (the adjoint gradient, d delta
/ d theta for standard errors), the linear IV step, Python. So the floor is a lower bound, and
time / floor says how far above it a run is.

A second floor prices a share evaluation at what tuned BLAS achieves for its own arithmetic
instead: the two matrix-vector products over a market's exp(mu) (D = c + E' e, then
s = e * (E (w / D))), timed as numpy's dgemv on a 128 x 256 matrix held in L2 (one thread),
per cell; the exp(mu) term is the same. It is the larger of the two (a share evaluation is
bound by reading exp(mu) from cache, not by arithmetic) and still leaves out the derivatives,
the IV step and Python: time / sweep floor says how far a run is from doing nothing but its
share evaluations and exp(mu) at BLAS speed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np


def _best(function: Callable[[], Any], repeat: int = 7) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def rates() -> tuple[float, float, float]:
    """(dgemm flops per second on one thread, seconds per exp of one element, seconds per
    exp(mu) cell of one share evaluation's two dgemv sweeps)."""
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((512, 512)), rng.standard_normal((512, 512))
    out = np.empty((512, 512))
    gemm = 2 * 512**3 / _best(lambda: np.matmul(a, b, out=out))
    x = rng.uniform(-5, 5, 1 << 16)
    y = np.empty_like(x)
    exp = _best(lambda: np.exp(x, out=y), 50) / x.size
    E = np.exp(rng.standard_normal((128, 256)))
    e, w = rng.uniform(size=128), np.full(256, 1 / 256)
    D, s = np.empty(256), np.empty(128)

    def sweeps() -> None:
        for _ in range(100):
            np.dot(e, E, out=D)  # D_i = sum_j e_j E_ji
            np.dot(E, w, out=s)  # s_j = sum_i E_ji r_i
    sweep = _best(sweeps, 20) / (100 * E.size)
    return gemm, exp, sweep


@contextmanager
def counting_exp_cells() -> Iterator[list[int]]:
    """Count the real exp(mu) cells the package forms inside the block (a one-item list)."""
    from blpdemand.solve import market_blocks

    original = market_blocks.exp_utility
    cells = [0]

    def counted(block: Any, x2: Any, coefficients: Any, weights: Any, **options: Any) -> Any:
        T_b, J, I = x2.shape[0], x2.shape[1], coefficients.shape[1]
        n = np.full(T_b, J) if block.product_pad is None else J - block.product_pad.sum(axis=1)
        m = np.full(T_b, I) if block.agent_pad is None else I - block.agent_pad.sum(axis=1)
        cells[0] += int(np.sum(n * m))
        return original(block, x2, coefficients, weights, **options)

    market_blocks.exp_utility = counted
    try:
        yield cells
    finally:
        market_blocks.exp_utility = original


def mean_cells(problem: Any) -> float:
    """Mean J_t I_t over markets of a ``bd.Problem``."""
    J = np.asarray(problem.products.markets.sizes, dtype=np.float64)
    I = np.asarray(problem.agents.markets.sizes, dtype=np.float64)
    return float(np.mean(J * I))


def floor_seconds(problem: Any, contraction_evaluations: int, exp_cells: int,
                  measured: tuple[float, float, float]) -> float:
    """Share evaluations x 2 J I flops at the dgemm rate + exp(mu) cells at numpy's exp."""
    gemm, exp, _ = measured
    return contraction_evaluations * 2 * mean_cells(problem) / gemm + exp_cells * exp


def sweep_floor_seconds(problem: Any, contraction_evaluations: int, exp_cells: int,
                        measured: tuple[float, float, float]) -> float:
    """Share evaluations x J I cells at the two dgemv sweeps' time per cell + exp(mu)."""
    _, exp, sweep = measured
    return contraction_evaluations * mean_cells(problem) * sweep + exp_cells * exp
