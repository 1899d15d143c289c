"""The built-in demo: simulated cars-like markets, from the logit to BLP to a merger.

1. Logit: prices rise with the unobserved quality xi (endogeneity), so OLS estimates of the
   price coefficient are biased toward zero; instrumenting prices with cost shifters removes
   the bias.
2. BLP: markets with a random coefficient on horsepower and Bertrand-Nash equilibrium prices,
   estimated with scrambled Sobol draws and cost-shifter plus differentiation instruments
   (Gandhi and Houde 2019); estimates beside the truth.
3. Merger: firms 0 and 1 merge; the Bertrand-Nash counterfactual under the true demand, the IV
   logit and BLP (price changes, consumer surplus).
4. Demand and supply together: the same markets' true log marginal costs,
   log c = gamma_0 + w' gamma + omega with omega correlated with xi, estimated jointly with
   demand (the price coefficient through a constant demographic, the logit's as its start);
   estimates beside the truth and the demand-only standard errors.

Everything is computed in memory (no files) in a few seconds. Library code never prints: the
report holds Tables and lines, and the CLI renders them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from blpdemand.errors import SpecificationError
from blpdemand.instruments.differentiation import build_differentiation_instruments
from blpdemand.integration.rule import Integration
from blpdemand.model.problem import Problem
from blpdemand.model.simulation import SimulatedMarkets, simulate
from blpdemand.results.blp import BLPResults, estimate
from blpdemand.results.costs import compute_costs
from blpdemand.results.counterfactual import (
    Counterfactual,
    fitted_from_truth,
    merger_comparison,
    simulate_merger,
)
from blpdemand.results.elasticities import compute_elasticities
from blpdemand.results.logit import LogitResults, estimate_logit
from blpdemand.results.tables import Table

DEMO_BETA = {"1": -2.0, "hp": 1.0, "size": 0.5, "mpg": -0.3}
DEMO_SIGMA = {"hp": 1.0}
SOBOL_DRAWS = 200
SIMULATION_DRAWS = 500
MERGING = (0, 1)


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoSection:
    """One part of the demo: a heading, its tables and lines of text shown after them."""

    heading: str
    tables: tuple[Table, ...]
    lines: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoReport:
    """What the demo computed: the simulations, the fits, the counterfactual and the tables.

    Attributes
    ----------
    simulation, ols, iv, comparison : part 1, the pure logit (OLS vs IV against the truth).
    rc_simulation, rc_iv, blp, blp_comparison : part 2, random coefficients and Bertrand prices.
    merger, counterfactual : part 3, the merger of firms ``MERGING`` (a Table under the truth,
        the IV logit and BLP; the BLP Counterfactual).
    joint, joint_comparison : part 4, demand and supply estimated together, and its table.
    timings : seconds per part (not part of the tables, so reports are reproducible).
    """

    simulation: SimulatedMarkets = field(repr=False)
    ols: LogitResults = field(repr=False)
    iv: LogitResults = field(repr=False)
    comparison: Table = field(repr=False)
    rc_simulation: SimulatedMarkets = field(repr=False)
    rc_iv: LogitResults = field(repr=False)
    blp: BLPResults = field(repr=False)
    blp_comparison: Table = field(repr=False)
    merger: Table = field(repr=False)
    counterfactual: Counterfactual = field(repr=False)
    merger_lines: tuple[str, ...] = ()
    joint: BLPResults | None = field(repr=False, default=None)
    joint_comparison: Table | None = field(repr=False, default=None)
    timings: dict[str, float] = field(default_factory=dict, compare=False)

    @property
    def sections(self) -> tuple[DemoSection, ...]:
        """The parts in display order (the timings close the last one)."""
        parts = [
            DemoSection(heading="1. Logit demand: OLS vs IV",
                        tables=(self.comparison, self.ols.summary(), self.iv.summary())),
            DemoSection(heading="2. Random coefficients (BLP) with Bertrand-Nash prices",
                        tables=(self.blp_comparison,)),
            DemoSection(heading=f"3. Merger of firms {list(MERGING)}",
                        tables=(self.merger, self.counterfactual.overview()),
                        lines=self.merger_lines),
        ]
        if self.joint_comparison is not None:
            parts.append(DemoSection(heading="4. Demand and supply together",
                                     tables=(self.joint_comparison,)))
        if self.timings:
            seconds = ", ".join(f"{k} {v:.1f} s" for k, v in self.timings.items())
            last = parts[-1]
            parts[-1] = DemoSection(heading=last.heading, tables=last.tables,
                                    lines=(*last.lines, f"time: {seconds}"))
        return tuple(parts)

    @property
    def tables(self) -> tuple[Table, ...]:
        """Every table in display order."""
        return tuple(t for s in self.sections for t in s.tables)

    @property
    def alpha(self) -> tuple[float, float, float]:
        """Part 1: (truth, OLS, IV) price coefficients."""
        return (float(self.simulation.truth["alpha"]), float(self.ols.params["prices"]),
                float(self.iv.params["prices"]))


def run_demo(*, markets: int = 100, products: int = 20, rng: int = 0) -> DemoReport:
    """Simulate ``markets`` x ``products`` car-like markets; logit, BLP and a merger.

    The same ``rng`` gives the same numbers (simulation, Sobol draws and estimates).

    Examples
    --------
    >>> report = run_demo(markets=20, products=5)
    >>> truth, ols, iv = report.alpha
    >>> abs(iv - truth) < abs(ols - truth)
    True
    """
    if products < 2:
        raise SpecificationError(f"products={products}: the demo's merger needs at least 2 "
                                 "products (and firms) per market")
    timings: dict[str, float] = {}
    start = time.perf_counter()
    sim, ols, iv, comparison = _logit_part(markets, products, rng)
    timings["logit"] = time.perf_counter() - start

    start = time.perf_counter()
    rc_sim, data, instruments = _rc_simulation(markets, products, rng)
    rc_iv = estimate_logit(data, linear=rc_sim.linear, instruments=instruments)
    problem = Problem(data, linear=rc_sim.linear, nonlinear=rc_sim.nonlinear,
                      agents=Integration("sobol", SOBOL_DRAWS, rng=rng, per_market=True),
                      instruments=instruments)
    blp = estimate(problem, sigma=[0.5 * v for v in DEMO_SIGMA.values()])
    blp_comparison = _blp_table(rc_sim, rc_iv, blp, instruments)
    timings["BLP"] = time.perf_counter() - start

    start = time.perf_counter()
    truth = fitted_from_truth(rc_sim)
    merger = merger_comparison({"truth": truth, "IV logit": rc_iv, "BLP": blp}, list(MERGING))
    counterfactual = simulate_merger(blp, list(MERGING))
    true_costs = rc_sim.products["costs"].to_numpy()
    errors = {label: float(np.mean(np.abs(compute_costs(model) - true_costs)))
              for label, model in (("IV logit", rc_iv), ("BLP", blp))}
    merger_lines = (
        "marginal costs implied by each demand estimate vs the simulation's true costs: mean "
        "|c_hat - c| " + ", ".join(f"{k} {v:.4f}" for k, v in errors.items())
        + f" (mean true cost {true_costs.mean():.3f})",
    )
    timings["merger"] = time.perf_counter() - start

    start = time.perf_counter()
    joint = _joint(rc_sim, data, instruments, rc_iv, rng)
    joint_comparison = _joint_table(rc_sim, blp, joint)
    timings["demand and supply"] = time.perf_counter() - start
    return DemoReport(simulation=sim, ols=ols, iv=iv, comparison=comparison, rc_simulation=rc_sim,
                      rc_iv=rc_iv, blp=blp, blp_comparison=blp_comparison, merger=merger,
                      counterfactual=counterfactual, merger_lines=merger_lines, joint=joint,
                      joint_comparison=joint_comparison, timings=timings)


def _logit_part(markets: int, products: int,
                rng: int) -> tuple[SimulatedMarkets, LogitResults, LogitResults, Table]:
    """Pure logit markets with price_rule prices; OLS and IV (cost shifters) fits."""
    sim = simulate(markets=markets, products=products, firms=max(1, min(6, products)),
                   beta=DEMO_BETA, alpha=-1.0, rho=1.0, rng=rng)
    ols = estimate_logit(sim.products, linear=sim.linear, method="ols")
    iv = estimate_logit(sim.products, linear=sim.linear, instruments=list(sim.instruments))
    truth = {"prices": sim.truth["alpha"], **sim.truth["beta"]}
    names = list(iv.names)
    body = pd.DataFrame({"truth": [truth[n] for n in names],
                         "OLS": ols.params[names].to_numpy(),
                         "OLS s.e.": ols.bse[names].to_numpy(),
                         "IV": iv.params[names].to_numpy(),
                         "IV s.e.": iv.bse[names].to_numpy()}, index=pd.Index(names))
    data = sim.products
    true_elasticity = float(np.mean(sim.truth["alpha"] * data["prices"] * (1 - data["shares"])))
    t, o, i = truth["prices"], ols.params["prices"], iv.params["prices"]
    direction = "toward zero" if abs(o) < abs(t) else "away from zero"
    notes = (
        f"{markets} markets x {products} products; prices rise with the unobserved quality xi",
        (f"price coefficient: truth {t:.3f}, OLS {o:.3f} (bias {o - t:+.3f}, {direction}), "
        f"IV {i:.3f} (bias {i - t:+.3f})"),
        (f"mean own-price elasticity: truth {true_elasticity:.3f}, "
        f"OLS {ols.own_price_elasticities().mean():.3f}, "
        f"IV {iv.own_price_elasticities().mean():.3f}"),
        f"IV: instruments {', '.join(sim.instruments)} (cost shifters); first-stage F "
        f"{iv.first_stage['prices'].f_statistic:.1f}" if iv.first_stage else "",
    )
    comparison = Table(title="Logit demand on simulated data: OLS vs IV against the truth",
                       body=body, notes=tuple(n for n in notes if n))
    return sim, ols, iv, comparison


def _rc_simulation(markets: int, products: int,
                   rng: int) -> tuple[SimulatedMarkets, pd.DataFrame, list[str]]:
    """Markets with a random coefficient on hp, Bertrand-Nash prices, and the instruments:
    cost shifters plus quadratic differentiation instruments of the exogenous characteristics."""
    sim = simulate(markets=markets, products=products, firms=max(2, min(6, products)),
                   beta=DEMO_BETA, alpha=-1.0, sigma=DEMO_SIGMA, rho=1.0,
                   draws=SIMULATION_DRAWS, rng=rng, pricing="bertrand")
    characteristics = " + ".join(n for n in DEMO_BETA if n != "1")
    differentiation = build_differentiation_instruments(sim.products, characteristics,
                                                        version="quadratic")
    # own-firm sums are all zero when every firm has one product per market: drop those
    differentiation = differentiation.loc[:, differentiation.std(axis=0) > 0]
    data = pd.concat([sim.products, differentiation], axis=1)
    return sim, data, [*sim.instruments, *differentiation.columns]


def _blp_table(sim: SimulatedMarkets, iv: LogitResults, blp: BLPResults,
               instruments: list[str]) -> Table:
    """BLP and IV logit estimates beside the truth, with BLP's distance in standard errors."""
    truth = {"prices": sim.truth["alpha"], **sim.truth["beta"]}
    truth.update({f"sigma[{n}, {n}]": v for n, v in sim.truth["sigma"].items()})
    names = list(blp.names)
    logit = iv.params
    body = pd.DataFrame({
        "truth": [truth[n] for n in names],
        "IV logit": [float(logit[n]) if n in logit.index else np.nan for n in names],
        "BLP": blp.estimates, "BLP s.e.": blp.standard_errors,
        "(BLP - truth) / s.e.": (blp.estimates - np.array([truth[n] for n in names]))
        / blp.standard_errors}, index=pd.Index(names))
    own = {label: float(np.mean(compute_elasticities(model).diagonal()))
           for label, model in (("truth", fitted_from_truth(sim)), ("IV logit", iv),
                                ("BLP", blp))}
    T, J = sim.products["market_ids"].nunique(), int(sim.products.shape[0] // max(
        1, sim.products["market_ids"].nunique()))
    notes = (
        (f"{T} markets x {J} products; random coefficient on hp (sd "
         f"{DEMO_SIGMA['hp']}); prices are the Bertrand-Nash equilibrium given true costs"),
        (f"BLP: {SOBOL_DRAWS} scrambled Sobol draws per market; instruments: "
         f"{len(instruments)} (cost shifters {', '.join(sim.instruments)} + Gandhi-Houde "
         "quadratic differentiation instruments)"),
        (f"BLP objective {blp.objective:.4g}, gradient inf-norm {blp.gradient_norm:.2g}, "
         f"{'converged' if blp.converged else 'NOT converged'}"),
        "mean own-price elasticity: " + ", ".join(f"{k} {v:.3f}" for k, v in own.items()),
        "the IV logit has no random coefficient: its hp coefficient mixes mean and spread",
    )
    return Table(title="BLP on simulated data: estimates against the truth", body=body,
                 notes=notes)


def _joint(sim: SimulatedMarkets, data: pd.DataFrame, instruments: list[str],
           logit: LogitResults, rng: int) -> BLPResults:
    """Demand and the true log-cost supply side estimated together: X3 = 1 + w, the demand
    characteristics as excluded supply instruments, the price coefficient as Pi on a constant
    demographic started at the IV logit's."""
    assert sim.supply is not None
    census = pd.DataFrame({"market_ids": data["market_ids"].unique(), "one": 1.0})
    linear = " + ".join(n for n in DEMO_BETA)
    problem = Problem(data, linear=linear, nonlinear="0 + hp + prices", demographics="0 + one",
                      agents=Integration("sobol", SOBOL_DRAWS, rng=rng, per_market=True,
                                         demographics_data=census),
                      instruments=instruments, supply=sim.supply,
                      supply_instruments=[n for n in DEMO_BETA if n != "1"], costs="log")
    alpha = float(logit.params["prices"])
    return estimate(problem, sigma=np.diag([0.5 * DEMO_SIGMA["hp"], 0.0]), pi=[[0.0], [alpha]])


def _joint_table(sim: SimulatedMarkets, demand: BLPResults, joint: BLPResults) -> Table:
    """Joint estimates beside the truth and the demand-only BLP estimates."""
    truth = {"prices": sim.truth["alpha"], **sim.truth["beta"],
             "gamma[1]": sim.truth["gamma0"],
             **{f"gamma[{n}]": v for n, v in sim.truth["gamma"].items()}}
    truth.update({f"sigma[{n}, {n}]": v for n, v in sim.truth["sigma"].items()})
    rename = {"pi[prices, one]": "prices"}  # the price coefficient, a constant demographic's
    names = [rename.get(n, n) for n in joint.names if n != "sigma[prices, prices]"]
    joint_values = pd.Series(joint.estimates, index=[rename.get(n, n) for n in joint.names])
    joint_se = pd.Series(joint.standard_errors, index=joint_values.index)
    demand_values = pd.Series(demand.estimates, index=list(demand.names))
    demand_se = pd.Series(demand.standard_errors, index=list(demand.names))
    body = pd.DataFrame({
        "truth": [truth[n] for n in names],
        "demand only": demand_values.reindex(names).to_numpy(),
        "s.e.": demand_se.reindex(names).to_numpy(),
        "joint": joint_values[names].to_numpy(), "joint s.e.": joint_se[names].to_numpy(),
        "(joint - truth) / s.e.": ((joint_values[names] - pd.Series(truth)[names])
                                   / joint_se[names]).to_numpy()}, index=pd.Index(names))
    omega, xi = sim.products["omega"].to_numpy(), sim.products["xi"].to_numpy()
    notes = (
        ("true costs: log c = gamma_0 + w' gamma + omega; corr(xi, omega) = "
         f"{np.corrcoef(xi, omega)[0, 1]:.2f}; supply instruments: the demand characteristics"),
        (f"joint GMM over the demand and supply moments: objective {joint.objective:.4g}, "
         f"{'converged' if joint.converged else 'NOT converged'}; the price coefficient's "
         f"s.e. {demand_se['prices']:.4f} (demand only) -> {joint_se['prices']:.4f} (joint)"),
    )
    return Table(title="Demand and supply estimated together, against the truth", body=body,
                 notes=notes)
