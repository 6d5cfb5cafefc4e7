"""The benchmark scripts still run end to end (on tiny data, timings not asserted): a
benchmark that no longer matches the library's API fails here, not on the day it is needed."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def run(script, tmp_path, *args):
    out = tmp_path / "result.json"
    result = subprocess.run(
        [sys.executable, BENCHMARKS / script, "--data-dir", tmp_path, "--json", out, *args],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout, json.loads(out.read_text())


@pytest.mark.cluster
def test_iteration_benchmark_runs(tmp_path):
    table, raw = run(
        "bench_iteration.py",
        tmp_path,
        "--sizes",
        "small",
        "--rows-scale",
        "0.02",
        "--iterations",
        "3",
        "--skip-dask-ml",
    )
    assert "| **lrdask pass** (partial_sums)" in table
    assert "lrdask pass / empty round trip" in table
    assert raw["sizes"]["small"]["lrdask"]["load"]["best"] > 0


@pytest.mark.cluster
def test_solver_benchmark_runs(tmp_path):
    table, raw = run(
        "bench_solvers.py",
        tmp_path,
        "--sizes",
        "breast_cancer",
        "--skip-dask-ml",
        "--max-passes",
        "300",
        "--budget",
        "30",
    )
    assert "| lrdask newton |" in table and "| lrdask lbfgs |" in table
    assert "breast_cancer" in json.dumps(raw)


@pytest.mark.cluster
def test_categorical_benchmark_runs(tmp_path):
    table, raw = run("bench_categorical.py", tmp_path, "--rows", "20000", "--quick")
    assert "categorical" in table.lower() and raw


@pytest.mark.cluster
def test_reduction_benchmark_runs(tmp_path):
    table, raw = run(
        "bench_reduction.py",
        tmp_path,
        "--rows",
        "200000",
        "--workers",
        "1,3",
        "--iterations",
        "3",
        "--paired",
    )
    assert "| 3 (" in table and "same bits every pass" in table
    assert [r["workers"] for r in raw] == [1, 3]
    assert all(r["same_bits_every_pass"] for r in raw)
    assert len(raw[1]["returned_per_worker"]) <= 3
    assert all(r["paired_ratio_median"] > 0 for r in raw)


@pytest.mark.cluster
def test_sklearn_api_benchmark_runs(tmp_path):
    table, raw = run(
        "bench_sklearn_api.py", tmp_path, "--quick", "--skip-dask-ml", "--solvers", "newton"
    )
    assert "| lrdask newton, input |" in table and "GridSearchCV" in table
    assert "peak RSS above it" in table
    (size,) = raw["sizes"].values()
    fits = size["lrdask"]["newton"]
    assert set(fits) == set(raw["first_fits"])  # every input kind was fitted
    # the same problem from every input: the same coefficients, and scikit-learn's
    coefs = np.array([samples[0]["coef"] for samples in fits.values()])
    np.testing.assert_allclose(coefs, np.broadcast_to(coefs[0], coefs.shape), atol=1e-9)
    np.testing.assert_allclose(size["sklearn"][0]["coef"], coefs[0], atol=1e-5)
    assert raw["grid"]["fits"] > 0 and raw["memory"]["NumPy"]["tracemalloc_peak"] > 0


@pytest.mark.cluster
def test_scale_benchmark_runs(tmp_path):
    table, raw = run(
        "bench_scale.py",
        tmp_path,
        "--workers-list",
        "1,2",
        "--block-sweeps",
        "2:2,8",
        "--iterations",
        "3",
        "--warmup",
        "1",
        "--latency-iterations",
        "2",
        "--idle-seconds",
        "0.3",
    )
    assert "### Fitted constants" in table and "### Projection" in table
    configs = [(r["workers"], r["blocks"]) for r in raw["results"]]
    assert configs == [(1, 4), (2, 2), (2, 8)]
    for r in raw["results"]:
        # every worker folded its blocks once per pass, and the pass reached the workers
        assert r["folds_per_pass"] == [r["workers"]] == r["workers_folding_per_pass"]
        assert r["payload_per_pass"]["driver→scheduler"] > 0
        assert r["payload_per_pass"]["scheduler→worker"] > 0
        assert r["overhead"]["median"] > 0 and r["passes"]["n"] == 3
    assert all(r["latency"] for r in raw["results"] if r["main_sweep"])
    (model,) = raw["models"].values()  # W ≤ 2: one path
    assert set(model["overhead"]["constants"]) == {"c", "a", "b"}
    assert {p["workers"] for p in raw["projection"]} == {100, 1_000, 10_000}
