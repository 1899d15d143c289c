"""Draws stability: re-run a computation with 2x and 4x the nodes and report the change.

The advice (Train 2009, ch. 9; Conlon and Gortmaker 2020, sec. 4): increase the number of
draws until estimates stop moving. ``draws_stability`` makes that one call.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from blpdemand._types import FloatArray
from blpdemand.errors import SpecificationError
from blpdemand.integration.rule import Integration

Runner = Callable[[Callable[[Integration], Any], Iterable[Integration]], Iterable[Any]]


@dataclass(frozen=True, slots=True)
class StabilityReport:
    """Values of named quantities under refined integration rules.

    Attributes
    ----------
    rules : the rules evaluated, coarsest first (base, then refined by ``factors``).
    factors : (R,) refinement factors (1, 2, 4 by default).
    names : (Q,) quantity names.
    values : (R, Q) value of each quantity under each rule.
    """

    rules: tuple[Integration, ...]
    factors: tuple[int, ...]
    names: tuple[str, ...]
    values: FloatArray

    @property
    def changes(self) -> FloatArray:
        """(R - 1, Q) absolute change of each quantity from one rule to the next."""
        return np.abs(np.diff(self.values, axis=0))

    @property
    def relative_changes(self) -> FloatArray:
        """(R - 1, Q) change relative to max(|value|, 1e-12) under the finer rule."""
        scale = np.maximum(np.abs(self.values[1:]), 1e-12)
        return self.changes / scale

    def stable(self, tol: float = 1e-2) -> bool:
        """Whether the last refinement moved every quantity by less than ``tol`` (relative)."""
        return bool(np.all(self.relative_changes[-1] < tol))

    def to_frame(self) -> pd.DataFrame:
        """One row per quantity: value at each size, and the last relative change."""
        columns = {f"{rule.kind}({rule.size})": self.values[r] for r, rule in enumerate(self.rules)}
        frame = pd.DataFrame(columns, index=pd.Index(self.names, name="quantity"))
        for r in range(1, len(self.rules)):
            frame[f"change x{self.factors[r - 1]}->x{self.factors[r]}"] = self.changes[r - 1]
        frame["relative change"] = self.relative_changes[-1]
        return frame

    def records(self) -> list[dict[str, Any]]:
        """The table as a list of row dicts (for a results Table or JSON)."""
        frame = self.to_frame().reset_index()
        return [{str(k): v for k, v in row.items()} for row in frame.to_dict("records")]


def draws_stability(evaluate: Callable[[Integration], Any], integration: Integration, *,
                    factors: Sequence[int] = (1, 2, 4), names: Sequence[str] | None = None,
                    runner: Runner = map) -> StabilityReport:
    """Evaluate ``evaluate(rule)`` under ``integration.refined(f)`` for each factor f.

    ``evaluate`` returns a number, an array, a pandas Series or a mapping of name -> number
    (e.g. ``lambda rule: estimate(Problem(..., agents=rule), ...).theta``). The runs are
    independent jobs handed to ``runner`` (``map`` by default; an executor's ``map`` runs them
    in parallel).

    Examples
    --------
    >>> rule = Integration("monte_carlo", 100, rng=0)
    >>> report = draws_stability(lambda r: float(np.exp(r.nodes_weights(1)[0][:, 0]).mean()), rule)
    >>> report.values.shape
    (3, 1)
    """
    factors = tuple(int(f) for f in factors)
    if not factors or any(f < 1 for f in factors) or list(factors) != sorted(set(factors)):
        raise SpecificationError(f"factors={factors} must be increasing integers >= 1")
    rules = tuple(integration.refined(f) for f in factors)
    outputs = list(runner(evaluate, rules))
    flat = [_flatten(out) for out in outputs]
    found_names = flat[0][0]
    if any(f[0] != found_names for f in flat):
        raise SpecificationError("evaluate returned different quantities for different rules")
    if names is not None:
        if len(names) != len(found_names):
            raise SpecificationError(
                f"{len(names)} names given for {len(found_names)} quantities returned by evaluate")
        found_names = tuple(names)
    values = np.vstack([f[1] for f in flat])
    return StabilityReport(rules=rules, factors=factors, names=found_names, values=values)


def _flatten(output: Any) -> tuple[tuple[str, ...], FloatArray]:
    """Names and values of what ``evaluate`` returned."""
    if isinstance(output, pd.Series):
        return tuple(str(k) for k in output.index), output.to_numpy(dtype=np.float64)
    if isinstance(output, Mapping):
        return tuple(str(k) for k in output), np.array([float(v) for v in output.values()])
    values = np.atleast_1d(np.asarray(output, dtype=np.float64)).ravel()
    return tuple(f"q{k}" for k in range(values.size)), values
