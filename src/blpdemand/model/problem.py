"""The BLP problem: product data, X1, X2, instruments, agents and absorbed effects, validated once.

delta_jt = x1_jt' beta + xi_jt, mu_ijt = x2_jt' (Sigma nu_it + Pi y_it),
s_jt = sum_i w_it exp(delta_jt + mu_ijt) / (1 + sum_k exp(delta_kt + mu_ikt)).
Demand instruments Z_D stack the exogenous columns of X1 and the excluded instruments.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import numpy as np
import pandas as pd

from blpdemand._types import FloatArray
from blpdemand.data.absorb import FixedEffects, absorb_fixed_effects
from blpdemand.data.agents import AgentData, load_agents
from blpdemand.data.formulation import DesignMatrix, build_matrix, check_rank, parse_absorb
from blpdemand.data.micro import MicroMoment
from blpdemand.data.products import ProductData, load_products
from blpdemand.data.validation import check_magnitude, require_columns, require_finite
from blpdemand.errors import DataError, SpecificationError
from blpdemand.instruments.identification import check_identification
from blpdemand.model.covariance_restrictions import (
    build_covariance_restrictions,
    restrictions_spec,
)
from blpdemand.model.micro import MicroMoments
from blpdemand.model.nesting import Nests, RhoKind, read_nests
from blpdemand.model.parameters import ParameterLayout, make_layout
from blpdemand.model.supply_side import SupplySide, build_supply

InstrumentsLike: TypeAlias = "str | Sequence[Any] | pd.DataFrame | np.ndarray | None"


@dataclass(frozen=True, eq=False)
class Problem:
    """A validated BLP demand problem. Build it with ``Problem(products, linear=..., ...)``.

    Attributes (rows sorted by market, see ``products.order``)
    ----------
    products : ProductData.
    X1 : (N, K1) linear characteristics; X2 : (N, K2) nonlinear characteristics.
    ZD : (N, MD) demand instruments (exogenous X1 columns, then excluded instruments).
    X1_tilde, ZD_tilde : the same with absorbed fixed effects partialled out.
    agents : AgentData or None (pure logit); fixed_effects : FixedEffects or None.
    endogenous : names of endogenous X1 columns (default prices).
    linear_formula, nonlinear_formula : the X1 and X2 formulas as given (to evaluate them on new
        products, e.g. for entry counterfactuals).
    inputs : the construction arguments as plain JSON values (formulas, absorbed columns,
        instrument names or None when given as arrays, endogenous, columns, negative_weights, and
        how agents came: ``{"source": "frame"}`` or the Integration's fields), so that saved
        results can rebuild the problem from the same data (``load_results``).

    supply : the supply side (``model.supply_side.SupplySide``) or None: ``supply="1 + ..."``
        (X3), ``supply_instruments`` (excluded, as ``instruments``), ``costs`` "linear" or "log",
        ``conduct`` "bertrand" (needs ``firm_ids``), "monopoly", "perfect" or a {(firm, firm):
        weight} kappa, ``costs_bounds`` (lo, hi) clipping of marginal costs, ``absorb_supply``
        supply fixed effects partialled out of f(c), X3 and Z_S, ``supply_markets`` the
        market ids whose products give supply moments (default all). The price
        coefficients must come from X2 (Sigma/Pi on 'prices'), since the markups depend on them.
        ``covariance_restrictions`` True or covariance instrument columns ("1" the constant)
        add the moments E[(xi omega - m) z_C] = 0, m = ``covariance_moments_mean`` (MacKay and
        Miller 2023; ``model.covariance_restrictions``), usable without excluded instruments.

    ``lognormal=["prices"]`` makes the listed X2 columns' coefficients lognormal:
    s_k exp(pi_k0 + Sigma_k nu_i + Pi_k y_i), negative for prices (every consumer dislikes a
    higher price) and positive otherwise, or as given by ``{"name": -1 or 1}``; its location
    pi_k0 is the Pi element of the constant demographic, so write ``demographics="1 + ..."``
    (the constant is a demographic only when written) and leave the column out of X1.

    ``nesting="nesting_ids"`` makes it a random-coefficients nested logit (Brenkers and
    Verboven 2006; Grigolon and Verboven 2014): products fall into the column's nests, with one
    nesting parameter (``rho="common"``) or one per nest (``"per_nest"``) estimated in theta.

    ``micro`` : micro moments (``bd.micro.mean``, ``probability``, ``covariance`` or the
    general ``bd.micro.MicroMoment``), matched in estimation as a further block of moments.

    ``negative_weights=True`` accepts agent data whose weights may be negative (a sparse grid
    built elsewhere, e.g. PyBLP's ``Integration('grid', L)``), with the checks a built-in
    ``Integration('sparse_grid', L)`` gets: nonzero weights, positive per-market sums (a warning
    where they are not one), and markets whose contraction fails (shares leaving (0, 1) at some
    theta) are infeasible to the optimizer and named in the results.
    """

    products: ProductData
    X1: DesignMatrix
    X2: DesignMatrix
    ZD: DesignMatrix
    agents: AgentData | None
    fixed_effects: FixedEffects | None
    endogenous: tuple[str, ...]
    X1_tilde: FloatArray = field(repr=False)
    ZD_tilde: FloatArray = field(repr=False)
    linear_formula: str = field(default="", repr=False)
    nonlinear_formula: str | None = field(default=None, repr=False)
    lognormal: FloatArray = field(default_factory=lambda: np.zeros(0), repr=False)
    nests: Nests | None = field(default=None, repr=False)
    inputs: dict[str, Any] = field(default_factory=dict, repr=False)
    supply: SupplySide | None = field(default=None, repr=False)
    micro: MicroMoments | None = field(default=None, repr=False)

    def __init__(self, products: pd.DataFrame, *, linear: str, nonlinear: str | None = None,
                 demographics: str | None = None, agents: Any = None, absorb: Any = None,
                 instruments: InstrumentsLike = None, endogenous: Sequence[str] = ("prices",),
                 columns: Mapping[str, str] | None = None, negative_weights: bool = False,
                 lognormal: Sequence[str] | Mapping[str, int] | None = None,
                 nesting: str | None = None, rho: RhoKind = "common",
                 supply: str | None = None, supply_instruments: InstrumentsLike = None,
                 costs: str = "linear", conduct: Any = "bertrand",
                 costs_bounds: Any = None, absorb_supply: Any = None,
                 supply_markets: Any = None, covariance_restrictions: Any = None,
                 covariance_moments_mean: float = 0.0,
                 micro: Sequence[MicroMoment] | None = None) -> None:
        if not isinstance(negative_weights, (bool, np.bool_)):
            raise SpecificationError(
                f"negative_weights must be True or False, got {negative_weights!r}")
        data = load_products(products, columns=columns)
        fe_columns = parse_absorb(absorb, data.frame)
        X1 = build_matrix(linear, data.frame, intercept=False if fe_columns else None,
                          what="linear formula")
        endogenous = (endogenous,) if isinstance(endogenous, str) else tuple(endogenous)
        missing = [e for e in endogenous if e not in X1.names]
        if missing and endogenous != ("prices",):
            raise SpecificationError(
                f"endogenous column(s) {missing} are not in X1 {list(X1.names)}")
        endogenous = tuple(e for e in endogenous if e in X1.names)
        if nonlinear is not None:
            X2 = build_matrix(nonlinear, data.frame, what="nonlinear formula")
        else:
            X2 = DesignMatrix(values=np.zeros((data.N, 0)), names=())
        excluded = _instrument_matrix(instruments, data)
        exogenous = [k for k, n in enumerate(X1.names) if n not in endogenous]
        ZD = DesignMatrix(values=np.column_stack([X1.values[:, exogenous], excluded.values]),
                          names=tuple(X1.names[k] for k in exogenous) + excluded.names)
        for matrix, name in ((X1, "linear formula"), (X2, "nonlinear formula"),
                             (ZD, "instruments")):
            check_magnitude(matrix.values, matrix.names, what=name)
        fixed_effects = absorb_fixed_effects(data.frame, fe_columns)
        X1_tilde = (fixed_effects.residualize(X1.values, names=X1.names) if fixed_effects
                    else X1.values)
        ZD_tilde = (fixed_effects.residualize(ZD.values, names=ZD.names) if fixed_effects
                    else ZD.values)
        check_rank(X1_tilde, X1.names, what="X1 (linear characteristics)")
        check_identification(ZD_tilde, ZD.names, n_parameters=X1.K, parameter_names=X1.names,
                             excluded=excluded.names, endogenous=endogenous, n_nonlinear=X2.K,
                             before=ZD.values, what="ZD (demand instruments)")
        agent_data = None
        if X2.K > 0:
            agent_data = _agents(agents, data, demographics, X2.K, bool(negative_weights))
        elif agents is not None or demographics is not None:
            raise SpecificationError("agents/demographics given but no nonlinear formula; "
                                     "add nonlinear='...' or drop them")
        supply_side = None
        if supply is not None:
            if agent_data is None:
                raise SpecificationError("a supply side needs random coefficients: give "
                                         "nonlinear= with 'prices' and agents=")
            supply_side = build_supply(data, supply, _instrument_matrix(supply_instruments, data),
                                       X1=X1, X2=X2, costs=costs, conduct=conduct,
                                       bounds=costs_bounds, absorb=absorb_supply,
                                       markets=supply_markets)
        elif any(v is not None for v in (supply_instruments, costs_bounds, absorb_supply,
                                         supply_markets)):
            raise SpecificationError("supply_instruments/costs_bounds/absorb_supply/"
                                     "supply_markets given but no supply "
                                     "formula; add supply='1 + ...' (X3) or drop them")
        if covariance_restrictions not in (None, False):
            if supply_side is None:
                raise SpecificationError(
                    "covariance_restrictions need a supply side (they restrict E[xi omega], "
                    "omega the cost shock): add supply='1 + ...' (X3) with 'prices' in the "
                    "nonlinear formula, or drop covariance_restrictions")
            restrictions = build_covariance_restrictions(data, covariance_restrictions,
                                                         covariance_moments_mean)
            supply_side = dataclasses.replace(supply_side, covariance=restrictions)
        elif covariance_moments_mean != 0:
            raise SpecificationError("covariance_moments_mean given without "
                                     "covariance_restrictions; add covariance_restrictions=True")
        object.__setattr__(self, "supply", supply_side)
        object.__setattr__(self, "products", data)
        object.__setattr__(self, "X1", X1)
        object.__setattr__(self, "X2", X2)
        object.__setattr__(self, "ZD", ZD)
        object.__setattr__(self, "agents", agent_data)
        object.__setattr__(self, "fixed_effects", fixed_effects)
        object.__setattr__(self, "endogenous", endogenous)
        object.__setattr__(self, "X1_tilde", np.ascontiguousarray(X1_tilde))
        object.__setattr__(self, "ZD_tilde", np.ascontiguousarray(ZD_tilde))
        object.__setattr__(self, "linear_formula", linear)
        object.__setattr__(self, "nonlinear_formula", nonlinear)
        object.__setattr__(self, "lognormal", _lognormal_signs(lognormal, X2.names))
        if nesting is not None and agent_data is None:
            raise SpecificationError("nesting without random coefficients is the nested logit, "
                                     "a linear IV regression: use bd.estimate_logit(..., "
                                     f"nesting={nesting!r})")
        object.__setattr__(self, "nests",
                           None if nesting is None else read_nests(data, nesting, rho=rho))
        if supply_side is not None and (nesting is not None or self.has_lognormal):
            raise SpecificationError(
                "a supply side with " + ("nests" if nesting is not None else "lognormal "
                                         "coefficients") + " is not built yet: its markups "
                "need that model's share derivatives; estimate demand alone")
        object.__setattr__(self, "inputs", {
            "linear": linear, "nonlinear": nonlinear, "demographics": demographics,
            "absorb": list(fe_columns) or None, "instruments": _instrument_names(instruments),
            "endogenous": list(endogenous), "columns": dict(columns) if columns else None,
            "negative_weights": bool(negative_weights), "agents": _agent_source(agents),
            "lognormal": ({X2.names[k]: int(v) for k, v in enumerate(self.lognormal) if v}
                          or None),
            "nesting": nesting, "rho": rho if nesting is not None else None})
        if supply_side is not None:
            self.inputs.update(
                supply=supply, supply_instruments=_instrument_names(supply_instruments),
                costs=costs, conduct=supply_side.conduct, costs_bounds=(
                    None if supply_side.bounds is None else list(supply_side.bounds)),
                absorb_supply=list(parse_absorb(absorb_supply, data.frame)) or None,
                supply_markets=None if supply_markets is None else np.atleast_1d(
                    np.asarray(supply_markets)).tolist(),
                kappa=None if supply_side.kappa is None else [
                    [f, g, w] for (f, g), w in supply_side.kappa.items()],
                covariance_restrictions=restrictions_spec(covariance_restrictions),
                covariance_moments_mean=float(covariance_moments_mean))
        # micro moments (model.micro): survey statistics, every name checked against the data
        if micro is not None and (nesting is not None or self.has_lognormal):
            raise SpecificationError(
                "micro moments together with nests or lognormal coefficients are not built "
                "yet: their predicted values need that model's choice probabilities")
        if micro is not None and supply_side is not None and supply_side.covariance is not None:
            raise SpecificationError(
                "micro moments together with covariance_restrictions are not built yet: drop "
                "one of them")
        object.__setattr__(self, "micro", None if micro is None else MicroMoments(self, micro))

    # ------------------------------------------------------------------ sizes
    @property
    def N(self) -> int:
        return self.products.N

    @property
    def T(self) -> int:
        return self.products.markets.T

    @property
    def K1(self) -> int:
        return self.X1.K

    @property
    def K2(self) -> int:
        return self.X2.K

    @property
    def D(self) -> int:
        return 0 if self.agents is None else self.agents.D

    @property
    def MD(self) -> int:
        return self.ZD.K

    @property
    def demographic_names(self) -> tuple[str, ...]:
        return () if self.agents is None else self.agents.demographic_names

    def layout(self, sigma: Any = None, pi: Any = None,
               rho: Any = None) -> tuple[ParameterLayout, FloatArray]:
        """Parameter layout and theta0 from starting Sigma and Pi (nonzero elements are free)
        and, with nests, rho (always free)."""
        layout, theta0 = make_layout(sigma, pi, self.X2.names, self.demographic_names, rho=rho,
                                     rho_names=() if self.nests is None else self.nests.names)
        if layout.D > 0 and pi is None:
            raise SpecificationError("demographics were given, so pass starting values pi=")
        _check_locations(self.lognormal, layout)
        return layout, theta0

    def refuse_nests(self, what: str) -> None:
        """SpecificationError when ``what`` is asked of a random-coefficients nested logit,
        for which it is not built (it would give the numbers of the model without nests)."""
        if self.nests is not None:
            raise SpecificationError(
                f"{what} is not available for a random-coefficients nested logit yet: it "
                "would give the numbers of the model without nests")

    @property
    def has_lognormal(self) -> bool:
        """Whether some X2 column has a lognormal coefficient."""
        return bool(np.any(self.lognormal != 0))

    def nodes_for(self, layout: ParameterLayout) -> FloatArray:
        """(I, K2) nodes aligned with X2 columns.

        With at least K2 node columns the first K2 are used (extra ones dropped, as in PyBLP).
        With fewer, node columns are assigned in order to the X2 columns whose Sigma column has a
        free element; the others get zero nodes.
        """
        assert self.agents is not None
        nodes = self.agents.nodes
        if nodes.shape[1] >= self.K2:
            # extra node columns are dropped, as PyBLP does (its Agents keep the first K2)
            return nodes[:, : self.K2]
        used = np.flatnonzero(layout.sigma_free.any(axis=0))
        if nodes.shape[1] < used.size:
            raise DataError(
                f"agent data have {nodes.shape[1]} node columns but {used.size} X2 columns "
                f"{[self.X2.names[k] for k in used]} have random coefficients")
        full = np.zeros((nodes.shape[0], self.K2))
        full[:, used] = nodes[:, : used.size]
        return full

    def residualize(self, values: FloatArray) -> FloatArray:
        """Partial out absorbed fixed effects (identity when there are none)."""
        return self.fixed_effects.residualize(values) if self.fixed_effects else np.asarray(values)


def _lognormal_signs(lognormal: Sequence[str] | Mapping[str, int] | None,
                     x2_names: tuple[str, ...]) -> FloatArray:
    """(K2,) signs s_k of lognormal coefficients (0 where normal).

    A list of X2 column names makes ``prices`` negative and the others positive; a mapping
    {name: -1 or 1} states each sign.
    """
    signs = np.zeros(len(x2_names))
    if lognormal is None:
        return signs
    if isinstance(lognormal, str):
        lognormal = [lognormal]
    items = (list(lognormal.items()) if isinstance(lognormal, Mapping)
             else [(name, -1 if name == "prices" else 1) for name in lognormal])
    for name, sign in items:
        if name not in x2_names:
            raise SpecificationError(
                f"lognormal column {name!r} is not in X2 {list(x2_names)}; a lognormal "
                "coefficient is a random coefficient: put the column in nonlinear='...'")
        if sign not in (-1, 1):
            raise SpecificationError(
                f"lognormal sign of {name!r} must be -1 (a negative coefficient, e.g. prices) "
                f"or 1, got {sign!r}")
        signs[x2_names.index(name)] = float(sign)
    return signs


def _check_locations(lognormal: FloatArray, layout: ParameterLayout) -> None:
    """Each lognormal coefficient s_k exp(pi_k0 + ...) needs its location pi_k0 free: the Pi
    element of the constant demographic ``1``."""
    for k in np.flatnonzero(lognormal):
        name = layout.x2_names[k]
        if "1" not in layout.demographic_names or not layout.pi_free[
                k, layout.demographic_names.index("1")]:
            raise SpecificationError(
                f"the lognormal coefficient on {name!r} needs a location (the mean of its log): "
                f"write the constant '1' in demographics (e.g. demographics='1 + income') and "
                f"give pi[{name}, 1] a nonzero starting value")


def _instrument_matrix(instruments: InstrumentsLike, data: ProductData) -> DesignMatrix:
    """Excluded instruments: column names, a DataFrame/array in the user's row order, or a list.

    Frames and Series are read by position; one whose (unique) index holds the products' labels
    in another order is refused, since reading it by position would pair the wrong rows.
    """
    if instruments is None:
        return DesignMatrix(values=np.zeros((data.N, 0)), names=())
    if isinstance(instruments, str):
        instruments = [instruments]
    if isinstance(instruments, (pd.DataFrame, pd.Series, np.ndarray)):
        instruments = [instruments]
    blocks: list[FloatArray] = []
    names: list[str] = []
    for item in instruments:
        if isinstance(item, str):
            require_columns(data.frame, [item], what="product data (instruments)")
            require_finite(data.frame, [item], market_column="market_ids")
            blocks.append(data.frame[item].to_numpy(dtype=np.float64)[:, None])
            names.append(item)
        elif isinstance(item, pd.DataFrame):
            if len(item) != data.N:
                raise DataError(f"instrument frame has {len(item)} rows, product data {data.N}")
            data.check_aligned(item, what="instrument frame")
            try:
                values = item.to_numpy(dtype=np.float64)
            except (TypeError, ValueError) as exc:
                raise DataError(f"instrument frame columns {list(item.columns)} are not all "
                                f"numeric ({exc}); convert them to numbers") from exc
            if not np.all(np.isfinite(values)):
                bad = item.columns[~np.isfinite(values).all(axis=0)][0]
                raise DataError(f"instrument column '{bad}' has NaN/inf values")
            blocks.append(data.sort(values))
            names.extend(str(c) for c in item.columns)
        else:
            data.check_aligned(item, what="instrument Series")
            values = _instrument_array(item, data.N)
            if values.shape[0] != data.N:
                raise DataError(
                    f"instrument array has {values.shape[0]} rows, product data {data.N}")
            if not np.all(np.isfinite(values)):
                raise DataError("instrument array has NaN/inf values")
            blocks.append(data.sort(values))
            if isinstance(item, pd.Series) and item.name is not None:
                names.append(str(item.name))
            else:
                names.extend(f"z{len(names) + k}" for k in range(values.shape[1]))
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise SpecificationError(f"instrument {dup!r} is given more than once")
    if not blocks:  # an empty list (saved results of a problem without excluded instruments)
        return DesignMatrix(values=np.zeros((data.N, 0)), names=())
    return DesignMatrix(values=np.column_stack(blocks), names=tuple(names))


def _instrument_array(item: Any, N: int) -> FloatArray:
    """An (N,) or (N, k) numeric array (or Series) of instruments in the user's row order."""
    if not isinstance(item, (np.ndarray, pd.Series, list, tuple)):
        raise SpecificationError(
            f"instrument {item!r} ({type(item).__name__}) is not understood; give column names, "
            f"a DataFrame, or an ({N},) / ({N}, k) array")
    try:
        values = np.asarray(item, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"instrument array is not numeric ({exc}); convert it to numbers") from exc
    if values.ndim not in (1, 2):
        raise DataError(f"instrument array must be ({N},) or ({N}, k), got shape {values.shape}")
    return values[:, None] if values.ndim == 1 else values


def _instrument_names(instruments: InstrumentsLike) -> list[str] | None:
    """Instrument column names ([] for none), or None when arrays or frames were given."""
    if instruments is None:
        return []
    if isinstance(instruments, str):
        return [instruments]
    if isinstance(instruments, (list, tuple)) and all(isinstance(i, str) for i in instruments):
        return list(instruments)
    return None


def _agent_source(agents: Any) -> dict[str, Any] | None:
    """How agents were given: a frame, or an Integration's fields (seed resolved), or None."""
    if agents is None:
        return None
    if isinstance(agents, pd.DataFrame):
        return {"source": "frame"}
    fields = ("kind", "size", "rng", "per_market", "pairing")
    if all(hasattr(agents, f) for f in fields):
        return {"source": "integration", **{f: getattr(agents, f) for f in fields},
                "demographics_data": getattr(agents, "demographics_data", None) is not None}
    return {"source": type(agents).__name__}


def _agents(agents: Any, data: ProductData, demographics: str | None, dimensions: int,
            negative_weights: bool = False) -> AgentData:
    """Agents from a DataFrame (negative weights only when the user says so), or from an
    integration rule (``bd.Integration``, which knows whether its weights can be negative)."""
    if agents is None:
        raise SpecificationError(
            "a nonlinear formula needs agents: pass agents=DataFrame or "
            "agents=bd.Integration('sobol', size=500, rng=0)")
    if isinstance(agents, pd.DataFrame):
        return load_agents(agents, data.markets, demographics=demographics,
                           allow_negative_weights=negative_weights)
    build = getattr(agents, "build_agents", None)
    if build is None or isinstance(agents, type):
        got = ("the class " + agents.__name__ + " (call it)" if isinstance(agents, type)
               else type(agents).__name__)
        raise SpecificationError(f"agents must be a DataFrame or an Integration, got {got}; "
                                 "e.g. agents=bd.Integration('sobol', size=500, rng=0)")
    return build(data.markets, dimensions=dimensions,  # type: ignore[no-any-return]
                 demographics=demographics)
