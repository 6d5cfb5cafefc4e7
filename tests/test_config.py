import json
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import random_problem, write_partitions
from procs import lrdask

from lrdask.config import fill_placeholders, load_config, parse_pairs
from lrdask.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "jobs" / "train.example.toml"
KNOWN = {"data", "label", "out", "alpha", "max_iter", "storage_options"}


def test_keys_dashes_and_placeholders(tmp_path):
    path = tmp_path / "job.toml"
    path.write_text(
        'data = "${ROOT}/d=${RUN_DATE}"\nmax-iter = 5\n'
        '[storage_options]\nendpoint_url = "http://${HOST}"\n'
    )
    cfg = load_config(str(path), KNOWN, {"ROOT": "/x", "RUN_DATE": "2026-01-02", "HOST": "h"})
    assert cfg == {
        "data": "/x/d=2026-01-02",
        "max_iter": 5,
        "storage_options": {"endpoint_url": "http://h"},
    }


def test_run_date_defaults_to_today(tmp_path, monkeypatch):
    monkeypatch.delenv("RUN_DATE", raising=False)
    import datetime

    today = datetime.datetime.now(datetime.timezone.utc).date().isoformat()
    path = tmp_path / "job.toml"
    path.write_text('data = "d=${RUN_DATE}"\n')
    assert load_config(str(path), KNOWN)["data"] == f"d={today}"


def test_unknown_key_suggests(tmp_path):
    path = tmp_path / "job.toml"
    path.write_text("alpah = 0.1\n")
    with pytest.raises(ConfigError, match="unknown key 'alpah'; did you mean 'alpha'"):
        load_config(str(path), KNOWN)


def test_missing_placeholder_and_bad_toml(tmp_path):
    with pytest.raises(ConfigError, match=r"placeholder \$\{NOPE\} has no value"):
        fill_placeholders({"a": ["${NOPE}"]}, {})
    path = tmp_path / "job.toml"
    path.write_text("data = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(str(path), KNOWN)
    with pytest.raises(ConfigError, match="takes KEY=VALUE"):
        parse_pairs(("novalue",), "--param")


def test_example_job_runs_with_run_specific_outputs(tmp_path):
    X, y = random_problem(2000, 3, seed=2)
    write_partitions(tmp_path / "lake" / "date=2026-11-26", X, y, [1000, 1000])
    env = {"DATA_ROOT": str(tmp_path / "lake"), "MODEL_ROOT": str(tmp_path / "models")}
    result = lrdask(
        "train",
        "--config",
        EXAMPLE,
        "--param",
        "RUN_DATE=2026-11-26",
        "--max-iter",
        40,
        "--tol",
        0,
        "--gtol",
        0,
        "--workers",
        1,
        env=env,
    )
    run = tmp_path / "models" / "run_date=2026-11-26"
    assert result.stdout.strip() == str(run / "model.json")
    assert sorted(os.listdir(run)) == ["_SUCCESS", "loss_curve.png", "metrics.json", "model.json"]
    assert (run / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    model = json.loads((run / "model.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    assert model["options"]["alpha"] == 1.0  # from the file
    assert model["training"]["n_iter"] == metrics["iterations"] == 40  # flag beats the file
    assert metrics["params"]["RUN_DATE"] == "2026-11-26"
    assert metrics["final_cost"] == model["training"]["loss_history"][-1]
    # log_format = "json" in the file: every log line is a JSON object
    records = [json.loads(line) for line in result.stderr.splitlines() if line.strip()]
    iterations = [r for r in records if "iteration" in r]
    assert [r["iteration"] for r in iterations] == list(range(0, 41, 10))
    assert all({"cost", "grad_norm", "seconds"} <= set(r) for r in iterations)
    assert np.isclose(iterations[-1]["cost"], metrics["final_cost"])


def test_missing_required_option_names_it(tmp_path):
    path = tmp_path / "job.toml"
    path.write_text('label = "y"\n')
    result = lrdask("train", "--config", path, "/nowhere", check=False)
    assert result.returncode == 2
    assert "missing --out: give it on the command line or in --config" in result.stderr


def test_plot_and_info_commands(tmp_path):
    X, y = random_problem(400, 3, seed=5)
    data = write_partitions(tmp_path / "d", X, y, [400])
    lrdask("train", data, "--label", "y", "--out", tmp_path / "m", "--max-iter", 20, "--workers", 1)
    png = lrdask("plot", tmp_path / "m", "--out", tmp_path / "curve.png").stdout.strip()
    assert Path(png).read_bytes()[:4] == b"\x89PNG"
    text = lrdask("info", tmp_path / "m").stdout
    doc = json.loads((tmp_path / "m" / "model.json").read_text())
    order = sorted(range(3), key=lambda j: -abs(doc["coef"][j]))
    listed = [line.split()[0] for line in text.splitlines()[-3:]]
    assert listed == [doc["features"][j] for j in order]
    assert "iterations 20 (max_iter=20 reached: max |gradient|" in text
    summary = json.loads(lrdask("info", tmp_path / "m", "--json").stdout)
    assert summary["final_cost"] == doc["training"]["loss_history"][-1]
