"""Micro moments described in the user's words: survey statistics the model must match.

A micro moment matches a statistic f(v_bar) computed from a survey (micro dataset) d with N_d
observations to its model analogue f(v) (Petrin 2002; Berry, Levinsohn and Pakes 2004;
Conlon and Gortmaker 2023). Each part p of a moment is an expectation over the consumers i,
their first choices j (j = 0 the outside option) and the markets t the survey covers:

    v_p = sum_t sum_i sum_j w_it s_ijt w_dijt v_pijt / sum_t sum_i sum_j w_it s_ijt w_dijt,

with w_it the integration weights, s_ijt the choice probabilities, w_dijt the survey's sampling
weights (1 for every (i, j) by default; ``sample=bd.micro.inside()`` samples buyers only) and
v_pijt the part's values. The helpers build the parts and f for the usual statistics::

    cex = bd.micro.Survey("CEX", observations=29125)
    bd.micro.mean("age", given=bd.micro.chose("mi == 1"), value=0.783, survey=cex)
    bd.micro.probability(chose=bd.micro.inside(), given=bd.micro.demographic("mid == 1"),
                         value=0.0794, survey=cex)
    bd.micro.covariance("age", "hpwt", given=bd.micro.inside(), value=..., observations=500)

Conditions are expressions evaluated on the product data (``chose``: a condition on the
chosen product; false for the outside option) or on the agents' demographics (``demographic``;
by the names of the demographics formula); ``&`` joins conditions. A variable (``mean``,
``covariance``) is a demographic name or expression, or, when no demographic has the name, a
product-data column of the chosen product (0 for the outside option: condition on
``inside()``). The general form, a :class:`MicroPart` with ``values(market_id, products,
agents) -> (I_t, 1 + J_t)`` and a :class:`MicroMoment` with any ``function`` of its parts,
covers what the helpers do not. The descriptions are only validated here; the model
(``blpdemand.model.micro``) checks every name against the problem's data.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from blpdemand.errors import SpecificationError

#: a survey's weights or a part's values in one market: f(market_id, products, agents), with
#: products the market's product rows (a DataFrame, J_t rows) and agents a DataFrame of its
#: agents' demographics (I_t rows), returning an (I_t, 1 + J_t) array (column 0: outside option)
MarketArray = Callable[[Any, Any, Any], Any]

Side = Literal["choice", "agent", "second"]
INSIDE, OUTSIDE = "@inside", "@outside"


@dataclass(frozen=True, slots=True)
class Condition:
    """A conjunction of conditions on the first choice and on the agent (``&`` joins them)."""

    terms: tuple[tuple[Side, str], ...]

    def __and__(self, other: Condition) -> Condition:
        if not isinstance(other, Condition):
            return NotImplemented
        return Condition(self.terms + other.terms)

    def __str__(self) -> str:
        words = {INSIDE: "inside", OUTSIDE: "outside"}
        return " & ".join(("second: " if side == "second" else "") + words.get(e, e)
                          for side, e in self.terms)


@dataclass(frozen=True, slots=True)
class Variable:
    """A value of agent i (a demographic expression) or of the chosen product j (a product-data
    expression, 0 for the outside option); ``side="auto"`` resolves it against the data."""

    expression: str
    side: Literal["choice", "agent", "auto"] = "auto"

    def __str__(self) -> str:
        return self.expression


def chose(expression: str) -> Condition:
    """The first choice j satisfies a product-data expression, e.g. ``chose("mi == 1")``."""
    return Condition((("choice", _expression(expression, "chose")),))


def inside() -> Condition:
    """The first choice is an inside good (j > 0): a purchase."""
    return Condition((("choice", INSIDE),))


def outside() -> Condition:
    """The first choice is the outside option (j = 0)."""
    return Condition((("choice", OUTSIDE),))


def demographic(expression: str) -> Condition:
    """Agent i satisfies a demographic expression, e.g. ``demographic("mid == 1")``; a name
    ``qNN`` compared with an expression is its NN-th weighted percentile over the problem's
    agents (``demographic("income > q75")``: the top quarter; see :func:`with_quantiles`)."""
    return Condition((("agent", _expression(expression, "demographic")),))


def characteristic(expression: str) -> Variable:
    """A product-data value of the chosen product (0 for the outside option)."""
    return Variable(_expression(expression, "characteristic"), "choice")


def agent(expression: str) -> Variable:
    """A demographic value of the agent."""
    return Variable(_expression(expression, "agent"), "agent")


@dataclass(frozen=True, slots=True)
class Survey:
    """A micro dataset d: its name, N_d observations, the markets it samples (None: all) and its
    sampling weights w_dijt: ``sample`` (a Condition: 1 where it holds, 0 elsewhere), or
    ``weights(market_id, products, agents) -> (I_t, 1 + J_t)``, or 1 everywhere by default.
    Different surveys are independent samples."""

    name: str
    observations: int
    markets: tuple[Any, ...] | None = None
    sample: Condition | None = None
    weights: MarketArray | None = field(default=None, compare=False)
    second_choices: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise SpecificationError(f"a survey needs a name (a non-empty string), got "
                                     f"{self.name!r}")
        if not (np.issubdtype(type(self.observations), np.integer) and self.observations > 0):
            raise SpecificationError(f"survey {self.name!r}: observations must be a positive "
                                     f"integer (the survey's sample size), got "
                                     f"{self.observations!r}")
        if self.markets is not None:
            markets = ((self.markets,) if isinstance(self.markets, (str, int, np.integer))
                       else tuple(self.markets))
            if not markets:
                raise SpecificationError(f"survey {self.name!r}: markets is empty; give None "
                                         "for every market")
            object.__setattr__(self, "markets", markets)
        if self.sample is not None and not isinstance(self.sample, Condition):
            raise SpecificationError(f"survey {self.name!r}: sample must be a condition such "
                                     "as bd.micro.inside()")
        if self.sample is not None and self.weights is not None:
            raise SpecificationError(f"survey {self.name!r}: give sample= or weights=, not both")
        if self.second_choices and self.weights is not None:
            raise SpecificationError(f"survey {self.name!r}: a survey of second choices takes "
                                     "sample= (a condition), not weights=")
        if self.weights is not None and not callable(self.weights):
            raise SpecificationError(f"survey {self.name!r}: weights must be a function "
                                     "(market_id, products, agents) -> (I_t, 1 + J_t) array")


@dataclass(frozen=True, slots=True)
class MicroPart:
    """One expectation v_p over a survey: v_pij = prod(agent factors) * prod(choice factors)
    (declarative, built by the helpers), or ``values(market_id, products, agents)`` giving the
    (I_t, 1 + J_t) array (the general form)."""

    name: str
    survey: Survey
    factors: tuple[Variable | Condition, ...] = ()
    values: MarketArray | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.survey, Survey):
            raise SpecificationError(f"micro part {self.name!r}: survey must be a "
                                     "bd.micro.Survey")
        if self.values is not None and (self.factors or not callable(self.values)):
            raise SpecificationError(f"micro part {self.name!r}: give factors or a values "
                                     "function (market_id, products, agents) -> (I_t, 1 + J_t)")


@dataclass(frozen=True, slots=True)
class MicroMoment:
    """f(v_bar) observed in a survey matched to f(v): ``value`` = f(v_bar), ``parts`` = the v_p,
    ``function`` maps the parts' values to the statistic (default: the one part itself) and
    ``gradient`` to df/dv (the derivative of every helper's f is known; for the general form
    it is taken by central differences when not given)."""

    name: str
    value: float
    parts: tuple[MicroPart, ...]
    function: Callable[[Any], Any] | None = field(default=None, compare=False)
    gradient: Callable[[Any], Any] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        parts = (self.parts,) if isinstance(self.parts, MicroPart) else tuple(self.parts)
        object.__setattr__(self, "parts", parts)
        if not parts or not all(isinstance(p, MicroPart) for p in parts):
            raise SpecificationError(f"micro moment {self.name!r}: parts must be MicroParts")
        if not np.isfinite(float(self.value)):
            raise SpecificationError(f"micro moment {self.name!r}: value {self.value!r} is not "
                                     "a finite number")
        object.__setattr__(self, "value", float(self.value))
        if self.function is None and len(parts) != 1:
            raise SpecificationError(f"micro moment {self.name!r} has {len(parts)} parts: give "
                                     "function= (and gradient=) combining them")
        surveys = {p.survey.name: p.survey for p in parts}
        for p in parts:
            if surveys[p.survey.name] != p.survey:
                raise SpecificationError(f"micro moment {self.name!r}: two different surveys "
                                         f"are named {p.survey.name!r}")

    def evaluate(self, v: Any) -> float:
        """f(v) for the parts' values v (P_m,)."""
        v = np.asarray(v, dtype=np.float64)
        return float(v[0]) if self.function is None else float(np.asarray(self.function(v)))

    def derivative(self, v: Any) -> Any:
        """df/dv (P_m,): the given gradient, or central differences of f."""
        v = np.asarray(v, dtype=np.float64)
        if self.function is None:
            return np.ones(1)
        if self.gradient is not None:
            return np.asarray(self.gradient(v), dtype=np.float64).reshape(v.size)
        out = np.empty(v.size)
        for k in range(v.size):
            h = 1e-6 * max(abs(v[k]), 1e-8)
            up, down = v.copy(), v.copy()
            up[k] += h
            down[k] -= h
            out[k] = (self.evaluate(up) - self.evaluate(down)) / (up[k] - down[k])
        return out


# ---------------------------------------------------------------------- helpers
def mean(variable: str | Variable, *, given: Condition | None = None, value: float,
         survey: Survey | None = None, observations: int | None = None,
         markets: Sequence[Any] | None = None, name: str | None = None) -> MicroMoment:
    """E[variable | given]: f(v) = v_1 / v_2, v_1 = E[variable 1{given}], v_2 = E[1{given}].

    Example: ``bd.micro.mean("age", given=bd.micro.chose("mi == 1"), value=0.783,
    observations=29125)`` (the mean age of minivan buyers; Petrin 2002).
    """
    x = _variable(variable)
    name = name or (f"E[{x} | {given}]" if given is not None else f"E[{x}]")
    d = _survey(survey, observations, markets, name)
    if given is None:
        return MicroMoment(name=name, value=value, parts=(MicroPart(f"E[{x}]", d, (x,)),))
    parts = (MicroPart(f"E[{x} * 1{{{given}}}]", d, (x, given)),
             MicroPart(f"P({given})", d, (given,)))
    return MicroMoment(name=name, value=value, parts=parts, function=_ratio,
                       gradient=_ratio_gradient)


def probability(*, chose: Condition, given: Condition | None = None, value: float,
                survey: Survey | None = None, observations: int | None = None,
                markets: Sequence[Any] | None = None, name: str | None = None) -> MicroMoment:
    """P(chose | given) = E[1{chose} 1{given}] / E[1{given}] (P(chose) without ``given``).

    Example: ``bd.micro.probability(chose=bd.micro.inside(),
    given=bd.micro.demographic("high == 1"), value=0.1581, observations=29125)``.
    """
    if not isinstance(chose, Condition):
        raise SpecificationError("probability(chose=...) takes a condition such as "
                                 "bd.micro.chose('mi == 1') or bd.micro.inside()")
    name = name or (f"P({chose} | {given})" if given is not None else f"P({chose})")
    d = _survey(survey, observations, markets, name)
    if given is None:
        return MicroMoment(name=name, value=value, parts=(MicroPart(f"P({chose})", d, (chose,)),))
    parts = (MicroPart(f"P({chose} & {given})", d, (chose, given)),
             MicroPart(f"P({given})", d, (given,)))
    return MicroMoment(name=name, value=value, parts=parts, function=_ratio,
                       gradient=_ratio_gradient)


def covariance(first: str | Variable, second: str | Variable, *,
               given: Condition | None = None, value: float, survey: Survey | None = None,
               observations: int | None = None, markets: Sequence[Any] | None = None,
               name: str | None = None) -> MicroMoment:
    """Cov(a, b | given) = E[ab 1g]/E[1g] - E[a 1g] E[b 1g] / E[1g]^2 over four parts.

    Example: ``bd.micro.covariance("income", "hpwt", given=bd.micro.inside(), value=0.02,
    observations=1000)`` (income against the horsepower of the car bought).
    """
    a, b = _variable(first), _variable(second)
    g: tuple[Condition, ...] = () if given is None else (given,)
    name = name or (f"Cov({a}, {b} | {given})" if given is not None else f"Cov({a}, {b})")
    d = _survey(survey, observations, markets, name)
    parts = (MicroPart(f"E[{a} * {b}]", d, (a, b, *g)), MicroPart(f"E[{a}]", d, (a, *g)),
             MicroPart(f"E[{b}]", d, (b, *g)), MicroPart(f"P({given or 'all'})", d, g))
    return MicroMoment(name=name, value=value, parts=parts, function=_covariance,
                       gradient=_covariance_gradient)


def second_choice(*, first: Condition, second: Condition, given: Condition | None = None,
                  value: float, survey: Survey | None = None, observations: int | None = None,
                  markets: Sequence[Any] | None = None, name: str | None = None) -> MicroMoment:
    """P(second choice in B | first choice in A): diversion reported by buyers' second choices.

    = E[1{j in A} 1{k in B}] / E[1{j in A}] over (i, first choice j, second choice k), with
    s_ik(-j) = s_ik / (1 - s_ij) the probability that k is chosen when j is not available
    (Berry, Levinsohn and Pakes 2004; Conlon and Gortmaker 2023). ``second`` is built like a
    first choice (``chose(...)``, ``inside()``, ``outside()``: the second choice is to buy
    nothing). The survey must be ``Survey(..., second_choices=True)`` (made so when
    ``observations=`` is given).

    Example: ``bd.micro.second_choice(first=bd.micro.chose("mi == 1"),
    second=bd.micro.chose("sw == 1"), value=0.2, observations=500)``.
    """
    if not isinstance(first, Condition) or not isinstance(second, Condition):
        raise SpecificationError("second_choice(first=..., second=...) take conditions such as "
                                 "bd.micro.chose('mi == 1') or bd.micro.outside()")
    if any(side != "choice" for side, _ in second.terms):
        raise SpecificationError("second_choice(second=...) is a condition on the product "
                                 "chosen second: build it with chose(), inside() or outside()")
    then = Condition(tuple(("second", e) for _, e in second.terms))
    g: tuple[Condition, ...] = (first,) if given is None else (first, given)
    label = str(first) if given is None else f"{first} & {given}"
    name = name or f"P(second: {second} | first: {label})"
    if survey is None and observations is not None:
        survey = Survey(name, observations, None if markets is None else tuple(markets),
                        second_choices=True)
        observations = markets = None
    d = _survey(survey, observations, markets, name)
    if not d.second_choices:
        raise SpecificationError(f"micro moment {name!r}: survey {d.name!r} does not record "
                                 "second choices; give Survey(..., second_choices=True)")
    parts = (MicroPart(f"P({then} & {label})", d, (*g, then)), MicroPart(f"P({label})", d, g))
    return MicroMoment(name=name, value=value, parts=parts, function=_ratio,
                       gradient=_ratio_gradient)


def _ratio(v: Any) -> float:
    return float(v[0] / v[1])


def _ratio_gradient(v: Any) -> Any:
    return np.array([1.0 / v[1], -v[0] / v[1] ** 2])


def _covariance(v: Any) -> float:
    return float(v[0] / v[3] - v[1] * v[2] / v[3] ** 2)


def _covariance_gradient(v: Any) -> Any:
    return np.array([1.0 / v[3], -v[2] / v[3] ** 2, -v[1] / v[3] ** 2,
                     -v[0] / v[3] ** 2 + 2.0 * v[1] * v[2] / v[3] ** 3])


def _survey(survey: Survey | None, observations: int | None, markets: Sequence[Any] | None,
            name: str) -> Survey:
    """The given survey, or a new one (its own independent sample) of ``observations``."""
    if survey is not None:
        if observations is not None or markets is not None:
            raise SpecificationError(f"micro moment {name!r}: observations= and markets= "
                                     "belong to the survey; give survey= or them, not both")
        if not isinstance(survey, Survey):
            raise SpecificationError(f"micro moment {name!r}: survey must be a "
                                     "bd.micro.Survey")
        return survey
    if observations is None:
        raise SpecificationError(f"micro moment {name!r} needs the survey's sample size: "
                                 "observations=N_d, or survey=bd.micro.Survey(...)")
    return Survey(name, observations, None if markets is None else tuple(markets))


def _variable(variable: str | Variable) -> Variable:
    if isinstance(variable, Variable):
        return variable
    if isinstance(variable, str):
        return Variable(_expression(variable, "variable"))
    raise SpecificationError(f"a micro-moment variable must be a column name or expression "
                             f"(a string), got {variable!r}")


def _expression(expression: str, what: str) -> str:
    """A syntactically valid expression (names are checked against the data later)."""
    if not isinstance(expression, str) or not expression.strip():
        raise SpecificationError(f"{what}() needs an expression string, got {expression!r}")
    try:
        ast.parse(expression.strip(), mode="eval")
    except SyntaxError as error:
        raise SpecificationError(f"{what}({expression!r}) is not a valid expression: "
                                 f"{error.msg}") from error
    return expression.strip()


def names_in(expression: str) -> list[str]:
    """The variable names an expression refers to (functions called are not names)."""
    tree = ast.parse(expression, mode="eval")
    called = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    return sorted({n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and id(n) not in called})


_QUANTILE = re.compile(r"q(\d{1,2})")


def with_quantiles(expression: str, frame: Any, weights: Any) -> str:
    """``expression`` with each comparison of an expression y to a name qNN (not a column of
    ``frame``) made a comparison to y's NN-th weighted percentile over the rows of ``frame``
    (the agents, all markets pooled), the inverted CDF: the smallest y_i with
    sum_k w_k 1[y_k <= y_i] >= NN / 100 sum_k w_k (w: the integration weights)."""
    tree = ast.parse(expression, mode="eval")

    def quantile(node: ast.expr) -> int | None:
        match = (_QUANTILE.fullmatch(node.id) if isinstance(node, ast.Name)
                 and node.id not in frame.columns else None)
        return int(match.group(1)) if match else None

    changed = False
    for node in ast.walk(tree):
        if not isinstance(node, ast.Compare) or len(node.comparators) != 1:
            continue
        left, right = node.left, node.comparators[0]
        for name, other, put in ((right, left, "right"), (left, right, "left")):
            q, text = quantile(name), ast.unparse(other)
            if q is None or any(n not in frame.columns for n in names_in(text)):
                continue  # unknown names: left for the caller's check to name
            values = np.asarray(frame[text] if text in frame.columns else
                                frame.eval(text, engine="python"), dtype=np.float64)
            w = np.asarray(weights, dtype=np.float64)
            if np.any(w < 0):
                raise SpecificationError(f"{expression!r}: a quantile (q{q}) needs nonnegative "
                                         "agent weights")
            order = np.argsort(values, kind="stable")
            cumulative = np.cumsum(w[order])
            target = q / 100 * cumulative[-1] * (1 - 1e-12)  # a few ulps below: ties of sums
            value = ast.Constant(float(values[order][np.searchsorted(cumulative, target)]))
            if put == "right":
                node.comparators = [value]
            else:
                node.left = value
            changed = True
            break
    return ast.unparse(tree) if changed else expression
