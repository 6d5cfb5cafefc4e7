"""Solvers: they see only a function that returns the cost and gradient at (w, b).

``gradient_descent`` is the lecture's update, exactly: w := w − α·dw, b := b − α·db,
starting from w = 0, b = 0. It never touches the data; every evaluation is one
distributed pass (or, in tests, a plain NumPy one), so the same loop serves both.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

# evaluate(w, b) -> (J, dw, db)
Evaluate = Callable[[np.ndarray, float], tuple[float, np.ndarray, float]]


@dataclass
class SolverState:
    """Everything needed to continue a run: the point, the iteration count and the history."""

    coef: np.ndarray
    intercept: float
    n_iter: int = 0
    loss_history: list[float] = field(default_factory=list)
    grad_norm: float = float("nan")
    converged: bool = False
    cost_increased_at: int | None = None

    @classmethod
    def initial(cls, n_features: int) -> SolverState:
        return cls(np.zeros(n_features), 0.0)


@dataclass(frozen=True)
class IterationInfo:
    """Passed to callbacks after every evaluation: for progress bars, logs, checkpoints."""

    iteration: int
    cost: float
    grad_norm: float
    state: SolverState


def gradient_descent(
    evaluate: Evaluate,
    state: SolverState,
    alpha: float,
    max_iter: int,
    tol: float,
    callback: Callable[[IterationInfo], None] | None = None,
) -> SolverState:
    """Batch gradient descent with a fixed step α, continuing from ``state``.

    ``loss_history[k]`` is the cost J at the k-th point (w_0 = 0 first); ``n_iter`` counts
    the updates applied. The run stops when the cost has improved by at most ``tol``
    between two consecutive points (0 ≤ J_{k−1} − J_k ≤ tol: converged, and the last point
    is returned without a further update), or after ``max_iter`` updates, when one more
    pass records the cost at the returned point. A rise in the cost does not count as
    convergence; it is recorded in ``cost_increased_at`` (α is too large).
    """
    w, b = state.coef.copy(), float(state.intercept)
    while True:
        cost, dw, db = evaluate(w, b)
        state.coef, state.intercept = w.copy(), b
        state.loss_history.append(cost)
        state.grad_norm = float(np.sqrt(dw @ dw + db * db))
        _note_progress(state, tol)
        if callback is not None:
            callback(IterationInfo(state.n_iter, cost, state.grad_norm, state))
        if state.converged or state.n_iter >= max_iter:
            return state
        w = w - alpha * dw
        b = b - alpha * db
        state.n_iter += 1


def _note_progress(state: SolverState, tol: float) -> None:
    """Mark convergence (0 ≤ J_{k−1} − J_k ≤ tol) and remember the first rise in cost."""
    history = state.loss_history
    if len(history) < 2:
        return
    improvement = history[-2] - history[-1]
    if 0.0 <= improvement <= tol:
        state.converged = True
    elif improvement < 0 and state.cost_increased_at is None:
        state.cost_increased_at = len(history) - 1


def with_l2(evaluate: Evaluate, l2: float) -> Evaluate:
    """The objective J + (λ/2)·‖w‖² and its gradient; the intercept is never penalized.

    Added on the driver after the distributed pass, as Spark MLlib does. scikit-learn's
    C maps to λ = 1 / (C·m). Works for every solver: when ``evaluate`` also returns a
    Hessian (Newton), λ is added to its feature diagonal.
    """
    if l2 == 0:
        return evaluate

    def penalized(w: np.ndarray, b: float):
        cost, dw, db, *hessian = evaluate(w, b)
        result = (cost + 0.5 * l2 * float(w @ w), dw + l2 * w, db)
        if not hessian:
            return result
        ridged = hessian[0].copy()
        ridged[np.arange(len(w)), np.arange(len(w))] += l2
        return (*result, ridged)

    return penalized


def lbfgs(
    evaluate: Evaluate,
    state: SolverState,
    max_iter: int,
    tol: float,
    callback: Callable[[IterationInfo], None] | None = None,
    memory: int = 10,
) -> SolverState:
    """L-BFGS (scipy's L-BFGS-B, unbounded) on the driver over the same distributed pass.

    Every function evaluation is one pass returning cost and gradient together; the line
    search and the two-loop recursion over the last ``memory`` pairs run on the driver.
    ``tol`` is scipy's ``ftol``: stop when (J_k − J_{k+1}) / max(|J_k|, |J_{k+1}|, 1) ≤ tol,
    which for a log loss below 1 is the same rule as gradient descent's.
    ``loss_history`` holds the cost at each accepted iterate; ``n_iter`` counts them.
    """
    from scipy.optimize import minimize

    n = len(state.coef)
    last: dict = {}

    def objective(x: np.ndarray):
        cost, dw, db = evaluate(x[:n], float(x[n]))
        last.update(x=x.copy(), cost=cost, grad=np.append(dw, db))
        if not state.loss_history:
            state.loss_history.append(cost)  # J at the starting point
        return cost, last["grad"]

    def on_iterate(intermediate_result) -> None:  # scipy passes the result by this name
        x, cost = intermediate_result.x, float(intermediate_result.fun)
        state.coef, state.intercept = x[:n].copy(), float(x[n])
        state.n_iter += 1
        state.loss_history.append(cost)
        state.grad_norm = float(np.linalg.norm(last["grad"]))
        if callback is not None:
            callback(IterationInfo(state.n_iter, cost, state.grad_norm, state))

    x0 = np.append(state.coef, state.intercept)
    result = minimize(
        objective,
        x0,
        jac=True,
        method="L-BFGS-B",
        callback=on_iterate,
        options={
            "maxiter": max(1, max_iter - state.n_iter),
            "ftol": tol,
            "gtol": 0.0,
            "maxcor": memory,
        },
    )
    state.coef, state.intercept = result.x[:n].copy(), float(result.x[n])
    state.grad_norm = float(np.linalg.norm(result.jac))
    state.converged = bool(result.success)
    if state.loss_history[-1] != float(result.fun):
        state.loss_history.append(float(result.fun))
    return state


# evaluate(w, b) -> (J, dw, db, H) with H the (features+1)² Hessian, intercept last
EvaluateHessian = Callable[[np.ndarray, float], tuple[float, np.ndarray, float, np.ndarray]]
NEWTON_MAX_FEATURES = 2000


def newton(
    evaluate: EvaluateHessian,
    state: SolverState,
    max_iter: int,
    tol: float,
    callback: Callable[[IterationInfo], None] | None = None,
) -> SolverState:
    """Newton's method (IRLS): each pass also sums Xᵀ·diag(a(1−a))·X, the driver solves
    H·Δ = g and steps w := w − Δ, halving the step while the cost rises.

    Same stopping rule as gradient descent (0 ≤ J_{k−1} − J_k ≤ tol), usually reached in
    ten or so passes. ``loss_history`` holds the cost at every accepted point.
    """
    n = len(state.coef)
    x = np.append(state.coef, state.intercept)
    previous, step = None, None  # (cost, point) before the last step, and that step
    while True:
        cost, dw, db, hessian = evaluate(x[:n], float(x[n]))
        if previous is not None and cost > previous[0]:
            if np.max(np.abs(step)) < 1e-300:
                return state
            step = step / 2  # back off along the same direction: the cost rose
            x = previous[1] - step
            continue
        gradient = np.append(dw, db)
        state.coef, state.intercept = x[:n].copy(), float(x[n])
        state.loss_history.append(cost)
        state.grad_norm = float(np.linalg.norm(gradient))
        _note_progress(state, tol)
        if callback is not None:
            callback(IterationInfo(state.n_iter, cost, state.grad_norm, state))
        if state.converged or state.n_iter >= max_iter:
            return state
        step = np.linalg.solve(hessian, gradient)
        previous = (cost, x)
        x = x - step
        state.n_iter += 1
