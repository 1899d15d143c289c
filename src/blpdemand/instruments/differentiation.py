"""Gandhi and Houde (2019) differentiation instruments, in two conventions.

Standard convention (Gandhi and Houde 2019; Conlon and Gortmaker 2020), for characteristic l,
with differences d_jkl = x_kl - x_jl between products of the same market:

    local      z_jl = sum_{k != j} 1(|d_jkl| < SD_l),        SD_l = SD of all d_jkl, all markets
    quadratic  z_jl = sum_{k != j} d_jkl^2,

each split into sums over the firm's own other products and over rivals' products, or pooled.
Interactions: local 1(|d_jkl| < SD_l) (x_jl' - x_kl') for every l'; quadratic d_jkl d_jkl' for
l' >= l (the terms and column order of ``pyblp.build_differentiation_instruments``).

Scaled convention (``convention="course"``): each characteristic is divided by its standard
deviation within the market, w_jtl = x_jtl / sd_t(x_l) (divisor J_t - ddof; ddof=1 is pandas'
std), and the sums run over ALL products k of market t, j itself included:

    local      z_jtl = sum_{k in t} 1(|w_ktl - w_jtl| < 1)     (so z_jtl >= 1)
    quadratic  z_jtl = sum_{k in t} (w_ktl - w_jtl)^2,

pooled over firms unless ``split=True`` (then the own-firm sum holds j itself). Interactions are
as in the standard convention, on the scaled values. A characteristic with no spread in a market
(constant, or fewer than ddof + 1 products) has w = 0 there: every product counts all J_t.

The name is historical. The Econometrics B BLP notebook on the cars data (bschjerning/
EconometricsB, lectures/15_blp/1_blp.ipynb; its three stored versions were read) builds no
differentiation instruments: its one excluded instrument is the real exchange rate RXR. So this
convention reproduces no course number; it is a documented within-market-scaled variant, tested
against a direct loop over markets and products (tests/unit/test_instruments_course.py).

No pair of products is ever stored: quadratic sums are O(N) segment sums of centered values
(sum_k (c_j - c_k)^2 = n c_j^2 + sum_k c_k^2 with c = x - group mean), local counts are runs in
the within-group sort found by bisection, O(N log J). Own-firm sums use (market, firm) groups;
rival sums are the market sums minus the own sums.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from blpdemand._checks import check_field_types
from blpdemand._types import FloatArray
from blpdemand.data.markets import MarketIndex
from blpdemand.errors import SpecificationError
from blpdemand.instruments._prepare import (
    Characteristics,
    clean,
    group_codes,
    prepare,
    read_characteristics,
)

VERSIONS = ("local", "quadratic")
CONVENTIONS = ("standard", "course")


@dataclass(frozen=True, slots=True, kw_only=True)
class DifferentiationConfig:
    """Which differentiation instruments to build.

    version : "local" (counts of close products) or "quadratic" (sums of squared differences).
    convention : "standard" (PyBLP, Gandhi-Houde) or "course" (within-market SD scaling, the
        product itself counted; not taken from the course notebook, see the module docstring).
    split : sums over own-firm and rival products separately (True) or pooled (False); None
        means True for "standard" and False for "course".
    interact : add interactions across characteristics.
    ddof : degrees of freedom of the course convention's within-market SD (1: pandas' std).
    """

    version: str = "local"
    convention: str = "standard"
    split: bool | None = None
    interact: bool = False
    ddof: int = 1

    def __post_init__(self) -> None:
        check_field_types(self)
        if self.version not in VERSIONS:
            raise SpecificationError(
                f"version={self.version!r} is unknown; valid: {list(VERSIONS)}")
        if self.convention not in CONVENTIONS:
            raise SpecificationError(
                f"convention={self.convention!r} is unknown; valid: {list(CONVENTIONS)}")
        if self.ddof not in (0, 1):
            raise SpecificationError(f"ddof={self.ddof!r} is unknown; valid: [0, 1]")

    @property
    def firm_split(self) -> bool:
        return self.convention == "standard" if self.split is None else bool(self.split)


def build_differentiation_instruments(
        products: pd.DataFrame, characteristics: Characteristics, *, version: str = "local",
        convention: str = "standard", split: bool | None = None, interact: bool = False,
        ddof: int = 1, prefix: str = "gh_", columns: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Gandhi-Houde differentiation instruments, local or quadratic, standard or course convention.

    z_jl = sum_{k in S_j} f(d_jkl) with d_jkl = x_kl - x_jl, f = 1(|d| < SD_l) or d^2, S_j the
    own-firm or rival products of j's market (Gandhi and Houde 2019, eq. 11-12). Course
    convention: z_jl = sum_{k in t} f(w_kl - w_jl), w = x / sd_t(x), f = 1(|d| < 1) or d^2, k = j
    included (module docstring). The intercept is dropped (it has no differences).

    Parameters
    ----------
    products : DataFrame with ``market_ids`` (and ``firm_ids`` when split), any row order.
    characteristics : formula (``"hpwt + air + mpd"``) or column names.
    version, convention, split, interact, ddof : see ``DifferentiationConfig``.
    prefix : output column prefix; names are ``{prefix}[course_]{local|quad}_{own|rival|all}_{x}``
        and ``..._{x}_by_{x'}`` for interactions.
    columns : map from reserved name to the user's column, e.g. ``{"market_ids": "year"}``.

    Returns
    -------
    DataFrame (N, M) with the input's index and row order; own columns before rival columns.

    Examples
    --------
    >>> d = pd.DataFrame({"market_ids": [1, 1, 1], "firm_ids": [1, 1, 2], "x": [0.0, 1.0, 3.0]})
    >>> build_differentiation_instruments(d, "0 + x",
    ...                                   version="quadratic")["gh_quad_rival_x"].tolist()
    [9.0, 4.0, 13.0]
    """
    config = DifferentiationConfig(version=version, convention=convention, split=split,
                                   interact=interact, ddof=ddof)
    require = ("market_ids", "firm_ids") if config.firm_split else ("market_ids",)
    data = prepare(products, columns=columns, require=require)
    X = read_characteristics(characteristics, data.frame, intercept=False)
    values = X.values
    if config.convention == "course":
        values = _scale_within_markets(values, data.markets, config.ddof)
        threshold = np.ones(X.K)
    else:
        threshold = _pairwise_sd(values, data.markets)
    firms = data.codes("firm_ids") if config.firm_split else None
    terms = _terms(X.K, config)
    names = _names(X.names, terms, config, prefix)
    method = _quadratic if config.version == "quadratic" else _local
    include_self = config.convention == "course"
    pooled = method(values, data.markets.codes, terms, threshold, include_self)
    if firms is None:
        return data.to_frame(pooled, names)
    own = method(values, group_codes(data.markets.codes, firms), terms, threshold, include_self)
    return data.to_frame(np.column_stack([own, pooled - own]), names)


def _quadratic(X: FloatArray, groups: np.ndarray, terms: list[tuple[int, int | None]],
               threshold: FloatArray, include_self: bool) -> FloatArray:
    """sum_{k in g(j)} (x_jl - x_kl)(x_jl' - x_kl') for every term, in O(N) by segment sums.

    With c = x - mean_g: sum_k (c_jl - c_kl)(c_jl' - c_kl') = n_g c_jl c_jl' + sum_k c_kl c_kl'
    (the cross term vanishes), a sum of centered products that does not cancel.
    """
    groups = np.asarray(groups, dtype=np.int64)
    count = np.bincount(groups).astype(np.float64)
    means = np.column_stack([np.bincount(groups, weights=x) for x in X.T]) / count[:, None]
    centered = X - means[groups]
    out = np.empty((X.shape[0], len(terms)))
    for m, (k1, k2) in enumerate(terms):
        assert k2 is not None
        product = centered[:, k1] * centered[:, k2]
        out[:, m] = count[groups] * product + np.bincount(groups, weights=product)[groups]
    return out


def _terms(K: int, config: DifferentiationConfig) -> list[tuple[int, int | None]]:
    """(l, l') pairs of summands; l' is None for the plain local count."""
    if config.version == "local":
        if not config.interact:
            return [(k, None) for k in range(K)]
        return [(k1, k2) for k1 in range(K) for k2 in range(K)]
    return [(k1, k2) for k1 in range(K) for k2 in range(k1, K if config.interact else k1 + 1)]


def _names(names: tuple[str, ...], terms: list[tuple[int, int | None]],
           config: DifferentiationConfig, prefix: str) -> list[str]:
    stem = prefix + ("course_" if config.convention == "course" else "")
    stem += "local" if config.version == "local" else "quad"
    labels = []
    for k1, k2 in terms:
        if k2 is None or (config.version == "quadratic" and k2 == k1):
            labels.append(clean(names[k1]))
        else:
            labels.append(f"{clean(names[k1])}_by_{clean(names[k2])}")
    sides = ("own", "rival") if config.firm_split else ("all",)
    return [f"{stem}_{side}_{label}" for side in sides for label in labels]


def _pairwise_sd(X: FloatArray, markets: MarketIndex) -> FloatArray:
    """SD_l of the differences d_jkl, j != k, pooled over markets: (K,).

    sum_{j != k} d_jk^2 = 2 J_t sum_j (x_j - mean_t)^2 and the differences average to zero.
    """
    sizes = markets.sizes.astype(np.float64)
    means = markets.segment_sum(X) / np.maximum(sizes, 1.0)[:, None]
    squares = markets.segment_sum((X - markets.expand(means)) ** 2)
    count = float(np.sum(sizes * (sizes - 1.0)))
    if count == 0:
        return np.zeros(X.shape[1])
    return np.asarray(np.sqrt(np.sum(2.0 * sizes[:, None] * squares, axis=0) / count))


def _scale_within_markets(X: FloatArray, markets: MarketIndex, ddof: int) -> FloatArray:
    """x_jl / sd_t(x_l); zero where a market has no spread in x_l (or too few products)."""
    sizes = markets.sizes.astype(np.float64)
    means = markets.segment_sum(X) / np.maximum(sizes, 1.0)[:, None]
    squares = markets.segment_sum((X - markets.expand(means)) ** 2)
    dof = (sizes - ddof)[:, None]
    variance = np.divide(squares, dof, out=np.zeros_like(squares), where=dof > 0)
    sd = np.sqrt(variance)
    scale = np.divide(1.0, sd, out=np.zeros_like(sd), where=sd > 0)
    return np.asarray(X * markets.expand(scale))


def _local(X: FloatArray, groups: np.ndarray, terms: list[tuple[int, int | None]],
           threshold: FloatArray, include_self: bool) -> FloatArray:
    """Local counts (and interactions) within groups, in O(N log J) without forming pairs.

    Sorted by characteristic l within the group, |fl(x_jl - x_kl)| < SD_l holds on a contiguous
    run of products around j (floating-point subtraction is monotone), whose ends are found by
    vectorized bisection with exactly that comparison; interactions sum (x_jl' - x_kl') over the
    run with prefix sums of x_l' centered by its group mean.
    """
    groups = np.asarray(groups, dtype=np.int64)
    N = X.shape[0]
    count = np.bincount(groups)
    starts = np.concatenate([[0], np.cumsum(count)[:-1]])
    means = np.column_stack([np.bincount(groups, weights=x) for x in X.T]) / count[:, None]
    centered = X - means[groups]
    out = np.zeros((N, len(terms)))
    for k1 in sorted({k for k, _ in terms}):
        order = np.lexsort((X[:, k1], groups))
        x = X[order, k1]
        first = starts[groups[order]]
        last = first + count[groups[order]] - 1
        left, right = _run(x, first, last, threshold[k1])
        width = (right - left + 1).astype(np.float64)
        for m, (t1, k2) in enumerate(terms):
            if t1 != k1:
                continue
            if k2 is None:
                values = width - (0.0 if include_self else 1.0)
            else:
                prefix = np.concatenate([[0.0], np.cumsum(centered[order, k2])])
                c = centered[order, k2]
                values = width * c - (prefix[right + 1] - prefix[left])
            if not threshold[k1] > 0:
                values = np.zeros(N)
            out[order, m] = values
    return out


def _run(x: FloatArray, first: np.ndarray, last: np.ndarray, sd: float
         ) -> tuple[np.ndarray, np.ndarray]:
    """Ends of the run {i : |fl(x_j - x_i)| < sd} around each position j of sorted x (by group)."""
    position = np.arange(x.size)

    def close(i: np.ndarray) -> np.ndarray:
        return np.asarray(np.abs(x[position] - x[i]) < sd)

    low, high = first.copy(), position.copy()  # smallest close i in [first, j]
    while np.any(active := low < high):
        middle = (low + high) // 2
        ok = close(middle)
        high = np.where(active & ok, middle, high)
        low = np.where(active & ~ok, middle + 1, low)
    left = low
    low, high = position.copy(), last.copy()  # largest close i in [j, last]
    while np.any(active := low < high):
        middle = (low + high + 1) // 2
        ok = close(middle)
        low = np.where(active & ok, middle, low)
        high = np.where(active & ~ok, middle - 1, high)
    return left, low
