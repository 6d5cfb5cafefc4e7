import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import random_problem, write_partitions
from procs import lrdask
from sklearn import metrics as sk

from lrdask.evaluation import evaluation_sums, metrics
from lrdask.sums import merge_all


def scikit_learn_metrics(X, y, w, b):
    p = 1 / (1 + np.exp(-(X @ w + b)))
    predicted = (p >= 0.5).astype(int)
    return {
        "log_loss": sk.log_loss(y, p),
        "accuracy": sk.accuracy_score(y, predicted),
        "precision": sk.precision_score(y, predicted),
        "recall": sk.recall_score(y, predicted),
        "f1": sk.f1_score(y, predicted),
        "roc_auc": sk.roc_auc_score(y, p),
        "pr_auc": sk.average_precision_score(y, p),
    }


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_from_merged_partition_sums_match_scikit_learn(seed):
    X, y = random_problem(5000, 4, seed=seed)
    w, b = np.random.default_rng(seed).normal(size=4), 0.3
    parts = [
        evaluation_sums(X[a:c], y[a:c], w, b) for a, c in [(0, 1000), (1000, 1001), (1001, 5000)]
    ]
    ours = metrics(merge_all(parts))
    expected = scikit_learn_metrics(X, y, w, b)
    for key in ("log_loss", "accuracy", "precision", "recall", "f1"):
        assert ours[key] == pytest.approx(expected[key], rel=1e-12), key
    assert abs(ours["roc_auc"] - expected["roc_auc"]) <= ours["roc_auc_error_bound"] + 1e-15
    assert ours["roc_auc_error_bound"] < 1e-3
    assert ours["pr_auc"] == pytest.approx(expected["pr_auc"], abs=1e-3)
    assert sum(ours["confusion"].values()) == 5000


def test_evaluate_command(tmp_path):
    X, y = random_problem(4000, 3, seed=5)
    data = write_partitions(tmp_path / "d", X, y, [1500, 2500])
    lrdask(
        "train", data, "--label", "y", "--out", tmp_path / "m", "--solver", "newton", "--workers", 1
    )
    out = tmp_path / "metrics.json"
    result = lrdask("evaluate", tmp_path / "m", data, "--out", out, "--workers", 2)
    printed = json.loads(result.stdout)
    assert printed == json.loads(out.read_text())
    doc = json.loads((tmp_path / "m" / "model.json").read_text())
    expected = scikit_learn_metrics(X, y, np.array(doc["coef"]), doc["intercept"])
    assert printed["log_loss"] == pytest.approx(expected["log_loss"], rel=1e-12)
    assert printed["accuracy"] == pytest.approx(expected["accuracy"], rel=1e-12)
    assert abs(printed["roc_auc"] - expected["roc_auc"]) <= printed["roc_auc_error_bound"]
    assert printed["rows"] == 4000 == pq.read_table(data).num_rows
