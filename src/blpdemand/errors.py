"""One error hierarchy for blpdemand.

Every message names the culprit (column, market, product or parameter) and the fix to try.
"""

from __future__ import annotations


class BLPDemandError(Exception):
    """Base class of every error raised on purpose by blpdemand."""


class DataError(BLPDemandError, ValueError):
    """The data a user brought are unusable: missing columns, NaN, shares outside (0, 1), ..."""


class SpecificationError(BLPDemandError, ValueError):
    """The model or the options are inconsistent: unknown options, too few instruments, ..."""


class MissingColumnError(DataError, SpecificationError):
    """A column named in the arguments (a formula, instruments, clusters, ...) is not in the
    data: the data lack it or the argument misnames it, so it is both kinds of error (callers
    catching either one see it)."""


class ConvergenceError(BLPDemandError, RuntimeError):
    """An iterative routine failed and the failure policy says to raise."""


class JobError(BLPDemandError, RuntimeError):
    """A job (a start, a bootstrap draw, a market shard's evaluation) raised an error that is
    not one of ours, or its worker was lost; the message names the job."""


class WorkerLostError(JobError):
    """A Dask worker holding a market shard left the cluster or stopped taking work: Dask's
    memory manager pauses a worker at 80% of its ``memory_limit`` and restarts it at 95%, and a
    restarted worker has lost the shard's data and inner loop."""


class BLPDemandWarning(UserWarning):
    """Base class of every warning issued by blpdemand."""


class WeakInstrumentsWarning(BLPDemandWarning):
    """A first-stage F statistic is below the conventional threshold (Stock and Yogo 2005)."""


class ConvergenceWarning(BLPDemandWarning):
    """An iterative routine stopped without meeting its tolerance, and the policy says warn."""


class IntegrationWarning(BLPDemandWarning):
    """Integration weights or nodes look unusual (e.g. weights that do not sum to one)."""


class OptimizationWarning(BLPDemandWarning):
    """The optimizer stopped at its start, hit a bound, or found distinct local minima."""


class IdentificationWarning(BLPDemandWarning):
    """Parameters the moments do not identify at the estimate (their standard errors are NaN)."""


class CollinearityWarning(BLPDemandWarning):
    """Regressors are collinear: fitted values stand, but some coefficients are not identified."""


class EconomicWarning(BLPDemandWarning):
    """Estimates imply economically invalid numbers: positive own-price elasticities, negative
    marginal costs, Lerner indices above one, consumers who like higher prices."""


class InferenceWarning(BLPDemandWarning):
    """A test whose reference distribution does not hold as stated: a null hypothesis on the
    boundary of the parameter space (a Wald test of sigma = 0)."""


class UnusedNestingWarning(BLPDemandWarning):
    """Product data have a 'nesting_ids' column but the model asked for no nesting (plain logit)."""
