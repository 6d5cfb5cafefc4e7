"""The model artifact: ``MODEL_DIR/model.json``, everything needed to score and to audit.

Floats are written with ``repr`` precision (Python's JSON does this), so coefficients
round-trip bit for bit. The file is written atomically: a reader sees the previous
complete model or the new one.
"""

from __future__ import annotations

import datetime as _dt
import inspect
import json

import numpy as np

from lrdask import __version__, schemas, storage
from lrdask.encoding import Encoding, numeric_encoding
from lrdask.errors import ModelError
from lrdask.sources import public_classes

FORMAT = "lrdask-model"
FORMAT_VERSION = 3  # 3: "encoding" (categorical levels, classes as label values, means)
MODEL_FILE = "model.json"


def to_dict(model) -> dict:
    """The JSON document of a fitted estimator: the model, its options and how it trained."""
    coef = np.asarray(model.coef_)
    if not np.all(np.isfinite(coef)) or not np.all(np.isfinite(model.intercept_)):
        raise ModelError(
            "training produced non-finite coefficients (overflow?); no model is written. "
            "Lower --alpha, pass --standardize, or use --solver lbfgs"
        )
    encoding = model.encoding_
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "lrdask_version": __version__,
        "family": encoding.family,
        "solver": model.solver,
        "label": model.label_,
        "classes": list(encoding.classes),
        "features": encoding.feature_names,
        # False when fitted on an array: its columns are x0, x1, … by position only
        "named_features": hasattr(model, "feature_names_in_"),
        "encoding": encoding.to_dict(),
        "coef": coef.tolist(),
        "intercept": np.asarray(model.intercept_).tolist(),
        "options": _jsonable(model.options()),
        "training": {
            "n_iter": int(model.n_iter_),
            "n_passes": int(getattr(model, "n_passes_", len(model.loss_history_))),
            "converged": bool(model.converged_),
            "status": getattr(model, "status_", ""),
            "stop_reason": stop_reason(model),
            "grad_max": float(getattr(model, "grad_max_", float("nan"))),
            "separated": bool(getattr(model, "separated_", False)),
            "columns": _column_doc(
                getattr(model, "column_report_", None), bool(model.l1 or model.l2)
            ),
            "timings": getattr(model, "timings_", {}),
            "final_cost": float(model.loss_history_[-1]),
            "grad_norm": float(model.grad_norm_),
            "loss_history": [float(v) for v in model.loss_history_],
            "validation_history": getattr(model, "validation_history_", []),
            "metrics": getattr(model, "training_metrics_", {}),
            "class_counts": list(getattr(model, "class_counts_", [])),
            "class_weights": _jsonable(getattr(model, "class_weights_", None)),
            "standardization": _scaling_doc(getattr(model, "scaling_", None)),
            "n_rows": int(getattr(model, "n_rows_", 0)),
            "n_partitions": int(getattr(model, "n_partitions_", 0)),
            "data": getattr(model, "data_source_", None),
            "seconds": float(getattr(model, "fit_seconds_", 0.0)),
            "trained_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "cost_increased_at": getattr(model, "cost_increased_at_", None),
            "fingerprint": getattr(model, "fingerprint_", None),
            "environment": getattr(model, "environment_", None),
        },
    }


def _column_doc(report, penalized: bool) -> dict | None:
    if report is None:
        return None
    return {**report.to_dict(), "hint": report.message(penalized) if report else ""}


def _scaling_doc(scaling) -> dict | None:
    if scaling is None:
        return None
    return {
        "mean": scaling.mean.tolist(),
        "scale": scaling.scale.tolist(),
        "centred": bool(scaling.centred),  # False without an intercept: x/σ only
    }


def _jsonable(value):
    return json.loads(json.dumps(value, default=lambda v: np.asarray(v).tolist()))


def strict(value):
    """``value`` with every NaN or ±inf float replaced by None: JSON has no NaN, and strict
    parsers (JavaScript's JSON.parse) reject the file that holds one."""
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if isinstance(value, dict):
        return {k: strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict(v) for v in value]
    return value


def dumps(doc) -> str:
    """Strict JSON text (no NaN/Infinity) of a document we write."""
    return json.dumps(strict(_jsonable(doc)), indent=2, allow_nan=False)


def stop_reason(model) -> str:
    reason = getattr(model, "stop_reason_", None)
    if reason:
        return reason
    if model.converged_:
        return f"converged: cost improved by at most tol={model.tol:g}"
    return f"max_iter={model.max_iter} reached"


def save(model, model_dir: str, storage_options: dict | None = None) -> str:
    location = storage.join(model_dir, MODEL_FILE)
    text = dumps(to_dict(model))
    storage.write_bytes_atomic(location, text.encode(), storage_options)
    return location


def load(cls, model_dir: str, storage_options: dict | None = None):
    """Rebuild an estimator from ``model_dir/model.json``, checking that it is one of ours."""
    location = storage.join(model_dir, MODEL_FILE)
    try:
        raw = storage.read_bytes(location, storage_options)
    except FileNotFoundError:
        raise ModelError(f"{location}: no model here; train one with `lrdask train`") from None
    doc, problem = schemas.parse(raw, schemas.ModelDoc)
    if problem:
        raise ModelError(
            f"{location}: not a valid lrdask model ({problem}); retrain it with `lrdask train`"
        )
    try:
        return from_dict(cls, doc)
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelError(
            f"{location}: not a valid lrdask model ({type(exc).__name__}: {exc}); "
            "retrain it with `lrdask train`"
        ) from None


def from_dict(cls, doc: dict):
    if doc.get("format") != FORMAT:
        raise ValueError(f"format is {doc.get('format')!r}, expected {FORMAT!r}")
    options, training = doc["options"], doc["training"]
    known = set(inspect.signature(cls.__init__).parameters) - {"self"}
    model = cls(**{k: v for k, v in options.items() if k in known})
    model.solver = doc.get("solver", model.solver)
    family = doc.get("family", "binomial")
    features = [str(f) for f in doc["features"]]
    classes = doc.get("classes", [0, 1])
    if "encoding" in doc:
        encoding = Encoding.from_dict(doc["encoding"])
    else:  # format 2: numeric features, classes 0..K−1
        encoding = numeric_encoding(features, doc["label"], classes, family)
    if encoding.feature_names != features:
        raise ValueError("features do not match the encoding")
    coef = np.asarray(doc["coef"], dtype=np.float64)
    shape = (len(features),) if family == "binomial" else (len(classes), len(features))
    if coef.shape != shape or not np.all(np.isfinite(coef)):
        raise ValueError(f"coef must be finite numbers of shape {shape}")
    model.coef_ = coef
    intercept = np.asarray(doc["intercept"], dtype=np.float64)
    model.intercept_ = float(intercept) if intercept.ndim == 0 else intercept
    model.encoding_ = encoding
    model.family_ = family
    if doc.get("named_features", True):
        model.feature_names_in_ = np.asarray(encoding.input_columns, dtype=object)
    model.n_features_in_ = len(encoding.input_columns)
    model.coef_names_ = features
    model.label_ = doc["label"]
    model.classes_ = public_classes(encoding)
    model.n_iter_ = int(training["n_iter"])
    model.n_passes_ = int(training.get("n_passes", len(training["loss_history"])))
    model.converged_ = bool(training["converged"])
    model.status_ = training.get("status", "")
    model.separated_ = bool(training.get("separated", False))
    model.timings_ = training.get("timings", {})
    model.grad_max_ = float("nan") if training.get("grad_max") is None else training["grad_max"]
    model.stop_reason_ = training.get("stop_reason", "")
    model.loss_history_ = [
        float("nan") if v is None else float(v) for v in training["loss_history"]
    ]
    model.validation_history_ = training.get("validation_history", [])
    model.training_metrics_ = training.get("metrics", {})
    model.validation_metrics_ = model.training_metrics_.get("validation")
    model.grad_norm_ = float(training["grad_norm"])
    model.n_rows_ = int(training.get("n_rows", 0))
    model.n_partitions_ = int(training.get("n_partitions", 0))
    model.data_source_ = training.get("data")
    model.fit_seconds_ = float(training.get("seconds", 0.0))
    model.cost_increased_at_ = training.get("cost_increased_at")
    model.fingerprint_ = training.get("fingerprint")
    model.class_counts_ = training.get("class_counts", [])
    return model
