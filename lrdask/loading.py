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
    # rows per class index (binomial: [zeros, ones]); weights below zero
    class_counts: list[int] = field(default_factory=list)
    negative_weights: int = 0
    weight_sum: float = 0.0


@dataclass
class Block:
    """One partition held in worker memory: features, labels (or None) and its report."""

    X: np.ndarray
    y: np.ndarray | None
    report: BlockReport
    extra: pa.Table | None = None
    weight: np.ndarray | None = None


def load_piece(
    piece: Piece,
    fs: fsspec.AbstractFileSystem,
    features: list[str],
    label: str | None,
    dtype: str = "float64",
    keep: tuple[str, ...] = (),
    *,
    weight: str | None = None,
    family: str = "binomial",
) -> Block:
    """Read one piece's columns from Parquet and build its Block (runs on a worker)."""
    named = [*features, *([label] if label else []), *([weight] if weight else [])]
    table = _read_piece(piece, fs, list(dict.fromkeys([*named, *keep])))
    extra = table.select(list(keep)) if keep else None
    data = {name: table.column(name) for name in named}
    return block_from_columns(
        data, features, label, piece.describe(), dtype, extra, weight=weight, family=family
    )


def load_pieces(
    pieces: tuple[Piece, ...],
    fs: fsspec.AbstractFileSystem,
    features: list[str],
    label: str | None,
    dtype: str = "float64",
    *,
    weight: str | None = None,
    family: str = "binomial",
) -> Block:
    """One Block from several small pieces (small files), so that a data set of many
    small files is folded in blocks as large as one of few big files: a kernel call per
    500-row file costs ~3× more per row than one per 65 000 rows. Each piece is read and
    copied into its rows in turn (one copy, one piece's columns in memory at a time) and
    validated on its own, so a problem is reported against the file that holds it."""
    if len(pieces) == 1:
        return load_piece(pieces[0], fs, features, label, dtype, weight=weight, family=family)
    named = [*features, *([label] if label else []), *([weight] if weight else [])]
    total = sum(piece.num_rows for piece in pieces)
    block = _empty_block(total, len(features), label, weight, dtype)
    reports, start = [], 0
    for piece in pieces:
        table = _read_piece(piece, fs, named)
        data = {name: table.column(name) for name in named}
        reports.append(
            _fill_rows(block, start, data, features, label, piece.describe(), weight, family)
        )
        start += table.num_rows
    if start != total:
        raise DataError(
            f"{pieces[0].describe()} …: read {start} rows where the footers promised {total}; "
            "the files changed while training started, rerun"
        )
    block.report = merge_reports(reports)
    return block


def merge_reports(reports: list[BlockReport]) -> BlockReport:
    """One report for a block of several sources: counts added, named after the first
    source with a problem (or the first source)."""
    bad = [r for r in reports if _has_problems(r)]
    merged = BlockReport((bad or reports)[0].source, sum(r.rows for r in reports))
    for r in reports:
        merged.positives += r.positives
        for name, count in r.bad_values.items():
            merged.bad_values[name] = merged.bad_values.get(name, 0) + count
        merged.bad_labels = sorted({*merged.bad_labels, *r.bad_labels})[:5]
        merged.bad_label_rows += r.bad_label_rows
        merged.negative_weights += r.negative_weights
        merged.weight_sum += r.weight_sum
    merged.class_counts = _class_counts(reports)
    return merged


def _read_piece(piece: Piece, fs: fsspec.AbstractFileSystem, columns: list[str]) -> pa.Table:
    try:
        with fs.open(piece.path, "rb") as fh:
            return pq.ParquetFile(fh).read_row_groups(list(piece.row_groups), columns=columns)
    except (OSError, pa.ArrowException) as exc:
        raise DataError(
            f"{piece.describe()}: cannot be read ({first_line(exc)}); remove or replace the file"
        ) from None


def _has_problems(report: BlockReport) -> bool:
    return bool(report.bad_values or report.bad_label_rows or report.negative_weights)


def block_from_columns(
    data: dict,
    features: list[str],
    label: str | None,
    source: str,
    dtype: str = "float64",
    extra: pa.Table | None = None,
    *,
    weight: str | None = None,
    family: str = "binomial",
) -> Block:
    """Build a Block from named columns (Arrow arrays, pandas Series or NumPy arrays).

    ``family`` decides what a valid label is: 0/1 ("binomial") or a class index
    0, 1, …, K−1 ("multinomial"). ``weight`` names a column of non-negative row weights.
    """
    block = _empty_block(len(data[features[0]]), len(features), label, weight, dtype, extra)
    block.report = _fill_rows(block, 0, data, features, label, source, weight, family)
    return block


def _empty_block(n, n_features, label, weight, dtype, extra=None) -> Block:
    # Column-major: X·w / Xᵀ·r stream whole columns in the kernel, which is faster than
    # row-major on every size we measured.
    X = np.empty((n, n_features), dtype=dtype, order="F")
    y = np.empty(n) if label is not None else None
    weights = np.empty(n) if weight is not None else None
    return Block(X, y, BlockReport("", n), extra, weights)


def _fill_rows(block: Block, start: int, data, features, label, source, weight, family):
    """Copy one source's columns into rows start.. of ``block``, validating as it goes;
    returns that source's report."""
    n = len(data[features[0]])
    rows = slice(start, start + n)
    report = BlockReport(source, n)
    for j, name in enumerate(features):
        block.X[rows, j] = _float_values(data[name])
        _count_nonfinite(block.X[rows, j], name, report)
    if label is not None:
        block.y[rows] = _float_values(data[label])
        _check_labels(block.y[rows], label, report, family)
    if weight is not None:
        values = block.weight[rows]
        values[:] = _float_values(data[weight])
        _count_nonfinite(values, weight, report)
        report.negative_weights = int(np.count_nonzero(values < 0))
        report.weight_sum = float(values.sum())
    return report


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


# Most classes --family multinomial accepts (K × features coefficients on every pass).
MAX_CLASSES = 1000


def _check_labels(y: np.ndarray, label: str, report: BlockReport, family: str) -> None:
    finite = np.isfinite(y)
    if not finite.all():
        report.bad_values[label] = int(np.count_nonzero(~finite))
    top = 1 if family == "binomial" else MAX_CLASSES - 1
    valid = finite & (y >= 0) & (y <= top) & (y == np.floor(y))
    odd = finite & ~valid
    if odd.any():
        report.bad_label_rows = int(np.count_nonzero(odd))
        report.bad_labels = np.unique(y[odd])[:5].tolist()
    report.class_counts = np.bincount(y[valid].astype(np.intp), minlength=2).tolist()
    report.positives = report.class_counts[1]


def check_reports(
    reports: list[BlockReport],
    label: str | None,
    family: str = "binomial",
    weight: str | None = None,
    training: bool = True,
) -> list[int]:
    """Turn the workers' load reports into one clear error for the first problem found.

    Returns the rows per class (index = class), so the driver knows K and the class
    balance without a further pass. Held-out data (``training=False``) need not have
    every class."""
    rows = sum(r.rows for r in reports)
    if rows == 0:
        raise DataError("the data set has zero rows; point DATA at a non-empty data set")
    _check_bad_values(reports)
    if weight is not None:
        _check_weights(reports, weight, rows)
    if label is None:
        return []
    _check_label_values(reports, label, family, rows)
    counts = _class_counts(reports)
    if not training:
        return counts
    if family == "binomial" and 0 in counts:
        raise DataError(
            f"label column '{label}' holds only class {int(counts[1] > 0)} in all {rows} rows; "
            "training needs examples of both 0 and 1"
        )
    empty = [k for k, n in enumerate(counts) if n == 0]
    if family == "multinomial" and (empty or len(counts) < 2):
        which = f"class {empty[0]} has no rows" if empty else "there is only class 0"
        raise DataError(
            f"label column '{label}': {which}; multinomial labels must be 0, 1, …, K−1 "
            "(K ≥ 2) with every class present"
        )
    return counts


def _check_label_values(reports, label: str, family: str, rows: int) -> None:
    odd = [r for r in reports if r.bad_label_rows]
    if not odd:
        return
    count = sum(r.bad_label_rows for r in odd)
    examples = ", ".join(_fmt(v) for v in sorted({v for r in odd for v in r.bad_labels})[:5])
    if family == "binomial":
        expected, fix = "only 0 and 1", "map the two classes to 0 and 1"
    else:
        expected = f"class indices 0, 1, …, K−1 (K ≤ {MAX_CLASSES})"
        fix = "map the classes to 0, 1, …, K−1"
    raise DataError(
        f"{odd[0].source}: label column '{label}' must hold {expected}, but {count} of "
        f"{rows} rows hold other values (e.g. {examples}); {fix}"
    )


def _class_counts(reports: list[BlockReport]) -> list[int]:
    per_report = [r.class_counts or [r.rows - r.positives, r.positives] for r in reports]
    total = np.zeros(max(len(c) for c in per_report), dtype=np.int64)
    for counts in per_report:
        total[: len(counts)] += counts
    return total.tolist()


def _check_weights(reports: list[BlockReport], weight: str, rows: int) -> None:
    negative = [r for r in reports if r.negative_weights]
    if negative:
        count = sum(r.negative_weights for r in negative)
        raise DataError(
            f"{negative[0].source}: weight column '{weight}' has {count} negative value(s) "
            f"of {rows} rows; sample weights must be ≥ 0"
        )
    if not sum(r.weight_sum for r in reports) > 0:
        raise DataError(
            f"weight column '{weight}' sums to zero over all {rows} rows; "
            "at least one row needs a positive weight"
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
