import json
import logging

import numpy as np

from lrdask.progress import JsonFormatter, TrainingProgress, setup_logging
from lrdask.solvers import IterationInfo, SolverState


def info(k, cost):
    return IterationInfo(k, cost, 0.5, SolverState(np.zeros(2), n_iter=k))


def test_bar_on_a_terminal_shows_iteration_and_cost(capsys):
    progress = TrainingProgress(max_iter=20, bar=True)
    for k in range(5):
        progress(info(k, 0.7 - 0.01 * k))
    progress.close()
    err = capsys.readouterr().err
    assert "4/20" in err and "cost=0.66" in err and "it/s" in err


def test_log_lines_every_n_and_at_the_end(caplog):
    setup_logging("text")
    logging.getLogger("lrdask").propagate = True
    progress = TrainingProgress(max_iter=12, log_every=5, bar=False)
    with caplog.at_level(logging.INFO, logger="lrdask"):
        for k in range(13):
            progress(info(k, 1.0 / (k + 1)))
    lines = [r.getMessage() for r in caplog.records]
    assert [line.split()[1] for line in lines] == ["0", "5", "10", "12"]
    assert lines[-1].startswith("iteration 12 cost 0.07692307692")


def test_json_formatter_puts_fields_at_the_top_level():
    record = logging.LogRecord("lrdask", logging.INFO, __file__, 1, "iteration %d", (3,), None)
    record.fields = {"iteration": 3, "cost": 0.5}
    doc = json.loads(JsonFormatter().format(record))
    assert doc["message"] == "iteration 3" and doc["cost"] == 0.5 and doc["level"] == "INFO"
