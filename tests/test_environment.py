"""What a result's bits depend on besides data and options (issue #14's limits): the
library versions and CPUs are recorded in model.json and the checkpoint; a checkpoint
resumed under another environment, and workers that differ, are said out loud."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from conftest import random_problem, write_partitions
from procs import RealCluster, lrdask

from lrdask import environment
from lrdask.checkpoint import Checkpoints, run_identity
from lrdask.solvers import SolverState


def test_describe_names_every_key_with_a_value():
    found = environment.describe()
    assert list(found) == list(environment.KEYS)
    assert all(isinstance(v, str) and v for v in found.values())
    assert "openblas" in found["blas"] or "mkl" in found["blas"] or "blis" in found["blas"]


@pytest.mark.parametrize("first", ["", "import scipy.linalg, sklearn.linear_model; "])
def test_describe_does_not_depend_on_what_else_the_process_loaded(first):
    """scipy (and scikit-learn through it) load their own OpenBLAS: a worker that imported
    them must describe the same BLAS as one that did not (the one NumPy calls)."""
    import subprocess
    import sys

    code = first + "import json, lrdask.environment as e; print(json.dumps(e.describe()))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == environment.describe()


def test_differences_and_mixed_workers():
    a = environment.describe()
    b = {**a, "numpy": "0.0", "cpu": "other"}
    assert environment.differences(a, a) == []
    assert environment.differences(a, b) == [
        f"numpy: {a['numpy']} vs 0.0",
        f"cpu: {a['cpu']} vs other",
    ]
    assert environment.differences(a, {}) == [f"{k}: {a[k]} vs unknown" for k in a]
    assert environment.mixed_workers_message([a, dict(a), a]) == ""
    message = environment.mixed_workers_message([a, b, a])
    assert message.startswith("the workers run 2 different environments (")
    assert "numpy" in message and "same library versions and CPU type" in message
    assert environment.distinct([b, a, a, b]) == environment.distinct([a, b])


@pytest.mark.parametrize(
    "changed, warned",
    [({}, False), ({"numpy": "1.0"}, True), ({"cpu": "x"}, True), ({"lrdask": "9"}, True)],
)
def test_a_checkpoint_from_another_environment_resumes_with_a_warning(
    tmp_path, caplog, changed, warned
):
    identity = run_identity([("f", 1)], {"alpha": 0.1})
    then = {"driver": environment.describe(), "workers": [environment.describe()]}
    writer = Checkpoints(str(tmp_path), 5, identity)
    writer.environment = then
    writer.save(SolverState(np.array([0.1, 0.2]), n_iter=1, loss_history=[0.7, 0.6]))
    reader = Checkpoints(str(tmp_path), 5, identity)
    reader.environment = {"driver": then["driver"], "workers": [{**then["workers"][0], **changed}]}
    with caplog.at_level(logging.INFO, logger="lrdask"):
        state = reader.resume()
    assert state is not None and state.n_iter == 1  # it still resumes
    assert ("written under another environment" in caplog.text) == warned, caplog.text
    for key, value in changed.items():
        assert f"workers {key}: {then['workers'][0][key]} vs {value}" in caplog.text


@pytest.fixture
def data(tmp_path):
    X, y = random_problem(3000, 3, seed=8)
    return write_partitions(tmp_path / "data", X, y, [1000] * 3)


def test_model_json_records_the_driver_and_worker_environments(tmp_path, data):
    lrdask("train", data, "--label", "y", "--out", tmp_path / "m", "--max-iter", 3,
           "--workers", 2)  # fmt: skip
    doc = json.loads((tmp_path / "m" / "model.json").read_text())
    recorded = doc["training"]["environment"]
    assert recorded == {"driver": environment.describe(), "workers": [environment.describe()]}


@pytest.mark.cluster
def test_workers_that_differ_are_named_before_training(tmp_path, data):
    """A worker whose OpenBLAS runs another CPU's kernels (OPENBLAS_CORETYPE, as on an
    older node): the job warns, with the difference, and records both."""
    with RealCluster(workers=1, tmp_dir=str(tmp_path)) as cluster:
        cluster.add_worker(env={"OPENBLAS_CORETYPE": "Sandybridge"})
        cluster.wait_for_workers(2)
        result = lrdask("train", data, "--label", "y", "--out", tmp_path / "m",
                        "--max-iter", 3, "--scheduler", cluster.address)  # fmt: skip
    assert "the workers run 2 different environments (blas: " in result.stderr
    assert "(Sandybridge)" in result.stderr
    doc = json.loads((tmp_path / "m" / "model.json").read_text())
    assert len(doc["training"]["environment"]["workers"]) == 2
