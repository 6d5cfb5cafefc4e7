"""Pure NumPy kernels for multinomial (softmax) logistic regression: K classes.

The multiclass counterpart of ``lrdask.kernels``: the same cache-blocked pass over
the rows of one partition, folding them into a ``LogLossSums`` whose gradient is an
(f, K) matrix and whose intercept gradient is a (K,) vector. Stability lives here:
logits are shifted by their row max before ``exp``, so no overflow and no ``log(0)``.

Inside a block the logits are kept as a (K, rows) array, so the row max, the row sum
and the normalisation are K vectorised passes over rows rather than n short reductions.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lrdask.kernels import (
    BLOCK_ROWS,
    category_gradient,
    category_slots,
    category_z,
    row_weights,
)
from lrdask.sums import LogLossSums


def softmax_sums(
    X: np.ndarray,
    y: np.ndarray,
    W: np.ndarray,
    b: np.ndarray,
    block_rows: int = BLOCK_ROWS,
    sample_weight: np.ndarray | None = None,
    class_weight: Sequence[float] | None = None,
    codes: np.ndarray | None = None,
) -> LogLossSums:
    """Partial sums of the weighted multinomial log loss and its gradient over one partition.

    With s_i = sample_weight[i] · class_weight[y_i] (each 1 when not given): count = Σ s_i,
    loss = Σ s_i·(logsumexp(z_i) − z_i[y_i]), grad_coef = Xᵀ·(S·(P − Y)) (f, K) and
    grad_intercept = Σ s_i·(p_i − onehot(y_i)) (K,), where z_i = x_i·W + b, P = softmax(Z).
    X may be float64 or float32 storage, C- or F-order; as in ``log_loss_sums`` the two
    products run in the storage dtype within a block, everything else in float64.
    ``codes``: categorical slots, as in ``kernels.log_loss_sums``; W is then (f + S, K).
    """
    X = _float_storage(X)
    W = np.asarray(W, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    labels = _labels(y, W.shape[1])
    weights = _row_weights(labels, W.shape[1], sample_weight, class_weight)
    loss, grad, grad_b = _fold_rows(X, labels, weights, W, b, block_rows, codes)
    count = float(X.shape[0]) if weights is None else float(weights.sum())
    return LogLossSums(count, loss, grad, grad_b)


def softmax_proba_rows(X: np.ndarray, W: np.ndarray, b: np.ndarray, codes=None) -> np.ndarray:
    """P(y = k | x) for every row of X and class k: an (n, K) float64 array, rows sum to 1."""
    from lrdask.kernels import linear_predictor

    z = linear_predictor(X, W, np.asarray(b, dtype=np.float64), codes)
    z -= z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


def _fold_rows(X, labels, weights, W, b, block_rows: int, codes=None):
    """The block loop: Zᵀ = Wᵀ·Xbᵀ, turn it into the residual Rᵀ, then add Xbᵀ·R."""
    n, f = X.shape
    n_classes = W.shape[1]
    slots = category_slots(W, f)
    offsets = None if codes is None else category_z(codes, slots)
    residuals = None if codes is None else np.empty((n, n_classes))
    W = W[:f]
    rows = min(block_rows, max(n, 1))
    z64 = np.empty(n_classes * rows)  # flat, so every block's (K, k) view is contiguous
    zx = z64 if X.dtype == np.float64 else np.empty(n_classes * rows, dtype=X.dtype)
    m, s, cols, picks = np.empty(rows), np.empty(rows), np.arange(rows), np.empty(rows, np.intp)
    w_t = np.ascontiguousarray(W.T, dtype=X.dtype)
    grad, grad_b, loss = np.zeros((f, n_classes)), np.zeros(n_classes), 0.0
    for start in range(0, n, block_rows):
        Xb = X[start : start + block_rows]
        k = Xb.shape[0]
        zt, zt_x = z64[: n_classes * k].reshape(n_classes, k), zx[: n_classes * k].reshape(-1, k)
        np.matmul(w_t, Xb.T, out=zt_x)
        if zx is not z64:
            np.copyto(zt, zt_x)
        zt += b[:, None]
        if offsets is not None:
            zt += offsets[start : start + k].T
        # flat index of each row's own class in zt: one fancy index instead of two
        np.multiply(labels[start : start + k], k, out=picks[:k])
        picks[:k] += cols[:k]
        wb = None if weights is None else weights[start : start + k]
        loss += _block_loss_residual(zt, picks[:k], wb, m[:k], s[:k])
        if zx is not z64:
            np.copyto(zt_x, zt, casting="same_kind")
        grad += Xb.T @ zt_x.T
        grad_b += zt.sum(axis=1)
        if residuals is not None:
            residuals[start : start + k] = zt.T
    if codes is not None:
        n_slots = len(slots) - 1
        grad_cat = np.column_stack(
            [category_gradient(codes, residuals[:, c], n_slots) for c in range(n_classes)]
        )
        grad = np.vstack([grad, grad_cat.reshape(n_slots, n_classes)])
    return loss, grad, grad_b


def _block_loss_residual(zt, picks, weights, m, s) -> float:
    """Σ s_i·(max + log Σ e^(z − max) − z_y) for one block; turns ``zt`` into s_i·(p − y).

    ``picks`` indexes each row's own class in the flattened ``zt``. The shift by the row
    max m makes every exponent ≤ 0, so the row sum s is in [1, K]: no overflow and no
    log(0). The loss is taken as (m − z_y) + log s, both parts ≥ 0, so it stays finite
    for logits up to ~1e300 in size.
    """
    flat = zt.reshape(-1)  # a view: zt is contiguous
    np.max(zt, axis=0, out=m)
    row_loss = m - flat[picks]
    zt -= m
    np.exp(zt, out=zt)
    np.sum(zt, axis=0, out=s)
    zt /= s
    flat[picks] -= 1.0
    row_loss += np.log(s, out=s)
    if weights is None:
        return float(row_loss.sum())
    zt *= weights
    return float(weights @ row_loss)


def _float_storage(X) -> np.ndarray:
    """X as float32 or float64 storage (anything else, e.g. integers, becomes float64)."""
    X = np.asarray(X)
    return X if X.dtype in (np.float32, np.float64) else X.astype(np.float64)


def _labels(y, n_classes: int) -> np.ndarray:
    """Class indices as integers; a label outside 0..K−1 would index the wrong class."""
    labels = np.asarray(y).astype(np.intp)
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(f"softmax_sums: labels must be class indices 0..{n_classes - 1}")
    return labels


def _row_weights(labels, n_classes: int, sample_weight, class_weight) -> np.ndarray | None:
    """The binomial kernel's row weights, after checking there is one class weight per class."""
    if class_weight is not None and np.shape(class_weight) != (n_classes,):
        raise ValueError(f"softmax_sums: class_weight needs {n_classes} values, one per class")
    return row_weights(labels, sample_weight, class_weight)
