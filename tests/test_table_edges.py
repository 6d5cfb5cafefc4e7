"""The kinds a new user's tables found (each a table of cases):

- values Arrow hands over read-only (NaN without nulls) must still be imputed or skipped,
  in train, predict and evaluate;
- names given twice, or both used and excluded, are errors, not doubled coefficients;
- files that disagree only in the width of a number, or hold a column only as Arrow's
  ``null`` type, or use string_view, are the same data;
- a literal level spelled like a placeholder, Hive values with leading zeros or URL escapes;
- predict never overwrites its input, never ships a large model per task, and --keep is
  checked; errors say what can be done where they are raised.
"""

import os

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from procs import lrdask

from lrdask.errors import DataError
from lrdask.estimator import LogisticRegression


def write(directory, **tables) -> str:
    os.makedirs(directory, exist_ok=True)
    for name, table in tables.items():
        pq.write_table(table, os.path.join(directory, f"{name}.parquet"))
    return str(directory)


def base(n=600, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    y = (rng.random(n) < 1 / (1 + np.exp(-x))).astype(np.int64)
    return rng, x, y


@pytest.mark.parametrize("how", ["nan", "null"])
@pytest.mark.parametrize("missing", ["mean", "skip"])
def test_nan_and_null_are_both_missing_values(one_client, tmp_path, how, missing):
    rng, x, y = base()
    values = x.copy()
    values[::20] = np.nan
    column = pa.array(values) if how == "nan" else pa.array(values, from_pandas=True)
    assert (column.null_count > 0) == (how == "null")
    data = write(tmp_path / "d", a=pa.table({"x": column, "z": rng.normal(size=len(y)), "y": y}))
    model = LogisticRegression(missing=missing, solver="newton").fit(
        data, label="y", client=one_client
    )
    assert model.n_rows_ == (len(y) if missing == "mean" else len(y) - 30)
    proba = model.predict_proba(data).compute()[:, 1]
    assert np.isnan(proba).sum() == (0 if missing == "mean" else 30)
    clean = x.copy()
    clean[::20] = np.nanmean(values) if missing == "mean" else 0.0
    if missing == "mean":
        ref = model.predict_proba(pd.DataFrame({"x": clean, "z": 0.0})).shape
        assert ref == (len(y), 2)


def test_names_given_twice_or_used_and_excluded_are_errors(one_client, tmp_path):
    rng, x, y = base()
    city = rng.choice(["a", "b"], size=len(y))
    data = write(tmp_path / "d", a=pa.table({"x": x, "city": city, "y": y}))
    cases = [
        # the advice in the Python API's words (lrdask.errors.python_words)
        ({"categorical": ["city", "city"]}, {}, r"categorical=\[…\] names column 'city' twice"),
        ({}, {"features": ["x", "x"]}, r"features=\[…\] names column 'x' twice"),
        (
            {"categorical": ["city"]},
            {"features": ["x", "city"], "exclude": ["city"]},
            r"'city' is both in features=\[…\] and in exclude=\[…\]",
        ),
    ]
    for params, fit_args, message in cases:
        with pytest.raises(DataError, match=message):
            LogisticRegression(**params).fit(data, label="y", client=one_client, **fit_args)


def test_files_that_differ_only_in_number_width_null_type_or_string_view(one_client, tmp_path):
    rng, x, y = base(400)
    city = rng.choice(["a", "b", "c"], size=400).astype(object)
    first = pa.table({"x": x[:200], "city": pa.array(city[:200]), "y": y[:200]})
    second = pa.table(
        {
            "x": x[200:],
            "city": pa.array(city[200:]).cast(pa.large_string()),
            "y": y[200:].astype(np.float64),  # 0.0/1.0 here, 0/1 there
        }
    )
    empty = pa.table({"x": x[:50], "city": pa.nulls(50), "y": y[:50]})  # an empty optional column
    view = getattr(pa, "string_view", None)
    tables = {"a": first, "b": second, "c": empty}
    if view is not None:
        tables["d"] = pa.table({"x": x[:30], "city": pa.array(city[:30]).cast(view()), "y": y[:30]})
    data = write(tmp_path / "d", **tables)
    model = LogisticRegression(categorical=["city"], missing="mean", solver="newton").fit(
        data, label="y", client=one_client
    )
    assert model.encoding_.categorical[0].levels == ("a", "b", "c")
    assert model.encoding_.categorical[0].missing_rows == 50
    assert list(model.classes_) == [0.0, 1.0]


def test_a_level_spelled_like_a_placeholder_is_refused(one_client, tmp_path):
    rng, x, y = base()
    city = rng.choice(["(missing)", "oslo", None], size=len(y))
    data = write(tmp_path / "d", a=pa.table({"x": x, "city": pa.array(city), "y": y}))
    with pytest.raises(DataError, match=r"level spelled '\(missing\)'.*rename it"):
        LogisticRegression(categorical=["city"], missing="mean").fit(
            data, label="y", client=one_client
        )
    # without nulls there is no '(missing)' slot, so the literal level is just a level
    city = rng.choice(["(missing)", "oslo"], size=len(y))
    data = write(tmp_path / "e", a=pa.table({"x": x, "city": pa.array(city), "y": y}))
    model = LogisticRegression(categorical=["city"], missing="mean").fit(
        data, label="y", client=one_client
    )
    assert model.encoding_.categorical[0].levels == ("(missing)", "oslo")


def test_hive_values_keep_leading_zeros_and_are_unescaped(one_client, tmp_path):
    rng, x, y = base(300)
    root = tmp_path / "lake"
    for i, (zipcode, city) in enumerate(
        [("0150", "S%C3%A3o Paulo"), ("5003", "a%2Fb"), ("0042", "S%C3%A3o Paulo")]
    ):
        rows = slice(100 * i, 100 * (i + 1))
        write(root / f"zip={zipcode}" / f"city={city}", p=pa.table({"x": x[rows], "y": y[rows]}))
    model = LogisticRegression(categorical=["zip", "city"], l2=0.01, solver="newton").fit(
        str(root), label="y", client=one_client
    )
    assert model.encoding_.categorical[0].levels == ("0042", "0150", "5003")
    assert model.encoding_.categorical[1].levels == ("São Paulo", "a/b")


def test_predict_guards_its_input_and_its_options(tmp_path):
    rng, x, y = base(300)
    user = np.char.add("u", rng.integers(0, 20_000, size=300).astype(str))
    data = write(tmp_path / "d", a=pa.table({"x": x, "user": user, "y": y}))
    lrdask(
        "train",
        data,
        "--label",
        "y",
        "--categorical",
        "user",
        "--l2",
        0.01,
        "--solver",
        "lbfgs",
        "--max-iter",
        3,
        "--out",
        tmp_path / "m",
        "--workers",
        1,
    )
    failed = lrdask("predict", tmp_path / "m", data, "--out", data, "--overwrite", check=False)
    assert failed.returncode == 2 and "is, holds or sits inside DATA" in failed.stderr
    assert sorted(os.listdir(data)) == ["a.parquet"]  # untouched
    failed = lrdask(
        "predict", tmp_path / "m", data, "--out", tmp_path / "p", "--keep", "x,x", check=False
    )
    assert failed.returncode == 2 and "--keep names column 'x' twice" in failed.stderr
    assert "Dask dashboard" not in failed.stderr  # refused before a cluster started
    # a model of several hundred coefficients is sent once per worker, not per task
    lrdask("predict", tmp_path / "m", data, "--out", tmp_path / "p", "--workers", 1)
    assert pq.read_table(tmp_path / "p").num_rows == 300


def test_error_advice_can_be_followed(one_client, tmp_path):
    rng, x, y = base()
    w = np.where(np.arange(len(y)) % 10 == 0, np.nan, 1.0)
    data = write(tmp_path / "d", a=pa.table({"x": x, "w": w, "y": y}))
    with pytest.raises(DataError, match=r"column 'w' .*sample weights must be numbers.*skip"):
        LogisticRegression(weight_col="w", missing="mean").fit(data, label="y", client=one_client)
    model = LogisticRegression(weight_col="w", missing="skip").fit(
        data, label="y", client=one_client
    )
    assert model.n_rows_ == len(y) - 60
    labels = pa.array(np.where(np.arange(len(y)) % 7 == 0, None, y), pa.int64())
    unlabelled = write(tmp_path / "u", a=pa.table({"x": x, "y": labels}))
    plain = LogisticRegression().fit(
        write(tmp_path / "p", a=pa.table({"x": x, "y": y})), label="y", client=one_client
    )
    with pytest.raises(DataError, match="label column 'y' has 86 null.*pass missing='skip'"):
        LogisticRegression().fit(unlabelled, label="y", client=one_client)
    from lrdask.evaluation import evaluate_dataset

    with pytest.raises(DataError, match="rows without a label cannot be evaluated: drop them"):
        evaluate_dataset(one_client, plain, unlabelled)
