"""Faults with real processes: a worker, the driver or the scheduler killed mid-run."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import random_problem, write_partitions
from procs import BIN, RealCluster, leaked_setting, lrdask
from reference import numpy_gradient_descent

pytestmark = pytest.mark.cluster


def start_train(*args):
    """`lrdask train` in the background, logging every iteration, stderr readable."""
    env = {k: v for k, v in os.environ.items() if not leaked_setting(k)}
    return subprocess.Popen(
        [os.path.join(BIN, "lrdask"), "train", *map(str, args), "--log-every", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def wait_for_line(proc, text, timeout=120):
    """Read the job's log until a line contains ``text``; returns everything read."""
    seen, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            raise AssertionError(f"job ended before {text!r}:\n{''.join(seen)}")
        seen.append(line)
        if text in line:
            return "".join(seen)
    raise AssertionError(f"no {text!r} within {timeout}s")


def finish(proc, timeout=180):
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def assert_model_matches(model_json, X, y, alpha, iterations):
    doc = json.loads(model_json.read_text())
    w, b, costs = numpy_gradient_descent(X, y, alpha, iterations)
    np.testing.assert_allclose(doc["coef"], w, rtol=1e-12, atol=1e-12)
    assert doc["intercept"] == pytest.approx(b, rel=1e-12, abs=1e-12)
    np.testing.assert_allclose(doc["training"]["loss_history"][:iterations], costs, rtol=1e-12)
    assert len(doc["training"]["loss_history"]) == iterations + 1


@pytest.fixture
def problem(tmp_path):
    X, y = random_problem(30_000, 8, seed=31)
    data = write_partitions(tmp_path / "data", X, y, [2500] * 12)
    return X, y, data


def test_worker_killed_mid_training_changes_nothing(tmp_path, problem):
    X, y, data = problem
    with RealCluster(workers=3, tmp_dir=str(tmp_path)) as cluster:
        proc = start_train(
            data,
            "--label",
            "y",
            "--out",
            tmp_path / "m",
            "--alpha",
            0.5,
            "--max-iter",
            120,
            "--tol",
            0,
            "--gtol",
            0,
            "--scheduler",
            cluster.address,
        )
        try:
            wait_for_line(proc, "iteration 20 cost")
            cluster.fault_holder()
            code, _, err = finish(proc)
        finally:
            proc.kill()
    assert code == 0, err
    assert "this pass runs as tasks" in err  # the fault was noticed, and survived
    assert_model_matches(tmp_path / "m" / "model.json", X, y, 0.5, 120)


def test_killed_driver_resumes_from_checkpoint(tmp_path, problem):
    X, y, data = problem
    args = [
        data,
        "--label",
        "y",
        "--out",
        tmp_path / "m",
        "--alpha",
        0.5,
        "--max-iter",
        150,
        "--tol",
        0,
        "--gtol",
        0,
        "--checkpoint-every",
        10,
    ]
    with RealCluster(workers=2, tmp_dir=str(tmp_path)) as cluster:
        args += ["--scheduler", cluster.address]
        proc = start_train(*args)
        try:
            wait_for_line(proc, "iteration 45 cost")
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        finally:
            proc.kill()
        assert not (tmp_path / "m" / "model.json").exists()
        checkpoint = json.loads((tmp_path / "m" / "_checkpoint" / "checkpoint.json").read_text())
        assert checkpoint["n_iter"] >= 40
        result = lrdask("train", *args)
    assert (
        f"resuming from checkpoint {tmp_path / 'm' / '_checkpoint' / 'checkpoint.json'} "
        f"at iteration {checkpoint['n_iter']}" in result.stderr
    )
    assert "iteration 0 cost" not in result.stderr
    assert_model_matches(tmp_path / "m" / "model.json", X, y, 0.5, 150)
    assert not (tmp_path / "m" / "_checkpoint").exists()


def test_scheduler_lost_mid_run_exits_3_and_checkpoint_resumes(tmp_path, problem):
    X, y, data = problem
    args = [
        data,
        "--label",
        "y",
        "--out",
        tmp_path / "m",
        "--alpha",
        0.5,
        "--max-iter",
        100,
        "--tol",
        0,
        "--gtol",
        0,
        "--checkpoint-every",
        10,
    ]
    with RealCluster(workers=1, tmp_dir=str(tmp_path)) as cluster:
        proc = start_train(*args, "--scheduler", cluster.address)
        try:
            wait_for_line(proc, "iteration 25 cost")
            started = time.monotonic()
            cluster.scheduler.kill()
            code, _, err = finish(proc, timeout=120)
        finally:
            proc.kill()
        assert time.monotonic() - started < 60
    assert code == 3, err
    assert "lrdask: error: lost the Dask cluster during a pass over the data" in err
    assert not (tmp_path / "m" / "model.json").exists()
    with RealCluster(workers=1, tmp_dir=str(tmp_path)) as cluster:
        result = lrdask("train", *args, "--scheduler", cluster.address)
    assert "resuming from checkpoint" in result.stderr
    assert_model_matches(tmp_path / "m" / "model.json", X, y, 0.5, 100)


def test_killed_mid_training_leaves_the_previous_model(tmp_path, problem):
    _, _, data = problem
    out = tmp_path / "m"
    lrdask("train", data, "--label", "y", "--out", out, "--max-iter", 3, "--workers", 1)
    before = (out / "model.json").read_bytes()
    proc = start_train(
        data,
        "--label",
        "y",
        "--out",
        out,
        "--max-iter",
        10_000,
        "--tol",
        0,
        "--gtol",
        0,
        "--overwrite",
        "--workers",
        1,
    )
    try:
        wait_for_line(proc, "iteration 5 cost")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        proc.kill()
    assert (out / "model.json").read_bytes() == before


KILL_MID_WRITE = """
import os, sys, time
from lrdask import storage
def stall(fd):  # the new bytes are written but not yet renamed into place
    open(sys.argv[2], "w").close()
    time.sleep(60)
os.fsync = stall
storage.write_bytes_atomic(sys.argv[1], b'{"new": true}')
"""


def test_killed_mid_write_leaves_the_previous_file(tmp_path):
    target, flag = tmp_path / "model.json", tmp_path / "flag"
    target.write_text('{"old": true}')
    proc = subprocess.Popen([sys.executable, "-c", KILL_MID_WRITE, str(target), str(flag)])
    try:
        deadline = time.monotonic() + 30
        while not flag.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert flag.exists()
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        proc.kill()
    assert target.read_text() == '{"old": true}'
    leftovers = [p for p in os.listdir(tmp_path) if p not in ("model.json", "flag")]
    assert all(p.startswith(".model.json.") for p in leftovers)  # hidden temp, never the model


def test_sigterm_stops_cleanly_and_keeps_the_checkpoint(tmp_path, problem):
    _, _, data = problem
    proc = start_train(
        data,
        "--label",
        "y",
        "--out",
        tmp_path / "m",
        "--max-iter",
        100_000,
        "--tol",
        0,
        "--gtol",
        0,
        "--checkpoint-every",
        5,
        "--workers",
        1,
    )
    try:
        wait_for_line(proc, "iteration 12 cost")
        proc.send_signal(signal.SIGTERM)
        code, _, err = finish(proc, timeout=60)
    finally:
        proc.kill()
    assert code == 143, err
    assert "terminated (SIGTERM); rerun to resume from the checkpoint" in err
    assert not (tmp_path / "m" / "model.json").exists()
    assert (
        json.loads((tmp_path / "m" / "_checkpoint" / "checkpoint.json").read_text())["n_iter"] >= 10
    )


def test_worker_killed_while_fitting_arrays_changes_nothing(tmp_path, caplog):
    """fit(X, y) on NumPy arrays: each block travels inside its load task, so a block lost
    with its worker is loaded again from the scheduler's copy of the task."""
    from distributed import Client

    from lrdask import LogisticRegression

    caplog.set_level("INFO", logger="lrdask")
    X, y = random_problem(150_000, 4, seed=32)  # three blocks of at most 65,536 rows
    killed = []
    with RealCluster(workers=3, tmp_dir=str(tmp_path)) as cluster:

        def kill_at_5(info):
            if info.iteration == 5 and not killed:
                killed.append(cluster.fault_holder())

        with Client(cluster.address) as client:
            model = LogisticRegression(alpha=0.5, max_iter=30, tol=0, gtol=0).fit(
                X, y, client=client, callback=kill_at_5
            )
    assert killed
    assert "this pass runs as tasks" in caplog.text  # the fault was noticed, and survived
    w, b, costs = numpy_gradient_descent(X, y, 0.5, 30)
    np.testing.assert_allclose(model.coef_, w, rtol=1e-12, atol=1e-12)
    assert model.intercept_ == pytest.approx(b, rel=1e-12, abs=1e-12)
    np.testing.assert_allclose(model.loss_history_[:30], costs, rtol=1e-12)
