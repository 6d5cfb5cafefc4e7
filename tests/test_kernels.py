import warnings

import numpy as np
import pytest
from scipy.special import expit

from lrdask.kernels import log_loss_rows, log_loss_sums, predict_proba_rows, sigmoid
from lrdask.sums import LogLossSums, merge_all


def direct_sums(X, y, w, b):
    """The partial sums written out with NumPy and scipy, no blocking, no tricks."""
    z = X @ w + b
    a = expit(z)
    loss = -(y * np.log(a) + (1 - y) * np.log(1 - a))
    return loss.sum(), X.T @ (a - y), (a - y).sum()


@pytest.mark.parametrize("block_rows", [1, 7, 8192])
def test_kernel_matches_direct_numpy(block_rows):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(1000, 6))
    y = (rng.random(1000) < 0.4).astype(float)
    w, b = rng.normal(size=6) * 0.3, 0.2
    sums = log_loss_sums(X, y, w, b, block_rows=block_rows)
    loss, grad, grad_b = direct_sums(X, y, w, b)
    assert sums.count == 1000
    np.testing.assert_allclose(sums.loss, loss, rtol=1e-13)
    np.testing.assert_allclose(sums.grad_coef, grad, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(sums.grad_intercept, grad_b, rtol=1e-12, atol=1e-12)


def test_gradient_matches_finite_differences():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(300, 4))
    y = (rng.random(300) < 0.5).astype(float)
    w, b = rng.normal(size=4), -0.3
    cost, dw, db = log_loss_sums(X, y, w, b).mean()
    h = 1e-6
    for j in range(4):
        e = np.zeros(4)
        e[j] = h
        up = log_loss_sums(X, y, w + e, b).mean()[0]
        down = log_loss_sums(X, y, w - e, b).mean()[0]
        assert abs((up - down) / (2 * h) - dw[j]) < 1e-8
    up = log_loss_sums(X, y, w, b + h).mean()[0]
    down = log_loss_sums(X, y, w, b - h).mean()[0]
    assert abs((up - down) / (2 * h) - db) < 1e-8
    assert cost > 0


@pytest.mark.parametrize("z", [1e4, -1e4, 745.0, -745.0, 1e300, -1e300])
def test_loss_and_sigmoid_are_stable_for_huge_z(z):
    zs = np.array([z, z])
    ys = np.array([0.0, 1.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss = log_loss_rows(zs, ys)
        p = sigmoid(zs)
    assert np.all(np.isfinite(loss))
    assert np.all((p >= 0) & (p <= 1))
    # the right class costs ~0, the wrong one costs |z|
    wrong = 0 if z > 0 else 1
    assert loss[wrong] == pytest.approx(abs(z), rel=1e-12)
    assert loss[1 - wrong] == pytest.approx(0.0, abs=1e-300)


def test_loss_matches_the_log_form():
    z = np.linspace(-30, 30, 601)
    # −log σ(z) = log(1 + e^−z) and −log(1 − σ(z)) = log(1 + e^z), via NumPy's logaddexp
    np.testing.assert_allclose(log_loss_rows(z, np.ones_like(z)), np.logaddexp(0, -z), rtol=1e-13)
    np.testing.assert_allclose(log_loss_rows(z, np.zeros_like(z)), np.logaddexp(0, z), rtol=1e-13)
    middle = np.abs(z) < 5  # where the textbook form is itself accurate
    a = expit(z[middle])
    np.testing.assert_allclose(
        log_loss_rows(z[middle], np.ones(middle.sum())), -np.log(a), rtol=1e-12
    )


def test_saturated_partition_gives_finite_sums_without_warnings():
    X = np.array([[1e4], [-1e4], [3.0]])
    y = np.array([0.0, 1.0, 1.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sums = log_loss_sums(X, y, np.array([1.0]), 0.0)
    assert np.isfinite(sums.loss) and np.all(np.isfinite(sums.grad_coef))
    assert sums.loss == pytest.approx(2e4 + np.log1p(np.exp(-3.0)), rel=1e-12)


def test_empty_partition_contributes_nothing():
    sums = log_loss_sums(np.empty((0, 3)), np.empty(0), np.ones(3), 1.0)
    assert sums.count == 0 and sums.loss == 0 and not sums.grad_coef.any()


def test_float32_storage_accumulates_close_to_float64():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(5000, 8))
    y = (rng.random(5000) < 0.5).astype(float)
    w = rng.normal(size=8) * 0.1
    s64 = log_loss_sums(X, y, w, 0.1)
    s32 = log_loss_sums(X.astype(np.float32), y, w, 0.1)
    assert s32.grad_coef.dtype == np.float64
    np.testing.assert_allclose(s32.loss, s64.loss, rtol=1e-6)
    np.testing.assert_allclose(s32.grad_coef, s64.grad_coef, rtol=1e-4, atol=1e-3)


def test_merge_then_divide_once_is_not_the_mean_of_means():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(103, 3))
    y = (rng.random(103) < 0.5).astype(float)
    w = np.array([0.5, -0.2, 0.1])
    whole = log_loss_sums(X, y, w, 0.0).mean()
    parts = [log_loss_sums(X[a:b], y[a:b], w, 0.0) for a, b in [(0, 3), (3, 100), (100, 103)]]
    merged = merge_all(parts).mean()
    np.testing.assert_allclose(merged[0], whole[0], rtol=1e-14)
    np.testing.assert_allclose(merged[1], whole[1], rtol=1e-13)
    mean_of_means = np.mean([p.mean()[0] for p in parts])
    assert abs(mean_of_means - whole[0]) > 1e-6


def test_mean_of_nothing_is_an_error():
    with pytest.raises(ValueError, match="zero rows"):
        LogLossSums.zeros(2).mean()


def test_predict_proba_rows():
    X = np.array([[0.0], [1.0]])
    np.testing.assert_allclose(predict_proba_rows(X, np.array([2.0]), -1.0), expit([-1.0, 1.0]))
