"""A published model always matches the data its fingerprint records (issue "safe to run
unattended", kind 1).

The kind: any read of a data file — the profile pass, the load pass, a streamed pass, a
recompute after a worker died, evaluate, predict — that could see other bytes than the
ones the planner recorded. Every read goes through ``loading._read_piece``, which checks
the identity (bytes, version) of the file it has open against the plan; a streamed pass
also checks that each piece reads as it did when validated. A change stops the job with
one line naming the file (exit 3: a rerun sees the new data), no model, the checkpoint
kept. Each mutation below is tried on each path.
"""

import json
import os
import pathlib

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import random_problem, write_partitions
from procs import RealCluster
from test_faults import finish, start_train, wait_for_line

from lrdask.checkpoint import Checkpoints
from lrdask.dataset import plan_dataset
from lrdask.errors import DataChangedError
from lrdask.estimator import LogisticRegression
from lrdask.solvers import SolverState


def flip_labels(table):
    return table.set_column(
        table.schema.get_field_index("y"), "y", pa.compute.subtract(1, table["y"])
    )


def add_nan(table):
    x0 = table["x0"].to_numpy().copy()
    x0[3] = np.nan
    return table.set_column(0, "x0", pa.array(x0))


def double_rows(table):
    return pa.concat_tables([table, table])


def label_two(table):
    y = table["y"].to_numpy().copy()
    y[5] = 2
    return table.set_column(table.schema.get_field_index("y"), "y", pa.array(y))


def same_bytes(table):
    return table  # rewritten unchanged: a new version all the same


MUTATIONS = {
    "labels flipped": flip_labels,
    "a NaN": add_nan,
    "twice the rows": double_rows,
    "a label 2": label_two,
    "same bytes rewritten": same_bytes,
    "deleted": None,
}


def mutate(path, how, keep_stat=False):
    """Rewrite the Parquet file at ``path`` through ``how`` (atomically, like a writer
    that replaces files); ``keep_stat`` puts the old modification time back. ``how`` =
    None deletes the file."""
    if how is None:
        os.remove(path)
        return
    stat = os.stat(path)
    table = how(pq.read_table(path))
    tmp = f"{os.path.dirname(path)}/.tmp-{os.path.basename(path)}"
    pq.write_table(table, tmp)
    os.replace(tmp, path)
    if keep_stat:
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


@pytest.fixture
def data(tmp_path):
    X, y = random_problem(4000, 3, seed=41)
    return write_partitions(tmp_path / "data", X, y, [1000] * 4)


@pytest.mark.parametrize("cache", [True, False], ids=["cached", "streamed"])
@pytest.mark.parametrize("mutation", MUTATIONS)
def test_a_file_changed_after_planning_stops_the_fit(one_client, data, mutation, cache):
    plan = plan_dataset(data, "y")
    target = plan.files[2].path
    mutate(target, MUTATIONS[mutation])
    with pytest.raises(DataChangedError, match=f"{target}: the file changed while the job ran"):
        LogisticRegression(max_iter=5).fit(plan, "y", client=one_client, cache=cache)


@pytest.mark.parametrize("mutation", ["a NaN", "twice the rows", "a label 2"])
def test_a_streamed_pass_checks_every_read(one_client, data, mutation):
    """Even when the file keeps its size and modification time (a writer that restores
    them), a streamed pass that reads other rows, values or labels than the validating
    read stops the fit."""
    plan = plan_dataset(data, "y")
    target = plan.files[1].path
    model = LogisticRegression(max_iter=50, tol=0, gtol=0, alpha=0.5)

    def change_at_iteration_3(info):
        if info.iteration == 3:
            mutate(target, MUTATIONS[mutation], keep_stat=True)

    with pytest.raises(DataChangedError, match=target):
        model.fit(plan, "y", client=one_client, cache=False, callback=change_at_iteration_3)


def test_predict_and_evaluate_check_the_files_too(one_client, data, tmp_path):
    from lrdask.evaluation import evaluate_dataset
    from lrdask.predict import plan_for_model, write_predictions

    model = LogisticRegression(max_iter=5).fit(data, "y", client=one_client)
    plan = plan_for_model(model, data, "y", None)
    mutate(plan.files[0].path, flip_labels)
    with pytest.raises(DataChangedError, match=plan.files[0].path):
        evaluate_dataset(one_client, model, plan)
    plan = plan_for_model(model, data, None, None)
    mutate(plan.files[3].path, double_rows)
    with pytest.raises(DataChangedError, match=plan.files[3].path):
        write_predictions(one_client, model, plan, str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_no_checkpoint_from_non_finite_numbers(tmp_path):
    checkpoints = Checkpoints(str(tmp_path / "ck"), 1, {"data": [], "options": {"run": 1}})
    checkpoints.save(SolverState(np.array([0.5, 1.0]), 1, [0.7, 0.6]))
    location = pathlib.Path(checkpoints.location)
    before = location.read_bytes()
    for bad in (np.array([np.nan, 1.0]), np.array([np.inf, 0.0])):
        checkpoints.save(SolverState(bad, 2, [0.7, 0.6, 0.5]))
        assert location.read_bytes() == before
    checkpoints.save(SolverState(np.array([0.4, 1.0]), 2, [0.7, 0.6, float("nan")]))
    assert location.read_bytes() == before


@pytest.mark.cluster
@pytest.mark.parametrize("cache", ["--cache", "--no-cache"])
def test_a_job_whose_files_change_mid_run_publishes_nothing(tmp_path, cache):
    """Real scheduler and workers: every file rewritten at iteration 10 (labels flipped).
    Streamed, the next pass reads them; cached, a worker is killed so that its blocks are
    read again. Either way: exit 3, one line naming a file, no model, checkpoint kept."""
    X, y = random_problem(24_000, 4, seed=43)
    data = write_partitions(tmp_path / "data", X, y, [3000] * 8)
    out, checkpoints = tmp_path / "m", tmp_path / "ck"
    with RealCluster(workers=2, tmp_dir=str(tmp_path)) as cluster:
        proc = start_train(
            data,
            "--label",
            "y",
            "--out",
            out,
            "--alpha",
            0.5,
            "--max-iter",
            100_000,
            "--tol",
            0,
            "--gtol",
            0,
            cache,
            "--checkpoint-every",
            5,
            "--checkpoint-dir",
            checkpoints,
            "--scheduler",
            cluster.address,
        )
        try:
            wait_for_line(proc, "iteration 10 cost")
            for name in sorted(os.listdir(data)):
                mutate(os.path.join(data, name), flip_labels)
            if cache == "--cache":  # the one block (24,000 rows) is read again elsewhere
                cluster.add_worker()
                cluster.wait_for_workers(3)
                cluster.kill_worker(0)
                cluster.kill_worker(1)
            code, _, err = finish(proc)
        finally:
            proc.kill()
    last = err.strip().splitlines()[-1]
    assert code == 3, err
    assert last.startswith("lrdask: error: ") and "the file changed while the job ran" in last
    assert str(data) in last
    assert not (out / "model.json").exists() and not (out / "_SUCCESS").exists()
    saved = [f for f in checkpoints.rglob("*") if f.is_file()]
    assert saved and json.loads(saved[0].read_text())["n_iter"] >= 5


def test_a_file_a_worker_cannot_see_names_the_worker_and_the_same_path_rule(one_client, data):
    """A planned file missing where a worker reads it: deleted since, or DATA is on a disk
    that worker does not share with the driver (a separate host). The message names the
    worker and says DATA must be at the same path on every worker."""
    plan = plan_dataset(data, "y")
    target = plan.files[1].path
    os.remove(target)
    with pytest.raises(DataChangedError) as raised:
        LogisticRegression(max_iter=5).fit(plan, "y", client=one_client)
    text = str(raised.value)
    workers = one_client.scheduler_info(n_workers=-1)["workers"]
    assert text.startswith(f"{target}: the file changed while the job ran (now no file at ")
    assert any(f"no file at that path on worker {address};" in text for address in workers)
    assert "DATA is not at the same path on every worker" in text
