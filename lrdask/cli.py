"""The ``lrdask`` command: train, predict and make-data, with exit codes a scheduler can act on."""

from __future__ import annotations

import logging
import sys
import time

import click

from lrdask import __version__, storage
from lrdask.cluster import connect, dashboard_link
from lrdask.dataset import plan_dataset
from lrdask.errors import ClusterError, LrdaskError, OutputExistsError
from lrdask.estimator import LogisticRegression
from lrdask.progress import TrainingProgress, setup_logging

log = logging.getLogger("lrdask")


class _Group(click.Group):
    """Turns lrdask's errors into one line on stderr and the documented exit code."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except LrdaskError as exc:
            _fail(str(exc), exc.exit_code)
        except (OSError, TimeoutError) as exc:
            if _is_cluster_failure(exc):
                _fail(f"the Dask cluster failed: {exc}", ClusterError.exit_code)
            raise


def _fail(message: str, code: int) -> None:
    click.echo(f"lrdask: error: {message}", err=True)
    sys.exit(code)


def _is_cluster_failure(exc: BaseException) -> bool:
    from distributed.comm.core import CommClosedError

    return isinstance(exc, (CommClosedError, TimeoutError))


def _split(ctx, param, value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


@click.group(
    cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100}
)
@click.version_option(__version__, prog_name="lrdask")
def cli() -> None:
    """Logistic regression by batch gradient descent on a Dask cluster.

    Data is a Parquet file or directory (or any fsspec URL). Without --scheduler, each
    command starts a LocalCluster on this machine and shuts it down when done.

    Exit codes: 0 success, 2 bad input or options, 3 cluster failure.
    """


def cluster_options(func):
    """--scheduler, --workers and --connect-timeout, shared by every command that computes."""
    func = click.option(
        "--connect-timeout",
        type=click.FloatRange(min=0, min_open=True),
        default=30.0,
        show_default=True,
        help="Seconds to wait for the scheduler and its first worker.",
    )(func)
    func = click.option(
        "--workers",
        type=click.IntRange(min=1),
        default=None,
        help="Worker processes for the embedded LocalCluster [default: one per core]. "
        "Ignored with --scheduler.",
    )(func)
    return click.option(
        "--scheduler",
        envvar="DASK_SCHEDULER_ADDRESS",
        default=None,
        metavar="ADDRESS",
        help="Address of a running Dask scheduler, e.g. tcp://10.0.0.5:8786 "
        "(env: DASK_SCHEDULER_ADDRESS). Without it a LocalCluster is started.",
    )(func)


@cli.command()
@click.argument("data")
@click.option("--label", required=True, help="Name of the label column (values 0 and 1).")
@click.option(
    "--features",
    callback=_split,
    metavar="A,B,...",
    help="Comma-separated feature columns [default: every other column].",
)
@click.option(
    "--exclude",
    callback=_split,
    metavar="A,B,...",
    help="Columns to leave out when --features is not given (ids, dates, text).",
)
@click.option(
    "--alpha", type=float, default=0.1, show_default=True, help="Learning rate α in w := w − α·dw."
)
@click.option(
    "--max-iter",
    type=int,
    default=1000,
    show_default=True,
    help="Most gradient-descent updates to apply.",
)
@click.option(
    "--tol",
    type=float,
    default=1e-6,
    show_default=True,
    help="Stop when the cost improves by at most this much in one iteration "
    "(0 runs all --max-iter iterations).",
)
@click.option(
    "--dtype",
    type=click.Choice(["float64", "float32"]),
    default="float64",
    show_default=True,
    help="Storage type of features in worker memory (sums are always float64).",
)
@cluster_options
@click.option(
    "--out",
    "out",
    required=True,
    metavar="MODEL_DIR",
    help="Directory (or URL) to write model.json to.",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing model in MODEL_DIR.")
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Log lines as text or as one JSON object per line.",
)
@click.option(
    "--log-every",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="Log the cost every N iterations when not on a terminal.",
)
def train(
    data,
    label,
    features,
    exclude,
    alpha,
    max_iter,
    tol,
    dtype,
    scheduler,
    workers,
    connect_timeout,
    out,
    overwrite,
    log_format,
    log_every,
) -> None:
    """Train on the Parquet data set DATA and write MODEL_DIR/model.json.

    Starts from w = 0, b = 0 and applies w := w − α·dw, b := b − α·db until the cost
    improves by at most --tol or --max-iter updates have been applied.
    """
    setup_logging(log_format)
    model = LogisticRegression(alpha=alpha, max_iter=max_iter, tol=tol, dtype=dtype)
    model._validate_params()
    _check_output(out, overwrite)
    started = time.monotonic()
    plan = plan_dataset(data, label, features, exclude)
    log.info(
        "data: %s, %d rows in %d partition(s) of %d file(s), %d features",
        data,
        plan.num_rows,
        len(plan.pieces),
        len(plan.files),
        len(plan.features),
    )
    with connect(scheduler, workers, connect_timeout) as client:
        _log_cluster(client, scheduler)
        progress = TrainingProgress(max_iter, log_every)
        try:
            model.fit(plan, label=label, client=client, callback=progress)
        finally:
            progress.close()
    location = model.save(out)
    _log_result(model, location, time.monotonic() - started)


def _check_output(out: str, overwrite: bool) -> None:
    """Fail before training, not after, if the model cannot or must not be written."""
    location = storage.join(out, "model.json")
    if storage.exists(location) and not overwrite:
        raise OutputExistsError(f"{location} already exists; pass --overwrite to replace it")
    probe = storage.join(out, ".lrdask-write-test")
    try:
        storage.write_bytes_atomic(probe, b"")
        fs, path = storage.filesystem(probe)
        fs.rm(path)
    except OSError as exc:
        raise LrdaskError(
            f"cannot write to {out} ({exc.strerror or exc}); choose a writable --out"
        ) from None


def _log_cluster(client, scheduler: str | None) -> None:
    workers = client.scheduler_info(n_workers=-1)["workers"]
    where = f"scheduler {scheduler}" if scheduler else "embedded LocalCluster"
    log.info("cluster: %s, %d worker(s)", where, len(workers))
    link = dashboard_link(client)
    if link:
        log.info("Dask dashboard: %s", link)


def _log_result(model: LogisticRegression, location: str, seconds: float) -> None:
    status = "converged" if model.converged_ else "stopped at max_iter"
    log.info(
        "%s after %d iterations: cost %.10g -> %.10g on %d rows (%d partitions) in %.1fs",
        status,
        model.n_iter_,
        model.loss_history_[0],
        model.loss_history_[-1],
        model.n_rows_,
        model.n_partitions_,
        seconds,
        extra={
            "fields": {
                "iterations": model.n_iter_,
                "converged": model.converged_,
                "final_cost": model.loss_history_[-1],
                "seconds": round(seconds, 3),
            }
        },
    )
    if model.cost_increased_at_ is not None:
        log.warning(
            "the cost rose at iteration %d: --alpha %g is probably too large",
            model.cost_increased_at_,
            model.alpha,
        )
    log.info("model written to %s", location)
    click.echo(location)


@cli.command()
@click.argument("model_dir")
@click.argument("data")
@click.option(
    "--out",
    "out",
    required=True,
    metavar="OUT_DIR",
    help="Directory (or URL) for the Parquet predictions.",
)
@click.option(
    "--keep",
    callback=_split,
    metavar="A,B,...",
    help="Input columns to copy into the output beside the predictions (e.g. ids).",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing OUT_DIR.")
@cluster_options
def predict(model_dir, data, out, keep, overwrite, scheduler, workers, connect_timeout) -> None:
    """Score DATA with the model in MODEL_DIR; write `probability` and `prediction` columns.

    Each partition is scored and written on the cluster; OUT_DIR appears complete, with a
    _SUCCESS marker, or not at all.
    """
    from lrdask.predict import write_predictions

    setup_logging()
    model = LogisticRegression.load(model_dir)
    with connect(scheduler, workers, connect_timeout) as client:
        _log_cluster(client, scheduler)
        rows = write_predictions(client, model, data, out, keep, overwrite=overwrite)
    log.info("%d predictions written to %s", rows, out)
    click.echo(out)


@cli.command("make-data")
@click.argument("out_dir")
@click.option(
    "--rows", type=click.IntRange(min=1), default=100_000, show_default=True, help="Rows in all."
)
@click.option(
    "--features",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="Number of feature columns x0, x1, ...",
)
@click.option(
    "--partitions",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    help="Number of Parquet files.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")
@click.option(
    "--dtype",
    type=click.Choice(["float64", "float32"]),
    default="float64",
    show_default=True,
    help="Type of the feature columns in the files.",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing OUT_DIR.")
def make_data(out_dir, rows, features, partitions, seed, dtype, overwrite) -> None:
    """Write a synthetic binary data set (label `y`) from known weights to OUT_DIR.

    The true weights are recorded in OUT_DIR/_truth.json.
    """
    from lrdask.synthetic import make_data as _make

    setup_logging()
    _make(out_dir, rows, features, partitions, seed, overwrite, dtype)
    log.info("wrote %d rows x %d features in %d files to %s", rows, features, partitions, out_dir)
    click.echo(out_dir)


def main() -> None:
    cli(prog_name="lrdask")


if __name__ == "__main__":
    main()
