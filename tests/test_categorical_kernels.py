"""Categorical codes in the kernels equal the dense one-hot design, for every kernel.

The kind of failure: a kernel that handles codes differently from the dense matrix it
stands for (a slot off by one, the zero slot counted, a weight or class weight skipped).
A sweep over shapes, slot counts, dtypes, weights and families checks them all against
the same kernels run on the explicit dense design [X, one-hot(codes)].
"""

import numpy as np
import pytest

from lrdask.evaluation import evaluation_sums, multiclass_evaluation_sums
from lrdask.kernels import dense_design, linear_predictor, log_loss_sums, newton_sums
from lrdask.predict import class_probabilities
from lrdask.softmax_kernels import softmax_sums


def problem(seed, rows, f, slots_per_column, classes=2):
    rng = np.random.default_rng(seed)
    X = np.asfortranarray(rng.normal(size=(rows, f)))
    n_slots = sum(slots_per_column)
    codes = np.empty((rows, len(slots_per_column)), dtype=np.int32, order="F")
    offset = 0
    for j, s in enumerate(slots_per_column):
        # each column's slots, plus the zero slot (n_slots) now and then
        c = offset + rng.integers(0, s, size=rows)
        c[rng.random(rows) < 0.1] = n_slots
        codes[:, j] = c
        offset += s
    y = rng.integers(0, classes, size=rows).astype(np.float64)
    return X, codes, y, n_slots, rng


def dense(X, codes, n_slots):
    return np.asfortranarray(dense_design(X, codes, np.zeros(n_slots + 1)))


CASES = [
    (0, 1, 0, [3]),
    (1, 50, 2, [1]),
    (2, 257, 3, [4, 1, 7]),
    (3, 9000, 5, [2, 30]),  # more rows than one cache block
    (4, 20001, 1, [500, 3, 3]),
]


@pytest.mark.parametrize("seed,rows,f,slots", CASES)
@pytest.mark.parametrize("weighted", [False, True])
def test_binomial_kernel_with_codes_equals_dense_one_hot(seed, rows, f, slots, weighted):
    X, codes, y, n_slots, rng = problem(seed, rows, f, slots)
    w = rng.normal(size=f + n_slots)
    weights = rng.random(rows) * 2 if weighted else None
    kw = {"sample_weight": weights, "class_weight": (0.7, 1.9) if weighted else None}
    got = log_loss_sums(X, y, w, 0.3, codes=codes, **kw)
    want = log_loss_sums(dense(X, codes, n_slots), y, w, 0.3, **kw)
    assert got.count == pytest.approx(want.count, rel=1e-14)
    assert got.loss == pytest.approx(want.loss, rel=1e-12)
    np.testing.assert_allclose(got.grad_coef, want.grad_coef, rtol=1e-10, atol=1e-10)
    assert got.grad_intercept == pytest.approx(want.grad_intercept, rel=1e-10, abs=1e-10)


@pytest.mark.parametrize("seed,rows,f,slots", CASES[:4])
def test_newton_kernel_with_codes_equals_dense_one_hot(seed, rows, f, slots):
    X, codes, y, n_slots, rng = problem(seed, rows, f, slots)
    w = rng.normal(size=f + n_slots) * 0.5
    got = newton_sums(X, y, w, -0.2, codes=codes)
    want = newton_sums(dense(X, codes, n_slots), y, w, -0.2)
    np.testing.assert_allclose(got.hessian, want.hessian, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(got.sums.grad_coef, want.sums.grad_coef, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("seed,rows,f,slots", CASES)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_softmax_kernel_with_codes_equals_dense_one_hot(seed, rows, f, slots, dtype):
    X, codes, y, n_slots, rng = problem(seed, rows, f, slots, classes=3)
    W = rng.normal(size=(f + n_slots, 3))
    b = rng.normal(size=3)
    got = softmax_sums(X.astype(dtype), y, W, b, codes=codes)
    want = softmax_sums(dense(X, codes, n_slots).astype(dtype), y, W, b)
    tol = 1e-10 if dtype == "float64" else 2e-5
    assert got.loss == pytest.approx(want.loss, rel=tol)
    np.testing.assert_allclose(got.grad_coef, want.grad_coef, rtol=tol, atol=tol * 10)
    np.testing.assert_allclose(got.grad_intercept, want.grad_intercept, rtol=tol, atol=tol * 10)


@pytest.mark.parametrize("seed,rows,f,slots", CASES)
def test_scoring_kernels_with_codes_equal_dense_one_hot(seed, rows, f, slots):
    X, codes, y, n_slots, rng = problem(seed, rows, f, slots)
    D = dense(X, codes, n_slots)
    w = rng.normal(size=f + n_slots)
    np.testing.assert_allclose(linear_predictor(X, w, 0.1, codes), D @ w + 0.1, rtol=1e-12)
    np.testing.assert_allclose(
        class_probabilities(X, w, 0.1, codes), class_probabilities(D, w, 0.1), rtol=1e-12
    )
    got, want = evaluation_sums(X, y, w, 0.1, codes=codes), evaluation_sums(D, y, w, 0.1)
    assert got.loss == pytest.approx(want.loss, rel=1e-12)
    np.testing.assert_array_equal(got.confusion, want.confusion)
    W = rng.normal(size=(f + n_slots, 3))
    y3 = rng.integers(0, 3, size=rows).astype(np.float64)
    got3 = multiclass_evaluation_sums(X, y3, W, np.zeros(3), codes=codes)
    want3 = multiclass_evaluation_sums(D, y3, W, np.zeros(3))
    assert got3.loss == pytest.approx(want3.loss, rel=1e-12)
    np.testing.assert_array_equal(got3.confusion, want3.confusion)


def test_gradient_with_codes_matches_finite_differences():
    X, codes, y, n_slots, rng = problem(7, 300, 2, [4, 3])
    w = rng.normal(size=2 + n_slots) * 0.3
    sums = log_loss_sums(X, y, w, 0.0, codes=codes)
    step = 1e-6
    for j in range(len(w)):
        e = np.zeros_like(w)
        e[j] = step
        up = log_loss_sums(X, y, w + e, 0.0, codes=codes).loss
        down = log_loss_sums(X, y, w - e, 0.0, codes=codes).loss
        assert (up - down) / (2 * step) == pytest.approx(sums.grad_coef[j], rel=1e-5, abs=1e-6)


def test_a_categorical_pass_is_linear_in_rows_not_levels():
    """100 000 slots and 1 000 rows: the gradient has every slot, and only the rows' own
    slots are non-zero (no work or memory per row for levels the row does not hold)."""
    rng = np.random.default_rng(3)
    n_slots = 100_000
    codes = rng.integers(0, n_slots, size=(1000, 1)).astype(np.int32)
    X = np.zeros((1000, 0), order="F")
    y = rng.integers(0, 2, size=1000).astype(np.float64)
    sums = log_loss_sums(X, y, np.zeros(n_slots), 0.0, codes=codes)
    assert sums.grad_coef.shape == (n_slots,)
    assert set(np.flatnonzero(sums.grad_coef)) <= set(codes[:, 0].tolist())
