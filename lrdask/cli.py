"""The ``lrdask`` command: train, predict and make-data, with exit codes a scheduler can act on."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import signal
import sys

import click
import numpy as np
from click.core import ParameterSource

from lrdask import __version__, artifact
from lrdask.cluster import client_security, connect
from lrdask.config import load_config, parse_pairs
from lrdask.dataset import first_line
from lrdask.errors import EXIT_INTERNAL, ClusterError, ConfigError, LrdaskError
from lrdask.estimator import LogisticRegression
from lrdask.progress import setup_logging
from lrdask.storage import storage_error
from lrdask.train_job import TrainConfig, log_cluster, run_training

log = logging.getLogger("lrdask")


class FiniteRange(click.FloatRange):
    """A float range that also refuses nan and ±inf (click's own range lets them through:
    every comparison with nan is false), for flags and config keys alike."""

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


class _Group(click.Group):
    """Turns lrdask's errors into one line on stderr and the documented exit code."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except LrdaskError as exc:
            _fail(str(exc), exc.exit_code)
        except BrokenPipeError:  # `lrdask info M | head`: the reader has all it wanted
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())  # no second error when Python flushes
            sys.exit(128 + signal.SIGPIPE)
        except (OSError, TimeoutError) as exc:
            if _is_cluster_failure(exc):
                _fail(f"the Dask cluster failed: {exc}", ClusterError.exit_code)
            if isinstance(exc, OSError):  # one not met where it happened: still one line
                where = exc.filename or "a file or the network"
                error = storage_error(exc, "use", str(where))
                _fail(str(error), error.exit_code)
            raise
        except (click.ClickException, click.Abort, click.exceptions.Exit, KeyboardInterrupt):
            raise  # click's own control flow (usage errors, --help, --version)
        except SystemExit:
            raise
        except Exception as exc:  # a bug: one line, the traceback on request
            if os.environ.get("LRDASK_DEBUG"):
                raise
            _fail(
                f"internal error ({type(exc).__name__}: {first_line(exc)}); please report "
                "it with the command; LRDASK_DEBUG=1 shows the traceback",
                EXIT_INTERNAL,
            )


def _terminated(signum, frame) -> None:
    click.echo("lrdask: error: terminated (SIGTERM); rerun to resume from the checkpoint", err=True)
    sys.exit(128 + signum)


def _fail(message: str, code: int) -> None:
    click.echo(f"lrdask: error: {message}", err=True)
    sys.exit(code)


def _is_cluster_failure(exc: BaseException) -> bool:
    from distributed.comm.core import CommClosedError

    return isinstance(exc, (CommClosedError, TimeoutError))


def _split(ctx, param, value: str | None) -> list[str] | None:
    if value is None or isinstance(value, list):
        return value
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


log_format_option = click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Log lines as text or as one JSON object per line.",
)

pass_timeout_option = click.option(
    "--pass-timeout",
    type=FiniteRange(min=0, min_open=True),
    default=600.0,
    show_default=True,
    help="Seconds to wait for one pass over the data (any wait on the cluster) before "
    "giving up with exit 3.",
)
storage_option = click.option(
    "--storage-option",
    "storage_pairs",
    multiple=True,
    metavar="KEY=VALUE",
    help="fsspec storage option for every URL the command reads or writes, e.g. "
    "endpoint_url=http://127.0.0.1:9000 (repeatable; also [storage_options] in a train "
    "config file, or FSSPEC_S3_* environment variables).",
)


threshold_option = click.option(
    "--threshold",
    type=FiniteRange(min=0, max=1, min_open=True, max_open=True),
    default=None,
    metavar="T",
    help="Binomial models: predict the positive class when its probability is above T "
    "(Spark's threshold; decided as margin > logit(T)) [default: the model's own, from "
    "`lrdask train --threshold`, else 0.5]. An error for a multinomial model.",
)


def cluster_options(func):
    """--scheduler, its TLS files, --workers and --connect-timeout, shared by every command
    that computes."""
    func = click.option(
        "--tls-key",
        default=None,
        metavar="PEM",
        help="Private key of --tls-cert, unencrypted (may be left out when the --tls-cert "
        "file holds it) [default: Dask's distributed.comm.tls.client.key].",
    )(func)
    func = click.option(
        "--tls-cert",
        default=None,
        metavar="PEM",
        help="For a tls:// --scheduler: this client's certificate, signed by that CA "
        "[default: Dask's distributed.comm.tls.client.cert].",
    )(func)
    func = click.option(
        "--tls-ca-file",
        default=None,
        metavar="PEM",
        help="For a tls:// --scheduler: the CA certificate that signed the cluster's "
        "certificates [default: Dask's distributed.comm.tls.ca-file].",
    )(func)
    func = click.option(
        "--wait-for-workers-timeout",
        type=FiniteRange(min=0, min_open=True),
        default=120.0,
        show_default=True,
        help="Seconds --wait-for-workers waits; after it the job goes on with the workers "
        "it has (a warning says how many).",
    )(func)
    func = click.option(
        "--wait-for-workers",
        type=click.IntRange(min=1),
        default=None,
        metavar="N",
        help="Wait until N workers are registered before loading the data [default: the "
        "first worker]. Workers that register later still receive blocks between passes.",
    )(func)
    func = click.option(
        "--connect-timeout",
        type=FiniteRange(min=0, min_open=True),
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
        help="Address of a running Dask scheduler, e.g. tcp://10.0.0.5:8786, or "
        "tls://… with --tls-ca-file/--tls-cert/--tls-key (env: DASK_SCHEDULER_ADDRESS). "
        "Without it a LocalCluster is started.",
    )(func)


@cli.command()
@click.argument("data", required=False)
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="TOML job file holding any of these options (keys as the option names, "
    "e.g. max_iter); flags given here override it.",
)
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="NAME=VALUE",
    help="Value for a ${NAME} placeholder in the config file (repeatable); "
    "RUN_DATE defaults to today (UTC).",
)
@storage_option
@click.option(
    "--label",
    default=None,
    help="Name of the label column: any two values (0/1, true/false, 'yes'/'no', …) for "
    "binomial, K values for multinomial. Required, here or in the config file.",
)
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
    "--alpha",
    type=FiniteRange(min=0, min_open=True),
    default=0.1,
    show_default=True,
    help="Learning rate α in w := w − α·dw.",
)
@click.option(
    "--max-iter",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    help="Most iterations (updates) to apply, for every solver.",
)
@click.option(
    "--tol",
    type=FiniteRange(min=0),
    default=1e-8,
    show_default=True,
    help="Stop when the objective improves by at most this much in one iteration; unless "
    "--gtol holds too, the run is 'stalled', not converged (0 turns this rule off).",
)
@click.option(
    "--gtol",
    type=FiniteRange(min=0),
    default=1e-4,
    show_default=True,
    help="Converged when the largest absolute component of the objective's gradient is at "
    "most this (scikit-learn's lbfgs tol, H2O's gradient_epsilon); the same for every solver.",
)
@click.option(
    "--dtype",
    type=click.Choice(["float64", "float32"]),
    default="float64",
    show_default=True,
    help="Storage type of features in worker memory (sums are always float64).",
)
@click.option(
    "--solver",
    type=click.Choice(["gd", "agd", "lbfgs", "newton"]),
    default="gd",
    show_default=True,
    help="gd: the fixed-step update w := w − α·dw; agd: Nesterov-accelerated gd (FISTA, "
    "with restart); lbfgs: L-BFGS on the driver, one pass per function evaluation; newton: "
    "IRLS, passes also sum the Hessian (≤ 2000 features, binomial, no --l1). --alpha is "
    "the step of gd and agd only.",
)
@click.option(
    "--line-search",
    is_flag=True,
    help="gd/agd: choose each step by backtracking (J must fall enough) instead of a "
    "fixed --alpha, which becomes the first step tried. Costs an extra pass per rejected step.",
)
@click.option(
    "--l2",
    type=FiniteRange(min=0),
    default=0.0,
    show_default=True,
    help="L2 penalty λ: minimize J + (λ/2)·‖w‖², intercept not penalized "
    "(scikit-learn's C = 1/(λ·m)).",
)
@click.option(
    "--l1",
    type=FiniteRange(min=0),
    default=0.0,
    show_default=True,
    help="L1 penalty λ₁: minimize J + λ₁·‖w‖₁ (sparse weights; intercept not penalized). "
    "gd/agd take a proximal step, lbfgs runs OWL-QN (as Spark does); "
    "newton refuses it.",
)
@click.option(
    "--weight-col",
    metavar="COLUMN",
    default=None,
    help="Column of non-negative row weights; m becomes the sum of the weights "
    "(the column is never a feature).",
)
@click.option(
    "--class-weight",
    type=click.Choice(["none", "balanced"]),
    default="none",
    show_default=True,
    help="balanced: weigh class k by m / (K·m_k), as scikit-learn does, for rare classes.",
)
@click.option(
    "--standardize",
    is_flag=True,
    help="Train on standardized features (x − mean)/std, from one extra pass; the model "
    "keeps coefficients on the original scale. Off by default: gd is then the lecture's "
    "update on the raw data. Constant columns get weight 0.",
)
@click.option(
    "--standardize-variance",
    type=click.Choice(["population", "sample"]),
    default="population",
    show_default=True,
    help="With --standardize: σ² divides by the total weight (population, scikit-learn's "
    "StandardScaler) or by it minus 1 (sample, as Spark does); matters with a penalty.",
)
@click.option(
    "--fit-intercept/--no-intercept",
    "fit_intercept",
    default=True,
    show_default=True,
    help="--no-intercept fixes the intercept(s) at 0 (scikit-learn's fit_intercept=False, "
    "Spark's fitIntercept=false), e.g. when a feature column already plays its part; "
    "with --standardize the columns are then scaled but not centred.",
)
@click.option(
    "--threshold",
    type=FiniteRange(min=0, max=1, min_open=True, max_open=True),
    default=0.5,
    show_default=True,
    help="Binomial: the model predicts the positive class when its probability is above "
    "this (Spark's threshold); kept in model.json as predict's and evaluate's default. "
    "Does not change training.",
)
@click.option(
    "--init",
    metavar="MODEL_DIR",
    default=None,
    help="Warm start from an earlier model (same family and feature columns) instead of 0.",
)
@click.option(
    "--family",
    type=click.Choice(["auto", "binomial", "multinomial"]),
    default="auto",
    show_default=True,
    help="auto: binomial when the label has two values, multinomial (softmax) when it has "
    "more; binomial: exactly two label values; multinomial: K values.",
)
@click.option(
    "--positive-class",
    metavar="VALUE",
    default=None,
    help="Binomial: the label value that is the positive class (probability, prediction) "
    "[default: the larger of the two in sorted order, e.g. 1, true, 'yes'].",
)
@click.option(
    "--categorical",
    metavar="A,B,...|auto",
    default=None,
    help="Feature columns whose values are levels (one coefficient per level, never "
    "one-hot columns in memory); 'auto': every string and dictionary feature column. "
    "Integer columns (a zip code) may be named too.",
)
@click.option(
    "--min-count",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Levels seen in fewer rows fold into one '(other)' level per column.",
)
@click.option(
    "--missing",
    type=click.Choice(["error", "mean", "skip"]),
    default="error",
    show_default=True,
    help="Nulls and NaN in features, label or weight: error; mean: numeric ones become the "
    "training mean, categorical ones the level '(missing)' (a null label is still an "
    "error); skip: drop those rows (logged per file). ±inf is always an error.",
)
@click.option(
    "--validation",
    metavar="DATA2",
    default=None,
    help="Held-out Parquet data (same columns): its cost is logged and kept in the model "
    "every --validation-every iterations, and its metrics are in model.json at the end.",
)
@click.option(
    "--validation-every",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="Iterations between two validation passes.",
)
@click.option(
    "--early-stopping",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="With --validation: stop when the held-out cost has not improved for N checks in "
    "a row (0: never).",
)
@click.option(
    "--cache/--no-cache",
    default=True,
    show_default=True,
    help="Keep the data in worker memory across iterations; --no-cache re-reads the "
    "Parquet columns on every pass, for data larger than the cluster's memory.",
)
@cluster_options
@pass_timeout_option
@click.option(
    "--out",
    "out",
    default=None,
    metavar="MODEL_DIR",
    help="Directory (or URL) for model.json, metrics.json, loss_curve.png and _SUCCESS. "
    "Required, here or in the config file.",
)
@click.option(
    "--overwrite",
    is_flag=True,
    help="Replace a model in MODEL_DIR that was trained on other data or options. "
    "Without it such a model is an error, and the same model is a no-op success.",
)
@click.option(
    "--checkpoint-every",
    type=click.IntRange(min=1),
    default=50,
    show_default=True,
    help="Save the solver state every N iterations, so a killed job resumes.",
)
@click.option(
    "--checkpoint-dir",
    metavar="DIR",
    default=None,
    help="Where checkpoints go [default: MODEL_DIR/_checkpoint].",
)
@click.option(
    "--no-resume",
    "resume",
    is_flag=True,
    flag_value=False,
    default=True,
    help="Ignore and delete an existing checkpoint; start from w = 0.",
)
@click.option(
    "--fail-on-no-convergence",
    is_flag=True,
    help="Exit 4 without writing a model unless the run converged (--gtol held): after "
    "--max-iter, or stalled. A diverged run always exits 4.",
)
@click.option(
    "--mlflow-tracking-uri",
    envvar="MLFLOW_TRACKING_URI",
    default=None,
    metavar="URI",
    help="Log the run to this MLflow tracking server (e.g. http://mlflow:5000) after the "
    "model is published: parameters, cost and gradient-norm histories, metrics, the files "
    "and the scikit-learn flavor. A tracking failure is a warning (env: MLFLOW_TRACKING_URI; "
    "needs pip install 'lrdask[mlflow]').",
)
@click.option(
    "--mlflow-experiment",
    envvar="MLFLOW_EXPERIMENT_NAME",
    default=None,
    metavar="NAME",
    help="MLflow experiment of the run, created if missing [default: MLflow's 'Default'] "
    "(env: MLFLOW_EXPERIMENT_NAME).",
)
@log_format_option
@click.option(
    "--log-every",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="Log the cost every N iterations when not on a terminal.",
)
@click.pass_context
def train(ctx, config_file, params, storage_pairs, **options) -> None:
    """Train on the Parquet data set DATA and write the model to MODEL_DIR.

    By default starts from w = 0, b = 0 and applies w := w − α·dw, b := b − α·db until
    the cost improves by at most --tol or --max-iter updates have been applied. --tol
    means the same for every --solver: stop when the objective (cost plus penalties)
    improved by at most --tol from one iterate to the next. Rerunning a finished job with
    the same data and options does nothing and succeeds.
    """
    params = parse_pairs(params, "--param")
    if config_file:
        known = {p.name for p in ctx.command.params} - {"config_file", "params", "storage_pairs"}
        from_file = load_config(config_file, known | {"storage_options"}, params)
        options = _merge_config(ctx, options, from_file, config_file)
    storage_options = {
        **(options.pop("storage_options", None) or {}),
        **_storage_options(storage_pairs),
    }
    for name, flag in (("data", "DATA"), ("label", "--label"), ("out", "--out")):
        if not options.get(name):
            raise ConfigError(f"missing {flag}: give it on the command line or in --config")
    options["features"] = _as_list(options["features"])
    options["exclude"] = _as_list(options["exclude"])
    if options["categorical"] != "auto":
        options["categorical"] = _as_list(options["categorical"])
    if options["class_weight"] == "none":
        options["class_weight"] = None
    setup_logging(options.pop("log_format"))
    cfg = TrainConfig(
        **options,
        storage_options=storage_options,
        params={**params, "config": config_file} if config_file else params,
    )
    outcome = run_training(cfg)
    click.echo(outcome.location)


def _merge_config(ctx: click.Context, options: dict, from_file: dict, path: str) -> dict:
    """Config-file values for every option not given on the command line, each checked
    and converted by the same click type (and range) as its flag: one schema for both."""
    params = {p.name: p for p in ctx.command.params}
    merged = dict(options)
    for key, value in from_file.items():
        if key != "storage_options" and ctx.get_parameter_source(key) not in (
            ParameterSource.DEFAULT,
            None,
        ):
            continue
        merged[key] = _config_value(ctx, params.get(key), key, value, path)
    return merged


def _config_value(ctx: click.Context, param, key: str, value, path: str):
    """A config file's ``value`` as the flag's type makes it; a one-line error otherwise."""
    if key == "storage_options":
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: storage_options must be a table of KEY = VALUE")
        return value
    listed = param is not None and param.callback is _split  # "a,b" on the CLI, or an array
    if listed and isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    if isinstance(value, (dict, list)):
        raise ConfigError(f"{path}: {key} = {value!r} must be a single value")
    numeric = isinstance(param.type, (click.types.IntParamType, click.types.FloatParamType))
    if numeric and isinstance(value, bool):
        raise ConfigError(f"{path}: {key} = {value!r} must be a number")
    if isinstance(param.type, click.types.IntParamType) and isinstance(value, float):
        raise ConfigError(f"{path}: {key} = {value!r} must be a whole number")
    try:  # a flag takes true/false, or a string click reads the same way ("false" → off)
        return param.type_cast_value(ctx, value)
    except click.BadParameter as exc:
        raise ConfigError(f"{path}: {key} = {value!r}: {exc.format_message()}") from None


def _as_list(value) -> list[str] | None:
    if value is None or isinstance(value, list):
        return value
    return _split(None, None, value)


def _typed(pairs: dict[str, str]) -> dict:
    """'true', '3', '{"a": 1}' -> True, 3, {"a": 1}; anything else stays a string."""
    out = {}
    for key, value in pairs.items():
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


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
@threshold_option
@click.option(
    "--margin",
    is_flag=True,
    help="Also write the linear predictor z = x·w + b: `margin` (binomial; Spark's "
    "rawPrediction, scikit-learn's decision_function), or `margin_<class>` per class.",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing OUT_DIR.")
@storage_option
@log_format_option
@cluster_options
@pass_timeout_option
def predict(
    model_dir, data, out, keep, threshold, margin, overwrite, storage_pairs, log_format, **cluster
) -> None:
    """Score DATA with the model in MODEL_DIR; write `probability` and `prediction` columns.

    Each partition is scored and written on the cluster; OUT_DIR appears complete, with a
    _SUCCESS marker written last.
    """
    from lrdask.predict import check_keep, model_threshold, write_predictions

    def check(model, plan):
        model_threshold(model, threshold)
        check_keep(plan, keep or [], margin)

    with _model_on_cluster(model_dir, data, False, storage_pairs, log_format, cluster, check) as (
        model,
        plan,
        client,
        options,
    ):
        rows = write_predictions(
            client,
            model,
            plan,
            out,
            keep,
            options,
            overwrite,
            cluster["pass_timeout"],
            threshold,
            margin,
        )
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
@click.option(
    "--offset",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Draw the rows from another stream: with the same --seed and --features, "
    "e.g. --offset 1000 makes a held-out set from the same true weights.",
)
@click.option(
    "--categorical",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Add K string columns c0, c1, … whose levels have different effects, with some "
    "rare levels and about 1% nulls (train with --categorical auto --missing mean).",
)
@click.option(
    "--label-values",
    metavar="NEG,POS",
    default=None,
    help="Write the label as these two strings, e.g. no,yes [default: 0 and 1].",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing OUT_DIR.")
def make_data(
    out_dir, rows, features, partitions, seed, dtype, offset, categorical, label_values, overwrite
) -> None:
    """Write a synthetic binary data set (label `y`) from known weights to OUT_DIR.

    The true weights are recorded in OUT_DIR/_truth.json.
    """
    from lrdask.synthetic import make_data as _make

    setup_logging()
    values = None
    if label_values is not None:
        values = tuple(v.strip() for v in label_values.split(","))
        if len(values) != 2 or not all(values) or values[0] == values[1]:
            raise ConfigError("--label-values takes two different values, e.g. no,yes")
    _make(out_dir, rows, features, partitions, seed, overwrite, dtype, offset, categorical, values)
    log.info("wrote %d rows x %d features in %d files to %s", rows, features, partitions, out_dir)
    click.echo(out_dir)


@cli.command()
@click.argument("model_dir")
@click.argument("data")
@click.option(
    "--out",
    "out",
    default=None,
    metavar="JSON",
    help="Also write the metrics to this file (or URL), atomically.",
)
@threshold_option
@storage_option
@log_format_option
@cluster_options
@pass_timeout_option
def evaluate(model_dir, data, out, threshold, storage_pairs, log_format, **cluster) -> None:
    """Score DATA (with its label column) and print log loss, accuracy, precision, recall,
    F1, ROC AUC and PR AUC as JSON, computed on the cluster partition by partition."""
    from lrdask import storage
    from lrdask.evaluation import evaluate_dataset
    from lrdask.predict import model_threshold

    def check(model, plan):
        model_threshold(model, threshold)

    with _model_on_cluster(model_dir, data, True, storage_pairs, log_format, cluster, check) as (
        model,
        plan,
        client,
        options,
    ):
        result = evaluate_dataset(client, model, plan, options, cluster["pass_timeout"], threshold)
    text = artifact.dumps(result)
    if out:
        storage.write_bytes_atomic(out, text.encode(), options)
    click.echo(text)


@cli.command()
@click.argument("model_dir")
@click.option(
    "--out",
    "out",
    default=None,
    metavar="PNG",
    help="Where to write the plot [default: MODEL_DIR/loss_curve.png].",
)
def plot(model_dir, out) -> None:
    """Draw the cost J against iteration for the model in MODEL_DIR, as a PNG."""
    from lrdask import storage
    from lrdask.outputs import PLOT_FILE, loss_curve_png

    setup_logging()
    model = LogisticRegression.load(model_dir)
    target = out or storage.join(model_dir, PLOT_FILE)
    storage.write_bytes_atomic(target, loss_curve_png(model))
    click.echo(target)


@cli.command()
@click.argument("model_dir")
@click.option("--json", "as_json", is_flag=True, help="Print model.json's summary as JSON.")
def info(model_dir, as_json) -> None:
    """Print the model: features by weight magnitude, intercept, iterations, final cost."""
    model = LogisticRegression.load(model_dir)
    coef = np.atleast_2d(model.coef_)  # one row per class (a single row for binomial)
    encoding = model.encoding_
    numeric = coef[:, : encoding.n_numeric]
    order = np.argsort(-np.abs(numeric).max(axis=0), kind="stable")
    if as_json:
        click.echo(artifact.dumps(_info_doc(model, coef, order)))
        return
    classes = list(encoding.classes)
    names = [*encoding.numeric, *(n for c in encoding.categorical for n in c.slot_names)]
    width = max(len("feature"), *(len(n) for n in names)) if names else len("feature")
    click.echo(f"model      {model_dir}")
    click.echo(f"label      {model.label_} ({encoding.family}, classes {classes})")
    if encoding.family == "binomial":
        click.echo(f"positive   {classes[1]!r}")
    click.echo(f"solver     {model.solver}")
    click.echo(f"rows       {model.n_rows_}")
    click.echo(f"iterations {model.n_iter_} ({model.stop_reason_ or 'max_iter'})")
    click.echo(f"passes     {model.n_passes_}")
    click.echo(f"final cost {model.loss_history_[-1]:.10g}")
    intercepts = np.atleast_1d(model.intercept_)
    click.echo("intercept  " + "  ".join(f"{b:+.6g}" for b in intercepts))
    header = "weight" if len(coef) == 1 else "  ".join(f"{str(k):<10}" for k in classes)
    if encoding.numeric:
        click.echo(f"\n{'feature':<{width}}  {header}")
        for j in order:
            values = "  ".join(f"{w:+.6g}".ljust(10) for w in numeric[:, j])
            click.echo(f"{encoding.numeric[j]:<{width}}  {values}".rstrip())
    for cat, block in _category_blocks(encoding, coef):
        ref = f", reference level {cat.levels[0]!r} (weight 0)" if cat.reference else ""
        click.echo(f"\ncategorical '{cat.name}': {cat.n_slots} coefficient(s){ref}")
        click.echo(f"{'level':<{width}}  {header}")
        slot_names = cat.slot_names  # built once: a property over every level
        for k in np.argsort(-np.abs(block).max(axis=0), kind="stable"):
            values = "  ".join(f"{w:+.6g}".ljust(10) for w in block[:, k])
            click.echo(f"{slot_names[k]:<{width}}  {values}".rstrip())


def _category_blocks(encoding, coef: np.ndarray):
    """(column, its coefficients (rows: outputs, columns: slots)) per categorical column."""
    for cat in encoding.categorical:
        start = encoding.n_numeric + cat.offset
        yield cat, coef[:, start : start + cat.n_slots]


def _info_doc(model, coef: np.ndarray, order: np.ndarray) -> dict:
    encoding = model.encoding_
    one = len(coef) == 1

    def entry(name, values):
        return (
            {"name": name, "weight": float(values[0])}
            if one
            else {
                "name": name,
                "weights": values.tolist(),
            }
        )

    categorical = []
    for cat, block in _category_blocks(encoding, coef):
        strongest = np.argsort(-np.abs(block).max(axis=0), kind="stable")
        slot_names = cat.slot_names
        categorical.append(
            {
                "name": cat.name,
                "reference": cat.levels[0] if cat.reference else None,
                "levels": [entry(slot_names[k], block[:, k]) for k in strongest],
            }
        )
    return {
        "features": [entry(encoding.numeric[j], coef[:, j]) for j in order],
        "categorical": categorical,
        "intercept": np.asarray(model.intercept_).tolist(),
        "family": encoding.family,
        "classes": list(model.encoding_.classes),
        "solver": model.solver,
        "iterations": model.n_iter_,
        "passes": model.n_passes_,
        "converged": model.converged_,
        "stop_reason": model.stop_reason_,
        "final_cost": model.loss_history_[-1],
        "n_rows": model.n_rows_,
        "label": model.label_,
        "metrics": model.training_metrics_,
    }


@contextlib.contextmanager
def _model_on_cluster(model_dir, data, with_label, storage_pairs, log_format, cluster, check=None):
    """The shared start of predict and evaluate: logging, the storage options, the TLS
    settings, the model, DATA planned against it (footers only: bad data fails before a
    cluster starts) and a connected client; ``cluster`` holds the cluster options and
    ``check(model, plan)``, if given, runs before the cluster starts."""
    from lrdask.predict import plan_for_model

    setup_logging(log_format)
    scheduler = cluster["scheduler"]
    security = client_security(
        scheduler, cluster["tls_ca_file"], cluster["tls_cert"], cluster["tls_key"]
    )
    options = _storage_options(storage_pairs)
    model = LogisticRegression.load(model_dir, options)
    plan = plan_for_model(model, data, model.label_ if with_label else None, options)
    if check is not None:
        check(model, plan)
    with connect(
        scheduler,
        cluster["workers"],
        cluster["connect_timeout"],
        security=security,
        wait_for=cluster["wait_for_workers"],
        wait_timeout=cluster["wait_for_workers_timeout"],
    ) as client:
        log_cluster(client, scheduler, cluster["pass_timeout"])
        yield model, plan, client, options


def _storage_options(pairs: tuple[str, ...]) -> dict:
    return _typed(parse_pairs(pairs, "--storage-option"))


def main() -> None:
    """Entry point: option errors become the same one-line error as everything else.

    SIGTERM (Kubernetes, Airflow, docker stop; and PID 1 in a container ignores it unless
    handled) unwinds like Ctrl-C: the embedded cluster is closed, no model is half-written,
    the checkpoint stays, and the exit code is 143.
    """
    signal.signal(signal.SIGTERM, _terminated)
    # a step that overflows is reported as "diverged" in one line, not as NumPy warnings
    np.seterr(over="ignore", invalid="ignore", divide="ignore")
    try:
        cli.main(prog_name="lrdask", standalone_mode=False)
    except click.UsageError as exc:
        where = f" (see '{exc.ctx.command_path} --help')" if exc.ctx else ""
        _fail(exc.format_message() + where, exc.exit_code)
    except click.ClickException as exc:
        _fail(exc.format_message(), exc.exit_code)
    except click.Abort:
        _fail("aborted", 1)


if __name__ == "__main__":
    main()
