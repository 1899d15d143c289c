"""The BLP estimator's home: its public entry points (``estimate``, ``evaluate``) and its
results (a frozen record with its verdict, standard errors, summary table and fitted model).

The procedure lives in ``solve.estimate`` (GMM steps, starts, polish) and the standard errors
in ``solve.covariance``: the GMM sandwich (Hansen 1982) with G = d g / d(theta, beta)
= (1/N) Z~' [d xi/d theta, -X1~]: V = (G'WG)^{-1} G'WSWG (G'WG)^{-1} / N, S unadjusted, robust
or clustered, over the identified parameters; another kind is a new object from
``with_covariance``, never an in-place change.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from blpdemand._types import AnyArray, FloatArray, Status
from blpdemand.errors import SpecificationError
from blpdemand.model.fitted import FittedDemand
from blpdemand.model.parameters import ParameterLayout
from blpdemand.model.problem import Problem
from blpdemand.results.covariance_restrictions import covariance_moments, covariance_notes
from blpdemand.results.post_methods import PostEstimationMethods
from blpdemand.results.tables import LabelledParameters, Table, coefficient_table
from blpdemand.solve.bounds import at_bounds
from blpdemand.solve.covariance import (
    HansenJ,
    check_kind,
    cluster_ids,
    gmm_covariance,
    identified_parameters,
    linear_names,
)
from blpdemand.solve.distributions import chi2_sf
from blpdemand.solve.estimate import EstimationConfig, EstimationOutcome, run_estimation
from blpdemand.solve.evaluation import evaluate_outcome
from blpdemand.solve.gmm import ObjectiveEvaluation
from blpdemand.solve.micro import micro_jacobian_rows
from blpdemand.solve.micro_covariance import stacked_covariance
from blpdemand.solve.moments import problem_stack
from blpdemand.solve.optimizer import OptimizationResult, projected_gradient
from blpdemand.solve.progress import Reporter


@dataclass(frozen=True, eq=False, kw_only=True)
class BLPResults(PostEstimationMethods, LabelledParameters):
    """Estimates of a BLP demand model (per-product arrays delta and xi in the user's row order).

    Attributes
    ----------
    problem, layout, config : what was estimated and how.
    theta : (P,) free Sigma and Pi elements (``layout.names``); beta : (K1,) linear parameters.
    delta, xi : (N,) mean utilities and structural errors at the estimate, in the user's row
        order (``products["xi"] = results.xi`` lines up; the problem works in market-sorted
        order internally).
    objective : Q = N g'Wg; gradient : (P,) dQ/dtheta; hessian : (P, P) or None.
    W : (M, M) weighting matrix of the last step; G : (M, P + K1) moment Jacobian.
    covariance : (P + K1, P + K1) of (theta, beta); covariance_kind, clusters.
    steps : optimizer records per GMM step; starts : where each start ended.
    """

    problem: Problem
    layout: ParameterLayout
    config: EstimationConfig
    theta: FloatArray
    beta: FloatArray
    delta: FloatArray = field(repr=False)
    xi: FloatArray = field(repr=False)
    objective: float
    gradient: FloatArray
    hessian: FloatArray | None = field(repr=False)
    W: FloatArray = field(repr=False)
    G: FloatArray = field(repr=False)
    covariance: FloatArray = field(repr=False)
    covariance_kind: str
    clusters: AnyArray | None = field(repr=False)
    steps: tuple[OptimizationResult, ...] = field(repr=False)
    starts: tuple[Any, ...] = field(repr=False)
    bounds: tuple[tuple[float, float], ...] = field(repr=False)
    contraction_iterations: int
    contraction_evaluations: int
    contraction_failures: int
    time: float
    seeds: dict[str, Any] = field(repr=False)
    evaluation_failed_markets: AnyArray = field(repr=False, default_factory=lambda: np.zeros(0))
    unidentified: tuple[str, ...] = ()
    gamma: FloatArray = field(default_factory=lambda: np.zeros(0))
    omega: FloatArray | None = field(repr=False, default=None)
    marginal_costs: FloatArray | None = field(repr=False, default=None)
    micro: Any = field(default=None, repr=False)  # MicroValues at the estimate (model.micro)
    supply_failures: int = 0  # trial theta where the supply side failed (a penalty there)

    # ------------------------------------------------------------------ estimates
    @property
    def names(self) -> tuple[str, ...]:
        """Names of (theta, beta, gamma): ``sigma[...]``, ``pi[...]``, the X1 columns, then
        ``gamma[...]`` for the X3 columns of a supply side."""
        return self.layout.names + linear_names(self.problem)

    @property
    def estimates(self) -> FloatArray:
        """(P + K1 + K3,) theta, beta, then gamma (K3 = 0 without a supply side)."""
        return np.concatenate([self.theta, self.beta, self.gamma])

    @property
    def standard_errors(self) -> FloatArray:
        """(P + K1,) square roots of the covariance diagonal."""
        return np.sqrt(np.clip(np.diag(self.covariance), 0.0, None))

    @property
    def theta_se(self) -> FloatArray:
        return self.standard_errors[: self.layout.P]

    @property
    def beta_se(self) -> FloatArray:
        return self.standard_errors[self.layout.P: self.layout.P + self.problem.K1]

    @property
    def gamma_se(self) -> FloatArray:
        """(K3,) standard errors of the cost parameters gamma (joint sandwich)."""
        return self.standard_errors[self.layout.P + self.problem.K1:]

    @property
    def conduct(self) -> str | None:
        """The supply side's conduct ("bertrand", "monopoly", "perfect"; "bertrand" with a
        partial-ownership kappa), None without a supply side."""
        supply = self.problem.supply
        return None if supply is None else supply.conduct

    @property
    def fixed_effects(self) -> FloatArray:
        """(N,) the absorbed fixed effects' contribution to delta, delta - X1 beta - xi, in the
        user's row order (zeros without absorbed effects): e.g. an entrant's ``fixed_effect``
        taken from its brand's products (``simulate_entry``)."""
        X1_beta = self.problem.products.unsort(self.problem.X1.values @ self.beta)
        return np.asarray(self.delta - X1_beta - self.xi, dtype=np.float64)

    @property
    def sigma(self) -> FloatArray:
        return self.layout.unpack(self.theta)[0]

    @property
    def pi(self) -> FloatArray:
        return self.layout.unpack(self.theta)[1]

    @property
    def sigma_se(self) -> FloatArray:
        """(K2, K2) standard errors of Sigma (zero where fixed)."""
        return self.layout.unpack(self.theta_se)[0]

    @property
    def pi_se(self) -> FloatArray:
        return self.layout.unpack(self.theta_se)[1]

    @property
    def rho(self) -> FloatArray:
        """Nesting parameters of a random-coefficients nested logit (empty without nests)."""
        return self.layout.rho(self.theta)

    @property
    def rho_se(self) -> FloatArray:
        return self.layout.rho(self.theta_se)

    @property
    def gradient_norm(self) -> float:
        """Inf-norm of dQ/dtheta at the estimate."""
        return float(np.max(np.abs(self.gradient), initial=0.0))

    @property
    def projected_gradient_norm(self) -> float:
        """Inf-norm of dQ/dtheta without the components pushing into an active bound: the
        convergence measure when a bound binds (equal to ``gradient_norm`` in the interior)."""
        g = projected_gradient(self.theta, self.gradient, self.bounds or None)
        return float(np.max(np.abs(g), initial=0.0))

    @property
    def hessian_eigenvalues(self) -> FloatArray | None:
        """Eigenvalues of the Hessian of Q (all positive at a strict local minimum)."""
        if self.hessian is None:
            return None
        out = np.asarray(np.linalg.eigvalsh(self.hessian), dtype=np.float64)
        return out

    @property
    def optimization(self) -> OptimizationResult:
        """The optimizer record of the last GMM step."""
        return self.steps[-1]

    @property
    def status(self) -> Status:
        """How the estimation ended (the last GMM step's status): converged, converged at a
        bound, stopped at a limit, not converged, or contraction failed at the estimate."""
        return self.steps[-1].status

    @property
    def failed_markets(self) -> AnyArray:
        """Market ids where the contraction failed at the reported theta (empty when none)."""
        return np.asarray(self.evaluation_failed_markets)

    @property
    def active_bounds(self) -> dict[str, float]:
        """{parameter name: bound} for the parameters on a finite bound."""
        return {self.layout.names[k]: bound for k, bound in at_bounds(self.theta, self.bounds)}

    @property
    def hansen_j(self) -> HansenJ:
        """Hansen's (1982) J test of the over-identifying restrictions.

        J = N g' W g = Q at the estimate, chi-squared with M - (K1 + P) degrees of freedom
        under the null that every moment holds; valid with the efficient W = S^{-1}, i.e. after
        the second GMM step (``method="2s"``); the step-1 value is reported but not a test.
        """
        supply = self.problem.supply
        extra = 0 if supply is None else supply.MS - supply.K3 + covariance_moments(supply)
        df = int(self.problem.MD - self.problem.K1 - self.layout.P + extra)
        statistic = float(self.objective)
        p_value = chi2_sf(statistic, df) if df > 0 and np.isfinite(statistic) else np.nan
        return HansenJ(statistic=statistic, df=df, p_value=p_value,
                       efficient=len(self.steps) == 2)

    @property
    def converged(self) -> bool:
        """Every GMM step converged AND the estimate is finite (a NaN estimate is no success)."""
        finite = bool(np.all(np.isfinite(self.beta)) and np.all(np.isfinite(self.xi)))
        return finite and all(step.converged for step in self.steps)

    @property
    def fitted(self) -> FittedDemand:
        """The estimates post-estimation reads (elasticities, costs, counterfactuals)."""
        return FittedDemand(problem=self.problem, layout=self.layout, theta=self.theta,
                            beta=self.beta, delta=self.problem.products.sort(self.delta))

    def bootstrap(self, draws: int = 1000, *, rng: Any = 0, hold: str = "shares",
                  workers: int = 1, executor: Any = None) -> Any:
        """Parametric bootstrap of the estimates for post-estimation intervals; the same as
        ``bd.bootstrap(results, ...)`` (see ``results.bootstrap``)."""
        from blpdemand.results.bootstrap import bootstrap

        return bootstrap(self, draws=draws, rng=rng, hold=hold,  # type: ignore[arg-type]
                         workers=workers, executor=executor)

    # ------------------------------------------------------------------ covariance
    def with_covariance(self, kind: str, *, clusters: Any = None) -> BLPResults:
        """A NEW results object with ``kind`` standard errors (unadjusted/robust/clustered).

        ``clusters`` is a product-data column name or (N,) ids in the user's row order.
        """
        ids = cluster_ids(self.problem, clusters) if clusters is not None else self.clusters
        check_kind(kind, ids)
        identified = np.array([n not in self.unidentified for n in self.names])
        residuals: tuple[FloatArray, ...] = (self.problem.products.sort(self.xi),)
        if self.omega is not None:
            residuals = problem_stack(self.problem).residuals(
                residuals[0], self.problem.products.sort(self.omega))
        if self.micro is not None:  # S = blockdiag(S_D, S_M), the surveys' block unchanged
            assert self.micro.covariance is not None
            covariance = stacked_covariance(self.G, self.W, residuals, problem_stack(self.problem),
                                            self.problem.N * self.micro.covariance, kind=kind,
                                            clusters=ids, center=self.config.center_moments,
                                            identified=identified)
        else:
            covariance = gmm_covariance(self.G, self.W, residuals, problem_stack(self.problem),
                                        kind=kind, clusters=ids,
                                        center=self.config.center_moments,
                                        identified=identified)
        return dataclasses.replace(self, covariance=covariance, covariance_kind=kind, clusters=ids)

    # ------------------------------------------------------------------ display
    def summary(self, *, digits: int = 4) -> Table:
        """Coefficient table of (theta, beta) with standard errors, t, p and 95% intervals; its
        notes give the verdict (status, bounds, failed markets), Hansen's J and diagnostics."""
        eig = self.hessian_eigenvalues
        notes = [(f"N = {self.problem.N}, T = {self.problem.T}, GMM steps = {len(self.steps)}, "
                 f"objective = {self.objective:.6g}, gradient inf-norm = {self.gradient_norm:.3g}"
                  + (f" ({self.projected_gradient_norm:.3g} projected onto the bounds)"
                     if self.projected_gradient_norm < self.gradient_norm else "")),
                 (f"standard errors: {self.covariance_kind}; optimizer {self.config.optimizer}: "
                 f"{self.status.value} after {self.optimization.iterations} iterations"),
                 (f"contraction iterations = {self.contraction_iterations} (failed at "
                 f"{self.contraction_failures} trial theta), time = {self.time:.2f} s")]
        supply = self.problem.supply
        if supply is not None:
            clipped = "" if supply.bounds is None else f", clipped to {list(supply.bounds)}"
            kappa = "" if supply.kappa is None else " with partial ownership kappa"
            notes.append(f"supply: {supply.costs} marginal costs{clipped}, conduct "
                         f"{supply.conduct}{kappa}; failed at {self.supply_failures} trial theta")
            notes += covariance_notes(self)
        notes += self.verdict_notes()
        if eig is not None:
            notes.append(f"Hessian eigenvalues: min {eig.min():.4g}, max {eig.max():.4g}")
        return coefficient_table(self.names, self.estimates, self.standard_errors,
                                 title="BLP demand estimates", notes=notes, digits=digits)

    def verdict_notes(self) -> list[str]:
        """What a reader must know before using the estimates, one line each."""
        notes = []
        if not self.converged:
            notes.append(f"NOT CONVERGED: {self.status.value} ({self.optimization.message})")
        if self.failed_markets.size:
            notes.append(f"the contraction failed at the estimate in market(s) "
                         f"{self.failed_markets.tolist()[:10]}: no objective, no standard errors")
        if self.unidentified:
            notes.append(f"not identified at the estimate (standard errors NaN): "
                         f"{', '.join(self.unidentified)}")
        if self.active_bounds:
            where = ", ".join(f"{k} = {v:g}" for k, v in self.active_bounds.items())
            notes.append(f"on a bound: {where} (standard errors assume an interior estimate)")
        rows, cols = self.layout.sigma_index
        negative = [name for name, r, c, value in zip(self.layout.names, rows, cols, self.theta)
                    if r == c and value < 0]
        if negative:
            notes.append(f"negative diagonal Sigma: {', '.join(negative)}; a standard deviation's "
                         "sign is not identified (the optimizer took no bounds): read |value|")
        for step in sorted({s.step for s in self.starts}):
            runs = [s for s in self.starts if s.step == step]
            if len(runs) > 1:
                reached = sum(bool(s.same) for s in runs)
                higher = sum(s.optimization.converged and not s.same
                             and s.optimization.objective > self.steps[step - 1].objective
                             for s in runs)
                notes.append(f"GMM step {step}: {reached} of {len(runs)} starts reached the "
                             "reported minimum" + (f", {higher} ended at higher local minima"
                                                   if higher else ""))
        if self.layout.P and self.hansen_j.df > 0:
            notes.append(str(self.hansen_j))
        return notes

    def micro_moments(self) -> Table:
        """The micro moments: observed, fitted at the estimate, difference, and the difference
        in survey standard errors (``results.micro``; see ``results.micro`` module)."""
        from blpdemand.results.micro import micro_table

        return micro_table(self)

    def starts_table(self, *, values: bool | None = None) -> Table:
        """Where each start of each GMM step ended: start, estimate, objective, gradient norm,
        status, and whether it reached the step's reported minimum (objective AND estimates,
        beta included: ``results.starts[k].beta``).

        ``values``: show each start's and end's parameter values (default: with at most 4
        parameters, so that the table stays readable; ``results.starts`` has them all).
        """
        show = self.layout.P <= 4 if values is None else bool(values)
        rows = []
        counter: dict[int, int] = {}
        for s in self.starts:
            o = s.optimization
            k = counter[s.step] = counter.get(s.step, -1) + 1
            first = "user" if s.step == 1 else "step-1 estimate"
            row: dict[str, Any] = {"step": s.step}
            if show:
                row.update({f"start {n}": v for n, v in zip(self.layout.names, s.start)})
                row.update({n: v for n, v in zip(self.layout.names, o.theta)})
            row.update(objective=o.objective, gradient_norm=o.projected_gradient_norm,
                       iterations=o.iterations, converged=o.converged, status=o.status.value,
                       same_minimum=bool(s.same) if s.same is not None else None)
            name = f"step {s.step}: " + (first if k == 0 else f"random {k}")
            rows.append(pd.Series(row, name=name))
        return Table(title="Multi-start outcomes (each GMM step)", body=pd.DataFrame(rows))

    # ------------------------------------------------------------------ frames and repr
    def to_frame(self) -> pd.DataFrame:
        """One row per parameter (``names``): estimate, std. error, t, p-value and the 95%
        interval (the numbers of ``summary()``, unformatted)."""
        return coefficient_table(self.names, self.estimates, self.standard_errors).to_frame()

    def __repr__(self) -> str:
        """One screen for a plain REPL: the status, then ``summary()`` (N, T, objective, the
        coefficients; long tables cut to their first rows)."""
        status = "converged" if self.converged else "NOT converged"
        return self.summary().preview(heading=f"BLPResults ({status}; optimizer: "
                                              f"{self.optimization.status.value})")


def results_from(problem: Problem, outcome: EstimationOutcome,
                 config: EstimationConfig) -> BLPResults:
    """Wrap the estimator's outcome: moment Jacobian, covariance, and the start-value check."""
    e: ObjectiveEvaluation = outcome.evaluation
    N = problem.N
    failed = np.asarray(e.failed_markets)
    # G = d g / d(theta, linear) over the stack: [Z' dr/dtheta, -Z' X] / N
    stack = problem_stack(problem)
    G = stack.moment_jacobian((e.xi_jacobian,) if e.omega_jacobian is None
                              else (e.xi_jacobian, e.omega_jacobian), e.residuals)
    kind = config.covariance
    G = micro_jacobian_rows(G, e.micro_jacobian, e.micro)  # [G_D; -d f/d theta, 0] (micro)
    identified = identified_parameters(problem, outcome.layout, e, outcome.W, G)
    micro = None
    if problem.micro is None:
        covariance = gmm_covariance(G, outcome.W, e.residuals, stack, kind=kind,
                                    clusters=outcome.clusters, center=config.center_moments,
                                    identified=identified)
    else:  # S = blockdiag(S_D, S_M) with the surveys' S_M at the estimate (solve.micro)
        micro = problem.micro.evaluate(outcome.layout, e.theta, e.delta, covariance=True)
        assert micro.covariance is not None
        S_M = N * micro.covariance
        covariance = stacked_covariance(G, outcome.W, e.residuals, stack, S_M, kind=kind,
                                        clusters=outcome.clusters,
                                        center=config.center_moments, identified=identified)
    unsort = problem.products.unsort
    return BLPResults(
        problem=problem, layout=outcome.layout, config=config, theta=e.theta, beta=e.beta,
        delta=problem.products.unsort(e.delta), xi=problem.products.unsort(e.xi),
        # Q where the inner loop failed is a penalty, never an objective
        objective=np.nan if e.failed else e.objective, gradient=e.gradient,
        hessian=outcome.hessian,
        W=outcome.W, G=G, covariance=covariance, covariance_kind=kind, clusters=outcome.clusters,
        steps=outcome.steps, starts=outcome.starts, bounds=outcome.bounds,
        contraction_iterations=outcome.contraction_iterations,
        contraction_evaluations=outcome.contraction_evaluations,
        contraction_failures=outcome.contraction_failures, time=outcome.time, seeds=outcome.seeds,
        evaluation_failed_markets=failed, micro=micro,
        unidentified=tuple(n for n, ok in zip(outcome.layout.names + linear_names(problem),
                                              identified) if not ok),
        gamma=e.gamma, omega=None if e.omega is None else unsort(e.omega),
        marginal_costs=None if e.costs is None else unsort(e.costs.costs),
        supply_failures=outcome.supply_failures)


def estimate(problem: Problem, *, sigma: Any = None, pi: Any = None, rho: Any = None,
             config: EstimationConfig | None = None,
             reporter: Reporter | None = None) -> BLPResults:
    """Estimate BLP demand by nested fixed point GMM (Berry, Levinsohn and Pakes 1995).

    theta_hat = argmin N g(theta)' W g(theta), g = (1/N) Z~' xi(theta), beta concentrated out.
    Nonzero elements of the starting ``sigma`` (K2 vector or (K2, K2) lower triangle) and ``pi``
    (K2, D) are estimated; zeros stay fixed. A nested problem (``Problem(nesting=...)``) also
    estimates its nesting parameters from the starting ``rho`` (one number, or one per nest).

    Examples
    --------
    >>> import blpdemand as bd
    >>> sim = bd.simulate(markets=40, products=5, sigma={"x1": 1.0}, draws=50, rng=0)
    >>> problem = bd.Problem(sim.products, linear=sim.linear, nonlinear=sim.nonlinear,
    ...                      agents=sim.agents, instruments=list(sim.instruments))
    >>> results = bd.estimate(problem, sigma=[0.5])
    >>> results.converged, results.names[0]
    (True, 'sigma[x1, x1]')
    >>> table = results.summary()  # a Table: .to_text(), .to_latex(), .to_frame()
    """
    config = _checked(problem, config)
    layout, theta0 = problem.layout(sigma, pi, rho)
    outcome = run_estimation(problem, layout, theta0, config, reporter)
    return results_from(problem, outcome, config)


def evaluate(problem: Problem, *, sigma: Any = None, pi: Any = None, rho: Any = None,
             config: EstimationConfig | None = None) -> BLPResults:
    """Results at the given Sigma and Pi without optimizing (PyBLP's 'return'): with the
    step-1 W, or with ``config.method="2s"`` the step-2 W built from the residuals at theta.

    For inspecting an objective surface, comparing tools at a fixed theta, or standard errors
    at known values.
    """
    config = _checked(problem, config)
    layout, theta = problem.layout(sigma, pi, rho)
    return results_from(problem, evaluate_outcome(problem, layout, theta, config), config)


__all__ = ["BLPResults", "estimate", "evaluate", "gmm_covariance", "results_from"]


def _checked(problem: object, config: object) -> EstimationConfig:
    """The arguments of estimate/evaluate are of the right kind (else a message naming the fix)."""
    if not isinstance(problem, Problem):
        raise SpecificationError("estimate/evaluate need a bd.Problem, "
                                 f"got {type(problem).__name__}; "
                                 "build one with bd.Problem(products, linear=..., nonlinear=...)")
    if config is None:
        return EstimationConfig()
    if not isinstance(config, EstimationConfig):
        raise SpecificationError("config must be a bd.EstimationConfig, "
                                 f"got {type(config).__name__}; "
                                 "write config=bd.EstimationConfig(gtol=..., ...)")
    return config
