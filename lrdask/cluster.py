"""Getting a Dask client: an existing cluster by address, or an embedded LocalCluster.

With a scheduler address (``--scheduler`` or ``DASK_SCHEDULER_ADDRESS``) the job attaches
to that cluster and leaves it running. Without one it starts a LocalCluster of worker
processes on this machine, one thread each, and shuts it down at the end.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Iterator

from distributed import Client, LocalCluster
from distributed.comm import parse_address

from lrdask.errors import ClusterError, ConfigError


@contextlib.contextmanager
def connect(
    scheduler: str | None = None,
    workers: int | None = None,
    connect_timeout: float = 30.0,
    processes: bool = True,
) -> Iterator[Client]:
    """Yield a Client; close whatever this function started, even on error."""
    if scheduler:
        client = _attach(scheduler, connect_timeout)
        try:
            yield client
        finally:
            client.close()
        return
    n = workers or default_workers()
    # Dask's nanny already starts worker processes with OMP/MKL/OPENBLAS_NUM_THREADS=1.
    cluster = LocalCluster(
        n_workers=n,
        threads_per_worker=1,
        processes=processes,
        dashboard_address=":0",
        # a task that fails raises its (one-line) error in the driver; the worker's own
        # "Compute Failed" log with the remote traceback would only repeat it
        silence_logs=logging.ERROR if os.environ.get("LRDASK_DEBUG") else logging.CRITICAL,
    )
    try:
        with Client(cluster) as client:
            yield client
    finally:
        cluster.close()


def default_workers() -> int:
    """One worker process per core (at least one)."""
    return max(1, os.cpu_count() or 1)


def dashboard_link(client: Client) -> str | None:
    try:
        return client.dashboard_link
    except Exception:  # a cluster started without the dashboard
        return None


def _attach(address: str, timeout: float) -> Client:
    _check_address(address)
    try:
        client = Client(address, timeout=timeout)
    except (OSError, TimeoutError) as exc:
        raise ClusterError(
            f"cannot reach the Dask scheduler at {address} within {timeout:g}s ({exc}); "
            "check --scheduler / DASK_SCHEDULER_ADDRESS and that the scheduler is running"
        ) from None
    try:
        client.wait_for_workers(1, timeout=timeout)
    except (OSError, TimeoutError):
        client.close()
        raise ClusterError(
            f"the Dask scheduler at {address} has no workers after {timeout:g}s; "
            "start workers with `dask worker " + address + "`"
        ) from None
    return client


def _check_address(address: str) -> None:
    """A malformed address or unknown host is a configuration error, not a cluster outage."""
    try:
        scheme, location = parse_address(address)
        host = location.rsplit(":", 1)[0].strip("[]") if scheme in ("tcp", "tls") else None
    except ValueError as exc:
        raise ConfigError(f"--scheduler {address!r} is not a Dask address ({exc})") from None
    if host:
        try:
            socket.getaddrinfo(host, None)
        except OSError:
            raise ConfigError(
                f"--scheduler {address}: unknown host {host!r}; check the address"
            ) from None
