"""Irregular inputs for the command line, results files, ``bd.simulate`` and ``bd.simulate_entry``:
shuffled rows, string ids (with '/' and spaces), unequal products per market, single-product
firms, bounds with inf, two-step GMM, non-finite table entries.

References: the Python API on the same data (run here), hand computations (the Bertrand
first-order conditions by finite differences of the share function, shares' closed forms) and
invariance to the order of rows.
"""

from __future__ import annotations

import contextlib
import io
import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import blpdemand as bd
from blpdemand.cli import main
from blpdemand.results.costs import compute_costs
from blpdemand.results.elasticities import compute_elasticities, own_elasticity_summary
from blpdemand.results.io import SavedResults, load_results, save_results
from blpdemand.results.tables import Table


def _irregular(rng: int = 3) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Simulated BLP data, 6 markets of 3-5 products, string ids with '/', rows shuffled."""
    sim = bd.simulate(markets=6, products=5, firms=3, sigma={"x1": 0.8}, draws=50, rng=rng)
    products = sim.products.drop(index=[1, 7, 8, 20]).reset_index(drop=True)
    products["market_ids"] = "m/" + products["market_ids"].astype(str)
    products["firm_ids"] = "f" + products["firm_ids"].astype(str)
    products = products.sample(frac=1, random_state=1).reset_index(drop=True)
    assert sim.agents is not None
    agents = sim.agents.assign(market_ids="m/" + sim.agents["market_ids"].astype(str))
    return products, agents.sample(frac=1, random_state=2).reset_index(drop=True)


def _cli(arguments: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(arguments)
    return code, err.getvalue()


SPEC = """
[data]
products = "products.{ext}"
agents = "agents.csv"
[model]
linear = "1 + prices + x1 + x2"
nonlinear = "0 + x1"
[instruments]
columns = ["w1", "w2"]
[parameters]
sigma = [[0.5]]
[estimation]
method = "2s"
bounds = {{"sigma[x1, x1]" = [0.0, inf]}}
[post]
elasticities = true
diversion = true
costs = true
"""


@pytest.mark.parametrize("ext", ["csv", "parquet"])
def test_cli_shuffled_string_ids_with_slash_match_api(tmp_path: Path, ext: str) -> None:
    """Market ids like "m/0" used to crash the run after estimation: the per-market table file
    "elasticities_market_m/0.tex" named a folder that does not exist. Now the file name is
    sanitised and every number in results.json equals the Python API on the same shuffled rows
    (reference: bd.estimate, compute_costs, own_elasticity_summary, compute_elasticities;
    tolerance 1e-10 relative: same code path, same data)."""
    if ext == "parquet":
        pytest.importorskip("pyarrow")
    products, agents = _irregular()
    if ext == "parquet":
        products.to_parquet(tmp_path / "products.parquet")
    else:
        products.to_csv(tmp_path / "products.csv", index=False)
    agents.to_csv(tmp_path / "agents.csv", index=False)
    (tmp_path / "spec.toml").write_text(SPEC.format(ext=ext), encoding="utf-8")
    code, err = _cli(["estimate", str(tmp_path / "spec.toml"), "--output", str(tmp_path / "out"),
                      "--quiet"])
    assert code == 0, err
    out = tmp_path / "out"
    assert (out / "elasticities_market_m_0.tex").is_file()
    assert (out / "diversion_market_m_0.html").is_file()
    saved = load_results(out / "results.json")

    data = pd.read_csv(tmp_path / "products.csv") if ext == "csv" else products
    problem = bd.Problem(data, linear="1 + prices + x1 + x2", nonlinear="0 + x1",
                         agents=pd.read_csv(tmp_path / "agents.csv"), instruments=["w1", "w2"])
    config = bd.EstimationConfig(method="2s", bounds={"sigma[x1, x1]": (0.0, math.inf)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        api = bd.estimate(problem, sigma=[[0.5]], config=config)
    body = api.summary().body
    np.testing.assert_allclose(saved.estimates[body.index].to_numpy(), body["estimate"], rtol=1e-10)
    np.testing.assert_allclose(saved.standard_errors[body.index].to_numpy(), body["std. error"],
                               rtol=1e-10)
    costs = compute_costs(api)
    np.testing.assert_allclose(saved.tables["costs"].body.loc["marginal costs", "mean"],
                               costs.mean(), rtol=1e-10)
    np.testing.assert_allclose(saved.tables["costs"].body.loc["markups", "min"],
                               (data["prices"].to_numpy() - costs).min(), rtol=1e-10)
    summary = own_elasticity_summary(api).body
    pd.testing.assert_frame_equal(saved.tables["elasticities"].body, summary, check_dtype=False,
                                  check_index_type=False, rtol=1e-10)
    matrix = compute_elasticities(api).table("m/0").body
    np.testing.assert_allclose(saved.tables["elasticities_market_m/0"].body.to_numpy(dtype=float),
                               matrix.to_numpy(dtype=float), rtol=1e-10)


@pytest.fixture(scope="module")
def correlated_blp() -> bd.BLPResults:
    """BLP with a correlated Sigma, Pi, a non-ASCII characteristic, inf bounds and 2-step GMM."""
    sim = bd.simulate(markets=4, products=5, firms=3, sigma={"x1": 0.7, "1": 0.5}, draws=100,
                      rng=12)
    products = sim.products.rename(columns={"x2": "größe"})
    products = products.assign(w12=products.w1 * products.w2, w11=products.w1 ** 2,
                               w22=products.w2 ** 2).sample(frac=1, random_state=5)
    assert sim.agents is not None
    agents = sim.agents.assign(income=np.random.default_rng(1).standard_normal(len(sim.agents)))
    problem = bd.Problem(products, linear="1 + prices + x1 + größe", nonlinear="1 + x1",
                         demographics="income", agents=agents,
                         instruments=["w1", "w2", "w12", "w11", "w22"])
    config = bd.EstimationConfig(method="2s", bounds={"sigma[x1, x1]": (0.0, math.inf)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bd.estimate(problem, sigma=[[0.5, 0.0], [0.1, 0.7]], pi=[[0.0], [0.3]],
                           config=config)


def test_results_round_trip_keeps_numbers_tables_and_infinite_bounds(
        correlated_blp: bd.BLPResults, tmp_path: Path) -> None:
    """Reference: the live results. Estimates, standard errors and the objective read back
    bit-identical (shortest repr), the summary and a per-market elasticity table render the same
    LaTeX and HTML, non-finite table cells come back, and the configuration's bound (0, inf)
    comes back as a float inf: it used to come back as the string 'Infinity' (only tables and
    parameters were decoded), so EstimationConfig(**saved.config) could not be rebuilt."""
    results = correlated_blp
    elasticities = compute_elasticities(results).table(results.problem.products.markets.ids[0])
    odd = pd.DataFrame({"a": [1.0, np.nan, np.inf], 7: [-np.inf, 2.0, 0.0], "i": [1, 2, 3]},
                       index=pd.Index([10, 20, 30], name="pid"))
    path = save_results(results, tmp_path / "r.json",
                        tables={"el": elasticities, "odd": Table(title="ünï ∞", body=odd)})
    saved = load_results(path)
    body = results.summary().body
    assert "größe" in saved.estimates.index
    assert saved.estimates[body.index].tolist() == body["estimate"].tolist()
    assert saved.standard_errors[body.index].tolist() == body["std. error"].tolist()
    assert saved.objective == results.objective
    assert saved.summary().to_latex() == results.summary().to_latex()
    assert saved.tables["el"].to_html() == elasticities.to_html()
    # integer product ids heading the matrix stay integers (they came back as strings '0', '1')
    pd.testing.assert_index_equal(saved.tables["el"].body.columns, elasticities.body.columns)
    assert saved.tables["el"].body.loc[0, 1] == elasticities.body.loc[0, 1]
    pd.testing.assert_frame_equal(saved.tables["odd"].body, odd)
    assert saved.tables["odd"].title == "ünï ∞"
    assert saved.config["bounds"] == {"sigma[x1, x1]": [0.0, math.inf]}
    assert saved.config["method"] == "2s"
    assert [s["iterations"] for s in saved.diagnostics["steps"]] == \
        [s.iterations for s in results.steps]
    # a second round trip of the loaded file changes nothing
    again = load_results(save_results(saved, tmp_path / "again.json"))
    assert again.config == saved.config and again.estimates.equals(saved.estimates)


@pytest.mark.parametrize("firms", [4, 2])
def test_simulated_bertrand_prices_satisfy_hand_foc(firms: int) -> None:
    """Reference: the Bertrand first-order conditions s_j + sum_{k of j's firm} (p_k - c_k)
    ds_k/dp_j = 0 with shares integrated here over the returned agents (sigma given in a
    non-default order, x1 before prices, with a random coefficient on prices) and derivatives
    by central finite differences (h = 1e-6; |FOC| < 1e-8). firms=4: single-product firms."""
    sim = bd.simulate(markets=3, products=4, firms=firms, sigma={"x1": 0.5, "prices": 0.2},
                      draws=300, pricing="bertrand", rng=5)
    products, agents, truth = sim.products, sim.agents, sim.truth
    assert agents is not None
    names = list(truth["sigma"])
    beta = truth["beta"]
    for t in range(3):
        rows, draws = products[products.market_ids == t], agents[agents.market_ids == t]
        nodes = draws[[f"nodes{k}" for k in range(len(names))]].to_numpy()
        mean = (beta["1"] + beta["x1"] * rows.x1.to_numpy() + beta["x2"] * rows.x2.to_numpy()
                + rows.xi.to_numpy())
        alpha_i = truth["alpha"] + truth["sigma"]["prices"] * nodes[:, names.index("prices")]
        mu = np.outer(rows.x1.to_numpy(), truth["sigma"]["x1"] * nodes[:, names.index("x1")])

        def shares(p: np.ndarray, mean: np.ndarray = mean, alpha_i: np.ndarray = alpha_i,
                   mu: np.ndarray = mu) -> np.ndarray:
            e = np.exp(mean[:, None] + p[:, None] * alpha_i[None, :] + mu)
            out: np.ndarray = (e / (1 + e.sum(axis=0))).mean(axis=1)
            return out

        p, c, f = rows.prices.to_numpy(), rows.costs.to_numpy(), rows.firm_ids.to_numpy()
        s = shares(p)
        np.testing.assert_allclose(s, rows.shares.to_numpy(), rtol=1e-12)
        assert 0 < s.sum() < 1
        step = np.eye(4) * 1e-6
        jacobian = np.array([(shares(p + step[j]) - shares(p - step[j])) / 2e-6 for j in range(4)])
        foc = s + ((f[:, None] == f[None, :]) * jacobian) @ (p - c)
        assert np.abs(foc).max() < 1e-8
        assert np.all(p > c)
    again = bd.simulate(markets=3, products=4, firms=firms, sigma={"x1": 0.5, "prices": 0.2},
                        draws=300, pricing="bertrand", rng=np.random.default_rng(5))
    pd.testing.assert_frame_equal(again.products, products)


def _shuffled_logit() -> tuple[pd.DataFrame, np.ndarray, pd.DataFrame]:
    sim = bd.simulate(markets=4, products=5, firms=3, pricing="bertrand", rng=11)
    products = sim.products.drop(index=[2, 9, 13]).reset_index(drop=True)
    products["market_ids"] = "mk " + products.market_ids.astype(str)
    products["firm_ids"] = "f" + products.firm_ids.astype(str)
    order = np.random.default_rng(4).permutation(len(products))
    return products, order, products.iloc[order].reset_index(drop=True)


ENTRANTS = pd.DataFrame({"market_ids": ["mk 1", "mk 2", "mk 1"], "firm_ids": ["f0", "new", "new"],
                         "x1": [0.3, -0.2, 1.0], "x2": [0.1, 0.5, -1.0], "costs": [1.5, 2.0, 1.0],
                         "fixed_effect": [0.2, -0.1, 0.0], "xi": [0.1, 0.0, -0.2]})


def test_entry_on_shuffled_logit_with_absorbed_firm_effects() -> None:
    """Logit with absorbed firm effects on shuffled rows with string ids; entrants owned by an
    incumbent ('f0') and by a new firm. References: (1) the same estimation on the unshuffled
    rows gives the same counterfactual row for row (1e-12); (2) the logit closed form: every
    product of firm f has markup p - c = -1 / (alpha (1 - S_f)) (1e-10); (3) each entrant's
    log(s_j / s_0) - alpha p_j equals its x' beta + xi + fixed_effect (1e-10); (4) a keep= mask
    in the user's (shuffled) order equals the mask moved to the sorted rows (1e-12)."""
    products, order, shuffled = _shuffled_logit()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fits = [bd.estimate_logit(d, linear="prices + x1 + x2", absorb="C(firm_ids)",
                                  instruments=["w1", "w2"]) for d in (shuffled, products)]
    entry = [bd.simulate_entry(r, ENTRANTS) for r in fits]
    N, back = len(products), np.argsort(order)
    np.testing.assert_allclose(entry[0].prices[:N][back], entry[1].prices[:N], rtol=1e-12)
    np.testing.assert_allclose(entry[0].prices[N:], entry[1].prices[N:], rtol=1e-12)
    cf = entry[0]
    coefficients = fits[0].summary().body["estimate"]
    alpha = float(coefficients["prices"])
    markets = np.concatenate([shuffled.market_ids, ENTRANTS.market_ids])
    firms = np.concatenate([shuffled.firm_ids, ENTRANTS.firm_ids])
    for market in np.unique(markets):
        for firm in np.unique(firms[markets == market]):
            own = (markets == market) & (firms == firm)
            np.testing.assert_allclose(cf.prices[own] - cf.costs[own],
                                       -1 / (alpha * (1 - cf.shares[own].sum())), rtol=1e-10)
    outside = {m: 1 - cf.shares[markets == m].sum() for m in np.unique(markets)}
    s0 = np.array([outside[m] for m in ENTRANTS.market_ids])
    mean = (coefficients["x1"] * ENTRANTS.x1 + coefficients["x2"] * ENTRANTS.x2 + ENTRANTS.xi
            + ENTRANTS.fixed_effect).to_numpy()
    np.testing.assert_allclose(np.log(cf.shares[N:] / s0) - alpha * cf.prices[N:], mean,
                               rtol=1e-10)
    keep = np.ones(N + 3, dtype=bool)
    keep[[0, N]] = False
    keep_sorted = np.ones(N + 3, dtype=bool)
    keep_sorted[[order[0], N]] = False
    kept = [bd.simulate_entry(fits[0], ENTRANTS, keep=keep),
            bd.simulate_entry(fits[1], ENTRANTS, keep=keep_sorted)]
    assert np.isnan(kept[0].prices[0]) and kept[0].shares[0] == 0 and np.isnan(kept[0].prices[N])
    np.testing.assert_allclose(kept[0].prices[:N][back], kept[1].prices[:N], rtol=1e-12)


LOGIT_SPEC = """
[data]
products = "products.csv"
[columns]
prices = "price"
shares = "share"
clustering_ids = "cl"
[model]
linear = "prices + x1 + x2"
absorb = "C(market_ids)"
[instruments]
columns = ["w1", "w2"]
[logit]
method = "gmm"
covariance = "clustered"
clusters = "clustering_ids"
[post]
costs = true
elasticities = true
market = {market}
merger = {{firm_ids = {{GM = "Ford"}}}}
"""


@pytest.mark.parametrize("market", ["1995", '"1995"'])
def test_cli_logit_maps_clustering_ids_and_string_firm_merger(tmp_path: Path, market: str
                                                              ) -> None:
    """``[columns] clustering_ids = "cl"`` is documented (examples/README.md) and accepted by
    the spec checker, but the library's columns= knows only the product keys, so every such run
    failed with "unknown reserved column name(s)". The CLI now renames the column itself.
    Reference: bd.estimate_logit with clusters="cl" on the same shuffled rows (renamed price and
    share columns, string firm ids, integer years with unequal products per year), and
    compute_prices with GM's products moved to Ford for the merger summary (1e-10). ``market =
    "1995"`` (a TOML string for integer ids) used to fail after the estimation with "no market
    '1995'"; it is now read as the id column's type, and the per-market table equals the API's
    (1e-10)."""
    from blpdemand.results.counterfactual import compute_prices

    sim = bd.simulate(markets=8, products=5, firms=3, pricing="bertrand", rng=21)
    products = sim.products.drop(index=[3, 11, 12]).reset_index(drop=True)
    products["firm_ids"] = products["firm_ids"].map({0: "Ford", 1: "GM", 2: "Kia"})
    products["market_ids"] = products["market_ids"] + 1990
    products["cl"] = products["product_ids"]
    products = products.rename(columns={"prices": "price", "shares": "share"})
    products = products.sample(frac=1, random_state=3).reset_index(drop=True)
    products.to_csv(tmp_path / "products.csv", index=False)
    (tmp_path / "spec.toml").write_text(LOGIT_SPEC.format(market=market), encoding="utf-8")
    code, err = _cli(["logit", str(tmp_path / "spec.toml"), "--output", str(tmp_path / "out"),
                      "--quiet"])
    assert code == 0, err
    saved = load_results(tmp_path / "out" / "results.json")
    assert (tmp_path / "out" / "elasticities_market_1995.tex").is_file()
    data = pd.read_csv(tmp_path / "products.csv")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        api = bd.estimate_logit(data, linear="prices + x1 + x2", absorb="C(market_ids)",
                                instruments=["w1", "w2"], method="gmm", covariance="clustered",
                                clusters="cl", columns={"prices": "price", "shares": "share"})
    body = api.summary().body
    np.testing.assert_allclose(saved.estimates[body.index], body["estimate"], rtol=1e-10)
    np.testing.assert_allclose(saved.standard_errors[body.index], body["std. error"], rtol=1e-10)
    assert saved.diagnostics.get("covariance_kind", "clustered") == "clustered"
    merged = compute_prices(api, firm_ids=data["firm_ids"].replace({"GM": "Ford"}).to_numpy())
    np.testing.assert_allclose(saved.post_estimation["merger"]["mean_price_change_percent"],
                               100 * np.nanmean(merged.price_changes), rtol=1e-10)
    assert saved.post_estimation["merger"]["mean_price_change_percent"] > 0
    np.testing.assert_allclose(
        saved.tables["elasticities_market_1995"].body.to_numpy(dtype=float),
        compute_elasticities(api).table(1995).body.to_numpy(dtype=float), rtol=1e-10)


def test_entry_on_shuffled_blp_with_absorbed_effects_and_pi() -> None:
    """BLP with absorbed firm effects and a demographic interaction, on shuffled products and
    agents with string ids and unequal markets. Reference: the same estimation on the unshuffled
    rows (1e-8: the two GMM runs agree to the optimizer's tolerance), row for row, and the
    entrants' Bertrand markups are positive."""
    sim = bd.simulate(markets=4, products=5, firms=3, pricing="bertrand",
                      sigma={"x1": 0.7, "prices": 0.1}, draws=100, rng=12)
    products = sim.products.drop(index=[2, 9, 13]).reset_index(drop=True)
    products = products.assign(w12=products.w1 * products.w2, w11=products.w1 ** 2,
                               market_ids="mk " + products.market_ids.astype(str),
                               firm_ids="f" + products.firm_ids.astype(str))
    assert sim.agents is not None
    agents = sim.agents.assign(market_ids="mk " + sim.agents.market_ids.astype(str),
                               income=np.random.default_rng(1).standard_normal(len(sim.agents)))
    order = np.random.default_rng(4).permutation(len(products))
    shuffled = products.iloc[order].reset_index(drop=True)
    fits = []
    for data, draws in ((shuffled, agents.sample(frac=1, random_state=3)), (products, agents)):
        problem = bd.Problem(data, linear="prices + x1", nonlinear="0 + x1", demographics="income",
                             agents=draws, absorb="C(firm_ids)",
                             instruments=["w1", "w2", "w12", "w11"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fits.append(bd.estimate(problem, sigma=[[0.7]], pi=[[0.3]],
                                    config=bd.EstimationConfig(method="1s")))
    entry = [bd.simulate_entry(r, ENTRANTS) for r in fits]
    N = len(products)
    np.testing.assert_allclose(entry[0].prices[:N][np.argsort(order)], entry[1].prices[:N],
                               rtol=1e-8)
    np.testing.assert_allclose(entry[0].prices[N:], entry[1].prices[N:], rtol=1e-8)
    assert np.all(entry[0].markups[N:] > 0)


def test_cli_two_step_clustered_weighting_with_parallel_starts(tmp_path: Path) -> None:
    """[estimation] method = "2s", weighting = "clustered" on a column mapped by [columns]
    clustering_ids, starts = 2 on workers = 2, shuffled rows. Reference: bd.estimate with the same
    options on the same file (1e-8: the same starts run in another order)."""
    sim = bd.simulate(markets=5, products=4, firms=2, pricing="bertrand", rng=2,
                      sigma={"x1": 0.5}, draws=40)
    products = sim.products.assign(cl=sim.products.product_ids + 4 * (sim.products.market_ids % 3),
                                   w12=sim.products.w1 * sim.products.w2)
    products.sample(frac=1, random_state=2).to_csv(tmp_path / "products.csv", index=False)
    assert sim.agents is not None
    sim.agents.to_csv(tmp_path / "agents.csv", index=False)
    spec = SPEC.format(ext="csv").replace('[post]\nelasticities = true\ndiversion = true\n', '[post]\n')
    spec = spec.replace('method = "2s"', 'method = "2s"\nweighting = "clustered"\n'
                        'clusters = "clustering_ids"\nstarts = 2\nworkers = 2')
    spec = spec.replace('columns = ["w1", "w2"]', 'columns = ["w1", "w2", "w12"]')
    spec = spec.replace('[model]', '[columns]\nclustering_ids = "cl"\n[model]')
    (tmp_path / "spec.toml").write_text(spec, encoding="utf-8")
    code, err = _cli(["estimate", str(tmp_path / "spec.toml"), "--output", str(tmp_path / "out"),
                      "--quiet"])
    assert code == 0, err
    saved = load_results(tmp_path / "out" / "results.json")
    data = pd.read_csv(tmp_path / "products.csv").rename(columns={"cl": "clustering_ids"})
    problem = bd.Problem(data, linear="1 + prices + x1 + x2", nonlinear="0 + x1",
                         agents=sim.agents, instruments=["w1", "w2", "w12"])
    config = bd.EstimationConfig(method="2s", weighting="clustered", clusters="clustering_ids",
                                 starts=2, bounds={"sigma[x1, x1]": (0.0, math.inf)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        api = bd.estimate(problem, sigma=[[0.5]], config=config)
    body = api.summary().body
    np.testing.assert_allclose(saved.estimates[body.index], body["estimate"], rtol=1e-8)
    np.testing.assert_allclose(saved.standard_errors[body.index], body["std. error"], rtol=1e-8)
    assert saved.config["weighting"] == "clustered" and saved.config["workers"] == 2
    costs = compute_costs(api)
    np.testing.assert_allclose(saved.tables["costs"].body.loc["marginal costs", "max"],
                               costs.max(), rtol=1e-8)


def test_cli_every_estimation_option_reaches_the_estimator(tmp_path: Path) -> None:
    """Non-default values of every [estimation] option a TOML file can hold (a nested
    [estimation.contraction] table, start = "approximation", hessian = false, bounds of
    [-inf, inf], ...). Reference: bd.estimate with the same EstimationConfig on the same shuffled
    rows (1e-10), and the saved config equals the one given."""
    sim = bd.simulate(markets=5, products=4, firms=2, pricing="bertrand", rng=2,
                      sigma={"x1": 0.5}, draws=40)
    products = sim.products.assign(w12=sim.products.w1 * sim.products.w2)
    products.sample(frac=1, random_state=2).to_csv(tmp_path / "products.csv", index=False)
    assert sim.agents is not None
    sim.agents.to_csv(tmp_path / "agents.csv", index=False)
    options: dict[str, object] = {
        "start": "approximation", "rng": 4, "hessian": False, "on_failure": "raise",
        "center_moments": False, "covariance": "unadjusted", "optimizer": "bfgs", "gtol": 1e-5,
        "max_iterations": 50, "bounds": {"sigma[x1, x1]": (-math.inf, math.inf)}}
    spec = SPEC.format(ext="csv").split("[estimation]")[0].replace(
        'columns = ["w1", "w2"]', 'columns = ["w1", "w2", "w12"]')
    spec += ('[estimation]\nstart = "approximation"\nrng = 4\nhessian = false\n'
             'on_failure = "raise"\ncenter_moments = false\ncovariance = "unadjusted"\n'
             'optimizer = "bfgs"\ngtol = 1e-5\nmax_iterations = 50\n'
             'bounds = {"sigma[x1, x1]" = [-inf, inf]}\n'
             '[estimation.contraction]\ntol = 1e-12\nmethod = "simple"\n')
    (tmp_path / "spec.toml").write_text(spec, encoding="utf-8")
    code, err = _cli(["estimate", str(tmp_path / "spec.toml"), "--output", str(tmp_path / "out"),
                      "--quiet"])
    assert code == 0, err
    saved = load_results(tmp_path / "out" / "results.json")
    problem = bd.Problem(pd.read_csv(tmp_path / "products.csv"), linear="1 + prices + x1 + x2",
                         nonlinear="0 + x1", agents=sim.agents, instruments=["w1", "w2", "w12"])
    config = bd.EstimationConfig(contraction={"tol": 1e-12, "method": "simple"},
                                 **options)  # type: ignore[arg-type]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        api = bd.estimate(problem, sigma=[[0.5]], config=config)
    body = api.summary().body
    np.testing.assert_allclose(saved.estimates[body.index], body["estimate"], rtol=1e-10)
    np.testing.assert_allclose(saved.standard_errors[body.index], body["std. error"], rtol=1e-10)
    assert saved.config["contraction"]["method"] == "simple"
    assert saved.config["contraction"]["tol"] == 1e-12
    assert saved.config["bounds"] == {"sigma[x1, x1]": [-math.inf, math.inf]}
    for key in ("start", "rng", "hessian", "covariance", "optimizer", "center_moments"):
        assert saved.config[key] == options[key]


def test_entry_with_asymmetric_partial_ownership_satisfies_hand_foc() -> None:
    """An incumbent ('f0') holds a 0.6 weight on a new firm's profits, not the reverse (an
    asymmetric kappa), on shuffled logit rows. Reference: the FOC written out by hand,
    s_j + sum_k O_jk (p_k - c_k) ds_k/dp_j = 0 with O_jk = kappa(firm_j, firm_k) and logit
    derivatives ds_k/dp_j = alpha s_j (1{j=k} - s_k) (max |FOC| < 1e-10; the transposed O
    leaves a residual of order 1e-3, so orientation is checked); markets without entrants keep
    their observed prices (1e-12)."""
    sim = bd.simulate(markets=3, products=4, firms=2, pricing="bertrand", rng=11)
    products = sim.products.assign(firm_ids="f" + sim.products.firm_ids.astype(str))
    products = products.sample(frac=1, random_state=0).reset_index(drop=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = bd.estimate_logit(products, linear="1 + prices + x1 + x2",
                                    instruments=["w1", "w2"])
    alpha = float(results.summary().body.loc["prices", "estimate"])
    new = pd.DataFrame({"market_ids": [1, 1], "firm_ids": ["new", "new"], "x1": [0.3, 1.0],
                        "x2": [0.1, 0.0], "costs": [1.5, 1.2]})
    kappa = {("f0", "new"): 0.6}
    cf = bd.simulate_entry(results, new, kappa=kappa)
    markets = np.r_[products.market_ids, new.market_ids]
    firms = np.r_[products.firm_ids, new.firm_ids]
    in_market = markets == 1
    s, p, c, f = cf.shares[in_market], cf.prices[in_market], cf.costs[in_market], firms[in_market]
    ownership = np.array([[1.0 if a == b else kappa.get((a, b), 0.0) for b in f] for a in f])
    jacobian = alpha * (np.diag(s) - np.outer(s, s))
    assert np.abs(s + (ownership * jacobian) @ (p - c)).max() < 1e-10
    assert np.abs(s + (ownership.T * jacobian) @ (p - c)).max() > 1e-4
    others = products.market_ids.to_numpy() != 1
    np.testing.assert_allclose(cf.prices[:len(products)][others],
                               products.prices.to_numpy()[others], rtol=1e-12)


@pytest.mark.parametrize(("ext", "firms"), [("parquet", "[0, 1]"), ("csv", '["0", "1"]')])
def test_cli_merger_firms_read_as_the_firm_column_type(tmp_path: Path, ext: str,
                                                       firms: str) -> None:
    """``merger = {firms = [0, 1]}`` for firm ids stored as strings "0", "1" (Parquet keeps
    them), and ``firms = ["0", "1"]`` for integer ids (CSV parses them), used to fail after the
    estimation ("firm(s) [0, 1] are not in the data's firm_ids"), although the firm_ids = {...}
    form already converted. Reference: simulate_merger on the API's results with ids of the
    column's own type (1e-10)."""
    from blpdemand.results.counterfactual import simulate_merger

    if ext == "parquet":
        pytest.importorskip("pyarrow")
    sim = bd.simulate(markets=4, products=4, firms=3, pricing="bertrand", rng=11)
    products = sim.products.sample(frac=1, random_state=0).reset_index(drop=True)
    if ext == "parquet":
        products = products.assign(firm_ids=products.firm_ids.astype(str))
        products.to_parquet(tmp_path / "products.parquet")
    else:
        products.to_csv(tmp_path / "products.csv", index=False)
    (tmp_path / "spec.toml").write_text(
        f'[data]\nproducts = "products.{ext}"\n[model]\nlinear = "1 + prices + x1 + x2"\n'
        f'[instruments]\ncolumns = ["w1", "w2"]\n[post]\nmerger = {{firms = {firms}}}\n',
        encoding="utf-8")
    code, err = _cli(["logit", str(tmp_path / "spec.toml"), "--output", str(tmp_path / "out"),
                      "--quiet"])
    assert code == 0, err
    saved = load_results(tmp_path / "out" / "results.json")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        api = bd.estimate_logit(products, linear="1 + prices + x1 + x2", instruments=["w1", "w2"])
    ids = ["0", "1"] if ext == "parquet" else [0, 1]
    merged = simulate_merger(api, ids)
    change = saved.post_estimation["merger"]["mean_price_change_percent"]
    np.testing.assert_allclose(change, 100 * np.nanmean(merged.price_changes), rtol=1e-10)
    assert change > 0


def test_cli_market_column_mapping_applies_to_the_agent_file(tmp_path: Path) -> None:
    """``[columns] market_ids = "year"`` with an agent file whose market column is also "year"
    used to fail ("agent data has no column(s) ['market_ids']"), with no way to map it from the
    spec. Reference: bd.estimate with columns={"market_ids": "year"} and the agents' column
    renamed by hand, on the same shuffled files (1e-10)."""
    sim = bd.simulate(markets=4, products=4, firms=2, pricing="bertrand", rng=2,
                      sigma={"x1": 0.5}, draws=40)
    assert sim.agents is not None
    products = sim.products.rename(columns={"market_ids": "year"}).assign(
        w12=sim.products.w1 * sim.products.w2).sample(frac=1, random_state=4)
    agents = sim.agents.rename(columns={"market_ids": "year"}).sample(frac=1, random_state=5)
    products.to_csv(tmp_path / "products.csv", index=False)
    agents.to_csv(tmp_path / "agents.csv", index=False)
    spec = SPEC.format(ext="csv").split("[estimation]")[0].replace(
        'columns = ["w1", "w2"]', 'columns = ["w1", "w2", "w12"]').replace(
        "[model]", '[columns]\nmarket_ids = "year"\n[model]')
    (tmp_path / "spec.toml").write_text(spec + "[post]\nelasticities = true\nmarket = 2\n",
                                        encoding="utf-8")
    code, err = _cli(["estimate", str(tmp_path / "spec.toml"), "--output", str(tmp_path / "out"),
                      "--quiet"])
    assert code == 0, err
    saved = load_results(tmp_path / "out" / "results.json")
    problem = bd.Problem(pd.read_csv(tmp_path / "products.csv"), linear="1 + prices + x1 + x2",
                         nonlinear="0 + x1", columns={"market_ids": "year"},
                         agents=pd.read_csv(tmp_path / "agents.csv").rename(
                             columns={"year": "market_ids"}), instruments=["w1", "w2", "w12"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        api = bd.estimate(problem, sigma=[[0.5]])
    body = api.summary().body
    np.testing.assert_allclose(saved.estimates[body.index], body["estimate"], rtol=1e-10)
    np.testing.assert_allclose(saved.tables["elasticities_market_2"].body.to_numpy(dtype=float),
                               compute_elasticities(api).table(2).body.to_numpy(dtype=float),
                               rtol=1e-10)


def test_simulate_refuses_a_characteristic_named_costs_under_bertrand() -> None:
    """With pricing="bertrand" the marginal costs are written to a 'costs' column; a
    characteristic named 'costs' in beta was silently overwritten by them, so the returned data
    no longer matched the truth (delta built from one column, the frame holding another).
    Reference: the rule-priced simulation keeps such a characteristic, and its shares are the
    logit closed form of the returned columns (1e-12)."""
    from blpdemand.errors import SpecificationError

    with pytest.raises(SpecificationError, match="costs"):
        bd.simulate(markets=2, products=3, beta={"1": -0.5, "costs": 1.0}, pricing="bertrand")
    sim = bd.simulate(markets=2, products=3, beta={"1": -0.5, "costs": 1.0}, rng=1)
    frame = sim.products
    delta = -0.5 + frame["costs"] - frame["prices"] + frame["xi"]
    expected = np.exp(delta) / (1 + np.exp(delta).groupby(frame["market_ids"]).transform("sum"))
    np.testing.assert_allclose(frame["shares"], expected, rtol=1e-12)


@pytest.mark.parametrize("arguments", [["--products", "1"], ["--markets", "0"]])
def test_cli_demo_bad_sizes_are_one_line_errors(arguments: list[str]) -> None:
    """``blpdemand demo --products 1`` printed a Python traceback; like estimate and logit it now
    prints one line naming the option and exits with status 2. Reference: the library's own
    SpecificationError message for the same values (bd.simulate / run_demo)."""
    code, err = _cli(["demo", *arguments])
    assert code == 2
    assert err.startswith("blpdemand demo: error: ") and "Traceback" not in err
    assert arguments[0].removeprefix("--") + "=" in err and len(err.strip().splitlines()) == 1


def test_results_tables_with_nullable_columns_load_back(tmp_path: Path) -> None:
    """A table with pandas' nullable Int64 / Float64 / boolean columns holding pd.NA was saved
    (NA written as the string '<NA>') but load_results then crashed with "invalid literal for
    int()" (and a boolean NA would have become False). Reference: the table as built here;
    values, dtypes and the LaTeX/HTML renderings come back equal."""
    body = pd.DataFrame({"n": pd.array([1, None, 3], dtype="Int64"),
                         "f": pd.array([1.5, None, -np.inf], dtype="Float64"),
                         "b": pd.array([True, None, False], dtype="boolean"),
                         "x": [0.5, np.nan, 2.0]}, index=pd.Index(["a", "b", "c"], name="row"))
    table = Table(title="nullable", body=body)
    p = pd.DataFrame({"group": ["beta"], "estimate": [1.0], "std_error": [np.nan]},
                     index=pd.Index(["prices"]))
    path = save_results(SavedResults(kind="logit", parameters=p), tmp_path / "r.json",
                        tables={"nullable": table})
    loaded = load_results(path).tables["nullable"]
    pd.testing.assert_frame_equal(loaded.body, body)
    assert loaded.to_latex() == table.to_latex() and loaded.to_html() == table.to_html()


def test_entry_from_truth_on_shuffled_products_and_agents() -> None:
    """Random coefficients on prices and x1, the simulation's own parameters, products and
    agents shuffled. References: the incumbents' implied marginal costs equal the simulator's
    true costs row for row in the shuffled order (1e-10: prices are the Bertrand equilibrium of
    exactly this demand), and the entry equilibrium equals the unshuffled one (1e-12)."""
    import dataclasses

    from blpdemand.results.counterfactual import fitted_from_truth

    sim = bd.simulate(markets=3, products=4, firms=2, pricing="bertrand", rng=2,
                      sigma={"prices": 0.3, "x1": 1.0}, draws=200)
    assert sim.agents is not None
    order = np.random.default_rng(0).permutation(len(sim.products))
    shuffled = dataclasses.replace(
        sim, products=sim.products.iloc[order].reset_index(drop=True),
        agents=sim.agents.sample(frac=1, random_state=1).reset_index(drop=True))
    new = pd.DataFrame({"market_ids": [1, 2], "firm_ids": [0, 9], "x1": [0.5, -0.3],
                        "x2": [0.0, 1.0], "costs": [2.0, 1.5], "xi": [0.1, -0.1]})
    sorted_cf = bd.simulate_entry(fitted_from_truth(sim), new)
    cf = bd.simulate_entry(fitted_from_truth(shuffled), new)
    N = len(order)
    np.testing.assert_allclose(cf.costs[:N], shuffled.products["costs"], rtol=1e-10)
    np.testing.assert_allclose(cf.prices[:N][np.argsort(order)], sorted_cf.prices[:N], rtol=1e-12)
    np.testing.assert_allclose(cf.prices[N:], sorted_cf.prices[N:], rtol=1e-12)
