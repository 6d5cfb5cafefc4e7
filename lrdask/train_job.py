"""The training job as a scheduled platform runs it: options in, model out, exit code.

The CLI (and a job config file) only fills a ``TrainConfig``; ``run_training`` does the
rest in an order chosen for unattended runs: check everything cheap first (options, data
schema, output location) before a cluster is started; resume a matching checkpoint; write
the model, metrics and cost curve atomically and ``_SUCCESS`` last; only then remove the
checkpoint. With an MLflow tracking URI the published run is logged last
(``lrdask.tracking``): a tracking failure is a warning, never a failed job.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import dataclass, field

from lrdask import artifact, storage, tracking
from lrdask.checkpoint import Checkpoints
from lrdask.cluster import client_security, connect, dashboard_link
from lrdask.dataset import plan_dataset
from lrdask.errors import NotConvergedError, OutputExistsError
from lrdask.estimator import PARAMETERS, LogisticRegression
from lrdask.lease import lease
from lrdask.memory import read_workers
from lrdask.outputs import is_complete, withdraw_success, write_run_outputs
from lrdask.progress import TrainingProgress

log = logging.getLogger("lrdask")


@dataclass
class TrainConfig:
    data: str
    label: str
    out: str
    features: list[str] | None = None
    exclude: list[str] | None = None
    alpha: float = 0.1
    max_iter: int = 1000
    tol: float = 1e-8
    gtol: float = 1e-4
    dtype: str = "float64"
    solver: str = "gd"
    l2: float = 0.0
    l1: float = 0.0
    line_search: bool = False
    weight_col: str | None = None
    class_weight: str | None = None
    standardize: bool = False
    standardize_variance: str = "population"
    init: str | None = None
    family: str = "auto"
    positive_class: str | None = None
    categorical: list[str] | str | None = None
    min_count: int = 1
    missing: str = "error"
    validation: str | None = None
    validation_every: int = 10
    early_stopping: int = 0
    fit_intercept: bool = True
    threshold: float = 0.5
    scheduler: str | None = None
    tls_ca_file: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    workers: int | None = None
    connect_timeout: float = 30.0
    wait_for_workers: int | None = None
    wait_for_workers_timeout: float = 120.0
    pass_timeout: float = 600.0
    cache: bool = True
    overwrite: bool = False
    checkpoint_dir: str | None = None
    checkpoint_every: int = 50
    resume: bool = True
    fail_on_no_convergence: bool = False
    log_every: int = 10
    mlflow_tracking_uri: str | None = None
    mlflow_experiment: str | None = None
    storage_options: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)

    @property
    def model_location(self) -> str:
        return storage.join(self.out, artifact.MODEL_FILE)

    @property
    def checkpoint_location(self) -> str:
        return self.checkpoint_dir or storage.join(self.out, "_checkpoint")


@dataclass
class TrainOutcome:
    location: str
    model: LogisticRegression
    skipped: bool = False


def run_training(cfg: TrainConfig) -> TrainOutcome:
    """Train (or find the identical finished model) and return where the model is."""
    started = time.monotonic()
    model = LogisticRegression(**{name: getattr(cfg, name) for name in PARAMETERS})
    model._check_params()
    tracker = tracking.tracker_for(cfg.mlflow_tracking_uri, cfg.mlflow_experiment)
    security = client_security(cfg.scheduler, cfg.tls_ca_file, cfg.tls_cert, cfg.tls_key)
    plan = plan_dataset(
        cfg.data,
        cfg.label,
        cfg.features,
        cfg.exclude,
        cfg.storage_options,
        weight=cfg.weight_col,
        categorical=cfg.categorical,
    )
    log.info(
        "data: %s, %d rows in %d partition(s) of %d file(s), %d features (%d categorical)",
        cfg.data,
        plan.num_rows,
        len(plan.pieces),
        len(plan.files),
        len(plan.features),
        len(plan.categorical),
    )
    log_directories(plan)
    validation = None
    if cfg.validation:
        validation = plan_dataset(
            cfg.validation,
            cfg.label,
            plan.features,
            None,
            cfg.storage_options,
            categorical=plan.categorical,
        )
    identity = model.identity_of(plan, validation, cfg.storage_options)
    with lease(cfg.out, "train", cfg.storage_options):  # one writer per MODEL_DIR
        outcome = _train(cfg, model, plan, validation, identity, started, security, tracker)
    if tracker is not None and outcome.skipped:
        log.info("nothing trained, so no MLflow run is logged")
    elif tracker is not None:  # after publishing: the run records the published files
        tracker.log_run(outcome.model, cfg.out, cfg.storage_options, _run_tags(cfg))
    return outcome


def _train(
    cfg: TrainConfig, model, plan, validation, identity, started, security, tracker=None
) -> TrainOutcome:
    finished = _finished_model(cfg, identity)
    if finished is not None:
        return finished
    _check_writable(cfg.out, cfg.storage_options)
    checkpoints = Checkpoints(
        cfg.checkpoint_location, cfg.checkpoint_every, identity, cfg.storage_options
    )
    if not cfg.resume:
        checkpoints.clear()
    with connect(
        cfg.scheduler,
        cfg.workers,
        cfg.connect_timeout,
        security=security,
        wait_for=cfg.wait_for_workers,
        wait_timeout=cfg.wait_for_workers_timeout,
    ) as client:
        log_cluster(client, cfg.scheduler, cfg.pass_timeout)
        progress = TrainingProgress(cfg.max_iter, cfg.log_every)
        callback = progress if tracker is None else _each(progress, tracker.record)
        try:
            model.fit(
                plan,
                label=cfg.label,
                client=client,
                validation=validation,
                callback=callback,
                checkpoint_dir=cfg.checkpoint_location,
                checkpoint_every=cfg.checkpoint_every,
                storage_options=cfg.storage_options,
                cache=cfg.cache,
                pass_timeout=cfg.pass_timeout,
            )
        finally:
            progress.close()
    _log_result(model, time.monotonic() - started)
    if cfg.fail_on_no_convergence and not (model.converged_ or model.stopped_early_):
        checkpoints.save(model.solver_state_)
        then = (
            "rerun with a larger --max-iter to continue from the checkpoint"
            if model.status_ == "max_iter"
            else "act on the reason, then rerun"
        )
        raise NotConvergedError(f"not converged ({model.stop_reason_}); no model written; {then}")
    withdraw_success(cfg.out, cfg.storage_options)
    location = model.save(cfg.out, cfg.storage_options)
    write_run_outputs(model, cfg.out, cfg.storage_options, cfg.params)
    checkpoints.clear()
    log.info("model, metrics.json and loss_curve.png written to %s", cfg.out)
    return TrainOutcome(location, model)


def _each(*callbacks):
    """One solver callback that calls each of ``callbacks`` in turn."""

    def call(info) -> None:
        for callback in callbacks:
            callback(info)

    return call


def _run_tags(cfg: TrainConfig) -> dict[str, str]:
    """What the MLflow run is tagged with besides the parameters: where the data came
    from, and the job's --param values."""
    tags = {"lrdask.data": cfg.data, "lrdask.label": cfg.label}
    if cfg.validation:
        tags["lrdask.validation"] = cfg.validation
    tags.update({f"lrdask.param.{k}": str(v) for k, v in cfg.params.items() if v is not None})
    return tags


def _finished_model(cfg: TrainConfig, identity: dict) -> TrainOutcome | None:
    """A rerun of a finished job is a no-op; a different model is never replaced silently."""
    location = cfg.model_location
    if not storage.exists(location, cfg.storage_options):
        return None
    if cfg.overwrite:
        log.info("--overwrite: %s will be replaced when training succeeds", location)
        return None
    try:
        doc = json.loads(storage.read_bytes(location, cfg.storage_options))
        same = doc.get("training", {}).get("fingerprint") == identity
    except ValueError:
        same = False
    if same:
        log.info(
            "%s already holds the model for this data and these options; nothing to do "
            "(pass --overwrite to train again)",
            location,
        )
        model = LogisticRegression.load(cfg.out, cfg.storage_options)
        if not is_complete(cfg.out, cfg.storage_options):  # killed after model.json
            write_run_outputs(model, cfg.out, cfg.storage_options, cfg.params)
        return TrainOutcome(location, model, skipped=True)
    raise OutputExistsError(
        f"{location} already holds a model trained on other data or options; "
        "pass --overwrite to replace it, or choose another --out"
    )


def _check_writable(out: str, storage_options: dict) -> None:
    """Fail before training, not after, if the model cannot be written."""
    probe = storage.join(out, f".lrdask-write-test-{uuid.uuid4().hex[:8]}")
    storage.write_bytes_atomic(probe, b"", storage_options)  # StorageError names it
    storage.remove(probe, storage_options)


def log_directories(plan) -> None:
    """Each top-level directory of the data set with its files and rows (a missing day
    shows)."""
    summary = plan.directory_summary()
    if len(summary) > 1 or summary[0][0] != ".":
        for name, files, rows in summary[:50]:
            log.info("  %s: %d file(s), %d rows", name, files, rows)
        if len(summary) > 50:
            log.info("  … and %d more directories", len(summary) - 50)


def log_cluster(client, scheduler: str | None, timeout: float = 30.0) -> None:
    """Log where the job runs. Raises ClusterError if the scheduler stops answering."""
    workers = read_workers(client, timeout)
    where = f"scheduler {scheduler}" if scheduler else "embedded LocalCluster"
    log.info("cluster: %s, %d worker(s)", where, len(workers))
    link = dashboard_link(client)
    if link:
        log.info("Dask dashboard: %s", link)


def _log_result(model: LogisticRegression, seconds: float) -> None:
    status = model.stop_reason_.split(":")[0]
    history = model.loss_history_
    log.info(
        "%s after %d iterations: cost %.10g -> %.10g on %d rows (%d partitions) in %.1fs",
        status,
        model.n_iter_,
        history[0],
        history[-1],
        model.n_rows_,
        model.n_partitions_,
        seconds,
        extra={
            "fields": {
                "event": "trained",
                "iterations": model.n_iter_,
                "converged": model.converged_,
                "final_cost": history[-1],
                "seconds": round(seconds, 3),
            }
        },
    )
    if model.status_ not in ("converged", "early_stopping"):
        log.warning("%s", model.stop_reason_)
    if model.cost_increased_at_ is not None:
        log.warning(
            "the cost rose at iteration %d: --alpha %g is probably too large",
            model.cost_increased_at_,
            model.alpha,
        )
