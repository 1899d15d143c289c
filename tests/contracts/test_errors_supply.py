"""Bad supply-side input gets a clear error naming the column, option or fix."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import blpdemand as bd
from blpdemand.errors import DataError, SpecificationError


def build(**changes: Any) -> bd.Problem:
    sim = bd.simulate(markets=4, products=4, firms=2, sigma={"x1": 1.0}, draws=20,
                      pricing="bertrand", rng=2)
    agents = sim.agents.copy()
    agents["one"] = 1.0
    products = changes.pop("products", sim.products)
    options: dict[str, Any] = {
        "linear": "1 + x1 + x2", "nonlinear": "0 + x1 + prices", "demographics": "0 + one",
        "agents": agents, "instruments": ["w1", "w2"], "supply": "1 + w1 + w2",
        "supply_instruments": ["x1"], "costs": "log"}
    options.update(changes)
    return bd.Problem(products, **options)


def test_a_valid_supply_side_is_built() -> None:
    problem = build(conduct={(0, 1): 0.5})
    assert problem.supply is not None
    assert problem.supply.ZS.names == ("1", "w1", "w2", "x1")
    assert problem.supply.conduct == "bertrand" and problem.supply.kappa == {(0, 1): 0.5}
    assert problem.inputs["supply"] == "1 + w1 + w2" and problem.inputs["costs"] == "log"


@pytest.mark.parametrize(("changes", "error", "names"), [
    ({"costs": "cubic"}, SpecificationError, "costs='cubic'"),
    ({"conduct": "cournot"}, SpecificationError, "conduct='cournot'"),
    ({"linear": "1 + prices + x1"}, SpecificationError, "linear formula"),
    ({"nonlinear": "0 + x1", "demographics": None}, SpecificationError, "'prices'"),
    ({"supply": "1 + w1 + prices"}, SpecificationError, "prices"),
    ({"supply_instruments": ["nope"]}, DataError, "nope"),
    ({"costs_bounds": (1.0, 0.5)}, SpecificationError, "costs_bounds"),
    ({"costs_bounds": "low"}, SpecificationError, "costs_bounds"),
    ({"conduct": {(0, 9): 0.5}}, DataError, r"\[9\]"),
    ({"supply": None}, SpecificationError, "supply_instruments"),
], ids=["costs", "conduct", "prices-in-X1", "no-prices-in-X2", "prices-in-X3", "instrument",
        "bounds-order", "bounds-type", "kappa-firm", "instruments-without-supply"])
def test_bad_supply_input_names_the_culprit(changes: dict[str, Any], error: type,
                                            names: str) -> None:
    with pytest.raises(error, match=names):
        build(**changes)


def test_bertrand_needs_firm_ids_but_monopoly_does_not() -> None:
    sim = bd.simulate(markets=4, products=4, firms=2, sigma={"x1": 1.0}, draws=20,
                      pricing="bertrand", rng=2)
    products = sim.products.drop(columns="firm_ids")
    with pytest.raises(DataError, match="firm_ids"):
        build(products=products)
    problem = build(products=products, conduct="monopoly")
    assert problem.supply is not None and problem.supply.firm_ids is None


def test_supply_needs_random_coefficients() -> None:
    with pytest.raises(SpecificationError, match="random coefficients"):
        build(nonlinear=None, demographics=None, agents=None, instruments=None)
    assert np.isfinite(build().supply.prices).all()  # type: ignore[union-attr]
