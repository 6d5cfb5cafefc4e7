"""Worker memory: what the data needs per worker against what each worker has.

Dask pauses a worker whose process memory passes ``distributed.worker.memory.pause`` (80 %
of its limit by default; a paused worker runs no tasks) and its nanny restarts it past
``terminate`` (95 %). A job whose data does not fit therefore does not fail by itself: it
waits. This module estimates the bytes each worker needs, reads what each worker has, and
words the one line that says memory is the cause, with numbers and what to do.

The estimate (bytes per worker), for ``r`` = bytes of one row (8 per feature in float64,
4 in float32, plus 8 for the label and 8 for a weight column) and ``R`` = rows of the
largest block:

- cached (``--cache``): the rows of the blocks the worker holds × r, plus ``LOAD_FACTOR``
  × R × r while a block is being read (its Arrow table, the NumPy copy);
- streamed (``--no-cache``): threads per worker × ``LOAD_FACTOR`` × R × r.

Both come on top of the worker process itself (about 150 MB for Python, NumPy, pyarrow and
Dask), which the check reads from the worker rather than guessing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import dask

from lrdask import reduction

# A block being read is held about three times: Arrow buffers, the NumPy array, a copy.
LOAD_FACTOR = 3
# A worker process that has read Parquet (Python, NumPy, pyarrow, Dask): the least it uses,
# measured on Linux with Python 3.11; the check takes the larger of this and what it reads.
PROCESS_FLOOR = 150_000_000


@dataclass(frozen=True)
class WorkerMemory:
    """One worker as the scheduler last saw it."""

    address: str
    limit: int  # bytes; 0 = no limit
    used: int  # process memory, bytes
    status: str  # "running", "paused", …
    nthreads: int = 1

    @property
    def baseline(self) -> int:
        """What the process uses before it holds our data (at least ``PROCESS_FLOOR``)."""
        return max(self.used, PROCESS_FLOOR)

    @property
    def pause_at(self) -> float:
        """Bytes at which the worker stops running tasks (its limit when pausing is off)."""
        fraction = dask.config.get("distributed.worker.memory.pause", 0.8) or 1.0
        return self.limit * float(fraction)


@dataclass(frozen=True)
class MemoryNeed:
    """The estimate for one way of running the job (see the module docstring)."""

    per_worker: int  # bytes, the largest over the workers
    total: int  # bytes of the data as held (cached) or of the largest read (streamed)
    workers: int
    cached: bool
    dtype: str
    streamed_per_worker: int  # what --no-cache would need
    transient: int = 0  # of per_worker, the part for a block being read

    def describe(self) -> str:
        if self.cached:
            return (
                f"the data needs about {mb(self.per_worker)} per worker "
                f"({mb(self.total)} held as {self.dtype} over {self.workers} worker(s), "
                "plus a block being read)"
            )
        return (
            f"streaming (--no-cache) needs about {mb(self.per_worker)} per worker "
            "(the blocks being read at once)"
        )


def row_bytes(n_features: int, dtype: str, weighted: bool) -> int:
    """Bytes of one row as a block holds it: the features, the label, the weight."""
    return n_features * (4 if dtype == "float32" else 8) + 8 + (8 if weighted else 0)


def estimate(
    rows_per_block: list[int],
    n_features: int,
    dtype: str,
    weighted: bool,
    workers: list[WorkerMemory],
    cached: bool,
) -> MemoryNeed:
    """The bytes per worker for blocks of ``rows_per_block`` rows placed on ``workers``
    in contiguous runs, block i on worker ⌊i·W/n⌋ (as the loader places them)."""
    r = row_bytes(n_features, dtype, weighted)
    n = max(1, len(workers))
    largest = max(rows_per_block, default=0) * r
    threads = max((w.nthreads for w in workers), default=1)
    streamed = threads * LOAD_FACTOR * largest
    held = [0] * n
    owners = reduction.owners(len(rows_per_block), n)
    for rows, owner in zip(rows_per_block, owners, strict=True):
        held[owner] += rows * r
    if not cached:
        return MemoryNeed(streamed, largest, n, False, dtype, streamed)
    per_worker = max(held) + LOAD_FACTOR * largest
    return MemoryNeed(per_worker, sum(held), n, True, dtype, streamed, LOAD_FACTOR * largest)


def short(need: MemoryNeed | None, workers: list[WorkerMemory]) -> list[WorkerMemory]:
    """The workers with a memory limit whose room below the pause line is less than the
    need."""
    if need is None:
        return []
    return [w for w in workers if w.limit and w.baseline + need.per_worker > w.pause_at]


def explain(need: MemoryNeed | None, workers: list[WorkerMemory]) -> str:
    """One sentence with the numbers and what to do, or "" when memory is not short."""
    tight = short(need, workers) or [w for w in workers if w.status == "paused"]
    if need is None or not tight:
        return ""
    w = max(tight, key=lambda w: w.baseline)
    room = max(0.0, w.pause_at - w.baseline)
    text = (
        f"{need.describe()}, but worker {w.address} pauses at {mb(w.pause_at)} of its "
        f"{mb(w.limit)} limit and already uses {mb(w.baseline)} ({mb(room)} left)"
    )
    advice = []
    if need.cached:
        room_to_hold = room - need.transient
        enough = math.ceil(need.total / room_to_hold) if room_to_hold > 0 else 0
        if enough > need.workers:
            advice.append(f"more workers (about {enough} of this size)")
        elif not enough:
            advice.append("workers with a larger --memory-limit")
        if need.dtype == "float64":
            advice.append("--dtype float32 (half the bytes)")
        advice.append(f"--no-cache (about {mb(need.streamed_per_worker)} per worker)")
    else:
        advice.append("workers with a larger --memory-limit")
        advice.append("smaller Parquet row groups or files")
        if need.dtype == "float64":
            advice.append("--dtype float32")
    choices = [", ".join(advice[:-1]), advice[-1]] if len(advice) > 1 else advice
    return f"{text}; use {' or '.join(choices)}"


def explain_deaths(need: MemoryNeed, workers: list[WorkerMemory]) -> str:
    """The numbers and what to do when workers died running a pass although the estimate
    fits (their memory was read after they restarted, or not at all): dying workers on a
    pass over the data are most often out of memory."""
    limits = [w.limit for w in workers if w.limit]
    against = f", against a worker limit of {mb(min(limits))}" if limits else ""
    advice = ["workers with a larger --memory-limit"]
    if need.cached:
        advice.insert(0, f"--no-cache (about {mb(need.streamed_per_worker)} per worker)")
        if need.dtype == "float64":
            advice.insert(1, "--dtype float32 (half the bytes)")
    choices = ", ".join(advice[:-1]) + " or " + advice[-1] if len(advice) > 1 else advice[0]
    return (
        f"{need.describe()}{against}; workers that die while they run a pass over the data "
        f"have most often run out of memory: use {choices}"
    )


def read_workers(client, timeout: float | None = None) -> list[WorkerMemory]:
    """Every worker's limit, process memory and status, from the scheduler. Raises
    ClusterError when the scheduler does not answer within ``timeout`` seconds."""
    from distributed.comm.core import CommClosedError

    from lrdask.errors import ClusterError

    try:
        info = client.sync(client.scheduler.identity, n_workers=-1, callback_timeout=timeout)
    except (OSError, TimeoutError, CommClosedError) as exc:
        raise ClusterError(
            f"lost the Dask cluster: the scheduler does not answer ({exc or type(exc).__name__}); "
            "check that it is running and not stopped"
        ) from None
    return [
        WorkerMemory(
            address,
            int(w.get("memory_limit") or 0),
            int(w.get("metrics", {}).get("memory") or 0),
            str(w.get("status", "running")),
            int(w.get("nthreads") or 1),
        )
        for address, w in sorted(info.get("workers", {}).items())
    ]


def mb(n: float) -> str:
    return f"{n / 1e6:,.0f} MB"
