"""MLflow tracking (lrdask/tracking.py) against a real `mlflow server` on 127.0.0.1.

The server runs from its own virtualenv (`mlflow` pins pyarrow<26, lrdask's tests run on
pyarrow 26; the test environment has the client, `mlflow-skinny`), made once at
LRDASK_MLFLOW_VENV or ./.venv-mlflow, with a sqlite backend and artifacts served by the
server itself from a temporary directory. `lrdask train` runs as a subprocess, and the run
is read back with MlflowClient and compared with the published files.
"""

from __future__ import annotations

import builtins
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import random_problem
from procs import free_port, lrdask

from lrdask import LogisticRegression, tracking
from lrdask.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
MLFLOW_SERVER_VERSION = "3.17.2"  # the newest release whose own dependencies all install
MLFLOW_VENV = Path(os.environ.get("LRDASK_MLFLOW_VENV", ROOT / ".venv-mlflow"))
FILES = ("model.json", "metrics.json", "loss_curve.png")
HISTORIES = {"train_cost", "train_grad_norm", "validation_cost"}
WARNING = "MLflow tracking failed ("
PUBLISHED = "the model is published without tracking"

pytestmark = pytest.mark.cluster


# ------------------------------------------------------------------ the server


def _installed(python: Path) -> bool:
    if not python.exists():
        return False
    probe = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('mlflow'))"],
        capture_output=True,
        text=True,
    )
    return probe.returncode == 0 and probe.stdout.strip() == MLFLOW_SERVER_VERSION


@pytest.fixture(scope="session")
def mlflow_venv() -> Path:
    """A virtualenv with the full `mlflow` (the server) only."""
    python = MLFLOW_VENV / "bin" / "python"
    if not _installed(python):
        shutil.rmtree(MLFLOW_VENV, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(MLFLOW_VENV)], check=True)
        install = subprocess.run(
            [str(python), "-m", "pip", "install", "-q", f"mlflow=={MLFLOW_SERVER_VERSION}"],
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]
        assert _installed(python)
    return MLFLOW_VENV


@pytest.fixture(scope="module")
def mlflow_server(mlflow_venv, tmp_path_factory):
    """`mlflow server` on a free port of 127.0.0.1; its URL. Stopped (the whole process
    group: uvicorn and its job runner) at the end."""
    home = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.pop("PYTHONPATH", None)
    log_path = home / "server.log"
    with open(log_path, "w") as log_file:
        proc = subprocess.Popen(
            [
                str(mlflow_venv / "bin" / "mlflow"),
                "server",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                "1",
                "--backend-store-uri",
                f"sqlite:///{home / 'mlflow.db'}",
                "--serve-artifacts",
                "--artifacts-destination",
                str(home / "artifacts"),
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=home,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, log_path.read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, log_path.read_text()[-3000:]
            time.sleep(0.5)
        yield url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)


def client_of(url: str):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=url)


def runs_of(url: str, experiment: str) -> list:
    client = client_of(url)
    found = client.get_experiment_by_name(experiment)
    return [] if found is None else client.search_runs([found.experiment_id])


# ------------------------------------------------------------------ data


def write_table(path: Path, frame: pd.DataFrame, parts: int = 2) -> str:
    path.mkdir(parents=True)
    for i, rows in enumerate(np.array_split(np.arange(len(frame)), parts)):
        pq.write_table(pa.Table.from_pandas(frame.iloc[rows]), path / f"part-{i}.parquet")
    return str(path)


def numeric(rows: int, seed: int) -> pd.DataFrame:
    X, y = random_problem(rows, 4, seed=seed)
    frame = pd.DataFrame(X, columns=[f"x{j}" for j in range(4)])
    frame["y"] = y.astype(np.int64)
    return frame


def categorical(rows: int, seed: int) -> pd.DataFrame:
    frame = numeric(rows, seed)
    rng = np.random.default_rng(seed + 100)
    levels = np.array(["red", "green", "blue", "rare"])
    colour = levels[rng.choice(4, size=rows, p=[0.4, 0.3, 0.28, 0.02])].astype(object)
    colour[rng.random(rows) < 0.05] = None
    frame["colour"] = colour
    frame.loc[rng.random(rows) < 0.03, "x1"] = np.nan
    frame["y"] = ((frame["x0"] + (colour == "red") + rng.normal(size=rows)) > 0.5).astype(int)
    return frame


def multinomial(rows: int, seed: int) -> pd.DataFrame:
    frame = numeric(rows, seed)
    rng = np.random.default_rng(seed + 200)
    scores = frame[["x0", "x1", "x2"]].to_numpy() + rng.gumbel(size=(rows, 3))
    frame["y"] = np.array(["a", "b", "c"])[scores.argmax(axis=1)]
    return frame


# kind of table, its maker, train options: every shape to_sklearn exports, every solver family
CASES = {
    "numeric-gd-l2": (numeric, ["--solver", "gd", "--alpha", "0.5", "--l2", "0.01"]),
    "categorical-lbfgs": (
        categorical,
        ["--solver", "lbfgs", "--categorical", "colour", "--min-count", "60", "--missing", "mean"],
    ),
    "multinomial-agd": (multinomial, ["--solver", "agd", "--alpha", "0.5"]),
}


def train(tmp_path: Path, make, options, *extra, env=None, check=True):
    data = write_table(tmp_path / "train", make(3000, 1))
    validation = write_table(tmp_path / "valid", make(1000, 2), parts=1)
    out = tmp_path / "model"
    result = lrdask(
        "train",
        data,
        "--label",
        "y",
        "--out",
        out,
        "--validation",
        validation,
        "--validation-every",
        3,
        "--max-iter",
        25,
        "--workers",
        1,
        "--log-every",
        1,
        "--log-format",
        "json",
        *options,
        *extra,
        env=env,
        check=check,
    )
    return out, validation, result


def log_records(stderr: str) -> list[dict]:
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


def flat_numbers(doc: dict, prefix: str = "") -> dict[str, float]:
    """Every number (not a boolean) in a metrics.json document, nested names joined by '.'."""
    out = {}
    for key, value in doc.items():
        if isinstance(value, dict):
            out.update(flat_numbers(value, f"{prefix}{key}."))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[f"{prefix}{key}"] = float(value)
    return out


# ------------------------------------------------------------------ the run, whole


@pytest.mark.timeout(900)  # a first run installs the server (about a minute and a half)
@pytest.mark.parametrize("case", CASES)
def test_run_holds_params_histories_metrics_files_and_sklearn_model(case, mlflow_server, tmp_path):
    import mlflow
    import mlflow.sklearn

    make, options = CASES[case]
    experiment = f"lrdask-{case}"
    out, validation, result = train(
        tmp_path,
        make,
        options,
        "--mlflow-tracking-uri",
        mlflow_server,
        "--mlflow-experiment",
        experiment,
    )
    assert result.stdout.strip() == str(out / "model.json")  # nothing of MLflow's on stdout
    assert WARNING not in result.stderr
    doc = json.loads((out / "model.json").read_bytes())
    metrics = json.loads((out / "metrics.json").read_bytes())
    training = doc["training"]

    (run,) = runs_of(mlflow_server, experiment)
    client = client_of(mlflow_server)
    run_id = run.info.run_id
    assert run.info.status == "FINISHED"
    assert run.data.tags["lrdask.out"] == str(out)
    assert run.data.params == {name: str(value) for name, value in doc["options"].items()}

    def history(key):
        points = sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)
        return [m.step for m in points], [m.value for m in points]

    steps, costs = history("train_cost")
    assert steps == list(range(len(training["loss_history"])))
    assert costs == training["loss_history"]  # bit for bit
    # the gradient norm the solver reported at each iterate, as the JSON log shows it
    reported = {
        r["iteration"]: r["grad_norm"] for r in log_records(result.stderr) if "grad_norm" in r
    }
    steps, norms = history("train_grad_norm")
    assert steps == list(range(len(training["loss_history"]))) == sorted(reported)
    assert norms == [reported[s] for s in steps]
    assert norms[-1] == metrics["grad_norm"]
    steps, held_out = history("validation_cost")
    assert len(training["validation_history"]) >= 8
    assert [[s, v] for s, v in zip(steps, held_out, strict=True)] == [
        [int(s), v] for s, v in training["validation_history"]
    ]

    finals = flat_numbers(metrics)
    assert "validation.log_loss" in finals and "train_log_loss" in finals
    assert set(run.data.metrics) == set(finals) | HISTORIES
    assert {key: run.data.metrics[key] for key in finals} == finals

    listed = {a.path for a in client.list_artifacts(run_id)}
    assert set(FILES) <= listed, listed
    downloads = tmp_path / "downloads"
    for name in FILES:
        local = client.download_artifacts(run_id, name, str(downloads))
        assert Path(local).read_bytes() == (out / name).read_bytes(), name

    mlflow.set_tracking_uri(mlflow_server)
    exported = mlflow.sklearn.load_model(f"runs:/{run_id}/model")
    frame = pq.read_table(validation).to_pandas()
    features = frame.drop(columns=["y"])
    ours = np.asarray(LogisticRegression.load(str(out)).predict_proba(features))
    theirs = exported.predict_proba(features)
    assert theirs.shape == ours.shape == (len(frame), len(doc["classes"]))
    np.testing.assert_allclose(theirs, ours, rtol=0, atol=1e-12)


# ------------------------------------------------------------------ where the URI comes from


@pytest.mark.timeout(600)
@pytest.mark.parametrize("source", ["env", "config"])
def test_tracking_uri_from_env_or_config_file(source, mlflow_server, tmp_path):
    experiment = f"lrdask-from-{source}"
    env = {"MLFLOW_TRACKING_URI": mlflow_server} if source == "env" else None
    extra = []
    if source == "config":
        config = tmp_path / "job.toml"
        config.write_text(
            f'mlflow_tracking_uri = "{mlflow_server}"\nmlflow_experiment = "{experiment}"\n'
        )
        extra = ["--config", config]
    else:
        extra = ["--mlflow-experiment", experiment]
    make, options = CASES["numeric-gd-l2"]
    out, _, result = train(tmp_path, make, options, *extra, env=env)
    (run,) = runs_of(mlflow_server, experiment)
    history = client_of(mlflow_server).get_metric_history(run.info.run_id, "train_cost")
    loss = json.loads((out / "model.json").read_bytes())["training"]["loss_history"]
    assert sorted((m.step, m.value) for m in history) == list(enumerate(loss))
    # a rerun of the finished job trains nothing and logs no second run
    rerun = lrdask(
        "train",
        tmp_path / "train",
        "--label",
        "y",
        "--out",
        out,
        "--validation",
        tmp_path / "valid",
        "--validation-every",
        3,
        "--max-iter",
        25,
        "--workers",
        1,
        *options,
        *extra,
        env=env,
    )
    assert "nothing to do" in rerun.stderr and "no MLflow run" in rerun.stderr
    assert len(runs_of(mlflow_server, experiment)) == 1


# ------------------------------------------------------------------ tracking fails, training not


class _Failing(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's name
        self.send_error(503, "unavailable")

    do_POST = do_GET

    def log_message(self, *args):
        pass


def _serve_503():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Failing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}", server.shutdown


def _closed_port():
    return None, f"http://127.0.0.1:{free_port()}", lambda: None


def _silent():
    """Accepts connections and never answers (a hung server)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    return listener, f"http://127.0.0.1:{listener.getsockname()[1]}", listener.close


# how the server fails, a maker of it, environment (None: lrdask's own bounds), seconds allowed
FAILURES = {
    "refused": (_closed_port, None, 20),
    "http-503": (_serve_503, None, 30),
    "hangs": (_silent, {"MLFLOW_HTTP_REQUEST_TIMEOUT": "2"}, 20),
}


def _stamp(record: dict) -> datetime:
    return datetime.fromisoformat(record["time"])


@pytest.mark.timeout(600)
@pytest.mark.parametrize("failure", FAILURES)
def test_unreachable_server_is_one_warning_and_the_model_is_published(failure, tmp_path):
    make_server, env, allowed = FAILURES[failure]
    _, url, stop = make_server()
    try:
        make, options = CASES["numeric-gd-l2"]
        out, _, result = train(
            tmp_path,
            make,
            options,
            "--mlflow-tracking-uri",
            url,
            "--mlflow-experiment",
            "x",
            env=env,
        )
    finally:
        stop()
    assert result.returncode == 0
    assert result.stdout.strip() == str(out / "model.json")
    for name in (*FILES, "_SUCCESS"):
        assert (out / name).is_file(), name
    records = log_records(result.stderr)
    warnings = [r for r in records if r["level"] == "WARNING" and WARNING in r["message"]]
    assert len(warnings) == 1, result.stderr[-3000:]
    assert url in warnings[0]["message"] and PUBLISHED in warnings[0]["message"]
    (published,) = [r for r in records if "loss_curve.png written" in r["message"]]
    assert (_stamp(warnings[0]) - _stamp(published)).total_seconds() <= allowed
    # the same model as a run without tracking (model.json also holds paths and seconds)
    plain = train(tmp_path / "plain", make, options)[0]
    ours, theirs = (json.loads((d / "model.json").read_bytes()) for d in (out, plain))
    for key in ("coef", "intercept", "classes", "options"):
        assert ours[key] == theirs[key], key
    assert ours["training"]["loss_history"] == theirs["training"]["loss_history"]


# ------------------------------------------------------------------ configuration errors


def test_without_mlflow_asking_for_tracking_names_the_extra(monkeypatch):
    real_import = builtins.__import__

    def no_mlflow(name, *args, **kwargs):
        if name == "mlflow" or name.startswith("mlflow."):
            raise ImportError(f"No module named '{name}'")
        return real_import(name, *args, **kwargs)

    for name in [m for m in sys.modules if m == "mlflow" or m.startswith("mlflow.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(builtins, "__import__", no_mlflow)
    with pytest.raises(ConfigError, match=re.escape("pip install 'lrdask[mlflow]'")):
        tracking.tracker_for("http://127.0.0.1:5000", "x")
    assert tracking.tracker_for(None, None) is None  # not asked: mlflow is not needed


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--mlflow-experiment", "x"], "--mlflow-experiment needs a tracking server"),
        (["--mlflow-tracking-uri", "nosuchscheme://host/x"], "--mlflow-tracking-uri"),
    ],
    ids=["experiment-without-uri", "unusable-uri"],
)
def test_bad_tracking_options_exit_2_before_training(args, expected, tmp_path):
    data = write_table(tmp_path / "train", numeric(200, 0), parts=1)
    result = lrdask("train", data, "--label", "y", "--out", tmp_path / "m", *args, check=False)
    assert result.returncode == 2, result.stderr
    (line,) = [x for x in result.stderr.splitlines() if x.startswith("lrdask: error:")]
    assert expected in line
    assert not (tmp_path / "m").exists()
