"""Warm starts for the inner loop: delta(theta) predicted from the solutions already found.

The contraction converges from any start, but the closer the start the fewer share evaluations
it needs. After solutions delta_0 ... delta_m at theta_0 ... theta_m (the last one first), the
prediction at theta is the first-order one

    delta(theta) ~ delta_m + D c,   c = argmin ||Theta c - (theta - theta_m)||,

with D = [delta_k - delta_m] and Theta = [theta_k - theta_m] (k < m): a secant estimate of
d delta / d theta on the span of the steps taken so far (the optimizer's line-search trials
and iterations; Broyden's idea applied to the start only, never to the solution). Where the
exact d delta / d theta at a solution delta_t is known (it is formed for standard errors, before
the Hessian's finite differences) and theta is no farther from theta_t than from theta_m,
delta_t + (d delta / d theta)(theta - theta_t) instead, within 1% of theta_t (further
away the curvature of delta(theta) can make a straight line worse than no step). The
fixed point is solved to the same tolerance from whichever start: only the number of
iterations changes.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from blpdemand._types import FloatArray

__all__ = ["DeltaPredictor"]

_HISTORY = 6  # solutions kept (the steps span at most this many directions less one)
_REACH = 2.0  # largest |c_k|: no extrapolation far beyond the steps taken
_TANGENT = 1e-2  # the tangent prediction within this relative distance of its point
_NEAR = 4.0  # secants from solutions within this many times the step from the last one


class DeltaPredictor:
    """The last converged solutions of one inner loop and the start they predict."""

    def __init__(self, P: int) -> None:
        self.size = min(_HISTORY, P + 1)
        self._thetas: deque[FloatArray] = deque(maxlen=self.size)
        self._deltas: deque[FloatArray] = deque(maxlen=self.size)
        self._tangent: tuple[FloatArray, FloatArray, FloatArray] | None = None

    def record(self, theta: FloatArray, delta: FloatArray,
               jacobian: FloatArray | None = None) -> None:
        """Keep a converged (theta, delta) and, when formed, d delta / d theta (N, P) there."""
        theta = np.array(theta, dtype=np.float64)
        if self._thetas and np.array_equal(theta, self._thetas[-1]):
            self._thetas.pop()
            self._deltas.pop()
        self._thetas.append(theta)
        self._deltas.append(delta)
        if jacobian is not None:
            self._tangent = (theta, delta, jacobian)

    def predict(self, theta: FloatArray, default: FloatArray | None = None
                ) -> FloatArray | None:
        """A starting delta at theta (None before the first solution); ``default`` (e.g. the
        last solution moved by a known exact shift) where neither a tangent nor a secant
        applies, else the last solution."""
        if not self._deltas:
            return None
        theta = np.asarray(theta, dtype=np.float64)
        last_theta, last = self._thetas[-1], self._deltas[-1]
        step = theta - last_theta
        if not step.any():
            return last
        fallback = last if default is None else default
        if self._tangent is not None:  # first order from the exact d delta / d theta
            at, base, jacobian = self._tangent
            distance = float(np.abs(theta - at).max())
            # near its point (the Hessian's steps) and no farther from it than from the last
            if (distance <= _TANGENT * max(1.0, float(np.abs(at).max()))
                    and distance <= np.abs(step).max()):
                guess = base + jacobian @ (theta - at)
                return guess if np.isfinite(guess).all() else fallback
        # secants only from solutions about as near as theta: over longer ones the curvature of
        # delta(theta) makes them worse than no step at all (a far line-search trial)
        if len(self._thetas) == 1:
            return fallback
        reach = _NEAR * float(np.abs(step).max())
        earlier = np.stack([self._thetas[k] for k in range(len(self._thetas) - 1)]) - last_theta
        near = np.flatnonzero(np.abs(earlier).max(axis=1) <= reach)
        if not near.size:
            return fallback
        c = np.linalg.lstsq(earlier[near].T, step, rcond=1e-8)[0]
        if not np.isfinite(c).all() or np.abs(c).max() > _REACH:
            return fallback
        # from the differences, which are small: the start rounds at their scale, not delta's
        # (last (1 - sum c) + sum c_k delta_k moved sharded estimates 1.6e-9 from one process's)
        D = np.column_stack([self._deltas[k] - last for k in near.tolist()])
        guess = last + D @ c
        return guess if np.isfinite(guess).all() else fallback
