"""What do categorical columns cost per pass and in memory, beside numeric ones?

Categorical features are int32 codes per row (``lrdask.encoding``): the kernel adds
``w[f + code]`` per categorical column to z and scatter-adds the residuals into the slot
gradient (``lrdask.kernels``), so a pass is O(rows + levels) and no one-hot matrix exists.
The target: **a categorical column costs no more per pass than two numeric columns, and
memory stays O(rows + levels)**. This script measures it on ``--rows`` rows (default 4M) of
20 float64 numeric columns plus 3 string categorical columns with 10, 1,000 and 100,000
levels, generated under ``--data-dir`` (8 Parquet files, seed 0; reused when present):

1. a pure-kernel microbenchmark, no Dask: ``lrdask.kernels.log_loss_sums`` on one block of
   ``--kernel-rows`` rows (500k, the size of one file's block) built by
   ``lrdask.loading.block_from_table``, one BLAS thread, median of ``--kernel-repeats`` calls
   (the column sets take turns, one call each per round): 20 numeric columns alone; + 2
   numeric; + each categorical column alone (and the 100k-level one with the other level
   distribution, Zipf vs uniform); + 6 numeric; + all three categorical columns;
2. on a LocalCluster (``--workers`` processes × 1 thread), for three column sets of the same
   rows: "20 numeric", "20 + 6 numeric" (the yardstick: two numeric columns per categorical
   one) and "20 + 3 categorical". Each set on fresh workers: the profile pass and the load
   (as ``fit`` does them), then memory and bytes (3., 4.). Then all three sets are loaded at
   once and their ``PersistedBlocks.partial_sums`` passes take turns along each set's own
   gradient-descent path (median of ``--iterations`` after 2 warm-ups, with the slowest
   worker's ``fold_blocks`` time, as in ``bench_iteration.py``), so the ratios do not depend on
   when the machine was busy. Last, per-pass times inside a real
   ``LogisticRegression(categorical=..., tol=0).fit`` (from its callback), one set at a time;
3. worker memory: the bytes of the blocks the workers hold (X, y, codes: ``nbytes``) and the
   sum over workers of VmRSS (idle → after load, peak while loading, peak during 3 passes),
   with Arrow's memory pool, beside what a dense float64 one-hot matrix would take;
4. bytes per pass: ``len(pickle.dumps((w, b)))`` (what is broadcast to every worker) and
   ``len(pickle.dumps(partial sums))`` of each worker's result (computed on the worker).

Markdown tables on stdout (the ratios marked PASS/FAIL against the target), progress on
stderr, every raw number in ``--json PATH``.

Run from the repository root::

    python benchmarks/bench_categorical.py --quick               # 200k rows, ~1 min
    python benchmarks/bench_categorical.py --json /tmp/lrdask-bench-cat/results.json
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_iteration import (  # noqa: E402  (the house helpers, shared with this script)
    ALPHA,
    WARMUP_PASSES,
    _install_fold_timer,
    _memory_status,
    _remove_fold_timer,
    _reset_peak_rss,
    _slowest_fold,
    _warm_worker,
    environment,
    fmt_bytes,
    fmt_spread,
    fmt_time,
    log,
    markdown_table,
    one_thread,
    other_cpu_usage,
    summary,
)

from lrdask.cluster import connect  # noqa: E402
from lrdask.dataset import plan_dataset  # noqa: E402
from lrdask.encoding import Encoding, ProfileRequest, learn, profile_table  # noqa: E402
from lrdask.estimator import LogisticRegression  # noqa: E402
from lrdask.kernels import log_loss_rows, log_loss_sums, sigmoid  # noqa: E402
from lrdask.loading import block_from_table, check_reports  # noqa: E402
from lrdask.scheduling import PersistedBlocks, fold_blocks, persist_plan, profile_plan  # noqa: E402

LABEL = "y"
SEED = 0
FILES = 8
NUMERIC = 20
EXTRA_NUMERIC = 6  # two numeric columns per categorical one: the yardstick
LEVELS = (10, 1_000, 100_000)
CATEGORICAL = [f"c{j}" for j in range(len(LEVELS))]
NUMERIC_NAMES = [f"x{j:02d}" for j in range(NUMERIC + EXTRA_NUMERIC)]
ZIPF_EXPONENT = 1.1
QUICK_ROWS = 200_000

# Column sets measured on the cluster: (name, numeric columns, categorical columns).
CLUSTER_SETS = [
    ("20 numeric", NUMERIC_NAMES[:NUMERIC], []),
    ("20 + 6 numeric", NUMERIC_NAMES, []),
    ("20 + 3 categorical", NUMERIC_NAMES[:NUMERIC], CATEGORICAL),
]


# ---- data ------------------------------------------------------------------------------
def level_names(column: int, levels: int) -> pa.Array:
    """The string levels of one categorical column ("c2_000017"): sorted = numeric order."""
    return pa.array([f"c{column}_{k:06d}" for k in range(levels)], type=pa.string())


def level_indices(rng, levels: int, rows: int, distribution: str, column: int) -> np.ndarray:
    """Level of each row: uniform, or Zipf-like (p_k ∝ 1/(rank+1)^1.1) with the ranks spread
    over the levels by a fixed permutation (frequent levels are not neighbours in w)."""
    if distribution == "uniform":
        return rng.integers(0, levels, size=rows)
    p = 1.0 / np.arange(1, levels + 1) ** ZIPF_EXPONENT
    rank = np.searchsorted(np.cumsum(p / p.sum()), rng.random(rows), side="right")
    rank = np.minimum(rank, levels - 1)
    permutation = np.random.default_rng([SEED, 7, column]).permutation(levels)
    return permutation[rank]


def make_table(rows: int, index: int, distribution: str) -> pa.Table:
    """One file's rows, from the seed pair (SEED, index): 26 standard-normal float64 columns
    (the label depends on the first 20), 3 string categorical columns, label y (int8) drawn
    as Bernoulli(σ(x·β + Σ effect[level])) with fixed β and level effects."""
    rng = np.random.default_rng([SEED, index])
    X = rng.standard_normal((rows, len(NUMERIC_NAMES)))
    beta = np.random.default_rng([SEED, 2**31]).normal(size=NUMERIC) * (1.5 / np.sqrt(NUMERIC))
    z = X[:, :NUMERIC] @ beta + 0.3
    columns: dict[str, pa.Array] = {name: pa.array(X[:, j]) for j, name in enumerate(NUMERIC_NAMES)}
    for j, levels in enumerate(LEVELS):
        effect = np.random.default_rng([SEED, 2**31 + 1, j]).normal(size=levels) * 0.5
        level = level_indices(rng, levels, rows, distribution, j)
        z += effect[level]
        columns[CATEGORICAL[j]] = level_names(j, levels).take(pa.array(level))
    columns[LABEL] = pa.array((rng.random(rows) < sigmoid(z)).astype(np.int8))
    return pa.table(columns)


def ensure_data(data_dir: str, rows: int, distribution: str) -> str:
    """The data set's directory (FILES Parquet files, one row group each), made unless a
    matching one is already there."""
    path = os.path.join(data_dir, f"{rows}-{distribution}-s{SEED}")
    marker = os.path.join(path, "_meta.json")
    want = {"rows": rows, "files": FILES, "seed": SEED, "distribution": distribution}
    try:
        with open(marker) as fh:
            if json.load(fh) == want:
                return path
    except (OSError, ValueError):
        pass
    log(f"making {path} ({rows} rows, {FILES} files, {distribution} levels)")
    os.makedirs(path, exist_ok=True)
    for name in os.listdir(path):
        os.remove(os.path.join(path, name))
    bounds = np.linspace(0, rows, FILES + 1).astype(int)
    for i in range(FILES):
        n = int(bounds[i + 1] - bounds[i])
        pq.write_table(
            make_table(n, i, distribution),
            os.path.join(path, f"part-{i:03d}.parquet"),
            row_group_size=max(n, 1),
        )
    with open(marker, "w") as fh:
        json.dump(want, fh)
    return path


def learn_encoding(table_or_profile, numeric: list[str], categorical: list[str]) -> Encoding:
    """The encoding fit would learn (no penalty: reference coding; min_count 1)."""
    request = ProfileRequest(tuple(numeric), tuple(categorical), LABEL)
    profile = table_or_profile
    if isinstance(table_or_profile, pa.Table):
        profile = profile_table(table_or_profile, request)
    return learn(profile, request)[0]


def request_for(numeric: list[str], categorical: list[str]) -> ProfileRequest:
    return ProfileRequest(tuple(numeric), tuple(categorical), LABEL)


def one_hot_bytes(rows: int, encoding: Encoding) -> int:
    """A dense float64 one-hot matrix of the categorical columns (rows × slots)."""
    return rows * encoding.n_category_slots * 8


# ---- 1. the kernel alone ------------------------------------------------------------------
def reference_loss(X, y, w, b, codes) -> float:
    """Σ loss by plain whole-array NumPy (z with the slots gathered), to check the kernel."""
    f = X.shape[1]
    z = X @ w[:f] + b
    if codes is not None:
        slots = np.append(w[f:], 0.0)
        for j in range(codes.shape[1]):
            z += slots[codes[:, j]]
    return float(log_loss_rows(z, y).sum())


def kernel_configs(distribution: str) -> list[tuple[str, list[str], list[str], str]]:
    """(label, numeric columns, categorical columns, level distribution)."""
    other = "zipf" if distribution == "uniform" else "uniform"
    base = NUMERIC_NAMES[:NUMERIC]
    rows = [
        ("20 numeric", base, [], distribution),
        ("20 + 2 numeric", NUMERIC_NAMES[: NUMERIC + 2], [], distribution),
    ]
    rows += [
        (f"20 + {c} ({LEVELS[j]:,} levels)", base, [c], distribution)
        for j, c in enumerate(CATEGORICAL)
    ]
    rows.append((f"20 + c2 (100,000 levels, {other})", base, ["c2"], other))
    rows.append(("20 + 6 numeric", NUMERIC_NAMES, [], distribution))
    rows.append(("20 + c0, c1, c2", base, CATEGORICAL, distribution))
    return rows


def kernel_calls(rows: int, distribution: str) -> tuple[dict, dict]:
    """One block per column set of ``kernel_configs``, built as the workers build them and
    checked against plain NumPy: (what each set is, a no-argument call of the kernel)."""
    tables = {distribution: make_table(rows, 10_000, distribution)}
    info, calls = {}, {}
    for label, numeric, categorical, dist in kernel_configs(distribution):
        if dist not in tables:
            tables[dist] = make_table(rows, 10_000, dist)
        table = tables[dist]
        encoding = learn_encoding(table, numeric, categorical)
        block = block_from_table(table, encoding, "kernel block")
        rng = np.random.default_rng([SEED, 3])
        w, b = rng.normal(size=encoding.n_features) * 0.1, 0.1
        sums = log_loss_sums(block.X, block.y, w, b, codes=block.codes)
        expected = reference_loss(block.X, block.y, w, b, block.codes)
        assert np.isclose(sums.loss, expected, rtol=1e-9), (label, sums.loss, expected)
        calls[label] = lambda blk=block, w=w, b=b: log_loss_sums(
            blk.X, blk.y, w, b, codes=blk.codes
        )
        info[label] = {
            "numeric": len(numeric),
            "categorical": categorical,
            "distribution": dist,
            "coefficients": encoding.n_features,
            "category_slots": encoding.n_category_slots,
            "x_bytes": block.X.nbytes,
            "codes_bytes": 0 if block.codes is None else block.codes.nbytes,
            "one_hot_bytes": one_hot_bytes(rows, encoding),
        }
    return info, calls


def kernel_times(rows: int, repeat: int, distribution: str) -> tuple[dict, dict]:
    """(kernel_calls' info, seconds per call of each set): one BLAS thread, the sets taking
    turns (one call each per round, after a warm-up round), so that a change in the
    machine's load during the run hits all of them alike."""
    info, calls = kernel_calls(rows, distribution)
    samples: dict[str, list[float]] = {label: [] for label in calls}
    with one_thread():
        for round_ in range(1 + repeat):
            for label, call in calls.items():
                start = time.perf_counter()
                call()
                if round_:
                    samples[label].append(time.perf_counter() - start)
    return info, {label: summary(values) for label, values in samples.items()}


def kernel_times_in_worker(rows: int, repeat: int, distribution: str) -> dict:
    """The same, run inside a Dask worker process (its allocator settings, its imports)."""
    return kernel_times(rows, repeat, distribution)[1]


def bench_kernel(rows: int, repeat: int, distribution: str) -> dict:
    """log_loss_sums on one in-memory block per column set, in this process."""
    info, seconds = kernel_times(rows, repeat, distribution)
    for label, cfg in info.items():
        cfg["seconds"] = seconds[label]
        log(f"kernel: {label}: {fmt_time(seconds[label]['median'])}")
    out = {"rows": rows, "repeat": repeat, "configs": info}
    out["ratios"] = kernel_ratios(info)
    return out


def kernel_ratios(configs: dict, key: str = "seconds") -> dict:
    """Per added column set, its pass time against the yardstick (two numeric columns per
    categorical one): total (≤ 1 meets the target) and marginal (extra time / extra time)."""
    t = {k: v[key]["median"] for k, v in configs.items()}
    base = t["20 numeric"]
    out = {}
    for label, cfg in configs.items():
        if not cfg["categorical"]:
            continue
        yardstick = "20 + 6 numeric" if len(cfg["categorical"]) == 3 else "20 + 2 numeric"
        extra_numeric = t[yardstick] - base
        out[label] = {
            "yardstick": yardstick,
            "total_ratio": t[label] / t[yardstick],
            "extra_seconds": t[label] - base,
            "yardstick_extra_seconds": extra_numeric,
            "marginal_ratio": _marginal(t[label] - base, extra_numeric),
        }
    return out


# ---- 2.–4. on the cluster -----------------------------------------------------------------
def _held_bytes(keys: list[str], dask_worker=None) -> dict:
    """On a worker: rows and nbytes of X, y, codes, weights of the blocks it holds."""
    out = {"rows": 0, "X": 0, "y": 0, "codes": 0, "weight": 0, "blocks": 0}
    for key in keys:
        if key not in dask_worker.data:
            continue
        block = dask_worker.data[key]
        out["blocks"] += 1
        out["rows"] += block.X.shape[0]
        for name in ("X", "y", "codes", "weight"):
            array = getattr(block, name)
            out[name] += 0 if array is None else array.nbytes
    return out


def _result_bytes(held: list, w: np.ndarray, b: float, n_blocks: int, dask_worker=None) -> int:
    """On a worker: pickled size of the partial sums (tree nodes) it returns for one pass;
    ``held`` is its (block index, key) list."""
    present = [(i, key) for i, key in held if key in dask_worker.data]
    if not present:
        return 0
    blocks = [dask_worker.data[key] for _, key in present]
    sums = fold_blocks(w, b, [i for i, _ in present], *blocks, n_blocks=n_blocks)
    return len(pickle.dumps(sums, protocol=pickle.HIGHEST_PROTOCOL))


def load_column_set(client, path: str, numeric, categorical) -> tuple[PersistedBlocks, dict]:
    """The profile pass and the load, as fit does them: (blocks, what was measured)."""
    plan = plan_dataset(path, LABEL, [*numeric, *categorical], categorical=categorical or None)
    start = time.perf_counter()
    profile = profile_plan(client, plan, request_for(numeric, categorical))
    profiled = time.perf_counter() - start
    encoding = learn_encoding(profile, numeric, categorical)
    start = time.perf_counter()
    blocks = persist_plan(client, plan, encoding, "float64", None)
    reports = blocks.reports()
    loaded = time.perf_counter() - start
    check_reports(reports, LABEL, classes=encoding.classes)
    return blocks, {
        "numeric": len(numeric),
        "categorical": list(categorical),
        "profile_seconds": profiled,
        "load_seconds": loaded,
        "rows": sum(r.rows for r in reports),
        "blocks": len(blocks.futures),
        "coefficients": encoding.n_features,
        "category_slots": encoding.n_category_slots,
        "levels": {c.name: len(c.levels) for c in encoding.categorical},
        "encoding_pickle_bytes": len(pickle.dumps(encoding, protocol=pickle.HIGHEST_PROTOCOL)),
        "one_hot_bytes": one_hot_bytes(sum(r.rows for r in reports), encoding),
    }


def _arrow_pool() -> dict:
    """On a worker: bytes Arrow's memory pool holds now, and its peak."""
    pool = pa.default_memory_pool()
    return {"backend": pool.backend_name, "bytes": pool.bytes_allocated(), "max": pool.max_memory()}


def measure_column_set(client, path: str, numeric, categorical) -> dict:
    """On fresh workers: profile and load one column set; the bytes held, worker memory
    (idle, after load, peaks while loading and during a few passes) and bytes per pass."""
    client.run(_warm_worker)
    client.run(_reset_peak_rss)
    idle = client.run(_memory_status)
    blocks, result = load_column_set(client, path, numeric, categorical)
    try:
        loaded = client.run(_memory_status)
        result["arrow_pool"] = client.run(_arrow_pool)
        held = client.run(_held_bytes, [f.key for f in blocks.futures])
        result["held"] = {k: sum(h[k] for h in held.values()) for k in next(iter(held.values()))}
        result["held"]["total"] = sum(result["held"][k] for k in ("X", "y", "codes", "weight"))
        client.run(_reset_peak_rss)
        w, b = np.zeros(result["coefficients"]), 0.0
        for _ in range(3):
            blocks.partial_sums(w, b)
        during = client.run(_memory_status)
        result["memory"] = {
            addr: {
                "idle_rss": idle[addr]["VmRSS"],
                "load_rss": loaded[addr]["VmRSS"],
                "load_peak": loaded[addr]["VmHWM"] or loaded[addr]["VmRSS"],
                "passes_peak": during[addr]["VmHWM"] or during[addr]["VmRSS"],
            }
            for addr in sorted(loaded)
        }
        result["bytes_sent"] = bytes_per_pass(client, blocks, result["coefficients"])
    finally:
        blocks.release()
    return result


def interleaved_passes(client, path: str, sets: dict, iterations: int) -> None:
    """All column sets loaded at once; their passes take turns (A, B, C, A, B, C, …) along
    each one's own gradient-descent path, so that the ratios between them do not depend
    on when the machine was busy. Adds "passes", "busiest_kernel" (the slowest worker's
    ``fold_blocks`` in each pass) and "rest" to each set's entry."""
    client.run(_warm_worker)
    held = {}
    try:
        for name, numeric, categorical in CLUSTER_SETS:
            held[name], _ = load_column_set(client, path, numeric, categorical)
        points = {name: (np.zeros(sets[name]["coefficients"]), 0.0) for name in held}
        samples: dict[str, list] = {name: [] for name in held}
        client.run(_install_fold_timer)
        try:
            for i in range(WARMUP_PASSES + iterations):
                for name, blocks in held.items():
                    w, b = points[name]
                    wall, start = time.time(), time.perf_counter()
                    sums = blocks.partial_sums(w, b)
                    elapsed = time.perf_counter() - start
                    if i >= WARMUP_PASSES:
                        samples[name].append((elapsed, (wall, time.time())))
                    _, dw, db = sums.mean()
                    points[name] = (w - ALPHA * dw, b - ALPHA * db)
        finally:
            recorded = client.run(_remove_fold_timer)
    finally:
        for blocks in held.values():
            blocks.release()
    folds = [fold for per_worker in recorded.values() for fold in per_worker]
    for name, timed in samples.items():
        passes = [seconds for seconds, _ in timed]
        kernels = [_slowest_fold(folds, window) for _, window in timed]
        sets[name]["passes"] = summary(passes)
        sets[name]["busiest_kernel"] = summary(kernels)
        sets[name]["rest"] = summary([p - k for p, k in zip(passes, kernels, strict=True)])


def bytes_per_pass(client, blocks: PersistedBlocks, n_coefficients: int) -> dict:
    """What one pass moves: (w, b) pickled (sent to every worker), each worker's partial
    sums pickled (sent back), and the block-key assignment that Client.run also carries."""
    w = np.random.default_rng([SEED, 4]).normal(size=n_coefficients) * 0.1
    b = 0.1
    blocks.partial_sums(w, b)  # fills the worker → block keys assignment
    assignment = blocks._assignment
    returned = {
        addr: client.run(_result_bytes, held, w, b, len(blocks.futures), workers=[addr])[addr]
        for addr, held in assignment.items()
    }
    return {
        "broadcast_w_b": len(pickle.dumps((w, b), protocol=pickle.HIGHEST_PROTOCOL)),
        "assignment": len(pickle.dumps(assignment, protocol=pickle.HIGHEST_PROTOCOL)),
        "workers": len(assignment),
        "returned_per_worker": returned,
    }


def time_fit(client, path: str, numeric, categorical, iterations: int) -> dict:
    """Per-pass times of a real fit (gradient descent, tol=0), from its callback stamps."""
    stamps: list[float] = []
    start = time.perf_counter()
    model = LogisticRegression(
        alpha=ALPHA, max_iter=iterations, tol=0.0, categorical=list(categorical) or None
    )
    model.fit(
        path,
        label=LABEL,
        features=[*numeric, *categorical],
        client=client,
        callback=lambda _: stamps.append(time.perf_counter()),
    )
    passes = list(np.diff(stamps))
    return {
        "passes": summary(passes) if passes else None,
        "n_iter": model.n_iter_,
        "total_seconds": time.perf_counter() - start,
        "first_callback_seconds": stamps[0] - start,
        "coefficients": len(np.ravel(model.coef_)),
    }


# ---- output ----------------------------------------------------------------------------
def verdict(value: float | None, bound: float) -> str:
    if value is None or not np.isfinite(value):
        return "n/a"
    return f"{value:.2f} (target ≤ {bound:g}: {'PASS' if value <= bound else 'FAIL'})"


def kernel_report(k: dict) -> str:
    t0 = k["configs"]["20 numeric"]["seconds"]["median"]
    in_worker = "worker_ratios" in k
    rows = []
    for label, cfg in k["configs"].items():
        r = k["ratios"].get(label)
        row = [
            label,
            f"{cfg['coefficients']:,}",
            fmt_spread(cfg["seconds"]),
            f"{cfg['seconds']['median'] / t0:.2f}",
            f"{r['marginal_ratio']:.2f}" if r and r["marginal_ratio"] is not None else "—",
            verdict(r["total_ratio"], 1.0) if r else "—",
        ]
        if in_worker:
            wr = k["worker_ratios"].get(label)
            row += [
                fmt_spread(cfg["worker_seconds"]),
                verdict(wr["total_ratio"], 1.0) if wr else "—",
            ]
        row.append(_codes_vs_one_hot(cfg) if cfg["categorical"] else "—")
        rows.append(row)
    header = [
        f"columns ({k['rows']:,}-row block)",
        "coefficients",
        "log_loss_sums, this process: median (p10–p90)",
        "× 20 numeric",
        "extra time / extra time of 2 (6) numeric",
        "time / time with 2 (6) numeric instead",
    ]
    if in_worker:
        header += ["same in a Dask worker process", "worker: time / time with 2 (6) numeric"]
    header.append("codes vs dense float64 one-hot")
    return markdown_table(header, rows)


def _codes_vs_one_hot(cfg: dict) -> str:
    return f"{fmt_bytes(cfg['codes_bytes'])} vs {fmt_bytes(cfg['one_hot_bytes'])}"


def cluster_report(sets: dict) -> str:
    names = list(sets)

    def row(label, fn):
        return [label, *(fn(sets[n]) for n in names)]

    rows = [
        row("rows (blocks)", lambda r: f"{r['rows']:,} ({r['blocks']})"),
        row(
            "coefficients (category slots)",
            lambda r: f"{r['coefficients']:,} ({r['category_slots']:,})",
        ),
        row("profile pass (levels, classes)", lambda r: fmt_time(r["profile_seconds"])),
        row("load into worker memory", lambda r: fmt_time(r["load_seconds"])),
        row(
            "  Encoding pickled (goes with every load task)",
            lambda r: _b(r["encoding_pickle_bytes"]),
        ),
        row("**lrdask pass** (partial_sums), median (p10–p90)", lambda r: fmt_spread(r["passes"])),
        row("  kernel: slowest worker in the pass", lambda r: fmt_spread(r["busiest_kernel"])),
        row("  rest: pass − kernel", lambda r: fmt_spread(r["rest"])),
        row("lrdask pass inside fit (callback)", _fit_cell),
        row("held blocks: X + y + codes (nbytes)", _held_cell),
        row("  bytes held per row", lambda r: f"{r['held']['total'] / r['rows']:.1f}"),
        row("  dense float64 one-hot of the categoricals", lambda r: _one_hot_cell(r)),
        row("worker RSS: idle → after load (load peak)", _rss_cell),
        row("  of which Arrow's memory pool: after load (peak)", _arrow_cell),
        row("  peak during the passes − RSS after load", _pass_peak_cell),
        row(
            "sent per pass to each worker: pickle (w, b)",
            lambda r: _b(r["bytes_sent"]["broadcast_w_b"]),
        ),
        row("  + block-key assignment (Client.run)", lambda r: _b(r["bytes_sent"]["assignment"])),
        row("returned per worker per pass: pickle(sums)", _returned_cell),
    ]
    return markdown_table(["measurement", *names], rows)


def _b(n: float) -> str:
    if n < 10_000:
        return f"{n:,.0f} B"
    return f"{n / 1e3:,.0f} kB" if n < 10e6 else fmt_bytes(n)


def _fit_cell(r: dict) -> str:
    fit = r.get("fit")
    if not fit or not fit["passes"]:
        return "n/a"
    return f"{fmt_spread(fit['passes'])}; whole fit {fit['total_seconds']:.1f} s"


def _held_cell(r: dict) -> str:
    h = r["held"]
    parts = f"{fmt_bytes(h['X'])} + {fmt_bytes(h['y'])} + {fmt_bytes(h['codes'])}"
    return f"{fmt_bytes(h['total'])} ({parts})"


def _one_hot_cell(r: dict) -> str:
    if not r["categorical"]:
        return "—"
    return f"{fmt_bytes(r['one_hot_bytes'])} (codes: {fmt_bytes(r['held']['codes'])})"


def _rss_cell(r: dict) -> str:
    m = r["memory"].values()
    idle = sum(x["idle_rss"] for x in m)
    rss = sum(x["load_rss"] for x in m)
    peak = sum(x["load_peak"] for x in m)
    return f"{fmt_bytes(idle)} → {fmt_bytes(rss)} ({fmt_bytes(peak)})"


def _arrow_cell(r: dict) -> str:
    pools = r["arrow_pool"].values()
    return (
        f"{fmt_bytes(sum(p['bytes'] for p in pools))} ({fmt_bytes(sum(p['max'] for p in pools))})"
    )


def _pass_peak_cell(r: dict) -> str:
    m = r["memory"].values()
    return fmt_bytes(sum(x["passes_peak"] - x["load_rss"] for x in m))


def _returned_cell(r: dict) -> str:
    return ", ".join(_b(v) for v in r["bytes_sent"]["returned_per_worker"].values())


def cluster_ratios(sets: dict) -> dict:
    num, yard, cat = (sets[name] for name, _, _ in CLUSTER_SETS)
    rss = {k: sum(x["load_rss"] for x in v["memory"].values()) for k, v in sets.items()}
    extra_held = cat["held"]["total"] - num["held"]["total"]
    out = {
        "pass_cat_per_pass_6num": cat["passes"]["median"] / yard["passes"]["median"],
        "kernel_cat_per_kernel_6num": cat["busiest_kernel"]["median"]
        / yard["busiest_kernel"]["median"],
        "marginal_pass": _marginal(
            cat["passes"]["median"] - num["passes"]["median"],
            yard["passes"]["median"] - num["passes"]["median"],
        ),
        "fit_cat_per_fit_6num": None,
        "extra_held_per_codes": extra_held / (cat["rows"] * 4 * len(CATEGORICAL)),
        "held_cat_per_held_6num": cat["held"]["total"] / yard["held"]["total"],
        "rss_cat_per_rss_6num": rss["20 + 3 categorical"] / rss["20 + 6 numeric"],
        "one_hot_per_codes": cat["one_hot_bytes"] / cat["held"]["codes"],
        "returned_cat_per_6num": _mean_returned(cat) / _mean_returned(yard),
    }
    if cat.get("fit") and yard.get("fit") and cat["fit"]["passes"] and yard["fit"]["passes"]:
        out["fit_cat_per_fit_6num"] = (
            cat["fit"]["passes"]["median"] / yard["fit"]["passes"]["median"]
        )
    return out


def _marginal(extra: float, yardstick_extra: float) -> float | None:
    """extra / yardstick_extra, or None when the yardstick added no measurable time."""
    return extra / yardstick_extra if yardstick_extra > 0 else None


def _mean_returned(r: dict) -> float:
    values = list(r["bytes_sent"]["returned_per_worker"].values())
    return sum(values) / len(values)


RATIO_ROWS = [
    ("pass_cat_per_pass_6num", "lrdask pass, 20 + 3 categorical / 20 + 6 numeric", 1.0),
    ("kernel_cat_per_kernel_6num", "  kernel (slowest worker), same ratio", 1.0),
    ("marginal_pass", "  extra pass time of 3 categorical / of 6 numeric (over 20 numeric)", None),
    ("fit_cat_per_fit_6num", "pass inside fit, 20 + 3 categorical / 20 + 6 numeric", 1.0),
    ("extra_held_per_codes", "extra bytes held for 3 categorical / (rows × 3 × 4 B)", 1.05),
    ("held_cat_per_held_6num", "bytes held, 20 + 3 categorical / 20 + 6 numeric", 1.0),
    ("rss_cat_per_rss_6num", "worker RSS after load, 20 + 3 categorical / 20 + 6 numeric", None),
    ("one_hot_per_codes", "dense float64 one-hot / int32 codes", None),
    (
        "returned_cat_per_6num",
        "bytes returned per worker, 20 + 3 categorical / 20 + 6 numeric",
        None,
    ),
]


def ratio_report(ratios: dict) -> str:
    rows = []
    for key, label, bound in RATIO_ROWS:
        value = ratios.get(key)
        if value is None:
            cell = "n/a" if key != "marginal_pass" else "n/a (6 numeric added no time)"
        elif bound is None:
            cell = f"{value:,.2f}"
        else:
            cell = verdict(value, bound)
        rows.append([label, cell])
    return markdown_table(["ratio (cluster)", "value"], rows)


# ---- main ------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=None, help="rows (default 4,000,000)")
    parser.add_argument(
        "--quick", action="store_true", help=f"smoke test: {QUICK_ROWS:,} rows, 5 passes"
    )
    parser.add_argument("--iterations", type=int, default=None, help="timed passes (20)")
    parser.add_argument("--kernel-rows", type=int, default=500_000, help="rows of the block")
    parser.add_argument("--kernel-repeats", type=int, default=None, help="kernel calls (30)")
    parser.add_argument(
        "--distribution", choices=("uniform", "zipf"), default="uniform", help="level frequencies"
    )
    parser.add_argument("--data-dir", default="/tmp/lrdask-bench-cat", help="generated data")
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--skip-fit", action="store_true", help="no LogisticRegression.fit")
    parser.add_argument("--skip-cluster", action="store_true", help="kernel benchmark only")
    parser.add_argument("--json", metavar="PATH", help="write every raw number here")
    args = parser.parse_args(argv)
    if args.rows is None:
        args.rows = QUICK_ROWS if args.quick else 4_000_000
    if args.iterations is None:
        args.iterations = 5 if args.quick else 20
    if args.kernel_repeats is None:
        args.kernel_repeats = 5 if args.quick else 30
    args.kernel_rows = min(args.kernel_rows, args.rows)
    if min(args.rows, args.iterations, args.kernel_rows, args.kernel_repeats, args.workers) < 1:
        parser.error("--rows, --iterations, --kernel-rows, --kernel-repeats, --workers must be ≥ 1")
    if args.rows < FILES:
        parser.error(f"--rows must be at least {FILES}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    output: dict = {"environment": environment(args), "kernel": None, "cluster": {}}
    contention: dict = {}
    with other_cpu_usage(contention):
        log(f"kernel: log_loss_sums on one {args.kernel_rows:,}-row block")
        output["kernel"] = bench_kernel(args.kernel_rows, args.kernel_repeats, args.distribution)
        if not args.skip_cluster:
            path = ensure_data(args.data_dir, args.rows, args.distribution)
            output["path"] = path
            sets = output["cluster"]
            # A new LocalCluster per column set rather than Client.restart: on this VM a
            # restart now and then never gets its workers back.
            for name, numeric, categorical in CLUSTER_SETS:
                log(f"{name}: new cluster, profile, load, memory, bytes per pass")
                with connect(workers=args.workers) as client:
                    sets[name] = measure_column_set(client, path, numeric, categorical)
            with connect(workers=args.workers) as client:
                log(f"all column sets loaded at once, {args.iterations} passes each, in turn")
                interleaved_passes(client, path, sets, args.iterations)
                log("kernel again, inside one Dask worker process (the other one idle)")
                worker = sorted(client.scheduler_info(n_workers=-1)["workers"])[0]
                in_worker = client.submit(
                    kernel_times_in_worker,
                    args.kernel_rows,
                    args.kernel_repeats,
                    args.distribution,
                    workers=[worker],
                    pure=False,
                ).result()
                kernel = output["kernel"]
                for label, seconds in in_worker.items():
                    kernel["configs"][label]["worker_seconds"] = seconds
                kernel["worker_ratios"] = kernel_ratios(kernel["configs"], "worker_seconds")
                for name, numeric, categorical in CLUSTER_SETS:
                    if not args.skip_fit:
                        log(f"{name}: LogisticRegression.fit, max_iter={args.iterations}")
                        sets[name]["fit"] = time_fit(
                            client, path, numeric, categorical, args.iterations
                        )
            output["ratios"] = cluster_ratios(output["cluster"])
    output["contention"] = contention
    output["wall_seconds"] = time.perf_counter() - started
    output["load_average_at_end"] = os.getloadavg()
    env = output["environment"]
    print(
        f"lrdask {env['lrdask']}, {args.workers} workers × 1 thread on {env['cores']} cores "
        f"({env['cpu']}); numpy {env['numpy']}, dask {env['dask']}, pyarrow {env['pyarrow']}; "
        f"{args.rows:,} rows, {args.distribution} levels {', '.join(f'{n:,}' for n in LEVELS)}; "
        f"{args.iterations} timed passes; load average at start "
        f"{env['load_average_at_start'][0]:.2f}, at end {output['load_average_at_end'][0]:.2f}; "
        f"other processes used {contention['other_cpu_seconds']:.0f} of "
        f"{contention['available_cpu_seconds']:.0f} CPU-seconds during the run\n"
    )
    print(
        f"Kernel alone: log_loss_sums, 1 thread, median of {args.kernel_repeats} "
        "(yardstick: the same block with 2 numeric columns per categorical column instead)\n"
    )
    print(kernel_report(output["kernel"]))
    if output["cluster"]:
        print(
            f"\nOn the cluster: {args.rows:,} rows, {args.workers} workers × 1 thread; "
            "memory = sum over workers\n"
        )
        print(cluster_report(output["cluster"]))
        print()
        print(ratio_report(output["ratios"]))
    print(f"\nwall time: {output['wall_seconds']:.0f} s")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as fh:
            json.dump(output, fh, indent=1, default=float)
        log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
