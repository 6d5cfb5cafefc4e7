"""Everything a finished run leaves beside model.json, and the marker that says it is done.

Order matters to downstream jobs that wait on ``_SUCCESS``: the old marker goes first,
then model.json, metrics.json and loss_curve.png (each written atomically), and the new
``_SUCCESS`` last. A reader that sees ``_SUCCESS`` sees a complete, consistent run.
"""

from __future__ import annotations

import io

from lrdask import __version__, artifact, storage

SUCCESS_FILE = "_SUCCESS"
METRICS_FILE = "metrics.json"
PLOT_FILE = "loss_curve.png"


def is_complete(out: str, storage_options: dict | None = None) -> bool:
    return storage.exists(storage.join(out, SUCCESS_FILE), storage_options)


def withdraw_success(out: str, storage_options: dict | None = None) -> None:
    """Remove the marker before replacing a run's files."""
    storage.remove(storage.join(out, SUCCESS_FILE), storage_options)


def write_run_outputs(
    model, out: str, storage_options: dict | None = None, params: dict | None = None
) -> None:
    """metrics.json and loss_curve.png for a saved model, then ``_SUCCESS``."""
    metrics = training_metrics(model, params)
    storage.write_bytes_atomic(
        storage.join(out, METRICS_FILE), artifact.dumps(metrics).encode(), storage_options
    )
    storage.write_bytes_atomic(storage.join(out, PLOT_FILE), loss_curve_png(model), storage_options)
    storage.write_bytes_atomic(storage.join(out, SUCCESS_FILE), b"", storage_options)


def training_metrics(model, params: dict | None = None) -> dict:
    history = model.loss_history_
    seconds = float(getattr(model, "fit_seconds_", 0.0))
    return {
        "lrdask_version": __version__,
        "model": "model.json",
        "params": dict(params or {}),
        "initial_cost": history[0],
        "final_cost": history[-1],
        "iterations": model.n_iter_,
        "passes": getattr(model, "n_passes_", len(history)),
        "solver": model.solver,
        "family": getattr(model, "family_", model.family),
        "classes": list(model.encoding_.classes),
        "stop_reason": getattr(model, "stop_reason_", ""),
        "train_log_loss": getattr(model, "training_metrics_", {}).get("train_log_loss"),
        "validation": getattr(model, "validation_metrics_", None),
        "converged": bool(model.converged_),
        "status": getattr(model, "status_", ""),
        "separated": bool(getattr(model, "separated_", False)),
        "timings": getattr(model, "timings_", {}),
        "grad_norm": model.grad_norm_,
        "n_rows": getattr(model, "n_rows_", None),
        "n_features": model.n_features_in_,
        "n_coefficients": len(model.coef_names_),
        "seconds": round(seconds, 3),
        "passes_per_second": _per_second(
            getattr(model, "n_passes_", len(history)),
            getattr(model, "timings_", {}).get("solve", seconds),
        ),
    }


def _per_second(passes: int, seconds: float):
    """Passes per second of the solve alone (loading is reported under ``timings``)."""
    return round(passes / seconds, 3) if seconds > 0 else None


def loss_curve_png(model, title: str | None = None) -> bytes:
    """The cost J against iteration, as the gradient-descent lecture draws it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    history = model.loss_history_
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=100)
    try:
        ax.plot(range(len(history)), history, color="tab:blue", linewidth=1.8, label="training")
        validation = getattr(model, "validation_history_", None) or []
        if validation:
            steps, costs = zip(*validation, strict=True)
            ax.plot(steps, costs, "o-", color="tab:orange", markersize=3, label="validation")
            ax.legend()
        ax.set_xlabel("iteration")
        ax.set_ylabel("cost J(w, b)" + (" + penalty" if model.l1 or model.l2 else ""))
        status = (getattr(model, "stop_reason_", "") or "").split(":")[0] or (
            "converged" if model.converged_ else "max_iter reached"
        )
        step = f"α = {model.alpha:g}, " if model.solver in ("gd", "agd") else ""
        ax.set_title(title or f"Cost per iteration ({model.solver}, {step}{status})")
        ax.annotate(
            f"J = {history[-1]:.6g}",
            (len(history) - 1, history[-1]),
            textcoords="offset points",
            xytext=(-10, 10),
            ha="right",
        )
        ax.grid(True, alpha=0.3)
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
    finally:
        plt.close(fig)
    return buffer.getvalue()
