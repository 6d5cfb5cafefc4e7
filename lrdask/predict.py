"""Scoring a Parquet data set on the cluster, partition by partition, into Parquet.

Each task reads one piece's feature (and ``--keep``) columns, computes the margin
z = x·w + b and the probability with the model's coefficients and writes its own output
file; the driver sees only row counts. A binomial model says the positive class where
``positive_where(z, threshold)``: the one rule of predict, evaluate and the estimator.

Files go to a staging directory that is renamed into place at the end, so the output
location holds either complete predictions or nothing new.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import uuid

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from distributed import Client
from fsspec.implementations.local import LocalFileSystem

from lrdask import kernels, storage
from lrdask.dataset import DatasetPlan, Piece, plan_dataset
from lrdask.encoding import Encoding
from lrdask.errors import EXIT_BAD_INPUT, ConfigError, DataError, OutputExistsError, StorageError
from lrdask.lease import lease
from lrdask.loading import BlockReport, check_reports, load_piece, summarize, where
from lrdask.outputs import SUCCESS_FILE
from lrdask.scheduling import bounded_wait, cluster_errors, gather, share, streamed_need
from lrdask.storage import storage_errors

log = logging.getLogger("lrdask")


def write_predictions(
    client: Client,
    model,
    data: str | DatasetPlan,
    out_dir: str,
    keep: list[str] | None = None,
    storage_options: dict | None = None,
    overwrite: bool = False,
    timeout: float | None = None,
    threshold: float | None = None,
    margin: bool = False,
) -> int:
    """Score every row of ``data`` into ``out_dir``; returns the number of rows written.
    The job holds ``out_dir``'s lease (``lrdask.lease``) while it writes. ``timeout``
    bounds the wait for the scoring tasks (ClusterError after it). ``threshold``
    (binomial; default: the model's own) is the probability the positive class must
    exceed; ``margin`` adds the margin column(s). ConfigError for a threshold with a
    multinomial model."""
    threshold = model_threshold(model, threshold)
    with lease(out_dir, "predict", storage_options):
        return _write_predictions(
            client,
            model,
            data,
            out_dir,
            keep,
            storage_options,
            overwrite,
            timeout,
            threshold,
            margin,
        )


def _write_predictions(
    client,
    model,
    data,
    out_dir,
    keep,
    storage_options,
    overwrite,
    timeout=None,
    threshold=0.5,
    margin=False,
) -> int:
    keep = list(keep or [])
    plan = (
        data
        if isinstance(data, DatasetPlan)
        else plan_for_model(model, data, None, storage_options)
    )
    fs, out_path = storage.filesystem(out_dir, storage_options)
    _check_not_the_data(fs, out_path, plan.url, storage_options)
    if fs.exists(out_path) and fs.ls(out_path) and not overwrite:
        raise OutputExistsError(f"{out_dir} already exists; pass --overwrite to replace it")
    encoding = model.encoding_.reading(None)
    check_keep(plan, keep, margin)
    shared = share(client, encoding, timeout)  # one copy per worker, not one per task
    shared_model = share(client, (np.asarray(model.coef_), model.intercept_), timeout)
    need = streamed_need(client, plan, timeout)
    staging = f"{out_path.rstrip('/')}.staging-{uuid.uuid4().hex[:8]}"
    with storage_errors("create", staging):
        fs.makedirs(staging, exist_ok=True)
    try:
        futures = client.map(
            score_piece,
            plan.pieces,
            range(len(plan.pieces)),
            fs=plan.fs,
            out_fs=fs,
            staging=staging,
            encoding=shared,
            keep=tuple(keep),
            model=shared_model,
            threshold=threshold,
            margin=margin,
            pure=False,
        )
        with cluster_errors("scoring", timeout, client, need):
            bounded_wait(client, futures, timeout, "scoring", need)
            reports = gather(client, futures, timeout)
        check_reports(reports, None, training=False)
        summarize(reports, log, skipped="scored as null (a missing value)")
        with storage_errors("publish predictions to", out_dir):
            _publish(fs, staging, out_path)
            fs.pipe_file(f"{out_path.rstrip('/')}/{SUCCESS_FILE}", b"")  # last: files are there
    finally:
        with contextlib.suppress(OSError):  # best effort: the error above is the news
            if fs.exists(staging):
                fs.rm(staging, recursive=True)
    return sum(r.rows for r in reports)


def score_piece(
    piece: Piece,
    index: int,
    *,
    fs: fsspec.AbstractFileSystem,
    out_fs,
    staging: str,
    encoding: Encoding,
    keep: tuple[str, ...],
    model: tuple,
    threshold: float = 0.5,
    margin: bool = False,
) -> BlockReport:
    """The per-partition task: load, score, write one output file. ``model`` is
    (coef, intercept)."""
    coef, intercept = model
    block = load_piece(piece, fs, encoding, "float64", keep, drop_incomplete=False)
    if block.report.bad_values or block.report.missing_values:
        return block.report
    z = margins(block.X, coef, intercept, block.codes)
    kernels.check_finite_scores(
        z if block.incomplete is None else z[~block.incomplete], coef, block.report.source
    )
    columns = {name: block.extra.column(name) for name in keep}
    columns.update(
        output_columns(
            z,
            encoding.classes,
            np.ndim(coef) == 2,
            block.incomplete,
            threshold=threshold,
            with_margin=margin,
        )
    )
    table = pa.table(columns)
    if isinstance(out_fs, LocalFileSystem) and not out_fs.isdir(staging):
        raise StorageError(
            f"cannot write predictions to {staging}: the driver made that directory, but "
            f"it is not there on {where()}; OUT_DIR must be at the same path on the driver "
            "and every worker (a disk they all share, or an object store URL)",
            EXIT_BAD_INPUT,
        )
    target = f"{staging}/part-{index:05d}.parquet"
    with storage_errors("write predictions to", target), out_fs.open(target, "wb") as fh:
        pq.write_table(table, fh)
    return block.report


def positive_where(margin: np.ndarray, threshold: float) -> np.ndarray:
    """Where a binomial model says the positive class: its probability σ(z) is above
    ``threshold`` T ∈ (0, 1) (Spark's ``threshold``), decided on the margin z as
    z > logit(T), so that T = 0.5 is exactly z > 0 (scikit-learn's
    ``decision_function > 0``) and no rounding of σ moves a row across. ``margin``: (n,)
    floats; returns an (n,) bool array (False where the margin is NaN)."""
    t = float(threshold)
    cut = 0.0 if t == 0.5 else math.log(t) - math.log1p(-t)  # logit(t), without scipy
    return np.asarray(margin) > cut


def model_threshold(model, threshold: float | None) -> float:
    """The threshold a binomial prediction uses: ``threshold`` if given, else the model's
    own (``threshold`` in model.json's options), else 0.5. A threshold given for a
    multinomial model is a ConfigError: it predicts the likeliest class."""
    if np.ndim(model.coef_) == 2:
        if threshold is not None:
            raise ConfigError(
                f"--threshold is for binomial models only; this model is multinomial over "
                f"{len(model.classes_)} classes and predicts the likeliest one: leave it out"
            )
        return 0.5
    if threshold is not None:
        return float(threshold)
    return float(getattr(model, "threshold", 0.5))


def margins(X: np.ndarray, coef: np.ndarray, intercept, codes=None) -> np.ndarray:
    """The linear predictor (Spark's rawPrediction, scikit-learn's decision_function):
    (n,) z = X·w + b for a binomial model (coef of shape (F,)), (n, K) for a multinomial
    one (coef of shape (K, F)); ``codes`` are the rows' category slots."""
    coef = np.asarray(coef)
    if coef.ndim == 2:
        return kernels.linear_predictor(X, coef.T, np.asarray(intercept, np.float64), codes)
    return kernels.linear_predictor(X, coef, intercept, codes)


def margin_probabilities(z: np.ndarray) -> np.ndarray:
    """(n, K) class probabilities from ``margins``: [1 − σ(z), σ(z)] for (n,) z, the
    softmax of each row for (n, K)."""
    if z.ndim == 2:
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    p1 = kernels.sigmoid(z)
    return np.column_stack([1.0 - p1, p1])


def class_probabilities(X: np.ndarray, coef: np.ndarray, intercept, codes=None) -> np.ndarray:
    """(n, K) class probabilities: [1 − p, p] for a binomial model (coef of shape (F,)),
    the softmax for a multinomial one (coef of shape (K, F)); ``codes`` are the rows'
    category slots when the model has categorical columns."""
    return margin_probabilities(margins(X, coef, intercept, codes))


def block_probabilities(block, coef, intercept) -> np.ndarray:
    """Class probabilities of a loaded block; NaN for rows marked incomplete."""
    proba = class_probabilities(block.X, coef, intercept, block.codes)
    if block.incomplete is not None:
        proba[block.incomplete] = np.nan
    return proba


def output_columns(
    z: np.ndarray,
    classes,
    multinomial: bool,
    incomplete=None,
    threshold: float = 0.5,
    with_margin: bool = False,
) -> dict:
    """The output columns from the ``margins`` z. Binomial: ``probability`` (of the
    positive class, ``classes[1]``), ``prediction`` (the positive class where its
    probability is above ``threshold``: ``positive_where``) and, ``with_margin``,
    ``margin`` (z); multinomial: ``probability_<class>`` per class, ``prediction`` (the
    likeliest class) and, ``with_margin``, ``margin_<class>`` per class. Predictions are
    the label's own values; incomplete rows (missing="skip") are null in every column."""
    values = pa.array(list(classes))
    mask = None if incomplete is None else pa.array(incomplete)
    proba = margin_probabilities(z)
    if not multinomial:
        index = positive_where(z, threshold).astype(np.int64)
        columns = {
            "probability": pa.array(proba[:, 1], mask=incomplete),
            "prediction": _null_where(values.take(pa.array(index)), mask),
        }
        if with_margin:
            columns["margin"] = pa.array(z, mask=incomplete)
        return columns
    columns = {
        f"probability_{c}": pa.array(proba[:, k], mask=incomplete) for k, c in enumerate(classes)
    }
    index = np.nan_to_num(proba, nan=0.0).argmax(axis=1)
    columns["prediction"] = _null_where(values.take(pa.array(index)), mask)
    if with_margin:
        columns.update(
            {f"margin_{c}": pa.array(z[:, k], mask=incomplete) for k, c in enumerate(classes)}
        )
    return columns


def _null_where(values: pa.Array, mask) -> pa.Array:
    if mask is None:
        return values
    import pyarrow.compute as pc

    return pc.if_else(mask, pa.scalar(None, type=values.type), values)


def plan_for_model(model, data: str, label, storage_options):
    """Plan ``data`` for scoring: the model's input columns (and ``label``), read by the
    same planner as training; a mismatch says it is about the model."""
    categorical = [c.name for c in model.encoding_.categorical]
    try:
        return plan_dataset(
            data,
            label,
            list(model.encoding_.input_columns),
            None,
            storage_options,
            categorical=categorical,
        )
    except DataError as exc:
        raise DataError(f"DATA does not fit the model: {exc}") from None


def check_keep(plan: DatasetPlan, keep: list[str], margin: bool = False) -> None:
    """--keep columns exist once in the data and do not clash with the outputs (the
    margin columns too, with ``margin``)."""
    names, path = plan.files[0].schema.names, plan.files[0].path
    for name in keep:
        if keep.count(name) > 1:
            raise DataError(f"--keep names column '{name}' twice; name it once")
        if names.count(name) > 1:
            raise DataError(f"{path}: --keep column '{name}' appears {names.count(name)} times")
        if name not in names:
            raise DataError(f"{path}: --keep column '{name}' not found")
        outputs = ("probability", "prediction", *(["margin"] if margin else []))
        if name in outputs or name.startswith(("probability_", *(["margin_"] if margin else []))):
            raise DataError(f"--keep column '{name}' clashes with an output column")


def _check_not_the_data(fs, out_path: str, data: str, storage_options) -> None:
    """OUT_DIR must not be DATA, hold it or sit inside it: --overwrite would replace the
    input with its own predictions."""
    data_fs, data_path = storage.filesystem(data, storage_options)
    if type(data_fs) is not type(fs):
        return
    out, src = out_path.rstrip("/"), data_path.rstrip("/")
    if out == src or src.startswith(out + "/") or out.startswith(src + "/"):
        raise OutputExistsError(
            f"--out {out_path} is, holds or sits inside DATA {data}; write predictions "
            "somewhere else"
        )


def _publish(fs, staging: str, out_path: str) -> None:
    """Move the finished staging directory into place.

    On a local disk that is a directory rename (the old output, if any, is moved aside
    first). Object stores have no rename: the old objects are deleted, the new ones copied
    in, and ``_SUCCESS`` (written after this) is what tells readers the output is whole.
    """
    if isinstance(fs, LocalFileSystem):
        old = f"{out_path.rstrip('/')}.old-{uuid.uuid4().hex[:8]}"
        if fs.exists(out_path):
            os.rename(out_path, old)
        os.rename(staging, out_path)
        if fs.exists(old):
            fs.rm(old, recursive=True)
        return
    if fs.exists(out_path):
        fs.rm(out_path, recursive=True)
    for source in fs.find(staging):
        fs.copy(source, f"{out_path.rstrip('/')}/{source.rsplit('/', 1)[1]}")
