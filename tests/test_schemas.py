"""Everything read from a file is validated against a declared schema (issue "safe to run
unattended", kind 5).

The kind: a value read from model.json, a checkpoint or a job config that reaches the
code without its type, range, finiteness or shape checked. model.json and checkpoints go
through ``lrdask.schemas`` (pydantic); a config key through its flag's click type. Each is
tried with a table of damaged documents and a generated fuzz; the only outcomes allowed
are a loaded model or a one-line error (a checkpoint: ignored with a warning).
"""

import copy
import json
import pathlib

import numpy as np
import pytest
from conftest import random_problem, write_partitions
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from procs import lrdask

from lrdask.checkpoint import Checkpoints
from lrdask.errors import ModelError
from lrdask.estimator import LogisticRegression


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    base = tmp_path_factory.mktemp("schemas")
    X, y = random_problem(600, 3, seed=71)
    data = write_partitions(base / "data", X, y, [300, 300])
    lrdask("train", data, "--label", "y", "--out", base / "m", "--max-iter", 5, "--workers", 1)
    return data, json.loads((base / "m" / "model.json").read_text())


def damaged(doc, path, value):
    out = copy.deepcopy(doc)
    target = out
    for key in path[:-1]:
        target = target[key]
    if value is DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return out


DELETE = object()
CASES = {
    "intercept NaN": (("intercept",), float("nan")),
    "intercept Infinity": (("intercept",), float("inf")),
    "intercept null": (("intercept",), None),
    "intercept of two": (("intercept",), [0.1, 0.2]),
    "coef too short": (("coef",), [0.1]),
    "coef with a string": (("coef",), [0.1, "x", 0.3]),
    "coef NaN": (("coef",), [0.1, float("nan"), 0.3]),
    "options a list": (("options",), [1, 2]),
    "no training": (("training",), DELETE),
    "n_iter negative": (("training", "n_iter"), -1),
    "n_iter a string": (("training", "n_iter"), "5"),
    "format": (("format",), "other"),
    "format_version 99": (("format_version",), 99),
    "no features": (("features",), []),
    "family unknown": (("family",), "poisson"),
}


def write_model(directory: pathlib.Path, text: str) -> str:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "model.json").write_text(text)
    return str(directory)


@pytest.mark.parametrize("case", CASES)
def test_a_damaged_model_json_is_one_error(trained, tmp_path, case):
    _, doc = trained
    path, value = CASES[case]
    text = json.dumps(damaged(doc, path, value))  # NaN/Infinity as a lax writer would
    model_dir = write_model(tmp_path / "m", text)
    with pytest.raises(ModelError, match="not a valid lrdask model"):
        LogisticRegression.load(model_dir)


@pytest.mark.parametrize(
    "text",
    ["[1, 2, 3]", '"model"', "{", "[" * 100_000 + "]" * 100_000, '{"format": ' * 5000],
    ids=["top-level array", "a string", "truncated", "100000 deep", "5000 deep, unclosed"],
)
def test_a_model_json_that_is_not_an_object_is_one_error(tmp_path, text):
    with pytest.raises(ModelError, match="not a valid lrdask model"):
        LogisticRegression.load(write_model(tmp_path / "m", text))


def test_the_cli_says_it_in_one_line(trained, tmp_path):
    data, doc = trained
    model_dir = write_model(tmp_path / "m", json.dumps(damaged(doc, ("intercept",), [1, 2])))
    for args in (("info", model_dir), ("predict", model_dir, data, "--out", tmp_path / "p")):
        result = lrdask(*args, check=False)
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert lines[-1].startswith("lrdask: error: ") and "not a valid lrdask model" in lines[-1]
        assert "Traceback" not in result.stderr


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    key=st.sampled_from(
        [
            "coef",
            "intercept",
            "features",
            "classes",
            "options",
            "training",
            "encoding",
            "family",
            "label",
            "format_version",
        ]
    ),
    value=JSON,
)
def test_any_value_anywhere_loads_or_is_one_model_error(trained, tmp_path, key, value):
    _, doc = trained
    model_dir = write_model(tmp_path / "fuzz", json.dumps(damaged(doc, (key,), value)))
    try:
        model = LogisticRegression.load(model_dir)
    except ModelError as exc:
        assert "\n" not in str(exc)
        return
    assert np.all(np.isfinite(model.coef_)) and np.all(np.isfinite(model.intercept_))


def test_a_damaged_checkpoint_is_ignored_with_a_warning(tmp_path, caplog):
    identity = {"data": [], "options": {"max_iter": 5}}
    checkpoints = Checkpoints(str(tmp_path / "ck"), 1, identity)
    good = {
        "identity": checkpoints.identity,
        "n_iter": 2,
        "params": [0.1, 0.2],
        "loss_history": [0.7, 0.6],
        "step": None,
        "momentum": 1.0,
    }
    location = pathlib.Path(checkpoints.location)
    location.parent.mkdir(parents=True)
    location.write_text(json.dumps(good))
    assert checkpoints.resume().n_iter == 2
    for path, value in [
        (("params",), [0.1, float("nan")]),
        (("params",), []),
        (("n_iter",), -3),
        (("loss_history",), ["x"]),
        (("step",), -1.0),
        (("anchor",), [0.0]),
        (("momentum",), "fast"),
        (("n_iter",), 1_000_000),  # a history of 2 costs cannot be 1,000,000 iterations
        (("memory_s",), [[0.1, 0.2]]),  # an L-BFGS pair without its y
        (("memory_y",), [[0.1]]),
    ]:
        location.write_text(json.dumps(damaged(good, path, value)))
        caplog.clear()
        assert checkpoints.resume() is None
        assert "ignoring checkpoint" in caplog.text
    location.write_text("[" * 100_000)
    assert checkpoints.resume() is None


CONFIGS = {
    "checkpoint_every = 0": "checkpoint_every = 0",
    "workers = -2": "workers = -2",
    "alpha = 'abc'": 'alpha = "abc"',
    "alpha = -1": "alpha = -1.0",
    "max_iter = 1.5": "max_iter = 1.5",
    "tol = -1": "tol = -1.0",
    "overwrite = 'maybe'": 'overwrite = "maybe"',
    "features = {a = 1}": "features = {a = 1}",
    "storage_options = 3": "storage_options = 3",
    "solver = 'sgd'": 'solver = "sgd"',
}


@pytest.mark.parametrize("case", CONFIGS)
def test_a_bad_config_value_is_one_line_exit_2(trained, tmp_path, case):
    data, _ = trained
    config = tmp_path / "job.toml"
    config.write_text(f'data = "{data}"\nlabel = "y"\nout = "{tmp_path / "m"}"\n{CONFIGS[case]}\n')
    result = lrdask("train", "--config", config, check=False)
    assert result.returncode == 2, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"lrdask: error: {config}: ") and "Traceback" not in result.stderr


def test_a_quoted_false_in_a_config_means_false(trained, tmp_path):
    """The case: overwrite = "false" used to be taken as true and replaced another model."""
    data, _ = trained
    out = tmp_path / "m"
    lrdask("train", data, "--label", "y", "--out", out, "--max-iter", 3, "--workers", 1)
    config = tmp_path / "job.toml"
    config.write_text(
        f'data = "{data}"\nlabel = "y"\nout = "{out}"\nmax_iter = 4\nworkers = 1\n'
        'overwrite = "false"\n'
    )
    result = lrdask("train", "--config", config, check=False)
    assert result.returncode == 2 and "pass --overwrite to replace it" in result.stderr
    assert json.loads((out / "model.json").read_text())["training"]["n_iter"] == 3
