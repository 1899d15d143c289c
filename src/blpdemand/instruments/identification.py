"""Identification checks run before any estimation, on arrays and their names.

GMM needs E[Z' xi] = 0 to pin down the parameters: the instrument matrix Z (N x M) must have
full column rank M (no all-zero column, no column spanned by others, after absorbing fixed
effects) and at least as many moments as parameters, M >= P (order condition; Hansen 1982).
Excluded instruments are used only if something needs them: an endogenous column of X1 or a
nonlinear parameter.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from blpdemand._types import FloatArray
from blpdemand.errors import SpecificationError


@dataclass(frozen=True, slots=True)
class IdentificationReport:
    """What the checks found.

    Attributes
    ----------
    n_moments : M, columns of Z.
    n_parameters : P, parameters to identify.
    rank : numerical rank of Z.
    zero_columns : names of all-zero columns.
    collinear_columns : names of columns spanned by the columns before them.
    unused : excluded instruments that nothing needs (no endogenous column, no nonlinear
        parameter).
    """

    n_moments: int
    n_parameters: int
    rank: int
    zero_columns: tuple[str, ...]
    collinear_columns: tuple[str, ...]
    unused: tuple[str, ...]

    @property
    def identified(self) -> bool:
        """Full column rank and at least as many moments as parameters."""
        return (self.rank == self.n_moments and not self.zero_columns
                and self.n_moments >= self.n_parameters)


def diagnose_instruments(Z: FloatArray, names: Sequence[str], *, n_parameters: int,
                         excluded: Sequence[str] = (), endogenous: Sequence[str] = (),
                         n_nonlinear: int = 0, before: FloatArray | None = None
                         ) -> IdentificationReport:
    """Rank, zero and collinear columns, counts and unused instruments of Z (N, M); never raises.

    Collinearity is judged column by column: column m is flagged when the R factor of the QR
    decomposition of the RMS-scaled Z has |R_mm| <= max(N, M) eps 1e3 max|R_ll| (it is spanned by
    columns 1..m-1), so the names point at the later of two collinear columns. ``before`` is Z
    before absorbing fixed effects: a column whose norm fell below 1e-9 of its norm before is
    all zero (absorbed), even if iterative demeaning left rounding noise.
    """
    Z = np.asarray(Z, dtype=np.float64)
    Z = Z[:, None] if Z.ndim == 1 else Z
    names = [str(n) for n in names]
    if len(names) != Z.shape[1]:
        raise SpecificationError(f"{Z.shape[1]} instrument columns but {len(names)} names")
    absorbed = np.zeros(Z.shape[1], dtype=bool)
    if before is not None:
        norm_before = np.linalg.norm(np.asarray(before, dtype=np.float64).reshape(Z.shape[0], -1),
                                     axis=0)
        absorbed = np.linalg.norm(Z, axis=0) <= 1e-9 * norm_before
    zero = tuple(names[m] for m in range(Z.shape[1]) if absorbed[m] or not np.any(Z[:, m]))
    collinear: tuple[str, ...] = ()
    rank = 0
    if Z.shape[1] > 0:
        scale = np.sqrt(np.mean(Z**2, axis=0))
        scale[(scale == 0) | absorbed] = np.inf
        r = np.asarray(np.linalg.qr(Z / scale, mode="r"))
        diagonal = np.abs(np.diag(r)) if r.shape[0] >= Z.shape[1] else np.concatenate(
            [np.abs(np.diag(r)), np.zeros(Z.shape[1] - r.shape[0])])
        tol = max(Z.shape) * np.finfo(float).eps * max(float(diagonal.max(initial=0.0)), 1.0) * 1e3
        dependent = diagonal <= tol
        collinear = tuple(names[m] for m in np.flatnonzero(dependent) if names[m] not in zero)
        rank = int(np.sum(~dependent))
    unused: tuple[str, ...] = ()
    if excluded and not endogenous and n_nonlinear == 0:
        unused = tuple(str(e) for e in excluded)
    return IdentificationReport(n_moments=Z.shape[1], n_parameters=int(n_parameters), rank=rank,
                                zero_columns=zero, collinear_columns=collinear, unused=unused)


def check_identification(Z: FloatArray, names: Sequence[str], *, n_parameters: int,
                         parameter_names: Sequence[str] | None = None,
                         excluded: Sequence[str] = (), endogenous: Sequence[str] = (),
                         n_nonlinear: int = 0, before: FloatArray | None = None,
                         what: str = "ZD (demand instruments)") -> IdentificationReport:
    """Raise SpecificationError naming the culprit when Z cannot identify the parameters.

    Checks, in order: excluded instruments that nothing uses, all-zero columns, columns
    collinear with earlier ones, and fewer moments M than parameters P.

    Examples
    --------
    >>> Z = np.array([[1.0, 2.0], [1.0, 3.0], [1.0, 5.0]])
    >>> check_identification(Z, ["1", "z"], n_parameters=2).rank
    2
    """
    report = diagnose_instruments(Z, names, n_parameters=n_parameters, excluded=excluded,
                                  endogenous=endogenous, n_nonlinear=n_nonlinear, before=before)
    if report.unused:
        raise SpecificationError(
            f"instrument(s) {list(report.unused)} are given but not used: no X1 column is "
            "endogenous and there are no nonlinear parameters; declare the endogenous columns "
            "(endogenous=['prices']) or drop the instruments")
    if report.zero_columns:
        raise SpecificationError(
            f"{what} column(s) {list(report.zero_columns)} are all zero (after absorbing fixed "
            "effects, if any); drop them")
    if report.collinear_columns:
        raise SpecificationError(
            f"{what} is rank deficient (rank {report.rank} of {report.n_moments}): column(s) "
            f"{list(report.collinear_columns)} are collinear with the columns before them (or with "
            "absorbed fixed effects); drop them")
    if report.n_moments < report.n_parameters:
        params = f" {list(parameter_names)}" if parameter_names is not None else ""
        raise SpecificationError(
            f"under-identified: too few instruments: {report.n_moments} moment(s) {list(names)} "
            f"for {report.n_parameters} parameter(s){params}; add at least "
            f"{report.n_parameters - report.n_moments} excluded instrument(s)")
    return report
