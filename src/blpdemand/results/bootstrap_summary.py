"""The summary of a post-estimation output over parametric bootstrap draws: estimate, mean,
standard error (the draws' standard deviation) and percentile intervals (Efron 1979)."""

from __future__ import annotations

import dataclasses
import numbers
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from blpdemand._types import FloatArray
from blpdemand.errors import SpecificationError
from blpdemand.results.tables import Table


@dataclass(frozen=True, eq=False, kw_only=True)
class BootstrapSummary:
    """A post-estimation output f at the estimate and at every kept bootstrap draw.

    Attributes
    ----------
    estimate : f at the estimate, shape S (a scalar has S = ()).
    draws : (B, *S) f at each kept draw.
    names : labels of the flattened entries of f (for ``table``).
    dropped : draws whose contraction failed (not in ``draws``).
    hold : what was held fixed at the draws ("shares" or "xi"; see the module docstring).
    nonfinite : (B,) True where f(b) is non-finite at an entry where the estimate is finite
        (those entries are left out of the statistics, with a warning).
    failed : draws where f raised and ``errors="drop"`` left them out (not in ``draws``).
    """

    estimate: FloatArray
    draws: FloatArray
    names: tuple[str, ...]
    dropped: int = 0
    hold: str = "shares"
    nonfinite: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, dtype=bool))
    failed: int = 0

    def _finite(self) -> FloatArray:
        """The draws with NaN where f(b) is non-finite (left out entry by entry)."""
        return np.where(np.isfinite(self.draws), self.draws, np.nan)

    def _reduce(self, how: Callable[..., Any], **kwargs: Any) -> FloatArray:
        with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN entries (padding) stay NaN
            return np.asarray(how(self._finite(), axis=0, **kwargs), dtype=np.float64)

    @property
    def mean(self) -> FloatArray:
        """Mean of f over the draws, shape S."""
        return self._reduce(np.nanmean)

    @property
    def std(self) -> FloatArray:
        """Bootstrap standard error: the standard deviation (ddof = 1) of f over draws, shape S."""
        return self._reduce(np.nanstd, ddof=1)

    def interval(self, level: float = 0.95) -> tuple[FloatArray, FloatArray]:
        """Percentile interval (q_{(1-level)/2}, q_{(1+level)/2}) of f over the draws, each
        shape S."""
        if isinstance(level, (bool, np.bool_)) or not isinstance(level, numbers.Real) \
                or not 0 < level < 1:
            raise SpecificationError(f"level={level!r} must be a number in (0, 1), e.g. 0.95")
        level = float(level)  # np.float32(0.9): quantiles at 0.05, not at float32 rounding
        bounds = self._reduce(np.nanpercentile, q=[50 * (1 - level), 50 * (1 + level)])
        return bounds[0], bounds[1]

    def frame(self, level: float = 0.95) -> pd.DataFrame:
        """One row per entry of f: estimate, bootstrap mean, std. error, percentile interval."""
        return self.table(level=level).to_frame()

    def table(self, *, level: float = 0.95, title: str = "Parametric bootstrap",
              digits: int = 4) -> Table:
        """The summary as a ``Table`` (rows: entries of f; columns as in ``frame``)."""
        lo, hi = self.interval(level)
        low, high = _quantile_labels(float(level))
        body = pd.DataFrame({"estimate": self.estimate.reshape(-1),
                             "bootstrap mean": self.mean.reshape(-1),
                             "std. error": self.std.reshape(-1),
                             f"[{low}": lo.reshape(-1), f"{high}]": hi.reshape(-1)},
                            index=pd.Index(list(self.names)))
        held = ("delta re-solved with the observed shares" if self.hold == "shares"
                else "xi held at the estimate (PyBLP's convention)")
        notes = [(f"{self.draws.shape[0]} draws of (theta, beta) ~ N(estimate, covariance); "
                  f"{held}; percentile intervals at level {level:g}")]
        if self.dropped:
            notes.append(f"{self.dropped} draw(s) dropped: the contraction failed")
        if self.nonfinite.any():
            notes.append(f"{int(self.nonfinite.sum())} draw(s) gave non-finite values, left out")
        return Table(title=title, body=body, notes=tuple(notes), digits=digits)

    def __repr__(self) -> str:
        return self.table().preview(heading=type(self).__name__)


def _quantile_labels(level: float) -> tuple[str, str]:
    """The interval's column labels, with the digits that tell (1 -+ level) / 2 apart."""
    low, high = (1 - level) / 2, (1 + level) / 2
    for d in range(3, 13):  # "0.025", "0.00005"; float32 0.9 still "0.050"
        labels = f"{low:.{d}f}", f"{high:.{d}f}"
        if labels[0] != labels[1] and abs(float(labels[0]) - low) <= 1e-6 * low:
            return labels
    return f"{low:.6g}", f"{high:.6g}"
