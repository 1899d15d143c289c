"""Fitted prices p_hat from a first-stage regression on exogenous variables and cost shifters.

    p_jt = x_jt' a + w_jt' b (+ fixed effects) + e_jt,   p_hat_jt = p_jt - e_hat_jt.

p_hat is a function of exogenous data only, so it can stand in for price wherever an instrument
needs "the characteristics": z_jt = (x_jt, sum_k (p_hat_jt - p_hat_kt)^2, m_t^y p_hat_jt)
(Reynaert and Verboven 2014; Gandhi and Houde 2019, section 5).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from blpdemand._types import FloatArray
from blpdemand.data.absorb import absorb_fixed_effects
from blpdemand.data.formulation import parse_absorb
from blpdemand.data.validation import require_columns, require_finite, require_nonempty
from blpdemand.errors import CollinearityWarning, SpecificationError
from blpdemand.instruments._prepare import Characteristics, read_characteristics
from blpdemand.instruments.identification import diagnose_instruments


@dataclass(frozen=True, slots=True)
class FirstStage:
    """A first-stage OLS fit of prices.

    Attributes
    ----------
    p_hat : (N,) fitted prices, the input's index and row order.
    coefficients : (L,) OLS coefficients of the regressors ``names`` (fixed effects absorbed).
    names : regressor names (exogenous columns, then cost shifters).
    r_squared : R^2 of the (within) regression; uncentered (1 - e'e / p'p) when there is
        neither a constant nor absorbed effects.
    column : name of the price column that was fitted.
    """

    p_hat: pd.Series
    coefficients: FloatArray = field(repr=False)
    names: tuple[str, ...]
    r_squared: float
    column: str

    def frame(self, name: str = "p_hat") -> pd.DataFrame:
        """p_hat as a one-column instrument DataFrame."""
        return self.p_hat.rename(name).to_frame()

    def __repr__(self) -> str:
        width = max((len(n) for n in self.names), default=0)
        rows = [f"  {n.ljust(width)}  {b: .4f}" for n, b in zip(self.names[:30], self.coefficients)]
        more = [f"  ... {len(self.names) - 30} more"] if len(self.names) > 30 else []
        return "\n".join([(f"FirstStage: OLS of {self.column!r} on {len(self.names)} regressors, "
                          f"N = {len(self.p_hat)}, R2 = {self.r_squared:.4f} (p_hat: .p_hat)"),
                          *rows, *more])


def fit_prices(products: pd.DataFrame, exogenous: Characteristics | None = None,
               cost_shifters: Characteristics | None = None, *, column: str = "prices",
               absorb: str | list[str] | None = None) -> FirstStage:
    """Regress prices on exogenous characteristics and cost shifters by least squares.

    p_hat = Z (Z'Z)^+ Z' p with Z = [X_exog, W] (numpy ``lstsq``); with ``absorb`` the fixed
    effects are partialled out first and p_hat includes them (p_hat = p - e_hat).

    Parameters
    ----------
    products : product DataFrame, any row order.
    exogenous : formula (``"1 + hpwt + air"``) or names of exogenous characteristics; may be
        empty (None, ``""``, ``"0"``, ``[]``) when the cost shifters are the only regressors
        (then Z = W: no constant unless absorbed effects stand in for it). With ``absorb``
        the constant is dropped (the effects span it), so ``"1"`` leaves no exogenous column.
    cost_shifters : names or formula (no intercept) of cost shifters.
    column : the price column.
    absorb : fixed effects, ``"C(year) + C(make)"``.

    Examples
    --------
    >>> d = pd.DataFrame({"prices": [1.0, 2.0, 3.5], "w": [0.0, 1.0, 2.0]})
    >>> fit_prices(d, "1", "w").p_hat.round(3).tolist()
    [0.917, 2.167, 3.417]

    Collinear regressors (a column spanned by the ones before it, or by the absorbed fixed
    effects) give a ``CollinearityWarning`` naming them; p_hat is unaffected.
    """
    require_nonempty(products, what="product data")
    frame = products.reset_index(drop=True)
    require_columns(frame, [column], what="product data")
    require_finite(frame, [column])
    fe_columns = parse_absorb(absorb, frame)
    blocks = [read_characteristics(exogenous, frame, intercept=False if fe_columns else None,
                                   what="exogenous characteristics", allow_empty=True),
              read_characteristics(cost_shifters, frame, intercept=False, what="cost shifters",
                                   allow_empty=True)]
    names = tuple(n for b in blocks for n in b.names)
    if not names:
        raise SpecificationError(
            f"fit_prices has no regressors: exogenous={exogenous!r} and cost_shifters="
            f"{cost_shifters!r} give no column"
            f"{' besides the absorbed constant' if fe_columns else ''}"
            "; pass cost shifters (cost_shifters=['w']) or exogenous characteristics")
    Z = np.column_stack([b.values for b in blocks])
    if len(set(names)) != len(names):
        raise SpecificationError(f"first-stage regressors repeat a column: {list(names)}")
    p = frame[column].to_numpy(dtype=np.float64)
    effects = absorb_fixed_effects(frame, fe_columns)
    Z_raw = Z
    if effects is not None:
        p_tilde, Z = effects.residualize(p), effects.residualize(Z)
    else:
        p_tilde = p
    report = diagnose_instruments(Z, names, n_parameters=0,
                                  before=None if effects is None else Z_raw)
    dropped = report.zero_columns + report.collinear_columns
    if dropped:
        warnings.warn(
            f"first-stage regressors {list(dropped)} are all zero or collinear with the ones "
            "before them (or with the absorbed fixed effects): p_hat is still the projection "
            "of prices on their span, but their coefficients are not identified (minimum-norm "
            "least squares); drop them to silence this", CollinearityWarning, stacklevel=2)
    coefficients, *_ = np.linalg.lstsq(Z, p_tilde, rcond=None)
    residuals = p_tilde - Z @ coefficients
    constant = bool(np.any((np.ptp(Z, axis=0) == 0) & (Z[0] != 0)))
    centered = p_tilde - (p_tilde.mean() if effects is None and constant else 0.0)
    total = float(centered @ centered)
    r_squared = 1.0 - float(residuals @ residuals) / total if total > 0 else 0.0
    p_hat = pd.Series(p - residuals, index=products.index, name=f"{column}_hat")
    return FirstStage(p_hat=p_hat, coefficients=np.asarray(coefficients), names=names,
                      r_squared=r_squared, column=column)


def with_fitted_prices(products: pd.DataFrame, first_stage: FirstStage | pd.Series, *,
                       column: str | None = None) -> pd.DataFrame:
    """A copy of the products with the price column replaced by p_hat.

    Pass the copy to any builder to use p_hat in place of price, e.g.
    ``build_differentiation_instruments(with_fitted_prices(df, fs), "prices + hpwt")``.
    """
    if isinstance(first_stage, FirstStage):
        values, column = first_stage.p_hat, column or first_stage.column
    else:
        values, column = first_stage, column or "prices"
    if len(values) != len(products) or not values.index.equals(products.index):
        raise SpecificationError("fitted prices do not line up with the products (index differs); "
                                 "fit them on the same DataFrame")
    out = products.copy()
    out[column] = values.to_numpy(dtype=np.float64)
    return out
