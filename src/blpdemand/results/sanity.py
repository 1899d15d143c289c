"""Is an estimate usable for post-estimation, and are its economics sane?

Usable: delta must solve s_jt(delta_t; theta) = S_jt in every market t (the contraction
converged there) and delta, beta, theta and xi must be finite; otherwise elasticities, costs
and counterfactuals would be numbers computed from an unconverged inner loop.

Sane (Nevo 2001; Conlon and Gortmaker 2020, section 6): own-price elasticities
epsilon_jj = (ds_j/dp_j) p_j / s_j < 0, marginal costs c_j = p_j - eta_j >= 0 and Lerner indices
L_j = (p_j - c_j) / p_j <= 1 (equivalent to c_j >= 0 when p_j > 0), and consumers with a
negative price coefficient alpha_i (else profits rise without bound in price and no
Bertrand-Nash equilibrium need exist). Violations are counted with their worst products.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from blpdemand._types import AnyArray, FloatArray
from blpdemand.errors import ConvergenceError, EconomicWarning
from blpdemand.model.demand import market_demands
from blpdemand.model.fitted import FittedDemand
from blpdemand.results.tables import Table

SHARE_TOLERANCE = 1e-6  # max |log s(delta) - log S| of a market whose contraction converged


# ---------------------------------------------------------------- usable estimates
def usable_fitted(results: Any) -> FittedDemand:
    """The FittedDemand of ``results`` (or ``results`` itself), checked usable.

    Raises ConvergenceError naming the markets where the contraction failed at the estimate
    (``results.failed_markets``; else, after any contraction failure, the markets where
    s(delta; theta) misses the observed shares by more than SHARE_TOLERANCE in logs) or where
    delta or xi is not finite, and when beta or theta is not finite.
    """
    fitted = getattr(results, "fitted", results)
    if not isinstance(fitted, FittedDemand):
        raise TypeError("expected estimation results or a FittedDemand, "
                        f"got {type(results).__name__}")
    problem = fitted.problem
    markets = problem.products.markets
    failed = getattr(results, "failed_markets", None) if results is not fitted else None
    if failed is not None and np.asarray(failed).size:
        _raise_failed(_ids(np.asarray(failed)), "the contraction did not converge there")
    bad = ~np.isfinite(np.asarray(fitted.delta, dtype=np.float64))
    xi = getattr(results, "xi", None) if results is not fitted else None
    if xi is not None and np.shape(xi) == (problem.N,):
        bad |= ~np.isfinite(problem.products.sort(np.asarray(xi, dtype=np.float64)))
    if bad.any():
        _raise_failed(_ids(markets.ids[np.unique(markets.codes[bad])]),
                      "delta or xi is not finite there")
    for name, values in (("theta", fitted.theta), ("beta", fitted.beta)):
        if not np.all(np.isfinite(values)):
            raise ConvergenceError(
                f"the estimate's {name} is not finite ({np.asarray(values).tolist()[:6]}): the "
                "inner loop or the linear IV step failed at the estimate, so post-estimation "
                "has nothing to compute from; re-estimate (another start, tighter bounds)")
    if failed is None and getattr(results, "contraction_failures", 0) > 0:
        # results that do not record failed markets: check that delta gives the shares
        missed = [t for t, d in enumerate(market_demands(fitted))
                  if _share_error(d.shares(), problem.products.shares[markets.slice(t)])
                  > SHARE_TOLERANCE]
        if missed:
            _raise_failed(_ids(markets.ids[missed]),
                          "delta there does not reproduce the observed shares")
    return fitted


def _share_error(predicted: FloatArray, observed: FloatArray) -> float:
    """max_j |log s_j(delta) - log S_j| (inf where a predicted share is 0 or not finite)."""
    with np.errstate(all="ignore"):
        error = np.abs(np.log(predicted) - np.log(observed))
    return float(np.max(np.where(np.isfinite(error), error, np.inf), initial=0.0))


def _ids(values: AnyArray) -> list[Any]:
    return list(np.asarray(values).tolist())


def _raise_failed(markets: list[Any], why: str) -> None:
    more = f" and {len(markets) - 10} more" if len(markets) > 10 else ""
    raise ConvergenceError(
        f"the contraction failed at the estimate in {len(markets)} market(s) {markets[:10]}{more} "
        f"({why}): elasticities, costs and counterfactuals would come from mean utilities that "
        "do not solve s(delta; theta) = S; re-estimate (another start, tighter parameter bounds, "
        "a larger contraction max_evaluations) before post-estimation")


# ---------------------------------------------------------------- economic checks
@dataclass(frozen=True, slots=True)
class EconomicCheck:
    """One economic rule: how many units (products or markets) break it, and the worst.

    Attributes
    ----------
    name : what is wrong (e.g. "positive own-price elasticities"); rule : what should hold.
    count : units breaking the rule, of ``total`` checked (``unit``: "products" or "markets").
    worst : up to ``top`` rows (market, product, value), worst first.
    hint : the likely cause and what to try.
    """

    name: str
    rule: str
    count: int
    total: int
    unit: str
    worst: pd.DataFrame
    hint: str

    @property
    def passed(self) -> bool:
        return self.count == 0

    def message(self) -> str:
        """One line: the count, the worst units and the hint."""
        shown = "; ".join(f"market {_plain(m)!r} product {_plain(p)!r}: {v:.4g}"
                          if p is not None else f"market {_plain(m)!r}: {v:.4g}"
                          for m, p, v in self.worst.itertuples(index=False))
        return (f"{self.name}: {self.count} of {self.total} {self.unit} break {self.rule} "
                f"(worst: {shown}); {self.hint}")

    def warn(self, *, stacklevel: int = 2) -> None:
        """An EconomicWarning with ``message()`` if the rule is broken."""
        if not self.passed:
            warnings.warn(self.message(), EconomicWarning, stacklevel=stacklevel)


@dataclass(frozen=True, slots=True)
class EconomicChecks:
    """Economic sanity of estimates: one EconomicCheck per rule (see ``check_economics``)."""

    checks: tuple[EconomicCheck, ...]

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def __getitem__(self, name: str) -> EconomicCheck:
        for check in self.checks:
            if check.name == name:
                return check
        raise KeyError(f"no check {name!r}; checks: {[c.name for c in self.checks]}")

    def to_frame(self) -> pd.DataFrame:
        """One row per rule: count, total, share (%), worst value, its market and product."""
        body = pd.DataFrame({
            "rule": [c.rule for c in self.checks],
            "count": [c.count for c in self.checks],
            "of": [c.total for c in self.checks],
            "unit": [c.unit for c in self.checks],
            "share (%)": [100 * c.count / max(c.total, 1) for c in self.checks],
            "worst": [float(c.worst["value"].iloc[0]) if len(c.worst) else np.nan
                      for c in self.checks],
            "worst market": np.array([_plain(c.worst["market"].iloc[0]) if len(c.worst)
                                      else None for c in self.checks], dtype=object),
            "worst product": np.array([_plain(c.worst["product"].iloc[0]) if len(c.worst)
                                       else None for c in self.checks], dtype=object)},
            index=pd.Index([c.name for c in self.checks], name="check"))
        return body

    def table(self) -> Table:
        """``to_frame`` as a Table, the failing checks' messages in the notes."""
        notes = tuple(c.message() for c in self.checks if not c.passed) or ("all checks passed",)
        return Table(title="Economic sanity checks", body=self.to_frame(), notes=notes)

    def warn(self, *, stacklevel: int = 2) -> None:
        """One EconomicWarning per failing check."""
        for check in self.checks:
            check.warn(stacklevel=stacklevel + 1)


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python value (for messages and tables)."""
    return value.item() if isinstance(value, np.generic) else value


def _check(name: str, rule: str, bad: Any, values: FloatArray, markets: AnyArray,
           products: AnyArray | None, *, largest: bool, top: int, hint: str,
           unit: str = "products") -> EconomicCheck:
    """An EconomicCheck over units with ``values``; ``bad`` flags the breaking ones, ranked by
    value (largest first if ``largest``, else smallest first)."""
    flagged = np.flatnonzero(np.asarray(bad, dtype=bool))
    ranked = flagged[np.argsort(-values[flagged] if largest else values[flagged], kind="stable")]
    chosen = ranked[:top]
    worst = pd.DataFrame({
        "market": pd.Series(np.asarray(markets)[chosen], dtype=object),
        "product": pd.Series(None if products is None else np.asarray(products)[chosen],
                             index=range(chosen.size), dtype=object),
        "value": values[chosen].astype(np.float64)})
    return EconomicCheck(name=name, rule=rule, count=int(flagged.size), total=int(values.size),
                         unit=unit, worst=worst, hint=hint)


def _labels(fitted: FittedDemand) -> tuple[AnyArray, AnyArray]:
    """(N,) market ids and product labels (product_ids, else position in the market), user order."""
    products = fitted.problem.products
    markets = products.markets
    labels = (products.array("product_ids") if products.has("product_ids")
              else np.arange(products.N) - markets.offsets[markets.codes])
    return products.unsort(markets.ids[markets.codes]), products.unsort(labels)


def elasticity_check(fitted: FittedDemand, own: FloatArray, *, top: int = 5) -> EconomicCheck:
    """Own-price elasticities (N,) (user order) must be negative."""
    markets, products = _labels(fitted)
    with np.errstate(invalid="ignore"):
        bad = ~(own < 0)
    return _check("positive own-price elasticities", "epsilon_jj < 0", bad, own, markets,
                  products, largest=True, top=top,
                  hint="demand rises with the product's own price there: some consumers' price "
                       "coefficient alpha_i is non-negative (check sigma and pi on prices)")


def cost_checks(fitted: FittedDemand, costs: FloatArray, prices: FloatArray, *,
                top: int = 5) -> tuple[EconomicCheck, EconomicCheck]:
    """Marginal costs c (N,) must be non-negative and Lerner indices (p - c) / p at most one
    (user order)."""
    markets, products = _labels(fitted)
    hint = ("the estimated demand is too inelastic for the observed prices to maximize profits "
            "at non-negative costs (check the price coefficient, its instruments and the "
            "ownership)")
    with np.errstate(all="ignore"):
        lerner = (prices - costs) / prices
        negative, above = ~(costs >= 0), ~(lerner <= 1)
    return (_check("negative marginal costs", "c_j = p_j - eta_j >= 0", negative, costs, markets,
                   products, largest=False, top=top, hint=hint),
            _check("Lerner index above one", "(p_j - c_j) / p_j <= 1", above, lerner, markets,
                   products, largest=True, top=top, hint=hint))


def price_coefficient_check(fitted: FittedDemand, *, top: int = 5) -> EconomicCheck:
    """Markets where some consumer with positive weight has alpha_i >= 0 (value: max alpha_i)."""
    demands = market_demands(fitted)
    highest = np.array([float(np.max(d.alpha[d.weights > 0], initial=-np.inf)) for d in demands])
    ids = fitted.problem.products.markets.ids
    return _check("consumers with a non-negative price coefficient", "alpha_i < 0",
                  highest >= 0, highest, ids, None, largest=True, top=top, unit="markets",
                  hint="their demand does not fall with price, so consumer surplus is undefined "
                       "and no Bertrand-Nash equilibrium need exist there (counterfactual prices "
                       "are capped and may fail)")


def observed_prices(fitted: FittedDemand) -> FloatArray:
    """(N,) the prices in the model (user order)."""
    demands = market_demands(fitted)
    return fitted.problem.products.unsort(np.concatenate([d.prices for d in demands]))


def warns(results: Any) -> bool:
    """Whether the API warns about ``results``: estimation results yes; a bare FittedDemand
    (bootstrap draws, simulated truth) is checked on request only (``check_economics``)."""
    return not isinstance(results, FittedDemand)
