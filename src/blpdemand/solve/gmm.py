"""The GMM objective of BLP with beta concentrated out, and its analytic gradient.

Q(theta) = N g(theta)' W g(theta),  g = (1/N) Z~' xi(theta),  xi = A delta~(theta)
(the scaling by N makes the 2-step objective Hansen's J statistic, as in PyBLP), with
A the IV annihilator of :mod:`blpdemand.solve.moments`. Because A does not depend on theta,

    dQ/dtheta = 2 (Z~' A (d delta/d theta)~)' W g = 2 (Z~' (d delta/d theta)~)' W g,

where d delta / d theta comes from the implicit function theorem in the inner loop
(Berry, Levinsohn and Pakes 1995; Nevo 2000); the second form holds because X1~' Z~ W g = 0
at the concentrated beta. The optimizer's evaluations (``__call__``, ``objective``,
``gradient``, ``hessian``) take the adjoint form dQ/dtheta = 2 v' d delta/d theta with
v = M Z~ W g (M the symmetric fixed-effect annihilator), one solve with d s / d delta per
market instead of P (``InnerLoop.gradient``), when exp(mu) is cached between calls;
``evaluate`` also gives the full d xi / d theta, needed for standard errors.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from blpdemand._types import AnyArray, FloatArray, OnFailure
from blpdemand.errors import ConvergenceError
from blpdemand.model.marginal_costs import (
    CostEvaluation,
    Kept,
    costs_adjoint,
    evaluate_costs,
    supply_blocks,
)
from blpdemand.model.parameters import ParameterLayout
from blpdemand.model.problem import Problem
from blpdemand.solve.contraction import InnerLoop
from blpdemand.solve.fixed_point import FixedPointConfig
from blpdemand.solve.micro import micro_contribution, split_weighting
from blpdemand.solve.moments import problem_stack
from blpdemand.solve.nested_loop import inner_loop
from blpdemand.solve.progress import EvaluationRecord, Reporter, SilentReporter


@dataclass(frozen=True, slots=True, kw_only=True)
class ObjectiveEvaluation:
    """Everything computed at one theta.

    Attributes
    ----------
    theta : (P,); delta : (N,) mean utilities (with absorbed effects); xi : (N,);
    beta : (K1,); g : (M,) mean moments; objective : Q; gradient : (P,) dQ/dtheta;
    xi_jacobian : (N, P) partial d xi / d theta at fixed beta (= residualized d delta/d theta),
    (N, 0) when ``adjoint`` (the gradient came from the adjoint, the Jacobian was not formed);
    contraction counts and failed market ids.
    """

    theta: FloatArray
    delta: FloatArray
    xi: FloatArray
    beta: FloatArray
    g: FloatArray
    objective: float
    gradient: FloatArray
    xi_jacobian: FloatArray = field(repr=False)
    contraction_iterations: int
    contraction_evaluations: int
    failed_markets: AnyArray
    adjoint: bool = False
    has_gradient: bool = True
    gamma: FloatArray = field(default_factory=lambda: np.zeros(0))
    omega: FloatArray | None = field(default=None, repr=False)
    omega_jacobian: FloatArray | None = field(default=None, repr=False)
    costs: CostEvaluation | None = field(default=None, repr=False)
    # the micro block (solve.micro): MicroValues and d f / d theta (None without micro moments)
    micro: Any = field(default=None, repr=False)
    micro_jacobian: FloatArray | None = field(default=None, repr=False)
    # covariance restrictions (solve.moments): xi omega - m (N,), None without them
    covariance_residual: FloatArray | None = field(default=None, repr=False)

    @property
    def failed(self) -> bool:
        """The inner loop failed here (some market, or non-finite xi), or the supply side did
        (singular first-order conditions, log of a non-positive cost): Q is a penalty."""
        return (bool(np.asarray(self.failed_markets).size)
                or not bool(np.all(np.isfinite(self.xi)))
                or (self.costs is not None and self.costs.failure is not None))

    @property
    def residuals(self) -> tuple[FloatArray, ...]:
        """The residuals of the moment blocks: (xi,), (xi, omega) or (xi, omega, xi omega - m)."""
        if self.omega is None:
            return (self.xi,)
        if self.covariance_residual is None:
            return (self.xi, self.omega)
        return (self.xi, self.omega, self.covariance_residual)

    @property
    def residual_jacobian(self) -> FloatArray:
        """(B N, P) d r / d theta over the stack at fixed linear parameters."""
        if self.omega_jacobian is None:
            return self.xi_jacobian
        return np.concatenate([self.xi_jacobian, self.omega_jacobian])


class DemandObjective:
    """Q(theta) and dQ/dtheta for one weighting matrix W; callable as ``f(theta) -> (Q, grad)``.

    Warm-starts each contraction from the last finite delta; caches the last evaluation; sends
    one :class:`EvaluationRecord` per new theta to the reporter.
    """

    def __init__(self, problem: Problem, layout: ParameterLayout, W: FloatArray, *,
                 contraction: FixedPointConfig | None = None,
                 on_failure: OnFailure = "warn", reporter: Reporter | None = None,
                 step: int = 1, start: int = 0, clock: float | None = None,
                 delta0: FloatArray | None = None) -> None:
        self.problem = problem
        self.layout = layout
        # W over [demand; micro] (solve.micro): beta is concentrated out with the demand block
        self.W_full = W
        self.W, self.W_micro = split_weighting(problem, W)
        # the stacked moment blocks (solve.moments): demand alone for now
        self.stack = problem_stack(problem)
        # markets grouped for the supply side's batched kernels (None without a supply side)
        self.supply_blocks = None if problem.supply is None else supply_blocks(problem)
        self.Z = self.stack.Z
        self.iv = self.stack.linear_iv(self.W)
        self.loop = inner_loop(problem, layout, config=contraction)
        self.on_failure = on_failure
        self.reporter = reporter if reporter is not None else SilentReporter()
        self.step, self.start = step, start
        self.clock = time.perf_counter() if clock is None else clock
        # a warm start with a non-finite entry (a failed market) would be refused: use none
        self.delta0 = (None if delta0 is None or not np.all(np.isfinite(delta0))
                       else np.array(delta0, dtype=np.float64))
        self.evaluations = 0
        self.iterations = 0
        self.contraction_iterations = 0
        self.contraction_evaluations = 0
        self.failures = 0
        self.supply_failure: str | None = None  # the last supply-side failure's message
        self.supply_failures = 0  # trial theta where it failed
        self.failed_markets: set[Any] = set()
        self.last: ObjectiveEvaluation | None = None
        self.best: ObjectiveEvaluation | None = None
        self._kept: tuple[FloatArray, Kept] | None = None  # evaluate_costs' blocks at a theta
        self._delta_jacobian: tuple[FloatArray, FloatArray] | None = None  # d delta / d theta

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, theta: FloatArray, *, report: bool = True, adjoint: bool = False,
                 gradient: bool = True) -> ObjectiveEvaluation:
        """Solve the inner loop at theta and compute Q, its gradient and d xi / d theta.

        ``adjoint``: the gradient only, by the adjoint (d xi / d theta is not formed) when
        exp(mu) is cached between calls; otherwise the full Jacobian as usual. With
        ``gradient=False`` as well, Q alone (no adjoint solve; the gradient is NaN).
        """
        theta = np.array(theta, dtype=np.float64)
        last = self.last
        if last is not None and np.array_equal(theta, last.theta) and (
                last.has_gradient or not gradient):
            if adjoint or not last.adjoint:
                return last
            self.last = self._with_jacobian(last)
            return self.last
        # without exp(mu) cached d delta / d theta is formed, but the supply side still takes
        # the adjoint route when only the gradient is asked for (no d omega / d theta)
        supply_adjoint = adjoint and self.layout.P > 0 and self.problem.supply is not None
        adjoint = adjoint and self.layout.P > 0 and self.loop.caches_exp_mu
        # overflow at an extreme trial theta must not stop the optimizer: non-finite results
        # are handled below (a large objective, so the line search backs off)
        # A warm start from an extreme trial theta can make the contraction fail where a cold
        # one converges: retry from the best theta's delta, then from the logit delta.
        # (the retries' starts are formed only when a solve fails)
        start, retried = self.delta0, 0
        while True:
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                result = self.loop.solve(theta, delta0=start, jacobian=not adjoint)
            self.contraction_iterations += int(result.iterations)
            self.contraction_evaluations += int(result.evaluations)
            if result.converged or retried == 2:
                break
            if retried == 0 and self.best is not None:
                retry, retried = self.best.delta, 1
            else:
                retry, retried = self.problem.products.logit_delta, 2
            start = self._restart_failed(result, retry)
        failed = np.asarray(result.failed_markets)
        if not result.converged:
            self.failures += 1
            self.failed_markets.update(failed.tolist())
            if self.on_failure == "raise":
                raise ConvergenceError(
                    f"the contraction did not converge in market(s) {failed.tolist()[:10]} at "
                    f"theta={theta.tolist()}; loosen the contraction tolerance, raise its maximum "
                    "iterations, tighten the parameter bounds, or use on_failure='warn'")
        delta = np.asarray(result.delta, dtype=np.float64)
        jacobian = result.jacobian
        if np.all(np.isfinite(delta)) and jacobian is None and self.layout.P > 0 and not adjoint:
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                jacobian = self.loop.jacobian(theta, delta)
        if jacobian is not None:
            self._delta_jacobian = (theta, jacobian)
        evaluation = self._moments(theta, delta, jacobian, result, failed, adjoint=adjoint,
                                   supply_adjoint=supply_adjoint,
                                   with_gradient=gradient)
        if np.all(np.isfinite(delta)) and result.converged:
            self.delta0 = None  # the inner loop warm-starts from its last converged delta
        self.evaluations += 1
        self.last = evaluation
        # the penalty for a non-finite inner loop is finite but never the best (its NaN delta
        # would become the warm start of later retries)
        usable = bool(np.all(np.isfinite(evaluation.xi))) and np.isfinite(evaluation.objective)
        if usable and (self.best is None or evaluation.objective < self.best.objective):
            self.best = evaluation
        if report:
            self.reporter.on_evaluation(EvaluationRecord(
                step=self.step, start=self.start, evaluation=self.evaluations,
                iteration=self.iterations, time=time.perf_counter() - self.clock,
                contraction_iterations=int(result.iterations),
                contraction_evaluations=int(result.evaluations),
                objective=evaluation.objective,
                gradient_norm=float(np.max(np.abs(evaluation.gradient), initial=0.0)),
                theta=theta))
        return evaluation

    def _restart_failed(self, result: Any, start: FloatArray) -> FloatArray:
        """The retry's start: ``start`` in the markets that failed, the solution found in the
        others (each then takes one share evaluation to confirm it instead of a new solve;
        at an extreme trial theta one market can fail while the rest take thousands)."""
        markets = self.problem.products.markets
        rows = np.isin(markets.ids, np.asarray(result.failed_markets))[markets.codes]
        delta = np.asarray(result.delta, dtype=np.float64)
        if rows.all() or not np.all(np.isfinite(delta[~rows])):
            return start
        return np.where(rows, start, delta)

    def _moments(self, theta: FloatArray, delta: FloatArray, jacobian: FloatArray | None,
                 result: Any, failed: AnyArray, *, adjoint: bool = False,
                 supply_adjoint: bool = False,
                 with_gradient: bool = True) -> ObjectiveEvaluation:
        P, N = self.layout.P, self.problem.N
        # a market where the contraction failed has no xi(theta): its delta is not the inverse
        # of the observed shares, and Q computed from it can be anything (lower than the true
        # minimum, seen on sparse grids), so such a theta is infeasible, as a non-finite one
        finite = bool(result.converged) and bool(np.all(np.isfinite(delta))) and (
            jacobian is None or bool(np.all(np.isfinite(jacobian))))
        costs = None
        if finite and self.problem.supply is not None:
            self._kept = (np.array(theta, dtype=np.float64), [])
            costs = evaluate_costs(self.problem, self.layout, theta, delta,
                                   None if supply_adjoint else jacobian, self.supply_blocks,
                                   keep=self._kept[1])
            if costs.failure is not None:
                self.supply_failure = costs.failure
                self.supply_failures += 1
                if self.on_failure == "raise":
                    raise ConvergenceError(costs.failure)
            finite = costs.failure is None
        if finite:
            delta_tilde = self.problem.residualize(delta)
            if costs is None:
                beta, gamma = self.iv.beta(delta_tilde), np.zeros(0)
                xi, omega = delta_tilde - self.problem.X1_tilde @ beta, None
            else:
                y_tilde = self._within_supply(costs.y)
                linear = self.iv.beta(self.stack.stack((delta_tilde, y_tilde)))
                beta, gamma = linear[: self.problem.K1], linear[self.problem.K1:]
                xi = delta_tilde - self.problem.X1_tilde @ beta
                omega = y_tilde - self.stack.blocks[1].X @ gamma
            residuals = self.stack.residuals(xi, omega)
            g = self.stack.mean_moments(residuals)
            objective = float(N * g @ self.W @ g)
            if P > 0 and adjoint and not with_gradient:
                gradient = np.full(P, np.nan)  # Q alone was asked for
            elif P > 0 and adjoint:
                # dQ/dtheta = 2 (d delta/d theta)' M Z~ W g: one adjoint solve per market
                gradient = self._adjoint_gradient(theta, delta, g, costs, residuals)
                finite = bool(np.all(np.isfinite(gradient)))
        if not finite:
            # a failed or non-finite inner loop: a large objective, so no line search accepts
            # this theta and no start that ends here can be the best
            bad = 1e10 if self.best is None else max(1e10, 1e3 * self.best.objective)
            nan = np.full(N, np.nan)
            supply = self.problem.supply
            return ObjectiveEvaluation(
                theta=theta, delta=delta, xi=nan, beta=np.full(self.problem.K1, np.nan),
                g=np.full(self.Z.shape[1], np.nan), objective=bad, gradient=np.zeros(P),
                xi_jacobian=np.full((N, P), np.nan), contraction_iterations=int(result.iterations),
                contraction_evaluations=int(result.evaluations), failed_markets=failed,
                gamma=np.full(0 if supply is None else supply.K3, np.nan),
                omega=None if supply is None else nan, costs=costs,
                omega_jacobian=None if supply is None else np.full((N, P), np.nan),
                covariance_residual=None if self.stack.covariance is None else nan)
        omega_jacobian: FloatArray | None = None
        if P > 0 and adjoint:
            xi_jacobian = np.zeros((N, 0))
        elif P > 0:
            assert jacobian is not None
            # d xi / d theta at fixed beta; the beta(theta) channel drops out of the gradient
            # because X1~' Z W g = 0 at the concentrated beta (first-order condition)
            xi_jacobian = self.problem.residualize(jacobian)
            if costs is not None and supply_adjoint:
                # d omega / d theta is not formed (``_with_jacobian`` completes it)
                gradient = self._adjoint_gradient(theta, delta, g, costs, residuals, jacobian)
                adjoint = True
            else:
                omega_jacobian = (None if costs is None or costs.y_jacobian is None
                                  else self._within_supply(costs.y_jacobian))
                gradient = self._jacobian_gradient(xi_jacobian, omega_jacobian, g, residuals)
        else:
            xi_jacobian = np.zeros((N, 0))
            omega_jacobian = None if omega is None else np.zeros((N, 0))
            gradient = np.zeros(0)
        micro = None
        if self.W_micro is not None:
            micro = micro_contribution(self.problem, self.layout, self.loop, theta, delta,
                                       None if adjoint else jacobian, self.W_micro,
                                       gradient=with_gradient or not adjoint)
            objective, gradient = objective + micro.objective, gradient + micro.gradient
        return ObjectiveEvaluation(
            theta=theta, delta=delta, xi=xi, beta=beta, g=g, objective=objective,
            gradient=gradient, xi_jacobian=xi_jacobian,
            contraction_iterations=int(result.iterations),
            contraction_evaluations=int(result.evaluations), failed_markets=failed,
            adjoint=P > 0 and adjoint, has_gradient=with_gradient or not (P > 0 and adjoint),
            gamma=gamma, omega=omega, costs=costs,
            omega_jacobian=omega_jacobian,
            micro=None if micro is None else micro.values,
            micro_jacobian=None if micro is None else micro.jacobian,
            covariance_residual=None if len(residuals) < 3 else residuals[2])

    def _within_supply(self, values: FloatArray) -> FloatArray:
        """Partial out the absorbed supply fixed effects (identity without them)."""
        supply = self.problem.supply
        return values if supply is None else supply.residualize(values)

    def _jacobian_gradient(self, xi_jacobian: FloatArray, omega_jacobian: FloatArray | None,
                           g: FloatArray, residuals: tuple[FloatArray, ...]) -> FloatArray:
        """2 (Z' dr/dtheta)' W g from the formed Jacobians; with covariance restrictions
        2 sum_b v_b' dy_b/dtheta with the projected weights v (``adjoint_weights``)."""
        if self.stack.covariance is None:
            dr = (xi_jacobian if omega_jacobian is None
                  else self.stack.stack((xi_jacobian, omega_jacobian)))
            out: FloatArray = 2.0 * (self.Z.T @ dr).T @ (self.W @ g)
            return out
        assert omega_jacobian is not None
        v_demand, v_supply = self.stack.adjoint_weights(self.iv, self.W @ g, residuals)
        return 2.0 * (v_demand @ xi_jacobian + v_supply @ omega_jacobian)

    def _adjoint_gradient(self, theta: FloatArray, delta: FloatArray, g: FloatArray,
                          costs: CostEvaluation | None, residuals: tuple[FloatArray, ...],
                          jacobian: FloatArray | None = None) -> FloatArray:
        """2 (dy/dtheta)' Z W g by adjoints: the demand block's v = M Z_D~ (W g)_D, and the
        supply block's u = Z_S (W g)_S through ``costs_adjoint`` (its d delta part joins v);
        v' d delta / d theta by the inner loop's adjoint, or from ``jacobian`` (N, P) when
        d delta / d theta was formed (exp(mu) not cached). Covariance restrictions change
        the weights only (``MomentStack.adjoint_weights``)."""
        Wg = self.W @ g
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            if costs is None:
                v = self.problem.residualize(self.Z @ Wg)
                return 2.0 * self.loop.gradient(theta, delta, v)
            v_demand, v_supply = self.stack.adjoint_weights(self.iv, Wg, residuals)
            kept, self._kept = self._kept, None  # the blocks' demand at this theta, once
            direct, r = costs_adjoint(self.problem, self.layout, theta, delta, costs,
                                      self._within_supply(v_supply), self.supply_blocks,
                                      kept[1] if kept is not None
                                      and np.array_equal(kept[0], theta) else None)
            v = self.problem.residualize(v_demand) + r
            through = self.loop.gradient(theta, delta, v) if jacobian is None else v @ jacobian
            return 2.0 * (through + direct)

    def _with_jacobian(self, evaluation: ObjectiveEvaluation) -> ObjectiveEvaluation:
        """An adjoint evaluation completed with d xi / d theta (from the cached exp(mu)), and
        d omega / d theta with a supply side."""
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            jacobian = self.loop.jacobian(evaluation.theta, evaluation.delta)
        self._delta_jacobian = (evaluation.theta, jacobian)
        xi_jacobian = self.problem.residualize(jacobian)
        costs, omega_jacobian = evaluation.costs, None
        if self.problem.supply is not None:
            costs = evaluate_costs(self.problem, self.layout, evaluation.theta,
                                   evaluation.delta, jacobian, self.supply_blocks)
            assert costs.y_jacobian is not None
            omega_jacobian = self._within_supply(costs.y_jacobian)
        gradient = self._jacobian_gradient(xi_jacobian, omega_jacobian, evaluation.g,
                                           evaluation.residuals)
        micro_jacobian = None
        if self.W_micro is not None:
            micro = micro_contribution(self.problem, self.layout, self.loop, evaluation.theta,
                                       evaluation.delta, jacobian, self.W_micro)
            gradient, micro_jacobian = gradient + micro.gradient, micro.jacobian
        return dataclasses.replace(evaluation, xi_jacobian=xi_jacobian, gradient=gradient,
                                   adjoint=False, costs=costs, omega_jacobian=omega_jacobian,
                                   micro_jacobian=micro_jacobian)

    def mark_iteration(self) -> None:
        """Count one optimizer iteration (shown in the progress records)."""
        self.iterations += 1

    def __call__(self, theta: FloatArray) -> tuple[float, FloatArray]:
        evaluation = self.evaluate(theta, adjoint=True)
        return evaluation.objective, evaluation.gradient

    def objective(self, theta: FloatArray) -> float:
        """Q(theta) only (derivative-free optimizers, profiles): no adjoint solve."""
        return self.evaluate(theta, adjoint=True, gradient=False).objective

    def gradient(self, theta: FloatArray) -> FloatArray:
        """dQ/dtheta only."""
        return self.evaluate(theta, adjoint=True).gradient

    def hessian(self, theta: FloatArray, *, step: float = 1e-6) -> FloatArray:
        """The Hessian of Q at theta, (P, P): exact on the demand side alone (``exact_hessian``),
        else forward finite differences of the analytic gradient, symmetrized.

        H[:, k] = (grad(theta + h_k e_k) - grad(theta)) / h_k, h_k = step max(1, |theta_k|):
        P evaluations (the gradient at theta is usually the estimate's, already computed),
        error O(h) + O(noise / h), about 1e-6 relative for an inner loop solved to 1e-14.
        The Hessian is a diagnostic (second-order check, Newton polish), not used in standard
        errors.
        """
        theta = np.asarray(theta, dtype=np.float64)
        exact = self.exact_hessian(theta)
        if exact is not None:
            return exact
        P = theta.size
        H = np.zeros((P, P))
        base = self.evaluate(theta, report=False, adjoint=True).gradient
        for k in range(P):
            h = step * max(1.0, abs(theta[k]))
            up = theta.copy()
            up[k] += h
            H[:, k] = (self.evaluate(up, report=False, adjoint=True).gradient - base
                       ) / (up[k] - theta[k])
        return (H + H.T) / 2

    def exact_hessian(self, theta: FloatArray) -> FloatArray | None:
        """H = 2N G'WG + 2 v' d^2 delta / d theta d theta' (``model.hessian_compiled``), G the
        concentrated Z' d xi / d theta / N and v = M Z W g; None where it does not apply: a
        supply side, micro moments, nests, lognormal coefficients, a failed inner loop."""
        if (self.problem.supply is not None or self.W_micro is not None
                or not isinstance(self.loop, InnerLoop) or self.layout.P == 0):
            return None
        theta = np.asarray(theta, dtype=np.float64)
        evaluation = self.evaluate(theta, report=False)  # d delta / d theta formed
        kept = self._delta_jacobian
        if (evaluation.failed or not np.isfinite(evaluation.objective) or kept is None
                or not np.array_equal(kept[0], theta)):
            return None
        N = self.problem.N
        dxi = evaluation.xi_jacobian - self.problem.X1_tilde @ self.iv.beta(
            evaluation.xi_jacobian)  # beta(theta) moves with theta here (second order)
        G = self.Z.T @ dxi / N
        v = self.problem.residualize(self.Z @ (self.W @ evaluation.g))
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            second = self.loop.second_order(theta, evaluation.delta, v, kept[1])
        return None if second is None else hessian_from(G, self.W, N, second)


def hessian_from(G: FloatArray, W: FloatArray, N: int, second: FloatArray) -> FloatArray:
    """H = 2N G'WG + 2 v' d^2 delta / d theta d theta', symmetrized: the exact Hessian from its
    parts (``DemandObjective.exact_hessian``; over shards, ``ShardedDemandObjective.hessian``)."""
    H: FloatArray = 2.0 * N * G.T @ W @ G + 2.0 * second
    return (H + H.T) / 2
