"""--family multinomial: softmax over K classes on the same partial-sums pattern."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import write_partitions
from procs import lrdask
from scipy.special import softmax

from lrdask import LogisticRegression
from lrdask.errors import DataError


def iris():
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True)
    return (X - X.mean(axis=0)) / X.std(axis=0), y.astype(float)


def sklearn_multinomial(X, y, l2):
    from sklearn.linear_model import LogisticRegression as SkLogistic

    sk = SkLogistic(C=1.0 / (l2 * len(y)), tol=1e-12, max_iter=100_000).fit(X, y)
    return sk


@pytest.mark.parametrize("solver", ["lbfgs", "agd"])
def test_multinomial_reaches_sklearn_solution(one_client, tmp_path, solver):
    X, y = iris()
    path = write_partitions(tmp_path / "d", X, y, [40, 60, 50])
    l2 = 0.01
    model = LogisticRegression(
        family="multinomial", solver=solver, l2=l2, tol=0.0, gtol=0, max_iter=20_000, alpha=1.0
    )
    model.fit(path, "y", client=one_client)
    sk = sklearn_multinomial(X, y, l2)
    np.testing.assert_allclose(model.coef_, sk.coef_, atol=1e-6)
    np.testing.assert_allclose(model.intercept_, sk.intercept_, atol=1e-6)
    assert model.coef_.shape == (3, 4) and list(model.classes_) == [0, 1, 2]
    assert model.loss_history_[0] == pytest.approx(np.log(3))
    proba = model.predict_proba(X)
    np.testing.assert_allclose(proba, sk.predict_proba(X), atol=1e-6)
    assert np.array_equal(model.predict(X), sk.predict(X).astype(int))


def test_multinomial_gd_is_the_softmax_update(one_client, tmp_path):
    X, y = iris()
    path = write_partitions(tmp_path / "d", X, y, [75, 75])
    alpha, iterations = 0.7, 15
    model = LogisticRegression(
        family="multinomial", alpha=alpha, max_iter=iterations, tol=0, gtol=0
    )
    model.fit(path, "y", client=one_client)
    W, b = np.zeros((4, 3)), np.zeros(3)
    onehot = np.eye(3)[y.astype(int)]
    for _ in range(iterations):
        residual = softmax(X @ W + b, axis=1) - onehot
        W, b = W - alpha * X.T @ residual / len(y), b - alpha * residual.mean(axis=0)
    np.testing.assert_allclose(model.coef_, W.T, rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(model.intercept_, b, rtol=1e-11, atol=1e-13)


def test_multinomial_save_load_and_refusals(one_client, tmp_path):
    X, y = iris()
    path = write_partitions(tmp_path / "d", X, y, [150])
    model = LogisticRegression(family="multinomial", solver="lbfgs", max_iter=20)
    model.fit(path, "y", client=one_client).save(str(tmp_path / "m"))
    loaded = LogisticRegression.load(str(tmp_path / "m"))
    assert np.array_equal(loaded.coef_, model.coef_) and loaded.family == "multinomial"
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    gap = y.copy()
    gap[gap == 1] = 3  # classes 0, 2, 3: three classes, whatever their values
    gapped = LogisticRegression(family="multinomial", solver="lbfgs", max_iter=20).fit(
        write_partitions(tmp_path / "g", X, gap, [150]), "y", client=one_client
    )
    assert list(gapped.classes_) == [0, 2, 3]
    # value 3 (index 2) holds the rows of class 1: the same model with classes permuted
    np.testing.assert_allclose(gapped.coef_, model.coef_[[0, 2, 1]], rtol=1e-12, atol=1e-12)
    with pytest.raises(DataError, match="holds 3 distinct values .* binomial family needs"):
        LogisticRegression(family="binomial").fit(path, "y", client=one_client)


def test_cli_multinomial_train_predict_evaluate(tmp_path):
    X, y = iris()
    data = write_partitions(tmp_path / "d", X, y, [50, 50, 50])
    model, preds = tmp_path / "m", tmp_path / "p"
    common = ["--workers", 1]
    lrdask(
        "train",
        data,
        "--label",
        "y",
        "--out",
        model,
        "--family",
        "multinomial",
        "--solver",
        "lbfgs",
        "--l2",
        0.01,
        *common,
    )
    doc = json.loads((model / "model.json").read_text())
    assert doc["family"] == "multinomial" and doc["classes"] == [0, 1, 2]
    assert np.shape(doc["coef"]) == (3, 4)
    lrdask("predict", model, data, "--out", preds, "--keep", "y", *common)
    table = pq.read_table(preds)
    assert {"probability_0", "probability_1", "probability_2", "prediction"} <= set(
        table.column_names
    )
    total = sum(table[f"probability_{k}"].to_numpy() for k in range(3))
    np.testing.assert_allclose(total, 1.0, rtol=1e-12)
    accuracy = np.mean(table["prediction"].to_numpy() == table["y"].to_numpy())
    result = json.loads(lrdask("evaluate", model, data, *common).stdout)
    assert result["accuracy"] == pytest.approx(accuracy) and accuracy > 0.9
    assert len(result["per_class"]) == 3 and np.sum(result["confusion"]) == 150
