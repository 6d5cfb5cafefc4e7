"""lrdask: logistic regression by batch gradient descent on Dask, exact to float64."""

__version__ = "0.1.0"

__all__ = ["LogisticRegression", "__version__"]


def __getattr__(name: str):
    """``lrdask.LogisticRegression``, imported on first use: the workers import lrdask's
    kernels and loaders, and must not pay for the estimator's scikit-learn (about 100 MB
    of memory per worker process)."""
    if name == "LogisticRegression":
        from lrdask.estimator import LogisticRegression

        return LogisticRegression
    raise AttributeError(f"module 'lrdask' has no attribute {name!r}")
