"""What does the scikit-learn-style API cost: ``LogisticRegression().fit(X, y)`` from each
kind of input, on one Dask client reused by every fit?

One LocalCluster (``--workers`` processes × 1 thread) is started once; every fit uses it
(``client=``), as a user's session or a ``GridSearchCV`` does. For each ``--sizes`` data set
(``ROWSxFEATURES``; made with ``lrdask.synthetic.make_data``, seed 0, as 4 Parquet files
under ``--data-dir``, then read once into the driver as NumPy X, y) it measures:

1. the wall time of the same fit (median of ``--repeats``; the inputs take turns within each
   round) with ``solver`` lbfgs and newton, ``l2`` = ``--l2``, ``tol=0``, ``gtol`` = ``--gtol``,
   from each input: the Parquet path, NumPy arrays, a pandas DataFrame + Series, dask arrays
   (``da.from_array``, chunks of ¼ of the rows), a dask DataFrame + Series from
   ``dd.from_pandas`` (4 partitions) and one from ``dd.read_parquet`` of the same files.
   Iterations and passes are reported beside each time (the comparison is at equal work),
   and the fit's own ``timings_`` (profile, load, solve); for NumPy also the driver's
   ``training_source`` alone (checks, Arrow table, fingerprint hash);
2. the same problem by dask-ml's LogisticRegression (lbfgs, same objective: see
   ``bench_solvers.dask_ml_l2_penalty``) on the dask arrays as given and persisted first,
   and by scikit-learn's (lbfgs, C = 1/(λ·m), ``tol`` = ``--gtol``, in this process, data in
   memory); each with the largest |coefficient difference| from lrdask newton on Parquet;
3. on the largest size, the driver's memory during one fit from each input: the peak RSS
   (VmHWM, reset just before) above the RSS before, and tracemalloc's peak in a second fit;
4. ``GridSearchCV(Pipeline(StandardScaler, LogisticRegression), 4 values of l2, cv=3)`` on
   scikit-learn's breast-cancer set (569 × 30, shipped with it), lrdask against
   scikit-learn's own LogisticRegression (C = 1/(λ·m_train)): wall time and time per fit.

Timings mean something only on an otherwise idle machine: the first output line gives the
load average and the CPU-seconds other processes used. Markdown tables go to stdout,
progress to stderr, every raw sample to ``--json PATH``. Run from the repository root::

    python benchmarks/bench_sklearn_api.py --quick                  # smoke test, ~30 s
    python benchmarks/bench_sklearn_api.py --json /tmp/lrdask-bench/sklearn_api.json
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import sys
import time
import tracemalloc
import warnings
from collections.abc import Callable, Iterator

import numpy as np
from bench_iteration import (
    ensure_data,
    log,
    markdown_table,
    one_thread,
    other_cpu_usage,
    read_table_arrays,
)
from bench_solvers import _quiet_workers, dask_ml_l2_penalty, environment, quiet
from distributed import Client, wait

from lrdask.cluster import connect
from lrdask.estimator import LogisticRegression

PARTITIONS = 4  # Parquet files, dask chunks and partitions: ~¼ of the rows each
MAX_ITER = {"lbfgs": 1000, "newton": 100}
INPUTS = (
    "Parquet path",
    "NumPy",
    "pandas DataFrame + Series",
    "dask array (from_array)",
    "dask DataFrame + Series (from_pandas)",
    "dask DataFrame + Series (read_parquet)",
)
QUICK_MEMORY_INPUTS = ("NumPy",)
GRID_L2 = (1e-4, 1e-3, 1e-2, 1e-1)
GRID_CV = 3
BASELINE_INPUTS = ("Parquet path", "NumPy", "dask array (from_array)")
REFERENCE = ("newton", "Parquet path")  # the coefficients every other fit is compared to


# ---- inputs ------------------------------------------------------------------------------
class Data:
    """One data set: its Parquet directory and the same rows as NumPy X, y in the driver."""

    def __init__(self, data_dir: str, rows: int, features: int):
        self.path = ensure_data(data_dir, rows, features, PARTITIONS)
        with open(os.path.join(self.path, "_truth.json")) as fh:
            self.features = list(json.load(fh)["features"])
        self.X, self.y, _ = read_table_arrays(self.path, self.features)
        self.rows, self.name = rows, f"{rows:,} × {features}"

    def fit_args(self, kind: str) -> tuple[object, object]:
        """(X, y) for ``fit`` as the input kind; dask collections are lazy, as given."""
        import dask.array as da
        import dask.dataframe as dd
        import pandas as pd

        if kind == "Parquet path":
            return self.path, "y"
        if kind == "NumPy":
            return self.X, self.y
        frame = pd.DataFrame(self.X, columns=self.features)
        if kind == "pandas DataFrame + Series":
            return frame, pd.Series(self.y, name="y")
        chunk = math.ceil(self.rows / PARTITIONS)
        if kind == "dask array (from_array)":
            return da.from_array(self.X, chunks=(chunk, -1)), da.from_array(self.y, chunks=chunk)
        if kind == "dask DataFrame + Series (from_pandas)":
            return (
                dd.from_pandas(frame, npartitions=PARTITIONS),
                dd.from_pandas(pd.Series(self.y, name="y"), npartitions=PARTITIONS),
            )
        if kind == "dask DataFrame + Series (read_parquet)":
            table = dd.read_parquet(self.path, columns=[*self.features, "y"])
            return table[self.features], table["y"]
        raise ValueError(kind)


def lrdask_model(solver: str, args: argparse.Namespace) -> LogisticRegression:
    return LogisticRegression(
        solver=solver,
        l2=args.l2,
        tol=0.0,
        gtol=args.gtol,
        max_iter=MAX_ITER[solver],
    )


def fit_once(client: Client, data: Data, kind: str, solver: str, args) -> dict:
    """One timed lrdask fit: wall seconds, the fit's own timings_, iterations, passes, and
    the warnings it raised (Dask's "Sending large graph" when data travel inside tasks)."""
    X, y = data.fit_args(kind)
    model = lrdask_model(solver, args)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        start = time.perf_counter()
        model.fit(X, y, client=client)
        wall = time.perf_counter() - start
    out = {
        "warnings": [str(w.message).splitlines()[0] for w in caught],
        "wall": wall,
        "timings": dict(model.timings_),
        "n_iter": int(model.n_iter_),
        "passes": int(getattr(model, "n_passes_", 0) or 0),
        "status": model.status_,
        "coef": [*np.ravel(model.coef_).tolist(), float(np.ravel(model.intercept_)[0])],
    }
    del X, y, model
    gc.collect()
    out["driver_rss_after"] = _status_kib("VmRSS") * 1024  # does the session keep growing?
    return out


def median_of(samples: list[dict], key: Callable[[dict], float]) -> float:
    return float(np.median([key(s) for s in samples]))


def training_source_seconds(data: Data, repeats: int) -> list[float] | str:
    """The driver's part of a NumPy fit before anything reaches the workers: scikit-learn's
    checks, the Arrow table and its fingerprint hash (``lrdask.sources.training_source``)."""
    try:
        from lrdask.sources import training_source
    except ImportError as exc:  # the library moved it: the row reads n/a
        return f"n/a ({exc})"
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        training_source(data.X, None, None, None, None, None, None, y=data.y)
        samples.append(time.perf_counter() - start)
    return samples


def first_fits(client: Client, data: Data, args) -> dict:
    """An untimed round before the measurements: the first fit from each input kind in
    this session pays one-time costs (imports in the driver and on the workers, first
    conversions); reported apart, so the medians measure fits that reuse the session."""
    out = {}
    for kind in INPUTS:
        r = fit_once(client, data, kind, args.solvers[0], args)
        out[kind] = r
        log(f"first fit, {kind}: {r['wall']:.2f} s (untimed round, {data.name})")
    return out


# ---- baselines -----------------------------------------------------------------------------
def sklearn_fit(data: Data, args) -> dict:
    """scikit-learn's lbfgs on the same objective: C = 1/(λ·m) (its penalty is
    ‖w‖²/(2·C·m) on the mean loss) and tol on its gradient, as lrdask's gtol."""
    from sklearn.linear_model import LogisticRegression as SkLogisticRegression

    model = SkLogisticRegression(C=1.0 / (args.l2 * data.rows), tol=args.gtol, max_iter=10_000)
    start = time.perf_counter()
    model.fit(data.X, data.y)
    wall = time.perf_counter() - start
    return {
        "wall": wall,
        "n_iter": int(np.ravel(model.n_iter_)[0]),
        "coef": [*model.coef_.ravel().tolist(), float(model.intercept_[0])],
    }


@contextlib.contextmanager
def scipy_info(out: dict) -> Iterator[None]:
    """Record what dask-glm's fmin_l_bfgs_b returns (iterations, function evaluations)."""
    import dask_glm.algorithms as algorithms

    original = algorithms.fmin_l_bfgs_b

    def recorded(*a, **kw):
        x, f, info = original(*a, **kw)
        out.update(
            nit=int(info["nit"]),
            funcalls=int(info["funcalls"]),
            warnflag=int(info["warnflag"]),
            task=str(info.get("task", "")),
            grad_max=float(np.max(np.abs(info["grad"]))),
        )
        return x, f, info

    algorithms.fmin_l_bfgs_b = recorded
    try:
        yield
    finally:
        algorithms.fmin_l_bfgs_b = original


def dask_ml_fit(client: Client, data: Data, persist: bool, args, max_iter: int = 0) -> dict:
    """dask-ml's lbfgs on the dask arrays (lazy as given, or persisted first, inside the
    timing): the same F as lrdask, its gradient tolerance scaled to dask-glm's summed loss."""
    from dask_ml.linear_model import LogisticRegression as DaskMLLogisticRegression

    X, y = data.fit_args("dask array (from_array)")
    model = DaskMLLogisticRegression(
        solver="lbfgs",
        C=1.0 / (args.l2 * data.rows),
        penalty=dask_ml_l2_penalty(),
        tol=args.gtol * data.rows,
        max_iter=max_iter or MAX_ITER["lbfgs"],
        solver_kwargs={"normalize": False},
    )
    info: dict = {}
    # quiet(): dask-glm overflows exp() and warns about its own deprecated calls
    with quiet(), scipy_info(info), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        start = time.perf_counter()
        if persist:
            X, y = client.persist([X, y])
            wait([X, y])
        model.fit(X, y)
        wall = time.perf_counter() - start
    return {
        "wall": wall,
        "n_iter": info.get("nit"),
        "passes": info.get("funcalls"),
        "warnings": [str(w.message).splitlines()[0] for w in caught],
        "stop": info.get("task"),
        "grad_max_mean": None if "grad_max" not in info else info["grad_max"] / data.rows,
        "coef": [*np.asarray(model.coef_, float).tolist(), float(model.intercept_)],
    }


def dask_ml_missing() -> str | None:
    try:
        import dask_ml.linear_model  # noqa: F401
    except ImportError as exc:
        return f"n/a (dask-ml not installed: {exc})"
    return None


# ---- one size -------------------------------------------------------------------------------
def bench_size(client: Client, data: Data, args) -> dict:
    fits: dict = {s: {k: [] for k in INPUTS} for s in args.solvers}
    for round_ in range(args.repeats):
        for solver in args.solvers:
            for kind in INPUTS:
                r = fit_once(client, data, kind, solver, args)
                fits[solver][kind].append(r)
                log(
                    f"{data.name} round {round_ + 1}: {solver} {kind}: {r['wall']:.2f} s, "
                    f"{r['n_iter']} iterations, {r['passes']} passes, driver RSS after "
                    f"{r['driver_rss_after'] / 2**20:.0f} MiB"
                )
    out: dict = {"rows": data.rows, "features": len(data.features), "lrdask": fits}
    out["training_source"] = training_source_seconds(data, args.repeats)
    log(f"{data.name}: scikit-learn")
    with one_thread():  # BLAS threads busy-wait on a shared 2-core machine: see README
        out["sklearn"] = [sklearn_fit(data, args) for _ in range(args.repeats)]
    out["sklearn_default_threads"] = [sklearn_fit(data, args) for _ in range(args.repeats)]
    missing = "skipped (--skip-dask-ml)" if args.skip_dask_ml else dask_ml_missing()
    if missing:
        out["dask_ml"] = missing
    else:
        client.run(_quiet_workers)
        log(f"{data.name}: dask-ml warm-up fit (max_iter=1, untimed)")
        dask_ml_fit(client, data, True, args, max_iter=1)
        out["dask_ml"] = {}
        for persist in (False, True):
            label = "persisted first" if persist else "as given"
            log(f"{data.name}: dask-ml lbfgs, dask arrays {label}")
            out["dask_ml"][label] = [
                dask_ml_fit(client, data, persist, args) for _ in range(args.repeats)
            ]
    return out


# ---- driver memory ---------------------------------------------------------------------------
def _status_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # resets VmHWM to the current RSS
        return True
    except OSError:
        return False


def driver_memory(client: Client, data: Data, kinds: tuple[str, ...], args) -> dict:
    """Per input: RSS before a fit and VmHWM during it (reset first), then tracemalloc's
    peak over a second fit (Python and NumPy allocations of the driver)."""
    out = {"x_and_y_bytes": data.X.nbytes + data.y.nbytes}
    for kind in kinds:
        solver = args.solvers[0]
        X, y = data.fit_args(kind)  # a pandas copy is made here, before "RSS before"
        gc.collect()
        reset = _reset_peak_rss()
        before = _status_kib("VmRSS")
        lrdask_model(solver, args).fit(X, y, client=client)
        peak = _status_kib("VmHWM")
        del X, y
        gc.collect()
        X, y = data.fit_args(kind)
        tracemalloc.start()
        lrdask_model(solver, args).fit(X, y, client=client)
        _, traced_peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        del X, y
        out[kind] = {
            "solver": solver,
            "rss_before": before * 1024,
            "peak_rss": peak * 1024 if reset else None,
            "tracemalloc_peak": traced_peak,
        }
        log(
            f"memory {kind}: peak RSS +{(peak - before) / 1024:.0f} MiB, "
            f"tracemalloc peak {traced_peak / 2**20:.0f} MiB"
        )
    return out


# ---- GridSearchCV --------------------------------------------------------------------------
def bench_grid(client: Client, args) -> dict:
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression as SkLogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = load_breast_cancer(return_X_y=True)
    values = GRID_L2[: args.grid_values]
    folds = StratifiedKFold(GRID_CV)
    m_train = len(y) * (GRID_CV - 1) / GRID_CV  # rows each fold's fit sees
    searches = {
        "lrdask LogisticRegression (lbfgs)": GridSearchCV(
            make_pipeline(StandardScaler(), lrdask_model("lbfgs", args)),
            {"logisticregression__l2": list(values)},
            cv=folds,
        ),
        "scikit-learn LogisticRegression (lbfgs)": GridSearchCV(
            make_pipeline(StandardScaler(), SkLogisticRegression(tol=args.gtol, max_iter=10_000)),
            {"logisticregression__C": [1.0 / (v * m_train) for v in values]},
            cv=folds,
        ),
    }
    fits = len(values) * GRID_CV + 1  # + the refit on all rows
    out: dict = {"rows": int(X.shape[0]), "features": int(X.shape[1]), "fits": fits}
    for name, search in searches.items():
        samples = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            with one_thread():  # for both: scikit-learn's fits run in this process
                search.fit(X, y)
            samples.append(time.perf_counter() - start)
        best = search.best_estimator_[-1]
        out[name] = {
            "wall": samples,
            "best_params": {k: float(v) for k, v in search.best_params_.items()},
            "best_score": float(search.best_score_),
            "refit_timings": dict(getattr(best, "timings_", {}) or {}),
        }
        log(f"GridSearchCV {name}: {np.median(samples):.2f} s for {fits} fits")
    # one lrdask fit of the whole set, for where a small fit's time goes
    single = []
    for _ in range(args.repeats):
        model = lrdask_model("lbfgs", args)
        start = time.perf_counter()
        model.fit(StandardScaler().fit_transform(X), y, client=client)
        single.append({"wall": time.perf_counter() - start, "timings": dict(model.timings_)})
    out["single_lrdask_fit"] = single
    return out


# ---- output --------------------------------------------------------------------------------
def fmt_s(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    return f"{seconds * 1e3:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def _coef_diff(coef: list[float], reference: list[float]) -> str:
    return f"{np.max(np.abs(np.subtract(coef, reference))):.1e}"


def _work(samples: list[dict]) -> str:
    iters = sorted({s["n_iter"] for s in samples})
    passes = sorted({s.get("passes") for s in samples if s.get("passes") is not None})
    text = "/".join(map(str, iters))
    return f"{text} / {'/'.join(map(str, passes))}" if passes else f"{text} / n/a"


def fit_table(result: dict, solver: str) -> str:
    fits = result["lrdask"][solver]
    reference = result["lrdask"][REFERENCE[0]][REFERENCE[1]][0]["coef"]
    numpy_wall = median_of(fits["NumPy"], lambda s: s["wall"])
    rows = []
    for kind in INPUTS:
        samples = fits[kind]
        wall = median_of(samples, lambda s: s["wall"])
        t = {
            k: median_of(samples, lambda s, k=k: s["timings"].get(k, 0.0))
            for k in ("profile", "load", "solve")
        }
        rows.append(
            [
                kind,
                f"{fmt_s(wall)} ({fmt_s(min(s['wall'] for s in samples))}–"
                f"{fmt_s(max(s['wall'] for s in samples))})",
                f"{wall / numpy_wall:.2f}",
                fmt_s(t["profile"]),
                fmt_s(t["load"]),
                fmt_s(t["solve"]),
                fmt_s(wall - sum(t.values())),
                _work(samples),
                _coef_diff(samples[0]["coef"], reference),
            ]
        )
    header = [
        f"lrdask {solver}, input",
        "fit wall, median (min–max)",
        "/ NumPy",
        "profile",
        "load",
        "solve",
        "rest",
        "iterations / passes",
        "max |Δcoef| vs newton (Parquet)",
    ]
    warned = [f"{k}: {_warned(fits[k][0])}" for k in INPUTS if fits[k][0].get("warnings")]
    note = "\n\nWarnings raised by one fit: " + "; ".join(warned) + "." if warned else ""
    return markdown_table(header, rows) + note


def gradient_max(data: Data, coef: list[float], l2: float) -> float:
    """max |∇F| at (w, b) = coef, F = mean log loss + (λ/2)·‖w‖², in float64 NumPy: where
    each fit stopped, measured the same way for all of them."""
    from scipy.special import expit

    w, b = np.asarray(coef[:-1]), coef[-1]
    residual = expit(data.X @ w + b) - data.y
    grad = np.append(data.X.T @ residual / data.rows + l2 * w, residual.mean())
    return float(np.max(np.abs(grad)))


def add_gradients(result: dict, data: Data, l2: float) -> None:
    """Each baseline row's first sample gets its max |∇F| (``gradient_max``)."""
    samples = [result["lrdask"][s][k][0] for s in result["lrdask"] for k in BASELINE_INPUTS]
    samples.append(result["sklearn"][0])
    if isinstance(result["dask_ml"], dict):
        samples += [runs[0] for runs in result["dask_ml"].values()]
    for sample in samples:
        sample["grad_max"] = gradient_max(data, sample["coef"], l2)


def baseline_table(result: dict) -> str:
    reference = result["lrdask"][REFERENCE[0]][REFERENCE[1]][0]["coef"]
    rows = []
    for solver in result["lrdask"]:
        for kind in BASELINE_INPUTS:
            samples = result["lrdask"][solver][kind]
            rows.append(
                [
                    f"lrdask {solver}, {kind}",
                    fmt_s(median_of(samples, lambda s: s["wall"])),
                    _work(samples),
                    _coef_diff(samples[0]["coef"], reference),
                    _grad(samples[0]),
                ]
            )
    dml = result["dask_ml"]
    for label in ("as given", "persisted first"):
        name = f"dask-ml lbfgs, dask arrays (from_array) {label}"
        if isinstance(dml, str):
            rows.append([name, dml, "—", "—", "—"])
            continue
        samples = dml[label]
        rows.append(
            [
                name + (" (persist timed)" if label == "persisted first" else ""),
                fmt_s(median_of(samples, lambda s: s["wall"])),
                _work(samples),
                _coef_diff(samples[0]["coef"], reference),
                _grad(samples[0]),
            ]
        )
    for key, threads in (("sklearn", "1 BLAS thread"), ("sklearn_default_threads", "BLAS default")):
        sk = result[key]
        rows.append(
            [
                f"scikit-learn lbfgs, NumPy (this process, {threads})",
                fmt_s(median_of(sk, lambda s: s["wall"])),
                f"{sk[0]['n_iter']} / n/a",
                _coef_diff(sk[0]["coef"], reference),
                _grad(sk[0]),
            ]
        )
    header = [
        "fit",
        "wall, median",
        "iterations / passes",
        "max |Δcoef| vs lrdask newton",
        "max |∇F| where it stopped",
    ]
    table = markdown_table(header, rows)
    if isinstance(dml, dict):
        stops = sorted({s.get("stop") or "?" for runs in dml.values() for s in runs})
        table += f"\n\ndask-ml (scipy's fmin_l_bfgs_b) stopped with: {'; '.join(stops)}."
        for label, runs in dml.items():
            table += f" Warnings in one dask-ml fit, arrays {label}: {_warned(runs[0])}."
    return table


def _grad(sample: dict) -> str:
    return f"{sample['grad_max']:.1e}" if "grad_max" in sample else "n/a"


def memory_table(memory: dict) -> str:
    xy = memory["x_and_y_bytes"]
    rows = []
    for kind, m in memory.items():
        if kind == "x_and_y_bytes":
            continue
        extra = None if m["peak_rss"] is None else m["peak_rss"] - m["rss_before"]
        rows.append(
            [
                f"{kind} ({m['solver']})",
                f"{m['rss_before'] / 2**20:.0f} MiB",
                "n/a" if extra is None else f"{extra / 2**20:+.0f} MiB ({extra / xy:.2f}×)",
                f"{m['tracemalloc_peak'] / 2**20:.0f} MiB ({m['tracemalloc_peak'] / xy:.2f}×)",
            ]
        )
    header = [
        f"driver during one fit (X + y = {xy / 2**20:.0f} MiB)",
        "RSS before",
        "peak RSS above it (× X + y)",
        "tracemalloc peak (× X + y)",
    ]
    return markdown_table(header, rows)


def grid_table(grid: dict) -> str:
    rows = []
    for name in ("lrdask LogisticRegression (lbfgs)", "scikit-learn LogisticRegression (lbfgs)"):
        g = grid[name]
        wall = float(np.median(g["wall"]))
        rows.append(
            [
                name,
                fmt_s(wall),
                fmt_s(wall / grid["fits"]),
                ", ".join(f"{k.split('__')[1]}={v:.3g}" for k, v in g["best_params"].items()),
                f"{g['best_score']:.4f}",
            ]
        )
    header = [
        f"GridSearchCV, {grid['rows']} × {grid['features']}, {grid['fits']} fits",
        "wall, median",
        "per fit",
        "best",
        "best CV accuracy",
    ]
    single = grid["single_lrdask_fit"]
    t = {
        k: median_of(single, lambda s, k=k: s["timings"].get(k, 0.0))
        for k in ("profile", "load", "solve")
    }
    wall = median_of(single, lambda s: s["wall"])
    note = (
        f"One lrdask fit of all {grid['rows']} rows (NumPy): {fmt_s(wall)} = profile "
        f"{fmt_s(t['profile'])} + load {fmt_s(t['load'])} + solve {fmt_s(t['solve'])} + rest "
        f"{fmt_s(wall - sum(t.values()))}."
    )
    return markdown_table(header, rows) + "\n\n" + note


def _warned(sample: dict) -> str:
    texts = sample.get("warnings", [])
    if not texts:
        return "none"
    counts = {t: texts.count(t) for t in texts}
    return "; ".join(f"{n} × {t.rstrip('.')}" for t, n in counts.items())


def args_solver(output: dict) -> str:
    return output["environment"]["options"]["solvers"][0]


def print_report(output: dict) -> None:
    env, contention = output["environment"], output["contention"]
    share = contention["other_cpu_seconds"] / max(contention["available_cpu_seconds"], 1e-9)
    print(
        f"lrdask {env['lrdask']}, {env['workers']} workers × 1 thread on {env['cores']} cores "
        f"({env['cpu']}); scikit-learn {env['sklearn']}, dask-ml {env['dask_ml']}, dask "
        f"{env['dask']}; l2 {env['options']['l2']:g}, tol 0, gtol {env['options']['gtol']:g}, "
        f"{env['options']['repeats']} repeats; load average at start "
        f"{env['load_average_at_start'][0]:.2f}, at end {output['load_average_at_end'][0]:.2f}; "
        f"other processes used {contention['other_cpu_seconds']:.0f} of "
        f"{contention['available_cpu_seconds']:.0f} CPU-seconds ({share:.0%})"
        f"{': timings unreliable' if share > 0.05 else ''}\n"
    )
    for name, result in output["sizes"].items():
        c = result["contention"]
        print(
            f"### {name} (other processes: {c['other_cpu_seconds']:.0f} of "
            f"{c['available_cpu_seconds']:.0f} CPU-seconds)\n"
        )
        for solver in result["lrdask"]:
            print(fit_table(result, solver) + "\n")
        ts = result["training_source"]
        if isinstance(ts, list):
            print(
                f"NumPy: the driver's training_source alone (checks, Arrow table, fingerprint "
                f"hash) takes {fmt_s(float(np.median(ts)))} of the profile step.\n"
            )
        print(baseline_table(result) + "\n")
    first = output.get("first_fits")
    if first:
        rows = [
            [kind, fmt_s(r["wall"]), fmt_s(r["timings"].get("profile")), _warned(r)]
            for kind, r in first.items()
        ]
        print(
            f"### First fit from each input in the session ({next(iter(output['sizes']))}, "
            f"{args_solver(output)}, before the measured rounds)\n"
        )
        header = ["input", "wall", "profile", "warnings raised by the fit"]
        print(markdown_table(header, rows) + "\n")
    if output.get("memory"):
        print(f"### Driver memory, {output['memory_size']}\n")
        print(memory_table(output["memory"]) + "\n")
    if output.get("grid"):
        print("### GridSearchCV on breast cancer\n")
        print(grid_table(output["grid"]) + "\n")
    print(f"wall time: {output['wall_seconds']:.0f} s")


# ---- main ------------------------------------------------------------------------------------
def _size(text: str) -> tuple[int, int]:
    rows, _, features = text.lower().partition("x")
    return int(rows), int(features)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes", default="100000x20,1000000x20", help="comma list of ROWSxFEATURES"
    )
    parser.add_argument("--repeats", type=int, default=3, help="fits per input (median)")
    parser.add_argument("--data-dir", default="/tmp/lrdask-bench", help="Parquet sets here")
    parser.add_argument("--json", metavar="PATH", help="write every raw sample here")
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--skip-dask-ml", action="store_true", help="do not run dask-ml")
    parser.add_argument("--skip-grid", action="store_true", help="no GridSearchCV table")
    parser.add_argument("--skip-memory", action="store_true", help="no driver memory table")
    parser.add_argument("--l2", type=float, default=1e-3, help="λ of (λ/2)·‖w‖²")
    parser.add_argument("--gtol", type=float, default=1e-8, help="lrdask's gtol (tol is 0)")
    parser.add_argument("--solvers", default="lbfgs,newton", help="comma list: lbfgs, newton")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke test: 10000x10, 1 repeat, 2 grid values, memory of the NumPy fit only",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.repeats = "10000x10", 1
    args.grid_values = 2 if args.quick else len(GRID_L2)
    try:
        args.sizes = [_size(s) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        parser.error("--sizes: a comma list of ROWSxFEATURES, e.g. 100000x20,1000000x20")
    args.solvers = [s.strip() for s in args.solvers.split(",") if s.strip()]
    if not args.solvers or set(args.solvers) - set(MAX_ITER):
        parser.error(f"--solvers: a comma list of {', '.join(MAX_ITER)}")
    if REFERENCE[0] not in args.solvers:
        args.solvers.append(REFERENCE[0])  # the coefficients every row is compared to
    if min(args.repeats, args.workers, args.l2) <= 0 or args.gtol < 0:
        parser.error("--repeats, --workers, --l2 must be positive, --gtol ≥ 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    output: dict = {"environment": environment(args), "sizes": {}}
    contention: dict = {}
    with connect(workers=args.workers) as client, other_cpu_usage(contention):
        datas = [Data(args.data_dir, rows, features) for rows, features in args.sizes]
        output["first_fits"] = first_fits(client, datas[0], args)
        for data in datas:
            others: dict = {}
            with other_cpu_usage(others):
                output["sizes"][data.name] = bench_size(client, data, args)
            output["sizes"][data.name]["contention"] = others
            add_gradients(output["sizes"][data.name], data, args.l2)
        if not args.skip_memory:
            largest = max(datas, key=lambda d: d.X.nbytes)
            kinds = QUICK_MEMORY_INPUTS if args.quick else INPUTS
            output["memory_size"] = largest.name
            output["memory"] = driver_memory(client, largest, kinds, args)
        if not args.skip_grid:
            output["grid"] = bench_grid(client, args)
    output["contention"] = contention
    output["wall_seconds"] = time.perf_counter() - started
    output["load_average_at_end"] = os.getloadavg()
    print_report(output)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(output, fh, indent=1, default=float)
        log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
