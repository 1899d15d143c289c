"""Jobs as data: independent pieces of work (a start of a GMM step, a bootstrap draw, a block
of markets) run in sequence, on threads, on processes or on a cluster, with the same results.

A job is a picklable description run by a top-level function (``map_jobs(function, items)``),
so any executor can take it: ``workers=N`` threads in this process, a
``concurrent.futures.Executor`` (``ProcessPoolExecutor``), or a ``dask.distributed.Client``
(anything with ``submit(function, item)`` returning a future with ``result()``). Results come
back in the items' order, so a reduction over them does not depend on which worker finished
first. ``run_jobs`` runs closures (jobs that need not leave the process, e.g. blocks of markets
sharing an inner loop's caches).
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np

from blpdemand.errors import SpecificationError

T = TypeVar("T")
Item = TypeVar("Item")


def check_executor(executor: Any) -> None:
    """An executor submits a function and an argument and returns a future with ``result()``."""
    if executor is not None and not callable(getattr(executor, "submit", None)):
        raise SpecificationError(
            f"executor={executor!r} cannot run jobs: give a concurrent.futures.Executor (e.g. "
            "ProcessPoolExecutor(2)) or a dask.distributed.Client (anything with submit())")


def map_jobs(function: Callable[[Item], T], items: Sequence[Item], *, workers: int = 1,
             executor: Any = None) -> list[T]:
    """[function(item) for item in items], on ``executor`` when given, else on ``workers``
    threads; in the items' order. ``function`` must be a top-level function and the items
    picklable for executors in other processes. The first job (in order) that raises has its
    exception re-raised."""
    check_executor(executor)
    if executor is None:
        return run_jobs([_Call(function, item) for item in items], workers=workers)
    futures = [executor.submit(function, item) for item in items]
    return [future.result() for future in futures]


class _Call:
    """function(item) as a zero-argument job (picklable when both are)."""

    __slots__ = ("function", "item")

    def __init__(self, function: Callable[[Any], Any], item: Any) -> None:
        self.function, self.item = function, item

    def __call__(self) -> Any:
        return self.function(self.item)


def run_jobs(jobs: Sequence[Callable[[], T]], *, workers: int = 1,
             pool: ThreadPoolExecutor | None = None, executor: Any = None) -> list[T]:
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
    """
    if executor is not None:  # jobs must then be picklable (functools.partial of top-level)
        check_executor(executor)
        return [future.result() for future in [executor.submit(job) for job in jobs]]
    if not np.issubdtype(type(workers), np.integer) or workers < 1:  # bool is not an integer
        raise SpecificationError(f"workers={workers!r} must be an integer >= 1")
    if workers == 1 or len(jobs) <= 1:
        return [job() for job in jobs]
    own = pool is None
    executor = pool if pool is not None else ThreadPoolExecutor(
        max_workers=min(int(workers), len(jobs)), thread_name_prefix="blpdemand-job")
    futures: list[Future[T]] = []
    try:
        futures = [executor.submit(contextvars.copy_context().run, job) for job in jobs]
        return [future.result() for future in futures]
    finally:
        if own:
            executor.shutdown(wait=True, cancel_futures=True)
        else:  # a shared pool stays up: cancel what has not started, wait for the rest
            for future in futures:
                future.cancel()
            for future in futures:
                if not future.cancelled():
                    future.exception()
