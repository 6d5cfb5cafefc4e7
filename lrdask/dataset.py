"""Planning a Parquet dataset on the driver: which files, which columns, which partitions.

Only Parquet footers are read here (schemas and row-group sizes), never the rows. The
result is a ``DatasetPlan``: the feature and label columns, checked against every file's
schema, and a list of ``Piece`` s (a file and a run of its row groups) that the workers
load. Any fsspec URL works; ``storage_options`` go to the filesystem.
"""

from __future__ import annotations

import contextlib
import difflib
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from urllib.parse import unquote

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from lrdask.encoding import is_label_type, is_level_type, is_numeric_type, is_string_type
from lrdask.errors import DataError

log = logging.getLogger("lrdask")

# A piece holds about this many feature values (8 bytes each in float64): 16 Mi values = 128 MiB.
TARGET_PIECE_VALUES = 16 * 1024 * 1024
# Small pieces are grouped into blocks of at least this many rows (when there are enough):
# a kernel call per 500-row file costs ~3× more per row than one per 65 000 rows.
BLOCK_ENOUGH_ROWS = 65_536


@dataclass(frozen=True)
class Piece:
    """One partition: a run of row groups of one file, and the file's Hive partition values
    (``ds=2026-10-01/`` in its path), which the reader adds as constant columns."""

    path: str
    row_groups: tuple[int, ...]
    num_rows: int
    partition: tuple[tuple[str, object], ...] = ()
    size: int = 0  # the file's bytes and version when planned: checked at every read
    version: str = ""

    def describe(self) -> str:
        first, last = self.row_groups[0], self.row_groups[-1]
        groups = f"row group {first}" if first == last else f"row groups {first}-{last}"
        return f"{self.path} ({groups})"


@dataclass(frozen=True)
class FileInfo:
    path: str
    schema: pa.Schema
    row_group_rows: tuple[int, ...]
    size: int = 0
    version: str = ""  # ETag or modification time: changes when the file is rewritten
    partition: tuple[tuple[str, object], ...] = ()  # Hive keys of its directories, typed

    @property
    def num_rows(self) -> int:
        return sum(self.row_group_rows)


@dataclass
class DatasetPlan:
    """What to load: the columns, the pieces and the filesystem they live on."""

    url: str
    fs: fsspec.AbstractFileSystem
    features: list[str]
    label: str | None
    pieces: list[Piece]
    files: list[FileInfo] = field(repr=False)
    weight: str | None = None
    target_values: int = TARGET_PIECE_VALUES
    categorical: list[str] = field(default_factory=list)

    @property
    def numeric(self) -> list[str]:
        return [name for name in self.features if name not in self.categorical]

    @property
    def num_rows(self) -> int:
        return sum(p.num_rows for p in self.pieces)

    def directory_summary(self) -> list[tuple[str, int, int]]:
        """(top-level directory, files, rows) under the data set's root, sorted: what the
        log shows so that a missing day is seen."""
        root = self.fs._strip_protocol(self.url).rstrip("/")
        counts: dict[str, list[int]] = {}
        for info in self.files:
            rel = info.path[len(root) :].strip("/")
            top = rel.split("/", 1)[0] if "/" in rel else "."
            entry = counts.setdefault(top, [0, 0])
            entry[0] += 1
            entry[1] += info.num_rows
        return [(name, n, rows) for name, (n, rows) in sorted(counts.items())]

    def blocks(self) -> list[tuple[Piece, ...]]:
        """The pieces grouped into what the workers hold: small pieces are merged until a
        block has ``BLOCK_ENOUGH_ROWS`` (past which the kernel's cost per row is flat), up to
        a piece's target size. Defined by the data alone, never by the cluster: the blocks
        and their order fix the arithmetic of every pass (``lrdask.reduction``)."""
        target = self.target_values // max(1, len(self.features))
        return group_pieces(self.pieces, max(1, target), BLOCK_ENOUGH_ROWS)

    def fingerprint_items(self) -> list[tuple[str, int, int, str]]:
        """(path, rows, bytes, version) per file: identifies the data for checkpoints and
        reruns without reading it."""
        return [(f.path, f.num_rows, f.size, f.version) for f in self.files]


def plan_dataset(
    url: str,
    label: str | None,
    features: list[str] | None = None,
    exclude: list[str] | None = None,
    storage_options: dict | None = None,
    target_piece_values: int | None = None,
    weight: str | None = None,
    categorical: list[str] | str | None = None,
) -> DatasetPlan:
    """Find the Parquet files under ``url``, check their schemas and cut them into pieces.

    With ``features=None`` every column except the label, the ``weight`` column and
    ``exclude`` is a feature. A feature is numeric (integer, float, boolean, decimal) or
    categorical: named in ``categorical``, or any string/dictionary column with
    ``categorical="auto"``. Any other column is an error that says what to do, never
    silently dropped.
    """
    _check_option_lists(features, exclude, categorical)
    fs, root = fsspec.core.url_to_fs(url, **(storage_options or {}))
    files = _with_partitions(_read_footers(fs, _list_data_files(fs, root, url)), root)
    reference = _unified_reference(files)
    keys = [key for key, _ in reference.partition]
    if features is None:  # partition keys are columns, but features only when named
        named = categorical if isinstance(categorical, (list, tuple)) else []
        left_out = [k for k in keys if k not in [*(exclude or []), *named]]
        if left_out:
            log.info(
                "partition keys %s are columns, not features unless named in --features, "
                "--categorical or --weight-col",
                ", ".join(left_out),
            )
        exclude = [*(exclude or []), *left_out]
        _check_same_columns(files, [label, weight, *exclude])
    wanted = [*(features or []), *([label] if label else []), *([weight] if weight else [])]
    for name in reference.schema.names:
        used = name in wanted or (features is None and name not in (exclude or []))
        if used and reference.schema.names.count(name) > 1:
            _check_columns(reference, [name], reference)
    if weight is not None:
        _require_column(reference.schema.names, weight, "weight", reference.path)
        if not _is_numeric(reference.schema.field(weight).type):
            raise DataError(
                f"{reference.path}: weight column '{weight}' has type "
                f"{reference.schema.field(weight).type}; sample weights must be numbers ≥ 0"
            )
        if features is not None and weight in features:
            raise DataError(f"the weight column '{weight}' is also listed as a feature")
    dropped = [*(exclude or []), *([weight] if weight else [])]
    if categorical not in (None, "auto"):
        for name in categorical:
            _require_column(reference.schema.names, name, "categorical", reference.path)
    chosen, cats = _choose_features(
        reference.schema, reference.path, label, features, dropped, categorical
    )
    needed = chosen + ([label] if label else []) + ([weight] if weight else [])
    for info in files:
        _check_columns(info, needed, reference, cats, label)
    target = target_piece_values or TARGET_PIECE_VALUES
    rows_per_piece = max(1, target // max(1, len(chosen)))
    pieces = [p for info in files for p in _cut_pieces(info, rows_per_piece)]
    if not pieces:
        raise DataError(
            f"{url}: the data set has zero rows in {len(files)} file(s); "
            "point DATA at a non-empty data set"
        )
    return DatasetPlan(url, fs, chosen, label, pieces, files, weight, target, cats)


def _check_option_lists(features, exclude, categorical) -> None:
    """Column lists that name a column twice, or both use and exclude it, are errors: they
    would double a coefficient or quietly not do what was asked."""
    for flag, names in (
        ("--features", features),
        ("--exclude", exclude),
        ("--categorical", categorical if isinstance(categorical, (list, tuple)) else None),
    ):
        seen = set()
        for name in names or []:
            if name in seen:
                raise DataError(f"{flag} names column '{name}' twice; name it once")
            seen.add(name)
    if features is not None and exclude:
        both = [name for name in exclude if name in features]
        if both:
            raise DataError(
                f"column '{both[0]}' is both in --features and in --exclude; --exclude is for "
                "leaving columns out when --features is not given"
            )
        log.warning(
            "--exclude %s has no effect: --features names the columns to use", ",".join(exclude)
        )


def _list_data_files(fs: fsspec.AbstractFileSystem, root: str, url: str) -> list[str]:
    """Every file under ``root`` whose path has no part starting with '_' or '.', whatever
    its extension (Hive writes ``000000_0``): the convention of Spark and pyarrow. A file
    that is not Parquet is then an error naming it, never skipped."""
    try:
        if not fs.exists(root):
            raise DataError(f"{url}: no such file or directory; check the data path")
        if fs.isfile(root):
            return [root]
        every = sorted(p for p in fs.find(root) if not _hidden(p, root))
    except OSError as exc:
        raise DataError(
            f"{url}: cannot be listed ({first_line(exc)}); check the path and "
            "its permissions or credentials"
        ) from None
    if every:
        return every
    raise DataError(f"{url}: the directory is empty; point DATA at a Parquet data set")


HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"


def _with_partitions(files: list[FileInfo], root: str) -> list[FileInfo]:
    """Each file's Hive partition values (``key=value`` directories), typed as pyarrow's
    and Spark's inference does: int64 when every value of a key is an integer, else string
    (``__HIVE_DEFAULT_PARTITION__`` is null). Every file must have the same keys in the
    same order, and a key must not also be a column in the files."""
    raw = []
    for info in files:
        rel = info.path[len(root.rstrip("/")) :].strip("/")
        parts = [p.split("=", 1) for p in rel.split("/")[:-1] if "=" in p]
        raw.append([(unquote(k), unquote(v)) for k, v in parts])  # Hive escapes '/', '%', …
    keys = [k for k, _ in raw[0]]
    for info, pairs in zip(files, raw, strict=True):
        if [k for k, _ in pairs] != keys:
            raise DataError(
                f"{info.path}: its partition directories ({_show_keys(pairs)}) differ from "
                f"{files[0].path}'s ({_show_keys(raw[0])}); every file must sit under the "
                "same partition keys"
            )
    if not keys:
        return files
    types = []
    for j in range(len(keys)):
        values = [pairs[j][1] for pairs in raw if pairs[j][1] != HIVE_NULL]
        integer = bool(values) and all(_is_int(v) for v in values)
        types.append(pa.int64() if integer else pa.string())
    out = []
    for info, pairs in zip(files, raw, strict=True):
        for key, _ in pairs:
            if key in info.schema.names:
                raise DataError(
                    f"{info.path}: partition key '{key}' is also a column in the file; "
                    "rename one of them"
                )
        typed = tuple(
            (key, None if v == HIVE_NULL else (int(v) if t == pa.int64() else v))
            for (key, v), t in zip(pairs, types, strict=True)
        )
        schema = info.schema
        for key, type_ in zip(keys, types, strict=True):
            schema = schema.append(pa.field(key, type_))
        out.append(FileInfo(info.path, schema, info.row_group_rows, info.size, info.version, typed))
    return out


def _unified_reference(files: list[FileInfo]) -> FileInfo:
    """The first file, with each column that it holds only as Arrow's ``null`` type (a file
    in which an optional column is empty) typed as in the first file that has values for
    it: pyarrow's schema unification does the same."""
    reference = files[0]
    schema = reference.schema
    for i, field_ in enumerate(schema):
        if pa.types.is_null(field_.type):
            for info in files[1:]:
                if field_.name in info.schema.names:
                    other = info.schema.field(field_.name).type
                    if not pa.types.is_null(other):
                        schema = schema.set(i, pa.field(field_.name, other))
                        break
    if schema is reference.schema:
        return reference
    return FileInfo(
        reference.path,
        schema,
        reference.row_group_rows,
        reference.size,
        reference.version,
        reference.partition,
    )


def _is_int(text: str) -> bool:
    """An integer written as one: '0150' (a zip code) stays a string, as it would lose its
    leading zero."""
    try:
        int(text)
    except ValueError:
        return False
    digits = text.lstrip("+-")
    return not (len(digits) > 1 and digits.startswith("0"))


def _show_keys(pairs) -> str:
    return "/".join(k for k, _ in pairs) or "none"


def _check_same_columns(files: list[FileInfo], ignored: list) -> None:
    """Without --features every column is used, so every file must have the same columns:
    a column in one file but not another is an error whichever order they are listed in."""
    reference = files[0]
    want = set(reference.schema.names) - set(ignored)
    for info in files[1:]:
        extra = sorted(set(info.schema.names) - set(ignored) - want)
        if extra:
            raise DataError(
                f"{info.path}: column '{extra[0]}' is in this file but not in "
                f"{reference.path}; all files must share the schema (or list the columns to "
                "use with --features)"
            )


def _hidden(path: str, root: str) -> bool:
    """Files and folders starting with '_' or '.' are metadata (_SUCCESS, .crc), not data."""
    rel = path[len(root) :].strip("/")
    return any(part.startswith(("_", ".")) for part in rel.split("/"))


def _read_footers(fs: fsspec.AbstractFileSystem, paths: list[str]) -> list[FileInfo]:
    with ThreadPoolExecutor(max_workers=16) as pool:
        return list(pool.map(lambda p: _read_footer(fs, p), paths))


def _read_footer(fs: fsspec.AbstractFileSystem, path: str) -> FileInfo:
    try:
        with fs.open(path, "rb") as fh:
            size, version = file_identity(fs, fh, path)
            meta = pq.ParquetFile(fh).metadata
            schema = meta.schema.to_arrow_schema()
            rows = tuple(meta.row_group(i).num_rows for i in range(meta.num_row_groups))
    except (OSError, pa.ArrowException) as exc:
        raise DataError(
            f"{path}: not a readable Parquet file ({first_line(exc)}); every file whose "
            "name does not start with '_' or '.' is data: remove, replace or rename it"
        ) from None
    return FileInfo(path, schema, rows, size, version)


def file_identity(fs: fsspec.AbstractFileSystem, fh, path: str) -> tuple[int, str]:
    """(bytes, version) of the file that ``fh`` has open — its ETag on an object store,
    its modification time on a disk. Taken from the open handle where the filesystem
    allows (``os.fstat``; s3fs's ``details``, fetched when the file was opened), so it
    describes the bytes being read, not whatever the path names a moment later."""
    info = None
    if isinstance(fs, LocalFileSystem):
        with contextlib.suppress(AttributeError, OSError, ValueError):
            st = os.fstat(fh.fileno())
            info = {"size": st.st_size, "mtime": st.st_mtime}
    if info is None:
        info = getattr(fh, "details", None) or fs.info(path)
    version = next(
        (str(info[k]) for k in ("ETag", "etag", "mtime", "LastModified") if k in info), ""
    )
    return int(info.get("size") or 0), version


def _choose_features(
    schema: pa.Schema,
    path: str,
    label: str | None,
    features: list[str] | None,
    exclude: list[str],
    categorical: list[str] | str | None = None,
) -> tuple[list[str], list[str]]:
    """The feature columns and, among them, the categorical ones."""
    names = schema.names
    if label is not None:
        _require_column(names, label, "label", path)
        _check_label_type(schema.field(label), path)
    for name in exclude:
        _require_column(names, name, "excluded", path)
    if features is None:
        features = [n for n in names if n != label and n not in exclude]
        if not features:
            raise DataError(f"{path}: no feature columns besides the label '{label}'")
        how = "exclude it with --exclude {name} or list the features with --features"
    else:
        if not features:
            raise DataError("--features is empty; name at least one column")
        for name in features:
            _require_column(names, name, "feature", path)
        if label in features:
            raise DataError(f"the label column '{label}' is also listed as a feature")
        how = "remove it from --features"
    if categorical == "auto":
        cats = [n for n in features if is_string_type(schema.field(n).type)]
    else:
        cats = list(categorical or [])
        for name in cats:
            if name not in features:
                raise DataError(
                    f"categorical column '{name}' is not among the features "
                    f"({', '.join(features[:10])}); add it to --features"
                )
    for name in features:
        _check_feature_type(schema.field(name), path, name in cats, how.format(name=name))
    return list(features), cats


def _check_feature_type(field_: pa.Field, path: str, categorical: bool, how: str) -> None:
    type_, name = field_.type, field_.name
    if categorical:
        if not is_level_type(type_):
            raise DataError(
                f"{path}: categorical column '{name}' has type {type_}; categorical columns "
                "must hold strings, integers or booleans (or a dictionary of them)"
            )
        return
    if is_numeric_type(type_):
        return
    if is_level_type(type_):
        raise DataError(
            f"{path}: feature column '{name}' has type {type_}, not a number; pass "
            f"--categorical {name} (or --categorical auto) to use its values as levels, "
            f"or {how}"
        )
    if pa.types.is_temporal(type_):
        raise DataError(
            f"{path}: feature column '{name}' has type {type_}; dates and times are not "
            f"features as they are: derive numeric features from it (a day of week, an age "
            f"in days) in the data, or {how}"
        )
    raise DataError(f"{path}: feature column '{name}' has type {type_}, not a number; {how}")


def _require_column(names: list[str], name: str, role: str, path: str) -> None:
    if name in names:
        return
    lowered = {n.lower(): n for n in names}
    close = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.5)
    shown = ", ".join(names[:20]) + (", ..." if len(names) > 20 else "")
    hint = (
        f"did you mean '{lowered[close[0]]}'? (columns: {shown})"
        if close
        else f"columns are: {shown}"
    )
    raise DataError(f"{path}: {role} column '{name}' not found; {hint}")


def _check_label_type(field_: pa.Field, path: str) -> None:
    if not is_label_type(field_.type):
        raise DataError(
            f"{path}: label column '{field_.name}' has type {field_.type}; a label holds "
            "class values: numbers, booleans or strings"
        )


def _check_columns(
    info: FileInfo, needed: list[str], reference: FileInfo, categorical=(), label=None
) -> None:
    """Every file must have every needed column, of the same kind: numeric (int, float,
    decimal alike), levels for categorical columns, class values for the label."""
    names = info.schema.names
    for name in needed:
        if names.count(name) > 1:
            raise DataError(
                f"{info.path}: column '{name}' appears {names.count(name)} times in this "
                "file; rename or drop the duplicates (a join's output?)"
            )
        if name not in names:
            raise DataError(
                f"{info.path}: column '{name}' is missing in this file but present in "
                f"{reference.path}; all files must share the schema"
            )
        got, want = info.schema.field(name).type, reference.schema.field(name).type
        if pa.types.is_null(got):  # no values in this file: all null, read as such
            continue
        if name in categorical or name == label:
            same = _kind(got) == _kind(want) and (is_level_type(got) or name == label)
        else:
            same = _is_numeric(got)
        if not same:
            raise DataError(
                f"{info.path}: column '{name}' has type {got} here but {want} in "
                f"{reference.path}; all files must share the schema"
            )


def _kind(type_: pa.DataType) -> str:
    """What a column's values are, whatever their width or encoding."""
    if pa.types.is_dictionary(type_):
        type_ = type_.value_type
    if is_string_type(type_):
        return "string"
    if pa.types.is_boolean(type_):
        return "bool"
    if is_numeric_type(type_):
        return "number"
    return str(type_)


def _is_numeric(type_: pa.DataType) -> bool:
    return is_numeric_type(type_)


def _cut_pieces(info: FileInfo, rows_per_piece: int) -> list[Piece]:
    """Consecutive row groups of one file, grouped until a piece reaches rows_per_piece."""
    pieces, groups, rows = [], [], 0
    for index, n in enumerate(info.row_group_rows):
        if n == 0:
            continue
        if groups and rows + n > rows_per_piece:
            pieces.append(_piece(info, groups, rows))
            groups, rows = [], 0
        groups.append(index)
        rows += n
    if groups:
        pieces.append(_piece(info, groups, rows))
    return pieces


def _piece(info: FileInfo, groups: list[int], rows: int) -> Piece:
    return Piece(info.path, tuple(groups), rows, info.partition, info.size, info.version)


def group_pieces(
    pieces: list[Piece], rows_per_block: int, enough_rows: int | None = None
) -> list[tuple[Piece, ...]]:
    """Consecutive pieces merged into blocks of at most ``rows_per_block`` rows, each closed
    as soon as it has ``enough_rows`` (default: the maximum); a piece that is already that
    large stays alone. Many small files, fewer and larger blocks."""
    enough = min(rows_per_block, enough_rows or rows_per_block)
    groups: list[tuple[Piece, ...]] = []
    current: list[Piece] = []
    rows = 0
    for piece in pieces:
        if current and (rows >= enough or rows + piece.num_rows > rows_per_block):
            groups.append(tuple(current))
            current, rows = [], 0
        current.append(piece)
        rows += piece.num_rows
    if current:
        groups.append(tuple(current))
    return groups


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
