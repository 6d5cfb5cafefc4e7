"""Against a real cluster: `dask scheduler` and `dask worker` processes on 127.0.0.1."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import random_problem, write_partitions
from procs import RealCluster, lrdask
from reference import dense_one_hot, numpy_gradient_descent

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
        "--gtol",
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
    assert doc["training"]["n_partitions"] == 1  # 3000 rows: one block (BLOCK_ENOUGH_ROWS)

    preds = tmp_path / "preds"
    lrdask(
        "predict", out, data, "--out", preds, env={"DASK_SCHEDULER_ADDRESS": real_cluster.address}
    )
    proba = pq.read_table(preds)["probability"].to_numpy()
    expected = 1 / (1 + np.exp(-(X @ np.array(doc["coef"]) + doc["intercept"])))
    np.testing.assert_allclose(proba, expected, rtol=1e-12)


def test_categorical_model_on_a_real_cluster(real_cluster, tmp_path):
    """String categoricals with nulls and a yes/no label, gd on real worker processes,
    equal to a dense one-hot NumPy loop; predict writes the label's values."""
    data, out = tmp_path / "data", tmp_path / "model"
    lrdask(
        "make-data",
        data,
        "--rows",
        3000,
        "--features",
        2,
        "--partitions",
        3,
        "--categorical",
        2,
        "--label-values",
        "no,yes",
    )
    lrdask(
        "train",
        data,
        "--label",
        "y",
        "--out",
        out,
        "--categorical",
        "c0,c1",
        "--missing",
        "mean",
        "--alpha",
        0.5,
        "--max-iter",
        30,
        "--tol",
        0,
        "--gtol",
        0,
        "--scheduler",
        real_cluster.address,
    )
    doc = json.loads((out / "model.json").read_text())
    frame = pq.read_table(data).to_pandas()
    X = dense_one_hot(frame, ["x0", "x1"], ["c0", "c1"], missing_level=True)
    y = (frame["y"] == "yes").to_numpy(float)
    w, b, costs = numpy_gradient_descent(X, y, 0.5, 30)
    np.testing.assert_allclose(doc["coef"], w, rtol=1e-12, atol=1e-12)
    assert doc["intercept"] == pytest.approx(b, rel=1e-12, abs=1e-12)
    lrdask("predict", out, data, "--out", tmp_path / "p", "--scheduler", real_cluster.address)
    table = pq.read_table(tmp_path / "p")
    expected = 1 / (1 + np.exp(-(X @ w + b)))
    np.testing.assert_allclose(table["probability"].to_numpy(), expected, rtol=1e-11)
    assert table["prediction"].to_pylist() == ["yes" if p >= 0.5 else "no" for p in expected]


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
