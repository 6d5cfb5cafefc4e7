"""Checkpoints, and the identity of a training run that decides when one may be resumed.

A run's identity is a hash of the data (each file's path, rows, bytes and version) and
of the options that change the result. A checkpoint is resumed only when its identity
matches exactly; otherwise the job says so and starts from w = 0. The same identity in
``model.json`` makes a rerun of a finished job a no-op instead of a retrain.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging

import numpy as np

from lrdask import environment, schemas, storage
from lrdask.artifact import strict
from lrdask.solvers import IterationInfo, SolverState

log = logging.getLogger("lrdask")

CHECKPOINT_FILE = "checkpoint.json"


def run_identity(data_items: list, options: dict) -> dict:
    """{'data': sha256 of the data description, 'options': the options} for a run."""
    digest = hashlib.sha256(json.dumps(data_items, sort_keys=True, default=str).encode())
    return {"data": digest.hexdigest(), "options": dict(sorted(options.items()))}


def resumable_identity(identity: dict) -> dict:
    """A checkpoint may continue a run with a larger max_iter: leave it out of the match."""
    options = {k: v for k, v in identity["options"].items() if k != "max_iter"}
    return {"data": identity["data"], "options": options}


class Checkpoints:
    """Writes the solver state every ``every`` iterations and finds it again on restart."""

    def __init__(
        self, directory: str, every: int, identity: dict, storage_options: dict | None = None
    ):
        self.location = storage.join(directory, CHECKPOINT_FILE)
        self.every = every
        self.identity = resumable_identity(identity)
        self.max_iter = identity["options"].get("max_iter")
        self.storage_options = storage_options
        # the library versions and CPUs of this run (``lrdask.environment``), when known:
        # written into the checkpoint, compared on resume
        self.environment: dict | None = None

    def resume(self, n_params: int | None = None) -> SolverState | None:
        """The saved state if it belongs to this run; None (and a log line) otherwise.

        It belongs to this run when its identity matches (``max_iter`` aside: a longer
        run continues a shorter one), it has ``n_params`` parameters, and it is not past
        this run's ``max_iter`` (a run with these options would have stopped before it)."""
        try:
            raw = storage.read_bytes(self.location, self.storage_options)
        except FileNotFoundError:
            return None
        doc, problem = schemas.parse(raw, schemas.CheckpointDoc)
        if problem:
            log.warning(
                "ignoring checkpoint %s (%s); starting from scratch", self.location, problem
            )
            return None
        if doc.get("identity") != self.identity:
            log.warning(
                "ignoring checkpoint %s: it was written for other data or options; "
                "starting from scratch",
                self.location,
            )
            return None
        try:
            state = SolverState(
                params=np.asarray(doc["params"], dtype=np.float64),
                n_iter=int(doc["n_iter"]),
                loss_history=[float("nan") if v is None else float(v) for v in doc["loss_history"]],
                cost_increased_at=doc.get("cost_increased_at"),
                step=doc.get("step"),
                step_settled=bool(doc.get("step_settled", False)),
                validation_history=doc.get("validation_history", []),
                anchor=None if doc.get("anchor") is None else np.asarray(doc["anchor"]),
                momentum=float(doc.get("momentum", 1.0)),
                memory_s=[np.asarray(v, dtype=np.float64) for v in doc.get("memory_s", [])],
                memory_y=[np.asarray(v, dtype=np.float64) for v in doc.get("memory_y", [])],
            )
        except (KeyError, TypeError, ValueError):
            log.warning("ignoring checkpoint %s in an older format", self.location)
            return None
        reason = ""
        if n_params is not None and len(state.params) != n_params:
            reason = f"it holds {len(state.params)} parameters where this model has {n_params}"
        elif self.max_iter is not None and state.n_iter > self.max_iter:
            reason = (
                f"it is at iteration {state.n_iter}, past --max-iter {self.max_iter} "
                "(a run with this --max-iter stops earlier)"
            )
        if reason:
            log.warning("ignoring checkpoint %s: %s; starting from scratch", self.location, reason)
            return None
        log.info("resuming from checkpoint %s at iteration %d", self.location, state.n_iter)
        self._compare_environment(doc.get("environment"))
        return state

    def _compare_environment(self, then: dict | None) -> None:
        """Say so when the checkpoint was written under other library versions or CPUs:
        the run resumes (same optimum), but its last bits may differ from an
        uninterrupted run's."""
        now = self.environment
        if not then or not now:
            return
        changed = [
            *(f"driver {d}" for d in environment.differences(then["driver"], now["driver"])),
            *(
                f"workers {d}"
                for d in environment.differences(
                    (then["workers"] or [{}])[0], (now["workers"] or [{}])[0]
                )
            ),
        ]
        if changed or len(then["workers"]) != len(now["workers"]):
            log.warning(
                "checkpoint %s was written under another environment (%s): the run resumes "
                "and reaches the same optimum, but its last bits may differ from a run that "
                "was not interrupted",
                self.location,
                "; ".join(changed) or "the workers differ among themselves",
            )

    def __call__(self, info: IterationInfo) -> None:
        if info.iteration > 0 and info.iteration % self.every == 0 and not info.state.status:
            self.save(info.state)

    def save(self, state: SolverState) -> None:
        """Save the point just evaluated, with what the solver needs to continue the same
        arithmetic (a line search's step, agd's anchor and momentum, L-BFGS's pairs); its
        cost is recomputed on resume, so leave it out.
        A point with a non-finite parameter or cost is never saved: the last good
        checkpoint stays (the solver stops such a run as diverged)."""
        numbers = [*state.params, *state.loss_history]
        if not np.all(np.isfinite(numbers)):
            return
        doc = {
            "identity": self.identity,
            "n_iter": state.n_iter,
            "params": [float(c) for c in state.params],
            "loss_history": [float(v) for v in state.loss_history[:-1]],
            "cost_increased_at": state.cost_increased_at,
            "step": state.step,
            "step_settled": state.step_settled,
            "validation_history": state.validation_history,
            "anchor": None if state.anchor is None else [float(v) for v in state.anchor],
            "momentum": state.momentum,
            "memory_s": [[float(v) for v in s] for s in state.memory_s],
            "memory_y": [[float(v) for v in y] for y in state.memory_y],
            "environment": self.environment,
        }
        storage.write_bytes_atomic(
            self.location, json.dumps(strict(doc), allow_nan=False).encode(), self.storage_options
        )

    def clear(self) -> None:
        """Remove the checkpoint, and its directory if that is left empty."""
        storage.remove(self.location, self.storage_options)
        fs, path = storage.filesystem(self.location, self.storage_options)
        parent = path.rsplit("/", 1)[0]
        with contextlib.suppress(OSError):
            if fs.isdir(parent) and not fs.ls(parent):
                fs.rmdir(parent)
