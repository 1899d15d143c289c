"""Consumer surplus of a nested logit against PyBLP, run live at the same estimates.

Reference: PyBLP 1.3.0 on Nevo's cereal data with nests = mushy (its nested logit tutorial's
specification), evaluated at our rho (Optimization('return')): compute_consumer_surpluses at the
observed prices and at prices 10% higher. CS_t = log(1 + sum_g D_g^{1 - rho}) / -alpha; the
two tools compute it from the same estimates, so they agree to rounding (rel 1e-10).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import blpdemand as bd

pyblp = pytest.importorskip("pyblp")

INSTRUMENTS = [f"demand_instruments{k}" for k in range(21)]


@pytest.fixture(scope="module")
def products(nevo_nested_products: pd.DataFrame) -> pd.DataFrame:
    return nevo_nested_products


def test_nested_consumer_surplus_equals_pyblps(products: pd.DataFrame) -> None:
    ours = bd.estimate_logit(products, linear="0 + prices", instruments=INSTRUMENTS,
                             nesting="nesting_ids")
    rho = float(ours.params["rho"])
    pyblp.options.verbose = False
    with np.errstate(all="ignore"):
        problem = pyblp.Problem(pyblp.Formulation("0 + prices"), products)
        theirs = problem.solve(rho=rho, method="1s", optimization=pyblp.Optimization("return"))
    assert float(theirs.beta.ravel()[0]) == pytest.approx(ours.alpha, rel=1e-10)
    np.testing.assert_allclose(bd.compute_consumer_surplus(ours),
                               np.asarray(theirs.compute_consumer_surpluses()).ravel(),
                               rtol=1e-10)
    higher = 1.1 * products["prices"].to_numpy()
    with np.errstate(all="ignore"):
        expected = np.asarray(theirs.compute_consumer_surpluses(prices=higher)).ravel()
    np.testing.assert_allclose(bd.compute_consumer_surplus(ours, prices=higher), expected,
                               rtol=1e-10)
    assert np.all(bd.compute_consumer_surplus(ours, prices=higher)
                  < bd.compute_consumer_surplus(ours))
