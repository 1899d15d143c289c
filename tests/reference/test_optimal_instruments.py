"""Optimal instruments against PyBLP (live) on the Nevo problem.

Both sides start from the same first-step point: the Nevo tutorial's starting (Sigma, Pi) with
beta concentrated out by one-step GMM (PyBLP: ``Optimization('return')``; here: our
contraction and a hand-built 2SLS for beta). PyBLP's ``compute_optimal_instruments(method=
'approximate')`` and ``to_problem()`` are the reference.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import blpdemand as bd
from blpdemand.model.fitted import FittedDemand
from blpdemand.results.optimal_instruments import optimal_instruments
from blpdemand.solve.inversion import solve_delta

pyblp = pytest.importorskip("pyblp")

SIGMA0 = np.diag([0.3302, 2.4526, 0.0163, 0.2441])
PI0 = np.array([[5.4819, 0, 0.2037, 0], [15.8935, -1.2000, 0, 2.6342],
                [-0.2506, 0, 0.0511, 0], [1.2650, 0, -0.8091, 0]])
INSTRUMENTS = [f"demand_instruments{k}" for k in range(20)]
DEMOGRAPHICS = "income + income_squared + age + child"


@pytest.fixture(scope="module")
def reference(nevo_products: pd.DataFrame, nevo_agents: pd.DataFrame) -> tuple:
    pyblp.options.verbose = False
    problem = pyblp.Problem(
        (pyblp.Formulation("0 + prices", absorb="C(product_ids)"),
         pyblp.Formulation("1 + prices + sugar + mushy")),
        nevo_products, pyblp.Formulation(f"0 + {DEMOGRAPHICS}"), nevo_agents)
    with np.errstate(all="ignore"):
        first = problem.solve(SIGMA0, PI0, optimization=pyblp.Optimization("return"),
                              method="1s")
        optimal = first.compute_optimal_instruments(method="approximate")
    return first, optimal


@pytest.fixture(scope="module")
def first_step(nevo_products: pd.DataFrame, nevo_agents: pd.DataFrame) -> FittedDemand:
    problem = bd.Problem(nevo_products, linear="prices", nonlinear="1 + prices + sugar + mushy",
                         agents=nevo_agents, demographics=DEMOGRAPHICS, absorb="C(product_ids)",
                         instruments=INSTRUMENTS)
    layout, theta = problem.layout(SIGMA0, PI0)
    delta = solve_delta(problem, layout, theta).delta
    Z, X, d = problem.ZD_tilde, problem.X1_tilde, problem.residualize(delta)
    W = np.linalg.inv(Z.T @ Z)
    beta = np.linalg.solve(X.T @ Z @ W @ Z.T @ X, X.T @ Z @ W @ Z.T @ d)
    return FittedDemand(problem=problem, layout=layout, theta=theta, beta=beta, delta=delta)


def _pyblp_order(first: object, layout: bd.model.parameters.ParameterLayout) -> list[int]:
    """Position in our theta of each PyBLP theta element (PyBLP orders Pi by rows)."""
    ours = {("sigma", int(r), int(c)): k for k, (r, c) in enumerate(zip(*layout.sigma_index))}
    ours.update({("pi", int(r), int(c)): layout.n_sigma + k
                 for k, (r, c) in enumerate(zip(*layout.pi_index))})
    order = []
    for parameter in first._parameters.unfixed:  # type: ignore[attr-defined]
        kind = "sigma" if type(parameter).__name__ == "SigmaParameter" else "pi"
        r, c = parameter.location
        order.append(ours[(kind, int(r), int(c))])
    return order


def test_first_step_inputs_agree(reference: tuple, first_step: FittedDemand) -> None:
    # The inputs of both computations: beta and xi at the same theta, to 1e-10.
    first, _ = reference
    assert np.allclose(first_step.beta, first.beta.ravel(), rtol=1e-10)
    xi = first_step.problem.products.unsort(first_step.xi)  # FittedDemand: sorted order
    assert np.allclose(xi, first.xi.ravel(), atol=1e-10)


def test_approximate_instruments_match_pyblp(reference: tuple, first_step: FittedDemand) -> None:
    # PyBLP compute_optimal_instruments(method='approximate') on the same first step:
    # expected prices to 1e-12 absolute, the 13 instruments E[d xi/d theta | z] / var(xi) to
    # 1e-8 relative to each column's scale (we measure ~1e-13), E[p | z] as the 14th column.
    first, optimal = reference
    ours = optimal_instruments(first_step, method="approximate", reestimate=False)
    products = first_step.problem.products
    assert np.allclose(products.unsort(ours.expected_prices), optimal.expected_prices.ravel(),
                       rtol=0, atol=1e-12)
    P = first_step.layout.P
    mine = products.unsort(ours.instruments[:, :P])[:, _pyblp_order(first, first_step.layout)]
    theirs = optimal.demand_instruments
    scale = np.abs(theirs).max(axis=0)
    assert np.all(np.abs(mine - theirs).max(axis=0) <= 1e-8 * scale)
    assert np.allclose(products.unsort(ours.instruments[:, P]), optimal.expected_prices.ravel())
    # frame(): the same columns in the user's row order, named
    frame = ours.frame()
    assert list(frame.columns) == [*ours.names, "expected_prices"]
    assert np.allclose(frame["expected_prices"], optimal.expected_prices.ravel(), atol=1e-12)
    assert np.all(np.abs(frame.iloc[:, :P].to_numpy()[:, _pyblp_order(first, first_step.layout)]
                         - theirs).max(axis=0) <= 1e-8 * scale)
    # the new problem: PyBLP's to_problem keeps X1's exogenous columns (none here) and absorbs
    # the product effects; its ZD spans the same columns as ours (up to order)
    updated = optimal.to_problem()
    theirs_zd = np.asarray(updated.products.ZD)
    mine_zd = products.unsort(ours.problem.ZD_tilde)
    coef = np.linalg.lstsq(mine_zd, theirs_zd, rcond=None)[0]
    assert np.allclose(mine_zd @ coef, theirs_zd, atol=1e-8 * np.abs(theirs_zd).max())


def test_normal_method_averages_the_jacobian_over_xi_draws(first_step: FittedDemand) -> None:
    # "normal": E over xi ~ N(0, sd(xi_hat)) of d delta/d theta at delta - xi_hat + xi_r, here
    # with 3 draws, rebuilt by hand from the same generator: identical to 1e-12.
    from blpdemand.results.optimal_instruments import _at_prices, expected_prices
    from blpdemand.solve.contraction import delta_jacobian

    ours = optimal_instruments(first_step, method="normal", draws=3, rng=7, reestimate=False)
    problem, fitted = first_step.problem, first_step
    p_hat = expected_prices(problem)
    p = problem.products.array("prices").astype(float)
    base = fitted.delta - fitted.xi + fitted.beta[0] * (p_hat - p)
    generator = np.random.default_rng(7)
    sd = float(np.std(fitted.xi))
    by_hand = sum(delta_jacobian(_at_prices(problem, p_hat), fitted.layout, fitted.theta,
                                 base + generator.normal(0.0, sd, problem.N))
                  for _ in range(3)) / 3
    assert np.allclose(ours.jacobian, by_hand, rtol=1e-12, atol=1e-12)


@pytest.mark.slow
def test_reestimate_with_optimal_instruments_matches_pyblp(reference: tuple,
                                                           first_step: FittedDemand) -> None:
    # PyBLP: to_problem() then solve from the same start with one-step GMM (BFGS, gtol 1e-6).
    # Ours: optimal_instruments(..., reestimate=True), one-step GMM, BFGS, gtol 1e-6. The
    # problem is just identified, so both find the root of the moments: theta and beta to 1e-4
    # relative (measured: sigma diag 0.26467, 2.60894, 0.01945, 0.25931 and beta -32.3078 on
    # both sides, agreeing to ~1e-6).
    first, optimal = reference
    updated = optimal.to_problem()
    with np.errstate(all="ignore"):
        theirs = updated.solve(SIGMA0, PI0, method="1s",
                               optimization=pyblp.Optimization("bfgs", {"gtol": 1e-6}))
    ours = optimal_instruments(first_step, method="approximate",
                               config=bd.EstimationConfig(method="1s", optimizer="bfgs", gtol=1e-6,
                                                          hessian=False))
    assert ours.results is not None
    order = _pyblp_order(first, first_step.layout)
    assert np.allclose(ours.results.theta[order], theirs.theta.ravel(), rtol=1e-4, atol=1e-6)
    assert np.allclose(ours.results.beta, theirs.beta.ravel(), rtol=1e-4)


def test_options_are_validated(first_step: FittedDemand) -> None:
    # Unknown method and bad draws raise SpecificationError naming the option and valid values.
    from blpdemand.errors import SpecificationError

    with pytest.raises(SpecificationError, match="method='exact' is unknown"):
        optimal_instruments(first_step, method="exact", reestimate=False)  # type: ignore[arg-type]
    with pytest.raises(SpecificationError, match="draws=0"):
        optimal_instruments(first_step, method="normal", draws=0, reestimate=False)
    with pytest.raises(SpecificationError, match="prices has 3 values"):
        optimal_instruments(first_step, prices=np.ones(3), reestimate=False)


def test_user_expected_prices_equal_to_prices_give_the_realized_jacobian(
        first_step: FittedDemand) -> None:
    # With user expected prices equal to the observed prices, 'approximate' evaluates the
    # Jacobian at delta - xi (xi = 0) and the observed X2: by hand with delta_jacobian, 1e-12.
    from blpdemand.solve.contraction import delta_jacobian

    problem = first_step.problem
    p = problem.products.unsort(problem.products.array("prices").astype(float))
    ours = optimal_instruments(first_step, prices=p, reestimate=False)
    by_hand = delta_jacobian(problem, first_step.layout, first_step.theta,
                             first_step.delta - first_step.xi)
    assert np.allclose(ours.jacobian, by_hand, rtol=1e-12, atol=1e-12)


def test_approximate_instruments_match_pyblp_on_blp_cars(blp_products: pd.DataFrame,
                                                         blp_agents: pd.DataFrame) -> None:
    # BLP (1995) cars, the PyBLP tutorial's demand side: prices only in X2 (sigma and
    # pi on prices x 1/income), beta concentrated out at the tutorial's start. PyBLP's
    # approximate optimal instruments and E[p | z] agree to 1e-9 relative (measured ~1e-12).
    # The BLP agent weights are importance-sampling weights that do not sum to one: both
    # libraries warn about that, and the warning is expected here.
    sigma = np.diag([3.612, 0, 4.628, 1.818, 1.050, 2.056])
    pi = np.array([[0], [-43.501], [0], [0], [0], [0]])
    pyblp.options.verbose = False
    with pytest.warns(UserWarning, match="Integration weights"):
        reference = pyblp.Problem(
            (pyblp.Formulation("1 + hpwt + air + mpd + space"),
             pyblp.Formulation("1 + prices + hpwt + air + mpd + space")),
            blp_products, pyblp.Formulation("0 + I(1 / income)"), blp_agents)
    with np.errstate(all="ignore"):
        first = reference.solve(sigma, pi, optimization=pyblp.Optimization("return"), method="1s")
        optimal = first.compute_optimal_instruments(method="approximate")
    agents = blp_agents.assign(inv_income=1 / blp_agents["income"])
    with pytest.warns(bd.errors.IntegrationWarning, match="do not sum to one"):
        problem = bd.Problem(blp_products, linear="1 + hpwt + air + mpd + space",
                             nonlinear="1 + prices + hpwt + air + mpd + space", agents=agents,
                             demographics="inv_income",
                             instruments=[f"demand_instruments{k}" for k in range(8)])
    layout, theta = problem.layout(sigma, pi)
    delta = solve_delta(problem, layout, theta).delta
    Z, X = problem.ZD_tilde, problem.X1_tilde
    W = np.linalg.inv(Z.T @ Z)
    beta = np.linalg.solve(X.T @ Z @ W @ Z.T @ X, X.T @ Z @ W @ Z.T @ delta)
    assert np.allclose(beta, first.beta.ravel(), rtol=1e-9)
    fitted = FittedDemand(problem=problem, layout=layout, theta=theta, beta=beta, delta=delta)
    ours = optimal_instruments(fitted, reestimate=False)
    products = problem.products
    expected = optimal.expected_prices.ravel()
    assert np.allclose(products.unsort(ours.expected_prices), expected, rtol=1e-9)
    mine = products.unsort(ours.instruments)  # no price in X1: only the theta columns
    theirs = optimal.demand_instruments
    assert mine.shape == theirs.shape
    assert np.all(np.abs(mine - theirs).max(axis=0) <= 1e-9 * np.abs(theirs).max(axis=0))
