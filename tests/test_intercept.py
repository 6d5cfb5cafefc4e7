"""fit_intercept=False (CLI --no-intercept): the intercepts are fixed at 0 for every
solver and family, with and without --standardize, with penalties, weights and
categorical columns; the fitted model is scikit-learn's LogisticRegression(
fit_intercept=False) for the same objective (C = 1 / (λ·m))."""

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import write_partitions
from procs import lrdask
from reference import dense_one_hot
from scipy.special import expit, softmax

from lrdask import LogisticRegression
from lrdask.checkpoint import Checkpoints
from lrdask.dataset import plan_dataset
from lrdask.solvers import SolverState

# columns away from 0 (so that the intercept matters), none constant, and labels drawn
# from a model with both signs: a well-conditioned problem with a unique optimum
SHIFT = np.array([1.0, -0.5, 0.3])


def problem(classes: int, rows: int = 600, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, 3)) + SHIFT
    W = rng.normal(size=(3, classes if classes > 2 else 1))
    z = X @ W
    if classes == 2:
        y = (rng.random(rows) < expit(z[:, 0])).astype(float)
    else:
        u = rng.random(rows)[:, None]
        y = (u > np.cumsum(softmax(z, axis=1), axis=1)).sum(axis=1).astype(float)
    return X, y


def sklearn_fit(X, y, l2=0.0, sample_weight=None, l1=0.0):
    from sklearn.linear_model import LogisticRegression as SkLogistic

    total = len(y) if sample_weight is None else float(np.sum(sample_weight))
    if l1:
        sk = SkLogistic(
            C=1.0 / (l1 * total),
            l1_ratio=1.0,
            solver="saga",
            fit_intercept=False,
            tol=1e-14,
            max_iter=500_000,
        )
    else:
        C = 1.0 / (l2 * total) if l2 else np.inf
        sk = SkLogistic(C=C, fit_intercept=False, tol=1e-13, max_iter=100_000)
    return sk.fit(X, y, sample_weight=sample_weight)


def numpy_gd(X, y, classes, alpha, iterations, l2=0.0, scale=None):
    """Plain gradient descent without an intercept, in the coordinates x/scale (the
    standardized ones, without centring), written independently of lrdask; the
    coefficients on the original scale, (features,) or (K, features)."""
    Xs = X if scale is None else X / scale
    m = len(y)
    if classes == 2:
        target, W = y[:, None], np.zeros((X.shape[1], 1))
    else:
        target, W = np.eye(classes)[y.astype(int)], np.zeros((X.shape[1], classes))
    for _ in range(iterations):
        z = Xs @ W
        P = expit(z) if classes == 2 else softmax(z, axis=1)
        W = W - alpha * (Xs.T @ (P - target) / m + l2 * W)
    if scale is not None:
        W = W / scale[:, None]
    return W[:, 0] if classes == 2 else W.T


VARIANTS = {"plain": {}, "standardize": {"standardize": True}, "l2": {"l2": 0.01}}
FAMILIES = {"binomial": 2, "multinomial": 3}


# newton is binomial only
SOLVER_FAMILIES = [
    (solver, family)
    for solver in ["gd+ls", "agd", "lbfgs", "newton"]
    for family in FAMILIES
    if not (solver == "newton" and family == "multinomial")
]


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize(("solver", "family"), SOLVER_FAMILIES)
def test_every_solver_reaches_sklearn_without_intercept(
    one_client, tmp_path, solver, family, variant
):
    classes = FAMILIES[family]
    X, y = problem(classes, seed=classes)
    path = write_partitions(tmp_path / "d", X, y, [250, 350])
    options = VARIANTS[variant]
    model = LogisticRegression(
        solver=solver.removesuffix("+ls"),
        line_search=solver.endswith("+ls"),
        family=family,
        fit_intercept=False,
        alpha=1.0,
        tol=0.0,
        gtol=1e-9,
        max_iter=5000,
        **options,
    ).fit(path, "y", client=one_client)
    sk = sklearn_fit(X, y, options.get("l2", 0.0))
    assert model.status_ == "converged", model.stop_reason_
    np.testing.assert_array_equal(model.intercept_, np.zeros_like(model.intercept_))
    assert np.shape(model.intercept_) == (() if classes == 2 else (classes,))
    np.testing.assert_allclose(model.predict_proba(X), sk.predict_proba(X), rtol=0, atol=1e-6)
    if classes == 2:  # unique coefficients (a multinomial softmax's are not, unpenalized)
        np.testing.assert_allclose(model.coef_, sk.coef_[0], rtol=0, atol=1e-5)
    # without an intercept every solver starts at θ = 0: J = log K
    assert model.loss_history_[0] == pytest.approx(np.log(classes))


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("family", list(FAMILIES))
def test_gd_is_the_update_without_intercept(one_client, tmp_path, family, variant):
    classes = FAMILIES[family]
    X, y = problem(classes, seed=10 + classes)
    path = write_partitions(tmp_path / "d", X, y, [100, 0, 500])
    options = VARIANTS[variant]
    alpha, iterations = 0.5, 40
    model = LogisticRegression(
        family=family,
        fit_intercept=False,
        alpha=alpha,
        max_iter=iterations,
        tol=0.0,
        gtol=0.0,
        **options,
    ).fit(path, "y", client=one_client)
    scale = X.std(axis=0) if options.get("standardize") else None
    want = numpy_gd(X, y, classes, alpha, iterations, options.get("l2", 0.0), scale)
    np.testing.assert_allclose(model.coef_, want, rtol=1e-10, atol=1e-13)
    np.testing.assert_array_equal(model.intercept_, np.zeros_like(model.intercept_))
    assert model.n_iter_ == iterations


@pytest.mark.parametrize("solver", ["agd", "lbfgs"])
def test_l1_without_intercept_reaches_sklearn(one_client, tmp_path, solver):
    X, y = problem(2, seed=4)
    path = write_partitions(tmp_path / "d", X, y, [300, 300])
    l1 = 0.02
    model = LogisticRegression(
        solver=solver, l1=l1, fit_intercept=False, alpha=1.0, tol=0.0, gtol=1e-9, max_iter=5000
    ).fit(path, "y", client=one_client)
    sk = sklearn_fit(X, y, l1=l1)
    assert model.status_ == "converged", model.stop_reason_
    assert model.intercept_ == 0.0
    np.testing.assert_allclose(model.coef_, sk.coef_[0], rtol=0, atol=1e-5)


def test_weights_and_categorical_without_intercept(one_client, tmp_path):
    """Sample weights and a categorical column (reference coding, as unpenalized fits
    with an intercept use it): sklearn on the dense design with ``sample_weight``."""
    rng = np.random.default_rng(7)
    n = 900
    X, _ = problem(2, rows=n, seed=7)
    city = rng.choice(["ams", "ber", "cph", "dub"], size=n)
    effect = pd.Series(city).map({"ams": 0.0, "ber": 0.8, "cph": -0.6, "dub": 0.3}).to_numpy()
    y = (rng.random(n) < expit(X @ [0.7, -1.0, 0.5] + effect)).astype(np.int64)
    weights = rng.uniform(0.2, 3.0, size=n)
    frame = pd.DataFrame({"a": X[:, 0], "b": X[:, 1], "c": X[:, 2], "city": city})
    path = tmp_path / "d"
    path.mkdir()
    for i, part in enumerate(np.array_split(np.arange(n), 3)):
        table = pa.Table.from_pandas(frame.iloc[part], preserve_index=False)
        table = table.append_column("w", pa.array(weights[part])).append_column(
            "y", pa.array(y[part])
        )
        pq.write_table(table, path / f"part-{i}.parquet")
    model = LogisticRegression(
        solver="lbfgs",
        fit_intercept=False,
        weight_col="w",
        categorical=["city"],
        tol=0.0,
        gtol=1e-9,
        max_iter=2000,
    ).fit(str(path), "y", client=one_client)
    D = dense_one_hot(frame, ["a", "b", "c"], ["city"])
    sk = sklearn_fit(D, y, sample_weight=weights)
    assert model.status_ == "converged", model.stop_reason_
    assert model.intercept_ == 0.0
    np.testing.assert_allclose(model.coef_, sk.coef_[0], rtol=0, atol=1e-5)
    proba = model.predict_proba(frame)
    np.testing.assert_allclose(proba[:, 1], sk.predict_proba(D)[:, 1], rtol=0, atol=1e-6)


def test_constant_column_is_the_users_intercept(one_client, tmp_path):
    """A column of ones without an intercept is a coefficient like any other (not
    'collinear with the intercept'): the model equals one fitted with an intercept."""
    X, y = problem(2, seed=5)
    ones = np.column_stack([X, np.ones(len(y))])
    with_ones = write_partitions(tmp_path / "ones", ones, y, [300, 300])
    plain = write_partitions(tmp_path / "plain", X, y, [300, 300])
    kw = dict(solver="newton", tol=0.0, gtol=1e-10)
    own = LogisticRegression(fit_intercept=False, **kw).fit(with_ones, "y", client=one_client)
    usual = LogisticRegression(**kw).fit(plain, "y", client=one_client)
    assert not own.column_report_  # nothing constant or collinear to report
    np.testing.assert_allclose(own.coef_[:3], usual.coef_, atol=1e-8)
    assert own.coef_[3] == pytest.approx(usual.intercept_, abs=1e-8)


def test_run_identity_and_checkpoint_tell_the_two_apart(tmp_path):
    X, y = problem(2, seed=6)
    path = write_partitions(tmp_path / "d", X, y, [600])
    plan = plan_dataset(path, "y")
    with_b = LogisticRegression(solver="lbfgs").identity_of(plan)
    without_b = LogisticRegression(solver="lbfgs", fit_intercept=False).identity_of(plan)
    assert with_b != without_b
    assert with_b["options"]["fit_intercept"] and not without_b["options"]["fit_intercept"]
    directory = str(tmp_path / "ckpt")
    state = SolverState(np.arange(4.0))  # three coefficients and an intercept
    state.n_iter, state.loss_history = 1, [0.69, 0.6]  # the last cost is recomputed
    Checkpoints(directory, 1, with_b).save(state)
    assert Checkpoints(directory, 1, with_b).resume(4) is not None
    assert Checkpoints(directory, 1, without_b).resume(3) is None


def test_cli_no_intercept_and_config_key(tmp_path):
    X, y = problem(2, rows=400, seed=8)
    data = write_partitions(tmp_path / "data", X, y, [200, 200])
    config = tmp_path / "job.toml"
    config.write_text("fit_intercept = false\nsolver = 'lbfgs'\n")
    runs = {
        "flag": ["--no-intercept", "--solver", "lbfgs"],
        "config": ["--config", config],
        "intercept": ["--solver", "lbfgs"],
    }
    docs = {}
    for name, args in runs.items():
        out = tmp_path / name
        lrdask("train", data, "--label", "y", "--out", out, "--workers", 1, *args)
        docs[name] = json.loads((out / "model.json").read_text())
    for name in ("flag", "config"):
        assert docs[name]["intercept"] == 0.0
        assert docs[name]["options"]["fit_intercept"] is False
        assert docs[name]["training"]["fingerprint"] != docs["intercept"]["training"]["fingerprint"]
    assert docs["flag"]["coef"] == docs["config"]["coef"]
    assert docs["intercept"]["intercept"] != 0.0
    assert docs["intercept"]["options"]["fit_intercept"] is True
    lrdask("predict", tmp_path / "flag", data, "--out", tmp_path / "preds", "--workers", 1)
    table = pq.read_table(tmp_path / "preds")
    np.testing.assert_allclose(
        table["probability"].to_numpy(), expit(X @ docs["flag"]["coef"]), rtol=1e-12
    )
    # the finished no-intercept job is not mistaken for the other: a rerun with the
    # intercept into its directory is refused
    again = lrdask(
        "train", data, "--label", "y", "--out", tmp_path / "flag", "--workers", 1, check=False
    )
    assert again.returncode == 2 and "pass --overwrite" in again.stderr
