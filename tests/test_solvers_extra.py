"""Beyond the lecture: every solver and objective option reaches scikit-learn's solution
for the same objective (C = 1 / (λ·m)). The solver tests run on a plain NumPy pass
(the same Objective the cluster uses, without the cluster); a few fit() tests prove the
distributed path."""

import numpy as np
import pytest
from conftest import random_problem, write_partitions
from scipy.special import expit

from lrdask import LogisticRegression
from lrdask.errors import ConfigError
from lrdask.kernels import log_loss_sums, newton_sums
from lrdask.objective import Layout, Objective
from lrdask.solvers import L1Penalty, SolverState, gradient_descent, lbfgs, newton


def sklearn_solution(X, y, l2=0.0, l1=0.0, sample_weight=None, class_weight=None):
    from sklearn.linear_model import LogisticRegression as SkLogistic

    total = len(y) if sample_weight is None else float(np.sum(sample_weight))
    if l1:
        sk = SkLogistic(
            C=1.0 / (l1 * total),
            l1_ratio=1.0,
            solver="saga",
            tol=1e-13,
            max_iter=200_000,
        )
    else:
        sk = SkLogistic(C=1.0 / (l2 * total), tol=1e-12, max_iter=100_000)
    sk.set_params(class_weight=class_weight)
    sk.fit(X, y, sample_weight=sample_weight)
    return sk.coef_.ravel(), float(sk.intercept_[0])


def breast_cancer(standardized=True):
    from sklearn.datasets import load_breast_cancer

    X, y = load_breast_cancer(return_X_y=True)
    if standardized:
        X = (X - X.mean(axis=0)) / X.std(axis=0)
    return X, y.astype(float)


def dataset(name):
    return breast_cancer() if name == "breast_cancer" else random_problem(3000, 6, seed=3)


def numpy_objective(X, y, l2=0.0, hessian=False):
    kernel = newton_sums if hessian else log_loss_sums
    return Objective(lambda c, b: kernel(X, y, c, b).mean(), Layout(X.shape[1]), None, l2)


def lipschitz_step(X, l2):
    """1 / L for the log loss: L = λ_max([X 1]ᵀ[X 1] / m) / 4 + λ."""
    X1 = np.column_stack([X, np.ones(len(X))])
    return 1.0 / (np.linalg.eigvalsh(X1.T @ X1 / len(X)).max() / 4 + l2)


def run_solver(
    solver, objective, n, alpha, l1=0.0, max_iter=30_000, tol=0.0, state=None, callback=None
):
    """``solver`` (a name of SOLVERS) from θ = 0, or continuing ``state``."""
    state = state or SolverState.initial(n)
    penalty = L1Penalty(l1, Layout(n - 1).penalized())
    if solver == "newton":
        return newton(objective, state, 100, tol, callback)
    if solver == "lbfgs":
        return lbfgs(objective, state, 2000, tol, callback, l1=penalty)
    accelerate, line_search = solver.startswith("agd"), solver.endswith("+ls")
    return gradient_descent(
        objective,
        state,
        alpha,
        max_iter,
        tol,
        callback,
        l1=penalty,
        accelerate=accelerate,
        line_search=line_search,
    )


SOLVERS = ["gd", "gd+ls", "agd", "agd+ls", "lbfgs", "newton"]


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("data", ["breast_cancer", "synthetic"])
def test_every_solver_reaches_sklearn_l2_solution(data, solver):
    X, y = dataset(data)
    l2 = 0.01
    objective = numpy_objective(X, y, l2, hessian=solver == "newton")
    state = run_solver(solver, objective, X.shape[1] + 1, lipschitz_step(X, l2))
    coef, intercept = sklearn_solution(X, y, l2)
    np.testing.assert_allclose(state.params[:-1], coef, atol=1e-6)
    assert state.params[-1] == pytest.approx(intercept, abs=1e-6)
    assert state.loss_history[0] == pytest.approx(np.log(2))


def test_fast_solvers_need_far_fewer_passes_than_gd():
    X, y = breast_cancer()
    passes = {}
    for solver in ["gd", "agd", "lbfgs", "newton"]:
        objective = numpy_objective(X, y, 0.01, hessian=solver == "newton")
        run_solver(solver, objective, X.shape[1] + 1, lipschitz_step(X, 0.01), tol=1e-12)
        passes[solver] = objective.passes
    assert passes["newton"] < passes["lbfgs"] < passes["agd"] < passes["gd"] / 5


def test_line_search_needs_no_tuned_alpha():
    X, y = breast_cancer()
    objective = numpy_objective(X, y, 0.01)
    state = run_solver("gd+ls", objective, X.shape[1] + 1, alpha=1e-4, tol=1e-13)
    coef, _ = sklearn_solution(X, y, 0.01)
    np.testing.assert_allclose(state.params[:-1], coef, atol=1e-5)
    assert state.step > 1e-2  # it grew from the tiny first step
    history = np.array(state.loss_history)
    assert np.all(np.diff(history) <= 1e-15)  # every accepted step lowers the cost


@pytest.mark.parametrize("solver", ["agd", "agd+ls", "lbfgs"])
def test_l1_reaches_sklearn_saga_solution_and_is_sparse(solver):
    X, y = breast_cancer()
    l1 = 0.01
    objective = numpy_objective(X, y)
    state = run_solver(solver, objective, X.shape[1] + 1, lipschitz_step(X, 0.0), l1=l1)
    coef, intercept = sklearn_solution(X, y, l1=l1)
    np.testing.assert_allclose(state.params[:-1], coef, atol=1e-5)
    assert state.params[-1] == pytest.approx(intercept, abs=1e-5)
    zeros = coef == 0
    assert zeros.sum() >= 10  # a sparse solution, and lrdask finds the same zeros
    if solver != "lbfgs":  # the prox step gives exact zeros; L-BFGS-B's split gives ~0
        assert np.array_equal(state.params[:-1] == 0, zeros)


def test_agd_with_restart_decreases_and_reports_optimality():
    X, y = random_problem(2000, 5, seed=11, scale=3.0)
    objective = numpy_objective(X, y)
    state = run_solver("agd", objective, 6, lipschitz_step(X, 0.0), max_iter=3000, tol=1e-14)
    _, grad = objective(state.params)
    assert state.grad_norm == pytest.approx(np.linalg.norm(grad))
    assert state.loss_history[-1] < state.loss_history[0]
    assert state.cost_increased_at is None  # momentum bumps are not called "α too large"


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("data", ["breast_cancer", "synthetic"])
def test_fit_reaches_sklearn_l2_solution(one_client, tmp_path, data, solver):
    """Every solver, through the cluster, asked for --gtol 1e-9, gets scikit-learn's L2
    solution to 1e-6 (gd and agd too, given enough iterations)."""
    X, y = dataset(data)
    path = write_partitions(
        tmp_path / "d", X, y, [len(y) // 3, len(y) // 3, len(y) - 2 * (len(y) // 3)]
    )
    l2 = 0.01
    name, line_search = solver.removesuffix("+ls"), solver.endswith("+ls")
    model = LogisticRegression(
        solver=name,
        line_search=line_search,
        l2=l2,
        max_iter=20_000,
        tol=0.0,
        gtol=1e-9,
        alpha=lipschitz_step(X, l2),
    )
    model.fit(path, "y", client=one_client)
    assert model.status_ == "converged", model.stop_reason_
    coef, intercept = sklearn_solution(X, y, l2)
    np.testing.assert_allclose(model.coef_, coef, atol=1e-6)
    assert model.intercept_ == pytest.approx(intercept, abs=1e-6)
    assert model.n_passes_ >= model.n_iter_ + 1
    limit = {"gd": 20_000, "gd+ls": 20_000, "agd": 3000, "agd+ls": 3000, "lbfgs": 200}
    assert model.n_iter_ < limit.get(solver, 30)


def test_gd_with_l2_is_the_penalized_update(one_client, tmp_path):
    X, y = random_problem(400, 3, seed=8)
    path = write_partitions(tmp_path / "d", X, y, [150, 250])
    l2, alpha, iterations = 0.05, 0.5, 30
    model = LogisticRegression(alpha=alpha, max_iter=iterations, tol=0, gtol=0, l2=l2)
    model.fit(path, "y", client=one_client)
    w, b = np.zeros(3), 0.0
    for _ in range(iterations):
        a = expit(X @ w + b)
        w, b = w - alpha * (X.T @ (a - y) / len(y) + l2 * w), b - alpha * np.mean(a - y)
    np.testing.assert_allclose(model.coef_, w, rtol=1e-12, atol=1e-14)
    assert model.intercept_ == pytest.approx(b, rel=1e-12)


def test_gd_with_l1_is_the_proximal_update(one_client, tmp_path):
    X, y = random_problem(400, 4, seed=12)
    path = write_partitions(tmp_path / "d", X, y, [100, 300])
    l1, alpha, iterations = 0.05, 0.5, 25
    model = LogisticRegression(alpha=alpha, max_iter=iterations, tol=0, gtol=0, l1=l1)
    model.fit(path, "y", client=one_client)
    w, b = np.zeros(4), 0.0
    for _ in range(iterations):
        a = expit(X @ w + b)
        v = w - alpha * X.T @ (a - y) / len(y)
        w, b = np.sign(v) * np.maximum(np.abs(v) - alpha * l1, 0), b - alpha * np.mean(a - y)
    np.testing.assert_allclose(model.coef_, w, rtol=1e-12, atol=1e-14)
    assert model.intercept_ == pytest.approx(b, rel=1e-12)
    a = expit(X @ w + b)
    loss = np.mean(np.logaddexp(0, X @ w + b) - y * (X @ w + b))
    assert model.loss_history_[-1] == pytest.approx(loss + l1 * np.abs(w).sum(), rel=1e-12)
    assert model.training_metrics_["train_log_loss"] == pytest.approx(loss, rel=1e-12)


def test_options_are_in_the_artifact(one_client, tmp_path):
    X, y = random_problem(200, 2, seed=9)
    path = write_partitions(tmp_path / "d", X, y, [200])
    model = LogisticRegression(solver="agd", l2=0.1, l1=0.01, line_search=True, max_iter=50)
    model.fit(path, "y", client=one_client).save(str(tmp_path / "m"))
    loaded = LogisticRegression.load(str(tmp_path / "m"))
    assert (loaded.solver, loaded.l2, loaded.l1, loaded.line_search) == ("agd", 0.1, 0.01, True)
    assert np.array_equal(loaded.coef_, model.coef_)
    assert loaded.n_passes_ == model.n_passes_ > loaded.n_iter_
    assert loaded.training_metrics_["objective"] == model.loss_history_[-1]
    assert loaded.stop_reason_ == model.stop_reason_


def test_hessian_sums_match_finite_differences_of_the_gradient():
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

    X, y = random_problem(20, 3)
    path = write_partitions(tmp_path / "d", X, y, [20])
    monkeypatch.setattr(estimator, "NEWTON_MAX_FEATURES", 2)
    with pytest.raises(ConfigError, match="3 features is more than 2: use solver 'lbfgs'"):
        LogisticRegression(solver="newton").fit(path, "y")


@pytest.mark.parametrize(
    "params, message",
    [
        ({"solver": "newton", "l1": 0.1}, "solver 'newton' needs a twice-differentiable"),
        ({"solver": "newton", "family": "multinomial"}, "'newton' is for the binomial family"),
        ({"solver": "sgd"}, "'solver' parameter of LogisticRegression must be one of 'gd'"),
        ({"l1": -1.0}, "'l1' parameter of LogisticRegression must be a float >= 0"),
        ({"class_weight": "auto"}, "'class_weight' parameter .* None, 'balanced' or a dict"),
    ],
)
def test_impossible_combinations_are_refused(tmp_path, params, message):
    X, y = random_problem(20, 2)
    path = write_partitions(tmp_path / "d", X, y, [20])
    with pytest.raises(ConfigError, match=message):
        LogisticRegression(**params).fit(path, "y")
