"""Demographic instruments: market moments of demographics times characteristics.

With beta_i = beta + Pi y_i, the market mean m_t^y = E_t[y] shifts the mean taste for x, so
m_t^y x_jt moves shares given xi and identifies Pi (Gandhi and Houde 2019; Conlon and Gortmaker
2020). The second-order (Salanie and Wolak 2019) approximation adds the artificial regressors

    d_jt^x = (x_jt / 2 - e_t^x) x_jt,   e_t^x = sum_k s_kt x_kt,

times the market variance v_t^y = Var_t[y] for demographic interactions (times 1 for random
coefficients with unit-variance nodes). Moments are weighted by the agents' integration weights.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from blpdemand._types import FloatArray
from blpdemand.data.formulation import DesignMatrix
from blpdemand.data.validation import require_columns, require_finite
from blpdemand.errors import DataError
from blpdemand.instruments._prepare import (
    Characteristics,
    SortedProducts,
    clean,
    prepare,
    read_characteristics,
)


def demographic_moments(agents: pd.DataFrame, demographics: Characteristics,
                        market_ids: np.ndarray) -> tuple[FloatArray, FloatArray, tuple[str, ...]]:
    """Weighted market means m_t^y and variances v_t^y of demographics: (T, D), (T, D), names.

    m_t = sum_i w_it y_it / sum_i w_it and v_t = sum_i w_it (y_it - m_t)^2 / sum_i w_it over the
    agents of market t (equal weights when agents have no ``weights`` column). Weights may be
    negative, as in agent data built from a sparse grid (``Integration("sparse_grid", ...)``
    crossed with census draws, where the moments are exactly the census moments); each market's
    total weight must be positive.
    """
    require_columns(agents, ["market_ids"], what="agent data")
    frame = agents.reset_index(drop=True)
    Y = read_characteristics(demographics, frame, intercept=False, what="demographics")
    if "weights" in frame.columns:
        require_finite(frame, ["weights"], what="agent data", market_column="market_ids")
        w = frame["weights"].to_numpy(dtype=np.float64)
    else:
        w = np.ones(len(frame))
    codes = pd.Index(market_ids).get_indexer(frame["market_ids"].to_numpy())
    keep = codes >= 0
    codes, w, values = codes[keep], w[keep], Y.values[keep]
    T = len(market_ids)
    total = np.bincount(codes, weights=w, minlength=T)
    present = np.bincount(codes, minlength=T) > 0
    if not present.all():
        missing = np.asarray(market_ids)[~present][:5].tolist()
        raise DataError(f"market(s) {missing} have products but no agents in agent data; "
                        "every market needs agents to compute demographic moments")
    if np.any(total <= 0):
        bad = np.asarray(market_ids)[total <= 0][:5].tolist()
        raise DataError(f"agent weights of market(s) {bad} sum to a non-positive total "
                        f"({float(total[total <= 0][0]):g}); demographic means need a positive "
                        "total weight in every market: fix column 'weights'")
    means = np.column_stack([np.bincount(codes, weights=w * y, minlength=T)
                             for y in values.T]) / total[:, None]
    centered = values - means[codes]
    variances = np.column_stack([np.bincount(codes, weights=w * c**2, minlength=T)
                                 for c in centered.T]) / total[:, None]
    return means, variances, Y.names


def build_demographic_instruments(products: pd.DataFrame, agents: pd.DataFrame,
                                  characteristics: Characteristics, demographics: Characteristics,
                                  *, prefix: str = "demo_",
                                  columns: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Interactions m_t^y x_jt of market-mean demographics and characteristics.

    z_jt^{y,x} = m_t^y x_jt, m_t^y the weighted mean of demographic y over market t's agents
    (Gandhi and Houde 2019, section 4; Conlon and Gortmaker 2020, section 3.4).

    Parameters
    ----------
    products : DataFrame with ``market_ids``, any row order.
    agents : DataFrame with ``market_ids``, optional ``weights``, and the demographics.
    characteristics : formula or names of x (use fitted prices for price, see
        ``with_fitted_prices``).
    demographics : formula (``"income + I(1 / income)"``) or names of y.
    prefix : output names are ``{prefix}{y}_x_{x}``, grouped by demographic.

    Returns
    -------
    DataFrame (N, D * K) with the input's index and row order.

    Examples
    --------
    >>> p = pd.DataFrame({"market_ids": [1, 1, 2], "x": [1.0, 2.0, 3.0]})
    >>> a = pd.DataFrame({"market_ids": [1, 1, 2], "weights": [0.5, 0.5, 1.0],
    ...                   "y": [1.0, 3.0, 5.0]})
    >>> build_demographic_instruments(p, a, ["x"], ["y"])["demo_y_x_x"].tolist()
    [2.0, 4.0, 15.0]
    """
    data = prepare(products, columns=columns)
    X = read_characteristics(characteristics, data.frame, intercept=None)
    means, _, ynames = demographic_moments(agents, demographics, data.markets.ids)
    m = data.markets.expand(means)
    values = [m[:, d] * X.values[:, k] for d in range(len(ynames)) for k in range(X.K)]
    names = [f"{prefix}{clean(y)}_x_{clean(x)}" for y in ynames for x in X.names]
    return data.to_frame(np.column_stack(values), names)


def build_salanie_wolak_terms(products: pd.DataFrame, characteristics: Characteristics,
                              agents: pd.DataFrame | None = None,
                              demographics: Characteristics | None = None, *,
                              prefix: str = "sw_",
                              columns: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Salanie-Wolak artificial regressors d_jt^x and v_t^y d_jt^x.

    d_jt^x = (x_jt / 2 - e_t^x) x_jt with e_t^x = sum_k s_kt x_kt (observed shares), the
    coefficient of sigma_x^2 in the second-order expansion of the inverted shares; v_t^y d_jt^x
    is the term of pi_{xy}^2 (Salanie and Wolak 2019, section 3).

    Parameters
    ----------
    products : DataFrame with ``market_ids`` and ``shares``, any row order.
    characteristics : formula or names of x (the intercept gives (1/2 - S_t), S_t the inside
        share).
    agents, demographics : optional; add v_t^y d_jt^x for every demographic y.
    prefix : output names ``{prefix}{x}`` and ``{prefix}var_{y}_x_{x}``.

    Returns
    -------
    DataFrame (N, K (1 + D)) with the input's index and row order.

    Examples
    --------
    >>> p = pd.DataFrame({"market_ids": [1, 1], "shares": [0.2, 0.3], "x": [1.0, 2.0]})
    >>> build_salanie_wolak_terms(p, ["x"])["sw_x"].round(2).tolist()  # e = 0.8
    [-0.3, 0.4]
    """
    data = prepare(products, columns=columns, require=("market_ids", "shares"))
    require_finite(data.frame, ["shares"], market_column="market_ids")
    X = read_characteristics(characteristics, data.frame, intercept=None)
    d = _artificial(X, data)
    blocks, names = [d], [f"{prefix}{clean(x)}" for x in X.names]
    if demographics is not None:
        if agents is None:
            raise DataError("demographics given without agents; pass agents=DataFrame")
        _, variances, ynames = demographic_moments(agents, demographics, data.markets.ids)
        v = data.markets.expand(variances)
        for k, y in enumerate(ynames):
            blocks.append(v[:, [k]] * d)
            names += [f"{prefix}var_{clean(y)}_x_{clean(x)}" for x in X.names]
    return data.to_frame(np.column_stack(blocks), names)


def _artificial(X: DesignMatrix, data: SortedProducts) -> FloatArray:
    """(N, K) d_jt^x = (x_jt / 2 - e_t^x) x_jt on sorted rows."""
    shares = data.frame["shares"].to_numpy(dtype=np.float64)
    e = data.markets.expand(data.markets.segment_sum(shares[:, None] * X.values))
    return np.asarray((X.values / 2.0 - e) * X.values)
