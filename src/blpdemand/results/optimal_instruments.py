"""Feasible optimal instruments (Chamberlain 1987) and the re-estimation that uses them.

The efficient instruments for E[xi_jt | z_jt] = 0 are f*(z_jt) = Omega^{-1} E[d xi_jt / d(theta,
beta)' | z_jt], with Omega = Var(xi) (homoskedastic). For BLP demand (Berry, Levinsohn and
Pakes 1999; Reynaert and Verboven 2014; Conlon and Gortmaker 2020, section 4.3):

    d xi / d theta = d delta / d theta  (implicit function theorem at the shares), and
    d xi / d beta  = -x1 (only the endogenous columns, prices, need an instrument),

both evaluated at first-step estimates and at expected prices E[p | z], from the first-stage
regression of prices on Z_D (absorbed fixed effects kept). "approximate" sets xi = 0, its
expectation, in delta = x1(E[p])' beta + xi; "normal" averages the Jacobian over draws
xi ~ N(0, var(xi_hat)); "empirical" over resampled residuals xi_hat. The new excluded
instruments are [E[d xi / d theta] / var(xi), E[p]]; the exogenous X1 columns are kept, so the
model is just identified: a second GMM estimation "updates the IVs with the weighting matrix".
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from blpdemand._types import FloatArray, as_generator
from blpdemand.data.formulation import DesignMatrix, check_rank
from blpdemand.errors import SpecificationError
from blpdemand.model.fitted import FittedDemand
from blpdemand.model.problem import Problem
from blpdemand.results.blp import BLPResults, estimate
from blpdemand.solve.contraction import delta_jacobian
from blpdemand.solve.estimate import EstimationConfig

METHODS = ("approximate", "normal", "empirical")


@dataclass(frozen=True, eq=False, kw_only=True)
class OptimalInstruments:
    """Estimated optimal instruments, the problem that uses them, and its estimates.

    Attributes (arrays in the problem's market-sorted row order; ``frame()`` gives user order)
    ----------
    method, draws : how E[. | z] was taken.
    expected_prices : (N,) E[p | z]; jacobian : (N, P) E[d xi / d theta | z].
    instruments : (N, P + E) excluded instruments [jacobian / var(xi), endogenous X1 at E[p]].
    names : their names; problem : the Problem with them as excluded instruments.
    results : the second estimation (None when ``reestimate=False``).
    """

    method: str
    draws: int
    expected_prices: FloatArray = field(repr=False)
    jacobian: FloatArray = field(repr=False)
    instruments: FloatArray = field(repr=False)
    names: tuple[str, ...]
    problem: Problem = field(repr=False)
    results: BLPResults | None = field(repr=False)

    def frame(self) -> pd.DataFrame:
        """The instruments and E[p | z] as a DataFrame whose rows follow the user's product rows
        (the arrays above are in the problem's market-sorted order)."""
        values = np.column_stack([self.instruments, self.expected_prices])
        return pd.DataFrame(self.problem.products.unsort(values),
                            columns=[*self.names, "expected_prices"])

    def __repr__(self) -> str:
        head = (f"OptimalInstruments ({self.method}, {self.draws} draw(s)): {len(self.names)} "
                f"excluded instruments {list(self.names)}")
        if self.results is None:
            return head + "\nnot re-estimated (reestimate=False): pass .problem to bd.estimate"
        return self.results.summary().preview(heading=head + "; re-estimated with them:")


def expected_prices(problem: Problem) -> FloatArray:
    """E[p | z] (N,): fitted values of prices on Z_D with the absorbed fixed effects.

    p_hat = Z~ (Z~'Z~)^{-1} Z~'p~ + (p - p~), with ~ the within transformation.
    """
    if not problem.products.has("prices"):
        raise SpecificationError("optimal instruments need a 'prices' column in the product data")
    p = problem.products.array("prices").astype(np.float64)
    tilde = problem.residualize(p)
    Z = problem.ZD_tilde
    coef = np.linalg.lstsq(Z, tilde, rcond=None)[0]
    out: FloatArray = Z @ coef + (p - tilde)
    return out


def optimal_instruments(results: BLPResults | FittedDemand, *,
                        method: Literal["approximate", "normal", "empirical"] = "approximate",
                        draws: int = 100, rng: int | np.random.Generator | None = 0,
                        prices: FloatArray | None = None, reestimate: bool = True,
                        config: EstimationConfig | None = None) -> OptimalInstruments:
    """Optimal instruments at first-step estimates, then (by default) the second estimation.

    Parameters
    ----------
    results : BLPResults (or a FittedDemand) of a first GMM step.
    method : "approximate" (xi = 0, one evaluation), "normal" (xi ~ N(0, var(xi_hat))) or
        "empirical" (xi drawn from xi_hat with replacement), ``draws`` times with ``rng``.
    prices : (N,) expected prices in the user's row order (default: the first stage on Z_D).
    reestimate : run ``estimate`` on the new problem from the first-step (sigma, pi).
    config : EstimationConfig of the second estimation (default: that of ``results``); with
        the usual just-identified new problem a "2s" config runs one step (same estimate).

    Returns
    -------
    OptimalInstruments: ``.problem`` is the new Problem, ``.results`` its estimates.

    Examples
    --------
    >>> optimal = bd.optimal_instruments(results, method="approximate")  # doctest: +SKIP
    >>> optimal.results.summary()  # doctest: +SKIP
    """
    if method not in METHODS:
        raise SpecificationError(f"method={method!r} is unknown; valid: {list(METHODS)}")
    fitted = results.fitted if isinstance(results, BLPResults) else results
    fitted.problem.refuse_nests("optimal instruments")
    problem, layout = fitted.problem, fitted.layout
    if layout.P == 0:
        raise SpecificationError("optimal instruments need random coefficients (theta); for the "
                                 "plain logit the optimal instruments are E[X1 | z] (use p_hat)")
    if problem.supply is not None:
        raise SpecificationError("optimal instruments of a joint demand-supply problem (E[d omega"
                                 " / d theta | z] for the supply block) are not computed yet; "
                                 "estimate demand alone for its optimal instruments")
    if method == "approximate":
        draws = 1
    if not isinstance(draws, (int, np.integer)) or draws < 1:
        raise SpecificationError(f"draws={draws!r} must be a positive integer")
    p = problem.products.array("prices").astype(np.float64) if problem.products.has("prices") \
        else None
    if prices is None:
        p_hat = expected_prices(problem)
    else:
        given = np.asarray(prices, dtype=np.float64).reshape(-1)
        if given.shape[0] != problem.N:
            raise SpecificationError(f"prices has {given.shape[0]} values for {problem.N} products")
        p_hat = problem.products.sort(given)
    assert p is not None
    xi = fitted.xi
    at_prices = _at_prices(problem, p_hat)
    base = fitted.delta - xi + _price_shift(problem, fitted.beta, p_hat - p)
    generator = as_generator(rng)
    scale = float(np.std(xi))
    jacobian = np.zeros((problem.N, layout.P))
    for _ in range(int(draws)):
        if method == "approximate":
            xi_r = np.zeros(problem.N)
        elif method == "normal":
            xi_r = generator.normal(0.0, scale, problem.N)
        else:
            xi_r = xi[generator.integers(0, problem.N, problem.N)]
        jacobian += delta_jacobian(at_prices, layout, fitted.theta, base + xi_r) / draws
    endogenous = [k for k, n in enumerate(problem.X1.names) if n in problem.endogenous]
    X1_hat = _replace_prices(problem.X1, p_hat).values[:, endogenous]
    instruments = np.column_stack([jacobian / float(np.var(xi)), X1_hat])
    names = tuple(f"optimal[{n}]" for n in layout.names) + tuple(
        f"E[{problem.X1.names[k]} | z]" for k in endogenous)
    new = with_instruments(problem, instruments, names)
    second = None
    if reestimate:
        if config is None and isinstance(results, BLPResults):
            config = results.config
        if config is not None and config.method == "2s" and new.MD == problem.K1 + layout.P:
            # just identified: every W gives the same estimate, so a second step only restarts
            # the optimizer at its solution
            config = dataclasses.replace(config, method="1s")
        sigma, pi = _start(fitted)
        second = estimate(new, sigma=sigma, pi=pi, config=config)
    return OptimalInstruments(method=method, draws=int(draws), expected_prices=p_hat,
                              jacobian=jacobian, instruments=instruments, names=names,
                              problem=new, results=second)


def with_instruments(problem: Problem, excluded: FloatArray, names: tuple[str, ...]) -> Problem:
    """A copy of ``problem`` whose excluded demand instruments are ``excluded`` (sorted rows).

    Z_D = [exogenous X1 columns, excluded]; absorbed fixed effects are partialled out again.
    """
    exogenous = [k for k, n in enumerate(problem.X1.names) if n not in problem.endogenous]
    ZD = DesignMatrix(values=np.column_stack([problem.X1.values[:, exogenous], excluded]),
                      names=tuple(problem.X1.names[k] for k in exogenous) + tuple(names))
    ZD_tilde = np.ascontiguousarray(problem.residualize(ZD.values))
    check_rank(ZD_tilde, ZD.names, what="ZD (optimal demand instruments)")
    new = copy.copy(problem)
    object.__setattr__(new, "ZD", ZD)
    object.__setattr__(new, "ZD_tilde", ZD_tilde)
    return new


def _price_columns(matrix: DesignMatrix, what: str) -> list[int]:
    """Columns named 'prices'; other columns that mention prices cannot be re-evaluated."""
    for name in matrix.names:
        if name != "prices" and "prices" in name:
            raise SpecificationError(
                f"{what} column {name!r} is a function of prices that cannot be re-evaluated at "
                "expected prices; add it to the data as a column, or pass prices= yourself and "
                "keep prices entering only as 'prices'")
    return [k for k, n in enumerate(matrix.names) if n == "prices"]


def _replace_prices(matrix: DesignMatrix, p_hat: FloatArray) -> DesignMatrix:
    columns = _price_columns(matrix, "a")
    if not columns:
        return matrix
    values = matrix.values.copy()
    values[:, columns] = p_hat[:, None]
    return DesignMatrix(values=values, names=matrix.names)


def _price_shift(problem: Problem, beta: FloatArray, change: FloatArray) -> FloatArray:
    """x1(E[p])' beta - x1(p)' beta = sum of price coefficients times (E[p] - p)."""
    columns = _price_columns(problem.X1, "X1")
    out: FloatArray = change * float(np.sum(beta[columns])) if columns else np.zeros(problem.N)
    return out


def _at_prices(problem: Problem, p_hat: FloatArray) -> Problem:
    """The problem with X2's price column at expected prices (for the Jacobian)."""
    X2 = _replace_prices(problem.X2, p_hat)
    if X2 is problem.X2:
        return problem
    new = copy.copy(problem)
    object.__setattr__(new, "X2", X2)
    return new


def _start(fitted: FittedDemand) -> tuple[Any, Any]:
    """First-step (Sigma, Pi) as the second step's start; a free element estimated at exactly
    0 would become fixed, so it starts at 1e-6 instead (keeping the same parameters)."""
    theta = fitted.theta.copy()
    theta[theta == 0] = 1e-6
    return fitted.layout.unpack(theta)
