"""MLflow tracking of a training job: parameters, histories, metrics, files, sklearn flavor.

Opt-in: a job logs to MLflow when it is given a tracking URI (``--mlflow-tracking-uri``,
the config key ``mlflow_tracking_uri`` or ``MLFLOW_TRACKING_URI``), in the experiment
``--mlflow-experiment`` (default: MLflow's ``Default``). ``mlflow`` is imported only then;
without it, asking for tracking is a ConfigError before anything is read or trained.

What one run holds: the estimator's parameters (``options()``, as in model.json, as
strings); the metric histories ``train_cost`` (model.json's ``loss_history``, step = iteration),
``train_grad_norm`` (the gradient norm the solver reports at each iterate) and
``validation_cost`` (the held-out cost, step = iteration); every number in metrics.json
as a final metric under its own name (nested ones joined with ``.``, e.g.
``validation.log_loss``); the files model.json, metrics.json and loss_curve.png exactly as
published; the scikit-learn flavor of ``lrdask.export.to_sklearn(model)`` under ``model``.

Why after training, in batches: a request to a remote server from inside the solver loop
would add a round trip to every pass (and a slow or dead server would hold the training
up). ``record``, the solver callback, only appends (iteration, gradient norm, wall clock)
to a list; once the model is published the histories go in ``log_batch`` requests of at
most 1000 values, with each iteration's own step and timestamp and the run's start time
set to the job's start, so the run reads as if it had been logged live.

Why after publishing, and never failing the job: the model is the job's product and the
run is a record of it. Tracking happens after model.json, metrics.json, loss_curve.png and
``_SUCCESS`` are written (so the logged files are the published ones), and any failure
(server unreachable, refused, HTTP errors, timeouts) is one WARNING line
``MLflow tracking failed (...): the model is published without tracking``; the exit code
stays 0. MLflow retries HTTP for minutes by default; while tracking, its
``MLFLOW_HTTP_REQUEST_MAX_RETRIES``, ``..._BACKOFF_FACTOR`` and ``..._TIMEOUT`` default to
2 retries, factor 1 and 10 s (values set in the environment win), so a refused connection
costs seconds and a server that does not answer at most about half a minute.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from lrdask import __version__, storage
from lrdask.errors import ConfigError
from lrdask.outputs import METRICS_FILE, PLOT_FILE, training_metrics
from lrdask.solvers import IterationInfo

log = logging.getLogger("lrdask")

INSTALL_HINT = "pip install 'lrdask[mlflow]'"
DEFAULT_EXPERIMENT = "Default"  # MLflow's own experiment 0
MODEL_NAME = "model"  # the scikit-learn flavor's name in the run
BATCH = 1000  # MLflow's limit on metrics in one log_batch request
CLIENT_SETTINGS = {  # MLflow's defaults: 7 retries, backoff factor 2, 120 s a request
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
    # stdout is the model's location for scripts (`MODEL=$(lrdask train …)`): MLflow's
    # "View run at" lines would land there; the run's id is in the log line instead
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
}
SAFE_TYPES = {"numpy.dtype"}  # held by the categorical Pipeline; skops lists it as untrusted
FAILED = "MLflow tracking failed (%s): the model is published without tracking"


def import_mlflow():
    """The ``mlflow`` module; ConfigError naming the extra when it is not installed."""
    try:
        import mlflow
        import mlflow.sklearn  # noqa: F401  (the flavor is part of what tracking needs)
    except ImportError as exc:
        raise ConfigError(
            f"MLflow tracking (--mlflow-tracking-uri) needs the mlflow package, which cannot "
            f"be imported ({exc}); install it with {INSTALL_HINT}, or leave out "
            "--mlflow-tracking-uri and MLFLOW_TRACKING_URI"
        ) from None
    return mlflow


def tracker_for(uri: str | None, experiment: str | None) -> Tracker | None:
    """A Tracker when a tracking URI is given, else None. Raises ConfigError for an
    experiment without a URI, a missing mlflow, or a URI MLflow cannot use."""
    if not uri:
        if experiment:
            raise ConfigError(
                "--mlflow-experiment needs a tracking server: give --mlflow-tracking-uri "
                "(or set MLFLOW_TRACKING_URI)"
            )
        return None
    mlflow = import_mlflow()
    try:  # the scheme is checked here, before training; the server only when logging
        mlflow.tracking.MlflowClient(tracking_uri=uri)
    except Exception as exc:  # MlflowException and friends: the URI cannot be used
        raise ConfigError(f"--mlflow-tracking-uri {uri}: {_first_line(exc)}") from None
    name = experiment or DEFAULT_EXPERIMENT
    log.info(
        "MLflow tracking to %s, experiment '%s' (logged after the model is published)", uri, name
    )
    return Tracker(uri, name)


@dataclass
class Tracker:
    """Collects what the solver reports while training; logs one MLflow run afterwards."""

    uri: str
    experiment: str
    started_ms: int = field(default_factory=lambda: _now_ms())
    grad_norms: list[tuple[int, float, int]] = field(default_factory=list)  # step, value, ms

    def record(self, info: IterationInfo) -> None:
        """Solver callback: keep the iterate's gradient norm and time (memory only)."""
        self.grad_norms.append((info.iteration, float(info.grad_norm), _now_ms()))

    def log_run(self, model, out: str, storage_options: dict, tags: dict[str, str]) -> str | None:
        """Log the published run in ``out`` as one MLflow run; its id, or None when
        tracking failed (logged as one WARNING line; never raises for a server's failure)."""
        started = time.monotonic()
        run_id = None
        with _client_settings():
            try:
                client = self._client()
                run_id = self._create_run(client, out, tags)
                self._log_values(client, run_id, model)
                self._log_files(client, run_id, out, storage_options)
                self._log_sklearn(run_id, model)  # ends the run FINISHED
            except Exception as exc:  # noqa: BLE001 - tracking never fails a published job
                log.warning(FAILED, _describe(exc, self.uri))
                self._mark_failed(run_id)
                return None
        log.info(
            "MLflow run %s logged in experiment '%s' at %s (%.1fs)",
            run_id,
            self.experiment,
            self.uri,
            time.monotonic() - started,
        )
        return run_id

    def _client(self):
        import mlflow

        return mlflow.tracking.MlflowClient(tracking_uri=self.uri)

    def _create_run(self, client, out: str, tags: dict[str, str]) -> str:
        from mlflow.exceptions import MlflowException

        found = client.get_experiment_by_name(self.experiment)
        if found is None:
            try:
                experiment_id = client.create_experiment(self.experiment)
            except MlflowException:  # another job created it in the meantime
                found = client.get_experiment_by_name(self.experiment)
                if found is None:
                    raise
                experiment_id = found.experiment_id
        else:
            experiment_id = found.experiment_id
        run = client.create_run(
            experiment_id,
            start_time=self.started_ms,
            tags={"lrdask.version": __version__, "lrdask.out": out, **tags},
            run_name=os.path.basename(out.rstrip("/")) or None,
        )
        return run.info.run_id

    def _log_values(self, client, run_id: str, model) -> None:
        from mlflow.entities import Metric, Param

        params = [Param(name, _param_value(name, value)) for name, value in _params(model)]
        client.log_batch(run_id, params=params)
        metrics = [Metric(*m) for m in self.histories(model)]
        metrics += [Metric(*m) for m in final_metrics(model, _now_ms())]
        for start in range(0, len(metrics), BATCH):
            client.log_batch(run_id, metrics=metrics[start : start + BATCH])

    def histories(self, model) -> list[tuple[str, float, int, int]]:
        """(key, value, timestamp ms, step) of ``train_cost``, ``train_grad_norm`` and
        ``validation_cost``: one value per iterate of the run (the cost from model.json,
        so a resumed run's earlier iterates are there too; the gradient norm of the
        iterates this process saw)."""
        seen = {step: ms for step, _, ms in self.grad_norms}
        out = [
            ("train_cost", float(cost), seen.get(step, self.started_ms), step)
            for step, cost in enumerate(model.loss_history_)
        ]
        out += [("train_grad_norm", value, ms, step) for step, value, ms in self.grad_norms]
        out += [
            ("validation_cost", float(cost), seen.get(int(step), self.started_ms), int(step))
            for step, cost in getattr(model, "validation_history_", None) or []
        ]
        return out

    def _log_files(self, client, run_id: str, out: str, storage_options: dict) -> None:
        from lrdask.artifact import MODEL_FILE

        with tempfile.TemporaryDirectory(prefix="lrdask-mlflow-") as tmp:
            for name in (MODEL_FILE, METRICS_FILE, PLOT_FILE):
                path = os.path.join(tmp, name)
                with open(path, "wb") as fh:  # the published bytes, wherever ``out`` is
                    fh.write(storage.read_bytes(storage.join(out, name), storage_options))
                client.log_artifact(run_id, path)

    def _log_sklearn(self, run_id: str, model) -> None:
        import mlflow

        from lrdask.export import to_sklearn

        estimator = to_sklearn(model)
        # log_model logs to the fluent API's active run, on the global tracking URI: both
        # are set for this call only (the run is ended FINISHED, or FAILED if it raises)
        with _use_tracking_uri(self.uri), mlflow.start_run(run_id=run_id):
            mlflow.sklearn.log_model(
                estimator,
                name=MODEL_NAME,
                pip_requirements=_requirements(estimator),
                skops_trusted_types=_trusted_types(estimator),
            )

    def _mark_failed(self, run_id: str | None) -> None:
        if run_id is None:
            return
        with contextlib.suppress(Exception):  # the server may be the reason it failed
            self._client().set_terminated(run_id, "FAILED")


def final_metrics(model, timestamp_ms: int) -> list[tuple[str, float, int, int]]:
    """(key, value, timestamp ms, step) for every number in metrics.json (booleans,
    strings and nulls are left to the metrics.json artifact), at step ``n_iter_``."""
    flat = flatten_numbers(training_metrics(model))
    return [(key, value, timestamp_ms, int(model.n_iter_)) for key, value in flat.items()]


def flatten_numbers(doc: dict, prefix: str = "") -> dict[str, float]:
    """``{"a": 1, "b": {"c": 2.5, "d": "x"}, "e": True}`` -> ``{"a": 1.0, "b.c": 2.5}``."""
    out: dict[str, float] = {}
    for key, value in doc.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten_numbers(value, f"{name}."))
        elif _is_number(value) and math.isfinite(value):
            out[name] = float(value)
    return out


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _params(model) -> list[tuple[str, object]]:
    return sorted(model.options().items())


def _param_value(name: str, value) -> str:
    """MLflow keeps a parameter as a string of at most 6000 characters."""
    from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH

    text = str(value)
    if len(text) > MAX_PARAM_VAL_LENGTH:
        log.warning(
            "MLflow parameter %s is %d characters; logged cut to MLflow's %d (model.json has it "
            "whole)",
            name,
            len(text),
            MAX_PARAM_VAL_LENGTH,
        )
        text = text[:MAX_PARAM_VAL_LENGTH]
    return text


def _trusted_types(estimator) -> list[str]:
    """The types skops (MLflow's safe format) must be told to trust: lrdask's own (the
    categorical Pipeline's ``CategoryLevels`` and the encoding it holds) and ``SAFE_TYPES``;
    any other untrusted type makes log_model fail, and tracking with it."""
    import skops.io

    untrusted = skops.io.get_untrusted_types(data=skops.io.dumps(estimator))
    return [name for name in untrusted if name.startswith("lrdask.") or name in SAFE_TYPES]


def _requirements(estimator) -> list[str]:
    """MLflow's own requirements for the flavor (pinned scikit-learn, skops), and lrdask
    when unpickling needs it; given, so MLflow does not infer them in a subprocess."""
    import mlflow.sklearn

    needs = mlflow.sklearn.get_default_pip_requirements(include_skops=True)
    if any(name.startswith("lrdask.") for name in _trusted_types(estimator)):
        needs.append(f"lrdask=={__version__}")
    return needs


@contextlib.contextmanager
def _client_settings() -> Iterator[None]:
    """MLflow's client settings ``CLIENT_SETTINGS`` while tracking, unless the environment
    has them (MLflow reads them at each request)."""
    added = [name for name in CLIENT_SETTINGS if name not in os.environ]
    for name in added:
        os.environ[name] = CLIENT_SETTINGS[name]
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)


def _use_tracking_uri(uri: str):
    """MLflow's own context manager that sets the global tracking URI and restores it."""
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri as use

    return use(uri)


def _describe(exc: BaseException, uri: str) -> str:
    return f"{uri}: {type(exc).__name__}: {_first_line(exc)}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _now_ms() -> int:
    return int(time.time() * 1000)
