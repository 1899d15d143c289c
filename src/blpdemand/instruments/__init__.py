"""Instrument builders: each takes product data (any row order) and returns named columns.

Every builder returns a pandas DataFrame with the input's index and row order, ready for
``Problem(..., instruments=frame)`` or ``estimate_logit(..., instruments=frame)``; combine
several with ``pandas.concat([...], axis=1)``.

- ``build_cost_shifters``: checked pass-through of cost shifters.
- ``build_hausman_instruments``: the same product's price in other markets (Hausman 1996).
- ``build_blp_instruments``: sums of characteristics of own-firm and rival products (BLP 1995).
- ``build_differentiation_instruments``: Gandhi-Houde local / quadratic, standard or course
  convention.
- ``build_demographic_instruments``, ``build_salanie_wolak_terms``: m_t^y x_jt and v_t^y d_jt^x.
- ``fit_prices``, ``with_fitted_prices``: first-stage p_hat, usable in all of the above.
- ``check_identification``, ``diagnose_instruments``: rank, counts and unused instruments.
"""

from __future__ import annotations

from blpdemand.instruments.blp import build_blp_instruments
from blpdemand.instruments.cost_shifters import build_cost_shifters
from blpdemand.instruments.demographic import (
    build_demographic_instruments,
    build_salanie_wolak_terms,
    demographic_moments,
)
from blpdemand.instruments.differentiation import (
    DifferentiationConfig,
    build_differentiation_instruments,
)
from blpdemand.instruments.fitted_prices import FirstStage, fit_prices, with_fitted_prices
from blpdemand.instruments.hausman import build_hausman_instruments
from blpdemand.instruments.identification import (
    IdentificationReport,
    check_identification,
    diagnose_instruments,
)

__all__ = [
    "DifferentiationConfig",
    "FirstStage",
    "IdentificationReport",
    "build_blp_instruments",
    "build_cost_shifters",
    "build_demographic_instruments",
    "build_differentiation_instruments",
    "build_hausman_instruments",
    "build_salanie_wolak_terms",
    "check_identification",
    "demographic_moments",
    "diagnose_instruments",
    "fit_prices",
    "with_fitted_prices",
]
