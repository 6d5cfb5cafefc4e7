"""Input adapter for ``fit(X, y, sample_weight)``: arrays given apart become one table.

scikit-learn and dask-ml users pass the features ``X`` and the labels ``y`` as separate
arrays. This module checks them as scikit-learn does (its ``check_array``,
``column_or_1d``, ``check_classification_targets`` and ``_check_sample_weight``, with their
messages, raised as lrdask's own ``DataError``) and joins them into the one shape the rest
of lrdask reads: a table with named feature columns, a label column and a weight column.

* NumPy arrays, lists and pandas objects become an Arrow table on the driver
  (``Given.table``); ``lrdask.sources`` sends it to the workers in blocks.
* dask arrays and dask DataFrames become a dask DataFrame (``Given.frame``) whose
  partitions are read on the workers; ``y`` and ``sample_weight`` must be split into the
  same partitions (or be NumPy, which is then split to match).

Columns of an array are named ``x0, x1, …`` (scikit-learn's names for unnamed features);
a pandas or dask DataFrame keeps its own names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from lrdask.errors import DataError, DataTypeError


@dataclass
class Given:
    """``X``, ``y`` and the weights as one table (in memory) or one dask DataFrame."""

    table: object | None  # pa.Table
    frame: object | None  # dask DataFrame
    label: str
    weight: str | None
    named: bool  # the feature columns carry the user's names
    description: str


def is_array_input(X) -> bool:
    """True for inputs that carry no label column of their own: NumPy arrays, lists,
    pandas DataFrames, dask arrays and sparse matrices (a path or dask DataFrame names
    its label column with ``label=``)."""
    if isinstance(X, (str, bytes)) or hasattr(X, "__fspath__"):
        return False
    return not _is_dask_frame(X) and type(X).__name__ != "DatasetPlan"


def is_dask_input(X) -> bool:
    """A dask array or DataFrame (whose y may be given apart)."""
    return _is_dask_array(X) or _is_dask_frame(X)


def kind(X) -> str:
    """What X is, for messages."""
    if _is_dask_array(X):
        return "a dask array"
    if _is_dask_frame(X):
        return "a dask DataFrame"
    if _is_pandas_frame(X):
        return "a pandas DataFrame"
    if isinstance(X, (str, bytes)) or hasattr(X, "__fspath__"):
        return "a Parquet data set"
    return f"a {type(X).__name__}"


def as_table(X, y, sample_weight=None, *, missing: str = "error") -> Given:
    """``X`` with ``y`` (and ``sample_weight``) as one table. Raises DataError (a
    ValueError) or DataTypeError (a TypeError) with scikit-learn's message for each
    problem: a sparse or complex X, NaN/inf (NaN is allowed with ``missing`` 'mean' or
    'skip'), no rows, lengths that differ, a continuous y."""
    if _is_dask_array(X) or _is_dask_frame(X) or _is_dask_array(y) or _is_dask_series(y):
        return _as_frame(X, y, sample_weight)
    return _as_arrow(X, y, sample_weight, missing)


def _as_arrow(X, y, sample_weight, missing: str) -> Given:
    import pyarrow as pa
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import _check_sample_weight, check_consistent_length

    description = "the DataFrame" if _is_pandas_frame(X) else "the X array"
    pandas = _is_pandas_frame(X)
    named = pandas and all(isinstance(c, str) for c in X.columns)
    if pandas and not _all_numeric(X):
        names = _frame_names(X)
        try:
            table = pa.Table.from_pandas(X, preserve_index=False)
        except (pa.ArrowException, TypeError, ValueError) as exc:
            raise DataError(f"the DataFrame's columns cannot be read as Arrow ({exc})") from None
        table = table.rename_columns(names)
        n = table.num_rows
    else:
        names = _frame_names(X) if pandas else None
        values = _checked(
            _sklearn_check_array,
            X,
            ensure_all_finite="allow-nan" if missing in ("mean", "skip") else True,
        )
        if names is None:
            names = [f"x{j}" for j in range(values.shape[1])]
        table = pa.table({name: values[:, j] for j, name in enumerate(names)})
        n = values.shape[0]
    labels = _checked(_labels, y)
    _checked(check_classification_targets, labels)
    _checked(check_consistent_length, np.empty((n, 0)), labels)
    columns = {name: table.column(name) for name in names}
    label = _free_name(y.name if _is_pandas_series(y) else None, "y", names)
    columns[label] = _label_array(labels)
    weight = None
    if sample_weight is not None:
        weights = _checked(_check_sample_weight, sample_weight, np.empty((n, 0)))
        weight = _free_name(None, "sample_weight", [*names, label])
        columns[weight] = pa.array(np.asarray(weights, dtype=np.float64))
    return Given(pa.table(columns), None, label, weight, named, description)


def _sklearn_check_array(X, ensure_all_finite):
    from sklearn.utils.validation import check_array

    return check_array(
        X,
        dtype=np.float64,
        ensure_all_finite=ensure_all_finite,
        ensure_2d=True,
        ensure_min_samples=1,
        ensure_min_features=1,
        input_name="X",
    )


def _labels(y) -> np.ndarray:
    from sklearn.utils.validation import _assert_all_finite, column_or_1d

    if y is None:
        raise ValueError("requires y to be passed, but the target y is None")
    labels = column_or_1d(y, warn=True)
    if labels.dtype.kind in "fc":
        _assert_all_finite(labels, input_name="y")
    if labels.dtype.kind == "O":
        missing = sum(v is None or (isinstance(v, float) and v != v) for v in labels)
        if missing:
            raise ValueError(
                f"y has {missing} missing label(s) (None or NaN): drop those rows, or give "
                "them a label"
            )
        types = sorted({_label_kind(v) for v in labels})
        if len(types) > 1:
            raise ValueError(
                f"y mixes {' and '.join(types)} labels: make them one type (all strings, "
                "e.g. y.astype(str), or all numbers)"
            )
    return labels


def _label_kind(value) -> str:
    if isinstance(value, str):
        return "string"
    if isinstance(value, (bool, np.bool_)):
        return "boolean"
    if isinstance(value, (int, float, np.number)):
        return "number"
    return type(value).__name__


def _label_array(labels: np.ndarray):
    """The labels as an Arrow column: numbers and booleans keep their type, anything else
    (strings, objects) becomes text, which lrdask's classes keep as given."""
    import pyarrow as pa

    if labels.dtype.kind in "biuf":
        return pa.array(labels)
    if labels.dtype.kind == "U" or all(isinstance(v, str) for v in labels):
        return pa.array(labels.astype(object), type=pa.string())
    try:
        return pa.array(labels)
    except (pa.ArrowException, TypeError, ValueError) as exc:
        raise DataTypeError(f"y cannot be read as labels ({exc})") from None


def _checked(function, *args, **kwargs):
    """Call one of scikit-learn's validation functions; its error becomes ours, with its
    message (a ValueError stays a ValueError, a TypeError a TypeError)."""
    from scipy import sparse

    if args and sparse.issparse(args[0]):
        raise DataError(
            "sparse input is not supported: lrdask reads dense features; pass X.toarray() "
            "or a Parquet data set"
        )
    try:
        return function(*args, **kwargs)
    except TypeError as exc:
        raise DataTypeError(_one_line(exc)) from None
    except ValueError as exc:
        raise DataError(_one_line(exc)) from None


def _one_line(exc: Exception) -> str:
    """scikit-learn's message on one line, without the dump of the array it quotes
    ("array=[...]", or lines that are rows of an array)."""
    text = re.sub(r"array=\[.*?\]\.?", "", str(exc), flags=re.DOTALL)
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("[")]
    return " ".join(" ".join(lines).split())


def _frame_names(X) -> list[str] | None:
    """A pandas DataFrame's column names if they are all strings (scikit-learn's rule for
    feature_names_in_), else x0, x1, …"""
    columns = list(X.columns)
    if all(isinstance(c, str) for c in columns):
        return columns
    return [f"x{j}" for j in range(len(columns))]


def _all_numeric(X) -> bool:
    import pandas as pd

    return all(
        pd.api.types.is_numeric_dtype(t) and not isinstance(t, pd.CategoricalDtype)
        for t in X.dtypes
    )


def _free_name(preferred, fallback: str, taken) -> str:
    """A column name for y or the weights that no feature has."""
    for name in (preferred, fallback, f"__{fallback}__"):
        if isinstance(name, str) and name and name not in taken:
            return name
    raise DataError(f"X has columns named {fallback!r} and '__{fallback}__'; rename one")


# ---- dask inputs ------------------------------------------------------------------------
def _as_frame(X, y, sample_weight) -> Given:
    """dask X (array or DataFrame) with y and weights split into X's partitions."""
    import dask.dataframe as dd

    if _is_dask_array(X):
        if X.ndim != 2:
            raise DataError(f"Expected a 2D dask array for X, got {X.ndim}D; reshape it")
        if X.dtype.kind not in "biuf":
            raise DataTypeError(f"X has dtype {X.dtype}; a dask array X must hold numbers")
        if any(np.isnan(c) for c in X.chunks[0]):
            X = X.compute_chunk_sizes()
        names = [f"x{j}" for j in range(X.shape[1])]
        frame = dd.from_dask_array(X.rechunk({1: -1}).astype(np.float64), columns=names)
        lengths = X.chunks[0]
        named, description = False, "the dask array X"
    elif _is_dask_frame(X):
        frame, names, named, description = X, list(X.columns), True, "the dask DataFrame"
        if not all(isinstance(c, str) for c in names):
            raise DataError("the dask DataFrame's column names must be strings")
        lengths = None
    else:
        raise DataError(f"X is {kind(X)} but y is a dask collection: pass both as dask")
    label = _free_name(y.name if _is_dask_series(y) else None, "y", names)
    frame = _joined(frame, _dask_column(y, frame, lengths, "y"), label)
    weight = None
    if sample_weight is not None:
        weight = _free_name(None, "sample_weight", [*names, label])
        weights = sample_weight
        if not (_is_dask_array(weights) or _is_dask_series(weights)):
            weights = np.asarray(weights, dtype=np.float64)
        frame = _joined(frame, _dask_column(weights, frame, lengths, "sample_weight"), weight)
    return Given(None, frame, label, weight, named, description)


def _dask_column(values, frame, lengths, what: str):
    """``values`` as a dask Series split like ``frame``'s partitions."""
    import dask.array as da
    import dask.dataframe as dd

    if _is_dask_series(values):
        column = values
    else:
        if not _is_dask_array(values):
            values = np.asarray(values)
            if lengths is None:
                lengths = tuple(int(n) for n in frame.map_partitions(len).compute())
            if values.ndim != 1 or len(values) != sum(lengths):
                raise DataError(f"{what} has shape {values.shape}, but X has {sum(lengths)} rows")
            values = da.from_array(values, chunks=(tuple(lengths),))
        if values.ndim != 1:
            raise DataError(f"{what} must be 1-dimensional, got shape {values.shape}")
        if lengths is not None and not any(np.isnan(c) for c in values.chunks[0]):
            if sum(values.chunks[0]) != sum(lengths):
                raise DataError(f"X has {sum(lengths)} rows but {what} has {sum(values.chunks[0])}")
            values = values.rechunk((tuple(lengths),))
        column = dd.from_dask_array(values)
    if column.npartitions != frame.npartitions:
        raise DataError(
            f"X has {frame.npartitions} partitions but {what} has {column.npartitions}: "
            f"split them alike, e.g. {what} = {what}.repartition(npartitions="
            f"{frame.npartitions}) or build both from one DataFrame"
        )
    return column


def _joined(frame, column, name: str):
    """``frame`` with ``column`` added partition by partition (lengths checked). Text
    labels (object or str dtype) become pandas' Arrow-backed strings, so that the
    schema read off the empty ``meta`` says "string", not "null"."""
    import pandas as pd

    dtype = column.dtype
    if isinstance(dtype, pd.StringDtype) or getattr(dtype, "kind", "") in ("O", "U"):
        dtype = pd.StringDtype("pyarrow")
    meta = frame._meta.assign(**{name: pd.Series([], dtype=dtype)})
    return frame.map_partitions(_add_column, column, name, dtype, align_dataframes=False, meta=meta)


def _add_column(part, column, name: str, dtype):
    import pandas as pd

    if len(part) != len(column):
        raise DataError(
            f"a partition of X has {len(part)} rows but the matching one of {name!r} has "
            f"{len(column)}: split X and {name} into the same partitions"
        )
    return part.assign(**{name: pd.Series(np.asarray(column), index=part.index, dtype=dtype)})


def _is_pandas_frame(X) -> bool:
    import pandas as pd

    return isinstance(X, pd.DataFrame)


def _is_dask_frame(X) -> bool:
    import dask.dataframe as dd

    return isinstance(X, dd.DataFrame)


def _is_pandas_series(y) -> bool:
    import pandas as pd

    return isinstance(y, pd.Series)


def _is_dask_series(y) -> bool:
    import dask.dataframe as dd

    return isinstance(y, dd.Series)


def _is_dask_array(X) -> bool:
    import dask.array as da

    return isinstance(X, da.Array)
