"""Contract: ids that differ only in type (1 and '1') in firm or cluster columns raise a
DataError naming the column, instead of silently splitting a firm (other markups, then a
TypeError in simulate_merger) or a cluster (other standard errors).

Reference: the Nevo (2000) cereal data and a small simulation, with every other id written as
text by hand (issue 16, item 5); ids of one type in an object column give the same numbers as the
integer column (1e-12 relative: the same arithmetic).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

import blpdemand as bd
from blpdemand.errors import DataError
from blpdemand.model.simulation import simulate

INSTRUMENTS = [f"demand_instruments{k}" for k in range(20)]


# ---------------------------------------------------------------- ids that differ only in type
def _split_ids(values: pd.Series) -> pd.Series:
    """Every other row's id written as text: 1 and '1' would count as two different ids."""
    out = values.astype(object)
    out.iloc[::2] = [str(v) for v in out.iloc[::2]]
    return out


@pytest.fixture(scope="module")
def nevo(nevo_products: pd.DataFrame) -> pd.DataFrame:
    return nevo_products.assign(city_clusters=nevo_products["city_ids"])


def _logit(products: pd.DataFrame, **kwargs: Any) -> bd.LogitResults:
    return bd.estimate_logit(products, linear="prices", instruments=INSTRUMENTS,
                             absorb="C(product_ids)", **kwargs)


def test_firm_ids_of_mixed_type(nevo: pd.DataFrame) -> None:
    products = nevo.assign(firm_ids=_split_ids(nevo["firm_ids"]))
    with pytest.raises(DataError, match="'firm_ids'"):
        _logit(products)
    with pytest.raises(DataError, match="'firm_ids'"):
        bd.Problem(products, linear="prices", instruments=INSTRUMENTS)


@pytest.mark.filterwarnings("ignore::blpdemand.errors.BLPDemandWarning")  # markups
def test_firm_ids_of_one_type_in_an_object_column(nevo: pd.DataFrame) -> None:
    products = nevo.assign(firm_ids=nevo["firm_ids"].astype(object),
                           product_ids=nevo["product_ids"].astype(object))
    reference = _logit(nevo).markups()
    markups = _logit(products).markups()
    np.testing.assert_allclose(markups, reference, rtol=1e-12)


def test_firm_ids_argument_of_mixed_type(nevo: pd.DataFrame) -> None:
    results = _logit(nevo)
    with pytest.raises(DataError, match="firm_ids"):
        results.markups(firm_ids=_split_ids(nevo["firm_ids"]).to_numpy())


def test_logit_cluster_column_of_mixed_type(nevo: pd.DataFrame) -> None:
    products = nevo.assign(city_clusters=_split_ids(nevo["city_ids"]))
    with pytest.raises(DataError, match="'city_clusters'"):
        _logit(products, covariance="clustered", clusters="city_clusters")
    with pytest.raises(DataError, match="'city_clusters'"):
        _logit(products).with_covariance("clustered", clusters="city_clusters")
    with pytest.raises(DataError, match="'city_clusters'"):
        _logit(products, covariance="clustered", clusters=["city_clusters", "quarter"])


def test_logit_cluster_ids_of_mixed_type(nevo: pd.DataFrame) -> None:
    ids = _split_ids(nevo["city_ids"]).to_numpy()
    with pytest.raises(DataError, match="differ only in type"):
        _logit(nevo, covariance="clustered", clusters=ids)


def test_logit_cluster_ids_of_one_type_in_an_object_column(nevo: pd.DataFrame) -> None:
    reference = _logit(nevo, covariance="clustered", clusters="city_clusters")
    products = nevo.assign(city_clusters=nevo["city_ids"].astype(object))
    results = _logit(products, covariance="clustered", clusters="city_clusters")
    assert results.clusters == reference.clusters
    np.testing.assert_allclose(results.bse, reference.bse, rtol=1e-12)


@pytest.fixture(scope="module")
def sim() -> bd.SimulatedMarkets:
    return simulate(markets=6, products=4, sigma={"x1": 1.0}, draws=20, rng=21)


@pytest.fixture(scope="module")
def mixed(sim: bd.SimulatedMarkets) -> bd.Problem:
    products = sim.products.assign(clustering_ids=_split_ids(sim.products["market_ids"]))
    return bd.Problem(products, linear=sim.linear, nonlinear=sim.nonlinear, agents=sim.agents,
                      instruments=list(sim.instruments))


def test_blp_cluster_column_of_mixed_type(mixed: bd.Problem) -> None:
    config = bd.EstimationConfig(covariance="clustered", clusters="clustering_ids",
                                 hessian=False, max_iterations=50)
    with pytest.raises(DataError, match="differ only in type"):
        bd.estimate(mixed, sigma=[0.5], config=config)
    results = bd.estimate(mixed, sigma=[0.5], config=bd.EstimationConfig(hessian=False,
                                                                         max_iterations=50))
    with pytest.raises(DataError, match="'clustering_ids'"):
        results.with_covariance("clustered", clusters="clustering_ids")


def test_approximation_cluster_column_of_mixed_type(mixed: bd.Problem) -> None:
    with pytest.raises(DataError, match="'clustering_ids'"):
        bd.estimate_approximation(mixed, sigma=[0.5], covariance="clustered")
