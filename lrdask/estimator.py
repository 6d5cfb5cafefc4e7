"""The estimator: a scikit-learn classifier (``BaseEstimator``, ``ClassifierMixin``) whose
``fit`` runs lrdask's passes on a Dask cluster."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterator
from numbers import Integral, Real

import numpy as np
from distributed import Client, default_client
from sklearn.base import BaseEstimator, ClassifierMixin

from lrdask import artifact, environment
from lrdask.checkpoint import Checkpoints, run_identity
from lrdask.cluster import connect
from lrdask.dataset import DatasetPlan, plan_dataset
from lrdask.diagnostics import column_report, float32_losses, separated
from lrdask.encoding import MISSING_POLICIES, Encoding, ProfileRequest, learn
from lrdask.errors import (
    ClusterError,
    ConfigError,
    DataError,
    LrdaskError,
    NotConvergedError,
    NotFittedError,
    python_words,
)
from lrdask.kernels import log_loss_sums, moment_sums, newton_sums
from lrdask.loading import check_reports, class_totals, summarize
from lrdask.objective import (
    ORIGINAL,
    PRECONDITIONED,
    STANDARDIZED,
    Layout,
    Objective,
    Scaling,
)
from lrdask.scheduling import worker_environments
from lrdask.solvers import (
    CONVERGED,
    DIVERGED,
    NEWTON_MAX_FEATURES,
    STALLED,
    IterationInfo,
    SolverState,
    StopRule,
    StopTraining,
    gradient_descent,
    lbfgs,
    newton,
)
from lrdask.sources import public_classes, scores, training_source
from lrdask.sums import MomentSums
from lrdask.validation import ValidationMonitor

log = logging.getLogger("lrdask")

SOLVERS = ("gd", "agd", "lbfgs", "newton")
_PARAMETER_CONSTRAINTS: dict[str, tuple[Callable[[object], bool], str]] = {
    "alpha": (lambda v: _is_real(v) and v > 0 and np.isfinite(v), "a float > 0"),
    "max_iter": (lambda v: isinstance(v, Integral) and v >= 1, "an int >= 1"),
    "tol": (lambda v: _is_real(v) and v >= 0, "a float >= 0"),
    "gtol": (lambda v: _is_real(v) and v >= 0, "a float >= 0"),
    "dtype": (lambda v: v in ("float64", "float32"), "'float64' or 'float32'"),
    "solver": (lambda v: v in SOLVERS, "one of " + ", ".join(repr(s) for s in SOLVERS)),
    "l2": (lambda v: _is_real(v) and v >= 0 and np.isfinite(v), "a float >= 0"),
    "l1": (lambda v: _is_real(v) and v >= 0 and np.isfinite(v), "a float >= 0"),
    "line_search": (lambda v: isinstance(v, bool), "True or False"),
    "weight_col": (lambda v: v is None or (isinstance(v, str) and v), "a column name or None"),
    "class_weight": (
        lambda v: (
            v in (None, "balanced")
            or (isinstance(v, dict) and all(_is_real(w) and w >= 0 for w in v.values()))
        ),
        "None, 'balanced' or a dict {class label: weight >= 0}",
    ),
    "standardize": (lambda v: isinstance(v, bool), "True or False"),
    "standardize_variance": (
        lambda v: v in ("population", "sample"),
        "'population' or 'sample'",
    ),
    "init": (lambda v: v is None or isinstance(v, (str, LogisticRegression)), "a model dir"),
    "family": (
        lambda v: v in ("auto", "binomial", "multinomial"),
        "'auto', 'binomial' or 'multinomial'",
    ),
    "categorical": (
        lambda v: (
            v is None
            or v == "auto"
            or (isinstance(v, (list, tuple)) and all(isinstance(c, str) and c for c in v))
        ),
        "None, 'auto' or a list of column names",
    ),
    "min_count": (lambda v: isinstance(v, Integral) and v >= 1, "an int >= 1"),
    "missing": (lambda v: v in MISSING_POLICIES, "one of 'error', 'mean', 'skip'"),
    "positive_class": (
        lambda v: v is None or isinstance(v, (str, Integral, Real)),
        "None or a label value",
    ),
    "validation_every": (lambda v: isinstance(v, Integral) and v >= 1, "an int >= 1"),
    "early_stopping": (lambda v: isinstance(v, Integral) and v >= 0, "an int >= 0"),
    "fit_intercept": (lambda v: isinstance(v, (bool, np.bool_)), "True or False"),
    "threshold": (
        lambda v: _is_real(v) and 0 < v < 1,
        "a float strictly between 0 and 1",
    ),
}

# The constructor's parameters; the CLI's train flags of the same names fill them.
PARAMETERS = tuple(_PARAMETER_CONSTRAINTS)


def _is_real(value: object) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def _python_advice(fit):
    """``fit`` for Python callers: an error's advice in the API's words
    (``python_words``); the CLI, which passes a ``DatasetPlan``, keeps its flags."""

    @functools.wraps(fit)
    def wrapper(self, X, *args, **kwargs):
        try:
            return fit(self, X, *args, **kwargs)
        except LrdaskError as exc:
            if not isinstance(X, DatasetPlan):
                exc.args = (python_words(str(exc)), *exc.args[1:])
            raise

    return wrapper


class LogisticRegression(ClassifierMixin, BaseEstimator):
    """Logistic regression trained on a Dask cluster by batch gradient descent (the
    default) or a faster solver over the same distributed passes.

    A scikit-learn classifier: ``get_params``/``set_params``, ``clone``, ``Pipeline``,
    ``GridSearchCV`` and ``cross_val_score`` work (they come from scikit-learn's
    ``BaseEstimator`` and ``ClassifierMixin``); ``fit(X, y)`` takes NumPy, pandas and dask
    inputs or a Parquet path. Every fit uses the current Dask client (``client=`` or the
    default one) and starts an embedded ``LocalCluster`` only when there is none.

    Parameters (the CLI flag of each is the same name with dashes)
    ----------
    alpha : step α of gd/agd's update θ := θ − α·∇J (with line_search, the first step).
    max_iter : most updates (iterations) to apply.
    gtol : converged when max_i |∇F_i| ≤ gtol, the largest component of the objective's
        gradient (``lrdask.solvers``; scikit-learn's lbfgs ``tol`` is the same test).
    tol : stop ("stalled" unless ``gtol`` holds) when the objective improves by at most
        ``tol`` from one iterate to the next; 0 turns this rule off.
    dtype : storage type of the features on the workers ("float64" or "float32");
        sums are always accumulated in float64.
    solver : "gd" (the lecture's fixed-step update), "agd" (Nesterov/FISTA with restart),
        "lbfgs" (L-BFGS on the driver) or "newton" (IRLS; passes also sum the Hessian;
        up to 2000 features, binomial, no L1).
    l2, l1 : penalties (λ₂/2)·‖w‖² and λ₁·‖w‖₁ added to the mean log loss; intercepts are
        never penalized. scikit-learn's C is 1 / (λ₂·m).
    line_search : gd/agd choose their step by backtracking instead of a fixed α.
    weight_col : column of non-negative row weights; m becomes Σ weights.
    class_weight : "balanced" weighs class k by m / (K·m_k) (m_k the class's total weight),
        as scikit-learn does; a dict
        {label value: weight} weighs the classes it names (others 1), as scikit-learn's.
    standardize : train on (x − μ)/σ (one extra pass for μ, σ); coefficients are reported
        on the original scale. The penalties apply on the standardized scale. Off by
        default so that gd is the lecture's update on the raw features, exactly.
    standardize_variance : σ² is the "population" variance (Σ s·(x − μ)² / Σ s, as
        scikit-learn's StandardScaler; the default) or the "sample" one (/ (Σ s − 1), as
        Spark's standardization): with a penalty the two optima differ, by O(1/m).
    init : model dir (or fitted model) to start from instead of θ = 0 (same features).
    family : "auto" (binomial for two classes, multinomial for more; Spark's default),
        "binomial" (exactly two label values) or "multinomial" (K values, softmax).
    categorical : columns whose values are levels (``lrdask.encoding``): a list of names,
        "auto" (every string and dictionary column) or None (none: a string column is
        then an error).
    min_count : levels seen in fewer rows fold into one "(other)" level.
    missing : "error" (a null or NaN is an error), "mean" (numeric nulls become the
        training mean, categorical nulls the level "(missing)") or "skip" (drop the rows).
    positive_class : the label value that is class 1 for binomial (default: the larger
        of the two in sorted order, scikit-learn's ``classes_[1]``).
    fit_intercept : learn intercepts (True, the default); False fixes them at 0, for a
        model whose intercept is modelled by the user (a constant column, an offset).
    threshold : binomial ``predict`` says the positive class when its probability is
        above this (Spark's ``threshold``; scikit-learn's 0.5); does not change training.
    validation_every, early_stopping : with ``fit(validation=...)``, the held-out cost is
        computed every ``validation_every`` iterations; ``early_stopping=N`` (> 0) stops
        when it has not improved for N checks in a row.
    """

    def __init__(
        self,
        alpha: float = 0.1,
        max_iter: int = 1000,
        tol: float = 1e-8,
        dtype: str = "float64",
        solver: str = "gd",
        l2: float = 0.0,
        l1: float = 0.0,
        line_search: bool = False,
        weight_col: str | None = None,
        class_weight: str | None = None,
        standardize: bool = False,
        init=None,
        family: str = "auto",
        validation_every: int = 10,
        early_stopping: int = 0,
        categorical=None,
        min_count: int = 1,
        missing: str = "error",
        positive_class=None,
        gtol: float = 1e-4,
        standardize_variance: str = "population",
        fit_intercept: bool = True,
        threshold: float = 0.5,
    ):
        self.alpha = alpha
        self.max_iter = max_iter
        self.tol = tol
        self.dtype = dtype
        self.solver = solver
        self.l2 = l2
        self.l1 = l1
        self.line_search = line_search
        self.weight_col = weight_col
        self.class_weight = class_weight
        self.standardize = standardize
        self.init = init
        self.family = family
        self.validation_every = validation_every
        self.early_stopping = early_stopping
        self.categorical = categorical
        self.min_count = min_count
        self.missing = missing
        self.positive_class = positive_class
        self.gtol = gtol
        self.standardize_variance = standardize_variance
        self.fit_intercept = fit_intercept
        self.threshold = threshold

    # ---- training -------------------------------------------------------------------
    @_python_advice
    def fit(
        self,
        X,
        y=None,
        sample_weight=None,
        *,
        label: str | None = None,
        features: list[str] | None = None,
        client: Client | None = None,
        validation=None,
        exclude: list[str] | None = None,
        storage_options: dict | None = None,
        callback: Callable[[IterationInfo], None] | None = None,
        checkpoint_dir: str | None = None,
        checkpoint_every: int = 50,
        pass_timeout: float | None = None,
        cache: bool = True,
    ) -> LogisticRegression:
        """Train; returns self.

        ``X``: the features, as a NumPy array or list (n_samples, n_features), a pandas
        DataFrame, a dask array or a dask DataFrame, with the labels ``y`` (n_samples,)
        given apart as an array or a pandas/dask Series (dask inputs: split into the same
        partitions as X). Or a Parquet path/URL, a ``DatasetPlan`` (the CLI plans before it
        starts a cluster) or a DataFrame holding the label column that ``label=`` names;
        for these, ``y`` may name the column too (``fit(path, "y")``).
        ``sample_weight`` (n_samples,): non-negative row weights (scikit-learn's name;
        for a table, ``weight_col`` names a column instead). Arrays are checked as
        scikit-learn checks them and sent to the workers in blocks of 65,536 rows; the
        result equals that of the same rows read from Parquet.

        ``features``/``exclude`` choose columns of a table. ``validation`` is a held-out
        Parquet data set (path or plan) with the same columns. With ``checkpoint_dir`` the
        state is saved every ``checkpoint_every`` iterations and a matching checkpoint found
        there is resumed. ``pass_timeout`` bounds the wait for any one pass (seconds).
        ``cache=False`` streams Parquet data from storage on every pass instead of keeping
        it in worker memory (slower per pass). ``client``: the Dask client to run on
        (default: the current one, else an embedded LocalCluster for this fit).

        Raises DataError (a ValueError; DataTypeError also a TypeError) for unusable data,
        ConfigError for bad parameters, ClusterError when the cluster fails,
        NotConvergedError when the objective diverged.
        """
        self._check_params()
        started = time.time()
        self.validation_metrics_ = None
        if isinstance(y, str):  # fit(path, "label"): the label column's name
            if label is not None and label != y:
                raise ConfigError(f"y={y!r} and label={label!r} name different label columns")
            label, y = y, None
        source = training_source(
            X,
            label,
            features,
            exclude,
            storage_options,
            self.weight_col,
            self.categorical,
            y=y,
            sample_weight=sample_weight,
            missing=self.missing,
        )
        label = source.label
        if label is None:
            raise DataError(
                "y is None and no label= was given: pass the labels as y, or name the label "
                "column with label="
            )
        init_model = self._init_model(storage_options)
        validation = self._validation_plan(validation, source, storage_options)
        self.fingerprint_ = self._identity(
            source.data_items, label, source.features, init_model, validation
        )
        checkpoints = None
        if checkpoint_dir:
            checkpoints = Checkpoints(
                checkpoint_dir, checkpoint_every, self.fingerprint_, storage_options
            )
        timings = {}
        with _client_or_local(client) as client:
            self.environment_ = self._environment(client, pass_timeout)
            if checkpoints is not None:
                checkpoints.environment = self.environment_
            encoding = self._learn_encoding(client, source, pass_timeout)
            self._check_solver_fits(encoding)
            init = _initial_params(init_model, encoding)
            timings["profile"] = time.time() - started
            blocks = source.persist(client, encoding, self.dtype, pass_timeout, cache)
            held = [blocks]
            try:
                reports = blocks.reports()
                counts = check_reports(
                    reports, label, encoding.family, source.weight, classes=encoding.classes
                )
                timings["load"] = time.time() - started - timings["profile"]
                log.info("data profiled in %.1fs and loaded in %.1fs", *timings.values())
                summarize(reports, log, unseen=False)
                objective = self._objective(blocks, encoding, class_totals(reports))
                self.column_report_ = column_report(
                    blocks, encoding, self.solver, objective.scaling
                )
                if self.column_report_:
                    penalized = bool(self.l1 or self.l2)
                    log.warning("%s", self.column_report_.message(penalized))
                lossy = self.dtype == "float32" and float32_losses(objective.scaling, encoding)
                if lossy:
                    log.warning("%s", lossy)
                totals = class_totals(reports)
                if self.class_weights_ is not None:
                    totals = [t * w for t, w in zip(totals, self.class_weights_, strict=True)]
                state = self._start(objective, init, checkpoints, totals)
                monitor = None
                if validation is not None:
                    monitor = self._monitor(validation, encoding, objective)
                    held.append(monitor.start(client, pass_timeout))
                callbacks = _both(callback, checkpoints, monitor)
                solving = time.time()
                state = self._solve(objective, state, _with_passes(callbacks, objective))
                timings["solve"] = time.time() - solving
                if monitor is not None:
                    self.validation_metrics_ = monitor.final_metrics(state)
                separation = ""
                if not (self.l1 or self.l2) and state.status != DIVERGED:
                    coef, intercept = objective.to_model(state.params)
                    multinomial = encoding.family == "multinomial"
                    converged = state.status == CONVERGED
                    separation = separated(
                        blocks,
                        coef,
                        intercept,
                        multinomial,
                        loss_at=lambda c, b: objective.run_pass(c, b)[0],
                        cost=state.loss_history[-1] if converged else None,
                    )
                self.separated_ = bool(separation)
            finally:
                for held_blocks in held:
                    held_blocks.release()
        self._set_fitted(state, objective, encoding, label, counts, source.named)
        self.timings_ = {name: round(value, 3) for name, value in timings.items()}
        if self.status_ == DIVERGED:
            raise NotConvergedError(self.stop_reason_ + "; no model")
        if self.separated_:
            self.stop_reason_ += (
                f"; the data are separable ({separation}): there is no finite optimum, and "
                "the coefficients grow as gtol shrinks; add --l2 for a finite model"
            )
            log.warning(
                "the training data are separable (%s): no finite optimum; add --l2", separation
            )
        self.n_rows_ = sum(r.rows for r in reports)
        self.n_partitions_ = len(reports)
        self.data_source_ = source.description
        self.fit_seconds_ = time.time() - started
        return self

    def _learn_encoding(self, client, source, timeout) -> Encoding:
        """The profile pass: levels, classes and means, learned from the data."""
        request = ProfileRequest(
            tuple(n for n in source.features if n not in source.categorical),
            tuple(source.categorical),
            source.label,
            source.weight,
            self.missing,
            means=self.missing == "mean",
        )
        profile = source.profile(client, request, timeout)
        encoding, note = learn(
            profile,
            request,
            min_count=self.min_count,
            penalized=bool(self.l1 or self.l2),
            family=self.family,
            positive_class=self.positive_class,
        )
        log.info("%s", note)
        for cat in encoding.categorical:
            rare = (
                f", {cat.other_rows} row(s) of rarer levels as '(other)'" if cat.other_rows else ""
            )
            log.info(
                "categorical '%s': %d level(s), %d coefficient(s)%s%s",
                cat.name,
                len(cat.levels),
                cat.n_slots,
                f"; reference level {cat.levels[0]!r}" if cat.reference else "",
                rare,
            )
        return encoding

    def _objective(self, blocks, encoding: Encoding, totals: list[float]) -> Objective:
        """The function the solver minimizes: passes over ``blocks`` plus driver algebra."""
        multinomial = encoding.family == "multinomial"
        outputs = len(totals) if multinomial else 1
        layout = Layout(encoding.n_features, outputs, intercept=bool(self.fit_intercept))
        kernel = self._kernel(totals, encoding)
        # one moments pass: the standardization, the preconditioner and the gtol measure
        moments = blocks.partial_sums(None, None, kernel=moment_sums)
        ddof = 1 if self.standardize and self.standardize_variance == "sample" else 0
        scaling = Scaling.from_moments(_with_category_slots(moments, encoding), ddof)

        def run_pass(coef, intercept):
            return blocks.partial_sums(coef, intercept, kernel=kernel).mean()

        objective = Objective(
            run_pass, layout, scaling, self.l2, self._coordinates(), encoding.feature_names
        )
        self.scaling_ = objective.scaling if self.standardize else None
        return objective

    def _coordinates(self) -> str:
        """Where the solver works: standardized features with ``standardize``; else every
        solver but plain gd in preconditioned coordinates (Spark's L-BFGS does the same),
        plain gd (the lecture's update) on the original coefficients."""
        if self.standardize:
            return STANDARDIZED
        if self.solver == "gd" and not self.line_search:
            return ORIGINAL
        return PRECONDITIONED

    def _kernel(self, totals: list[float], encoding: Encoding):
        """The per-block kernel, with the class weights: "balanced" weighs class k by
        Σ totals / (K · totals_k), the (sample-weighted) class totals, as scikit-learn
        (1.6 and later) computes it with sample weights."""
        family = encoding.family
        weights = None
        if self.class_weight == "balanced":
            weights = tuple(sum(totals) / (len(totals) * t) for t in totals)
        elif isinstance(self.class_weight, dict):
            classes = list(encoding.classes)
            unknown = [k for k in self.class_weight if k not in classes]
            if unknown:
                raise ConfigError(
                    f"class_weight names {unknown}, which are not classes of label "
                    f"'{encoding.label}' (its classes are {classes})"
                )
            weights = tuple(float(self.class_weight.get(c, 1.0)) for c in classes)
        self.class_weights_ = weights
        if family == "multinomial":
            from lrdask.softmax_kernels import softmax_sums

            kernel = softmax_sums
        else:
            kernel = newton_sums if self.solver == "newton" else log_loss_sums
        return kernel if weights is None else functools.partial(kernel, class_weight=weights)

    @staticmethod
    def _environment(client, timeout) -> dict:
        """The library versions and CPUs the result depends on (``lrdask.environment``):
        the driver's and each distinct one among the workers; a warning when the workers
        differ."""
        workers = worker_environments(client, timeout)
        mixed = environment.mixed_workers_message(workers)
        if mixed:
            log.warning("%s", mixed)
        return {"driver": environment.describe(), "workers": environment.distinct(workers)}

    def _start(self, objective: Objective, init, checkpoints, class_totals) -> SolverState:
        """A matching checkpoint, else the init model, else θ = 0 — for a preconditioned
        solver with the intercepts at the log-odds of the (weighted) class totals, as
        Spark starts its L-BFGS."""
        state = checkpoints.resume(objective.layout.size) if checkpoints else None
        if state is not None:
            return state
        if init is None:
            return SolverState(objective.start(class_totals))
        coef, intercept = init
        if np.shape(coef) != objective.layout.coef_shape:
            raise ConfigError(
                f"--init model has coefficients of shape {np.shape(coef)}, but this data "
                "needs another shape (a different number of classes?); train without --init"
            )
        return SolverState(objective.from_model(coef, intercept))

    def _solve(self, objective: Objective, state: SolverState, callback) -> SolverState:
        l1 = objective.l1_penalty(self.l1)
        measure = objective.measure(self.l1)
        rule = StopRule(self.tol, self.gtol)
        try:
            if self.solver == "newton":
                return newton(objective, state, self.max_iter, rule, callback)
            if self.solver == "lbfgs":
                return lbfgs(
                    objective, state, self.max_iter, rule, callback, l1=l1, measure=measure
                )
            return gradient_descent(
                objective,
                state,
                self.alpha,
                self.max_iter,
                rule,
                callback,
                l1=l1,
                line_search=self.line_search,
                accelerate=self.solver == "agd",
                measure=measure,
            )
        except StopTraining as stop:
            state.stop_reason = str(stop)
            return state

    def identity_of(self, plan: DatasetPlan, validation=None, storage_options=None) -> dict:
        """The identity ``fit`` will give a run on ``plan`` (for reruns and checkpoints)."""
        init = self._init_model(storage_options)
        items = plan.fingerprint_items()
        return self._identity(items, plan.label, plan.features, init, validation)

    def _identity(self, items, label, features, init, validation) -> dict:
        if validation is not None:  # its history and metrics are in model.json
            items = [*items, ["validation", *validation.fingerprint_items()]]
        return run_identity(items, self.run_options(label, features, init))

    def _validation_plan(self, validation, source, storage_options) -> DatasetPlan | None:
        if validation is None or isinstance(validation, DatasetPlan):
            return validation
        if isinstance(validation, (str, bytes)) or hasattr(validation, "__fspath__"):
            url = str(validation.__fspath__() if hasattr(validation, "__fspath__") else validation)
            return plan_dataset(
                url,
                source.label,
                source.features,
                None,
                storage_options,
                categorical=source.categorical,
            )
        raise DataError(f"validation takes a Parquet path/URL, not {type(validation).__name__}")

    def _monitor(self, validation: DatasetPlan, encoding, objective) -> ValidationMonitor:
        kernel = softmax_kernel() if encoding.family == "multinomial" else log_loss_sums
        return ValidationMonitor(
            validation,
            encoding.reading(validation.label),
            kernel,
            objective,
            self.validation_every,
            self.early_stopping,
            self.threshold,
        )

    def _check_solver_fits(self, encoding: Encoding) -> None:
        if self.solver != "newton":
            return
        if encoding.family == "multinomial":
            raise ConfigError(
                "solver 'newton' is for the binomial family only (Only binary classification "
                f"is supported.), and label "
                f"'{encoding.label}' has {encoding.n_classes} classes; use solver 'lbfgs'"
            )
        if encoding.n_features > NEWTON_MAX_FEATURES:
            cats = f" after encoding {len(encoding.categorical)} categorical column(s)"
            raise ConfigError(
                f"solver 'newton' sums a features × features Hessian on every pass; "
                f"{encoding.n_features} features{cats if encoding.categorical else ''} is more "
                f"than {NEWTON_MAX_FEATURES}: use solver 'lbfgs'"
            )

    def _init_model(self, storage_options):
        """The fitted model ``init`` names (or is), or None."""
        if self.init is None:
            return None
        model = self.init
        if not isinstance(model, LogisticRegression):
            model = LogisticRegression.load(model, storage_options)
        model._check_fitted()
        return model

    def run_options(self, label: str, features: list[str], init=None) -> dict:
        """The options that decide the result: with the data, a run's identity."""
        return {
            "solver": self.solver,
            "l2": float(self.l2),
            "l1": float(self.l1),
            "line_search": self.line_search,
            "weight_col": self.weight_col,
            "class_weight": self.class_weight,
            "standardize": self.standardize,
            "standardize_variance": self.standardize_variance,
            "coordinates": self._coordinates(),
            "family": self.family,
            "categorical": self.categorical
            if self.categorical in (None, "auto")
            else list(self.categorical),
            "min_count": int(self.min_count),
            "missing": self.missing,
            "positive_class": self.positive_class,
            "init": _digest(init),
            "label": label,
            "features": list(features),
            "alpha": float(self.alpha),
            "max_iter": int(self.max_iter),
            "tol": float(self.tol),
            "gtol": float(self.gtol),
            "dtype": self.dtype,
            "early_stopping": int(self.early_stopping),
            "validation_every": int(self.validation_every),
            "fit_intercept": bool(self.fit_intercept),
        }

    def options(self) -> dict:
        """The constructor's parameters for the artifact (a warm start's model by name)."""
        params = {name: getattr(self, name) for name in PARAMETERS}
        if isinstance(params["init"], LogisticRegression):
            params["init"] = "<model>"
        return params

    def _check_params(self) -> None:
        for name, (ok, expected) in _PARAMETER_CONSTRAINTS.items():
            value = getattr(self, name)
            if not ok(value):
                raise ConfigError(
                    f"The '{name}' parameter of LogisticRegression must be {expected}. "
                    f"Got {value!r} instead."
                )
        if self.solver == "newton" and self.l1:
            raise ConfigError(
                "solver 'newton' needs a twice-differentiable objective and l1 is not; "
                "use solver 'lbfgs', 'agd' or 'gd' with l1"
            )
        if self.solver == "newton" and self.family == "multinomial":
            raise ConfigError(
                "solver 'newton' is for the binomial family only; use solver 'lbfgs' "
                "with family 'multinomial'"
            )
        if self.positive_class is not None and self.family == "multinomial":
            raise ConfigError("positive_class is for the binomial family only")

    def _set_fitted(
        self, state, objective, encoding: Encoding, label, counts, named: bool = True
    ) -> None:
        coef, intercept = objective.to_model(state.params)
        self.coef_ = coef.T if objective.layout.outputs > 1 else coef
        self.intercept_ = intercept
        self.n_iter_ = state.n_iter
        self.n_passes_ = objective.passes
        self.solver_state_ = state  # in the solver's space: what a checkpoint holds
        self.loss_history_ = list(state.loss_history)
        self.converged_ = state.converged
        self.status_ = "early_stopping" if state.stop_reason else state.status
        self.grad_norm_ = state.grad_norm
        self.grad_max_ = state.grad_max
        self.cost_increased_at_ = state.cost_increased_at
        self.validation_history_ = [list(v) for v in state.validation_history]
        self.stop_reason_ = state.stop_reason or self._stop_reason(state)
        self.stopped_early_ = bool(state.stop_reason)
        self.encoding_ = encoding
        self.family_ = encoding.family
        self.n_features_in_ = len(encoding.input_columns)
        if named:  # scikit-learn sets it only for inputs whose columns have names
            self.feature_names_in_ = np.asarray(encoding.input_columns, dtype=object)
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        self.coef_names_ = encoding.feature_names
        self.label_ = label
        self.classes_ = public_classes(encoding)
        self.class_counts_ = list(counts)
        self.training_metrics_ = self._training_metrics(state, objective)

    def _training_metrics(self, state: SolverState, objective: Objective) -> dict:
        """The final objective, the mean log loss inside it, and held-out metrics if any."""
        penalty = objective.penalty(state.params, self.l1)
        final = state.loss_history[-1]
        summary = {"objective": final, "train_log_loss": final - penalty}
        if getattr(self, "validation_metrics_", None):
            summary["validation"] = self.validation_metrics_
        return summary

    def _stop_reason(self, state: SolverState) -> str:
        """What happened, in words a pipeline's operator can act on."""
        g = state.grad_max
        history = state.loss_history
        if state.status == CONVERGED:
            return f"converged: max |gradient| = {g:.3g} ≤ gtol={self.gtol:g}"
        if state.status == STALLED:
            changed = f"the objective changed by at most tol={self.tol:g}"
            if self._coordinates() == ORIGINAL:
                hint = (
                    "the steps are too small for the scales of the features: raise --alpha, "
                    "or pass --line-search or --standardize, or use --solver lbfgs/newton"
                )
            elif self.solver == "agd" and not self.line_search:
                hint = (
                    "raise --alpha (agd steps in standardized units: about 1 suits most "
                    "data) or pass --line-search"
                )
            elif self.tol > 0:
                hint = "lower --tol (0 turns this rule off), or use --solver newton"
            else:
                changed = "the line search could not lower the objective any further"
                hint = (
                    "the objective stopped changing within its rounding, so this solver "
                    "cannot verify a smaller gradient here: raise --gtol or use --solver newton"
                )
            return f"stalled: {changed} but max |gradient| = {g:.3g} > gtol={self.gtol:g}; {hint}"
        if state.status == DIVERGED:
            return (
                f"diverged: the objective rose from {history[0]:.6g} to {history[-1]:.6g}; "
                f"--alpha {self.alpha:g} is too large: use a smaller --alpha or --line-search"
            )
        return f"max_iter={self.max_iter} reached: max |gradient| = {g:.3g} > gtol={self.gtol:g}"

    # ---- prediction -----------------------------------------------------------------
    # Every method takes what ``fit`` takes: a NumPy array or pandas DataFrame (NumPy out),
    # a dask array, a dask DataFrame or a Parquet path/URL (a dask array out, computed
    # partition by partition with the planner, loader and encoding of training).
    def decision_function(self, X):
        """The linear predictor: z = X·w + b, shape (n,), for a binomial model (positive
        when the positive class ``classes_[1]`` is likelier; scikit-learn's and Spark's
        rawPrediction); the (n, K) class scores for a multinomial one. Raises DataError
        when X lacks the model's columns."""
        return scores(self, X, "margin")

    def predict_proba(self, X):
        """(n, K) class probabilities, columns in the order of ``classes_`` (K = 2 for
        binomial: column 1 is the positive class). Rows with a missing value under
        ``missing="skip"`` get NaN."""
        return scores(self, X, "proba")

    def predict_log_proba(self, X):
        """(n, K) natural logs of ``predict_proba``, computed from the margins without
        rounding small probabilities to 0 (log σ(z) = −log(1 + e^(−z)))."""
        return scores(self, X, "log_proba")

    def predict(self, X):
        """Class labels (values of ``classes_``), shape (n,): binomial the positive class
        when its probability is above ``threshold`` (z > logit(threshold), so 0.5 agrees
        with ``decision_function(X) > 0`` exactly); multinomial the likeliest class."""
        return scores(self, X, "label")

    def score(self, X, y, sample_weight=None) -> float:
        """Accuracy of ``predict(X)`` against ``y`` (weighted by ``sample_weight``), as
        scikit-learn's classifiers score; dask inputs are computed."""
        from sklearn.metrics import accuracy_score

        predicted = self.predict(X)
        y, predicted, sample_weight = (
            v.compute() if hasattr(v, "compute") else v for v in (y, predicted, sample_weight)
        )
        try:
            return float(accuracy_score(y, predicted, sample_weight=sample_weight))
        except (TypeError, ValueError) as exc:
            raise DataError(f"score: {exc}") from None

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = self.missing != "error"
        tags.input_tags.sparse = False
        tags.classifier_tags.multi_class = self.family != "binomial" and self.solver != "newton"
        return tags

    def __sklearn_clone__(self) -> LogisticRegression:
        """scikit-learn's clone, except that a fitted model given as ``init`` is kept as it
        is: cloning it would drop the coefficients the warm start needs."""
        from sklearn.base import clone

        params = {
            name: value if name == "init" else clone(value, safe=False)
            for name, value in self.get_params(deep=False).items()
        }
        return type(self)(**params)

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "coef_")

    def _check_fitted(self) -> None:
        if not hasattr(self, "coef_"):
            raise NotFittedError(
                "This LogisticRegression instance is not fitted yet. Call 'fit' with "
                "appropriate arguments before using this estimator (or load() a model)."
            )

    # ---- persistence ----------------------------------------------------------------
    def save(self, model_dir: str, storage_options: dict | None = None) -> str:
        """Write ``model_dir/model.json`` atomically; returns its location."""
        self._check_fitted()
        return artifact.save(self, model_dir, storage_options)

    @classmethod
    def load(cls, model_dir: str, storage_options: dict | None = None) -> LogisticRegression:
        return artifact.load(cls, model_dir, storage_options)

    def to_sklearn(self):
        """This model as a fitted scikit-learn estimator with the same ``predict_proba``:
        a ``LogisticRegression``, or a ``Pipeline`` (encoding, then LogisticRegression)
        for categorical columns or ``missing="mean"``; see ``lrdask.export.to_sklearn``.
        Raises ModelError when the model is not fitted."""
        from lrdask.export import to_sklearn

        return to_sklearn(self)


def expected_failed_checks(estimator: LogisticRegression) -> dict[str, str]:
    """The checks of ``sklearn.utils.estimator_checks.check_estimator`` that this
    estimator fails, with why (pass it as ``expected_failed_checks=``). Only the default
    solver, plain gd with a fixed step, has any: on the checks' unscaled blobs (values
    near 10) a step of α = 0.1 is past 2/L, the objective rises, and lrdask refuses to
    return a diverged model (NotConvergedError) instead of a wrong one."""
    if estimator.solver != "gd" or estimator.line_search:
        return {}
    why = (
        "plain gd with the fixed step alpha diverges on these unscaled blobs and lrdask "
        "raises NotConvergedError rather than return a diverged model; use line_search=True "
        "or solver='lbfgs'"
    )
    return dict.fromkeys(
        ["check_fit_idempotent", "check_fit_check_is_fitted", "check_n_features_in"], why
    )


def softmax_kernel():
    from lrdask.softmax_kernels import softmax_sums

    return softmax_sums


def _with_passes(callback, objective: Objective):
    """The callback, seeing how many distributed passes the objective has made."""
    return lambda info: callback(dataclasses.replace(info, passes=objective.passes))


def _digest(model) -> str | None:
    """A short hash of a warm start's coefficients (by name), part of the run's identity."""
    if model is None:
        return None
    names = list(_coef_names(model))
    coef = np.asarray(model.coef_)
    rows = coef.T if coef.ndim == 2 else coef[:, None]
    pairs = sorted((name, rows[j].tolist()) for j, name in enumerate(names))
    text = json.dumps([pairs, np.ravel(model.intercept_).tolist()])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _coef_names(model) -> list[str]:
    """The name of each coefficient (``coef_names_``; older models: the input columns)."""
    names = getattr(model, "coef_names_", None)
    return list(names if names is not None else model.feature_names_in_)


def _initial_params(model, encoding: Encoding):
    """(coef, intercept) of the init model in this run's coefficient order, or None."""
    if model is None:
        return None
    names = list(_coef_names(model))
    wanted = encoding.feature_names
    family = getattr(model, "family_", model.family)
    if family != encoding.family or set(names) != set(wanted):
        raise ConfigError(
            f"--init model is {family} on features {names[:10]}, but this run is "
            f"{encoding.family} on {wanted[:10]}; it can only start from a model with the "
            "same family and features (and levels)"
        )
    order = [names.index(name) for name in wanted]
    coef = np.asarray(model.coef_)
    coef = coef[order] if coef.ndim == 1 else coef[:, order].T
    return coef, model.intercept_


def _with_category_slots(moments: MomentSums, encoding: Encoding) -> MomentSums:
    """Moments of the numeric columns, and mean 0 / variance 1 for the category slots:
    indicators are not standardized."""
    slots = encoding.n_category_slots
    if not slots:
        return moments
    return MomentSums(
        moments.count,
        np.concatenate([moments.mean, np.zeros(slots)]),
        np.concatenate([moments.m2, np.full(slots, moments.count)]),
    )


@contextlib.contextmanager
def _client_or_local(client: Client | None) -> Iterator[Client]:
    """The Dask client a fit runs on, in this order: the given one; inside a Dask task
    (joblib's dask backend runs each of GridSearchCV's fits as one), the worker's own
    client, which releases the task's thread while it waits (holding it would leave no
    thread for the fit's own tasks: a hang); the current default client; the scheduler
    at Dask's ``scheduler-address`` setting (``DASK_SCHEDULER_ADDRESS``: how processes that
    joblib starts, n_jobs > 1, find the user's cluster); else an embedded LocalCluster."""
    import dask
    from distributed import get_worker, worker_client

    if client is not None:
        if not isinstance(client, Client):
            raise ConfigError(
                f"client= takes a distributed.Client or None, not {type(client).__name__}; "
                "for a scheduler address pass client=Client('tcp://host:8786')"
            )
        yield client
        return
    try:
        get_worker()
    except ValueError:
        pass
    else:
        with worker_client() as inside:
            yield inside
        return
    try:
        client = default_client()
    except ValueError:
        client = None
    if client is not None:
        yield client
        return
    with contextlib.ExitStack() as stack:
        address = dask.config.get("scheduler-address", None)
        try:
            started = stack.enter_context(connect(address) if address else connect())
        except (ConfigError, ClusterError):
            raise
        except Exception as exc:  # LocalCluster's own start-up errors
            raise ClusterError(
                f"no Dask client, and an embedded LocalCluster could not start "
                f"({type(exc).__name__}: {exc}). In a process that joblib started "
                "(GridSearchCV with n_jobs > 1), set DASK_SCHEDULER_ADDRESS to your "
                "cluster's address, or use n_jobs=1 (each fit already runs on the whole "
                "cluster) or joblib.parallel_backend('dask')"
            ) from None
        yield started


def _both(*callbacks):
    """One callback that calls each of the given ones that is not None."""
    active = [c for c in callbacks if c is not None]
    return lambda info: [c(info) for c in active]
