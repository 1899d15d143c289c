"""The micro-moment block of the GMM objective: its share of Q, gradient, weighting and covariance.

With micro moments g_M = f(v_bar) - f(v(theta)) (``model.micro``) stacked under the demand
moments, W and S are block-diagonal (the surveys are independent of the product-level moments;
Conlon and Gortmaker 2023):

    Q = N g_D' W_D g_D + N g_M' W_M g_M,   W_M = S_M^{-1},  S_M = N Cov(f),

so that at the efficient W the micro block adds g_M' Cov(f)^{-1} g_M, the survey's own chi^2
(as PyBLP scales it). The gradient of the micro block is -2 N (d f / d theta)' W_M g_M with
d f / d theta = (d f / d delta)(d delta / d theta) + (direct d f / d theta): from the full
d delta / d theta when it was formed, else by the adjoint with v = (d f / d delta)' W_M g_M.
The sandwich takes G = [G_D; -d f / d theta, 0] and S = blockdiag(S_D, S_M).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.linalg

from blpdemand._types import FloatArray
from blpdemand.errors import SpecificationError
from blpdemand.model.micro import MicroValues
from blpdemand.model.parameters import ParameterLayout
from blpdemand.model.problem import Problem


@dataclass(frozen=True, slots=True, kw_only=True)
class MicroContribution:
    """The micro block at one theta: its part of Q and of dQ/dtheta (NaN when not asked), the
    MicroValues, and d f / d theta (M_M, P) when d delta / d theta was formed (else None)."""

    objective: float
    gradient: FloatArray
    values: MicroValues
    jacobian: FloatArray | None


def split_weighting(problem: Problem, W: FloatArray) -> tuple[FloatArray, FloatArray | None]:
    """(W_rest, W_M) from a block-diagonal W whose LAST M_M rows and columns are the micro
    block (after the demand block and any other product-level block); W_M None without
    micro moments."""
    if problem.micro is None:
        return W, None
    MD, MM = problem.MD, problem.micro.M
    if W.ndim != 2 or W.shape[0] != W.shape[1] or W.shape[0] < MD + MM:
        raise SpecificationError(
            f"with {MM} micro moments W must be square with at least {MD + MM} rows (the "
            f"product-level blocks, then the micro block last), got {W.shape}")
    return W[:-MM, :-MM], W[-MM:, -MM:]


def micro_contribution(problem: Problem, layout: ParameterLayout, loop: Any, theta: FloatArray,
                       delta: FloatArray, jacobian: FloatArray | None, W_M: FloatArray, *,
                       gradient: bool = True) -> MicroContribution:
    """N g_M' W_M g_M and its gradient; ``loop`` (an InnerLoop) gives the adjoint
    v' d delta / d theta when ``jacobian`` (raw d delta / d theta, (N, P)) is None."""
    assert problem.micro is not None
    values = problem.micro.evaluate(layout, theta, delta, derivatives=gradient)
    g = values.g
    u = W_M @ g
    N = problem.N
    objective = float(N * g @ u)
    if not gradient or layout.P == 0:
        return MicroContribution(objective=objective, gradient=np.full(layout.P, np.nan),
                                 values=values, jacobian=None)
    assert values.d_delta is not None and values.direct is not None
    if jacobian is not None:
        J = values.jacobian(jacobian)
        return MicroContribution(objective=objective, gradient=-2.0 * N * (J.T @ u),
                                 values=values, jacobian=J)
    through_delta = np.asarray(loop.gradient(theta, delta, values.d_delta.T @ u))
    return MicroContribution(objective=objective,
                             gradient=-2.0 * N * (through_delta + values.direct.T @ u),
                             values=values, jacobian=None)


def micro_covariance(problem: Problem, layout: ParameterLayout, theta: FloatArray,
                     delta: FloatArray) -> FloatArray:
    """S_M = N Cov(f) (M_M, M_M) at (theta, delta): the micro block of S."""
    assert problem.micro is not None
    values = problem.micro.evaluate(layout, theta, delta, covariance=True)
    assert values.covariance is not None
    out: FloatArray = problem.N * values.covariance
    return out


def with_micro(problem: Problem, layout: ParameterLayout, S_D: FloatArray, theta: FloatArray,
               delta: FloatArray) -> FloatArray:
    """blockdiag(S_D, S_M): the moment covariance over [demand; micro] (S_D without micro)."""
    if problem.micro is None:
        return S_D
    out: FloatArray = scipy.linalg.block_diag(
        S_D, micro_covariance(problem, layout, theta, delta))
    return out


def initial_weighting(problem: Problem, W_D: FloatArray) -> FloatArray:
    """blockdiag(W_D, I): a placeholder micro block for the zeroth evaluation that an initial
    update replaces (its Q is not used)."""
    if problem.micro is None:
        return W_D
    out: FloatArray = scipy.linalg.block_diag(W_D, np.eye(problem.micro.M))
    return out


def micro_jacobian_rows(G_D: FloatArray, micro_jacobian: FloatArray | None,
                        micro_values: MicroValues | None) -> FloatArray:
    """G over [demand; micro]: the demand rows, then [-d f / d theta, 0] (g_M = v_bar - f)."""
    if micro_values is None:
        return G_D
    if micro_jacobian is None:
        raise SpecificationError("the micro moments' Jacobian was not formed at the estimate")
    P = micro_jacobian.shape[1]
    rows = np.zeros((micro_jacobian.shape[0], G_D.shape[1]))
    rows[:, :P] = -micro_jacobian
    out: FloatArray = np.vstack([G_D, rows])
    return out

