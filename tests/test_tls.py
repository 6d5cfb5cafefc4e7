"""A real Dask cluster over TLS: `dask scheduler` and `dask worker` with Dask's own TLS flags
on 127.0.0.1, certificates made here by a throw-away CA, and the `lrdask` command with
--tls-ca-file/--tls-cert/--tls-key (or the same keys in a job file, or Dask's own config).
Every TLS mistake is one line: exit 2 before any work when the settings are wrong, exit 3
when the scheduler and lrdask do not trust each other. And the embedded LocalCluster,
which has no TLS, listens on loopback only."""

from __future__ import annotations

import datetime
import ipaddress
import json
import time

import numpy as np
import psutil
import pyarrow.parquet as pq
import pytest
from conftest import random_problem, write_partitions
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from procs import RealCluster, free_port, lrdask

from lrdask.cluster import connect

pytestmark = pytest.mark.cluster

NOW = datetime.datetime.now(datetime.timezone.utc)
DAY = datetime.timedelta(days=1)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(key, path) -> str:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(path)


def _write_cert(cert, path) -> str:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return str(path)


def make_ca(directory, name: str):
    """A self-signed CA: (key, certificate, path of the certificate)."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(_name(name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - DAY)
        .not_valid_after(NOW + DAY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return key, cert, _write_cert(cert, directory / f"{name}.pem")


def make_leaf(directory, ca, name: str, not_after=NOW + DAY) -> tuple[str, str]:
    """A certificate for 127.0.0.1 and localhost signed by ``ca``, for servers and clients
    alike: (certificate path, key path)."""
    ca_key, ca_cert, _ = ca
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - 2 * DAY)
        .not_valid_after(not_after)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return (
        _write_cert(cert, directory / f"{name}.pem"),
        _write_key(key, directory / f"{name}-key.pem"),
    )


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> dict[str, str]:
    """The cluster's CA, a certificate for the cluster and one for lrdask; a second CA with
    a certificate of its own; an expired client certificate from the cluster's CA."""
    d = tmp_path_factory.mktemp("certs")
    ca, other = make_ca(d, "cluster-ca"), make_ca(d, "other-ca")
    node, node_key = make_leaf(d, ca, "node")
    client, client_key = make_leaf(d, ca, "client")
    stranger, stranger_key = make_leaf(d, other, "stranger")
    expired, expired_key = make_leaf(d, ca, "expired", not_after=NOW - DAY)
    return {
        "ca": ca[2],
        "node": node,
        "node_key": node_key,
        "client": client,
        "client_key": client_key,
        "other_ca": other[2],
        "stranger": stranger,
        "stranger_key": stranger_key,
        "expired": expired,
        "expired_key": expired_key,
        "missing": str(d / "no-such-key.pem"),
    }


@pytest.fixture(scope="module")
def tls_cluster(certs, tmp_path_factory):
    tls = {"ca_file": certs["ca"], "cert": certs["node"], "key": certs["node_key"]}
    with RealCluster(2, str(tmp_path_factory.mktemp("cluster")), tls=tls) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> str:
    X, y = random_problem(3000, 4, seed=31)
    return write_partitions(tmp_path_factory.mktemp("data") / "d", X, y, [1000, 1200, 800])


def tls_flags(certs) -> list[str]:
    return [
        "--tls-ca-file",
        certs["ca"],
        "--tls-cert",
        certs["client"],
        "--tls-key",
        certs["client_key"],
    ]


TRAIN = ["--label", "y", "--alpha", 0.5, "--max-iter", 30, "--tol", 0, "--gtol", 0]


def test_train_predict_evaluate_over_tls_equal_the_embedded_cluster(
    tls_cluster, certs, data, tmp_path
):
    remote = ["--scheduler", tls_cluster.address, *tls_flags(certs)]
    local = ["--workers", 2]
    trained = lrdask("train", data, *TRAIN, "--out", tmp_path / "m", *remote)
    assert f"cluster: scheduler {tls_cluster.address}, 2 worker(s)" in trained.stderr
    lrdask("train", data, *TRAIN, "--out", tmp_path / "m-local", *local)
    model = json.loads((tmp_path / "m" / "model.json").read_text())
    reference = json.loads((tmp_path / "m-local" / "model.json").read_text())
    # The same blocks on as many workers, summed in a fixed order: the same bits.
    assert model["coef"] == reference["coef"] and model["intercept"] == reference["intercept"]
    assert model["training"]["loss_history"] == reference["training"]["loss_history"]
    assert model["training"]["n_iter"] == 30

    lrdask("predict", tmp_path / "m", data, "--out", tmp_path / "p", *remote)
    lrdask("predict", tmp_path / "m", data, "--out", tmp_path / "p-local", *local)
    proba = pq.read_table(tmp_path / "p")["probability"].to_numpy()
    expected = pq.read_table(tmp_path / "p-local")["probability"].to_numpy()
    np.testing.assert_allclose(proba, expected, rtol=1e-12)

    metrics = json.loads(lrdask("evaluate", tmp_path / "m", data, *remote).stdout)
    expected = json.loads(lrdask("evaluate", tmp_path / "m", data, *local).stdout)
    assert metrics["confusion"] == expected["confusion"] and metrics["rows"] == 3000
    assert metrics["log_loss"] == pytest.approx(expected["log_loss"], rel=1e-12)
    assert metrics["roc_auc"] == pytest.approx(expected["roc_auc"], rel=1e-12)


def test_tls_settings_from_a_job_file_and_from_dask_config(tls_cluster, certs, data, tmp_path):
    job = tmp_path / "job.toml"
    job.write_text(
        f'data = "{data}"\nlabel = "y"\nout = "{tmp_path / "m"}"\nmax_iter = 3\n'
        f'scheduler = "{tls_cluster.address}"\ntls_ca_file = "{certs["ca"]}"\n'
        f'tls_cert = "{certs["client"]}"\ntls_key = "{certs["client_key"]}"\n'
    )
    result = lrdask("train", "--config", job)
    assert f"cluster: scheduler {tls_cluster.address}, 2 worker(s)" in result.stderr
    assert json.loads((tmp_path / "m" / "model.json").read_text())["training"]["n_iter"] == 3

    # Without the options, Dask's own distributed.comm.tls.* settings are used.
    dask_config = {
        "DASK_DISTRIBUTED__COMM__TLS__CA_FILE": certs["ca"],
        "DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT": certs["client"],
        "DASK_DISTRIBUTED__COMM__TLS__CLIENT__KEY": certs["client_key"],
    }
    result = lrdask(
        "evaluate", tmp_path / "m", data, "--scheduler", tls_cluster.address, env=dask_config
    )
    assert f"cluster: scheduler {tls_cluster.address}, 2 worker(s)" in result.stderr
    assert json.loads(result.stdout)["rows"] == 3000


def _one_error_line(result, code: int) -> str:
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("lrdask: error:")]
    assert len(errors) == 1, result.stderr
    return errors[0]


# (id, options after `--scheduler ADDRESS` or in place of it, exit code, expected text)
ERRORS = [
    ("tls-without-settings", lambda c: [], 2, ["uses TLS, but no --tls-ca-file is given"]),
    (
        "missing-key-file",
        lambda c: ["--tls-ca-file", c["ca"], "--tls-cert", c["client"], "--tls-key", c["missing"]],
        2,
        ["--tls-key", "no-such-key.pem: cannot be read (No such file or directory)"],
    ),
    (
        "cert-without-key",
        lambda c: ["--tls-ca-file", c["ca"], "--tls-cert", c["client"]],
        2,
        ["client.pem holds no private key: give --tls-key"],
    ),
    (
        "key-without-cert",
        lambda c: ["--tls-ca-file", c["ca"], "--tls-key", c["client_key"]],
        2,
        ["uses TLS, but no --tls-cert is given"],
    ),
    (
        "key-of-another-certificate",
        lambda c: ["--tls-ca-file", c["ca"], "--tls-cert", c["client"], "--tls-key", c["node_key"]],
        2,
        ["node-key.pem: the key does not belong to the certificate"],
    ),
    (
        "ca-file-not-a-certificate",
        lambda c: [
            "--tls-ca-file",
            c["client_key"],
            "--tls-cert",
            c["client"],
            "--tls-key",
            c["client_key"],
        ],
        2,
        ["--tls-ca-file", "client-key.pem: no PEM certificate in it"],
    ),
    (
        "wrong-ca",
        lambda c: [
            "--tls-ca-file",
            c["other_ca"],
            "--tls-cert",
            c["client"],
            "--tls-key",
            c["client_key"],
        ],
        3,
        [
            "TLS handshake with the Dask scheduler at tls://127.0.0.1:",
            "failed (the scheduler's certificate: ",
            "other-ca.pem",
            "client.pem",
        ],
    ),
    (
        "client-certificate-from-another-ca",
        lambda c: [
            "--tls-ca-file",
            c["ca"],
            "--tls-cert",
            c["stranger"],
            "--tls-key",
            c["stranger_key"],
        ],
        3,
        [
            "TLS handshake with the Dask scheduler at tls://127.0.0.1:",
            "cluster-ca.pem",
            "stranger.pem",
        ],
    ),
    (
        "expired-client-certificate",
        lambda c: [
            "--tls-ca-file",
            c["ca"],
            "--tls-cert",
            c["expired"],
            "--tls-key",
            c["expired_key"],
        ],
        3,
        ["TLS handshake with the Dask scheduler at tls://127.0.0.1:", "expired.pem"],
    ),
]


@pytest.mark.parametrize("case", ERRORS, ids=[case[0] for case in ERRORS])
def test_tls_mistakes_are_one_line(tls_cluster, certs, data, tmp_path, case):
    _, options, code, expected = case
    out = tmp_path / "m"
    started = time.monotonic()
    result = lrdask(
        "train", data, "--label", "y", "--out", out, "--scheduler", tls_cluster.address,
        "--connect-timeout", 90, *options(certs), check=False, timeout=180,
    )  # fmt: skip
    line = _one_error_line(result, code)
    for text in expected:
        assert text in line, line
    if code == 2:  # the settings are checked before anything else is done
        assert result.stderr.strip().splitlines() == [line]
    else:  # a refused handshake is not retried until --connect-timeout
        assert time.monotonic() - started < 60
    assert not (out / "model.json").exists()


@pytest.mark.parametrize("command", ["train", "predict", "evaluate"])
def test_tls_options_need_a_tls_scheduler(certs, data, tmp_path, command):
    """On every command that takes --scheduler: with a tcp:// address (a real one, nothing
    listens there) and with no address at all (the embedded LocalCluster)."""
    args = {
        "train": ["train", data, "--label", "y", "--out", tmp_path / "m"],
        "predict": ["predict", tmp_path / "no-model", data, "--out", tmp_path / "p"],
        "evaluate": ["evaluate", tmp_path / "no-model", data],
    }[command]
    tcp = f"tcp://127.0.0.1:{free_port()}"
    result = lrdask(*args, "--scheduler", tcp, *tls_flags(certs), check=False)
    line = _one_error_line(result, 2)
    assert f"TLS options need a tls:// scheduler, but --scheduler is {tcp}" in line
    assert f"use tls://127.0.0.1:{tcp.rsplit(':', 1)[1]}" in line
    result = lrdask(*args, "--tls-cert", certs["client"], check=False)
    line = _one_error_line(result, 2)
    assert "--tls-cert: TLS options are for --scheduler tls://" in line
    assert "embedded LocalCluster" in line


def test_tls_mistake_in_a_job_file(tls_cluster, certs, data, tmp_path):
    job = tmp_path / "job.toml"
    job.write_text(
        f'data = "{data}"\nlabel = "y"\nout = "{tmp_path / "m"}"\n'
        f'scheduler = "{tls_cluster.address}"\ntls_ca_file = "{certs["ca"]}"\n'
        f'tls_cert = "{certs["client"]}"\n'
    )
    line = _one_error_line(lrdask("train", "--config", job, check=False), 2)
    assert "--tls-cert" in line and "holds no private key" in line


def _listening(processes) -> set[tuple[int, str, int]]:
    return {
        (proc.pid, conn.laddr.ip, conn.laddr.port)
        for proc in processes
        for conn in proc.net_connections(kind="inet")
        if conn.status == psutil.CONN_LISTEN
    }


def test_the_embedded_cluster_listens_on_loopback_only():
    """Scheduler, dashboard and workers of the LocalCluster lrdask starts without
    --scheduler: nothing another machine could reach."""
    me = psutil.Process()
    before = _listening([me, *me.children(recursive=True)])
    with connect(workers=2) as client:
        assert client.dashboard_link.startswith("http://127.0.0.1:")
        opened = _listening([me, *me.children(recursive=True)]) - before
    assert len({pid for pid, _, _ in opened}) == 3, opened  # this process and 2 workers
    assert {ip for _, ip, _ in opened} == {"127.0.0.1"}, opened
