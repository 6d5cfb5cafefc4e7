"""Evaluating a model on a Parquet data set, on the cluster, without collecting the rows.

Each partition is reduced to counts: Σ log loss, the confusion matrix at the threshold
(0.5 unless the model or ``--threshold`` says otherwise; ``predict.positive_where``), and one
histogram of z = x·w + b per class (fine bins over z ∈ [−40, 40], where σ is within 4e-18
of 0 or 1). ROC AUC and average precision come from the merged histograms. Scores that
share a bin are treated as ties, so ROC AUC is exact up to a bound that is computed and
reported with it: ½ · Σ_bins positives·negatives / (P·N).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lrdask.kernels import check_finite_scores, linear_predictor, log_loss_rows

BINS = 2**15
Z_RANGE = 40.0


@dataclass(frozen=True)
class EvaluationSums:
    count: float
    loss: float
    confusion: np.ndarray  # [[tn, fp], [fn, tp]]
    positives: np.ndarray  # histogram of z for y = 1
    negatives: np.ndarray  # histogram of z for y = 0

    def merge(self, other: EvaluationSums) -> EvaluationSums:
        return EvaluationSums(
            self.count + other.count,
            self.loss + other.loss,
            self.confusion + other.confusion,
            self.positives + other.positives,
            self.negatives + other.negatives,
        )


def evaluation_sums(
    X: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    b: float,
    codes=None,
    sample_weight=None,
    threshold: float = 0.5,
) -> EvaluationSums:
    """The kernel for one partition (pure NumPy). Counts rows: ``sample_weight`` is
    accepted so it runs over weighted blocks, and not used. A row is predicted positive
    when its probability is above ``threshold`` (``predict.positive_where``)."""
    from lrdask.predict import positive_where

    z = linear_predictor(X, w, b, codes)
    check_finite_scores(z, w)
    predicted = positive_where(z, threshold).astype(np.int64)
    truth = y.astype(np.int64)
    confusion = np.zeros((2, 2), dtype=np.int64)
    np.add.at(confusion, (truth, predicted), 1)
    bins = _bin(z)
    return EvaluationSums(
        float(len(y)),
        float(log_loss_rows(z, y).sum()),
        confusion,
        np.bincount(bins[truth == 1], minlength=BINS),
        np.bincount(bins[truth == 0], minlength=BINS),
    )


def _bin(z: np.ndarray) -> np.ndarray:
    scaled = (np.clip(z, -Z_RANGE, Z_RANGE) + Z_RANGE) / (2 * Z_RANGE) * BINS
    return np.minimum(scaled.astype(np.int64), BINS - 1)


def metrics(sums: EvaluationSums) -> dict:
    """log loss, accuracy, precision, recall, F1, ROC AUC (with its bound) and PR AUC."""
    (tn, fp), (fn, tp) = sums.confusion.tolist()
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    auc, bound = _roc_auc(sums.positives, sums.negatives)
    pr_auc = _average_precision(sums.positives, sums.negatives)
    notes = {}
    if auc is None:
        notes["roc_auc"] = "only one class present in the labels; ROC AUC needs both"
    if pr_auc is None:
        notes["pr_auc"] = "no positive rows in the labels; PR AUC needs some"
    if not tp + fn:
        notes["recall"] = "no positive rows: 0 by scikit-learn's zero_division convention"
    if not tp + fp:
        notes["precision"] = (
            "nothing predicted positive: 0 by scikit-learn's zero_division convention"
        )
    result = {
        "rows": int(sums.count),
        "log_loss": sums.loss / sums.count,
        "accuracy": (tp + tn) / sums.count,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "roc_auc": auc,
        "roc_auc_error_bound": bound,
        "pr_auc": pr_auc,
        "confusion": {"tn": tn, "fp": fp, "fn": fn, "tp": tp},
    }
    if notes:  # undefined metrics are null (strict JSON), with the reason beside them
        result["notes"] = notes
    return result


def _roc_auc(pos: np.ndarray, neg: np.ndarray) -> tuple[float, float]:
    """P(score of a positive > score of a negative), ties counted half, and the bound."""
    p, n = float(pos.sum()), float(neg.sum())
    if p == 0 or n == 0:
        return None, None
    negatives_below = np.cumsum(neg) - neg
    auc = float((pos * (negatives_below + 0.5 * neg)).sum()) / (p * n)
    bound = 0.5 * float((pos * neg).sum()) / (p * n)
    return auc, bound


def _average_precision(pos: np.ndarray, neg: np.ndarray) -> float:
    """Σ (R_k − R_{k−1})·P_k over thresholds from the highest bin down (as scikit-learn)."""
    total = float(pos.sum())
    if total == 0:
        return None
    tp = np.cumsum(pos[::-1]).astype(np.float64)
    fp = np.cumsum(neg[::-1]).astype(np.float64)
    seen = (tp + fp) > 0
    precision = np.divide(tp, tp + fp, out=np.zeros_like(tp), where=seen)
    recall = tp / total
    steps = np.diff(np.concatenate([[0.0], recall]))
    return float((steps * precision).sum())


@dataclass(frozen=True)
class MulticlassSums:
    """Σ log loss and the K × K confusion matrix (rows: true class, columns: predicted)."""

    count: float
    loss: float
    confusion: np.ndarray

    def merge(self, other: MulticlassSums) -> MulticlassSums:
        return MulticlassSums(
            self.count + other.count, self.loss + other.loss, self.confusion + other.confusion
        )


def multiclass_evaluation_sums(
    X, y, W: np.ndarray, b: np.ndarray, codes=None, sample_weight=None
) -> MulticlassSums:
    """The multinomial kernel for one partition: W is (features, K), b is (K,)."""
    z = linear_predictor(X, W, b, codes)
    top = z.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(z - top).sum(axis=1)) + top[:, 0]
    truth = y.astype(np.intp)
    loss = float((log_norm - z[np.arange(len(truth)), truth]).sum())
    confusion = np.zeros((W.shape[1], W.shape[1]), dtype=np.int64)
    np.add.at(confusion, (truth, z.argmax(axis=1)), 1)
    return MulticlassSums(float(len(truth)), loss, confusion)


def multiclass_metrics(sums: MulticlassSums) -> dict:
    """log loss, accuracy, and precision/recall/F1 per class and macro-averaged."""
    confusion = sums.confusion.astype(np.float64)
    hits = np.diag(confusion)
    precision = np.divide(
        hits, confusion.sum(axis=0), out=np.zeros_like(hits), where=confusion.sum(axis=0) > 0
    )
    recall = np.divide(
        hits, confusion.sum(axis=1), out=np.zeros_like(hits), where=confusion.sum(axis=1) > 0
    )
    both = precision + recall
    f1 = np.divide(2 * precision * recall, both, out=np.zeros_like(hits), where=both > 0)
    return {
        "rows": int(sums.count),
        "log_loss": sums.loss / sums.count,
        "accuracy": float(hits.sum() / sums.count),
        "macro_precision": float(precision.mean()),
        "macro_recall": float(recall.mean()),
        "macro_f1": float(f1.mean()),
        "per_class": [
            {"class": k, "precision": float(p), "recall": float(r), "f1": float(f)}
            for k, (p, r, f) in enumerate(zip(precision, recall, f1, strict=True))
        ],
        "confusion": sums.confusion.tolist(),
    }


def evaluate_dataset(
    client,
    model,
    data: str,
    storage_options: dict | None = None,
    timeout: float | None = None,
    threshold: float | None = None,
) -> dict:
    """Metrics of ``model`` on the Parquet data set ``data`` (which must hold the label),
    read by the same planner, loader and encoding as training. ``timeout`` bounds each
    pass (ClusterError after it). ``threshold`` (binomial only, else ConfigError; default
    the model's own) decides the confusion matrix and the metrics read from it, and is
    recorded in the result."""
    import functools
    import logging

    from lrdask.loading import check_reports, load_piece, summarize
    from lrdask.predict import model_threshold, plan_for_model

    threshold = model_threshold(model, threshold)
    from lrdask.scheduling import StreamedPieces, share, streamed_need

    log = logging.getLogger("lrdask")
    from lrdask.dataset import DatasetPlan

    plan = data
    if not isinstance(data, DatasetPlan):
        plan = plan_for_model(model, data, model.label_, storage_options)
    data = plan.url
    encoding = model.encoding_.reading(model.label_)
    shared = share(client, encoding, timeout)
    args = [(piece, plan.fs, shared, "float64") for piece in plan.pieces]
    pieces = StreamedPieces(client, load_piece, args, timeout)
    pieces.shared = [shared]
    pieces.need = streamed_need(client, plan, timeout)
    reports = pieces.reports()
    check_reports(reports, plan.label, encoding.family, training=False, classes=encoding.classes)
    summarize(reports, log)
    classes = list(encoding.classes)
    if encoding.family == "binomial":
        kernel = functools.partial(evaluation_sums, threshold=threshold)
        sums = pieces.partial_sums(np.asarray(model.coef_), float(model.intercept_), kernel=kernel)
        result = metrics(sums)
        for name, why in result.get("notes", {}).items():
            log.warning("%s is undefined on %s: %s", name, data, why)
        return {
            "data": data,
            "classes": classes,
            "positive_class": classes[1],
            "threshold": threshold,
            **result,
        }
    W, b = np.asarray(model.coef_).T, np.asarray(model.intercept_)
    sums = pieces.partial_sums(W, b, kernel=multiclass_evaluation_sums)
    result = multiclass_metrics(sums)
    for entry in result["per_class"]:
        entry["class"] = classes[entry["class"]]
    return {"data": data, "classes": classes, **result}
