"""The thin Dask layer: keep Blocks on the workers and run one pass of a kernel over them.

This is the only module that schedules work. Blocks are Dask futures created from their
Parquet pieces, so if a worker dies the scheduler recomputes its blocks from the files
and the result does not change.

A pass is one fold per worker over the blocks that worker holds, with (w, b) as small
arguments. The fast path runs those folds with ``Client.run`` (one broadcast through the
scheduler, ~3 ms, instead of a task graph per iteration, ~20 ms): each worker reads its
blocks from its own Dask data store, where they stay known to the scheduler. The driver
adds the per-worker partial sums (like the last level of Spark's ``treeAggregate``).
Whenever a block is not where the driver expects it (a worker died, a block moved) or
there are more than ``DIRECT_MAX`` workers, the pass runs as ordinary tasks instead: one
per worker, merged in a tree of fan-in ``FAN_IN`` on the cluster, and the scheduler
recomputes whatever was lost. Both paths fold the same blocks in the same order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import CancelledError

import numpy as np
from distributed import Client, Future, wait
from distributed.comm.core import CommClosedError
from distributed.scheduler import KilledWorker

from lrdask.dataset import first_line
from lrdask.errors import ClusterError, DataChangedError
from lrdask.kernels import log_loss_sums
from lrdask.loading import Block, BlockReport, load_pieces, profile_piece
from lrdask.sums import merge_all

log = logging.getLogger("lrdask")

FAN_IN = 8
DIRECT_MAX = 64
# How often to ask the scheduler again where the blocks live (they move only on faults).
REGROUP_SECONDS = 2.0


class PersistedBlocks:
    """Blocks held in worker memory for the length of a training run."""

    def __init__(
        self,
        client: Client,
        futures: Sequence[Future],
        timeout: float | None = None,
    ):
        self.client = client
        self.timeout = timeout
        self.futures = list(futures)
        self.shared: list[Future] = []  # data the blocks were made from (``share``)
        self._groups: list[tuple[str, list[Future]]] = []
        self._assignment: dict[str, list[str]] = {}  # worker -> block keys, for Client.run
        self._grouped_at = -np.inf

    @classmethod
    def from_loaders(
        cls,
        client: Client,
        load: Callable[..., Block],
        args: Sequence[tuple],
        timeout: float | None = None,
    ) -> PersistedBlocks:
        """Start one load task per partition, spread evenly over the workers."""
        workers = sorted(client.scheduler_info(n_workers=-1)["workers"])
        futures = [
            client.submit(
                load,
                *arg,
                workers=[workers[i % len(workers)]],
                allow_other_workers=True,
                pure=False,
                key=f"lrdask-load-{i}-{time.time_ns()}",
            )
            for i, arg in enumerate(args)
        ]
        return cls(client, futures, timeout)

    def reports(self) -> list[BlockReport]:
        """Wait for every block to load and collect the load reports (raises load errors)."""
        with cluster_errors("loading the data", self.timeout):
            wait(self.futures, timeout=self.timeout)
            return self.client.gather(self.client.map(_report, self.futures, pure=False))

    def partial_sums(self, w: np.ndarray, b: float, kernel: Callable = log_loss_sums):
        """One pass over all rows: Σ loss, Σ (a−y)·x, Σ (a−y), m (or what ``kernel`` sums)."""
        groups = self._local_groups()
        if len(groups) <= DIRECT_MAX and all(addr for addr, _ in groups):
            sums = self._fold_in_place(w, b, kernel)
            if sums is not None:
                return sums
            log.info(
                "a block is not on the worker that held it (worker lost?): this pass "
                "runs as tasks, and the scheduler recomputes what is missing"
            )
            self._grouped_at = -np.inf  # something moved: ask the scheduler again next time
        return self._fold_by_tasks(groups, w, b, kernel)

    def _fold_in_place(self, w, b, kernel):
        """The fast path; None if any worker is missing a block it was assigned."""
        assignment = self._assignment
        try:
            results = self.client.run(
                fold_assigned,
                assignment,
                w,
                b,
                kernel,
                workers=list(assignment),
                on_error="return",
            )
        except (CommClosedError, OSError, TimeoutError):
            return None
        parts = [results.get(addr) for addr in assignment]  # sorted by address
        if not all(hasattr(part, "merge") for part in parts):
            return None
        return merge_all(parts)

    def _fold_by_tasks(self, groups, w, b, kernel):
        """The robust path: tasks the scheduler can place, retry and recompute."""
        level = [
            self.client.submit(
                fold_blocks,
                w,
                b,
                *blocks,
                kernel=kernel,
                workers=[addr] if addr else None,
                allow_other_workers=True,
                pure=False,
            )
            for addr, blocks in groups
        ]
        return merge_tree(self.client, level, self.timeout)

    def release(self) -> None:
        for future in [*self.futures, *self.shared]:
            future.release()
        self.futures = []
        self.shared = []

    def _local_groups(self) -> list[tuple[str, list[Future]]]:
        """Blocks grouped by the worker that holds them, in a fixed block order.

        Blocks being recomputed after a fault have no holder yet ("") and form an
        unrestricted group that the scheduler places.
        """
        now = time.monotonic()
        if now - self._grouped_at > REGROUP_SECONDS:
            who_has = self.client.who_has(self.futures)
            groups: dict[str, list[Future]] = {}
            for future in self.futures:
                holders = sorted(who_has.get(future.key, ())) or [""]
                groups.setdefault(holders[0], []).append(future)
            self._groups = sorted(groups.items())
            self._assignment = {addr: [f.key for f in blocks] for addr, blocks in self._groups}
            self._grouped_at = now
        return self._groups


def merge_tree(client: Client, level: list[Future], timeout: float | None):
    """Merge partial-sum futures in a tree of fan-in ``FAN_IN`` on the cluster; the driver
    gathers and adds the last ≤ ``FAN_IN`` (Spark's ``treeAggregate`` shape)."""
    fan_in = max(2, FAN_IN)
    while len(level) > fan_in:
        level = [
            client.submit(merge_sums, *level[i : i + fan_in], pure=False)
            for i in range(0, len(level), fan_in)
        ]
    with cluster_errors("a pass over the data", timeout):
        wait(level, timeout=timeout)
        return merge_all(client.gather(level))


@contextlib.contextmanager
def cluster_errors(what: str, timeout: float | None) -> Iterator[None]:
    """Turn the ways a cluster fails into one ClusterError that says what was under way."""
    try:
        yield
    except TimeoutError:
        raise ClusterError(
            f"the cluster gave no result for {what} within {timeout:g}s; "
            "check the scheduler and workers (or raise --pass-timeout)"
        ) from None
    except (CancelledError, CommClosedError, KilledWorker, OSError) as exc:
        reason = first_line(exc) or type(exc).__name__
        raise ClusterError(f"lost the Dask cluster during {what}: {reason}") from None


async def fold_assigned(assignment: dict, w: np.ndarray, b: float, kernel, dask_worker=None):
    """Runs on a worker (via Client.run): fold the blocks assigned to this worker, read
    from its Dask data store, in a thread so the worker's event loop stays responsive.
    Returns None if one of them is not there."""
    keys = assignment.get(dask_worker.address, [])
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, _fold_present, dask_worker.data, keys, w, b, kernel)


def _fold_present(data, keys, w: np.ndarray, b: float, kernel):
    blocks = []
    for key in keys:
        try:
            blocks.append(data[key])
        except KeyError:
            return None
    return fold_blocks(w, b, *blocks, kernel=kernel)


class StreamedPieces:
    """For data larger than the cluster's memory: nothing is kept between passes.

    Every pass reads each piece's columns from storage again and folds it at once (one
    task per piece, merged in a tree on the cluster), so memory holds only the pieces
    being worked on. The same kernel and piece order as the cached mode; each pass costs
    a full read of the data set from storage instead of from memory.
    """

    def __init__(
        self,
        client: Client,
        load: Callable[..., Block],
        args: Sequence[tuple],
        timeout: float | None = None,
    ):
        self.client = client
        self.load = load
        self.args = list(args)
        self.timeout = timeout
        self.shared: list[Future] = []  # data every pass reads with (``share``)
        self.expected: list[BlockReport | None] = [None] * len(self.args)

    def reports(self) -> list[BlockReport]:
        """One validating read of every piece (the load pass of the cached mode). Every
        later pass checks that each piece reads as it did here."""
        futures = [
            self.client.submit(_load_report, self.load, *arg, pure=False) for arg in self.args
        ]
        with cluster_errors("reading the data", self.timeout):
            wait(futures, timeout=self.timeout)
            self.expected = self.client.gather(futures)
            return self.expected

    def partial_sums(self, w: np.ndarray, b: float, kernel: Callable = log_loss_sums):
        level = [
            self.client.submit(_load_and_fold, self.load, arg, w, b, kernel, expected, pure=False)
            for arg, expected in zip(self.args, self.expected, strict=True)
        ]
        return merge_tree(self.client, level, self.timeout)

    def release(self) -> None:
        """Nothing is held between passes but the shared encoding."""
        for future in self.shared:
            future.release()
        self.shared = []


def _load_report(load: Callable[..., Block], *arg) -> BlockReport:
    return load(*arg).report


def _load_and_fold(load: Callable[..., Block], arg: tuple, w, b, kernel, expected=None):
    """Read, check that the piece reads as it did at the validating read (``expected``:
    same rows, classes, missing and bad values), and fold."""
    block = load(*arg)
    if expected is not None and block.report != expected:
        raise DataChangedError(
            f"{block.report.source}: reads differently from when the job validated it "
            f"({_difference(expected, block.report)}); the job stops without publishing a "
            "model and keeps its checkpoint: rerun it once the data set is complete"
        )
    return fold_block(kernel, block, w, b)


def _difference(before: BlockReport, after: BlockReport) -> str:
    """The first fields in which two reports of one piece differ, in words."""
    changed = [
        f"{name} {getattr(before, name)!r} → {getattr(after, name)!r}"
        for name in before.__dataclass_fields__
        if getattr(before, name) != getattr(after, name)
    ]
    return "; ".join(changed[:3])


def fold_blocks(w: np.ndarray, b: float, *blocks: Block, kernel: Callable = log_loss_sums):
    """The per-worker task: the kernel over each local block, merged in block order."""
    return merge_all(fold_block(kernel, block, w, b) for block in blocks)


def fold_block(kernel: Callable, block: Block, w, b):
    """The kernel over one block, with its row weights and categorical codes if it has them."""
    extra = {}
    if block.weight is not None:
        extra["sample_weight"] = block.weight
    if block.codes is not None:
        extra["codes"] = block.codes
    with np.errstate(all="ignore"):  # overflow shows as a non-finite sum the driver acts on
        return kernel(block.X, block.y, w, b, **extra)


def merge_sums(*parts):
    return merge_all(parts)


def _report(block: Block) -> BlockReport:
    return block.report


def persist_plan(client: Client, plan, encoding, dtype: str, timeout, cache: bool = True):
    """Blocks for a ``DatasetPlan`` (small files grouped), read as ``encoding`` says:
    cached on the workers, or streamed."""
    n_workers = len(client.scheduler_info(n_workers=-1)["workers"])
    shared = share(client, encoding)
    args = [(group, plan.fs, shared, dtype) for group in plan.blocks(n_workers)]
    if not cache:
        blocks = StreamedPieces(client, load_pieces, args, timeout)
    else:
        blocks = PersistedBlocks.from_loaders(client, load_pieces, args, timeout)
    blocks.shared = [shared]
    return blocks


def share(client: Client, value) -> Future:
    """``value`` sent once to every worker, as one object per worker that all its tasks
    use (an encoding with 10⁵ levels is a megabyte; a copy per block would make worker
    memory grow with blocks × levels). The caller keeps the future for as long as tasks
    may be recomputed from it."""
    return client.scatter(value, broadcast=True, hash=False)


def profile_plan(client: Client, plan, request, timeout=None):
    """The profile pass (levels, classes, means; ``lrdask.encoding``): one task per piece
    of the plan (pieces depend on the data alone), merged in a fixed order."""
    level = [
        client.submit(profile_piece, piece, plan.fs, request, pure=False) for piece in plan.pieces
    ]
    return merge_tree(client, level, timeout)
