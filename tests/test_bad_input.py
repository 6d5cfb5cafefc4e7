"""Bad input through the real `lrdask` command on real bad Parquet data sets.

Each case must end with exit code 2 (3 for an unreachable cluster), a single
`lrdask: error: ...` line naming what is wrong and where, and no model written.
"""

import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from procs import free_port, lrdask


def table(n=20, seed=0, **extra):
    rng = np.random.default_rng(seed)
    cols = {"x0": rng.normal(size=n), "x1": rng.normal(size=n), "y": np.arange(n) % 2}
    cols.update(extra)
    return pa.table(cols)


def dataset(root, *tables, name="part"):
    os.makedirs(root, exist_ok=True)
    for i, t in enumerate(tables):
        pq.write_table(t, os.path.join(root, f"{name}-{i}.parquet"))
    return str(root)


def good(tmp_path):
    return dataset(tmp_path / "data", table(seed=1), table(seed=2))


def with_column(name, values, n=20):
    t = table(n)
    return (
        t.set_column(t.schema.get_field_index(name), name, pa.array(values))
        if name in t.schema.names
        else t.append_column(name, pa.array(values))
    )


# (id, make data -> path, extra args, exit code, text the error must contain)
CASES = [
    ("missing-path", lambda p: str(p / "nope"), [], 2, "no such file or directory"),
    (
        "empty-dir",
        lambda p: (os.makedirs(p / "e"), str(p / "e"))[1],
        [],
        2,
        "the directory is empty",
    ),
    (
        "no-parquet",
        lambda p: (os.makedirs(p / "c"), (p / "c" / "a.csv").write_text("x"), str(p / "c"))[2],
        [],
        2,
        "c/a.csv: not a readable Parquet file",
    ),
    (
        "not-parquet",
        lambda p: (
            dataset(p / "d", table()),
            (p / "d" / "zz.parquet").write_text("hello"),
            str(p / "d"),
        )[2],
        [],
        2,
        "zz.parquet: not a readable Parquet file",
    ),
    (
        "truncated",
        lambda p: (
            dataset(p / "d", table()),
            (p / "d" / "zz.parquet").write_bytes((p / "d" / "part-0.parquet").read_bytes()[:300]),
            str(p / "d"),
        )[2],
        [],
        2,
        "zz.parquet: not a readable Parquet file",
    ),
    ("label-misspelt", good, ["--label", "Y_"], 2, "label column 'Y_' not found; did you mean 'y'"),
    (
        "feature-missing",
        good,
        ["--features", "x0,x9"],
        2,
        "feature column 'x9' not found; did you mean 'x",
    ),
    (
        "string-feature-default",
        lambda p: dataset(p / "d", with_column("city", ["a"] * 20)),
        [],
        2,
        "feature column 'city' has type string, not a number; pass --categorical city (or "
        "--categorical auto) to use its values as levels, or exclude it with --exclude city",
    ),
    (
        "list-feature",
        lambda p: dataset(p / "d", with_column("v", [[1.0]] * 20)),
        ["--features", "x0,v"],
        2,
        "feature column 'v' has type list",
    ),
    (
        "struct-feature",
        lambda p: dataset(p / "d", with_column("s", [{"a": 1}] * 20)),
        [],
        2,
        "feature column 's' has type struct",
    ),
    (
        "labels-three-for-binomial",
        lambda p: dataset(p / "d", with_column("y", [0, 1, 2, 1] * 5)),
        ["--family", "binomial"],
        2,
        "label column 'y' holds 3 distinct values (0, 1, 2), but the binomial family needs "
        "exactly two (Only binary classification is supported.); use --family multinomial",
    ),
    (
        "labels-measurement",
        lambda p: dataset(p / "d", with_column("y", [0.5, 1.25, 2.0, 3.5] * 5)),
        [],
        2,
        "holds 4 distinct values, some not whole numbers (e.g. 0.5): it looks like a measurement",
    ),
    (
        "labels-list",
        lambda p: dataset(p / "d", with_column("y", [[1]] * 20)),
        [],
        2,
        "label column 'y' has type list<element: int64>; a label holds class values",
    ),
    (
        "label-not-a-class",
        lambda p: dataset(p / "d", table(seed=1), with_column("y", ["no", "yes"] * 10)),
        [],
        2,
        "part-1.parquet: column 'y' has type string here but int64 in",
    ),
    (
        "nan-feature",
        lambda p: dataset(p / "d", table(seed=3), with_column("x1", [np.nan] * 3 + [1.0] * 17)),
        [],
        2,
        "part-1.parquet (row group 0): column 'x1' has 3 null or NaN value(s) in 1 "
        "partition(s); pass --missing mean",
    ),
    (
        "inf-feature",
        lambda p: dataset(p / "d", with_column("x0", [np.inf, -np.inf] + [0.0] * 18)),
        [],
        2,
        "column 'x0' has 2 infinite value(s)",
    ),
    (
        "null-label",
        lambda p: dataset(p / "d", with_column("y", [None] + [0, 1] * 9 + [1])),
        [],
        2,
        "label column 'y' has 1 null value(s); drop those rows or pass --missing skip",
    ),
    (
        "schema-missing-column",
        lambda p: dataset(p / "d", table(), table().drop(["x1"])),
        [],
        2,
        "part-1.parquet: column 'x1' is missing in this file",
    ),
    (
        "schema-type-clash",
        lambda p: dataset(p / "d", table(), with_column("x1", ["s"] * 20)),
        [],
        2,
        "part-1.parquet: column 'x1' has type string here but double in",
    ),
    ("zero-rows", lambda p: dataset(p / "d", table(0)), [], 2, "zero rows"),
    (
        "single-class",
        lambda p: dataset(p / "d", with_column("y", [1] * 20)),
        [],
        2,
        "label column 'y' holds only 1 class(es) (1) in all 20 rows",
    ),
    (
        "alpha-negative",
        good,
        ["--alpha", "-0.5"],
        2,
        "Invalid value for '--alpha': -0.5 is not in the range x>0.",
    ),
    ("alpha-text", good, ["--alpha", "fast"], 2, "'fast' is not a valid float"),
    ("max-iter-zero", good, ["--max-iter", "0"], 2, "0 is not in the range x>=1"),
    (
        "unknown-host",
        good,
        ["--scheduler", "tcp://no-such-host.invalid:8786"],
        2,
        "unknown host 'no-such-host.invalid'",
    ),
    (
        "unreachable-scheduler",
        good,
        ["--scheduler", f"tcp://127.0.0.1:{free_port()}", "--connect-timeout", "2"],
        3,
        "cannot reach the Dask scheduler",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_clear_line(tmp_path, case):
    _, make, args, code, expected = case
    data = make(tmp_path)
    out = tmp_path / "model"
    base = ["--label", "y"] if "--label" not in args else []
    result = lrdask(
        "train", data, *base, *args, "--out", out, "--workers", 1, check=False, timeout=120
    )
    lines = [line for line in result.stderr.splitlines() if line.startswith("lrdask: error:")]
    assert result.returncode == code, result.stderr
    assert len(lines) == 1, result.stderr
    assert expected in lines[0], lines[0]
    assert "Traceback" not in result.stderr
    assert not (out / "model.json").exists()


def test_output_directory_not_writable(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a directory")
    result = lrdask(
        "train", good(tmp_path), "--label", "y", "--out", blocker / "model", check=False
    )
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert f"cannot create the lease for {blocker / 'model'}" in last
    assert "choose another location" in last


def test_predict_with_features_absent_from_data(tmp_path):
    model = tmp_path / "model"
    lrdask("train", good(tmp_path), "--label", "y", "--out", model, "--max-iter", 2, "--workers", 1)
    other = dataset(tmp_path / "other", table().rename_columns(["a", "x1", "y"]))
    result = lrdask("predict", model, other, "--out", tmp_path / "p", check=False)
    assert result.returncode == 2
    assert "DATA does not fit the model" in result.stderr and "'x0' not found" in result.stderr
    assert not (tmp_path / "p").exists()


def test_predict_with_corrupt_model(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "model.json").write_text('{"format": "lrdask-model", "coef": [1,')
    result = lrdask(
        "predict", tmp_path / "model", good(tmp_path), "--out", tmp_path / "p", check=False
    )
    assert result.returncode == 2
    assert "model.json: not a valid lrdask model" in result.stderr


def test_saturated_sigmoid_trains_without_overflow_warnings(tmp_path):
    n = 40
    big = np.where(np.arange(n) % 2 == 0, 2e4, -2e4)
    data = dataset(
        tmp_path / "d",
        pa.table({"x0": big, "x1": np.ones(n), "y": (np.arange(n) % 2 == 0).astype(int)}),
    )
    result = lrdask(
        "train",
        data,
        "--label",
        "y",
        "--out",
        tmp_path / "m",
        "--alpha",
        1.0,
        "--max-iter",
        20,
        "--workers",
        1,
        env={"PYTHONWARNINGS": "error::RuntimeWarning"},
    )
    assert "Warning" not in result.stderr
    doc = json.loads((tmp_path / "m" / "model.json").read_text())
    history = doc["training"]["loss_history"]
    assert np.all(np.isfinite(history)) and history[1] < history[0]
    assert max(abs(np.array(doc["coef"]))) * 2e4 >= 1e4  # |z| did reach the saturated range
