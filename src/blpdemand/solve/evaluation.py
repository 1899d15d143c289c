"""The estimator's outputs at a given theta, without optimizing (PyBLP's Optimization('return')).

One step: Q, its gradient, beta and everything standard errors need with W = (Z~'Z~/N)^{-1}.
Two steps (``method="2s"``): the step-2 W = S(xi(theta))^{-1} from the step-1 residuals at the
same theta (robust or clustered S, Hansen 1982), then everything again with it.
"""

from __future__ import annotations

import time

import numpy as np

from blpdemand._types import FloatArray, Status
from blpdemand.errors import SpecificationError
from blpdemand.model.parameters import ParameterLayout
from blpdemand.model.problem import Problem
from blpdemand.solve.bounds import binding_bounds, resolve_bounds
from blpdemand.solve.covariance import cluster_ids, stack_covariance, weighting_matrix
from blpdemand.solve.estimate import (
    EstimationConfig,
    EstimationOutcome,
    updated_weighting,
)
from blpdemand.solve.gmm import DemandObjective, ObjectiveEvaluation
from blpdemand.solve.micro import with_micro
from blpdemand.solve.moments import problem_stack
from blpdemand.solve.optimizer import (
    OptimizationResult,
    contraction_failed,
)
from blpdemand.solve.verdicts import check_final, check_step_one


def evaluate_outcome(problem: Problem, layout: ParameterLayout, theta: FloatArray,
                     config: EstimationConfig, *, W: FloatArray | None = None) -> EstimationOutcome:
    """Everything at a given theta without optimizing (PyBLP's 'return'): with the step-1 W,
    or for ``method="2s"`` with the step-2 W = S(xi(theta))^{-1} built at the same theta; or
    with a given ``W`` (M, M) (the one an estimate used: saved results rebuilt)."""
    if problem.agents is None or layout.P == 0:
        raise SpecificationError("evaluate needs random coefficients: give sigma=/pi=")
    clock, given = time.perf_counter(), W
    clusters = cluster_ids(problem, config.clusters)
    Z = problem_stack(problem).Z  # the stacked instruments (demand, supply)
    W = weighting_matrix(Z.T @ Z / problem.N, what="instrument cross-product Z'Z/N")
    theta = np.asarray(theta, dtype=np.float64)
    objectives: list[DemandObjective] = []
    steps: list[OptimizationResult] = []

    def at(step: int, W: FloatArray, delta0: FloatArray | None) -> ObjectiveEvaluation:
        objectives.append(DemandObjective(
            problem, layout, W, contraction=config.fixed_point, on_failure=config.on_failure,
            step=step, clock=clock, delta0=delta0))
        evaluation = objectives[-1].evaluate(theta, report=False)
        steps.append(OptimizationResult(
            start=theta, theta=theta, objective=evaluation.objective,
            gradient=evaluation.gradient, status=Status.NOT_OPTIMIZED,
            projected_gradient_norm=float(np.max(np.abs(evaluation.gradient))),
            message="evaluated, not optimized", iterations=0, evaluations=1))
        return evaluation

    if given is not None:
        W = np.asarray(given, dtype=np.float64)
    elif problem.micro is not None:  # the initial update micro moments need (solve.micro)
        W = updated_weighting(problem, layout, theta, W, config, clusters)
    evaluation = at(1 if given is None or config.method == "1s" else 2, W, None)
    if config.method == "2s" and given is None:
        check_step_one(evaluation, steps[0])
        S = stack_covariance(objectives[-1].stack, evaluation.residuals, kind=config.weighting,
                             clusters=clusters, center=config.center_moments)
        S = with_micro(problem, layout, S, theta, evaluation.delta)
        W = weighting_matrix(S, what=f"{config.weighting} moment covariance at theta")
        evaluation = at(2, W, evaluation.delta)
    hessian = objectives[-1].hessian(theta) if config.hessian and not evaluation.failed else None
    if evaluation.failed:  # one verdict with estimate: failed markets are no result
        steps[-1] = contraction_failed(steps[-1],
                                       np.asarray(evaluation.failed_markets).tolist())
    check_final(evaluation, config)
    return EstimationOutcome(
        layout=layout, evaluation=evaluation, W=W, steps=tuple(steps), starts=(),
        bounds=tuple(_bounds(problem, layout, theta, config)), hessian=hessian,
        contraction_iterations=sum(o.contraction_iterations for o in objectives),
        contraction_evaluations=sum(o.contraction_evaluations for o in objectives),
        contraction_failures=sum(o.failures for o in objectives),
        time=time.perf_counter() - clock, clusters=clusters, seeds={})


def _bounds(problem: Problem, layout: ParameterLayout, theta: FloatArray,
            config: EstimationConfig) -> list[tuple[float, float]]:
    """The bounds estimate would use (which theta may lie outside: no optimization), so that
    ``projected_gradient_norm`` at an estimate on a bound matches the estimate's."""
    return binding_bounds(resolve_bounds(problem, layout, theta, config.bounds), config.optimizer)

