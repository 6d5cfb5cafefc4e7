"""OS and storage errors are one line with a documented exit code, and outputs follow
the umask (issue "safe to run unattended", kind 4).

The kind: any write or delete of an output, checkpoint or prediction file whose OS error
escaped as a traceback or was mistaken for something else (a full disk reported as a lost
cluster). Every such call goes through ``lrdask.storage`` (``storage_errors``), and the
CLI turns any OSError that still escapes into the same one line. A full disk is simulated
for real processes with a file-size limit (RLIMIT_FSIZE: writes past it fail with EFBIG,
as they fail with ENOSPC on a full disk, and Python ignores the SIGXFSZ signal).
"""

import errno
import os
import pickle
import resource
import stat

import numpy as np
import pytest
from conftest import random_problem, write_partitions
from procs import lrdask

from lrdask.errors import EXIT_BAD_INPUT, EXIT_INFRA, StorageError
from lrdask.storage import storage_error, storage_errors

TABLE = [
    (errno.ENOSPC, EXIT_INFRA, "free space there"),
    (errno.EDQUOT, EXIT_INFRA, "free space there"),
    (errno.EFBIG, EXIT_INFRA, "free space there"),
    (errno.EACCES, EXIT_BAD_INPUT, "make it writable"),
    (errno.EPERM, EXIT_BAD_INPUT, "make it writable"),
    (errno.EROFS, EXIT_BAD_INPUT, "make it writable"),
    (errno.EIO, EXIT_INFRA, "check the storage"),
    (None, EXIT_INFRA, "check the storage"),
]


@pytest.mark.parametrize(("code", "exit_code", "hint"), TABLE)
def test_every_os_error_becomes_one_line_with_its_exit_code(code, exit_code, hint):
    exc = OSError(code, os.strerror(code)) if code else OSError("socket closed\nmore")
    error = storage_error(exc, "write", "/out/model.json")
    assert isinstance(error, StorageError) and error.exit_code == exit_code
    text = str(error)
    assert text.startswith("cannot write /out/model.json: ") and hint in text
    assert "\n" not in text
    with pytest.raises(StorageError) as raised, storage_errors("write", "/x"):
        raise exc
    assert raised.value.exit_code == exit_code


@pytest.mark.parametrize("exit_code", [EXIT_BAD_INPUT, EXIT_INFRA])
def test_a_storage_error_keeps_its_exit_code_from_a_worker(exit_code):
    """A task's exception reaches the driver pickled: the exit code must come with it."""
    error = pickle.loads(pickle.dumps(StorageError("cannot write /p/part-0: why", exit_code)))
    assert type(error) is StorageError and error.exit_code == exit_code
    assert str(error) == "cannot write /p/part-0: why"


def test_predictions_where_a_worker_does_not_see_the_driver_s_directory(one_client, tmp_path):
    """predict's OUT_DIR on a disk a worker (on another host) does not share: the staging
    directory the driver made is not there where the task runs. Exit 2, one line that says
    OUT_DIR must be at the same path everywhere, not a bare "No such file or directory"."""
    from fsspec.implementations.local import LocalFileSystem

    from lrdask.dataset import plan_dataset
    from lrdask.estimator import LogisticRegression
    from lrdask.predict import score_piece

    X, y = random_problem(200, 2, seed=52)
    data = write_partitions(tmp_path / "data", X, y, [200])
    model = LogisticRegression(max_iter=3).fit(data, "y", client=one_client)
    plan = plan_dataset(data, None, model.feature_names_in_.tolist())
    staging = str(tmp_path / "out.staging-1234")  # never made: "another host's" disk
    with pytest.raises(StorageError) as raised:
        score_piece(
            plan.pieces[0],
            0,
            fs=plan.fs,
            out_fs=LocalFileSystem(),
            staging=staging,
            encoding=model.encoding_.reading(None),
            keep=(),
            model=(model.coef_, model.intercept_),
        )
    assert raised.value.exit_code == EXIT_BAD_INPUT
    assert str(raised.value) == (
        f"cannot write predictions to {staging}: the driver made that directory, but it is "
        "not there on this machine; OUT_DIR must be at the same path on the driver and every "
        "worker (a disk they all share, or an object store URL)"
    )
    assert not os.path.exists(staging)


def limit_file_size(limit):
    def apply():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


@pytest.fixture
def data(tmp_path):
    X, y = random_problem(3000, 3, seed=51)
    return write_partitions(tmp_path / "data", X, y, [1000] * 3)


def test_a_full_disk_while_writing_the_model_is_exit_3_and_one_line(tmp_path, data):
    out = tmp_path / "m"
    result = lrdask(
        "train",
        data,
        "--label",
        "y",
        "--out",
        out,
        "--max-iter",
        5,
        "--workers",
        1,
        preexec_fn=limit_file_size(600),
        check=False,
    )
    assert result.returncode == 3, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"lrdask: error: cannot write {out}/") and "File too large" in last
    assert "free space there" in last and "Traceback" not in result.stderr
    assert not (out / "_SUCCESS").exists()


def test_a_full_disk_while_writing_predictions_is_not_a_lost_cluster(tmp_path, data):
    lrdask("train", data, "--label", "y", "--out", tmp_path / "m", "--max-iter", 5, "--workers", 1)
    out = tmp_path / "p"
    result = lrdask(
        "predict",
        tmp_path / "m",
        data,
        "--out",
        out,
        "--workers",
        1,
        preexec_fn=limit_file_size(2000),
        check=False,
    )
    assert result.returncode == 3, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert "cannot write predictions to" in last and "File too large" in last
    assert "lost the Dask cluster" not in result.stderr and "Traceback" not in result.stderr
    assert not out.exists()


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o077])
def test_outputs_follow_the_umask(tmp_path, data, mask):
    out, scores = tmp_path / "m", tmp_path / "p"
    common = {"preexec_fn": lambda: os.umask(mask)}
    lrdask(
        "train",
        data,
        "--label",
        "y",
        "--out",
        out,
        "--max-iter",
        3,
        "--workers",
        1,
        "--checkpoint-every",
        1,
        "--fail-on-no-convergence",
        check=False,
        **common,
    )
    lrdask("train", data, "--label", "y", "--out", out, "--max-iter", 3, "--workers", 1, **common)
    lrdask("predict", out, data, "--out", scores, "--workers", 1, **common)
    files = [out / "model.json", out / "metrics.json", out / "_SUCCESS", out / "loss_curve.png"]
    files += sorted(scores.glob("*.parquet"))
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask, path
    assert np.all([stat.S_IMODE(p.stat().st_mode) == 0o777 & ~mask for p in (out, scores)])


def test_a_reader_that_stops_early_is_not_an_error(tmp_path, data):
    """`lrdask info M | head -2`: the pipe closes under the writer (EPIPE). The command
    exits 141 (128 + SIGPIPE, as a C tool would) without a word on stderr."""
    import subprocess

    from procs import BIN

    lrdask("train", data, "--label", "y", "--out", tmp_path / "m", "--max-iter", 3, "--workers", 1)
    proc = subprocess.Popen(
        [os.path.join(BIN, "lrdask"), "info", str(tmp_path / "m")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdout.close()  # the reader is gone before the first line is written
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 141 and err == b""
