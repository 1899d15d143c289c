"""Instrument builders against PyBLP 1.3.0 run live on the same data, column by column.

Reference: pyblp.build_blp_instruments and pyblp.build_differentiation_instruments on the BLP
(1995) automobile data and the Nevo (2000) cereal data. Tolerance: 1e-10 relative to the
column's scale (|ours - pyblp| <= 1e-10 max(|pyblp_jt|, max_j |pyblp_j|) elementwise). Our
builders get the rows shuffled and must return them in the caller's order.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import blpdemand as bd

pyblp = pytest.importorskip("pyblp")
pyblp.options.verbose = False

SPECS = {"blp": "hpwt + air + mpd + space", "nevo": "sugar + mushy"}


def _close(ours: np.ndarray, ref: np.ndarray, rtol: float = 1e-10) -> float:
    """Max elementwise error relative to max(|ref_jt|, column scale); must be <= rtol."""
    ours, ref = np.asarray(ours, dtype=float), np.asarray(ref, dtype=float)
    assert ours.shape == ref.shape
    scale = np.maximum(np.abs(ref), np.abs(ref).max(axis=0, keepdims=True))
    scale[scale == 0] = 1.0
    error = float(np.max(np.abs(ours - ref) / scale))
    assert error <= rtol, error
    return error


@pytest.fixture(scope="module")
def datasets(blp_products: pd.DataFrame, nevo_products: pd.DataFrame) -> dict[str, pd.DataFrame]:
    return {"blp": blp_products, "nevo": nevo_products}


def _shuffled(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sample(frac=1.0, random_state=7)


def _ours(frame: pd.DataFrame, build, *args, **kwargs) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Build on shuffled rows, then align back to the original row order by index."""
    shuffled = _shuffled(frame)
    out = build(shuffled, *args, **kwargs)
    assert out.index.equals(shuffled.index)
    return out.loc[frame.index].to_numpy()


@pytest.mark.parametrize("name", ["blp", "nevo"])
def test_blp_instruments_equal_pyblp(datasets: dict[str, pd.DataFrame], name: str) -> None:
    # Reference: pyblp.build_blp_instruments(Formulation('1 + ...')), all 2K columns.
    frame = datasets[name]
    formula = "1 + " + SPECS[name]
    with np.errstate(all="ignore"):
        ref = pyblp.build_blp_instruments(pyblp.Formulation(formula), frame)
    _close(_ours(frame, bd.build_blp_instruments, formula), ref)


def test_blp_instruments_equal_shipped_columns(blp_products: pd.DataFrame) -> None:
    # Reference: the data's demand_instruments0..7 (BLP 1995 sums of 1, hpwt, air, mpd).
    ref = blp_products[[f"demand_instruments{i}" for i in range(8)]].to_numpy()
    _close(_ours(blp_products, bd.build_blp_instruments, "1 + hpwt + air + mpd"), ref, 1e-12)


@pytest.mark.parametrize("name", ["blp", "nevo"])
@pytest.mark.parametrize("version", ["local", "quadratic"])
@pytest.mark.parametrize("interact", [False, True])
def test_differentiation_instruments_equal_pyblp(datasets: dict[str, pd.DataFrame], name: str,
                                                  version: str, interact: bool) -> None:
    # Reference: pyblp.build_differentiation_instruments(Formulation('0 + ...'), version,
    # interact): own-firm block then rival block, same term order.
    frame = datasets[name]
    formula = "0 + " + SPECS[name]
    with np.errstate(all="ignore"):
        ref = pyblp.build_differentiation_instruments(pyblp.Formulation(formula), frame,
                                                      version=version, interact=interact)
    ours = _ours(frame, bd.build_differentiation_instruments, formula, version=version,
                 interact=interact)
    _close(ours, ref)


@pytest.mark.parametrize("version", ["local", "quadratic"])
def test_pooled_differentiation_equals_pyblp_with_one_firm(blp_products: pd.DataFrame,
                                                           version: str) -> None:
    # Reference: PyBLP's documented firm-agnostic recipe, a constant firm id and the first half
    # of the columns, equals our split=False ("all" products other than j).
    formula = "0 + " + SPECS["blp"]
    one_firm = blp_products.assign(firm_ids=1)
    with np.errstate(all="ignore"):
        ref = pyblp.build_differentiation_instruments(pyblp.Formulation(formula), one_firm,
                                                      version=version)
    ref = ref[:, : ref.shape[1] // 2]
    ours = _ours(blp_products, bd.build_differentiation_instruments, formula, version=version,
                 split=False)
    _close(ours, ref)


def test_fitted_prices_inside_differentiation_equal_pyblp(blp_products: pd.DataFrame) -> None:
    # Reference: PyBLP's quadratic instruments on the data with prices replaced by our p_hat
    # (the substitution is ours; the differentiation numbers are PyBLP's). p_hat itself is
    # checked against the normal equations solved directly: max abs error 1e-10.
    first = bd.fit_prices(blp_products, "1 + hpwt + air + mpd + space",
                          ["supply_instruments10", "trend"])
    Z = np.column_stack([np.ones(len(blp_products)),
                         blp_products[["hpwt", "air", "mpd", "space", "supply_instruments10",
                                       "trend"]].to_numpy()])
    p = blp_products["prices"].to_numpy()
    direct = Z @ np.linalg.solve(Z.T @ Z, Z.T @ p)
    assert np.max(np.abs(first.p_hat.to_numpy() - direct)) < 1e-10
    replaced = bd.with_fitted_prices(blp_products, first)
    with np.errstate(all="ignore"):
        ref = pyblp.build_differentiation_instruments(pyblp.Formulation("0 + prices + hpwt"),
                                                      replaced, version="quadratic",
                                                      interact=True)
    ours = _ours(replaced, bd.build_differentiation_instruments, "0 + prices + hpwt",
                 version="quadratic", interact=True)
    _close(ours, ref)
