"""Where does one lrdask gradient-descent iteration spend its time, and how does it compare?

For each data set ("small": 200k rows × 20 features in 8 Parquet files, "large": 4M × 50 in
32 files, float64, made with ``lrdask.synthetic.make_data`` under ``--data-dir`` if absent)
this measures, in one run on one LocalCluster (``--workers`` processes, one thread each):

1. the memory-bandwidth floor: one read of X (``X.sum()``) and one copy (``np.copyto``) in
   the driver, best of 5, with the derived bandwidths;
2. a plain NumPy pass in one process, one BLAS thread: ``lrdask.kernels.log_loss_sums`` (the
   cache-blocked kernel the workers run) and a naive unblocked version, median;
3. empty Dask round trips: ``client.submit(noop).result()`` (1 task) and ``client.map`` of
   one no-op per partition, gathered;
4. the lrdask pass: ``PersistedBlocks.partial_sums(w, b)`` timed over ``--iterations``
   gradient-descent steps after the blocks are loaded; in each pass the slowest worker's
   ``fold_blocks`` time (wrapped on the workers while timing; the rest is scheduling and
   gathering); the same kernel with the workers run one at a time; and per-pass times of a
   real ``LogisticRegression.fit`` taken from its callback;
5. the dask-ml baseline: ``dask_ml.linear_model.LogisticRegression(solver="gradient_descent")``
   on the same data as a persisted dask array, seconds per iteration ("n/a" with the reason
   if dask-ml is missing or fails);
6. load time: lrdask blocks into worker memory (``from_loaders`` + ``reports``, as ``fit``
   does) versus ``pyarrow.parquet.read_table`` of the same files in one process;
7. worker memory (VmRSS / VmHWM from /proc) after loading versus the bytes of X and y;
8. with ``--scale``: per-pass time at 4M × 50 for 8, 32, 128 and 256 files, and for 1M, 4M
   and 16M rows at 32 files (16M × 50 float64 is 6.4 GB).

Only an otherwise idle machine gives meaningful numbers: the first line of the output says
how many CPU-seconds other processes used during the run.

It prints Markdown tables (measurements, then ratios with the targets marked PASS/FAIL) on
stdout, progress on stderr, and writes every raw number to ``--json PATH``.

Run from the repository root::

    python benchmarks/bench_iteration.py --sizes small --rows-scale 0.1   # quick check
    python benchmarks/bench_iteration.py --json /tmp/lrdask-bench/results.json
    python benchmarks/bench_iteration.py --sizes large --scale            # slow
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow.parquet as pq
from distributed import Client

import lrdask
from lrdask.cluster import connect
from lrdask.dataset import DatasetPlan, plan_dataset
from lrdask.encoding import numeric_encoding
from lrdask.estimator import LogisticRegression
from lrdask.kernels import log_loss_sums
from lrdask.loading import check_reports
from lrdask.scheduling import PersistedBlocks, fold_blocks, persist_plan
from lrdask.synthetic import make_data

LABEL = "y"
SEED = 0
ALPHA = 0.5  # step size for the timed gradient-descent passes (the value does not matter)
FLOOR_REPEATS = 5
READ_TABLE_REPEATS = 3
ONE_TASK_REPEATS = 50
MANY_TASK_REPEATS = 20
WARMUP_PASSES = 2
SWEEP_PARTITIONS = (8, 32, 128, 256)
SWEEP_ROWS = (1_000_000, 4_000_000, 16_000_000)
SWEEP_FEATURES = 50
_STARTED = time.perf_counter()


@dataclass(frozen=True)
class Size:
    name: str
    rows: int
    features: int
    partitions: int

    def scaled(self, factor: float) -> Size:
        rows = max(self.partitions, round(self.rows * factor))
        return Size(self.name, rows, self.features, self.partitions)

    @property
    def array_bytes(self) -> int:
        """Bytes of X (rows × features float64) plus y (rows float64) on the workers."""
        return self.rows * (self.features + 1) * 8


SIZES = {
    "small": Size("small", 200_000, 20, 8),
    "large": Size("large", 4_000_000, 50, 32),
}

# Targets from the project's issue: (ratio key, sizes it applies to, "<=" or ">=", bound).
TARGETS = [
    ("pass_per_numpy_pass", ("large",), "<=", 0.5),
    ("pass_per_read_of_x", ("large",), "<=", 1.5),
    ("pass_per_round_trip", ("small",), "<=", 2.0),
    ("dask_ml_per_pass", ("small", "large"), ">=", 10.0),
    ("load_per_read_table", ("small", "large"), "<=", 1.2),
    ("memory_per_array_bytes", ("small", "large"), "<=", 1.3),
    ("float64_per_float32_pass", ("large",), ">=", 1.6),
]
RATIO_LABELS = {
    "pass_per_numpy_pass": "lrdask pass / NumPy pass (blocked kernel, 1 process)",
    "pass_per_naive_pass": "lrdask pass / NumPy pass (naive unblocked)",
    "pass_per_read_of_x": "lrdask pass / one read of X",
    "pass_per_round_trip": "lrdask pass / empty round trip (1 task)",
    "dask_ml_per_pass": "dask-ml iteration / lrdask pass",
    "load_per_read_table": "lrdask load / pyarrow read_table",
    "memory_per_array_bytes": "worker peak RSS above idle / array bytes",
    "rss_per_array_bytes": "worker RSS after load (incl. interpreter) / array bytes",
    "float64_per_float32_pass": "fit pass float64 / fit pass float32 storage",
    "streaming_per_cached_pass": "fit pass --no-cache / fit pass cached",
}


# ---- small helpers ----------------------------------------------------------------------
def log(message: str) -> None:
    print(f"[{time.perf_counter() - _STARTED:7.1f}s] {message}", file=sys.stderr, flush=True)


def timings(fn: Callable[[], object], repeat: int, warmup: int = 1) -> list[float]:
    """Wall-clock seconds of ``repeat`` calls of fn, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return samples


def summary(samples: list[float]) -> dict:
    ordered = np.asarray(samples, dtype=float)
    return {
        "median": float(np.median(ordered)),
        "p10": float(np.percentile(ordered, 10)),
        "p90": float(np.percentile(ordered, 90)),
        "min": float(ordered.min()),
        "max": float(ordered.max()),
        "n": len(samples),
        "samples": [float(s) for s in samples],
    }


def one_thread():
    """Limit BLAS to one thread in this process (the workers already run with one)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        return contextlib.nullcontext()
    return threadpool_limits(limits=1)


def _tree_cpu_seconds() -> float:
    """CPU seconds used so far by this process and its descendants (workers, nannies),
    including descendants that have already exited and been waited for."""
    import psutil

    me = psutil.Process()
    total = 0.0
    for proc in [me, *me.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            t = proc.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
    return total


def _machine_cpu_seconds() -> tuple[float, float]:
    """(busy CPU seconds of the whole machine, steal seconds) since boot."""
    import psutil

    t = psutil.cpu_times()
    busy = t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0)
    return busy, getattr(t, "steal", 0.0)


@contextlib.contextmanager
def other_cpu_usage(out: dict) -> Iterator[None]:
    """Fill ``out`` with the CPU seconds other processes used while the block ran: the
    measurements are only trustworthy on an otherwise idle machine."""
    start, (busy0, steal0), ours0 = time.perf_counter(), _machine_cpu_seconds(), _tree_cpu_seconds()
    try:
        yield
    finally:
        (busy1, steal1), ours1 = _machine_cpu_seconds(), _tree_cpu_seconds()
        wall = time.perf_counter() - start
        out["other_cpu_seconds"] = max(0.0, (busy1 - busy0) - (ours1 - ours0))
        out["steal_seconds"] = steal1 - steal0
        out["available_cpu_seconds"] = wall * (os.cpu_count() or 1)


# ---- data ------------------------------------------------------------------------------
def ensure_data(data_dir: str, rows: int, features: int, partitions: int) -> str:
    """The data set's directory, made with lrdask.synthetic.make_data unless already there."""
    path = os.path.join(data_dir, f"{rows}x{features}-p{partitions}")
    want = {"rows": rows, "partitions": partitions, "seed": SEED}
    try:
        with open(os.path.join(path, "_truth.json")) as fh:
            truth = json.load(fh)
        if all(truth.get(k) == v for k, v in want.items()) and len(truth["features"]) == features:
            return path
    except (OSError, ValueError, KeyError):
        pass
    log(f"making {path} ({rows} rows × {features} features, {partitions} files)")
    os.makedirs(data_dir, exist_ok=True)
    make_data(path, rows, features, partitions, SEED, overwrite=True)
    return path


def read_table_arrays(path: str, features: list[str]) -> tuple[np.ndarray, np.ndarray, dict]:
    """X and y in the driver via pyarrow.parquet.read_table, with the read_table timing."""
    columns = [*features, LABEL]
    samples = timings(lambda: pq.read_table(path, columns=columns), READ_TABLE_REPEATS, 0)
    table = pq.read_table(path, columns=columns)
    start = time.perf_counter()
    X = np.empty((table.num_rows, len(features)))
    for j, name in enumerate(features):
        X[:, j] = table.column(name).to_numpy()
    y = table.column(LABEL).to_numpy().astype(np.float64)
    to_numpy = time.perf_counter() - start
    return X, y, {"read_table": summary(samples), "to_numpy_seconds": to_numpy}


# ---- in one process ----------------------------------------------------------------------
def memory_floor(X: np.ndarray) -> dict:
    """Best-of-N time to read X once (X.sum()) and to copy it (np.copyto), and bandwidths."""
    read = min(timings(X.sum, FLOOR_REPEATS))
    target = np.empty_like(X)
    copy = min(timings(lambda: np.copyto(target, X), FLOOR_REPEATS))
    return {
        "x_bytes": X.nbytes,
        "read_seconds": read,
        "read_gb_per_s": X.nbytes / read / 1e9,
        "copy_seconds": copy,
        "copy_gb_per_s": 2 * X.nbytes / copy / 1e9,  # bytes read + bytes written (STREAM)
    }


def naive_log_loss_sums(X: np.ndarray, y: np.ndarray, w: np.ndarray, b: float):
    """The same sums without cache blocking: X is streamed from memory twice."""
    z = X @ w + b
    e = np.exp(-np.abs(z))
    loss = float(np.sum(np.maximum(z, 0.0) - y * z + np.log1p(e)))
    inv = 1.0 / (1.0 + e)
    residual = np.where(z >= 0, inv, e * inv) - y
    return loss, residual @ X, float(residual.sum())


def numpy_passes(X: np.ndarray, y: np.ndarray, repeat: int) -> dict:
    """Median time of one full pass in this process, blocked kernel and naive version."""
    rng = np.random.default_rng(SEED)
    w, b = rng.normal(size=X.shape[1]) / np.sqrt(X.shape[1]), 0.1
    blocked = log_loss_sums(X, y, w, b)
    loss, grad, _ = naive_log_loss_sums(X, y, w, b)
    assert np.isclose(loss, blocked.loss) and np.allclose(grad, blocked.grad_coef)
    with one_thread():
        return {
            "blocked": summary(timings(lambda: log_loss_sums(X, y, w, b), repeat)),
            "naive": summary(timings(lambda: naive_log_loss_sums(X, y, w, b), repeat)),
        }


# ---- on the cluster ----------------------------------------------------------------------
def noop(*_args) -> None:
    return None


def round_trips(client: Client, n_tasks: int) -> dict:
    """Empty round trips: one no-op task, and n_tasks no-ops gathered together."""
    one = timings(lambda: client.submit(noop, pure=False).result(), ONE_TASK_REPEATS, 5)
    many = timings(
        lambda: client.gather(client.map(noop, range(n_tasks), pure=False)), MANY_TASK_REPEATS, 3
    )
    return {"one_task": summary(one), "n_tasks": n_tasks, "many_tasks": summary(many)}


def _warm_worker() -> bool:
    """Import what the load and pass tasks need, so the first load does not pay for it."""
    import lrdask.loading  # noqa: F401
    import lrdask.scheduling  # noqa: F401

    return True


def _reset_peak_rss() -> bool:
    """Reset this process's VmHWM to its current RSS (Linux ≥ 4.0); False if not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _memory_status() -> dict:
    """This process's resident set size and its peak, in bytes."""
    try:
        with open("/proc/self/status") as fh:
            fields = dict(line.split(":", 1) for line in fh if line.startswith(("VmRSS", "VmHWM")))
        return {k: int(v.split()[0]) * 1024 for k, v in fields.items()}
    except OSError:
        import psutil

        rss = psutil.Process().memory_info().rss
        return {"VmRSS": rss, "VmHWM": None}


def fresh_workers(client: Client) -> None:
    """Restart the worker processes (clean memory) and pre-import lrdask on them.

    On this VM a restart after a multi-GiB data set sometimes outlasts distributed's 120 s
    wait for the nannies; the workers do come back, so wait for them once more."""
    expected = len(client.scheduler_info(n_workers=-1)["workers"])
    try:
        client.restart()
    except TimeoutError:
        log("workers are slow to restart; waiting up to 5 more minutes")
        client.wait_for_workers(expected, timeout=300)
    client.run(_warm_worker)


def load_blocks(client: Client, plan: DatasetPlan) -> tuple[PersistedBlocks, float]:
    """Load every piece into worker memory as fit does; returns the blocks and seconds."""
    start = time.perf_counter()
    # the synthetic label is 0/1: the numeric encoding, without a profile pass
    blocks = persist_plan(
        client, plan, numeric_encoding(plan.features, plan.label), "float64", None
    )
    reports = blocks.reports()
    seconds = time.perf_counter() - start
    check_reports(reports, plan.label)
    return blocks, seconds


def measured_load(client: Client, plan: DatasetPlan) -> tuple[PersistedBlocks, dict]:
    """Two loads (best time counts); worker memory is read around the first one."""
    client.run(_reset_peak_rss)
    idle = client.run(_memory_status)
    blocks, first = load_blocks(client, plan)
    loaded = client.run(_memory_status)
    blocks.release()
    blocks, second = load_blocks(client, plan)
    memory = {addr: {"idle_rss": idle[addr]["VmRSS"], **loaded[addr]} for addr in sorted(loaded)}
    return blocks, {"seconds": [first, second], "best": min(first, second), "memory": memory}


def time_passes(client: Client, blocks: PersistedBlocks, n_features: int, iterations: int) -> dict:
    """Per-pass seconds of partial_sums along a gradient-descent path, and for each pass the
    kernel time of the slowest worker (``fold_blocks`` timed on the workers)."""
    w, b = np.zeros(n_features), 0.0
    samples, windows = [], []
    client.run(_install_fold_timer)
    try:
        for i in range(WARMUP_PASSES + iterations):
            wall, start = time.time(), time.perf_counter()
            sums = blocks.partial_sums(w, b)
            elapsed = time.perf_counter() - start
            if i >= WARMUP_PASSES:
                samples.append(elapsed)
                windows.append((wall, time.time()))
            _, dw, db = sums.mean()
            w, b = w - ALPHA * dw, b - ALPHA * db
    finally:
        recorded = client.run(_remove_fold_timer)
    folds = [fold for per_worker in recorded.values() for fold in per_worker]
    kernels = [_slowest_fold(folds, window) for window in windows]
    rest = [total - kernel for total, kernel in zip(samples, kernels, strict=True)]
    return {"passes": summary(samples), "busiest_kernel": summary(kernels), "rest": summary(rest)}


def _install_fold_timer() -> bool:
    """On a worker: wrap lrdask.scheduling.fold_blocks (the per-worker kernel, whichever way
    a pass reaches it: a task or Client.run) to record (wall start, seconds) of every call."""
    import lrdask.scheduling as scheduling

    original = getattr(scheduling, "_bench_untimed_fold", scheduling.fold_blocks)
    record: list[tuple[float, float]] = []

    def timed_fold(w, b, *blocks, **kwargs):
        wall, start = time.time(), time.perf_counter()
        try:
            return original(w, b, *blocks, **kwargs)
        finally:
            record.append((wall, time.perf_counter() - start))

    scheduling._bench_untimed_fold = original
    scheduling._bench_fold_record = record
    scheduling.fold_blocks = timed_fold
    return True


def _remove_fold_timer() -> list[tuple[float, float]]:
    """On a worker: undo _install_fold_timer and return what it recorded."""
    import lrdask.scheduling as scheduling

    record = getattr(scheduling, "_bench_fold_record", [])
    if hasattr(scheduling, "_bench_untimed_fold"):
        scheduling.fold_blocks = scheduling._bench_untimed_fold
        del scheduling._bench_untimed_fold, scheduling._bench_fold_record
    return record


def _slowest_fold(folds: list[tuple[float, float]], window: tuple[float, float]) -> float:
    """Longest fold_blocks call that started inside the pass's wall-clock window."""
    inside = [seconds for wall, seconds in folds if window[0] <= wall <= window[1]]
    return max(inside, default=float("nan"))


def _timed_fold(w: np.ndarray, b: float, *blocks) -> float:
    """The per-worker task of a pass, returning only how long the kernel took."""
    start = time.perf_counter()
    fold_blocks(w, b, list(range(len(blocks))), *blocks, n_blocks=len(blocks))
    return time.perf_counter() - start


def kernel_alone(client: Client, blocks: PersistedBlocks, n_features: int, repeat: int) -> dict:
    """Kernel seconds of each worker's task when the workers run one at a time (no
    contention for cores or memory bandwidth); the slowest worker per round is kept."""
    who_has = client.who_has(blocks.futures)
    groups: dict[str, list] = {}
    for future in blocks.futures:
        groups.setdefault(sorted(who_has[future.key])[0], []).append(future)
    w = np.full(n_features, 0.1)
    slowest = []
    for _ in range(repeat):
        alone = [
            client.submit(_timed_fold, w, 0.0, *futs, workers=[addr], pure=False).result()
            for addr, futs in sorted(groups.items())
        ]
        slowest.append(max(alone))
    return {"blocks_per_worker": [len(v) for v in groups.values()], "slowest": summary(slowest)}


def time_fit(
    client: Client, path: str, iterations: int, dtype: str = "float64", cache: bool = True
) -> dict:
    """Per-pass times of a real fit, from the timestamps of its callback."""
    stamps: list[float] = []
    start = time.perf_counter()
    model = LogisticRegression(alpha=ALPHA, max_iter=iterations, tol=0.0, dtype=dtype)
    model.fit(
        path,
        label=LABEL,
        client=client,
        callback=lambda _: stamps.append(time.perf_counter()),
        cache=cache,
    )
    total = time.perf_counter() - start
    passes = list(np.diff(stamps))
    first = stamps[0] - start
    return {
        "passes": summary(passes),
        "n_iter": model.n_iter_,
        "total_seconds": total,
        "first_callback_seconds": first,
        "load_estimate_seconds": first - float(np.median(passes)),
    }


def bench_lrdask(client: Client, plan: DatasetPlan, iterations: int) -> dict:
    """Load, memory, per-pass times and the kernel/scheduling split for lrdask."""
    blocks, load = measured_load(client, plan)
    try:
        passes = time_passes(client, blocks, len(plan.features), iterations)
        alone = kernel_alone(client, blocks, len(plan.features), iterations)
    finally:
        blocks.release()
    return {"load": load, **passes, "kernel_alone": alone}


# ---- dask-ml ---------------------------------------------------------------------------
@contextlib.contextmanager
def count_dask_glm_iterations() -> Iterator[list[int]]:
    """dask-glm's gradient_descent calls compute_stepsize_dask once per iteration: count it."""
    import dask_glm.algorithms as algorithms

    original = algorithms.compute_stepsize_dask
    counter = [0]

    def counting(*args, **kwargs):
        counter[0] += 1
        return original(*args, **kwargs)

    algorithms.compute_stepsize_dask = counting
    try:
        yield counter
    finally:
        algorithms.compute_stepsize_dask = original


def persisted_dask_arrays(client: Client, path: str, features: list[str]):
    """X and y as persisted dask arrays, read with dask.dataframe.read_parquet.

    The frame is turned into one array and sliced: ``ddf["y"].to_dask_array(lengths=True)``
    alone fails on dask 2026.8 (the optimizer fuses the one-column read into fewer
    partitions than the lengths it computed).
    """
    import dask.dataframe as dd
    from distributed import wait

    frame = dd.read_parquet(path, columns=[*features, LABEL])
    array = frame.to_dask_array(lengths=True).astype(np.float64)
    X = array[:, : len(features)].map_blocks(np.ascontiguousarray)
    y = array[:, len(features)].map_blocks(np.ascontiguousarray)
    X, y = client.persist([X, y])
    wait([X, y])
    return X, y


def _ignore_runtime_warnings() -> None:
    """dask-glm's sigmoid overflows exp() on the workers; keep that noise off stderr."""
    warnings.simplefilter("ignore", RuntimeWarning)


def bench_dask_ml(client: Client, path: str, features: list[str], iterations: int) -> dict:
    """Seconds per iteration of dask-ml's gradient descent; {"error": ...} if unavailable."""
    try:
        import dask_ml
        from dask_ml.linear_model import LogisticRegression as DaskMLLogisticRegression
    except ImportError as exc:
        return {"error": f"dask-ml not installed ({exc})"}
    try:
        start = time.perf_counter()
        X, y = persisted_dask_arrays(client, path, features)
        load = time.perf_counter() - start
        # gradient_descent takes no regularizer (dask-ml drops penalty and C for it); tol=-inf
        # so its relative-improvement test never stops it before max_iter.
        model = DaskMLLogisticRegression(
            solver="gradient_descent", max_iter=iterations, tol=-np.inf, fit_intercept=True
        )
        client.run(_ignore_runtime_warnings)  # the workers are restarted for each data set
        with count_dask_glm_iterations() as count, warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            start = time.perf_counter()
            model.fit(X, y)
            fit = time.perf_counter() - start
        done = count[0]
        del X, y
        return {
            "version": dask_ml.__version__,
            "load_seconds": load,
            "fit_seconds": fit,
            "iterations": done,
            "seconds_per_iteration": fit / max(done, 1),
        }
    except Exception as exc:  # a baseline must never stop the benchmark
        text = str(exc).strip().splitlines()
        return {"error": f"{type(exc).__name__}: {text[0] if text else ''}"[:200]}


# ---- one data set --------------------------------------------------------------------------
def bench_size(client: Client, size: Size, args: argparse.Namespace) -> dict:
    path = ensure_data(args.data_dir, size.rows, size.features, size.partitions)
    plan = plan_dataset(path, LABEL)
    blocks = len(plan.blocks())
    result: dict = {"size": vars(size), "path": path, "pieces": blocks}
    result["array_bytes"] = size.array_bytes
    log(f"{size.name}: NumPy in one process")
    X, y, result["read"] = read_table_arrays(path, plan.features)
    result["floor"] = memory_floor(X)
    result["numpy"] = numpy_passes(X, y, args.iterations)
    del X, y
    log(f"{size.name}: fresh workers, empty round trips")
    fresh_workers(client)
    result["round_trip"] = round_trips(client, blocks)
    log(f"{size.name}: lrdask load and passes")
    result["lrdask"] = bench_lrdask(client, plan, args.iterations)
    log(f"{size.name}: lrdask fit with a callback")
    result["fit"] = time_fit(client, path, args.iterations)
    log(f"{size.name}: lrdask fit, float32 storage")
    result["fit_float32"] = time_fit(client, path, args.iterations, dtype="float32")
    log(f"{size.name}: lrdask fit, streaming (--no-cache)")
    result["fit_streaming"] = time_fit(client, path, max(3, args.iterations // 4), cache=False)
    if args.skip_dask_ml:
        result["dask_ml"] = {"error": "skipped (--skip-dask-ml)"}
    else:
        log(f"{size.name}: dask-ml gradient_descent, max_iter={args.iterations}")
        result["dask_ml"] = bench_dask_ml(client, path, plan.features, args.iterations)
    result["ratios"] = ratios(result)
    return result


def ratios(r: dict) -> dict:
    passes = r["lrdask"]["passes"]["median"]
    memory = r["lrdask"]["load"]["memory"].values()
    peak_above_idle = sum((m["VmHWM"] or m["VmRSS"]) - m["idle_rss"] for m in memory)
    out = {
        "pass_per_numpy_pass": passes / r["numpy"]["blocked"]["median"],
        "pass_per_naive_pass": passes / r["numpy"]["naive"]["median"],
        "pass_per_read_of_x": passes / r["floor"]["read_seconds"],
        "pass_per_round_trip": passes / r["round_trip"]["one_task"]["median"],
        "dask_ml_per_pass": None,
        "float64_per_float32_pass": r["fit"]["passes"]["median"]
        / r["fit_float32"]["passes"]["median"],
        "streaming_per_cached_pass": r["fit_streaming"]["passes"]["median"]
        / r["fit"]["passes"]["median"],
        "load_per_read_table": r["lrdask"]["load"]["best"] / r["read"]["read_table"]["median"],
        "memory_per_array_bytes": peak_above_idle / r["array_bytes"],
        "rss_per_array_bytes": sum(m["VmRSS"] for m in memory) / r["array_bytes"],
    }
    if "error" not in r["dask_ml"]:
        out["dask_ml_per_pass"] = r["dask_ml"]["seconds_per_iteration"] / passes
    return out


# ---- scale sweep ---------------------------------------------------------------------------
def sweep_configs(rows_scale: float) -> list[Size]:
    """(rows, partitions) pairs: files at 4M rows, then rows at 32 files (no duplicates)."""
    base = SIZES["large"]
    pairs = [(base.rows, p) for p in SWEEP_PARTITIONS]
    pairs += [(r, base.partitions) for r in SWEEP_ROWS if r != base.rows]
    return [Size("sweep", r, SWEEP_FEATURES, p).scaled(rows_scale) for r, p in pairs]


def bench_sweep(client: Client, args: argparse.Namespace) -> list[dict]:
    results = []
    for size in sweep_configs(args.rows_scale):
        path = ensure_data(args.data_dir, size.rows, size.features, size.partitions)
        plan = plan_dataset(path, LABEL)
        blocks_count = len(plan.blocks())
        log(f"sweep: {size.rows} rows, {size.partitions} files ({blocks_count} blocks)")
        # No worker restart here: the sweep reports no memory, and on this VM a restart
        # after several multi-GiB loads sometimes leaves the LocalCluster with no workers.
        blocks, load = load_blocks(client, plan)
        try:
            timed = time_passes(client, blocks, len(plan.features), args.iterations)
        finally:
            blocks.release()
        results.append(
            {
                "size": vars(size),
                "pieces": blocks_count,
                "load_seconds": load,
                "passes": timed["passes"],
                "busiest_kernel": timed["busiest_kernel"],
                "x_gb_per_s": size.rows * size.features * 8 / timed["passes"]["median"] / 1e9,
            }
        )
    return results


# ---- output ----------------------------------------------------------------------------
def fmt_time(seconds: float | None) -> str:
    if seconds is None or not np.isfinite(seconds):
        return "n/a"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1.0:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.2f} s"


def fmt_spread(s: dict) -> str:
    return f"{fmt_time(s['median'])} ({fmt_time(s['p10'])}–{fmt_time(s['p90'])})"


def fmt_bytes(n: float) -> str:
    return f"{n / 2**20:,.0f} MiB" if n < 2**30 else f"{n / 2**30:.2f} GiB"


def measurement_rows(r: dict) -> list[tuple[str, str]]:
    """(label, cell) for one data set; the labels are the same for every data set."""
    lr, mem = r["lrdask"], r["lrdask"]["load"]["memory"].values()
    dml = r["dask_ml"]
    size = r["size"]
    return [
        ("rows × features (files / blocks)", _shape(size, r["pieces"])),
        ("array bytes, X + y (float64)", fmt_bytes(r["array_bytes"])),
        ("one read of X: X.sum(), best of 5", _floor(r["floor"], "read")),
        ("copy of X: np.copyto, best of 5", _floor(r["floor"], "copy")),
        ("NumPy pass, log_loss_sums, 1 thread", fmt_spread(r["numpy"]["blocked"])),
        ("NumPy pass, naive unblocked, 1 thread", fmt_spread(r["numpy"]["naive"])),
        ("empty round trip, 1 task", fmt_spread(r["round_trip"]["one_task"])),
        (f"empty round trip, {r['round_trip']['n_tasks']} tasks", _many(r)),
        ("**lrdask pass** (partial_sums), median (p10–p90)", fmt_spread(lr["passes"])),
        ("  kernel: slowest worker in the pass", fmt_spread(lr["busiest_kernel"])),
        ("  rest: pass − kernel (scheduling, merge)", fmt_spread(lr["rest"])),
        ("  kernel: slowest worker, workers run alone", fmt_spread(lr["kernel_alone"]["slowest"])),
        ("lrdask pass inside fit (callback)", fmt_spread(r["fit"]["passes"])),
        ("  same, --dtype float32 storage", fmt_spread(r["fit_float32"]["passes"])),
        ("  same, --no-cache (streaming from Parquet)", fmt_spread(r["fit_streaming"]["passes"])),
        ("dask-ml gradient_descent, per iteration", _dask_ml(dml)),
        ("lrdask load (from_loaders + reports), best of 2", fmt_time(lr["load"]["best"])),
        ("dask-ml load (read_parquet → persisted array)", fmt_time(dml.get("load_seconds"))),
        ("pyarrow read_table, 1 process, median of 3 (first)", _read_table(r["read"])),
        ("worker RSS: idle → after load (peak), all workers", _memory(mem)),
        ("CPU-s used by other processes / available", _contention(r.get("contention"))),
    ]


def _read_table(read: dict) -> str:
    samples = read["read_table"]
    return f"{fmt_time(samples['median'])} ({fmt_time(samples['samples'][0])})"


def _contention(c: dict | None) -> str:
    if not c:
        return "n/a"
    return f"{c['other_cpu_seconds']:.0f} / {c['available_cpu_seconds']:.0f}"


def _shape(size: dict, pieces: int) -> str:
    return f"{size['rows']:,} × {size['features']} ({size['partitions']} / {pieces})"


def _floor(floor: dict, kind: str) -> str:
    return f"{fmt_time(floor[f'{kind}_seconds'])} ({floor[f'{kind}_gb_per_s']:.1f} GB/s)"


def _many(r: dict) -> str:
    return fmt_spread(r["round_trip"]["many_tasks"])


def _dask_ml(dml: dict) -> str:
    if "error" in dml:
        return f"n/a: {dml['error']}"
    per = fmt_time(dml["seconds_per_iteration"])
    return f"{per} ({dml['iterations']} it. in {dml['fit_seconds']:.1f} s)"


def _memory(memory) -> str:
    idle = sum(m["idle_rss"] for m in memory)
    rss = sum(m["VmRSS"] for m in memory)
    peak = sum(m["VmHWM"] or m["VmRSS"] for m in memory)
    return f"{fmt_bytes(idle)} → {fmt_bytes(rss)} ({fmt_bytes(peak)})"


def ratio_cell(key: str, size: str, value: float | None) -> str:
    if value is None:
        return "n/a"
    for target_key, sizes, op, bound in TARGETS:
        if target_key == key and size in sizes:
            ok = value <= bound if op == "<=" else value >= bound
            sign = "≤" if op == "<=" else "≥"
            return f"{value:.2f} (target {sign} {bound:g}: {'PASS' if ok else 'FAIL'})"
    return f"{value:.2f}"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def report(results: dict[str, dict]) -> str:
    names = list(results)
    per_size = [measurement_rows(results[n]) for n in names]
    rows = [
        [label, *(cells[i][1] for cells in per_size)] for i, (label, _) in enumerate(per_size[0])
    ]
    parts = [markdown_table(["measurement", *names], rows)]
    ratio_rows = [
        [text, *(ratio_cell(key, n, results[n]["ratios"][key]) for n in names)]
        for key, text in RATIO_LABELS.items()
    ]
    parts.append(markdown_table(["ratio", *names], ratio_rows))
    return "\n\n".join(parts)


def sweep_report(sweep: list[dict]) -> str:
    rows = [
        [
            _shape(s["size"], s["pieces"]),
            fmt_time(s["load_seconds"]),
            fmt_spread(s["passes"]),
            fmt_time(s["busiest_kernel"]["median"]),
            f"{s['x_gb_per_s']:.1f}",
        ]
        for s in sweep
    ]
    header = [
        "rows × features (files / blocks)",
        "load",
        "lrdask pass (p10–p90)",
        "kernel, slowest worker",
        "X GB/s",
    ]
    return markdown_table(header, rows)


def environment(args: argparse.Namespace) -> dict:
    import dask
    import distributed
    import pyarrow

    cpu = platform.processor()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as fh:
        cpu = next((ln.split(":", 1)[1].strip() for ln in fh if "model name" in ln), cpu)
    return {
        "python": platform.python_version(),
        "lrdask": lrdask.__version__,
        "numpy": np.__version__,
        "dask": dask.__version__,
        "distributed": distributed.__version__,
        "pyarrow": pyarrow.__version__,
        "cpu": cpu,
        "cores": os.cpu_count(),
        "workers": args.workers,
        "options": dict(vars(args)),
        "load_average_at_start": os.getloadavg(),
    }


# ---- main ------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="small,large", help="comma list of small, large")
    parser.add_argument("--iterations", type=int, default=20, help="timed passes (≥ 20)")
    parser.add_argument("--data-dir", default="/tmp/lrdask-bench", help="generated data here")
    parser.add_argument("--json", metavar="PATH", help="write every raw number here")
    parser.add_argument("--scale", action="store_true", help="also run the slow scale sweep")
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--skip-dask-ml", action="store_true", help="do not run dask-ml")
    parser.add_argument(
        "--rows-scale", type=float, default=1.0, help="multiply every row count (quick runs)"
    )
    args = parser.parse_args(argv)
    args.sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    unknown = [s for s in args.sizes if s not in SIZES]
    if unknown:
        parser.error(f"unknown size(s) {unknown}; choose from {list(SIZES)}")
    if args.iterations < 1 or args.workers < 1 or args.rows_scale <= 0:
        parser.error("--iterations, --workers and --rows-scale must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    output: dict = {"environment": environment(args), "sizes": {}, "sweep": None}
    contention: dict = {}
    with connect(workers=args.workers) as client, other_cpu_usage(contention):
        for name in args.sizes:
            size = SIZES[name].scaled(args.rows_scale)
            others: dict = {}
            with other_cpu_usage(others):
                output["sizes"][name] = bench_size(client, size, args)
            output["sizes"][name]["contention"] = others
        if args.scale:
            output["sweep"] = bench_sweep(client, args)
    output["contention"] = contention
    output["wall_seconds"] = time.perf_counter() - started
    output["load_average_at_end"] = os.getloadavg()
    env = output["environment"]
    print(
        f"lrdask {env['lrdask']}, {env['workers']} workers × 1 thread on {env['cores']} cores "
        f"({env['cpu']}); numpy {env['numpy']}, dask {env['dask']}, pyarrow {env['pyarrow']}; "
        f"{args.iterations} timed passes; load average at start "
        f"{env['load_average_at_start'][0]:.2f}, at end {output['load_average_at_end'][0]:.2f}; "
        f"other processes used {contention['other_cpu_seconds']:.0f} of "
        f"{contention['available_cpu_seconds']:.0f} CPU-seconds during the run "
        f"(steal {contention['steal_seconds']:.0f} s)\n"
    )
    if output["sizes"]:
        print(report(output["sizes"]))
    if output["sweep"]:
        print("\nScale sweep (lrdask pass; X GB/s = bytes of X / median pass)\n")
        print(sweep_report(output["sweep"]))
    print(f"\nwall time: {output['wall_seconds']:.0f} s")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(output, fh, indent=1, default=float)
        log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
