"""Test session settings: warnings are errors (pyproject), data found in one place."""

from __future__ import annotations

import os

# One BLAS thread before numpy loads: threaded BLAS on a few shared cores made some tests 20x
# slower. setdefault keeps a caller's explicit choice.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
# The kernels from numba's JIT, here and in the subprocesses tests start: the tests call inline
# helpers and read dispatchers directly. tests/unit/test_ahead_of_time.py runs the kernels built
# at install in a process of their own and checks them against these bit for bit.
os.environ.setdefault("BLPDEMAND_JIT", "1")

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]


def data_dir() -> Path:
    """Directory of the shared data: $BLPDEMAND_DATA or ../shared/data beside the repo."""
    env = os.environ.get("BLPDEMAND_DATA")
    candidates = [Path(env)] if env else []
    candidates += [ROOT.parent / "shared" / "data", ROOT.parent.parent / "shared" / "data"]
    for path in candidates:
        if (path / "nevo_products.csv").exists():
            return path
    # The data must be there in CI: failing loudly beats skipping silently.
    raise FileNotFoundError(
        "shared data not found; set BLPDEMAND_DATA to the folder holding nevo_products.csv")


@pytest.fixture(scope="session")
def data_path() -> Path:
    return data_dir()


@pytest.fixture(scope="session")
def nevo_products(data_path: Path) -> pd.DataFrame:
    return pd.read_csv(data_path / "nevo_products.csv")


@pytest.fixture(scope="session")
def nevo_agents(data_path: Path) -> pd.DataFrame:
    return pd.read_csv(data_path / "nevo_agents.csv")


@pytest.fixture(scope="session")
def nevo_nested_products(nevo_products: pd.DataFrame) -> pd.DataFrame:
    """Nevo with PyBLP's nested-logit tutorial nests (mushy) and its nest-size instrument,
    demand_instruments20 (products in the market's nest)."""
    data = nevo_products.copy()
    data["nesting_ids"] = data["mushy"]
    data["demand_instruments20"] = (data.groupby(["market_ids", "nesting_ids"])["shares"]
                                    .transform("size").astype(float))
    return data


@pytest.fixture(scope="session")
def blp_products(data_path: Path) -> pd.DataFrame:
    return pd.read_csv(data_path / "blp_products.csv")


@pytest.fixture(scope="session")
def blp_agents(data_path: Path) -> pd.DataFrame:
    return pd.read_csv(data_path / "blp_agents.csv")


@pytest.fixture(scope="session")
def cars(data_path: Path) -> pd.DataFrame:
    return pd.read_csv(data_path / "course" / "cars.csv")


@pytest.fixture(autouse=True)
def _numpy_errors_raise():
    """Floating-point errors raise inside tests: nothing can hide as NaN or inf."""
    with np.errstate(all="raise", under="ignore"):
        yield
