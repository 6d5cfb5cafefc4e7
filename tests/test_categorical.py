"""Real tables: categorical columns, any two label values, missing values, decimals.

Parity is checked against independent code: scikit-learn's pipeline (SimpleImputer,
OneHotEncoder, LogisticRegression) on a real table that ships inside a package (the
Palmer penguins, from ``palmerpenguins``) and on synthetic data, and a dense one-hot
NumPy gradient-descent loop for bit-level agreement of gd.
"""

import decimal
import os
import shutil
from importlib import resources

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from reference import dense_one_hot, numpy_gradient_descent
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression as SkLogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder

from lrdask.errors import ConfigError, DataError
from lrdask.estimator import LogisticRegression
from lrdask.synthetic import make_data

NUMERIC = ["bill_length_cm", "bill_depth_cm", "flipper_length_dm", "body_mass_kg"]


def penguins() -> pd.DataFrame:
    """The Palmer penguins (344 rows; NAs in the measurements and in sex), read from the
    CSV inside the installed package; lengths rescaled so that solvers converge tightly."""
    path = resources.files("palmerpenguins") / "data" / "penguins.csv"
    with resources.as_file(path) as csv:
        frame = pd.read_csv(csv)
    return pd.DataFrame(
        {
            "species": frame["species"],
            "island": frame["island"],
            "sex": frame["sex"].astype(object).where(frame["sex"].notna(), None),
            "bill_length_cm": frame["bill_length_mm"] / 10,
            "bill_depth_cm": frame["bill_depth_mm"] / 10,
            "flipper_length_dm": frame["flipper_length_mm"] / 100,
            "body_mass_kg": frame["body_mass_g"] / 1000,
        }
    )


def write_files(directory, frame: pd.DataFrame, n_files=3, shuffle_seed=None) -> str:
    if os.path.exists(directory):
        shutil.rmtree(directory)
    os.makedirs(directory)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    cuts = np.linspace(0, len(frame), n_files + 1).round().astype(int)
    for i in range(n_files):
        pq.write_table(table.slice(cuts[i], cuts[i + 1] - cuts[i]), f"{directory}/part-{i}.parquet")
    return str(directory)


def sklearn_pipeline(numeric, categorical, drop_first: bool, C=None, mean=True, solver="lbfgs"):
    cat = make_pipeline(
        SimpleImputer(strategy="constant", fill_value="(missing)", missing_values=None),
        OneHotEncoder(drop="first" if drop_first else None, handle_unknown="error"),
    )
    steps = [("cat", cat, categorical)]
    if numeric:
        steps.insert(0, ("num", SimpleImputer(strategy="mean") if mean else "passthrough", numeric))
    return make_pipeline(
        ColumnTransformer(steps),
        SkLogisticRegression(
            C=np.inf if C is None else C, tol=1e-12, max_iter=100_000, solver=solver
        ),
    )


def test_penguins_species_multinomial_l2_equals_sklearn_pipeline(one_client, tmp_path):
    """Three classes, NAs in numeric columns (mean) and in a categorical one ('(missing)')."""
    frame = penguins()
    data = write_files(tmp_path / "penguins", frame)
    l2 = 0.01
    model = LogisticRegression(
        solver="lbfgs",
        l2=l2,
        categorical="auto",
        missing="mean",
        max_iter=5000,
        tol=1e-14,
        gtol=1e-10,
    ).fit(data, label="species", client=one_client)
    assert model.family_ == "multinomial"
    assert list(model.classes_) == ["Adelie", "Chinstrap", "Gentoo"]
    assert "sex=(missing)" in model.coef_names_ and "island=Biscoe" in model.coef_names_
    sk = sklearn_pipeline(NUMERIC, ["island", "sex"], drop_first=False, C=1 / (l2 * len(frame)))
    sk.fit(frame[NUMERIC + ["island", "sex"]], frame["species"])
    assert list(sk.classes_) == list(model.classes_)
    want = sk.predict_proba(frame[NUMERIC + ["island", "sex"]])
    got = model.predict_proba(data).compute()
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert list(model.predict(data).compute()) == list(sk.predict(frame))


def test_penguins_sex_unpenalized_skip_equals_sklearn_on_complete_rows(one_client, tmp_path):
    """A string label with nulls and --missing skip; reference coding without a penalty;
    Newton (whose Hessian would be singular with every level coded)."""
    frame = penguins()
    data = write_files(tmp_path / "penguins", frame)
    model = LogisticRegression(
        solver="newton", categorical=["species", "island"], missing="skip", tol=1e-12, gtol=1e-10
    ).fit(data, label="sex", client=one_client)
    complete = frame.dropna()
    assert model.n_rows_ == len(complete) == 333
    assert list(model.classes_) == ["female", "male"]
    assert model.encoding_.categorical[0].reference  # species=Adelie has no coefficient
    assert "species=Adelie" not in model.coef_names_
    features = NUMERIC + ["species", "island"]
    sk = sklearn_pipeline(NUMERIC, ["species", "island"], drop_first=True, mean=False)
    sk.fit(complete[features], complete["sex"])
    got = model.predict_proba(data).compute()
    keep = frame[features].notna().all(axis=1).to_numpy()  # predict needs no label
    np.testing.assert_allclose(got[keep], sk.predict_proba(frame[keep][features]), atol=1e-6)
    assert np.isnan(got[~keep]).all()  # rows with a missing feature are not scored


@pytest.mark.parametrize("l2", [0.0, 0.05])
def test_synthetic_categoricals_equal_sklearn_pipeline(one_client, tmp_path, l2):
    data = str(tmp_path / "cat")
    make_data(data, 6000, 3, 4, seed=5, categorical=3, label_values=("no", "yes"))
    frame = pq.read_table(data).to_pandas()
    frame = frame.astype({c: object for c in ["c0", "c1", "c2"]})
    frame[["c0", "c1", "c2"]] = frame[["c0", "c1", "c2"]].where(frame[["c0", "c1", "c2"]].notna())
    model = LogisticRegression(
        solver="lbfgs" if l2 else "newton",
        l2=l2,
        categorical="auto",
        missing="mean",
        max_iter=5000,
        tol=1e-14,
        gtol=1e-10,
    ).fit(data, label="y", client=one_client)
    numeric = ["x0", "x1", "x2"]
    C = None if l2 == 0 else 1 / (l2 * len(frame))
    solver = "lbfgs" if l2 else "newton-cholesky"  # rare levels: a flat optimum, solve it exactly
    sk = sklearn_pipeline(numeric, ["c0", "c1", "c2"], drop_first=l2 == 0, C=C, solver=solver)
    frame[["c0", "c1", "c2"]] = frame[["c0", "c1", "c2"]].astype(object)
    for c in ["c0", "c1", "c2"]:
        frame[c] = frame[c].where(frame[c].notna(), None)
    sk.fit(frame[numeric + ["c0", "c1", "c2"]], frame["y"])
    got = model.predict_proba(data).compute()
    np.testing.assert_allclose(got, sk.predict_proba(frame), atol=1e-6)
    assert list(model.classes_) == ["no", "yes"]


@pytest.mark.parametrize("cache", [True, False])
def test_gd_with_categoricals_equals_dense_one_hot_numpy_loop(client, tmp_path, cache):
    rng = np.random.default_rng(11)
    n = 3000
    frame = pd.DataFrame(
        {
            "x0": rng.normal(size=n),
            "x1": rng.normal(size=n),
            "city": rng.choice(["oslo", "lima", "pune", "kobe", "bern"], size=n),
            "zip": rng.choice([10115, 75001, 94105], size=n).astype(np.int32),
            "y": rng.integers(0, 2, size=n),
        }
    )
    data = write_files(tmp_path / "d", frame, n_files=5)
    model = LogisticRegression(
        alpha=0.5, max_iter=60, tol=0, gtol=0, categorical=["city", "zip"], family="binomial"
    ).fit(data, label="y", client=client, cache=cache)
    X = dense_one_hot(frame, ["x0", "x1"], ["city", "zip"])
    w, b, costs = numpy_gradient_descent(X, frame["y"].to_numpy(float), 0.5, 60)
    np.testing.assert_allclose(model.coef_, w, rtol=1e-12, atol=1e-12)
    assert model.intercept_ == pytest.approx(b, rel=1e-12, abs=1e-12)
    np.testing.assert_allclose(model.loss_history_[:60], costs, rtol=1e-12)
    assert model.coef_names_[2:6] == ["city=kobe", "city=lima", "city=oslo", "city=pune"]
    assert model.coef_names_[6:] == ["zip=75001", "zip=94105"]


def test_encoding_does_not_depend_on_file_order_types_or_workers(client, tmp_path):
    """The same rows as string, large_string and dictionary columns, in files cut and
    ordered differently: the same levels, and the same model to the bit."""
    rng = np.random.default_rng(2)
    n = 900
    frame = pd.DataFrame(
        {
            "x": rng.normal(size=n),
            "c": rng.choice(["b", "a", "ü", "Z", "a b"], size=n),
            "y": rng.integers(0, 2, size=n),
        }
    )
    models = []
    for case, (kind, n_files) in enumerate(
        [(pa.string(), 1), (pa.large_string(), 4), (pa.dictionary(pa.int32(), pa.string()), 7)]
    ):
        directory = tmp_path / f"d{case}"
        os.makedirs(directory)
        table = pa.Table.from_pandas(frame, preserve_index=False)
        table = table.set_column(1, "c", table.column("c").cast(kind))
        cuts = np.linspace(0, n, n_files + 1).round().astype(int)
        for i in reversed(range(n_files)):  # written (and so listed) in another order
            name = f"{'zyx'[i % 3]}-{i}.parquet"
            pq.write_table(table.slice(cuts[i], cuts[i + 1] - cuts[i]), directory / name)
        models.append(
            LogisticRegression(categorical="auto", max_iter=30, tol=0, gtol=0, alpha=1.0).fit(
                str(directory), label="y", client=client
            )
        )
    assert models[0].encoding_.categorical[0].levels == ("Z", "a", "a b", "b", "ü")
    for other in models[1:]:
        assert other.encoding_.to_dict() == models[0].encoding_.to_dict()
        np.testing.assert_allclose(other.coef_, models[0].coef_, rtol=1e-13, atol=1e-15)


def test_unseen_levels_score_as_other_or_nothing(one_client, tmp_path, caplog):
    rng = np.random.default_rng(4)
    n = 2000
    frame = pd.DataFrame(
        {
            "x": rng.normal(size=n),
            "c": rng.choice(["a", "b", "c"], size=n, p=[0.5, 0.495, 0.005]),
            "d": rng.choice(["p", "q"], size=n),
            "y": rng.integers(0, 2, size=n),
        }
    )
    data = write_files(tmp_path / "train", frame)
    model = LogisticRegression(categorical="auto", min_count=20, solver="lbfgs").fit(
        data, label="y", client=one_client
    )
    cat_c, cat_d = model.encoding_.categorical
    assert cat_c.levels == ("a", "b") and cat_c.other_rows == (frame["c"] == "c").sum()
    assert "c=(other)" in model.coef_names_ and "d=(other)" not in model.coef_names_
    fresh = pd.DataFrame({"x": [0.3, 0.3, 0.3], "c": ["new", "c", "a"], "d": ["p", "new", "p"]})
    test = write_files(tmp_path / "test", fresh, n_files=1)
    with caplog.at_level("WARNING", logger="lrdask"):
        got = model.predict_proba(test).compute()[:, 1]
    names = model.coef_names_
    w = dict(zip(names, model.coef_, strict=True))
    z = model.intercept_ + 0.3 * w["x"]
    expected = [
        z + w["c=(other)"],  # unseen in c: the other level
        z + w["c=(other)"] + 0.0,  # rare level c: other; unseen in d: nothing (as 'p')
        z,  # a and p: both reference levels
    ]
    np.testing.assert_allclose(got, 1 / (1 + np.exp(-np.array(expected))), rtol=1e-12)


def test_a_level_in_one_file_only_and_nulls_in_every_partition(one_client, tmp_path):
    rng = np.random.default_rng(8)
    frames = []
    for i in range(3):
        c = rng.choice(["a", "b"], size=400).astype(object)
        c[::50] = None  # nulls in every partition
        if i == 2:
            c[1:100] = "only-here"
        frames.append(
            pd.DataFrame({"x": rng.normal(size=400), "c": c, "y": rng.integers(0, 2, size=400)})
        )
    frame = pd.concat(frames, ignore_index=True)
    data = write_files(tmp_path / "d", frame, n_files=3)
    nulls = int(frame["c"].isna().sum())
    with pytest.raises(DataError, match=rf"column 'c' has {nulls} null.*missing='mean'"):
        LogisticRegression(categorical=["c"]).fit(data, label="y", client=one_client)
    model = LogisticRegression(categorical=["c"], missing="mean", l2=0.01, solver="lbfgs").fit(
        data, label="y", client=one_client
    )
    cat = model.encoding_.categorical[0]
    assert cat.levels == ("a", "b", "only-here") and cat.missing_rows == nulls
    assert cat.counts[2] == 99
    assert model.coef_names_[1:] == ["c=a", "c=b", "c=only-here", "c=(missing)"]


def test_decimal_features_and_labels_read_as_numbers(one_client, tmp_path):
    rng = np.random.default_rng(9)
    n = 500
    amount = np.round(rng.normal(size=n) * 100, 2)
    y = rng.integers(0, 2, size=n)
    os.makedirs(tmp_path / "dec")
    os.makedirs(tmp_path / "flt")
    pq.write_table(
        pa.table(
            {
                "amount": pa.array(
                    [decimal.Decimal(f"{a:.2f}") for a in amount], pa.decimal128(12, 2)
                ),
                "y": pa.array([decimal.Decimal(int(v)) for v in y], pa.decimal128(1, 0)),
            }
        ),
        tmp_path / "dec" / "a.parquet",
    )
    pq.write_table(pa.table({"amount": amount, "y": y}), tmp_path / "flt" / "a.parquet")
    fits = [
        LogisticRegression(alpha=1e-4, max_iter=20, tol=0, gtol=0).fit(
            str(tmp_path / d), label="y", client=one_client
        )
        for d in ("dec", "flt")
    ]
    np.testing.assert_array_equal(fits[0].coef_, fits[1].coef_)
    assert list(fits[0].classes_) == [0, 1]


@pytest.mark.parametrize(
    "values,positive,expected",
    [
        ([True, False], None, [False, True]),
        (["yes", "no"], None, ["no", "yes"]),
        (["yes", "no"], "no", ["yes", "no"]),
        ([1, 2], None, [1, 2]),
        ([-1.0, 1.0], "-1", [1.0, -1.0]),
    ],
)
def test_any_two_label_values(one_client, tmp_path, values, positive, expected):
    rng = np.random.default_rng(1)
    x = rng.normal(size=400)
    index = (rng.random(400) < 1 / (1 + np.exp(-2 * x))).astype(int)
    label = np.array(values, dtype=object)[index]
    os.makedirs(tmp_path / "d")
    pq.write_table(pa.table({"x": x, "y": pa.array(list(label))}), tmp_path / "d" / "a.parquet")
    model = LogisticRegression(solver="newton", positive_class=positive).fit(
        str(tmp_path / "d"), label="y", client=one_client
    )
    assert list(model.encoding_.classes) == expected  # [negative, positive]
    assert list(model.classes_) == sorted(expected)  # scikit-learn's order
    positive_rows = label == expected[1]
    column = list(model.classes_).index(expected[1])
    proba = model.predict_proba(str(tmp_path / "d")).compute()[:, column]
    assert proba[positive_rows].mean() > proba[~positive_rows].mean()
    margin = model.decision_function(str(tmp_path / "d")).compute()
    assert (margin > 0).tolist() == (
        model.classes_[1] == model.predict(str(tmp_path / "d")).compute()
    ).tolist()


def test_label_errors_say_what_to_do(one_client, tmp_path):
    os.makedirs(tmp_path / "d")
    pq.write_table(
        pa.table({"x": [1.0, 2.0, 3.0, 4.0], "y": ["a", "b", "c", "a"]}), tmp_path / "d/a.parquet"
    )
    with pytest.raises(DataError, match="holds 3 distinct values.*use family='multinomial'"):
        LogisticRegression(family="binomial").fit(str(tmp_path / "d"), "y", client=one_client)
    os.makedirs(tmp_path / "two")
    pq.write_table(pa.table({"x": [1.0, 2.0], "y": ["a", "b"]}), tmp_path / "two/a.parquet")
    with pytest.raises(DataError, match="positive_class='z' is not a value.*'a', 'b'"):
        LogisticRegression(positive_class="z").fit(str(tmp_path / "two"), "y", client=one_client)
    with pytest.raises(ConfigError, match="'newton' is for the binomial family only"):
        LogisticRegression(solver="newton").fit(str(tmp_path / "d"), "y", client=one_client)


def test_newton_counts_encoded_features_when_it_refuses(one_client, tmp_path):
    os.makedirs(tmp_path / "d")
    n = 2500
    pq.write_table(
        pa.table({"id": [f"u{i}" for i in range(n)], "y": np.arange(n) % 2}),
        tmp_path / "d" / "a.parquet",
    )
    with pytest.raises(ConfigError, match=r"2499 features after encoding 1 categorical"):
        LogisticRegression(solver="newton", categorical="auto").fit(
            str(tmp_path / "d"), "y", client=one_client
        )


def test_high_cardinality_column_trains(one_client, tmp_path):
    """A user-id-like column: 60 000 levels over 120 000 rows, in 3 files."""
    rng = np.random.default_rng(12)
    n = 120_000
    user = rng.integers(0, 60_000, size=n)
    frame = pd.DataFrame(
        {
            "x": rng.normal(size=n),
            "user": np.char.add("u", user.astype(str)),
            "y": rng.integers(0, 2, size=n),
        }
    )
    data = write_files(tmp_path / "d", frame)
    model = LogisticRegression(categorical="auto", solver="lbfgs", l2=1e-3, max_iter=5).fit(
        data, label="y", client=one_client
    )
    assert len(model.coef_) == 1 + len(np.unique(user))
    assert np.isfinite(model.coef_).all()


def test_dask_dataframe_with_categoricals_and_nullable_dtypes(one_client, tmp_path):
    import dask.dataframe as dd

    frame = penguins().dropna()
    frame = frame.astype({"island": "category", "species": "string[pyarrow]"})
    frame["bill_length_cm"] = frame["bill_length_cm"].astype("Float64")
    ddf = dd.from_pandas(frame, npartitions=3)
    data = write_files(tmp_path / "p", penguins().dropna().astype({"island": str}))
    kwargs = {
        "solver": "newton",
        "l2": 0.01,
        "categorical": ["island", "species"],
        "tol": 1e-13,
        "gtol": 1e-10,
    }
    from_frame = LogisticRegression(**kwargs).fit(ddf, label="sex", client=one_client)
    from_files = LogisticRegression(**kwargs).fit(data, label="sex", client=one_client)
    assert from_frame.coef_names_ == from_files.coef_names_
    np.testing.assert_allclose(from_frame.coef_, from_files.coef_, rtol=1e-6, atol=1e-7)
    proba = from_frame.predict_proba(ddf).compute()
    np.testing.assert_allclose(proba, from_files.predict_proba(data).compute(), atol=1e-6)


def test_weighted_mean_imputation_and_standardize_with_categoricals(one_client, tmp_path):
    """--missing mean with --weight-col takes the weighted mean; --standardize leaves the
    level indicators alone and reaches the same optimum."""
    rng = np.random.default_rng(21)
    n = 1500
    x = rng.normal(size=n) * 3 + 1
    x_with_nulls = np.where(rng.random(n) < 0.1, np.nan, x)
    frame = pd.DataFrame(
        {
            "x": x_with_nulls,
            "c": rng.choice(["u", "v", "w"], size=n),
            "s": rng.random(n) + 0.5,
            "y": (rng.random(n) < 1 / (1 + np.exp(-x))).astype(int),
        }
    )
    data = write_files(tmp_path / "d", frame)
    kwargs = {"categorical": ["c"], "missing": "mean", "weight_col": "s", "solver": "newton"}
    model = LogisticRegression(**kwargs, tol=1e-13, gtol=1e-10).fit(
        data, label="y", client=one_client
    )
    ok = ~np.isnan(x_with_nulls)
    weighted = np.average(x_with_nulls[ok], weights=frame["s"].to_numpy()[ok])
    assert model.encoding_.means[0] == pytest.approx(weighted, rel=1e-12)
    scaled = LogisticRegression(**kwargs, tol=1e-13, gtol=1e-10, standardize=True).fit(
        data, label="y", client=one_client
    )
    assert np.all(scaled.scaling_.scale[1:] == 1.0) and np.all(scaled.scaling_.mean[1:] == 0.0)
    np.testing.assert_allclose(
        scaled.predict_proba(data).compute(), model.predict_proba(data).compute(), atol=1e-8
    )
