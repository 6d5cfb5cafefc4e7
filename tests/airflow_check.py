"""Load deploy/airflow/ with Airflow's own DagBag and report what Airflow sees, as JSON.

Run by tests/test_deploy.py with the Python of a separate virtualenv that has Airflow (never
the project's: their pins conflict). Airflow is imported only here. Usage:

    AIRFLOW_HOME=/tmp/x python tests/airflow_check.py deploy/airflow WORK_DIR [PARAMS_JSON]

Prints one JSON object on the last line of stdout: import errors, warnings raised from the
DAG file itself, each DAG's tasks (type, upstream ids, retries), catchup, params, the
schedule's data interval for a run just after midnight UTC, and the outcome of the DAG's
own callables (exit-code mapping, partition sensor, publish check) on small local inputs.
With PARAMS_JSON (overrides of the DAG's params), it then renders each task's templated
arguments with Airflow's Jinja environment for that run and calls the tasks' callables in
dependency order, as a worker would (no scheduler, no database): sensor, train, publish.
"""

from __future__ import annotations

import inspect
import json
import os
import sys


def load_dagbag(folder: str):
    try:  # Airflow 3
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow 2
        from airflow.models.dagbag import DagBag
    kwargs = {"dag_folder": folder}
    if "include_examples" in inspect.signature(DagBag.__init__).parameters:
        kwargs["include_examples"] = False
    return DagBag(**kwargs)


def data_interval(dag) -> list[str] | None:
    """The data interval Airflow would give a run that starts at 2026-11-27 00:30 UTC."""
    import pendulum

    timetable = dag.timetable
    try:  # Airflow 3: the DAG holds the task SDK's timetable; the scheduler uses the core one
        from airflow.serialization.encoders import coerce_to_core_timetable

        timetable = coerce_to_core_timetable(timetable)
    except ImportError:
        pass
    interval = timetable.infer_manual_data_interval(
        run_after=pendulum.datetime(2026, 11, 27, 0, 30, tz="UTC")
    )
    return [interval.start.isoformat(), interval.end.isoformat()]


def describe(dag) -> dict:
    timetable = dag.timetable
    return {
        "catchup": dag.catchup,
        "max_active_runs": dag.max_active_runs,
        "params": {key: dag.params[key] for key in dag.params},
        "timetable": type(timetable).__name__,
        "expression": getattr(timetable, "expression", getattr(timetable, "_expression", None)),
        "data_interval": data_interval(dag),
        "tasks": {
            task.task_id: {
                "type": type(task).__name__,
                "upstream": sorted(task.upstream_task_ids),
                "retries": task.retries,
                "mode": getattr(task, "mode", None),
            }
            for task in dag.tasks
        },
    }


def exercise_callables(module_path: str, work: str) -> dict:
    """Call the DAG file's own callables the way its tasks do, on tiny local inputs."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("lrdask_nightly_check", module_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    exits = {
        code: outcome(module.run_lrdask, f"{sys.executable} -c 'import sys; sys.exit({code})'")
        for code in (0, 2, 3, 4, 1)
    }
    part = os.path.join(work, "lake", "date=2026-11-26")
    os.makedirs(part)
    sensor = [module.partition_ready(os.path.join(work, "lake", "date=2026-11-27"))]
    sensor.append(module.partition_ready(part))
    with open(os.path.join(part, "part-0.parquet"), "wb") as fh:
        fh.write(b"PAR1")
    sensor.append(module.partition_ready(part))
    run = os.path.join(work, "models", "run_date=2026-11-26")
    os.makedirs(run)
    with open(os.path.join(run, "metrics.json"), "w") as fh:
        json.dump({"iterations": 3, "converged": True, "final_cost": 0.5, "n_rows": 10}, fh)
    publish = [outcome(module.publish, run)]
    open(os.path.join(run, "_SUCCESS"), "w").close()
    publish.append(outcome(module.publish, run))
    return {"exits": exits, "sensor": sensor, "publish": publish}


def outcome(func, *args, **kwargs) -> str:
    try:
        result = func(*args, **kwargs)
    except Exception as exc:  # the exception's class is the result
        return f"{type(exc).__name__}: {exc}"
    return f"ok:{result}"


def run_tasks(dag, overrides: dict, ds: str) -> dict:
    """Render every task's arguments for the run of day ``ds`` and call it, upstream first."""
    params = {key: dag.params[key] for key in dag.params}
    params.update(overrides)
    context = {"ds": ds, "params": params}
    done: list[str] = []
    report: dict = {"order": done, "rendered": {}, "results": {}}
    while len(done) < len(dag.tasks):
        task = next(
            t for t in dag.tasks if t.task_id not in done and t.upstream_task_ids <= set(done)
        )
        args = task.render_template(list(task.op_args), context)
        kwargs = task.render_template(dict(task.op_kwargs), context)
        report["rendered"][task.task_id] = {"args": args, "kwargs": kwargs}
        report["results"][task.task_id] = outcome(task.python_callable, *args, **kwargs)
        done.append(task.task_id)
    return report


def main() -> None:
    folder, work, *rest = sys.argv[1:]
    import airflow

    bag = load_dagbag(folder)
    own_warnings = [
        warning
        for warnings in getattr(bag, "captured_warnings", {}).values()
        for warning in warnings
        if warning.startswith(os.path.abspath(folder))
    ]
    report = {
        "airflow_version": airflow.__version__,
        "import_errors": {str(k): str(v) for k, v in bag.import_errors.items()},
        "dag_warnings": own_warnings,
        "dags": {dag_id: describe(dag) for dag_id, dag in bag.dags.items()},
        "files": sorted({os.path.basename(dag.fileloc) for dag in bag.dags.values()}),
    }
    for dag in bag.dags.values():
        report["callables"] = exercise_callables(dag.fileloc, os.path.join(work, "callables"))
        if rest:
            ds = report["dags"][dag.dag_id]["data_interval"][0][:10]
            report["run"] = run_tasks(dag, json.loads(rest[0]), ds)
        break
    print(json.dumps(report, default=str))


if __name__ == "__main__":
    main()
