"""Reproducible to the bit (issue #14): the same files and options give the same model.json
numbers — coefficients, intercepts, cost history, iteration count, stop reason — on any
number of workers, an embedded or a real cluster, after a worker or the driver was killed,
cached or streamed, for every solver. Compared with ``np.array_equal``, not a tolerance.

The data's optimum is flat (labels nearly independent of the features), so any rounding
difference moves the point where the run stops and shows in the iteration count. Files of
66,000-100,000 rows make one block each (``BLOCK_ENOUGH_ROWS``), nine blocks, which three
workers cannot hold as aligned runs: the tree has to be completed across workers.
"""

from __future__ import annotations

import json
import os
import signal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import write_partitions
from procs import RealCluster, lrdask
from test_faults import finish, start_train, wait_for_line

pytestmark = pytest.mark.cluster

SIZES = [70_000, 90_000, 66_000, 100_000, 70_000, 80_000, 75_000, 69_000, 66_500]


@pytest.fixture(scope="module")
def flat(tmp_path_factory):
    rng = np.random.default_rng(14)
    n = sum(SIZES)
    X = rng.normal(size=(n, 5)) * [1.0, 1.5, 0.5, 1.0, 1.0] + [0.0, 1.0, -0.5, 0.3, 0.0]
    y = (rng.random(n) < 0.5 + 0.02 * np.tanh(X[:, 0])).astype(float)
    X3 = np.column_stack([X, rng.random(n)])
    y3 = np.where(rng.random(n) < 0.34, 2.0, y)  # three classes, nearly random
    root = tmp_path_factory.mktemp("flat")
    return {
        "binary": write_partitions(root / "binary", X, y, SIZES),
        "multi": write_partitions(root / "multi", X3, y3, SIZES),
        "mixed": _write_mixed(root / "mixed", X, y, rng),
    }


def _write_mixed(directory, X, y, rng):
    """A real table's columns: a string categorical, a weight column, yes/no labels and
    one null per file (dropped with --missing skip), in the same SIZES files."""
    directory.mkdir()
    city = rng.choice([f"city-{k}" for k in range(8)], size=len(y))
    weight = rng.uniform(0.5, 2.0, size=len(y))
    start = 0
    for i, n in enumerate(SIZES):
        rows = slice(start, start + n)
        cols = {f"x{j}": pa.array(X[rows, j]) for j in range(X.shape[1])}
        first = cols["x1"].to_pylist()
        first[i] = None
        cols["x1"] = pa.array(first, type=pa.float64())
        cols["city"] = pa.array(city[rows])
        cols["w"] = pa.array(weight[rows])
        cols["y"] = pa.array(np.where(y[rows] > 0, "yes", "no"))
        pq.write_table(pa.table(cols), directory / f"part-{i:03d}.parquet")
        start += n
    return str(directory)


def _data(flat, name):
    return flat["multi" if name == "multinomial" else "mixed" if name == "mixed" else "binary"]


def numbers(model_dir) -> dict:
    doc = json.loads((model_dir / "model.json").read_text())
    t = doc["training"]
    return {
        "coef": np.asarray(doc["coef"], dtype=float),
        "intercept": np.asarray(doc["intercept"], dtype=float),
        "loss_history": np.asarray(t["loss_history"], dtype=float),
        "n_iter": t["n_iter"],
        "stop_reason": t["stop_reason"],
        "validation_history": t["validation_history"],
        "metrics": t["metrics"],
    }


def assert_same_bits(a: dict, b: dict) -> None:
    assert a["n_iter"] == b["n_iter"]
    assert a["stop_reason"] == b["stop_reason"]
    assert a["validation_history"] == b["validation_history"]  # floats compared exactly
    assert a["metrics"] == b["metrics"]
    for key in ("coef", "intercept", "loss_history"):
        assert np.array_equal(a[key], b[key]), key


def train(data, out, *extra):
    lrdask("train", data, "--label", "y", "--out", out, "--tol", 0, "--max-iter", 1500, *extra)
    return numbers(out)


OPTIONS = {
    "gd": ["--alpha", 0.3, "--gtol", 1e-4],
    "gd-float32": ["--alpha", 0.3, "--gtol", 1e-4, "--dtype", "float32"],
    "lbfgs": ["--solver", "lbfgs", "--gtol", 1e-9],
    "newton": ["--solver", "newton", "--gtol", 1e-12],
    "agd-line-search": ["--solver", "agd", "--line-search", "--gtol", 1e-7],
    "lbfgs-l1": ["--solver", "lbfgs", "--l1", 1e-3, "--gtol", 1e-9],
    "multinomial": ["--family", "multinomial", "--solver", "lbfgs", "--gtol", 1e-8],
    "mixed": [
        "--categorical",
        "city",
        "--weight-col",
        "w",
        "--positive-class",
        "yes",
        "--missing",
        "skip",
        "--l2",
        1e-3,
        "--solver",
        "agd",
        "--line-search",
        "--gtol",
        1e-7,
    ],
}


@pytest.mark.parametrize("name", list(OPTIONS))
def test_one_two_and_three_workers_give_the_same_bits(tmp_path, flat, uninterrupted, name):
    data = _data(flat, name)
    runs = [uninterrupted(name)]  # one worker
    runs += [train(data, tmp_path / f"w{k}", "--workers", k, *OPTIONS[name]) for k in (2, 3)]
    assert runs[0]["n_iter"] > 1
    for run in runs[1:]:
        assert_same_bits(run, runs[0])


@pytest.fixture(scope="module")
def baseline(uninterrupted):
    """gd on one embedded worker, cached: what every other way of running must equal."""
    return uninterrupted("gd")


@pytest.mark.parametrize("name", ["gd", "gd-float32", "mixed"])
def test_streaming_gives_the_cached_bits(tmp_path, flat, uninterrupted, name):
    run = train(_data(flat, name), tmp_path / "m", "--workers", 3, "--no-cache", *OPTIONS[name])
    assert_same_bits(run, uninterrupted(name))


def test_held_out_metrics_are_the_same_bits_on_one_and_three_workers(tmp_path, flat):
    """The validation passes (every 10 iterations) and the final held-out metrics go
    through the same fixed tree."""
    extra = ["--validation", flat["binary"], "--validation-every", 10, *OPTIONS["gd"]]
    runs = [train(flat["binary"], tmp_path / f"w{k}", "--workers", k,
                  "--max-iter", 60, *extra) for k in (1, 3)]  # fmt: skip
    assert len(runs[0]["validation_history"]) > 3
    assert runs[0]["metrics"].keys() > {"train_log_loss"}
    assert_same_bits(runs[1], runs[0])


def test_eight_workers_give_the_one_worker_bits(tmp_path, flat, baseline):
    """Nine blocks on eight workers: one worker holds two, the tree is completed across
    all eight."""
    run = train(flat["binary"], tmp_path / "m", "--workers", 8, *OPTIONS["gd"])
    assert_same_bits(run, baseline)


def test_a_real_cluster_with_two_threads_per_worker_gives_the_same_bits(tmp_path, flat, baseline):
    with RealCluster(workers=3, tmp_dir=str(tmp_path), nthreads=2) as cluster:
        run = train(flat["binary"], tmp_path / "m", "--scheduler", cluster.address, *OPTIONS["gd"])
    assert_same_bits(run, baseline)


def test_a_worker_killed_mid_run_changes_no_bit(tmp_path, flat, baseline):
    out = tmp_path / "m"
    with RealCluster(workers=3, tmp_dir=str(tmp_path)) as cluster:
        proc = start_train(
            flat["binary"], "--label", "y", "--out", out, "--tol", 0, "--max-iter", 1500,
            "--scheduler", cluster.address, *OPTIONS["gd"],
        )  # fmt: skip
        try:
            wait_for_line(proc, "iteration 15 cost")
            cluster.fault_holder()
            code, _, err = finish(proc)
        finally:
            proc.kill()
    assert code == 0, err
    assert "this pass runs as tasks" in err
    assert_same_bits(numbers(out), baseline)


def test_a_driver_killed_and_resumed_on_another_cluster_size_changes_no_bit(
    tmp_path, flat, baseline
):
    out = tmp_path / "m"
    args = [flat["binary"], "--label", "y", "--out", out, "--tol", 0, "--max-iter", 1500,
            "--checkpoint-every", 10, *OPTIONS["gd"]]  # fmt: skip
    proc = start_train(*args, "--workers", 3)
    try:
        wait_for_line(proc, "iteration 35 cost")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        proc.kill()
    assert (out / "_checkpoint" / "checkpoint.json").exists()
    result = lrdask("train", *args, "--workers", 1)
    assert "resuming from checkpoint" in result.stderr
    assert_same_bits(numbers(out), baseline)


# The driver dies (os._exit, as abruptly as SIGKILL) right after its N-th checkpoint is on
# disk: a deterministic crash point, where a SIGKILL sent on a log line races the run.
CRASH_AFTER_SAVE = """
import os, sys
from lrdask import checkpoint, cli
original, saved = checkpoint.Checkpoints.save, []
def save(self, state):
    original(self, state)
    saved.append(state.n_iter)
    if len(saved) == int(os.environ["CRASH_AFTER_SAVES"]):
        os._exit(9)
checkpoint.Checkpoints.save = save
sys.argv = ["lrdask", *sys.argv[1:]]
cli.main()
"""


@pytest.fixture(scope="module")
def uninterrupted(flat, tmp_path_factory):
    """Each option set's run on one embedded worker, trained once per module."""
    runs = {}

    def run(name):
        if name not in runs:
            data = _data(flat, name)
            out = tmp_path_factory.mktemp(name) / "m"
            runs[name] = train(data, out, "--workers", 1, *OPTIONS[name])
        return runs[name]

    return run


@pytest.mark.parametrize("name", list(OPTIONS))
def test_every_solver_resumed_on_another_cluster_size_changes_no_bit(
    tmp_path, flat, uninterrupted, name
):
    """Killed after the checkpoint of iteration 2 on three workers, resumed on two: the
    checkpoint carries what the solver needs (a line search's step, agd's momentum,
    L-BFGS's pairs), so the rest of the run is the uninterrupted run's arithmetic."""
    import subprocess
    import sys

    data = _data(flat, name)
    out = tmp_path / "m"
    args = [data, "--label", "y", "--out", out, "--tol", 0, "--max-iter", 1500,
            "--checkpoint-every", 1, *OPTIONS[name]]  # fmt: skip
    crashed = subprocess.run(
        [sys.executable, "-c", CRASH_AFTER_SAVE, "train", *map(str, args), "--workers", "3"],
        capture_output=True,
        text=True,
        env={**os.environ, "CRASH_AFTER_SAVES": "2"},
        timeout=300,
    )
    assert crashed.returncode == 9, crashed.stderr  # it died at the crash point
    saved = json.loads((out / "_checkpoint" / "checkpoint.json").read_text())
    assert saved["n_iter"] == 2
    if name.startswith("lbfgs") or name == "multinomial":
        assert len(saved["memory_s"]) == 2  # the pairs are in the checkpoint
    result = lrdask("train", *args, "--workers", 2)
    assert "resuming from checkpoint" in result.stderr
    assert_same_bits(numbers(out), uninterrupted(name))


def test_blocks_are_held_as_contiguous_runs(tmp_path, flat):
    """The loader's placement (``reduction.owners``) is what the workers hold while the
    run goes on: each of three workers one run of consecutive blocks, so each returns a
    few aligned tree nodes, not one per block."""
    from distributed import Client

    from lrdask.reduction import owners

    with RealCluster(workers=3, tmp_dir=str(tmp_path)) as cluster:
        proc = start_train(
            flat["binary"], "--label", "y", "--out", tmp_path / "m", "--tol", 0,
            "--max-iter", 100_000, "--scheduler", cluster.address, *OPTIONS["gd"][:2],
        )  # fmt: skip
        try:
            wait_for_line(proc, "iteration 5 cost")
            with Client(cluster.address, timeout=30) as client:
                has_what = client.has_what()
        finally:
            proc.kill()
    held = {
        addr: sorted(int(str(k).split("-")[2]) for k in keys if str(k).startswith("lrdask-load-"))
        for addr, keys in has_what.items()
    }
    expected = owners(len(SIZES), 3)
    for rank, addr in enumerate(sorted(held)):
        assert held[addr] == [i for i in range(len(SIZES)) if expected[i] == rank], held
