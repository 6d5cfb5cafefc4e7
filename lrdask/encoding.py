"""Encoding: how a table's columns become the model's inputs, learned once, applied everywhere.

One spec, ``Encoding``, says how every column is read:

- numeric features (integers, floats, booleans, decimals) become float64; with
  ``missing="mean"`` a null or NaN becomes the training mean of that column;
- categorical features become int32 *codes* into one coefficient vector (H2O's
  ``_catOffsets`` shape): a row adds ``coef[f + code]`` to its linear predictor for every
  categorical column, so no one-hot matrix is ever built. Codes are global: column c's
  levels occupy slots ``offset_c .. offset_c + n_slots_c − 1`` of the categorical part, and
  the code ``n_category_slots`` (one past the last) is the *zero slot*: no contribution;
- the label becomes a class index (0/1 for binomial, 0..K−1 for multinomial).

The spec is learned from one distributed pass (``profile_table`` on every partition,
``Profile.merge`` on the driver, ``learn`` at the end), written into ``model.json``
(``to_dict``), and applied by ``lrdask.loading`` when training, predicting and evaluating.

Levels of a categorical column are sorted (so the encoding does not depend on file order
or cluster size). Levels seen in fewer than ``min_count`` rows fold into one "(other)"
level. Coding (identifiability): without a penalty the first level is the *reference* and
has no coefficient (R's and H2O's treatment coding), so the intercept and the level
coefficients are not collinear and Newton's Hessian is not singular by construction;
with an L1 or L2 penalty every level has a coefficient (the penalty makes the solution
unique). A null is the level "(missing)" with ``missing="mean"``. A level not seen in
training (at predict or evaluate time) scores as "(other)" when the column has that
level, else it adds nothing (as the reference level does).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lrdask.errors import DataError

OTHER = "(other)"
MISSING = "(missing)"
MISSING_POLICIES = ("error", "mean", "skip")
MAX_CLASSES = 1000


# ---- Arrow types -------------------------------------------------------------------------
def is_numeric_type(type_: pa.DataType) -> bool:
    """Types read as numbers: integers, floats, booleans and decimals."""
    return (
        pa.types.is_integer(type_)
        or pa.types.is_floating(type_)
        or pa.types.is_boolean(type_)
        or pa.types.is_decimal(type_)
    )


def _is_text(type_: pa.DataType) -> bool:
    """string, large_string and string_view (pyarrow ≥ 16, Polars): one kind of value."""
    view = getattr(pa.types, "is_string_view", lambda t: False)
    return pa.types.is_string(type_) or pa.types.is_large_string(type_) or view(type_)


def is_string_type(type_: pa.DataType) -> bool:
    """string, large_string, string_view and dictionary columns: what ``--categorical
    auto`` picks."""
    return _is_text(type_) or (pa.types.is_dictionary(type_) and is_level_type(type_.value_type))


def is_level_type(type_: pa.DataType) -> bool:
    """Types whose values can be levels (or classes): strings, integers, booleans, and
    dictionaries of them; decimals and floats only as labels (``is_label_type``)."""
    if pa.types.is_dictionary(type_):
        return is_level_type(type_.value_type)
    return _is_text(type_) or pa.types.is_integer(type_) or pa.types.is_boolean(type_)


def is_label_type(type_: pa.DataType) -> bool:
    return is_level_type(type_) or is_numeric_type(type_)


def canonical(column):
    """One type per kind of value, so that files written with string vs large_string vs
    dictionary, or int32 vs int64, give the same levels and classes: dictionaries are
    decoded, strings become string, integers int64, floats float64, decimals int64 (scale
    0) or float64."""
    type_ = column.type
    try:
        if pa.types.is_dictionary(type_):
            column = column.cast(type_.value_type)
            type_ = type_.value_type
        if _is_text(type_) and not pa.types.is_string(type_):
            return column.cast(pa.string())
        if pa.types.is_integer(type_) and type_ != pa.int64():
            return column.cast(pa.int64())
        if pa.types.is_floating(type_) and type_ != pa.float64():
            return column.cast(pa.float64())
        if pa.types.is_decimal(type_):
            if type_.scale == 0 and type_.precision <= 18:
                return column.cast(pa.int64())
            return column.cast(pa.float64(), safe=False)
    except pa.ArrowException as exc:
        raise DataError(f"values of type {type_} cannot be read ({exc})") from None
    return column


def float_values(column) -> np.ndarray:
    """A column as contiguous float64: integers, booleans and decimals converted, nulls
    become NaN (and are then counted or imputed as such). A decimal of up to 18 digits is
    read as its unscaled integer divided by 10^scale, which is the correctly rounded
    float64 whenever the integer has at most 15 digits (Arrow's own cast is not)."""
    if isinstance(column, (pa.Array, pa.ChunkedArray)) and _small_decimal(column.type):
        chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
        parts = [_decimal_chunk(chunk) for chunk in chunks]
        return np.concatenate(parts) if len(parts) != 1 else parts[0]
    if isinstance(column, (pa.Array, pa.ChunkedArray)):
        if not pa.types.is_floating(column.type) or column.type != pa.float64():
            try:
                column = column.cast(pa.float64(), safe=False)
            except pa.ArrowException as exc:
                raise DataError(f"values of type {column.type} are not numbers ({exc})") from None
        column = column.to_numpy(zero_copy_only=False)
    # may be a read-only view of Arrow's buffer (a float64 column without nulls): callers
    # that change values copy first
    return np.ascontiguousarray(column, dtype=np.float64)


def _small_decimal(type_: pa.DataType) -> bool:
    return isinstance(type_, pa.Decimal128Type) and type_.precision <= 18


def _decimal_chunk(chunk: pa.Array) -> np.ndarray:
    """A decimal128 array (precision ≤ 18) as float64: the low 64 bits of each 128-bit
    little-endian value are the whole unscaled integer."""
    words = np.frombuffer(chunk.buffers()[1], dtype="<i8")
    unscaled = words[2 * chunk.offset : 2 * (chunk.offset + len(chunk)) : 2]
    values = unscaled.astype(np.float64) / 10.0**chunk.type.scale
    if chunk.null_count:
        values[np.asarray(chunk.is_null())] = np.nan
    return values


def _scalar(value):
    """An Arrow/NumPy scalar as a plain JSON value (str, int, float or bool)."""
    if isinstance(value, np.generic):
        return value.item()
    return value


# ---- the spec ----------------------------------------------------------------------------
@dataclass(frozen=True)
class CategoricalColumn:
    """The levels of one categorical column and the slots they take in the coefficients."""

    name: str
    levels: tuple  # levels seen at least min_count times, sorted (JSON values)
    counts: tuple  # training rows per level
    other_rows: int = 0  # rows of levels seen fewer than min_count times: "(other)"
    missing_rows: int = 0  # null rows, the level "(missing)" (missing="mean")
    reference: bool = False  # the first level has no coefficient (unpenalized fits)
    offset: int = 0  # index of this column's first slot in the categorical part

    @property
    def slot_names(self) -> list[str]:
        """What each of this column's coefficients stands for, in slot order."""
        names = [str(v) for v in self.levels[1 if self.reference else 0 :]]
        if self.other_rows:
            names.append(OTHER)
        if self.missing_rows:
            names.append(MISSING)
        return names

    @property
    def n_slots(self) -> int:
        return (
            len(self.levels)
            - int(self.reference and bool(self.levels))
            + bool(self.other_rows)
            + bool(self.missing_rows)
        )

    def level_slots(self, zero_slot: int) -> np.ndarray:
        """Global code of each level, then one more entry for a level not in ``levels``
        (index −1): "(other)" if the column has it, else the zero slot."""
        first = self.offset - (1 if self.reference else 0)
        slots = np.arange(first, first + len(self.levels) + 1, dtype=np.int32)
        if self.reference and self.levels:
            slots[0] = zero_slot
        slots[-1] = self.offset + self.n_slots - 1 - bool(self.missing_rows)
        if not self.other_rows:
            slots[-1] = zero_slot
        return slots

    def missing_slot(self, zero_slot: int) -> int:
        return self.offset + self.n_slots - 1 if self.missing_rows else zero_slot


@dataclass(frozen=True)
class Encoding:
    """How to read every column: see the module docstring."""

    numeric: tuple[str, ...]
    categorical: tuple[CategoricalColumn, ...] = ()
    label: str | None = None
    classes: tuple = (0, 1)  # label values; binomial: (negative, positive)
    family: str = "binomial"
    weight: str | None = None
    missing: str = "error"
    means: tuple[float, ...] | None = None  # per numeric column, with missing="mean"
    _lookups: dict = field(default_factory=dict, compare=False, repr=False, init=False)

    @property
    def n_numeric(self) -> int:
        return len(self.numeric)

    @property
    def n_category_slots(self) -> int:
        return sum(c.n_slots for c in self.categorical)

    @property
    def n_features(self) -> int:
        """The width of the coefficient vector: numeric columns, then category slots."""
        return self.n_numeric + self.n_category_slots

    @property
    def input_columns(self) -> list[str]:
        return [*self.numeric, *(c.name for c in self.categorical)]

    @property
    def feature_names(self) -> list[str]:
        """A name per coefficient: the numeric columns, then ``column=level``."""
        return [*self.numeric, *(f"{c.name}={s}" for c in self.categorical for s in c.slot_names)]

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def reading(self, label: str | None, weight: str | None = None) -> Encoding:
        """The same encoding reading another label column (None: no label) and weight."""
        return dataclasses.replace(self, label=label, weight=weight)

    # ---- applying it (on the workers) -------------------------------------------------
    def codes(self, column, index: int) -> tuple[np.ndarray, np.ndarray, int]:
        """Codes of categorical column ``index`` for one Arrow column: (codes int32, null
        mask, rows whose level was not seen in training)."""
        cat = self.categorical[index]
        zero = self.n_category_slots
        values, slots = self._lookup(index)
        if isinstance(column, pa.ChunkedArray):
            chunks = column.chunks or [pa.array([], type=column.type)]
        else:
            chunks = [column]
        parts, nulls, unseen = [], [], 0
        for chunk in chunks:
            if pa.types.is_dictionary(chunk.type):  # map the dictionary, not every row
                dictionary = canonical(chunk.dictionary)
                index_of = _index_in(dictionary, values)
                unseen_levels = index_of < 0
                indices = pc.fill_null(chunk.indices, 0).to_numpy(zero_copy_only=False)
                found = index_of[indices] if len(dictionary) else np.zeros(len(chunk), np.int64)
                null = _null_mask(chunk)
                unseen += (
                    int(np.count_nonzero(unseen_levels[indices][~null])) if len(dictionary) else 0
                )
            else:
                found = _index_in(canonical(chunk), values)
                null = _null_mask(chunk)
                unseen += int(np.count_nonzero((found < 0) & ~null))
            code = slots[found]
            code[null] = cat.missing_slot(zero)
            parts.append(code)
            nulls.append(null)
        if len(parts) == 1:
            return parts[0], nulls[0], unseen
        return np.concatenate(parts), np.concatenate(nulls), unseen

    def _lookup(self, index: int):
        """(levels as an Arrow array, slot per level plus the unseen entry), cached."""
        if index not in self._lookups:
            cat = self.categorical[index]
            values = pa.array(list(cat.levels), type=_level_arrow_type(cat.levels))
            self._lookups[index] = (values, cat.level_slots(self.n_category_slots))
        return self._lookups[index]

    def class_index(self, column) -> tuple[np.ndarray, np.ndarray, list]:
        """Label values → class index as float64 (binomial: 1 for the positive class).
        Returns (y, null mask, up to five values that are not classes); rows with a null or
        an unknown value hold NaN."""
        null = _null_mask(column)
        classes = pa.array(list(self.classes), type=_level_arrow_type(self.classes))
        values = canonical(column)
        if pa.types.is_floating(values.type) and not pa.types.is_floating(classes.type):
            classes = classes.cast(values.type)
        elif pa.types.is_floating(classes.type) and pa.types.is_integer(values.type):
            values = values.cast(classes.type)
        found = _index_in(values, classes)
        unknown = (found < 0) & ~null
        odd = []
        if unknown.any():
            picked = values.filter(pa.array(unknown)) if hasattr(values, "filter") else values
            odd = sorted({_scalar(v) for v in picked.to_pylist()}, key=str)[:5]
        y = found.astype(np.float64)
        y[found < 0] = np.nan
        return y, null, odd

    # ---- the artifact ------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "numeric": [
                {"name": name, **({"mean": self.means[j]} if self.means else {})}
                for j, name in enumerate(self.numeric)
            ],
            "categorical": [
                {
                    "name": c.name,
                    "levels": list(c.levels),
                    "counts": list(c.counts),
                    "reference": c.levels[0] if c.reference and c.levels else None,
                    "other_rows": c.other_rows,
                    "missing_rows": c.missing_rows,
                    "offset": self.n_numeric + c.offset,
                    "slots": c.slot_names,
                }
                for c in self.categorical
            ],
            "label": self.label,
            "classes": list(self.classes),
            "family": self.family,
            "weight": self.weight,
            "missing": self.missing,
        }

    @classmethod
    def from_dict(cls, doc: dict) -> Encoding:
        numeric = tuple(str(n["name"]) for n in doc["numeric"])
        means = None
        if doc["numeric"] and all("mean" in n for n in doc["numeric"]):
            means = tuple(float(n["mean"]) for n in doc["numeric"])
        cats, offset = [], 0
        for c in doc["categorical"]:
            cat = CategoricalColumn(
                str(c["name"]),
                tuple(c["levels"]),
                tuple(int(n) for n in c["counts"]),
                int(c["other_rows"]),
                int(c["missing_rows"]),
                c["reference"] is not None,
                offset,
            )
            offset += cat.n_slots
            cats.append(cat)
        return cls(
            numeric,
            tuple(cats),
            doc.get("label"),
            tuple(doc["classes"]),
            doc["family"],
            doc.get("weight"),
            doc.get("missing", "error"),
            means,
        )


def numeric_encoding(features, label, classes=(0, 1), family="binomial", weight=None) -> Encoding:
    """The encoding of a purely numeric model (and of models saved before encodings)."""
    return Encoding(tuple(features), (), label, tuple(classes), family, weight)


def _level_arrow_type(values) -> pa.DataType:
    if values and all(isinstance(v, bool) for v in values):
        return pa.bool_()
    if values and all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return pa.int64()
    if values and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return pa.float64()
    return pa.string()


def _index_in(values, value_set: pa.Array) -> np.ndarray:
    """Position of each value in ``value_set`` (int64), −1 where absent or null."""
    if len(values) == 0:
        return np.zeros(0, dtype=np.int64)
    if values.type != value_set.type:
        try:
            value_set = value_set.cast(values.type)
        except pa.ArrowException:
            return np.full(len(values), -1, dtype=np.int64)
    found = pc.index_in(values, value_set=value_set)
    return pc.fill_null(found, -1).to_numpy(zero_copy_only=False).astype(np.int64)


def _null_mask(column) -> np.ndarray:
    """True where a value is null (or NaN, for floating columns)."""
    if len(column) == 0:
        return np.zeros(0, dtype=bool)
    values = column.dictionary_decode() if isinstance(column, pa.DictionaryArray) else column
    nan_is_null = pa.types.is_floating(values.type)
    mask = pc.is_null(values, nan_is_null=nan_is_null)
    return np.asarray(mask.to_numpy(zero_copy_only=False), dtype=bool)


# ---- learning it (one distributed pass) --------------------------------------------------
@dataclass(frozen=True)
class ProfileRequest:
    """Which columns the profile pass looks at, and how rows with nulls count."""

    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    label: str | None
    weight: str | None = None
    missing: str = "error"
    means: bool = False  # collect Σ s·x per numeric column (missing="mean")


@dataclass
class Profile:
    """What one partition (or, merged, the data set) says about its values: counts only."""

    rows: int = 0
    skipped: int = 0  # rows left out (missing="skip")
    levels: dict = field(default_factory=dict)  # categorical column -> Table(value, count)
    nulls: dict = field(default_factory=dict)  # categorical column -> null rows
    label: pa.Table | None = None  # (value, count), non-null values
    label_nulls: int = 0
    sums: np.ndarray | None = None  # Σ s·x over finite values, per numeric column
    weights: np.ndarray | None = None  # Σ s over the same values

    def merge(self, other: Profile) -> Profile:
        return Profile(
            self.rows + other.rows,
            self.skipped + other.skipped,
            {k: _add_counts(v, other.levels[k], k) for k, v in self.levels.items()},
            {k: v + other.nulls[k] for k, v in self.nulls.items()},
            _add_counts(self.label, other.label, "the label"),
            self.label_nulls + other.label_nulls,
            None if self.sums is None else self.sums + other.sums,
            None if self.weights is None else self.weights + other.weights,
        )


def profile_table(table: pa.Table, request: ProfileRequest) -> Profile:
    """Count the levels, classes and numeric sums of one partition (runs on a worker)."""
    if request.missing == "skip":
        keep = ~skip_mask(table, [*request.numeric, *request.categorical], request)
        skipped = int(np.count_nonzero(~keep))
        if skipped:
            table = table.filter(pa.array(keep))
    else:
        skipped = 0
    profile = Profile(rows=table.num_rows, skipped=skipped)
    for name in request.categorical:
        column = table.column(name)
        profile.nulls[name] = int(column.null_count)
        profile.levels[name] = _value_counts(column)
    if request.label is not None:
        column = table.column(request.label)
        profile.label_nulls = int(np.count_nonzero(_null_mask(column)))
        profile.label = _value_counts(column, drop_nan=True)
    if request.means:
        weight = None
        if request.weight is not None:
            weight = np.nan_to_num(float_values(table.column(request.weight)), nan=0.0)
        sums, weights = [], []
        for name in request.numeric:
            x = float_values(table.column(name))
            ok = np.isfinite(x)
            s = ok.astype(np.float64) if weight is None else np.where(ok, weight, 0.0)
            sums.append(float(np.where(ok, x, 0.0) @ s))
            weights.append(float(s.sum()))
        profile.sums, profile.weights = np.array(sums), np.array(weights)
    return profile


def skip_mask(table: pa.Table, features: list[str], request) -> np.ndarray:
    """Rows with a null (or NaN) in a feature, the label or the weight."""
    names = [*features, *([request.label] if request.label else [])]
    names += [request.weight] if request.weight else []
    mask = np.zeros(table.num_rows, dtype=bool)
    for name in names:
        column = table.column(name)
        if column.null_count or pa.types.is_floating(column.type):
            mask |= _null_mask(column)
    return mask


def _value_counts(column, drop_nan: bool = False) -> pa.Table:
    values = canonical(column)
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)
    values = pc.drop_null(values)
    if drop_nan and pa.types.is_floating(values.type):
        values = values.filter(pc.invert(pc.is_nan(values)))
    counts = pc.value_counts(values)
    return pa.table(
        {"value": counts.field("values"), "count": counts.field("counts").cast(pa.int64())}
    )


def _add_counts(a: pa.Table | None, b: pa.Table | None, name: str = "") -> pa.Table | None:
    if a is None or b is None:
        return a if b is None else b
    if a.num_rows == 0 or b.num_rows == 0:
        return a if b.num_rows == 0 else b
    ta, tb = a.schema.field("value").type, b.schema.field("value").type
    if ta != tb and _is_number(ta) and _is_number(tb):  # 0/1 as int here, 0.0/1.0 there
        a = a.set_column(0, "value", a.column("value").cast(pa.float64()))
        b = b.set_column(0, "value", b.column("value").cast(pa.float64()))
    elif ta != tb:
        raise DataError(
            f"column '{name}' holds values of type {ta} in one file and {tb} in another; "
            "all files must share the schema"
        )
    both = pa.concat_tables([a, b])
    merged = both.group_by("value").aggregate([("count", "sum")])
    return merged.rename_columns(["value", "count"])


def _is_number(type_: pa.DataType) -> bool:
    return pa.types.is_integer(type_) or pa.types.is_floating(type_)


def learn(
    profile: Profile,
    request: ProfileRequest,
    *,
    min_count: int = 1,
    penalized: bool = False,
    family: str = "auto",
    positive_class=None,
) -> tuple[Encoding, str]:
    """The encoding the merged profile implies, and a log line describing the classes."""
    if profile.rows == 0:
        raise DataError(
            f"the data set has no rows left to train on ({profile.skipped} skipped for "
            "missing values)"
            if profile.skipped
            else "the data set has zero rows; point DATA at a non-empty data set"
        )
    classes, family, note = _classes(profile, request.label, family, positive_class)
    categorical, offset = [], 0
    for name in request.categorical:
        cat = _categorical(name, profile, request, min_count, penalized, offset)
        offset += cat.n_slots
        categorical.append(cat)
    means = None
    if request.means:
        empty = [n for n, w in zip(request.numeric, profile.weights, strict=True) if not w > 0]
        if empty:
            raise DataError(
                f"numeric column '{empty[0]}' has no values at all (every row is null or "
                "NaN), so it has no mean to impute; exclude it with --exclude"
            )
        means = tuple(float(s / w) for s, w in zip(profile.sums, profile.weights, strict=True))
    encoding = Encoding(
        tuple(request.numeric),
        tuple(categorical),
        request.label,
        tuple(classes),
        family,
        request.weight,
        request.missing,
        means,
    )
    return encoding, note


def _categorical(name, profile, request, min_count, penalized, offset) -> CategoricalColumn:
    counts = profile.levels[name]
    nulls = profile.nulls[name]
    if nulls and request.missing == "error":
        raise DataError(
            f"categorical column '{name}' has {nulls} null value(s); pass --missing mean "
            "(nulls become the level '(missing)') or --missing skip (drop those rows)"
        )
    order = pc.sort_indices(counts, sort_keys=[("value", "ascending")])
    counts = counts.take(order)
    values = [_scalar(v) for v in counts.column("value").to_pylist()]
    numbers = counts.column("count").to_numpy()
    common = numbers >= min_count
    levels = tuple(v for v, keep in zip(values, common, strict=True) if keep)
    kept = tuple(int(n) for n in numbers[common])
    other = int(numbers[~common].sum())
    missing = nulls if request.missing == "mean" else 0
    for placeholder, used in ((OTHER, other), (MISSING, missing)):
        if used and placeholder in {str(v) for v in levels}:
            raise DataError(
                f"categorical column '{name}' has a level spelled '{placeholder}', which is "
                f"also the name of the level lrdask makes for "
                f"{'rare levels' if placeholder == OTHER else 'nulls'}; rename it in the data"
            )
    return CategoricalColumn(
        name,
        levels,
        kept,
        other,
        missing,
        reference=not penalized and bool(levels),
        offset=offset,
    )


def _classes(profile: Profile, label: str | None, family: str, positive_class):
    if label is None:
        return (0, 1), "binomial" if family == "auto" else family, ""
    counts = profile.label
    if profile.label_nulls:
        raise DataError(
            f"label column '{label}' has {profile.label_nulls} null value(s); drop those rows "
            "or pass --missing skip"
        )
    n = 0 if counts is None else counts.num_rows
    if n < 2:
        only = "" if not n else f" ({_scalar(counts.column('value')[0].as_py())!r})"
        raise DataError(
            f"label column '{label}' holds only {n} class(es){only} in all "
            f"{profile.rows} rows; training needs examples of at least two classes"
        )
    if n > MAX_CLASSES:
        raise DataError(
            f"label column '{label}' holds {n} distinct values, more than {MAX_CLASSES} "
            "classes; is it really the label?"
        )
    order = pc.sort_indices(counts, sort_keys=[("value", "ascending")])
    classes = [_scalar(v) for v in counts.take(order).column("value").to_pylist()]
    if any(isinstance(c, float) and not math.isfinite(c) for c in classes):
        raise DataError(f"label column '{label}' holds infinite values; labels must be classes")
    fractional = [c for c in classes if isinstance(c, float) and not float(c).is_integer()]
    if family == "auto" and n > 2 and fractional:
        raise DataError(
            f"label column '{label}' holds {n} distinct values, some not whole numbers "
            f"(e.g. {fractional[0]!r}): it looks like a measurement, not classes; map it to "
            "classes first (or pass --family multinomial if each value is a class)"
        )
    if family == "auto":
        family = "binomial" if n == 2 else "multinomial"
        how = "--family auto"
    else:
        how = f"--family {family}"
    if family == "binomial" and n != 2:
        shown = ", ".join(repr(c) for c in classes[:6]) + (", …" if n > 6 else "")
        raise DataError(
            f"label column '{label}' holds {n} distinct values ({shown}), but the binomial "
            "family needs exactly two (Only binary classification is supported.); use "
            "--family multinomial (or auto)"
        )
    if family == "binomial":
        positive = (
            classes[1] if positive_class is None else match_class(positive_class, classes, label)
        )
        classes = [c for c in classes if c != positive] + [positive]
        note = (
            f"label '{label}': binomial ({how}), classes {classes[0]!r} and {classes[1]!r}; "
            f"positive class {classes[1]!r}"
        )
    else:
        if positive_class is not None:
            raise DataError("--positive-class is for the binomial family only")
        note = f"label '{label}': multinomial ({how}), {n} classes {classes[:10]!r}"
    return classes, family, note


def match_class(value, classes: list, label: str = "label"):
    """The class that ``value`` names: the value itself, or its text (as given on the
    command line: 'yes', '1', 'true')."""
    for c in classes:
        if type(c) is type(value) and c == value:
            return c
    text = str(value).strip()
    for c in classes:
        if str(c) == text or (isinstance(c, bool) and text.lower() == str(c).lower()):
            return c
    for c in classes:
        if isinstance(c, (int, float)) and not isinstance(c, bool):
            try:
                if float(text) == c:
                    return c
            except ValueError:
                pass
    raise DataError(
        f"--positive-class {value!r} is not a value of label column '{label}'; its values "
        f"are {', '.join(repr(c) for c in classes)}"
    )
