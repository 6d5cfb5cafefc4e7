"""Badly scaled features must not cripple the solvers (issue "honest convergence", kind 3).

The kind: a solver whose progress, or whose stopping test, depends on the units of the
columns. Every solver but plain gd works in preconditioned coordinates (centred, scaled
by √(σ² + 4λ)) with the intercept started at the class log-odds, and ``gtol`` is tested on
the gradient with respect to the standardized coefficients. So rescaling or shifting a
column (dollars → cents, °C → K) changes neither the predictions of an unpenalized fit,
nor the number of iterations, nor the stopping test; and a penalty stays on the original
coefficients (the objective is unchanged), checked against scikit-learn and against the
optimality conditions computed here in NumPy.
"""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy.special import expit, softmax
from sklearn.linear_model import LogisticRegression as SkLogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from lrdask.estimator import LogisticRegression


def write(directory, X, y, names=None, weight=None, n_files=2) -> str:
    directory.mkdir(parents=True, exist_ok=True)
    names = names or [f"x{j}" for j in range(X.shape[1])]
    columns = {name: X[:, j] for j, name in enumerate(names)}
    columns["y"] = y
    if weight is not None:
        columns["w"] = weight
    table = pa.table(columns)
    cuts = np.linspace(0, len(y), n_files + 1).round().astype(int)
    for i in range(n_files):
        pq.write_table(table.slice(cuts[i], cuts[i + 1] - cuts[i]), directory / f"p{i}.parquet")
    return str(directory)


def problem(n=2000, seed=0, classes=2):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    if classes == 2:
        y = (rng.random(n) < expit(X @ [0.8, -0.5, 0.3] - 0.4)).astype(np.int64)
    else:
        scores = X @ rng.normal(size=(3, classes))
        y = np.array([rng.choice(classes, p=p) for p in softmax(scores, axis=1)])
    return X, y


# one column set in other units: (scale, offset) per column (an offset much larger than
# the spread, 1e6 ± 1, would make z = x·coef + b itself lose digits: no solver could then
# verify gtol = 1e-9)
UNITS = {
    "as is": ([1.0, 1.0, 1.0], [0.0, 0.0, 0.0]),
    "dollars, cents, flag": ([1.5e4, 100.0, 0.5], [5e4, 0.0, 0.5]),
    "tiny": ([1e-4, 1e-3, 1e-2], [0.0, 0.0, 0.0]),
    "kelvin, grams, years": ([1.0, 1e3, 3.0], [273.15, -4e4, 2020.0]),
}
PRECONDITIONED = [
    {"solver": "gd", "line_search": True},
    {"solver": "agd", "alpha": 1.0},
    {"solver": "agd", "line_search": True},
    {"solver": "lbfgs"},
    {"solver": "newton"},
]


def _id(options):
    return "-".join(str(v) for v in options.values())


@pytest.mark.parametrize("options", PRECONDITIONED, ids=_id)
def test_the_units_of_a_column_change_nothing(one_client, tmp_path, options):
    X, y = problem()
    runs = {}
    for name, (scale, offset) in UNITS.items():
        Xu = X * scale + offset
        data = write(tmp_path / name.replace(" ", "_").replace(",", ""), Xu, y)
        model = LogisticRegression(max_iter=2000, tol=0.0, gtol=1e-9, **options)
        model.fit(data, label="y", client=one_client)
        assert model.status_ == "converged", (name, model.stop_reason_)
        runs[name] = (model, model.predict_proba(Xu)[:, 1])
    reference, proba = runs["as is"]
    sk = make_pipeline(StandardScaler(), SkLogisticRegression(C=np.inf, tol=1e-12)).fit(X, y)
    np.testing.assert_allclose(proba, sk.predict_proba(X)[:, 1], atol=1e-7)
    for name, (model, p) in runs.items():
        np.testing.assert_allclose(p, proba, atol=1e-7, err_msg=name)
        # the same iterates in the solver's coordinates: the same number of them
        assert abs(model.n_iter_ - reference.n_iter_) <= 2, (name, model.n_iter_)
        assert model.loss_history_[0] == pytest.approx(reference.loss_history_[0], rel=1e-12)


@pytest.mark.parametrize("options", [{"solver": "lbfgs"}, {"solver": "agd", "line_search": True}])
def test_multinomial_on_badly_scaled_columns(one_client, tmp_path, options):
    X, y = problem(1500, seed=3, classes=3)
    scale, offset = UNITS["dollars, cents, flag"]
    Xu = X * scale + offset
    data = write(tmp_path / "d", Xu, y)
    model = LogisticRegression(max_iter=3000, tol=0.0, gtol=1e-8, **options)
    model.fit(data, label="y", client=one_client)
    assert model.status_ == "converged", model.stop_reason_
    sk = make_pipeline(StandardScaler(), SkLogisticRegression(C=np.inf, tol=1e-12)).fit(X, y)
    np.testing.assert_allclose(model.predict_proba(Xu), sk.predict_proba(X), atol=1e-6)


def unscaled_case(n=5000):
    """The issue's case: income in dollars, age in years and a 0/1 flag."""
    rng = np.random.default_rng(0)
    income, age, flag = rng.normal(5e4, 1.5e4, n), rng.uniform(20, 70, n), rng.integers(0, 2, n)
    z = 1e-5 * (income - 5e4) + 0.03 * (age - 45) + 0.8 * flag - 0.4
    y = (rng.random(n) < expit(z)).astype(np.int64)
    return np.column_stack([income, age, flag]).astype(float), y


def raw_breast_cancer():
    from sklearn.datasets import load_breast_cancer

    return load_breast_cancer(return_X_y=True)


def sklearn_l2(X, y, l2):
    """scikit-learn's optimum of mean log loss + (λ/2)‖coef‖² on the raw columns
    (newton-cholesky: exact on badly scaled data, where its lbfgs is not)."""
    sk = SkLogisticRegression(C=1.0 / (l2 * len(y)), solver="newton-cholesky", tol=1e-12)
    return sk.fit(X, y)


# gd with a line search needs far more passes on raw breast cancer (see bench_solvers)
L2_CASES = [
    (case, options)
    for case in ("unscaled", "breast cancer")
    for options in [*PRECONDITIONED, {"solver": "gd", "alpha": 1e-9}]
    if not (case == "breast cancer" and options.get("line_search") and options["solver"] == "gd")
]


@pytest.mark.parametrize(("case", "options"), L2_CASES, ids=[f"{c}-{_id(o)}" for c, o in L2_CASES])
def test_an_l2_penalty_stays_on_the_original_coefficients(one_client, tmp_path, case, options):
    """The objective is the original one: scikit-learn's (C = 1/(λ·m)) on the raw columns.
    Plain gd (not preconditioned) shows the difference: it does not get there."""
    X, y = unscaled_case() if case == "unscaled" else raw_breast_cancer()
    l2 = 1e-3
    data = write(tmp_path / "d", X, y)
    # lbfgs's line search compares objective values, which stop resolving its steps
    # near 5e-9 here (the penalty's curvature λ/σ² spans 1e-9…143): it is asked for 1e-8
    gtol = 1e-8 if options["solver"] == "lbfgs" else 1e-9
    model = LogisticRegression(l2=l2, max_iter=5000, tol=0.0, gtol=gtol, **options)
    model.fit(data, label="y", client=one_client)
    sk = sklearn_l2(X, y, l2)
    if options == {"solver": "gd", "alpha": 1e-9}:
        assert model.status_ == "max_iter" and model.grad_max_ > 1e-3
        return
    assert model.status_ == "converged", model.stop_reason_
    np.testing.assert_allclose(model.predict_proba(X), sk.predict_proba(X), atol=1e-6)
    stds = X.std(axis=0)
    # coefficients are less well determined than predictions on breast cancer's
    # correlated columns (the Hessian's smallest eigenvalue is ~1e-5)
    atol = 1e-5 if case == "unscaled" else 1e-4
    np.testing.assert_allclose(model.coef_ * stds, sk.coef_[0] * stds, atol=atol)


@pytest.mark.parametrize("options", [{"solver": "lbfgs"}, {"solver": "agd", "line_search": True}])
def test_an_l1_penalty_stays_on_the_original_coefficients(one_client, tmp_path, options):
    """Optimality of mean log loss + λ₁‖coef‖₁ on the raw columns, checked in NumPy: for
    coef_j ≠ 0, ∂J/∂coef_j = −λ₁·sign(coef_j); for coef_j = 0, |∂J/∂coef_j| ≤ λ₁."""
    X, y = unscaled_case()
    noise = np.random.default_rng(9).normal(size=len(y))  # a column the penalty removes
    X = np.column_stack([X, noise])
    l1 = 0.02
    data = write(tmp_path / "d", X, y)
    model = LogisticRegression(l1=l1, max_iter=5000, tol=0.0, gtol=1e-9, **options)
    model.fit(data, label="y", client=one_client)
    assert model.status_ == "converged", model.stop_reason_
    residual = expit(X @ model.coef_ + model.intercept_) - y
    grad, grad_b = X.T @ residual / len(y), residual.mean()
    stds = X.std(axis=0)
    assert abs(grad_b) < 1e-8
    nonzero = np.abs(model.coef_) * stds > 1e-7
    assert not nonzero[3] and nonzero[:3].all()
    np.testing.assert_allclose(
        (grad + l1 * np.sign(model.coef_))[nonzero] / stds[nonzero], 0.0, atol=1e-7
    )
    assert np.all(np.abs(grad[~nonzero]) <= l1 + 1e-7 * stds[~nonzero])


def test_the_start_is_the_class_log_odds(one_client, tmp_path):
    """Preconditioned solvers start at the (weighted) class balance — the first loss is
    the entropy of the label; plain gd starts at θ = 0, the lecture's start (log 2)."""
    X, y = problem(3000, seed=4)
    y = np.where(np.random.default_rng(5).random(len(y)) < 0.7, 0, y)  # imbalanced
    weight = np.random.default_rng(6).uniform(0.5, 2.0, len(y))
    data = write(tmp_path / "d", X, y, weight=weight)
    for options, weighted in (({"solver": "lbfgs"}, False), ({"solver": "newton"}, True)):
        model = LogisticRegression(max_iter=1, weight_col="w" if weighted else None, **options).fit(
            data, label="y", client=one_client
        )
        s = weight if weighted else np.ones(len(y))
        p = np.sum(s * y) / np.sum(s)
        entropy = -(p * np.log(p) + (1 - p) * np.log(1 - p))
        assert model.loss_history_[0] == pytest.approx(entropy, rel=1e-12)
    balanced = LogisticRegression(solver="lbfgs", max_iter=1, class_weight="balanced")
    assert balanced.fit(data, label="y", client=one_client).loss_history_[0] == pytest.approx(
        np.log(2), rel=1e-12
    )
    plain = LogisticRegression(max_iter=1).fit(data, label="y", client=one_client)
    assert plain.loss_history_[0] == pytest.approx(np.log(2), rel=1e-15)
    X3, y3 = problem(3000, seed=7, classes=3)
    data3 = write(tmp_path / "d3", X3, y3)
    multi = LogisticRegression(solver="lbfgs", max_iter=1).fit(data3, label="y", client=one_client)
    share = np.bincount(y3) / len(y3)
    assert multi.loss_history_[0] == pytest.approx(-np.sum(share * np.log(share)), rel=1e-12)


def test_gtol_is_tested_on_the_standardized_gradient(one_client, tmp_path):
    """``grad_max_`` = max |∂F/∂θ_s| over the standardized coefficients and the
    intercept, computed here from the model alone, for plain gd on raw columns (its own
    coordinates are the original ones) and for lbfgs (preconditioned ones)."""
    X, y = unscaled_case()
    data = write(tmp_path / "d", X, y)
    l2 = 1e-3
    for options in ({"alpha": 1e-9, "max_iter": 30}, {"solver": "lbfgs", "max_iter": 4}):
        model = LogisticRegression(l2=l2, tol=0.0, gtol=0.0, **options)
        model.fit(data, label="y", client=one_client)
        residual = expit(X @ model.coef_ + model.intercept_) - y
        grad = X.T @ residual / len(y) + l2 * model.coef_
        grad_b = residual.mean()
        mean, std = X.mean(axis=0), X.std(axis=0)
        standardized = np.append((grad - mean * grad_b) / std, grad_b)
        assert model.grad_max_ == pytest.approx(np.abs(standardized).max(), rel=1e-6)
