"""The estimator as scikit-learn and dask-ml users use it: clone, fit(X, y) on every input
type, Pipeline, GridSearchCV, cross_val_score and scikit-learn's own estimator checks."""

import dask.array as da
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from conftest import random_problem, write_partitions
from sklearn.base import clone
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import check_estimator

import lrdask.estimator
from lrdask import LogisticRegression
from lrdask.errors import DataError, LrdaskError, NotFittedError
from lrdask.estimator import expected_failed_checks

EXACT = {"solver": "newton", "tol": 0.0, "gtol": 1e-13, "max_iter": 100}


def test_clone_get_and_set_params_follow_scikit_learn():
    model = LogisticRegression(solver="lbfgs", l2=0.5, class_weight={0: 2.0})
    copy = clone(model)
    assert copy is not model
    assert copy.get_params() == model.get_params()
    assert copy.get_params(deep=True) == model.get_params(deep=False)
    assert copy.set_params(alpha=0.3, threshold=0.7) is copy
    assert (copy.alpha, copy.threshold, model.alpha) == (0.3, 0.7, 0.1)
    with pytest.raises(ValueError, match="Invalid parameter 'bogus'"):
        copy.set_params(bogus=1)
    assert "solver='lbfgs'" in repr(model)


def test_clone_keeps_a_fitted_init_model(one_client):
    X, y = random_problem(400, 3, seed=5)
    start = LogisticRegression(solver="lbfgs", max_iter=3, gtol=0).fit(X, y)
    model = LogisticRegression(solver="lbfgs", init=start)
    copy = clone(model)
    assert copy.init is start and copy.get_params()["solver"] == "lbfgs"
    fitted = copy.fit(X, y)
    assert fitted.loss_history_[0] == pytest.approx(start.loss_history_[-1], rel=1e-12)
    assert fitted.loss_history_[0] < np.log(2) - 1e-3  # not the cold start


@pytest.fixture(scope="module")
def problem(tmp_path_factory):
    X, y = random_problem(3000, 4, seed=7)
    path = write_partitions(tmp_path_factory.mktemp("api") / "d", X, y, [1000, 1200, 800])
    return X, y.astype(np.int64), path


def _inputs(X, y):
    """Every in-memory input type fit takes, as (X, y) pairs."""
    names = [f"x{j}" for j in range(X.shape[1])]
    frame = pd.DataFrame(X, columns=names)
    dask_frame = dd.from_pandas(frame.assign(y=y), npartitions=4)
    return {
        "numpy": (X, y),
        "list": (X.tolist(), y.tolist()),
        "pandas": (frame, pd.Series(y, name="y")),
        "dask array": (da.from_array(X, chunks=(700, 2)), da.from_array(y, chunks=700)),
        "dask array, numpy y": (da.from_array(X, chunks=(900, 4)), y),
        "dask DataFrame + Series": (dask_frame[names], dask_frame["y"]),
        "dask DataFrame + label=": (dask_frame, None),
    }


@pytest.mark.parametrize("kind", list(_inputs(np.zeros((2, 4)), np.zeros(2, dtype=np.int64))))
def test_fit_on_each_input_type_equals_the_parquet_path(one_client, problem, kind):
    X, y, path = problem
    reference = LogisticRegression(**EXACT).fit(path, label="y")
    data, labels = _inputs(X, y)[kind]
    extra = {"label": "y"} if labels is None else {}
    model = LogisticRegression(**EXACT).fit(data, labels, **extra)
    np.testing.assert_allclose(model.coef_, reference.coef_, rtol=1e-12, atol=1e-12)
    assert model.intercept_ == pytest.approx(reference.intercept_, rel=1e-12, abs=1e-12)
    assert model.n_features_in_ == 4
    assert list(model.classes_) == [0, 1]
    # the model scores every input type alike
    want = reference.predict_proba(X)
    for other, given in _inputs(X, y).values():
        if given is None:  # the frame holding the label column too
            other = other.drop(columns="y")
        got = model.predict_proba(other)
        got = got.compute() if hasattr(got, "compute") else got
        np.testing.assert_allclose(got, want, rtol=1e-11, atol=1e-12)


def test_sample_weight_equals_a_weight_column_and_repeated_rows(one_client, problem):
    X, y, _ = problem
    counts = np.random.default_rng(3).integers(0, 4, size=len(y))
    weighted = LogisticRegression(**EXACT).fit(X, y, sample_weight=counts)
    repeated = LogisticRegression(**EXACT).fit(np.repeat(X, counts, 0), np.repeat(y, counts))
    np.testing.assert_allclose(weighted.coef_, repeated.coef_, rtol=1e-9, atol=1e-10)
    frame = pd.DataFrame(X, columns=list("abcd")).assign(y=y, w=counts.astype(float))
    by_column = LogisticRegression(weight_col="w", **EXACT).fit(frame, label="y")
    np.testing.assert_allclose(by_column.coef_, weighted.coef_, rtol=1e-12, atol=1e-12)
    with pytest.raises(LrdaskError, match="either weight_col or sample_weight"):
        LogisticRegression(weight_col="w").fit(frame, label="y", sample_weight=counts)
    lazy = LogisticRegression(**EXACT).fit(
        da.from_array(X, chunks=(1000, 4)), da.from_array(y, chunks=1000), counts
    )
    np.testing.assert_allclose(lazy.coef_, weighted.coef_, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "labels",
    [
        np.array(["no", "yes"]),
        np.array(["b", "a"]),
        np.array([False, True]),
        np.array([-1, 1]),
        np.array([0.0, 2.0]),
        np.array(["cat", "dog", "emu"]),
        np.array([3, 1, 2]),
    ],
    ids=lambda v: "-".join(map(str, v)),
)
def test_any_label_values_become_classes_and_predictions(one_client, labels):
    X, _ = random_problem(600, 3, seed=2)
    rng = np.random.default_rng(0)
    index = (X[:, 0] + 0.3 * rng.normal(size=600) > 0).astype(int)
    if len(labels) == 3:
        index = index + (X[:, 1] > 0.5)
    y = labels[index]
    model = LogisticRegression(solver="lbfgs", gtol=1e-8).fit(X, y)
    assert list(model.classes_) == sorted(labels.tolist())
    predicted = model.predict(X)
    assert set(predicted.tolist()) <= set(labels.tolist())
    assert predicted.dtype.kind == np.asarray(labels).dtype.kind or labels.dtype.kind == "U"
    proba = model.predict_proba(X)
    np.testing.assert_array_equal(predicted, model.classes_[proba.argmax(axis=1)])
    assert model.score(X, y) == pytest.approx(np.mean(predicted == y))
    weights = rng.random(600)
    assert model.score(X, y, sample_weight=weights) == pytest.approx(
        np.sum(weights * (predicted == y)) / weights.sum()
    )


def test_decision_function_log_proba_threshold_agree(one_client, problem):
    X, y, _ = problem
    model = LogisticRegression(**EXACT).fit(X, y)
    z = model.decision_function(X)
    assert z.shape == (len(y),)
    np.testing.assert_allclose(z, X @ model.coef_ + model.intercept_, rtol=1e-13, atol=1e-13)
    np.testing.assert_array_equal(model.predict(X), (z > 0).astype(int))
    np.testing.assert_allclose(np.exp(model.predict_log_proba(X)), model.predict_proba(X))
    far = np.full((1, 4), 1e3) * np.sign(model.coef_)
    assert model.predict_log_proba(far)[0, 0] < -700  # not log(0) = -inf
    assert np.isfinite(model.predict_log_proba(far)).all()
    for threshold in (0.1, 0.5, 0.9):
        model.set_params(threshold=threshold)
        np.testing.assert_array_equal(
            model.predict(X), (model.predict_proba(X)[:, 1] > threshold).astype(int)
        )
        lazy = model.predict(da.from_array(X, chunks=(500, 4))).compute()
        np.testing.assert_array_equal(lazy, model.predict(X))


def test_multinomial_scores_have_one_column_per_class(one_client):
    X, _ = random_problem(900, 3, seed=4)
    y = np.digitize(X[:, 0] + X[:, 1], [-0.5, 0.5])
    model = LogisticRegression(solver="lbfgs", gtol=1e-9).fit(X, y)
    z = model.decision_function(X)
    assert z.shape == (900, 3)
    np.testing.assert_array_equal(model.predict(X), model.classes_[z.argmax(axis=1)])
    log_proba = model.predict_log_proba(X)
    np.testing.assert_allclose(np.exp(log_proba), model.predict_proba(X), rtol=1e-12)


def test_pipeline_grid_search_and_cross_validation(one_client, monkeypatch):
    """On the breast-cancer data (shipped with scikit-learn): scikit-learn's tools drive
    lrdask through clone, set_params, fit and score, on the client already running."""

    def no_new_cluster():
        raise AssertionError("a fit started a cluster while a client existed")

    monkeypatch.setattr(lrdask.estimator, "connect", no_new_cluster)
    X, y = load_breast_cancer(return_X_y=True)
    pipe = make_pipeline(StandardScaler(), LogisticRegression(solver="lbfgs", gtol=1e-8))
    folds = KFold(3, shuffle=True, random_state=0)
    search = GridSearchCV(pipe, {"logisticregression__l2": [1e-3, 1e-1]}, cv=folds)
    search.fit(X, y)
    for k, l2 in enumerate([1e-3, 1e-1]):
        manual = []
        for train, test in folds.split(X):
            fold = clone(pipe).set_params(logisticregression__l2=l2).fit(X[train], y[train])
            manual.append(np.mean(fold.predict(X[test]) == y[test]))
        assert search.cv_results_["mean_test_score"][k] == pytest.approx(np.mean(manual))
    assert search.best_estimator_.score(X, y) > 0.95
    scores = cross_val_score(pipe, X, y, cv=folds)
    assert scores.shape == (3,) and scores.min() > 0.9


# scikit-learn's own checks, for the default estimator and the other solvers.
@pytest.mark.parametrize(
    "params",
    [{}, {"solver": "lbfgs"}, {"solver": "newton"}, {"solver": "agd", "line_search": True}],
    ids=["default-gd", "lbfgs", "newton", "agd-line-search"],
)
def test_scikit_learn_check_estimator(one_client, params):
    estimator = LogisticRegression(**params)
    expected = expected_failed_checks(estimator)
    results = check_estimator(estimator, on_fail=None, on_skip=None)
    failed = {r["check_name"] for r in results if r["status"] == "failed"}
    assert failed == set(expected), [
        (r["check_name"], repr(r["exception"])[:300]) for r in results if r["status"] == "failed"
    ]
    assert len(results) > 50


@pytest.mark.parametrize(
    "make, error, message",
    [
        (lambda X, y: (X, None), DataError, "requires y to be passed"),
        (lambda X, y: (X, y[:-1]), DataError, "inconsistent numbers of samples"),
        (lambda X, y: (X, y + 0.5), DataError, "Unknown label type"),
        (lambda X, y: (np.where(X > 2, np.nan, X), y), DataError, "Input X contains NaN"),
        (lambda X, y: (np.where(X > 2, np.inf, X), y), DataError, "infinity"),
        (lambda X, y: (X[:, 0], y), DataError, "Expected 2D array"),
        (lambda X, y: (X[:0], y[:0]), DataError, "0 sample"),
        (lambda X, y: (X.astype(complex), y), DataError, "Complex data not supported"),
        (
            lambda X, y: (np.array([["a", 1.0]] * len(y), dtype=object), y),
            DataError,
            "could not convert string to float",
        ),
        (lambda X, y: (np.array([[{}, 1.0]] * len(y), dtype=object), y), TypeError, "dict"),
        (
            lambda X, y: (
                dd.from_pandas(pd.DataFrame(X, columns=list("abcd")), npartitions=3),
                dd.from_pandas(pd.Series(y), npartitions=2),
            ),
            DataError,
            "X has 3 partitions but y has 2",
        ),
    ],
    ids=[
        "no y",
        "lengths",
        "continuous y",
        "nan",
        "inf",
        "1d X",
        "empty",
        "complex",
        "text in an array",
        "object in an array",
        "dask partitions differ",
    ],
)
def test_bad_arrays_are_our_one_line_errors(one_client, problem, make, error, message):
    X, y, _ = problem
    data, labels = make(X[:300], y[:300])
    with pytest.raises(LrdaskError, match=message) as caught:
        LogisticRegression(solver="lbfgs").fit(data, labels)
    assert isinstance(caught.value, error)
    assert "\n" not in str(caught.value)


def test_scoring_checks_the_input_and_the_fit(one_client, problem):
    X, y, _ = problem
    with pytest.raises(NotFittedError):
        LogisticRegression().predict(X)
    model = LogisticRegression(solver="lbfgs").fit(X, y)
    with pytest.raises(DataError, match="X has 3 features, but LogisticRegression is expecting 4"):
        model.predict_proba(X[:, :3])
    with pytest.raises(DataError, match="X has 3 features"):
        model.decision_function(da.from_array(X[:, :3]))
    named = LogisticRegression(solver="lbfgs").fit(pd.DataFrame(X, columns=list("abcd")), y)
    with pytest.raises(DataError, match="feature names should match"):
        named.predict(pd.DataFrame(X, columns=list("abce")))
    np.testing.assert_array_equal(named.predict(X), model.predict(X))  # arrays by position
    nan_rows = np.where(np.arange(len(X))[:, None] % 7 == 0, np.nan, X)
    skip = LogisticRegression(solver="lbfgs", missing="skip").fit(nan_rows, y)
    assert np.isnan(skip.predict_proba(nan_rows)[::7]).all()
    with pytest.raises(DataError, match="missing values"):
        skip.predict(nan_rows)


@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.8])
def test_validation_metrics_use_the_models_threshold(one_client, tmp_path, threshold):
    X, y = random_problem(2000, 3, seed=11)
    train = write_partitions(tmp_path / "t", X[:1500], y[:1500], [1500])
    held = write_partitions(tmp_path / "v", X[1500:], y[1500:], [500])
    model = LogisticRegression(solver="newton", threshold=threshold)
    model.fit(train, label="y", validation=held)
    p = model.predict_proba(X[1500:])[:, 1]
    predicted, truth = p > threshold, y[1500:] == 1
    got = model.validation_metrics_
    assert got["accuracy"] == pytest.approx(np.mean(predicted == truth), abs=1e-12)
    assert got["recall"] == pytest.approx(np.sum(predicted & truth) / truth.sum(), abs=1e-12)


def test_worker_side_modules_do_not_import_scikit_learn_or_scipy():
    """Every worker process imports lrdask's kernels and loaders; scikit-learn (and the
    scipy it pulls in) would cost each one about 100 MB, so only the driver's estimator,
    solvers and export import them (the memory tests found this)."""
    import subprocess
    import sys

    modules = [
        "kernels",
        "softmax_kernels",
        "loading",
        "encoding",
        "dataset",
        "scheduling",
        "reduction",
        "sums",
        "predict",
        "evaluation",
        "sources",
        "arrays",
        "validation",
        "memory",
        "errors",
    ]
    code = (
        "import sys\n"
        + "".join(f"import lrdask.{m}\n" for m in modules)
        + "print(sorted(m for m in ('sklearn', 'scipy', 'lrdask.estimator') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_in_memory_blocks_carry_only_their_own_rows(monkeypatch):
    """Each block of fit(X, y) travels inside its load task; a pickled Arrow slice carries
    its whole parent table, which made a 1M-row fit hold one copy of X per block (12 GB;
    found by the benchmark). The tasks together must hold about X once."""
    import pickle

    from lrdask import sources

    captured = {}

    def capture(cls, client, load, args, timeout=None):
        captured["args"] = args

    monkeypatch.setattr(sources.PersistedBlocks, "from_loaders", classmethod(capture))
    X, y = random_problem(200_000, 5, seed=3)  # four blocks
    source = sources.training_source(X, None, None, None, None, None, y=y)
    source.persist(None, None, "float64", None, True)
    assert len(captured["args"]) == 4
    sent = sum(len(pickle.dumps(arg)) for arg in captured["args"])
    assert sent < 1.2 * (X.nbytes + y.nbytes), (sent, X.nbytes)
