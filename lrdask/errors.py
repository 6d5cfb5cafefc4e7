"""Errors the user can act on, each carrying the process exit code the CLI returns.

Exit codes are part of the job's contract with schedulers (cron, Airflow, Kubernetes):
0 success, 2 bad input or configuration (retrying will not help), 3 cluster or
infrastructure failure, or input data that changed while the job ran (retrying may
help), 4 training did not converge (only with ``--fail-on-no-convergence``), 1 an
internal error (a bug).
"""

from __future__ import annotations

import functools
import re

EXIT_OK = 0
EXIT_BAD_INPUT = 2
EXIT_INFRA = 3
EXIT_NOT_CONVERGED = 4
EXIT_INTERNAL = 1  # a bug in lrdask: the one line says so


class LrdaskError(Exception):
    """Base class: a one-line message that says what is wrong and what to do next."""

    exit_code = EXIT_BAD_INPUT


class DataError(LrdaskError, ValueError):
    """The training or scoring data cannot be used as it is. A ValueError too, as
    scikit-learn's tools expect of an estimator's bad input."""


class DataTypeError(DataError, TypeError):
    """The input has a type lrdask cannot read as numbers or labels (a TypeError too)."""


class DataChangedError(DataError):
    """A file changed between planning and reading (or between two reads): a writer is at
    work on the data set. Nothing is published; a rerun sees the new data."""

    exit_code = EXIT_INFRA


class ConfigError(LrdaskError, ValueError):
    """An option or config value is invalid (a ValueError too, as in scikit-learn)."""


@functools.cache
def _not_fitted_error() -> type:
    """``NotFittedError``, made on first use: it derives from scikit-learn's, and importing
    scikit-learn here would cost every worker process about 100 MB."""
    from sklearn.exceptions import NotFittedError as SklearnNotFittedError

    class NotFittedError(ConfigError, SklearnNotFittedError):
        """A model is used before ``fit`` or ``load`` (scikit-learn's NotFittedError too, a
        ValueError and an AttributeError, which its tools look for)."""

    NotFittedError.__module__ = __name__  # pickled by reference, as lrdask.errors's own
    NotFittedError.__qualname__ = "NotFittedError"
    return NotFittedError


def __getattr__(name: str):
    if name == "NotFittedError":
        return _not_fitted_error()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class ModelError(LrdaskError):
    """A model artifact is missing, corrupt, or does not fit the data."""


class OutputExistsError(LrdaskError):
    """The output location already holds a finished artifact and --overwrite was not given."""


class OutputLockedError(LrdaskError):
    """Another job holds the lease on this output (``lrdask.lease``)."""


class StorageError(LrdaskError):
    """Reading or writing an output or checkpoint failed (disk full, quota, permissions,
    a read-only filesystem). Full or over quota: exit 3 (retry once there is room);
    not allowed: exit 2 (fix the location)."""

    def __init__(self, message: str, exit_code: int = EXIT_INFRA):
        super().__init__(message)
        self.exit_code = exit_code

    def __reduce__(self):  # raised on a worker, it reaches the driver with its exit code
        return type(self), (str(self), self.exit_code)


class ClusterError(LrdaskError):
    """The Dask cluster could not be reached or failed while running."""

    exit_code = EXIT_INFRA


class NotConvergedError(LrdaskError):
    """Training stopped at max_iter and the caller asked to treat that as a failure."""

    exit_code = EXIT_NOT_CONVERGED


# ---- the same advice in the Python API's words ------------------------------------------
_VALUED = re.compile(
    r"--(missing|solver|family|dtype|categorical|exclude|positive-class) "
    r"('[^']*'|[A-Za-z0-9_.,]+)"
)
_LISTS = {"categorical", "exclude", "features"}
_LISTS_EMPTY = "[…]"
_WORDS = {"names", "is", "or", "and", "every", "to", "for", "with", "as", "on", "in"}
_SWITCHES = {
    "line-search": "line_search=True",
    "standardize": "standardize=True",
    "no-cache": "cache=False",
    "cache": "cache=True",
    "no-intercept": "fit_intercept=False",
    "fail-on-no-convergence": "(the CLI's --fail-on-no-convergence)",
}
_FLAG = re.compile(r"--([a-z][a-z0-9-]*)")


def python_words(message: str) -> str:
    """An error message that gives CLI advice (``--missing mean``, ``--categorical k``),
    reworded for a caller of the Python API (``missing='mean'``, ``categorical=['k']``):
    the checks are shared, the advice should fit whoever reads it."""

    def valued(match: re.Match) -> str:
        name, value = match.group(1).replace("-", "_"), match.group(2)
        if value in _WORDS:  # "--categorical names column 'c' twice": not a value
            return f"{name}={_LISTS_EMPTY if name in _LISTS else '…'} {value}"
        if value.startswith("'"):
            return f"{name}={value}"
        if name in _LISTS and value != "auto":
            return f"{name}={value.split(',')!r}"
        return f"{name}={value!r}"

    def flag(match: re.Match) -> str:
        name = match.group(1).replace("-", "_")
        if name in _LISTS:
            return f"{name}={_LISTS_EMPTY}"
        return _SWITCHES.get(match.group(1), f"{name}=…")

    return _FLAG.sub(flag, _VALUED.sub(valued, message))
