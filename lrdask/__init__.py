"""lrdask: logistic regression by batch gradient descent on Dask, exact to float64."""

__version__ = "0.1.0"

from lrdask.estimator import LogisticRegression  # noqa: E402

__all__ = ["LogisticRegression", "__version__"]
