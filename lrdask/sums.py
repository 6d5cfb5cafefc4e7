"""The partial sums one pass over the data produces, and how two of them combine.

Every partition folds its rows into a ``LogLossSums``; ``merge`` only adds; the
averaged cost and gradient are read off once, at the end, by dividing by the total
row count. Averaging per-partition means instead would be wrong whenever partitions
differ in size (the same design as Spark MLlib's ``DifferentiableLossAggregator``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LogLossSums:
    """Σ loss, Σ (a−y)·x, Σ (a−y) and the row count over some set of rows."""

    count: float
    loss: float
    grad_coef: np.ndarray
    grad_intercept: float

    @classmethod
    def zeros(cls, n_features: int) -> LogLossSums:
        return cls(0.0, 0.0, np.zeros(n_features), 0.0)

    def merge(self, other: LogLossSums) -> LogLossSums:
        return LogLossSums(
            self.count + other.count,
            self.loss + other.loss,
            self.grad_coef + other.grad_coef,
            self.grad_intercept + other.grad_intercept,
        )

    def mean(self) -> tuple[float, np.ndarray, float]:
        """Cost J, dw and db: the sums divided once by the row count m."""
        if self.count <= 0:
            raise ValueError("cannot average partial sums over zero rows")
        m = self.count
        return self.loss / m, self.grad_coef / m, self.grad_intercept / m


def merge_all(parts: Iterable):
    """Fold any number of partial sums, left to right (a fixed, reproducible order)."""
    parts = list(parts)
    if not parts:
        raise ValueError("merge_all needs at least one LogLossSums")
    total = parts[0]
    for part in parts[1:]:
        total = total.merge(part)
    return total


@dataclass(frozen=True)
class NewtonSums:
    """LogLossSums plus Σ a(1−a)·[x; 1][x; 1]ᵀ, the (features+1)² Hessian sum for Newton."""

    sums: LogLossSums
    hessian: np.ndarray

    def merge(self, other: NewtonSums) -> NewtonSums:
        return NewtonSums(self.sums.merge(other.sums), self.hessian + other.hessian)

    def mean(self) -> tuple[float, np.ndarray, float, np.ndarray]:
        """J, dw, db and the averaged Hessian (intercept last)."""
        cost, dw, db = self.sums.mean()
        return cost, dw, db, self.hessian / self.sums.count


@dataclass(frozen=True)
class MomentSums:
    """Weighted count, mean and Σ s·(x − mean)² per column: what standardization needs."""

    count: float
    mean: np.ndarray
    m2: np.ndarray

    @classmethod
    def zeros(cls, n_features: int) -> MomentSums:
        return cls(0.0, np.zeros(n_features), np.zeros(n_features))

    @classmethod
    def of_block(cls, X: np.ndarray, weights: np.ndarray | None = None) -> MomentSums:
        """Two-pass moments of one block of rows (float64)."""
        if weights is None:
            count = float(X.shape[0])
            mean = X.mean(axis=0) if count else np.zeros(X.shape[1])
            return cls(count, mean, ((X - mean) ** 2).sum(axis=0))
        count = float(weights.sum())
        if count <= 0:
            return cls.zeros(X.shape[1])
        mean = weights @ X / count
        return cls(count, mean, weights @ ((X - mean) ** 2))

    def merge(self, other: MomentSums) -> MomentSums:
        """Chan, Golub & LeVeque's pairwise update."""
        count = self.count + other.count
        if count == 0:
            return self
        delta = other.mean - self.mean
        mean = self.mean + delta * (other.count / count)
        m2 = self.m2 + other.m2 + delta**2 * (self.count * other.count / count)
        return MomentSums(count, mean, m2)

    def variance(self, ddof: int = 0) -> np.ndarray:
        """Σ s·(x − mean)² / (Σ s − ddof): the population variance (ddof 0, scikit-learn's
        StandardScaler) or the sample variance (ddof 1, Spark's standardization)."""
        return self.m2 / max(self.count - ddof, np.finfo(float).tiny)
