"""The thin Dask layer: keep Blocks on the workers and run one pass of a kernel over them.

This is the only module that schedules work. Blocks are Dask futures created from their
Parquet pieces, so if a worker dies the scheduler recomputes its blocks from the files
and the result does not change. Each pass sends (w, b) as small task arguments, runs
one task per worker over all of that worker's local blocks, merges those results in a
tree of fan-in ``FAN_IN`` on the cluster, and brings at most ``FAN_IN`` small partial
sums to the driver (the shape of Spark's ``treeAggregate``).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import CancelledError

import numpy as np
from distributed import Client, Future, wait
from distributed.comm.core import CommClosedError
from distributed.scheduler import KilledWorker

from lrdask.dataset import first_line
from lrdask.errors import ClusterError
from lrdask.kernels import log_loss_sums
from lrdask.loading import Block, BlockReport
from lrdask.sums import LogLossSums, merge_all

FAN_IN = 8
# How often to ask the scheduler again where the blocks live (they move only on faults).
REGROUP_SECONDS = 2.0


class PersistedBlocks:
    """Blocks held in worker memory for the length of a training run."""

    def __init__(
        self,
        client: Client,
        futures: Sequence[Future],
        n_features: int,
        timeout: float | None = None,
    ):
        self.client = client
        self.timeout = timeout
        self.futures = list(futures)
        self.n_features = n_features
        self._groups: list[tuple[str, list[Future]]] = []
        self._grouped_at = -np.inf

    @classmethod
    def from_loaders(
        cls,
        client: Client,
        load: Callable[..., Block],
        args: Sequence[tuple],
        n_features: int,
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
        return cls(client, futures, n_features, timeout)

    def reports(self) -> list[BlockReport]:
        """Wait for every block to load and collect the load reports (raises load errors)."""
        with cluster_errors("loading the data", self.timeout):
            wait(self.futures, timeout=self.timeout)
            return self.client.gather(self.client.map(_report, self.futures, pure=False))

    def partial_sums(self, w: np.ndarray, b: float) -> LogLossSums:
        """One pass over all rows: Σ loss, Σ (a−y)·x, Σ (a−y), m."""
        level = [
            self.client.submit(
                fold_blocks,
                w,
                b,
                *blocks,
                workers=[addr] if addr else None,
                allow_other_workers=True,
                pure=False,
            )
            for addr, blocks in self._local_groups()
        ]
        while len(level) > FAN_IN:
            level = [
                self.client.submit(merge_sums, *level[i : i + FAN_IN], pure=False)
                for i in range(0, len(level), FAN_IN)
            ]
        with cluster_errors("a pass over the data", self.timeout):
            wait(level, timeout=self.timeout)
            return merge_all(self.client.gather(level))

    def release(self) -> None:
        for future in self.futures:
            future.release()
        self.futures = []

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
            self._grouped_at = now
        return self._groups


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


def fold_blocks(w: np.ndarray, b: float, *blocks: Block) -> LogLossSums:
    """The per-worker task: the kernel over each local block, merged in block order."""
    total = LogLossSums.zeros(len(w))
    for block in blocks:
        total = total.merge(log_loss_sums(block.X, block.y, w, b))
    return total


def merge_sums(*parts: LogLossSums) -> LogLossSums:
    return merge_all(parts)


def _report(block: Block) -> BlockReport:
    return block.report
