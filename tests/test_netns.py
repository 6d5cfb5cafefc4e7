"""Separate hosts on one machine: the scheduler, the driver and two workers, each in its own
Linux network namespace, joined by a private bridge (issue 16, "Separate hosts, tested").

Each "host" has its own interfaces, address, ports and loopback, so nothing can pass over
127.0.0.1 from one to another. They still share the filesystem. That stands for the one
thing the job assumes all hosts share: the data location (and predict's output location;
the README says so). The driver has no route to the workers at all, which checks that the
job talks to them only through the scheduler. The bridge sits in a namespace of its own,
so the machine's own network and firewall are never touched, and parallel runs can use
the same subnet. Needs root: skipped where network namespaces cannot be made.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import random_problem, write_partitions
from procs import BIN, leaked_setting, lrdask, stop
from reference import numpy_gradient_descent

pytestmark = [pytest.mark.cluster, pytest.mark.netns]

IP = shutil.which("ip") or shutil.which("ip", path="/usr/sbin:/sbin")
HOSTS = ("scheduler", "driver", "w0", "w1")
WORKERS = ("w0", "w1")
# Each namespace has ports of its own: these are free by construction.
SCHEDULER_PORT = 8786
DASHBOARD_PORT = 8787

# Run in the driver's namespace: wait for both workers (through the scheduler), then try
# to open a TCP connection to each worker directly (the driver has no route to them).
WAIT_FOR_WORKERS = """
import json, socket, sys
from distributed import Client
with Client(sys.argv[1], timeout=30) as client:
    client.wait_for_workers(2, timeout=60)
    workers = sorted(client.scheduler_info(n_workers=-1)["workers"])
direct = {}
for address in workers:
    host, port = address.split("://")[1].rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
        direct[address] = "connected"
    except OSError as exc:
        direct[address] = exc.strerror or type(exc).__name__
print(json.dumps({"workers": workers, "direct": direct}))
"""

# Run in the driver's namespace: GET each URL (following redirects), print status or error.
FETCH = """
import json, sys, urllib.request
found = {}
for url in sys.argv[1:]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            found[url] = [response.status, response.geturl()]
    except OSError as exc:
        found[url] = [None, str(getattr(exc, "reason", exc))]
print(json.dumps(found))
"""


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([IP, *args], capture_output=True, text=True, timeout=30)
    if check and result.returncode != 0:
        raise AssertionError(f"ip {' '.join(args)} exited {result.returncode}: {result.stderr}")
    return result


def clean_env() -> dict[str, str]:
    """The environment for processes the test starts, without the test's own leaks."""
    return {k: v for k, v in os.environ.items() if not leaked_setting(k)}


def forbidden() -> str | None:
    """Why this machine cannot make network namespaces, or None. Only a missing `ip`, not
    being root, or a refusal for lack of permission skips; any other failure fails."""
    if IP is None:
        return "no `ip` command (iproute2) on this machine"
    if os.geteuid() != 0:
        return f"network namespaces need root (`ip netns add`); the test runs as uid {os.geteuid()}"
    name = f"lrdask-probe-{secrets.token_hex(3)}"
    result = ip("netns", "add", name, check=False)
    if result.returncode == 0:
        ip("netns", "del", name)
        return None
    said = result.stderr.strip()
    if "not permitted" in said.lower() or "permission denied" in said.lower():
        return f"this machine forbids network namespaces: `ip netns add` says {said!r}"
    raise AssertionError(f"`ip netns add {name}` failed: {said}")


@pytest.fixture(scope="module")
def namespaces_allowed() -> None:
    """The probe, once per module."""
    reason = forbidden()
    if reason:
        pytest.skip(reason)


class Network:
    """The namespaces ``lrdask-<suffix>-<host>`` for HOSTS at 10.213.N.2-5/24, each with
    ``eth0`` (one end of a veth pair whose other end is a port of ``br0`` in the
    namespace ``lrdask-<suffix>-switch``) and loopback up. The suffix is the test
    process's pid and a random byte, so parallel runs do not collide and a run that was
    killed before its teardown is reaped by the next one (``reap``)."""

    def __init__(self, logs: Path):
        self.suffix = f"{os.getpid()}x{secrets.token_hex(1)}"  # the owner's pid: see reap
        self.switch = f"lrdask-{self.suffix}-switch"
        self.ns = {host: f"lrdask-{self.suffix}-{host}" for host in HOSTS}
        subnet = f"10.213.{secrets.randbelow(256)}"
        self.ip = {host: f"{subnet}.{i + 2}" for i, host in enumerate(HOSTS)}
        self.logs = logs
        self.procs: list[subprocess.Popen] = []

    def create(self) -> None:
        ip("netns", "add", self.switch)
        ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        ip("-n", self.switch, "link", "set", "br0", "up")
        for i, host in enumerate(HOSTS):
            ns, port = self.ns[host], f"v{self.suffix}{i}"
            ip("netns", "add", ns)
            ip("-n", self.switch, "link", "add", port, "type", "veth", "peer", "name", "eth0",
               "netns", ns)  # fmt: skip
            ip("-n", self.switch, "link", "set", port, "master", "br0", "up")
            ip("-n", ns, "addr", "add", f"{self.ip[host]}/24", "dev", "eth0")
            ip("-n", ns, "link", "set", "eth0", "up")
            ip("-n", ns, "link", "set", "lo", "up")
        for host in WORKERS:  # the driver reaches the workers only through the scheduler
            ip("-n", self.ns["driver"], "route", "add", "unreachable", f"{self.ip[host]}/32")

    def on(self, host: str) -> list[str]:
        """The command prefix that runs a command on ``host``."""
        return [IP, "netns", "exec", self.ns[host]]

    def spawn(self, host: str, *args: str) -> subprocess.Popen:
        """`dask ARGS` on ``host``, logging to ``<logs>/<host>.log``."""
        with open(self.logs / f"{host}.log", "w") as log:  # the child keeps its own copy
            proc = subprocess.Popen(
                [*self.on(host), os.path.join(BIN, "dask"), *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=clean_env(),
            )
        self.procs.append(proc)
        return proc

    def python(self, host: str, code: str, *args: str, timeout: float = 90) -> dict:
        """Run ``code`` on ``host`` with this test's Python; the JSON it prints."""
        result = subprocess.run(
            [*self.on(host), sys.executable, "-c", code, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=clean_env(),
        )
        if result.returncode != 0:
            raise AssertionError(
                f"python on {host} exited {result.returncode}:\n{result.stderr}\n{self.tails()}"
            )
        return json.loads(result.stdout)

    def tails(self) -> str:
        """The last lines of every process log, for failure messages."""
        return "\n".join(
            f"--- {path.name}\n" + "\n".join(path.read_text().splitlines()[-15:])
            for path in sorted(self.logs.glob("*.log"))
        )

    def destroy(self) -> list[str]:
        """Stop the processes, delete the namespaces (their interfaces and the bridge go
        with them). Returns what is left of this network: should be nothing."""
        stop(self.procs)
        left = []
        for ns in [*self.ns.values(), self.switch]:
            for pid in ip("netns", "pids", ns, check=False).stdout.split():
                left.append(f"process {pid} still in {ns}")  # a child of ours
                os.kill(int(pid), signal.SIGKILL)
            ip("netns", "del", ns, check=False)
        left += [
            f"namespace {line}" for line in ip("netns", "list").stdout.splitlines()
            if self.suffix in line
        ]  # fmt: skip
        left += [
            f"link {line}" for line in ip("-o", "link", "show").stdout.splitlines()
            if self.suffix in line
        ]  # fmt: skip
        return left


def reap() -> list[str]:
    """Delete the namespaces (and kill the processes in them) of earlier runs whose test
    process is gone: a run killed with SIGKILL never reaches its teardown."""
    reaped = []
    for line in ip("netns", "list").stdout.splitlines():
        name = line.split()[0]
        found = re.fullmatch(r"lrdask-(\d+)x[0-9a-f]+-\w+", name)
        if not found or os.path.exists(f"/proc/{found.group(1)}"):
            continue
        for pid in ip("netns", "pids", name, check=False).stdout.split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        ip("netns", "del", name, check=False)
        reaped.append(name)
    return reaped


@pytest.fixture
def network(namespaces_allowed, tmp_path):
    """A fresh Network, torn down even on failure; the teardown asserts nothing is left.
    Namespaces left by a killed earlier run are deleted first."""
    reap()
    logs = tmp_path / "logs"
    logs.mkdir()
    net = Network(logs)
    try:
        net.create()
        yield net
    finally:
        left = net.destroy()
    assert not left, f"left behind: {left}"


def test_train_predict_evaluate_across_network_namespaces(network, tmp_path):
    """train, predict and evaluate, run on the driver host against a scheduler and two
    workers on hosts of their own: all succeed, the model equals NumPy's gradient descent,
    and the dashboard link train prints opens from the driver."""
    X, y = random_problem(160_000, 4, seed=16)
    # 4 files of 40,000 rows: 2 blocks (closed at 65,536 rows), one per worker
    data = write_partitions(tmp_path / "data", X, y, [40_000] * 4)
    host = network.ip["scheduler"]
    address = f"tcp://{host}:{SCHEDULER_PORT}"
    network.spawn(
        "scheduler", "scheduler", "--host", host, "--port", str(SCHEDULER_PORT),
        "--dashboard-address", f"{host}:{DASHBOARD_PORT}", "--no-show",
    )  # fmt: skip
    for worker in WORKERS:
        network.spawn(
            worker, "worker", address, "--host", network.ip[worker], "--nthreads", "1",
            "--memory-limit", "2GiB", "--no-dashboard", "--no-nanny",
            "--local-directory", str(tmp_path / worker),
        )  # fmt: skip
    found = network.python("driver", WAIT_FOR_WORKERS, address)
    assert sorted(urlsplit(a).hostname for a in found["workers"]) == sorted(
        network.ip[w] for w in WORKERS
    ), found
    # the driver cannot open a connection to a worker: whatever the job does goes through
    # the scheduler
    assert set(found["direct"].values()) == {"No route to host"}, found

    driver = network.on("driver")
    model = tmp_path / "model"
    train = lrdask(
        "train", data, "--label", "y", "--out", model, "--alpha", 0.8, "--max-iter", 30,
        "--tol", 0, "--gtol", 0, "--scheduler", address, prefix=driver, timeout=120,
    )  # fmt: skip
    assert f"cluster: scheduler {address}, 2 worker(s)" in train.stderr, train.stderr
    assert "runs as tasks" not in train.stderr  # every pass took the fast path
    doc = json.loads((model / "model.json").read_text())
    assert doc["training"]["n_partitions"] == 2
    w, b, costs = numpy_gradient_descent(X, y, 0.8, 30)
    np.testing.assert_allclose(doc["coef"], w, rtol=1e-10, atol=1e-12)
    assert doc["intercept"] == pytest.approx(b, rel=1e-10, abs=1e-12)
    np.testing.assert_allclose(doc["training"]["loss_history"][:30], costs, rtol=1e-10)

    link = re.search(r"Dask dashboard: (\S+)", train.stderr)
    assert link, train.stderr
    link = link.group(1)
    assert urlsplit(link).hostname == host, link  # the address the driver connected to
    # the same port on the driver's own loopback must fail: a link naming 127.0.0.1 would
    loopback = f"http://127.0.0.1:{DASHBOARD_PORT}/status"
    fetched = network.python("driver", FETCH, link, loopback)
    assert fetched[link][0] == 200, fetched
    assert fetched[loopback][0] is None, fetched

    coef, intercept = np.array(doc["coef"]), doc["intercept"]
    z = X @ coef + intercept
    preds = tmp_path / "preds"
    lrdask("predict", model, data, "--out", preds, "--scheduler", address, prefix=driver)
    table = pq.read_table(preds)
    np.testing.assert_allclose(table["probability"].to_numpy(), 1 / (1 + np.exp(-z)), rtol=1e-12)
    assert table["prediction"].to_numpy().tolist() == (z > 0).astype(np.int64).tolist()

    evaluated = lrdask("evaluate", model, data, "--scheduler", address, prefix=driver)
    metrics = json.loads(evaluated.stdout)
    assert metrics["rows"] == len(y)
    assert metrics["log_loss"] == pytest.approx(np.mean(np.logaddexp(0, z) - y * z), rel=1e-10)
    assert metrics["accuracy"] == np.mean((z > 0) == (y == 1))


def test_namespaces_of_a_killed_run_are_reaped_and_live_ones_kept(namespaces_allowed):
    gone = subprocess.Popen(["true"])
    gone.wait()
    dead = f"lrdask-{gone.pid}x{secrets.token_hex(1)}-w0"
    live = f"lrdask-{os.getpid()}x{secrets.token_hex(1)}-w0"
    try:
        ip("netns", "add", dead)
        ip("netns", "add", live)
        reaped = reap()
        names = ip("netns", "list").stdout
        assert dead in reaped and dead not in names
        assert live not in reaped and live in names
    finally:
        ip("netns", "del", dead, check=False)
        ip("netns", "del", live, check=False)
