import json
import os
from pathlib import Path

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from conftest import random_problem, write_partitions
from distributed import Client, LocalCluster
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference import numpy_gradient_descent

from lrdask import LogisticRegression
from lrdask.errors import ConfigError, DataError, ModelError


def fit_gd(client, path, alpha, iterations, **kw):
    model = LogisticRegression(alpha=alpha, max_iter=iterations, tol=0.0, gtol=0)
    return model.fit(path, label="y", client=client, **kw)


def assert_matches_reference(model, X, y, alpha, iterations):
    w, b, costs = numpy_gradient_descent(X, y, alpha, iterations)
    np.testing.assert_allclose(model.coef_, w, rtol=1e-12, atol=1e-12)
    assert model.intercept_ == pytest.approx(b, rel=1e-12, abs=1e-12)
    np.testing.assert_allclose(model.loss_history_[:iterations], costs, rtol=1e-12)
    assert model.n_iter_ == iterations


@st.composite
def partition_sizes(draw):
    """1 to 17 files of uneven sizes, empty files allowed, at least 2 rows overall."""
    sizes = draw(st.lists(st.integers(0, 40), min_size=1, max_size=17))
    if sum(sizes) < 2:
        sizes[0] += 2
    return sizes


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    sizes=partition_sizes(),
    features=st.integers(1, 5),
    seed=st.integers(0, 2**16),
    row_group=st.sampled_from([None, 7]),
)
def test_distributed_equals_numpy_for_any_partitioning(
    client, tmp_path, sizes, features, seed, row_group
):
    X, y = random_problem(sum(sizes), features, seed)
    path = write_partitions(tmp_path / "data", X, y, sizes, row_group_size=row_group)
    model = fit_gd(client, path, alpha=0.5, iterations=25)
    assert_matches_reference(model, X, y, 0.5, 25)
    assert model.n_rows_ == len(y)


@pytest.mark.parametrize("sizes", [[300], [100, 100, 100], [1, 0, 150, 7, 0, 142] + [0] * 11])
def test_partition_counts_1_3_17(client, tmp_path, sizes):
    X, y = random_problem(300, 4, seed=len(sizes))
    path = write_partitions(tmp_path / "data", X, y, sizes)
    model = fit_gd(client, path, alpha=1.0, iterations=60)
    assert_matches_reference(model, X, y, 1.0, 60)


def test_tiny_pieces_split_files_by_row_group(one_client, tmp_path, monkeypatch):
    import lrdask.dataset as dataset

    X, y = random_problem(200, 3, seed=9)
    path = write_partitions(tmp_path / "data", X, y, [120, 80], row_group_size=10)
    monkeypatch.setattr(dataset, "TARGET_PIECE_VALUES", 3 * 25)
    model = fit_gd(one_client, path, alpha=0.7, iterations=20)
    # 25-row pieces hold two 10-row groups: 120 rows -> 6 pieces, 80 rows -> 4 pieces
    assert model.n_partitions_ == 10
    assert_matches_reference(model, X, y, 0.7, 20)


def test_dask_dataframe_input(one_client):
    X, y = random_problem(250, 3, seed=5)
    frame = pd.DataFrame(X, columns=["a", "b", "c"]).assign(label=y.astype(int))
    ddf = dd.from_pandas(frame, npartitions=4)
    model = LogisticRegression(alpha=0.5, max_iter=30, tol=0, gtol=0).fit(
        ddf, label="label", client=one_client
    )
    assert_matches_reference(model, X, y, 0.5, 30)
    assert list(model.feature_names_in_) == ["a", "b", "c"]


def test_convergence_reaches_sklearn_log_loss_on_diabetes(one_client, tmp_path):
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import LogisticRegression as SkLogistic
    from sklearn.metrics import log_loss

    X, target = load_diabetes(return_X_y=True)
    y = (target > np.median(target)).astype(float)
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    path = write_partitions(tmp_path / "diabetes", X, y, [150, 150, 142])
    sk = SkLogistic(C=np.inf, tol=1e-12, max_iter=10_000).fit(X, y)
    optimum = log_loss(y, sk.predict_proba(X))
    model = LogisticRegression(alpha=2.0, max_iter=1500, tol=1e-10, gtol=1e-10).fit(
        path, label="y", client=one_client
    )
    ours = log_loss(y, model.predict_proba(X))
    assert model.loss_history_[-1] == pytest.approx(ours, rel=1e-12)
    assert (ours - optimum) / optimum < 1e-4
    assert model.loss_history_[0] == pytest.approx(np.log(2))
    assert all(np.diff(model.loss_history_) <= 1e-15)


def test_stops_when_cost_stops_improving(one_client, tmp_path):
    X, y = random_problem(400, 3, seed=11)
    path = write_partitions(tmp_path / "data", X, y, [200, 200])
    model = LogisticRegression(alpha=1.0, max_iter=10_000, tol=1e-7, gtol=0.0).fit(
        path, label="y", client=one_client
    )
    assert model.status_ == "stalled" and not model.converged_  # gtol 0 never holds
    assert model.stop_reason_.startswith("stalled: the objective changed by at most tol=1e-07")
    assert model.n_iter_ < 10_000
    history = model.loss_history_
    assert len(history) == model.n_iter_ + 1
    assert 0 <= history[-2] - history[-1] <= 1e-7
    assert all(history[k - 1] - history[k] > 1e-7 for k in range(1, len(history) - 1))


def test_save_load_round_trip_is_exact(one_client, tmp_path):
    X, y = random_problem(120, 4, seed=3)
    path = write_partitions(tmp_path / "data", X, y, [60, 60])
    model = fit_gd(one_client, path, alpha=0.3, iterations=15)
    location = model.save(str(tmp_path / "model"))
    doc = json.loads(Path(location).read_text())
    assert doc["features"] == ["x0", "x1", "x2", "x3"] and doc["label"] == "y"
    assert doc["training"]["n_rows"] == 120 and doc["training"]["n_iter"] == 15
    assert len(doc["training"]["loss_history"]) == 16
    loaded = LogisticRegression.load(str(tmp_path / "model"))
    assert np.array_equal(loaded.coef_, model.coef_)
    assert loaded.intercept_ == model.intercept_
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    assert [f for f in os.listdir(tmp_path / "model")] == ["model.json"]


def test_predict_shapes_and_parquet_input(one_client, tmp_path):
    X, y = random_problem(90, 2, seed=8)
    path = write_partitions(tmp_path / "data", X, y, [45, 45])
    model = fit_gd(one_client, path, alpha=0.5, iterations=10)
    proba = model.predict_proba(X)
    assert proba.shape == (90, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    lazy = model.predict_proba(path).compute()
    np.testing.assert_allclose(lazy, proba, rtol=1e-15)
    assert set(model.predict(X)) <= {0, 1}
    with pytest.raises(DataError, match="X has 1 features, but LogisticRegression is expecting 2"):
        model.predict_proba(X[:, :1])


@pytest.mark.parametrize(
    "name, value, expected",
    [
        ("alpha", -1, "must be a float > 0. Got -1 instead."),
        ("alpha", "fast", "must be a float > 0"),
        ("max_iter", 0, "must be an int >= 1. Got 0 instead."),
        ("tol", -0.1, "must be a float >= 0"),
        ("dtype", "int8", "'float64' or 'float32'"),
    ],
)
def test_bad_parameters_are_named(name, value, expected):
    model = LogisticRegression(**{name: value})
    with pytest.raises(ConfigError, match=f"The '{name}' parameter of LogisticRegression") as e:
        model.fit("unused", label="y")
    assert expected in str(e.value)


def test_load_rejects_corrupt_model(tmp_path):
    (tmp_path / "model.json").write_text('{"format": "lrdask-model", "coef": [')
    with pytest.raises(ModelError, match="not a valid lrdask model"):
        LogisticRegression.load(str(tmp_path))


def test_task_path_and_fast_path_agree(tmp_path, monkeypatch):
    import lrdask.scheduling as scheduling

    X, y = random_problem(500, 3, seed=12)
    path = write_partitions(tmp_path / "data", X, y, [100, 250, 80, 0, 70])
    cluster = LocalCluster(
        n_workers=3, threads_per_worker=1, processes=False, dashboard_address=":0"
    )
    with cluster, Client(cluster) as client:
        fast = fit_gd(client, path, alpha=0.8, iterations=30)
        monkeypatch.setattr(scheduling, "FAST_PATH", False)  # every pass as tasks
        monkeypatch.setattr(scheduling, "FAN_IN", 2)  # 3 worker folds -> a merge level
        slow = fit_gd(client, path, alpha=0.8, iterations=30)
    assert_matches_reference(slow, X, y, 0.8, 30)
    np.testing.assert_allclose(slow.coef_, fast.coef_, rtol=1e-14, atol=1e-15)


def test_streaming_mode_equals_cached_mode(one_client, tmp_path):
    X, y = random_problem(400, 3, seed=13)
    path = write_partitions(tmp_path / "data", X, y, [100, 0, 300], row_group_size=50)
    model = LogisticRegression(alpha=0.6, max_iter=25, tol=0, gtol=0)
    model.fit(path, "y", client=one_client, cache=False)
    assert_matches_reference(model, X, y, 0.6, 25)
    assert model.n_rows_ == 400


def test_streaming_mode_validates_too(one_client, tmp_path):
    X, y = random_problem(100, 2, seed=14)
    X[3, 1] = np.nan
    path = write_partitions(tmp_path / "data", X, y, [50, 50])
    with pytest.raises(DataError, match="column 'x1' has 1 null or NaN value"):
        LogisticRegression().fit(path, "y", client=one_client, cache=False)


def test_float32_storage_matches_to_1e6(one_client, tmp_path):
    X, y = random_problem(600, 4, seed=15)
    path = write_partitions(tmp_path / "data", X, y, [300, 300])
    model = LogisticRegression(alpha=0.5, max_iter=40, tol=0, gtol=0, dtype="float32")
    model.fit(path, "y", client=one_client)
    w, b, _ = numpy_gradient_descent(X, y, 0.5, 40)
    np.testing.assert_allclose(model.coef_, w, rtol=1e-6, atol=1e-7)
    assert abs(model.intercept_ - b) < 1e-7
    assert np.abs(model.coef_ - w).max() > 0  # float32 storage really was used


def test_many_small_files_are_folded_in_few_blocks_with_the_same_result(one_client, tmp_path):
    X, y = random_problem(600, 3, seed=17)
    path = write_partitions(tmp_path / "d", X, y, [20] * 30)
    model = fit_gd(one_client, path, 0.5, 20)
    assert_matches_reference(model, X, y, 0.5, 20)
    assert model.n_partitions_ == 1  # 600 rows < BLOCK_ENOUGH_ROWS: the 30 files in one block
