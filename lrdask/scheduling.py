"""The thin Dask layer: keep Blocks on the workers and run one pass of a kernel over them.

This is the only module that schedules work. Blocks are Dask futures created from their
Parquet pieces, so if a worker dies the scheduler recomputes its blocks from the files
and the result does not change.

A pass is one fold per worker over the blocks that worker holds, with (w, b) as small
arguments, run with ``Client.run`` (one broadcast through the scheduler instead of a task
graph per iteration) whatever the number of workers. Each worker keeps its own list of
blocks, installed once under a version (``install_blocks``) and installed anew only when
the blocks move (a fault, a worker that joined); a pass sends only (w, b) and the version,
so what leaves the driver and the scheduler per pass grows with workers × features and not
with the number of blocks. Each worker reads its blocks from its own Dask data store,
where they stay known to the scheduler, and returns the nodes of the fixed reduction tree
its blocks determine; the driver completes the tree (``lrdask.reduction``), so the bits do
not depend on the placement.

Whenever a block is not where the driver expects it (a worker died, a block moved) the
pass runs as ordinary tasks instead: one per worker, merged in groups of ``FAN_IN`` on
the cluster by the same tree, and the scheduler recomputes whatever was lost. Blocks are
kept evenly placed (``lrdask.placement``): a worker that joins after loading receives
blocks between passes. Every wait is bounded by the pass timeout and watches the
workers' memory (``lrdask.memory``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import CancelledError
from dataclasses import dataclass

import dask
import numpy as np
from distributed import Client, Future, wait
from distributed.comm.core import CommClosedError
from distributed.protocol import pickle as dask_pickle
from distributed.scheduler import KilledWorker

from lrdask import environment, memory, placement, reduction
from lrdask.dataset import first_line
from lrdask.errors import ClusterError, DataChangedError
from lrdask.kernels import log_loss_sums
from lrdask.loading import Block, BlockReport, load_pieces, profile_piece

log = logging.getLogger("lrdask")

FAN_IN = 8
# False: every pass runs as tasks (the path taken after a fault), to compare the two paths.
FAST_PATH = True
# A worker's partial sums larger than this (Newton's Hessian, wide categorical gradients)
# stay on the worker and are merged worker to worker in groups of FAN_IN (``_merge_kept``):
# the scheduler never carries them all at once, and the driver receives at most FAN_IN.
KEEP_OVER_BYTES = 1 << 20
# How often to ask the scheduler which workers there are (a new one gets blocks).
REGROUP_SECONDS = 2.0
# Blocks moved to a worker that joined late and not there within this many seconds (the
# worker hung, or left) stay where they were: moving them only evens out the pass time.
MOVE_SECONDS = 60.0
# While waiting for a pass, how often to look at the workers (paused? tasks stuck?).
POLL_SECONDS = 2.0
# A worker paused for lack of memory this long while the job waits on it: give up.
PAUSE_GRACE_SECONDS = 30.0


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
        self.need: memory.MemoryNeed | None = None  # the estimate, for messages
        self._load: tuple | None = None  # (load, args): to resubmit a stuck load
        self._groups: list[tuple[str, list[Future]]] = []
        self._assignment: dict[str, list[tuple[int, str]]] = {}  # worker -> (index, key)
        self._token = uuid.uuid4().hex  # names this run's block lists on the workers
        self._version = 0  # of the installed lists; 0: none installed
        self._passes = 0  # fast-path passes: names partial sums kept on the workers
        self._relays: dict[str, list[str]] = {}  # worker -> the workers it relays a pass to
        self._stale = True  # ask the scheduler where the blocks are before the next pass
        self._workers: frozenset[str] = frozenset()  # the workers at the last look
        self._looked_at = -np.inf
        self._said_idle: frozenset[str] = frozenset()
        self._said_unable: frozenset[str] = frozenset()

    @classmethod
    def from_loaders(
        cls,
        client: Client,
        load: Callable[..., Block],
        args: Sequence[tuple],
        timeout: float | None = None,
    ) -> PersistedBlocks:
        """Start one load task per partition, spread evenly over the workers present in
        contiguous runs: block i goes to worker ⌊i·W/n⌋, so each worker holds a run of
        consecutive blocks and returns the few aligned subtrees that cover it
        (``lrdask.reduction``: at most about 2·log₂ n nodes, not one per block).

        Each load is pinned to its worker while it loads (a loose restriction lets Dask's
        work stealing move loads and break the runs), and a load whose worker is gone
        before it ran is placed anew (``_unstick``). Once the blocks are loaded the
        restrictions are lifted (``reports``), so a block lost with its worker is
        recomputed on any worker, a replacement included."""
        workers = sorted(client.scheduler_info(n_workers=-1)["workers"])
        owner = reduction.owners(len(args), len(workers))
        futures = [
            client.submit(
                load,
                *arg,
                workers=[workers[owner[i]]] if workers else None,  # none: all lost
                allow_other_workers=False,  # loose, Dask's work stealing breaks the runs
                pure=False,
                key=_load_key(i),
            )
            for i, arg in enumerate(args)
        ]
        blocks = cls(client, futures, timeout)
        blocks._load = (load, list(args))
        return blocks

    def reports(self) -> list[BlockReport]:
        """Wait for every block to load and collect the load reports (raises load errors)."""
        with cluster_errors("loading the data", self.timeout, self.client, self.need):
            bounded_wait(
                self.client,
                self.futures,
                self.timeout,
                "loading the data",
                self.need,
                on_poll=self._unstick,
            )
            self._unpin()
            reports = self.client.map(_report, self.futures, pure=False)
            return gather(self.client, reports, self.timeout)

    def _unstick(self) -> list[Future]:
        """Resubmit, unrestricted, any load that waits for a worker that is gone.

        Dask keeps a task restricted to a vanished worker in state "no-worker" even when
        other workers join (its ``allow_other_workers`` is not consulted then), so a load
        placed on a worker that died before it ran would wait forever."""
        if self._load is None:
            return self.futures
        pending = [f for f in self.futures if not f.done()]
        stuck = set(_no_worker(self.client, pending, self.timeout))
        if stuck:
            load, args = self._load
            log.info("%d block load(s) waited for a worker that is gone: placed anew", len(stuck))
            for i, future in enumerate(self.futures):
                if future.key in stuck:
                    again = self.client.submit(load, *args[i], pure=False, key=_load_key(i))
                    self.futures[i] = again
                    future.cancel()
        return self.futures

    def _unpin(self) -> None:
        """Lift the placement of the loaded blocks (see ``from_loaders``)."""
        if self._load is not None:
            self.client.sync(
                self.client.scheduler.set_restrictions,
                worker={f.key: None for f in self.futures},
                callback_timeout=self.timeout,
            )

    def partial_sums(self, w: np.ndarray, b: float, kernel: Callable = log_loss_sums):
        """One pass over all rows: Σ loss, Σ (a−y)·x, Σ (a−y), m (or what ``kernel`` sums).

        Raises ClusterError when the pass gets no result within the pass timeout (a
        worker stopped, the scheduler gone) or memory stalls it (the message says so)."""
        groups = self._local_groups()
        lost = sum(len(blocks) for addr, blocks in groups if not addr)
        if FAST_PATH and not lost:
            sums = self._fold_in_place(w, b, kernel)
            if sums is not None:
                return sums
            reason = "a block is not on the worker that held it (worker lost?)"
            self._stale = True  # something moved: ask the scheduler again next time
        else:
            reason = f"{lost} block(s) are being reloaded (worker lost?)" if lost else ""
            self._stale = bool(lost)
        if reason:
            log.info(
                "%s: this pass runs as tasks, and the scheduler recomputes what is missing",
                reason,
            )
        return self._fold_by_tasks(groups, w, b, kernel)

    def _fold_in_place(self, w, b, kernel):
        """The fast path; None if any worker is missing a block it was assigned (or its
        installed list is not the current version).

        Bounded by the pass timeout like the task path: a worker that does not answer
        (stopped, hung) ends the pass with ClusterError instead of holding the job."""
        if not self._version:
            self._install()
        addrs = list(self._relays)  # the relays' answers carry the other workers' too
        self._passes += 1
        results = self._run(
            fold_installed,
            self._token,
            self._version,
            self._passes,
            w,
            b,
            kernel,
            len(self.futures),
            KEEP_OVER_BYTES,
            workers=addrs,
        )
        if results is None:
            return None
        parts = [results.get(addr) for addr in addrs]
        if not all(isinstance(part, (dict, Kept)) for part in parts):
            return None
        kept = [addr for addr, part in zip(addrs, parts, strict=True) if isinstance(part, Kept)]
        parts = [part for part in parts if isinstance(part, dict)]
        if kept:
            merged = self._merge_kept(kept)
            if merged is None:
                return None
            parts += merged
        return reduction.total(parts, len(self.futures))

    def _merge_kept(self, holders: list[str]) -> list[dict] | None:
        """Partial sums kept on ``holders`` (``KEEP_OVER_BYTES``), merged among the
        workers: in groups of ``FAN_IN``, the first of each group takes the others' nodes
        (worker to worker) and combines them, until at most ``FAN_IN`` workers hold them;
        those come to the driver. The tree of nodes (``lrdask.reduction``) fixes what is
        added to what, so the grouping changes no bit. None if a worker failed."""
        fan_in = max(2, FAN_IN)
        level = sorted(holders)
        while len(level) > fan_in:
            groups = {level[i]: level[i + 1 : i + fan_in] for i in range(0, len(level), fan_in)}
            done = self._run(
                merge_kept,
                self._token,
                self._passes,
                groups,
                len(self.futures),
                workers=list(groups),
            )
            if done is None or not all(done.get(addr) is True for addr in groups):
                return None
            level = list(groups)
        taken = self._run(take_kept, self._token, self._passes, workers=level)
        if taken is None or not all(isinstance(taken.get(addr), dict) for addr in level):
            return None
        return [taken[addr] for addr in level]

    def _run(self, function, *args, workers: list[str]):
        """``Client.run`` on ``workers`` bounded by the pass timeout: the answers by
        address (a worker's exception as its answer), or None if the scheduler's
        connection failed. Raises ClusterError at the timeout."""
        try:
            return self.client.run(
                function,
                *args,
                workers=workers,
                on_error="return",
                callback_timeout=self.timeout,
            )
        except TimeoutError:
            raise ClusterError(
                timeout_message("a pass over the data", self.timeout, self.client, self.need)
            ) from None
        except (CommClosedError, OSError):
            return None

    def _install(self) -> None:
        """Give each worker its own list of (index, key) under a new version: one message
        per worker carrying only its blocks, sent concurrently. A worker that misses the
        message keeps an older version and answers the next pass with None. With more
        than ``FAN_IN`` workers, every ``FAN_IN``-th one (``relays``) also gets the
        addresses of the next ``FAN_IN`` − 1: a pass reaches it, it passes (w, b) on to
        them worker to worker and returns their tree nodes combined with its own, so the
        scheduler and the driver handle W / ``FAN_IN`` messages per pass, not W."""
        self._version += 1
        version, token = self._version, self._token
        self._relays = relays(list(self._assignment))
        children = {child: () for group in self._relays.values() for child in group}
        children.update(self._relays)

        async def send():
            await asyncio.gather(
                *(
                    self.client._run(
                        install_blocks,
                        token,
                        version,
                        held,
                        children[addr],
                        workers=[addr],
                        on_error="return",
                    )
                    for addr, held in self._assignment.items()
                )
            )

        with cluster_errors("a pass over the data", self.timeout, self.client, self.need):
            self.client.sync(send, callback_timeout=self.timeout)

    def _fold_by_tasks(self, groups, w, b, kernel):
        """The robust path: tasks the scheduler can place, retry and recompute."""
        index = {future.key: i for i, future in enumerate(self.futures)}
        level = [
            self.client.submit(
                fold_blocks,
                w,
                b,
                [index[block.key] for block in blocks],
                *blocks,
                kernel=kernel,
                n_blocks=len(self.futures),
                workers=[addr] if addr else None,
                allow_other_workers=bool(addr),  # Dask refuses it without workers=
                pure=False,
            )
            for addr, blocks in groups
        ]
        return merge_tree(self.client, level, self.timeout, len(self.futures), self.need)

    def release(self) -> None:
        if self._version:
            with contextlib.suppress(Exception):  # the lists are small; a gone worker has none
                self.client.run(forget_blocks, self._token, on_error="ignore", callback_timeout=10)
            self._version = 0
        for future in [*self.futures, *self.shared]:
            future.release()
        self.futures = []
        self.shared = []

    def _local_groups(self) -> list[tuple[str, list[Future]]]:
        """Blocks grouped by the worker that holds them, in a fixed block order.

        The scheduler is asked where the blocks are only when something moved (a pass
        found a block missing) or the set of workers changed (looked at every
        ``REGROUP_SECONDS``); a worker that joined then receives blocks (``_spread``).
        Blocks being recomputed after a fault have no holder yet ("") and form an
        unrestricted group that the scheduler places.
        """
        now = time.monotonic()
        if self._stale or now - self._looked_at > REGROUP_SECONDS:
            self._looked_at = now
            workers = self._present()
            if workers != self._workers:
                self._workers = workers
                self._stale = True
        if self._stale:
            self._regroup()
            lost = any(not addr for addr, _ in self._groups)
            if not lost and self._spread():
                self._regroup()
            self._stale = False
        return self._groups

    def _present(self) -> frozenset[str]:
        with cluster_errors("a pass over the data", self.timeout):
            found = self.client.sync(self.client.scheduler.ncores, callback_timeout=self.timeout)
        return frozenset(found)

    def _regroup(self) -> None:
        """Ask the scheduler who holds each block; install the lists anew if they changed."""
        with cluster_errors("a pass over the data", self.timeout):
            who_has = self.client.sync(
                self.client.scheduler.who_has,
                keys=[f.key for f in self.futures],
                callback_timeout=self.timeout,
            )
        groups: dict[str, list[Future]] = {}
        for future in self.futures:
            holders = sorted(who_has.get(future.key, ())) or [""]
            groups.setdefault(holders[0], []).append(future)
        self._groups = sorted(groups.items())
        index = {future.key: i for i, future in enumerate(self.futures)}
        assignment = {
            addr: [(index[f.key], f.key) for f in blocks] for addr, blocks in self._groups
        }
        if assignment != self._assignment or not self._version:
            self._assignment = assignment
            if all(assignment):  # no lost blocks: the fast path can run on these lists
                self._install()

    def _spread(self) -> bool:
        """Move blocks so that every worker present holds ⌊B/W⌋ or ⌈B/W⌉ of them
        (``placement.even_moves``); True if any moved.

        A block moves by a task on the new worker that takes it over from its holder
        (worker to worker; the holder then drops it): the same data under a new key,
        recomputable from the old one, so results do not change. Workers that can get no
        block (fewer blocks than workers) are logged once as idle. Moving is optional: a
        worker that is not running (paused for lack of memory, closing) receives none, and a
        move that has not arrived within ``MOVE_SECONDS`` (its worker hung or gone) is
        given up, the block staying where it was."""
        if not self._workers or not self.futures:
            return False
        holdings = {addr: [i for i, _ in held] for addr, held in self._assignment.items() if addr}
        status = {w.address: w.status for w in memory.read_workers(self.client, self.timeout)}
        unable = frozenset(a for a in self._workers if status.get(a, "running") != "running")
        if unable and unable != self._said_unable:
            log.info(
                "%d worker(s) are not running (paused for lack of memory, or closing) and "
                "receive no block: %s",
                len(unable),
                ", ".join(f"{a} ({status.get(a)})" for a in sorted(unable)[:3])
                + (", …" if len(unable) > 3 else ""),
            )
        self._said_unable = unable
        workers = sorted((self._workers - unable) | (self._workers & set(holdings)))
        if not workers:
            return False
        moves = [m for m in placement.even_moves(holdings, workers) if m[2] not in unable]
        idle = frozenset(workers) - unable - set(holdings) - {to for _, _, to in moves}
        if idle and idle != self._said_idle:
            log.info(
                "%d worker(s) hold no block and stay idle: the data has %d block(s) for "
                "%d worker(s) (%s)",
                len(idle),
                len(self.futures),
                len(workers),
                ", ".join(sorted(idle)[:3]) + (", …" if len(idle) > 3 else ""),
            )
        self._said_idle = idle
        if not moves:
            return False
        arrivals = sorted({to for _, _, to in moves})
        log.info(
            "placing %d block(s) on %d worker(s) that hold fewer than the others "
            "(joined after loading?): %s",
            len(moves),
            len(arrivals),
            ", ".join(arrivals[:3]) + (", …" if len(arrivals) > 3 else ""),
        )
        moved = {
            i: self.client.submit(
                _value,
                self.futures[i],
                workers=[to],
                allow_other_workers=False,  # loose, work stealing could undo the move
                pure=False,
                key=_load_key(i),  # blocks have one kind of name, whoever made them
            )
            for i, _, to in moves
        }

        target = {moved[i].key: to for i, _, to in moves}
        deadline = time.monotonic() + min(self.timeout or MOVE_SECONDS, MOVE_SECONDS)
        waiting = list(moved.values())
        while waiting:
            with cluster_errors("moving blocks", self.timeout, self.client, self.need):
                try:
                    wait(waiting, timeout=POLL_SECONDS)
                    break
                except TimeoutError:
                    pass
                pending = [f for f in waiting if not f.done()]
                stuck = set(_no_worker(self.client, pending, self.timeout))  # target gone
                now = memory.read_workers(self.client, self.timeout)
            late = time.monotonic() >= deadline
            unable = {w.address for w in now if w.status != "running"}
            for future in pending:  # a move is optional: give up rather than stall the job
                if late or future.key in stuck or target[future.key] in unable:
                    future.cancel()
            # a cancelled future would make the wait raise CancelledError: wait for the rest
            waiting = [f for f in waiting if not f.cancelled()]
        arrived = {f.key: None for f in moved.values() if f.status == "finished"}
        if arrived:  # the scheduler forgets a cancelled key: restrictions on it raise KeyError
            with cluster_errors("moving blocks", self.timeout):
                self.client.sync(
                    self.client.scheduler.set_restrictions,
                    worker=arrived,
                    callback_timeout=self.timeout,
                )
        stayed = 0
        for i, future in moved.items():
            if future.status != "finished":  # lost on the way: keep the old one
                future.release()
                stayed += 1
                continue
            self.futures[i].release()
            self.futures[i] = future
        if stayed:
            log.info(
                "%d of %d block move(s) did not arrive (the new worker left, hung or paused?): "
                "those blocks stay where they were",
                stayed,
                len(moved),
            )
        return True


def worker_environments(client: Client, timeout: float | None) -> list[dict]:
    """``environment.describe()`` of every worker, in address order (one ``Client.run``).
    Raises ClusterError when the workers do not answer within ``timeout``."""
    with cluster_errors("reading the workers' library versions", timeout, client):
        found = client.run(environment.describe, callback_timeout=timeout)
    return [found[addr] for addr in sorted(found)]


def merge_tree(
    client: Client,
    level: list[Future],
    timeout: float | None,
    n_blocks: int,
    need: memory.MemoryNeed | None = None,
    what: str = "a pass over the data",
):
    """Combine futures of tree nodes (``lrdask.reduction``) over ``n_blocks`` blocks: in
    groups of ``FAN_IN`` on the cluster (Spark's ``treeAggregate`` shape), the last ≤
    ``FAN_IN`` on the driver. The grouping changes who adds, never what is added to what."""
    fan_in = max(2, FAN_IN)
    while len(level) > fan_in:
        level = [
            client.submit(merge_nodes, n_blocks, *level[i : i + fan_in], pure=False)
            for i in range(0, len(level), fan_in)
        ]
    with cluster_errors(what, timeout, client, need):
        bounded_wait(client, level, timeout, what, need)
        return reduction.total(gather(client, level, timeout), n_blocks)


def bounded_wait(
    client: Client,
    futures: list[Future],
    timeout: float | None,
    what: str,
    need: memory.MemoryNeed | None = None,
    on_poll: Callable[[], list[Future]] | None = None,
) -> None:
    """Wait until every future is done (finished, erred or cancelled), for at most
    ``timeout`` seconds, looking at the workers every ``POLL_SECONDS``.

    Raises ClusterError at the timeout, or as soon as a worker has stayed paused for lack
    of memory for ``PAUSE_GRACE_SECONDS`` (the message gives the bytes needed per worker
    against the worker's limit). ``on_poll`` may replace futures (returns the list)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    paused_since: dict[str, float] = {}
    while True:
        left = POLL_SECONDS if deadline is None else deadline - time.monotonic()
        try:
            wait(futures, timeout=max(0.0, min(POLL_SECONDS, left)))
            return
        except TimeoutError:
            pass
        if deadline is not None and time.monotonic() >= deadline:
            raise ClusterError(timeout_message(what, timeout, client, need))
        try:
            if on_poll is not None:
                futures = on_poll()
            workers = memory.read_workers(client, POLL_SECONDS * 5)
        except (OSError, TimeoutError, CommClosedError, ClusterError) as exc:
            raise ClusterError(
                f"lost the Dask cluster during {what}: the scheduler does not answer "
                f"({type(exc).__name__})"
            ) from None
        now = time.monotonic()
        paused = {w.address for w in workers if w.status == "paused"}
        paused_since = {a: paused_since.get(a, now) for a in paused}
        if any(now - since >= PAUSE_GRACE_SECONDS for since in paused_since.values()):
            held = [w for w in workers if w.address in paused]
            raise ClusterError(
                f"{what} stalled: worker(s) {', '.join(sorted(paused))} paused for lack of "
                f"memory for {PAUSE_GRACE_SECONDS:g}s; "
                + (memory.explain(need, held) or _used(held))
            )


def gather(client: Client, futures: list[Future], timeout: float | None) -> list:
    """``Client.gather`` bounded by ``timeout`` (a worker that stops after finishing its
    task would otherwise hold the transfer)."""
    return client.sync(client._gather, futures, callback_timeout=timeout)


def timeout_message(what: str, timeout: float | None, client: Client, need=None) -> str:
    """The pass timed out: say so, and what the workers' state suggests."""
    text = f"the cluster gave no result for {what} within {timeout:g}s"
    try:
        workers = memory.read_workers(client, 5)
    except Exception:  # the scheduler itself does not answer
        return f"{text}; the scheduler does not answer either: check it (or raise --pass-timeout)"
    hint = memory.explain(need, workers)
    if hint:
        return f"{text}: {hint}"
    return f"{text}; check the scheduler and workers (or raise --pass-timeout)"


def _used(workers: list[memory.WorkerMemory]) -> str:
    return "; ".join(
        f"{w.address} uses {memory.mb(w.used)} of its {memory.mb(w.limit)} limit" for w in workers
    )


@contextlib.contextmanager
def cluster_errors(
    what: str,
    timeout: float | None,
    client: Client | None = None,
    need: memory.MemoryNeed | None = None,
) -> Iterator[None]:
    """Turn the ways a cluster fails into one ClusterError that says what was under way
    (and, when workers were killed and memory is short, that memory is the cause)."""
    try:
        yield
    except TimeoutError:
        if client is None:
            raise ClusterError(
                f"the cluster gave no result for {what} within {timeout:g}s; "
                "check the scheduler and workers (or raise --pass-timeout)"
            ) from None
        raise ClusterError(timeout_message(what, timeout, client, need)) from None
    except (CancelledError, CommClosedError, KilledWorker, OSError) as exc:
        reason = first_line(exc).rstrip(":") or type(exc).__name__
        if isinstance(exc, KilledWorker):  # Dask's text runs to a paragraph
            reason = f"the workers running one of its tasks died {_allowed_failures() + 1} times"
        hint = ""
        if client is not None and need is not None and isinstance(exc, KilledWorker):
            workers = []
            with contextlib.suppress(Exception):
                workers = memory.read_workers(client, 5)
            # a restarted worker uses little memory again, so the estimate alone may not
            # look short; workers that die running a pass over the data still say memory
            hint = memory.explain(need, workers) or memory.explain_deaths(need, workers)
        text = (
            f"workers kept dying during {what}: {reason}"
            if isinstance(exc, KilledWorker)
            else f"lost the Dask cluster during {what}: {reason}"
        )
        raise ClusterError(f"{text}; {hint}" if hint else text) from None


def _allowed_failures() -> int:
    return int(dask.config.get("distributed.scheduler.allowed-failures", 3))


def _load_key(i: int) -> str:
    return f"lrdask-load-{i}-{time.time_ns()}"


def _no_worker(client: Client, futures: list[Future], timeout) -> list[str]:
    """Keys of ``futures`` the scheduler holds in state "no-worker"."""
    if not futures:
        return []
    keys = [f.key for f in futures]
    return client.run_on_scheduler(_keys_in_state, keys, "no-worker", callback_timeout=timeout)


def _keys_in_state(keys, state, dask_scheduler=None):
    tasks = dask_scheduler.tasks
    return [k for k in keys if k in tasks and tasks[k].state == state]


# On each worker process: (worker address, run token) -> (version, [(index, key), …],
# [addresses of the workers it relays a pass to]).
_INSTALLED: dict[tuple[str, str], tuple[int, list, list]] = {}


def relays(addresses: list[str]) -> dict[str, list[str]]:
    """Who relays a pass to whom: ``addresses`` sorted, in groups of ``FAN_IN``; the first
    of each group relays to the others. Everyone relays to nobody up to ``FAN_IN``."""
    ordered = sorted(addresses)
    if len(ordered) <= FAN_IN:
        return {addr: [] for addr in ordered}
    fan_in = max(2, FAN_IN)
    return {ordered[i]: ordered[i + 1 : i + fan_in] for i in range(0, len(ordered), fan_in)}


def install_blocks(token: str, version: int, held: list, children=(), dask_worker=None) -> None:
    """Runs on a worker (via Client.run): keep this worker's blocks of run ``token``, and
    the workers it relays each pass to."""
    _INSTALLED[(dask_worker.address, token)] = (version, list(held), list(children))


def forget_blocks(token: str, dask_worker=None) -> None:
    """Runs on a worker: drop the block list of run ``token`` (the run is over)."""
    _INSTALLED.pop((dask_worker.address, token), None)
    _KEPT.pop((dask_worker.address, token), None)


# On each worker process: (worker address, run token) -> (pass, tree nodes) kept there.
_KEPT: dict[tuple[str, str], tuple[int, dict]] = {}


@dataclass(frozen=True)
class Kept:
    """A worker's answer when its partial sums stayed on it (``KEEP_OVER_BYTES``)."""

    nbytes: int


async def fold_installed(
    token: str,
    version: int,
    pass_no: int,
    w: np.ndarray,
    b: float,
    kernel,
    n_blocks: int,
    keep_over: int,
    dask_worker=None,
):
    """Runs on a worker (via Client.run): fold the blocks installed for ``token`` at
    ``version``, read from its Dask data store, in a thread so the worker's event loop
    stays responsive. Returns the tree nodes they determine, or ``Kept`` when those are
    larger than ``keep_over`` bytes (they stay here for ``merge_kept``), or None if the
    list is of another version or one of its blocks is not there."""
    found = _INSTALLED.get((dask_worker.address, token))
    if found is None or found[0] != version:
        return None
    _KEPT.pop((dask_worker.address, token), None)  # a failed pass's
    loop = asyncio.get_running_loop()
    own = loop.run_in_executor(
        None, _fold_present, dask_worker.data, found[1], w, b, kernel, n_blocks
    )
    if not found[2]:
        nodes = await own
    else:  # a relay: the same pass on its workers, their nodes kept whole for combining
        call = dask_pickle.dumps(fold_installed)
        args = dask_pickle.dumps((token, version, pass_no, w, b, kernel, n_blocks, math.inf))
        parts = await asyncio.gather(
            own, *(_relayed(dask_worker, child, call, args) for child in found[2])
        )
        if not all(isinstance(part, dict) for part in parts):
            return None
        nodes = await loop.run_in_executor(None, reduction.combine, parts, n_blocks)
    if nodes is None:
        return None
    size = nbytes(nodes)
    if size <= keep_over:
        return nodes
    _KEPT[(dask_worker.address, token)] = (pass_no, nodes)
    return Kept(size)


async def _relayed(dask_worker, child: str, call: bytes, args: bytes):
    """``fold_installed`` on worker ``child`` through its ``run`` handler (worker to
    worker); None if it fails or does not answer (the driver then runs the pass as
    tasks)."""
    try:
        answer = await dask_worker.rpc(child).run(function=call, args=args)
    except (OSError, CommClosedError):
        return None
    return answer.get("result") if answer.get("status") == "OK" else None


async def merge_kept(token: str, pass_no: int, groups: dict, n_blocks: int, dask_worker=None):
    """Runs on a worker: take the nodes kept on the workers ``groups[this worker]``
    (worker to worker, ``take_kept`` through their ``run`` handler) and combine them with
    its own; the result stays here. True when done."""
    own = _take(dask_worker.address, token, pass_no)
    parts = [own]
    for child in groups.get(dask_worker.address, []):
        answer = await dask_worker.rpc(child).run(
            function=dask_pickle.dumps(take_kept), args=dask_pickle.dumps((token, pass_no))
        )
        if answer.get("status") != "OK" or not isinstance(answer.get("result"), dict):
            raise RuntimeError(f"worker {child} did not hand over its partial sums")
        parts.append(answer["result"])
    loop = asyncio.get_running_loop()
    combined = await loop.run_in_executor(None, reduction.combine, parts, n_blocks)
    _KEPT[(dask_worker.address, token)] = (pass_no, combined)
    return True


def take_kept(token: str, pass_no: int, dask_worker=None) -> dict:
    """Runs on a worker: hand over (and drop) the nodes kept for pass ``pass_no``."""
    return _take(dask_worker.address, token, pass_no)


def _take(address: str, token: str, pass_no: int) -> dict:
    found = _KEPT.pop((address, token), None)
    if found is None or found[0] != pass_no:
        raise RuntimeError(f"no partial sums of pass {pass_no} kept here")
    return found[1]


def nbytes(value) -> int:
    """The bytes of the arrays in ``value`` (tree nodes of partial sums: dicts,
    dataclasses, arrays), 8 per other number."""
    if isinstance(value, np.ndarray):
        return value.nbytes
    if isinstance(value, dict):
        return sum(nbytes(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(nbytes(v) for v in value)
    if hasattr(value, "__dict__"):
        return nbytes(vars(value))
    return 8


async def fold_assigned(
    assignment: dict, w: np.ndarray, b: float, kernel, n_blocks: int, dask_worker=None
):
    """``fold_installed`` with the whole worker → blocks map sent along (the benchmarks'
    way to fold one worker's blocks directly)."""
    held = assignment.get(dask_worker.address, [])
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(
        None, _fold_present, dask_worker.data, held, w, b, kernel, n_blocks
    )


def _fold_present(data, held, w: np.ndarray, b: float, kernel, n_blocks: int):
    blocks = []
    for _, key in held:
        try:
            blocks.append(data[key])
        except KeyError:
            return None
    return fold_blocks(w, b, [i for i, _ in held], *blocks, kernel=kernel, n_blocks=n_blocks)


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
        self.need: memory.MemoryNeed | None = None  # the estimate, for messages

    def reports(self) -> list[BlockReport]:
        """One validating read of every piece (the load pass of the cached mode). Every
        later pass checks that each piece reads as it did here."""
        futures = [
            self.client.submit(_load_report, self.load, *arg, pure=False) for arg in self.args
        ]
        with cluster_errors("reading the data", self.timeout, self.client, self.need):
            bounded_wait(self.client, futures, self.timeout, "reading the data", self.need)
            self.expected = gather(self.client, futures, self.timeout)
            return self.expected

    def partial_sums(self, w: np.ndarray, b: float, kernel: Callable = log_loss_sums):
        level = [
            self.client.submit(
                _load_and_fold, self.load, i, arg, w, b, kernel, expected, pure=False
            )
            for i, (arg, expected) in enumerate(zip(self.args, self.expected, strict=True))
        ]
        return merge_tree(self.client, level, self.timeout, len(self.args), self.need)

    def release(self) -> None:
        """Nothing is held between passes but the shared encoding."""
        for future in self.shared:
            future.release()
        self.shared = []


def _load_report(load: Callable[..., Block], *arg) -> BlockReport:
    return load(*arg).report


def _load_and_fold(load: Callable[..., Block], i: int, arg: tuple, w, b, kernel, expected=None):
    """Read, check that the piece reads as it did at the validating read (``expected``:
    same rows, classes, missing and bad values), and fold."""
    block = load(*arg)
    if expected is not None and block.report != expected:
        raise DataChangedError(
            f"{block.report.source}: reads differently from when the job validated it "
            f"({_difference(expected, block.report)}); the job stops without publishing a "
            "model and keeps its checkpoint: rerun it once the data set is complete"
        )
    return reduction.leaves({i: fold_block(kernel, block, w, b)})


def _difference(before: BlockReport, after: BlockReport) -> str:
    """The first fields in which two reports of one piece differ, in words."""
    changed = [
        f"{name} {getattr(before, name)!r} → {getattr(after, name)!r}"
        for name in before.__dataclass_fields__
        if getattr(before, name) != getattr(after, name)
    ]
    return "; ".join(changed[:3])


def fold_blocks(
    w: np.ndarray,
    b: float,
    indices: list[int],
    *blocks: Block,
    kernel: Callable = log_loss_sums,
    n_blocks: int,
):
    """The per-worker task: the kernel over each local block (``indices``: their places in
    the plan), combined into the tree nodes they determine (``lrdask.reduction``)."""
    sums = {i: fold_block(kernel, block, w, b) for i, block in zip(indices, blocks, strict=True)}
    return reduction.combine([reduction.leaves(sums)], n_blocks)


def fold_block(kernel: Callable, block: Block, w, b):
    """The kernel over one block, with its row weights and categorical codes if it has them.

    BLAS runs on one thread here (``threadpoolctl``): a multi-threaded matrix product
    splits its sums by thread count, which would make the bits depend on the machine."""
    _one_blas_thread()
    extra = {}
    if block.weight is not None:
        extra["sample_weight"] = block.weight
    if block.codes is not None:
        extra["codes"] = block.codes
    with np.errstate(all="ignore"):  # overflow shows as a non-finite sum the driver acts on
        return kernel(block.X, block.y, w, b, **extra)


def merge_nodes(n_blocks: int, *parts: dict):
    return reduction.combine(parts, n_blocks)


_BLAS_PINNED = False


def _one_blas_thread() -> None:
    """Limit this process's BLAS to one thread, once (Dask's nanny sets the same through
    OMP_NUM_THREADS; a worker started without one, or the driver, may not)."""
    global _BLAS_PINNED
    if not _BLAS_PINNED:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=1, user_api="blas")
        _BLAS_PINNED = True


def _report(block: Block) -> BlockReport:
    return block.report


def persist_plan(client: Client, plan, encoding, dtype: str, timeout, cache: bool = True):
    """Blocks for a ``DatasetPlan`` (small files grouped), read as ``encoding`` says:
    cached on the workers, or streamed."""
    workers = memory.read_workers(client, timeout)
    groups = plan.blocks()
    need = memory.estimate(
        [sum(p.num_rows for p in group) for group in groups],
        len(plan.features),
        dtype,
        plan.weight is not None,
        workers,
        cache,
    )
    hint = memory.explain(need, workers)
    if hint:
        log.warning("worker memory looks short (workers may pause or restart): %s", hint)
    shared = share(client, encoding, timeout)
    args = [(group, plan.fs, shared, dtype) for group in groups]
    if not cache:
        blocks = StreamedPieces(client, load_pieces, args, timeout)
    else:
        blocks = PersistedBlocks.from_loaders(client, load_pieces, args, timeout)
    blocks.shared = [shared]
    blocks.need = need
    return blocks


def share(client: Client, value, timeout: float | None = None) -> Future:
    """``value`` as one object per worker that all its tasks use (an encoding with 10⁵
    levels is a megabyte; a copy per block would make worker memory grow with blocks ×
    levels). It is a task that returns the value, not ``Client.scatter``: scattered data
    cannot be recomputed, so workers restarted together (a nanny after an out-of-memory
    kill) would lose every copy and Dask would cancel every task built on it; a task is
    recomputed from the graph, which holds the value. The caller keeps the future for as
    long as tasks may be recomputed from it."""
    future = client.submit(_value, value, pure=False, key=f"lrdask-shared-{uuid.uuid4().hex}")
    # The scheduler may unpack a large graph after a small one sent later: wait until it
    # knows this task, or tasks built on it would be refused as "computation on lost data".
    with cluster_errors("sending the encoding to the workers", timeout, client):
        bounded_wait(client, [future], timeout, "sending the encoding to the workers")
    return future


def _value(value):
    return value


def profile_plan(client: Client, plan, request, timeout=None):
    """The profile pass (levels, classes, means; ``lrdask.encoding``): one task per piece
    of the plan (pieces depend on the data alone), merged in a fixed order."""
    need = streamed_need(client, plan, timeout)
    level = [
        client.submit(_profile_leaf, i, piece, plan.fs, request, pure=False)
        for i, piece in enumerate(plan.pieces)
    ]
    return merge_tree(client, level, timeout, len(plan.pieces), need, "profiling the data")


def _profile_leaf(i: int, piece, fs, request):
    return reduction.leaves({i: profile_piece(piece, fs, request)})


def streamed_need(client: Client, plan, timeout=None) -> memory.MemoryNeed:
    """The memory estimate for reading ``plan`` piece by piece (predict, evaluate)."""
    rows = [piece.num_rows for piece in plan.pieces]
    workers = memory.read_workers(client, timeout)
    return memory.estimate(rows, len(plan.features), "float64", False, workers, cached=False)
