import json
import logging

import numpy as np
import pytest
from conftest import random_problem, write_partitions
from procs import lrdask
from test_solvers_extra import numpy_objective, run_solver

from lrdask import LogisticRegression
from lrdask.checkpoint import Checkpoints, resumable_identity, run_identity
from lrdask.dataset import plan_dataset
from lrdask.solvers import SolverState, StopRule


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
    state = SolverState(np.array([0.1, -0.2, 0.3]), n_iter=2, loss_history=[0.7, 0.6, 0.5])
    Checkpoints(str(tmp_path), 5, identity).save(state)
    resumed = Checkpoints(str(tmp_path), 5, identity).resume()
    assert np.array_equal(resumed.params, state.params)
    assert resumed.n_iter == 2 and resumed.loss_history == [0.7, 0.6]
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


def test_another_validation_set_is_another_run(tmp_path):
    """The held-out set's history and metrics are in model.json, so the set is part of
    the run's identity with or without early stopping: a finished model is not kept as
    "nothing to do", and a checkpoint is not continued with another set's history."""
    X, y = random_problem(600, 2, seed=6)
    data = write_partitions(tmp_path / "d", X, y, [300, 300])
    valid = write_partitions(tmp_path / "v1", X[:200], y[:200], [200])
    other = write_partitions(tmp_path / "v2", X[200:400], y[200:400], [200])
    args = ["train", data, "--label", "y", "--out", tmp_path / "m", "--max-iter", 20,
            "--validation-every", 5, "--workers", 1]  # fmt: skip
    lrdask(*args, "--validation", valid)
    again = lrdask(*args, "--validation", other, check=False)
    assert again.returncode != 0
    assert "already holds a model trained on other data or options" in again.stderr
    # a checkpoint left by a run on one set (failed to converge: it keeps its checkpoint)
    failing = [*args[:5], tmp_path / "n", *args[6:], "--fail-on-no-convergence"]
    first = lrdask(*failing, "--validation", valid, check=False)
    assert first.returncode == 4 and (tmp_path / "n" / "_checkpoint").exists()
    second = lrdask(*failing, "--validation", other, "--max-iter", 30, check=False)
    assert "resuming from checkpoint" not in second.stderr
    assert "written for other data or options; starting from scratch" in second.stderr


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


class _Crash(Exception):
    pass


# name: (solver of test_solvers_extra.SOLVERS, λ₁, badly scaled columns)
SOLVER_RUNS = {
    "gd": ("gd", 0.0, False),
    "gd-line-search": ("gd+ls", 0.0, False),
    "gd-l1": ("gd", 0.01, False),
    "agd": ("agd", 0.0, False),
    "agd-line-search": ("agd+ls", 0.0, False),
    "lbfgs": ("lbfgs", 0.0, False),
    "lbfgs-l1": ("lbfgs", 0.01, False),
    "lbfgs-scaled": ("lbfgs", 0.0, True),
    "newton": ("newton", 0.0, False),
}


@pytest.mark.parametrize("name", list(SOLVER_RUNS))
def test_every_solver_resumed_from_any_checkpoint_continues_bit_for_bit(tmp_path, name):
    """The kind behind 'a resumed run ends elsewhere': any solver state not in the
    checkpoint. For each solver, interrupt after iteration k (every k up to 12), write the
    checkpoint as JSON, read it back, continue: every number equals the uninterrupted run."""
    X, y = random_problem(400, 4, seed=5)
    solver, l1, scaled = SOLVER_RUNS[name]
    if scaled:
        X = X * np.array([1.0, 100.0, 0.01, 10.0])
    objective = numpy_objective(X, y, l2=1e-3, hessian=solver == "newton")
    n = X.shape[1] + 1

    def solve(state=None, callback=None):
        rule = StopRule(0.0, 1e-10)
        return run_solver(solver, objective, n, 0.5, l1, 60, rule, state, callback)

    full = solve()
    assert full.n_iter >= 4
    identity = run_identity([("f", 1)], {"solver": name})
    for k in range(1, min(13, full.n_iter)):
        keeper = Checkpoints(str(tmp_path / str(k)), 1, identity)

        def crash_after(info, k=k, keeper=keeper):
            if info.iteration == k:
                keeper.save(info.state)
                raise _Crash

        with pytest.raises(_Crash):
            solve(callback=crash_after)
        state = keeper.resume()
        assert state is not None and state.n_iter == k
        done = solve(state)
        assert done.n_iter == full.n_iter and done.status == full.status, k
        assert np.array_equal(done.params, full.params), k
        assert np.array_equal(done.loss_history, full.loss_history), k


@pytest.mark.parametrize(
    "saved_at, max_iter, n_params, resumed",
    [
        (40, 100, 3, True),
        (100, 100, 3, True),  # a run with max_iter 100 passes iteration 100 too
        (101, 100, 3, False),  # past it: a fresh run would have stopped at 100
        (250, 100, 3, False),
        (40, 100, 4, False),  # another number of parameters (other classes or columns)
        (40, 100, 2, False),
    ],
)
def test_a_checkpoint_this_run_could_not_have_written_is_ignored_with_a_warning(
    tmp_path, caplog, saved_at, max_iter, n_params, resumed
):
    """A shorter --max-iter resumed a longer run's checkpoint and published a model that
    a fresh run with these options never gives (n_iter 250 with max_iter 100); a
    checkpoint with another number of parameters was dropped while the log said
    "resuming"."""
    longer = run_identity([("f", 1)], {"alpha": 0.1, "max_iter": 300})
    history = [0.7 - 1e-3 * k for k in range(saved_at + 1)]
    state = SolverState(np.array([0.1, -0.2, 0.3]), n_iter=saved_at, loss_history=history)
    Checkpoints(str(tmp_path), 5, longer).save(state)
    this = run_identity([("f", 1)], {"alpha": 0.1, "max_iter": max_iter})
    with caplog.at_level(logging.INFO, logger="lrdask"):
        found = Checkpoints(str(tmp_path), 5, this).resume(n_params)
    assert (found is not None) == resumed
    if resumed:
        assert found.n_iter == saved_at and "resuming from checkpoint" in caplog.text
    else:
        assert "resuming" not in caplog.text
        assert "ignoring checkpoint" in caplog.text and "starting from scratch" in caplog.text
