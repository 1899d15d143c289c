"""The Salanie-Wolak (2019) approximation's home: ``estimate_approximation`` and its results.

The regression and its computation live in ``solve.salanie_wolak`` (see its docstring for the
second-order expansion of the shares in Sigma and Pi); this module presents the estimates:
a table with sigma from sigma^2 by the delta method, t statistics and intervals.

Reference: Salanie, B. and F. Wolak (2019), "Fast, 'Robust', and Approximately Correct:
Estimating Mixed Demand Systems", NBER WP 25726.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from blpdemand._types import CovarianceKind
from blpdemand.model.problem import Problem
from blpdemand.results.tables import LabelledParameters
from blpdemand.solve.distributions import normal_ppf, normal_sf
from blpdemand.solve.first_stage import frame_text
from blpdemand.solve.salanie_wolak import ApproximationOutcome, run_approximation


@dataclass(frozen=True, eq=False)
class ApproximationResults(ApproximationOutcome, LabelledParameters):
    """Salanie-Wolak estimates (``ApproximationOutcome``'s record) with their table."""

    def to_frame(self) -> pd.DataFrame:
        """Estimates, standard errors and a note per parameter (sigma rows from sigma^2)."""
        se = self.standard_errors
        rows: list[tuple[str, float, float, str]] = []
        K1 = self.problem.K1
        for name, b, s in zip(self.names[:K1], self.estimates[:K1], se[:K1]):
            rows.append((name, float(b), float(s), ""))
        k, _ = self._sigma_positions()
        s2, sig, sig_se = self.sigma_squared, np.diag(self.sigma), self.sigma_se
        for j in k:
            name = self.layout.x2_names[j]
            s2_se = se[K1 + int(np.searchsorted(k, j))]
            rows.append((f"sigma2[{name}]", float(s2[j]), float(s2_se), ""))
            note = ("sigma^2 < 0: sigma set to 0 (approximation or model rejects this random "
                    "coefficient)") if s2[j] < 0 else ""
            rows.append((f"sigma[{name}]", float(sig[j]), float(sig_se[j]), note))
        r, c = self.layout.pi_index
        pi, pi_se = self.pi, self.pi_se
        for i, j in zip(r, c):
            rows.append((f"pi[{self.layout.x2_names[i]}, {self.layout.demographic_names[j]}]",
                         float(pi[i, j]), float(pi_se[i, j]), ""))
        frame = pd.DataFrame(rows, columns=["parameter", "estimate", "std. error", "note"])
        frame = frame.set_index("parameter")
        b, s = frame["estimate"].to_numpy(), frame["std. error"].to_numpy()
        ok = np.isfinite(s) & (s > 0)
        t = np.full(b.size, np.nan)
        t[ok] = b[ok] / s[ok]
        q = normal_ppf(0.975)
        frame.insert(2, "t", t)  # columns as in the results tables' coefficient_table
        frame.insert(3, "p-value", np.where(ok, 2.0 * normal_sf(np.abs(np.nan_to_num(t))),
                                            np.nan))
        frame.insert(4, "[0.025", b - q * s)
        frame.insert(5, "0.975]", b + q * s)
        return frame

    def __repr__(self) -> str:
        frame = self.to_frame().drop(columns="note")
        lines = ["ApproximationResults: Salanie-Wolak (2019) small-sigma approximation, 2SLS",
                 (f"N = {self.problem.N}, T = {self.problem.T}, {self.covariance_kind} standard "
                 f"errors; {'converged' if self.converged else 'NOT converged'}, "
                 f"iterations = {self.iterations}"), frame_text(frame)]
        if self.negative_variance:
            lines.append(f"sigma^2 < 0 for {list(self.negative_variance)}: sigma set to 0 there")
        return "\n".join(lines)


def estimate_approximation(problem: Problem, *, sigma: Any = None, pi: Any = None,
                           covariance: CovarianceKind = "robust", clusters: Any = None,
                           quadratic_pi: bool = True, max_iterations: int = 100,
                           tol: float = 1e-12) -> ApproximationResults:
    """Salanie-Wolak (2019) estimates of beta, sigma and Pi by (nonlinear) 2SLS.

    log(s_jt / s_0t) = x1_jt' beta + sum_k sigma_k^2 d_jt^k + sum_{k,y} pi_ky m_ty x_jtk
    + Q_jt(Pi) + xi_jt (``solve.salanie_wolak``). Instruments are the problem's Z_D with
    absorbed fixed effects partialled out; there must be at least K1 + (free sigma) + (free pi)
    of them, and they should move the artificial regressors (differentiation and
    demographic-interaction instruments do).

    Parameters
    ----------
    problem : Problem with a nonlinear formula.
    sigma, pi : patterns as in ``estimate`` (nonzero = free); sigma=None frees every diagonal
        element. Off-diagonal sigma elements are not supported.
    covariance : "robust" (heteroskedasticity, HC0), "clustered" (``clusters`` or the
        ``clustering_ids`` column) or "unadjusted".
    quadratic_pi : keep the second-order Pi term Q(Pi) (nonlinear 2SLS); False drops it and
        the fit is a single linear 2SLS.
    max_iterations, tol : Gauss-Newton limits (relative step size) when Q(Pi) is kept.

    Examples
    --------
    >>> import blpdemand as bd
    >>> sim = bd.simulate(markets=50, products=5, sigma={"x1": 0.5}, draws=50, rng=0)
    >>> problem = bd.Problem(sim.products, linear=sim.linear, nonlinear="0 + x1",
    ...                      agents=sim.agents, instruments=["w1", "w2"])
    >>> approx = bd.estimate_approximation(problem)
    >>> approx.names
    ('1', 'prices', 'x1', 'x2', 'sigma2[x1]')
    """
    outcome = run_approximation(problem, sigma=sigma, pi=pi, covariance=covariance,
                                clusters=clusters, quadratic_pi=quadratic_pi,
                                max_iterations=max_iterations, tol=tol)
    return ApproximationResults(**{f.name: getattr(outcome, f.name)
                                   for f in dataclasses.fields(outcome)})
