"""The model artifact: ``MODEL_DIR/model.json``, everything needed to score and to audit.

Floats are written with ``repr`` precision (Python's JSON does this), so coefficients
round-trip bit for bit. The file is written atomically: a reader sees the previous
complete model or the new one.
"""

from __future__ import annotations

import datetime as _dt
import json

import numpy as np

from lrdask import __version__, storage
from lrdask.errors import ModelError

FORMAT = "lrdask-model"
FORMAT_VERSION = 1
MODEL_FILE = "model.json"


def to_dict(model) -> dict:
    """The JSON document of a fitted estimator."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "lrdask_version": __version__,
        "family": "binomial",
        "solver": getattr(model, "solver", "gd"),
        "label": model.label_,
        "features": list(model.feature_names_in_),
        "coef": [float(c) for c in model.coef_],
        "intercept": float(model.intercept_),
        "options": {
            "alpha": float(model.alpha),
            "max_iter": int(model.max_iter),
            "tol": float(model.tol),
            "dtype": model.dtype,
            "l2": float(getattr(model, "l2", 0.0)),
        },
        "training": {
            "n_iter": int(model.n_iter_),
            "converged": bool(model.converged_),
            "stop_reason": stop_reason(model),
            "final_cost": float(model.loss_history_[-1]),
            "grad_norm": float(model.grad_norm_),
            "loss_history": [float(v) for v in model.loss_history_],
            "n_rows": int(getattr(model, "n_rows_", 0)),
            "n_partitions": int(getattr(model, "n_partitions_", 0)),
            "data": getattr(model, "data_source_", None),
            "seconds": float(getattr(model, "fit_seconds_", 0.0)),
            "trained_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "cost_increased_at": getattr(model, "cost_increased_at_", None),
            "fingerprint": getattr(model, "fingerprint_", None),
        },
    }


def stop_reason(model) -> str:
    if model.converged_:
        return f"converged: cost improved by at most tol={model.tol:g}"
    return f"max_iter={model.max_iter} reached"


def save(model, model_dir: str, storage_options: dict | None = None) -> str:
    location = storage.join(model_dir, MODEL_FILE)
    text = json.dumps(to_dict(model), indent=2, allow_nan=True)
    storage.write_bytes_atomic(location, text.encode(), storage_options)
    return location


def load(cls, model_dir: str, storage_options: dict | None = None):
    """Rebuild an estimator from ``model_dir/model.json``, checking that it is one of ours."""
    location = storage.join(model_dir, MODEL_FILE)
    try:
        raw = storage.read_bytes(location, storage_options)
    except FileNotFoundError:
        raise ModelError(f"{location}: no model here; train one with `lrdask train`") from None
    try:
        doc = json.loads(raw)
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
    model = cls(
        solver=doc.get("solver", "gd"),
        l2=options.get("l2", 0.0),
        alpha=options["alpha"],
        max_iter=options["max_iter"],
        tol=options["tol"],
        dtype=options.get("dtype", "float64"),
    )
    features = [str(f) for f in doc["features"]]
    coef = np.asarray(doc["coef"], dtype=np.float64)
    if coef.shape != (len(features),) or not np.all(np.isfinite(coef)):
        raise ValueError(f"coef must be {len(features)} finite numbers, one per feature")
    model.coef_ = coef
    model.intercept_ = float(doc["intercept"])
    model.feature_names_in_ = features
    model.n_features_in_ = len(features)
    model.label_ = doc["label"]
    model.classes_ = np.array([0, 1])
    model.n_iter_ = int(training["n_iter"])
    model.converged_ = bool(training["converged"])
    model.loss_history_ = [float(v) for v in training["loss_history"]]
    model.grad_norm_ = float(training["grad_norm"])
    model.n_rows_ = int(training.get("n_rows", 0))
    model.n_partitions_ = int(training.get("n_partitions", 0))
    model.data_source_ = training.get("data")
    model.fit_seconds_ = float(training.get("seconds", 0.0))
    model.cost_increased_at_ = training.get("cost_increased_at")
    model.fingerprint_ = training.get("fingerprint")
    return model
