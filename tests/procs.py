"""Starting and stopping real Dask processes (scheduler, workers) on 127.0.0.1 for tests."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time

from distributed import Client
from distributed.security import Security

BIN = os.path.dirname(sys.executable)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def leaked_setting(name: str) -> bool:
    """Settings a test process may have set for itself (mlflow.set_tracking_uri writes
    MLFLOW_TRACKING_URI into os.environ) that must not reach a job unless a test passes
    them in ``env``."""
    return name == "DASK_SCHEDULER_ADDRESS" or name.startswith("MLFLOW_")


def lrdask(*args, env=None, timeout=300, check=True, preexec_fn=None, prefix=()):
    """Run the installed ``lrdask`` console command as a subprocess (``preexec_fn`` runs
    in the child before it starts: a umask, a resource limit; ``prefix`` is a command that
    runs it, e.g. ``ip netns exec NAME``)."""
    full_env = {k: v for k, v in os.environ.items() if not leaked_setting(k)}
    full_env.update(env or {})
    result = subprocess.run(
        [*prefix, os.path.join(BIN, "lrdask"), *map(str, args)],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        preexec_fn=preexec_fn,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"lrdask {' '.join(map(str, args))} exited {result.returncode}:\n"
            f"{result.stdout}\n{result.stderr}"
        )
    return result


def stop(procs: list[subprocess.Popen], grace: float = 5) -> None:
    """SIGTERM each process still running, SIGKILL whichever is left after ``grace``
    seconds, and reap them all."""
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    deadline = time.monotonic() + grace
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(max(0.1, deadline - time.monotonic()))
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


class RealCluster:
    """`dask scheduler` plus `dask worker` processes, torn down on exit even on failure.

    With ``tls`` (PEM paths under the keys ``ca_file``, ``cert`` and ``key``) scheduler and
    workers are started with Dask's own ``--tls-ca-file/--tls-cert/--tls-key`` and speak only
    TLS; the address is then ``tls://``."""

    def __init__(
        self,
        workers: int,
        tmp_dir: str,
        nanny: bool = False,
        tls: dict[str, str] | None = None,
        memory_limit: str = "2GiB",
        nthreads: int = 1,
    ):
        self.memory_limit = memory_limit
        self.nthreads = nthreads
        self.port = free_port()
        self.address = f"{'tls' if tls else 'tcp'}://127.0.0.1:{self.port}"
        self.tmp_dir = tmp_dir
        self.nanny = nanny
        self.tls = tls
        self.scheduler: subprocess.Popen | None = None
        self.workers: list[subprocess.Popen] = []
        self.n_workers = workers

    def __enter__(self) -> RealCluster:
        try:
            self.scheduler = self._spawn(
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--dashboard-address",
                f"127.0.0.1:{free_port()}",
                "--no-show",
                *(["--protocol", "tls"] if self.tls else []),
            )
            for _ in range(self.n_workers):
                self.add_worker()
            self.wait_for_workers(self.n_workers)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def add_worker(self, env: dict[str, str] | None = None) -> subprocess.Popen:
        """Start one more `dask worker` (``env``: extra environment variables for it)."""
        proc = self._spawn(
            "worker",
            self.address,
            "--host",
            "127.0.0.1",
            "--nthreads",
            str(self.nthreads),
            "--memory-limit",
            self.memory_limit,
            "--no-dashboard",
            "--local-directory",
            self.tmp_dir,
            "--nanny" if self.nanny else "--no-nanny",
            env=env,
        )
        self.workers.append(proc)
        return proc

    def wait_for_workers(self, n: int, timeout: float = 60) -> None:
        with Client(self.address, timeout=timeout, security=self.security()) as client:
            client.wait_for_workers(n, timeout=timeout)

    def security(self) -> Security | None:
        """What a client of this cluster needs (the cluster's own certificate serves)."""
        if not self.tls:
            return None
        return Security(
            tls_ca_file=self.tls["ca_file"],
            tls_client_cert=self.tls["cert"],
            tls_client_key=self.tls["key"],
            require_encryption=True,
        )

    def kill_worker(self, index: int = 0) -> None:
        self.workers[index].send_signal(signal.SIGKILL)
        self.workers[index].wait(10)

    def holders(self) -> list[int]:
        """PIDs of the worker processes that hold a loaded block of a running job, sorted.

        A fault test must hit a worker that matters: blocks are defined by the data alone,
        so a small data set is one block on one worker, and faulting another worker would
        test nothing. Fails the test when no worker holds a block yet."""
        with Client(self.address, timeout=30, security=self.security()) as client:
            has_what = client.has_what()
            pids = client.run(os.getpid)
        found = sorted(
            pids[addr]
            for addr, keys in has_what.items()
            if addr in pids and any(str(key).startswith("lrdask-load-") for key in keys)
        )
        assert found, f"no worker holds a block: {has_what}"
        return found

    def fault_holder(self, sig: int = signal.SIGKILL) -> int:
        """Send ``sig`` to the first worker process that holds a block; its PID."""
        pid = self.holders()[0]
        os.kill(pid, sig)
        return pid

    def worker_processes(self) -> list[int]:
        """PIDs of the worker processes themselves: a nanny's spawned child, or the
        `dask worker` process when there is no nanny."""
        import psutil

        if not self.nanny:
            return [proc.pid for proc in self.workers]
        return [
            child.pid
            for proc in self.workers
            for child in psutil.Process(proc.pid).children()
            if "spawn_main" in " ".join(child.cmdline())
        ]

    def __exit__(self, *exc) -> None:
        stop([*self.workers, *([self.scheduler] if self.scheduler else [])])

    def _spawn(self, role: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        path = os.path.join(self.tmp_dir, f"{role}-{len(self.workers)}.log")
        tls = self.tls
        flags = (
            ["--tls-ca-file", tls["ca_file"], "--tls-cert", tls["cert"], "--tls-key", tls["key"]]
            if tls
            else []
        )
        with open(path, "w") as log:  # the child keeps its own copy of the descriptor
            return subprocess.Popen(
                [os.path.join(BIN, "dask"), role, *args, *flags],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **env} if env else None,
            )
