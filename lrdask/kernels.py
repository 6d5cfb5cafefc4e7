"""Pure NumPy kernels: the per-row model and the per-partition partial sums.

Nothing here knows about Dask. Numerical stability lives in these few functions so
that nothing above them can get it wrong: the loss uses the softplus form and σ is
built from ``exp(-|z|)``, so no ``log(0)`` and no overflow for any finite z.

Categorical features arrive as ``codes`` (rows × categorical columns, int32; see
``lrdask.encoding``): the coefficient vector is [numeric weights, category slots], a row
adds ``w[f + code]`` per categorical column to z, and the gradient of the slots is a
scatter-add of the residual (``np.bincount`` with weights): O(rows) per column whatever
the number of levels, and no one-hot matrix. The code one past the last slot is the
zero slot (no contribution).
"""

from __future__ import annotations

import threading

import numpy as np

from lrdask.sums import LogLossSums, MomentSums, NewtonSums

# Rows per cache block: a block of X is read once for X·w and again (from cache) for Xᵀ·r.
# With 50 float64 features a block is 3.2 MB (measured best on this kind of machine).
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
    X: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    b: float,
    block_rows: int = BLOCK_ROWS,
    sample_weight: np.ndarray | None = None,
    class_weight: tuple[float, float] | None = None,
    codes: np.ndarray | None = None,
) -> LogLossSums:
    """Partial sums of loss and gradient of the log loss over the rows of one partition.

    X is (n, f), float64 or float32 storage. Rows are processed in cache-sized blocks so
    each block of X is pulled from memory once for both X·w and Xᵀ·(a−y). With float32
    storage the two products and the per-row σ and log work run in float32 within a block
    (half the bytes, twice the SIMD width) and every sum is accumulated in float64: results
    agree with float64 storage to about 1e-6.

    Weights: row i counts s_i = sample_weight[i]·class_weight[y_i] times (loss, gradient
    and the count m alike); without either, no multiplication happens at all.

    ``codes`` (n, c) int32: categorical slots; then w has f + S entries (S category slots)
    and so has the gradient.
    """
    weights = row_weights(y, sample_weight, class_weight)
    return _fold_rows(X, y, w, b, block_rows, weights=weights, codes=codes)


def row_weights(y: np.ndarray, sample_weight=None, class_weight=None) -> np.ndarray | None:
    """s_i = sample_weight[i] · class_weight[y_i] (float64), or None when all are 1."""
    if sample_weight is None and class_weight is None:
        return None
    weights = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, np.float64)
    if class_weight is not None:
        weights = weights * np.asarray(class_weight, dtype=np.float64)[y.astype(np.intp)]
    return weights


def newton_sums(
    X: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    b: float,
    block_rows: int = BLOCK_ROWS,
    sample_weight: np.ndarray | None = None,
    class_weight: tuple[float, float] | None = None,
    codes: np.ndarray | None = None,
) -> NewtonSums:
    """The partial sums of ``log_loss_sums`` plus the Hessian sum Σ a(1−a)·[x; 1][x; 1]ᵀ,
    in the same pass over X.

    Costs O(rows × features²) per pass, which is why Newton is for up to a few thousand
    features. Accumulated in float64 block by block, like the gradient. With ``codes`` the
    Hessian is over all f + S coefficients: each block of rows is expanded to its dense
    design [x, one-hot] for this product only (Newton is limited to a few thousand
    coefficients, so a block of that is small); the loss and gradient stay sparse.
    """
    f = np.shape(w)[0]
    hessian = np.zeros((f + 1, f + 1))
    weights = row_weights(y, sample_weight, class_weight)
    sums = _fold_rows(X, y, w, b, block_rows, hessian, weights, codes)
    hessian[f, :f] = hessian[:f, f]
    return NewtonSums(sums, hessian)


def _fold_rows(X, y, w, b, block_rows: int, hessian=None, weights=None, codes=None):
    """The block loop shared by both kernels; adds to ``hessian`` (upper part) if given,
    and weighs every row by ``weights`` if given."""
    n, f = X.shape
    work = _work_dtype(X)
    w = np.asarray(w, dtype=np.float64)
    slots = category_slots(w, f)
    index = offsets = residuals = None
    if codes is not None:
        index, offsets, residuals = _category_parts(codes, slots)
    w_x = w[:f].astype(work, copy=False)
    rows = min(block_rows, max(n, 1))
    e, t, r = np.empty(rows, work), np.empty(rows, work), np.empty(rows, work)
    grad = np.zeros(f)
    loss = 0.0
    grad_b = 0.0
    for start in range(0, n, block_rows):
        Xb = X[start : start + block_rows]
        k = Xb.shape[0]
        yb = y[start : start + k].astype(work, copy=False)
        sb = None if weights is None else weights[start : start + k]
        z = np.matmul(Xb, w_x)
        z += b
        if offsets is not None:
            z += offsets[start : start + k]
        loss += _block_loss(z, yb, e[:k], t[:k], sb)
        _block_residual(z, yb, e[:k], r[:k])
        if sb is not None:
            r[:k] *= sb
        grad += r[:k] @ Xb
        grad_b += float(r[:k].sum(dtype=np.float64))
        if residuals is not None:
            residuals[start : start + k] = r[:k]
        if hessian is not None:
            design = Xb if codes is None else dense_design(Xb, codes[start : start + k], slots)
            _add_block_hessian(design, e[:k], hessian, sb)
    count = float(n) if weights is None else float(weights.sum())
    if codes is not None:
        grad = np.concatenate([grad, category_gradient(index, residuals, len(slots) - 1)])
    return LogLossSums(count, loss, grad, grad_b)


_scratch = threading.local()


def _category_parts(codes: np.ndarray, slots: np.ndarray):
    """(codes as intp, each row's categorical part of z, a buffer for the residuals), in
    per-thread buffers reused from call to call. Dask workers hand freed memory back to
    the OS at once (MALLOC_TRIM_THRESHOLD_), so fresh n-row temporaries would be
    page-faulted in again on every pass, and int32 codes would be copied to intp by every
    fancy index and bincount; the buffers (rows × (8·columns + 16) bytes per thread, kept
    at the largest block's size) avoid both."""
    n, c = codes.shape
    held = getattr(_scratch, "buffers", None)
    if held is None or held[0].shape[0] < n or held[0].shape[1] < c:
        held = (np.empty((n, c), np.intp, order="F"), np.empty(n), np.empty(n))
        _scratch.buffers = held
    index, part, residuals = held[0][:n, :c], held[1][:n], held[2][:n]
    np.copyto(index, codes)
    np.take(slots, index[:, 0], out=part, mode="clip")  # codes are in range by construction
    for j in range(1, c):
        np.take(slots, index[:, j], out=residuals, mode="clip")
        part += residuals
    return index, part, residuals


def category_slots(w: np.ndarray, f: int) -> np.ndarray:
    """The category part of w (after the f numeric weights) plus the zero slot, float64."""
    slots = np.zeros((np.shape(w)[0] - f + 1, *np.shape(w)[1:]))
    slots[:-1] = w[f:]
    return slots


def category_z(codes: np.ndarray, slots: np.ndarray) -> np.ndarray:
    """Σ over categorical columns of slots[code]: each row's categorical part of z
    (n,) for a slot vector, (n, K) for a slot matrix."""
    total = slots[codes[:, 0]]
    for j in range(1, codes.shape[1]):
        total += slots[codes[:, j]]
    return total


def category_gradient(codes: np.ndarray, residuals: np.ndarray, n_slots: int) -> np.ndarray:
    """Σ of the residuals of the rows in each slot (the zero slot dropped): one weighted
    bincount per column, O(rows + slots)."""
    grad = np.zeros(n_slots + 1)
    for j in range(codes.shape[1]):
        grad += np.bincount(codes[:, j], weights=residuals, minlength=n_slots + 1)
    return grad[:n_slots]


def dense_design(Xb: np.ndarray, codes: np.ndarray, slots: np.ndarray) -> np.ndarray:
    """[x, one-hot of the codes] for one block of rows (Newton's Hessian only)."""
    k, f = Xb.shape
    n_slots = len(slots) - 1
    design = np.zeros((k, f + n_slots + 1))
    design[:, :f] = Xb
    rows = np.arange(k)
    for j in range(codes.shape[1]):
        design[rows, f + codes[:, j]] = 1.0
    return design[:, : f + n_slots]


def _work_dtype(X: np.ndarray):
    """float32 for float32 storage: products and the per-row σ/log work run in float32 within
    a block (NumPy's float32 exp/log are SIMD-vectorized, its float64 ones are not on AVX2),
    and every sum is taken in float64. float64 storage: float64 throughout."""
    return np.float32 if X.dtype == np.float32 else np.float64


def _add_block_hessian(Xb: np.ndarray, q: np.ndarray, hessian: np.ndarray, sb=None) -> None:
    """Add Σ s·a(1−a)·[x; 1][x; 1]ᵀ (upper part) for one block, from q = min(a, 1 − a)."""
    f = Xb.shape[1]
    Xb = np.asarray(Xb, dtype=np.float64)
    weight = q * (1.0 - q)  # a(1 − a), without the cancellation of 1 − a near a = 1
    if sb is not None:
        weight *= sb
    weighted = Xb * weight[:, None]
    hessian[:f, :f] += Xb.T @ weighted
    hessian[:f, f] += weighted.sum(axis=0)
    hessian[f, f] += weight.sum()


def _block_loss(z, y, e, t, sb=None) -> float:
    """Σ s·(softplus(z) − y·z) for one block (s = 1 without weights); leaves
    e = exp(−|z|) behind for the residual."""
    np.abs(z, out=e)
    np.negative(e, out=e)
    np.exp(e, out=e)
    np.multiply(y, z, out=t)
    np.subtract(np.maximum(z, 0.0), t, out=t)
    total = _weighted_sum(t, sb)
    if t.dtype == np.float32:  # float32 log1p is not vectorized; log(1 + e) is, 4× faster,
        np.add(e, 1.0, out=t)  # and loses only terms below 6e-8 per row
        np.log(t, out=t)
    else:
        np.log1p(e, out=t)
    return total + _weighted_sum(t, sb)


def _weighted_sum(values: np.ndarray, sb) -> float:
    """Σ values (or Σ s·values) accumulated in float64, whatever the block's dtype."""
    if sb is None:
        return float(values.sum(dtype=np.float64))
    return float(values.astype(np.float64) @ sb)


def _block_residual(z: np.ndarray, y: np.ndarray, e: np.ndarray, r: np.ndarray) -> None:
    """r = σ(z) − y, from e = exp(−|z|): 1/(1+e) where z ≥ 0, e/(1+e) where z < 0.

    Leaves e/(1+e) = min(σ(z), 1 − σ(z)) in ``e`` (Newton's weights use it)."""
    np.add(e, 1.0, out=r)
    np.divide(1.0, r, out=r)
    np.multiply(e, r, out=e)
    np.copyto(r, e, where=z < 0)
    r -= y


def moment_sums(
    X: np.ndarray, y=None, w=None, b=None, sample_weight: np.ndarray | None = None, codes=None
) -> MomentSums:
    """Per-column count, mean and Σ s·(x − mean)² of one partition, for ``standardize``.

    Takes (and ignores) the labels, (w, b) and the categorical codes so that it runs over
    the cached blocks like any other pass (category indicators are not standardized).
    Blocks of rows are merged with the pairwise formula of Chan et al., which does not
    lose precision the way Σx² − (Σx)²/n does.
    """
    total = MomentSums.zeros(X.shape[1])
    for start in range(0, X.shape[0], BLOCK_ROWS):
        Xb = np.asarray(X[start : start + BLOCK_ROWS], dtype=np.float64)
        sb = None if sample_weight is None else sample_weight[start : start + BLOCK_ROWS]
        total = total.merge(MomentSums.of_block(Xb, sb))
    return total


def predict_proba_rows(X: np.ndarray, w: np.ndarray, b: float, codes=None) -> np.ndarray:
    """P(y = 1 | x) for every row of X."""
    return sigmoid(linear_predictor(X, w, b, codes))


def linear_predictor(X: np.ndarray, w: np.ndarray, b, codes=None) -> np.ndarray:
    """z = X·w + b (+ the category slots of each row) in float64, whatever the storage
    dtype of X; w is (f [+ S],) for one output or (f [+ S], K) for K."""
    w = np.asarray(w, dtype=np.float64)
    f = X.shape[1]
    z = np.asarray(X, dtype=np.float64) @ w[:f]
    z += b
    if codes is not None:
        z += category_z(codes, category_slots(w, f))
    return z


def check_finite_scores(z: np.ndarray, w, where: str = "the data") -> None:
    """Raise ModelError when a finite model gives NaN scores (its coefficients times these
    values overflow float64 to +inf and −inf in one row): probabilities and metrics of such
    rows would be NaN, never a number to publish. (A score of ±inf is a probability of
    0 or 1, and stays.)"""
    bad = np.isnan(z)
    if bad.any():
        from lrdask.errors import ModelError

        rows = int(bad.any(axis=1).sum()) if bad.ndim == 2 else int(bad.sum())
        raise ModelError(
            f"{where}: the model's scores x·w + b overflow for {rows} row(s) (largest "
            f"|coefficient| {float(np.max(np.abs(w))):.3g}); the model does not fit this "
            "data: retrain it, or check the model file"
        )
