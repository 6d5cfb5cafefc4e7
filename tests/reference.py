"""A plain NumPy implementation of the lecture's gradient descent, written independently
of lrdask's kernels (scipy's expit and NumPy's logaddexp), for parity tests."""

from __future__ import annotations

import numpy as np
from scipy.special import expit


def numpy_gradient_descent(X: np.ndarray, y: np.ndarray, alpha: float, iterations: int):
    """w, b and the cost before each update after ``iterations`` updates from w = 0, b = 0."""
    m, n = X.shape
    w, b = np.zeros(n), 0.0
    costs = []
    for _ in range(iterations):
        z = X @ w + b
        a = expit(z)
        costs.append(float(np.mean(np.logaddexp(0.0, z) - y * z)))
        dw = X.T @ (a - y) / m
        db = float(np.mean(a - y))
        w = w - alpha * dw
        b = b - alpha * db
    return w, b, costs


def dense_one_hot(frame, numeric, categorical, drop_first=True, missing_level=False):
    """An independent dense design, with pandas: the numeric columns, then per categorical
    column one indicator per sorted level (the first dropped), then (``missing_level``) one
    for its nulls."""
    parts = [frame[numeric].to_numpy(dtype=np.float64)]
    for name in categorical:
        levels = sorted(frame[name].dropna().unique())
        used = levels[1:] if drop_first else levels
        parts.append(np.column_stack([(frame[name] == lv).to_numpy(float) for lv in used]))
        if missing_level:
            parts.append(frame[name].isna().to_numpy(float)[:, None])
    return np.column_stack(parts)
