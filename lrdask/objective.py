"""The function a solver minimizes, assembled on the driver around one distributed pass.

Spark MLlib's shape: broadcast the coefficients, aggregate the partial sums over all
partitions, then add the regularization on the driver. Here, in order:

- ``Layout``: θ is flat (coefficients, then intercepts); it is cut into the model's
  ``coef`` (features,) or (features, K) and ``intercept`` (a float, or K of them).
- ``Scaling`` (``standardize``): the solver works on standardized features
  (x − μ)/σ without the data ever being rescaled: the pass runs at the equivalent
  original-scale point and the gradient is mapped back by the chain rule. Constant
  columns (σ = 0) keep a zero coefficient instead of dividing by zero.
- L2: (λ/2)·‖coef‖² in the solver's space; intercepts are never penalized.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from lrdask.sums import MomentSums

# run_pass(coef, intercept) -> (J, dJ/dcoef, dJ/dintercept[, Hessian]), averaged
RunPass = Callable[[np.ndarray, object], tuple]


@dataclass(frozen=True)
class Layout:
    """Where the coefficients and intercepts sit in the flat parameter vector θ."""

    n_features: int
    outputs: int = 1  # 1: binomial; K: multinomial, K columns of coefficients, K intercepts

    @property
    def coef_shape(self) -> tuple[int, ...]:
        return (self.n_features,) if self.outputs == 1 else (self.n_features, self.outputs)

    @property
    def size(self) -> int:
        return (self.n_features + 1) * self.outputs

    def split(self, theta: np.ndarray):
        """θ → (coef, intercept)."""
        f, k = self.n_features, self.outputs
        if k == 1:
            return theta[:f], float(theta[f])
        return theta[: f * k].reshape(f, k), theta[f * k :]

    def join(self, coef, intercept) -> np.ndarray:
        return np.concatenate([np.ravel(coef), np.ravel(intercept)]).astype(np.float64)

    def penalized(self) -> np.ndarray:
        """True for the coefficients, False for the intercepts."""
        mask = np.zeros(self.size, dtype=bool)
        mask[: self.n_features * self.outputs] = True
        return mask


@dataclass(frozen=True)
class Scaling:
    """Standardization as a change of variables: coef = coef_s / σ, b = b_s − μ·coef."""

    mean: np.ndarray
    scale: np.ndarray  # σ, with 1 where the column is constant
    constant: np.ndarray  # True where σ = 0

    @classmethod
    def from_moments(cls, moments: MomentSums, ddof: int = 0) -> Scaling:
        std = np.sqrt(moments.variance(ddof))
        constant = ~(std > 1e-12 * np.maximum(np.abs(moments.mean), 1.0))
        return cls(moments.mean, np.where(constant, 1.0, std), constant)

    def _column(self, values: np.ndarray, coef) -> np.ndarray:
        return values.reshape(-1, *([1] * (np.ndim(coef) - 1)))

    def to_original(self, coef, intercept):
        constant, scale = self._column(self.constant, coef), self._column(self.scale, coef)
        coef = np.where(constant, 0.0, coef / scale)
        return coef, intercept - self.mean @ coef

    def to_scaled(self, coef, intercept):
        constant, scale = self._column(self.constant, coef), self._column(self.scale, coef)
        return np.where(constant, 0.0, coef * scale), intercept + self.mean @ coef

    def gradient_to_scaled(self, grad_coef, grad_intercept):
        """dJ/dcoef_s = (dJ/dcoef − μ ⊗ dJ/db) / σ; 0 for constant columns."""
        scaled = (grad_coef - np.multiply.outer(self.mean, grad_intercept)) / self._column(
            self.scale, grad_coef
        )
        return np.where(self._column(self.constant, grad_coef), 0.0, scaled), grad_intercept

    def hessian_to_scaled(self, hessian: np.ndarray) -> np.ndarray:
        """Tᵀ·H·T for the binomial θ = T·θ_s; constant columns get an identity row."""
        f = len(self.mean)
        jacobian = np.eye(f + 1)
        jacobian[np.arange(f), np.arange(f)] = 1.0 / self.scale
        jacobian[f, :f] = -self.mean / self.scale
        scaled = jacobian.T @ hessian @ jacobian
        idx = np.flatnonzero(self.constant)
        scaled[idx, :] = 0.0
        scaled[:, idx] = 0.0
        scaled[idx, idx] = 1.0
        return scaled


class Objective:
    """θ (the solver's space) → (J + (λ/2)‖coef‖², gradient[, Hessian]); one pass per call.

    ``passes`` counts the distributed passes made so far.
    """

    def __init__(
        self,
        run_pass: RunPass,
        layout: Layout,
        scaling: Scaling | None = None,
        l2: float = 0.0,
    ):
        self.run_pass = run_pass
        self.layout = layout
        self.scaling = scaling
        self.l2 = l2
        self.penalized = layout.penalized()
        self.passes = 0

    def to_model(self, theta: np.ndarray):
        """θ → (coef, intercept) on the original feature scale."""
        coef, intercept = self.layout.split(theta)
        if self.scaling is not None:
            coef, intercept = self.scaling.to_original(coef, intercept)
        return np.array(coef, dtype=np.float64), _intercept(intercept)

    def from_model(self, coef, intercept) -> np.ndarray:
        """(coef, intercept) on the original scale → θ (a warm start)."""
        if self.scaling is not None:
            coef, intercept = self.scaling.to_scaled(coef, intercept)
        return self.layout.join(coef, intercept)

    def __call__(self, theta: np.ndarray) -> tuple:
        coef, intercept = self.to_model(theta)
        cost, grad_coef, grad_intercept, *hessian = self.run_pass(coef, intercept)
        self.passes += 1
        if self.scaling is not None:
            grad_coef, grad_intercept = self.scaling.gradient_to_scaled(grad_coef, grad_intercept)
            hessian = [self.scaling.hessian_to_scaled(h) for h in hessian]
        grad = self.layout.join(grad_coef, grad_intercept)
        if self.l2:
            mask = self.penalized
            cost = cost + 0.5 * self.l2 * float(theta[mask] @ theta[mask])
            grad[mask] += self.l2 * theta[mask]
            hessian = [_ridged(h, mask, self.l2) for h in hessian]
        return (cost, grad, *hessian)


def _ridged(hessian: np.ndarray, mask: np.ndarray, l2: float) -> np.ndarray:
    ridged = hessian.copy()
    idx = np.flatnonzero(mask)
    ridged[idx, idx] += l2
    return ridged


def _intercept(value):
    return float(value) if np.ndim(value) == 0 else np.array(value, dtype=np.float64)
