"""First-stage regressions: every endogenous regressor on all instruments, with weak-IV tests.

x_e = Z pi + v with Z = [exogenous regressors, excluded instruments] (absorbed fixed effects
partialled out). The partial F statistic tests pi_E = 0 for the q excluded instruments:

    F = pi_E' V_EE^-1 pi_E / q                       (Wald / q; V unadjusted, HC0 or clustered)
    F_eff = pi_E' (Z~_E' Z~_E) pi_E / tr(V_EE Z~_E' Z~_E)   (Montiel Olea and Pflueger 2013)

where Z~_E are the excluded instruments net of the exogenous ones. With the unadjusted V
(s^2 = v'v / (N - M - D_FE)) the Wald form equals the classical (RSS_r - RSS_u)/q / s^2. The
effective F equals the robust Wald F with one instrument and is the robust statistic to compare
with the Stock and Yogo (2005) rule of thumb of 10. By default no finite-sample cluster factor is
used; ``cluster_correction="stata"`` multiplies the clustered V by Stata's

    c = G / (G - 1) x (N - 1) / (N - K),      K = M + D_FE (all first-stage parameters),

as ``regress``/``ivreg2, small`` with the effects as dummy columns (G: the smaller dimension for
two-way clusters), so F_clustered and the clustered effective F are divided by c.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from blpdemand._types import FloatArray, LinearCovarianceKind
from blpdemand.data.validation import check_choice
from blpdemand.errors import SpecificationError, WeakInstrumentsWarning
from blpdemand.solve.covariance import number_of_clusters
from blpdemand.solve.distributions import f_sf
from blpdemand.solve.linear_iv import estimate_covariance

WEAK_F_THRESHOLD = 10.0
ClusterCorrection = Literal["none", "stata"]
CLUSTER_CORRECTIONS: tuple[ClusterCorrection, ...] = ("none", "stata")


@dataclass(frozen=True, slots=True, kw_only=True)
class FirstStage:
    """First stage of one endogenous regressor.

    Attributes
    ----------
    endogenous : the regressor's name; params, bse : pandas Series over the instruments.
    f_statistic : the headline F (homoskedastic for covariance "unadjusted", else effective F).
    f_homoskedastic, f_robust, f_clustered, f_effective : the partial F statistics.
    p_value : P(F(q, df) > f_statistic); partial_r2 : 1 - RSS_u / RSS_r; q : excluded instruments.
    cluster_factor : the small-sample factor c applied to the clustered V (1.0 when none).
    """

    endogenous: str
    params: pd.Series = field(repr=False)
    bse: pd.Series = field(repr=False)
    f_statistic: float
    f_homoskedastic: float
    f_robust: float
    f_clustered: float | None
    f_effective: float
    p_value: float
    partial_r2: float
    q: int
    df_resid: int
    covariance_type: str
    cluster_factor: float = 1.0

    @property
    def weak(self) -> bool:
        """True when the headline F is below 10 (Staiger and Stock 1997)."""
        return self.f_statistic < WEAK_F_THRESHOLD

    def to_frame(self) -> pd.DataFrame:
        """Coefficient and standard error of each instrument (rows)."""
        return pd.DataFrame({"coefficient": self.params, "std. error": self.bse})

    def __repr__(self) -> str:
        kind = "homoskedastic" if self.covariance_type == "unadjusted" else "effective"
        clustered = "" if self.f_clustered is None else f", clustered {self.f_clustered:.2f}"
        if self.f_clustered is not None and self.cluster_factor != 1.0:
            clustered += f" (small-sample factor {self.cluster_factor:.4f})"
        lines = [(f"First stage of {self.endogenous!r} ({self.q} excluded instruments, "
                 f"residual df = {self.df_resid}, {self.covariance_type} standard errors)"),
                 frame_text(self.to_frame()),
                 (f"F = {self.f_statistic:.2f} ({kind}), p-value {self.p_value:.4g}, "
                 f"partial R2 = {self.partial_r2:.4f}"),
                 (f"partial F: homoskedastic {self.f_homoskedastic:.2f}, robust "
                 f"{self.f_robust:.2f}{clustered}, effective {self.f_effective:.2f}")]
        if self.weak:
            lines.append(f"weak instruments: F < {WEAK_F_THRESHOLD:g} (Stock and Yogo 2005)")
        return "\n".join(lines)


@dataclass(frozen=True, slots=True, kw_only=True)
class FirstStageReport:
    """First stages of all endogenous regressors, in the order of X1."""

    stages: tuple[FirstStage, ...]

    def __getitem__(self, name: str) -> FirstStage:
        for stage in self.stages:
            if stage.endogenous == name:
                return stage
        raise KeyError(f"no first stage for {name!r}; endogenous: "
                       f"{[s.endogenous for s in self.stages]}")

    def __len__(self) -> int:
        return len(self.stages)

    def to_frame(self) -> pd.DataFrame:
        """One row per endogenous regressor with the F statistics and partial R^2."""
        rows = {s.endogenous: {"F": s.f_statistic, "F homoskedastic": s.f_homoskedastic,
                               "F robust": s.f_robust, "F clustered": s.f_clustered,
                               "F effective": s.f_effective, "p-value": s.p_value,
                               "partial R2": s.partial_r2, "excluded": s.q} for s in self.stages}
        return pd.DataFrame.from_dict(rows, orient="index")

    def __repr__(self) -> str:
        return "\n\n".join(repr(stage) for stage in self.stages) or "FirstStageReport(no stages)"


def frame_text(frame: pd.DataFrame, rows: int = 30) -> str:
    """A DataFrame as plain text with 4 decimals (tiny or huge numbers in scientific notation),
    at most ``rows`` rows (a line counts the others): for reprs below the results layer."""

    def number(value: float) -> str:
        if value != 0 and np.isfinite(value) and (abs(value) < 1e-4 or abs(value) >= 1e8):
            return f"{value:.3e}"
        return f"{value:.4f}"

    text = str(frame.iloc[:rows].to_string(float_format=number))
    hidden = len(frame) - rows
    return text + (f"\n... {hidden} more rows" if hidden > 0 else "")


def _wald_f(pi_E: FloatArray, V_EE: FloatArray) -> float:
    """Wald F = pi' V^{-1} pi / q; NaN when V is singular (e.g. fewer clusters than q + 1)."""
    try:
        return float(pi_E @ np.linalg.solve(V_EE, pi_E)) / pi_E.size
    except np.linalg.LinAlgError:
        return float("nan")


def cluster_factor(N: int, K: int, G: int) -> float:
    """Stata's small-sample factor for clustered covariance: G/(G-1) x (N-1)/(N-K)."""
    if G < 2 or N <= K:
        raise SpecificationError(f"the small-sample cluster factor needs G >= 2 clusters and "
                                 f"N > K (G = {G}, N = {N}, K = {K})")
    return G / (G - 1) * (N - 1) / (N - K)


def first_stage(X: FloatArray, Z: FloatArray, *, x_names: Sequence[str],
                z_names: Sequence[str], endogenous: Sequence[str], excluded: Sequence[str],
                covariance: LinearCovarianceKind = "robust", clusters: object = None,
                absorbed_degrees: int = 0, warn: bool = True,
                cluster_correction: ClusterCorrection = "none") -> FirstStageReport:
    """Regress every endogenous column of X on Z and test the excluded instruments.

    Parameters
    ----------
    X : (N, K) regressors; Z : (N, M) instruments; both with fixed effects partialled out.
    x_names, z_names : column labels; endogenous : names in x_names; excluded : names in z_names.
    covariance, clusters, absorbed_degrees : as in ``fit_linear_iv``.
    warn : issue a WeakInstrumentsWarning when a headline F is below 10.
    cluster_correction : ``"none"`` or ``"stata"``: V_clustered times
        c = G/(G-1) (N-1)/(N-K) with K = M + absorbed_degrees (see the module docstring).

    Returns
    -------
    FirstStageReport with one FirstStage per endogenous regressor.

    References
    ----------
    Stock and Yogo (2005); Montiel Olea and Pflueger (2013), JBES 31(3).
    """
    x_names, z_names = list(x_names), list(z_names)
    E = [z_names.index(n) for n in excluded]
    exog = [k for k in range(len(z_names)) if k not in E]
    q = len(E)
    if q == 0:
        raise SpecificationError(f"no excluded instruments for endogenous {list(endogenous)}")
    check_choice(cluster_correction, CLUSTER_CORRECTIONS, name="cluster_correction")
    N, M = Z.shape
    df = N - M - absorbed_degrees
    factor = 1.0
    if cluster_correction == "stata" and clusters is not None:
        factor = cluster_factor(N, M + absorbed_degrees, number_of_clusters(clusters, N))
    ZZi = np.linalg.inv(Z.T @ Z)
    W = np.linalg.inv(Z.T @ Z / N)
    Zx = Z[:, exog]
    ZE = Z[:, E]
    ZxZx = Zx.T @ Zx
    ZE_tilde = ZE - Zx @ np.linalg.solve(ZxZx, Zx.T @ ZE) if exog else ZE
    QE = ZE_tilde.T @ ZE_tilde
    stages = []
    for name in endogenous:
        x = X[:, x_names.index(name)]
        pi = ZZi @ (Z.T @ x)
        v = x - Z @ pi
        rss_u = float(v @ v)
        restricted = x - Zx @ np.linalg.solve(ZxZx, Zx.T @ x) if exog else x
        rss_r = float(restricted @ restricted)

        def V(kind: LinearCovarianceKind, pi: FloatArray = pi, v: FloatArray = v) -> FloatArray:
            return estimate_covariance(Z, Z, v, W, covariance=kind, clusters=clusters,
                                       absorbed_degrees=absorbed_degrees)

        V_u, V_r = V("unadjusted"), V("robust")
        V_c = factor * V("clustered") if clusters is not None else None
        pi_E = pi[E]
        f_homo = _wald_f(pi_E, V_u[np.ix_(E, E)])
        f_rob = _wald_f(pi_E, V_r[np.ix_(E, E)])
        f_clu = None if V_c is None else _wald_f(pi_E, V_c[np.ix_(E, E)])
        V_eff = V_c if covariance == "clustered" and V_c is not None else V_r
        f_eff = float(pi_E @ QE @ pi_E) / float(np.trace(V_eff[np.ix_(E, E)] @ QE))
        headline = f_homo if covariance == "unadjusted" else f_eff
        V_report = {"unadjusted": V_u, "clustered": V_c}.get(covariance, V_r)
        assert V_report is not None
        stage = FirstStage(
            endogenous=name, params=pd.Series(pi, index=z_names, name=name),
            bse=pd.Series(np.sqrt(np.clip(np.diag(V_report), 0, None)), index=z_names, name=name),
            f_statistic=headline, f_homoskedastic=f_homo, f_robust=f_rob, f_clustered=f_clu,
            f_effective=f_eff, p_value=f_sf(headline, q, df),
            partial_r2=1.0 - rss_u / rss_r if rss_r > 0 else float("nan"), q=q, df_resid=df,
            covariance_type=covariance, cluster_factor=factor if V_c is not None else 1.0)
        if warn and stage.weak:
            warnings.warn(WeakInstrumentsWarning(
                f"weak instruments for '{name}': first-stage F = {headline:.2f} < "
                f"{WEAK_F_THRESHOLD:g} with excluded instruments {list(excluded)}; estimates and "
                "tests may be biased; find stronger instruments or use weak-IV-robust inference"),
                stacklevel=3)
        stages.append(stage)
    return FirstStageReport(stages=tuple(stages))
