"""Post-estimation uncertainty by a parametric bootstrap of the estimated parameters.

Draws (theta_b, beta_b) ~ N((theta_hat, beta_hat), V), b = 1..B, with V = ``results.covariance``
(the estimated covariance of the estimator, already divided by N), and rebuilds the demand model
at each draw. Any post-estimation output f (elasticities, markups, diversion ratios, merger
price effects, consumer surplus) is then evaluated at every draw; the spread of f(b) over b
gives its standard error and percentile interval [q_{(1-level)/2}, q_{(1+level)/2}]
(Krinsky and Robb 1986; Conlon and Gortmaker 2020, section on post-estimation inference).

What is held fixed at a draw (``hold``):

- ``"shares"`` (default): the observed shares. delta_b = delta(theta_b) solves
  s(delta_b; theta_b) = s_obs by the BLP contraction (warm-started at the estimate's delta), so
  the model at each draw still fits the data and xi_b = delta_b~ - X1~ beta_b moves.
- ``"xi"``: the structural errors (and absorbed fixed effects), PyBLP's convention
  (``ProblemResults.bootstrap`` in PyBLP 1.3): delta_b = delta_hat + X1 (beta_b - beta_hat),
  with no contraction; the shares implied at the draw, s(delta_b; theta_b), differ from s_obs.

Draws are not clipped to the optimizer's bounds (PyBLP clips them): a diagonal Sigma element
may change sign (the model depends on it only through sigma * nu, nu symmetric). Where the
estimate sits on a bound the normal approximation is poor (about half the draws of that
parameter fall outside the box); ``bootstrap`` warns, naming the parameter. Parameters fixed by
the layout (zeros of the starting Sigma and Pi) stay fixed: only the P free elements are drawn.
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeGuard

import numpy as np
import pandas as pd

from blpdemand._types import FloatArray, IntArray
from blpdemand.errors import BLPDemandError, ConvergenceWarning, SpecificationError
from blpdemand.model.fitted import FittedDemand
from blpdemand.results.bootstrap_summary import BootstrapSummary
from blpdemand.results.logit import LogitResults
from blpdemand.results.tables import Table
from blpdemand.solve.contraction import InnerLoop
from blpdemand.solve.fixed_point import FixedPointConfig
from blpdemand.solve.jobs import named_error, run_jobs

if TYPE_CHECKING:  # BLPResults' own bootstrap() calls this module: no run-time import back
    from blpdemand.results.blp import BLPResults

__all__ = ["BootstrapDraws", "BootstrapSummary", "bootstrap"]


def _is_blp(results: object) -> TypeGuard[BLPResults]:
    """BLP estimation results: a fitted model with random coefficients and its configuration."""
    return (isinstance(getattr(results, "fitted", None), FittedDemand)
            and hasattr(results, "layout") and hasattr(getattr(results, "config", None),
                                                       "fixed_point"))

Hold = Literal["shares", "xi"]
_HOLDS = ("shares", "xi")
EXECUTOR_CHUNKS = 64  # blocks of draws sent to an executor (each block builds one inner loop)


@dataclass(frozen=True, eq=False, kw_only=True)
class BootstrapDraws:
    """The demand model at the estimate and at each kept parameter draw.

    Attributes
    ----------
    estimate : the FittedDemand at the estimate.
    fitted : B FittedDemand, one per kept draw (arrays in the problem's sorted row order).
    theta : (B, P) and beta : (B, K1) the kept draws; requested : draws asked for.
    dropped : indices (into the requested draws) whose contraction failed.
    hold : "shares" (delta re-solved) or "xi" (PyBLP's convention); see the module docstring.
    """

    estimate: FittedDemand
    fitted: tuple[FittedDemand, ...]
    theta: FloatArray
    beta: FloatArray
    requested: int
    dropped: IntArray
    hold: str

    @property
    def draws(self) -> int:
        """Number of kept draws B."""
        return len(self.fitted)

    def __repr__(self) -> str:
        names = self.estimate.layout.names + tuple(self.estimate.problem.X1.names)
        values = (np.column_stack([self.theta, self.beta]) if self.draws
                  else np.zeros((0, len(names))))
        body = pd.DataFrame({"estimate": np.concatenate([self.estimate.theta, self.estimate.beta]),
                             "draws mean": values.mean(axis=0) if self.draws else np.nan,
                             "draws std": values.std(axis=0, ddof=1) if self.draws > 1 else np.nan},
                            index=pd.Index(names))
        head = (f"BootstrapDraws: {self.draws} of {self.requested} draws kept "
                f"({self.dropped.size} dropped), hold = {self.hold}; .apply(f) summarizes f")
        return Table(title="Parameter draws", body=body).preview(heading=head)

    @property
    def delta(self) -> FloatArray:
        """(B, N) delta_b in the user's row order."""
        products = self.estimate.problem.products
        out = np.empty((self.draws, products.N))
        for b, f in enumerate(self.fitted):
            out[b] = products.unsort(f.delta)
        return out

    @classmethod
    def from_parameters(cls, results: BLPResults | LogitResults, theta: Any, beta: Any, *,
                        hold: Hold = "shares", workers: int = 1,
                        executor: Any = None) -> BootstrapDraws:
        """The model at given draws: theta (B, P) free nonlinear parameters in ``layout.names``
        order (``layout.pack(sigma_b, pi_b)``) and beta (B, K1); e.g. another tool's draws."""
        estimate, _, _ = _point(results)
        if hold not in _HOLDS:
            raise SpecificationError(f"hold={hold!r} is unknown; use one of {_HOLDS}")
        P, K1 = estimate.layout.P, estimate.beta.size
        theta = _matrix(theta, P, "theta", "layout.names")
        beta = _matrix(beta, K1, "beta", "the X1 columns")
        if theta.shape[0] != beta.shape[0]:
            raise SpecificationError(
                f"theta has {theta.shape[0]} draws but beta has {beta.shape[0]}")
        if theta.shape[0] < 1:
            raise SpecificationError("from_parameters needs at least one draw")
        if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
            raise SpecificationError(f"workers={workers!r} must be an integer >= 1")
        config = results.config.fixed_point if _is_blp(results) else FixedPointConfig()
        config = dataclasses.replace(config, on_failure="report")
        B = theta.shape[0]
        # each draw is solved from the estimate's delta: the chunking changes no number
        parts = min(B, EXECUTOR_CHUNKS) if executor is not None else min(int(workers), B)
        chunks = np.array_split(np.arange(B), parts)
        jobs = [functools.partial(_solve_chunk, estimate, theta[c], beta[c], hold, config,
                                  int(c[0])) for c in chunks]
        names = [f"bootstrap draws {c[0]}..{c[-1]}" for c in chunks]
        deltas = [d for part in run_jobs(jobs, workers=workers, executor=executor, names=names)
                  for d in part]
        kept = np.array([d is not None for d in deltas], dtype=bool)
        dropped = np.flatnonzero(~kept)
        if dropped.size:
            warnings.warn(f"bootstrap: the contraction failed at {dropped.size} of {B} parameter "
                          f"draws (draws {dropped[:10].tolist()}"
                          f"{' ...' if dropped.size > 10 else ''})"
                          "; they are dropped from the summaries. A huge covariance or draws far "
                          "from the estimate cause this", ConvergenceWarning, stacklevel=2)
        fitted = tuple(FittedDemand(problem=estimate.problem, layout=estimate.layout,
                                    theta=theta[b].copy(), beta=beta[b].copy(), delta=d,
                                    nests=estimate.nests)  # a nested logit stays nested
                       for b, d in enumerate(deltas) if d is not None)
        return cls(estimate=estimate, fitted=fitted, theta=theta[kept], beta=beta[kept],
                   requested=B, dropped=dropped, hold=hold)

    def apply(self, function: Callable[[FittedDemand], Any], *, workers: int = 1,
              names: Any = None, errors: Literal["raise", "drop"] = "raise") -> BootstrapSummary:
        """f(fitted) at the estimate and at every kept draw, e.g.
        ``lambda f: bd.compute_elasticities(f).diagonal()`` or ``bd.compute_markups``.

        ``function`` returns a number or an array of the same shape at every draw. ``names``
        labels the flattened entries (a string labels a scalar f; default: a pandas result's
        index, else the entries' index, "i, j" for matrices). Arrays of a FittedDemand (delta,
        xi) are in the problem's sorted row order; results functions (``compute_costs``,
        ``compute_markups``) return the user's row order. Draws run on
        ``workers`` threads through ``run_jobs``; the result is the same for any ``workers``.
        ``errors``: where the function raises one of the library's errors at a draw (e.g. consumer
        surplus where some alpha_i >= 0 at that draw), "raise" (default) re-raises it naming the
        draw; "drop" leaves such draws out of the summary, counts them (``failed``) and warns.
        """
        if not callable(function):
            raise SpecificationError(f"function must be callable (fitted -> array), got "
                                     f"{type(function).__name__}")
        if self.draws < 2:
            raise SpecificationError(f"only {self.draws} draw(s) kept ({self.dropped.size} "
                                     "dropped); at least 2 are needed for a summary")
        if errors not in ("raise", "drop"):
            raise SpecificationError(f"errors={errors!r} is unknown; use 'raise' or 'drop'")
        raw = _call(function, self.estimate, "the estimate", "raise")  # errors propagate
        estimate = _numbers(raw, "the estimate")
        jobs = [functools.partial(_output, function, f, f"draw {b}", errors, raw)
                for b, f in enumerate(self.fitted)]
        with warnings.catch_warnings(record=True) as caught:  # one summary, not one per draw
            warnings.simplefilter("always")
            outputs = run_jobs(jobs, workers=workers)
        _summarize_warnings(caught, len(jobs))
        values = [v for v in outputs if v is not None]
        failed = len(outputs) - len(values)
        if failed:
            warnings.warn(f"bootstrap: the function raised at {failed} of {len(outputs)} draws; "
                          "they are left out of the summary (errors='drop')",
                          ConvergenceWarning, stacklevel=2)
        for b, value in enumerate(outputs):  # b: the draw's index among the kept draws
            if value is not None and value.shape != estimate.shape:
                raise SpecificationError(f"function returned shape {value.shape} at draw {b} but "
                                         f"{estimate.shape} at the estimate; it must return the "
                                         "same shape at every draw")
        stacked = np.stack(values) if values else np.zeros((0, *estimate.shape))
        bad = (~np.isfinite(stacked) & np.isfinite(estimate)[None]).reshape(len(values),
                                                                           estimate.size)
        nonfinite = np.asarray(bad.any(axis=1), dtype=bool)
        if nonfinite.any():
            warnings.warn(f"bootstrap: the function gave non-finite values at "
                          f"{int(nonfinite.sum())} of {len(values)} draws where the estimate "
                          "is finite; those entries are left out of the mean, standard error "
                          "and interval",
                          ConvergenceWarning, stacklevel=2)
        labels = _names(_pandas_names(raw) if names is None else names, estimate)
        return BootstrapSummary(estimate=estimate, draws=stacked, names=labels,
                                dropped=int(self.dropped.size), hold=self.hold,
                                nonfinite=nonfinite, failed=failed)


def bootstrap(results: BLPResults | LogitResults, *, draws: int = 1000,
              rng: int | np.random.Generator | None = 0, hold: Hold = "shares",
              workers: int = 1, executor: Any = None) -> BootstrapDraws:
    """Parametric bootstrap of estimated demand: the model at B draws of the parameters.

    (theta_b, beta_b) = (theta_hat, beta_hat) + L z_b, z_b ~ N(0, I), L L' = V (V =
    ``results.covariance``, by an eigen-decomposition, see ``_root``), b = 1..B;
    then delta_b per ``hold`` (see the module docstring) and a FittedDemand per draw. Draws
    whose contraction fails are dropped, counted and warned about. Reference: Conlon and
    Gortmaker (2020), "Best practices for differentiated products demand estimation with
    PyBLP", RAND J. Econ.

    Parameters
    ----------
    results : BLPResults (theta and beta drawn) or LogitResults (beta only; P = 0).
    draws : B >= 2.
    rng : seed or numpy Generator; the same seed gives the same draws for any ``workers``.
    hold : "shares" (default: delta re-solved at theta_b) or "xi" (PyBLP's convention).
    workers : threads for the contractions (each thread its own InnerLoop).
    executor : a ``concurrent.futures.Executor`` or ``dask.distributed.Client`` solving the
        draws' contractions as jobs (blocks of draws); the same draws and results.

    Examples
    --------
    >>> boot = bd.bootstrap(results, draws=200, rng=0)                  # doctest: +SKIP
    >>> own = boot.apply(lambda f: bd.compute_elasticities(f).diagonal())  # doctest: +SKIP
    >>> lo, hi = own.interval(0.95)                                      # doctest: +SKIP
    """
    estimate, mean, covariance = _point(results)
    estimate.problem.refuse_nests("the parametric bootstrap")
    if isinstance(draws, bool) or not isinstance(draws, (int, np.integer)) or draws < 2:
        raise SpecificationError(f"draws={draws!r} must be an integer >= 2")
    if rng is not None and (isinstance(rng, bool) or not isinstance(rng, (int, np.integer,
                                                                          np.random.Generator))):
        raise SpecificationError(f"rng={rng!r} must be an integer seed, a numpy Generator or None")
    generator = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    root = _root(covariance)
    parameters = mean + generator.standard_normal((int(draws), mean.size)) @ root.T
    P = estimate.layout.P
    if _is_blp(results):
        _warn_at_bounds(results, parameters[:, :P])
    return BootstrapDraws.from_parameters(results, parameters[:, :P], parameters[:, P:],
                                          hold=hold, workers=workers, executor=executor)


def _root(covariance: FloatArray) -> FloatArray:
    """L with L L' = V from the eigen-decomposition of V, or of D^-1 V D^-1 (D = sqrt|diag V|)
    where standard errors span more than 1e4: V's eigenvalues carry an absolute error of
    eps * max var, relative eps * (max se / min se)^2 in the smallest variance."""
    V = (covariance + covariance.T) / 2
    d = np.sqrt(np.abs(np.diag(V)))
    se = d[d > 0]
    d = np.where(d > 0, d, 1.0) if se.size and se.max() > 1e4 * se.min() else np.ones(d.size)
    values, vectors = np.linalg.eigh(V / np.outer(d, d))
    if values.size and values.min() < -1e-8 * max(float(values.max()), 0.0):
        raise SpecificationError(f"results.covariance is not positive semi-definite (smallest "
                                 f"eigenvalue {values.min():.3g}); cannot draw parameters from it")
    return np.asarray(d[:, None] * (vectors * np.sqrt(np.clip(values, 0.0, None))))


def _point(results: object) -> tuple[FittedDemand, FloatArray, FloatArray]:
    """The estimate's FittedDemand, the (theta, beta) mean and their covariance, checked."""
    if isinstance(results, LogitResults):
        fitted = results.fitted
        covariance = results.covariance.to_numpy(dtype=np.float64)
    elif _is_blp(results):
        fitted = results.fitted
        n = fitted.theta.size + fitted.beta.size
        # a joint demand-supply estimate: the (theta, beta) block is their marginal covariance
        # (post-estimation depends on demand only; gamma is left out)
        covariance = np.asarray(results.covariance, dtype=np.float64)[:n, :n]
    else:
        raise SpecificationError(f"bootstrap needs BLPResults (bd.estimate) or LogitResults "
                                 f"(bd.estimate_logit), got {type(results).__name__}")
    mean = np.concatenate([fitted.theta, fitted.beta])
    if covariance.shape != (mean.size, mean.size):
        raise SpecificationError(f"results.covariance has shape {covariance.shape}; expected "
                                 f"{(mean.size, mean.size)} over (theta, beta)")
    if not (np.all(np.isfinite(covariance)) and np.all(np.isfinite(mean))):
        raise SpecificationError("results have a non-finite estimate or covariance (a failed "
                                 "inner loop or a singular moment Jacobian); re-estimate before "
                                 "bootstrapping")
    return fitted, mean, covariance


def _matrix(values: Any, width: int, what: str, order: str) -> FloatArray:
    try:
        out = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise SpecificationError(f"{what} draws must be numbers: {error}") from error
    if out.ndim == 1 and width == 0:
        out = out.reshape(-1, 0)
    if out.ndim != 2 or out.shape[1] != width:
        raise SpecificationError(f"{what} draws must have shape (draws, {width}) in the order of "
                                 f"{order}, got {out.shape}")
    if not np.all(np.isfinite(out)):
        raise SpecificationError(f"{what} draws contain non-finite values")
    return out


def _solve_chunk(estimate: FittedDemand, theta: FloatArray, beta: FloatArray, hold: str,
                 config: FixedPointConfig, first: int = 0) -> list[FloatArray | None]:
    """delta_b (sorted order) for each draw of one chunk (draws first, first + 1, ...), None
    where the contraction failed; a draw that raises is named."""
    problem = estimate.problem
    if hold == "xi":
        return [estimate.delta + problem.X1.values @ (b - estimate.beta) for b in beta]
    if estimate.layout.P == 0:  # plain logit: delta = log s_j - log s_0 whatever beta is
        return [estimate.delta.copy() for _ in beta]
    loop = InnerLoop(problem, estimate.layout, config=config, cache_bytes=0)  # one per thread
    out: list[FloatArray | None] = []
    for b, t in enumerate(theta, start=first):
        try:
            with np.errstate(all="ignore"):  # absurd draws: overflow is reported as a failure
                result = loop.solve(t, delta0=estimate.delta)
        except Exception as error:
            raise named_error(f"bootstrap draw {b}", error) from error
        ok = result.converged and bool(np.all(np.isfinite(result.delta)))
        out.append(result.delta if ok else None)
    return out


class _Raised:
    """Marks a draw where f raised a library error and ``errors="drop"``."""


def _call(function: Callable[[FittedDemand], Any], fitted: FittedDemand, where: str,
          errors: str) -> Any:
    """f(fitted); a _Raised where f raised a library error and ``errors="drop"``."""
    try:
        return function(fitted)
    except BLPDemandError as error:
        if where == "the estimate" or errors == "raise":
            raise type(error)(f"bootstrap, {where}: {error}" + (
                "" if where == "the estimate" else "; apply(..., errors='drop') leaves such "
                "draws out (counted and warned about)")) from error
        return _Raised()


def _numbers(value: Any, where: str) -> FloatArray:
    """f's value as float64; None (a function without ``return``), text and objects refused."""
    message = (f"function returned {type(value).__name__} at {where}, not numbers: return an "
               "array or a number (e.g. bd.compute_elasticities(f).diagonal() or .stacked())")
    if value is None or isinstance(value, (str, bytes)):
        raise SpecificationError(message)
    try:
        return np.array(value, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise SpecificationError(message) from error


def _output(function: Callable[[FittedDemand], Any], fitted: FittedDemand, where: str,
            errors: str = "raise", like: Any = None) -> FloatArray | None:
    """f at a draw as numbers; a pandas result is aligned by its labels to the estimate's."""
    value = _call(function, fitted, where, errors)
    if isinstance(value, _Raised):
        return None
    if isinstance(like, (pd.Series, pd.DataFrame)) and isinstance(value, type(like)):
        same = (set(value.index) == set(like.index) and (
            not isinstance(like, pd.DataFrame) or set(value.columns) == set(like.columns)))
        if not same:
            raise SpecificationError(f"function returned other labels at {where} than at the "
                                     "estimate; it must return the same entries at every draw")
        value = (value.reindex(like.index) if isinstance(like, pd.Series)
                 else value.reindex(index=like.index, columns=like.columns))
    return _numbers(value, where)


def _pandas_names(value: Any) -> list[str] | None:
    """Default labels of a pandas result: a Series' index, a DataFrame's "row, column"."""
    if isinstance(value, pd.Series):
        return [str(i) for i in value.index]
    if isinstance(value, pd.DataFrame):
        return [f"{r}, {c}" for r in value.index for c in value.columns]
    return None


def _warn_at_bounds(results: BLPResults, theta: FloatArray) -> None:
    """Warn where theta_hat sits on an optimizer bound (the normal draws straddle it)."""
    if not results.bounds or theta.shape[1] == 0:
        return
    lo, hi = (np.array([b[k] for b in results.bounds], dtype=np.float64) for k in (0, 1))
    scale = np.maximum(1.0, np.abs(results.theta))
    at = ((np.abs(results.theta - lo) <= 1e-10 * scale)
          | (np.abs(hi - results.theta) <= 1e-10 * scale))
    if not at.any():
        return
    outside = ((theta < lo) | (theta > hi)).mean(axis=0)
    named = ", ".join(f"{results.layout.names[p]} ({100 * outside[p]:.0f}% of draws outside "
                      f"[{lo[p]:g}, {hi[p]:g}])" for p in np.flatnonzero(at))
    warnings.warn(f"bootstrap: the estimate is on an optimizer bound for {named}; the normal "
                  "approximation (and the covariance) is poor there and the draws are not "
                  "clipped: widen the bounds or read those summaries with care",
                  ConvergenceWarning, stacklevel=3)


def _names(names: Any, estimate: FloatArray) -> tuple[str, ...]:
    if names is None:
        if estimate.ndim == 0:
            return ("value",)
        return tuple(", ".join(str(i) for i in index) if estimate.ndim > 1 else str(index[0])
                     for index in np.ndindex(estimate.shape))
    labels = (names,) if isinstance(names, str) else tuple(str(n) for n in names)
    if len(labels) != estimate.size:
        raise SpecificationError(f"{len(labels)} names given for {estimate.size} entries of f")
    return labels


def _summarize_warnings(caught: list[warnings.WarningMessage], draws: int) -> None:
    """Re-issue the warnings the function raised at the draws once per category, counted,
    with the first message (e.g. consumer surplus undefined in some markets at some draws)."""
    kinds: dict[type[Warning], list[str]] = {}
    for record in caught:
        kinds.setdefault(record.category, []).append(str(record.message))
    for category, messages in kinds.items():
        warnings.warn(f"bootstrap: {len(messages)} warning(s) of this kind over {draws} draws; "
                      f"the first: {messages[0]}", category, stacklevel=3)
