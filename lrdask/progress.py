"""What a person or a log platform sees while training runs.

On a terminal: a live bar with iteration, cost and iterations per second (tqdm). In a
log (cron, Airflow, Kubernetes): one line every ``log_every`` iterations and at the end,
as readable text or, with ``log_format="json"``, one JSON object per line.
"""

from __future__ import annotations

import json
import logging
import sys
import time

from tqdm import tqdm

from lrdask.artifact import strict
from lrdask.solvers import IterationInfo

log = logging.getLogger("lrdask")


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, message and any ``extra`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "message": record.getMessage(),
        }
        doc.update(getattr(record, "fields", {}))
        return json.dumps(strict(doc), allow_nan=False, default=str)


def setup_logging(log_format: str = "text", level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%dT%H:%M:%S")
        )
    log.handlers[:] = [handler]
    log.setLevel(level)
    log.propagate = False


class TrainingProgress:
    """A solver callback: a bar on a terminal, periodic log lines otherwise."""

    def __init__(self, max_iter: int, log_every: int = 10, bar: bool | None = None):
        self.max_iter = max_iter
        self.log_every = max(1, log_every)
        self.started = time.monotonic()
        use_bar = sys.stderr.isatty() if bar is None else bar
        self.bar = (
            tqdm(total=max_iter, unit="it", file=sys.stderr, dynamic_ncols=True)
            if use_bar
            else None
        )

    def __call__(self, info: IterationInfo) -> None:
        seconds = time.monotonic() - self.started
        if self.bar is not None:
            self.bar.n = info.iteration
            self.bar.set_postfix(cost=f"{info.cost:.6g}", refresh=False)
            self.bar.refresh()
            return
        if (
            info.iteration % self.log_every == 0
            or info.state.status
            or info.iteration >= self.max_iter
        ):
            log.info(
                "iteration %d cost %.10g gradient norm %.3g (%.1fs)",
                info.iteration,
                info.cost,
                info.grad_norm,
                seconds,
                extra={
                    "fields": {
                        "iteration": info.iteration,
                        "cost": info.cost,
                        "grad_norm": info.grad_norm,
                        "seconds": round(seconds, 3),
                    }
                },
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
