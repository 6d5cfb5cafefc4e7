"""Object storage for real: a moto S3 server process on 127.0.0.1, lrdask as a subprocess."""

import json
import os
import subprocess
import time
import urllib.request

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import random_problem, write_partitions
from procs import BIN, free_port, lrdask
from reference import numpy_gradient_descent

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """(endpoint, s3fs filesystem) for a fresh S3-compatible server with bucket 'lake'."""
    import s3fs

    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with open(log, "w") as fh:
        server = subprocess.Popen(
            [os.path.join(BIN, "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
            stdout=fh,
            stderr=subprocess.STDOUT,
            env={**os.environ, **CREDENTIALS},
        )
    try:
        _wait_http(endpoint, server)
        for key, value in CREDENTIALS.items():
            os.environ.setdefault(key, value)
        fs = s3fs.S3FileSystem(key="testing", secret="testing", endpoint_url=endpoint)
        fs.mkdir("lake")
        yield endpoint, fs
    finally:
        server.terminate()
        server.wait(10)


def _wait_http(url, proc, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"moto_server exited with {proc.returncode}")
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"no S3 server at {url}")


def test_train_and_predict_on_s3(s3, tmp_path):
    endpoint, fs = s3
    X, y = random_problem(3000, 4, seed=41)
    local = write_partitions(tmp_path / "data", X, y, [1000, 500, 1500], row_group_size=400)
    fs.put(local + "/", "lake/events/date=2026-11-26/", recursive=True)
    env = CREDENTIALS
    option = f"endpoint_url={endpoint}"
    result = lrdask(
        "train",
        "s3://lake/events/date=2026-11-26",
        "--label",
        "y",
        "--out",
        "s3://lake/models/run_date=2026-11-26",
        "--storage-option",
        option,
        "--alpha",
        0.7,
        "--max-iter",
        30,
        "--tol",
        0,
        "--gtol",
        0,
        "--workers",
        2,
        env=env,
    )
    assert result.stdout.strip() == "s3://lake/models/run_date=2026-11-26/model.json"
    listed = sorted(p.rsplit("/", 1)[1] for p in fs.ls("lake/models/run_date=2026-11-26"))
    assert listed == ["_SUCCESS", "loss_curve.png", "metrics.json", "model.json"]
    doc = json.loads(fs.cat_file("lake/models/run_date=2026-11-26/model.json"))
    w, b, _ = numpy_gradient_descent(X, y, 0.7, 30)
    np.testing.assert_allclose(doc["coef"], w, rtol=1e-12, atol=1e-12)
    assert doc["training"]["n_partitions"] == 1  # three small files make one block
    assert doc["training"]["data"] == "s3://lake/events/date=2026-11-26"

    lrdask(
        "predict",
        "s3://lake/models/run_date=2026-11-26",
        "s3://lake/events/date=2026-11-26",
        "--out",
        "s3://lake/scores/date=2026-11-26",
        "--keep",
        "y",
        "--storage-option",
        option,
        "--workers",
        2,
        env=env,
    )
    assert fs.exists("lake/scores/date=2026-11-26/_SUCCESS")
    table = pq.read_table("lake/scores/date=2026-11-26", filesystem=fs)
    assert table.num_rows == 3000
    expected = 1 / (1 + np.exp(-(X @ w + b)))
    np.testing.assert_allclose(
        np.sort(table["probability"].to_numpy()), np.sort(expected), rtol=1e-9
    )


def test_storage_options_from_environment_and_bad_key(s3, tmp_path):
    endpoint, fs = s3
    X, y = random_problem(500, 2, seed=42)
    local = write_partitions(tmp_path / "data", X, y, [250, 250])
    fs.put(local + "/", "lake/small/", recursive=True)
    env = {**CREDENTIALS, "FSSPEC_S3_ENDPOINT_URL": endpoint}
    lrdask(
        "train",
        "s3://lake/small",
        "--label",
        "y",
        "--out",
        "s3://lake/m-small",
        "--max-iter",
        5,
        "--workers",
        1,
        env=env,
    )
    assert fs.exists("lake/m-small/_SUCCESS")
    missing = lrdask(
        "train",
        "s3://lake/nothing-here",
        "--label",
        "y",
        "--out",
        "s3://lake/m2",
        "--workers",
        1,
        env=env,
        check=False,
    )
    assert missing.returncode == 2
    assert "s3://lake/nothing-here: no such file or directory" in missing.stderr


def test_an_object_replaced_after_planning_stops_the_fit(s3, tmp_path, one_client):
    """The identity of an object is its ETag: an object rewritten between planning and
    reading (labels flipped) stops the fit with one error naming it."""
    from lrdask.dataset import plan_dataset
    from lrdask.errors import DataChangedError
    from lrdask.estimator import LogisticRegression

    endpoint, fs = s3
    X, y = random_problem(2000, 3, seed=44)
    local = write_partitions(tmp_path / "data", X, y, [1000, 1000])
    fs.put(local + "/", "lake/changing/", recursive=True)
    options = {"endpoint_url": endpoint, "key": "testing", "secret": "testing"}
    plan = plan_dataset("s3://lake/changing", "y", storage_options=options)
    assert all(f.version for f in plan.files)  # ETags
    write_partitions(tmp_path / "flipped", X, 1 - y, [1000, 1000])
    fs.put(str(tmp_path / "flipped" / "part-001.parquet"), "lake/changing/part-001.parquet")
    with pytest.raises(DataChangedError, match="lake/changing/part-001.parquet: the file changed"):
        LogisticRegression(max_iter=5).fit(plan, "y", client=one_client)


def test_the_lease_on_an_object_store_is_a_conditional_put(s3):
    """Two jobs racing for the same S3 output: the conditional PUT (If-None-Match: *)
    lets exactly one create the lease; the other is refused, naming the holder."""
    from lrdask.errors import OutputLockedError
    from lrdask.lease import lease

    endpoint, _ = s3
    options = {"endpoint_url": endpoint, "key": "testing", "secret": "testing"}
    with lease("s3://lake/models/raced", "train", options) as mine:
        refused = pytest.raises(OutputLockedError, match=f"pid {mine['pid']}")
        with refused, lease("s3://lake/models/raced", "train", options):
            pass
    with lease("s3://lake/models/raced", "train", options):  # released: free again
        pass
