"""Getting a Dask client: an existing cluster by address, or an embedded LocalCluster.

With a scheduler address (``--scheduler`` or ``DASK_SCHEDULER_ADDRESS``) the job attaches
to that cluster and leaves it running; a ``tls://`` address needs a CA file and a client
certificate and key (``--tls-ca-file``, ``--tls-cert``, ``--tls-key``, or Dask's own
``distributed.comm.tls.*`` config), checked before any work starts. Without an address it
starts a LocalCluster of worker processes on this machine, one thread each, listening on
127.0.0.1 only (the dashboard too), and shuts it down at the end.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from typing import TypeVar

import dask
from distributed import Client, LocalCluster
from distributed.comm import parse_address
from distributed.comm.core import CommClosedError
from distributed.security import Security

from lrdask.errors import ClusterError, ConfigError

T = TypeVar("T")
log = logging.getLogger("lrdask")

TLS_OPTIONS = ("--tls-ca-file", "--tls-cert", "--tls-key")
TLS_SETTINGS = (  # Dask's own config, for an option not given
    "distributed.comm.tls.ca-file",
    "distributed.comm.tls.client.cert",
    "distributed.comm.tls.client.key",
)


@contextlib.contextmanager
def connect(
    scheduler: str | None = None,
    workers: int | None = None,
    connect_timeout: float = 30.0,
    processes: bool = True,
    security: Security | None = None,
    wait_for: int | None = None,
    wait_timeout: float = 120.0,
) -> Iterator[Client]:
    """Yield a Client; close whatever this function started, even on error.

    ``security`` is what ``client_security`` made for ``scheduler`` (without it, a tls://
    scheduler is checked against Dask's own TLS config here). With ``wait_for`` the client
    is yielded once that many workers are registered, or after ``wait_timeout`` seconds
    with a warning (``wait_for_workers``). Raises ConfigError for a bad address or TLS
    settings, or a ``wait_for`` the embedded cluster cannot reach; ClusterError when the
    scheduler cannot be reached, refuses the TLS handshake or has no workers."""
    if scheduler:
        client = _attach(scheduler, connect_timeout, security or client_security(scheduler))
        try:
            if wait_for:
                wait_for_workers(client, wait_for, wait_timeout)
            yield client
        finally:
            client.close()
        return
    n = workers or default_workers()
    if wait_for and wait_for > n:
        raise ConfigError(
            f"--wait-for-workers {wait_for}: the embedded LocalCluster has {n} worker(s) "
            f"(--workers); give --workers {wait_for}, or --scheduler for a cluster that "
            "will have them"
        )
    # Dask's nanny already starts worker processes with OMP/MKL/OPENBLAS_NUM_THREADS=1.
    cluster = LocalCluster(
        n_workers=n,
        threads_per_worker=1,
        processes=processes,
        dashboard_address="127.0.0.1:0",  # ":0" would listen on every interface
        # a task that fails raises its (one-line) error in the driver; the worker's own
        # "Compute Failed" log with the remote traceback would only repeat it
        silence_logs=logging.ERROR if os.environ.get("LRDASK_DEBUG") else logging.CRITICAL,
    )
    try:
        with Client(cluster) as client:
            yield client
    finally:
        cluster.close()


def wait_for_workers(client: Client, n: int, timeout: float) -> int:
    """Wait until ``n`` workers are registered with the scheduler, for at most ``timeout``
    seconds; the number registered. Like Spark's ``minRegisteredResourcesRatio`` with
    ``maxRegisteredResourcesWaitingTime``, the job goes on after the timeout with the
    workers it has, and says so: blocks are placed on the workers present at loading, and
    a worker that registers later receives its share between passes
    (``lrdask.scheduling``). Raises ClusterError if the scheduler stops answering."""
    have = _count_workers(client, timeout)
    if have >= n:
        return have
    log.info("waiting up to %gs for %d worker(s): %d registered", timeout, n, have)
    try:
        with contextlib.suppress(TimeoutError):
            bounded(lambda: client.wait_for_workers(n, timeout=timeout), timeout + 5)
    except (OSError, CommClosedError) as exc:  # Dask gave up reconnecting to the scheduler
        raise ClusterError(
            f"the Dask scheduler stopped answering while the job waited for workers ({exc})"
        ) from None
    have = _count_workers(client, timeout)
    if have < n:
        log.warning(
            "only %d of %d worker(s) registered within --wait-for-workers-timeout %gs: "
            "going on with %d; workers that register later receive blocks between passes",
            have,
            n,
            timeout,
            have,
        )
    else:
        log.info("%d worker(s) registered", have)
    return have


def _count_workers(client: Client, timeout: float) -> int:
    try:
        found = client.sync(client.scheduler.ncores, callback_timeout=min(timeout, 30) or 30)
    except (OSError, TimeoutError, CommClosedError) as exc:
        raise ClusterError(
            f"the Dask scheduler stopped answering while the job waited for workers ({exc})"
        ) from None
    return len(found)


def default_workers() -> int:
    """One worker process per core (at least one)."""
    return max(1, os.cpu_count() or 1)


def dashboard_link(client: Client, timeout: float = 10.0) -> str | None:
    """The dashboard's URL, or None (no dashboard, or the scheduler does not answer)."""
    try:
        return bounded(lambda: client.dashboard_link, timeout)
    except Exception:  # a cluster started without the dashboard, or not answering
        return None


def bounded(call: Callable[[], T], timeout: float) -> T:
    """``call()`` in a daemon thread, waited for at most ``timeout`` seconds (TimeoutError
    after that). For Dask calls that take no timeout of their own: a scheduler that accepts
    connections but is stopped (SIGSTOP, swapping) would hold them forever."""
    box: dict = {}

    def run() -> None:
        try:
            box["value"] = call()
        except BaseException as exc:  # handed to the caller's thread
            box["error"] = exc

    worker = threading.Thread(target=run, daemon=True, name="lrdask-bounded")
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise TimeoutError(f"no answer within {timeout:g}s")
    if "error" in box:
        raise box["error"]
    return box["value"]


def _attach(address: str, timeout: float, security: Security | None) -> Client:
    _check_address(address)
    try:
        client = bounded(lambda: Client(address, timeout=timeout, security=security), timeout + 5)
    except (OSError, TimeoutError) as exc:
        refused = _tls_refusal(exc) if security is not None else None
        if refused:
            raise ClusterError(
                f"the TLS handshake with the Dask scheduler at {address} failed ({refused}); "
                f"check that the CA in {security.tls_ca_file} signed the scheduler's "
                f"certificate, that the scheduler trusts the CA of {security.tls_client_cert}, "
                "and that neither certificate has expired"
            ) from None
        raise ClusterError(
            f"cannot reach the Dask scheduler at {address} within {timeout:g}s ({exc}); "
            "check --scheduler / DASK_SCHEDULER_ADDRESS and that the scheduler is running"
        ) from None
    try:
        bounded(lambda: client.wait_for_workers(1, timeout=timeout), timeout + 5)
    except (OSError, TimeoutError):
        client.close()
        raise ClusterError(
            f"the Dask scheduler at {address} has no workers after {timeout:g}s; "
            "start workers with `dask worker " + address + "`"
        ) from None
    return client


def _tls_refusal(exc: BaseException) -> str | None:
    """Why the TLS handshake failed, or None when the failure was not TLS's. An SSL error
    in the chain: this side refused the scheduler's certificate (or the scheduler sent an
    alert); the connection closed with no reason: the scheduler refused ours."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return f"the scheduler's certificate: {cause.verify_message}"
        if isinstance(cause, ssl.SSLError) and cause.reason:
            return cause.reason.replace("_", " ").lower()
        cause = cause.__cause__ or cause.__context__
    if isinstance(exc, CommClosedError):
        return (
            "the scheduler closed the connection: it does not trust this client's "
            "certificate, or does not speak TLS"
        )
    return None


def client_security(
    scheduler: str | None,
    tls_ca_file: str | None = None,
    tls_cert: str | None = None,
    tls_key: str | None = None,
) -> Security | None:
    """The TLS settings for a client of ``scheduler``, loaded here so that a mistake fails
    before any work starts: None for a tcp:// scheduler (or none: the embedded
    LocalCluster); for a tls:// one, the files given, each defaulting to Dask's own
    ``distributed.comm.tls.ca-file`` / ``client.cert`` / ``client.key``.

    Raises ConfigError, naming the option or file: TLS options without a tls:// scheduler;
    a tls:// scheduler without a CA file or a client certificate; a file missing,
    unreadable or not PEM; a certificate without its key, or with another one's."""
    values = (tls_ca_file, tls_cert, tls_key)
    given = "/".join(flag for flag, value in zip(TLS_OPTIONS, values, strict=True) if value)
    if not scheduler:
        if given:
            raise ConfigError(
                f"{given}: TLS options are for --scheduler tls://…; the embedded "
                "LocalCluster (no --scheduler) runs on this machine without TLS: drop them "
                "or give --scheduler"
            )
        return None
    scheme, location = _parse(scheduler)
    if scheme != "tls":
        if given:
            raise ConfigError(
                f"{given}: TLS options need a tls:// scheduler, but --scheduler is "
                f"{scheduler}: use tls://{location} (a scheduler started with TLS) or drop them"
            )
        return None
    (ca, ca_name), (cert, cert_name), (key, key_name) = files = [
        (value, flag) if value else (dask.config.get(setting, None), f"Dask's {setting}")
        for value, flag, setting in zip(values, TLS_OPTIONS, TLS_SETTINGS, strict=True)
    ]
    if not (ca and cert):
        lacking = 0 if not ca else 1
        raise ConfigError(
            f"--scheduler {scheduler} uses TLS, but no {TLS_OPTIONS[lacking]} is given (nor "
            f"Dask's {TLS_SETTINGS[lacking]}): pass --tls-ca-file (the CA that signed the "
            "cluster's certificates), --tls-cert and --tls-key (this client's certificate "
            "and key, signed by that CA)"
        )
    for path, name in files:
        try:
            if path:
                open(path, "rb").close()
        except OSError as exc:
            raise ConfigError(f"{name} {path}: cannot be read ({exc.strerror})") from None
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
    except ssl.SSLError:
        raise ConfigError(
            f"{ca_name} {ca}: no PEM certificate in it; give the CA certificate that signed "
            "the cluster's certificates"
        ) from None
    try:  # a password prompt would hang a scheduled job: an encrypted key fails instead
        context.load_cert_chain(cert, key, password=lambda: b"")
    except ssl.SSLError as exc:
        if key is None:
            raise ConfigError(
                f"{cert_name} {cert} holds no private key: give --tls-key (its key file)"
            ) from None
        reason = (
            "the key does not belong to the certificate"
            if exc.reason == "KEY_VALUES_MISMATCH"
            else "not a PEM certificate and its unencrypted private key"
        )
        raise ConfigError(f"{cert_name} {cert} with {key_name} {key}: {reason}") from None
    return Security(
        tls_ca_file=ca, tls_client_cert=cert, tls_client_key=key, require_encryption=True
    )


def _parse(address: str) -> tuple[str, str]:
    try:
        return parse_address(address)
    except ValueError as exc:
        raise ConfigError(f"--scheduler {address!r} is not a Dask address ({exc})") from None


def _check_address(address: str) -> None:
    """A malformed address or unknown host is a configuration error, not a cluster outage."""
    scheme, location = _parse(address)
    host = location.rsplit(":", 1)[0].strip("[]") if scheme in ("tcp", "tls") else None
    if host:
        try:
            socket.getaddrinfo(host, None)
        except OSError:
            raise ConfigError(
                f"--scheduler {address}: unknown host {host!r}; check the address"
            ) from None
