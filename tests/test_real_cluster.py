"""Against a real cluster: `dask scheduler` and `dask worker` processes on 127.0.0.1."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import random_problem, write_partitions
from procs import RealCluster, lrdask
from reference import numpy_gradient_descent

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def real_cluster(tmp_path_factory):
    with RealCluster(workers=2, tmp_dir=str(tmp_path_factory.mktemp("cluster"))) as cluster:
        yield cluster


def test_train_and_predict_on_a_real_cluster(real_cluster, tmp_path):
    X, y = random_problem(3000, 4, seed=21)
    data = write_partitions(tmp_path / "data", X, y, [700, 0, 1300, 999, 1])
    out = tmp_path / "model"
    result = lrdask(
        "train",
        data,
        "--label",
        "y",
        "--out",
        out,
        "--alpha",
        0.8,
        "--max-iter",
        40,
        "--tol",
        0,
        "--scheduler",
        real_cluster.address,
    )
    assert f"cluster: scheduler {real_cluster.address}, 2 worker(s)" in result.stderr
    assert "runs as tasks" not in result.stderr  # every pass took the fast path
    doc = json.loads((out / "model.json").read_text())
    w, b, costs = numpy_gradient_descent(X, y, 0.8, 40)
    np.testing.assert_allclose(doc["coef"], w, rtol=1e-12, atol=1e-12)
    assert doc["intercept"] == pytest.approx(b, rel=1e-12, abs=1e-12)
    np.testing.assert_allclose(doc["training"]["loss_history"][:40], costs, rtol=1e-12)
    assert doc["training"]["n_partitions"] == 4

    preds = tmp_path / "preds"
    lrdask(
        "predict", out, data, "--out", preds, env={"DASK_SCHEDULER_ADDRESS": real_cluster.address}
    )
    proba = pq.read_table(preds)["probability"].to_numpy()
    expected = 1 / (1 + np.exp(-(X @ np.array(doc["coef"]) + doc["intercept"])))
    np.testing.assert_allclose(proba, expected, rtol=1e-12)


def test_scheduler_address_from_environment(real_cluster, tmp_path):
    X, y = random_problem(500, 2, seed=22)
    data = write_partitions(tmp_path / "data", X, y, [250, 250])
    result = lrdask(
        "train",
        data,
        "--label",
        "y",
        "--out",
        tmp_path / "m",
        "--max-iter",
        5,
        env={"DASK_SCHEDULER_ADDRESS": real_cluster.address},
    )
    assert f"scheduler {real_cluster.address}" in result.stderr


def test_unreachable_scheduler_fails_fast(tmp_path):
    from procs import free_port

    X, y = random_problem(50, 2)
    data = write_partitions(tmp_path / "data", X, y, [50])
    result = lrdask(
        "train",
        data,
        "--label",
        "y",
        "--out",
        tmp_path / "m",
        "--scheduler",
        f"tcp://127.0.0.1:{free_port()}",
        "--connect-timeout",
        3,
        check=False,
        timeout=60,
    )
    assert result.returncode == 3
    assert "cannot reach the Dask scheduler" in result.stderr
    assert not (tmp_path / "m" / "model.json").exists()
