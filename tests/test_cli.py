"""End to end through the installed ``lrdask`` command, with the embedded LocalCluster."""

import json
import os

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import random_problem, write_partitions
from procs import lrdask

from lrdask.cli import cli


def test_make_data_train_predict(tmp_path):
    data, model, preds = tmp_path / "data", tmp_path / "model", tmp_path / "preds"
    lrdask("make-data", data, "--rows", 20_000, "--features", 5, "--partitions", 4, "--seed", 7)
    truth = json.loads((data / "_truth.json").read_text())
    assert sorted(os.listdir(data)) == ["_truth.json"] + [f"part-0000{i}.parquet" for i in range(4)]

    result = lrdask(
        "train",
        data,
        "--label",
        "y",
        "--out",
        model,
        "--workers",
        2,
        "--alpha",
        1.0,
        "--max-iter",
        300,
        "--log-every",
        50,
    )
    assert result.stdout.strip() == str(model / "model.json")
    assert "Dask dashboard: http" in result.stderr
    assert "iteration 50 cost" in result.stderr
    doc = json.loads((model / "model.json").read_text())
    assert doc["training"]["n_rows"] == 20_000 and doc["features"] == truth["features"]
    history = doc["training"]["loss_history"]
    assert history[0] == pytest.approx(np.log(2)) and history[-1] < 0.8 * history[0]
    assert np.all(np.diff(history) < 0)
    cosine = (
        np.dot(doc["coef"], truth["coef"])
        / np.linalg.norm(doc["coef"])
        / np.linalg.norm(truth["coef"])
    )
    assert cosine > 0.98

    lrdask("predict", model, data, "--out", preds, "--keep", "y,x0", "--workers", 2)
    assert (preds / "_SUCCESS").exists()
    table = pq.read_table(preds, columns=["y", "x0", "probability", "prediction"])
    assert table.num_rows == 20_000
    y = table["y"].to_numpy()
    accuracy = np.mean(table["prediction"].to_numpy() == y)
    inputs = pq.read_table(data)
    X = np.column_stack([inputs[f].to_numpy() for f in truth["features"]])
    np.testing.assert_array_equal(np.sort(X[:, 0]), np.sort(table["x0"].to_numpy()))
    best = np.mean(((X @ truth["coef"] + truth["intercept"]) > 0) == inputs["y"].to_numpy())
    assert accuracy > 0.5 + 0.2  # far above chance
    assert accuracy > best - 0.02  # and close to what the true weights achieve


def test_train_refuses_to_overwrite_then_overwrites(tmp_path):
    X, y = random_problem(200, 2, seed=1)
    data = write_partitions(tmp_path / "data", X, y, [100, 100])
    out = tmp_path / "model"
    lrdask("train", data, "--label", "y", "--out", out, "--workers", 1, "--max-iter", 3)
    before = (out / "model.json").read_text()
    again = lrdask(
        "train", data, "--label", "y", "--out", out, "--workers", 1, "--max-iter", 5, check=False
    )
    assert again.returncode == 2
    assert again.stderr.strip().splitlines()[-1].startswith("lrdask: error: ")
    assert "pass --overwrite" in again.stderr
    assert (out / "model.json").read_text() == before
    lrdask(
        "train", data, "--label", "y", "--out", out, "--workers", 1, "--max-iter", 5, "--overwrite"
    )
    assert json.loads((out / "model.json").read_text())["training"]["n_iter"] == 5


def test_help_explains_every_option():
    from click.testing import CliRunner

    runner = CliRunner()
    for command in cli.commands.values():
        text = runner.invoke(cli, [command.name, "--help"]).output
        for param in command.params:
            if param.param_type_name == "option":
                assert param.help, f"{command.name} {param.opts} has no help text"
                assert param.opts[0] in text


def test_help_and_version_exit_0_from_the_console_command():
    """click's own control flow (--help, --version) inside a command is not an error."""
    calls = [["--help"], ["--version"]] + [
        [name, flag] for name in sorted(cli.commands) for flag in ("--help", "-h")
    ]
    for args in calls:
        result = lrdask(*args, check=False)
        assert result.returncode == 0, (args, result.stderr)
        assert result.stderr == "", (args, result.stderr)
        assert result.stdout.strip(), args


@pytest.mark.parametrize(
    "args, message",
    [
        (["--label", "why"], "label column 'why' not found; did you mean 'y'?"),
        (["--label", "y", "--alpha", "-1"], "-1.0 is not in the range x>0"),
        (["--label", "y", "--alpha", "fast"], "'fast' is not a valid float"),
    ],
)
def test_bad_input_fails_fast_with_one_line(tmp_path, args, message):
    from click.testing import CliRunner

    X, y = random_problem(20, 2)
    data = write_partitions(tmp_path / "data", X, y, [20])
    result = CliRunner().invoke(cli, ["train", data, "--out", str(tmp_path / "m"), *args])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not (tmp_path / "m" / "model.json").exists()


def test_train_with_lbfgs_and_l2(tmp_path):
    X, y = random_problem(600, 3, seed=4)
    data = write_partitions(tmp_path / "data", X, y, [300, 300])
    lrdask(
        "train",
        data,
        "--label",
        "y",
        "--out",
        tmp_path / "m",
        "--solver",
        "lbfgs",
        "--l2",
        0.01,
        "--tol",
        1e-12,
        "--workers",
        1,
    )
    doc = json.loads((tmp_path / "m" / "model.json").read_text())
    assert doc["solver"] == "lbfgs" and doc["options"]["l2"] == 0.01
    assert doc["training"]["converged"] and doc["training"]["n_iter"] < 100


def test_train_with_every_model_option(tmp_path):
    from test_options import write_weighted

    X, y = random_problem(800, 3, seed=31, scale=3.0)
    weights = np.random.default_rng(2).uniform(0.5, 2.0, size=800)
    data = write_weighted(tmp_path / "data", X[:600], y[:600], weights[:600], [300, 300])
    held = write_partitions(tmp_path / "held", X[600:], y[600:], [200])
    common = ["--label", "y", "--workers", 1, "--weight-col", "w", "--standardize"]
    lrdask("train", data, "--out", tmp_path / "a", "--max-iter", 5, *common)
    lrdask(
        "train",
        data,
        "--out",
        tmp_path / "m",
        "--solver",
        "agd",
        "--line-search",
        "--l1",
        0.001,
        "--l2",
        0.001,
        "--class-weight",
        "balanced",
        "--init",
        tmp_path / "a",
        "--validation",
        held,
        "--validation-every",
        3,
        "--early-stopping",
        2,
        "--tol",
        0,
        "--gtol",
        0,
        "--max-iter",
        200,
        *common,
    )
    doc = json.loads((tmp_path / "m" / "model.json").read_text())
    options = doc["options"]
    assert (options["solver"], options["line_search"], options["l1"]) == ("agd", True, 0.001)
    assert options["weight_col"] == "w" and options["class_weight"] == "balanced"
    assert options["standardize"] and options["init"] == str(tmp_path / "a")
    assert doc["features"] == ["x0", "x1", "x2"]  # the weight column is not a feature
    training = doc["training"]
    assert training["loss_history"][0] < np.log(2)  # warm start: not from w = 0
    assert [k for k, _ in training["validation_history"]][:3] == [0, 3, 6]
    assert training["n_passes"] > training["n_iter"]
    assert set(training["metrics"]["validation"]) >= {"log_loss", "roc_auc", "accuracy"}
    assert len(training["standardization"]["mean"]) == 3
    metrics = json.loads((tmp_path / "m" / "metrics.json").read_text())
    assert metrics["solver"] == "agd" and metrics["validation"]["rows"] == 200


def strict_json(text: str):
    """Python's json with NaN/Infinity refused, as JavaScript's JSON.parse does."""

    def refuse(constant):
        raise ValueError(f"not strict JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def test_categorical_table_with_yes_no_label_end_to_end(tmp_path):
    """make-data with categoricals (rare levels, nulls) and a yes/no label: train, predict,
    evaluate and info each in one command, all speaking in the label's own values."""
    data, model, preds = tmp_path / "data", tmp_path / "model", tmp_path / "preds"
    lrdask(
        "make-data",
        data,
        "--rows",
        8000,
        "--features",
        3,
        "--partitions",
        3,
        "--categorical",
        3,
        "--label-values",
        "no,yes",
    )
    truth = json.loads((data / "_truth.json").read_text())
    failed = lrdask("train", data, "--label", "y", "--out", model, check=False)
    assert failed.returncode == 2
    assert failed.stderr.strip().splitlines()[-1].startswith("lrdask: error: ")
    assert "pass --categorical c0 (or --categorical auto)" in failed.stderr
    failed = lrdask(
        "train", data, "--label", "y", "--out", model, "--categorical", "auto", check=False
    )
    assert failed.returncode == 2 and "null value(s); pass --missing mean" in failed.stderr
    result = lrdask(
        "train",
        data,
        "--label",
        "y",
        "--out",
        model,
        "--categorical",
        "auto",
        "--missing",
        "mean",
        "--solver",
        "newton",
        "--min-count",
        80,
        "--workers",
        2,
    )
    assert "positive class 'yes'" in result.stderr
    assert "categorical 'c1': 10 level(s)" in result.stderr
    assert "row(s) of rarer levels as '(other)'" in result.stderr
    doc = strict_json((model / "model.json").read_text())
    assert doc["classes"] == ["no", "yes"] and doc["family"] == "binomial"
    encoding = doc["encoding"]
    assert [c["name"] for c in encoding["categorical"]] == ["c0", "c1", "c2"]
    for column in encoding["categorical"]:
        assert column["reference"] == column["levels"][0]  # unpenalized: treatment coding
        assert column["missing_rows"] > 0 and "(missing)" in column["slots"]
    c2 = encoding["categorical"][2]
    assert c2["other_rows"] > 0 and "(other)" in c2["slots"]  # rare levels folded
    # the coefficients recover the true level effects (relative to the reference level)
    coef = dict(zip(doc["features"], doc["coef"], strict=True))
    effects = truth["categorical"]["c1"]
    for level, effect in list(effects.items())[1:4]:
        assert coef[f"c1={level}"] == pytest.approx(effect - effects["c1_0"], abs=0.35)

    lrdask("predict", model, data, "--out", preds, "--keep", "y", "--workers", 2)
    table = pq.read_table(preds)
    assert set(table["prediction"].to_pylist()) == {"no", "yes"}
    accuracy = np.mean(np.array(table["prediction"].to_pylist()) == table["y"].to_numpy())
    assert accuracy > 0.75

    out = tmp_path / "metrics.json"
    result = lrdask("evaluate", model, data, "--out", out, "--workers", 2)
    metrics = strict_json(out.read_text())
    assert metrics["positive_class"] == "yes" and metrics["accuracy"] == pytest.approx(accuracy)

    info = lrdask("info", model).stdout
    assert "positive   'yes'" in info and "categorical 'c1':" in info and "(missing)" in info
    doc = strict_json(lrdask("info", model, "--json").stdout)
    levels = doc["categorical"][1]["levels"]
    assert abs(levels[0]["weight"]) >= abs(levels[-1]["weight"])  # strongest first
    for name in ("metrics.json",):
        strict_json((model / name).read_text())


def test_evaluate_on_one_class_writes_strict_json_with_a_note(tmp_path):
    X, y = random_problem(400, 2, seed=3)
    data = write_partitions(tmp_path / "d", X, y, [200, 200])
    negatives = write_partitions(tmp_path / "neg", X[y == 0], y[y == 0], [int((y == 0).sum())])
    lrdask("train", data, "--label", "y", "--out", tmp_path / "m", "--workers", 1)
    out = tmp_path / "metrics.json"
    result = lrdask("evaluate", tmp_path / "m", negatives, "--out", out, "--workers", 1)
    metrics = strict_json(out.read_text())
    assert metrics["roc_auc"] is None and "only one class" in metrics["notes"]["roc_auc"]
    assert strict_json(result.stdout)["pr_auc"] is None
    assert "roc_auc is undefined" in result.stderr
