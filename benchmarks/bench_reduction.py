"""What the fixed-order reduction costs per pass (issue #14): time and bytes.

For the 4M × 50 float64 data set of ``bench_iteration.py`` (32 files, made under
``--data-dir`` if absent) and each worker count in ``--workers`` (default 2 and 8), on one
LocalCluster (one thread per worker), after the blocks are loaded:

- the per-pass time of ``PersistedBlocks.partial_sums`` (median and spread of
  ``--iterations`` passes at a fixed (w, b));
- the bytes one pass moves: (w, b) and the worker → blocks assignment that ``Client.run``
  carries to each worker, and each worker's result pickled (the reduction tree's nodes now;
  one ``LogLossSums`` before), with how many tree nodes that is;
- which blocks each worker held during the passes (contiguous runs, or not: the placement
  is not a pin, and Dask may have moved a load);
- that every pass gave the same bits (the reduction's promise).

With ``--paired`` (the tree reduction only), the same cluster and blocks also time
``--iterations`` pairs of passes, one of each kind in alternating order: the tree pass
(``partial_sums``) and a pass that folds each worker's blocks into one sum in block order
and merges those on the driver, as the reduction before the tree did (8111734's fast path,
same ``Client.run`` route). The ratio is taken pair by pair, so a machine whose speed
drifts (other jobs) moves both sides of a pair alike; it measures the reduction, not
the placement.

Runs against whatever ``lrdask`` is importable, so the same script measures another commit
through a git worktree on ``PYTHONPATH``:

    git worktree add /tmp/lrdask-before 8111734
    PYTHONPATH=/tmp/lrdask-before python benchmarks/bench_reduction.py --json before.json
    python benchmarks/bench_reduction.py --json after.json --before-json before.json

Only an otherwise idle machine gives meaningful times.
"""

from __future__ import annotations

import argparse
import asyncio
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
from lrdask.kernels import log_loss_sums
from lrdask.sums import merge_all
from lrdask.synthetic import make_data

ROWS, FEATURES, FILES = 4_000_000, 50, 32


def ensure_data(root: str, rows: int) -> str:
    path = os.path.join(root, f"{rows}x{FEATURES}-p{FILES}")
    if not os.path.exists(os.path.join(path, "_truth.json")):
        print(f"making {path}", file=sys.stderr)
        make_data(path, rows, FEATURES, FILES, seed=0)
    return path


def _returned_bytes(held: list, w, b, n_blocks: int, dask_worker=None) -> tuple[int, int]:
    """On a worker: the pickled size of what it returns for one fast-path pass, and how many
    tree nodes that is (one ``LogLossSums`` before the tree reduction)."""
    keys = [entry[1] if isinstance(entry, tuple) else entry for entry in held]
    blocks = [dask_worker.data[key] for key in keys if key in dask_worker.data]
    fold = scheduling.fold_blocks
    if "indices" in inspect.signature(fold).parameters:  # the tree reduction
        indices = [entry[0] for entry in held if entry[1] in dask_worker.data]
        result = fold(w, b, indices, *blocks, n_blocks=n_blocks)
    else:
        result = fold(w, b, *blocks)
    nodes = len(result) if isinstance(result, dict) else 1
    return len(pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)), nodes


async def _fold_sequential(assignment: dict, w, b, dask_worker=None):
    """On a worker: its blocks' sums merged left to right into one (the reduction before
    the tree), in a thread like the fast path's ``fold_assigned``."""
    keys = [entry[1] for entry in assignment.get(dask_worker.address, [])]
    blocks = [dask_worker.data[key] for key in keys]

    def fold():
        return merge_all(scheduling.fold_block(log_loss_sums, block, w, b) for block in blocks)

    return await asyncio.get_running_loop().run_in_executor(None, fold)


def _paired(client: Client, blocks, w, b, iterations: int) -> dict:
    """Pairs of passes: the tree reduction and the sequential one (see the module doc)."""
    assignment = blocks._assignment

    def sequential():
        results = client.run(_fold_sequential, assignment, w, b, workers=list(assignment))
        return merge_all(results[addr] for addr in assignment)

    def tree():
        return blocks.partial_sums(w, b)

    tree_s, seq_s, ratios = [], [], []
    for i in range(iterations):
        timed = {}
        for name, fn in (("tree", tree), ("seq", sequential))[:: 1 if i % 2 == 0 else -1]:
            start = time.perf_counter()
            fn()
            timed[name] = time.perf_counter() - start
        tree_s.append(timed["tree"])
        seq_s.append(timed["seq"])
        ratios.append(timed["tree"] / timed["seq"])
    return {
        "paired_tree_median_s": statistics.median(tree_s),
        "paired_sequential_median_s": statistics.median(seq_s),
        "paired_ratio_median": statistics.median(ratios),
        "paired_ratio_min": min(ratios),
        "paired_ratio_max": max(ratios),
    }


def _runs(indices: list[int]) -> str:
    """Block indices as runs: [0, 1, 2, 5] → "0-2,5"."""
    runs: list[list[int]] = []
    for i in sorted(indices):
        if runs and i == runs[-1][1] + 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    return ",".join(f"{a}-{z}" if z > a else f"{a}" for a, z in runs)


def measure(path: str, workers: int, iterations: int, paired: bool = False) -> dict:
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
        index = {future.key: i for i, future in enumerate(blocks.futures)}
        held_blocks = [
            _runs([index[entry[1] if isinstance(entry, tuple) else entry] for entry in held])
            for _, held in sorted(assignment.items())
        ]
        n_blocks = len(blocks.futures)
        pairs = _paired(client, blocks, w, b, iterations) if paired else {}
        blocks.release()
    return {
        **pairs,
        "workers": workers,
        "blocks": n_blocks,
        "pass_median_s": statistics.median(times),
        "pass_min_s": min(times),
        "pass_max_s": max(times),
        "sent_w_b": len(pickle.dumps((w, b), protocol=pickle.HIGHEST_PROTOCOL)),
        "sent_assignment": len(pickle.dumps(assignment, protocol=pickle.HIGHEST_PROTOCOL)),
        "returned_per_worker": [size for size, _ in sorted(returned.values())],
        "nodes_per_worker": [nodes for _, nodes in sorted(returned.values())],
        "blocks_per_worker": held_blocks,
        "same_bits_every_pass": bool(same),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="/tmp/lrdask-bench")
    parser.add_argument("--rows", type=int, default=ROWS)
    parser.add_argument("--workers", default="2,8", help="comma list of worker counts")
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument(
        "--paired",
        action="store_true",
        help="also time pairs of passes: tree vs sequential reduction (tree commits only)",
    )
    parser.add_argument("--json", help="write the raw numbers here")
    parser.add_argument("--before-json", help="a run of another commit, for the ratio column")
    args = parser.parse_args()
    path = ensure_data(args.data_dir, args.rows)
    results = [measure(path, int(n), args.iterations, args.paired) for n in args.workers.split(",")]
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1)
    before = {}
    if args.before_json:
        with open(args.before_json) as fh:
            before = {r["workers"]: r for r in json.load(fh)}
    print(
        "| workers | pass (median, min–max) | before | after / before | sent per worker "
        "(w, b + assignment) | returned per worker (tree nodes) | blocks per worker "
        "| same bits every pass |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        old = before.get(r["workers"])
        now = f"{r['pass_median_s'] * 1e3:.1f} ms ({r['pass_min_s'] * 1e3:.1f}–"
        now += f"{r['pass_max_s'] * 1e3:.1f})"
        then = f"{old['pass_median_s'] * 1e3:.1f} ms" if old else "–"
        ratio = f"{r['pass_median_s'] / old['pass_median_s']:.3f}" if old else "–"
        sent = f"{r['sent_w_b']} + {r['sent_assignment']} B"
        returned = ", ".join(map(str, r["returned_per_worker"])) + " B ("
        returned += ", ".join(map(str, r["nodes_per_worker"])) + ")"
        held = " / ".join(r["blocks_per_worker"])
        print(
            f"| {r['workers']} ({r['blocks']} blocks) | {now} | {then} | {ratio} | {sent} | "
            f"{returned} | {held} | {r['same_bits_every_pass']} |"
        )
    if any("paired_ratio_median" in r for r in results):
        print("\n| workers | paired: tree pass | sequential pass | tree / sequential (min–max) |")
        print("| --- | --- | --- | --- |")
        for r in results:
            print(
                f"| {r['workers']} | {r['paired_tree_median_s'] * 1e3:.1f} ms | "
                f"{r['paired_sequential_median_s'] * 1e3:.1f} ms | "
                f"{r['paired_ratio_median']:.3f} ({r['paired_ratio_min']:.3f}–"
                f"{r['paired_ratio_max']:.3f}) |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
