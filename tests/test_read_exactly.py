"""Read exactly what is there: no file, row or column silently dropped; odd schemas give
one-line errors; every entry point reads the same way; every JSON is strict.

Kinds and their tests:
1. a data set never loses data quietly: files without an extension, Hive partition keys as
   columns, per-directory counts in the log, the same rows and columns whatever the file
   order (test_hive_table..., test_partition_keys..., test_files_that_disagree...);
2. odd schemas give one-line errors: duplicates, decimals and a planner fuzz over every
   Arrow type Parquet holds (test_planner_fuzz..., test_odd_schemas_through_the_cli);
3. one planner and loader for fit, predict_proba, predict, evaluate, --validation
   (test_spark_temporary_folder..., test_dask_dataframe_errors_are_ours);
4. strict JSON (here for --validation into model.json; the CLI's evaluate in test_cli).
"""

import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import random_problem
from procs import lrdask
from reference import numpy_gradient_descent

from lrdask.errors import DataError, LrdaskError
from lrdask.estimator import LogisticRegression


def table(X, y, **extra):
    cols = {f"x{j}": X[:, j] for j in range(X.shape[1])}
    cols.update(extra)
    cols["y"] = y.astype(np.int64)
    return pa.table(cols)


def hive_table(root, with_temporary=True):
    """Hive's layout: an extensionless file in one day, Spark's name in the other."""
    X, y = random_problem(3000, 2, seed=31)
    os.makedirs(root / "ds=2026-10-01")
    os.makedirs(root / "ds=2026-10-02")
    pq.write_table(table(X[:2000], y[:2000]), root / "ds=2026-10-01" / "000000_0")
    pq.write_table(
        table(X[2000:], y[2000:]),
        root / "ds=2026-10-02" / "part-00000-1b2c-c000.snappy.parquet",
    )
    if with_temporary:  # a Spark job's leftovers: hidden, never read
        os.makedirs(root / "_temporary" / "0")
        (root / "_temporary" / "0" / "part-00001.parquet").write_bytes(b"partial")
        (root / "_SUCCESS").write_bytes(b"")
    return X, y


def test_hive_table_trains_on_every_file_and_logs_each_day(tmp_path):
    X, y = hive_table(tmp_path / "table")
    result = lrdask(
        "train",
        tmp_path / "table",
        "--label",
        "y",
        "--out",
        tmp_path / "m",
        "--alpha",
        0.5,
        "--max-iter",
        20,
        "--tol",
        0,
        "--gtol",
        0,
        "--workers",
        1,
    )
    assert "ds=2026-10-01: 1 file(s), 2000 rows" in result.stderr
    assert "ds=2026-10-02: 1 file(s), 1000 rows" in result.stderr
    assert "3000 rows in 2 partition(s) of 2 file(s)" in result.stderr
    doc = json.loads((tmp_path / "m" / "model.json").read_text())
    assert doc["training"]["n_rows"] == 3000 and doc["features"] == ["x0", "x1"]
    w, b, _ = numpy_gradient_descent(X, y, 0.5, 20)
    np.testing.assert_allclose(doc["coef"], w, rtol=1e-12, atol=1e-12)


def test_a_data_file_that_is_not_parquet_is_an_error(tmp_path):
    hive_table(tmp_path / "table", with_temporary=False)
    (tmp_path / "table" / "ds=2026-10-02" / "notes.txt").write_text("hello")
    result = lrdask(
        "train", tmp_path / "table", "--label", "y", "--out", tmp_path / "m", check=False
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("lrdask: error: ")
    assert "notes.txt: not a readable Parquet file" in result.stderr


def test_spark_temporary_folder_is_skipped_by_every_entry_point(one_client, tmp_path):
    X, y = hive_table(tmp_path / "table")
    path = str(tmp_path / "table")
    model = LogisticRegression(solver="newton").fit(path, label="y", client=one_client)
    assert model.n_rows_ == 3000
    proba = model.predict_proba(path).compute()
    np.testing.assert_allclose(proba, model.predict_proba(X), rtol=1e-12)
    assert list(model.predict(path).compute()) == list(model.predict(X))
    with_validation = LogisticRegression(solver="newton").fit(
        path, label="y", client=one_client, validation=path
    )
    assert with_validation.validation_metrics_["rows"] == 3000


def test_partition_keys_are_columns_for_features_categorical_and_weights(one_client, tmp_path):
    """Integer keys (w=1, w=3) as row weights equal repeated rows; a date key as a
    categorical; keys are never features by default."""
    X, y = random_problem(600, 2, seed=32)
    root = tmp_path / "lake"
    for i, weight in enumerate([1, 3]):
        rows = slice(300 * i, 300 * (i + 1))
        os.makedirs(root / f"day=2026-10-0{i + 1}" / f"w={weight}")
        pq.write_table(table(X[rows], y[rows]), root / f"day=2026-10-0{i + 1}/w={weight}/p.pq")
    plain = LogisticRegression(solver="newton", tol=1e-12, gtol=1e-10).fit(
        str(root), label="y", client=one_client
    )
    assert list(plain.feature_names_in_) == ["x0", "x1"]
    weighted = LogisticRegression(solver="newton", tol=1e-12, gtol=1e-10, weight_col="w").fit(
        str(root), label="y", client=one_client
    )
    repeated = np.concatenate([np.arange(300)] + [np.arange(300, 600)] * 3)
    os.makedirs(tmp_path / "rep")
    pq.write_table(table(X[repeated], y[repeated]), tmp_path / "rep" / "a.parquet")
    reference = LogisticRegression(solver="newton", tol=1e-12, gtol=1e-10).fit(
        str(tmp_path / "rep"), label="y", client=one_client
    )
    np.testing.assert_allclose(weighted.coef_, reference.coef_, rtol=1e-9)
    by_day = LogisticRegression(solver="newton", tol=1e-12, gtol=1e-10, categorical=["day"]).fit(
        str(root), label="y", client=one_client
    )
    assert by_day.coef_names_ == ["x0", "x1", "day=2026-10-02"]


def test_files_that_disagree_fail_the_same_way_in_any_order(one_client, tmp_path):
    X, y = random_problem(100, 2, seed=33)
    for first, second in [("a", "b"), ("b", "a")]:
        root = tmp_path / f"{first}{second}"
        os.makedirs(root)
        pq.write_table(table(X[:50], y[:50]), root / f"{first}.parquet")
        pq.write_table(table(X[50:], y[50:], extra=np.ones(50)), root / f"{second}.parquet")
        with pytest.raises(
            DataError,
            match="column 'extra' is (in this file but )?not in|"
            "column 'extra' is missing in this file",
        ):
            LogisticRegression().fit(str(root), label="y", client=one_client)
    # with --features the extra column is not used, whichever file has it
    model = LogisticRegression(max_iter=5).fit(
        str(tmp_path / "ab"), label="y", features=["x0", "x1"], client=one_client
    )
    assert model.n_rows_ == 100


def test_odd_schemas_through_the_cli(tmp_path):
    """A join's duplicated column and a warehouse export of decimals."""
    os.makedirs(tmp_path / "dup")
    names = ["value", "value", "other", "y"]
    arrays = [pa.array([1.0, 2.0]), pa.array([3.0, 4.0]), pa.array([5.0, 6.0]), pa.array([0, 1])]
    pq.write_table(pa.Table.from_arrays(arrays, names=names), tmp_path / "dup" / "j.parquet")
    result = lrdask("train", tmp_path / "dup", "--label", "y", "--out", tmp_path / "m", check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "j.parquet: column 'value' appears 2 times in this file" in result.stderr

    import decimal

    os.makedirs(tmp_path / "dec")
    rng = np.random.default_rng(3)
    amounts = [decimal.Decimal(f"{v:.2f}") for v in rng.normal(size=200) * 50]
    labels = [
        decimal.Decimal(int(a > 0)) ^ 0 if False else decimal.Decimal(int(a > 10)) for a in amounts
    ]
    pq.write_table(
        pa.table(
            {
                "amount": pa.array(amounts, pa.decimal128(12, 2)),
                "y": pa.array(labels, pa.decimal128(1, 0)),
            }
        ),
        tmp_path / "dec" / "export.parquet",
    )
    result = lrdask(
        "train",
        tmp_path / "dec",
        "--label",
        "y",
        "--out",
        tmp_path / "md",
        "--solver",
        "lbfgs",
        "--l2",
        0.01,
        "--workers",
        1,
    )
    doc = json.loads((tmp_path / "md" / "model.json").read_text())
    assert doc["classes"] == [0, 1] and doc["coef"][0] > 0


def fuzz_columns(rng):
    """Columns of (nearly) every Arrow type Parquet can hold, with odd names."""
    n = 30
    ints = rng.integers(0, 100, size=n)
    return {
        "i8": pa.array(ints, pa.int8()),
        "u64": pa.array(ints, pa.uint64()),
        "f16": pa.array(ints.astype(np.float16), pa.float16()),
        "f32": pa.array(ints, pa.float32()),
        "b": pa.array(ints % 2 == 0),
        "dec": pa.array([str(v) for v in ints]).cast(pa.decimal128(10, 3)),
        "dec38": pa.array([str(v) for v in ints]).cast(pa.decimal128(38, 6)),
        "s": pa.array([f"v{v % 4}" for v in ints]),
        "ls": pa.array([f"v{v % 4}" for v in ints], pa.large_string()),
        "dict": pa.array([f"v{v % 4}" for v in ints]).dictionary_encode(),
        "bin": pa.array([bytes([v]) for v in ints], pa.binary()),
        "fsb": pa.array([bytes([v, v]) for v in ints], pa.binary(2)),
        "d32": pa.array(ints.astype("datetime64[D]")),
        "ts": pa.array(ints.astype("datetime64[ms]")).cast(pa.timestamp("ms", tz="UTC")),
        "t64": pa.array(ints.astype(np.int64) * 1000, pa.time64("us")),
        "dur": pa.array(ints.astype("timedelta64[s]")),
        "lst": pa.array([[int(v)] for v in ints]),
        "st": pa.array([{"a": int(v), "b": "x"} for v in ints]),
        "map": pa.array([[("k", int(v))] for v in ints], pa.map_(pa.string(), pa.int64())),
        "nul": pa.nulls(n),
        "日本 語": pa.array(ints.astype(np.float64)),
        "": pa.array(ints.astype(np.float64)),
        "a.b": pa.array(ints.astype(np.float64)),
        "allnull_f": pa.array([None] * n, pa.float64()),
    }


@pytest.mark.parametrize("seed", range(40))
def test_planner_fuzz_trains_or_raises_our_error(one_client, tmp_path, seed):
    rng = np.random.default_rng(seed)
    columns = fuzz_columns(rng)
    names = list(rng.choice(list(columns), size=rng.integers(1, 5), replace=False))
    if seed % 7 == 0:
        names.append(names[0])  # a duplicated name
    arrays = [columns[name] for name in names]
    y = pa.array(np.arange(30) % 2)
    os.makedirs(tmp_path / "d")
    pq.write_table(
        pa.Table.from_arrays([*arrays, y], names=[*names, "y"]), tmp_path / "d" / "f.parquet"
    )
    options = [{}, {"categorical": "auto"}, {"missing": "mean", "categorical": "auto"}]
    for kwargs in options:
        try:
            model = LogisticRegression(max_iter=3, **kwargs).fit(
                str(tmp_path / "d"), label="y", client=one_client
            )
        except LrdaskError as exc:
            message = str(exc)
            assert message and "\n" not in message
        else:
            assert np.isfinite(model.coef_).all() and model.n_rows_ == 30


def test_dask_dataframe_errors_are_ours(one_client):
    import dask.dataframe as dd
    import pandas as pd

    frame = pd.DataFrame(
        {
            "x": pd.array([1.0, None, 3.0, 4.0], dtype="Float64"),
            "when": pd.to_datetime(["2026-01-01"] * 4),
            "y": [0, 1, 0, 1],
        }
    )
    ddf = dd.from_pandas(frame, npartitions=2)
    with pytest.raises(DataError, match="feature column 'when' has type timestamp"):
        LogisticRegression().fit(ddf, label="y", client=one_client)
    with pytest.raises(DataError, match="column 'x' has 1 null or NaN value"):
        LogisticRegression().fit(ddf[["x", "y"]], label="y", client=one_client)
    model = LogisticRegression(missing="mean", max_iter=3).fit(
        ddf[["x", "y"]], label="y", client=one_client
    )
    assert model.encoding_.means == (pytest.approx(8 / 3),)


def test_validation_metrics_in_model_json_are_strict(one_client, tmp_path):
    X, y = random_problem(300, 2, seed=34)
    os.makedirs(tmp_path / "d")
    os.makedirs(tmp_path / "neg")
    pq.write_table(table(X, y), tmp_path / "d" / "a.parquet")
    pq.write_table(table(X[y == 0], y[y == 0]), tmp_path / "neg" / "a.parquet")
    model = LogisticRegression(max_iter=5).fit(
        str(tmp_path / "d"), label="y", client=one_client, validation=str(tmp_path / "neg")
    )
    model.save(str(tmp_path / "m"))

    def refuse(constant):
        raise ValueError(constant)

    doc = json.loads((tmp_path / "m" / "model.json").read_text(), parse_constant=refuse)
    validation = doc["training"]["metrics"]["validation"]
    assert validation["roc_auc"] is None and "only one class" in validation["notes"]["roc_auc"]
