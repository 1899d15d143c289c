"""Bounds on theta = (Sigma, Pi, rho): the default convention, the data box, what binds.

Diagonal Sigma elements are standard deviations (beta_i ~ N(beta + Pi y_i, Sigma Sigma')), so
by default Sigma_kk >= 0 and every other element is free, as in PyBLP and the lecture; nesting
parameters lie in [0, 0.99]. The
data box (a parameter may move typical utility by at most 10) is where random starts are
drawn, and is opt-in as bounds. Optimizers that take no bounds (bfgs) are bound by nothing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from blpdemand._types import FloatArray, Status
from blpdemand.errors import SpecificationError
from blpdemand.model.parameters import ParameterLayout
from blpdemand.model.problem import Problem
from blpdemand.solve.optimizer import BOUNDED, OptimizationResult

BOUND_UTILITY = 10.0  # the box random starts are drawn in: see data_box
RHO_BOUNDS = (0.0, 0.99)  # nesting parameters: 0 is the plain model, 1 is not a model (PyBLP's)


def _bound_pairs(bounds: Any) -> dict[str, tuple[float, float]]:
    """{name: (low, high)} as floats; anything else names the parameter and the form wanted."""
    out: dict[str, tuple[float, float]] = {}
    for name, pair in (bounds.items() if isinstance(bounds, Mapping) else [("bounds", bounds)]):
        try:
            low, high = pair
            out[str(name)] = (float(low), float(high))
        except (TypeError, ValueError) as exc:
            raise SpecificationError(f"bounds for {str(name)!r} must be a (low, high) pair of "
                                     "numbers in a {name: (low, high)} dict, "
                                     f"got {pair!r}") from exc
    return out


def default_bounds(layout: ParameterLayout) -> list[tuple[float, float]]:
    """The convention users know (PyBLP's, the lecture's N(beta + Pi y, Sigma Sigma')):
    Sigma_kk >= 0 on the diagonal (a standard deviation, or the Cholesky root's diagonal),
    every other element of Sigma and Pi free."""
    rows, cols = layout.sigma_index
    sigma = [(0.0, np.inf) if r == c else (-np.inf, np.inf) for r, c in zip(rows, cols)]
    return sigma + [(-np.inf, np.inf)] * layout.n_pi + [RHO_BOUNDS] * layout.n_rho


def utility_scales(problem: Problem, layout: ParameterLayout) -> FloatArray:
    """(P,) rms(x2_r) rms(v_c): how much utility a unit of each parameter moves for a typical
    consumer and product (v_c the node or demographic column it multiplies)."""
    if layout.P == 0:
        return np.zeros(0)
    assert problem.agents is not None

    def rms(values: FloatArray) -> FloatArray:
        return np.sqrt(np.mean(values ** 2, axis=0)) if values.shape[1] else np.zeros(0)

    x2 = rms(problem.X2.values)
    nodes = rms(problem.nodes_for(layout))
    demo = rms(problem.agents.demographics) if layout.D else np.zeros(0)
    scales = [x2[r] * nodes[c] for r, c in zip(*layout.sigma_index)]
    scales += [x2[r] * demo[c] for r, c in zip(*layout.pi_index)]
    scales += [1.0] * layout.n_rho  # rho scales log within-nest shares, of order one
    return np.asarray(scales, dtype=np.float64)


def data_box(problem: Problem, layout: ParameterLayout, theta0: FloatArray
             ) -> list[tuple[float, float]]:
    """Symmetric boxes |theta_p| <= max(10 / (rms(x2_r) rms(v_c)), 2 |theta0_p|).

    v_c is the node or demographic column the parameter multiplies: a parameter may move a
    typical consumer's utility for a typical product by at most 10 (a share ratio of e^10).
    Random starts are drawn in it; as bounds it is opt-in (``bounds="box"``): it is too narrow
    for demographic interactions with prices (Nevo's pi[prices, income] = 588 lies outside).
    """
    out = []
    for scale, start in zip(utility_scales(problem, layout), theta0):
        bound = BOUND_UTILITY / scale if scale > 0 else 1e3
        bound = max(bound, 2 * abs(start))
        out.append((-bound, bound))
    n = len(out) - layout.n_rho
    return out[:n] + [RHO_BOUNDS] * layout.n_rho


def resolve_bounds(problem: Problem, layout: ParameterLayout, theta0: FloatArray,
                   user: Mapping[str, tuple[float, float]] | str | None
                   ) -> list[tuple[float, float]]:
    """Default bounds (or the data box) with the user's overrides; starts must lie inside."""
    box = isinstance(user, str)
    bounds = data_box(problem, layout, theta0) if box else default_bounds(layout)
    names = layout.names
    overrides: Mapping[str, tuple[float, float]] = {} if isinstance(user, str) or user is None \
        else user
    for name, (lo, hi) in overrides.items():
        if name not in names:
            raise SpecificationError(f"bounds given for {name!r}, which is not a free parameter; "
                                     f"free parameters: {list(names)}")
        if not lo < hi:
            raise SpecificationError(
                f"bounds for {name!r} must satisfy low < high, got ({lo}, {hi})")
        bounds[names.index(name)] = (lo, hi)
    return bounds


def check_start(layout: ParameterLayout, theta0: FloatArray,
                bounds: Sequence[tuple[float, float]]) -> None:
    """Starting values must lie inside the bounds that bind (else a message naming the fix)."""
    for name, value, (lo, hi) in zip(layout.names, theta0, bounds):
        if not lo <= value <= hi:
            hint = (" (diagonal Sigma elements are standard deviations, bounded below by 0: start "
                    "at |value|, or free it with bounds={" f"{name!r}: (-np.inf, np.inf)}})"
                    if name.startswith("sigma[") and lo == 0 else "")
            raise SpecificationError(f"the starting value {value} of {name} lies outside its "
                                     f"bounds ({lo}, {hi}); change the start or the bounds{hint}")


def binding_bounds(bounds: Sequence[tuple[float, float]], optimizer: str
                   ) -> list[tuple[float, float]]:
    """What binds an estimate: the box for optimizers that take bounds, else nothing (scipy's
    bfgs ignores bounds; the box still draws its random starts)."""
    if optimizer in BOUNDED:
        return list(bounds)
    return [(-np.inf, np.inf)] * len(bounds)


def start_box(bounds: Sequence[tuple[float, float]], defaults: Sequence[tuple[float, float]]
              ) -> tuple[FloatArray, FloatArray]:
    """Where random starts are drawn: the bounds, with an infinite side (e.g. a PyBLP-style
    (0, inf)) replaced by the default box's half-width d measured from the other side."""
    lo, hi = np.array(bounds, dtype=np.float64).reshape(-1, 2).T
    d = np.array(defaults, dtype=np.float64).reshape(-1, 2)[:, 1]
    lo, hi = (np.where(np.isfinite(lo), lo, np.minimum(-d, hi - d)),
              np.where(np.isfinite(hi), hi, np.maximum(d, lo + d)))
    return lo, hi


def at_bounds(theta: FloatArray, bounds: Sequence[tuple[float, float]]
              ) -> list[tuple[int, float]]:
    """(index, bound) of the parameters on a finite bound (within 1e-10 relative)."""
    out = []
    for k, (value, (lo, hi)) in enumerate(zip(np.asarray(theta), bounds)):
        scale = 1e-10 * max(1.0, abs(float(value)))
        for bound in (lo, hi):
            if np.isfinite(bound) and abs(float(value) - bound) <= scale:
                out.append((k, float(bound)))
    return out


def mark_at_bounds(step: OptimizationResult, bounds: Sequence[tuple[float, float]]
                   ) -> OptimizationResult:
    """A converged run with parameters on a finite bound: status AT_BOUND, naming them."""
    active = at_bounds(step.theta, bounds)
    if step.status is not Status.CONVERGED or not active:
        return step
    where = ", ".join(f"theta[{k}] = {bound:g}" for k, bound in active)
    return dataclasses.replace(step, status=Status.AT_BOUND,
                               message=f"{step.message}; on a bound: {where}")
