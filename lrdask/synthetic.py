"""Synthetic training data from known weights, so anyone can try the job (``make-data``).

Features are independent standard normals; labels are drawn as y ~ Bernoulli(σ(x·w + b))
from true weights recorded in ``_truth.json`` beside the files (the leading underscore
keeps it out of the data set). Partition i is generated from the seed pair (seed, i), so
the data is the same whatever the machine and however it is re-run.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lrdask.errors import ConfigError, OutputExistsError
from lrdask.kernels import sigmoid

TRUTH_FILE = "_truth.json"


def true_weights(n_features: int, seed: int) -> tuple[np.ndarray, float]:
    """Weights scaled so that z = x·w + b has a standard deviation near 2."""
    rng = np.random.default_rng([seed, 2**31])
    w = rng.normal(size=n_features) * (2.0 / np.sqrt(n_features))
    return w, 0.5


def category_effects(n_columns: int, seed: int) -> list[np.ndarray]:
    """True effects of the levels of each categorical column: column j has 4 + 6j levels
    with effects of different sizes (level 0's effect is 0)."""
    rng = np.random.default_rng([seed, 2**31 + 1])
    effects = []
    for j in range(n_columns):
        e = rng.normal(size=4 + 6 * j) * 1.5
        e[0] = 0.0
        effects.append(e)
    return effects


def make_partition(
    rows: int,
    w: np.ndarray,
    b: float,
    seed: int,
    index: int,
    dtype: str = "float64",
    effects: list[np.ndarray] | None = None,
    label_values: tuple[str, str] | None = None,
) -> pa.Table:
    """One file's rows. With ``effects``, categorical columns c0, c1, …: level k of column
    j is the string ``cj_k`` drawn with Zipf-like frequencies (the last levels are rare),
    about 1% of the values null; a null adds nothing to z. ``label_values`` writes the
    label as those two strings (negative, positive) instead of 0/1."""
    rng = np.random.default_rng([seed, index])
    X = rng.standard_normal((rows, len(w)))
    z = X @ w + b
    columns = {f"x{j}": X[:, j].astype(dtype) for j in range(len(w))}
    cat_rng = np.random.default_rng([seed, index, 1])
    for j, effect in enumerate(effects or []):
        weights = 1.0 / np.arange(1, len(effect) + 1) ** 1.5
        level = cat_rng.choice(len(effect), size=rows, p=weights / weights.sum())
        null = cat_rng.random(rows) < 0.01
        z += np.where(null, 0.0, effect[level])
        names = np.array([f"c{j}_{k}" for k in range(len(effect))], dtype=object)
        columns[f"c{j}"] = pa.array(names[level], mask=null, type=pa.string())
    y = (rng.random(rows) < sigmoid(z)).astype(np.int8)
    if label_values is None:
        columns["y"] = y
    else:
        columns["y"] = pa.array(np.array(label_values, dtype=object)[y], type=pa.string())
    return pa.table(columns)


def make_data(
    out_dir: str,
    rows: int,
    features: int,
    partitions: int,
    seed: int = 0,
    overwrite: bool = False,
    dtype: str = "float64",
    offset: int = 0,
    categorical: int = 0,
    label_values: tuple[str, str] | None = None,
) -> dict:
    """Write ``partitions`` Parquet files with ``rows`` rows in all; returns the truth record.

    Rows come from the seed pair (seed, offset + i) for partition i: the same ``seed``
    with another ``offset`` draws new rows from the same true model (a held-out set)."""
    if rows < 1 or features < 1 or partitions < 1:
        raise ConfigError("--rows, --features and --partitions must each be at least 1")
    if os.path.exists(out_dir) and os.listdir(out_dir) and not overwrite:
        raise OutputExistsError(f"{out_dir} already holds files; pass --overwrite to replace them")
    w, b = true_weights(features, seed)
    effects = category_effects(categorical, seed)
    staging = f"{out_dir.rstrip('/')}.tmp-{uuid.uuid4().hex[:8]}"
    os.makedirs(staging)
    try:
        sizes = np.diff(np.linspace(0, rows, partitions + 1).round().astype(int))
        for index, n in enumerate(sizes):
            table = make_partition(int(n), w, b, seed, offset + index, dtype, effects, label_values)
            pq.write_table(table, os.path.join(staging, f"part-{index:05d}.parquet"))
        truth = {
            "coef": w.tolist(),
            "intercept": b,
            "label": "y",
            "rows": rows,
            "features": [f"x{j}" for j in range(features)],
            "categorical": {
                f"c{j}": {f"c{j}_{k}": float(v) for k, v in enumerate(e)}
                for j, e in enumerate(effects)
            },
            "classes": list(label_values) if label_values else [0, 1],
            "partitions": partitions,
            "seed": seed,
            "offset": offset,
        }
        with open(os.path.join(staging, TRUTH_FILE), "w") as fh:
            json.dump(truth, fh, indent=2)
        if os.path.exists(out_dir):
            shutil.rmtree(out_dir)
        os.replace(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return truth
