"""Beyond the lecture: L2 and L-BFGS on the same distributed pass, checked against
scikit-learn's solution for the same objective (C = 1 / (λ·m))."""

import numpy as np
import pytest
from conftest import random_problem, write_partitions
from scipy.special import expit

from lrdask import LogisticRegression


def sklearn_solution(X, y, l2):
    from sklearn.linear_model import LogisticRegression as SkLogistic

    sk = SkLogistic(C=1.0 / (l2 * len(y)), tol=1e-12, max_iter=100_000)
    sk.fit(X, y)
    return sk.coef_.ravel(), float(sk.intercept_[0])


def breast_cancer():
    from sklearn.datasets import load_breast_cancer

    X, y = load_breast_cancer(return_X_y=True)
    return (X - X.mean(axis=0)) / X.std(axis=0), y.astype(float)


@pytest.mark.parametrize("solver", ["lbfgs", "newton"])
@pytest.mark.parametrize("data", ["breast_cancer", "synthetic"])
def test_solver_reaches_sklearn_l2_solution(one_client, tmp_path, data, solver):
    X, y = breast_cancer() if data == "breast_cancer" else random_problem(3000, 6, seed=3)
    path = write_partitions(
        tmp_path / "d", X, y, [len(y) // 3, len(y) // 3, len(y) - 2 * (len(y) // 3)]
    )
    l2 = 0.01
    model = LogisticRegression(solver=solver, l2=l2, max_iter=500, tol=1e-15)
    model.fit(path, "y", client=one_client)
    coef, intercept = sklearn_solution(X, y, l2)
    np.testing.assert_allclose(model.coef_, coef, atol=1e-6)
    assert model.intercept_ == pytest.approx(intercept, abs=1e-6)
    assert model.n_iter_ < (30 if solver == "newton" else 200)  # not thousands
    assert model.loss_history_[0] == pytest.approx(np.log(2))


def test_gd_with_l2_is_the_penalized_update(one_client, tmp_path):
    X, y = random_problem(400, 3, seed=8)
    path = write_partitions(tmp_path / "d", X, y, [150, 250])
    l2, alpha, iterations = 0.05, 0.5, 30
    model = LogisticRegression(alpha=alpha, max_iter=iterations, tol=0, l2=l2)
    model.fit(path, "y", client=one_client)
    w, b = np.zeros(3), 0.0
    for _ in range(iterations):
        a = expit(X @ w + b)
        w, b = w - alpha * (X.T @ (a - y) / len(y) + l2 * w), b - alpha * np.mean(a - y)
    np.testing.assert_allclose(model.coef_, w, rtol=1e-12, atol=1e-14)
    assert model.intercept_ == pytest.approx(b, rel=1e-12)


def test_solver_and_l2_are_in_the_artifact(one_client, tmp_path):
    X, y = random_problem(200, 2, seed=9)
    path = write_partitions(tmp_path / "d", X, y, [200])
    model = LogisticRegression(solver="lbfgs", l2=0.1, max_iter=50, tol=1e-10)
    model.fit(path, "y", client=one_client).save(str(tmp_path / "m"))
    loaded = LogisticRegression.load(str(tmp_path / "m"))
    assert loaded.solver == "lbfgs" and loaded.l2 == 0.1
    assert np.array_equal(loaded.coef_, model.coef_)


def test_hessian_sums_match_finite_differences_of_the_gradient():
    from lrdask.kernels import log_loss_sums, newton_sums

    X, y = random_problem(300, 3, seed=10)
    w, b = np.array([0.3, -0.2, 0.1]), 0.4
    hessian = newton_sums(X, y, w, b, block_rows=64).mean()[3]
    h = 1e-6
    for j in range(4):
        e = np.zeros(4)
        e[j] = h

        def grad(v):
            _, dw, db = log_loss_sums(X, y, w + v[:3], b + v[3]).mean()
            return np.append(dw, db)

        np.testing.assert_allclose((grad(e) - grad(-e)) / (2 * h), hessian[:, j], atol=1e-8)


def test_newton_refuses_too_many_features(monkeypatch, tmp_path):
    import lrdask.estimator as estimator
    from lrdask.errors import ConfigError

    X, y = random_problem(20, 3)
    path = write_partitions(tmp_path / "d", X, y, [20])
    monkeypatch.setattr(estimator, "NEWTON_MAX_FEATURES", 2)
    with pytest.raises(ConfigError, match="3 features is more than 2: use solver 'lbfgs'"):
        LogisticRegression(solver="newton").fit(path, "y")
