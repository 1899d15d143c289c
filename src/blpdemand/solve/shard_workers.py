"""Where market shards live on a Dask cluster: placing them on workers, and watching those
workers while the client waits for their replies.

A shard is pinned to the worker that holds its data and inner loop (scattered data cannot be
recomputed elsewhere). Dask's memory manager pauses a worker at a fraction of its
``memory_limit`` (``distributed.worker.memory.pause``, 0.8 by default: it then starts no task)
and its nanny restarts it at another (``...terminate``, 0.95: the shard's data are lost). A
wait on a paused holder would never end and a restarted one cancels the replies, so the wait
polls the holders and reports either as a :class:`~blpdemand.errors.WorkerLostError` naming
the shard, its worker and that worker's limit.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import CancelledError
from typing import Any

from blpdemand.errors import SpecificationError, WorkerLostError
from blpdemand.model.problem import Problem
from blpdemand.solve.jobs import named_error

__all__ = ["cache_budget", "collect", "is_dask", "memory_limits", "place"]

#: seconds between looks at the holders while replies are pending
POLL_S = 1.0
#: seconds a holder may stay paused with a reply pending before the shard is reported lost
PAUSED_S = 30.0


_RUNNING = ("running", "Status.running")  # a worker's status as scheduler_info gives it


def is_dask(executor: Any) -> bool:
    """Whether ``executor`` is a ``dask.distributed.Client`` (by its interface)."""
    return all(callable(getattr(executor, name, None))
               for name in ("scatter", "run", "who_has", "scheduler_info"))


def place(client: Any, shards: list[Any]) -> list[tuple[Any, str]]:
    """Scatter each shard Problem once to a worker (round robin) or find where a shard future
    lives; return (future, worker address) per shard."""
    info = client.scheduler_info()["workers"]
    workers = sorted(a for a, w in info.items() if str(w.get("status")) in _RUNNING)
    if not workers:
        raise SpecificationError(f"the Dask client has no running workers to hold the shards "
                                 f"({len(info)} paused or closing); start workers, or give "
                                 "them more memory")
    placed = []
    for s, shard in enumerate(shards):
        if isinstance(shard, Problem):
            address = workers[s % len(workers)]
            [future] = client.scatter([shard], workers=[address], broadcast=False, hash=False)
        else:
            from distributed import wait

            future = shard
            with client.as_current():  # also a client that is not the default one
                wait([future])  # type: ignore[no-untyped-call]
            holders = client.who_has([future]).get(future.key) or ()
            if not holders:
                raise SpecificationError(f"shard {s} is not a Problem nor a finished future "
                                         "held by a worker; scatter it first")
            address = min(holders)
        placed.append((future, address))
    return placed


def cache_budget() -> int:
    """Bytes a shard's inner loop may keep exp(mu) in on this Dask worker: half the room left
    below the worker's pause threshold (the other half for the contraction's and the
    adjoint's transients); unlimited outside a worker or without a ``memory_limit``. Without
    it a shard small enough for the default 256 MiB cache could push a worker that holds the
    uncached larger shard comfortably past its pause threshold."""
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):  # not in a Dask worker
        return 1 << 62
    limit = getattr(getattr(worker, "memory_manager", None), "memory_limit", None)
    if not limit:
        return 1 << 62
    import dask
    import psutil

    pause = dask.config.get("distributed.worker.memory.pause") or 1.0
    room = pause * limit - psutil.Process().memory_info().rss
    return max(0, int(room / 2))


def memory_limits(client: Any) -> dict[str, int]:
    """Each worker's ``memory_limit`` in bytes (0: none), by address."""
    workers = client.scheduler_info()["workers"]
    return {address: int(info.get("memory_limit") or 0) for address, info in workers.items()}


def collect(client: Any, futures: Sequence[Any], addresses: Sequence[str], *, step: str,
            sizes: Sequence[int], limits: dict[str, int]) -> list[Any]:
    """The shards' replies in shard order. A holder that leaves the cluster (restarted by its
    nanny), or stays paused (or closing) for ``PAUSED_S`` with a reply pending, raises
    WorkerLostError; a
    shard's job that raises is reported as shard k's (``named_error``)."""
    from distributed import wait

    paused: dict[str, float] = {}
    while True:
        try:
            with client.as_current():  # also a client that is not the default one
                wait(futures, timeout=POLL_S)  # type: ignore[no-untyped-call]
            break
        except TimeoutError:
            pass
        except CancelledError:  # some were cancelled (a holder restarted): named below
            break
        workers = client.scheduler_info()["workers"]
        now = time.monotonic()
        for k, (future, address) in enumerate(zip(futures, addresses)):
            status = None if address not in workers else str(workers[address].get("status"))
            if future.done() or status in _RUNNING:
                paused.pop(address, None)
                continue
            if status is None or now - paused.setdefault(address, now) >= PAUSED_S:
                client.cancel(list(futures))
                raise _lost(k, address, step, sizes, limits,
                            "left the cluster" if status is None else
                            f"has been {status.removeprefix('Status.')} for {PAUSED_S:g} s")
    replies = []
    for k, (future, address) in enumerate(zip(futures, addresses)):
        try:
            replies.append(future.result())
        except Exception as error:
            client.cancel(list(futures))
            if future.status in ("cancelled", "lost") or isinstance(error, CancelledError) or (
                    type(error).__name__ == "KilledWorker"):
                raise _lost(k, address, step, sizes, limits, "was restarted or left the "
                            "cluster") from error
            raise named_error(f"shard {k} ({step})", error) from error
    return replies


def _lost(k: int, address: str, step: str, sizes: Sequence[int], limits: dict[str, int],
          how: str) -> WorkerLostError:
    import dask

    limit = limits.get(address, 0)
    pause = dask.config.get("distributed.worker.memory.pause")
    terminate = dask.config.get("distributed.worker.memory.terminate")
    return WorkerLostError(
        f"market shard {k} of {len(sizes)}{f' ({sizes[k]:,} products)' if sizes[k] else ''} "
        f"was lost while computing its "
        f"{step}: its Dask worker {address} {how}. Dask's memory manager pauses a worker at "
        f"{pause:.0%} of its memory_limit ({limit / 2**20:,.0f} MiB here; 0 is none) and "
        f"restarts it at {terminate:.0%}, which loses the shard's data. Split the markets into "
        "more shards (EstimationConfig(shards=...)), give the workers more memory, or use "
        "fewer draws per market")
