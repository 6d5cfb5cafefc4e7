import json
import logging

import numpy as np
import pytest
from conftest import random_problem, write_partitions
from procs import lrdask

from lrdask import LogisticRegression
from lrdask.checkpoint import Checkpoints, resumable_identity, run_identity
from lrdask.dataset import plan_dataset
from lrdask.solvers import SolverState


def test_identity_depends_on_data_and_options(tmp_path):
    X, y = random_problem(50, 2)
    path = write_partitions(tmp_path / "d", X, y, [25, 25])
    items = plan_dataset(path, "y").fingerprint_items()
    base = run_identity(items, {"alpha": 0.1, "max_iter": 10})
    assert base == run_identity(items, {"max_iter": 10, "alpha": 0.1})
    assert base != run_identity(items, {"alpha": 0.2, "max_iter": 10})
    assert resumable_identity(base) == resumable_identity(
        run_identity(items, {"alpha": 0.1, "max_iter": 99})
    )
    write_partitions(tmp_path / "d", X, y, [20, 30])  # same rows, files rewritten
    assert plan_dataset(path, "y").fingerprint_items() != items


def test_checkpoint_round_trip_and_mismatch(tmp_path, caplog):
    identity = run_identity([("f", 1)], {"alpha": 0.1})
    state = SolverState(np.array([0.1, -0.2, 0.3]), n_iter=7, loss_history=[0.7, 0.6, 0.5])
    Checkpoints(str(tmp_path), 5, identity).save(state)
    resumed = Checkpoints(str(tmp_path), 5, identity).resume()
    assert np.array_equal(resumed.params, state.params)
    assert resumed.n_iter == 7 and resumed.loss_history == [0.7, 0.6]
    other = run_identity([("f", 2)], {"alpha": 0.1})
    with caplog.at_level(logging.WARNING, logger="lrdask"):
        assert Checkpoints(str(tmp_path), 5, other).resume() is None
    assert "written for other data or options" in caplog.text


def test_fit_resumes_and_matches_an_uninterrupted_run(one_client, tmp_path):
    X, y = random_problem(300, 3, seed=4)
    path = write_partitions(tmp_path / "d", X, y, [100, 200])
    ckpt = str(tmp_path / "ckpt")
    whole = LogisticRegression(alpha=0.5, max_iter=40, tol=0, gtol=0).fit(
        path, "y", client=one_client
    )
    first = LogisticRegression(alpha=0.5, max_iter=25, tol=0, gtol=0)
    first.fit(path, "y", client=one_client, checkpoint_dir=ckpt, checkpoint_every=10)
    saved = json.loads((tmp_path / "ckpt" / "checkpoint.json").read_text())
    assert saved["n_iter"] == 20
    second = LogisticRegression(alpha=0.5, max_iter=40, tol=0, gtol=0)
    second.fit(path, "y", client=one_client, checkpoint_dir=ckpt, checkpoint_every=10)
    np.testing.assert_allclose(second.coef_, whole.coef_, rtol=1e-13)
    np.testing.assert_allclose(second.loss_history_, whole.loss_history_, rtol=1e-13)


def test_rerun_of_a_finished_job_is_a_no_op(tmp_path):
    X, y = random_problem(200, 2, seed=6)
    data = write_partitions(tmp_path / "d", X, y, [100, 100])
    args = ["train", data, "--label", "y", "--out", tmp_path / "m", "--max-iter", 5, "--workers", 1]
    lrdask(*args)
    before = (tmp_path / "m" / "model.json").read_bytes()
    again = lrdask(*args)
    assert "already holds the model for this data and these options; nothing to do" in again.stderr
    assert "cluster:" not in again.stderr  # no cluster was started
    assert (tmp_path / "m" / "model.json").read_bytes() == before


def test_no_convergence_can_fail_the_job_and_the_rerun_continues(tmp_path):
    X, y = random_problem(400, 2, seed=7)
    data = write_partitions(tmp_path / "d", X, y, [200, 200])
    base = [
        "train",
        data,
        "--label",
        "y",
        "--out",
        tmp_path / "m",
        "--workers",
        1,
        "--tol",
        1e-9,
        "--fail-on-no-convergence",
    ]
    failed = lrdask(*base, "--max-iter", 5, check=False)
    assert failed.returncode == 4
    assert "not converged (max_iter=5 reached: max |gradient| =" in failed.stderr
    assert not (tmp_path / "m" / "model.json").exists()
    done = lrdask(*base, "--max-iter", 100_000, "--alpha", 2.0, check=False)
    # another alpha is another run: the checkpoint is not resumed silently
    assert "ignoring checkpoint" in done.stderr
    assert done.returncode == 0
    longer = lrdask(*base[:-1], "--out", tmp_path / "m2", "--max-iter", 5, check=False)
    assert longer.returncode == 0


@pytest.mark.parametrize("every", [1, 7])
def test_checkpoint_every_n(tmp_path, every):
    identity = run_identity([], {})
    ck = Checkpoints(str(tmp_path), every, identity)

    class Info:
        def __init__(self, k):
            self.iteration = k
            self.state = SolverState(np.zeros(2), n_iter=k, loss_history=[0.0] * (k + 1))

    saved = []
    for k in range(15):
        ck(Info(k))
        if (tmp_path / "checkpoint.json").exists():
            saved.append(json.loads((tmp_path / "checkpoint.json").read_text())["n_iter"])
    assert sorted(set(saved)) == [k for k in range(1, 15) if k % every == 0]
