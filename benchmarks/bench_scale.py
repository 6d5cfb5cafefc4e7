"""How the cost of one pass grows with the number of workers and blocks (issue #16).

This is the cost model of the scale-out issue, written down and checked on real processes:

    pass ≈ max_w kernel_w + c + a·W + b·blocks + k·RTT

It starts a real ``dask scheduler`` and ``dask worker`` processes (127.0.0.1, one thread
each, no nanny, dashboards off), by default inside a private network namespace of its own
(``ip netns``, as root) so that the loopback byte counters count this benchmark's traffic
only. For each worker count W in ``--workers-list`` it loads ``--blocks-per-worker`` × W
small synthetic blocks (``--rows`` × ``--features`` float64 each, so the kernel is small and
the overhead shows), and for each ``--block-sweeps`` entry it loads several block counts at
one W (the per-block constant). The workers are started once, in batches, and the cluster
grows from the smallest W to the largest.

Only the public API is used, so the same script measures the code before and after a
change to the pass machinery: ``PersistedBlocks.from_loaders(client, load, args, timeout)``,
``.reports()``, ``.partial_sums(w, b)`` along a gradient-descent path, ``.release()``.
For each configuration, over ``--iterations`` passes after ``--warmup`` untimed ones:

- wall time per pass (median, p10–p90);
- the slowest worker's kernel per pass: ``lrdask.scheduling.fold_blocks`` is wrapped on the
  workers while the passes run (as ``bench_iteration.py`` does) and records its wall time,
  its thread CPU time and whether it ran inside a Dask task or not (``Client.run``): the
  "path" column. Overhead = pass − slowest kernel, per pass;
- driver CPU per pass (``time.process_time`` of this process, all its threads) and scheduler
  CPU per pass (``psutil`` user + system of the scheduler process), both less what the same
  processes use while idle (heartbeats; measured over ``--idle-seconds`` just before);
- bytes per pass: transmitted bytes of the loopback interface (``/proc/net/dev``, packets
  with their TCP/IP headers and acks, idle rate subtracted), and TCP payload by direction
  from the kernel's per-socket ``bytes_sent`` counters (``ss -tinp``; each socket's owner
  process tells driver, scheduler or worker);
- the scheduler's task transitions per pass (``Scheduler.transition_counter``: 0 when no
  task ran);
- round trips per pass, k: the passes again with every Dask message delayed by
  ``--latency-ms`` before it is written (``distributed.comm.tcp.TCP.write`` wrapped in the
  driver, the scheduler and every worker). k = (pass with delay − pass without) / (2 ×
  delay): how many sequential request–reply exchanges a pass waits for. (``tc netem`` would
  delay packets instead of messages; this machine's kernel has no netem.)

Then it fits the constants by least squares (``numpy.linalg.lstsq``) on the per-configuration
medians, separately for each path the passes took, and projects the pass to 100, 1,000 and
10,000 workers on 10¹⁰ rows × 100 features in blocks of 166,667 rows with RTT 0.5 ms, the
kernel time per row measured here (``lrdask.kernels.log_loss_sums`` over one such block,
one BLAS thread).

Markdown tables on stdout, progress on stderr, raw samples with ``--json PATH``. Every
process it starts is stopped on exit, also on errors and Ctrl-C (and the workers die with
it if it is killed). Run from the repository root (as root for the namespace)::

    python benchmarks/bench_scale.py --quick                          # ~2 min, W ≤ 8
    python benchmarks/bench_scale.py --json /tmp/bench-scale.json     # 1 … 128 workers
    PYTHONPATH=/path/to/other/checkout python benchmarks/bench_scale.py --json other.json

Only an otherwise idle machine gives meaningful numbers; the first line says how many
CPU-seconds other processes used during the run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import psutil
from distributed import Client

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_iteration import (  # noqa: E402  (the house helpers, shared with this script)
    fmt_spread,
    fmt_time,
    log,
    markdown_table,
    one_thread,
    other_cpu_usage,
    summary,
)

import lrdask  # noqa: E402
from lrdask import scheduling  # noqa: E402
from lrdask.kernels import log_loss_sums  # noqa: E402
from lrdask.loading import Block, BlockReport  # noqa: E402
from lrdask.scheduling import PersistedBlocks  # noqa: E402

SEED = 0
ALPHA = 0.5  # gradient-descent step of the timed passes (its value does not matter)
BIN = os.path.dirname(sys.executable)
# The projection: the target workload.
PROJECT_ROWS = 10**10
PROJECT_FEATURES = 100
PROJECT_BLOCK_ROWS = 166_667
PROJECT_RTT = 0.5e-3
PROJECT_WORKERS = (100, 1_000, 10_000)
KERNEL_REPEATS = 5
MEMORY_HEADROOM = 0.9  # stop growing the cluster past this share of --max-memory-gib
# Dask's background monitors, slowed in the scheduler and workers unless --dask-defaults:
# with their defaults an idle worker uses ~3.4 % of a core here (the statistical profiler
# every 10 ms, the system monitor every 0.5 s, the event-loop tick every 20 ms, the memory
# monitor every 0.1 s), so 64 idle workers use up both cores of this machine and every pass
# waits for them; with these, ~0.2 %. A worker on its own host would not compete with the
# others for cores. None of these is on the path of a pass.
QUIET_MONITORS = {
    "DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED": "False",
    "DASK_DISTRIBUTED__ADMIN__SYSTEM_MONITOR__INTERVAL": "5s",
    "DASK_DISTRIBUTED__ADMIN__TICK__INTERVAL": "1s",
    "DASK_DISTRIBUTED__WORKER__MEMORY__MONITOR_INTERVAL": "1s",
}
PATH_NAMES = {"run": "Client.run", "task": "tasks", "mixed": "mixed"}


# ---- the data the workers hold ---------------------------------------------------------------
def make_block(index: int, rows: int, features: int, seed: int) -> Block:
    """Runs on a worker: block ``index`` of synthetic data, rows × features float64
    (column-major, as ``lrdask.loading`` builds X) and 0/1 labels drawn from a logistic
    model, with the load report the driver expects."""
    rng = np.random.default_rng([seed, index])
    X = np.asfortranarray(rng.standard_normal((rows, features)))
    w = np.random.default_rng([seed, 2**31]).normal(size=features) / np.sqrt(features)
    y = (rng.random(rows) < 1.0 / (1.0 + np.exp(-(X @ w)))).astype(np.float64)
    positives = int(y.sum())
    report = BlockReport(
        source=f"synthetic block {index}",
        rows=rows,
        positives=positives,
        class_counts=[rows - positives, positives],
    )
    return Block(X=X, y=y, report=report)


# ---- on the workers and the scheduler (shipped by value: no imports from this folder) ----
def _warm_worker() -> int:
    """Import what loads and passes need, so the first load does not pay for it."""
    import lrdask.loading  # noqa: F401
    import lrdask.scheduling  # noqa: F401

    return os.getpid()


def _install_fold_timer() -> bool:
    """Wrap lrdask.scheduling.fold_blocks (the per-worker kernel, however a pass reaches
    it) to record (wall start, wall seconds, thread CPU seconds, "task" or "run") per call:
    "task" when it runs inside a Dask task, "run" otherwise (Client.run, a handler)."""
    import time

    from distributed.worker import thread_state

    import lrdask.scheduling as sched

    original = getattr(sched, "_bench_untimed_fold", sched.fold_blocks)
    record: list[tuple[float, float, float, str]] = []

    def timed_fold(*args, **kwargs):
        wall, start, cpu = time.time(), time.perf_counter(), time.thread_time()
        try:
            return original(*args, **kwargs)
        finally:
            via = "task" if getattr(thread_state, "key", None) is not None else "run"
            record.append((wall, time.perf_counter() - start, time.thread_time() - cpu, via))

    sched._bench_untimed_fold = original
    sched._bench_fold_record = record
    sched.fold_blocks = timed_fold
    return True


def _remove_fold_timer() -> list:
    """Undo _install_fold_timer; returns what it recorded."""
    import lrdask.scheduling as sched

    record = getattr(sched, "_bench_fold_record", [])
    if hasattr(sched, "_bench_untimed_fold"):
        sched.fold_blocks = sched._bench_untimed_fold
        del sched._bench_untimed_fold, sched._bench_fold_record
    return record


def _delay_messages(seconds: float) -> bool:
    """Delay every Dask message this process writes over TCP by ``seconds`` (0: undo).
    The same network latency on every hop, for counting the round trips of a pass."""
    import asyncio

    from distributed.comm import tcp

    original = tcp.TCP.__dict__.get("_bench_undelayed_write", tcp.TCP.write)
    if seconds <= 0:
        tcp.TCP.write = original
        with contextlib.suppress(AttributeError):
            del tcp.TCP._bench_undelayed_write
        return True

    async def delayed_write(self, msg, serializers=None, on_error="message"):
        await asyncio.sleep(seconds)
        return await original(self, msg, serializers=serializers, on_error=on_error)

    tcp.TCP._bench_undelayed_write = original
    tcp.TCP.write = delayed_write
    return True


def _transitions(dask_scheduler=None) -> int:
    return dask_scheduler.transition_counter


# ---- the cluster -----------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """A ``dask scheduler`` and ``dask worker`` processes on 127.0.0.1, one thread per worker,
    no nanny, no dashboards. Workers are added in batches (``grow``). Every process is
    stopped on exit (also on errors and Ctrl-C); each dies with this process if it is
    killed (``setpriv --pdeathsig``), and workers leave on their own if the scheduler is
    gone for a minute (``--death-timeout``)."""

    def __init__(
        self, scratch: str, batch: int, memory_limit: str, timeout: float, quiet: bool = True
    ):
        self.quiet = quiet
        self.scratch = scratch
        self.batch = max(1, batch)
        self.memory_limit = memory_limit
        self.timeout = timeout
        self.port = free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.scheduler: subprocess.Popen | None = None
        self.workers: list[subprocess.Popen] = []
        self.worker_pids: dict[str, int] = {}  # address -> pid
        self.client: Client | None = None
        self._logs: list = []

    def _spawn(self, name: str, *args: str) -> subprocess.Popen:
        command = [os.path.join(BIN, "dask"), *args]
        if shutil.which("setpriv"):
            command = ["setpriv", "--pdeathsig", "TERM", *command]
        out = open(os.path.join(self.scratch, f"{name}.log"), "w")  # noqa: SIM115
        self._logs.append(out)
        env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
        env["MKL_NUM_THREADS"] = "1"
        if self.quiet:
            env.update(QUIET_MONITORS)
        return subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )

    def __enter__(self) -> Cluster:
        os.makedirs(self.scratch, exist_ok=True)
        try:
            self.scheduler = self._spawn(
                "scheduler",
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--no-dashboard",
            )
            self.client = Client(self.address, timeout=60)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def grow(self, n: int) -> None:
        """Start workers until ``n`` are registered, ``batch`` at a time, each batch waited
        for; lrdask is imported on the new ones."""
        while len(self.workers) < n:
            for _ in range(min(self.batch, n - len(self.workers))):
                i = len(self.workers)
                self.workers.append(
                    self._spawn(
                        f"worker-{i}",
                        "worker",
                        self.address,
                        "--host",
                        "127.0.0.1",
                        "--nthreads",
                        "1",
                        "--no-nanny",
                        "--no-dashboard",
                        "--memory-limit",
                        self.memory_limit,
                        "--death-timeout",
                        "60",
                        "--name",
                        f"bench-{i}",
                        "--local-directory",
                        self.scratch,
                    )
                )
            try:
                self.client.wait_for_workers(len(self.workers), timeout=self.timeout)
            except TimeoutError:
                dead = [i for i, p in enumerate(self.workers) if p.poll() is not None]
                raise RuntimeError(
                    f"only {len(self.client.scheduler_info(n_workers=-1)['workers'])} of "
                    f"{len(self.workers)} workers registered within {self.timeout:g}s "
                    f"(exited: {dead[:5]}; logs in {self.scratch})"
                ) from None
            log(f"{len(self.workers)} workers registered")
        self.worker_pids = self.client.run(_warm_worker)
        if len(self.worker_pids) != n:
            raise RuntimeError(f"expected {n} workers, the scheduler knows {len(self.worker_pids)}")

    @property
    def scheduler_pid(self) -> int:
        return self.scheduler.pid

    def __exit__(self, *exc) -> None:
        log(f"stopping {len(self.workers)} workers and the scheduler")
        if self.client is not None:
            with contextlib.suppress(Exception):
                self.client.close(timeout=10)
        for proc in [*self.workers, self.scheduler]:
            if proc is not None and proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + 20
        for proc in [*self.workers, self.scheduler]:
            if proc is None:
                continue
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for out in self._logs:
            out.close()


# ---- counters ----------------------------------------------------------------------------------
def loopback_tx_bytes() -> int:
    """Bytes transmitted on ``lo`` in this network namespace (headers and acks included)."""
    with open("/proc/net/dev") as fh:
        for line in fh:
            name, _, rest = line.partition(":")
            if name.strip() == "lo":
                return int(rest.split()[8])
    return 0


def socket_bytes() -> dict[tuple[str, str], tuple[int, int]]:
    """Established TCP sockets: (local address, peer address) → (owner pid, bytes_sent),
    from ``ss -tinp`` (the kernel's per-socket payload counters)."""
    text = subprocess.run(
        ["ss", "-tinpH", "state", "established"], capture_output=True, text=True, check=True
    ).stdout
    found: dict[tuple[str, str], tuple[int, int]] = {}
    current: tuple[tuple[str, str], int] | None = None
    for line in text.splitlines():
        if not line.startswith((" ", "\t")):
            fields = line.split()
            pid = -1
            if "pid=" in line:
                pid = int(line.split("pid=", 1)[1].split(",", 1)[0])
            current = ((fields[2], fields[3]), pid) if len(fields) >= 4 else None
        elif current is not None and "bytes_sent:" in line:
            sent = int(line.split("bytes_sent:", 1)[1].split()[0])
            found[current[0]] = (current[1], sent)
            current = None
    return found


def traffic(before: dict, after: dict, roles: dict[int, str]) -> dict[str, int]:
    """Payload bytes sent between the two snapshots, by (sender role → receiver role).
    Sockets opened in between count from zero; sockets closed in between are missed."""
    out: dict[str, int] = {}
    for key, (pid, sent) in after.items():
        peer = after.get((key[1], key[0]), (None, 0))[0]
        delta = sent - before.get(key, (pid, 0))[1]
        pair = f"{roles.get(pid, 'other')}→{roles.get(peer, 'other')}"
        out[pair] = out.get(pair, 0) + max(0, delta)
    return out


def cpu_seconds(pid: int) -> float:
    t = psutil.Process(pid).cpu_times()
    return t.user + t.system


class Counters:
    """A snapshot of the per-pass counters: time, driver and scheduler CPU, loopback bytes,
    per-socket payload."""

    def __init__(self, cluster: Cluster, sockets: bool = True):
        self.sockets = socket_bytes() if sockets else {}
        self.lo = loopback_tx_bytes()
        self.workers_cpu = sum(cpu_seconds(pid) for pid in cluster.worker_pids.values())
        self.scheduler_cpu = cpu_seconds(cluster.scheduler_pid)
        self.driver_cpu = time.process_time()
        self.time = time.perf_counter()

    @staticmethod
    def after(cluster: Cluster, sockets: bool = True) -> Counters:
        """The same snapshot, read in the reverse order (the clock first)."""
        snap = Counters.__new__(Counters)
        snap.time = time.perf_counter()
        snap.driver_cpu = time.process_time()
        snap.scheduler_cpu = cpu_seconds(cluster.scheduler_pid)
        snap.workers_cpu = sum(cpu_seconds(pid) for pid in cluster.worker_pids.values())
        snap.lo = loopback_tx_bytes()
        snap.sockets = socket_bytes() if sockets else {}
        return snap

    @property
    def total_cpu(self) -> float:
        return self.driver_cpu + self.scheduler_cpu + self.workers_cpu


def roles_of(cluster: Cluster) -> dict[int, str]:
    roles = {pid: "worker" for pid in cluster.worker_pids.values()}
    roles[cluster.scheduler_pid] = "scheduler"
    roles[os.getpid()] = "driver"
    return roles


def memory_snapshot(cluster: Cluster, proportional: bool) -> dict:
    """RSS (and PSS, which shares the libraries out fairly, if ``proportional``) in bytes of
    the scheduler, this driver and every worker."""

    def read(pid: int) -> dict:
        try:
            proc = psutil.Process(pid)
            if proportional:
                info = proc.memory_full_info()
                return {"rss": info.rss, "pss": info.pss}
            return {"rss": proc.memory_info().rss}
        except psutil.Error:
            return {"rss": 0}

    workers = [read(pid) for pid in cluster.worker_pids.values()]
    out = {
        "scheduler": read(cluster.scheduler_pid),
        "driver": read(os.getpid()),
        "workers_rss": [w["rss"] for w in workers],
    }
    everything = [out["scheduler"], out["driver"], *workers]
    out["total_rss"] = sum(m["rss"] for m in everything)
    if proportional:
        out["workers_pss"] = [w.get("pss", 0) for w in workers]
        out["total_pss"] = sum(m.get("pss", 0) for m in everything)
    return out


def machine_busy_seconds() -> float:
    t = psutil.cpu_times()
    return t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0)


# ---- one configuration -------------------------------------------------------------------------
def gd_passes(blocks: PersistedBlocks, n: int, state: list) -> list[tuple[float, float, float]]:
    """``n`` passes along a gradient-descent path continued from ``state`` = [w, b]: per
    pass (seconds, wall start, wall end)."""
    out = []
    for _ in range(n):
        wall, start = time.time(), time.perf_counter()
        sums = blocks.partial_sums(state[0], state[1])
        out.append((time.perf_counter() - start, wall, time.time()))
        _, dw, db = sums.mean()
        state[0], state[1] = state[0] - ALPHA * dw, state[1] - ALPHA * db
    return out


def folds_in(records: dict[str, list], window: tuple[float, float]) -> dict:
    """The fold_blocks calls that started inside one pass's wall-clock window."""
    inside = [(addr, rec) for addr, recs in records.items() for rec in recs if window[0] <= rec[0]]
    inside = [(addr, rec) for addr, rec in inside if rec[0] <= window[1]]
    vias = {rec[3] for _, rec in inside}
    return {
        "slowest": max((rec[1] for _, rec in inside), default=float("nan")),
        "cpu": sum(rec[2] for _, rec in inside),
        "calls": len(inside),
        "workers": len({addr for addr, _ in inside}),
        "via": vias.pop() if len(vias) == 1 else ("mixed" if vias else "none"),
    }


def expected_path(n_workers: int) -> str:
    """The path the code's own switch predicts (``DIRECT_MAX``), if it has one."""
    limit = getattr(scheduling, "DIRECT_MAX", None)
    if limit is None:
        return "n/a"
    return "run" if n_workers <= limit else "task"


def measure(cluster: Cluster, n_workers: int, n_blocks: int, args, latency: bool) -> dict:
    """Load ``n_blocks`` blocks on the ``n_workers`` workers, time the passes, release."""
    client = cluster.client
    start = time.perf_counter()
    loads = [(i, args.rows, args.features, SEED) for i in range(n_blocks)]
    blocks = PersistedBlocks.from_loaders(client, make_block, loads, args.pass_timeout)
    out: dict = {
        "workers": n_workers,
        "blocks": n_blocks,
        "expected_path": expected_path(n_workers),
    }
    try:
        reports = blocks.reports()
        out["load_seconds"] = time.perf_counter() - start
        if sum(r.rows for r in reports) != n_blocks * args.rows:
            raise RuntimeError("the blocks' reports do not add up to the rows loaded")
        holders = client.who_has(blocks.futures)
        per_worker = dict.fromkeys(cluster.worker_pids, 0)
        for addrs in holders.values():
            for addr in addrs[:1]:
                per_worker[addr] = per_worker.get(addr, 0) + 1
        out["blocks_per_worker"] = sorted(per_worker.values())
        out["memory"] = memory_snapshot(cluster, proportional=args.pss)
        state = [np.zeros(args.features), 0.0]
        contention: dict = {}
        client.run(_install_fold_timer)
        try:
            gd_passes(blocks, args.warmup, state)
            out["idle"] = idle_rates(cluster, args.idle_seconds)
            roles = roles_of(cluster)
            t0 = client.run_on_scheduler(_transitions)
            with other_cpu_usage(contention):
                before = Counters(cluster)
                passes = gd_passes(blocks, args.iterations, state)
                after = Counters.after(cluster)
            t1 = client.run_on_scheduler(_transitions)
            if latency and args.latency_ms > 0:
                out["latency"] = delayed_passes(cluster, blocks, state, args)
        finally:
            records = client.run(_remove_fold_timer)
    finally:
        blocks.release()
    out.update(per_pass(passes, records, before, after, roles, out["idle"], t1 - t0))
    out["others_cpu_share"] = contention["other_cpu_seconds"] / contention["available_cpu_seconds"]
    return out


def idle_rates(cluster: Cluster, seconds: float) -> dict:
    """CPU seconds and bytes per second of the idle cluster (heartbeats, monitors), and the
    share of the machine's CPU that it, and other processes, used meanwhile."""
    busy0, before = machine_busy_seconds(), Counters(cluster, sockets=False)
    time.sleep(seconds)
    after, busy1 = Counters.after(cluster, sockets=False), machine_busy_seconds()
    span = after.time - before.time
    cores = os.cpu_count() or 1
    ours = after.total_cpu - before.total_cpu
    return {
        "seconds": span,
        "driver_cpu_per_s": (after.driver_cpu - before.driver_cpu) / span,
        "scheduler_cpu_per_s": (after.scheduler_cpu - before.scheduler_cpu) / span,
        "workers_cpu_per_s": (after.workers_cpu - before.workers_cpu) / span,
        "lo_bytes_per_s": (after.lo - before.lo) / span,
        "cluster_cpu_share": ours / span / cores,
        "others_cpu_share": max(0.0, (busy1 - busy0) - ours) / span / cores,
    }


def per_pass(passes, records, before, after, roles, idle, transitions) -> dict:
    n = len(passes)
    span = after.time - before.time
    folds = [folds_in(records, (p[1], p[2])) for p in passes]
    walls = [p[0] for p in passes]
    slowest = [f["slowest"] for f in folds]
    vias = {f["via"] for f in folds}
    driver = (after.driver_cpu - before.driver_cpu - idle["driver_cpu_per_s"] * span) / n
    sched = (after.scheduler_cpu - before.scheduler_cpu - idle["scheduler_cpu_per_s"] * span) / n
    workers = (after.workers_cpu - before.workers_cpu - idle["workers_cpu_per_s"] * span) / n
    return {
        "passes": summary(walls),
        "slowest_kernel": summary(slowest),
        "overhead": summary([w - k for w, k in zip(walls, slowest, strict=True)]),
        "kernel_cpu_per_pass": summary([f["cpu"] for f in folds]),
        "folds_per_pass": sorted({f["calls"] for f in folds}),
        "workers_folding_per_pass": sorted({f["workers"] for f in folds}),
        "path": vias.pop() if len(vias) == 1 else "mixed",
        "driver_cpu_per_pass": driver,
        "scheduler_cpu_per_pass": sched,
        "workers_cpu_per_pass": workers,
        "driver_cpu_per_pass_raw": (after.driver_cpu - before.driver_cpu) / n,
        "scheduler_cpu_per_pass_raw": (after.scheduler_cpu - before.scheduler_cpu) / n,
        "lo_bytes_per_pass": (after.lo - before.lo - idle["lo_bytes_per_s"] * span) / n,
        "lo_bytes_per_pass_raw": (after.lo - before.lo) / n,
        "payload_per_pass": {
            k: v / n for k, v in traffic(before.sockets, after.sockets, roles).items()
        },
        "transitions_per_pass": transitions / n,
    }


def delayed_passes(cluster: Cluster, blocks: PersistedBlocks, state: list, args) -> dict:
    """Pairs of passes, one with every Dask message delayed by --latency-ms (see the module
    docstring) and one without, back to back, so that the machine's drift (other jobs)
    cancels in each pair's difference."""
    delay = args.latency_ms / 1e3
    delayed, plain = [], []
    for _ in range(args.latency_iterations):
        set_delay(cluster, delay)
        try:
            delayed.append(gd_passes(blocks, 1, state)[0][0])
        finally:
            set_delay(cluster, 0)
        plain.append(gd_passes(blocks, 1, state)[0][0])
    return {
        "delay_seconds": delay,
        "passes": summary(delayed),
        "undelayed": summary(plain),
        "paired_difference": summary([d - p for d, p in zip(delayed, plain, strict=True)]),
    }


def set_delay(cluster: Cluster, seconds: float) -> None:
    """Delay (or not, 0) every Dask message in the workers, the scheduler and here."""
    steps = [
        lambda: cluster.client.run(_delay_messages, seconds),
        lambda: cluster.client.run_on_scheduler(_delay_messages, seconds),
        lambda: _delay_messages(seconds),
    ]
    for step in steps if seconds > 0 else steps[::-1]:
        step()


# ---- the kernel of the projection ----------------------------------------------------------------
def kernel_per_row(rows: int, features: int) -> dict:
    """Seconds per row of ``log_loss_sums`` over one rows × features float64 block in this
    process, one BLAS thread, median of KERNEL_REPEATS (the first call untimed)."""
    rng = np.random.default_rng(SEED)
    X = np.asfortranarray(rng.standard_normal((rows, features)))
    y = (rng.random(rows) < 0.5).astype(np.float64)
    w = rng.normal(size=features) / np.sqrt(features)
    samples = []
    with one_thread():
        log_loss_sums(X, y, w, 0.1)
        for _ in range(KERNEL_REPEATS):
            start = time.perf_counter()
            log_loss_sums(X, y, w, 0.1)
            samples.append(time.perf_counter() - start)
    median = float(np.median(samples))
    return {"rows": rows, "features": features, "seconds": samples, "per_row": median / rows}


# ---- the model ------------------------------------------------------------------------------
MODEL_TERMS = {
    "c": lambda r: 1.0,
    "a": lambda r: r["workers"],
    "b": lambda r: r["blocks"],
}
# Bytes also get a term in W × B (the fast path before #16 sent the whole assignment to every
# worker). Times do not: over the measured range that term is too small against the noise to
# fit, and a noisy constant multiplied by W × B = 6·10⁷ projects nonsense.
BYTES_TERMS = {**MODEL_TERMS, "d": lambda r: r["workers"] * r["blocks"]}


def fit(rows: list[dict], value, terms: dict) -> dict | None:
    """Least-squares constants of value(row) ≈ Σ constant · term(row) over the rows. Terms
    the rows cannot separate (too few distinct configurations) are dropped from the end,
    and the result says which were."""
    names = list(terms)
    y = np.array([value(r) for r in rows], dtype=float)
    while names:
        A = np.array([[terms[n](r) for n in names] for r in rows], dtype=float)
        if len(rows) >= len(names) and np.linalg.matrix_rank(A) == len(names):
            coef, *_ = np.linalg.lstsq(A, y, rcond=None)
            fitted = A @ coef
            return {
                "constants": dict(zip(names, (float(c) for c in coef), strict=True)),
                "dropped": [n for n in terms if n not in names],
                "points": len(rows),
                "max_abs_residual": float(np.max(np.abs(y - fitted))),
                "residuals": [float(v) for v in y - fitted],
            }
        names.pop()
    return None


def round_trips(row: dict) -> float | None:
    lat = row.get("latency")
    if not lat:
        return None
    return lat["paired_difference"]["median"] / (2 * lat["delay_seconds"])


def fit_models(results: list[dict]) -> dict:
    """Per path ("run", "task", …): the time, serial-CPU and bytes models, and k."""
    models = {}
    for path in sorted({r["path"] for r in results}):
        rows = [r for r in results if r["path"] == path]
        ks = [k for k in (round_trips(r) for r in rows) if k is not None]
        models[path] = {
            "workers": sorted({r["workers"] for r in rows}),
            "overhead": fit(rows, lambda r: r["overhead"]["median"], MODEL_TERMS),
            "serial_cpu": fit(
                rows,
                lambda r: r["driver_cpu_per_pass"] + r["scheduler_cpu_per_pass"],
                MODEL_TERMS,
            ),
            "lo_bytes": fit(rows, lambda r: r["lo_bytes_per_pass"], BYTES_TERMS),
            "round_trips": float(np.median(ks)) if ks else None,
            "round_trips_each": ks,
        }
    return models


def model_value(fitted: dict | None, n_workers: int, n_blocks: int) -> float:
    """A fitted model (``fit``) at W workers and B blocks; 0 if there is none."""
    if fitted is None:
        return 0.0
    row = {"workers": n_workers, "blocks": n_blocks}
    return sum(value * BYTES_TERMS[name](row) for name, value in fitted["constants"].items())


def projection(models: dict, per_row: float) -> list[dict]:
    """The models at PROJECT_WORKERS on the projected workload: for each fitted path, the
    pass as measured on this machine (the overhead model) and as it would be with every
    worker on its own cores (driver + scheduler CPU, which does not run in parallel, plus
    k round trips)."""
    blocks = -(-PROJECT_ROWS // PROJECT_BLOCK_ROWS)
    out = []
    for n_workers in PROJECT_WORKERS:
        kernel = PROJECT_ROWS / n_workers * per_row
        for path, model in models.items():
            if model["overhead"] is None:
                continue
            k = model["round_trips"]
            latency = (k or 0.0) * PROJECT_RTT
            overhead = model_value(model["overhead"], n_workers, blocks) + latency
            serial = model_value(model["serial_cpu"], n_workers, blocks)
            dedicated = serial + latency
            out.append(
                {
                    "workers": n_workers,
                    "blocks": blocks,
                    "path": path,
                    "code_takes_it": expected_path(n_workers) in (path, "n/a"),
                    "kernel": kernel,
                    "overhead": overhead,
                    "pass": kernel + overhead,
                    "overhead_share": overhead / (kernel + overhead),
                    "serial_cpu": serial,
                    "dedicated_overhead": dedicated,
                    "dedicated_share": dedicated / (kernel + dedicated),
                    "lo_bytes": model_value(model["lo_bytes"], n_workers, blocks),
                    "round_trips": k,
                }
            )
    return out


# ---- output ---------------------------------------------------------------------------------
def fmt_size(n: float | None) -> str:
    if n is None or not np.isfinite(n):
        return "n/a"
    sign, n = ("−" if n < 0 else ""), abs(n)
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{sign}{n / scale:,.1f} {unit}"
    return f"{sign}{n:,.0f} B"


def fmt_signed_time(seconds: float) -> str:
    return ("−" + fmt_time(-seconds)) if seconds < 0 else fmt_time(seconds)


def fmt_signed_spread(s: dict) -> str:
    return (
        f"{fmt_signed_time(s['median'])} "
        f"({fmt_signed_time(s['p10'])} to {fmt_signed_time(s['p90'])})"
    )


def path_cell(r: dict) -> str:
    seen = PATH_NAMES.get(r["path"], r["path"])
    expected = r["expected_path"]
    note = "" if expected in ("n/a", r["path"]) else f", DIRECT_MAX says {expected}"
    return f"{seen} ({r['transitions_per_pass']:.0f} tr.{note})"


def pass_table(results: list[dict]) -> str:
    rows = []
    for r in results:
        bpw = r["blocks_per_worker"]
        serial = r["driver_cpu_per_pass"] + r["scheduler_cpu_per_pass"]
        rows.append(
            [
                str(r["workers"]),
                str(r["blocks"]),
                path_cell(r),
                f"{bpw[0]}–{bpw[-1]}" if bpw[0] != bpw[-1] else str(bpw[0]),
                fmt_spread(r["passes"]),
                fmt_time(r["slowest_kernel"]["median"]),
                fmt_spread(r["overhead"]),
                fmt_signed_time(r["driver_cpu_per_pass"]),
                fmt_signed_time(r["scheduler_cpu_per_pass"]),
                fmt_signed_time(serial / r["workers"]),
                fmt_signed_time(r["workers_cpu_per_pass"]),
                f"{100 * r['others_cpu_share']:.0f} %",
            ]
        )
    header = [
        "workers",
        "blocks",
        "path (task transitions / pass)",
        "blocks per worker",
        "pass, median (p10–p90)",
        "slowest kernel",
        "overhead = pass − kernel",
        "driver CPU / pass",
        "scheduler CPU / pass",
        "(driver + scheduler) CPU / worker",
        "all workers' CPU / pass",
        "other processes' CPU",
    ]
    return markdown_table(header, rows)


def bytes_table(results: list[dict]) -> str:
    pairs = [
        "driver→scheduler",
        "scheduler→workers",
        "workers→scheduler",
        "scheduler→driver",
        "worker→worker",
    ]
    rows = []
    for r in results:
        payload = r["payload_per_pass"]
        cells = [payload.get(p.replace("workers", "worker"), 0.0) for p in pairs]
        rows.append(
            [
                str(r["workers"]),
                str(r["blocks"]),
                fmt_size(r["lo_bytes_per_pass"]),
                *(fmt_size(c) for c in cells),
                fmt_size(sum(v for k, v in payload.items() if "other" in k)),
            ]
        )
    header = ["workers", "blocks", "loopback TX / pass", *pairs, "other sockets"]
    return markdown_table(header, rows)


def latency_table(results: list[dict]) -> str:
    rows = []
    for r in results:
        if not r.get("latency"):
            continue
        lat = r["latency"]
        rows.append(
            [
                str(r["workers"]),
                str(r["blocks"]),
                PATH_NAMES.get(r["path"], r["path"]),
                fmt_spread(lat["undelayed"]),
                fmt_spread(lat["passes"]),
                fmt_signed_spread(lat["paired_difference"]),
                f"{round_trips(r):.2f}",
            ]
        )
    delay = next((r["latency"]["delay_seconds"] for r in results if r.get("latency")), 0)
    header = [
        "workers",
        "blocks",
        "path",
        "pass, no delay",
        f"pass, every message +{fmt_time(delay)}",
        "difference, paired",
        "round trips k = difference / (2 × delay)",
    ]
    return markdown_table(header, rows)


def constants_table(models: dict) -> str:
    rows = []
    for path, m in models.items():
        label = f"{PATH_NAMES.get(path, path)} (W = {', '.join(map(str, m['workers']))})"
        for what, fitted, unit in (
            ("overhead", m["overhead"], "time"),
            ("driver + scheduler CPU", m["serial_cpu"], "time"),
            ("loopback bytes", m["lo_bytes"], "bytes"),
        ):
            if fitted is None:
                rows.append([label, what, "too few configurations", "", "", "", ""])
                continue
            c = fitted["constants"]
            show = fmt_signed_time if unit == "time" else fmt_size

            def cell(name, show=show, c=c, fitted=fitted):
                return "not separable" if name in fitted["dropped"] else show(c.get(name, 0.0))

            rows.append(
                [
                    label,
                    what,
                    cell("c"),
                    cell("a"),
                    cell("b"),
                    cell("d") if what == "loopback bytes" else "—",
                    f"{show(fitted['max_abs_residual'])} ({fitted['points']} points)",
                ]
            )
        k = m["round_trips"]
        rows.append([label, "round trips k", "n/a" if k is None else f"{k:.2f}", "", "", "", ""])
    header = [
        "path",
        "quantity",
        "c (per pass)",
        "a (per worker)",
        "b (per block)",
        "per worker × block",
        "max |residual|",
    ]
    return markdown_table(header, rows)


def projection_table(rows: list[dict]) -> str:
    """A model that goes below zero at the projected size does not describe that path there
    (its cost is not linear over the range measured): such cells say so instead of a number."""

    def shown(value: float, text: str) -> str:
        return text if value >= 0 else "n/a (model < 0)"

    body = [
        [
            f"{r['workers']:,}",
            f"{r['blocks']:,}",
            PATH_NAMES.get(r["path"], r["path"]) + ("" if r["code_takes_it"] else " (not taken)"),
            fmt_time(r["kernel"]),
            shown(r["overhead"], f"{fmt_time(r['overhead'])} ({100 * r['overhead_share']:.1f} %)"),
            shown(r["serial_cpu"], fmt_time(r["serial_cpu"])),
            shown(
                r["dedicated_overhead"],
                f"{fmt_time(r['dedicated_overhead'])} ({100 * r['dedicated_share']:.1f} %)",
            ),
            shown(r["lo_bytes"], fmt_size(r["lo_bytes"])),
        ]
        for r in rows
    ]
    header = [
        "workers",
        "blocks",
        "path model",
        "kernel (slowest worker)",
        "overhead, this machine: c + aW + bB + k·RTT (share of pass)",
        "driver + scheduler CPU",
        "overhead, own cores: that CPU + k·RTT (share)",
        "loopback bytes",
    ]
    return markdown_table(header, body)


def memory_table(memory: list[dict]) -> str:
    rows = []
    for m in memory:
        w = sorted(m["workers_rss"])
        pss = m.get("total_pss")
        rows.append(
            [
                str(m["n_workers"]),
                fmt_size(m["scheduler"]["rss"]),
                fmt_size(m["driver"]["rss"]),
                f"{fmt_size(w[0])} / {fmt_size(w[len(w) // 2])} / {fmt_size(w[-1])}",
                fmt_size(m["total_rss"]),
                fmt_size(pss) if pss else "n/a",
                f"{100 * m['idle_cluster_cpu_share']:.0f} %",
            ]
        )
    header = [
        "workers",
        "scheduler RSS",
        "driver RSS",
        "worker RSS min / median / max",
        "total RSS",
        "total PSS",
        "idle cluster's CPU (share of all cores)",
    ]
    return markdown_table(header, rows)


def report(output: dict) -> str:
    env, results, models = output["environment"], output["results"], output["models"]
    kernel = output["kernel"]
    parts = [
        f"lrdask {env['lrdask']} ({env['lrdask_source']}, commit {env['commit']}), "
        f"DIRECT_MAX = {env['direct_max']}; dask {env['dask']}, numpy {env['numpy']}, "
        f"{env['cores']} cores ({env['cpu']}); network namespace: {env['netns']}; "
        f"{output['options']['rows']:,} rows × {output['options']['features']} features per "
        f"block, {output['options']['iterations']} timed passes after "
        f"{output['options']['warmup']}; other processes used "
        f"{output['contention']['other_cpu_seconds']:.0f} of "
        f"{output['contention']['available_cpu_seconds']:.0f} CPU-seconds during the run",
        "### Per pass",
        pass_table(results),
        "### Bytes per pass (payload by direction from the socket counters; loopback TX "
        "includes headers and acks, idle rate subtracted)",
        bytes_table(results),
    ]
    if any(r.get("latency") for r in results):
        parts += ["### Round trips per pass", latency_table(results)]
    parts += [
        "### Fitted constants (least squares over the per-configuration medians)",
        constants_table(models),
        f"### Projection: {PROJECT_ROWS:.0e} rows × {PROJECT_FEATURES} features, blocks of "
        f"{PROJECT_BLOCK_ROWS:,} rows, RTT {PROJECT_RTT * 1e3:g} ms; kernel "
        f"{kernel['per_row'] * 1e9:.1f} ns per row (log_loss_sums, {kernel['rows']:,} × "
        f"{kernel['features']}, 1 BLAS thread, here)",
        projection_table(output["projection"]),
        "### Memory (after loading each W's blocks) and the idle cluster's CPU",
        memory_table(output["memory"]),
    ]
    if output.get("skipped"):
        parts.append(f"Not run: {output['skipped']}")
    return "\n\n".join(parts)


# ---- the plan of the run -----------------------------------------------------------------------
def parse_ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def parse_sweeps(text: str) -> dict[int, list[int]]:
    """The block sweeps: "16:16,64;80:80,320" → {16: [16, 64], 80: [80, 320]}; "none" → {}."""
    if text.strip().lower() in ("", "none"):
        return {}
    sweeps = {}
    for part in text.split(";"):
        workers, _, blocks = part.partition(":")
        sweeps[int(workers)] = parse_ints(blocks)
    return sweeps


def plan(args) -> list[tuple[int, list[tuple[int, bool]]]]:
    """[(W, [(blocks, main sweep?), …]), …] in increasing W (the cluster only grows)."""
    steps: dict[int, dict[int, bool]] = {}
    for w in args.workers_list:
        steps.setdefault(w, {})[w * args.blocks_per_worker] = True
    for w, counts in args.block_sweeps.items():
        for b in counts:
            steps.setdefault(w, {}).setdefault(b, False)
    return [(w, sorted(steps[w].items())) for w in sorted(steps)]


def environment(args) -> dict:
    import dask

    cpu = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as fh:
        cpu = next((ln.split(":", 1)[1].strip() for ln in fh if "model name" in ln), "")
    source = os.path.dirname(os.path.dirname(os.path.abspath(lrdask.__file__)))
    commit = subprocess.run(
        ["git", "-C", source, "describe", "--always", "--dirty"], capture_output=True, text=True
    ).stdout.strip()
    return {
        "lrdask": lrdask.__version__,
        "lrdask_source": source,
        "commit": commit or "unknown",
        "direct_max": getattr(scheduling, "DIRECT_MAX", "none"),
        "dask": dask.__version__,
        "numpy": np.__version__,
        "python": sys.version.split()[0],
        "cpu": cpu,
        "cores": os.cpu_count(),
        "netns": args.inside_netns or "none (host loopback: its counters include other traffic)",
        "load_average_at_start": os.getloadavg(),
    }


def run(args) -> int:
    output: dict = {"environment": environment(args), "options": _options(args)}
    log(f"kernel per row: log_loss_sums, {PROJECT_BLOCK_ROWS:,} × {PROJECT_FEATURES}")
    output["kernel"] = kernel_per_row(PROJECT_BLOCK_ROWS, PROJECT_FEATURES)
    results, memory, skipped = [], [], []
    contention: dict = {}
    limit = args.max_memory_gib * 2**30
    with (
        Cluster(
            args.data_dir,
            args.start_batch,
            args.memory_limit,
            args.start_timeout,
            quiet=not args.dask_defaults,
        ) as cluster,
        other_cpu_usage(contention),
    ):
        steps = plan(args)
        for i, (n_workers, configs) in enumerate(steps):
            if memory and _projected_memory(memory[-1], n_workers) > MEMORY_HEADROOM * limit:
                skipped = [w for w, _ in steps[i:]]
                log(f"stopping before {n_workers} workers: memory would pass the limit")
                break
            log(f"starting workers: {n_workers}")
            cluster.grow(n_workers)
            for n_blocks, main_sweep in configs:
                log(f"{n_workers} workers, {n_blocks} blocks")
                result = measure(cluster, n_workers, n_blocks, args, latency=main_sweep)
                result["main_sweep"] = main_sweep
                results.append(result)
                log(
                    f"  pass {fmt_time(result['passes']['median'])}, overhead "
                    f"{fmt_time(result['overhead']['median'])}, path {result['path']}"
                )
            biggest = max(
                (r for r in results if r["workers"] == n_workers), key=lambda r: r["blocks"]
            )
            mem = {"n_workers": n_workers, **biggest["memory"]}
            mem["idle_cluster_cpu_share"] = biggest["idle"]["cluster_cpu_share"]
            memory.append(mem)
    output.update(results=results, memory=memory, contention=contention)
    output["skipped"] = (
        f"W = {', '.join(map(str, skipped))}: the cluster would pass --max-memory-gib"
        if skipped
        else ""
    )
    output["peak_total_rss"] = max(m["total_rss"] for m in memory)
    output["peak_total_pss"] = max((m.get("total_pss") or 0) for m in memory) or None
    print(analysed(output), flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(output, fh, indent=1, default=float)
        log(f"wrote {args.json}")
    return 0


def analysed(output: dict) -> str:
    """Fit the models and project (into ``output``), and return the report."""
    output["models"] = fit_models(output["results"])
    output["projection"] = projection(output["models"], output["kernel"]["per_row"])
    return report(output)


def _projected_memory(last: dict, n_workers: int) -> float:
    per_worker = (last.get("total_pss") or last["total_rss"]) / max(1, last["n_workers"] + 2)
    return per_worker * (n_workers + 2)


def _options(args) -> dict:
    return {k: v for k, v in vars(args).items() if k != "block_sweeps"} | {
        "block_sweeps": {str(k): v for k, v in args.block_sweeps.items()}
    }


# ---- the network namespace ---------------------------------------------------------------------
def netns_possible() -> bool:
    return os.geteuid() == 0 and shutil.which("ip") is not None


def in_private_netns(argv: list[str]) -> int:
    """Run this script again inside a new network namespace with only ``lo`` (up), so the
    loopback counters count nothing but this benchmark; the namespace is deleted after,
    also on errors and Ctrl-C."""
    name = f"lrdask-bench-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
    child = None

    def forward(signum, _frame):
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        script = os.path.abspath(__file__)
        command = ["ip", "netns", "exec", name, sys.executable, script, *argv]
        child = subprocess.Popen([*command, "--inside-netns", name])
        signal.signal(signal.SIGTERM, forward)
        while True:
            try:
                return child.wait()
            except KeyboardInterrupt:  # the child got the same SIGINT: let it clean up
                continue
    finally:
        subprocess.run(["ip", "netns", "delete", name], capture_output=True)


# ---- main -------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--workers-list",
        default="1,2,4,8,16,32,64,65,80,128",
        help="worker counts W of the main sweep (blocks = --blocks-per-worker × W)",
    )
    parser.add_argument("--blocks-per-worker", type=int, default=4)
    parser.add_argument(
        "--block-sweeps",
        default="16:16,64,256,1024;80:80,320,1280",
        help='block counts at a fixed W: "W:B,B,…;W:B,…", or "none"',
    )
    parser.add_argument("--rows", type=int, default=2_000, help="rows per block")
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--iterations", type=int, default=30, help="timed passes")
    parser.add_argument("--warmup", type=int, default=3, help="untimed passes first")
    parser.add_argument(
        "--latency-ms",
        type=float,
        default=10.0,
        help="delay per Dask message for counting round trips (main sweep; 0: off)",
    )
    parser.add_argument("--latency-iterations", type=int, default=20, help="pairs of passes")
    parser.add_argument(
        "--idle-seconds", type=float, default=2.0, help="idle window measured per configuration"
    )
    parser.add_argument(
        "--netns", choices=["auto", "yes", "no"], default="auto", help="private network namespace"
    )
    parser.add_argument("--start-batch", type=int, default=8, help="workers started at once")
    parser.add_argument("--start-timeout", type=float, default=180.0)
    parser.add_argument("--pass-timeout", type=float, default=600.0)
    parser.add_argument("--memory-limit", default="1GiB", help="each worker's Dask limit")
    parser.add_argument(
        "--max-memory-gib", type=float, default=12.0, help="stop growing the cluster before this"
    )
    parser.add_argument("--no-pss", dest="pss", action="store_false", help="RSS only (faster)")
    parser.add_argument(
        "--dask-defaults",
        action="store_true",
        help="keep Dask's background monitors at their defaults (see QUIET_MONITORS)",
    )
    parser.add_argument(
        "--data-dir", default="/tmp/lrdask-bench-scale", help="worker directories and logs"
    )
    parser.add_argument("--json", metavar="PATH", help="write every raw number here")
    parser.add_argument(
        "--from-json", metavar="PATH", help="print the tables of an earlier run's --json"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="~2 min check: W = 1, 2, 4, 8, a block sweep at W = 4, 10 passes",
    )
    parser.add_argument("--inside-netns", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.workers_list, args.block_sweeps = "1,2,4,8", "4:4,16,64"
        args.iterations, args.latency_iterations = 10, 5
        args.idle_seconds = min(args.idle_seconds, 1.0)
    args.workers_list = sorted(set(parse_ints(args.workers_list)))
    args.block_sweeps = parse_sweeps(args.block_sweeps)
    counts = [*args.workers_list, *args.block_sweeps, *sum(args.block_sweeps.values(), [])]
    if not args.workers_list or min(counts) < 1 or args.iterations < 1 or args.rows < 1:
        parser.error("worker and block counts, --iterations and --rows must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.from_json:  # the tables again, from a run's raw numbers, without running
        with open(args.from_json) as fh:
            print(analysed(json.load(fh)))
        return 0
    if not args.inside_netns and args.netns != "no":
        if netns_possible():
            return in_private_netns(argv)
        if args.netns == "yes":
            print("bench_scale: error: --netns yes needs root and `ip`", file=sys.stderr)
            return 2
        log("no private network namespace (needs root): loopback counters include other traffic")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
