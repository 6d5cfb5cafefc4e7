"""Input adapters: every kind of training or scoring input becomes the same thing.

A Parquet path/URL (or a ``DatasetPlan``), a dask DataFrame, and arrays given as ``X`` and
``y`` (NumPy, pandas, dask arrays and Series; ``lrdask.arrays``) each become a
``TrainingSource``: its feature columns, its identity, how to run the profile pass and how
to persist its blocks, all through the one loader (``lrdask.loading``) and encoding
(``lrdask.encoding``). For scoring, a Parquet path, a pandas or a dask DataFrame become
class probabilities the same way. The estimator asks for a source; it does not branch on
input types itself.
"""

from __future__ import annotations

import hashlib
import logging
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from lrdask.dataset import DatasetPlan, _check_option_lists, _choose_features, plan_dataset
from lrdask.errors import ConfigError, DataError
from lrdask.loading import block_from_table, check_reports
from lrdask.scheduling import PersistedBlocks, StreamedPieces, persist_plan, profile_plan
from lrdask.sums import merge_all

log = logging.getLogger("lrdask")


@dataclass
class TrainingSource:
    """Training data before it is loaded: its features, identity, how to profile and
    how to persist it."""

    features: list[str]
    categorical: list[str]
    description: str
    data_items: list
    profile: Callable[..., object]
    persist: Callable[..., PersistedBlocks | StreamedPieces]
    label: str
    weight: str | None = None
    named: bool = True  # the columns have the user's names (not x0, x1, ... of an array)


def training_source(
    data,
    label,
    features,
    exclude,
    storage_options,
    weight,
    categorical=None,
    *,
    y=None,
    sample_weight=None,
    missing: str = "error",
) -> TrainingSource:
    """The source for ``fit``'s inputs: ``data`` a Parquet path/URL, a ``DatasetPlan`` or a
    dask DataFrame holding the ``label`` column; or ``X`` arrays with ``y`` (and
    ``sample_weight``) given apart (``lrdask.arrays``). Raises DataError/ConfigError."""
    from lrdask import arrays

    if not isinstance(data, DatasetPlan):  # plan_dataset checks them for a path
        _check_option_lists(features, exclude, categorical)
    if y is not None and not arrays.is_array_input(data) and not arrays.is_dask_input(data):
        raise ConfigError(
            f"X is {arrays.kind(data)}: name its label column with label= (or y='column'); "
            "labels given as values (y=array) go with array or DataFrame X"
        )
    if weight is not None and y is not None:  # weight_col with X and y given apart
        if not (_is_pandas_frame(data) or _is_dask_frame(data)) or weight not in data.columns:
            raise ConfigError(
                f"weight_col={weight!r} names a column of X, and {arrays.kind(data)} X has no "
                "such column; pass the weights as sample_weight="
            )
        if sample_weight is not None:
            raise ConfigError("pass either weight_col or sample_weight, not both")
        sample_weight, data, weight = data[weight], data.drop(columns=weight), None
    if y is None and label is not None and _is_pandas_frame(data):  # columns of a DataFrame
        if label not in data.columns:
            raise DataError(f"the DataFrame has no label column {label!r}")
        y, data = data[label], data.drop(columns=label)
        if weight is not None:
            if weight not in data.columns:
                raise DataError(f"the DataFrame has no weight column {weight!r}")
            if sample_weight is not None:
                raise ConfigError("pass either weight_col or sample_weight, not both")
            sample_weight, data, weight = data[weight], data.drop(columns=weight), None
    if y is None and sample_weight is not None and not arrays.is_array_input(data):
        raise ConfigError(
            f"sample_weight goes with arrays X and y; {arrays.kind(data)} names its weight "
            f"column with weight_col= (got sample_weight={_short(sample_weight)})"
        )
    if y is not None or sample_weight is not None or arrays.is_array_input(data):
        if y is None:
            raise DataError(
                f"{arrays.kind(data)} X needs y: this estimator requires y to be passed, but "
                "the target y is None (or pass label= naming a column of a DataFrame)"
            )
        if weight is not None and sample_weight is not None:
            raise ConfigError("pass either weight_col or sample_weight, not both")
        given = arrays.as_table(data, y, sample_weight, missing=missing)
        if given.frame is not None:  # dask inputs: the table stays on the workers
            source = training_source(
                given.frame, given.label, features, exclude, None, given.weight, categorical
            )
        else:
            source = _table_source(given.table, given, features, exclude, categorical)
        source.weight, source.named = given.weight, given.named
        return source
    if isinstance(data, (str, bytes)) or hasattr(data, "__fspath__"):
        url = str(data.__fspath__() if hasattr(data, "__fspath__") else data)
        data = plan_dataset(
            url,
            label,
            features,
            exclude,
            storage_options,
            weight=weight,
            categorical=categorical,
        )
    if isinstance(data, DatasetPlan):
        plan = data
        if plan.weight != weight:
            raise ConfigError(f"the data plan has weight column {plan.weight!r}, not {weight!r}")
        return TrainingSource(
            plan.features,
            plan.categorical,
            plan.url,
            plan.fingerprint_items(),
            lambda client, request, timeout: profile_plan(client, plan, request, timeout),
            lambda client, encoding, dtype, timeout, cache: persist_plan(
                client, plan, encoding, dtype, timeout, cache
            ),
            label,
            weight,
        )
    if _is_dask_frame(data):
        import dask.base

        frame, dropped = data, [*(exclude or []), *([weight] if weight else [])]
        schema = _frame_schema(frame)
        chosen, cats = _choose_features(
            schema, "the DataFrame", label, features, dropped, categorical
        )
        columns = list(dict.fromkeys([*chosen, label, *([weight] if weight else [])]))
        return TrainingSource(
            chosen,
            cats,
            "dask DataFrame",
            [dask.base.tokenize(frame)],
            lambda client, request, timeout: _profile_frame(client, frame[columns], request),
            lambda client, encoding, dtype, timeout, cache: _persist_frame(
                client, frame[columns], encoding, dtype, timeout
            ),
            label,
            weight,
        )
    raise DataError(
        "fit() takes X as a NumPy array, a pandas or dask DataFrame, a dask array or a "
        f"Parquet path/URL, not {type(data).__name__}"
    )


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _table_source(table, given, features, exclude, categorical) -> TrainingSource:
    """Arrays held by the driver: profiled here, then sent to the workers in blocks of
    ``BLOCK_ENOUGH_ROWS`` rows (the data alone decides the blocks). Each block travels
    inside its load task, so the scheduler can load it again when its worker is lost."""
    from lrdask.dataset import BLOCK_ENOUGH_ROWS
    from lrdask.encoding import profile_table

    dropped = [*(exclude or []), *([given.weight] if given.weight else [])]
    chosen, cats = _choose_features(
        table.schema, given.description, given.label, features, dropped, categorical
    )
    columns = list(dict.fromkeys([*chosen, given.label, *([given.weight] if given.weight else [])]))
    table = table.select(columns)
    starts = range(0, max(table.num_rows, 1), BLOCK_ENOUGH_ROWS)
    # Each block as Arrow IPC bytes: a pickled slice would carry its whole parent table
    # (pyarrow pickles the shared buffers), one copy of all the data per block.
    pieces = [_ipc_bytes(table.slice(a, BLOCK_ENOUGH_ROWS)) for a in starts]
    digest = hashlib.sha256()
    for piece in pieces:
        digest.update(piece)

    def persist(client, encoding, dtype, timeout, cache):
        if not cache:
            log.info("cache=False streams Parquet pieces; in-memory X is held by the workers")
        log.info(
            "sending %d rows (%.1f MB) to the workers in %d block(s), each inside its load task",
            table.num_rows,
            sum(len(p) for p in pieces) / 1e6,
            len(pieces),
        )
        args = [
            (piece, encoding, f"rows {a}-{min(a + BLOCK_ENOUGH_ROWS, table.num_rows) - 1}", dtype)
            for a, piece in zip(starts, pieces, strict=True)
        ]
        with warnings.catch_warnings():  # Dask's advice against data in tasks: meant so
            warnings.filterwarnings("ignore", message="Sending large graph")
            return PersistedBlocks.from_loaders(client, _block_from_ipc, args, timeout)

    return TrainingSource(
        chosen,
        cats,
        given.description,
        [digest.hexdigest()],
        lambda client, request, timeout: profile_table(table, request),
        persist,
        given.label,
        given.weight,
    )


def _ipc_bytes(table) -> bytes:
    """``table`` as Arrow IPC stream bytes, holding only its own rows."""
    import pyarrow as pa

    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _block_from_ipc(data: bytes, encoding, source, dtype):
    """The load task of an in-memory block: its Arrow IPC bytes read into a Block."""
    import pyarrow as pa

    return block_from_table(pa.ipc.open_stream(data).read_all(), encoding, source, dtype)


def _frame_schema(frame):
    """The Arrow schema of a dask DataFrame's partitions (pandas nullable and pyarrow-backed
    dtypes included), so that it is checked by the same rules as a Parquet file's."""
    import pyarrow as pa

    try:
        return pa.Schema.from_pandas(frame._meta, preserve_index=False)
    except (pa.ArrowException, TypeError, ValueError) as exc:
        raise DataError(f"the DataFrame's columns cannot be read as Arrow ({exc})") from None


def _as_table(part):
    """A pandas partition as an Arrow table (what the loader reads)."""
    import pyarrow as pa

    try:
        return pa.Table.from_pandas(part, preserve_index=False)
    except (pa.ArrowException, TypeError, ValueError) as exc:
        raise DataError(f"a DataFrame partition cannot be read as Arrow ({exc})") from None


def _profile_frame(client, frame, request):
    import dask

    from lrdask.encoding import profile_table

    parts = [
        dask.delayed(lambda p, r: profile_table(_as_table(p), r))(part, request)
        for part in frame.to_delayed()
    ]
    return merge_all(client.gather(client.compute(parts)))


def _persist_frame(client, frame, encoding, dtype, timeout) -> PersistedBlocks:
    import dask

    token = time.time_ns()
    tasks = [
        dask.delayed(_frame_block)(
            part, encoding, f"partition {i}", dtype, dask_key_name=f"lrdask-load-{i}-{token}"
        )
        for i, part in enumerate(frame.to_delayed())
    ]
    return PersistedBlocks(client, client.compute(tasks), timeout)


def _frame_block(part, encoding, source, dtype):
    return block_from_table(_as_table(part), encoding, source, dtype)


def _is_pandas_frame(data) -> bool:
    import pandas as pd

    return isinstance(data, pd.DataFrame)


def _is_dask_frame(data) -> bool:
    try:
        import dask.dataframe as dd
    except ImportError:  # pragma: no cover - dask[dataframe] is a dependency
        return False
    return isinstance(data, dd.DataFrame)


SCORES = ("margin", "proba", "log_proba", "label")


def scores(model, data, what: str):
    """``what`` for every row of ``data`` under a fitted model: "margin" (the linear
    predictor; (n,) binomial, (n, K) multinomial), "proba" and "log_proba" ((n, K), in
    the order of ``classes_``) or "label" ((n,) values of ``classes_``).

    A NumPy array, a list or a pandas DataFrame gives NumPy; a dask array, a dask
    DataFrame or a Parquet path/URL gives a dask array, one chunk per partition, read and
    encoded as in training. A model trained on named columns reads DataFrames and Parquet
    by name and arrays by position. Raises DataError for input it cannot score."""
    import dask
    import dask.array as da

    from lrdask.arrays import _checked, _is_dask_array, _sklearn_check_array
    from lrdask.loading import load_piece

    model._check_fitted()
    encoding = model.encoding_.reading(None)
    score = _Scorer(
        what,
        np.asarray(model.coef_),
        model.intercept_,
        model.encoding_.classes,
        model.threshold,
        flipped(model.encoding_),
    )
    named = hasattr(model, "feature_names_in_")
    if _is_pandas_frame(data) and named:
        missing = [c for c in encoding.input_columns if c not in data.columns]
        if missing:
            raise DataError(
                f"X lacks the model's column(s) {missing}: the feature names should match "
                "those that were passed during fit"
            )
        table = _as_table(data[encoding.input_columns])
        block = block_from_table(table, encoding, "DataFrame", drop_incomplete=False)
        check_reports([block.report], None, training=False)
        return score(block)
    if _is_dask_array(data):
        _numeric_model(model)
        if data.ndim != 2 or data.shape[1] != model.n_features_in_:
            raise DataError(_width_message(model, data.shape))
        rows = data.rechunk({1: -1}).astype(np.float64)
        return rows.map_blocks(
            lambda b: score(_rows_block(b, encoding)),
            chunks=(rows.chunks[0], *score.width),
            drop_axis=[] if score.width else [1],
            dtype=score.dtype,
        )
    if _is_dask_frame(data):
        if not named:  # columns by position, as for an array
            return scores(model, data.to_dask_array(lengths=True), what)
        missing = [c for c in encoding.input_columns if c not in data.columns]
        if missing:
            raise DataError(f"the DataFrame lacks the model's column(s) {missing}")
        frame = data[encoding.input_columns]
        lengths = frame.map_partitions(len).compute()
        parts = [
            dask.delayed(
                lambda p: score(
                    block_from_table(_as_table(p), encoding, "partition", drop_incomplete=False)
                )
            )(part)
            for part in frame.to_delayed()
        ]
    elif isinstance(data, (str, bytes)) or hasattr(data, "__fspath__"):
        url = str(data.__fspath__() if hasattr(data, "__fspath__") else data)
        plan = plan_dataset(
            url,
            None,
            encoding.input_columns,
            categorical=[c.name for c in encoding.categorical],
        )
        lengths = [piece.num_rows for piece in plan.pieces]
        parts = [
            dask.delayed(
                lambda piece: score(load_piece(piece, plan.fs, encoding, drop_incomplete=False))
            )(piece)
            for piece in plan.pieces
        ]
    else:  # NumPy, lists, numeric pandas of an unnamed model: by position
        _numeric_model(model)
        rows = _checked(
            _sklearn_check_array,
            data,
            ensure_all_finite="allow-nan" if model.missing != "error" else True,
        )
        if rows.shape[1] != model.n_features_in_:
            raise DataError(_width_message(model, rows.shape))
        return score(_rows_block(rows, encoding))
    arrays = [
        da.from_delayed(part, shape=(int(n), *score.width), dtype=score.dtype)
        for part, n in zip(parts, lengths, strict=True)
    ]
    return da.concatenate(arrays) if arrays else da.zeros((0, *score.width), score.dtype)


def _rows_block(rows: np.ndarray, encoding):
    """Numeric rows of an array as a block, read by the model's encoding (its columns by
    position): missing values are imputed or marked exactly as in a table."""
    import pyarrow as pa

    table = pa.table(
        {name: np.asarray(rows[:, j]) for j, name in enumerate(encoding.input_columns)}
    )
    block = block_from_table(table, encoding, "X", drop_incomplete=False)
    check_reports([block.report], None, training=False)
    return block


def public_classes(encoding) -> np.ndarray:
    """``classes_`` as scikit-learn's tools expect them: sorted (np.unique's order), so
    that a binomial ``classes_[1]`` is the class ``decision_function`` scores. The
    encoding keeps lrdask's own order, [negative, positive] for binomial, which differs
    when ``positive_class`` is the smaller value (``flipped``)."""
    classes = np.asarray(list(encoding.classes))
    return classes[::-1].copy() if flipped(encoding) else classes


def flipped(encoding) -> bool:
    """True for a binomial model whose positive class sorts before its negative one."""
    classes = list(encoding.classes)
    if encoding.family != "binomial" or len(classes) != 2:
        return False
    try:
        return bool(classes[1] < classes[0])
    except TypeError:
        return False


class _Scorer:
    """One kind of score of a block of rows (see ``scores``); a pure function of the block.

    ``classes`` in the encoding's order; with ``flip`` (``flipped``) the probabilities'
    columns and the margin's sign follow the sorted ``classes_`` instead, so that
    scikit-learn's scorers see the class they expect; predicted labels are the same."""

    def __init__(
        self, what: str, coef: np.ndarray, intercept, classes, threshold: float, flip=False
    ):
        if what not in SCORES:
            raise ValueError(f"what must be one of {SCORES}")
        self.what, self.coef, self.intercept = what, coef, intercept
        self.classes = np.asarray(list(classes))
        self.threshold = float(threshold)
        self.flip = flip
        multinomial = coef.ndim == 2
        k = len(self.classes)
        self.width = () if what == "label" or (what == "margin" and not multinomial) else (k,)
        self.dtype = self.classes.dtype if what == "label" else np.dtype(np.float64)

    def __call__(self, block) -> np.ndarray:
        from lrdask.kernels import check_finite_scores, linear_predictor
        from lrdask.predict import block_probabilities, positive_where

        multinomial = self.coef.ndim == 2
        if self.what == "proba":
            with np.errstate(over="ignore"):  # a margin of ±inf is a probability of 1 or 0
                proba = block_probabilities(block, self.coef, self.intercept)
            return proba[:, ::-1].copy() if self.flip else proba
        w = self.coef.T if multinomial else self.coef
        with np.errstate(over="ignore", invalid="ignore"):
            z = linear_predictor(block.X, w, self.intercept, block.codes)
        check_finite_scores(z if block.incomplete is None else z[~block.incomplete], w)
        if self.what == "label":
            if block.incomplete is not None:
                raise DataError(
                    f"{int(block.incomplete.sum())} row(s) have missing values, which this "
                    "model (missing='skip') does not score: predict_proba gives NaN for them; "
                    "drop those rows first"
                )
            if multinomial:
                return self.classes[z.argmax(axis=1)]
            return self.classes[positive_where(z, self.threshold).astype(np.intp)]
        if self.what == "margin":
            out = -z if self.flip else z
        elif multinomial:
            top = z.max(axis=1, keepdims=True)  # log-sum-exp, stable, NumPy only
            out = z - (top + np.log(np.exp(z - top).sum(axis=1, keepdims=True)))
        else:
            out = np.column_stack([-np.logaddexp(0.0, z), -np.logaddexp(0.0, -z)])
            out = out[:, ::-1].copy() if self.flip else out
        if block.incomplete is not None:
            out[block.incomplete] = np.nan
        return out


def _numeric_model(model) -> None:
    if model.encoding_.categorical:
        names = ", ".join(c.name for c in model.encoding_.categorical)
        raise DataError(
            f"this model has categorical columns ({names}); pass a pandas or dask "
            "DataFrame or a Parquet path holding them, not an array"
        )


def _width_message(model, shape) -> str:
    if len(shape) != 2:
        return f"Expected a 2D array for X, got shape {shape}; reshape it"
    names = getattr(model, "feature_names_in_", None)
    trained = f": {', '.join(map(str, names))}" if names is not None else ""
    return (
        f"X has {shape[1]} features, but LogisticRegression is expecting "
        f"{model.n_features_in_} features as input{trained}"
    )
