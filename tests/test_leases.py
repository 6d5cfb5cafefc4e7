"""One writer per output (issue "safe to run unattended", kind 3).

The kind: two jobs that write the same MODEL_DIR or OUT_DIR at once, where the later one
silently replaces the other's work (or they trip over each other's files). A job holds an
exclusive lease on its output while it writes (``lrdask.lease``); a second job exits 2
naming the holder; a stale lease (its process gone, or not renewed) is taken over with a
warning; the start/finish helpers tolerate a concurrent delete.
"""

import json
import os
import socket
import subprocess
import threading

import pytest
from conftest import random_problem, write_partitions
from procs import lrdask
from test_faults import finish, start_train, wait_for_line

from lrdask import lease as lease_module
from lrdask.checkpoint import Checkpoints
from lrdask.errors import OutputLockedError
from lrdask.lease import lease, lease_location
from lrdask.outputs import withdraw_success


@pytest.fixture
def data(tmp_path):
    X, y = random_problem(20_000, 4, seed=61)
    return write_partitions(tmp_path / "data", X, y, [5000] * 4)


def test_a_second_train_on_the_same_model_dir_is_refused(tmp_path, data):
    out = tmp_path / "m"
    first = start_train(
        data,
        "--label",
        "y",
        "--out",
        out,
        "--alpha",
        0.5,
        "--max-iter",
        400,
        "--tol",
        0,
        "--gtol",
        0,
        "--workers",
        1,
    )
    try:
        wait_for_line(first, "iteration 1 cost")
        second = lrdask(
            "train",
            data,
            "--label",
            "y",
            "--out",
            out,
            "--alpha",
            0.1,
            "--overwrite",
            "--workers",
            1,
            check=False,
        )
        code, _, err = finish(first)
    finally:
        first.kill()
    assert second.returncode == 2, second.stderr
    last = second.stderr.strip().splitlines()[-1]
    assert last.startswith(f"lrdask: error: {out} is being written by another job (host ")
    assert f"pid {first.pid}" in last and "lrdask train" in last
    assert code == 0, err
    doc = json.loads((out / "model.json").read_text())
    assert doc["options"]["alpha"] == 0.5  # the first job's model, not replaced
    assert not os.path.exists(lease_location(str(out)))  # released


def test_a_second_predict_on_the_same_out_dir_is_refused(tmp_path, data):
    lrdask("train", data, "--label", "y", "--out", tmp_path / "m", "--max-iter", 3, "--workers", 1)
    out = str(tmp_path / "p")
    with lease(out, "predict"):  # a job that is writing it
        result = lrdask("predict", tmp_path / "m", data, "--out", out, "--workers", 1, check=False)
    assert result.returncode == 2 and "is being written by another job" in result.stderr
    assert f"pid {os.getpid()}" in result.stderr and "lrdask predict" in result.stderr
    lrdask("predict", tmp_path / "m", data, "--out", out, "--workers", 1)  # once it is free
    assert os.path.exists(f"{out}/_SUCCESS")


def write_lease(out, **fields):
    doc = {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "started": "2026-11-30T00:00:00+00:00",
        "renewed": lease_module._now(),
        "command": "train",
        "token": "x",
        **fields,
    }
    with open(lease_location(str(out)), "w") as fh:
        json.dump(doc, fh)


def dead_pid():
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


@pytest.mark.parametrize(
    ("fields", "live"),
    [
        ({}, True),  # this very process: alive
        ({"pid": "dead"}, False),  # filled in below: a process that has exited
        ({"host": "elsewhere"}, True),  # another host, renewed just now
        ({"host": "elsewhere", "renewed": "2026-01-01T00:00:00+00:00"}, False),
        ({"host": "elsewhere", "renewed": "garbage"}, False),
    ],
    ids=["alive here", "dead here", "fresh elsewhere", "old elsewhere", "unreadable"],
)
def test_a_stale_lease_is_taken_over_and_a_live_one_is_not(tmp_path, fields, live, caplog):
    out = tmp_path / "m"
    if fields.get("pid") == "dead":
        fields = {**fields, "pid": dead_pid()}
    write_lease(out, **fields)
    if live:
        held = pytest.raises(OutputLockedError, match="is being written by another job")
        with held, lease(str(out), "train"):
            pass
        return
    with lease(str(out), "train") as mine:
        with open(lease_location(str(out))) as fh:
            held = json.load(fh)
        assert held["token"] == mine["token"]
    assert "taking over the stale lease" in caplog.text
    assert not os.path.exists(lease_location(str(out)))


def test_of_many_racing_jobs_exactly_one_gets_the_lease(tmp_path):
    out, results, barrier = str(tmp_path / "m"), [], threading.Barrier(8)

    def contender():
        doc = {"host": "h", "pid": 1, "renewed": lease_module._now(), "token": os.urandom(4).hex()}
        barrier.wait()
        results.append(lease_module._create(lease_location(out), doc, None))

    threads = [threading.Thread(target=contender) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] * 7 + [True]


def test_the_finish_helpers_tolerate_a_concurrent_delete(tmp_path):
    out = str(tmp_path / "m")
    os.makedirs(out)
    withdraw_success(out)  # nothing there: not an error
    checkpoints = Checkpoints(out + "/_ck", 1, {"data": [], "options": {}})
    checkpoints.clear()
    checkpoints.clear()
