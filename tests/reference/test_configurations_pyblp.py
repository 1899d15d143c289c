"""Configurations no other reference test compares with PyBLP 1.3.0 (run live on the same data).

Blind spots of the other tests: rows already sorted by market, plain column names in formulas,
one-way absorbed effects, post-estimation only for BLP results, symmetric inputs. Here:
shuffled rows (markets interleaved, products and agents shuffled), integer market ids whose
order differs from the string ids', formulas with functions, interactions and categorical
dummies, two-way absorbed effects with robust and clustered standard errors, one- and two-step
GMM, post-estimation for plain logit results, and BLP post-estimation with a characteristic in
X1 and X2 interacted with demographics. Every per-product output must come back in the
user's row order, which is PyBLP's (it never reorders rows).

Tolerances: these are the same deterministic computations (no optimization, no simulation) done
with different linear algebra, so relative 1e-8 is loose by orders of magnitude (observed gaps
are 1e-10 or smaller, see each test). Two-way absorbed effects iterate to 1e-14 in both
libraries. Standard errors of two-step GMM invert a second weighting matrix: 1e-8 still holds.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import blpdemand as bd
from blpdemand.errors import SpecificationError
from blpdemand.model.fitted import FittedDemand

pyblp = pytest.importorskip("pyblp")
RTOL = 1e-8
NEVO_Z = [f"demand_instruments{k}" for k in range(20)]


def _close(ours: object, theirs: object, rtol: float = RTOL, atol: float = 0.0) -> None:
    """Same shape, same NaN pattern (padding of stacked matrices), values within rtol."""
    a = np.asarray(ours, dtype=float)
    b = np.asarray(theirs, dtype=float).reshape(a.shape)
    assert np.array_equal(np.isfinite(a), np.isfinite(b))
    finite = np.isfinite(b)
    np.testing.assert_allclose(a[finite], b[finite], rtol=rtol, atol=atol)


def _quiet(call, *args, **kwargs):
    pyblp.options.verbose = False
    with np.errstate(all="ignore"):
        return call(*args, **kwargs)


@pytest.fixture(scope="module")
def shuffled_nevo(nevo_products: pd.DataFrame) -> pd.DataFrame:
    """Nevo's rows in a random order (markets interleaved) with two string columns added."""
    rng = np.random.default_rng(20240601)
    data = nevo_products.iloc[rng.permutation(len(nevo_products))].reset_index(drop=True)
    data["segment"] = np.where(data["sugar"] > 8, "sweet", "plain")
    data["brand"] = "b" + data["brand_ids"].astype(str)
    data["clustering_ids"] = data["brand_ids"]
    return data


# ---------------------------------------------------------------------------- formulas
FORMULAS = [
    # (ours, PyBLP's): numpy functions vs PyBLP's log, I(), interactions ":" and "*"
    ("1 + prices + np.log(sugar + 1) + I(sugar**2) + sugar:mushy",
     "1 + prices + log(sugar + 1) + I(sugar**2) + sugar:mushy"),
    ("prices + mushy*sugar", "1 + prices + mushy*sugar"),
    # categorical dummies: with an intercept (first level dropped) and with "0 +" (all levels)
    ("prices + C(brand)", "1 + prices + C(brand)"),
    ("0 + prices + C(segment)", "0 + prices + C(segment)"),
    ("prices + C(segment):sugar", "1 + prices + C(segment):sugar"),
    # integer categories (levels in numeric order on both sides)
    ("prices + sugar + C(firm_ids)", "1 + prices + sugar + C(firm_ids)"),
]


@pytest.mark.parametrize(("ours", "theirs"), FORMULAS, ids=[f[0] for f in FORMULAS])
def test_design_matrix_and_logit_on_shuffled_rows(shuffled_nevo: pd.DataFrame, ours: str,
                                                  theirs: str) -> None:
    data = shuffled_nevo
    problem = _quiet(pyblp.Problem, pyblp.Formulation(theirs), data)
    reference = _quiet(problem.solve, method="1s", se_type="robust")
    result = bd.estimate_logit(data, linear=ours, instruments=NEVO_Z)
    # X1 put back in the user's row order equals PyBLP's X1 column for column (same order of
    # columns and of categorical levels); both evaluate the same float expressions: 1e-14.
    X1 = result.problem.products.unsort(result.problem.X1.values)
    _close(X1, problem.products.X1, rtol=1e-14)
    # 2SLS = one-step GMM with W = (Z'Z)^-1; observed gaps 1e-10 (np.log(sugar + 1) case).
    _close(result.params.to_numpy(), reference.beta.ravel())
    _close(result.bse.to_numpy(), reference.beta_se.ravel())


def test_categorical_dummies_with_absorbed_effects(shuffled_nevo: pd.DataFrame) -> None:
    # An intercept-implied formula with dummies and absorbed market effects: both libraries
    # drop the intercept and keep the reduced (first level dropped) coding, so the remaining
    # dummies are identified. Observed: beta and SEs 1e-12.
    data = shuffled_nevo
    problem = _quiet(pyblp.Problem, pyblp.Formulation("1 + prices + C(segment) + mushy",
                                                      absorb="C(market_ids)"), data)
    reference = _quiet(problem.solve, method="1s")
    ours = bd.estimate_logit(data, linear="prices + C(segment) + mushy", absorb="C(market_ids)",
                             instruments=NEVO_Z, center_moments=True)
    assert ours.names == ("prices", "C(segment)[T.sweet]", "mushy")
    # PyBLP stores X1 with the effects already absorbed (demeaned by market): 1e-12 absolute
    _close(ours.problem.products.unsort(ours.problem.X1_tilde), problem.products.X1, rtol=0,
           atol=1e-12)
    _close(ours.params.to_numpy(), reference.beta.ravel())
    _close(ours.bse.to_numpy(), reference.beta_se.ravel())


def test_instruments_and_clusters_given_in_user_order(shuffled_nevo: pd.DataFrame) -> None:
    # Instruments as a DataFrame and cluster ids as an array, both in the user's (shuffled)
    # row order: the same estimates as with column names, and as PyBLP's clustered SEs.
    data = shuffled_nevo
    by_name = bd.estimate_logit(data, linear="prices + sugar", instruments=NEVO_Z,
                                covariance="clustered", clusters="clustering_ids")
    by_value = bd.estimate_logit(data, linear="prices + sugar", instruments=data[NEVO_Z],
                                 covariance="clustered",
                                 clusters=data["clustering_ids"].to_numpy())
    # same numbers through the same code: rel 1e-12
    _close(by_value.params.to_numpy(), by_name.params.to_numpy(), rtol=1e-12)
    _close(by_value.bse.to_numpy(), by_name.bse.to_numpy(), rtol=1e-12)
    problem = _quiet(pyblp.Problem, pyblp.Formulation("1 + prices + sugar"), data)
    reference = _quiet(problem.solve, method="1s", se_type="clustered")
    _close(by_value.params.to_numpy(), reference.beta.ravel())
    _close(by_value.bse.to_numpy(), reference.beta_se.ravel())


# ---------------------------------------------------------------------------- absorbed effects
ABSORB = ["C(product_ids)", "C(product_ids) + C(city_ids)", "C(product_ids) + C(market_ids)"]


@pytest.mark.parametrize("absorb", ABSORB)
@pytest.mark.parametrize(("step", "method"), [("1s", "gmm"), ("2s", "2s-gmm")])
def test_absorbed_logit_robust_and_clustered(shuffled_nevo: pd.DataFrame, absorb: str, step: str,
                                             method: str) -> None:
    # PyBLP's plain logit (no X2) with the effects absorbed. Its two-step weighting matrix has
    # its own option W_type (default robust); ours is of the covariance's kind, so the same
    # kind is passed to both, with centered moments (PyBLP's default) or not. Observed: beta and
    # SEs 1e-11 or smaller, one- and two-way, one and two steps.
    data = shuffled_nevo
    problem = _quiet(pyblp.Problem, pyblp.Formulation("0 + prices", absorb=absorb), data)
    for kind, center in [(k, c) for k in ("robust", "clustered") for c in (True, False)]:
        reference = _quiet(problem.solve, method=step, se_type=kind, W_type=kind,
                           center_moments=center)
        ours = bd.estimate_logit(data, linear="prices", absorb=absorb, instruments=NEVO_Z,
                                 method=method, covariance=kind, center_moments=center,
                                 clusters="clustering_ids" if kind == "clustered" else None)
        _close(ours.params.to_numpy(), reference.beta.ravel())
        _close(ours.bse.to_numpy(), reference.beta_se.ravel())


@pytest.mark.parametrize("absorb", ABSORB)
def test_absorbed_unadjusted_se_degrees_of_freedom(shuffled_nevo: pd.DataFrame,
                                                   absorb: str) -> None:
    # Documented convention: our homoskedastic s^2 = xi'xi / (N - K1 - D_FE) counts the
    # absorbed effects (D_FE = groups, less one per connected component of a second dimension:
    # 24, 24 + 47 - 1, 24 + 94 - 1 here); PyBLP's divides by N. So
    # se_ours = se_pyblp sqrt(N / (N - K1 - D_FE)), beta identical (2SLS both).
    data = shuffled_nevo
    problem = _quiet(pyblp.Problem, pyblp.Formulation("0 + prices", absorb=absorb), data)
    reference = _quiet(problem.solve, method="1s", se_type="unadjusted")
    ours = bd.estimate_logit(data, linear="prices", absorb=absorb, instruments=NEVO_Z,
                             covariance="unadjusted")
    expected_degrees = {ABSORB[0]: 24, ABSORB[1]: 24 + 47 - 1, ABSORB[2]: 24 + 94 - 1}[absorb]
    assert ours.absorbed_degrees == expected_degrees
    N = len(data)
    _close(ours.params.to_numpy(), reference.beta.ravel())
    _close(ours.bse.to_numpy(),
           reference.beta_se.ravel() * np.sqrt(N / (N - 1 - expected_degrees)))
    # hc1 is robust (HC0, PyBLP's robust) times the same factor
    robust = _quiet(problem.solve, method="1s", se_type="robust")
    hc1 = ours.with_covariance("hc1")
    _close(hc1.bse.to_numpy(), robust.beta_se.ravel() * np.sqrt(N / (N - 1 - expected_degrees)))


def test_two_step_unadjusted_se_convention(shuffled_nevo: pd.DataFrame) -> None:
    # Documented convention: after a two-step estimate with the robust optimal W, PyBLP's
    # "unadjusted" SEs are (G'WG)^-1 / N, valid only if W were the homoskedastic optimum;
    # ours are the homoskedastic sandwich of the estimator actually used,
    # (G'WG)^-1 G'W S W G (G'WG)^-1 / N with S = s^2 Z'Z / N, s^2 = xi'xi / (N - K1 - D_FE).
    # Both formulas are computed here by hand from PyBLP's own W, G, Z and xi (rel 1e-8).
    data = shuffled_nevo
    problem = _quiet(pyblp.Problem, pyblp.Formulation("0 + prices + sugar",
                                                      absorb="C(city_ids)"), data)
    theirs = _quiet(problem.solve, method="2s", se_type="unadjusted", W_type="robust")
    ours = bd.estimate_logit(data, linear="prices + sugar", absorb="C(city_ids)",
                             instruments=NEVO_Z, method="2s-gmm", center_moments=True)
    _close(ours.params.to_numpy(), theirs.beta.ravel())
    X, Z, xi, W = problem.products.X1, problem.products.ZD, theirs.xi.ravel(), theirs.W
    N, K = X.shape
    G = Z.T @ X / N
    bread = np.linalg.inv(G.T @ W @ G)
    _close(theirs.beta_se.ravel(), np.sqrt(np.diag(bread) / N))
    S = (xi @ xi / (N - K - ours.absorbed_degrees)) * Z.T @ Z / N
    sandwich = bread @ G.T @ W @ S @ W @ G @ bread / N
    _close(ours.with_covariance("unadjusted").bse.to_numpy(), np.sqrt(np.diag(sandwich)))


@pytest.mark.parametrize("kind", ["robust", "clustered"])
def test_absorbed_ols(shuffled_nevo: pd.DataFrame, kind: str) -> None:
    # OLS with market effects absorbed. PyBLP has no OLS option: prices as their own (only)
    # excluded instrument make its IV estimator exactly OLS. Observed: beta and SEs 1e-14.
    data = shuffled_nevo.drop(columns=NEVO_Z)
    data["demand_instruments0"] = data["prices"]
    problem = _quiet(pyblp.Problem, pyblp.Formulation("0 + prices + sugar",
                                                      absorb="C(market_ids)"), data)
    reference = _quiet(problem.solve, method="1s", se_type=kind)
    ours = bd.estimate_logit(shuffled_nevo, linear="prices + sugar", absorb="C(market_ids)",
                             method="ols", covariance=kind,
                             clusters="clustering_ids" if kind == "clustered" else None)
    _close(ours.params.to_numpy(), reference.beta.ravel())
    _close(ours.bse.to_numpy(), reference.beta_se.ravel())


@pytest.fixture(scope="module")
def shuffled_cars(cars: pd.DataFrame) -> pd.DataFrame:
    """Cars with rows shuffled, shares added, the user's own column names kept."""
    rng = np.random.default_rng(7)
    data = cars.iloc[rng.permutation(len(cars))].reset_index(drop=True)
    data["shares"] = data["sales"] / (data["number_households"] / 2.5)
    return data


CARS_LINEAR = "prices + np.log(hp) + np.log(weight) + sport + EV + truck"


@pytest.fixture(scope="module")
def cars_logit(shuffled_cars: pd.DataFrame):
    """Two-way absorbed (year, make) logit on the user's names (year, price, parent: string
    firm ids) with ours, and on PyBLP's reserved names with PyBLP."""
    data = shuffled_cars
    ours = bd.estimate_logit(data, linear=CARS_LINEAR, absorb="C(year) + C(make)",
                             instruments=["RXR"], method="gmm", covariance="clustered",
                             clusters=data["make"].to_numpy(), center_moments=True,
                             columns={"market_ids": "year", "prices": "price",
                                      "firm_ids": "parent"})
    theirs_data = data.rename(columns={"price": "prices"}).assign(
        market_ids=data["year"], demand_instruments0=data["RXR"], clustering_ids=data["make"],
        firm_ids=pd.factorize(data["parent"])[0])
    problem = _quiet(pyblp.Problem, pyblp.Formulation(
        "1 + prices + log(hp) + log(weight) + sport + EV + truck", absorb="C(year) + C(make)"),
        theirs_data)
    return ours, _quiet(problem.solve, method="1s", se_type="clustered"), theirs_data


def test_cars_two_way_absorbed_clustered(cars_logit) -> None:
    # PyBLP drops the intercept when effects are absorbed, as we do. Exactly identified, so
    # one and two steps coincide. Observed: beta 1e-12, clustered SEs 1e-10 (the two-way
    # within transformation iterates to 1e-14 in both).
    ours, theirs, _ = cars_logit
    assert ours.problem.X1.names[0] == "prices"
    _close(ours.params.to_numpy(), theirs.beta.ravel())
    _close(ours.bse.to_numpy(), theirs.beta_se.ravel())
    assert ours.clusters == 62  # makes


def test_two_way_absorbed_with_singletons(shuffled_cars: pd.DataFrame) -> None:
    # Year and model effects: 124 models are sold in one year only (singleton groups, kept,
    # their xi is exactly zero). Two-way alternating projections converge slowly here:
    # PyBLP's default absorb options stop ~2e-8 from the exact within transformation, so it
    # gets pyhdfe's tol 1e-14 as ours. Reference for the within transformation itself: the
    # exact least-squares residual on year and model dummies (abs 1e-10; observed 6e-13).
    # Then beta, robust and clustered SEs vs PyBLP: observed 1e-14.
    data = shuffled_cars.rename(columns={"price": "prices"}).assign(
        market_ids=shuffled_cars["year"], demand_instruments0=shuffled_cars["RXR"],
        clustering_ids=shuffled_cars["make"])
    singletons = data["model"].map(data["model"].value_counts()).to_numpy() == 1
    assert singletons.sum() == 124
    problem = _quiet(pyblp.Problem, pyblp.Formulation(
        "0 + prices + log(hp)", absorb="C(year) + C(model)",
        absorb_options={"tol": 1e-14, "iteration_limit": 100_000}), data)
    dummies = np.column_stack([pd.get_dummies(data["year"]).to_numpy(float),
                               pd.get_dummies(data["model"]).to_numpy(float)])
    for kind in ("robust", "clustered"):
        theirs = _quiet(problem.solve, method="1s", se_type=kind)
        ours = bd.estimate_logit(data, linear="prices + np.log(hp)",
                                 absorb="C(year) + C(model)", instruments=["RXR"],
                                 covariance=kind, center_moments=True,
                                 clusters="make" if kind == "clustered" else None)
        _close(ours.params.to_numpy(), theirs.beta.ravel())
        _close(ours.bse.to_numpy(), theirs.beta_se.ravel())
    X = ours.problem.products.unsort(ours.problem.X1.values)
    exact = X - dummies @ np.linalg.lstsq(dummies, X, rcond=None)[0]
    _close(ours.problem.products.unsort(ours.problem.X1_tilde), exact, rtol=0, atol=1e-10)
    assert np.all(ours.xi[singletons] == 0)  # results are in the user's row order
    assert ours.absorbed_degrees == 39 + 1067 - 1


# ---------------------------------------------------------------------------- logit post-estimation
def test_logit_post_estimation_cars(cars_logit) -> None:
    # Plain logit results passed to the post-estimation functions; PyBLP's logit
    # ProblemResults at the same beta. Closed forms on both sides; observed gaps 1e-13.
    ours, theirs, data = cars_logit
    E = _quiet(theirs.compute_elasticities)
    _close(bd.compute_elasticities(ours).stacked(), E)
    _close(bd.compute_elasticities(ours).diagonal(), theirs.extract_diagonals(E))
    _close(ours.own_price_elasticities(), theirs.extract_diagonals(E))
    _close(bd.compute_diversion_ratios(ours).stacked(), _quiet(theirs.compute_diversion_ratios))
    _close(bd.compute_costs(ours), _quiet(theirs.compute_costs))
    # the same ownership given as PyBLP's NaN-padded stacked matrix (J_t from 165 to 323)
    ownership = pyblp.build_ownership(data)
    assert np.isnan(ownership).any()
    _close(bd.compute_costs(ours, ownership=ownership),
           _quiet(theirs.compute_costs, ownership=ownership))
    # PyBLP's markups are Lerner indices (p - c) / p
    _close(bd.compute_markups(ours) / data["prices"].to_numpy(), _quiet(theirs.compute_markups))
    _close(bd.compute_consumer_surplus(ours), _quiet(theirs.compute_consumer_surpluses))
    # PyBLP: sum_j [s_j(1.01 p) - s_j(p)] / 0.01; ours divides by sum_j s_j (an elasticity)
    inside = ours.problem.products.markets.segment_sum(ours.problem.products.shares)
    _close(bd.compute_aggregate_elasticities(ours, factor=0.01) * inside,
           _quiet(theirs.compute_aggregate_elasticities, factor=0.01))


def test_logit_merger_with_string_firm_ids(cars_logit) -> None:
    # Merge the two parents with the most products (string ids for us, integer codes for
    # PyBLP); zeta iteration to 1e-12 on both sides. Observed: prices, HHI, CS 1e-12.
    ours, theirs, data = cars_logit
    codes = data["firm_ids"].to_numpy()
    parents = data["parent"].to_numpy()
    big = pd.Series(parents).value_counts().index[:2].tolist()
    big_codes = [int(codes[parents == b][0]) for b in big]
    merged = np.where(np.isin(codes, big_codes), big_codes[0], codes)
    costs = _quiet(theirs.compute_costs)
    prices = _quiet(theirs.compute_prices, firm_ids=merged, costs=costs)
    shares = _quiet(theirs.compute_shares, prices)
    cf = bd.simulate_merger(ours, big)
    assert cf.converged
    _close(cf.prices, prices)
    _close(cf.shares, shares)
    _close(cf.hhi, _quiet(theirs.compute_hhi, firm_ids=merged, shares=shares))
    _close(cf.hhi_before, _quiet(theirs.compute_hhi))
    _close(cf.consumer_surplus, _quiet(theirs.compute_consumer_surpluses, prices=prices))
    _close(cf.profits, _quiet(theirs.compute_profits, prices=prices, shares=shares, costs=costs))


# these estimates imply some negative costs (an EconomicWarning; compared with PyBLP here)
@pytest.mark.filterwarnings("ignore::blpdemand.errors.EconomicWarning")
def test_logit_merger_explicit_ownership_and_cost_change(shuffled_nevo: pd.DataFrame) -> None:
    # Nevo plain logit on shuffled rows. A merger given as PyBLP's stacked ownership matrix
    # (N, max J_t), whose columns follow each market's products in the user's row order, and
    # a 10% cost increase passed in the user's row order. Observed: prices 1e-11.
    data = shuffled_nevo
    ours = bd.estimate_logit(data, linear="prices + sugar + mushy", instruments=NEVO_Z)
    theirs = _quiet(_quiet(pyblp.Problem, pyblp.Formulation("1 + prices + sugar + mushy"),
                           data).solve, method="1s")
    _close(ours.params.to_numpy(), theirs.beta.ravel())
    costs = _quiet(theirs.compute_costs)
    # one cost is -1.2e-5 (prices near zero in one market), so costs are compared through the
    # quantity computed, the markup p - c = -1 / (alpha (1 - s_f)): relatively, as every other
    # quantity here (the tools' alphas differ in the last digits the 2SLS solve resolves)
    prices_observed = data["prices"].to_numpy()
    _close(prices_observed - bd.compute_costs(ours), prices_observed - costs.ravel())
    merged = data["firm_ids"].replace({2: 1}).to_numpy()
    ownership = pyblp.build_ownership(data.assign(firm_ids=merged))
    prices = _quiet(theirs.compute_prices, ownership=ownership, costs=costs)
    cf = bd.compute_prices(ours, ownership=ownership)
    assert cf.converged and cf.firm_ids is None
    _close(cf.prices, prices)
    _close(cf.shares, _quiet(theirs.compute_shares, prices))
    _close(bd.simulate_merger(ours, [1, 2]).prices, prices)
    higher = 1.1 * costs.ravel()
    raised = _quiet(theirs.compute_prices, costs=higher)
    _close(bd.compute_prices(ours, costs=higher).prices, raised)
    # elasticities with respect to a linear characteristic of X1 (sugar = 0 for some
    # products: zero columns, compared absolutely there)
    _close(bd.compute_elasticities(ours, "sugar").stacked(),
           _quiet(theirs.compute_elasticities, name="sugar"), atol=1e-14)
    # one market labelled by product: rows of PyBLP's stacked matrix in the user's order,
    # columns in the order the market's products appear in the data
    E = _quiet(theirs.compute_elasticities)
    rows = np.flatnonzero(data["market_ids"].to_numpy() == "C01Q1")
    labels = data["product_ids"].to_numpy()[rows]
    expected = pd.DataFrame(E[rows][:, : rows.size], index=labels, columns=labels)
    market = bd.compute_elasticities(ours).market("C01Q1")
    _close(market.loc[labels, labels].to_numpy(), expected.to_numpy())


# these estimates imply some negative costs (an EconomicWarning; compared with PyBLP here)
@pytest.mark.filterwarnings("ignore::blpdemand.errors.EconomicWarning")
def test_logit_taxes_closed_form(shuffled_nevo: pd.DataFrame) -> None:
    # Taxes paid by consumers: the firm keeps p / (1 + t) - tau, so its effective cost in
    # consumer prices is c' = (1 + t)(c + tau). Reference by hand: multiproduct logit markups
    # p_j - c'_j = -1 / (alpha (1 - sum_{k in f} s_k)), profits (p - c') s / (1 + t).
    # Tolerance 1e-9: the fixed point stops at |dp| < 1e-12.
    data = shuffled_nevo
    ours = bd.estimate_logit(data, linear="prices + sugar + mushy", instruments=NEVO_Z)
    costs = bd.compute_costs(ours)
    tau = np.where(data["mushy"].to_numpy() == 1, 0.01, 0.0)
    cf = bd.compute_prices(ours, unit_tax=tau, ad_valorem_tax=0.1)
    assert cf.converged
    _close(cf.costs, 1.1 * (costs + tau), rtol=1e-14)
    firm_share = pd.Series(cf.shares).groupby(
        [data["market_ids"].to_numpy(), data["firm_ids"].to_numpy()]).transform("sum")
    _close(cf.prices - cf.costs, -1.0 / (ours.alpha * (1.0 - firm_share.to_numpy())), rtol=1e-9)
    _close(cf.profits, (cf.prices - cf.costs) * cf.shares / 1.1, rtol=1e-12)


def test_logit_products_removed_closed_form(shuffled_nevo: pd.DataFrame) -> None:
    # Removing products (keep=False) in the user's row order. Reference by hand: with
    # multiproduct logit firms the equilibrium markup of every product of firm f is
    # p_j - c_j = -1 / (alpha (1 - sum_{k in f} s_k)) (closed form of the Bertrand FOC), and
    # CS_t = log(1 + sum_kept exp(delta_j + alpha (p'_j - p_j))) / (-alpha). Tolerance 1e-9:
    # the fixed point stops at |dp| < 1e-12.
    data = shuffled_nevo
    ours = bd.estimate_logit(data, linear="prices + sugar + mushy", instruments=NEVO_Z)
    keep = (data["brand_ids"] != data["brand_ids"].iloc[0]).to_numpy()
    cf = bd.compute_prices(ours, keep=keep)
    assert cf.converged
    assert np.all(np.isnan(cf.prices[~keep])) and np.all(np.isfinite(cf.prices[keep]))
    alpha = ours.alpha
    firm_share = pd.Series(cf.shares[keep]).groupby(
        [data["market_ids"].to_numpy()[keep], data["firm_ids"].to_numpy()[keep]]).transform("sum")
    _close(cf.markups[keep], -1.0 / (alpha * (1.0 - firm_share.to_numpy())), rtol=1e-9)
    delta = ours.delta  # the user's row order
    utility = delta + alpha * (np.nan_to_num(cf.prices) - data["prices"].to_numpy())
    inclusive = pd.Series(np.where(keep, np.exp(utility), 0.0)).groupby(
        data["market_ids"].to_numpy()).sum()
    expected = np.log1p(inclusive.reindex(cf.market_ids).to_numpy()) / -alpha
    _close(cf.consumer_surplus, expected, rtol=1e-9)
    # consumer surplus at observed prices with the same products removed, no re-pricing
    observed = pd.Series(np.where(keep, np.exp(delta), 0.0)).groupby(
        data["market_ids"].to_numpy()).sum()
    _close(bd.compute_consumer_surplus(ours, keep=keep),
           np.log1p(observed.reindex(cf.market_ids).to_numpy()) / -alpha, rtol=1e-12)


# ---------------------------------------------------------------------------- BLP post-estimation
@pytest.fixture(scope="module")
def shuffled_blp(nevo_products: pd.DataFrame, nevo_agents: pd.DataFrame):
    """Nevo's BLP problem on shuffled products AND agents, integer market ids numbered in
    reverse of the string ids' order, functions in X2 and in the demographics formula; PyBLP
    solved at fixed Sigma and Pi (Optimization('return'))."""
    rng = np.random.default_rng(11)
    nevo_products, nevo_agents = _nevo_markets(nevo_products, nevo_agents, 40)
    products = nevo_products.iloc[rng.permutation(len(nevo_products))].reset_index(drop=True)
    agents = nevo_agents.iloc[rng.permutation(len(nevo_agents))].reset_index(drop=True)
    ids = {m: 1000 - k for k, m in enumerate(sorted(nevo_products["market_ids"].unique()))}
    products["market_ids"] = products["market_ids"].map(ids)
    agents["market_ids"] = agents["market_ids"].map(ids)
    sigma = np.diag([0.3, 1.0, 0.05, 0.1])
    pi = np.array([[1.0, 0.5, 0.0], [2.0, 0.0, -0.5], [-0.2, 0.05, 0.0], [0.3, 0.0, 0.2]])
    problem = _quiet(pyblp.Problem, (pyblp.Formulation("1 + prices + sugar + mushy"),
                                     pyblp.Formulation("1 + prices + I(sugar / 10) + mushy")),
                     products, pyblp.Formulation("0 + income + log(income + 5) + I(age * child)"),
                     agents)
    theirs = _quiet(problem.solve, sigma, pi, optimization=pyblp.Optimization("return"),
                    method="1s")
    ours = bd.Problem(products, linear="1 + prices + sugar + mushy",
                      nonlinear="1 + prices + I(sugar / 10) + mushy",
                      demographics="income + np.log(income + 5) + age:child", agents=agents,
                      instruments=NEVO_Z)
    layout, theta = ours.layout(sigma=sigma, pi=pi)
    fitted = FittedDemand(problem=ours, layout=layout, theta=theta, beta=theirs.beta.ravel(),
                          delta=ours.products.sort(theirs.delta.ravel()))
    return fitted, theirs, problem


def test_blp_matrices_and_post_estimation_shuffled(shuffled_blp) -> None:
    fitted, theirs, problem = shuffled_blp
    ours = fitted.problem
    # X2 back in user order equals PyBLP's (exact float expressions, 1e-14)
    _close(ours.products.unsort(ours.X2.values), problem.products.X2, rtol=1e-14)
    # markets in sorted id order like PyBLP's, integer ids (not the string ids' order)
    assert np.array_equal(ours.products.markets.ids, problem.unique_market_ids)
    # agents: ours are stably sorted by market, PyBLP's stay in the user's order
    order = np.argsort(pd.Index(ours.products.markets.ids).get_indexer(
        problem.agents.market_ids.ravel()), kind="stable")
    _close(ours.agents.demographics, problem.agents.demographics[order], rtol=1e-14)
    _close(ours.agents.nodes, problem.agents.nodes[order], rtol=1e-14)
    _close(ours.agents.weights, problem.agents.weights.ravel()[order], rtol=1e-14)
    # Shares from our agents (sorted, demographics from our formula) at PyBLP's delta equal
    # the observed shares PyBLP's contraction matched: confirms nodes, weights and
    # demographics are paired per agent. Contraction tolerance ~1e-14: rel 1e-8.
    # Observed gaps below: elasticities 1e-14, diversion 1e-15, costs 1e-11, CS 1e-16.
    from blpdemand.model.demand import market_demands

    shares = np.concatenate([d.shares() for d in market_demands(fitted)])
    _close(ours.products.unsort(shares), problem.products.shares)
    _close(bd.compute_elasticities(fitted).stacked(), _quiet(theirs.compute_elasticities))
    _close(bd.compute_elasticities(fitted, "mushy").stacked(),
           _quiet(theirs.compute_elasticities, name="mushy"))
    _close(bd.compute_diversion_ratios(fitted).stacked(), _quiet(theirs.compute_diversion_ratios))
    _close(bd.compute_costs(fitted), _quiet(theirs.compute_costs))
    _close(bd.compute_consumer_surplus(fitted), _quiet(theirs.compute_consumer_surpluses))
    # sugar enters X2 only as I(sugar / 10): its elasticities are not supported (PyBLP
    # differentiates the formula); we refuse rather than ignore the random coefficient
    with pytest.raises(SpecificationError, match="I\\(sugar / 10\\)"):
        bd.compute_elasticities(fitted, "sugar")


def _nevo_markets(products: pd.DataFrame, agents: pd.DataFrame, count: int = 24):
    """The first ``count`` Nevo markets (PyBLP's fixed-theta solve takes ~9 s on all 94)."""
    keep = sorted(products["market_ids"].unique())[:count]
    return (products[products["market_ids"].isin(keep)].reset_index(drop=True),
            agents[agents["market_ids"].isin(keep)].reset_index(drop=True))


@pytest.fixture(scope="module")
def correlated_blp(nevo_products: pd.DataFrame, nevo_agents: pd.DataFrame):
    """Nevo without absorbed effects: sugar in X1 and X2, its random coefficient interacted
    with income and age, and a full lower-triangular Sigma (correlated random coefficients;
    PyBLP 1.3 also takes the lower triangle and ignores the upper one)."""
    nevo_products, nevo_agents = _nevo_markets(nevo_products, nevo_agents)
    sigma = np.array([[0.3, 0.0, 0.0, 0.0], [0.2, 1.0, 0.0, 0.0], [0.05, 0.02, 0.05, 0.0],
                      [0.0, 0.1, 0.03, 0.1]])
    pi = np.array([[1.0, 0.0, 0.5, 0.0], [2.0, 0.0, 0.0, 0.0], [-0.2, 0.0, 0.05, 0.0],
                   [0.3, 0.0, 0.0, 0.2]])
    demographics = "income + income_squared + age + child"
    problem = _quiet(pyblp.Problem, (pyblp.Formulation("1 + prices + sugar + mushy"),
                                     pyblp.Formulation("1 + prices + sugar + mushy")),
                     nevo_products, pyblp.Formulation("0 + " + demographics), nevo_agents)
    theirs = _quiet(problem.solve, sigma, pi, optimization=pyblp.Optimization("return"),
                    method="1s")
    assert np.array_equal(theirs.sigma, sigma)
    ours = bd.Problem(nevo_products, linear="1 + prices + sugar + mushy",
                      nonlinear="1 + prices + sugar + mushy", demographics=demographics,
                      agents=nevo_agents, instruments=NEVO_Z)
    layout, theta = ours.layout(sigma=sigma, pi=pi)
    fitted = FittedDemand(problem=ours, layout=layout, theta=theta, beta=theirs.beta.ravel(),
                          delta=ours.products.sort(theirs.delta.ravel()))
    return fitted, theirs, nevo_products


def test_blp_correlated_coefficients_characteristic_in_x1_and_x2(correlated_blp) -> None:
    # d u_ij / d sugar_j = beta_sugar + [Sigma nu_i + Pi y_i]_sugar: the X1 coefficient plus a
    # correlated random coefficient with demographic interactions. Sugar is zero for some
    # products (zero columns): compared absolutely there. Observed: sugar 1e-12, prices 1e-14.
    fitted, theirs, _ = correlated_blp
    _close(bd.compute_elasticities(fitted, "sugar").stacked(),
           _quiet(theirs.compute_elasticities, name="sugar"), atol=1e-14)
    _close(bd.compute_elasticities(fitted).stacked(), _quiet(theirs.compute_elasticities))
    _close(bd.compute_diversion_ratios(fitted).stacked(), _quiet(theirs.compute_diversion_ratios))
    _close(bd.compute_costs(fitted), _quiet(theirs.compute_costs))
    _close(bd.compute_consumer_surplus(fitted), _quiet(theirs.compute_consumer_surpluses))
    # diversion with respect to a characteristic: D_jk = -(ds_k/dx_j) / (ds_j/dx_j)
    _close(bd.compute_diversion_ratios(fitted, "sugar").stacked(),
           _quiet(theirs.compute_diversion_ratios, name="sugar"), atol=1e-14)


def test_blp_surplus_and_profits_at_given_prices(correlated_blp) -> None:
    # Prices 5% above the observed ones, passed in the user's row order. Convention: our
    # compute_profits(prices=p) uses the shares s(p) at those prices; PyBLP's keeps the
    # observed shares unless shares= is given (documented there), so s(p) is passed to it.
    # Observed: CS 2e-16, profits 1e-12.
    fitted, theirs, data = correlated_blp
    prices = 1.05 * data["prices"].to_numpy()
    _close(bd.compute_consumer_surplus(fitted, prices=prices),
           _quiet(theirs.compute_consumer_surpluses, prices=prices))
    costs = _quiet(theirs.compute_costs)
    shares = _quiet(theirs.compute_shares, prices)
    _close(bd.compute_profits(fitted, prices=prices, costs=costs.ravel()),
           _quiet(theirs.compute_profits, prices=prices, shares=shares, costs=costs))


def test_blp_merger_with_explicit_ownership(correlated_blp) -> None:
    # The merger of firms 1 and 2 given as PyBLP's stacked ownership matrix; both sides solve
    # the zeta fixed point to 1e-12 from the observed prices. Observed: prices 1e-12.
    fitted, theirs, data = correlated_blp
    merged = data["firm_ids"].replace({2: 1}).to_numpy()
    ownership = pyblp.build_ownership(data.assign(firm_ids=merged))
    costs = _quiet(theirs.compute_costs)
    prices = _quiet(theirs.compute_prices, ownership=ownership, costs=costs)
    cf = bd.compute_prices(fitted, ownership=ownership)
    assert cf.converged
    _close(cf.prices, prices)
    _close(cf.shares, _quiet(theirs.compute_shares, prices))
    _close(cf.consumer_surplus, _quiet(theirs.compute_consumer_surpluses, prices=prices))
    # the same merger from firm ids
    _close(bd.simulate_merger(fitted, [1, 2]).prices, prices)


def test_blp_evaluate_on_shuffled_rows(nevo_products: pd.DataFrame,
                                       nevo_agents: pd.DataFrame) -> None:
    # The whole BLP path at a fixed theta (PyBLP's Optimization('return')) on shuffled
    # products and agents: product effects absorbed, correlated Sigma, Pi, clustered SEs.
    # delta and xi must come back in the user's row order. Contraction tolerances ~1e-14 on
    # both sides: objective, beta, gradient and SEs rel 1e-8 (the last two through
    # d xi / d theta by the implicit function theorem on both sides), delta/xi abs 1e-10.
    # Observed: objective 5e-13, gradient 1e-12, SEs 8e-11, xi 3e-11 relative.
    products, agents = _nevo_markets(nevo_products, nevo_agents)
    rng = np.random.default_rng(5)
    products = products.iloc[rng.permutation(len(products))].reset_index(drop=True)
    agents = agents.iloc[rng.permutation(len(agents))].reset_index(drop=True)
    products["clustering_ids"] = products["brand_ids"]  # 24 clusters >= 20 moments
    sigma = np.array([[0.3, 0.0, 0.0, 0.0], [0.2, 1.0, 0.0, 0.0], [0.05, 0.02, 0.05, 0.0],
                      [0.0, 0.1, 0.03, 0.1]])
    pi = np.array([[1.0, 0.0, 0.5, 0.0], [2.0, 0.0, 0.0, 0.0], [-0.2, 0.0, 0.05, 0.0],
                   [0.3, 0.0, 0.0, 0.2]])
    demographics = "income + income_squared + age + child"
    problem = _quiet(pyblp.Problem, (pyblp.Formulation("0 + prices", absorb="C(product_ids)"),
                                     pyblp.Formulation("1 + prices + sugar + mushy")),
                     products, pyblp.Formulation("0 + " + demographics), agents)
    theirs = _quiet(problem.solve, sigma, pi, optimization=pyblp.Optimization("return"),
                    method="1s", se_type="clustered")
    ours_problem = bd.Problem(products, linear="prices", nonlinear="1 + prices + sugar + mushy",
                              demographics=demographics, agents=agents,
                              absorb="C(product_ids)", instruments=NEVO_Z)
    ours = bd.evaluate(ours_problem, sigma=sigma, pi=pi,
                       config=bd.EstimationConfig(covariance="clustered",
                                                  clusters="clustering_ids"))
    _close(ours.objective, theirs.objective)
    _close(ours.beta, theirs.beta.ravel())
    _close(ours.delta, theirs.delta.ravel(), rtol=0, atol=1e-10)  # results: the user's order
    _close(ours.xi, theirs.xi.ravel(), rtol=0, atol=1e-10)
    # our theta is ordered by the layout (column by column); PyBLP's lists the free elements
    # of Sigma's lower triangle row by row, then of Pi row by row: compare through matrices
    P = ours.layout.P
    sigma_cells = [(r, c) for r, c in zip(*np.tril_indices_from(sigma)) if sigma[r, c] != 0]
    pi_cells = list(zip(*np.nonzero(pi)))
    cells = [("sigma", r, c) for r, c in sigma_cells] + [("pi", r, c) for r, c in pi_cells]
    values = {"sigma": sigma, "pi": pi}
    assert np.array_equal(theirs.theta.ravel(), [values[m][r, c] for m, r, c in cells])
    sigma_gradient, pi_gradient = ours.layout.unpack(ours.gradient)
    sigma_se, pi_se = ours.layout.unpack(ours.standard_errors[:P])
    ours_gradient = {"sigma": sigma_gradient, "pi": pi_gradient}
    ours_se = {"sigma": sigma_se, "pi": pi_se}
    _close([ours_gradient[m][r, c] for m, r, c in cells], theirs.gradient.ravel())
    _close([ours_se[m][r, c] for m, r, c in cells],
           np.r_[theirs.sigma_se[tuple(np.array(sigma_cells).T)],
                 theirs.pi_se[tuple(np.array(pi_cells).T)]])
    _close(ours.standard_errors[P:], theirs.beta_se.ravel())


# these estimates imply some negative costs (an EconomicWarning; compared with PyBLP here)
@pytest.mark.filterwarnings("ignore::blpdemand.errors.EconomicWarning")
def test_blp_unequal_products_and_agents_per_market(nevo_products: pd.DataFrame,
                                                     nevo_agents: pd.DataFrame) -> None:
    # Nevo has 24 products and 20 agents in every market, so padded blocks and NaN-padded
    # stacked matrices are never exercised there. Drop 30% of the products and 40% of the
    # agents at random (14-22 products, 6-16 agents per market; weights renormalized), shuffle
    # both, and compare the fixed-theta evaluation and post-estimation with PyBLP.
    # Observed: objective 2e-13, delta 6e-15 abs, elasticities 7e-14, costs 2e-12, merger
    # prices 4e-12 (zeta iteration to 1e-12 on both sides).
    products, agents = _nevo_markets(nevo_products, nevo_agents)
    rng = np.random.default_rng(8)
    products = products[rng.random(len(products)) > 0.3]
    agents = agents[rng.random(len(agents)) > 0.4].copy()
    agents["weights"] /= agents.groupby("market_ids")["weights"].transform("sum")
    products = products.iloc[rng.permutation(len(products))].reset_index(drop=True)
    agents = agents.iloc[rng.permutation(len(agents))].reset_index(drop=True)
    sizes = products.groupby("market_ids").size()
    assert sizes.min() < sizes.max() and agents.groupby("market_ids").size().nunique() > 1
    sigma = np.array([[0.3, 0.0, 0.0, 0.0], [0.2, 1.0, 0.0, 0.0], [0.05, 0.02, 0.05, 0.0],
                      [0.0, 0.1, 0.03, 0.1]])
    pi = np.array([[1.0, 0.0, 0.5, 0.0], [2.0, 0.0, 0.0, 0.0], [-0.2, 0.0, 0.05, 0.0],
                   [0.3, 0.0, 0.0, 0.2]])
    demographics = "income + income_squared + age + child"
    problem = _quiet(pyblp.Problem, (pyblp.Formulation("0 + prices", absorb="C(product_ids)"),
                                     pyblp.Formulation("1 + prices + sugar + mushy")),
                     products, pyblp.Formulation("0 + " + demographics), agents)
    theirs = _quiet(problem.solve, sigma, pi, optimization=pyblp.Optimization("return"),
                    method="1s")
    ours_problem = bd.Problem(products, linear="prices", nonlinear="1 + prices + sugar + mushy",
                              demographics=demographics, agents=agents,
                              absorb="C(product_ids)", instruments=NEVO_Z)
    ours = bd.evaluate(ours_problem, sigma=sigma, pi=pi)
    _close(ours.objective, theirs.objective)
    _close(ours.beta, theirs.beta.ravel())
    _close(ours.delta, theirs.delta.ravel(), rtol=0, atol=1e-10)  # the user's row order
    _close(bd.compute_elasticities(ours).stacked(), _quiet(theirs.compute_elasticities))
    _close(bd.compute_diversion_ratios(ours).stacked(), _quiet(theirs.compute_diversion_ratios))
    costs = _quiet(theirs.compute_costs)
    _close(bd.compute_costs(ours), costs)
    _close(bd.compute_consumer_surplus(ours), _quiet(theirs.compute_consumer_surpluses))
    merged = products["firm_ids"].replace({2: 1}).to_numpy()
    cf = bd.simulate_merger(ours, [1, 2])
    assert cf.converged
    _close(cf.prices, _quiet(theirs.compute_prices, firm_ids=merged, costs=costs))
