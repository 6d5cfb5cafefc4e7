import os
import shutil
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from distributed import Client, LocalCluster

sys.path.insert(0, os.path.dirname(__file__))


@pytest.fixture(scope="module", params=[1, 3], ids=["1worker", "3workers"])
def client(request):
    """An in-process distributed cluster (real scheduler, thread workers): fast, for
    the many parity tests. Real worker processes are in test_real_cluster.py."""
    with (
        LocalCluster(
            n_workers=request.param, threads_per_worker=1, processes=False, dashboard_address=":0"
        ) as cluster,
        Client(cluster) as c,
    ):
        yield c


@pytest.fixture(scope="module")
def one_client():
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0"
        ) as cluster,
        Client(cluster) as c,
    ):
        yield c


def write_partitions(directory, X, y, sizes, row_group_size=None, names=None):
    """Write X, y split into files of the given row counts (0 makes an empty file)."""
    if os.path.exists(directory):
        shutil.rmtree(directory)
    os.makedirs(directory)
    names = names or [f"x{j}" for j in range(X.shape[1])]
    start = 0
    for i, n in enumerate(sizes):
        cols = {name: X[start : start + n, j] for j, name in enumerate(names)}
        cols["y"] = y[start : start + n].astype(np.int64)
        pq.write_table(
            pa.table(cols),
            os.path.join(directory, f"part-{i:03d}.parquet"),
            row_group_size=row_group_size,
        )
        start += n
    assert start == len(y)
    return str(directory)


def random_problem(rows, features, seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, features)) * scale
    w = rng.normal(size=features)
    y = (rng.random(rows) < 1 / (1 + np.exp(-(X @ w)))).astype(np.float64)
    if y.min() == y.max():
        y[0] = 1 - y[0]
    return X, y
