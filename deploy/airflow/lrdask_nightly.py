"""Nightly lrdask training as an Airflow DAG: wait for the day's data, train, publish.

    wait_for_partition  >>  train  >>  publish

- ``wait_for_partition`` polls ``{data_root}/date={{ ds }}`` until it holds a Parquet file
  (any fsspec URL: a local or shared path, ``s3://`` with s3fs installed, ...).
- ``train`` runs ``lrdask train --config ... --param RUN_DATE={{ ds }}`` and reads its exit
  code: 3 (cluster failure) is retried, and each retry resumes from the checkpoint; 2 (bad
  input or config) and 4 (did not converge) fail the task at once, with no retries, because
  running it again cannot fix them. A rerun of a finished day exits 0 at once.
- ``publish`` checks ``_SUCCESS`` in ``{model_root}/run_date={{ ds }}`` and returns the
  model.json URL (XCom ``return_value``) for downstream DAGs.

``{{ ds }}`` is the day that just ended: the schedule is a daily data interval (UTC) on
Airflow 2 and 3 alike. The Airflow worker needs ``lrdask`` on its PATH (or in LRDASK_BIN) and
``DASK_SCHEDULER_ADDRESS`` in its environment; DATA_ROOT, MODEL_ROOT and LRDASK_CONFIG give
the defaults of the DAG's params (see README.md). Only core Airflow operators are used
(``apache-airflow`` installs the standard provider on Airflow 3).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import shlex
import subprocess

try:  # Airflow 3: the task SDK, and the standard provider that apache-airflow installs
    from airflow.providers.standard.operators.python import PythonOperator
    from airflow.providers.standard.sensors.python import PythonSensor
    from airflow.sdk import DAG
    from airflow.sdk.exceptions import AirflowException, AirflowFailException
except ImportError:  # Airflow 2.10, 2.11
    from airflow import DAG
    from airflow.exceptions import AirflowException, AirflowFailException
    from airflow.operators.python import PythonOperator
    from airflow.sensors.python import PythonSensor
try:
    from airflow.sdk import CronDataIntervalTimetable
except ImportError:  # Airflow 2, and 3.0
    from airflow.timetables.interval import CronDataIntervalTimetable

log = logging.getLogger(__name__)

DAG_ID = "lrdask_nightly"

# lrdask's exit codes that a retry cannot fix (README, "Exit codes").
NO_RETRY = {
    2: "bad input or config: fix the data or the job file, then clear the task",
    4: "did not converge within max_iter: raise max_iter or alpha, then clear the task",
}

# Rendered by Airflow (op_args is a templated field); run_lrdask splits it with shlex.
TRAIN_COMMAND = (
    "lrdask train --config {{ params.config }} --param RUN_DATE={{ ds }}"
    " --param DATA_ROOT={{ params.data_root }} --param MODEL_ROOT={{ params.model_root }}"
)


def partition_ready(url: str) -> bool:
    """True once the partition directory exists and holds at least one Parquet file."""
    import fsspec

    fs, path = fsspec.core.url_to_fs(url)
    if not fs.exists(path):
        log.info("waiting for %s", url)
        return False
    return any(name.endswith(".parquet") for name in fs.find(path))


def run_lrdask(command: str) -> None:
    """Run an lrdask command line, streaming its output to the task log.

    Exit 0 succeeds; 2 and 4 raise AirflowFailException (no retries); anything else,
    3 above all, raises AirflowException, which Airflow retries.
    """
    argv = shlex.split(command)
    if argv[0] == "lrdask":
        argv[0] = os.environ.get("LRDASK_BIN", "lrdask")
    log.info("running: %s", shlex.join(argv))
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for line in proc.stdout:
            log.info("%s", line.rstrip())
        code = proc.wait()
    finally:
        if proc.poll() is None:  # the task was killed or timed out: stop lrdask with it
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    if code in NO_RETRY:
        raise AirflowFailException(f"lrdask exited {code}: {NO_RETRY[code]}")
    if code != 0:
        what = "a cluster failure" if code == 3 else "an unexpected failure"
        raise AirflowException(f"lrdask exited {code}, {what}; a retry resumes from the checkpoint")


def publish(run_dir: str) -> str:
    """Check that the run is complete (``_SUCCESS``) and return its model.json URL."""
    import json

    import fsspec

    fs, path = fsspec.core.url_to_fs(run_dir)
    if not fs.exists(f"{path}/_SUCCESS"):
        raise AirflowException(f"{run_dir}/_SUCCESS is missing: the run did not finish")
    with fs.open(f"{path}/metrics.json") as fh:
        metrics = json.load(fh)
    log.info(
        "model for %s: %d iterations, converged=%s, final cost %.6g, %s rows",
        run_dir,
        metrics["iterations"],
        metrics["converged"],
        metrics["final_cost"],
        metrics["n_rows"],
    )
    return f"{run_dir}/model.json"


with DAG(
    dag_id=DAG_ID,
    description="Train the logistic regression on yesterday's partition with lrdask",
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc),
    catchup=False,
    max_active_runs=1,
    params={
        "config": os.environ.get("LRDASK_CONFIG", "/opt/lrdask/jobs/train.toml"),
        "data_root": os.environ.get("DATA_ROOT", "s3://lake/events"),
        "model_root": os.environ.get("MODEL_ROOT", "s3://lake/models"),
    },
    default_args={"owner": "ml", "retries": 0},
    tags=["lrdask"],
    doc_md=__doc__,
) as dag:
    wait_for_partition = PythonSensor(
        task_id="wait_for_partition",
        python_callable=partition_ready,
        op_kwargs={"url": "{{ params.data_root }}/date={{ ds }}"},
        mode="reschedule",  # frees the worker slot between pokes
        poke_interval=600,
        timeout=12 * 3600,
    )
    train = PythonOperator(
        task_id="train",
        python_callable=run_lrdask,
        op_args=[TRAIN_COMMAND],
        retries=3,
        retry_delay=dt.timedelta(minutes=5),
        retry_exponential_backoff=True,
        execution_timeout=dt.timedelta(hours=4),
    )
    publish_model = PythonOperator(
        task_id="publish",
        python_callable=publish,
        op_kwargs={"run_dir": "{{ params.model_root }}/run_date={{ ds }}"},
        retries=1,
        retry_delay=dt.timedelta(minutes=1),
    )

    wait_for_partition >> train >> publish_model
