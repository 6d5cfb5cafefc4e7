"""Loading one partition on a worker into contiguous NumPy arrays, validating as it goes.

A ``Block`` is what a worker keeps in memory for the whole training run: X as one
contiguous column-major (rows × features) array, y as a float64 vector. Validation (NaN/inf,
nulls, labels outside {0, 1}) happens here, in the same pass that builds the arrays,
and is summarised in a small ``BlockReport`` so the driver can name every problem
without ever seeing the rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lrdask.dataset import Piece, first_line
from lrdask.errors import DataError


@dataclass
class BlockReport:
    """What the load pass found in one partition: counts only, never rows."""

    source: str
    rows: int
    positives: int = 0
    # column -> number of null / NaN / ±inf values
    bad_values: dict[str, int] = field(default_factory=dict)
    # label values other than 0 and 1 (up to five examples) and how many rows had them
    bad_labels: list[float] = field(default_factory=list)
    bad_label_rows: int = 0


@dataclass
class Block:
    """One partition held in worker memory: features, labels (or None) and its report."""

    X: np.ndarray
    y: np.ndarray | None
    report: BlockReport
    extra: pa.Table | None = None


def load_piece(
    piece: Piece,
    fs: fsspec.AbstractFileSystem,
    features: list[str],
    label: str | None,
    dtype: str = "float64",
    keep: tuple[str, ...] = (),
) -> Block:
    """Read one piece's columns from Parquet and build its Block (runs on a worker)."""
    columns = list(dict.fromkeys([*features, *([label] if label else []), *keep]))
    try:
        with fs.open(piece.path, "rb") as fh:
            table = pq.ParquetFile(fh).read_row_groups(list(piece.row_groups), columns=columns)
    except (OSError, pa.ArrowException) as exc:
        raise DataError(
            f"{piece.describe()}: cannot be read ({first_line(exc)}); remove or replace the file"
        ) from None
    extra = table.select(list(keep)) if keep else None
    data = {name: table.column(name) for name in columns}
    return block_from_columns(data, features, label, piece.describe(), dtype, extra)


def block_from_columns(
    data: dict,
    features: list[str],
    label: str | None,
    source: str,
    dtype: str = "float64",
    extra: pa.Table | None = None,
) -> Block:
    """Build a Block from named columns (Arrow arrays, pandas Series or NumPy arrays)."""
    n = len(data[features[0]])
    report = BlockReport(source, n)
    # Column-major: each column is one contiguous copy here, and X·w / Xᵀ·r stream
    # whole columns in the kernel, which is faster than row-major on every size we measured.
    X = np.empty((n, len(features)), dtype=dtype, order="F")
    for j, name in enumerate(features):
        X[:, j] = _float_values(data[name])
        _count_nonfinite(X[:, j], name, report)
    y = None
    if label is not None:
        y = _float_values(data[label])
        _check_labels(y, label, report)
    return Block(X, y, report, extra)


def _float_values(column) -> np.ndarray:
    """A column as contiguous float64; nulls become NaN (and are then counted as such)."""
    if isinstance(column, (pa.Array, pa.ChunkedArray)):
        column = column.to_numpy(zero_copy_only=False)
    return np.ascontiguousarray(column, dtype=np.float64)


def _count_nonfinite(column: np.ndarray, name: str, report: BlockReport) -> None:
    """Count NaN/±inf in one column; a finite sum (one fast pass) proves there are none."""
    if np.isfinite(column.sum(dtype=np.float64)):
        return
    count = int(np.count_nonzero(~np.isfinite(column)))
    if count:
        report.bad_values[name] = count


def _check_labels(y: np.ndarray, label: str, report: BlockReport) -> None:
    zeros, ones = y == 0.0, y == 1.0
    report.positives = int(np.count_nonzero(ones))
    finite = np.isfinite(y)
    if not finite.all():
        report.bad_values[label] = int(np.count_nonzero(~finite))
    odd = finite & ~(zeros | ones)
    if odd.any():
        report.bad_label_rows = int(np.count_nonzero(odd))
        report.bad_labels = np.unique(y[odd])[:5].tolist()


def check_reports(reports: list[BlockReport], label: str | None) -> None:
    """Turn the workers' load reports into one clear error for the first problem found."""
    rows = sum(r.rows for r in reports)
    if rows == 0:
        raise DataError("the data set has zero rows; point DATA at a non-empty data set")
    _check_bad_values(reports)
    if label is None:
        return
    odd = [r for r in reports if r.bad_label_rows]
    if odd:
        count = sum(r.bad_label_rows for r in odd)
        examples = sorted({v for r in odd for v in r.bad_labels})[:5]
        raise DataError(
            f"{odd[0].source}: label column '{label}' must hold only 0 and 1, but {count} of "
            f"{rows} rows hold other values (e.g. {', '.join(_fmt(v) for v in examples)}); "
            "map the two classes to 0 and 1"
        )
    positives = sum(r.positives for r in reports)
    if positives in (0, rows):
        only = 1 if positives else 0
        raise DataError(
            f"label column '{label}' holds only class {only} in all {rows} rows; "
            "training needs examples of both 0 and 1"
        )


def _check_bad_values(reports: list[BlockReport]) -> None:
    columns: dict[str, list[BlockReport]] = {}
    for report in reports:
        for name in report.bad_values:
            columns.setdefault(name, []).append(report)
    if not columns:
        return
    name, where = next(iter(columns.items()))
    count = sum(r.bad_values[name] for r in where)
    rest = list(columns)[1:]
    others = f"; also in {', '.join(repr(c) for c in rest)}" if rest else ""
    raise DataError(
        f"{where[0].source}: column '{name}' has {count} null, NaN or infinite value(s) "
        f"in {len(where)} partition(s){others}; drop or impute them before training"
    )


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)
