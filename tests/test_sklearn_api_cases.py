"""The scikit-learn API as a fresh tester tried to break it (#15): one test per kind of
failure found, each stating what a scikit-learn / dask-ml user expects; references are
computed here with scikit-learn or NumPy. (They failed on 7899cb1.)"""

import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression as SkLogisticRegression
from sklearn.model_selection import GridSearchCV, cross_val_score

from lrdask import LogisticRegression
from lrdask.errors import LrdaskError


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 3))
    y = (X @ [1.0, -2.0, 0.5] + rng.normal(size=300) > 0).astype(int)
    return X, y, rng.uniform(0.5, 2.0, 300)


def exact(**params):
    return LogisticRegression(**{"solver": "lbfgs", "gtol": 1e-10, "tol": 0, **params})


# 1. silent wrong answer: classes_ not sorted breaks scikit-learn's scorers
@pytest.mark.parametrize("scoring", ["roc_auc", "neg_log_loss"])  # AP needs pos_label for text
def test_positive_class_smaller_label_keeps_sklearn_scorers_right(one_client, problem, scoring):
    X, y, _ = problem
    labels = np.where(y == 1, "yes", "no")
    default = cross_val_score(exact(), X, labels, scoring=scoring, cv=3)
    negated = cross_val_score(exact(positive_class="no"), X, labels, scoring=scoring, cv=3)
    np.testing.assert_allclose(negated, default, rtol=1e-6)


# 2. GridSearchCV(n_jobs=2): joblib's child processes have no Dask client. With
# DASK_SCHEDULER_ADDRESS they use the user's cluster; without it, one clear error (an
# embedded LocalCluster cannot start inside a loky child, and one per fit would be wrong)
def test_grid_search_n_jobs_2_uses_the_cluster_at_dask_scheduler_address(problem, monkeypatch):
    from distributed import Client, LocalCluster

    X, y, _ = problem
    with (
        LocalCluster(n_workers=1, threads_per_worker=2, processes=False, protocol="tcp") as c,
        Client(c) as client,
    ):
        monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", c.scheduler_address)
        search = GridSearchCV(exact(), {"l2": [0.0, 0.1]}, cv=3, n_jobs=2, error_score="raise")
        search.fit(X, y)
        assert len(client.scheduler_info()["workers"]) == 1
    serial = GridSearchCV(exact(), {"l2": [0.0, 0.1]}, cv=3, n_jobs=1).fit(X, y)
    np.testing.assert_allclose(
        search.cv_results_["mean_test_score"], serial.cv_results_["mean_test_score"]
    )


def test_grid_search_n_jobs_2_without_a_cluster_address_is_one_clear_error(problem):
    X, y, _ = problem
    search = GridSearchCV(exact(), {"l2": [0.0, 0.1]}, cv=3, n_jobs=2, error_score="raise")
    with pytest.raises(LrdaskError, match="DASK_SCHEDULER_ADDRESS") as raised:
        search.fit(X, y)
    assert "\n" not in str(raised.value)


# 3. hang: joblib's dask backend (dask-ml's way to grid-search on the cluster) runs fit in
# a worker thread, which waits on tasks the busy worker threads never run
def test_joblib_dask_backend_does_not_hang():
    script = textwrap.dedent(
        """
        import joblib, numpy as np
        from distributed import Client, LocalCluster
        from sklearn.model_selection import GridSearchCV
        from lrdask import LogisticRegression
        if __name__ == "__main__":
            with LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                              dashboard_address=":0") as cluster, Client(cluster):
                rng = np.random.default_rng(0)
                X = rng.normal(size=(200, 3)); y = (X[:, 0] > 0).astype(int)
                with joblib.parallel_backend("dask"):
                    GridSearchCV(LogisticRegression(solver="lbfgs"), {"l2": [0, 0.1]},
                                 cv=3, n_jobs=-1, error_score="raise").fit(X, y)
                print("done")
        """
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
        )
    except subprocess.TimeoutExpired:
        pytest.fail("GridSearchCV under joblib.parallel_backend('dask') hung for 120 s")
    assert "done" in done.stdout, done.stderr[-2000:]


# 4. raw AttributeError: init= a model fitted on a NumPy array (no feature_names_in_)
def test_init_from_array_fitted_model(one_client, problem):
    X, y, _ = problem
    start = exact(max_iter=3).fit(X, y)
    model = exact(init=start).fit(X, y)
    np.testing.assert_allclose(model.coef_, exact().fit(X, y).coef_, atol=1e-6)


# 5. clone() turns init=<fitted model> into an unfitted clone: NotFittedError in
# clone(...).fit, GridSearchCV and cross_val_score
def test_clone_keeps_init_model_usable(one_client, problem):
    X, y, _ = problem
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    start = exact(max_iter=3).fit(frame, y)
    clone(exact(init=start)).fit(frame, y)


# 6. silent: weight_col with array inputs is ignored (NumPy) or becomes a feature and is
# not used as weights (pandas)
def test_weight_col_with_numpy_is_not_silently_ignored(one_client, problem):
    X, y, _ = problem
    with pytest.raises(LrdaskError):
        exact(weight_col="w").fit(X, y)


def test_weight_col_in_pandas_frame_weighs_rows(one_client, problem):
    X, y, w = problem
    frame = pd.DataFrame(X, columns=["a", "b", "c"]).assign(w=w)
    model = exact(weight_col="w").fit(frame, y)
    assert list(model.feature_names_in_) == ["a", "b", "c"]
    np.testing.assert_allclose(model.coef_, exact().fit(X, y, sample_weight=w).coef_, atol=1e-6)


# 7. numbers: class_weight="balanced" with sample_weight uses unweighted class counts;
# scikit-learn (>= 1.6) uses the weighted ones
def test_balanced_with_sample_weight_matches_sklearn(one_client, problem):
    X, y, w = problem
    ours = exact(class_weight="balanced").fit(X, y, sample_weight=w)
    theirs = SkLogisticRegression(C=np.inf, tol=1e-12, max_iter=10000, class_weight="balanced")
    theirs.fit(X, y, sample_weight=w)
    np.testing.assert_allclose(ours.coef_, theirs.coef_.ravel(), atol=1e-6)


# 8. raw ValueError: to_sklearn() of an array-fitted missing="mean" model cannot score
# the same NumPy array ("Specifying the columns using strings is only supported for
# dataframes")
def test_to_sklearn_of_array_fitted_mean_model_scores_arrays(one_client, problem):
    X, y, _ = problem
    X = X.copy()
    X[3, 1] = np.nan
    model = exact(missing="mean").fit(X, y)
    exported = model.to_sklearn()
    np.testing.assert_allclose(exported.predict_proba(X), model.predict_proba(X), atol=1e-12)


# 9. save/load of an array-fitted model invents feature_names_in_ (x0, x1, ...): the
# loaded model refuses a DataFrame the fitted one scored
def test_save_load_keeps_array_fitted_model_unnamed(one_client, problem, tmp_path):
    X, y, _ = problem
    model = exact().fit(X, y)
    model.save(str(tmp_path))
    loaded = LogisticRegression.load(str(tmp_path))
    assert hasattr(loaded, "feature_names_in_") == hasattr(model, "feature_names_in_")
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    np.testing.assert_array_equal(loaded.predict(frame), model.predict(frame))


# 10./11. messages that do not name the culprit
@pytest.mark.parametrize(
    "labels",
    [np.array(["a", None] * 150, dtype=object), np.array(["a", 1] * 150, dtype=object)],
    ids=["none-in-strings", "mixed-types"],
)
def test_bad_labels_message_names_y(one_client, problem, labels):
    X, _, _ = problem
    with pytest.raises(LrdaskError, match=r"\by\b|label"):
        exact().fit(X, labels)


def test_path_with_label_array_message(one_client, problem, tmp_path):
    X, y, _ = problem
    pd.DataFrame(X, columns=["a", "b", "c"]).assign(t=y).to_parquet(tmp_path / "p.parquet")
    with pytest.raises(LrdaskError) as raised:
        exact().fit(str(tmp_path), y)
    # now: "could not convert string to float: '<the path>'"
    assert "label=" in str(raised.value), str(raised.value)


# 12. raw exceptions from the public API
def test_client_given_as_address_is_our_error(problem):
    X, y, _ = problem
    with pytest.raises(LrdaskError):
        exact().fit(X, y, client="tcp://127.0.0.1:1")


# 13. Python users were told CLI flags (--categorical, --missing, --exclude): every piece of
# advice a Python caller gets is in the Python API's words
@pytest.mark.parametrize(
    "params, make",
    [
        ({}, lambda f, y: (f.assign(k="u"), y)),
        ({"categorical": ["k", "k"]}, lambda f, y: (f.assign(k="u"), y)),
        ({}, lambda f, y: (f.assign(t=np.where(y == 1, None, 1.0)), "t")),
        ({"family": "binomial"}, lambda f, y: (f, np.arange(len(y)) % 3)),
        ({"positive_class": "z"}, lambda f, y: (f, y)),
        ({"solver": "newton"}, lambda f, y: (f, np.arange(len(y)) % 3)),
        ({"alpha": 1e3, "solver": "gd", "line_search": False}, lambda f, y: (f * 1e3, y)),
    ],
    ids=[
        "string column",
        "twice",
        "null labels",
        "3 for binomial",
        "positive",
        "newton",
        "diverged",
    ],
)
def test_python_messages_name_python_parameters(one_client, problem, params, make):
    X, y, _ = problem
    data, labels = make(pd.DataFrame(X, columns=["a", "b", "c"]), y)
    kw = {"label": labels} if isinstance(labels, str) else {}
    with pytest.raises(LrdaskError) as raised:
        exact(**params).fit(data, None if kw else labels, **kw)
    assert "--" not in str(raised.value), str(raised.value)


# 14. RuntimeWarning leaks from predict on large values
def test_no_runtime_warning_on_large_values(one_client, problem):
    X, y, _ = problem
    model = exact().fit(X, y)
    with _no_warnings():
        model.predict_proba(np.array([[1e308, 1e308, 1e308]]))


class _no_warnings:
    def __enter__(self):
        import warnings

        self._catch = warnings.catch_warnings(record=True)
        self._log = self._catch.__enter__()
        warnings.simplefilter("always")

    def __exit__(self, *exc):
        self._catch.__exit__(*exc)
        runtime = [w for w in self._log if issubclass(w.category, RuntimeWarning)]
        assert not runtime, [str(w.message) for w in runtime]


# the kind behind "twice": a check the Parquet planner makes must hold for every input
@pytest.mark.parametrize("kind", ["parquet", "pandas + label", "pandas + y", "dask + label"])
@pytest.mark.parametrize(
    "params, fit_args, message",
    [
        ({"categorical": ["k", "k"]}, {}, "names column 'k' twice"),
        ({}, {"features": ["a", "a"]}, "names column 'a' twice"),
        ({}, {"exclude": ["b", "b"]}, "names column 'b' twice"),
        ({}, {"features": ["a", "b"], "exclude": ["b"]}, "'b' is both in"),
    ],
    ids=["categorical twice", "features twice", "exclude twice", "features and exclude"],
)
def test_option_lists_are_checked_for_every_input(
    one_client, problem, tmp_path, kind, params, fit_args, message
):
    import dask.dataframe as dd

    X, y, _ = problem
    frame = pd.DataFrame(X, columns=["a", "b", "c"]).assign(k=np.where(y == 1, "u", "v"))
    data, labels = {
        "parquet": lambda: (_parquet(frame.assign(t=y), tmp_path), None),
        "pandas + label": lambda: (frame.assign(t=y), None),
        "pandas + y": lambda: (frame, y),
        "dask + label": lambda: (dd.from_pandas(frame.assign(t=y), npartitions=2), None),
    }[kind]()
    label = {"label": "t"} if labels is None else {}
    with pytest.raises(LrdaskError, match=message):
        exact(**params).fit(data, labels, **label, **fit_args)


def _parquet(frame, tmp_path):
    frame.to_parquet(tmp_path / "p.parquet")
    return str(tmp_path)
