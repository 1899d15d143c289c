"""Progress of an estimation: one record per objective evaluation, sent to an injected reporter.

Library code never prints. The estimator calls ``reporter.on_evaluation(record)`` after every
evaluation of Q(theta); the default reporter is silent, the CLI injects a live terminal one.
With ``EstimationConfig(workers > 1)`` the starts run on several threads: their records
interleave (each carries its ``start`` index), and the estimator wraps the reporter in a
:class:`SerializedReporter`, so a reporter is never called from two threads at once.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from blpdemand._types import FloatArray


@dataclass(frozen=True, slots=True, kw_only=True)
class EvaluationRecord:
    """One evaluation of the GMM objective Q(theta).

    Attributes
    ----------
    step : GMM step (1 or 2); start : index of the multi-start run (0 = the user's values).
    evaluation : running count of objective evaluations in this optimization.
    iteration : optimizer iterations completed so far.
    time : seconds since the estimation began.
    contraction_iterations, contraction_evaluations : inner-loop work for this theta.
    objective : Q(theta); gradient_norm : inf-norm of dQ/dtheta; theta : (P,) parameters.
    """

    step: int
    start: int
    evaluation: int
    iteration: int
    time: float
    contraction_iterations: int
    contraction_evaluations: int
    objective: float
    gradient_norm: float
    theta: FloatArray = field(repr=False)


@runtime_checkable
class Reporter(Protocol):
    """Receives one record per objective evaluation."""

    def on_evaluation(self, record: EvaluationRecord) -> None:
        """Handle one evaluation record."""


class SilentReporter:
    """The default reporter: ignores every record."""

    def on_evaluation(self, record: EvaluationRecord) -> None:
        return None


class RecordingReporter:
    """Keeps every record in ``records`` (for notebooks, tests and convergence plots)."""

    def __init__(self) -> None:
        self.records: list[EvaluationRecord] = []

    def on_evaluation(self, record: EvaluationRecord) -> None:
        self.records.append(record)


class SerializedReporter:
    """Passes records to ``reporter`` one at a time (a lock), for starts run on threads."""

    def __init__(self, reporter: Reporter) -> None:
        self.reporter = reporter
        self._lock = threading.Lock()

    def on_evaluation(self, record: EvaluationRecord) -> None:
        with self._lock:
            self.reporter.on_evaluation(record)
