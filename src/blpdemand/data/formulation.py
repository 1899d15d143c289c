"""Formulas to design matrices through formulaic: ``"prices + log(hp) + C(make)"``.

The intercept is named ``"1"`` (the field's convention). Absorbed fixed effects are given as
``"C(product_ids) + C(year)"`` and parsed into the list of grouping columns; they never become
dummy columns.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from blpdemand._types import FloatArray
from blpdemand.errors import DataError, SpecificationError

INTERCEPT = "1"


@dataclass(frozen=True, slots=True)
class DesignMatrix:
    """A design matrix with column names. ``values`` is (N, K) float64."""

    values: FloatArray
    names: tuple[str, ...]

    @property
    def K(self) -> int:
        return len(self.names)

    def column(self, name: str) -> FloatArray:
        """One column by name; raises SpecificationError listing names if unknown."""
        if name not in self.names:
            raise SpecificationError(f"no column {name!r} in design matrix; "
                                     f"columns: {list(self.names)}")
        return self.values[:, self.names.index(name)]


def build_matrix(formula: str, data: pd.DataFrame, *, intercept: bool | None = None,
                 what: str = "formula") -> DesignMatrix:
    """Evaluate a formula on data, returning float columns named as written.

    ``intercept=False`` removes the intercept even if the formula implies one (used when fixed
    effects are absorbed); ``None`` keeps formulaic's rule (intercept unless ``0 +``).
    """
    import formulaic

    if not isinstance(formula, str) or not formula.strip():
        raise SpecificationError(f"{what} must be a non-empty formula string, got {formula!r}")
    _reject_numbers_as_text(formula, data, what)
    try:
        matrix = formulaic.model_matrix(formula, data, na_action="raise")
    except Exception as exc:  # formulaic raises many types; translate them into ours
        message = str(exc)
        missing = [c for c in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", formula)
                   if c not in data.columns and c not in _KNOWN_FUNCTIONS]
        if missing:
            raise DataError(
                f"{what} {formula!r} refers to column(s) {missing} not in the data"
            ) from exc
        null = re.search(r"`([^`]+)` contains null values", message)
        if null:
            raise DataError(f"{what} column '{null.group(1)}' has missing (NaN) values; drop or "
                            "impute those rows before estimation") from exc
        invalid = re.search(r"evaluate factor `([^`]+)`.*FloatingPointError", message, re.DOTALL)
        if invalid:
            raise DataError(f"{what} column '{invalid.group(1)}' is not finite on these data "
                            f"({message.split('FloatingPointError:')[-1].strip(' ]')}), e.g. "
                            "log of a non-positive number; fix the data or the formula") from exc
        raise SpecificationError(f"cannot evaluate {what} {formula!r}: {message}") from exc
    names = [INTERCEPT if c == "Intercept" else str(c) for c in matrix.columns]
    values = np.asarray(matrix.to_numpy(dtype=np.float64), dtype=np.float64)
    if intercept is False and INTERCEPT in names:
        keep = [i for i, n in enumerate(names) if n != INTERCEPT]
        values = values[:, keep]
        names = [names[i] for i in keep]
    if values.shape[0] != len(data):
        raise DataError(f"{what} {formula!r} dropped rows (missing values?); clean the data first")
    bad = ~np.isfinite(values)
    if bad.any():
        col = names[int(np.flatnonzero(bad.any(axis=0))[0])]
        raise DataError(f"{what} column '{col}' has NaN/inf values "
                        "(e.g. log of a non-positive number)")
    return DesignMatrix(values=np.ascontiguousarray(values), names=tuple(names))


def _reject_numbers_as_text(formula: str, data: pd.DataFrame, what: str) -> None:
    """Columns named twice in the data, and text columns whose values all parse as numbers used
    outside ``C()`` (formulaic would make one dummy per value: a CSV read with a stray quote)."""
    for name in dict.fromkeys(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", formula)):
        if name in data.columns and isinstance(data[name], pd.DataFrame):
            raise DataError(f"{what} column '{name}' occurs more than once in the data (duplicate "
                            "column names); rename or drop the copies")
    bare = re.sub(r"C\([^()]*\)", " ", formula)
    for name in dict.fromkeys(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", bare)):
        if name not in data.columns:
            continue
        column = data[name]
        if not (pd.api.types.is_object_dtype(column) or pd.api.types.is_string_dtype(column)):
            continue
        present = column.dropna()
        if len(present) and pd.to_numeric(present, errors="coerce").notna().all():
            raise DataError(
                f"{what} column '{name}' holds numbers stored as text (dtype {column.dtype}), "
                f"which would become one dummy per value; convert it with pd.to_numeric, or "
                f"write C({name}) if it is a categorical code")


_KNOWN_FUNCTIONS = {"C", "I", "log", "exp", "sqrt", "np", "center", "scale", "poly", "abs",
                    "Q", "T", "lag", "bs", "cr", "cc", "te", "hashed"}


def parse_absorb(absorb: str | list[str] | tuple[str, ...] | None,
                 data: pd.DataFrame) -> tuple[str, ...]:
    """Parse ``"C(a) + C(b)"`` (or a list of names) into the grouping columns to absorb."""
    if absorb is None:
        return ()
    if isinstance(absorb, str) or (isinstance(absorb, (list, tuple))
                                   and all(isinstance(t, str) for t in absorb)):
        terms = ([t.strip() for t in absorb.split("+") if t.strip()] if isinstance(absorb, str)
                 else [t.strip() for t in absorb])
        columns = []
        for term in terms:
            match = re.fullmatch(r"C\(\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)", term)
            name = match.group(1) if match else term
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise SpecificationError(
                    f"absorb term {term!r} is not understood; write 'C(column) + C(other)'"
                )
            columns.append(name)
    else:
        raise SpecificationError(f"absorb={absorb!r} is not understood; "
                                 "write 'C(column) + C(other)' or a list of column names")
    missing = [c for c in columns if c not in data.columns]
    if missing:
        raise DataError(f"absorb refers to column(s) {missing} not in the data")
    return tuple(columns)


def check_rank(values: FloatArray, names: tuple[str, ...] | list[str], *, what: str) -> None:
    """Raise SpecificationError naming the columns that are collinear with earlier ones."""
    values = np.asarray(values, dtype=np.float64)
    if values.shape[1] == 0:
        return
    zero = [names[k] for k in range(values.shape[1]) if not np.any(values[:, k])]
    if zero:
        raise SpecificationError(f"{what} column(s) {zero} are all zero (after partialling out "
                                 "absorbed fixed effects, if any); drop them")
    scale = np.sqrt((values**2).mean(axis=0))
    scale[scale == 0] = 1.0
    normalized = values / scale
    _, r = np.linalg.qr(normalized)
    diag = np.abs(np.diag(r))
    tol = max(values.shape) * np.finfo(float).eps * max(diag.max(), 1.0) * 1e3
    dependent = [names[k] for k in range(len(diag)) if diag[k] <= tol]
    if dependent:
        raise SpecificationError(
            f"{what} is rank deficient: column(s) {dependent} are collinear with the columns "
            "before them (or with absorbed fixed effects); drop them"
        )
