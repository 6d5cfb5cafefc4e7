"""Held-out data during training: its cost every N iterations, and early stopping on it.

The validation set is loaded once, like the training data, and each check is one more
pass (over the held-out rows only) at the current model. The costs are recorded in the
solver state, so they reach checkpoints, ``model.json`` and the plot.
"""

from __future__ import annotations

import functools
import logging

import numpy as np

from lrdask.dataset import DatasetPlan
from lrdask.evaluation import (
    evaluation_sums,
    metrics,
    multiclass_evaluation_sums,
    multiclass_metrics,
)
from lrdask.loading import check_reports, summarize
from lrdask.scheduling import persist_plan
from lrdask.solvers import IterationInfo, SolverState, StopTraining

log = logging.getLogger("lrdask")


class ValidationMonitor:
    """A solver callback: the held-out log loss every ``every`` iterations; with
    ``patience`` > 0, stop when it has not improved for that many checks in a row."""

    def __init__(
        self,
        plan: DatasetPlan,
        encoding,
        kernel,
        objective,
        every: int,
        patience,
        threshold: float = 0.5,
    ):
        self.plan = plan
        self.threshold = threshold  # binomial metrics: positive above it
        self.encoding = encoding
        self.family = encoding.family
        self.kernel = kernel
        self.objective = objective
        self.every = every
        self.patience = patience
        self.blocks = None

    def start(self, client, timeout):
        """Load and check the held-out data; returns its blocks (the caller releases them)."""
        self.blocks = persist_plan(client, self.plan, self.encoding, "float64", timeout, True)
        reports = self.blocks.reports()
        check_reports(
            reports, self.plan.label, self.family, training=False, classes=self.encoding.classes
        )
        summarize(reports, log)
        return self.blocks

    def __call__(self, info: IterationInfo) -> None:
        if info.iteration % self.every == 0:
            self.check(info.iteration, info.state)

    def check(self, iteration: int, state: SolverState) -> float:
        cost = self._cost(state)
        state.validation_history.append([iteration, cost])
        log.info("validation cost %.10g at iteration %d", cost, iteration)
        self._maybe_stop(state.validation_history)
        return cost

    def _maybe_stop(self, history: list) -> None:
        costs = [cost for _, cost in history]
        best = int(np.argmin(costs))
        if self.patience and len(costs) - 1 - best >= self.patience:
            raise StopTraining(
                f"early stopping: the validation cost has not improved for {self.patience} "
                f"checks (best {costs[best]:.6g} at iteration {history[best][0]})"
            )

    def _cost(self, state: SolverState) -> float:
        """The held-out log loss at the solver's current point: one pass."""
        coef, intercept = self.objective.to_model(state.params)
        return self.blocks.partial_sums(coef, intercept, kernel=self.kernel).mean()[0]

    def final_metrics(self, state: SolverState) -> dict:
        """Metrics of the final model on the held-out data (and its cost in the history)."""
        if not state.validation_history or state.validation_history[-1][0] != state.n_iter:
            state.validation_history.append([state.n_iter, self._cost(state)])
        coef, intercept = self.objective.to_model(state.params)
        if self.family == "multinomial":
            sums = self.blocks.partial_sums(coef, intercept, kernel=multiclass_evaluation_sums)
            return multiclass_metrics(sums)
        kernel = functools.partial(evaluation_sums, threshold=self.threshold)
        return metrics(self.blocks.partial_sums(coef, intercept, kernel=kernel))
