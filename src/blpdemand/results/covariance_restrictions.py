"""What the results report about covariance restrictions (MacKay and Miller 2023): the fitted
mean of xi omega and the covariance moments g_C = (1/N) sum_j z_Cj (xi_j omega_j - m)."""

from __future__ import annotations

from typing import Any

import numpy as np

from blpdemand._types import FloatArray


def covariance_moments(supply: Any) -> int:
    """M_C, the number of covariance moments of a supply side (0 without restrictions)."""
    return 0 if supply is None or supply.covariance is None else int(supply.covariance.MC)


def fitted_covariance(results: Any) -> tuple[float, FloatArray] | None:
    """(mean of xi omega over the products with supply moments, g_C (M_C,)) at the estimate,
    None without covariance restrictions."""
    supply = results.problem.supply
    if supply is None or supply.covariance is None or results.omega is None:
        return None
    products = results.problem.products
    xi, omega = products.sort(results.xi), products.sort(results.omega)
    rows = np.ones(xi.shape, dtype=bool) if supply.selected is None else supply.selected
    restrictions = supply.covariance
    ZC = restrictions.ZC.values * rows[:, None]
    g = ZC.T @ (xi * omega - restrictions.mean) / xi.shape[0]
    return float(np.mean((xi * omega)[rows])), np.asarray(g, dtype=np.float64)


def covariance_notes(results: Any) -> list[str]:
    """One summary line: the restrictions, m, the fitted mean of xi omega and g_C."""
    fitted = fitted_covariance(results)
    if fitted is None:
        return []
    restrictions = results.problem.supply.covariance
    mean, g = fitted
    line = (f"covariance restrictions E[(xi omega - m) z_C] = 0, z_C = "
            f"{list(restrictions.columns)}, m = {restrictions.mean:g}: fitted mean of xi*omega "
            f"= {mean:.4g}, g_C = [{', '.join(f'{v:.3g}' for v in g)}]")
    return [line]
