"""The declared schemas of the JSON files lrdask reads back: model.json and checkpoints.

Everything read from a file is validated here before it is used — types, ranges,
finiteness, shapes and the format version — by pydantic (a well-kept validation library,
rather than hand-written checks spread over the readers). A file that does not fit is one
``ModelError`` line (model.json) or an ignored checkpoint with a warning, never a
traceback. Job configs are checked by the CLI's own click types (``cli._config_value``),
so a flag and its config key share one type and range.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, FiniteFloat, ValidationError, model_validator

MODEL_FORMAT = "lrdask-model"
MODEL_FORMAT_VERSIONS = (2, 3)  # 2: numeric features, classes 0..K−1; 3: "encoding"


class _Document(BaseModel):
    # unknown keys are kept (a newer lrdask may add fields); known ones must fit
    model_config = ConfigDict(extra="allow", strict=True)


class TrainingDoc(_Document):
    n_iter: int = Field(ge=0)
    n_passes: int | None = Field(default=None, ge=0)
    converged: bool
    status: str = ""
    stop_reason: str = ""
    grad_max: float | None = None  # strict JSON: a non-finite value is written as null
    grad_norm: float | None = None
    separated: bool = False
    loss_history: list[float | None] = Field(min_length=1)
    validation_history: list[list[float | None]] = []
    metrics: dict[str, Any] = {}
    class_counts: list[int] = []
    n_rows: int = Field(default=0, ge=0)
    n_partitions: int = Field(default=0, ge=0)
    seconds: float = 0.0
    timings: dict[str, float] = {}
    cost_increased_at: int | None = None
    fingerprint: dict[str, Any] | None = None


class ModelDoc(_Document):
    format: Literal["lrdask-model"]
    format_version: int
    family: Literal["binomial", "multinomial"] = "binomial"
    solver: str = "gd"
    label: str
    classes: list[Any] = [0, 1]
    features: list[str] = Field(min_length=1)
    encoding: dict[str, Any] | None = None
    coef: list[FiniteFloat] | list[list[FiniteFloat]]
    intercept: FiniteFloat | list[FiniteFloat]
    options: dict[str, Any]
    training: TrainingDoc

    @model_validator(mode="after")
    def _shapes(self) -> ModelDoc:
        if self.format_version not in MODEL_FORMAT_VERSIONS:
            raise ValueError(
                f"format_version {self.format_version} is not one this lrdask reads "
                f"({', '.join(map(str, MODEL_FORMAT_VERSIONS))})"
            )
        f, k = len(self.features), len(self.classes)
        if self.family == "binomial":
            if k != 2 or not isinstance(self.intercept, float):
                raise ValueError("a binomial model has 2 classes and one intercept")
            if len(self.coef) != f or any(isinstance(c, list) for c in self.coef):
                raise ValueError(f"coef must be {f} numbers, one per feature")
        else:
            if not isinstance(self.intercept, list) or len(self.intercept) != k:
                raise ValueError(f"a multinomial model has {k} intercepts, one per class")
            rows = [len(row) if isinstance(row, list) else -1 for row in self.coef]
            if len(rows) != k or any(n != f for n in rows):
                raise ValueError(f"coef must be {k} rows of {f} numbers")
        return self


class Environment(BaseModel):
    """``lrdask.environment``: the driver's description and the workers' distinct ones."""

    driver: dict[str, str]
    workers: list[dict[str, str]]


class CheckpointDoc(_Document):
    identity: dict[str, Any]
    n_iter: int = Field(ge=0)
    params: list[FiniteFloat] = Field(min_length=1)
    loss_history: list[float | None]
    cost_increased_at: int | None = None
    step: FiniteFloat | None = Field(default=None, gt=0)
    step_settled: bool = False
    validation_history: list[list[float | None]] = []
    anchor: list[FiniteFloat] | None = None
    momentum: FiniteFloat = Field(default=1.0, ge=1.0)
    memory_s: list[list[FiniteFloat]] = []  # L-BFGS's pairs (s, y), oldest first
    memory_y: list[list[FiniteFloat]] = []
    environment: Environment | None = None  # lrdask.environment: driver and workers

    @model_validator(mode="after")
    def _lengths(self) -> CheckpointDoc:
        if len(self.loss_history) != self.n_iter:  # one cost per iterate before the last
            raise ValueError(
                f"loss_history has {len(self.loss_history)} entries for n_iter {self.n_iter}"
            )
        if self.anchor is not None and len(self.anchor) != len(self.params):
            raise ValueError("anchor and params must have the same length")
        if len(self.memory_s) != len(self.memory_y):
            raise ValueError("memory_s and memory_y must hold the same number of pairs")
        if any(len(v) != len(self.params) for v in [*self.memory_s, *self.memory_y]):
            raise ValueError("each L-BFGS pair must have the length of params")
        return self


def parse(raw: bytes | str, schema: type[BaseModel]):
    """``raw`` JSON validated against ``schema``: (document as a dict, None), or
    (None, the reason in one line)."""
    try:
        doc = json.loads(raw)  # 100,000-deep nesting: a RecursionError, caught
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        return None, f"not JSON ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})"
    if not isinstance(doc, dict):
        return None, f"the top level is a JSON {type(doc).__name__}, not an object"
    try:
        schema.model_validate(doc)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "the document"
        return None, f"{where}: {first['msg']} ({exc.error_count()} problem(s))"
    return doc, None
