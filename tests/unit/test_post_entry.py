"""Entry counterfactuals (``bd.simulate_entry``): new products join existing markets.

References, all computed in the tests from the simulation's true parameters and data, never
from the package's demand code:
- logit closed form: with single-nest logit every product of firm f has the same markup
  m_f = 1 / (-alpha (1 - S_f)), S_f the firm's share; the entry equilibrium solved here with
  scipy.optimize.fsolve on those F equations (prices rtol 1e-9);
- theory: a new firm's entry lowers every incumbent price of its market and raises consumer
  surplus; markets without entrants keep their observed prices (1e-10);
- a fixed point: adding a product and removing it again (keep=) returns the observed
  equilibrium, since incumbents' costs are implied by observed prices (1e-9);
- random coefficients: the entry prices satisfy the Bertrand FOC s + (O * ds/dp')(p - c) = 0
  with shares and derivatives integrated here over the simulation's agents (max |FOC| < 1e-10).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import fsolve

import blpdemand as bd
from blpdemand.errors import BLPDemandWarning, DataError, SpecificationError
from blpdemand.results.counterfactual import fitted_from_truth


@pytest.fixture(scope="module")
def logit() -> bd.SimulatedMarkets:
    return bd.simulate(markets=3, products=4, firms=2, pricing="bertrand", rng=1)


@pytest.fixture(scope="module")
def blp() -> bd.SimulatedMarkets:
    return bd.simulate(markets=3, products=4, firms=2, pricing="bertrand", rng=2,
                       sigma={"prices": 0.3, "x1": 1.0}, draws=200)


def _mean_utility(sim: bd.SimulatedMarkets, rows: pd.DataFrame) -> np.ndarray:
    """x' beta + xi net of price, from the true coefficients."""
    beta = sim.truth["beta"]
    return (beta["1"] + beta["x1"] * rows["x1"].to_numpy() + beta["x2"] * rows["x2"].to_numpy()
            + rows["xi"].to_numpy())


def test_duplicate_product_matches_logit_closed_form(logit: bd.SimulatedMarkets) -> None:
    products = logit.products
    new = products.iloc[[0]].copy()            # same market, firm, characteristics, xi, costs
    cf = bd.simulate_entry(fitted_from_truth(logit), new)
    assert cf.converged and cf.entrants is not None and cf.entrants.tolist() == [False] * 12 + [True]
    market = products["market_ids"].iloc[0]
    rows = pd.concat([products[products["market_ids"] == market], new])
    d, c = _mean_utility(logit, rows), rows["costs"].to_numpy()
    firms, alpha = rows["firm_ids"].to_numpy(), logit.truth["alpha"]
    owners = np.unique(firms)

    def foc(m: np.ndarray) -> np.ndarray:
        markup = m[np.searchsorted(owners, firms)]
        e = np.exp(d + alpha * (c + markup))
        s = e / (1 + e.sum())
        return np.array([m[f] * -alpha * (1 - s[firms == g].sum()) - 1 for f, g in enumerate(owners)])

    m = fsolve(foc, np.full(owners.size, 1.0), xtol=1e-14)
    assert np.max(np.abs(foc(m))) < 1e-12
    reference = c + m[np.searchsorted(owners, firms)]
    got = np.concatenate([cf.prices[:12][products["market_ids"].to_numpy() == market],
                          cf.prices[cf.entrants]])
    np.testing.assert_allclose(got, reference, rtol=1e-9)
    # the duplicate prices like its twin; other markets keep their observed prices
    assert cf.prices[-1] == pytest.approx(cf.prices[0], rel=1e-12)
    other = products["market_ids"].to_numpy() != market
    np.testing.assert_allclose(cf.prices[:12][other], products["prices"].to_numpy()[other],
                               rtol=0, atol=1e-10)


def test_new_firm_lowers_incumbent_prices_and_raises_surplus(logit: bd.SimulatedMarkets) -> None:
    products = logit.products
    market = products["market_ids"].unique()[1]
    new = pd.DataFrame({"market_ids": [market], "firm_ids": [99], "x1": [0.5], "x2": [0.0]})
    cf = bd.simulate_entry(fitted_from_truth(logit), new, costs=products["costs"].mean(), xi=0.0)
    assert cf.converged
    inside = cf.row_markets[:12] == market
    assert np.all(cf.price_changes[:12][inside] < 0)
    np.testing.assert_allclose(cf.price_changes[:12][~inside], 0.0, atol=1e-10)
    t = list(cf.market_ids).index(market)
    assert cf.consumer_surplus_change[t] > 0
    assert cf.shares[-1] > 0 and cf.profits[-1] > 0 and np.isnan(cf.prices_before[-1])
    np.testing.assert_allclose(np.delete(cf.consumer_surplus_change, t), 0.0, atol=1e-10)
    body = cf.overview().body            # incumbents' mean change is the hand mean (1e-12)
    assert body.loc["entrants", "products"] == 1
    assert body.loc["incumbents", "mean price change (%)"] == pytest.approx(
        100 * cf.price_changes[:12].mean(), rel=1e-12)


def test_adding_then_removing_returns_the_observed_equilibrium(logit: bd.SimulatedMarkets) -> None:
    products = logit.products
    new = products.iloc[[1, 6]].assign(firm_ids=[7, 8])
    keep = np.r_[np.ones(12, dtype=bool), False, False]
    cf = bd.simulate_entry(fitted_from_truth(logit), new, keep=keep)
    assert cf.converged
    np.testing.assert_allclose(cf.prices[:12], products["prices"].to_numpy(), rtol=1e-9)
    np.testing.assert_allclose(cf.shares[:12], products["shares"].to_numpy(), rtol=1e-9)
    np.testing.assert_allclose(cf.consumer_surplus_change, 0.0, atol=1e-10)
    assert np.all(np.isnan(cf.prices[12:])) and np.all(cf.shares[12:] == 0)


def test_random_coefficients_entry_satisfies_bertrand_foc(blp: bd.SimulatedMarkets) -> None:
    products, agents = blp.products, blp.agents
    new = pd.concat([products.iloc[[0]].assign(firm_ids=99, x1=1.5, xi=0.2, costs=1.0),
                     products.iloc[[9]]])          # a new firm, and a clone of firm 1's product
    cf = bd.simulate_entry(fitted_from_truth(blp), new)
    assert cf.converged
    alpha, sd = blp.truth["alpha"], blp.truth["sigma"]
    everything = pd.concat([products, new], ignore_index=True)
    everything["p"], everything["c"] = cf.prices, cf.costs
    worst = 0.0
    for market, rows in everything.groupby("market_ids"):
        draws = agents[agents["market_ids"] == market]
        nu_p, nu_x, w = (draws[k].to_numpy() for k in ("nodes0", "nodes1", "weights"))
        alpha_i = alpha + sd["prices"] * nu_p                                   # (I,)
        u = (_mean_utility(blp, rows)[:, None] + rows["p"].to_numpy()[:, None] * alpha_i
             + sd["x1"] * rows["x1"].to_numpy()[:, None] * nu_x)
        e = np.exp(u)
        s_ij = e / (1 + e.sum(axis=0))
        s = s_ij @ w
        dsdp = np.diag((s_ij * alpha_i) @ w) - (s_ij * alpha_i * w) @ s_ij.T    # ds_j / dp_k
        firms = rows["firm_ids"].to_numpy()
        owner = firms[:, None] == firms[None, :]
        foc = s + (owner * dsdp.T) @ (rows["p"].to_numpy() - rows["c"].to_numpy())
        worst = max(worst, float(np.max(np.abs(foc))))
    assert worst < 1e-10
    np.testing.assert_allclose(cf.prices[-1], cf.prices[9], rtol=1e-12)  # the clone's twin


def test_partial_ownership_of_the_entrant_satisfies_its_foc(blp: bd.SimulatedMarkets) -> None:
    # Reference: the Bertrand FOC with partial ownership, s_j + sum_k O_jk ds_k/dp_j (p_k - c_k)
    # = 0, O_jk = 1 for the same firm and kappa[(f_j, f_k)] for the listed pairs, integrated here
    # over the simulation's agents (max |FOC| < 1e-10); and kappa must move the entrant's price.
    products, agents = blp.products, blp.agents
    new = products.iloc[[0]].assign(firm_ids=99, x1=1.5, xi=0.2, costs=1.0)
    kappa = {(1, 99): 0.6, (99, 1): 0.3}  # asymmetric: O is not transposed anywhere
    fitted = fitted_from_truth(blp)
    cf = bd.simulate_entry(fitted, new, kappa=kappa)
    plain = bd.simulate_entry(fitted, new)
    assert cf.converged and abs(cf.prices[-1] - plain.prices[-1]) > 1e-4
    alpha, sd = blp.truth["alpha"], blp.truth["sigma"]
    everything = pd.concat([products, new], ignore_index=True)
    everything["p"], everything["c"] = cf.prices, cf.costs
    market = new["market_ids"].iloc[0]
    rows = everything[everything["market_ids"] == market]
    draws = agents[agents["market_ids"] == market]
    nu_p, nu_x, w = (draws[k].to_numpy() for k in ("nodes0", "nodes1", "weights"))
    alpha_i = alpha + sd["prices"] * nu_p
    u = (_mean_utility(blp, rows)[:, None] + rows["p"].to_numpy()[:, None] * alpha_i
         + sd["x1"] * rows["x1"].to_numpy()[:, None] * nu_x)
    e = np.exp(u)
    s_ij = e / (1 + e.sum(axis=0))
    s = s_ij @ w
    dsdp = np.diag((s_ij * alpha_i) @ w) - (s_ij * alpha_i * w) @ s_ij.T
    firms = rows["firm_ids"].to_numpy()
    owner = (firms[:, None] == firms[None, :]).astype(float)
    for (f, g), value in kappa.items():
        owner[np.ix_(firms == f, firms == g)] = value
    foc = s + (owner * dsdp.T) @ (rows["p"].to_numpy() - rows["c"].to_numpy())
    assert float(np.max(np.abs(foc))) < 1e-10


def test_delta_column_gives_the_entrant_its_mean_utility(logit: bd.SimulatedMarkets) -> None:
    """A twin given as delta (its twin's true mean utility at the observed price) prices exactly
    like the twin fed through X1 beta + xi (rel 1e-12); delta with xi= is ambiguous."""
    products = logit.products
    fitted = fitted_from_truth(logit)
    twin = products.iloc[[0]]
    delta0 = _mean_utility(logit, twin) + logit.truth["alpha"] * twin["prices"].to_numpy()
    by_delta = bd.simulate_entry(fitted, twin[["market_ids", "firm_ids", "prices", "costs"]]
                                 .assign(delta=delta0))
    by_formula = bd.simulate_entry(fitted, twin)
    np.testing.assert_allclose(by_delta.prices, by_formula.prices, rtol=1e-12)
    with pytest.raises(SpecificationError, match="delta"):
        bd.simulate_entry(fitted, twin.assign(delta=delta0), xi=0.0)
    with pytest.raises(DataError, match="prices"):
        bd.simulate_entry(fitted, twin[["market_ids", "firm_ids", "costs"]].assign(delta=delta0))


def test_entry_errors_name_the_problem(logit: bd.SimulatedMarkets) -> None:
    fitted = fitted_from_truth(logit)
    new = logit.products.iloc[[0]].copy()
    with pytest.raises(DataError, match="x2"):
        bd.simulate_entry(fitted, new.drop(columns=["x2"]))
    with pytest.raises(DataError, match="not markets"):
        bd.simulate_entry(fitted, new.assign(market_ids=12345))
    with pytest.raises(DataError, match="costs"):
        bd.simulate_entry(fitted, new.drop(columns=["costs"]))
    with pytest.raises(DataError, match="firm_ids"):
        bd.simulate_entry(fitted, new.drop(columns=["firm_ids"]))
    with pytest.raises(DataError, match="keep"):
        bd.simulate_entry(fitted, new, keep=np.ones(12, dtype=bool))


def test_categorical_levels_and_absorbed_effects(logit: bd.SimulatedMarkets) -> None:
    """A C(...) level the data have is reproduced; a new one is a SpecificationError; absorbed
    fixed effects need the entrant's own contribution (the 'fixed_effect' column)."""
    products = logit.products.assign(kind=np.where(logit.products["x1"] > 0, "a", "b"))
    with warnings.catch_warnings():                 # 12 products: weak first stage expected
        warnings.simplefilter("ignore", BLPDemandWarning)
        results = bd.estimate_logit(products, linear="prices + x1 + C(kind)",
                                    instruments=["w1", "w2"])
        absorbed = bd.estimate_logit(products, linear="prices + x1", absorb="C(product_ids)",
                                     instruments=["w1", "w2"])
    new = products.iloc[[0]].copy()
    # a twin of product 0 (same firm, x, level, estimated xi and implied cost) prices like it
    fitted = results.fitted
    xi0 = fitted.problem.products.unsort(fitted.xi)[0]
    cf = bd.simulate_entry(results, new, xi=xi0, costs=bd.compute_costs(results)[0])
    assert cf.converged and cf.prices[-1] == pytest.approx(cf.prices[0], rel=1e-10)
    with pytest.raises(SpecificationError, match="categorical"):
        bd.simulate_entry(results, new.assign(kind="zzz"))
    with pytest.raises(SpecificationError, match="fixed_effect"):
        bd.simulate_entry(absorbed, new)
    fa = absorbed.fitted
    unsort = fa.problem.products.unsort
    effect0 = unsort(fa.delta - fa.problem.X1.values @ fa.beta - fa.xi)[0]
    cf = bd.simulate_entry(absorbed, new.assign(fixed_effect=effect0), xi=unsort(fa.xi)[0],
                           costs=bd.compute_costs(absorbed)[0])
    assert cf.converged and cf.prices[-1] == pytest.approx(cf.prices[0], rel=1e-10)


def test_shuffled_rows_give_the_same_equilibrium(logit: bd.SimulatedMarkets) -> None:
    """Rows come back in the user's order: shuffling the data permutes incumbents' results and
    leaves the entrants' unchanged (1e-12); the reference is the sorted run."""
    products = logit.products
    new = products.iloc[[2, 7]].assign(firm_ids=[5, 6], costs=[1.0, 2.0])
    sorted_run = bd.simulate_entry(fitted_from_truth(logit), new)
    perm = np.random.default_rng(3).permutation(len(products))
    shuffled = bd.SimulatedMarkets(**{**{k: getattr(logit, k) for k in logit.__dataclass_fields__},
                                      "products": products.iloc[perm].reset_index(drop=True)})
    run = bd.simulate_entry(fitted_from_truth(shuffled), new)
    np.testing.assert_allclose(run.prices[:12], sorted_run.prices[:12][perm], rtol=1e-12)
    np.testing.assert_allclose(run.prices[12:], sorted_run.prices[12:], rtol=1e-12)
    np.testing.assert_allclose(run.prices_before[:12], products["prices"].to_numpy()[perm])
