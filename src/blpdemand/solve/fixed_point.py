"""Batched fixed-point solvers x = G(x) for many independent small systems (one per market).

Each row of ``x`` (n, J) is one market's system; rows converge independently and leave the
work set (the map is told to ``restrict`` itself to the rows still iterating). Convergence is
max_j |G(x)_j - x_j| < max(tol, 2 eps max_j |x_j|) for the row (absolute; default 1e-14 on
delta, or two units in the last place where delta is too large for 1e-14 to be reachable).

Methods (``FixedPointConfig.method``):

- ``"auto"`` (default): Anderson in the compiled per-market kernel (``solve.anderson_compiled``)
  when numba is available; otherwise, or with ``compiled=False``, Anderson for blocks whose
  exp(mu) holds at least ``AUTO_CELLS`` cells and SQUAREM for smaller ones (decided by
  ``solve.contraction`` per block). Anderson needs about
  half SQUAREM's share evaluations on BLP-sized markets (BLP 1995: 348 vs 989; cars: 390 vs
  758; 1,000 x 50 x 1,000: 8,929 vs 14,741), but its per-step least squares costs about one
  evaluation of a small block, so SQUAREM stays faster on tiny markets (Nevo: 24 x 20).
  Anderson stops a market whose residual stagnates; "auto" then solves the markets it did
  not converge again with SQUAREM from the same start.
- ``"squarem"``: SQUAREM, scheme S3 of Varadhan and Roland (2008), per-row step
  length alpha = -||r|| / ||v|| clipped to [-step_max, -1], step_max growing 4x when hit.
- ``"simple"``: x <- G(x), the BLP contraction itself (Berry, Levinsohn and Pakes 1995).
- ``"anderson"``: type-II Anderson acceleration with ``memory`` past steps (Walker and Ni 2011),
  per-row least squares by batched pseudo-inverse.
- ``"newton"``: Newton's method on x - G(x) = 0 with the per-row Jacobian supplied by the map
  (for small J: a (J, J) solve per market per step).

Every run returns one ``FixedPointResult`` (per-row status, evaluations and last change); the
caller applies ``on_failure`` (see ``solve.contraction``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol, cast

import numpy as np

from blpdemand._checks import check_field_types
from blpdemand._types import ON_FAILURE, BoolArray, FloatArray, IntArray, OnFailure, Status
from blpdemand.errors import SpecificationError

Method = Literal["auto", "squarem", "simple", "anderson", "newton"]
_METHODS = ("auto", "squarem", "simple", "anderson", "newton")
#: two units in the last place, relative: a step below ULPS max_j |x_j| is at float resolution
ULPS = 2 * float(np.finfo(np.float64).eps)
#: "auto" uses Anderson for blocks of at least this many exp(mu) cells (T_b J I), else SQUAREM.
AUTO_CELLS = 1 << 17


#: the Status of each fixed-point status code (0 converged, 1 evaluation limit, 2 NaN or inf)
FIXED_POINT_CODES = (Status.CONVERGED, Status.MAX_EVALUATIONS, Status.NONFINITE)


@dataclass(frozen=True, slots=True, kw_only=True)
class FixedPointConfig:
    """How to solve the inner fixed point.

    Attributes
    ----------
    method : "auto" (default: Anderson on large blocks, SQUAREM on small ones), "squarem",
        "simple", "anderson" or "newton".
    tol : absolute tolerance on max_j |G(x)_j - x_j| per market (default 1e-14). Where it is
        below the float resolution of a market's delta (max_j |delta_j| > tol / (2 eps), 22.5
        for 1e-14), two units in the last place of max_j |delta_j| are used instead.
    max_evaluations : evaluations of G per market before giving up.
    memory : past steps kept by Anderson acceleration.
    on_failure : "report" (status and failed markets in the result), "warn" (also a
        ConvergenceWarning) or "raise" (ConvergenceError naming the markets).
    block_bytes : cap on the bytes of one block's exp(mu) (markets iterated together).
    compiled : run Anderson ("auto" and "anderson") in the compiled per-market kernel
        (``solve.anderson_compiled``, numba) when numba is installed; False keeps the numpy
        block solvers of this module (the reference implementation).
    threads : markets are independent: solve blocks of them on this many threads (default 1;
        blocks are made smaller so that each thread gets about two). The compiled kernel and
        numpy's large operations release the GIL. Results are bit-identical to one thread on
        the same blocks, and equal to the default blocks to the tolerance.
        For multi-start estimation prefer ``EstimationConfig(workers=...)`` (not both).
    """

    method: Method = "auto"
    tol: float = 1e-14
    max_evaluations: int = 5_000
    memory: int = 5
    on_failure: OnFailure = "report"
    block_bytes: int = 8 << 20
    compiled: bool = True
    threads: int = 1

    def __post_init__(self) -> None:
        check_field_types(self)
        if self.method not in _METHODS:
            raise SpecificationError(f"method={self.method!r} is unknown; use one of {_METHODS}")
        if self.on_failure not in ON_FAILURE:
            raise SpecificationError(
                f"on_failure={self.on_failure!r} is unknown; use one of {ON_FAILURE}")
        if not (self.tol > 0 and np.isfinite(self.tol)):
            raise SpecificationError(f"tol must be positive and finite, got {self.tol!r}")
        if self.max_evaluations < 1:
            raise SpecificationError(f"max_evaluations must be >= 1, got {self.max_evaluations}")
        if self.memory < 1:
            raise SpecificationError(f"memory must be >= 1, got {self.memory}")
        if not isinstance(self.compiled, bool):
            raise SpecificationError(f"compiled must be True or False, got {self.compiled!r}")
        if isinstance(self.threads, bool) or not isinstance(self.threads, (int, np.integer)) \
                or self.threads < 1:
            raise SpecificationError(f"threads must be an integer >= 1, got {self.threads!r}")
        if self.block_bytes < 1:
            raise SpecificationError(f"block_bytes must be >= 1, got {self.block_bytes}")


@dataclass(frozen=True, slots=True)
class FixedPointResult:
    """Per-row outcome of a batched fixed-point run.

    Attributes
    ----------
    x : (n, J) solution (converged rows), or the last finite iterate (failed rows).
    codes : (n,) index into (CONVERGED, MAX_EVALUATIONS, NONFINITE).
    evaluations : (n,) evaluations of G spent on each row.
    change : (n,) last max_j |G(x)_j - x_j| of each row.
    """

    x: FloatArray
    codes: IntArray
    evaluations: IntArray
    change: FloatArray

    @property
    def status(self) -> Status:
        """CONVERGED if every row converged, else the worst row's status."""
        return FIXED_POINT_CODES[int(self.codes.max())] if self.codes.size else Status.CONVERGED

    @property
    def failed(self) -> IntArray:
        """Rows that did not converge."""
        return np.flatnonzero(self.codes != 0)


class BatchedMap(Protocol):
    """A map G over the rows of a work set (the rows still iterating)."""

    def evaluate(self, x: FloatArray) -> FloatArray:
        """G(x) for the work set: (n, J) -> (n, J)."""

    def residual_jacobian(self, x: FloatArray) -> tuple[FloatArray, FloatArray]:
        """x - G(x) (n, J) and its Jacobian (n, J, J), for Newton's method."""

    def restrict(self, keep: IntArray) -> None:
        """Keep only these rows of the current work set."""


def _finite_rows(x: FloatArray) -> BoolArray:
    """(n,) True where every element of the row is finite."""
    return cast(BoolArray, np.isfinite(x).all(axis=1))


class _WorkSet:
    """Book-keeping of rows: which still iterate, their results, and compaction of the set."""

    def __init__(self, system: BatchedMap, x0: FloatArray, config: FixedPointConfig) -> None:
        n = x0.shape[0]
        self.system, self.tol, self.limit = system, config.tol, config.max_evaluations
        self.out = x0.copy()
        self.codes = np.full(n, 1, dtype=np.int64)
        self.evaluations = np.zeros(n, dtype=np.int64)
        self.change = np.full(n, np.inf)
        self.rows = np.arange(n)
        self.open = np.ones(n, dtype=bool)
        self.n_open = n
        self.last = np.full(n, np.inf)  # last change of each work-set row
        self.count = 0

    def evaluate(self, x: FloatArray) -> FloatArray:
        self.count += 1
        return self.system.evaluate(x)

    @property
    def running(self) -> bool:
        return self.n_open > 0 and self.count < self.limit

    def _close(self, mask: np.ndarray, values: FloatArray, code: int) -> None:
        mask = mask & self.open
        rows = self.rows[mask]
        self.out[rows] = values[mask]
        self.codes[rows] = code
        self.evaluations[rows] = self.count
        self.change[rows] = self.last[mask]
        self.open &= ~mask
        self.n_open -= rows.size

    def check(self, x: FloatArray, g: FloatArray, *, fail_nonfinite: bool = True,
              step: FloatArray | None = None) -> None:
        """Close rows whose step x -> g = G(x) met the tolerance, or (optionally) broke down.

        ``step`` is g - x when the caller has it. The common case (no row closes, all finite)
        costs a few operations on (n, J) arrays.
        """
        change = np.max(np.abs(g - x if step is None else step), axis=1)
        self.last = change
        # tol, or two ulps of max_j |x_j| where tol is below delta's float resolution; a NaN
        # row never compares true, so it cannot keep the others from closing
        converged = change < np.maximum(self.tol, ULPS * np.max(np.abs(x), axis=1))
        if converged.any():
            self._close(converged, g, 0)
        if fail_nonfinite and not change.max(initial=0.0) < np.inf:
            self.fail(~np.isfinite(change), x)

    def stop(self, mask: np.ndarray, g: FloatArray, x: FloatArray) -> None:
        """Close these rows as not converged (stalled), keeping g where finite, else x."""
        self._close(mask, np.where(_finite_rows(g)[:, None], g, x), 1)

    def fail(self, mask: np.ndarray, x: FloatArray) -> None:
        """Close these rows as broken (non-finite), keeping x where it is finite."""
        safe = np.where(_finite_rows(x)[:, None], x, self.out[self.rows])
        self._close(mask, safe, 2)

    def compact(self) -> IntArray | None:
        """Drop finished rows once they are a quarter of the set; return the kept positions."""
        if self.n_open == 0 or self.n_open > 0.75 * self.open.size:
            return None
        keep = np.flatnonzero(self.open)
        self.rows, self.open = self.rows[keep], np.ones(keep.size, dtype=bool)
        self.last = self.last[keep]
        self.system.restrict(keep)
        return keep

    def finish(self, x: FloatArray) -> FixedPointResult:
        """Rows still open ran out of evaluations: keep their last finite iterate."""
        if self.n_open:
            safe = np.where(_finite_rows(x)[:, None], x, self.out[self.rows])
            self._close(self.open.copy(), safe, 1)
        return FixedPointResult(x=self.out, codes=self.codes, evaluations=self.evaluations,
                                change=self.change)


def solve_fixed_point(system: BatchedMap, x0: FloatArray,
                      config: FixedPointConfig) -> FixedPointResult:
    """Solve x = G(x) row by row for all rows of x0 (n, J) at once; see the module docstring."""
    work = _WorkSet(system, np.asarray(x0, dtype=np.float64), config)
    with np.errstate(all="ignore"):
        if config.method == "simple":
            x = _simple(work, work.out.copy())
        elif config.method in ("squarem", "auto"):
            x = _squarem(work, work.out.copy())
        elif config.method == "anderson":
            x = _anderson(work, work.out.copy(), config.memory)
        else:
            x = _newton(work, work.out.copy())
        return work.finish(x)


def _simple(work: _WorkSet, x: FloatArray) -> FloatArray:
    while work.running:
        g = work.evaluate(x)
        work.check(x, g)
        x = np.where(np.isfinite(g), g, x)
        keep = work.compact()
        if keep is not None:
            x = x[keep]
    return x


def _squarem(work: _WorkSet, x: FloatArray) -> FloatArray:
    step_max = np.ones(x.shape[0])
    while work.running:
        g1 = work.evaluate(x)
        work.check(x, g1)
        keep = work.compact()
        if keep is not None:
            x, g1, step_max = x[keep], g1[keep], step_max[keep]
        if not work.running:
            return g1
        g2 = work.evaluate(g1)
        work.check(g1, g2)
        keep = work.compact()
        if keep is not None:
            x, g1, g2, step_max = x[keep], g1[keep], g2[keep], step_max[keep]
        if not work.running:
            return g2
        r = g1 - x
        v = g2 - g1 - r
        alpha = -np.sqrt(np.einsum("nj,nj->n", r, r) / np.einsum("nj,nj->n", v, v))
        alpha = np.where(np.isfinite(alpha), alpha, -1.0)
        alpha = np.clip(alpha, -step_max, -1.0)
        step_max = np.where(alpha <= -step_max, 4.0 * step_max, step_max)
        xp = x - (2.0 * alpha)[:, None] * r + (alpha * alpha)[:, None] * v
        bad = ~_finite_rows(xp)
        xp[bad] = g2[bad]
        g3 = work.evaluate(xp)
        work.check(xp, g3, fail_nonfinite=False)
        broken = ~_finite_rows(g3)
        x = np.where(broken[:, None], g2, g3)
        step_max[broken] = 1.0
        keep = work.compact()
        if keep is not None:
            x, step_max = x[keep], step_max[keep]
    return x


def _least_squares(history: FloatArray, columns: int) -> FloatArray:
    """Per-row argmin_gamma ||f - F gamma|| from ``history`` (n, 1 + memory, J).

    Row 0 of each history holds f (J,), rows 1..columns the columns of F (stored as rows, so
    that F' [f, F] is one batched gemm on contiguous data). Normal equations with a ridge of
    1e-10 relative to each column's squared norm, solved as one batched (m, m) system: cheap,
    and an inexact gamma only slows the step, never the answer (convergence is judged on
    G(x) - x). Returns (n, columns).
    """
    n, m = history.shape[0], columns
    both = np.matmul(history[:, 1:m + 1], history[:, :m + 1].transpose(0, 2, 1))  # (n, m, 1+m)
    gram = both[:, :, 1:]
    diagonal = both.reshape(n, m * (m + 1))[:, 1::m + 2]
    diagonal *= 1.0 + 1e-10
    diagonal += 1e-300
    try:
        gamma: FloatArray = np.linalg.solve(gram, both[:, :, :1])[:, :, 0]
    except np.linalg.LinAlgError:
        return np.zeros((n, m))
    return gamma


def _anderson(work: _WorkSet, x: FloatArray, memory: int) -> FloatArray:
    # History in ring buffers of rows (their order does not matter to least squares); row 0 of
    # ``dF`` holds the current residual f. Safeguards: a row whose residual blows up
    # (non-finite, or 10x its best) goes back to its last point, forgets its history and takes
    # a plain step; if that fails too, it fails. A row whose best residual has not improved over
    # a window of ``4 memory`` steps stops as not converged (Anderson stagnating, seen on BLP 1995
    # from a poor start), so that the caller can fall back to SQUAREM without spending the
    # whole evaluation budget.
    g = work.evaluate(x)
    f = g - x
    work.check(x, g, step=f)
    best = work.last
    restarted = np.zeros(x.shape[0], dtype=bool)
    checkpoint = best.copy()  # each row's best residual ``patience`` steps ago
    patience = 4 * memory
    n, J = x.shape
    dF = np.zeros((n, 1 + memory, J))
    dG = np.zeros((n, memory, J))
    filled = 0
    while work.running:
        keep = work.compact()
        if keep is not None:
            x, g, f, best, restarted = x[keep], g[keep], f[keep], best[keep], restarted[keep]
            dF, dG, checkpoint = dF[keep], dG[keep], checkpoint[keep]
        if filled:
            columns = min(filled, memory)
            dF[:, 0] = f
            gamma = _least_squares(dF, columns)
            # a non-finite x_new shows up as a blown residual below and is undone there
            x_new = g - np.matmul(gamma[:, None, :], dG[:, :columns])[:, 0, :]
        else:
            x_new = g
        g_new = work.evaluate(x_new)
        f_new = g_new - x_new
        work.check(x_new, g_new, fail_nonfinite=False, step=f_new)
        norm = work.last  # max |f_new| per row, from the check
        slot = filled % memory
        np.subtract(f_new, f, out=dF[:, 1 + slot])
        np.subtract(g_new, g, out=dG[:, slot])
        filled += 1
        blown = ~(norm <= 10.0 * best)
        if blown.any():
            work.fail(blown & restarted, g)
            x_new[blown], g_new[blown], f_new[blown] = x[blown], g[blown], f[blown]
            dF[blown] = 0.0
            dG[blown] = 0.0
            best = np.where(blown, best, np.minimum(best, norm))
        else:
            best = np.minimum(best, norm)
        if filled % patience == 0:
            work.stop(~(best < checkpoint), g_new, x_new)
            checkpoint = best.copy()
        restarted = blown
        x, g, f = x_new, g_new, f_new
    return g


_NEWTON_RADIUS = 1.0  # largest Newton step in any element (log-share units)


def _newton(work: _WorkSet, x: FloatArray) -> FloatArray:
    # Safeguard: a row whose residual did not shrink goes back to its previous point and takes
    # the plain step G(x_prev) from there (accepted unconditionally: the contraction progresses).
    previous, previous_g = x.copy(), x.copy()
    previous_norm = np.full(x.shape[0], np.inf)
    forced = np.zeros(x.shape[0], dtype=bool)
    while work.running:
        work.count += 1
        residual, jacobian = work.system.residual_jacobian(x)
        norm = np.max(np.abs(residual), axis=1)
        g = x - residual
        work.check(x, g, fail_nonfinite=False)
        worse = ~((norm < previous_norm) | forced) & work.open
        try:
            step = np.linalg.solve(jacobian, residual[:, :, None])[:, :, 0]
        except np.linalg.LinAlgError:
            step = residual
        size = np.max(np.abs(step), axis=1)
        step *= np.minimum(1.0, _NEWTON_RADIUS / np.where(size > 0, size, 1.0))[:, None]
        x_new = x - step
        bad = ~_finite_rows(x_new)
        x_new[bad] = g[bad]
        x_new[worse] = previous_g[worse]
        broken = work.open & ~_finite_rows(x_new)
        if broken.any():  # no finite way forward: the row fails at its last finite point
            work.fail(broken, np.where(worse[:, None], previous, x))
        accepted = ~worse
        previous = np.where(accepted[:, None], x, previous)
        previous_g = np.where(accepted[:, None], g, previous_g)
        previous_norm = np.where(accepted, norm, previous_norm)
        x, forced = np.where(broken[:, None], previous, x_new), worse
        keep = work.compact()
        if keep is not None:
            x, previous, previous_g = x[keep], previous[keep], previous_g[keep]
            previous_norm, forced = previous_norm[keep], forced[keep]
    return x
