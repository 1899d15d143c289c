"""A fitted demand model: the estimates every post-estimation computation needs.

Both the plain logit (P = 0 nonlinear parameters) and BLP results expose one of these as
``results.fitted``, so elasticities, costs and counterfactuals are written once.
utility: u_ijt = delta_jt + mu_ijt(theta) + eps_ijt, delta_jt = x1_jt' beta + xi_jt (+ absorbed FE).
A nested logit (``nests`` set) keeps delta = log(s_j/s_0) with its rho among the X1 coefficients
(the coefficients of the log within-nest shares, see ``model.nesting``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from blpdemand._types import FloatArray
from blpdemand.model.nesting import Nests
from blpdemand.model.parameters import ParameterLayout
from blpdemand.model.problem import Problem


@dataclass(frozen=True, eq=False)
class FittedDemand:
    """Estimated demand. Arrays are in the problem's sorted row order.

    Attributes
    ----------
    problem : the Problem.
    layout : ParameterLayout of theta (P = 0 for plain logit).
    theta : (P,) nonlinear parameters; beta : (K1,) linear parameters.
    delta : (N,) mean utilities at the estimates (including absorbed fixed effects).
    nests : nest membership of a nested logit (None otherwise).
    """

    problem: Problem
    layout: ParameterLayout
    theta: FloatArray
    beta: FloatArray
    delta: FloatArray
    nests: Nests | None = field(default=None, repr=False)

    @property
    def sigma(self) -> FloatArray:
        return self.layout.unpack(self.theta)[0]

    @property
    def pi(self) -> FloatArray:
        return self.layout.unpack(self.theta)[1]

    @property
    def xi(self) -> FloatArray:
        """(N,) structural errors xi = delta~ - X1~ beta (fixed effects partialled out)."""
        p = self.problem
        return p.residualize(self.delta) - p.X1_tilde @ self.beta

    @property
    def alpha(self) -> float:
        """Mean price coefficient: the X1 'prices' coefficient (0 if prices are not in X1)."""
        names = self.problem.X1.names
        return float(self.beta[names.index("prices")]) if "prices" in names else 0.0

    @property
    def rho(self) -> FloatArray:
        """(N,) nesting parameter rho_g of each product's nest (zeros without nests)."""
        if self.nests is None:
            return np.zeros(self.problem.N)
        return self.nests.rho(self.beta, self.problem.X1.names)

    def coefficient(self, name: str) -> float:
        """Linear coefficient of an X1 column by name."""
        return float(self.beta[self.problem.X1.names.index(name)])


def logit_layout(problem: Problem) -> ParameterLayout:
    """The empty layout (no Sigma, no Pi) of a plain logit problem."""
    K2 = problem.K2
    return ParameterLayout(sigma_free=np.zeros((K2, K2), dtype=bool),
                           pi_free=np.zeros((K2, problem.D), dtype=bool),
                           x2_names=problem.X2.names, demographic_names=problem.demographic_names)
