"""Export: a fitted lrdask model as a fitted scikit-learn estimator that scores the same.

``to_sklearn(model)`` needs only what ``model.json`` holds (the encoding, ``coef_``,
``intercept_``, ``classes_``, the options), so it works on a model from ``fit`` and on
one from ``LogisticRegression.load``. What comes back:

- a numeric model that imputes nothing (``missing`` "error" or "skip"): a fitted
  ``sklearn.linear_model.LogisticRegression``;
- a model with categorical columns, or with ``missing="mean"``: a fitted
  ``sklearn.pipeline.Pipeline`` of ``("encode", ColumnTransformer)`` and
  ``("classify", LogisticRegression)``. The ColumnTransformer holds, in the order of
  lrdask's coefficients, ``("numeric", SimpleImputer(strategy="mean"))`` with the
  training means (or ``"passthrough"``) for the numeric columns, then one
  ``(column, Pipeline(CategoryLevels, OneHotEncoder))`` per categorical column;
- binomial with a ``threshold`` other than 0.5: either of those inside a
  ``sklearn.model_selection.FixedThresholdClassifier`` that says the positive class when
  its probability is ≥ the threshold.

The one step scikit-learn has no exact counterpart for is mapping a column's values to
lrdask's levels (rare levels and levels never seen in training score as "(other)" when
the column has it, else add nothing; nulls are the level "(missing)"; an integer level
matches the same number held as a float). ``CategoryLevels`` does it with lrdask's own
encoding code, so it matches by construction; unpickling an exported categorical model
therefore needs lrdask installed. The OneHotEncoder after it holds the column's levels
(``categories_``), drops the reference level of an unpenalized fit (``drop``), and
ignores the one value ``CategoryLevels`` uses for "adds nothing" in a column without a
reference level.

Classes: scikit-learn's ``classes_`` is sorted and its binomial ``classes_[1]`` is the
positive class, which its scorers (``roc_auc``, ``average_precision``) assume. lrdask's
binomial ``classes_`` is ``[negative, positive]``; when ``positive_class`` is the smaller
value the exported model lists the classes sorted with negated coefficients, so
``predict_proba``'s column for each class equals lrdask's column for that class.

Rows with a missing value in a model trained with ``missing="skip"`` (lrdask scores them
NaN) or ``"error"`` are refused: scikit-learn raises ValueError for a numeric NaN, and
``CategoryLevels`` raises DataError for a categorical null.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression as SkLogisticRegression
from sklearn.model_selection import FixedThresholdClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder

from lrdask.encoding import MISSING, OTHER, CategoricalColumn, Encoding
from lrdask.errors import DataError, ModelError
from lrdask.sources import _as_table

log = logging.getLogger("lrdask")

NO_LEVEL = "(no level)"  # what CategoryLevels writes for "adds nothing" without a reference


def to_sklearn(model):
    """A fitted scikit-learn estimator whose ``predict_proba`` equals ``model``'s.

    ``model``: a fitted (or loaded) ``lrdask.LogisticRegression``. Returns a
    ``LogisticRegression`` (numeric models without imputation), a ``Pipeline``
    (categorical columns or ``missing="mean"``), either wrapped in a
    ``FixedThresholdClassifier`` for a binomial ``threshold`` ≠ 0.5 (see the module
    docstring). Its ``coef_`` is (1, F) for binomial and (K, F) for multinomial, F the
    width of lrdask's ``coef_`` (numeric columns, then category slots), ``intercept_``
    (1,) or (K,), ``classes_`` the label values sorted. ``predict_proba`` takes a pandas
    DataFrame holding the model's input columns (the bare LogisticRegression: exactly
    ``feature_names_in_``, in that order) and returns (n, K), columns in ``classes_``
    order. Raises ModelError when the model is not fitted or its coefficients do not
    fit its encoding.
    """
    encoding = getattr(model, "encoding_", None)
    if encoding is None or not hasattr(model, "coef_"):
        raise ModelError("this LogisticRegression is not fitted; fit() or load() it first")
    classifier = _classifier(model, encoding)
    named = hasattr(model, "feature_names_in_")
    if not encoding.categorical and encoding.missing == "mean" and not named:
        # fitted on an array: columns by position, so no ColumnTransformer by name
        estimator = Pipeline([("impute", _imputer(encoding)), ("classify", classifier)])
    elif encoding.categorical or encoding.missing == "mean":
        estimator = Pipeline([("encode", _encoder(encoding)), ("classify", classifier)])
    else:
        names = getattr(model, "feature_names_in_", None)
        if names is not None:
            classifier.feature_names_in_ = np.asarray(list(names), dtype=object)
        estimator = classifier
    threshold = float(getattr(model, "threshold", 0.5))
    if encoding.family == "binomial" and threshold != 0.5:
        estimator = FixedThresholdClassifier(
            estimator,
            threshold=threshold,
            response_method="predict_proba",
            pos_label=encoding.classes[1],
        )
    return estimator


def _classifier(model, encoding: Encoding) -> SkLogisticRegression:
    """scikit-learn's LogisticRegression with lrdask's coefficients, classes sorted."""
    coef = np.asarray(model.coef_, dtype=np.float64)
    intercept = np.asarray(model.intercept_, dtype=np.float64)
    classes = list(encoding.classes)
    k, width = len(classes), encoding.n_features
    binomial = encoding.family == "binomial"
    shape = (width,) if binomial else (k, width)
    if coef.shape != shape or intercept.size != (1 if binomial else k):
        raise ModelError(
            f"the model's coef_ has shape {coef.shape} and intercept_ {intercept.shape}, but "
            f"its encoding needs {shape} and {(1 if binomial else k,)}; reload it from model.json"
        )
    order = np.argsort(np.asarray(classes), kind="stable")
    if binomial:
        sign = -1.0 if order[0] == 1 else 1.0  # the positive class is the smaller value
        coef, intercept = sign * coef[None, :], sign * intercept.reshape(1)
    else:
        coef, intercept = coef[order], intercept[order]
    classifier = SkLogisticRegression(fit_intercept=bool(getattr(model, "fit_intercept", True)))
    classifier.classes_ = np.asarray(classes)[order]
    classifier.coef_ = np.ascontiguousarray(coef)
    classifier.intercept_ = np.ascontiguousarray(intercept)
    classifier.n_features_in_ = width
    classifier.n_iter_ = np.asarray([getattr(model, "n_iter_", 0)], dtype=np.int32)
    return classifier


def _encoder(encoding: Encoding) -> ColumnTransformer:
    """The fitted ColumnTransformer whose output columns are lrdask's coefficients."""
    steps = []
    if encoding.numeric:
        numeric = "passthrough"
        if encoding.missing == "mean":
            numeric = SimpleImputer(strategy="mean")
        steps.append(("numeric", numeric, list(encoding.numeric)))
    reserved = {"numeric", *ColumnTransformer([]).get_params()}
    for j, cat in enumerate(encoding.categorical):
        categories = _categories(cat)
        name = _step_name(cat.name, j, reserved)
        reserved.add(name)
        steps.append(
            (
                name,
                make_pipeline(
                    CategoryLevels.of(cat, encoding.missing),
                    OneHotEncoder(
                        categories=[categories],
                        drop=[cat.levels[0]] if cat.reference else None,
                        handle_unknown="ignore",
                        sparse_output=False,
                    ),
                ),
                [cat.name],
            )
        )
    transformer = ColumnTransformer(steps, verbose_feature_names_out=False)
    # Fitting only records the columns: categories are given, the means are set below.
    prototype = {name: [0.0] for name in encoding.numeric}
    for cat in encoding.categorical:
        prototype[cat.name] = pd.Series([cat.levels[0] if cat.levels else OTHER], dtype=object)
    transformer.fit(pd.DataFrame(prototype))
    if encoding.numeric and encoding.missing == "mean":
        transformer.named_transformers_["numeric"].statistics_ = np.asarray(
            encoding.means, dtype=np.float64
        )
    return transformer


def _imputer(encoding: Encoding) -> SimpleImputer:
    """A fitted SimpleImputer holding the training means of a numeric model."""
    imputer = SimpleImputer(strategy="mean")
    imputer.fit(np.zeros((1, len(encoding.numeric))))
    imputer.statistics_ = np.asarray(encoding.means, dtype=np.float64)
    return imputer


def _step_name(column: str, index: int, taken: set) -> str:
    """The column's name, unless scikit-learn forbids it as a step name (taken, or holding
    "__"): then "category<index>", with "_" appended while that is taken."""
    if column not in taken and "__" not in column:
        return column
    name = f"category{index}"
    while name in taken:
        name += "_"
    return name


def _categories(cat: CategoricalColumn) -> list:
    """The column's levels, then "(other)" and "(missing)" when it has them: its slots in
    order, with the reference level (if any) first."""
    return [
        *cat.levels,
        *([OTHER] if cat.other_rows else []),
        *([MISSING] if cat.missing_rows else []),
    ]


def _outside(categories: list) -> str:
    """NO_LEVEL, bracketed once more for every time a level of the column spells it."""
    value = NO_LEVEL
    while value in categories:
        value = f"({value})"
    return value


class CategoryLevels(TransformerMixin, BaseEstimator):
    """One categorical column's values → the level lrdask scores them as, by lrdask's own
    encoding (``lrdask.encoding.Encoding.codes``): a level seen in training stays itself;
    a rare or unseen value becomes "(other)" when the column has it; a null becomes
    "(missing)" when the column has it; a value that adds nothing becomes the reference
    level, or "(no level)" in a column without one (which the OneHotEncoder after it
    ignores).

    Parameters: ``column`` (its name), ``levels`` (sorted, as in model.json), ``other``
    and ``missing_level`` (whether the column has the levels "(other)" and "(missing)"),
    ``reference`` (``levels[0]`` has no coefficient), ``missing`` (the model's policy).
    ``transform`` takes a pandas DataFrame holding the column and returns an (n, 1)
    object array. Raises DataError for a null when ``missing`` is not "mean" (lrdask
    refuses it, or with "skip" scores the row NaN).
    """

    def __init__(
        self,
        column: str,
        levels: tuple = (),
        other: bool = False,
        missing_level: bool = False,
        reference: bool = False,
        missing: str = "error",
    ):
        self.column = column
        self.levels = levels
        self.other = other
        self.missing_level = missing_level
        self.reference = reference
        self.missing = missing

    @classmethod
    def of(cls, cat: CategoricalColumn, missing: str) -> CategoryLevels:
        return cls(
            cat.name,
            cat.levels,
            bool(cat.other_rows),
            bool(cat.missing_rows),
            cat.reference,
            missing,
        )

    def fit(self, X, y=None):
        self._frame(X)
        self.n_features_in_ = 1
        self.feature_names_in_ = np.asarray([self.column], dtype=object)
        return self

    def transform(self, X) -> np.ndarray:
        encoding = Encoding((), (self._spec(),), None, missing=self.missing)
        column = _as_table(self._frame(X)).column(self.column)
        codes, null, unseen = encoding.codes(column, 0)
        if null.any() and self.missing != "mean":
            raise DataError(
                f"column '{self.column}' has {int(null.sum())} null value(s), and the model "
                f"was trained with missing='{self.missing}', so it cannot score them: fill or "
                "drop those rows"
            )
        if unseen:
            log.warning(
                "column '%s': %d row(s) hold a level not seen in training; scored as "
                "documented (the '(other)' level if the column has one, else no contribution)",
                self.column,
                unseen,
            )
        return self._level_of_code()[codes][:, None]

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        return np.asarray([self.column], dtype=object)

    def _spec(self) -> CategoricalColumn:
        """The column as lrdask's encoding holds it (row counts do not change scoring)."""
        return CategoricalColumn(
            self.column,
            tuple(self.levels),
            (),
            int(self.other),
            int(self.missing_level),
            bool(self.reference),
        )

    def _level_of_code(self) -> np.ndarray:
        """The level each code stands for; the last entry is the zero slot's."""
        spec = self._spec()
        slots = _categories(spec)[1 if spec.reference else 0 :]
        nothing = spec.levels[0] if spec.reference else _outside(slots)
        levels = np.empty(len(slots) + 1, dtype=object)
        levels[:] = [*slots, nothing]
        return levels

    def _frame(self, X) -> pd.DataFrame:
        if not isinstance(X, pd.DataFrame) or self.column not in X.columns:
            raise DataError(
                f"CategoryLevels for column '{self.column}' takes a pandas DataFrame holding "
                f"that column, not {type(X).__name__}"
            )
        return X[[self.column]]
