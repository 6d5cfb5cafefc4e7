"""How many passes and how much wall time does each solver need to reach the optimum?

For each data set ("breast_cancer": scikit-learn's 569 × 30 set, standardized, written to
4 Parquet files; "large": 4M × 50 in 32 files made with ``lrdask.synthetic.make_data``,
the same files as ``bench_iteration.py``'s large set) and one L2 objective

    F(w, b) = mean log loss + (λ/2)·‖w‖²,  λ = --l2 (1e-3), intercept not penalized,

this finds f* = F at scikit-learn's lbfgs solution (C = 1/(λ·m), tol=1e-12, evaluated here
in float64 NumPy on all rows) and then, on one LocalCluster (``--workers`` processes × 1
thread), records for every solver the first iterate with (F_k − f*)/|f*| ≤ 1e-6 (--target):
how many distributed passes and how many seconds it took, counted from the start of the
first pass (data loading excluded). Rows:

- lrdask gd (fixed α = 1/L, L the Lipschitz constant of ∇F), gd with line search, agd
  (Nesterov/FISTA, α = 1/L), lbfgs, newton: passes from ``IterationInfo.passes`` (else
  counted by wrapping ``PersistedBlocks.partial_sums`` on the driver);
- dask-ml's LogisticRegression, solvers lbfgs and gradient_descent, on the same data as a
  persisted dask array on the same cluster. Its lbfgs is given the same objective (see
  ``dask_ml_l2_penalty``); its gradient_descent takes no penalty at all, so it is measured
  against the optimum of its own objective (λ = 0), when that exists;
- scikit-learn lbfgs in this process, one BLAS thread, data in memory: iterations and
  function evaluations to the target from one recorded run, wall time from a second run
  stopped at that iteration (``max_iter``).

Every run is capped at --max-passes passes and --budget seconds (plain gd needs the cap on
breast cancer); a solver that does not get there reads "not reached in N passes (gap x)".
Timings mean something only on an otherwise idle machine: the first output line says how
much CPU other processes used.

Markdown tables go to stdout, progress to stderr, every number (and each run's trace) to
``--json PATH``. Run from the repository root::

    python benchmarks/bench_solvers.py --sizes breast_cancer            # ~2 min
    python benchmarks/bench_solvers.py --sizes large --rows-scale 0.01  # quick check
    python benchmarks/bench_solvers.py --json /tmp/lrdask-bench/solvers.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from bench_iteration import (
    LABEL,
    SIZES,
    ensure_data,
    log,
    markdown_table,
    one_thread,
    other_cpu_usage,
    persisted_dask_arrays,
)
from bench_iteration import environment as iteration_environment
from distributed import Client

from lrdask.cluster import connect
from lrdask.dataset import plan_dataset
from lrdask.errors import ConfigError
from lrdask.estimator import LogisticRegression

BREAST_CANCER_FILES = 4
DATA_SETS = ("breast_cancer", "large")
ROWS = (
    "lrdask gd",
    "lrdask gd + line search",
    "lrdask agd",
    "lrdask lbfgs",
    "lrdask newton",
    "dask-ml lbfgs",
    "dask-ml gradient_descent",
    "sklearn lbfgs (1 process)",
)
RUN_ORDER = ROWS[4::-1]  # newton first: its optimum cross-checks f*; plain gd (slowest) last
LRDASK_OPTIONS = {
    "lrdask gd": {"solver": "gd"},
    "lrdask gd + line search": {"solver": "gd", "line_search": True},
    "lrdask agd": {"solver": "agd"},
    "lrdask lbfgs": {"solver": "lbfgs"},
    "lrdask newton": {"solver": "newton"},
}
MAX_ITER = {"lbfgs": 1000, "newton": 100}  # gd and agd: --max-passes
DASK_ML_TOL = 1e-10  # lbfgs: pgtol on the summed gradient; gd: relative improvement
SEPARABLE_LOSS = 1e-9  # an unpenalized optimum this low: the classes are separable


class OutOfBudget(Exception):
    """Raised from inside a run when it has used up its passes or seconds."""


# ---- data and the reference solution ---------------------------------------------------------
@dataclass
class Problem:
    """One data set with its driver copy and the objective's reference values."""

    name: str
    path: str
    features: list[str]
    X: np.ndarray
    y: np.ndarray
    l2: float
    description: str

    @property
    def rows(self) -> int:
        return len(self.y)

    def objective(self, coef: np.ndarray, intercept: float, l2: float | None = None) -> float:
        """F(w, b) in float64 on all rows, blockwise (stable log(1 + e^z) − y·z)."""
        l2 = self.l2 if l2 is None else l2
        total = 0.0
        for start in range(0, self.rows, 1 << 20):
            z = self.X[start : start + (1 << 20)] @ coef + intercept
            total += float(np.sum(np.logaddexp(0.0, z) - self.y[start : start + (1 << 20)] * z))
        return total / self.rows + 0.5 * l2 * float(coef @ coef)

    def lipschitz(self) -> float:
        """L = λ_max([X 1]ᵀ[X 1]) / (4m) + λ: gd with α = 1/L decreases F at every step."""
        gram = np.zeros((self.X.shape[1] + 1,) * 2)
        for start in range(0, self.rows, 1 << 20):
            block = self.X[start : start + (1 << 20)]
            ones = np.ones((len(block), 1))
            augmented = np.hstack([block, ones])
            gram += augmented.T @ augmented
        return float(np.linalg.eigvalsh(gram / self.rows).max()) / 4.0 + self.l2


def breast_cancer_data(data_dir: str) -> str:
    """scikit-learn's breast-cancer set, each column standardized (mean 0, std 1 with
    ddof = 0), as 4 Parquet files x0..x29 + y under data_dir; written once."""
    path = os.path.join(data_dir, f"breast_cancer-std-p{BREAST_CANCER_FILES}")
    if os.path.isdir(path) and len(os.listdir(path)) == BREAST_CANCER_FILES:
        return path
    from sklearn.datasets import load_breast_cancer

    X, y = load_breast_cancer(return_X_y=True)
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    log(f"writing {path}")
    staging = f"{path}.tmp-{os.getpid()}"
    os.makedirs(staging, exist_ok=True)
    for i, rows in enumerate(np.array_split(np.arange(len(y)), BREAST_CANCER_FILES)):
        columns = {f"x{j}": X[rows, j] for j in range(X.shape[1])}
        columns[LABEL] = y[rows].astype(np.int8)
        pq.write_table(pa.table(columns), os.path.join(staging, f"part-{i:05d}.parquet"))
    os.replace(staging, path)
    return path


def load_problem(name: str, args: argparse.Namespace) -> Problem:
    if name == "breast_cancer":
        path = breast_cancer_data(args.data_dir)
        description = "scikit-learn breast cancer, standardized"
    else:
        size = SIZES["large"].scaled(args.rows_scale)
        path = ensure_data(args.data_dir, size.rows, size.features, size.partitions)
        description = f"lrdask.synthetic.make_data, seed 0, {size.partitions} files"
    features = plan_dataset(path, LABEL).features
    table = pq.read_table(path, columns=[*features, LABEL])
    X = np.empty((table.num_rows, len(features)))
    for j, column in enumerate(features):
        X[:, j] = table.column(column).to_numpy()
    y = table.column(LABEL).to_numpy().astype(np.float64)
    return Problem(name, path, features, X, y, args.l2, description)


@contextlib.contextmanager
def recorded_minimize(record: dict) -> Iterator[None]:
    """Record scipy.optimize.minimize's function evaluations and iterates (scikit-learn's
    lbfgs calls it): record["iterates"] gets (evaluations so far, x) after each iteration."""
    import scipy.optimize

    original = scipy.optimize.minimize
    record.update(evaluations=0, iterates=[])

    def minimize(fun, x0, *args, **kwargs):
        def counted(x, *fargs):
            record["evaluations"] += 1
            return fun(x, *fargs)

        inner = kwargs.get("callback")

        def on_iterate(xk):
            record["iterates"].append((record["evaluations"], np.array(xk, dtype=np.float64)))
            return inner(xk) if inner is not None else None

        kwargs["callback"] = on_iterate
        return original(counted, x0, *args, **kwargs)

    scipy.optimize.minimize = minimize
    try:
        yield
    finally:
        scipy.optimize.minimize = original


def sklearn_fit(problem: Problem, l2: float, max_iter: int):
    """scikit-learn's lbfgs on the driver copy (C = 1/(λ·m); no penalty when λ = 0)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression as SkLogistic

    C = 1.0 / (l2 * problem.rows) if l2 > 0 else np.inf  # C = inf: no penalty (≥ 1.8)
    model = SkLogistic(C=C, tol=1e-12, max_iter=max_iter)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(problem.X, problem.y)


def reference(problem: Problem, target: float) -> dict:
    """f* and scikit-learn's row: one recorded run to convergence, then one timed run
    stopped at the first iteration within ``target`` of f* (best of 3 on small data)."""
    record: dict = {}
    with one_thread(), recorded_minimize(record):
        start = time.perf_counter()
        model = sklearn_fit(problem, problem.l2, 100_000)
        full_seconds = time.perf_counter() - start
    coef, intercept = model.coef_.ravel(), float(model.intercept_[0])
    f_star = problem.objective(coef, intercept)
    out = {
        "f_star": f_star,
        "coef": coef.tolist(),
        "intercept": intercept,
        "sklearn_version": _version("sklearn"),
        "C": 1.0 / (problem.l2 * problem.rows),
    }
    row = {"iterations": int(model.n_iter_[0]), "total_passes": record["evaluations"]}
    row["run_seconds"] = full_seconds
    row["final_gap"] = 0.0  # f* is this run's value, by definition
    reached = None
    for k, (evaluations, x) in enumerate(record["iterates"], start=1):
        gap = (problem.objective(x[:-1], float(x[-1])) - f_star) / abs(f_star)
        if gap <= target:
            reached = (k, evaluations, gap)
            break
    if reached is None:
        row.update(reached=False)
        out["sklearn"] = row
        return out
    k, evaluations, gap = reached
    repeats = 3 if problem.rows < 1_000_000 else 1
    seconds = []
    for _ in range(repeats):
        with one_thread():
            start = time.perf_counter()
            stopped = sklearn_fit(problem, problem.l2, k)
            seconds.append(time.perf_counter() - start)
    check = problem.objective(stopped.coef_.ravel(), float(stopped.intercept_[0]))
    row.update(
        reached=True,
        iteration_at_target=k,
        passes_to_target=evaluations,
        seconds_to_target=min(seconds),
        gap_at_target=gap,
        timed_run_gap=(check - f_star) / abs(f_star),
        passes_note="function evaluations in one process",
    )
    out["sklearn"] = row
    return out


def unpenalized_optimum(problem: Problem) -> float | None:
    """The minimum of the λ = 0 objective (dask-glm's gradient_descent minimizes it), or
    None when the classes are separable and there is no minimizer."""
    model = sklearn_fit(problem, 0.0, 100_000)
    value = problem.objective(model.coef_.ravel(), float(model.intercept_[0]), l2=0.0)
    return None if value < SEPARABLE_LOSS else value


# ---- lrdask ------------------------------------------------------------------------------------
@contextlib.contextmanager
def counted_passes() -> Iterator[dict]:
    """Count the distributed passes of a fit on the driver (``PersistedBlocks.partial_sums``
    calls) and note when the first one started: the solve begins there, after the load."""
    from lrdask.scheduling import PersistedBlocks

    original = PersistedBlocks.partial_sums
    record: dict = {"calls": 0, "first_start": None}

    def counting(self, *args, **kwargs):
        if record["first_start"] is None:
            record["first_start"] = time.perf_counter()
        record["calls"] += 1
        return original(self, *args, **kwargs)

    PersistedBlocks.partial_sums = counting
    try:
        yield record
    finally:
        PersistedBlocks.partial_sums = original


def _stop_exception() -> type[Exception]:
    """lrdask's StopTraining (a callback ends the run cleanly), else our own exception."""
    try:
        from lrdask.solvers import StopTraining
    except ImportError:
        return OutOfBudget
    return StopTraining


class Limits:
    """Stop a run after ``max_passes`` passes or ``budget`` seconds."""

    def __init__(self, max_passes: int, budget: float, stop: type[Exception] = OutOfBudget):
        self.max_passes, self.budget, self.stop = max_passes, budget, stop
        self.start = time.perf_counter()

    def check(self, passes: int | None) -> None:
        if passes is not None and passes >= self.max_passes:
            raise self.stop(f"--max-passes {self.max_passes} reached")
        if time.perf_counter() - self.start > self.budget:
            raise self.stop(f"--budget {self.budget:g} s used up")


def run_lrdask(
    client: Client, problem: Problem, name: str, f_star: float, alpha: float, args
) -> dict:
    """One lrdask fit with a callback that records (iteration, passes, seconds, F)."""
    options = dict(LRDASK_OPTIONS[name])
    solver = options["solver"]
    try:
        model = LogisticRegression(
            **options,
            alpha=alpha,
            l2=problem.l2,
            tol=args.tol,
            max_iter=MAX_ITER.get(solver, args.max_passes),
        )
    except TypeError as exc:  # an option this lrdask does not have yet
        return {"error": f"not in this lrdask ({exc})"}
    stop = _stop_exception()
    trace: list[dict] = []
    with counted_passes() as counted:
        limits = Limits(args.max_passes, args.budget, stop)

        def callback(info) -> None:
            now = time.perf_counter()
            reported = getattr(info, "passes", None)
            passes = reported if reported else (counted["calls"] or None)
            trace.append(
                {
                    "iteration": int(info.iteration),
                    "passes": passes,
                    "passes_reported": reported or None,
                    "passes_counted": counted["calls"],
                    "time": now,
                    "cost": float(info.cost),
                }
            )
            limits.check(passes)

        fit_start = time.perf_counter()
        stopped = None
        try:
            model.fit(problem.path, LABEL, client=client, callback=callback)
        except ConfigError as exc:  # e.g. a solver this lrdask does not know yet
            return {"error": f"not in this lrdask ({str(exc).splitlines()[0]})"}
        except OutOfBudget as exc:
            stopped = str(exc)
        fit_seconds = time.perf_counter() - fit_start
    if not trace:
        return {"error": "the fit made no callback"}
    origin = counted["first_start"] or fit_start
    for point in trace:
        point["time"] -= origin
        point["gap"] = (point["cost"] - f_star) / abs(f_star)
    out = summarize(trace, args.target)
    out.update(
        options=options,
        alpha=alpha,
        fit_seconds=fit_seconds,
        run_seconds=trace[-1]["time"],
        time_origin="first pass" if counted["first_start"] else "fit() call (load included)",
        stop_reason=stopped or getattr(model, "stop_reason_", None),
        trace=trace,
    )
    if hasattr(model, "coef_"):  # the fit returned: check F itself at the final model
        final = problem.objective(np.asarray(model.coef_), float(model.intercept_))
        out["final_gap"] = (final - f_star) / abs(f_star)
        out["objective_check"] = (model.loss_history_[-1] - final) / abs(f_star)
        out["iterations"] = int(model.n_iter_)
        out["total_passes"] = getattr(model, "n_passes_", None) or out["total_passes"]
        out["coef"] = np.asarray(model.coef_).tolist()
        out["intercept"] = float(model.intercept_)
    sources = {p["passes_reported"] is not None for p in trace}
    out["passes_source"] = "IterationInfo.passes" if sources == {True} else "counted partial_sums"
    return out


def summarize(trace: list[dict], target: float) -> dict:
    """The first point of a trace within ``target``, and where the run ended."""
    last = trace[-1]
    out = {
        "final_gap": last["gap"],
        "iterations": last["iteration"],
        "total_passes": last["passes"],
        "reached": False,
    }
    for point in trace:
        if point["gap"] <= target:
            out.update(
                reached=True,
                iteration_at_target=point["iteration"],
                passes_to_target=point["passes"],
                seconds_to_target=point["time"],
                gap_at_target=point["gap"],
            )
            break
    return out


# ---- dask-ml -----------------------------------------------------------------------------------
def dask_ml_l2_penalty():
    """dask-glm's L2 regularizer without the intercept: (1/2)·‖β[:-1]‖².

    dask-ml appends the intercept as the last column of X (``add_intercept``) and its
    "l2" penalty is lamduh·‖β‖²/2 over all of β, the intercept included; lamduh = 1/C
    and the loss is a sum over rows. So with C = 1/(λ·m) and this regularizer its lbfgs
    minimizes m·F exactly. β is a dask array inside dask-glm, hence the mask product.
    """
    from dask_glm.regularizers import Regularizer

    class L2WithoutIntercept(Regularizer):
        name = "l2_without_intercept"

        @staticmethod
        def _mask(beta):
            mask = np.ones(beta.shape[0])
            mask[-1] = 0.0
            return mask

        def f(self, beta):
            return ((beta * self._mask(beta)) ** 2).sum() / 2

        def gradient(self, beta):
            return beta * self._mask(beta)

    return L2WithoutIntercept()


@contextlib.contextmanager
def recorded_dask_glm_lbfgs(trace: list[dict], limits: Limits, rows: int) -> Iterator[dict]:
    """Record every function evaluation of dask-glm's lbfgs (one distributed compute of
    the summed loss and gradient): time, evaluations so far, iterations so far, loss / m."""
    import dask_glm.algorithms as algorithms

    original = algorithms.fmin_l_bfgs_b
    info: dict = {"iterations": 0}

    def fmin(func, x0, *args, **kwargs):
        def evaluated(beta, *fargs):
            loss, grad = func(beta, *fargs)
            trace.append(
                {
                    # the first evaluation is at β = 0, the others within iteration k + 1
                    "iteration": info["iterations"] + (1 if trace else 0),
                    "passes": len(trace) + 1,
                    "time": time.perf_counter(),
                    "cost": float(loss) / rows,
                }
            )
            limits.check(len(trace))
            return loss, grad

        def on_iterate(_xk):
            info["iterations"] += 1

        result = original(evaluated, x0, *args, callback=on_iterate, **kwargs)
        info["scipy"] = {k: v for k, v in result[2].items() if k in ("nit", "funcalls", "task")}
        return result

    algorithms.fmin_l_bfgs_b = fmin
    try:
        yield info
    finally:
        algorithms.fmin_l_bfgs_b = original


@contextlib.contextmanager
def recorded_dask_glm_gd(trace: list[dict], limits: Limits) -> Iterator[Callable]:
    """dask-glm's gradient_descent: one ``compute_stepsize_dask`` call per iteration (its
    backtracking line search). Records the time and the (persisted) objective after each
    iteration; the passes are counted by the family returned (see ``counting_family``)."""
    import dask_glm.algorithms as algorithms

    original = algorithms.compute_stepsize_dask
    counter = {"objective": 0, "gradient": 0}

    def stepsize(*args, **kwargs):
        result = original(*args, **kwargs)
        trace.append(
            {
                "iteration": len(trace) + 1,
                "passes": counter["objective"] + counter["gradient"],
                "time": time.perf_counter(),
                "value": result[3],  # Σ loss at the new β, persisted on the cluster
            }
        )
        limits.check(trace[-1]["passes"])
        return result

    algorithms.compute_stepsize_dask = stepsize
    try:
        yield counting_family(counter)
    finally:
        algorithms.compute_stepsize_dask = original


def counting_family(counter: dict):
    """dask-glm's Logistic family, counting the reductions over all rows it is asked to
    build: ``loglike`` (Σ loss) and ``gradient`` (Xᵀ(σ(Xβ) − y))."""
    from dask_glm.families import Logistic

    class CountingLogistic(Logistic):
        @staticmethod
        def loglike(Xbeta, y):
            counter["objective"] += 1
            return Logistic.loglike(Xbeta, y)

        @staticmethod
        def gradient(Xbeta, X, y):
            counter["gradient"] += 1
            return Logistic.gradient(Xbeta, X, y)

    return CountingLogistic


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """dask-ml 2025.1 on dask 2026 / scipy 1.17 warns about its own deprecated calls, and
    its sigmoid overflows exp(): keep that off stderr."""
    with warnings.catch_warnings():
        for category in (RuntimeWarning, FutureWarning, DeprecationWarning):
            warnings.simplefilter("ignore", category)
        yield


def warm_up_dask_ml(X, y) -> None:
    """One untimed iteration of each solver, so that the timed runs do not pay for the
    workers' first imports and deserializations (lrdask's load pays for its own)."""
    from dask_ml.linear_model import LogisticRegression as DaskMLLogisticRegression

    with quiet():
        for solver in ("lbfgs", "gradient_descent"):
            model = DaskMLLogisticRegression(
                solver=solver, max_iter=1, solver_kwargs={"normalize": False}
            )
            model.fit(X, y)


def _quiet_workers() -> None:
    """dask-glm's sigmoid and log-likelihood overflow exp() on the workers; keep the
    RuntimeWarnings off stderr."""
    warnings.simplefilter("ignore", RuntimeWarning)


def run_dask_ml(client: Client, X, y, problem: Problem, solver: str, f_ref: float, args) -> dict:
    """dask-ml's LogisticRegression on the persisted arrays, with its trace recorded."""
    from dask_ml.linear_model import LogisticRegression as DaskMLLogisticRegression

    trace: list[dict] = []
    limits = Limits(args.max_passes, args.budget)
    # normalize=False: no centring and scaling inside dask-glm, so β is (w, b) of F itself.
    kwargs: dict = {"solver_kwargs": {"normalize": False}}
    if solver == "lbfgs":
        kwargs.update(C=1.0 / (problem.l2 * problem.rows), penalty=dask_ml_l2_penalty())
        recorder = recorded_dask_glm_lbfgs(trace, limits, problem.rows)
        max_iter, l2 = MAX_ITER["lbfgs"], problem.l2
    else:  # dask-ml drops penalty and C for gradient_descent: λ = 0 is all it can do
        recorder = recorded_dask_glm_gd(trace, limits)
        max_iter, l2 = args.max_passes, 0.0
    model = DaskMLLogisticRegression(solver=solver, max_iter=max_iter, tol=DASK_ML_TOL, **kwargs)
    client.run(_quiet_workers)
    stopped = None
    with recorder as recorded, quiet():
        if solver != "lbfgs":
            model.solver_kwargs["family"] = recorded
        start = time.perf_counter()
        try:
            model.fit(X, y)
        except OutOfBudget as exc:
            stopped = str(exc)
        fit_seconds = time.perf_counter() - start
    if not trace:
        return {"error": "no evaluation was recorded"}
    if solver != "lbfgs":
        import dask

        values = dask.compute(*[point.pop("value") for point in trace])
        for point, value in zip(trace, values, strict=True):
            point["cost"] = float(value) / problem.rows
    for point in trace:
        point["time"] -= start
        point["gap"] = (point["cost"] - f_ref) / abs(f_ref)
    out = {"l2": l2, "fit_seconds": fit_seconds, "run_seconds": trace[-1]["time"]}
    out["stop_reason"] = stopped or "its own stopping rule"
    out.update(summarize(trace, args.target))
    if solver == "lbfgs" and "scipy" in recorded:
        out["iterations"] = int(recorded["scipy"]["nit"])
        out["scipy"] = recorded["scipy"]
    if hasattr(model, "coef_"):
        coef, intercept = np.asarray(model.coef_, dtype=float), float(model.intercept_)
        final = problem.objective(coef, intercept, l2=l2)
        out["final_objective"] = final
        out["final_gap"] = (final - f_ref) / abs(f_ref)
    out["trace"] = trace
    out["version"] = _version("dask_ml")
    return out


def bench_dask_ml(client: Client, problem: Problem, f_star: float, args) -> dict[str, dict]:
    rows = ("dask-ml lbfgs", "dask-ml gradient_descent")
    if args.skip_dask_ml:
        return dict.fromkeys(rows, {"error": "skipped (--skip-dask-ml)"})
    try:
        import dask_ml  # noqa: F401
    except ImportError as exc:
        return dict.fromkeys(rows, {"error": f"dask-ml not installed ({exc})"})
    log(f"{problem.name}: λ = 0 optimum for dask-ml's gradient_descent (scikit-learn)")
    with one_thread():
        f_zero = unpenalized_optimum(problem)
    log(f"{problem.name}: dask-ml: persisting the data as a dask array")
    start = time.perf_counter()
    X, y = persisted_dask_arrays(client, problem.path, problem.features)
    load = time.perf_counter() - start
    out = {}
    try:
        client.run(_quiet_workers)
        warm_up_dask_ml(X, y)
        for row, solver, f_ref in zip(
            rows, ("lbfgs", "gradient_descent"), (f_star, f_zero), strict=True
        ):
            if f_ref is None:
                out[row] = {"error": "its λ = 0 objective has no minimizer (separable classes)"}
                continue
            log(f"{problem.name}: {row}")
            try:
                out[row] = run_dask_ml(client, X, y, problem, solver, f_ref, args)
            except Exception as exc:  # a baseline must never stop the benchmark
                text = str(exc).strip().splitlines()
                out[row] = {"error": f"{type(exc).__name__}: {text[0] if text else ''}"[:200]}
            out[row]["load_seconds"] = load
    finally:
        del X, y
    out[rows[1]]["f_zero"] = f_zero
    return out


# ---- one data set ------------------------------------------------------------------------------
def bench_problem(client: Client, name: str, args: argparse.Namespace) -> dict:
    log(f"{name}: loading the data into the driver")
    problem = load_problem(name, args)
    log(f"{name}: {problem.rows} × {len(problem.features)}; f* with scikit-learn lbfgs")
    ref = reference(problem, args.target)
    f_star = ref.pop("f_star")
    alpha = 1.0 / problem.lipschitz()
    result: dict = {
        "rows": problem.rows,
        "features": len(problem.features),
        "path": problem.path,
        "description": problem.description,
        "l2": problem.l2,
        "f_star": f_star,
        "alpha": alpha,
        "reference": {k: v for k, v in ref.items() if k != "sklearn"},
        "solvers": {},
    }
    solvers = result["solvers"]
    solvers["sklearn lbfgs (1 process)"] = ref["sklearn"]
    for row in RUN_ORDER:
        log(f"{name}: {row}")
        solvers[row] = run_lrdask(client, problem, row, f_star, alpha, args)
        if "error" not in solvers[row]:
            r = solvers[row]
            log(
                f"  {r['iterations']} iterations, {r['total_passes']} passes, "
                f"{r['run_seconds']:.2f} s, final gap {r['final_gap']:.1e}"
            )
    solvers.update(bench_dask_ml(client, problem, f_star, args))
    newton = solvers["lrdask newton"]
    result["newton_cross_check"] = newton.get("final_gap")
    return result


# ---- output ------------------------------------------------------------------------------------
def _gap(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1e}"


def table_row(label: str, r: dict) -> list[str]:
    if "error" in r and not r.get("reached"):
        return [label, f"n/a: {r['error']}", "n/a", "n/a", "n/a"]
    if not r["reached"]:
        passes = f"not reached in {r['total_passes']} passes (gap {_gap(r['final_gap'])})"
        return [label, passes, f"— (ran {r['run_seconds']:.1f} s)", _gap(r["final_gap"]), _iters(r)]
    passes = "n/a" if r["passes_to_target"] is None else str(r["passes_to_target"])
    wall = f"{r['seconds_to_target']:.3f}"
    return [label, passes, wall, _gap(r.get("final_gap")), _iters(r)]


def _iters(r: dict) -> str:
    """Iterations at the target / in the whole run."""
    total = "n/a" if r.get("iterations") is None else str(r["iterations"])
    return f"{r['iteration_at_target'] if r.get('reached') else '—'} / {total}"


def _label(row: str, result: dict) -> str:
    if row in ("lrdask gd", "lrdask agd"):
        return f"{row} (α = 1/L = {result['alpha']:.3g})"
    if row == "dask-ml gradient_descent":
        return f"{row} (λ = 0: its own objective)"
    return row


def goals(result: dict) -> list[str]:
    """The issue's goal: newton and lbfgs in fewer passes than dask-ml's lbfgs and in
    less wall time than dask-ml, on the same cluster."""
    s = result["solvers"]
    lines = []
    for ours in ("lrdask newton", "lrdask lbfgs"):
        mine = s[ours]
        for theirs, key, what in (
            ("dask-ml lbfgs", "passes_to_target", "passes"),
            ("dask-ml lbfgs", "seconds_to_target", "wall s"),
            ("dask-ml gradient_descent", "seconds_to_target", "wall s"),
        ):
            other = s[theirs]
            a, b = mine.get(key), other.get(key)
            if a is None or b is None:
                why = "not reached" if "error" not in other else "n/a"
                verdict = f"n/a ({theirs}: {why})" if b is None else f"n/a ({ours}: not reached)"
            else:
                verdict = f"{a:.4g} vs {b:.4g}: {'PASS' if a < b else 'FAIL'}"
            lines.append(f"- {ours} {what} to target < {theirs}: {verdict}")
    return lines


def report(result: dict, target: float) -> str:
    s = result["solvers"]
    sk = result["reference"]
    newton = result["newton_cross_check"]
    cross_check = "n/a"
    if newton is not None:
        cross_check = f"f*·(1 {'+' if newton >= 0 else '−'} {abs(newton):.1e})"
    head = (
        f"**{result['name']}**: {result['rows']:,} rows × {result['features']} features "
        f"({result['description']}); λ = {result['l2']:g} (scikit-learn C = {sk['C']:.4g}); "
        f"f* = {result['f_star']:.10g} (scikit-learn {sk['sklearn_version']} lbfgs, "
        f"tol 1e-12); lrdask newton's final F is {cross_check}; target (F − f*)/|f*| ≤ "
        f"{target:g}; CPU-s used by other processes {_contention(result.get('contention'))}\n"
    )
    header = ["solver", f"passes to {target:g}", f"wall s to {target:g}", "final rel. gap"]
    rows = [table_row(_label(row, result), s[row]) for row in ROWS]
    header.append("iterations (to target / run)")
    return "\n".join([head, markdown_table(header, rows), "", *goals(result)])


def _contention(c: dict | None) -> str:
    if not c:
        return "n/a"
    return f"{c['other_cpu_seconds']:.0f} / {c['available_cpu_seconds']:.0f} available"


def _version(module: str) -> str:
    try:
        return __import__(module).__version__
    except ImportError:
        return "not installed"


def environment(args: argparse.Namespace) -> dict:
    """bench_iteration's record of the machine and versions, plus the baselines' versions."""
    import scipy

    return {
        **iteration_environment(args),
        "scipy": scipy.__version__,
        "sklearn": _version("sklearn"),
        "dask_ml": _version("dask_ml"),
    }


# ---- main --------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="breast_cancer,large", help="breast_cancer, large")
    parser.add_argument("--data-dir", default="/tmp/lrdask-bench", help="data sets live here")
    parser.add_argument("--json", metavar="PATH", help="write every number and trace here")
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--skip-dask-ml", action="store_true", help="do not run dask-ml")
    parser.add_argument(
        "--rows-scale", type=float, default=1.0, help="multiply the large set's rows"
    )
    parser.add_argument("--l2", type=float, default=1e-3, help="λ of (λ/2)·‖w‖²")
    parser.add_argument("--target", type=float, default=1e-6, help="relative gap to reach")
    parser.add_argument("--max-passes", type=int, default=5000, help="cap on any run's passes")
    parser.add_argument("--budget", type=float, default=600.0, help="seconds per run, at most")
    parser.add_argument("--tol", type=float, default=1e-10, help="lrdask's tol for every run")
    args = parser.parse_args(argv)
    args.sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    unknown = [s for s in args.sizes if s not in DATA_SETS]
    if unknown:
        parser.error(f"unknown size(s) {unknown}; choose from {list(DATA_SETS)}")
    if min(args.workers, args.rows_scale, args.l2, args.target, args.max_passes) <= 0:
        parser.error("--workers, --rows-scale, --l2, --target, --max-passes must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    output: dict = {"environment": environment(args), "sizes": {}}
    contention: dict = {}
    with connect(workers=args.workers) as client, other_cpu_usage(contention):
        for name in args.sizes:
            others: dict = {}
            with other_cpu_usage(others):
                output["sizes"][name] = bench_problem(client, name, args)
            output["sizes"][name].update(name=name, contention=others)
    output["contention"] = contention
    output["wall_seconds"] = time.perf_counter() - started
    output["load_average_at_end"] = os.getloadavg()
    env = output["environment"]
    share = contention["other_cpu_seconds"] / max(contention["available_cpu_seconds"], 1e-9)
    print(
        f"lrdask {env['lrdask']}, {args.workers} workers × 1 thread on {env['cores']} cores "
        f"({env['cpu']}); scikit-learn {env['sklearn']}, dask-ml {env['dask_ml']}, dask "
        f"{env['dask']}; load average at start {env['load_average_at_start'][0]:.2f}, at end "
        f"{output['load_average_at_end'][0]:.2f}; other processes used "
        f"{contention['other_cpu_seconds']:.0f} of {contention['available_cpu_seconds']:.0f} "
        f"CPU-seconds ({share:.0%}){': timings unreliable' if share > 0.05 else ''}\n"
    )
    for name in args.sizes:
        print(report(output["sizes"][name], args.target) + "\n")
    print(f"wall time: {output['wall_seconds']:.0f} s")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(output, fh, indent=1, default=float)
        log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
