"""How many passes and how much wall time does each solver need to reach the optimum?

For each data set and one L2 objective

    F(w, b) = mean log loss + (λ/2)·‖w‖²,  λ = --l2 (1e-3), intercept not penalized,

this finds f* = min F and then, on one LocalCluster (``--workers`` processes × 1 thread),
records for every solver the first iterate with (F_k − f*)/|f*| ≤ 1e-6 (--target): how
many distributed passes and how many seconds it took, counted from the start of the first
pass (data loading excluded). Data sets (``--sizes``):

- "breast_cancer": scikit-learn's 569 × 30 set, standardized, 4 Parquet files;
- "large": 4M × 50 in 32 files made with ``lrdask.synthetic.make_data``, the same files as
  ``bench_iteration.py``'s large set (standard-normal features);
- "breast_cancer_raw": the same 569 × 30 set with its features as they are (unscaled:
  column scales from ~1e-3 to ~1e3), 4 Parquet files;
- "unscaled": the issue's 5,000-row case (income ~ N(5e4, 1.5e4), age ~ U(20, 70), a 0/1
  flag; see ``unscaled_columns``), one Parquet file.

On the two raw sets lrdask runs with ``standardize=False`` (explicitly) and f* comes from
``exact_optimum`` (L-BFGS-B in standardized variables, then Newton steps, in NumPy);
elsewhere f* = F at scikit-learn's lbfgs solution (C = 1/(λ·m), tol=1e-12). F is always
evaluated here in float64 NumPy on all rows. Rows:

- lrdask gd (fixed α = 1/L, L the Lipschitz constant of ∇F; ``--alpha``), gd with line
  search, agd (Nesterov/FISTA, same α), lbfgs, newton: passes from ``IterationInfo.passes``
  (else counted by wrapping ``PersistedBlocks.partial_sums`` on the driver);
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

``--before-json PATH`` (a ``--json`` file of an earlier run, under another lrdask revision:
run with ``PYTHONPATH=<a git worktree of it>``) adds a before/after table of passes to the
target per data set; ``--load-json PATH`` prints the report of a saved run instead of
running (with ``--before-json``: the comparison of two saved runs; repeated: runs of the
same lrdask merged, e.g. a ``--solvers lbfgs`` rerun with a larger ``--budget``).

Markdown tables go to stdout, progress to stderr, every number (and each run's trace) to
``--json PATH``. Run from the repository root::

    python benchmarks/bench_solvers.py --sizes breast_cancer            # ~2 min
    python benchmarks/bench_solvers.py --sizes large --rows-scale 0.01  # quick check
    python benchmarks/bench_solvers.py --json /tmp/lrdask-bench/solvers.json
    python benchmarks/bench_solvers.py --sizes breast_cancer_raw,unscaled --skip-dask-ml \\
        --tol 0 --gtol 0 --max-passes 20000 --budget 100 --before-json before.json
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import subprocess
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
)
from bench_iteration import environment as iteration_environment
from distributed import Client

from lrdask.cluster import connect
from lrdask.dataset import plan_dataset
from lrdask.errors import ConfigError, NotConvergedError
from lrdask.estimator import LogisticRegression

BREAST_CANCER_FILES = 4
UNSCALED_ROWS = 5000
UNSCALED_LABEL = "label"
DATA_SETS = ("breast_cancer", "large", "breast_cancer_raw", "unscaled")
RAW_DATA_SETS = ("breast_cancer_raw", "unscaled")  # features as they are: see exact_optimum
RAW_OPTIONS = {"standardize": False}  # lrdask's options on the raw sets (its default, made sure)
ALPHA_RULES = ("1/L", "1/L_std")  # --alpha: else a number
NEWTON_CHECK_STEPS = 5  # exact_optimum's Newton steps after L-BFGS-B, at most
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
SOLVER_NAMES = {  # --solvers
    "gd": "lrdask gd",
    "gd+ls": "lrdask gd + line search",
    "agd": "lrdask agd",
    "lbfgs": "lrdask lbfgs",
    "newton": "lrdask newton",
}
NOT_RUN = "not run (--solvers)"
LRDASK_OPTIONS = {
    "lrdask gd": {"solver": "gd"},
    "lrdask gd + line search": {"solver": "gd", "line_search": True},
    "lrdask agd": {"solver": "agd"},
    "lrdask lbfgs": {"solver": "lbfgs"},
    "lrdask newton": {"solver": "newton"},
}
MAX_ITER = {"newton": 100}  # the others: --max-passes (every iteration takes ≥ 1 pass)
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
    label: str = LABEL
    raw: bool = False  # unscaled features: f* from exact_optimum, lrdask gets RAW_OPTIONS

    @property
    def rows(self) -> int:
        return len(self.y)

    @property
    def lrdask_options(self) -> dict:
        return dict(RAW_OPTIONS) if self.raw else {}

    def objective(self, coef: np.ndarray, intercept: float, l2: float | None = None) -> float:
        """F(w, b) in float64 on all rows, blockwise (stable log(1 + e^z) − y·z)."""
        l2 = self.l2 if l2 is None else l2
        total = 0.0
        for start in range(0, self.rows, 1 << 20):
            z = self.X[start : start + (1 << 20)] @ coef + intercept
            total += float(np.sum(np.logaddexp(0.0, z) - self.y[start : start + (1 << 20)] * z))
        return total / self.rows + 0.5 * l2 * float(coef @ coef)

    def gram(self) -> np.ndarray:
        """[X 1]ᵀ[X 1] / m, blockwise."""
        gram = np.zeros((self.X.shape[1] + 1,) * 2)
        for start in range(0, self.rows, 1 << 20):
            block = self.X[start : start + (1 << 20)]
            ones = np.ones((len(block), 1))
            augmented = np.hstack([block, ones])
            gram += augmented.T @ augmented
        return gram / self.rows

    def lipschitz(self, gram: np.ndarray | None = None) -> float:
        """L = λ_max([X 1]ᵀ[X 1]) / (4m) + λ: gd with α = 1/L decreases F at every step."""
        gram = self.gram() if gram is None else gram
        return float(np.linalg.eigvalsh(gram).max()) / 4.0 + self.l2

    def lipschitz_standardized(self, gram: np.ndarray | None = None) -> float:
        """L of F written in standardized variables (x_s = (x − μ)/σ, w = v/σ, b = c − μ·w,
        so the penalty is (λ/2)·Σ (v_j/σ_j)²): λ_max([X_s 1]ᵀ[X_s 1]) / (4m) + λ·max 1/σ_j².
        For information (and ``--alpha 1/L_std``): the step a solver working in such
        coordinates could take; from the same Gram matrix, [X_s 1] = [X 1]·T."""
        gram = self.gram() if gram is None else gram
        n = gram.shape[0] - 1
        mu = gram[n, :n]
        sigma = np.sqrt(np.maximum(np.diag(gram)[:n] - mu**2, 0.0))
        sigma = np.where(sigma > 0, sigma, 1.0)
        T = np.eye(n + 1)
        T[:n, :n] = np.diag(1.0 / sigma)
        T[n, :n] = -mu / sigma
        scaled = T.T @ gram @ T
        return float(np.linalg.eigvalsh(scaled).max()) / 4.0 + self.l2 * float(
            np.max(1.0 / sigma**2)
        )


def _write_once(path: str, tables: list[pa.Table]) -> str:
    """The tables as part-00000.parquet, ... in the directory ``path``, unless it already
    holds that many files (written to a staging directory, then renamed)."""
    if os.path.isdir(path) and len(os.listdir(path)) == len(tables):
        return path
    log(f"writing {path}")
    staging = f"{path}.tmp-{os.getpid()}"
    os.makedirs(staging, exist_ok=True)
    for i, table in enumerate(tables):
        pq.write_table(table, os.path.join(staging, f"part-{i:05d}.parquet"))
    os.replace(staging, path)
    return path


def breast_cancer_data(data_dir: str, standardized: bool = True) -> str:
    """scikit-learn's breast-cancer set as 4 Parquet files x0..x29 + y under data_dir,
    written once: each column standardized (mean 0, std 1 with ddof = 0), or, with
    ``standardized=False``, the features as they are."""
    kind = "std" if standardized else "raw"
    path = os.path.join(data_dir, f"breast_cancer-{kind}-p{BREAST_CANCER_FILES}")
    if os.path.isdir(path) and len(os.listdir(path)) == BREAST_CANCER_FILES:
        return path
    from sklearn.datasets import load_breast_cancer

    X, y = load_breast_cancer(return_X_y=True)
    if standardized:
        X = (X - X.mean(axis=0)) / X.std(axis=0)
    tables = []
    for rows in np.array_split(np.arange(len(y)), BREAST_CANCER_FILES):
        columns = {f"x{j}": X[rows, j] for j in range(X.shape[1])}
        columns[LABEL] = y[rows].astype(np.int8)
        tables.append(pa.table(columns))
    return _write_once(path, tables)


def unscaled_columns(n: int = UNSCALED_ROWS) -> dict[str, np.ndarray]:
    """The issue's case, generated exactly as written there: income in the tens of
    thousands, age in tens, a 0/1 flag, and a label drawn from a logistic model."""
    rng = np.random.default_rng(0)
    income, age, flag = rng.normal(5e4, 1.5e4, n), rng.uniform(20, 70, n), rng.integers(0, 2, n)
    z = 1e-5 * (income - 5e4) + 0.03 * (age - 45) + 0.8 * flag - 0.4
    y = (rng.random(n) < 1 / (1 + np.exp(-z))).astype(int)
    return {"income": income, "age": age, "flag": flag, UNSCALED_LABEL: y}


def unscaled_data(data_dir: str) -> str:
    """``unscaled_columns`` as one Parquet file (income, age, flag, label), written once."""
    path = os.path.join(data_dir, f"unscaled-{UNSCALED_ROWS}-p1")
    return _write_once(path, [pa.table(unscaled_columns())])


def load_problem(name: str, args: argparse.Namespace) -> Problem:
    label = LABEL
    if name in ("breast_cancer", "breast_cancer_raw"):
        raw = name == "breast_cancer_raw"
        path = breast_cancer_data(args.data_dir, standardized=not raw)
        description = "scikit-learn breast cancer, " + ("raw features" if raw else "standardized")
    elif name == "unscaled":
        path, label = unscaled_data(args.data_dir), UNSCALED_LABEL
        description = "the issue's income/age/flag case, raw features, 1 file"
    else:
        size = SIZES["large"].scaled(args.rows_scale)
        path = ensure_data(args.data_dir, size.rows, size.features, size.partitions)
        description = f"lrdask.synthetic.make_data, seed 0, {size.partitions} files"
    features = plan_dataset(path, label).features
    table = pq.read_table(path, columns=[*features, label])
    X = np.empty((table.num_rows, len(features)))
    for j, column in enumerate(features):
        X[:, j] = table.column(column).to_numpy()
    y = table.column(label).to_numpy().astype(np.float64)
    raw = name in RAW_DATA_SETS
    return Problem(name, path, features, X, y, args.l2, description, label, raw)


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


def exact_optimum(problem: Problem) -> dict:
    """min F to the last digits, in NumPy, for the raw sets (scikit-learn's lbfgs on raw
    columns can stop short of it: on the raw breast-cancer set it ends ~2e-8 above).

    F is minimized in standardized variables, where the problem is far better conditioned:
    with μ, σ the columns' mean and standard deviation (ddof 0), x_s = (x − μ)/σ,
    w = v/σ and b = c − μ·w give exactly the same F, with the penalty (λ/2)·Σ (v_j/σ_j)².
    scipy's L-BFGS-B from v = 0, c = the class log-odds (gtol 1e-12, ftol 0, memory 30),
    then up to NEWTON_CHECK_STEPS Newton steps with the exact Hessian, each kept only if F
    does not rise, until the Newton decrement gᵀH⁻¹g/2 (the quadratic model's estimate of
    F − min F) is below 1e-17·|F|. The decrement at the returned point and max |∇F| on
    the raw scale are recorded as the check. Small data only (it holds [X_s 1] densely).
    """
    import scipy
    from scipy.optimize import minimize
    from scipy.special import expit

    X, y, l2 = problem.X, problem.y, problem.l2
    m, n = X.shape
    mu, sigma = X.mean(axis=0), X.std(axis=0)
    sigma = np.where(sigma > 0, sigma, 1.0)
    A = np.hstack([(X - mu) / sigma, np.ones((m, 1))])
    penalty = np.append(l2 / sigma**2, 0.0)

    def value_and_gradient(theta: np.ndarray) -> tuple[float, np.ndarray]:
        z = A @ theta
        value = float(np.mean(np.logaddexp(0.0, z) - y * z))
        value += 0.5 * float(theta @ (penalty * theta))
        return value, A.T @ (expit(z) - y) / m + penalty * theta

    def newton_step(theta: np.ndarray) -> tuple[float, np.ndarray, np.ndarray, float]:
        value, gradient = value_and_gradient(theta)
        p = expit(A @ theta)
        hessian = (A.T * (p * (1.0 - p))) @ A / m + np.diag(penalty)
        step = np.linalg.solve(hessian, gradient)
        return value, gradient, step, float(gradient @ step) / 2.0

    theta = np.zeros(n + 1)
    theta[-1] = np.log(y.mean() / (1.0 - y.mean()))
    start = time.perf_counter()
    result = minimize(
        value_and_gradient,
        theta,
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": 100_000, "gtol": 1e-12, "ftol": 0.0, "maxcor": 30},
    )
    theta = result.x
    after_lbfgs = float(result.fun)
    steps = []
    for _ in range(NEWTON_CHECK_STEPS):
        value, gradient, step, decrement = newton_step(theta)
        steps.append(
            {"F": value, "grad_max": float(np.abs(gradient).max()), "decrement": decrement}
        )
        if decrement <= 1e-17 * abs(value):
            break
        candidate = theta - step
        if value_and_gradient(candidate)[0] > value:
            break
        theta = candidate
    value, gradient, _, decrement = newton_step(theta)
    coef = theta[:-1] / sigma
    intercept = float(theta[-1] - mu @ coef)
    f_star = problem.objective(coef, intercept)
    residual = 1.0 / (1.0 + np.exp(-(X @ coef + intercept))) - y
    raw_gradient = np.append(X.T @ residual / m + l2 * coef, residual.mean())
    return {
        "method": "NumPy: L-BFGS-B in standardized variables, then Newton steps",
        "f_star": f_star,
        "coef": coef.tolist(),
        "intercept": intercept,
        "F_standardized_variables": value,
        "F_after_lbfgs": after_lbfgs,
        "lbfgs": {"nit": int(result.nit), "nfev": int(result.nfev), "message": str(result.message)},
        "newton_steps": steps,
        "newton_decrement": decrement,
        "grad_max_standardized": float(np.abs(gradient).max()),
        "grad_max_raw": float(np.abs(raw_gradient).max()),
        "seconds": time.perf_counter() - start,
        "scipy_version": scipy.__version__,
    }


def reference(problem: Problem, target: float, f_star: float | None = None) -> dict:
    """scikit-learn's row, and f* = F at its solution unless ``f_star`` is given: one
    recorded run to convergence, then one timed run stopped at the first iteration within
    ``target`` of f* (best of 3 on small data)."""
    record: dict = {}
    with one_thread(), recorded_minimize(record):
        start = time.perf_counter()
        model = sklearn_fit(problem, problem.l2, 100_000)
        full_seconds = time.perf_counter() - start
    coef, intercept = model.coef_.ravel(), float(model.intercept_[0])
    sklearn_f = problem.objective(coef, intercept)
    f_star = sklearn_f if f_star is None else f_star
    out = {
        "f_star": f_star,
        "coef": coef.tolist(),
        "intercept": intercept,
        "sklearn_version": _version("sklearn"),
        "sklearn_F": sklearn_f,
        "sklearn_gap": (sklearn_f - f_star) / abs(f_star),
        "C": 1.0 / (problem.l2 * problem.rows),
    }
    row = {"iterations": int(model.n_iter_[0]), "total_passes": record["evaluations"]}
    row["run_seconds"] = full_seconds
    row["final_gap"] = out["sklearn_gap"]  # 0 when f* is this run's value
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
    options = {**LRDASK_OPTIONS[name], **problem.lrdask_options}
    if args.gtol is not None:
        options["gtol"] = args.gtol
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
            model.fit(problem.path, problem.label, client=client, callback=callback)
        except ConfigError as exc:  # e.g. a solver this lrdask does not know yet
            return {"error": f"not in this lrdask ({str(exc).splitlines()[0]})"}
        except OutOfBudget as exc:
            stopped = str(exc)
        except NotConvergedError as exc:  # diverged: the trace still says where it went
            stopped = f"NotConvergedError: {str(exc).splitlines()[0]}"
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
        caps={"max_passes": args.max_passes, "budget": args.budget, "tol": args.tol},
        alpha=alpha,
        alpha_rule=args.alpha,
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
    first = trace[0]
    if first["passes_reported"] is not None:
        # partial_sums calls that IterationInfo.passes leaves out, up to the first iterate
        # (e.g. a moments pass for a scaling): not in the passes columns, noted below them
        out["passes_not_reported"] = first["passes_counted"] - first["passes_reported"]
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
def persisted_dask_arrays(client: Client, path: str, features: list[str], label: str):
    """X and y as persisted dask arrays (``bench_iteration.persisted_dask_arrays`` with the
    label column as a parameter: the "unscaled" set's is not ``y``)."""
    import dask.dataframe as dd
    from distributed import wait

    frame = dd.read_parquet(path, columns=[*features, label])
    array = frame.to_dask_array(lengths=True).astype(np.float64)
    X = array[:, : len(features)].map_blocks(np.ascontiguousarray)
    y = array[:, len(features)].map_blocks(np.ascontiguousarray)
    X, y = client.persist([X, y])
    wait([X, y])
    return X, y


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
        max_iter, l2 = args.max_passes, problem.l2
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
    X, y = persisted_dask_arrays(client, problem.path, problem.features, problem.label)
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
    exact = None
    if problem.raw:
        log(f"{name}: {problem.rows} × {len(problem.features)}; f* with exact_optimum")
        with one_thread():
            exact = exact_optimum(problem)
        log(
            f"  f* = {exact['f_star']:.16g}; Newton decrement {exact['newton_decrement']:.1e}, "
            f"max |∇F| {exact['grad_max_raw']:.1e} (raw scale); scikit-learn lbfgs next"
        )
    else:
        log(f"{name}: {problem.rows} × {len(problem.features)}; f* with scikit-learn lbfgs")
    ref = reference(problem, args.target, None if exact is None else exact["f_star"])
    f_star = ref.pop("f_star")
    gram = problem.gram()
    lipschitz = problem.lipschitz(gram)
    lipschitz_std = problem.lipschitz_standardized(gram) if problem.raw else None
    if args.alpha == "1/L":
        alpha = 1.0 / lipschitz
    elif args.alpha == "1/L_std":
        alpha = 1.0 / (lipschitz_std or problem.lipschitz_standardized(gram))
    else:
        alpha = float(args.alpha)
    result: dict = {
        "rows": problem.rows,
        "features": len(problem.features),
        "path": problem.path,
        "label": problem.label,
        "description": problem.description,
        "raw": problem.raw,
        "lrdask_options": problem.lrdask_options,
        "l2": problem.l2,
        "f_star": f_star,
        "f_star_method": exact["method"] if exact else "scikit-learn lbfgs, tol 1e-12",
        "alpha": alpha,
        "alpha_rule": args.alpha,
        "lipschitz": lipschitz,
        "lipschitz_standardized": lipschitz_std,
        "reference": {k: v for k, v in ref.items() if k != "sklearn"},
        "exact": exact,
        "solvers": {},
    }
    solvers = result["solvers"]
    solvers["sklearn lbfgs (1 process)"] = ref["sklearn"]
    for row in RUN_ORDER:
        if row not in args.solvers:
            solvers[row] = {"error": NOT_RUN, "not_run": True}
            continue
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
        passes = _passes_cell(r)
        return [label, passes, f"— (ran {r['run_seconds']:.1f} s)", _gap(r["final_gap"]), _iters(r)]
    passes = "n/a" if r["passes_to_target"] is None else str(r["passes_to_target"])
    wall = f"{r['seconds_to_target']:.3f}"
    return [label, passes, wall, _gap(r.get("final_gap")), _iters(r)]


def _iters(r: dict) -> str:
    """Iterations at the target / in the whole run."""
    total = "n/a" if r.get("iterations") is None else str(r["iterations"])
    return f"{r['iteration_at_target'] if r.get('reached') else '—'} / {total}"


def _alpha_text(result: dict, r: dict | None = None) -> str:
    """ "1/L = 2.4e-06": the step a gd/agd row ran with (its own record, else the set's)."""
    source = r if r and "alpha" in r else result
    rule = source.get("alpha_rule", result.get("alpha_rule", "1/L"))
    return f"{rule + ' = ' if rule in ALPHA_RULES else ''}{source['alpha']:.3g}"


def _label(row: str, result: dict, r: dict | None = None) -> str:
    if row in ("lrdask gd", "lrdask agd"):
        return f"{row} (α = {_alpha_text(result, r)})"
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
    exact = result.get("exact")
    if exact:
        source = (
            f"NumPy L-BFGS-B in standardized variables + Newton, decrement "
            f"{exact['newton_decrement']:.1e}, max |∇F| {exact['grad_max_raw']:.1e}; "
            f"scikit-learn {sk['sklearn_version']} lbfgs, tol 1e-12, on the raw features "
            f"ends at f*·(1 + {sk['sklearn_gap']:.1e})"
        )
    else:
        source = f"scikit-learn {sk['sklearn_version']} lbfgs, tol 1e-12"
    options = result.get("lrdask_options")
    head = (
        f"**{result['name']}**: {result['rows']:,} rows × {result['features']} features "
        f"({result['description']}); λ = {result['l2']:g} (scikit-learn C = {sk['C']:.4g}); "
        f"f* = {result['f_star']:.10g} ({source}); lrdask newton's final F is {cross_check}; "
        f"target (F − f*)/|f*| ≤ {target:g}"
        f"{'; lrdask options ' + json.dumps(options) if options else ''}; CPU-s used by "
        f"other processes {_contention(result.get('contention'))}\n"
    )
    header = ["solver", f"passes to {target:g}", f"wall s to {target:g}", "final rel. gap"]
    rows = [table_row(_label(row, result, s[row]), s[row]) for row in ROWS]
    header.append("iterations (to target / run)")
    notes = _unreported_passes(s)
    return "\n".join([head, markdown_table(header, rows), *notes, "", *goals(result)])


def _not_reported(r: dict) -> int | None:
    """``passes_not_reported`` of a run, or worked out from its trace (older files)."""
    if "passes_not_reported" in r:
        return r["passes_not_reported"]
    first = (r.get("trace") or [{}])[0]
    if first.get("passes_reported") is None or first.get("passes_counted") is None:
        return None
    return first["passes_counted"] - first["passes_reported"]


def _unreported_passes(solvers: dict) -> list[str]:
    """A note when a run made distributed passes before its first iterate that its
    ``IterationInfo.passes`` does not count (the moments pass of a scaling)."""
    extra = {row: _not_reported(r) for row, r in solvers.items()}
    extra = {row: n for row, n in extra.items() if n}
    if not extra:
        return []
    listed = ", ".join(f"{row} {n}" for row, n in extra.items())
    return [
        "",
        f"Passes not in IterationInfo.passes (so not in the passes columns) before the "
        f"first iterate (lrdask's column report at θ = 0; a moments pass): {listed}.",
    ]


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
    """bench_iteration's record of the machine and versions, plus the baselines' versions
    and where the lrdask in use comes from (for before/after comparisons)."""
    import scipy

    return {
        **iteration_environment(args),
        "scipy": scipy.__version__,
        "sklearn": _version("sklearn"),
        "dask_ml": _version("dask_ml"),
        "lrdask_source": lrdask_source(),
    }


def lrdask_source() -> dict:
    """The imported lrdask's directory, and its git commit and uncommitted files under it
    when it is in a git work tree (PYTHONPATH=<a worktree> makes it an older revision)."""
    import lrdask

    package = os.path.dirname(os.path.abspath(lrdask.__file__))
    out: dict = {"path": package}
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        git = ["git", "-C", package]
        revision = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True)
        if revision.returncode == 0:
            status = subprocess.run(
                [*git, "status", "--porcelain", "--", "."], capture_output=True, text=True
            )
            out["revision"] = revision.stdout.strip()
            out["modified"] = [line[3:] for line in status.stdout.splitlines()]
    return out


def _worker_lrdask() -> str:
    """On a worker: the lrdask it imports (the same revision as the driver's, we hope)."""
    import lrdask

    return os.path.dirname(os.path.abspath(lrdask.__file__))


# ---- before / after -----------------------------------------------------------------------------
COMPARED_SETTINGS = ("target", "l2", "tol", "gtol", "max_passes", "budget", "alpha", "workers")


def _short_reason(reason: str | None) -> str:
    """'stalled', 'max_iter', 'pass cap', ... from a run's stop reason."""
    if not reason or reason == "its own stopping rule":
        return ""
    if reason.startswith("--max-passes"):
        return "pass cap"
    if reason.startswith("--budget"):
        return "time cap"
    return reason.split(":")[0].split("=")[0].strip()


def _passes_cell(r: dict | None) -> str:
    if r is None:
        return "n/a (not run)"
    if "error" in r and not r.get("reached"):
        return f"n/a: {r['error'][:60]}"
    if r.get("reached"):
        return "n/a" if r.get("passes_to_target") is None else str(r["passes_to_target"])
    why = _short_reason(r.get("stop_reason"))
    if why == "time cap" and r.get("caps"):
        why += f" {r['caps']['budget']:g} s"
    return (
        f"not reached in {r['total_passes']} passes "
        f"(gap {_gap(r.get('final_gap'))}{', ' + why if why else ''})"
    )


def _ratio(before: dict | None, after: dict | None) -> str:
    """Passes to the target before / after (> 1: fewer passes after); a bound when one of
    the two runs did not get there."""

    def passes(r: dict | None) -> tuple[int, bool] | None:
        if not r or ("error" in r and not r.get("reached")):
            return None
        key = "passes_to_target" if r.get("reached") else "total_passes"
        return (r[key], bool(r.get("reached"))) if r.get(key) else None

    b, a = passes(before), passes(after)
    if b is None or a is None or not (a[1] or b[1]):
        return "—"
    ratio = b[0] / a[0]
    value = f"{ratio:,.0f}×" if ratio >= 100 else f"{ratio:.3g}×"
    return value if a[1] and b[1] else f"> {value}" if a[1] else f"< {value}"


def _source(env: dict) -> str:
    src = env.get("lrdask_source") or {}
    where = src.get("path", "?")
    if src.get("revision"):
        where += f" @ {src['revision'][:10]}"
        if src.get("modified"):
            where += f" + {len(src['modified'])} uncommitted file(s)"
    return f"lrdask {env.get('lrdask', '?')} from {where}"


def comparison(name: str, before: dict, after: dict) -> str:
    """The before/after table of one data set: passes to the target per solver."""
    b_run = before["sizes"].get(name)
    if b_run is None:
        return f"**{name}, before → after**: no {name} in the --before-json file\n"
    a_run = after["sizes"][name]
    b_opts, a_opts = before["environment"]["options"], after["environment"]["options"]
    target = a_opts["target"]
    differ = [
        f"{key} {b_opts.get(key)} → {a_opts.get(key)}"
        for key in COMPARED_SETTINGS
        if b_opts.get(key) != a_opts.get(key)
    ]
    f_diff = (a_run["f_star"] - b_run["f_star"]) / abs(b_run["f_star"])
    head = (
        f"**{name}, before → after**: before = {_source(before['environment'])}; after = "
        f"{_source(after['environment'])}; f* {b_run['f_star']:.12g} → "
        f"{a_run['f_star']:.12g} (relative change {f_diff:.1e})"
        f"{'; SETTINGS DIFFER: ' + ', '.join(differ) if differ else '; same settings'}\n"
    )
    header = ["solver", f"passes to {target:g} before", "after", "before / after"]
    rows = []
    for row in ROWS:
        b, a = b_run["solvers"].get(row), a_run["solvers"].get(row)
        if b is None and a is None:
            continue
        label = _label(row, a_run, a)
        if row in ("lrdask gd", "lrdask agd") and b and a and "alpha" in b and "alpha" in a:
            before_alpha, after_alpha = _alpha_text(b_run, b), _alpha_text(a_run, a)
            if before_alpha != after_alpha:
                label = f"{row} (α = {before_alpha} → {after_alpha})"
        rows.append([label, _passes_cell(b), _passes_cell(a), _ratio(b, a)])
    notes = [
        line.replace("Passes not", f"{when}: passes not")
        for when, run in (("Before", b_run), ("After", a_run))
        for line in _unreported_passes(run["solvers"])
        if line
    ]
    return "\n".join([head, markdown_table(header, rows), *(["", *notes] if notes else [])])


# ---- main --------------------------------------------------------------------------------------
def _alpha(text: str) -> str:
    """--alpha: one of ALPHA_RULES or a step size > 0 (kept as text, as given)."""
    if text in ALPHA_RULES:
        return text
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not (value > 0 and np.isfinite(value)):
        raise argparse.ArgumentTypeError(f"{text!r}: give 1/L, 1/L_std or a number > 0")
    return text


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes", default="breast_cancer,large", help=f"comma list of {', '.join(DATA_SETS)}"
    )
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
    parser.add_argument(
        "--gtol", type=float, help="lrdask's gtol for every run (default: lrdask's own)"
    )
    parser.add_argument(
        "--alpha",
        type=_alpha,
        default="1/L",
        help="gd/agd step: 1/L (L of ∇F on the features as stored), 1/L_std (L of F in "
        "standardized variables) or a number",
    )
    parser.add_argument(
        "--before-json", metavar="PATH", help="a --json of an earlier run: add before/after"
    )
    parser.add_argument(
        "--load-json",
        metavar="PATH",
        action="append",
        help="report this saved --json instead of running; repeated: merge the runs "
        "(with --json: write the merged file)",
    )
    parser.add_argument(
        "--solvers",
        default=",".join(SOLVER_NAMES),
        help=f"lrdask solvers to run, comma list of {', '.join(SOLVER_NAMES)}",
    )
    args = parser.parse_args(argv)
    args.sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    unknown = [s for s in args.sizes if s not in DATA_SETS]
    if unknown:
        parser.error(f"unknown size(s) {unknown}; choose from {list(DATA_SETS)}")
    if min(args.workers, args.rows_scale, args.l2, args.target, args.max_passes) <= 0:
        parser.error("--workers, --rows-scale, --l2, --target, --max-passes must be positive")
    if args.gtol is not None and args.gtol < 0:
        parser.error("--gtol must be ≥ 0")
    solvers = [s.strip() for s in args.solvers.split(",") if s.strip()]
    unknown = [s for s in solvers if s not in SOLVER_NAMES]
    if unknown:
        parser.error(f"unknown solver(s) {unknown}; choose from {list(SOLVER_NAMES)}")
    args.solvers = [SOLVER_NAMES[s] for s in solvers]
    return args


def merge_outputs(outputs: list[dict], paths: list[str]) -> dict:
    """Saved runs of the same lrdask as one: data sets from all of them; for a data set in
    several, each later file's rows replace the earlier ones, except rows it did not run
    (``--solvers``). So a run of a few solvers with other caps can complete a full run."""
    outputs = copy.deepcopy(outputs)
    for output in outputs:  # files written before rows recorded their own α rule
        for run in output["sizes"].values():
            for r in run["solvers"].values():
                if "alpha" in r and "alpha_rule" not in r:
                    r["alpha_rule"] = run.get("alpha_rule", "1/L")
    merged = outputs[0]
    if len(outputs) == 1:
        return merged
    sources = {json.dumps(o["environment"].get("lrdask_source"), sort_keys=True) for o in outputs}
    if len(sources) > 1:
        raise SystemExit(f"{', '.join(paths)}: runs of different lrdask sources, not merged")
    merged["merged_from"] = [
        {"path": path, "options": o["environment"]["options"], "wall_seconds": o["wall_seconds"]}
        for path, o in zip(paths, outputs, strict=True)
    ]
    for other in outputs[1:]:
        for name, run in other["sizes"].items():
            if name not in merged["sizes"]:
                merged["sizes"][name] = run
                continue
            mine = merged["sizes"][name]
            f_diff = abs(run["f_star"] - mine["f_star"]) / abs(mine["f_star"])
            if f_diff > 1e-12:
                raise SystemExit(f"{name}: f* differs by {f_diff:.1e} between the runs")
            mine["solvers"].update(
                {row: r for row, r in run["solvers"].items() if not r.get("not_run")}
            )
            mine["newton_cross_check"] = mine["solvers"]["lrdask newton"].get("final_gap")
        merged["wall_seconds"] += other["wall_seconds"]
    return merged


def _read_json(path: str) -> dict:
    with open(path) as fh:
        data = json.load(fh)
    if "sizes" not in data or "environment" not in data:
        raise SystemExit(f"{path}: not a --json file of bench_solvers.py")
    return data


def print_report(output: dict, before: dict | None) -> None:
    env = output["environment"]
    target = env["options"]["target"]
    contention = output["contention"]
    share = contention["other_cpu_seconds"] / max(contention["available_cpu_seconds"], 1e-9)
    workers = output.get("worker_lrdask")
    merged = output.get("merged_from")
    if merged:
        print(f"Merged from {', '.join(m['path'] for m in merged)} (the first one's header):")
    print(
        f"{_source(env)}{' (workers: ' + ', '.join(workers) + ')' if workers else ''}, "
        f"{env['workers']} workers × 1 thread on {env['cores']} cores "
        f"({env['cpu']}); scikit-learn {env['sklearn']}, dask-ml {env['dask_ml']}, dask "
        f"{env['dask']}; load average at start {env['load_average_at_start'][0]:.2f}, at end "
        f"{output['load_average_at_end'][0]:.2f}; other processes used "
        f"{contention['other_cpu_seconds']:.0f} of {contention['available_cpu_seconds']:.0f} "
        f"CPU-seconds ({share:.0%}){': timings unreliable' if share > 0.05 else ''}\n"
    )
    for name in output["sizes"]:
        print(report(output["sizes"][name], target) + "\n")
        if before is not None:
            print(comparison(name, before, output) + "\n")
    print(f"wall time: {output['wall_seconds']:.0f} s")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    before = _read_json(args.before_json) if args.before_json else None
    if args.load_json:
        output = merge_outputs([_read_json(path) for path in args.load_json], args.load_json)
        print_report(output, before)
        if args.json:
            with open(args.json, "w") as fh:
                json.dump(output, fh, indent=1, default=float)
            log(f"wrote {args.json}")
        return 0
    started = time.perf_counter()
    output: dict = {"environment": environment(args), "sizes": {}}
    contention: dict = {}
    with connect(workers=args.workers) as client, other_cpu_usage(contention):
        output["worker_lrdask"] = sorted(set(client.run(_worker_lrdask).values()))
        for name in args.sizes:
            others: dict = {}
            with other_cpu_usage(others):
                output["sizes"][name] = bench_problem(client, name, args)
            output["sizes"][name].update(name=name, contention=others)
    output["contention"] = contention
    output["wall_seconds"] = time.perf_counter() - started
    output["load_average_at_end"] = os.getloadavg()
    print_report(output, before)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(output, fh, indent=1, default=float)
        log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
