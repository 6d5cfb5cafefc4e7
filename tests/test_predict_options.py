"""predict/evaluate --threshold (Spark's threshold: positive when the probability is above
T, decided as margin > logit(T)) and predict --margin (Spark's rawPrediction,
scikit-learn's decision_function), against NumPy references computed here."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import write_partitions
from procs import lrdask
from scipy.special import expit

from lrdask.predict import positive_where

MODEL_THRESHOLD = 0.3  # trained with `lrdask train --threshold 0.3`


@pytest.fixture(scope="module")
def binomial(tmp_path_factory):
    """A no-intercept model, so that the all-zero rows at the top have a margin of exactly
    0 and a probability of exactly 0.5."""
    tmp = tmp_path_factory.mktemp("binomial")
    rng = np.random.default_rng(3)
    X = rng.normal(size=(600, 3)) + [0.5, -0.2, 0.1]
    X[:5] = 0.0
    y = (rng.random(600) < expit(X @ [1.2, -0.8, 0.5])).astype(float)
    data = write_partitions(tmp / "data", X, y, [250, 350])
    model = tmp / "model"
    lrdask(
        "train",
        data,
        "--label",
        "y",
        "--out",
        model,
        "--no-intercept",
        "--solver",
        "lbfgs",
        "--missing",
        "skip",
        "--threshold",
        MODEL_THRESHOLD,
        "--workers",
        1,
    )
    doc = json.loads((model / "model.json").read_text())
    return tmp, data, model, X, y, np.asarray(doc["coef"])


@pytest.fixture(scope="module")
def multinomial(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("multinomial")
    rng = np.random.default_rng(4)
    X = rng.normal(size=(450, 2))
    y = np.argmax(X @ [[1.0, -1.0, 0.2], [0.3, 0.8, -1.1]] + rng.gumbel(size=(450, 3)), axis=1)
    data = write_partitions(tmp / "data", X, y.astype(float), [200, 250])
    model = tmp / "model"
    lrdask("train", data, "--label", "y", "--out", model, "--solver", "lbfgs", "--workers", 1)
    doc = json.loads((model / "model.json").read_text())
    return tmp, data, model, X, y, np.asarray(doc["coef"]), np.asarray(doc["intercept"])


@pytest.mark.parametrize("threshold", [0.1, 0.5, 0.9, None], ids=["0.1", "0.5", "0.9", "model"])
def test_threshold_decides_predictions_and_confusion(binomial, threshold):
    tmp, data, model, X, y, coef = binomial
    name = "model" if threshold is None else str(threshold)
    flag = [] if threshold is None else ["--threshold", threshold]
    out, metrics = tmp / f"preds-{name}", tmp / f"metrics-{name}.json"
    lrdask("predict", model, data, "--out", out, "--workers", 1, *flag)
    lrdask("evaluate", model, data, "--out", metrics, "--workers", 1, *flag)
    used = MODEL_THRESHOLD if threshold is None else threshold
    z = X @ coef
    positive = expit(z) > used  # the NumPy reference: probability above the threshold
    table = pq.read_table(out)
    np.testing.assert_array_equal(table["prediction"].to_numpy() == 1, positive)
    np.testing.assert_allclose(table["probability"].to_numpy(), expit(z), rtol=1e-12)
    truth = y == 1
    doc = json.loads(metrics.read_text())
    assert doc["threshold"] == used
    assert doc["confusion"] == {
        "tn": int(np.sum(~truth & ~positive)),
        "fp": int(np.sum(~truth & positive)),
        "fn": int(np.sum(truth & ~positive)),
        "tp": int(np.sum(truth & positive)),
    }
    if used == 0.5:  # scikit-learn's rule, bit for bit: decision_function > 0
        np.testing.assert_array_equal(positive, z > 0)
        # a probability exactly equal to the threshold is not above it
        assert np.all(table["probability"].to_numpy()[:5] == 0.5)
        assert not np.any(table["prediction"].to_numpy()[:5])


def test_positive_where_is_probability_above_threshold():
    rng = np.random.default_rng(0)
    z = np.concatenate([rng.normal(scale=4, size=2000), [-40.0, 40.0, np.inf, -np.inf]])
    for threshold in [1e-6, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 1 - 1e-6]:
        want = expit(z) > threshold
        np.testing.assert_array_equal(positive_where(z, threshold), want)
    # logit(0.5) is exactly 0: the signs of zero and of the smallest margins decide
    tiny = np.array([0.0, -0.0, 5e-324, -5e-324, np.nan])
    np.testing.assert_array_equal(positive_where(tiny, 0.5), [False, False, True, False, False])


@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_threshold_with_a_multinomial_model_is_an_error(multinomial, command):
    tmp, data, model, *_ = multinomial
    extra = ["--out", tmp / "refused"] if command == "predict" else []
    result = lrdask(command, model, data, "--threshold", 0.4, *extra, "--workers", 1, check=False)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lrdask: error: --threshold is for binomial")
    assert not (tmp / "refused").exists()


def test_margin_columns_multinomial(multinomial):
    tmp, data, model, X, _, coef, intercept = multinomial
    out = tmp / "margins"
    lrdask("predict", model, data, "--out", out, "--margin", "--workers", 1)
    table = pq.read_table(out)
    z = X @ coef.T + intercept
    got = np.column_stack([table[f"margin_{k}"].to_numpy() for k in range(3)])
    np.testing.assert_allclose(got, z, rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(table["prediction"].to_numpy(), z.argmax(axis=1))


def test_margin_binomial_with_skipped_rows(binomial):
    tmp, _, model, X, y, coef = binomial
    holes = X.copy()
    missing = np.zeros(len(X), dtype=bool)
    missing[[7, 100, 400]] = True
    holes[7, 0] = holes[100, 2] = holes[400, 1] = np.nan
    data = write_partitions(tmp / "holes", holes, y, [300, 300])
    out = tmp / "holes-out"
    lrdask("predict", model, data, "--out", out, "--margin", "--workers", 1)
    table = pq.read_table(out)
    for column in ("margin", "probability", "prediction"):
        np.testing.assert_array_equal(
            table[column].is_null().to_numpy(zero_copy_only=False), missing
        )
    z = X[~missing] @ coef
    margin = table["margin"].to_numpy(zero_copy_only=False)[~missing]
    np.testing.assert_allclose(margin, z, rtol=1e-12, atol=1e-15)
    # --margin adds the column and changes nothing else
    without = tmp / "holes-plain"
    lrdask("predict", model, data, "--out", without, "--workers", 1)
    plain = pq.read_table(without)
    assert plain.column_names == ["probability", "prediction"]
    assert table.drop(["margin"]).equals(plain)
