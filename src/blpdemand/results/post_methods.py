"""Post-estimation as methods of a results object: the method forms of the pure functions
in ``results/`` (elasticities, diversion, markups, costs, pass-through, mergers, consumer
surplus).

Each method calls its function with the results object itself (lazy imports: the functions
read ``.fitted``), so ``results.elasticities()`` is ``bd.compute_elasticities(results)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from blpdemand._types import FloatArray

if TYPE_CHECKING:
    from blpdemand.results.costs import Kappa
    from blpdemand.results.counterfactual import Counterfactual
    from blpdemand.results.elasticities import MarketMatrices
    from blpdemand.results.wald import WaldTest


class PostEstimationMethods:
    """Mixin of estimation results: post-estimation methods over ``self``."""

    __slots__ = ()

    def elasticities(self, name: str = "prices") -> MarketMatrices:
        """Own and cross elasticities per market: ``blpdemand.compute_elasticities(self, name)``."""
        from blpdemand.results.elasticities import compute_elasticities

        return compute_elasticities(self, name)

    def diversion_ratios(self, name: str = "prices") -> MarketMatrices:
        """Diversion ratios per market: ``blpdemand.compute_diversion_ratios(self, name)``."""
        from blpdemand.results.diversion import compute_diversion_ratios

        return compute_diversion_ratios(self, name)

    def markups(self, *, firm_ids: Any = None, ownership: Any = None,
                kappa: Kappa | None = None) -> FloatArray:
        """(N,) Bertrand-Nash markups p - c: ``blpdemand.compute_markups(self, ...)``."""
        from blpdemand.results.costs import compute_markups

        return compute_markups(self, firm_ids=firm_ids, ownership=ownership, kappa=kappa)

    def costs(self, *, firm_ids: Any = None, ownership: Any = None,
              kappa: Kappa | None = None) -> FloatArray:
        """(N,) marginal costs c = p - eta: ``blpdemand.compute_costs(self, ...)``."""
        from blpdemand.results.costs import compute_costs

        return compute_costs(self, firm_ids=firm_ids, ownership=ownership, kappa=kappa)

    def passthrough(self, *, firm_ids: Any = None, ownership: Any = None,
                    kappa: Kappa | None = None) -> MarketMatrices:
        """Cost pass-through dp/dc' per market: ``blpdemand.compute_passthrough(self, ...)``."""
        from blpdemand.results.passthrough import compute_passthrough

        return compute_passthrough(self, firm_ids=firm_ids, ownership=ownership, kappa=kappa)

    def wald_test(self, restrictions: Any = None, *, R: Any = None, r: Any = None) -> WaldTest:
        """Wald test of H0: R b = r on the estimates: ``blpdemand.wald_test(self, ...)``."""
        from blpdemand.results.wald import wald_test

        return wald_test(self, restrictions, R=R, r=r)

    def merger(self, merging: Sequence[object], **kwargs: Any) -> Counterfactual:
        """Bertrand-Nash prices after ``merging`` firms merge: ``blpdemand.simulate_merger``."""
        from blpdemand.results.counterfactual import simulate_merger

        return simulate_merger(self, merging, **kwargs)

    def consumer_surplus(self, *, prices: Any = None, keep: Any = None) -> FloatArray:
        """(T,) consumer surplus per market: ``blpdemand.compute_consumer_surplus(self, ...)``."""
        from blpdemand.results.surplus import compute_consumer_surplus

        return compute_consumer_surplus(self, prices=prices, keep=keep)
