"""Pure NumPy kernels: the per-row model and the per-partition partial sums.

Nothing here knows about Dask. Numerical stability lives in these few functions so
that nothing above them can get it wrong: the loss uses the softplus form and σ is
built from ``exp(-|z|)``, so no ``log(0)`` and no overflow for any finite z.
"""

from __future__ import annotations

import numpy as np

from lrdask.sums import LogLossSums

# Rows per cache block: a block of X is read once for X·w and again (from cache) for Xᵀ·r.
BLOCK_ROWS = 8192


def sigmoid(z: np.ndarray) -> np.ndarray:
    """σ(z) = 1 / (1 + e^−z), exact to rounding and free of overflow for any finite z."""
    e = np.exp(-np.abs(z))
    inv = 1.0 / (1.0 + e)
    return np.where(z >= 0, inv, e * inv)


def log_loss_rows(z: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-row loss −(y log σ(z) + (1−y) log(1−σ(z))) = softplus(z) − y·z, computed stably.

    Written as ``max(z, 0) − y·z + log1p(e^−|z|)`` so that for y ∈ {0, 1} the first two
    terms cancel exactly instead of subtracting two large numbers.
    """
    return np.maximum(z, 0.0) - y * z + np.log1p(np.exp(-np.abs(z)))


def log_loss_sums(
    X: np.ndarray, y: np.ndarray, w: np.ndarray, b: float, block_rows: int = BLOCK_ROWS
) -> LogLossSums:
    """Partial sums of loss and gradient of the log loss over the rows of one partition.

    X is (n, f) and may be float32 or float64; every product and sum is accumulated in
    float64. Rows are processed in cache-sized blocks so each block of X is pulled from
    memory once for both X·w and Xᵀ·(a−y).
    """
    n, f = X.shape
    w = np.asarray(w, dtype=np.float64)
    grad = np.zeros(f)
    loss = 0.0
    grad_b = 0.0
    for start in range(0, n, block_rows):
        Xb = X[start : start + block_rows]
        yb = y[start : start + block_rows]
        z = _affine(Xb, w, b)
        e = np.exp(-np.abs(z))
        row_loss = np.maximum(z, 0.0)
        row_loss -= yb * z
        row_loss += np.log1p(e)
        loss += float(row_loss.sum())
        inv = 1.0 / (1.0 + e)
        residual = np.where(z >= 0, inv, e * inv)
        residual -= yb
        grad += _transpose_dot(Xb, residual)
        grad_b += float(residual.sum())
    return LogLossSums(float(n), loss, grad, grad_b)


def predict_proba_rows(X: np.ndarray, w: np.ndarray, b: float) -> np.ndarray:
    """P(y = 1 | x) for every row of X."""
    return sigmoid(_affine(X, np.asarray(w, dtype=np.float64), b))


def _affine(X: np.ndarray, w: np.ndarray, b: float) -> np.ndarray:
    """z = X·w + b in float64, whatever the storage dtype of X."""
    if X.dtype != np.float64:
        z = X @ w.astype(X.dtype)
        z = z.astype(np.float64)
    else:
        z = X @ w
    z += b
    return z


def _transpose_dot(X: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Xᵀ·r in float64."""
    if X.dtype != np.float64:
        return (r.astype(X.dtype) @ X).astype(np.float64)
    return r @ X
