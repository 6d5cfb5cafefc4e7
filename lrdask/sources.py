"""Input adapters: every kind of training or scoring input becomes the same thing.

A Parquet path/URL (or a ``DatasetPlan``) and a dask DataFrame each become a
``TrainingSource``: its feature columns, its identity, how to run the profile pass and how
to persist its blocks, all through the one loader (``lrdask.loading``) and encoding
(``lrdask.encoding``). For scoring, a Parquet path, a pandas or a dask DataFrame become
class probabilities the same way. The estimator asks for a source; it does not branch on
input types itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from lrdask.dataset import DatasetPlan, _choose_features, plan_dataset
from lrdask.errors import ConfigError, DataError
from lrdask.loading import block_from_table, check_reports
from lrdask.scheduling import PersistedBlocks, StreamedPieces, persist_plan, profile_plan
from lrdask.sums import merge_all


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


def training_source(
    data, label, features, exclude, storage_options, weight, categorical=None
) -> TrainingSource:
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
        )
    raise DataError(
        f"fit() takes a Parquet path/URL or a dask DataFrame, not {type(data).__name__}"
    )


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

    tasks = [
        dask.delayed(_frame_block)(part, encoding, f"partition {i}", dtype)
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


def lazy_probabilities(model, data):
    """predict_proba for a Parquet path or a dask DataFrame: a dask array, one chunk per
    piece (partition), read and encoded as in training."""
    import dask
    import dask.array as da

    from lrdask.loading import load_piece
    from lrdask.predict import block_probabilities

    encoding = model.encoding_.reading(None)
    width = len(model.classes_)
    coef, intercept = np.asarray(model.coef_), model.intercept_
    if _is_pandas_frame(data):  # in memory already: NumPy out
        missing = [c for c in encoding.input_columns if c not in data.columns]
        if missing:
            raise DataError(f"the DataFrame lacks the model's column(s) {missing}")
        table = _as_table(data[encoding.input_columns])
        block = block_from_table(table, encoding, "DataFrame", drop_incomplete=False)
        check_reports([block.report], None, training=False)
        return block_probabilities(block, coef, intercept)
    if _is_dask_frame(data):
        frame = (
            data[encoding.input_columns]
            if set(encoding.input_columns) <= set(data.columns)
            else None
        )
        if frame is None:
            missing = [c for c in encoding.input_columns if c not in data.columns]
            raise DataError(f"the DataFrame lacks the model's column(s) {missing}")
        lengths = frame.map_partitions(len).compute()
        parts = [
            dask.delayed(
                lambda p: block_probabilities(
                    block_from_table(_as_table(p), encoding, "partition", drop_incomplete=False),
                    coef,
                    intercept,
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
                lambda piece: block_probabilities(
                    load_piece(piece, plan.fs, encoding, drop_incomplete=False), coef, intercept
                )
            )(piece)
            for piece in plan.pieces
        ]
    else:
        raise DataError(
            "predict takes a NumPy array, a pandas or dask DataFrame or a Parquet path, "
            f"not {type(data).__name__}"
        )
    arrays = [
        da.from_delayed(part, shape=(int(n), width), dtype=np.float64)
        for part, n in zip(parts, lengths, strict=True)
    ]
    return da.concatenate(arrays) if arrays else da.zeros((0, width))
