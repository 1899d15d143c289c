"""Micro moments in the model: the predicted survey parts v_p, statistics f(v), and derivatives.

For a survey d with sampling weights w_dijt over the markets T_d it covers (Conlon and
Gortmaker 2023; j = 0 the outside option, s_i0t = 1 - sum_j s_ijt):

    E_r = sum_{t in T_d} sum_i w_it sum_{j >= 0} s_ijt A_rijt,   v_p = E_p / E_d,

with A_p = w_d v_p for a part p and A_d = w_d for the survey's normalizer. A moment is
f_m(v); its covariance from the survey's N_d independent draws is (delta method)

    Cov(f) = F diag_d(C_d / N_d) F',  C_d,pq = E_d[v_p v_q] - v_p v_q,  F = df/dv,

so that N g_M' (N Cov(f))^{-1} g_M = g_M' Cov(f)^{-1} g_M enters the GMM objective.

Derivatives: with dV_ij the derivative of agent i's utility of j (dV_i0 = 0),
d s_ij = s_ij (dV_ij - sum_k s_ik dV_ik), so dE_r = sum_i w_i sum_{j >= 1} B_rij dV_ij with
B_rij = s_ij (A_rij - abar_ri), abar_ri = sum_{k >= 0} s_ik A_rik. dV_ij = d delta_j +
x2_jk V_ic for theta = Sigma[k, c] (V = nu) or Pi[k, d] (V = y): the delta channel is the
(R, N) row sum_i w_i B_rij (times d delta / d theta by the implicit function theorem, or an
adjoint), the direct channel (sum_i w_i (B_r x2)_ik V_ic)_kc. Markets are looped over (a survey
covers few markets). The helpers' parts factor as A_rij = a_ri c_rj (agent and choice factors,
stacked once per survey): their sums and derivatives are a few matmuls per market
(``model.choice_sums``, which also holds second choices); the general form's parts are
(R, I_t, 1 + J_t) arrays per market.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from blpdemand._types import FloatArray, IntArray
from blpdemand.data.micro import (
    INSIDE,
    OUTSIDE,
    Condition,
    MicroMoment,
    MicroPart,
    Survey,
    Variable,
    names_in,
    with_quantiles,
)
from blpdemand.errors import DataError, SpecificationError
from blpdemand.model.choice_sums import (
    first_choice_sums,
    first_choice_terms,
    second_choice_derivatives,
    second_choice_sums,
)
from blpdemand.model.parameters import ParameterLayout

if TYPE_CHECKING:
    from blpdemand.model.problem import Problem


@dataclass(frozen=True, slots=True)
class Factors:
    """A declarative part's values a_i c_j e_k: agent (I_total,), first choice (N,) and its
    outside-option value, second choice (N,) and its outside-option value (ones when unused)."""

    a: FloatArray
    c: FloatArray
    c0: float
    e: FloatArray
    e0: float


@dataclass(frozen=True, slots=True, kw_only=True)
class MicroValues:
    """The micro moments at one (theta, delta).

    parts : (P_M,) v_p; values : (M_M,) f(v); observed : (M_M,) f(v_bar);
    F : (M_M, P_M) df/dv; covariance : (M_M, M_M) Cov(f) (None unless asked);
    d_delta : (M_M, N) d f / d delta at fixed theta; direct : (M_M, P) d f / d theta at fixed
    delta (both None unless asked).
    """

    parts: FloatArray
    values: FloatArray
    observed: FloatArray
    F: FloatArray
    covariance: FloatArray | None = None
    d_delta: FloatArray | None = None
    direct: FloatArray | None = None

    @property
    def g(self) -> FloatArray:
        """g_M = f(v_bar) - f(v): (M_M,)."""
        out: FloatArray = self.observed - self.values
        return out

    def jacobian(self, delta_jacobian: FloatArray) -> FloatArray:
        """d f / d theta = d f/d delta (d delta / d theta) + direct: (M_M, P)."""
        assert self.d_delta is not None and self.direct is not None
        out: FloatArray = self.d_delta @ delta_jacobian + self.direct
        return out


class MicroMoments:
    """Micro moments compiled against a Problem: every name checked, markets located.

    ``evaluate(layout, theta, delta)`` gives the :class:`MicroValues`.
    """

    def __init__(self, problem: Problem, moments: Sequence[MicroMoment]) -> None:
        if isinstance(moments, MicroMoment):
            moments = [moments]
        moments = tuple(moments)
        if not moments or not all(isinstance(m, MicroMoment) for m in moments):
            raise SpecificationError("micro moments must be a list of bd.micro moments "
                                     "(bd.micro.mean, probability, covariance or MicroMoment)")
        names = [m.name for m in moments]
        if len(set(names)) != len(names):
            dup = next(n for n in names if names.count(n) > 1)
            raise SpecificationError(f"two micro moments are named {dup!r}; give name=")
        if problem.agents is None:
            raise SpecificationError("micro moments need agents: give the problem a nonlinear "
                                     "formula and agents")
        self.problem, self.moments = problem, moments
        parts: list[MicroPart] = []
        index: list[IntArray] = []
        for m in moments:
            rows = []
            for p in m.parts:
                hit = next((k for k, q in enumerate(parts) if _same_part(p, q)), None)
                if hit is None:
                    parts.append(p)
                    hit = len(parts) - 1
                rows.append(hit)
            index.append(np.asarray(rows, dtype=np.int64))
        self.parts, self.moment_parts = tuple(parts), tuple(index)
        surveys: list[Survey] = []
        for p in parts:
            if p.survey not in surveys:
                surveys.append(p.survey)
        self.surveys = tuple(surveys)
        self.part_survey = np.array([surveys.index(p.survey) for p in parts], dtype=np.int64)
        self.observed = np.array([m.value for m in moments])
        agents = problem.agents
        self._demographics = pd.DataFrame(agents.demographics,
                                          columns=list(problem.demographic_names))
        self._products = problem.products.frame
        T = problem.T
        self.covers = np.zeros((len(surveys), T), dtype=bool)
        for d, s in enumerate(surveys):
            if s.markets is None:
                self.covers[d] = True
                continue
            for market in s.markets:
                try:
                    self.covers[d, problem.products.markets.position(market)] = True
                except KeyError:
                    raise DataError(f"survey {s.name!r} covers market {market!r}, which is not "
                                    "in the product data") from None
        # declarative factors evaluated once (``Factors``), the survey's sample's too
        self._factors: list[Factors | None] = []
        for p in parts:
            if p.values is not None and p.survey.second_choices:
                raise SpecificationError(f"micro part {p.name!r}: a survey of second choices "
                                         "takes declarative parts (bd.micro.second_choice)")
            self._factors.append(None if p.values is not None else self._combine(
                p.factors, p.name, second=p.survey.second_choices))
        self._sample = [None if s.sample is None else self._combine(
            (s.sample,), f"survey {s.name}", second=s.second_choices) for s in surveys]
        # a declarative survey's rows (its parts, then its normalizer) stacked once, times its
        # sample: a (R, I_total), c and e (R, 1 + N) with column 0 the outside option's value
        self._stacked: list[tuple[FloatArray, FloatArray, FloatArray] | None] = []
        for d, s in enumerate(surveys):
            found = [self._factors[p] for p in np.flatnonzero(self.part_survey == d)]
            if s.weights is not None or any(f is None for f in found):
                self._stacked.append(None)  # the general form: dense arrays per market
                continue
            ones = Factors(np.ones(agents.I), np.ones(problem.N), 1.0, np.ones(problem.N), 1.0)
            stack = [f for f in found if f is not None] + [ones]
            sample = self._sample[d] or ones
            a = np.array([f.a for f in stack]) * sample.a
            c = np.array([np.r_[f.c0, f.c] for f in stack]) * np.r_[sample.c0, sample.c]
            e = np.array([np.r_[f.e0, f.e] for f in stack]) * np.r_[sample.e0, sample.e]
            self._stacked.append((a, c, e))

    def _combine(self, factors: Sequence[Variable | Condition], where: str, *, second: bool
                 ) -> Factors:
        """The product of a part's factors by side: agent, first choice, second choice."""
        assert self.problem.agents is not None
        a = np.ones(self.problem.agents.I)
        c, c0 = np.ones(self.problem.N), 1.0
        e, e0 = np.ones(self.problem.N), 1.0
        for factor in factors:
            for side, values, outside_value in self._factor(factor, where):
                if side == "agent":
                    a = a * values
                elif side == "second":
                    if not second:
                        raise SpecificationError(
                            f"micro part {where!r} conditions on second choices, but its survey "
                            "does not record them; give Survey(..., second_choices=True)")
                    e, e0 = e * values, e0 * outside_value
                else:
                    c, c0 = c * values, c0 * outside_value
        return Factors(a, c, c0, e, e0)

    # ------------------------------------------------------------------ names
    @property
    def M(self) -> int:
        return len(self.moments)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.moments)

    def _factor(self, factor: Variable | Condition, where: str
                ) -> list[tuple[str, FloatArray, float]]:
        """(side, values, value at the outside option) for each term of a factor."""
        if isinstance(factor, Condition):
            out: list[tuple[str, FloatArray, float]] = []
            for side, expression in factor.terms:
                if expression == INSIDE:
                    out.append((side, np.ones(self.problem.N), 0.0))
                elif expression == OUTSIDE:
                    out.append((side, np.zeros(self.problem.N), 1.0))
                else:
                    on = "agent" if side == "agent" else "choice"
                    values = self._evaluate(expression, on, where)
                    out.append((side, values.astype(bool).astype(np.float64), 0.0))
            return out
        resolved = (self._resolve(factor.expression, where) if factor.side == "auto"
                    else str(factor.side))
        return [(resolved, self._evaluate(factor.expression, resolved, where), 0.0)]

    def _resolve(self, expression: str, where: str) -> str:
        """A variable is a demographic when the demographics know every name, else a product
        column of the choice."""
        demographics = set(self._demographics.columns)
        if expression in demographics or set(names_in(expression)) <= demographics:
            return "agent"
        return "choice"

    def _evaluate(self, expression: str, side: str, where: str) -> FloatArray:
        frame = self._demographics if side == "agent" else self._products
        if side == "agent" and self.problem.agents is not None:  # "income > q75"
            expression = with_quantiles(expression, frame, self.problem.agents.weights)
        if expression in frame.columns:
            values = frame[expression].to_numpy()
        else:
            missing = [n for n in names_in(expression) if n not in frame.columns]
            if missing:
                what = ("a demographic (the problem's demographics: "
                        f"{list(self._demographics.columns)})" if side == "agent" else
                        "a product-data column (nor a demographic: "
                        f"{list(self._demographics.columns)})")
                raise SpecificationError(
                    f"micro moment part {where!r}: {', '.join(map(repr, missing))} in "
                    f"{expression!r} is not {what}; check the spelling, or add the column")
            try:
                values = frame.eval(expression, engine="python")
            except Exception as error:  # pandas raises many kinds for a bad expression
                raise SpecificationError(f"micro moment part {where!r}: {expression!r} cannot "
                                         f"be evaluated ({type(error).__name__})") from error
        try:
            out = np.asarray(values, dtype=np.float64).reshape(len(frame))
        except (TypeError, ValueError) as error:
            raise SpecificationError(f"micro moment part {where!r}: {expression!r} does not give "
                                     "one number per row") from error
        if not np.all(np.isfinite(out)):
            raise DataError(f"micro moment part {where!r}: {expression!r} has NaN/inf values")
        return out

    # ------------------------------------------------------------------ evaluation
    def _market_arrays(self, t: int, d: int) -> tuple[FloatArray, FloatArray]:
        """Survey weights w_d (I_t, 1 + J_t) and its parts' values (P_d, I_t, 1 + J_t)."""
        problem, agents = self.problem, self.problem.agents
        assert agents is not None
        rows, people = problem.products.markets.slice(t), agents.markets.slice(t)
        I, J = people.stop - people.start, rows.stop - rows.start
        market = problem.products.markets.ids[t]
        survey = self.surveys[d]
        if survey.weights is not None:
            w_d = self._call(survey.weights, market, rows, people, f"survey {survey.name!r}")
        elif (sample := self._sample[d]) is not None:
            w_d = np.outer(sample.a[people], np.r_[sample.c0, sample.c[rows]])
        else:
            w_d = np.ones((I, 1 + J))
        parts = np.flatnonzero(self.part_survey == d)
        values = np.empty((parts.size, I, 1 + J))
        for k, p in enumerate(parts):
            part = self.parts[p]
            if part.values is not None:
                values[k] = self._call(part.values, market, rows, people, f"part {part.name!r}")
            else:
                f = self._factors[p]
                assert f is not None
                values[k] = np.outer(f.a[people], np.r_[f.c0, f.c[rows]])
        return w_d, values

    def _stacked_factors(self, t: int, d: int) -> tuple[FloatArray, FloatArray, FloatArray]:
        """a (R, I_t), c and e (R, 1 + J_t) of a declarative survey's rows in market t."""
        agents = self.problem.agents
        assert agents is not None
        rows, people = self.problem.products.markets.slice(t), agents.markets.slice(t)
        stacked = self._stacked[d]
        assert stacked is not None
        a, c, e = stacked
        columns = np.r_[0, 1 + np.arange(rows.start, rows.stop)]
        return a[:, people], c[:, columns], e[:, columns]

    def _call(self, function: Any, market: Any, rows: slice, people: slice, what: str
              ) -> FloatArray:
        products = self._products.iloc[rows]
        agents = self._demographics.iloc[people].reset_index(drop=True)
        shape = (people.stop - people.start, 1 + rows.stop - rows.start)
        out = np.asarray(function(market, products, agents), dtype=np.float64)
        if out.shape != shape:
            raise SpecificationError(f"{what} in market {market!r} returned shape {out.shape}; "
                                     f"expected (I_t, 1 + J_t) = {shape} (column 0: outside)")
        if not np.all(np.isfinite(out)):
            raise DataError(f"{what} in market {market!r} returned NaN/inf values")
        return out

    def evaluate(self, layout: ParameterLayout, theta: FloatArray, delta: FloatArray, *,
                 derivatives: bool = False, covariance: bool = False) -> MicroValues:
        """v, f(v) and, when asked, d f / d delta, the direct d f / d theta and Cov(f)."""
        problem, agents = self.problem, self.problem.agents
        assert agents is not None
        sigma, pi = layout.unpack(np.asarray(theta, dtype=np.float64))
        nodes = problem.nodes_for(layout)
        variables = np.hstack([nodes, agents.demographics])
        coefficients = nodes @ sigma.T + (agents.demographics @ pi.T if pi.size else 0.0)
        rows_p, cols_p = _parameter_index(layout)
        x2 = problem.X2.values
        n_parts, n_surveys, P = len(self.parts), len(self.surveys), layout.P
        E = np.zeros(n_parts + n_surveys)
        second = np.zeros((n_parts, n_parts))
        d_delta = np.zeros((n_parts + n_surveys, problem.N)) if derivatives else None
        direct = np.zeros((n_parts + n_surveys, P)) if derivatives else None
        for t in range(problem.T):
            covering = np.flatnonzero(self.covers[:, t])
            if covering.size == 0:
                continue
            rows, people = problem.products.markets.slice(t), agents.markets.slice(t)
            S = _probabilities(delta[rows], coefficients[people] @ x2[rows].T)
            w = agents.weights[people]
            for d in covering:
                parts = np.flatnonzero(self.part_survey == d)
                r = np.r_[parts, n_parts + d]
                if self._stacked[d] is not None and not self.surveys[d].second_choices:
                    a, c, _ = self._stacked_factors(t, int(d))
                    abar = first_choice_sums(S, a, c)
                    E[r] += abar @ w
                    if covariance:
                        k = parts.size  # a pair's values: the product (the sample is 0/1)
                        pairs = (c[:k, None] * c[None, :k]).reshape(k * k, -1) @ S.T
                        pairs *= (a[:k, None] * a[None, :k]).reshape(k * k, -1)
                        second[np.ix_(parts, parts)] += (pairs @ w).reshape(k, k)
                    if derivatives:
                        assert d_delta is not None and direct is not None
                        through, G = first_choice_terms(S, w, a, c, np.ascontiguousarray(x2[rows]))
                        d_delta[r, rows] += through
                        I, R, K2 = G.shape
                        full = (G.reshape(I, R * K2).T @ variables[people]).reshape(R, K2, -1)
                        direct[r] += full[:, rows_p, cols_p]
                    continue
                if self.surveys[d].second_choices:
                    a, c, e = self._stacked_factors(t, int(d))
                    E[r] += second_choice_sums(S, a, c, e) @ w
                    if covariance:
                        k = parts.size  # a pair's values: the product (the sample is 0/1)
                        pa = a[:k, None] * a[None, :k]
                        pc = c[:k, None] * c[None, :k]
                        pe = e[:k, None] * e[None, :k]
                        sums = second_choice_sums(S, pa.reshape(k * k, -1), pc.reshape(k * k, -1),
                                                  pe.reshape(k * k, -1)) @ w
                        second[np.ix_(parts, parts)] += sums.reshape(k, k)
                    if derivatives:
                        assert d_delta is not None and direct is not None
                        B = second_choice_derivatives(S, a, c, e) * w[None, :, None]
                        d_delta[r, rows] += B.sum(axis=1)
                        G = (B.reshape(-1, B.shape[2]) @ np.ascontiguousarray(x2[rows]))
                        full = np.matmul(G.reshape(B.shape[0], B.shape[1], -1).transpose(0, 2, 1),
                                         variables[people])
                        direct[r] += full[:, rows_p, cols_p]
                    continue
                w_d, values = self._market_arrays(t, int(d))
                # AS_rij = A_rij s_ij, with A = [w_d v_p for the parts; w_d]: (R_d, I, 1 + J)
                AS = np.empty((parts.size + 1, S.shape[0], S.shape[1]))
                np.multiply(w_d, S, out=AS[-1])
                np.multiply(values, AS[-1][None], out=AS[:-1])
                abar = AS.sum(axis=2)  # (R, I): sum_k A_rik s_ik
                E[r] += abar @ w
                if covariance:
                    weighted = (AS[:-1] * w[None, :, None]).reshape(parts.size, -1)
                    second[np.ix_(parts, parts)] += weighted @ values.reshape(parts.size, -1).T
                if derivatives:
                    assert d_delta is not None and direct is not None
                    # B_rij = AS_rij - s_ij abar_ri (j >= 1), never formed: its sums over i
                    # (weighted by w) and its products with x2 are taken term by term
                    inside = AS[:, :, 1:]
                    wabar = abar * w[None, :]
                    d_delta[r, rows] += (np.tensordot(w, inside, axes=([0], [1]))
                                         - wabar @ S[:, 1:])
                    x2_t = np.ascontiguousarray(x2[rows])
                    R, I = AS.shape[0], AS.shape[1]
                    G = (inside.reshape(R * I, -1) @ x2_t).reshape(R, I, -1)
                    G -= abar[:, :, None] * (S[:, 1:] @ x2_t)[None]
                    G *= w[None, :, None]
                    full = np.matmul(G.transpose(0, 2, 1), variables[people])  # (R, K2, V)
                    direct[r] += full[:, rows_p, cols_p]
        normalizer = E[n_parts + self.part_survey]
        if np.any(normalizer <= 0):
            empty = sorted({self.surveys[d].name for d in self.part_survey[normalizer <= 0]})
            raise SpecificationError(f"survey(s) {empty} sample no one at this theta (the "
                                     "model's probability of their sampled choices is 0)")
        v = E[:n_parts] / normalizer
        values_f = np.empty(self.M)
        F = np.zeros((self.M, n_parts))
        for m, (moment, index) in enumerate(zip(self.moments, self.moment_parts)):
            values_f[m] = moment.evaluate(v[index])
            F[m, index] += moment.derivative(v[index])
        out_cov = out_delta = out_direct = None
        if covariance:
            C = second / normalizer[:, None] - np.outer(v, v)
            same = self.part_survey[:, None] == self.part_survey[None, :]
            N_d = np.array([self.surveys[d].observations for d in self.part_survey], dtype=float)
            C = np.where(same, C, 0.0) / N_d[:, None]
            out_cov = F @ C @ F.T
            out_cov = (out_cov + out_cov.T) / 2
        if derivatives:
            assert d_delta is not None and direct is not None
            s_index = n_parts + self.part_survey
            scale = 1.0 / normalizer[:, None]
            dv_delta = (d_delta[:n_parts] - v[:, None] * d_delta[s_index]) * scale
            dv_direct = (direct[:n_parts] - v[:, None] * direct[s_index]) * scale
            out_delta, out_direct = F @ dv_delta, F @ dv_direct
        return MicroValues(parts=v, values=values_f, observed=self.observed, F=F,
                           covariance=out_cov, d_delta=out_delta, direct=out_direct)


def _probabilities(delta: FloatArray, mu: FloatArray) -> FloatArray:
    """[s_i0, s_i1, ..., s_iJ] for one market: delta (J,), mu (I, J) -> (I, 1 + J), with the
    utilities shifted by m_i = max(0, max_j u_ij) against overflow."""
    u = delta[None, :] + mu
    m = np.maximum(u.max(axis=1, initial=0.0), 0.0)
    e = np.exp(np.hstack([-m[:, None], u - m[:, None]]))
    out: FloatArray = e / e.sum(axis=1, keepdims=True)
    return out


def _parameter_index(layout: ParameterLayout) -> tuple[IntArray, IntArray]:
    """X2 row and variable column (nodes, then K2 + demographics) of every parameter."""
    r_s, c_s = layout.sigma_index
    r_p, c_p = layout.pi_index
    rows = np.concatenate([r_s, r_p]).astype(np.int64)
    cols = np.concatenate([c_s, layout.K2 + c_p]).astype(np.int64)
    return rows, cols


def _same_part(a: MicroPart, b: MicroPart) -> bool:
    """One part serves several moments when it is the same object, or the same declarative
    part (same survey, same factors)."""
    if a is b:
        return True
    return a.values is None and b.values is None and a.survey == b.survey and (
        a.factors == b.factors)
