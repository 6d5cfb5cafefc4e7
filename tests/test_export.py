"""lrdask.export: the exported scikit-learn estimator scores exactly as the lrdask model.

Every case fits a small table with lrdask, exports it, and compares scikit-learn's
predict_proba (to 1e-12) and predict with lrdask's own on a scoring table that holds
rare levels, nulls and levels never seen in training; the same after a joblib round
trip and after a save/load through model.json.
"""

import dataclasses
import os
import warnings

import joblib
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.linear_model import LogisticRegression as SkLogisticRegression
from sklearn.metrics import get_scorer, roc_auc_score
from sklearn.model_selection import FixedThresholdClassifier
from sklearn.pipeline import Pipeline

from lrdask import LogisticRegression
from lrdask.errors import DataError, ModelError
from lrdask.export import CategoryLevels, to_sklearn

NUMERIC = ["x0", "x1"]
CATEGORICAL = ["city", "code"]


def table(rows, seed, labels=(0, 1), nulls=False, unseen=False, odd_level=None):
    """x0, x1 numeric; city strings (two rare levels; nulls); code integers; label y drawn
    from a logistic (softmax for three labels) model of all of them. ``unseen`` adds
    levels training never saw; ``odd_level`` renames city level 'c'."""
    rng = np.random.default_rng(seed)
    cities = ["a", "b", "c", "rare1", "rare2"] + (["new"] if unseen else [])
    weights = np.array([40, 30, 26, 2, 2] + ([10] if unseen else []), dtype=float)
    city = rng.choice(cities, p=weights / weights.sum(), size=rows).astype(object)
    codes = [1, 2, 3] + ([9] if unseen else [])
    frame = pd.DataFrame(
        {
            "x0": rng.normal(size=rows),
            "x1": rng.normal(size=rows) * 2 + 1,
            "city": city,
            "code": rng.choice(codes, size=rows),
        }
    )
    scores = np.column_stack(
        [
            frame.x0 - 0.5 * frame.x1 + (frame.city == "a") - (frame.code == 2),
            0.5 * frame.x1 - (frame.city == "b"),
            np.zeros(rows),
        ]
    )[:, : len(labels) if len(labels) > 2 else 1]
    if len(labels) == 2:
        drawn = (rng.random(rows) < 1 / (1 + np.exp(-scores[:, 0]))).astype(int)
    else:
        p = np.exp(scores - scores.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        drawn = (rng.random((rows, 1)) > p.cumsum(axis=1)).sum(axis=1)
    frame["y"] = pd.Series(np.asarray(labels, dtype=object)[drawn], dtype=object)
    if isinstance(labels[0], (int, np.integer)) and not isinstance(labels[0], bool):
        frame["y"] = frame["y"].astype(np.int64)
    if isinstance(labels[0], bool):
        frame["y"] = frame["y"].astype(bool)
    if nulls:
        frame.loc[rng.random(rows) < 0.1, "x1"] = np.nan
        frame.loc[rng.random(rows) < 0.1, "city"] = None
    if odd_level is not None:
        frame["city"] = frame["city"].replace("c", odd_level)
    return frame


def write(directory, frame, files=2) -> str:
    os.makedirs(directory, exist_ok=True)
    data = pa.Table.from_pandas(frame, preserve_index=False)
    cuts = np.linspace(0, len(frame), files + 1).round().astype(int)
    for i in range(files):
        pq.write_table(data.slice(cuts[i], cuts[i + 1] - cuts[i]), f"{directory}/part-{i}.parquet")
    return str(directory)


# id: (table options, LogisticRegression options, categorical?, expected sklearn type)
CASES = {
    "binomial": ({}, {"solver": "newton"}, False, SkLogisticRegression),
    "binomial-standardize": (
        {},
        {"solver": "newton", "standardize": True},
        False,
        SkLogisticRegression,
    ),
    "binomial-l1-no-intercept": (
        {},
        {"solver": "lbfgs", "l1": 0.01, "fit_intercept": False},
        False,
        SkLogisticRegression,
    ),
    "multinomial": ({"labels": (0, 1, 2)}, {"solver": "lbfgs"}, False, SkLogisticRegression),
    "strings-positive-smaller": (
        {"labels": ("no", "yes")},
        {"solver": "newton", "positive_class": "no"},
        False,
        SkLogisticRegression,
    ),
    "strings-positive-larger": (
        {"labels": ("no", "yes")},
        {"solver": "newton", "positive_class": "yes"},
        False,
        SkLogisticRegression,
    ),
    "bools-positive-false": (
        {"labels": (False, True)},
        {"solver": "newton", "positive_class": False},
        False,
        SkLogisticRegression,
    ),
    "numeric-mean": ({"nulls": True}, {"solver": "newton", "missing": "mean"}, False, Pipeline),
    "categorical-reference": (
        {"nulls": True, "labels": ("no", "yes")},
        {"solver": "newton", "missing": "mean", "min_count": 20},
        True,
        Pipeline,
    ),
    "categorical-l2-standardize": (
        {"nulls": True, "odd_level": "(no level)"},
        {"solver": "lbfgs", "missing": "mean", "min_count": 20, "l2": 0.01, "standardize": True},
        True,
        Pipeline,
    ),
    "categorical-multinomial": (
        {"nulls": True, "labels": ("x", "y", "z")},
        {"solver": "lbfgs", "missing": "mean", "min_count": 20, "l2": 0.001},
        True,
        Pipeline,
    ),
    "categorical-positive-smaller": (
        {"labels": ("no", "yes")},
        {"solver": "newton", "positive_class": "no"},
        True,
        Pipeline,
    ),
}


@pytest.fixture(scope="module", params=list(CASES))
def fitted(request, one_client, tmp_path_factory):
    """(case id, fitted lrdask model, scoring frame, model dir)."""
    options, params, categorical, _ = CASES[request.param]
    root = tmp_path_factory.mktemp(request.param)
    data = write(root / "data", table(600, 1, **options))
    model = LogisticRegression(
        tol=1e-12,
        gtol=1e-9,
        max_iter=500,
        categorical=CATEGORICAL if categorical else None,
        **params,
    ).fit(
        data, label="y", features=NUMERIC + (CATEGORICAL if categorical else []), client=one_client
    )
    score = table(300, 2, unseen=categorical, **options)  # the label column is ignored
    if model.encoding_.missing != "mean":  # these models refuse missing values
        score = score.dropna()
    model.save(str(root / "model"))
    return request.param, model, score, str(root / "model")


def columns_of(estimator, model, frame):
    """The frame a bare LogisticRegression takes: exactly its columns, in order."""
    if isinstance(estimator, SkLogisticRegression):
        return frame[list(model.feature_names_in_)]
    return frame


def assert_scores_as(estimator, model, frame):
    """predict_proba per class to 1e-12 and predict equal, without any warning."""
    want = model.predict_proba(frame)
    order = [list(model.classes_).index(c) for c in estimator.classes_]
    X = columns_of(estimator, model, frame)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = estimator.predict_proba(X)
        predicted = estimator.predict(X)
    np.testing.assert_allclose(got, want[:, order], rtol=0, atol=1e-12)
    np.testing.assert_array_equal(predicted, model.predict(frame))
    assert len(set(np.unique(predicted))) >= 2  # the comparison saw both sides of 0.5


def test_predict_proba_equals_lrdask(fitted):
    case, model, score, _ = fitted
    estimator = model.to_sklearn()
    assert type(estimator) is CASES[case][3]
    assert_scores_as(estimator, model, score)


def test_fitted_attributes_are_lrdasks(fitted):
    _, model, _, _ = fitted
    estimator = to_sklearn(model)
    classifier = estimator[-1] if isinstance(estimator, Pipeline) else estimator
    classes = list(model.encoding_.classes)  # lrdask's order: coef_ is classes[1]'s
    assert list(classifier.classes_) == sorted(classes) == list(model.classes_)
    coef, intercept = np.asarray(model.coef_), np.atleast_1d(model.intercept_)
    if model.family_ == "binomial":
        sign = 1.0 if classes == sorted(classes) else -1.0  # positive_class the smaller
        np.testing.assert_array_equal(classifier.coef_, sign * coef[None, :])
        np.testing.assert_array_equal(classifier.intercept_, sign * intercept)
    else:
        order = [classes.index(c) for c in classifier.classes_]
        np.testing.assert_array_equal(classifier.coef_, coef[order])
        np.testing.assert_array_equal(classifier.intercept_, intercept[order])
    assert classifier.coef_.shape == (
        1 if model.family_ == "binomial" else len(classes),
        len(model.coef_names_),
    )
    assert classifier.n_features_in_ == len(model.coef_names_)
    assert classifier.fit_intercept == model.fit_intercept
    if isinstance(estimator, Pipeline):  # its output columns are lrdask's coefficients
        names = [n.replace("=", "_") for n in model.coef_names_]
        assert list(estimator[0].get_feature_names_out()) == names
        assert list(estimator.feature_names_in_) == list(model.feature_names_in_)
    else:
        assert list(estimator.feature_names_in_) == list(model.feature_names_in_)
        assert estimator.n_features_in_ == model.n_features_in_


def test_joblib_round_trip_scores_the_same(fitted, tmp_path):
    _, model, score, _ = fitted
    joblib.dump(model.to_sklearn(), tmp_path / "model.joblib")
    assert_scores_as(joblib.load(tmp_path / "model.joblib"), model, score)


def test_model_loaded_from_json_exports_the_same(fitted):
    _, model, score, model_dir = fitted
    loaded = LogisticRegression.load(model_dir)
    assert_scores_as(loaded.to_sklearn(), model, score)


def test_categorical_levels_are_the_encoders(one_client, tmp_path):
    """The OneHotEncoder of each column holds its levels, '(other)' and '(missing)', and
    drops the reference level; the imputer holds the training means."""
    data = write(tmp_path / "data", table(600, 1, nulls=True))
    model = LogisticRegression(
        solver="newton", categorical=CATEGORICAL, missing="mean", min_count=20
    ).fit(data, label="y", client=one_client)
    pipeline = model.to_sklearn()
    encode = pipeline.named_steps["encode"]
    np.testing.assert_array_equal(
        encode.named_transformers_["numeric"].statistics_, model.encoding_.means
    )
    for cat in model.encoding_.categorical:
        onehot = encode.named_transformers_[cat.name][-1]
        placeholders = [n for n in cat.slot_names if n in ("(other)", "(missing)")]
        assert list(onehot.categories_[0]) == [*cat.levels, *placeholders]
        assert list(onehot.drop_idx_) == [0]
    city = model.encoding_.categorical[0]
    assert city.other_rows and city.missing_rows  # the case the table is made to test


@pytest.mark.parametrize(
    "convert",
    [
        pytest.param(lambda s: s.astype("category"), id="pandas-category"),
        pytest.param(lambda s: s.astype("string[pyarrow]"), id="arrow-string"),
        pytest.param(lambda s: s, id="object"),
    ],
)
def test_scoring_frame_dtypes(one_client, tmp_path, convert):
    """Strings as categories or Arrow strings, integer levels held as floats with NaN."""
    data = write(tmp_path / "data", table(600, 1, nulls=True))
    model = LogisticRegression(
        solver="lbfgs", categorical=CATEGORICAL, missing="mean", min_count=20, l2=0.01
    ).fit(data, label="y", client=one_client)
    score = table(300, 2, nulls=True, unseen=True).drop(columns="y")
    score["city"] = convert(score["city"])
    score["code"] = score["code"].astype(float).where(score["x0"] < 1.5)  # NaN → (missing)
    assert_scores_as(model.to_sklearn(), model, score)


def test_roc_auc_scorer_sees_the_positive_class(one_client, tmp_path):
    """scikit-learn's scorers take classes_[1] as positive and sorted labels; with
    positive_class the smaller label the export still gets the AUC right."""
    frame = table(600, 1, labels=("no", "yes"))
    data = write(tmp_path / "data", frame)
    model = LogisticRegression(solver="newton", positive_class="no").fit(
        data, label="y", features=NUMERIC, client=one_client
    )
    assert list(model.encoding_.classes) == ["yes", "no"]
    proba = model.predict_proba(frame[NUMERIC])
    want = roc_auc_score(frame["y"] == "yes", proba[:, list(model.classes_).index("yes")])
    assert get_scorer("roc_auc")(model.to_sklearn(), frame[NUMERIC], frame["y"]) == pytest.approx(
        want, abs=1e-12
    )


@pytest.mark.parametrize("positive", ["no", "yes"])
@pytest.mark.parametrize("threshold", [0.3, 0.7])
def test_threshold_is_a_fixed_threshold_classifier(one_client, tmp_path, threshold, positive):
    frame = table(600, 1, labels=("no", "yes"))
    data = write(tmp_path / "data", frame)
    model = LogisticRegression(solver="newton", positive_class=positive).fit(
        data, label="y", features=NUMERIC, client=one_client
    )
    model.threshold = threshold
    estimator = model.to_sklearn()
    assert isinstance(estimator, FixedThresholdClassifier)
    X = frame[NUMERIC]
    column = list(model.classes_).index(positive)
    p = model.predict_proba(X)[:, column]
    np.testing.assert_allclose(
        estimator.predict_proba(X)[:, list(estimator.classes_).index(positive)],
        p,
        rtol=0,
        atol=1e-12,
    )
    negative = model.encoding_.classes[0]
    want = np.where(p >= threshold, positive, negative)
    np.testing.assert_array_equal(estimator.predict(X), want)


@pytest.mark.parametrize("missing", ["skip", "error"])
def test_missing_values_are_refused_without_mean(one_client, tmp_path, missing):
    """lrdask scores such rows NaN (skip) or refuses them (error); the export refuses
    them: DataError for a categorical null, scikit-learn's ValueError for a numeric NaN.
    Complete rows score the same."""
    frame = table(600, 1, nulls=missing == "skip")
    data = write(tmp_path / "data", frame)
    model = LogisticRegression(solver="lbfgs", categorical=CATEGORICAL, missing=missing).fit(
        data, label="y", client=one_client
    )
    estimator = model.to_sklearn()
    score = table(300, 2, nulls=True).drop(columns="y")
    complete = score.dropna()
    assert_scores_as(estimator, model, complete)
    null_city = complete.copy()
    null_city.iloc[0, null_city.columns.get_loc("city")] = None
    with pytest.raises(DataError, match="column 'city' has 1 null value"):
        estimator.predict_proba(null_city)
    nan_x1 = complete.copy()
    nan_x1.iloc[0, nan_x1.columns.get_loc("x1")] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        estimator.predict_proba(nan_x1)
    if missing == "skip":
        assert np.isnan(model.predict_proba(null_city)[0]).all()


def test_category_levels_without_reference_add_nothing_for_unseen():
    """No reference and no '(other)': an unseen value is all zeros, also when a level is
    spelled like the placeholder for it."""
    levels = CategoryLevels("c", ("(no level)", "a"), reference=False).fit(
        pd.DataFrame({"c": ["a"]})
    )
    out = levels.transform(pd.DataFrame({"c": ["a", "zzz", "(no level)"]}))
    assert out[0, 0] == "a" and out[2, 0] == "(no level)"
    assert out[1, 0] not in ("a", "(no level)")


def test_not_fitted_or_inconsistent_models_raise_model_error(one_client, tmp_path):
    with pytest.raises(ModelError, match="not fitted"):
        to_sklearn(LogisticRegression())
    data = write(tmp_path / "data", table(200, 1))
    model = LogisticRegression(solver="newton").fit(
        data, label="y", features=NUMERIC, client=one_client
    )
    model.coef_ = np.append(model.coef_, 0.0)
    with pytest.raises(ModelError, match=r"coef_ has shape \(3,\)"):
        model.to_sklearn()


def test_multinomial_classes_out_of_order_are_sorted(one_client, tmp_path):
    """lrdask's multinomial classes come sorted; a model whose classes (and coefficient
    rows) are listed in another order exports with classes_ sorted, rows permuted."""
    frame = table(600, 1, labels=("x", "y", "z"))
    data = write(tmp_path / "data", frame)
    model = LogisticRegression(solver="lbfgs").fit(
        data, label="y", features=NUMERIC, client=one_client
    )
    perm = [2, 0, 1]
    model.encoding_ = dataclasses.replace(
        model.encoding_, classes=tuple(model.encoding_.classes[k] for k in perm)
    )
    model.classes_ = np.asarray(model.classes_)[perm]
    model.coef_, model.intercept_ = model.coef_[perm], model.intercept_[perm]
    estimator = model.to_sklearn()
    assert list(estimator.classes_) == ["x", "y", "z"]
    assert_scores_as(estimator, model, frame[NUMERIC])


@pytest.mark.parametrize(
    "names", [("numeric", "a__b"), ("transformers", "category0"), ("remainder", "numeric")]
)
def test_columns_named_like_scikit_learn_steps_or_parameters(one_client, tmp_path, names):
    """ColumnTransformer step names may not repeat, hold '__' or name its parameters; such
    columns get a step named 'category<j>' and score the same."""
    rename = dict(zip(CATEGORICAL, names, strict=True))
    frame = table(600, 1, nulls=True).rename(columns=rename)
    data = write(tmp_path / "data", frame)
    model = LogisticRegression(
        solver="lbfgs", categorical=list(names), missing="mean", min_count=20, l2=0.01
    ).fit(data, label="y", client=one_client)
    estimator = model.to_sklearn()
    steps = [name for name, _, _ in estimator[0].transformers_]
    assert len(set(steps)) == len(steps) == 3
    assert not any("__" in step for step in steps)
    score = table(300, 2, nulls=True, unseen=True).rename(columns=rename)
    assert_scores_as(estimator, model, score)
