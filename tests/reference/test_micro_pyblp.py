"""Micro moments against PyBLP, run live: its micro-moments tutorial (Petrin 2002 minivans).

Reference: PyBLP 1.3.0's "Micro Moments Tutorial with Automobile Data": the Petrin product and
agent data, its X1, X2 and agent formulations, the CEX survey (N_d = 29,125) and its ten
statistics (E[age | mi], E[fs | mi], ... as ratios of parts; P(new | mid), P(new | high)),
evaluated at the tutorial's starting Sigma and Pi with Optimization('return'): PyBLP's initial
update (W from the residuals and the micro covariances at theta), then one GMM step. To keep
the fast suite fast, each market keeps its first ``AGENTS`` agents (weights 1 / AGENTS; the
same data go to both tools). Ours: the same moments from bd.micro.mean/probability, and
bd.evaluate (which makes the same initial update). Same data, same theta, same formulas: the
two agree to the inner loop's precision (measured: micro values 1e-15, covariances 7e-15,
d f / d theta 1e-14, W's micro block 5e-15, Q 3e-11, beta 2e-10, standard errors 8e-12, and
the gradient 5e-9 relative: its demand part comes from the adjoint, solved by conjugate
gradients to 1e-13), so the tolerances are 1e-8, and 1e-6 on the gradient. PyBLP takes about
10 s here, we about 0.6 s.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import blpdemand as bd
from blpdemand.errors import OptimizationWarning

pyblp = pytest.importorskip("pyblp")

AGENTS = 100
X1 = "1 + hpwt + space + air + mpd + fwd + mi + sw + su + pv + pgnp + trend + trend2"
X2 = "1 + I(-prices) + hpwt + space + air + mpd + fwd + mi + sw + su + pv"
DEMOGRAPHICS = ("I(low / income) + I(mid / income) + I(high / income) + I(log(fs) * fv) + age"
                " + fs + mid + high")
SIGMA = np.diag([3.23, 0, 4.43, 0.46, 0.01, 2.58, 4.42, 0, 0, 0, 0])
PI = np.zeros((11, 8))
PI[1, :3] = [7.52, 31.13, 34.49]
PI[7:11, 3] = [0.57, 0.28, 0.31, 0.42]
TYPES = ("mi", "sw", "su", "pv")  # X2 columns 7-10


@pytest.fixture(scope="module")
def petrin(data_path: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series]:
    products = pd.read_csv(data_path / "petrin_products.csv")
    agents = pd.read_csv(data_path / "petrin_agents.csv").groupby("market_ids").head(AGENTS)
    agents = agents.assign(weights=1.0 / AGENTS)
    values = pd.read_csv(data_path / "petrin_values.csv", index_col=0)["value"]
    return products, agents, values


def _pyblp_moments(values: pd.Series) -> list:  # type: ignore[type-arg]
    """The tutorial's ten CEX statistics as PyBLP micro moments (ratios of parts)."""
    cex = pyblp.MicroDataset(name="CEX", observations=29125,
                             compute_weights=lambda t, p, a: np.ones((a.size, 1 + p.size)))

    def part(name: str, d: int, x: int, outside: float = 0.0):  # type: ignore[no-untyped-def]
        return pyblp.MicroPart(name=name, dataset=cex, compute_values=lambda t, p, a: np.outer(
            a.demographics[:, d], np.r_[outside, p.X2[:, x]]))

    def ratio(name: str, value: float, parts: list) -> object:  # type: ignore[type-arg]
        return pyblp.MicroMoment(name=name, value=value, parts=parts,
                                 compute_value=lambda v: v[0] / v[1],
                                 compute_gradient=lambda v: [1 / v[1], -v[0] / v[1] ** 2])

    moments = []
    for x, column in zip(TYPES, range(7, 11)):
        buyers = part(f"E[{x}]", 0, column)
        for demographic, d in (("age", 5), ("fs", 6)):
            moments.append(ratio(f"E[{demographic} | {x}]", values[f"E[{demographic} | {x}]"],
                                 [part(f"E[{demographic} {x}]", d, column), buyers]))
    for group, d in (("mid", 7), ("high", 8)):
        moments.append(ratio(f"E[new | {group}]", values[f"E[new | {group}]"],
                             [part(f"E[new {group}]", d, 0), part(f"E[{group}]", d, 0, 1.0)]))
    return moments


def _ours_moments(values: pd.Series) -> list[bd.micro.MicroMoment]:
    """The same statistics in bd.micro's words."""
    cex = bd.micro.Survey("CEX", observations=29125)
    moments = []
    for x in TYPES:
        for demographic in ("age", "fs"):
            moments.append(bd.micro.mean(demographic, given=bd.micro.chose(f"{x} == 1"),
                                         value=values[f"E[{demographic} | {x}]"], survey=cex))
    for group in ("mid", "high"):
        moments.append(bd.micro.probability(chose=bd.micro.inside(),
                                            given=bd.micro.demographic(f"{group} == 1"),
                                            value=values[f"E[new | {group}]"], survey=cex))
    return moments


def _pyblp(products: pd.DataFrame, agents: pd.DataFrame, values: pd.Series,  # type: ignore[no-untyped-def]
           **options):
    """The tutorial's problem and micro moments, solved at the starting theta (``options``:
    another optimization, W_type, ...)."""
    pyblp.options.verbose = False
    problem = pyblp.Problem((pyblp.Formulation(X1), pyblp.Formulation(X2)), products,
                            pyblp.Formulation("1 + " + DEMOGRAPHICS), agents)
    moments = _pyblp_moments(values)
    pi = np.column_stack([np.zeros(11), PI])  # PyBLP's agent formulation has a constant
    solve = {"method": "1s", "optimization": pyblp.Optimization("return"),
             "iteration": pyblp.Iteration("squarem", {"atol": 1e-14}),
             "check_optimality": "gradient", **options}
    with np.errstate(all="ignore"):
        return problem.solve(sigma=SIGMA, pi=pi, micro_moments=moments, **solve)


def _ours(products: pd.DataFrame, agents: pd.DataFrame, values: pd.Series,
          config: bd.EstimationConfig | None = None, *, run=bd.evaluate) -> bd.BLPResults:  # type: ignore[no-untyped-def]
    moments = _ours_moments(values)
    instruments = [c for c in products.columns if c.startswith("demand_instruments")]
    problem = bd.Problem(products, linear=X1, nonlinear=X2, demographics=DEMOGRAPHICS,
                         agents=agents, instruments=instruments, micro=moments)
    config = config or bd.EstimationConfig(starts=0, hessian=False)
    return run(problem, sigma=SIGMA, pi=PI, config=config)


def _rel(ours: object, theirs: object) -> float:
    a, b = np.asarray(ours, dtype=float), np.asarray(theirs, dtype=float)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def test_micro_moments_at_fixed_theta_equal_pyblps(petrin) -> None:  # type: ignore[no-untyped-def]
    theirs = _pyblp(*petrin)
    ours = _ours(*petrin)
    MD, P = ours.problem.MD, ours.layout.P
    assert _rel(ours.micro.values, theirs.micro_values.ravel()) < 1e-8
    assert _rel(ours.micro.covariance, theirs.micro_covariances) < 1e-8
    # the micro rows of G: d g_M / d theta = -d f / d theta, through delta and mu
    assert _rel(ours.G[MD:, :P], theirs.micro_by_theta_jacobian) < 1e-8
    # W's micro block (N Cov f)^{-1}; its demand block is the same up to PyBLP's column order
    assert _rel(ours.W[MD:, MD:], theirs.W[MD:, MD:]) < 1e-8
    assert ours.objective == pytest.approx(float(theirs.objective), rel=1e-8)
    assert _rel(ours.gradient, theirs.gradient.ravel()) < 1e-6
    assert _rel(ours.beta, theirs.beta.ravel()) < 1e-8
    # standard errors: the sandwich over [demand; micro] at this W
    theirs_se = np.r_[theirs.sigma_se[np.nonzero(SIGMA.T)[::-1]],
                      theirs.pi_se[:, 1:][np.nonzero(PI.T)[::-1]], theirs.beta_se.ravel()]
    assert _rel(ours.standard_errors, theirs_se) < 1e-8


def test_two_step_weighting_at_fixed_theta_equals_pyblps(petrin) -> None:  # type: ignore[no-untyped-def]
    """Two steps at the same theta with clustered W (the tutorial's W_type): the step-2 W is
    blockdiag(S_D clustered by product, N Cov f)^{-1} from the residuals at theta; Q, the
    micro block of W and the clustered standard errors equal PyBLP's (method '2s', 'return');
    measured: Q 3e-10, W's micro block 5e-15, standard errors 9e-11, gradient 7e-9."""
    theirs = _pyblp(*petrin, method="2s", W_type="clustered", se_type="clustered")
    config = bd.EstimationConfig(starts=0, hessian=False, method="2s", weighting="clustered",
                                 covariance="clustered", clusters="clustering_ids")
    ours = _ours(*petrin, config)
    MD = ours.problem.MD
    assert ours.objective == pytest.approx(float(theirs.objective), rel=1e-8)
    assert _rel(ours.W[MD:, MD:], theirs.W[MD:, MD:]) < 1e-8
    theirs_se = np.r_[theirs.sigma_se[np.nonzero(SIGMA.T)[::-1]],
                      theirs.pi_se[:, 1:][np.nonzero(PI.T)[::-1]], theirs.beta_se.ravel()]
    assert _rel(ours.standard_errors, theirs_se) < 1e-8
    assert _rel(ours.gradient, theirs.gradient.ravel()) < 1e-6


@pytest.mark.slow
def test_petrin_demand_estimate_equals_pyblps(data_path: Path) -> None:
    """The tutorial's demand side estimated with its micro moments (no supply side): PyBLP's
    initial update at the starting theta, one GMM step, clustered W and standard errors (the
    tutorial's W_type and se_type); 50 agents a market to keep PyBLP near 2 minutes. PyBLP's
    L-BFGS-B is driven to its precision floor (gtol 1e-12, ftol 0: it stops near a projected
    gradient of 2e-5); ours runs with its defaults (one start). Both end where the line
    searches cannot resolve Q any further, and on the same bound (four Sigma elements at 0), so
    the estimates differ by H^{-1} g of either: measured 2.7e-7 of the larger of |estimate| and
    its standard error (a coefficient near 0, fwd's beta -0.009 with SE 1.9, is known to its
    SE), 1e-11 on Q, 1.3e-7 on the standard errors. Tolerances: 1e-6 of that scale, 1e-8 on Q,
    1e-5 on the standard errors (they move with the Jacobian at the estimate)."""
    products = pd.read_csv(data_path / "petrin_products.csv")
    agents = pd.read_csv(data_path / "petrin_agents.csv").groupby("market_ids").head(50)
    agents = agents.assign(weights=1.0 / 50)
    values = pd.read_csv(data_path / "petrin_values.csv", index_col=0)["value"]
    theirs = _pyblp(products, agents, values, W_type="clustered", se_type="clustered",
                    optimization=pyblp.Optimization("l-bfgs-b", {"gtol": 1e-12, "ftol": 0.0,
                                                                  "maxiter": 5000}))
    config = bd.EstimationConfig(starts=0, weighting="clustered", covariance="clustered",
                                 clusters="clustering_ids")
    with pytest.warns(OptimizationWarning, match="bound"):  # Sigma elements at 0, as PyBLP's
        ours = _ours(products, agents, values, config, run=bd.estimate)
    theirs_theta = theirs.theta.ravel()
    free = theirs_theta != 0
    assert np.all(ours.theta[~free] == 0)  # the same Sigma elements on their bound 0
    theirs_estimates = np.r_[theirs_theta, theirs.beta.ravel()]
    theirs_se = np.r_[theirs.sigma_se[np.nonzero(SIGMA.T)[::-1]],
                      theirs.pi_se[:, 1:][np.nonzero(PI.T)[::-1]], theirs.beta_se.ravel()]
    scale = np.maximum(np.abs(theirs_estimates), theirs_se)
    assert np.all(np.abs(ours.estimates - theirs_estimates) <= 1e-6 * scale)
    assert ours.objective == pytest.approx(float(theirs.objective), rel=1e-8)
    keep = np.r_[free, np.ones(ours.beta.size, dtype=bool)]  # no SE on a bound
    np.testing.assert_allclose(ours.standard_errors[keep], theirs_se[keep], rtol=1e-5)
    np.testing.assert_allclose(ours.micro.values, theirs.micro_values.ravel(), rtol=1e-6)


X3 = "1 + log(hpwt) + log(wt) + log(mpg) + air + mpd + fwd + trend"


def _supply_problem(products: pd.DataFrame, agents: pd.DataFrame,  # type: ignore[no-untyped-def]
                    values: pd.Series):
    """PyBLP's and our Petrin problem with the micro moments and a log-cost supply side."""
    x2 = X2.replace("I(-prices)", "prices")
    pi = PI.copy()
    pi[1] = -pi[1]
    pyblp.options.verbose = False
    problem = pyblp.Problem((pyblp.Formulation(X1), pyblp.Formulation(x2),
                             pyblp.Formulation(X3)), products,
                            pyblp.Formulation("1 + " + DEMOGRAPHICS), agents, costs_type="log")
    moments = _pyblp_moments(values)

    def pyblp_solve(optimization):  # type: ignore[no-untyped-def]
        with np.errstate(all="ignore"):
            return problem.solve(sigma=SIGMA, pi=np.column_stack([np.zeros(11), pi]),
                                 micro_moments=moments, method="1s", costs_bounds=(0.001, None),
                                 optimization=optimization,
                                 iteration=pyblp.Iteration("squarem", {"atol": 1e-14}),
                                 check_optimality="gradient")

    ours_moments = _ours_moments(values)
    ours_problem = bd.Problem(
        products, linear=X1, nonlinear=x2, demographics=DEMOGRAPHICS, agents=agents,
        instruments=[c for c in products.columns if c.startswith("demand_instruments")],
        supply=X3.replace("log(", "np.log("), costs="log", costs_bounds=(0.001, None),
        supply_instruments=[c for c in products.columns if c.startswith("supply_instruments")],
        micro=ours_moments)
    return {"problem": ours_problem, "pi": pi, "pyblp_solve": pyblp_solve}


def test_micro_moments_with_a_supply_side_equal_pyblps(petrin) -> None:  # type: ignore[no-untyped-def]
    """The tutorial's micro moments with a log-cost supply side (X3 on the log characteristics,
    its 16 excluded supply instruments, costs clipped at 0.001 as PyBLP's costs_bounds) at the
    starting theta: the initial update's W now spans [demand; supply; micro], S with the
    demand-supply cross terms. The price coefficient enters through 'prices' in X2 (the
    tutorial's I(-prices) with the opposite Pi), as our supply side asks. Q, beta, gamma, the
    gradient and the standard errors equal PyBLP's (tolerances as in the demand-only test;
    measured: Q 5e-11, beta 3e-10, gamma 1.5e-9, gradient 6e-9)."""
    setup = _supply_problem(*petrin)
    theirs = setup["pyblp_solve"](pyblp.Optimization("return"))
    ours_problem, pi = setup["problem"], setup["pi"]
    ours = bd.evaluate(ours_problem, sigma=SIGMA, pi=pi,
                       config=bd.EstimationConfig(starts=0, hessian=False))
    assert ours.objective == pytest.approx(float(theirs.objective), rel=1e-8)
    assert _rel(ours.beta, theirs.beta.ravel()) < 1e-8
    assert _rel(ours.gamma, theirs.gamma.ravel()) < 1e-8
    assert _rel(ours.gradient, theirs.gradient.ravel()) < 1e-6
    theirs_se = np.r_[theirs.sigma_se[np.nonzero(SIGMA.T)[::-1]],
                      theirs.pi_se[:, 1:][np.nonzero(PI.T)[::-1]], theirs.beta_se.ravel(),
                      theirs.gamma_se.ravel()]
    assert _rel(ours.standard_errors, theirs_se) < 1e-8


@pytest.mark.slow
def test_petrin_estimate_with_supply_equals_pyblps(petrin) -> None:  # type: ignore[no-untyped-def]
    """The tutorial's full problem (micro moments and the log-cost supply side of the test
    above) estimated by both tools: PyBLP's initial update at the start, one GMM step, its
    L-BFGS-B asked for gtol 1e-12 with ftol 0; ours with one start and gtol 1e-10.

    Both stop short of the minimum at the line-search precision floor of Q: PyBLP "not
    converged" after 79 iterations and 117 evaluations (its projected gradient 2.5e-5), ours
    with max |g| 3.6e-5 (its verdict names the floor, 5.4e-5; in earlier runs, on other bits of
    exp(mu), ours went on to 2.4e-8). Their estimates are then 3.7e-6 apart relative to the
    larger of |estimate| and its SE, each one Newton step from the minimum. Each moved by the
    step its own gradient asks for (theta - H^{-1} g, our Hessian at our estimate) lands on the
    same point: measured 6e-9 of that scale, asserted 1e-6. Also asserted: the raw estimates to
    1e-5 (where each stopped: its gradient over the Hessian's smallest eigenvalue 0.36); Q
    (measured 6.8e-11) to 1e-9 and the standard errors (measured 2.1e-6) to 1e-5."""
    setup = _supply_problem(*petrin)
    theirs = setup["pyblp_solve"](pyblp.Optimization(
        "l-bfgs-b", {"gtol": 1e-12, "ftol": 0.0, "maxiter": 5000}))
    with warnings.catch_warnings():  # a Sigma element may end on its bound 0, as PyBLP's
        warnings.simplefilter("ignore", OptimizationWarning)
        ours = bd.estimate(setup["problem"], sigma=SIGMA, pi=setup["pi"],
                           config=bd.EstimationConfig(starts=0, gtol=1e-10))
    theirs_theta = theirs.theta.ravel()
    free = theirs_theta != 0
    assert np.all(ours.theta[~free] == 0)  # the same elements on their bound 0
    theirs_estimates = np.r_[theirs_theta, theirs.beta.ravel(), theirs.gamma.ravel()]
    theirs_se = np.r_[theirs.sigma_se[np.nonzero(SIGMA.T)[::-1]],
                      theirs.pi_se[:, 1:][np.nonzero(PI.T)[::-1]], theirs.beta_se.ravel(),
                      theirs.gamma_se.ravel()]
    scale = np.maximum(np.abs(theirs_estimates), theirs_se)
    assert np.all(np.abs(ours.estimates - theirs_estimates) <= 1e-5 * scale)
    # each estimate moved by the Newton step its own gradient asks for, theta - H^{-1} g (our
    # Hessian at our estimate): both land on the minimum to second order
    H = ours.hessian[np.ix_(free, free)]

    def newton(theta: np.ndarray, gradient: np.ndarray) -> np.ndarray:
        out = np.array(theta, dtype=float)
        out[free] -= np.linalg.solve(H, np.asarray(gradient, dtype=float).ravel()[free])
        return out

    P = theirs_theta.size
    theirs_corrected = newton(theirs_theta, theirs.gradient)
    ours_corrected = newton(ours.theta, ours.optimization.gradient)
    assert np.all(np.abs(ours_corrected - theirs_corrected) <= 1e-6 * scale[:P])
    assert ours.objective == pytest.approx(float(theirs.objective), rel=1e-9)
    keep = np.r_[free, np.ones(ours.estimates.size - P, dtype=bool)]  # no SE on a bound
    np.testing.assert_allclose(ours.standard_errors[keep], theirs_se[keep], rtol=1e-5)
