"""Economic sanity of estimates, in one call: the checks of ``results.sanity`` over the
elasticities and Bertrand-Nash costs the estimates imply.

Own-price elasticities must be negative, marginal costs c = p - eta non-negative, Lerner
indices (p - c) / p at most one, and every consumer's price coefficient alpha_i negative;
where they are not, the estimated demand is not one that profit-maximizing firms could face.
"""

from __future__ import annotations

from typing import Any

from blpdemand.results.costs import compute_costs
from blpdemand.results.elasticities import compute_elasticities
from blpdemand.results.sanity import (
    EconomicChecks,
    cost_checks,
    elasticity_check,
    observed_prices,
    price_coefficient_check,
    usable_fitted,
)


def check_economics(results: Any, *, firm_ids: Any = None, ownership: Any = None,
                    kappa: Any = None, top: int = 5) -> EconomicChecks:
    """Economic sanity checks of estimates: own-price elasticities < 0, marginal costs >= 0,
    Lerner indices (p - c) / p <= 1, price coefficients alpha_i < 0.

    Costs are those implied by Bertrand-Nash pricing under the ownership given (default: the
    data's firm_ids; the cost checks are left out when the data have none and none is given).

    Examples
    --------
    >>> checks = check_economics(results)          # doctest: +SKIP
    >>> checks.table()                             # doctest: +SKIP
    >>> checks["negative marginal costs"].count    # doctest: +SKIP
    """
    fitted = usable_fitted(results)
    own = compute_elasticities(fitted).diagonal()
    checks = [elasticity_check(fitted, own, top=top)]
    if firm_ids is not None or ownership is not None or fitted.problem.products.has("firm_ids"):
        costs = compute_costs(fitted, firm_ids=firm_ids, ownership=ownership, kappa=kappa)
        checks.extend(cost_checks(fitted, costs, observed_prices(fitted), top=top))
    checks.append(price_coefficient_check(fitted, top=top))
    return EconomicChecks(checks=tuple(checks))
