"""Markets that cannot converge are named with a status; nothing turns NaN silently.

References: an absurd Sigma (random-coefficient standard deviations of 1e5 on every
characteristic) makes exp(delta + mu) overflow in every market, so every market must be
reported non-finite; a tiny evaluation budget must be reported as such. The failure policy
must raise or warn naming the first failed market.
"""

from __future__ import annotations

import numpy as np
import pytest

from blpdemand import Problem
from blpdemand._types import Status
from blpdemand.errors import ConvergenceError, ConvergenceWarning, SpecificationError
from blpdemand.solve.fixed_point import FixedPointConfig
from blpdemand.solve.inversion import solve_delta


@pytest.fixture(scope="module")
def nevo(nevo_products, nevo_agents):
    problem = Problem(nevo_products, linear="prices", nonlinear="1 + prices + sugar + mushy",
                      agents=nevo_agents, absorb="C(product_ids)",
                      instruments=[f"demand_instruments{k}" for k in range(20)])
    layout, _ = problem.layout(np.diag([1.0, 1.0, 1.0, 1.0]))
    return problem, layout


@pytest.mark.parametrize("method, compiled", [("squarem", True), ("simple", True),
                                              ("anderson", True), ("anderson", False),
                                              ("newton", True), ("auto", True)])
def test_absurd_sigma_reports_every_market(nevo, method, compiled):
    # Reference: exp(1e5 * nu * x) overflows in every market (hand reasoning): all 94 fail.
    problem, layout = nevo
    result = solve_delta(problem, layout, np.full(4, 1e5),
                         config=FixedPointConfig(method=method, max_evaluations=200,
                                                 compiled=compiled))
    assert not result.converged
    assert result.status is Status.NONFINITE
    assert sorted(result.failed_markets.tolist()) == sorted(problem.products.markets.ids.tolist())
    assert np.all(np.isfinite(result.delta)) and result.jacobian is None


def test_partial_failure_names_only_failed_markets(nevo):
    # Reference: a budget of 3 evaluations cannot reach 1e-14 from the logit start at this
    # Sigma, while a market started at its converged delta needs one evaluation.
    problem, layout = nevo
    theta = np.array([0.5, 2.0, 0.02, 0.1])
    solved = solve_delta(problem, layout, theta)
    assert solved.converged
    start = problem.products.logit_delta.copy()
    first = problem.products.markets.slice(0)
    start[first] = solved.delta[first]
    result = solve_delta(problem, layout, theta, delta0=start,
                         config=FixedPointConfig(max_evaluations=3))
    assert result.status is Status.MAX_EVALUATIONS
    assert problem.products.markets.ids[0] not in set(result.failed_markets.tolist())
    assert len(result.failed_markets) == problem.T - 1
    assert np.all(np.isfinite(result.delta))


def test_failure_policy_raise_and_warn(nevo):
    # Reference: the on_failure option; messages name a failed market id.
    problem, layout = nevo
    first = str(problem.products.markets.ids[0])
    with pytest.raises(ConvergenceError, match=first):
        solve_delta(problem, layout, np.full(4, 1e5), config=FixedPointConfig(on_failure="raise"))
    with pytest.warns(ConvergenceWarning, match=first):
        solve_delta(problem, layout, np.full(4, 1e5), config=FixedPointConfig(on_failure="warn"))


def test_config_rejects_unknown_options():
    # Reference: the documented option values.
    with pytest.raises(SpecificationError, match="squarem"):
        FixedPointConfig(method="broyden")  # type: ignore[arg-type]
    with pytest.raises(SpecificationError, match="on_failure"):
        FixedPointConfig(on_failure="ignore")  # type: ignore[arg-type]
    with pytest.raises(SpecificationError, match="tol"):
        FixedPointConfig(tol=0.0)
    with pytest.raises(SpecificationError, match="compiled"):
        FixedPointConfig(compiled="yes")  # type: ignore[arg-type]


@pytest.mark.parametrize("compiled", [True, False])
def test_auto_falls_back_to_squarem_where_anderson_stalls(compiled, blp_products, blp_agents):
    # BLP 1995 at the tutorial's estimates, started from the logit delta minus
    # log(mean_i exp(mu_ij)) (computed here market by market): Anderson alone stalls in some
    # markets and must say so (not converged, finite delta) within a small budget; "auto"
    # must then solve them with SQUAREM and agree with a pure SQUAREM run.
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # BLP's weights sum to 0.154 by design
        problem = Problem(blp_products, linear="1 + hpwt + air + mpd + space",
                          nonlinear="1 + prices + hpwt + air + mpd + space",
                          demographics="0 + I(1 / income)", agents=blp_agents,
                          instruments=[f"demand_instruments{k}" for k in range(8)])
    sigma = np.diag([3.612, 0, 4.628, 1.818, 1.050, 2.056])
    pi = np.array([[0.0], [-43.501], [0.0], [0.0], [0.0], [0.0]])
    layout, theta = problem.layout(sigma, pi)
    coefficients = (problem.nodes_for(layout) @ sigma.T
                    + problem.agents.demographics @ pi.T)  # (I_total, K2)
    start = problem.products.logit_delta.copy()
    products, agents = problem.products.markets, problem.agents.markets
    for t in range(products.ids.size):
        rows = slice(products.offsets[t], products.offsets[t + 1])
        draws = slice(agents.offsets[t], agents.offsets[t + 1])
        w = problem.agents.weights[draws]
        mu = problem.X2.values[rows] @ coefficients[draws].T
        start[rows] -= np.log(np.exp(mu) @ w / w.sum())

    anderson = solve_delta(problem, layout, theta, delta0=start,
                           config=FixedPointConfig(method="anderson", compiled=compiled))
    assert not anderson.converged and anderson.failed_markets.size
    assert anderson.iterations < 200  # stopped as stalled, not at the 5,000 budget
    assert np.all(np.isfinite(anderson.delta))
    auto = solve_delta(problem, layout, theta, delta0=start,
                       config=FixedPointConfig(compiled=compiled))
    squarem = solve_delta(problem, layout, theta, delta0=start,
                          config=FixedPointConfig(method="squarem"))
    assert auto.converged and squarem.converged
    assert np.max(np.abs(auto.delta - squarem.delta)) < 1e-12


def test_a_nan_row_does_not_keep_other_rows_from_closing():
    # Reference: the tolerance rule itself, row by row. A step check where one row's change is
    # NaN (a market that broke, not yet failed because the solver reverts it first) must still
    # close the rows whose change met tol (it used to compare the NaN minimum with tol: none closed).
    from blpdemand.solve.fixed_point import _WorkSet

    class Identity:
        def evaluate(self, x):
            return x

        def restrict(self, keep):
            pass

    work = _WorkSet(Identity(), np.zeros((3, 2)), FixedPointConfig(tol=1e-14))
    x = np.zeros((3, 2))
    g = np.array([[np.nan, 0.0], [1e-20, 0.0], [0.5, 0.0]])
    work.check(x, g, fail_nonfinite=False)
    assert work.codes.tolist() == [1, 0, 1]  # row 1 closed as converged; rows 0 and 2 open
    assert work.open.tolist() == [True, False, True]


@pytest.mark.parametrize("change", ["longer", "shorter", "column", "nan", "text"])
def test_delta0_of_the_wrong_shape_or_not_finite_is_named(nevo, change):
    # Reference: the documented input, (N,) finite numbers. Longer arrays were accepted
    # silently, shorter ones raised a bare IndexError, (N, 1) a numba typing error from inside
    # the kernel, and a NaN start came back as NaN delta.
    problem, layout = nevo
    start = problem.products.logit_delta.copy()
    bad = {"longer": np.r_[start, 0.0], "shorter": start[:-1], "column": start[:, None],
           "nan": np.where(np.arange(start.size) == 3, np.nan, start),
           "text": ["a"] * start.size}[change]
    with pytest.raises(SpecificationError, match="delta0"):
        solve_delta(problem, layout, np.full(4, 0.1), delta0=bad)
