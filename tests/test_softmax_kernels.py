import warnings

import numpy as np
import pytest
from scipy.special import logsumexp, softmax
from sklearn.metrics import log_loss

from lrdask.kernels import log_loss_sums
from lrdask.softmax_kernels import softmax_proba_rows, softmax_sums
from lrdask.sums import merge_all


def problem(rows, features, classes, seed, scale=1.0, order="F"):
    """Random X (in the loader's F-order by default), labels 0..K−1 as floats, W and b."""
    rng = np.random.default_rng(seed)
    X = np.asarray(rng.normal(size=(rows, features)) * scale, order=order)
    y = rng.integers(0, classes, size=rows).astype(np.float64)
    W = rng.normal(size=(features, classes)) * 0.5
    b = rng.normal(size=classes) * 0.3
    return X, y, W, b


def direct_sums(X, y, W, b, weights=None):
    """The partial sums written out with NumPy and scipy: no blocking, no buffers."""
    s = np.ones(len(y)) if weights is None else weights
    Z = X @ W + b
    rows, labels = np.arange(len(y)), y.astype(int)
    R = softmax(Z, axis=1)
    R[rows, labels] -= 1.0
    R *= s[:, None]
    loss = s @ (logsumexp(Z, axis=1) - Z[rows, labels])
    return s.sum(), loss, X.T @ R, R.sum(axis=0)


def assert_sums_close(sums, expected, rtol=1e-12, atol=1e-12):
    count, loss, grad, grad_b = expected
    np.testing.assert_allclose(sums.count, count, rtol=1e-15)
    np.testing.assert_allclose(sums.loss, loss, rtol=rtol)
    np.testing.assert_allclose(sums.grad_coef, grad, rtol=rtol, atol=atol)
    np.testing.assert_allclose(sums.grad_intercept, grad_b, rtol=rtol, atol=atol)


@pytest.mark.parametrize("order", ["F", "C"])
@pytest.mark.parametrize("block_rows", [1, 7, 8192])
def test_sums_match_direct_numpy(block_rows, order):
    X, y, W, b = problem(1000, 6, 4, seed=1, order=order)
    sums = softmax_sums(X, y, W, b, block_rows=block_rows)
    assert sums.grad_coef.shape == (6, 4) and sums.grad_intercept.shape == (4,)
    assert_sums_close(sums, direct_sums(X, y, W, b))


def test_gradient_matches_finite_differences():
    X, y, W, b = problem(300, 4, 3, seed=2)
    cost, dW, db = softmax_sums(X, y, W, b).mean()
    assert cost > 0

    def mean_loss(W, b):
        return softmax_sums(X, y, W, b).mean()[0]

    h = 1e-6
    for j, k in np.ndindex(*W.shape):
        e = np.zeros_like(W)
        e[j, k] = h
        assert abs((mean_loss(W + e, b) - mean_loss(W - e, b)) / (2 * h) - dW[j, k]) < 1e-8
    for k in range(3):
        e = np.zeros(3)
        e[k] = h
        assert abs((mean_loss(W, b + e) - mean_loss(W, b - e)) / (2 * h) - db[k]) < 1e-8


def test_merge_of_split_rows_equals_the_whole():
    X, y, W, b = problem(1003, 5, 3, seed=3)
    whole = softmax_sums(X, y, W, b, block_rows=64)
    cuts = [(0, 0), (0, 3), (3, 700), (700, 1003)]  # includes an empty partition
    merged = merge_all(softmax_sums(X[i:j], y[i:j], W, b, block_rows=64) for i, j in cuts)
    assert merged.count == whole.count == 1003
    np.testing.assert_allclose(merged.loss, whole.loss, rtol=1e-12)
    np.testing.assert_allclose(merged.grad_coef, whole.grad_coef, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(merged.grad_intercept, whole.grad_intercept, rtol=1e-12, atol=1e-12)


def test_empty_partition_contributes_nothing():
    sums = softmax_sums(np.empty((0, 3)), np.empty(0), np.ones((3, 4)), np.ones(4))
    assert sums.count == 0 and sums.loss == 0
    assert sums.grad_coef.shape == (3, 4) and not sums.grad_coef.any()
    assert sums.grad_intercept.shape == (4,) and not sums.grad_intercept.any()


def test_integer_sample_weights_equal_repeated_rows():
    X, y, W, b = problem(200, 4, 3, seed=4)
    counts = np.random.default_rng(5).integers(0, 4, size=200)  # 0 drops a row
    weighted = softmax_sums(X, y, W, b, block_rows=16, sample_weight=counts.astype(float))
    repeated = softmax_sums(np.repeat(X, counts, axis=0), np.repeat(y, counts), W, b)
    assert weighted.count == counts.sum() == repeated.count
    assert_sums_close(
        weighted,
        (repeated.count, repeated.loss, repeated.grad_coef, repeated.grad_intercept),
    )


def test_class_weight_equals_sample_weight_set_per_class():
    X, y, W, b = problem(500, 4, 3, seed=6)
    class_weight = [0.5, 2.0, 3.25]
    by_class = softmax_sums(X, y, W, b, block_rows=50, class_weight=class_weight)
    per_row = np.asarray(class_weight)[y.astype(int)]
    by_row = softmax_sums(X, y, W, b, block_rows=50, sample_weight=per_row)
    assert by_class.count == pytest.approx(per_row.sum(), rel=1e-15)
    assert_sums_close(by_class, direct_sums(X, y, W, b, per_row))
    assert_sums_close(by_row, direct_sums(X, y, W, b, per_row))


def test_sample_and_class_weights_multiply():
    X, y, W, b = problem(300, 3, 4, seed=7)
    sample_weight = np.random.default_rng(8).random(300)
    class_weight = np.array([1.0, 0.25, 4.0, 2.0])
    sums = softmax_sums(X, y, W, b, 32, sample_weight=sample_weight, class_weight=class_weight)
    assert_sums_close(sums, direct_sums(X, y, W, b, sample_weight * class_weight[y.astype(int)]))


def test_unit_weights_equal_the_unweighted_fast_path():
    X, y, W, b = problem(100, 3, 3, seed=9)
    fast = softmax_sums(X, y, W, b)
    weighted = softmax_sums(X, y, W, b, sample_weight=np.ones(100), class_weight=[1.0] * 3)
    assert_sums_close(
        weighted, (fast.count, fast.loss, fast.grad_coef, fast.grad_intercept), rtol=1e-15
    )


def test_huge_logits_give_finite_sums_without_warnings():
    X, y, W, b = problem(500, 5, 4, seed=10, scale=1e6)  # |z| ~ 1e6
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sums = softmax_sums(X, y, W, b, block_rows=64)
        proba = softmax_proba_rows(X, W, b)
    assert np.isfinite(sums.loss) and np.all(np.isfinite(sums.grad_coef))
    assert np.all(np.isfinite(sums.grad_intercept)) and np.all(np.isfinite(proba))
    assert_sums_close(sums, direct_sums(X, y, W, b))


@pytest.mark.parametrize("z", [1e4, 745.0, 1e300])
def test_extreme_logits_cost_their_gap_exactly(z):
    # logits (z, −z, 0): the wrong classes cost 2z and z, the right one ~e^−z
    X = np.ones((3, 1))
    y = np.array([0.0, 1.0, 2.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sums = softmax_sums(X, y, np.array([[z, -z, 0.0]]), np.zeros(3))
    assert sums.loss == pytest.approx(3 * z, rel=1e-12)
    np.testing.assert_allclose(sums.grad_intercept, [2.0, -1.0, -1.0], rtol=1e-12)


def test_two_classes_match_the_binomial_kernel():
    X, y, W, b = problem(700, 5, 2, seed=11)
    W[:, 0], b[0] = 0.0, 0.0
    soft = softmax_sums(X, y, W, b, block_rows=100)
    binary = log_loss_sums(X, y, W[:, 1] - W[:, 0], b[1] - b[0], block_rows=100)
    assert soft.count == binary.count
    np.testing.assert_allclose(soft.loss, binary.loss, rtol=1e-12)
    # class 1's residual is σ(z) − y; class 0's is its negative
    np.testing.assert_allclose(soft.grad_coef[:, 1], binary.grad_coef, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(soft.grad_coef[:, 0], -binary.grad_coef, rtol=1e-12, atol=1e-12)
    expected_b = np.array([-1.0, 1.0]) * binary.grad_intercept
    np.testing.assert_allclose(soft.grad_intercept, expected_b, rtol=1e-12)


def test_float32_storage_accumulates_close_to_float64():
    X, y, W, b = problem(5000, 8, 5, seed=12)
    X32 = X.astype(np.float32, order="F")
    s64 = softmax_sums(X32.astype(np.float64), y, W, b)  # same values, float64 storage
    s32 = softmax_sums(X32, y, W, b)
    assert s32.grad_coef.dtype == np.float64 and s32.grad_intercept.dtype == np.float64
    np.testing.assert_allclose(s32.loss, s64.loss, rtol=1e-6)
    scale = np.abs(s64.grad_coef).max()
    np.testing.assert_allclose(s32.grad_coef, s64.grad_coef, rtol=1e-6, atol=1e-6 * scale)
    np.testing.assert_allclose(s32.grad_intercept, s64.grad_intercept, rtol=1e-6, atol=1e-6)


def test_proba_rows_sum_to_one_and_match_scipy():
    X, _, W, b = problem(400, 6, 5, seed=13, scale=3.0)
    proba = softmax_proba_rows(X, W, b)
    assert proba.shape == (400, 5) and proba.dtype == np.float64
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-14)
    np.testing.assert_allclose(proba, softmax(X @ W + b, axis=1), rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(softmax_proba_rows(X.astype(np.float32), W, b), proba, rtol=1e-5)


@pytest.mark.parametrize("weighted", [False, True])
def test_mean_loss_matches_sklearn_log_loss(weighted):
    X, y, W, b = problem(600, 4, 4, seed=14)
    sample_weight = np.random.default_rng(15).random(600) if weighted else None
    cost = softmax_sums(X, y, W, b, block_rows=128, sample_weight=sample_weight).mean()[0]
    expected = log_loss(
        y, softmax_proba_rows(X, W, b), labels=range(4), sample_weight=sample_weight
    )
    assert cost == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("label", [-1.0, 3.0])
def test_labels_outside_the_classes_are_an_error(label):
    X, y, W, b = problem(10, 2, 3, seed=16)
    y[4] = label
    with pytest.raises(ValueError, match=r"class indices 0\.\.2"):
        softmax_sums(X, y, W, b)


def test_class_weight_of_the_wrong_length_is_an_error():
    X, y, W, b = problem(10, 2, 3, seed=17)
    with pytest.raises(ValueError, match="class_weight needs 3 values"):
        softmax_sums(X, y, W, b, class_weight=[1.0, 2.0])
