"""The function a solver minimizes, assembled on the driver around one distributed pass.

Spark MLlib's shape: broadcast the coefficients, aggregate the partial sums over all
partitions, then add the regularization on the driver. Here, in order:

- ``Layout``: θ is flat (coefficients, then intercepts); it is cut into the model's
  ``coef`` (features,) or (features, K) and ``intercept`` (a float, or K of them). Without
  an intercept (``fit_intercept=False``) θ holds the coefficients only and the intercepts
  are 0: the passes run with b = 0 and the gradient with respect to b is dropped.
- ``Scaling``: the solver works on standardized features (x − μ)/σ without the data
  ever being rescaled: the pass runs at the equivalent original-scale point and the
  gradient is mapped back by the chain rule. Constant columns (σ = 0) keep a zero
  coefficient instead of dividing by zero. It serves two purposes:

  * ``STANDARDIZED`` (``standardize=True``): the *problem* is posed on the
    standardized features — the L2/L1 penalty is on that scale, as in Spark with
    ``standardization=true``;
  * ``PRECONDITIONED``: the problem stays on the original features (penalty on the
    original coefficients) and only the solver's coordinates change, as Spark's L-BFGS
    does with ``standardization=false``: a diagonal-plus-centering change of variables
    that makes badly scaled columns (income in dollars next to a 0/1 flag) as easy as
    standardized ones;
  * ``ORIGINAL`` (plain gd, the lecture's update): the solver works on the original
    coefficients; the scaling serves only the stationarity measure.

  Without an intercept there is nothing to absorb the shift by μ: the change of
  variables scales only (coef = coef_s/σ, as Spark does with ``fitIntercept=false``), and
  the preconditioner and the ``gtol`` measure scale by the root mean square
  √(σ² + μ²), the diagonal of the uncentred Hessian, so that a constant non-zero column
  (the user's own intercept) is a coefficient like any other.

  Whatever the coordinates, ``gtol`` is tested on the same measure: the gradient with
  respect to the coefficients of the standardized columns and the intercept(s), so the
  test does not depend on the units of the columns (income in dollars or in thousands).
- L2: (λ/2)·‖coef‖² on the problem's coefficients; intercepts are never penalized.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from lrdask.solvers import L1Penalty, Measure
from lrdask.sums import MomentSums

# run_pass(coef, intercept) -> (J, dJ/dcoef, dJ/dintercept[, Hessian]), averaged
RunPass = Callable[[np.ndarray, object], tuple]

log = logging.getLogger("lrdask")


@dataclass(frozen=True)
class Layout:
    """Where the coefficients and intercepts sit in the flat parameter vector θ."""

    n_features: int
    outputs: int = 1  # 1: binomial; K: multinomial, K columns of coefficients, K intercepts
    intercept: bool = True  # False: θ holds no intercepts, which are fixed at 0

    @property
    def coef_shape(self) -> tuple[int, ...]:
        return (self.n_features,) if self.outputs == 1 else (self.n_features, self.outputs)

    @property
    def size(self) -> int:
        return (self.n_features + self.intercept) * self.outputs

    def split(self, theta: np.ndarray):
        """θ → (coef, intercept); the intercepts are 0 when θ has none."""
        f, k = self.n_features, self.outputs
        if k == 1:
            return theta[:f], float(theta[f]) if self.intercept else 0.0
        intercept = theta[f * k :] if self.intercept else np.zeros(k)
        return theta[: f * k].reshape(f, k), intercept

    def join(self, coef, intercept) -> np.ndarray:
        """(coef, intercept) → θ; without intercepts, ``intercept`` is left out."""
        parts = [np.ravel(coef), np.ravel(intercept)] if self.intercept else [np.ravel(coef)]
        return np.concatenate(parts).astype(np.float64)

    def penalized(self) -> np.ndarray:
        """True for the coefficients, False for the intercepts."""
        mask = np.zeros(self.size, dtype=bool)
        mask[: self.n_features * self.outputs] = True
        return mask


@dataclass(frozen=True)
class Scaling:
    """Standardization as a change of variables: coef = coef_s / σ, b = b_s − μ·coef
    (``centred``), or coef = coef_s / σ alone (not ``centred``: a model without intercept,
    which has nothing to absorb the shift)."""

    mean: np.ndarray
    scale: np.ndarray  # σ, with 1 where the column is constant
    constant: np.ndarray  # True where σ = 0
    centred: bool = True

    @property
    def shift(self) -> np.ndarray:
        """μ when the change of variables centres the columns, else 0."""
        return self.mean if self.centred else np.zeros_like(self.mean)

    def uncentred(self) -> Scaling:
        """The same moments, for a model without intercept: x/σ, no centring."""
        return dataclasses.replace(self, centred=False)

    @classmethod
    def from_moments(cls, moments: MomentSums, ddof: int = 0) -> Scaling:
        std = np.sqrt(moments.variance(ddof))
        # constant: every value the same up to the rounding of the mean itself (16 ulps);
        # a real spread, even 4 around 1e13, is kept
        constant = ~(std > 16 * np.finfo(float).eps * np.abs(moments.mean))
        return cls(moments.mean, np.where(constant, 1.0, std), constant)

    def _column(self, values: np.ndarray, coef) -> np.ndarray:
        return values.reshape(-1, *([1] * (np.ndim(coef) - 1)))

    def to_original(self, coef, intercept):
        constant, scale = self._column(self.constant, coef), self._column(self.scale, coef)
        coef = np.where(constant, 0.0, coef / scale)
        return coef, intercept - self.shift @ coef

    def to_scaled(self, coef, intercept):
        constant, scale = self._column(self.constant, coef), self._column(self.scale, coef)
        return np.where(constant, 0.0, coef * scale), intercept + self.shift @ coef

    def gradient_to_scaled(self, grad_coef, grad_intercept):
        """dJ/dcoef_s = (dJ/dcoef − μ ⊗ dJ/db) / σ; 0 for constant columns."""
        scaled = (grad_coef - np.multiply.outer(self.shift, grad_intercept)) / self._column(
            self.scale, grad_coef
        )
        return np.where(self._column(self.constant, grad_coef), 0.0, scaled), grad_intercept

    def gradient_to_original(self, grad_coef, grad_intercept):
        """The inverse of ``gradient_to_scaled``: dJ/dcoef = σ·dJ/dcoef_s + μ ⊗ dJ/db
        (for a constant column, its value times dJ/db: its true gradient)."""
        scale = self._column(self.scale, grad_coef)
        return grad_coef * scale + np.multiply.outer(self.shift, grad_intercept), grad_intercept

    def with_ridge(self, l2: float) -> Scaling:
        """The preconditioner for an L2 strength λ on the original coefficients: scales
        √(σ² + 4λ), so that the diagonal of the Hessian at the start (p = ½:
        σ²/4 + λ per coefficient) is ¼ in every coordinate — Jacobi's preconditioner; with
        σ alone, a column of small σ would make the penalty term λ/σ² dominate.

        Not ``centred`` (no intercept), the diagonal is (σ² + μ²)/4 + λ: the scale is
        √(σ² + μ² + 4λ), and only all-zero columns are constant (kept at 0)."""
        if not self.centred:
            spread = np.where(self.constant, 0.0, self.scale) ** 2 + self.mean**2
            constant = ~(spread > 0)
            scale = np.where(constant, 1.0, np.sqrt(spread + 4.0 * l2))
            return Scaling(self.mean, scale, constant, centred=False)
        if not l2:
            return self
        scale = np.where(self.constant, 1.0, np.sqrt(self.scale**2 + 4.0 * l2))
        return Scaling(self.mean, scale, self.constant)

    def coefficient_scales(self, outputs: int, intercept: bool = True) -> np.ndarray:
        """1/σ per entry of the flat θ (coefficients, then ``outputs`` intercepts, whose
        entries are 1, if θ has them): |coef| = |coef_s|/σ, so an L1 strength λ₁ on the
        original coefficients is λ₁/σ on the solver's."""
        scales = [np.repeat(1.0 / self.scale, outputs)]
        return np.concatenate([*scales, np.ones(outputs)] if intercept else scales)

    def hessian_to_scaled(self, hessian: np.ndarray) -> np.ndarray:
        """Tᵀ·H·T for the binomial θ = T·θ_s (H with or without the intercept's last row
        and column); constant columns get an identity row."""
        f = len(self.mean)
        jacobian = np.eye(len(hessian))
        jacobian[np.arange(f), np.arange(f)] = 1.0 / self.scale
        if len(hessian) > f:
            jacobian[f, :f] = -self.shift / self.scale
        scaled = jacobian.T @ hessian @ jacobian
        idx = np.flatnonzero(self.constant)
        scaled[idx, :] = 0.0
        scaled[:, idx] = 0.0
        scaled[idx, idx] = 1.0
        return scaled


STANDARDIZED, PRECONDITIONED, ORIGINAL = "standardized", "preconditioned", "original"


class Objective:
    """θ (the solver's space) → (F, ∇F[, ∇²F]) with F = J + (λ/2)‖coef‖²; one pass per call.

    ``coordinates`` says what ``scaling`` (the moments of the columns) does (see the module
    docstring); without a scaling everything is ``ORIGINAL`` and ``gtol`` measures the raw
    gradient. Without ``layout.intercept`` the scaling is used uncentred. ``names`` (of
    the coefficients) serve log lines. ``passes`` counts the distributed passes made so far.
    """

    def __init__(
        self,
        run_pass: RunPass,
        layout: Layout,
        scaling: Scaling | None = None,
        l2: float = 0.0,
        coordinates: str = STANDARDIZED,
        names: list[str] | None = None,
    ):
        if coordinates not in (STANDARDIZED, PRECONDITIONED, ORIGINAL):
            raise ValueError(f"unknown coordinates {coordinates!r}")
        if scaling is not None and not layout.intercept:
            scaling = scaling.uncentred()
        self.run_pass = run_pass
        self.layout = layout
        self.scaling = scaling
        self.coordinates = coordinates if scaling is not None else ORIGINAL
        # the change of variables between the solver's θ and the model
        self._solver_scaling = {
            STANDARDIZED: scaling,
            PRECONDITIONED: scaling.with_ridge(l2) if scaling is not None else None,
            ORIGINAL: None,
        }[self.coordinates]
        self.l2 = l2
        self.penalized = layout.penalized()
        self.passes = 0
        if self.coordinates == STANDARDIZED and not layout.intercept:
            _warn_constant_columns(scaling, names)

    def to_model(self, theta: np.ndarray):
        """θ → (coef, intercept) on the original feature scale."""
        coef, intercept = self.layout.split(theta)
        if self._solver_scaling is not None:
            coef, intercept = self._solver_scaling.to_original(coef, intercept)
        return np.array(coef, dtype=np.float64), _intercept(intercept)

    def from_model(self, coef, intercept) -> np.ndarray:
        """(coef, intercept) on the original scale → θ (a warm start). Without an
        intercept in θ, a non-zero ``intercept`` is left out, with a warning."""
        if not self.layout.intercept and np.any(np.asarray(intercept) != 0):
            log.warning(
                "the starting model's intercept(s) %s are left out: this model has none "
                "(fit_intercept=False)",
                np.round(np.ravel(intercept), 6).tolist(),
            )
        if self._solver_scaling is not None:
            coef, intercept = self._solver_scaling.to_scaled(coef, intercept)
        return self.layout.join(coef, intercept)

    def start(self, class_totals) -> np.ndarray:
        """The solver's first θ: 0 in ``ORIGINAL`` and ``STANDARDIZED`` coordinates (the
        lecture's start); preconditioned, zero coefficients and the intercepts at the
        log-odds of the (weighted) class totals, as Spark starts its L-BFGS (0 too when
        the model has no intercept)."""
        if (
            self.coordinates != PRECONDITIONED
            or not self.layout.intercept
            or not min(class_totals, default=0) > 0
        ):
            return np.zeros(self.layout.size)
        log_totals = np.log(np.asarray(class_totals, dtype=np.float64))
        if self.layout.outputs == 1:
            intercept = float(log_totals[1] - log_totals[0])
        else:
            intercept = log_totals - log_totals.mean()
        return self.from_model(np.zeros(self.layout.coef_shape), intercept)

    def __call__(self, theta: np.ndarray) -> tuple:
        coef, intercept = self.to_model(theta)
        cost, grad_coef, grad_intercept, *hessian = self.run_pass(coef, intercept)
        self.passes += 1
        if not self.layout.intercept:  # no intercept row and column in ∇²F
            f = self.layout.n_features
            hessian = [h[:f, :f] for h in hessian]
        on_original = self.coordinates != STANDARDIZED
        if on_original and self.l2:  # the penalty of the problem on the original scale
            cost = cost + 0.5 * self.l2 * float(np.ravel(coef) @ np.ravel(coef))
            grad_coef = grad_coef + self.l2 * coef
            hessian = [_ridged(h, self.penalized, self.l2) for h in hessian]
        if self._solver_scaling is not None:
            scaling = self._solver_scaling
            grad_coef, grad_intercept = scaling.gradient_to_scaled(grad_coef, grad_intercept)
            hessian = [scaling.hessian_to_scaled(h) for h in hessian]
        grad = self.layout.join(grad_coef, grad_intercept)
        if not on_original and self.l2:
            mask = self.penalized
            cost = cost + 0.5 * self.l2 * float(theta[mask] @ theta[mask])
            grad[mask] += self.l2 * theta[mask]
            hessian = [_ridged(h, mask, self.l2) for h in hessian]
        return (cost, grad, *hessian)

    def penalty(self, theta: np.ndarray, l1_strength: float = 0.0) -> float:
        """(λ/2)‖coef‖² + λ₁‖coef‖₁ of the problem at the solver's θ: on the standardized
        coefficients with ``STANDARDIZED``, else on the original ones."""
        if self.coordinates == STANDARDIZED:
            coef = theta[self.penalized]
        else:
            coef = np.ravel(self.to_model(theta)[0])
        return 0.5 * self.l2 * float(coef @ coef) + l1_strength * float(np.abs(coef).sum())

    def l1_penalty(self, strength: float) -> L1Penalty:
        """λ₁·‖coef‖₁ of the problem, written in the solver's coordinates."""
        scales = None
        if self.coordinates == PRECONDITIONED and strength:
            layout = self.layout
            scales = self._solver_scaling.coefficient_scales(layout.outputs, layout.intercept)
        return L1Penalty(strength, self.penalized, scales)

    def measure(self, l1_strength: float) -> Measure:
        """The stationarity measure ``gtol`` bounds: the proximal-gradient residual in
        the standardized coordinates (the gradient itself without L1). A solver working on
        other coordinates has its point and gradient mapped there first. Without an
        intercept the columns are scaled by their root mean square (``Scaling.with_ridge``)."""
        if self.coordinates == STANDARDIZED or self.scaling is None:
            return self.l1_penalty(l1_strength).measure
        layout, solver_scaling = self.layout, self._solver_scaling
        scaling = self.scaling.with_ridge(0.0)  # itself when centred
        scales = None
        if l1_strength:
            scales = scaling.coefficient_scales(layout.outputs, layout.intercept)
        penalty = L1Penalty(l1_strength, self.penalized, scales)

        def standardized(theta: np.ndarray, grad: np.ndarray) -> tuple[float, float]:
            grad_coef, grad_intercept = layout.split(grad)
            if solver_scaling is not None:
                grad_coef, grad_intercept = solver_scaling.gradient_to_original(
                    grad_coef, grad_intercept
                )
            grad_s = layout.join(*scaling.gradient_to_scaled(grad_coef, grad_intercept))
            point = layout.join(*scaling.to_scaled(*self.to_model(theta)))
            return penalty.measure(point, grad_s)

        return standardized


def _warn_constant_columns(scaling: Scaling, names: list[str] | None) -> None:
    """Standardized without an intercept, a constant non-zero column (σ = 0) keeps weight
    0, as in Spark and glmnet: say so, since it may be the user's own intercept column."""
    lost = np.flatnonzero(scaling.constant & (scaling.mean != 0))
    if not lost.size:
        return
    named = [names[j] if names else f"#{j}" for j in lost[:10]]
    log.warning(
        "constant non-zero column(s) %s keep weight 0: standardizing divides by the "
        "standard deviation, which is 0 (as Spark and glmnet do without an intercept); "
        "train without --standardize to fit them",
        ", ".join(named),
    )


def _ridged(hessian: np.ndarray, mask: np.ndarray, l2: float) -> np.ndarray:
    ridged = hessian.copy()
    idx = np.flatnonzero(mask)
    ridged[idx, idx] += l2
    return ridged


def _intercept(value):
    return float(value) if np.ndim(value) == 0 else np.array(value, dtype=np.float64)
