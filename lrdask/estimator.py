"""The scikit-learn-shaped estimator: ``fit``, ``predict_proba``, ``predict``, ``coef_``."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np
from distributed import Client, default_client

from lrdask import artifact, kernels
from lrdask.checkpoint import Checkpoints, run_identity
from lrdask.cluster import connect
from lrdask.dataset import DatasetPlan, plan_dataset
from lrdask.errors import ConfigError, DataError
from lrdask.kernels import log_loss_sums, newton_sums
from lrdask.loading import block_from_columns, check_reports, load_piece
from lrdask.scheduling import PersistedBlocks, StreamedPieces
from lrdask.solvers import (
    NEWTON_MAX_FEATURES,
    IterationInfo,
    SolverState,
    gradient_descent,
    lbfgs,
    newton,
    with_l2,
)

_PARAMETER_CONSTRAINTS: dict[str, tuple[Callable[[object], bool], str]] = {
    "alpha": (lambda v: _is_real(v) and v > 0 and np.isfinite(v), "a float > 0"),
    "max_iter": (lambda v: isinstance(v, Integral) and v >= 1, "an int >= 1"),
    "tol": (lambda v: _is_real(v) and v >= 0, "a float >= 0"),
    "dtype": (lambda v: v in ("float64", "float32"), "'float64' or 'float32'"),
    "solver": (lambda v: v in ("gd", "lbfgs", "newton"), "'gd', 'lbfgs' or 'newton'"),
    "l2": (lambda v: _is_real(v) and v >= 0 and np.isfinite(v), "a float >= 0"),
}


def _is_real(value: object) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


class LogisticRegression:
    """Binary logistic regression trained by batch gradient descent on a Dask cluster.

    Parameters
    ----------
    alpha : learning rate α of the update w := w − α·dw, b := b − α·db.
    max_iter : most updates to apply.
    tol : stop when the cost improves by at most ``tol`` between two iterations.
    dtype : storage type of the feature matrix on the workers ("float64" or "float32");
        sums are always accumulated in float64.
    solver : "gd" (the lecture's fixed-step update, the default), "lbfgs" (L-BFGS on the
        driver, each function evaluation one distributed pass) or "newton" (IRLS: passes
        also sum the Hessian; up to 2000 features). alpha is used by "gd" only.
    l2 : λ of the penalty (λ/2)·‖w‖² added to J (intercept not penalized); scikit-learn's
        C is 1 / (λ·m).
    """

    def __init__(
        self,
        alpha: float = 0.1,
        max_iter: int = 1000,
        tol: float = 1e-6,
        dtype: str = "float64",
        solver: str = "gd",
        l2: float = 0.0,
    ):
        self.alpha = alpha
        self.max_iter = max_iter
        self.tol = tol
        self.dtype = dtype
        self.solver = solver
        self.l2 = l2

    # ---- training -------------------------------------------------------------------
    def fit(
        self,
        data,
        label: str,
        features: list[str] | None = None,
        client: Client | None = None,
        *,
        exclude: list[str] | None = None,
        storage_options: dict | None = None,
        callback: Callable[[IterationInfo], None] | None = None,
        checkpoint_dir: str | None = None,
        checkpoint_every: int = 50,
        pass_timeout: float | None = None,
        cache: bool = True,
    ) -> LogisticRegression:
        """Train on a Parquet path/URL or a dask DataFrame; ``label`` names the 0/1 column.

        ``data`` may also be a ``DatasetPlan`` already made by ``plan_dataset`` (the CLI
        plans before it starts a cluster, so bad data fails fast). With ``checkpoint_dir``
        the state is saved every ``checkpoint_every`` iterations and a matching checkpoint
        found there is resumed. ``pass_timeout`` bounds the wait for any one pass (seconds).
        ``cache=False`` streams Parquet data from storage on every pass instead of keeping
        it in worker memory (for data larger than the cluster's memory; slower per pass).
        """
        self._validate_params()
        started = time.time()
        source = _training_source(data, label, features, exclude, storage_options)
        if self.solver == "newton" and len(source.features) > NEWTON_MAX_FEATURES:
            raise ConfigError(
                f"solver 'newton' sums a features × features Hessian on every pass; "
                f"{len(source.features)} features is more than {NEWTON_MAX_FEATURES}: "
                "use solver 'lbfgs'"
            )
        self.fingerprint_ = run_identity(
            source.data_items, self.run_options(label, source.features)
        )
        checkpoints = None
        if checkpoint_dir:
            checkpoints = Checkpoints(
                checkpoint_dir, checkpoint_every, self.fingerprint_, storage_options
            )
        state = (checkpoints and checkpoints.resume()) or SolverState.initial(len(source.features))
        with _client_or_local(client) as client:
            blocks = source.persist(client, self.dtype, pass_timeout, cache)
            try:
                reports = blocks.reports()
                check_reports(reports, label)
                kernel = newton_sums if self.solver == "newton" else log_loss_sums
                evaluate = with_l2(
                    lambda w, b: blocks.partial_sums(w, b, kernel=kernel).mean(), self.l2
                )
                state = self._solve(evaluate, state, _both(callback, checkpoints))
            finally:
                blocks.release()
        self._set_fitted(state, source.features, label)
        self.n_rows_ = sum(r.rows for r in reports)
        self.n_partitions_ = len(reports)
        self.data_source_ = source.description
        self.fit_seconds_ = time.time() - started
        return self

    def _solve(self, evaluate, state: SolverState, callback) -> SolverState:
        if self.solver == "newton":
            return newton(evaluate, state, self.max_iter, self.tol, callback)
        if self.solver == "lbfgs":
            return lbfgs(evaluate, state, self.max_iter, self.tol, callback)
        return gradient_descent(evaluate, state, self.alpha, self.max_iter, self.tol, callback)

    def run_options(self, label: str, features: list[str]) -> dict:
        """The options that decide the result: with the data, a run's identity."""
        return {
            "solver": self.solver,
            "l2": float(self.l2),
            "label": label,
            "features": list(features),
            "alpha": float(self.alpha),
            "max_iter": int(self.max_iter),
            "tol": float(self.tol),
            "dtype": self.dtype,
        }

    def _validate_params(self) -> None:
        for name, (ok, expected) in _PARAMETER_CONSTRAINTS.items():
            value = getattr(self, name)
            if not ok(value):
                raise ConfigError(
                    f"The '{name}' parameter of LogisticRegression must be {expected}. "
                    f"Got {value!r} instead."
                )

    def _set_fitted(self, state: SolverState, features: list[str], label: str) -> None:
        self.coef_ = state.coef.copy()
        self.intercept_ = float(state.intercept)
        self.n_iter_ = state.n_iter
        self.loss_history_ = list(state.loss_history)
        self.converged_ = state.converged
        self.grad_norm_ = state.grad_norm
        self.cost_increased_at_ = state.cost_increased_at
        self.feature_names_in_ = list(features)
        self.n_features_in_ = len(features)
        self.label_ = label
        self.classes_ = np.array([0, 1])

    # ---- prediction -----------------------------------------------------------------
    def decision_function(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(X, dtype=np.float64) @ self.coef_ + self.intercept_

    def predict_proba(self, data):
        """(n, 2) class probabilities for a NumPy array, or a dask array of them for a
        dask DataFrame or a Parquet path (computed lazily, partition by partition)."""
        self._check_fitted()
        if isinstance(data, np.ndarray):
            p1 = kernels.predict_proba_rows(self._check_width(data), self.coef_, self.intercept_)
            return np.column_stack([1.0 - p1, p1])
        frame = _as_dask_frame(data, self.feature_names_in_)
        array = frame[self.feature_names_in_].to_dask_array(lengths=True).astype(np.float64)
        return array.map_blocks(
            _proba_block,
            self.coef_,
            self.intercept_,
            chunks=(array.chunks[0], (2,)),
            dtype=np.float64,
        )

    def predict(self, data):
        """Class labels 0/1: probability of class 1 at least 0.5."""
        proba = self.predict_proba(data)
        return (proba[:, 1] >= 0.5).astype(np.int64)

    def _check_fitted(self) -> None:
        if not hasattr(self, "coef_"):
            raise ConfigError("this LogisticRegression is not fitted yet; call fit() or load()")

    def _check_width(self, X: np.ndarray) -> np.ndarray:
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise DataError(
                f"X has shape {X.shape}, but the model was trained on "
                f"{self.n_features_in_} features: {', '.join(self.feature_names_in_)}"
            )
        return X

    # ---- persistence ----------------------------------------------------------------
    def save(self, model_dir: str, storage_options: dict | None = None) -> str:
        """Write ``model_dir/model.json`` atomically; returns its location."""
        self._check_fitted()
        return artifact.save(self, model_dir, storage_options)

    @classmethod
    def load(cls, model_dir: str, storage_options: dict | None = None) -> LogisticRegression:
        return artifact.load(cls, model_dir, storage_options)


def _proba_block(X: np.ndarray, coef: np.ndarray, intercept: float) -> np.ndarray:
    p1 = kernels.predict_proba_rows(X, coef, intercept)
    return np.column_stack([1.0 - p1, p1])


@contextlib.contextmanager
def _client_or_local(client: Client | None) -> Iterator[Client]:
    """The given client, else the current default one, else an embedded LocalCluster."""
    if client is None:
        try:
            client = default_client()
        except ValueError:
            client = None
    if client is not None:
        yield client
        return
    with connect() as local:
        yield local


@dataclass
class _TrainingSource:
    """Training data before it is loaded: its features, identity and how to persist it."""

    features: list[str]
    description: str
    data_items: list
    persist: Callable[..., PersistedBlocks | StreamedPieces]


def _training_source(data, label, features, exclude, storage_options) -> _TrainingSource:
    if isinstance(data, (str, bytes)) or hasattr(data, "__fspath__"):
        url = str(data.__fspath__() if hasattr(data, "__fspath__") else data)
        data = plan_dataset(url, label, features, exclude, storage_options)
    if isinstance(data, DatasetPlan):
        plan = data
        return _TrainingSource(
            plan.features,
            plan.url,
            plan.fingerprint_items(),
            lambda client, dtype, timeout, cache: _persist_plan(
                client, plan, dtype, timeout, cache
            ),
        )
    if _is_dask_frame(data):
        import dask.base

        frame, chosen = data, _frame_features(data, label, features, exclude)
        return _TrainingSource(
            chosen,
            "dask DataFrame",
            [dask.base.tokenize(frame)],
            lambda client, dtype, timeout, cache: _persist_frame(
                client, frame, label, chosen, dtype, timeout
            ),
        )
    raise DataError(
        f"fit() takes a Parquet path/URL or a dask DataFrame, not {type(data).__name__}"
    )


def _both(*callbacks):
    """One callback that calls each of the given ones that is not None."""
    active = [c for c in callbacks if c is not None]
    return lambda info: [c(info) for c in active]


def _persist_plan(client: Client, plan: DatasetPlan, dtype: str, timeout, cache: bool = True):
    args = [(piece, plan.fs, plan.features, plan.label, dtype) for piece in plan.pieces]
    if not cache:
        return StreamedPieces(client, load_piece, args, timeout)
    return PersistedBlocks.from_loaders(client, load_piece, args, timeout)


def _persist_frame(client, frame, label, features, dtype, timeout) -> PersistedBlocks:
    import dask

    parts = frame[[*features, label]].to_delayed()
    tasks = [
        dask.delayed(_frame_block)(part, features, label, f"partition {i}", dtype)
        for i, part in enumerate(parts)
    ]
    return PersistedBlocks(client, client.compute(tasks), timeout)


def _frame_block(part, features, label, source, dtype):
    return block_from_columns(
        {name: part[name].to_numpy() for name in [*features, label]},
        features,
        label,
        source,
        dtype,
    )


def _is_dask_frame(data) -> bool:
    try:
        import dask.dataframe as dd
    except ImportError:  # pragma: no cover - dask[dataframe] is a dependency
        return False
    return isinstance(data, dd.DataFrame)


def _frame_features(frame, label, features, exclude) -> list[str]:
    columns = list(frame.columns)
    if label not in columns:
        raise DataError(f"label column '{label}' not found in the DataFrame: {columns}")
    if features is None:
        features = [c for c in columns if c != label and c not in (exclude or [])]
    missing = [c for c in features if c not in columns]
    if missing:
        raise DataError(f"feature column(s) {missing} not found in the DataFrame: {columns}")
    return list(features)


def _as_dask_frame(data, features: list[str]):
    import dask.dataframe as dd

    if _is_dask_frame(data):
        return data
    if isinstance(data, str) or hasattr(data, "__fspath__"):
        return dd.read_parquet(str(data), columns=features)
    raise DataError(
        f"predict takes a NumPy array, a dask DataFrame or a Parquet path, "
        f"not {type(data).__name__}"
    )
