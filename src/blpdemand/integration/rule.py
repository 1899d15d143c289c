"""`Integration`: a frozen, validated rule for the integrals over consumer tastes nu ~ N(0, I_K).

Market shares are s_jt = E_nu,y[s_ijt(nu, y)] ~ sum_i w_it s_ijt(nu_it, y_it). A rule gives the
nodes nu_it and weights w_it; ``build_agents`` pairs them with empirical demographics y_it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal, get_args

import numpy as np

from blpdemand._types import AnyArray, FloatArray
from blpdemand.errors import DataError, SpecificationError
from blpdemand.integration.agents import build_agent_frame
from blpdemand.integration.monte_carlo import monte_carlo
from blpdemand.integration.quadrature import QUADRATURE_KINDS, product_rule
from blpdemand.integration.quasi_monte_carlo import halton, lhs, sobol
from blpdemand.integration.sparse_grid import sparse_grid

if TYPE_CHECKING:
    import pandas as pd

    from blpdemand.data.agents import AgentData
    from blpdemand.data.markets import MarketIndex

Kind = Literal["monte_carlo", "sobol", "halton", "lhs", "product", "sparse_grid"]
Pairing = Literal["auto", "pair", "resample", "cross"]
KINDS: tuple[str, ...] = get_args(Kind)
PAIRINGS: tuple[str, ...] = get_args(Pairing)
SAMPLING_KINDS = frozenset({"monte_carlo", "sobol", "halton", "lhs"})

_Sampler = Callable[[int, int, np.random.Generator], tuple[FloatArray, FloatArray]]
_SAMPLERS: dict[str, _Sampler] = {"monte_carlo": monte_carlo, "sobol": sobol, "halton": halton,
                                  "lhs": lhs}


@dataclass(frozen=True, slots=True)
class Integration:
    """How to integrate over nu ~ N(0, I_K): nodes (I, K) and weights (I,) per market.

    Parameters
    ----------
    kind : ``'monte_carlo'`` (pseudo-random draws), ``'sobol'`` (scrambled Sobol),
        ``'halton'`` (scrambled Halton), ``'lhs'`` (Latin hypercube), ``'product'``
        (Gauss-Hermite product rule) or ``'sparse_grid'`` (Smolyak, Heiss and Winschel 2008).
    size : draws I per market for sampling rules; points per dimension for ``'product'``
        (size^K nodes, exact to degree 2 size - 1 in each coordinate); the level L for
        ``'sparse_grid'`` (exact to total degree 2L - 1; some weights negative).
    rng : int seed, numpy Generator, or None (fresh entropy). Resolved at construction to an
        int seed kept in ``rng``, so the same config always gives the same nodes and the seed
        used is on record. Ignored by the deterministic quadrature rules.
    per_market : sampling rules only: a distinct stream in each market (market position t in
        sorted market order draws from child t of the seed), instead of the same draws everywhere.
    demographics_data : empirical demographics y (census-like draws): ``market_ids`` and one
        column per demographic, optionally ``weights`` (census sampling weights). Needed when
        the problem has demographics; not part of equality or repr.
    pairing : how nodes meet demographic rows in a market with I nodes and R rows:
        ``'pair'`` node i with row i (needs R >= I; PyBLP's rule); ``'resample'`` I rows drawn
        with replacement (seeded); ``'cross'`` every node with every row, weights w_i / R
        (I R agents: the exact product of the rule and the empirical distribution); ``'auto'``
        is ``'cross'`` for quadrature rules, ``'pair'`` when every market has R = I, else
        ``'resample'``.

    Examples
    --------
    >>> rule = Integration("sobol", 256, rng=0)
    >>> nodes, weights = rule.nodes_weights(3)
    >>> nodes.shape, float(weights.sum())
    ((256, 3), 1.0)
    """

    kind: Kind
    size: int
    _: KW_ONLY
    rng: int | np.random.Generator | None = None
    per_market: bool = False
    demographics_data: pd.DataFrame | None = field(default=None, compare=False, repr=False)
    pairing: Pairing = "auto"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise SpecificationError(
                f"Integration kind={self.kind!r} is not valid; choose one of {list(KINDS)}")
        if self.pairing not in PAIRINGS:
            raise SpecificationError(
                f"Integration pairing={self.pairing!r} is not valid; "
                f"choose one of {list(PAIRINGS)}")
        if (isinstance(self.size, bool) or not isinstance(self.size, (int, np.integer))
                or self.size < 1):
            raise SpecificationError(
                f"Integration size={self.size!r} must be a positive integer (draws per market, "
                "points per dimension for 'product', level for 'sparse_grid')")
        object.__setattr__(self, "size", int(self.size))
        if self.per_market and self.kind in QUADRATURE_KINDS:
            raise SpecificationError(
                f"per_market=True has no effect on the deterministic rule {self.kind!r}; "
                f"drop it or use one of {sorted(SAMPLING_KINDS)}")
        object.__setattr__(self, "rng", _resolve_seed(self.rng))
        if self.demographics_data is not None:
            import pandas as pd

            if not isinstance(self.demographics_data, pd.DataFrame):
                raise SpecificationError(
                    "demographics_data must be a pandas DataFrame with market_ids and demographic "
                    f"columns, got {type(self.demographics_data).__name__}")
            if "market_ids" not in self.demographics_data.columns:
                raise SpecificationError(
                    "demographics_data has no 'market_ids' column; add the market of each "
                    "demographic draw")
            missing = self.demographics_data["market_ids"].isna().to_numpy()
            if missing.any():
                raise DataError(f"demographics_data column 'market_ids' has {int(missing.sum())} "
                                f"missing value(s) (first at row {int(missing.argmax())}); every "
                                "demographic draw needs a market")

    # ------------------------------------------------------------------ nodes
    @property
    def seed(self) -> int:
        """The int seed every stream of this rule derives from."""
        assert isinstance(self.rng, int)
        return self.rng

    @property
    def negative_weights(self) -> bool:
        """Whether the rule can have negative weights (sparse grids)."""
        return self.kind == "sparse_grid"

    def nodes_weights(self, dimensions: int, *,
                      market: int | None = None) -> tuple[FloatArray, FloatArray]:
        """Nodes (I, K) and weights (I,) for E[f(nu)] ~ sum_i w_i f(nu_i), nu ~ N(0, I_K).

        ``market`` is the market position t (sorted order); it matters only with
        ``per_market=True``, where each market draws its own stream.
        """
        if (isinstance(dimensions, bool) or not isinstance(dimensions, (int, np.integer))
                or dimensions < 0):
            raise SpecificationError(f"dimensions={dimensions!r} must be a non-negative integer")
        dimensions = int(dimensions)
        if self.kind == "product":
            return product_rule(dimensions, self.size)
        if self.kind == "sparse_grid":
            return sparse_grid(dimensions, self.size)
        sequence = self._node_sequence()
        if self.per_market:
            if market is None:
                raise SpecificationError(
                    "per_market=True draws a stream per market: pass market=t (position)")
            sequence = np.random.SeedSequence(sequence.entropy,
                                              spawn_key=(*sequence.spawn_key, int(market)))
        return _SAMPLERS[self.kind](dimensions, self.size, np.random.default_rng(sequence))

    def _node_sequence(self) -> np.random.SeedSequence:
        """Stream of the nodes (spawn key 0); demographics resampling uses key 1."""
        return np.random.SeedSequence(self.seed, spawn_key=(0,))

    def demographics_generator(self) -> np.random.Generator:
        """Generator for resampling demographic rows, independent of the node streams."""
        return np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(1,)))

    def market_nodes_weights(self, dimensions: int, T: int) -> list[tuple[FloatArray, FloatArray]]:
        """Nodes and weights of each of T markets (the same arrays when not ``per_market``)."""
        if not self.per_market:
            shared = self.nodes_weights(dimensions)
            return [shared] * T
        return [self.nodes_weights(dimensions, market=t) for t in range(T)]

    # ------------------------------------------------------------------ sizes
    def refined(self, factor: int) -> Integration:
        """The same rule with about ``factor`` times the accuracy budget, same seed.

        Sampling rules: size x factor draws (with the same seed Monte Carlo and Sobol draws are
        nested: the old draws are the first ones). Product rule: factor x the points per
        dimension. Sparse grid: level + log2(factor) (one level per doubling).
        """
        if factor < 1:
            raise SpecificationError(f"refinement factor {factor} must be >= 1")
        if self.kind == "sparse_grid":
            size = self.size + round(float(np.log2(factor)))
        else:
            size = self.size * int(factor)
        return replace(self, size=size)

    # ------------------------------------------------------------------ agents
    def agent_frame(self, market_ids: AnyArray, *, dimensions: int) -> pd.DataFrame:
        """Agent data as a DataFrame (market_ids, weights, nodes0.., demographics).

        See `blpdemand.integration.agents.build_agent_frame`; ``Problem(agents=frame)`` accepts it
        (a sparse grid's negative weights need ``Problem(..., negative_weights=True)``).
        """
        return build_agent_frame(self, market_ids, dimensions=dimensions)

    def build_agents(self, markets: MarketIndex, *, dimensions: int,
                     demographics: str | None = None) -> AgentData:
        """Validated `AgentData` for the product markets (what ``Problem(agents=rule)`` calls).

        ``demographics`` is the problem's demographics formula, evaluated on
        ``demographics_data``; without demographics the agents carry nodes and weights only.
        """
        from blpdemand.data.agents import explicit_constant, load_agents

        # the constant alone ("1": a lognormal coefficient's location) needs no draws
        constant_only = bool(demographics) and explicit_constant(str(demographics)) and not [
            term for term in str(demographics).split("+") if term.strip() not in ("1", "")]
        if demographics and self.demographics_data is None and not constant_only:
            raise SpecificationError(
                f"demographics={demographics!r} needs empirical demographic draws: pass "
                "Integration(..., demographics_data=DataFrame with market_ids and those columns)")
        frame = build_agent_frame(self, markets.ids, dimensions=dimensions,
                                  use_demographics=bool(demographics) and not constant_only)
        return load_agents(frame, markets, demographics=demographics,
                           allow_negative_weights=self.negative_weights)


def _resolve_seed(rng: Any) -> int:
    """An int seed from an int, a Generator (one draw from it) or None (fresh OS entropy)."""
    if isinstance(rng, np.random.Generator):
        return int(rng.integers(2**63 - 1))
    if rng is None:
        return int(np.random.SeedSequence().entropy)  # type: ignore[arg-type]
    if isinstance(rng, bool) or not isinstance(rng, (int, np.integer)) or rng < 0:
        raise SpecificationError(
            f"Integration rng={rng!r} must be a non-negative int seed, a numpy Generator or None")
    return int(rng)

