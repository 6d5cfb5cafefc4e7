"""What the fixed-order reduction costs per pass (issue #14): time and bytes.

For the 4M × 50 float64 data set of ``bench_iteration.py`` (32 files, made under
``--data-dir`` if absent) and each worker count in ``--workers`` (default 2 and 8), on one
LocalCluster (one thread per worker), after the blocks are loaded:

- the per-pass time of ``PersistedBlocks.partial_sums`` (median and spread of
  ``--iterations`` passes at a fixed (w, b));
- the bytes one pass moves: (w, b) and the worker → blocks assignment that ``Client.run``
  carries to each worker, and each worker's result pickled (the reduction tree's nodes now;
  one ``LogLossSums`` before);
- that every pass gave the same bits (the reduction's promise).

Runs against whatever ``lrdask`` is importable, so the same script measures another commit
through a git worktree on ``PYTHONPATH``:

    git worktree add /tmp/lrdask-before 8111734
    PYTHONPATH=/tmp/lrdask-before python benchmarks/bench_reduction.py --json before.json
    python benchmarks/bench_reduction.py --json after.json --before-json before.json

Only an otherwise idle machine gives meaningful times.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import pickle
import statistics
import sys
import time

import numpy as np
from distributed import Client, LocalCluster

from lrdask import scheduling
from lrdask.dataset import plan_dataset
from lrdask.encoding import numeric_encoding
from lrdask.synthetic import make_data

ROWS, FEATURES, FILES = 4_000_000, 50, 32


def ensure_data(root: str, rows: int) -> str:
    path = os.path.join(root, f"{rows}x{FEATURES}-p{FILES}")
    if not os.path.exists(os.path.join(path, "_truth.json")):
        print(f"making {path}", file=sys.stderr)
        make_data(path, rows, FEATURES, FILES, seed=0)
    return path


def _returned_bytes(held: list, w, b, n_blocks: int, dask_worker=None) -> int:
    """On a worker: the pickled size of what it returns for one fast-path pass."""
    keys = [entry[1] if isinstance(entry, tuple) else entry for entry in held]
    blocks = [dask_worker.data[key] for key in keys if key in dask_worker.data]
    fold = scheduling.fold_blocks
    if "indices" in inspect.signature(fold).parameters:  # the tree reduction
        indices = [entry[0] for entry in held if entry[1] in dask_worker.data]
        result = fold(w, b, indices, *blocks, n_blocks=n_blocks)
    else:
        result = fold(w, b, *blocks)
    return len(pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL))


def measure(path: str, workers: int, iterations: int) -> dict:
    with (
        LocalCluster(n_workers=workers, threads_per_worker=1, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        plan = plan_dataset(path, "y")
        encoding = numeric_encoding(plan.features, plan.label)
        blocks = scheduling.persist_plan(client, plan, encoding, "float64", None)
        blocks.reports()
        rng = np.random.default_rng(1)
        w, b = rng.normal(size=len(plan.features)) * 0.01, 0.1
        first = blocks.partial_sums(w, b)
        times, same = [], True
        for _ in range(iterations):
            start = time.perf_counter()
            sums = blocks.partial_sums(w, b)
            times.append(time.perf_counter() - start)
            same &= sums.loss == first.loss and np.array_equal(sums.grad_coef, first.grad_coef)
        assignment = blocks._assignment
        returned = {
            addr: client.run(_returned_bytes, held, w, b, len(blocks.futures), workers=[addr])[addr]
            for addr, held in assignment.items()
        }
        n_blocks = len(blocks.futures)
        blocks.release()
    return {
        "workers": workers,
        "blocks": n_blocks,
        "pass_median_s": statistics.median(times),
        "pass_min_s": min(times),
        "pass_max_s": max(times),
        "sent_w_b": len(pickle.dumps((w, b), protocol=pickle.HIGHEST_PROTOCOL)),
        "sent_assignment": len(pickle.dumps(assignment, protocol=pickle.HIGHEST_PROTOCOL)),
        "returned_per_worker": sorted(returned.values()),
        "same_bits_every_pass": bool(same),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="/tmp/lrdask-bench")
    parser.add_argument("--rows", type=int, default=ROWS)
    parser.add_argument("--workers", default="2,8", help="comma list of worker counts")
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--json", help="write the raw numbers here")
    parser.add_argument("--before-json", help="a run of another commit, for the ratio column")
    args = parser.parse_args()
    path = ensure_data(args.data_dir, args.rows)
    results = [measure(path, int(n), args.iterations) for n in args.workers.split(",")]
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1)
    before = {}
    if args.before_json:
        with open(args.before_json) as fh:
            before = {r["workers"]: r for r in json.load(fh)}
    print(
        "| workers | pass (median, min–max) | before | after / before | sent per worker "
        "(w, b + assignment) | returned per worker | same bits every pass |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        old = before.get(r["workers"])
        now = f"{r['pass_median_s'] * 1e3:.1f} ms ({r['pass_min_s'] * 1e3:.1f}–"
        now += f"{r['pass_max_s'] * 1e3:.1f})"
        then = f"{old['pass_median_s'] * 1e3:.1f} ms" if old else "–"
        ratio = f"{r['pass_median_s'] / old['pass_median_s']:.3f}" if old else "–"
        sent = f"{r['sent_w_b']} + {r['sent_assignment']} B"
        returned = ", ".join(map(str, r["returned_per_worker"])) + " B"
        print(
            f"| {r['workers']} ({r['blocks']} blocks) | {now} | {then} | {ratio} | {sent} | "
            f"{returned} | {r['same_bits_every_pass']} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
