"""``[compute]``: where a run's jobs run, from the spec to a started and closed executor.

``scheduler = "threads"`` runs the estimation's starts on ``workers`` threads
(``EstimationConfig(workers=N)``); ``"processes"`` on a spawn ``ProcessPoolExecutor`` of
``workers`` processes; ``"local"`` on a Dask ``LocalCluster`` of ``workers`` one-thread
processes; ``"tcp://host:port"`` on the workers of a running Dask scheduler. The pool or
cluster lives for the run only (``opened``): it is closed on success, on errors and on
Ctrl-C. The starts of each GMM step and the ``[post.bootstrap]`` draws go to it; every job is
data (``StartJob``), so the results are bit for bit the sequential ones. With ``[estimation]
shards = k`` the markets' shards go to it instead (threads or Dask; ``solve.sharded_gmm``).

``executor_runner`` is the estimator's ``runner`` seam for an executor: it submits the starts,
advances a progress bar as they finish on any worker, shows each start's evaluation rows (and
its warnings) in the order a sequential run would, and returns the results in submission order.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import importlib.util
import logging
import multiprocessing
import os
import queue
import re
import signal
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from blpdemand.cli.spec import Spec, check_keys
from blpdemand.errors import SpecificationError
from blpdemand.solve.multistart import StartJob, StartRun, run_start
from blpdemand.solve.progress import EvaluationRecord, RecordingReporter, Reporter

SECTION = "[compute]"
POOLS = ("threads", "processes", "local")  # schedulers this run starts (and closes)
DASK = 'pip install "blpdemand[dask]"'
_ADDRESS = re.compile(r"^tcp://\S+:\d+$")
CLOSE_TIMEOUT = 10  # seconds a Dask client or cluster gets to close
# no dashboard; the scheduler's HTTP server (health, metrics) on a free local port: on its
# default, 8787, a second cluster on the machine gets a "Port 8787 is already in use" warning
QUIET_SCHEDULER = {"dashboard_address": "127.0.0.1:0"}

# the executor of the running command (None: threads or in sequence), for [post.bootstrap]
_EXECUTOR: ContextVar[Any] = ContextVar("blpdemand_cli_executor", default=None)


@dataclass(frozen=True, slots=True, kw_only=True)
class Compute:
    """A checked ``[compute]`` section: ``scheduler`` (one of ``POOLS`` or a Dask address
    ``tcp://host:port``) and ``workers`` (threads or processes to start; None for an address)."""

    scheduler: str
    workers: int | None

    @property
    def dask(self) -> bool:
        return self.scheduler not in ("threads", "processes")


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the platform has one)."""
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity is not None else (os.cpu_count() or 1)


def check_compute(spec: Spec, command: str) -> Compute | None:
    """The ``[compute]`` section checked (None when absent), before anything is started.

    Raises SpecificationError naming the spec file and the key for an unknown key, a bad
    scheduler or worker count, ``workers`` beside a scheduler address, a second place that
    sets the starts' workers (``[estimation] workers``), the ``logit`` command, and a Dask
    scheduler without the ``distributed`` package."""
    if not spec.compute:
        return None
    name = spec.path.name
    given = dict(spec.compute)
    check_keys(given, ("scheduler", "workers"), SECTION, name)
    if command != "estimate":
        raise SpecificationError(f"{SECTION} in {name} runs the jobs of 'blpdemand estimate' "
                                 f"(starts, bootstrap draws); the plain logit has none: remove "
                                 f"{SECTION}")
    scheduler = given.get("scheduler", "threads")
    if scheduler not in POOLS and not _ADDRESS.match(scheduler):
        raise SpecificationError(
            f"{SECTION} scheduler in {name} must be \"threads\", \"processes\", \"local\" (a "
            f"Dask cluster on this machine) or a Dask scheduler's address \"tcp://host:port\", "
            f"got {scheduler!r}")
    workers = given.get("workers")
    if workers is not None and scheduler not in POOLS:
        raise SpecificationError(
            f"{SECTION} workers in {name}: the Dask scheduler at {scheduler} has its own "
            f"workers; remove workers (it sizes the threads, processes or local cluster a run "
            f"starts)")
    if workers is not None and workers < 1:
        raise SpecificationError(f"{SECTION} workers in {name} must be an integer >= 1, "
                                 f"got {workers!r}")
    if "workers" in spec.estimation:
        raise SpecificationError(
            f"[estimation] workers and {SECTION} in {name} both say where the starts run; "
            f"keep {SECTION} (scheduler = \"threads\", workers = N for threads) and remove "
            f"workers from [estimation]")
    if scheduler == "processes" and spec.estimation.get("shards") is not None:
        raise SpecificationError(
            f"[estimation] shards with {SECTION} scheduler = \"processes\" in {name}: each "
            f"shard keeps its inner loop on the worker that holds it, which a process pool "
            f"cannot address; use scheduler = \"local\", a Dask address, or \"threads\"")
    compute = Compute(scheduler=scheduler, workers=(workers if workers is not None else
                                                    usable_cores() if scheduler in POOLS
                                                    else None))
    if compute.dask and not dask_installed():
        raise SpecificationError(f"{SECTION} scheduler = {scheduler!r} in {name} runs the jobs "
                                 f"on Dask, which is not installed: {DASK}")
    return compute


def dask_installed() -> bool:
    """Whether ``distributed`` (the ``[dask]`` extra) can be imported."""
    return importlib.util.find_spec("distributed") is not None


def run_executor() -> Any:
    """The executor of the running command (None: threads or in sequence)."""
    return _EXECUTOR.get()


@contextmanager
def opened(compute: Compute | None, *,
           shield: Callable[[], AbstractContextManager[Any]] = nullcontext,
           check: Callable[[], None] = lambda: None) -> Iterator[Any]:
    """Start the pool or cluster ``compute`` asks for, yield its executor (None for threads or
    no ``[compute]``), and close it on the way out, also after an error or an interrupt.

    ``shield``: a context in which Ctrl-C is recorded, not raised (starting and closing are
    not cut short, so nothing is left half started); ``check`` raises an interrupt recorded
    meanwhile, once what was started can be closed."""
    if compute is None or compute.scheduler == "threads":
        yield None
        return
    resources: list[Callable[[bool], None]] = []  # closes each thing started (True: success)
    finished = False
    try:
        # Ctrl-C while our workers start: recorded, raised by check() once they can be closed
        # (connecting to a scheduler's address stays interruptible: nothing is started)
        with shield() if compute.scheduler in POOLS else nullcontext():
            executor = _start(compute, resources)
        check()
        token = _EXECUTOR.set(executor)
        try:
            yield executor
        finally:
            _EXECUTOR.reset(token)
        finished = True
    finally:
        with shield():
            for close in reversed(resources):
                close(finished)


def _start(compute: Compute, resources: list[Callable[[bool], None]]) -> Any:
    if compute.scheduler == "processes":
        assert compute.workers is not None
        pool = ProcessPoolExecutor(compute.workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_ignore_interrupts)
        resources.append(functools.partial(_stop_pool, pool))
        for _ in range(compute.workers):  # the processes start now and import the package
            pool.submit(int)              # while the data are read
        return pool
    distributed = importlib.import_module("distributed")
    if compute.scheduler == "local":
        cluster = distributed.LocalCluster(n_workers=compute.workers, threads_per_worker=1,
                                           processes=True, dashboard_address=None,
                                           scheduler_kwargs=QUIET_SCHEDULER,
                                           silence_logs=logging.ERROR)
        resources.append(lambda _: cluster.close(timeout=CLOSE_TIMEOUT))
        client = distributed.Client(cluster, set_as_default=False)
        client.run(quiet_worker)  # our workers: errors reach the run through the futures
    else:
        try:
            client = distributed.Client(compute.scheduler, set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise SpecificationError(
                f"{SECTION} scheduler: no Dask scheduler answers at {compute.scheduler} ({exc}); "
                f"start one there ('dask scheduler', then 'dask worker {compute.scheduler}') or "
                f"use scheduler = \"local\"") from None
    resources.append(lambda _: client.close(timeout=CLOSE_TIMEOUT))
    return client


def quiet_worker() -> None:
    """In a worker of a cluster the run started: SIGINT ignored (see ``_ignore_interrupts``),
    and Dask's own log lines (e.g. a heartbeat lost while the cluster closes after Ctrl-C) are
    not the command's output."""
    _ignore_interrupts()
    for name in ("distributed", *(n for n in logging.root.manager.loggerDict
                                   if n.startswith("distributed."))):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def _ignore_interrupts() -> None:
    """In a worker process: SIGINT ignored. Ctrl-C in a terminal reaches the whole process
    group; the command handles it and closes the workers, which then print no traceback of
    their own. (A worker still starting, before this runs, may print one; the command's exit
    status and outputs are the same. Ignoring SIGINT in the command while workers start
    would let a Ctrl-C there go unnoticed.)"""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def _stop_pool(pool: ProcessPoolExecutor, finished: bool) -> None:
    """Shut a process pool down: after a finished run its idle processes exit; after an error
    or an interrupt the queued jobs are cancelled and the processes still running a start
    (which may take minutes) are terminated instead of waited for."""
    if finished:
        pool.shutdown(wait=True)
        return
    pool.shutdown(wait=False, cancel_futures=True)
    processes = getattr(pool, "_processes", None) or {}  # no public way before Python 3.14
    for process in list(processes.values()):
        if process.is_alive():
            process.terminate()
    for process in list(processes.values()):
        process.join(CLOSE_TIMEOUT)


@dataclass(frozen=True, slots=True)
class RecordedStart:
    """A start run on a worker: its outcome, its evaluation records and the warnings it raised
    there (category, message), to be shown by the command as a sequential run shows them."""

    run: StartRun
    records: tuple[EvaluationRecord, ...]
    warned: tuple[tuple[type[Warning], str], ...]


def run_recorded(job: StartJob) -> RecordedStart:
    """``run_start(job)`` with its evaluation records and warnings kept (top-level: picklable)."""
    recorder = RecordingReporter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = run_start(dataclasses.replace(job, reporter=recorder))
    return RecordedStart(run, tuple(recorder.records),
                         tuple((w.category, str(w.message)) for w in caught))


def _call(job: Callable[[], Any]) -> Any:
    return job()


def _describe(job: Callable[[], Any], k: int) -> tuple[Callable[[Any], Any], Any, str]:
    """What to submit for one of the estimator's jobs, and its name in an error message."""
    if (isinstance(job, functools.partial) and job.func is run_start and len(job.args) == 1
            and not job.keywords and isinstance(job.args[0], StartJob)):
        start: StartJob = job.args[0]
        # the live reporter stays here: the worker records, the command shows the records
        return (run_recorded, dataclasses.replace(start, reporter=None),
                f"GMM step {start.step}, start {start.index}")
    return _call, job, f"job {k + 1}"


def executor_runner(executor: Any, *, console: Console, scheduler: str,
                    description: str = "multi-start", reporter: Reporter | None = None,
                    checkpoint: Callable[[], None] | None = None,
                    ) -> Callable[[Sequence[Callable[[], Any]]], list[Any]]:
    """A job runner (``EstimationConfig(runner=...)``) submitting the jobs to ``executor``.

    The bar counts the jobs finished on any worker; ``checkpoint`` runs in this thread while
    it waits. Each start's evaluation records go to ``reporter`` and its warnings are raised
    again here, start by start in submission order (as a sequential run shows them). The
    first job seen to raise has its error re-raised, naming its GMM step and start, after the
    jobs not yet finished are cancelled."""

    def run(jobs: Sequence[Callable[[], Any]]) -> list[Any]:
        calls = [_describe(job, k) for k, job in enumerate(jobs)]
        finished: queue.SimpleQueue[int] = queue.SimpleQueue()
        futures: list[Any] = []
        results: list[Any] = []
        done: set[int] = set()
        bar = (Progress(TextColumn(f"[bold]{description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), console=console, transient=False)
               if len(jobs) > 1 else None)
        try:
            for k, (function, item, _) in enumerate(calls):
                future = executor.submit(function, item)
                future.add_done_callback(lambda _, k=k: finished.put(k))
                futures.append(future)
            with bar if bar is not None else nullcontext():
                task = bar.add_task(description, total=len(jobs)) if bar is not None else None
                while len(results) < len(jobs):
                    if checkpoint is not None:
                        checkpoint()
                    try:
                        k = finished.get(timeout=0.2)
                    except queue.Empty:
                        continue
                    done.add(k)
                    error = futures[k].exception()
                    if error is not None:
                        error.add_note(f"(raised in {calls[k][2]} of {len(jobs)}, run on "
                                       f"{scheduler})")
                        raise error
                    if bar is not None and task is not None:
                        bar.advance(task)
                    while len(results) in done:  # shown and kept in submission order
                        results.append(_show(futures[len(results)].result(), reporter))
        finally:
            for future in futures:  # those not finished (an error, an interrupt)
                if not future.done():
                    future.cancel()
        return results

    return run


def _show(value: Any, reporter: Reporter | None) -> Any:
    """A start's records to the reporter and its warnings raised here; the start's outcome."""
    if not isinstance(value, RecordedStart):
        return value
    if reporter is not None:
        for record in value.records:
            reporter.on_evaluation(record)
    for category, message in value.warned:
        warnings.warn(message, category, stacklevel=2)
    return value.run
