"""Scoring a Parquet data set on the cluster, partition by partition, into Parquet.

Each task reads one piece's feature (and ``--keep``) columns, computes the probability
with the model's coefficients and writes its own output file; the driver sees only row
counts. Files go to a staging directory that is renamed into place at the end, so the
output location holds either complete predictions or nothing new.
"""

from __future__ import annotations

import os
import uuid

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from distributed import Client
from fsspec.implementations.local import LocalFileSystem

from lrdask import kernels, storage
from lrdask.dataset import Piece, plan_dataset
from lrdask.errors import DataError, OutputExistsError
from lrdask.loading import BlockReport, check_reports, load_piece
from lrdask.outputs import SUCCESS_FILE
from lrdask.scheduling import cluster_errors


def write_predictions(
    client: Client,
    model,
    data: str,
    out_dir: str,
    keep: list[str] | None = None,
    storage_options: dict | None = None,
    overwrite: bool = False,
) -> int:
    """Score every row of ``data`` into ``out_dir``; returns the number of rows written."""
    keep = list(keep or [])
    fs, out_path = storage.filesystem(out_dir, storage_options)
    if fs.exists(out_path) and fs.ls(out_path) and not overwrite:
        raise OutputExistsError(f"{out_dir} already exists; pass --overwrite to replace it")
    try:
        plan = plan_dataset(data, None, list(model.feature_names_in_), None, storage_options)
    except DataError as exc:
        raise DataError(f"DATA does not fit the model: {exc}") from None
    _check_keep(plan.files[0].schema.names, keep, plan.files[0].path)
    staging = f"{out_path.rstrip('/')}.staging-{uuid.uuid4().hex[:8]}"
    fs.makedirs(staging, exist_ok=True)
    try:
        futures = client.map(
            score_piece,
            plan.pieces,
            range(len(plan.pieces)),
            fs=plan.fs,
            out_fs=fs,
            staging=staging,
            features=plan.features,
            keep=tuple(keep),
            coef=np.asarray(model.coef_),
            intercept=model.intercept_,
            pure=False,
        )
        with cluster_errors("scoring", None):
            reports = client.gather(futures)
        check_reports(reports, None)
        _publish(fs, staging, out_path)
        fs.pipe_file(f"{out_path.rstrip('/')}/{SUCCESS_FILE}", b"")  # last: the files are there
    finally:
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
    features: list[str],
    keep: tuple[str, ...],
    coef: np.ndarray,
    intercept,
) -> BlockReport:
    """The per-partition task: load, score, write one output file."""
    block = load_piece(piece, fs, features, None, "float64", keep)
    if block.report.bad_values:
        return block.report
    proba = class_probabilities(block.X, coef, intercept)
    columns = {name: block.extra.column(name) for name in keep}
    columns.update(output_columns(proba, multinomial=np.ndim(coef) == 2))
    table = pa.table(columns)
    with out_fs.open(f"{staging}/part-{index:05d}.parquet", "wb") as fh:
        pq.write_table(table, fh)
    return block.report


def class_probabilities(X: np.ndarray, coef: np.ndarray, intercept) -> np.ndarray:
    """(n, K) class probabilities: [1 − p, p] for a binomial model (coef of shape (f,)),
    the softmax for a multinomial one (coef of shape (K, f))."""
    coef = np.asarray(coef)
    if coef.ndim == 2:
        from lrdask.softmax_kernels import softmax_proba_rows

        return softmax_proba_rows(X, coef.T, np.asarray(intercept))
    p1 = kernels.predict_proba_rows(X, coef, intercept)
    return np.column_stack([1.0 - p1, p1])


def output_columns(proba: np.ndarray, multinomial: bool) -> dict:
    """Binomial: ``probability`` (of class 1) and ``prediction`` (p ≥ 0.5); multinomial:
    ``probability_k`` per class and ``prediction``, the likeliest class."""
    if not multinomial:
        return {
            "probability": pa.array(proba[:, 1]),
            "prediction": pa.array((proba[:, 1] >= 0.5).astype(np.int8)),
        }
    columns = {f"probability_{k}": pa.array(proba[:, k]) for k in range(proba.shape[1])}
    columns["prediction"] = pa.array(proba.argmax(axis=1).astype(np.int32))
    return columns


def _check_keep(names: list[str], keep: list[str], path: str) -> None:
    for name in keep:
        if name not in names:
            raise DataError(f"{path}: --keep column '{name}' not found")
        if name in ("probability", "prediction") or name.startswith("probability_"):
            raise DataError(f"--keep column '{name}' clashes with an output column")


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
