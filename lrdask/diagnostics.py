"""Column diagnostics on the driver: constant columns from the moments pass, collinear
ones from the weighted Gram matrix of the centred [x − μ, 1] that one Newton-kernel pass at
θ = 0 sums (one extra pass, for other solvers than Newton when there are few enough
columns).

A constant (or all-zero) column is collinear with the intercept (without an intercept,
only an all-zero column is idle: a constant one is the user's own intercept); a set of collinear
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
    centred: bool = True  # False: a model without intercept, "constant" means all-zero

    def __bool__(self) -> bool:
        return bool(self.constant or self.collinear)

    def to_dict(self) -> dict:
        return {
            "constant": self.constant,
            "collinear": [{"column": c, "with": self.partners.get(c, [])} for c in self.collinear],
        }

    def message(self, penalized: bool = False) -> str:
        parts = []
        if self.constant:
            kind = "constant" if self.centred else "all-zero"
            parts.append(f"{kind} column(s) {', '.join(self.constant)}")
        for name in self.collinear:
            others = ", ".join(self.partners.get(name, [])) or "other columns"
            parts.append(f"column {name} is a linear combination of {others}")
        if penalized:  # the penalty makes the coefficients unique: say what they get
            return "; ".join(parts) + ": the penalty shares the weight among them"
        return (
            "; ".join(parts) + ": their coefficients are not unique (predictions are); "
            "drop them with --exclude, or add --l2 for unique coefficients"
        )


def dependent_columns(
    gram: np.ndarray, names: list[str], constant: np.ndarray | None = None, centred: bool = True
) -> ColumnReport:
    """Constant and linearly dependent columns from G = Σ s·[x; 1][x; 1]ᵀ (intercept last,
    any positive row weights s; best of centred columns, see ``centered_gram``).
    ``constant`` marks the constant columns when the caller knows them (from the stable
    moments pass); else a column whose variance is below 1e-9 of its mean square is.
    The others are scaled to unit variance, then a QR factorisation with column pivoting
    finds the numerical rank; the columns it puts past the rank depend on the others.

    Not ``centred`` (a model without intercept; G of the raw columns): the second
    moments take the place of the covariance, so a constant non-zero column is a column
    like any other and only all-zero columns are reported (``constant`` is not used)."""
    from scipy.linalg import qr

    f = len(names)
    total = gram[f, f]
    if not total > 0:
        return ColumnReport()
    mean = gram[:f, f] / total if centred else np.zeros(f)
    cov = gram[:f, :f] / total - np.outer(mean, mean)
    var = np.diag(cov).copy()
    if not centred:
        constant = np.zeros(f, dtype=bool)
    elif constant is None:
        scale = np.maximum(np.abs(np.diag(gram[:f, :f]) / total), 1e-300)
        constant = var <= _RELATIVE * scale
    constant = np.asarray(constant, dtype=bool) | ~(var > 0)
    report = ColumnReport(constant=[names[j] for j in np.flatnonzero(constant)], centred=centred)
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


def centered_gram(X, y, w, b, sample_weight=None, codes=None, *, center: np.ndarray, **_):
    """Newton's sums at θ = 0 of the centred columns x − μ (a kernel: runs on a worker).
    Centring first keeps the Gram matrix exact for columns far from 0 (a timestamp
    1.7e9 ± 500, a year): Σx² − (Σx)²/m would cancel most of their digits."""
    from lrdask.kernels import BLOCK_ROWS, newton_sums

    total = None
    for start in range(0, X.shape[0], BLOCK_ROWS):
        stop = start + BLOCK_ROWS
        block = np.asfortranarray(np.asarray(X[start:stop], dtype=np.float64) - center)
        part = newton_sums(
            block,
            y[start:stop],
            w,
            b,
            sample_weight=None if sample_weight is None else sample_weight[start:stop],
            codes=None if codes is None else codes[start:stop],
        )
        total = part if total is None else total.merge(part)
    return total


def column_report(blocks, encoding, solver: str, scaling) -> ColumnReport | None:
    """One Gram pass at θ = 0 over the loaded blocks, for Newton (whatever the width: it
    sums a Hessian every pass anyway) and for other solvers up to
    ``DIAGNOSE_MAX_FEATURES`` coefficients; None when skipped. The columns are centred by
    ``scaling`` (the moments pass's ``objective.Scaling``), whose constant columns are the
    constant ones; an uncentred scaling (a model without intercept) is not centred here
    either."""
    import functools

    width = encoding.n_features
    if solver != "newton" and width > DIAGNOSE_MAX_FEATURES:
        return None
    center = scaling.shift[: encoding.n_numeric]
    kernel = functools.partial(centered_gram, center=center)
    sums = blocks.partial_sums(np.zeros(width), 0.0, kernel=kernel)
    return dependent_columns(
        sums.hessian, encoding.feature_names, scaling.constant, centred=scaling.centred
    )


def separated(blocks, coef, intercept, multinomial: bool, loss_at=None, cost=None) -> str:
    """Why the training data have no finite unpenalized optimum, or "" when nothing says so.

    Two tests: the model classifies every training row correctly (statsmodels'
    perfect-prediction check; one scoring pass); or, at a *converged* point (``cost``, the
    mean loss there, with ``loss_at(coef, intercept)`` one pass of the run's own loss), the
    loss still falls when the coefficients and intercepts are doubled, J(2θ) < J(θ). At a
    finite optimum J(tθ) has its minimum at t = 1, so that cannot happen; on (quasi-)
    separable data the loss falls toward 0 along the ray, which a loose ``gtol`` stops on
    while a few rows near the boundary are still misclassified. ``coef`` as the objective
    gives it: (f,) or (f, K)."""
    from lrdask.evaluation import evaluation_sums, multiclass_evaluation_sums

    if multinomial:
        kernel = multiclass_evaluation_sums
        sums = blocks.partial_sums(np.asarray(coef), intercept, kernel=kernel)
        perfect = int(np.trace(sums.confusion)) == int(sums.confusion.sum())
    else:
        sums = blocks.partial_sums(coef, intercept, kernel=evaluation_sums)
        (tn, fp), (fn, tp) = sums.confusion.tolist()
        perfect = fp == 0 and fn == 0
    if perfect:
        return "every training row is classified correctly"
    if loss_at is None or cost is None:
        return ""
    doubled = float(loss_at(2.0 * np.asarray(coef), 2.0 * np.asarray(intercept)))
    if doubled < cost - 4 * np.finfo(float).eps * abs(cost):
        return (
            f"the loss keeps falling as the coefficients grow: {doubled:.6g} at twice the "
            f"coefficients against {cost:.6g}"
        )
    return ""


def float32_losses(scaling, encoding) -> str:
    """With float32 storage the kernel computes x·w in float32 (about 7 digits): a column
    far from 0 relative to its spread (a timestamp 1.7e9 ± 500) loses its variation there
    and no solver can converge. The warning naming them, or ""."""
    numeric = encoding.n_numeric
    mean, scale = np.abs(scaling.mean[:numeric]), scaling.scale[:numeric]
    lossy = np.flatnonzero(~scaling.constant[:numeric] & (mean > 1e3 * scale))
    if not lossy.size:
        return ""
    names = ", ".join(encoding.feature_names[j] for j in lossy[:5])
    return (
        f"column(s) {names} lie far from 0 relative to their spread (|mean|/std up to "
        f"{float(np.max(mean[lossy] / scale[lossy])):.3g}): float32 arithmetic keeps about 7 "
        "digits and loses most of their variation; use --dtype float64 or centre them"
    )
