"""Jobs as data: independent pieces of work (a start of a GMM step, a bootstrap draw, a block
of markets) run in sequence, on threads, on processes or on a cluster, with the same results.

A job is a picklable description run by a top-level function (``map_jobs(function, items)``),
so any executor can take it: ``workers=N`` threads in this process, a
``concurrent.futures.Executor`` (``ProcessPoolExecutor``), or a ``dask.distributed.Client``
(anything with ``submit(function, item)`` returning a future with ``result()``). Results come
back in the items' order, so a reduction over them does not depend on which worker finished
first. ``run_jobs`` runs closures (jobs that need not leave the process, e.g. blocks of markets
sharing an inner loop's caches).

Given ``names`` (e.g. "start 3 of GMM step 1"), a job that raises is reported by name: one of
our errors keeps its type with the name put before its message, anything else (a bug, Dask's
``KilledWorker`` after a job took down its workers ``allowed-failures`` times) becomes a
:class:`~blpdemand.errors.JobError` naming the job, with the original as its cause. A job whose
worker died is not an error: Dask runs it again on another worker (its retries), and the job,
being data with its own seed, computes the same numbers there.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np

from blpdemand.errors import BLPDemandError, JobError, SpecificationError

T = TypeVar("T")
Item = TypeVar("Item")


def check_executor(executor: Any) -> None:
    """An executor submits a function and an argument and returns a future with ``result()``."""
    if executor is not None and not callable(getattr(executor, "submit", None)):
        raise SpecificationError(
            f"executor={executor!r} cannot run jobs: give a concurrent.futures.Executor (e.g. "
            "ProcessPoolExecutor(2)) or a dask.distributed.Client (anything with submit())")


def named_error(name: str, error: Exception) -> Exception:
    """``error`` reported as raised by job ``name``: one of ours keeps its type, its message
    prefixed with the name; any other becomes a JobError naming the job (raise it ``from``)."""
    if isinstance(error, BLPDemandError):
        if error.args and isinstance(error.args[0], str):
            if not error.args[0].startswith(f"{name}: "):
                error.args = (f"{name}: {error.args[0]}", *error.args[1:])
        else:
            error.args = (f"{name}: {error!r}",)
        return error
    return JobError(f"{name} raised {type(error).__name__}: {error}")


def _results(futures: Sequence[Any], names: Sequence[str] | None) -> list[Any]:
    """future.result() for each future, in order; the first failure reported by name."""
    out = []
    for k, future in enumerate(futures):
        try:
            out.append(future.result())
        except Exception as error:
            if names is None:
                raise
            raise named_error(names[k], error) from error
    return out


def map_jobs(function: Callable[[Item], T], items: Sequence[Item], *, workers: int = 1,
             executor: Any = None, names: Sequence[str] | None = None) -> list[T]:
    """[function(item) for item in items], on ``executor`` when given, else on ``workers``
    threads; in the items' order. ``function`` must be a top-level function and the items
    picklable for executors in other processes. The first job (in order) that raises has its
    exception re-raised, reported as job ``names[k]`` when names are given."""
    check_executor(executor)
    if executor is None:
        return run_jobs([_Call(function, item) for item in items], workers=workers, names=names)
    futures = [executor.submit(function, item) for item in items]
    return _results(futures, names)


class _Call:
    """function(item) as a zero-argument job (picklable when both are)."""

    __slots__ = ("function", "item")

    def __init__(self, function: Callable[[Any], Any], item: Any) -> None:
        self.function, self.item = function, item

    def __call__(self) -> Any:
        return self.function(self.item)


class _Done:
    """A job run when its result is asked for (in sequence, stopping at the first failure)."""

    __slots__ = ("job",)

    def __init__(self, job: Callable[[], Any]) -> None:
        self.job = job

    def result(self) -> Any:
        return self.job()


def run_jobs(jobs: Sequence[Callable[[], T]], *, workers: int = 1,
             pool: ThreadPoolExecutor | None = None, executor: Any = None,
             names: Sequence[str] | None = None) -> list[T]:
    """Run independent jobs and return their results in the jobs' order.

    ``workers=1`` runs them in sequence. With ``workers > 1`` (and more than one job) they run
    on a pool of that many threads: numpy and BLAS release the GIL in the heavy kernels, so
    starts overlap. Each job runs in a copy of the caller's ``contextvars`` context (numpy's
    error state is context-local, and new threads would otherwise start from numpy's
    defaults), so each job computes exactly what it computes in sequence. The first job (in
    order) that raises has its exception re-raised, after the pending jobs are cancelled and
    the running ones finish. Keep BLAS at one thread per worker (e.g. OPENBLAS_NUM_THREADS=1
    or threadpoolctl) to avoid oversubscribing the cores; this function changes no global
    thread setting.

    ``pool``: a caller's own thread pool, kept across calls (the inner loop's, so that each
    call does not pay a pool's start-up), used instead of a new one when ``workers > 1``.
    ``executor``: run the jobs there instead (they must then be picklable).
    ``names``: one per job; the first failure is then reported as that job's (``named_error``).
    """
    if names is not None and len(names) != len(jobs):
        raise SpecificationError(f"{len(names)} names for {len(jobs)} jobs")
    if executor is not None:  # jobs must then be picklable (functools.partial of top-level)
        check_executor(executor)
        return _results([executor.submit(job) for job in jobs], names)
    if not np.issubdtype(type(workers), np.integer) or workers < 1:  # bool is not an integer
        raise SpecificationError(f"workers={workers!r} must be an integer >= 1")
    if workers == 1 or len(jobs) <= 1:
        return _results([_Done(job) for job in jobs], names)
    own = pool is None
    executor = pool if pool is not None else ThreadPoolExecutor(
        max_workers=min(int(workers), len(jobs)), thread_name_prefix="blpdemand-job")
    futures: list[Future[T]] = []
    try:
        futures = [executor.submit(contextvars.copy_context().run, job) for job in jobs]
        return _results(futures, names)
    finally:
        if own:
            executor.shutdown(wait=True, cancel_futures=True)
        else:  # a shared pool stays up: cancel what has not started, wait for the rest
            for future in futures:
                future.cancel()
            for future in futures:
                if not future.cancelled():
                    future.exception()
