"""Objective options on the cluster path: sample and class weights, standardization,
warm starts, validation data and early stopping — each checked against scikit-learn or
against an equivalent run without the option."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import random_problem, write_partitions
from sklearn.linear_model import LogisticRegression as SkLogistic
from test_solvers_extra import breast_cancer, sklearn_solution

from lrdask import LogisticRegression
from lrdask.errors import ConfigError, DataError


def write_weighted(directory, X, y, weights, sizes):
    path = write_partitions(directory, X, y, sizes)
    start = 0
    for i, n in enumerate(sizes):
        file = f"{path}/part-{i:03d}.parquet"
        table = pq.read_table(file).append_column("w", pa.array(weights[start : start + n]))
        pq.write_table(table, file)
        start += n
    return path


def test_integer_weights_equal_repeated_rows(one_client, tmp_path):
    X, y = random_problem(300, 3, seed=21)
    counts = np.random.default_rng(0).integers(0, 4, size=300).astype(float)
    weighted = write_weighted(tmp_path / "w", X, y, counts, [120, 180])
    repeat = np.repeat(np.arange(300), counts.astype(int))
    repeated = write_partitions(tmp_path / "r", X[repeat], y[repeat], [len(repeat)])
    kw = {"alpha": 0.5, "max_iter": 40, "tol": 0.0}
    a = LogisticRegression(weight_col="w", **kw).fit(weighted, "y", client=one_client)
    b = LogisticRegression(**kw).fit(repeated, "y", client=one_client)
    np.testing.assert_allclose(a.coef_, b.coef_, rtol=1e-11)
    np.testing.assert_allclose(a.loss_history_, b.loss_history_, rtol=1e-12)
    assert "w" not in a.feature_names_in_


def test_weights_reach_sklearn_sample_weight_solution(one_client, tmp_path):
    X, y = random_problem(1000, 4, seed=22)
    weights = np.random.default_rng(1).uniform(0, 3, size=1000)
    path = write_weighted(tmp_path / "w", X, y, weights, [500, 500])
    model = LogisticRegression(solver="newton", l2=0.01, weight_col="w", tol=1e-15, gtol=1e-10)
    model.fit(path, "y", client=one_client)
    coef, intercept = sklearn_solution(X, y, 0.01, sample_weight=weights)
    np.testing.assert_allclose(model.coef_, coef, atol=1e-6)
    assert model.intercept_ == pytest.approx(intercept, abs=1e-6)


def test_balanced_class_weight_reaches_sklearn(one_client, tmp_path):
    X, y = random_problem(1200, 3, seed=23)
    y[:900] = np.where(y[:900] == 1, 0, y[:900])  # make class 1 rare
    path = write_partitions(tmp_path / "d", X, y, [600, 600])
    model = LogisticRegression(
        solver="lbfgs", l2=0.01, class_weight="balanced", tol=1e-15, gtol=1e-10
    )
    model.fit(path, "y", client=one_client)
    coef, intercept = sklearn_solution(X, y, 0.01, class_weight="balanced")
    np.testing.assert_allclose(model.coef_, coef, atol=1e-6)
    assert model.intercept_ == pytest.approx(intercept, abs=1e-6)
    n1 = y.sum()
    assert model.class_weights_[1] == pytest.approx(len(y) / (2 * n1))


def test_negative_weights_are_refused(one_client, tmp_path):
    X, y = random_problem(50, 2, seed=24)
    weights = np.ones(50)
    weights[[3, 7]] = -1.0
    path = write_weighted(tmp_path / "w", X, y, weights, [50])
    with pytest.raises(DataError, match=r"weight column 'w' has 2 negative value\(s\) of 50"):
        LogisticRegression(weight_col="w").fit(path, "y", client=one_client)
    with pytest.raises(DataError, match="weight column 'wt' not found; did you mean 'w'"):
        LogisticRegression(weight_col="wt").fit(path, "y", client=one_client)


@pytest.mark.parametrize("solver", ["lbfgs", "newton"])
def test_standardize_reaches_sklearn_on_scaled_data(one_client, tmp_path, solver):
    X, y = breast_cancer(standardized=False)
    X = np.column_stack([X, np.full(len(y), 7.0)])  # a constant column: weight 0, no NaN
    path = write_partitions(tmp_path / "d", X, y, [200, 369])
    model = LogisticRegression(solver=solver, l2=0.01, standardize=True, tol=1e-15, gtol=1e-10)
    model.fit(path, "y", client=one_client)
    mean, std = X[:, :-1].mean(axis=0), X[:, :-1].std(axis=0)
    coef_s, intercept_s = sklearn_solution((X[:, :-1] - mean) / std, y, 0.01)
    np.testing.assert_allclose(model.coef_[:-1] * std, coef_s, atol=1e-6)  # scaled space
    assert model.intercept_ + mean @ model.coef_[:-1] == pytest.approx(intercept_s, abs=1e-6)
    assert model.coef_[-1] == 0.0
    np.testing.assert_allclose(model.scaling_.mean[:-1], mean, rtol=1e-12)
    np.testing.assert_allclose(model.scaling_.scale[:-1], std, rtol=1e-10)
    proba = model.predict_proba(X)[:, 1]
    from scipy.special import expit

    np.testing.assert_allclose(
        proba, expit((X[:, :-1] - mean) / std @ coef_s + intercept_s), atol=1e-6
    )


def test_standardize_makes_gd_converge_on_badly_scaled_data(one_client, tmp_path):
    X, y = random_problem(2000, 3, seed=25)
    X = X * np.array([1000.0, 1.0, 0.001]) + np.array([5e4, 0.0, -3.0])
    path = write_partitions(tmp_path / "d", X, y, [1000, 1000])
    model = LogisticRegression(alpha=1.0, max_iter=2000, tol=0.0, gtol=1e-8, standardize=True)
    model.fit(path, "y", client=one_client)
    reference = LogisticRegression(solver="newton", tol=1e-15, gtol=1e-10, standardize=True)
    reference.fit(path, "y", client=one_client)
    assert model.converged_ and model.cost_increased_at_ is None
    assert model.loss_history_[-1] == pytest.approx(reference.loss_history_[-1], abs=1e-8)


def test_init_continues_a_run_exactly(one_client, tmp_path):
    X, y = random_problem(400, 3, seed=26)
    path = write_partitions(tmp_path / "d", X, y, [150, 250])
    first = LogisticRegression(alpha=0.5, max_iter=10, tol=0.0, gtol=0).fit(
        path, "y", client=one_client
    )
    first.save(str(tmp_path / "m"))
    second = LogisticRegression(alpha=0.5, max_iter=10, tol=0.0, gtol=0, init=str(tmp_path / "m"))
    second.fit(path, "y", client=one_client)
    whole = LogisticRegression(alpha=0.5, max_iter=20, tol=0.0, gtol=0).fit(
        path, "y", client=one_client
    )
    np.testing.assert_array_equal(second.coef_, whole.coef_)
    assert second.intercept_ == whole.intercept_
    assert second.loss_history_ == whole.loss_history_[10:]
    assert second.fingerprint_ != whole.fingerprint_


def test_init_with_other_features_is_refused(one_client, tmp_path):
    X, y = random_problem(100, 3, seed=27)
    path = write_partitions(tmp_path / "d", X, y, [100])
    LogisticRegression(max_iter=2).fit(path, "y", features=["x0", "x1"], client=one_client).save(
        str(tmp_path / "m")
    )
    with pytest.raises(ConfigError, match="can only start from a model with the same family"):
        LogisticRegression(init=str(tmp_path / "m")).fit(path, "y", client=one_client)


def test_validation_history_and_early_stopping(one_client, tmp_path):
    X, y = random_problem(600, 4, seed=28)
    train = write_partitions(tmp_path / "t", X[:400], y[:400], [200, 200])
    flipped = 1 - y[400:]  # held-out labels that disagree: its cost rises as training fits
    held = write_partitions(tmp_path / "v", X[400:], flipped, [200])
    model = LogisticRegression(alpha=0.5, max_iter=102, tol=0.0, gtol=0, validation_every=5)
    model.fit(train, "y", client=one_client, validation=held)
    steps = [k for k, _ in model.validation_history_]
    assert steps == [*range(0, 102, 5), 102]  # every 5, and the final model
    assert model.validation_history_[0][1] == pytest.approx(np.log(2))
    assert model.validation_metrics_["rows"] == 200
    stopping = LogisticRegression(
        alpha=0.5, max_iter=500, tol=0.0, gtol=0, validation_every=5, early_stopping=3
    )
    stopping.fit(train, "y", client=one_client, validation=held)
    assert stopping.n_iter_ == 15 and stopping.stopped_early_
    assert "early stopping" in stopping.stop_reason_
    costs = [c for _, c in stopping.validation_history_]
    np.testing.assert_allclose(costs, [c for _, c in model.validation_history_[:4]], rtol=1e-12)
    stopping.save(str(tmp_path / "m"))
    doc = json.loads((tmp_path / "m" / "model.json").read_text())
    assert doc["training"]["validation_history"][-1][0] == 15
    assert doc["training"]["metrics"]["validation"]["log_loss"] == pytest.approx(costs[-1])


def test_options_agree_across_streaming_and_dask_dataframe_inputs(one_client, tmp_path):
    import dask.dataframe as dd
    import pandas as pd

    X, y = random_problem(500, 3, seed=29, scale=4.0)
    weights = np.random.default_rng(3).uniform(0, 2, size=500)
    path = write_weighted(tmp_path / "w", X, y, weights, [200, 300])
    params = {"solver": "lbfgs", "l2": 0.01, "weight_col": "w", "standardize": True}
    cached = LogisticRegression(tol=1e-15, gtol=1e-10, **params).fit(path, "y", client=one_client)
    streamed = LogisticRegression(tol=1e-15, gtol=1e-10, **params)
    streamed.fit(path, "y", client=one_client, cache=False)
    frame = pd.DataFrame(X, columns=["x0", "x1", "x2"]).assign(y=y.astype(int), w=weights)
    from_frame = LogisticRegression(tol=1e-15, gtol=1e-10, **params)
    from_frame.fit(dd.from_pandas(frame, npartitions=3), "y", client=one_client)
    for other in (streamed, from_frame):
        np.testing.assert_allclose(other.coef_, cached.coef_, rtol=1e-9)
        assert list(other.feature_names_in_) == ["x0", "x1", "x2"]
    coef, _ = sklearn_solution(
        (X - cached.scaling_.mean) / cached.scaling_.scale, y, 0.01, sample_weight=weights
    )
    np.testing.assert_allclose(cached.coef_ * cached.scaling_.scale, coef, atol=1e-6)


def test_standardize_with_the_sample_variance_matches_spark_scaling(one_client, tmp_path):
    """Spark standardizes with the sample σ (÷ (m − 1)); with a penalty on the
    standardized scale that is another optimum, reached on scikit-learn's side by scaling
    with √(m/(m−1)) × the population σ."""
    X, y = random_problem(300, 3, seed=41)
    path = write_partitions(tmp_path / "d", X, y, [150, 150])
    model = LogisticRegression(
        solver="newton",
        l2=0.05,
        standardize=True,
        standardize_variance="sample",
        tol=1e-15,
        gtol=1e-11,
    ).fit(path, "y", client=one_client)
    m = len(y)
    std = X.std(axis=0) * np.sqrt(m / (m - 1))
    np.testing.assert_allclose(model.scaling_.scale, std, rtol=1e-12)
    Xs = (X - X.mean(axis=0)) / std
    sk = SkLogistic(C=1.0 / (0.05 * m), tol=1e-12, max_iter=10_000).fit(Xs, y)
    np.testing.assert_allclose(model.coef_ * std, sk.coef_[0], atol=1e-6)
