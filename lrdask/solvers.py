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
