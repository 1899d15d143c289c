"""Nevo (2000) cereal data, plain logit with product fixed effects absorbed, against PyBLP.

Reference: PyBLP 1.3.0 run live on the same data,
pyblp.Problem(pyblp.Formulation('0 + prices', absorb='C(product_ids)'), products).solve(...).
PyBLP centers the moments in S by default (center_moments=True), so we pass the same option.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from blpdemand.results.logit import estimate_logit

INSTRUMENTS = [f"demand_instruments{k}" for k in range(20)]


def _pyblp(products: pd.DataFrame, method: str, center: bool):
    pyblp = pytest.importorskip("pyblp")
    pyblp.options.verbose = False
    with np.errstate(all="ignore"):
        problem = pyblp.Problem(pyblp.Formulation("0 + prices", absorb="C(product_ids)"), products)
        return problem.solve(method=method, center_moments=center)


@pytest.mark.parametrize("center", [True, False])
def test_one_step_matches_pyblp(nevo_products: pd.DataFrame, center: bool) -> None:
    reference = _pyblp(nevo_products, "1s", center)
    ours = estimate_logit(nevo_products, linear="prices", absorb="C(product_ids)",
                          instruments=INSTRUMENTS, method="gmm", center_moments=center)
    # tolerance 1e-8 relative: same estimator, different linear algebra
    assert ours.params["prices"] == pytest.approx(float(reference.beta[0, 0]), rel=1e-8)
    assert ours.bse["prices"] == pytest.approx(float(reference.beta_se[0, 0]), rel=1e-8)
    twosls = estimate_logit(nevo_products, linear="prices", absorb="C(product_ids)",
                            instruments=INSTRUMENTS, center_moments=center)
    assert twosls.params["prices"] == pytest.approx(ours.params["prices"], rel=1e-12)


def test_two_step_matches_pyblp(nevo_products: pd.DataFrame) -> None:
    reference = _pyblp(nevo_products, "2s", True)
    ours = estimate_logit(nevo_products, linear="prices", absorb="C(product_ids)",
                          instruments=INSTRUMENTS, method="2s-gmm", center_moments=True)
    # tolerance 1e-7 relative: the two-step weighting matrix is inverted differently
    assert ours.params["prices"] == pytest.approx(float(reference.beta[0, 0]), rel=1e-7)
    assert ours.bse["prices"] == pytest.approx(float(reference.beta_se[0, 0]), rel=1e-7)
    # Hansen J: PyBLP's objective at the second step is N g'Wg with the same W
    assert ours.j_statistic == pytest.approx(float(reference.objective), rel=1e-6)
