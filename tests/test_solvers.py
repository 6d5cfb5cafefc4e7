import numpy as np
import pytest
from conftest import random_problem
from reference import numpy_gradient_descent

from lrdask.kernels import log_loss_sums
from lrdask.solvers import SolverState, StopRule, gradient_descent


def numpy_evaluate(X, y):
    """θ = [w, b] -> (J, ∇J) from the NumPy kernel."""

    def evaluate(theta):
        cost, dw, db = log_loss_sums(X, y, theta[:-1], theta[-1]).mean()
        return cost, np.append(dw, db)

    return evaluate


def test_gd_is_the_lecture_update():
    X, y = random_problem(200, 3, seed=1)
    state = gradient_descent(numpy_evaluate(X, y), SolverState.initial(4), 0.5, 40, 0.0)
    w, b, costs = numpy_gradient_descent(X, y, 0.5, 40)
    np.testing.assert_allclose(state.params[:3], w, rtol=1e-12, atol=1e-14)
    assert abs(state.params[3] - b) < 1e-14
    np.testing.assert_allclose(state.loss_history[:40], costs, rtol=1e-13)
    assert state.n_iter == 40 and len(state.loss_history) == 41 and not state.converged


def test_history_point_k_is_the_cost_after_k_updates():
    X, y = random_problem(100, 2, seed=2)
    evaluate = numpy_evaluate(X, y)
    state = gradient_descent(evaluate, SolverState.initial(3), 0.3, 5, 0.0)
    assert state.loss_history[-1] == evaluate(state.params)[0]
    assert state.loss_history[0] == np.log(2)


def test_converges_and_returns_the_last_evaluated_point():
    X, y = random_problem(300, 2, seed=3)
    evaluate = numpy_evaluate(X, y)
    state = gradient_descent(evaluate, SolverState.initial(3), 1.0, 100_000, StopRule(0.0, 1e-7))
    assert state.converged and state.status == "converged" and state.n_iter < 100_000
    assert state.grad_max <= 1e-7
    cost, grad = evaluate(state.params)
    assert cost == state.loss_history[-1]
    assert state.grad_norm == np.linalg.norm(grad)


def test_too_large_alpha_is_noticed_not_called_converged():
    X, y = random_problem(300, 2, seed=4, scale=10.0)
    state = gradient_descent(numpy_evaluate(X, y), SolverState.initial(3), 50.0, 30, 1e-3)
    assert state.cost_increased_at is not None
    assert not state.converged or state.loss_history[-2] >= state.loss_history[-1]


def test_callback_sees_every_iteration_and_can_continue_a_run():
    X, y = random_problem(100, 2, seed=5)
    seen = []
    evaluate = numpy_evaluate(X, y)
    state = gradient_descent(
        evaluate,
        SolverState.initial(3),
        0.5,
        6,
        0.0,
        callback=lambda info: seen.append((info.iteration, info.cost)),
    )
    assert [i for i, _ in seen] == list(range(7))
    whole = gradient_descent(evaluate, SolverState.initial(3), 0.5, 12, 0.0)
    state.loss_history.pop()  # the continuation evaluates the same point again
    state = gradient_descent(evaluate, state, 0.5, 12, 0.0)
    np.testing.assert_array_equal(state.params, whole.params)
    assert state.loss_history == whole.loss_history


@pytest.mark.parametrize("options", [{"accelerate": True}, {"line_search": True}])
def test_agd_and_line_search_continue_a_run_exactly(options):
    X, y = random_problem(200, 3, seed=6, scale=2.0)
    evaluate = numpy_evaluate(X, y)
    whole = gradient_descent(evaluate, SolverState.initial(4), 0.5, 12, 0.0, **options)
    state = gradient_descent(evaluate, SolverState.initial(4), 0.5, 6, 0.0, **options)
    state.loss_history.pop()  # the continuation evaluates the same point again
    state = gradient_descent(evaluate, state, 0.5, 12, 0.0, **options)
    np.testing.assert_array_equal(state.params, whole.params)
    assert state.loss_history == whole.loss_history
