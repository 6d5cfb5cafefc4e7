"""Column diagnostics on the driver: constant and collinear columns, found from the
weighted Gram matrix of [x, 1] that one Newton-kernel pass at θ = 0 sums (Newton's own
first pass; for other solvers one extra pass when there are few enough columns).

A constant (or all-zero) column is collinear with the intercept; a set of collinear
columns (a height in cm and in inches) leaves the coefficients without a unique value,
although the predictions still have one. H2O calls dropping them
``remove_collinear_columns``; here they are named in the log and in ``model.json`` with a
hint, and every solver copes with them (Newton by a minimum-norm step).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Gram passes cost O(rows × columns²): for other solvers than Newton they are run only
# up to this many columns.
DIAGNOSE_MAX_FEATURES = 100
_RELATIVE = 1e-9


@dataclass
class ColumnReport:
    constant: list[str] = field(default_factory=list)
    collinear: list[str] = field(default_factory=list)
    partners: dict[str, list[str]] = field(default_factory=dict)  # collinear -> with which

    def __bool__(self) -> bool:
        return bool(self.constant or self.collinear)

    def to_dict(self) -> dict:
        return {
            "constant": self.constant,
            "collinear": [{"column": c, "with": self.partners.get(c, [])} for c in self.collinear],
        }

    def message(self) -> str:
        parts = []
        if self.constant:
            parts.append(f"constant column(s) {', '.join(self.constant)}")
        for name in self.collinear:
            others = ", ".join(self.partners.get(name, [])) or "other columns"
            parts.append(f"column {name} is a linear combination of {others}")
        return (
            "; ".join(parts) + ": their coefficients are not unique (predictions are); "
            "drop them with --exclude, or add --l2 for unique coefficients"
        )


def dependent_columns(gram: np.ndarray, names: list[str]) -> ColumnReport:
    """Constant and linearly dependent columns from G = Σ s·[x; 1][x; 1]ᵀ (intercept last,
    any positive row weights s). Columns are centred and scaled to unit variance, then a
    QR factorisation with column pivoting finds the numerical rank; the columns it puts
    past the rank depend on the others."""
    from scipy.linalg import qr

    f = len(names)
    total = gram[f, f]
    if not total > 0:
        return ColumnReport()
    mean = gram[:f, f] / total
    cov = gram[:f, :f] / total - np.outer(mean, mean)
    var = np.diag(cov).copy()
    scale = np.maximum(np.abs(np.diag(gram[:f, :f]) / total), 1e-300)
    constant = var <= _RELATIVE * scale
    report = ColumnReport(constant=[names[j] for j in np.flatnonzero(constant)])
    keep = np.flatnonzero(~constant)
    if len(keep) < 2:
        return report
    std = np.sqrt(var[keep])
    corr = cov[np.ix_(keep, keep)] / np.outer(std, std)
    _, r, pivots = qr(corr, pivoting=True, mode="economic")
    diagonal = np.abs(np.diag(r))
    rank = int(np.sum(diagonal > _RELATIVE * diagonal[0] * len(keep)))
    independent = np.sort(pivots[:rank])
    for p in sorted(pivots[rank:]):
        beta = np.linalg.lstsq(corr[np.ix_(independent, independent)], corr[independent, p])[0]
        with_ = [names[keep[i]] for i, b in zip(independent, beta, strict=True) if abs(b) > 1e-6]
        report.collinear.append(names[keep[p]])
        report.partners[names[keep[p]]] = with_
    return report


def column_report(blocks, encoding, solver: str) -> ColumnReport | None:
    """One Gram pass at θ = 0 over the loaded blocks, for Newton (whatever the width: it
    sums a Hessian every pass anyway) and for other solvers up to
    ``DIAGNOSE_MAX_FEATURES`` coefficients; None when skipped."""
    from lrdask.kernels import newton_sums

    width = encoding.n_features
    if solver != "newton" and width > DIAGNOSE_MAX_FEATURES:
        return None
    sums = blocks.partial_sums(np.zeros(width), 0.0, kernel=newton_sums)
    return dependent_columns(sums.hessian, encoding.feature_names)


def separated(blocks, coef, intercept, multinomial: bool) -> bool:
    """True when the model classifies every training row correctly: the data are
    separable and the unpenalized optimum is at infinity (statsmodels' perfect-prediction
    check). ``coef`` as the objective gives it: (f,) or (f, K). One scoring pass."""
    from lrdask.evaluation import evaluation_sums, multiclass_evaluation_sums

    if multinomial:
        kernel = multiclass_evaluation_sums
        sums = blocks.partial_sums(np.asarray(coef), intercept, kernel=kernel)
        return int(np.trace(sums.confusion)) == int(sums.confusion.sum())
    sums = blocks.partial_sums(coef, intercept, kernel=evaluation_sums)
    (tn, fp), (fn, tp) = sums.confusion.tolist()
    return fp == 0 and fn == 0
