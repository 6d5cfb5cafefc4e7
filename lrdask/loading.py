"""Loading one partition on a worker into contiguous NumPy arrays, validating as it goes.

A ``Block`` is what a worker keeps in memory for the whole training run: the numeric
features X as one contiguous column-major (rows × numeric features) array, the categorical
features as int32 codes (rows × categorical columns, see ``lrdask.encoding``), y as a
float64 vector of class indices. The columns are read as the ``Encoding`` says (the same
code for training, predicting and evaluating). Validation (nulls, NaN, ±inf, labels that
are not classes, negative weights) happens here, in the same pass that builds the arrays,
and is summarised in a small ``BlockReport`` so the driver can name every problem without
ever seeing the rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lrdask.dataset import Piece, file_identity, first_line
from lrdask.encoding import (
    MAX_CLASSES,
    Encoding,
    ProfileRequest,
    float_values,
    profile_table,
    skip_mask,
)
from lrdask.errors import DataChangedError, DataError


@dataclass
class BlockReport:
    """What the load pass found in one partition: counts only, never rows."""

    source: str
    rows: int
    positives: int = 0
    # column -> number of ±inf values (NaN and null too when missing="error")
    bad_values: dict[str, int] = field(default_factory=dict)
    # column -> null / NaN values (an error only with missing="error")
    missing_values: dict[str, int] = field(default_factory=dict)
    # label values that are not classes (up to five examples) and how many rows had them
    bad_labels: list = field(default_factory=list)
    bad_label_rows: int = 0
    # rows per class index (binomial: [negatives, positives]); weights below zero
    class_counts: list[int] = field(default_factory=list)
    negative_weights: int = 0
    weight_sum: float = 0.0
    class_weight_sums: list[float] = field(default_factory=list)  # Σ weight per class
    # source -> rows dropped for missing values (missing="skip")
    skipped: dict[str, int] = field(default_factory=dict)
    # column -> values replaced by the training mean / rows whose level was not seen
    imputed: dict[str, int] = field(default_factory=dict)
    unseen: dict[str, int] = field(default_factory=dict)


@dataclass
class Block:
    """One partition held in worker memory: features, codes, labels (or None), report.

    ``incomplete`` (predict only) marks rows that have a missing value under
    missing="skip": they are kept in place so that outputs stay row-aligned, and scored
    as null."""

    X: np.ndarray
    y: np.ndarray | None
    report: BlockReport
    extra: pa.Table | None = None
    weight: np.ndarray | None = None
    codes: np.ndarray | None = None
    incomplete: np.ndarray | None = None

    def __setstate__(self, state: dict) -> None:
        """Unpickled (a block sent to another worker): Dask's transfer may place an array
        at an address that is not a multiple of its item size, and NumPy and BLAS take
        other code paths — with other rounding — for such data. Aligned copies keep every
        block's partial sums the same bits wherever it is folded (``lrdask.reduction``)."""
        for name, value in state.items():
            if isinstance(value, np.ndarray) and not value.flags.aligned:
                order = "F" if value.flags.f_contiguous and not value.flags.c_contiguous else "C"
                state[name] = np.require(value, requirements=["A", order])
        self.__dict__.update(state)


def load_piece(
    piece: Piece,
    fs: fsspec.AbstractFileSystem,
    encoding: Encoding,
    dtype: str = "float64",
    keep: tuple[str, ...] = (),
    *,
    drop_incomplete: bool = True,
) -> Block:
    """Read one piece's columns from Parquet and build its Block (runs on a worker)."""
    table = _read_piece(piece, fs, list(dict.fromkeys([*_columns(encoding), *keep])), encoding)
    extra = table.select(list(keep)) if keep else None
    return block_from_table(table, encoding, piece.describe(), dtype, extra, drop_incomplete)


def load_pieces(
    pieces: tuple[Piece, ...],
    fs: fsspec.AbstractFileSystem,
    encoding: Encoding,
    dtype: str = "float64",
) -> Block:
    """One Block from several small pieces (small files), so that a data set of many
    small files is folded in blocks as large as one of few big files: a kernel call per
    500-row file costs ~3× more per row than one per 65 000 rows. Each piece is read and
    copied into its rows in turn (one copy, one piece's columns in memory at a time) and
    validated on its own, so a problem is reported against the file that holds it."""
    if len(pieces) == 1:
        return load_piece(pieces[0], fs, encoding, dtype)
    total = sum(piece.num_rows for piece in pieces)
    block = _empty_block(total, encoding, dtype)
    reports, start = [], 0
    kept = np.ones(total, dtype=bool)
    for piece in pieces:
        table = _read_piece(piece, fs, _columns(encoding), encoding)
        if start + table.num_rows > total:
            break
        report, dropped = _fill_rows(block, start, table, encoding, piece.describe())
        if dropped is not None:
            kept[start : start + table.num_rows] = ~dropped
        reports.append(report)
        start += table.num_rows
    if start != total:
        raise DataError(
            f"{pieces[0].describe()} …: read {start} rows where the footers promised {total}; "
            "the files changed while training started, rerun"
        )
    block.report = merge_reports(reports)
    return _compact(block, kept)


def _columns(encoding: Encoding) -> list[str]:
    names = [*encoding.input_columns, *([encoding.label] if encoding.label else [])]
    return list(dict.fromkeys([*names, *([encoding.weight] if encoding.weight else [])]))


def merge_reports(reports: list[BlockReport]) -> BlockReport:
    """One report for a block of several sources: counts added, named after the first
    source with a problem (or the first source)."""
    bad = [r for r in reports if _has_problems(r)]
    merged = BlockReport((bad or reports)[0].source, sum(r.rows for r in reports))
    for r in reports:
        merged.positives += r.positives
        for mine, theirs in (
            (merged.bad_values, r.bad_values),
            (merged.missing_values, r.missing_values),
            (merged.skipped, r.skipped),
            (merged.imputed, r.imputed),
            (merged.unseen, r.unseen),
        ):
            for name, count in theirs.items():
                mine[name] = mine.get(name, 0) + count
        merged.bad_labels = sorted({*merged.bad_labels, *r.bad_labels}, key=str)[:5]
        merged.bad_label_rows += r.bad_label_rows
        merged.negative_weights += r.negative_weights
        merged.weight_sum += r.weight_sum
    merged.class_counts = _class_counts(reports)
    merged.class_weight_sums = _class_weight_sums(reports)
    return merged


def profile_piece(piece: Piece, fs: fsspec.AbstractFileSystem, request: ProfileRequest):
    """The profile of one piece (levels, classes, sums; runs on a worker)."""
    columns = [*request.numeric, *request.categorical, *([request.label] if request.label else [])]
    columns += [request.weight] if request.weight else []
    if request.missing != "skip" and not request.means:
        columns = [*request.categorical, *([request.label] if request.label else [])]
    table = _read_piece(piece, fs, list(dict.fromkeys(columns)), list(request.categorical))
    return profile_table(table, request)


def _read_piece(
    piece: Piece, fs: fsspec.AbstractFileSystem, columns: list[str], categorical
) -> pa.Table:
    # string categoricals are read dictionary-encoded: their levels are then looked up once
    # per distinct value of the file's dictionary, not once per row
    if isinstance(categorical, Encoding):
        categorical = [c.name for c in categorical.categorical]
    partition = dict(piece.partition)
    stored = [c for c in columns if c not in partition]
    try:
        with fs.open(piece.path, "rb") as fh:
            _check_unchanged(piece, file_identity(fs, fh, piece.path))
            parquet = pq.ParquetFile(fh, read_dictionary=_string_columns(fh, categorical))
            table = parquet.read_row_groups(list(piece.row_groups), columns=stored)
    except (OSError, pa.ArrowException) as exc:
        if isinstance(exc, FileNotFoundError) and piece.version:  # planned, deleted since
            _check_unchanged(
                piece,
                None,
                f"no file at that path on {where()}; if the driver still sees it, DATA is "
                "not at the same path on every worker: a disk they do not all share",
            )
        if type(exc).__name__ == "FileExpired":  # s3fs reads with If-Match on the ETag
            _check_unchanged(piece, None, "another object under the same key")
        raise DataError(
            f"{piece.describe()}: cannot be read ({first_line(exc)}); remove or replace the file"
        ) from None
    if table.num_rows != piece.num_rows:
        _check_unchanged(piece, None, f"{table.num_rows} rows where it had {piece.num_rows}")
    for name in columns:  # Hive partition keys: a constant column per file
        if name in partition:
            value = partition[name]
            type_ = pa.int64() if isinstance(value, int) else pa.string()
            table = table.append_column(name, pa.array([value] * table.num_rows, type_))
    return table.select(columns)


def where() -> str:
    """Where this code runs, for messages about what one host sees: "worker <address>"
    inside a Dask worker, else "this machine" (the driver, or a synchronous scheduler)."""
    from distributed import get_worker

    try:
        return f"worker {get_worker().address}"
    except ValueError:
        return "this machine"


def _check_unchanged(piece: Piece, identity: tuple[int, str] | None, what: str = "") -> None:
    """Stop when the file is not the one the job planned (another size or version, or
    ``what`` differs): its rows would not be the rows the data set's fingerprint names."""
    if identity is not None and (not piece.version or identity == (piece.size, piece.version)):
        return
    if not what:
        what = (
            f"{identity[0]} bytes, version {identity[1]}, where it had {piece.size} bytes, "
            f"version {piece.version}"
        )
    raise DataChangedError(
        f"{piece.path}: the file changed while the job ran (now {what}); the job stops "
        "without publishing a model and keeps its checkpoint: rerun it once the data set "
        "is complete"
    )


def _string_columns(fh, names: list[str]) -> list[str]:
    if not names:
        return []
    schema = pq.ParquetFile(fh).schema_arrow
    fh.seek(0)
    return [
        n
        for n in names
        if n in schema.names
        and (
            pa.types.is_string(schema.field(n).type)
            or pa.types.is_large_string(schema.field(n).type)
        )
    ]


def _has_problems(report: BlockReport) -> bool:
    return bool(
        report.bad_values
        or report.missing_values
        or report.bad_label_rows
        or report.negative_weights
    )


def block_from_table(
    table: pa.Table,
    encoding: Encoding,
    source: str,
    dtype: str = "float64",
    extra: pa.Table | None = None,
    drop_incomplete: bool = True,
) -> Block:
    """Build a Block from an Arrow table holding the encoding's columns.

    With missing="skip", rows with a missing value are dropped (``drop_incomplete``) or,
    for predictions, kept and marked in ``Block.incomplete``."""
    block = _empty_block(table.num_rows, encoding, dtype, extra)
    block.report, dropped = _fill_rows(block, 0, table, encoding, source)
    if dropped is None:
        return block
    if not drop_incomplete:
        block.incomplete = dropped
        block.report.rows = table.num_rows
        return block
    return _compact(block, ~dropped)


def _empty_block(n, encoding: Encoding, dtype, extra=None) -> Block:
    # Column-major: X·w / Xᵀ·r stream whole columns in the kernel, which is faster than
    # row-major on every size we measured.
    X = np.empty((n, encoding.n_numeric), dtype=dtype, order="F")
    codes = None
    if encoding.categorical:
        codes = np.empty((n, len(encoding.categorical)), dtype=np.int32, order="F")
    y = np.empty(n) if encoding.label is not None else None
    weights = np.empty(n) if encoding.weight is not None else None
    return Block(X, y, BlockReport("", n), extra, weights, codes)


def _compact(block: Block, kept: np.ndarray) -> Block:
    """Drop the rows not ``kept`` (missing="skip"): one copy, only when rows were dropped."""
    if kept.all():
        return block
    block.X = np.asfortranarray(block.X[kept])
    if block.codes is not None:
        block.codes = np.asfortranarray(block.codes[kept])
    if block.y is not None:
        block.y = block.y[kept]
    if block.weight is not None:
        block.weight = block.weight[kept]
    if block.extra is not None:
        block.extra = block.extra.filter(pa.array(kept))
    block.report.rows = int(kept.sum())
    return block


def _fill_rows(block: Block, start: int, table: pa.Table, encoding: Encoding, source: str):
    """Copy one source's columns into rows start.. of ``block``, encoding and validating
    as it goes; returns that source's report and (missing="skip") its incomplete rows."""
    n = table.num_rows
    rows = slice(start, start + n)
    report = BlockReport(source, n)
    dropped = None
    if encoding.missing == "skip":
        dropped = skip_mask(table, encoding.input_columns, encoding)
        if dropped.any():
            report.skipped[source] = int(dropped.sum())
        else:
            dropped = None
    for j, name in enumerate(encoding.numeric):
        values = _numeric_checks(float_values(table.column(name)), name, report, encoding, j)
        block.X[rows, j] = values
    for j, cat in enumerate(encoding.categorical):
        codes, null, unseen = encoding.codes(table.column(cat.name), j)
        if null.any() and encoding.missing == "error":
            report.missing_values[cat.name] = int(null.sum())
        if unseen:
            report.unseen[cat.name] = unseen
        block.codes[rows, j] = codes
    if encoding.label is not None:
        y, null, odd = encoding.class_index(table.column(encoding.label))
        _check_labels(y, null, odd, encoding, report, dropped)
        block.y[rows] = y
    if encoding.weight is not None:
        values = block.weight[rows]
        values[:] = float_values(table.column(encoding.weight))
        finite = np.isfinite(values)
        if dropped is not None:
            values[dropped] = 0.0
            finite |= dropped
        if not finite.all():
            _count_bad(values[~finite], encoding.weight, report, encoding)
        report.negative_weights = int(np.count_nonzero(values < 0))
        report.weight_sum = float(values[finite].sum())
        if encoding.label is not None:
            kept = finite if dropped is None else finite & ~dropped
            report.class_weight_sums = np.bincount(
                block.y[rows][kept].astype(np.intp),
                weights=values[kept],
                minlength=max(2, encoding.n_classes),
            ).tolist()
    if dropped is not None:
        report.rows = n - int(dropped.sum())
        if encoding.label is not None and report.class_counts:
            kept_y = block.y[rows][~dropped]
            report.class_counts = _bincount(kept_y, encoding.n_classes)
            report.positives = report.class_counts[1]
    return report, dropped


def _numeric_checks(values: np.ndarray, name: str, report: BlockReport, encoding, j):
    """Count (or, with missing="mean", impute) the non-finite values of one column; a
    finite sum (one fast pass) proves there are none. Returns the values, copied first if
    they had to change (Arrow's buffer may be read-only: NaN without nulls)."""
    if np.isfinite(values.sum(dtype=np.float64)):
        return values
    nan = np.isnan(values)
    inf = np.isinf(values)
    if inf.any():
        report.bad_values[name] = int(inf.sum())
    if not nan.any():
        return values
    if encoding.missing == "error":
        report.missing_values[name] = int(nan.sum())
        return values
    values = values if values.flags.writeable else values.copy()
    if encoding.missing == "mean":
        values[nan] = encoding.means[j]
        report.imputed[name] = int(nan.sum())
    else:  # skip: the row is dropped; 0 keeps the kernel's finite-sum check quiet
        values[nan] = 0.0
    return values


def _count_bad(values: np.ndarray, name: str, report: BlockReport, encoding) -> None:
    nan = int(np.isnan(values).sum())
    if len(values) - nan:
        report.bad_values[name] = len(values) - nan
    if nan:
        report.missing_values[name] = nan


def _check_labels(y, null, odd, encoding: Encoding, report: BlockReport, dropped) -> None:
    null = null if dropped is None else null & ~dropped
    if null.any():
        report.missing_values[encoding.label] = int(null.sum())
    unknown = np.isnan(y) & ~null
    if dropped is not None:
        unknown &= ~dropped
        y[dropped] = 0.0
    if unknown.any():
        report.bad_label_rows = int(unknown.sum())
        report.bad_labels = odd
    valid = ~np.isnan(y)
    y[~valid] = 0.0  # reported above; 0 keeps the arrays finite
    report.class_counts = _bincount(y[valid], encoding.n_classes)
    report.positives = report.class_counts[1]


def _bincount(y: np.ndarray, n_classes: int) -> list[int]:
    return np.bincount(y.astype(np.intp), minlength=max(2, n_classes)).tolist()


def check_reports(
    reports: list[BlockReport],
    label: str | None,
    family: str = "binomial",
    weight: str | None = None,
    training: bool = True,
    classes: tuple = (),
) -> list[int]:
    """Turn the workers' load reports into one clear error for the first problem found.

    Returns the rows per class (index = class), so the driver knows the class balance
    without a further pass. Held-out data (``training=False``) need not have every
    class."""
    rows = sum(r.rows for r in reports)
    skipped = sum(n for r in reports for n in r.skipped.values())
    if rows == 0:
        if skipped:
            raise DataError(
                f"every one of the {skipped} rows has a missing value (--missing skip); "
                "nothing is left to train on"
            )
        raise DataError("the data set has zero rows; point DATA at a non-empty data set")
    _check_bad_values(reports, label, weight, training)
    if weight is not None:
        _check_weights(reports, weight, rows)
    if label is None:
        return []
    _check_label_values(reports, label, classes)
    counts = _class_counts(reports)
    if not training:
        return counts
    if weight is not None:
        totals = _class_weight_sums(reports)
        for k, total in enumerate(totals):
            if counts[k] and not total > 0:
                name = repr(classes[k]) if len(classes) > k else str(k)
                raise DataError(
                    f"label column '{label}': the {counts[k]} row(s) of class {name} have "
                    f"total weight 0 in weight column '{weight}'; training needs every class "
                    "to weigh something (or drop the class)"
                )
    empty = [k for k, n in enumerate(counts) if n == 0]
    if empty:
        name = repr(classes[empty[0]]) if len(classes) > empty[0] else str(empty[0])
        raise DataError(
            f"label column '{label}': class {name} has no rows in all {rows} rows; "
            "training needs examples of every class"
        )
    return counts


def _check_label_values(reports, label: str, classes) -> None:
    odd = [r for r in reports if r.bad_label_rows]
    if not odd:
        return
    count = sum(r.bad_label_rows for r in odd)
    rows = sum(r.rows for r in reports)
    examples = ", ".join(repr(v) for v in sorted({v for r in odd for v in r.bad_labels}, key=str))
    known = ", ".join(repr(c) for c in classes[:10])
    raise DataError(
        f"{odd[0].source}: label column '{label}' holds {count} of {rows} rows with values "
        f"that are not classes of the model ({examples}); its classes are {known}"
    )


def _class_counts(reports: list[BlockReport]) -> list[int]:
    per_report = [r.class_counts or [r.rows - r.positives, r.positives] for r in reports]
    total = np.zeros(max(len(c) for c in per_report), dtype=np.int64)
    for counts in per_report:
        total[: len(counts)] += counts
    return total.tolist()


def class_totals(reports: list[BlockReport]) -> list[float]:
    """The total weight of each class (its row count without a weight column)."""
    return _class_weight_sums(reports) or [float(n) for n in _class_counts(reports)]


def _class_weight_sums(reports: list[BlockReport]) -> list[float]:
    sums = [r.class_weight_sums for r in reports if r.class_weight_sums]
    if not sums:
        return []
    total = np.zeros(max(len(s) for s in sums))
    for s in sums:
        total[: len(s)] += s
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


def _missing_fix(name: str, label, weight, training: bool) -> str:
    """What to do about null/NaN values in ``name``: what can actually be done there."""
    if not training:
        return (
            "the model was trained with --missing error, so it cannot read a missing value: "
            "fill or drop those rows, or retrain with --missing mean or skip"
            if name != label
            else "rows without a label cannot be evaluated: drop them"
        )
    if name == weight:
        return (
            "sample weights must be numbers: fill those rows, or pass --missing skip to drop them"
        )
    if name == label:
        return "pass --missing skip to drop those rows (a label is never imputed)"
    return (
        "pass --missing mean (impute the training mean; nulls in a categorical column "
        "become the level '(missing)') or --missing skip (drop those rows)"
    )


def _check_bad_values(reports: list[BlockReport], label=None, weight=None, training=True):
    for attr, what in (("bad_values", "infinite"), ("missing_values", "null or NaN")):
        columns: dict[str, list[BlockReport]] = {}
        for report in reports:
            for name in getattr(report, attr):
                columns.setdefault(name, []).append(report)
        if not columns:
            continue
        name, where = next(iter(columns.items()))
        count = sum(getattr(r, attr)[name] for r in where)
        rest = list(columns)[1:]
        others = f"; also in {', '.join(repr(c) for c in rest)}" if rest else ""
        if attr == "bad_values":
            fix = "replace them with finite numbers (or nulls)"
        else:
            fix = _missing_fix(name, label, weight, training)
        raise DataError(
            f"{where[0].source}: column '{name}' has {count} {what} value(s) "
            f"in {len(where)} partition(s){others}; {fix}"
        )


def summarize(reports: list[BlockReport], log, unseen: bool = True, skipped="dropped") -> None:
    """Log what the encoding did to the rows: skipped, imputed, unseen levels (at predict
    and evaluate time; in training, rows outside the kept levels are the rare ones)."""
    merged = merge_reports(reports) if reports else None
    if merged is None:
        return
    for source, count in sorted(merged.skipped.items()):
        log.warning(
            "--missing skip: %d row(s) with a missing value %s in %s", count, skipped, source
        )
    if merged.skipped:
        log.warning("--missing skip: %d row(s) %s in all", sum(merged.skipped.values()), skipped)
    for name, count in merged.imputed.items():
        log.info(
            "--missing mean: %d null/NaN value(s) of '%s' set to the training mean", count, name
        )
    for name, count in merged.unseen.items() if unseen else ():
        log.warning(
            "column '%s': %d row(s) hold a level not seen in training; scored as documented "
            "(the '(other)' level if the column has one, else no contribution)",
            name,
            count,
        )


__all__ = ["MAX_CLASSES", "Block", "BlockReport", "block_from_table", "load_piece"]
