"""deploy/: the Docker, Compose, Kubernetes and Airflow files, checked against the real code.

What runs here and what is only checked (no Docker engine, no Kubernetes on this machine):

- every YAML file parses; every ``lrdask`` and ``dask`` command line in the Dockerfile, the
  Compose file, the Kubernetes manifests and the Airflow DAG is parsed by the real click
  commands (an option the CLI no longer has fails); every TOML job config is loaded by
  lrdask's own config loader against the train command's option names;
- the Dockerfile's entry point, COPY sources and image names; the Kubernetes manifests
  against the Kubernetes JSON schemas (kubernetes-validate, strict) and against each other;
- security: every dask and lrdask process in the manifests speaks TLS with files from a
  Secret that cert-manager fills, mounted read-only; the NetworkPolicies admit only each Dask
  cluster's own pods and its job, on named ports, and nobody to the dashboard; object
  storage credentials come from workload identity; Compose publishes on loopback only;
- RUN: the Compose file's scheduler, two workers, make-data and train commands, as local
  processes (host names, ports and volume paths rewritten), down to the model's _SUCCESS;
- RUN: the DAG loaded by Airflow's own DagBag in a separate virtualenv, and its three
  tasks' callables called in order with Airflow's template rendering, training for real.
"""

from __future__ import annotations

import ast
import contextlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import click
import pytest
import yaml
from procs import free_port, lrdask

from lrdask.cli import cli
from lrdask.config import load_config
from lrdask.errors import ConfigError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
DOCKERFILE = DEPLOY / "docker" / "Dockerfile"
COMPOSE = DEPLOY / "docker" / "docker-compose.yml"
KUBE = DEPLOY / "kubernetes"
DAG_FILE = DEPLOY / "airflow" / "lrdask_nightly.py"
BIN = os.path.dirname(sys.executable)

# Airflow gets its own virtualenv (its pins conflict with ours), made once and reused.
AIRFLOW_VERSION = "3.3.2"
AIRFLOW_VENV = Path(os.environ.get("LRDASK_AIRFLOW_VENV", ROOT / ".venv-airflow"))
K8S_VERSION = "1.31"  # podFailurePolicy is GA from 1.31


# --------------------------------------------------------------------------- parsing


def yaml_files() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".yml", ".yaml", ".json"))


def yaml_docs(path: Path) -> list:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    lines, current = [], ""
    for raw in DOCKERFILE.read_text().splitlines():
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):  # also inside a continued instruction
            continue
        current += " " + stripped.removesuffix("\\").strip()
        if not stripped.endswith("\\"):
            lines.append(current.strip())
            current = ""
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def image_entrypoint() -> tuple[list[str], list[str]]:
    """The image's ENTRYPOINT and CMD (exec form) from the Dockerfile."""
    found = {
        instr: json.loads(args) for instr, args in dockerfile() if instr in ("ENTRYPOINT", "CMD")
    }
    return found["ENTRYPOINT"], found.get("CMD", [])


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def compose_argv(service: dict) -> list[str]:
    """What a Compose service runs: its entrypoint (or the image's) plus its command."""
    entrypoint, cmd = image_entrypoint()
    if "entrypoint" in service:  # overriding the entrypoint drops the image's CMD
        return [*service["entrypoint"], *service.get("command", [])]
    return [*entrypoint, *service.get("command", cmd)]


def kube_docs() -> list[tuple[Path, dict]]:
    return [
        (path, doc)
        for path in sorted(KUBE.glob("*.yaml"))
        if path.name != "kustomization.yaml"
        for doc in yaml_docs(path)
    ]


def pod_specs(doc: dict) -> list[tuple[str, dict]]:
    """Every Pod spec inside a manifest, named by where it sits."""
    kind, spec = doc["kind"], doc.get("spec", {})
    if kind == "CronJob":
        return [("jobTemplate", spec["jobTemplate"]["spec"]["template"]["spec"])]
    if kind in ("Job", "Deployment", "StatefulSet"):
        return [("template", spec["template"]["spec"])]
    if kind == "DaskCluster":
        return [("scheduler", spec["scheduler"]["spec"]), ("worker", spec["worker"]["spec"])]
    if kind == "DaskJob":
        cluster = spec["cluster"]["spec"]
        return [
            ("job", spec["job"]["spec"]),
            ("scheduler", cluster["scheduler"]["spec"]),
            ("worker", cluster["worker"]["spec"]),
        ]
    return []


def container_argv(container: dict) -> list[str]:
    """Kubernetes: `command` replaces the ENTRYPOINT (and drops CMD), `args` replaces CMD."""
    entrypoint, cmd = image_entrypoint()
    if "command" in container:
        return [*container["command"], *container.get("args", [])]
    return [*entrypoint, *container.get("args", cmd)]


def containers() -> list[tuple[str, dict, dict]]:
    return [
        (f"{path.name}:{doc['kind']}/{where}", doc, container)
        for path, doc in kube_docs()
        for where, pod in pod_specs(doc)
        for container in pod["containers"]
    ]


SHELL_OPS = {";", "&&", "||", "|", "&", "(", ")"}


def invocations(argv: list[str], program: str) -> list[list[str]]:
    """The argument lists `program` is called with, in an argv or an `sh -c` script."""
    if not argv:
        return []
    if os.path.basename(argv[0]) == program:
        return [list(argv[1:])]
    if os.path.basename(argv[0]) in ("sh", "bash") and len(argv) >= 3 and argv[1] == "-c":
        return shell_invocations(argv[2], program)
    return []


def shell_invocations(script: str, program: str) -> list[list[str]]:
    # Jinja expressions and $(...) substitutions stand in for one word each.
    script = re.sub(r"\{\{.*?\}\}", "TEMPLATED", script)
    script = re.sub(r"\$\([^()]*\)", "SUBSTITUTED", script)
    lexer = shlex.shlex(script, posix=True, punctuation_chars=";&|()")
    lexer.whitespace_split = True
    found, segment = [], []
    for token in [*lexer, ";"]:
        if token not in SHELL_OPS:
            segment.append(token)
            continue
        while segment and (segment[0] == "exec" or re.match(r"^\w+=", segment[0])):
            segment.pop(0)
        if segment and os.path.basename(segment[0]) == program:
            found.append(segment[1:])
        segment = []
    return found


def dag_commands(program: str) -> list[list[str]]:
    """Command lines written as string constants in the Airflow DAG file (f-strings, which
    hold messages, not commands, are left out)."""
    tree = ast.parse(DAG_FILE.read_text())
    in_fstrings = {
        id(part)
        for node in ast.walk(tree)
        if isinstance(node, ast.JoinedStr)
        for part in ast.walk(node)
    }
    found = []
    for node in ast.walk(tree):
        is_text = isinstance(node, ast.Constant) and isinstance(node.value, str)
        if is_text and id(node) not in in_fstrings and re.match(rf"\s*{program}\s", node.value):
            found.extend(shell_invocations(node.value, program))
    return found


def all_invocations(program: str) -> dict[str, list[list[str]]]:
    """Every call of `program` in the Dockerfile, Compose, Kubernetes and the DAG, by source."""
    out: dict[str, list[list[str]]] = {}
    entrypoint, cmd = image_entrypoint()
    out["Dockerfile"] = invocations([*entrypoint, *cmd], program)
    for name, service in compose()["services"].items():
        out[f"compose:{name}"] = invocations(compose_argv(service), program)
        health = service.get("healthcheck", {}).get("test", [])
        if health[:1] == ["CMD"]:
            out[f"compose:{name}:healthcheck"] = invocations(health[1:], program)
    for where, _, container in containers():
        out[f"{where}/{container['name']}"] = invocations(container_argv(container), program)
    out["airflow"] = dag_commands(program)
    return {where: calls for where, calls in out.items() if calls}


# --------------------------------------------------------------- checks against the CLI


def option_names(command: click.Command) -> set[str]:
    ctx = click.Context(command)
    return {
        opt
        for param in command.get_params(ctx)
        if isinstance(param, click.Option)
        for opt in (*param.opts, *param.secondary_opts)
    }


def check_command(group: click.Group, prog: str, args: list[str]) -> list[str]:
    """Problems with `prog args...` according to the click group that implements it."""
    if not args:
        return [f"{prog}: no subcommand"]
    if args[0].startswith("-"):
        unknown = [a for a in args if a.startswith("-") and a not in option_names(group)]
        return [f"{prog}: unknown option(s) {unknown}"] if unknown else []
    name, rest = args[0], list(args[1:])
    command = group.commands.get(name)
    if command is None:
        return [f"{prog} has no command {name!r} (it has {sorted(group.commands)})"]
    known = option_names(command)
    problems = [
        f"{prog} {name} has no option {flag!r}"
        for flag in (a.split("=", 1)[0] for a in rest if a.startswith("--") or a[:1] == "-")
        if flag not in known and flag != "-"
    ]
    if not problems:
        try:
            with command.make_context(f"{prog} {name}", rest):
                pass
        except click.ClickException as exc:
            problems.append(f"{prog} {' '.join(args)}: {exc.format_message()}")
    return problems


TLS_FLAGS = ("--tls-ca-file", "--tls-cert", "--tls-key")


def with_tls_files(args: list[str], root: Path) -> list[str]:
    """Dask's CLI insists that its --tls-* files exist: ``args`` with each such path moved
    under ``root``, where an empty file now stands (the Secret is mounted only in the pod)."""
    out = list(args)
    for i, arg in enumerate(args[:-1]):
        if arg in TLS_FLAGS:
            path = root / args[i + 1].lstrip("/")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
            out[i + 1] = str(path)
    return out


def dask_group() -> click.Group:
    from distributed.cli.dask_scheduler import main as scheduler
    from distributed.cli.dask_worker import main as worker

    return click.Group("dask", commands={"scheduler": scheduler, "worker": worker})


def train_known_keys() -> set[str]:
    """The keys a job config may hold: exactly what `lrdask train --config` accepts."""
    params = {p.name for p in cli.commands["train"].params}
    return params - {"config_file", "params", "storage_pairs"} | {"storage_options"}


def embedded_tomls() -> list[tuple[str, str]]:
    found = [(str(p.relative_to(ROOT)), p.read_text()) for p in sorted(DEPLOY.rglob("*.toml"))]
    for path, doc in kube_docs():
        if doc["kind"] == "ConfigMap":
            for key, text in doc.get("data", {}).items():
                if key.endswith(".toml"):
                    found.append((f"{path.name}:{doc['metadata']['name']}/{key}", text))
    return found


def check_job_config(text: str, tmp_path: Path) -> dict:
    """Load a job file with lrdask's own loader and type-check each value with click."""
    path = tmp_path / "job.toml"
    path.write_text(text)
    params = {"RUN_DATE": "2026-11-26", "DATA_ROOT": "/lake", "MODEL_ROOT": "/models"}
    config = load_config(str(path), train_known_keys(), params)
    command = cli.commands["train"]
    ctx = click.Context(command)
    by_name = {p.name: p for p in command.params}
    for key, value in config.items():
        if key != "storage_options":
            by_name[key].type_cast_value(ctx, value)  # raises click.BadParameter
    return config


# ------------------------------------------------------------------------- the tests


@pytest.mark.parametrize("path", yaml_files(), ids=lambda p: str(p.relative_to(DEPLOY)))
def test_every_yaml_file_parses(path):
    docs = yaml_docs(path)
    assert docs, f"{path} holds no document"
    assert all(isinstance(doc, dict) for doc in docs)


def test_deploy_tree_is_complete():
    for path in (DOCKERFILE, COMPOSE, KUBE / "README.md", DAG_FILE, DEPLOY / "README.md"):
        assert path.is_file(), path
    assert (DEPLOY / "airflow" / "README.md").is_file()
    kinds = {doc["kind"] for _, doc in kube_docs()}
    assert {"DaskCluster", "ConfigMap", "CronJob", "NetworkPolicy", "ServiceAccount"} <= kinds
    assert {"Certificate", "Issuer"} <= kinds


def test_lrdask_commands_use_only_real_subcommands_and_options():
    calls = all_invocations("lrdask")
    sources = {where.split(":")[0].split("/")[0] for where in calls}
    assert {"Dockerfile", "compose", "airflow"} <= sources, calls
    assert any(where.startswith("cronjob-train.yaml") for where in calls), calls
    commands = sorted({args[0] for found in calls.values() for args in found})
    assert {"train", "make-data"} <= set(commands)
    problems = [
        f"{where}: {problem}"
        for where, found in calls.items()
        for args in found
        for problem in check_command(cli, "lrdask", args)
    ]
    assert problems == []


def test_dask_commands_use_only_real_options(tmp_path):
    calls = all_invocations("dask")
    assert sum(len(found) for found in calls.values()) >= 7, calls  # compose 3, k8s 4
    group = dask_group()
    problems = [
        f"{where}: {problem}"
        for where, found in calls.items()
        for args in found
        for problem in check_command(group, "dask", with_tls_files(args, tmp_path))
    ]
    assert problems == []


def test_the_command_check_catches_what_the_cli_does_not_have():
    """The checks above fail when a manifest names an option or command the CLI lacks."""
    assert check_command(cli, "lrdask", ["train", "--config", "x.toml"]) == []
    assert check_command(cli, "lrdask", ["train", "--no-such-option", "1"])
    assert check_command(cli, "lrdask", ["train", "--max-iter", "many"])
    assert check_command(cli, "lrdask", ["trian", "--config", "x.toml"])
    assert check_command(cli, "lrdask", ["predict", "model"])  # DATA and --out missing
    assert check_command(dask_group(), "dask", ["worker", "--nthread", "1"])
    assert shell_invocations('exec lrdask train --param D="$(date -u +%F)" && echo', "lrdask") == [
        ["train", "--param", "D=SUBSTITUTED"]
    ]


def test_job_configs_hold_only_train_options(tmp_path):
    found = embedded_tomls()
    assert any("ConfigMap" in where or "configmap" in where for where, _ in found), found
    for where, text in found:
        try:
            config = check_job_config(text, tmp_path)
        except (ConfigError, click.BadParameter) as exc:
            pytest.fail(f"{where}: {exc}")
        missing = {"data", "label", "out"} - set(config)
        assert not missing, f"{where} lacks {missing}: the nightly command gives none of them"
    with pytest.raises(ConfigError, match="unknown key 'max_iters'"):
        check_job_config("max_iters = 5\n", tmp_path)
    with pytest.raises(click.BadParameter):
        check_job_config('log_format = "yaml"\n', tmp_path)


def test_dockerfile_builds_the_lrdask_entry_point(tmp_path):
    instructions = dockerfile()
    assert instructions[0] == ("FROM", "python:3.11-slim")
    entrypoint, _ = image_entrypoint()
    assert entrypoint == ["lrdask"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert "lrdask" in scripts  # the console script pip installs into the image's PATH
    runs = " ".join(args for instr, args in instructions if instr == "RUN")
    assert re.search(r"pip install \"?\.\[s3\]\"?", runs), runs
    # The build context is the repository root (compose: context ../..); the COPY sources
    # must exist there and be enough for `pip install .` (build a wheel from only them).
    context = tmp_path / "context"
    for instr, args in instructions:
        if instr == "COPY":
            *sources, _dest = args.split()
            for source in sources:
                src = ROOT / source
                assert src.exists(), f"COPY {source}: not in the repository"
                if src.is_dir():
                    shutil.copytree(
                        src, context / source, ignore=shutil.ignore_patterns("__pycache__")
                    )
                else:
                    (context / source).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy(src, context / source)
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
         "-w", str(tmp_path / "wheels"), str(context)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert list((tmp_path / "wheels").glob("lrdask-*.whl"))


def test_compose_file_shape():
    spec = compose()
    services = spec["services"]
    assert set(services) == {
        "dask-scheduler",
        "dask-worker-1",
        "dask-worker-2",
        "make-data",
        "train",
    }
    for name, service in services.items():
        assert isinstance(service["command"], list), f"{name}: command must be a YAML list"
        build = service["build"]
        assert (COMPOSE.parent / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (COMPOSE.parent / source).exists(), f"{name}: {source}"
            else:
                assert source in spec["volumes"], f"{name}: volume {source} not declared"
        for dep, how in service.get("depends_on", {}).items():
            assert dep in services
            assert how["condition"] in (
                "service_started", "service_healthy", "service_completed_successfully"
            )  # fmt: skip
            if how["condition"] == "service_healthy":
                assert "healthcheck" in services[dep], dep
    train = services["train"]
    assert compose_argv(train)[:4] == ["lrdask", "train", "--config", "/jobs/train.toml"]
    assert train["environment"]["DASK_SCHEDULER_ADDRESS"] == "tcp://dask-scheduler:8786"
    assert train["depends_on"]["make-data"]["condition"] == "service_completed_successfully"
    assert compose_argv(services["dask-scheduler"])[:2] == ["dask", "scheduler"]
    for worker in ("dask-worker-1", "dask-worker-2"):
        argv = compose_argv(services[worker])
        assert argv[:3] == ["dask", "worker", "tcp://dask-scheduler:8786"]
        assert argv[argv.index("--nthreads") + 1] == "1"


def test_one_image_everywhere():
    images = {name: s["image"] for name, s in compose()["services"].items()}
    images.update({f"{where}/{c['name']}": c["image"] for where, _, c in containers()})
    assert len(set(images.values())) == 1, images
    name = next(iter(images.values()))
    assert re.fullmatch(r"lrdask:[\w.-]+", name)
    assert f"-t {name} " in DOCKERFILE.read_text()  # the build command the Dockerfile documents


def test_kubernetes_manifests_match_the_schemas():
    import kubernetes_validate  # a test dependency: the schemas ship inside the package

    def validate(doc):
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = ".".join(map(str, exc.path))
            pytest.fail(f"{doc['kind']} {doc['metadata']['name']}: {where}: {exc.message}")

    builtin = 0
    for _, doc in kube_docs():
        if doc["apiVersion"] == "cert-manager.io/v1":
            continue  # cert-manager's CRDs: no schema here; checked by the TLS test below
        if doc["apiVersion"] == "kubernetes.dask.org/v1":
            # The operator's resources embed plain Pod specs and a Service spec.
            for where, pod in pod_specs(doc):
                validate(
                    {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": where}, "spec": pod}
                )
            cluster = (
                doc["spec"] if doc["kind"] == "DaskCluster" else doc["spec"]["cluster"]["spec"]
            )
            service = cluster["scheduler"]["service"]
            validate(
                {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": service}
            )
            assert isinstance(cluster["worker"]["replicas"], int)
        else:
            validate(doc)
            builtin += 1
    assert builtin >= 6  # Namespace, ServiceAccount, 2 NetworkPolicies, ConfigMap, CronJob
    # The schema check is strict: a misspelt field fails.
    bad = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "dta": {}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSION, strict=True)


def test_kubernetes_manifests_agree_with_each_other():
    docs = {(doc["kind"], doc["metadata"]["name"]): doc for _, doc in kube_docs()}
    namespaces = {
        doc["metadata"].get("namespace") for _, doc in kube_docs() if doc["kind"] != "Namespace"
    }
    assert namespaces == {"lrdask"}
    assert ("Namespace", "lrdask") in docs
    [cluster] = [doc for (kind, _), doc in docs.items() if kind == "DaskCluster"]
    [cron] = [doc for (kind, _), doc in docs.items() if kind == "CronJob"]

    # The scheduler Service the operator creates: <cluster>-scheduler, 8786 and 8787.
    name, ns = cluster["metadata"]["name"], cluster["metadata"]["namespace"]
    for owner, spec in [(name, cluster["spec"])] + [
        (doc["metadata"]["name"], doc["spec"]["cluster"]["spec"])
        for (kind, _), doc in docs.items()
        if kind == "DaskJob"
    ]:
        service = spec["scheduler"]["service"]
        assert service["selector"] == {
            "dask.org/cluster-name": owner,
            "dask.org/component": "scheduler",
        }
        ports = {p["name"]: p for p in service["ports"]}
        assert ports["tcp-comm"]["port"] == 8786 and ports["http-dashboard"]["port"] == 8787
        [scheduler] = spec["scheduler"]["spec"]["containers"]
        named = {p["name"]: p["containerPort"] for p in scheduler["ports"]}
        assert {p["targetPort"] for p in service["ports"]} <= set(named)
        argv = container_argv(scheduler)
        assert argv[:2] == ["dask", "scheduler"]
        assert argv[argv.index("--port") + 1] == str(named["tcp-comm"])
        for container in spec["worker"]["spec"]["containers"]:
            assert container_argv(container)[:2] == ["dask", "worker"]
            assert "resources" in container and "limits" in container["resources"]

    # The CronJob: the scheduler's in-cluster address, the ConfigMap, exit-code policy.
    job = cron["spec"]["jobTemplate"]["spec"]
    pod = job["template"]["spec"]
    [train] = pod["containers"]
    env = {e["name"]: e.get("value") for e in train["env"]}
    assert env["DASK_SCHEDULER_ADDRESS"] == f"tls://{name}-scheduler.{ns}.svc.cluster.local:8786"
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    assert len(cron["spec"]["schedule"].split()) == 5
    assert job["backoffLimit"] >= 1
    assert pod["restartPolicy"] == "Never"
    [rule] = [r for r in job["podFailurePolicy"]["rules"] if r["action"] == "FailJob"]
    assert rule["onExitCodes"]["containerName"] == train["name"]
    assert rule["onExitCodes"]["operator"] == "In"
    assert 2 in rule["onExitCodes"]["values"] and 3 not in rule["onExitCodes"]["values"]
    [args] = invocations(container_argv(train), "lrdask")
    config = args[args.index("--config") + 1]
    volumes = {v["name"]: v for v in pod["volumes"]}
    for mount in train["volumeMounts"]:
        if config.startswith(mount["mountPath"] + "/"):
            configmap = docs[("ConfigMap", volumes[mount["name"]]["configMap"]["name"])]
            assert config.removeprefix(mount["mountPath"] + "/") in configmap["data"]
            break
    else:
        pytest.fail(f"--config {config} is not under a mounted ConfigMap")


def test_kustomization_lists_the_manifests():
    kustomization = yaml.safe_load((KUBE / "kustomization.yaml").read_text())
    resources = kustomization["resources"]
    assert all((KUBE / r).is_file() for r in resources)
    assert {"daskcluster.yaml", "configmap-train.yaml", "cronjob-train.yaml"} <= set(resources)
    assert {"networkpolicy.yaml", "certificates.yaml", "serviceaccount.yaml"} <= set(resources)
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return  # the file list was checked; kustomize itself is not on this machine
    result = subprocess.run(
        [kubectl, "kustomize", str(KUBE)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    built = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    assert len(built) == sum(len(yaml_docs(KUBE / r)) for r in resources)


# ------------------------------------------------------- Kubernetes: what is exposed


def selects(selector: dict, labels: dict) -> bool:
    """Kubernetes label-selector semantics: matchLabels and matchExpressions."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": labels.get(key) not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[op]
        if not ok:
            return False
    return True


def cluster_of(address: str) -> str:
    """tls://lrdask-scheduler.lrdask.svc.cluster.local:8786 -> lrdask (the DaskCluster)."""
    host = address.split("://", 1)[1].split(".")[0].split(":")[0]
    return host.removesuffix("-scheduler")


def kube_pods() -> list[tuple[str, str, dict, dict]]:
    """(role, Dask cluster, labels, Pod spec) for every Pod the manifests lead to: the
    operator labels the scheduler, worker and DaskJob runner Pods with the DaskCluster's
    (or DaskJob's) own labels plus dask.org/cluster-name and dask.org/component
    (dask-kubernetes, operator/controller.py); the CronJob's Pod has its template's labels
    and belongs to the cluster its DASK_SCHEDULER_ADDRESS names."""
    pods = []
    for _, doc in kube_docs():
        name, labels = doc["metadata"]["name"], doc["metadata"].get("labels", {})
        if doc["kind"] in ("DaskCluster", "DaskJob"):
            for where, pod in pod_specs(doc):
                role = "job" if where == "job" else where
                component = "job-runner" if where == "job" else where
                own = {**labels, "dask.org/cluster-name": name, "dask.org/component": component}
                pods.append((role, name, own, pod))
        elif doc["kind"] == "CronJob":
            template = doc["spec"]["jobTemplate"]["spec"]["template"]
            [container] = template["spec"]["containers"]
            env = {e["name"]: e.get("value") for e in container.get("env", [])}
            cluster = cluster_of(env["DASK_SCHEDULER_ADDRESS"])
            pods.append(("job", cluster, template["metadata"]["labels"], template["spec"]))
    return pods


def parsed(group: click.Group, args: list[str], root: Path) -> dict:
    """The parameters the real click command makes of ``args`` (TLS files as in the pod)."""
    command = group.commands[args[0]]
    with command.make_context(args[0], with_tls_files(args, root)[1:]) as ctx:
        params = dict(ctx.params)
    inside = f"{root}/"
    return {
        key: "/" + value.removeprefix(inside)
        if isinstance(value, str) and value.startswith(inside)
        else value
        for key, value in params.items()
    }


def test_network_policies_admit_only_each_cluster_and_its_job(tmp_path):
    pods = kube_pods()
    policies = [doc for _, doc in kube_docs() if doc["kind"] == "NetworkPolicy"]
    clusters = {cluster for role, cluster, _, _ in pods if role == "scheduler"}
    assert clusters == {"lrdask", "lrdask-train-once"}
    dask = dask_group()
    for cluster in clusters:
        mine = [
            p
            for p in policies
            if selects(p["spec"]["podSelector"], {"dask.org/cluster-name": cluster})
        ]
        assert len(mine) == 1, f"{cluster}: {len(mine)} NetworkPolicies select it"
        spec = mine[0]["spec"]
        # It covers the cluster's scheduler and workers, and no pod of another cluster.
        covered = {(r, c) for r, c, labels, _ in pods if selects(spec["podSelector"], labels)}
        assert {("scheduler", cluster), ("worker", cluster)} <= covered
        assert {c for _, c in covered} == {cluster}
        assert spec["policyTypes"] == ["Ingress"]
        admitted: dict[tuple[str, str], set[int]] = {}
        for rule in spec["ingress"]:
            assert rule.get("ports"), "a rule without ports admits every port"
            assert all(p.get("protocol", "TCP") == "TCP" for p in rule["ports"])
            ports = {p["port"] for p in rule["ports"]}
            assert rule.get("from"), "a rule without `from` admits every pod"
            for peer in rule["from"]:
                # a bare podSelector: pods of this namespace, no other namespace, no IP range
                assert set(peer) == {"podSelector"} and peer["podSelector"], peer
                for role, owner, labels, _ in pods:
                    if selects(peer["podSelector"], labels):
                        admitted.setdefault((role, owner), set()).update(ports)
        assert set(admitted) == {("scheduler", cluster), ("worker", cluster), ("job", cluster)}
        # The Dask ports, as the commands start them: the scheduler's and each worker's.
        [scheduler] = [p for r, c, _, p in pods if (r, c) == ("scheduler", cluster)]
        [worker] = [p for r, c, _, p in pods if (r, c) == ("worker", cluster)]
        [scheduler_args] = invocations(container_argv(scheduler["containers"][0]), "dask")
        [worker_args] = invocations(container_argv(worker["containers"][0]), "dask")
        comm = int(parsed(dask, scheduler_args, tmp_path)["port"])
        worker_params = parsed(dask, worker_args, tmp_path)
        dask_ports = {comm, int(worker_params["worker_port"]), int(worker_params["nanny_port"])}
        assert comm == 8786 and len(dask_ports) == 3
        assert admitted[("scheduler", cluster)] == admitted[("worker", cluster)] == dask_ports
        assert admitted[("job", cluster)] == {comm}  # the job talks to the scheduler only
        # The dashboard (plain HTTP) is open to no pod: kubectl port-forward only.
        assert all(8787 not in ports for ports in admitted.values())


def test_kubernetes_dask_and_lrdask_speak_only_tls(tmp_path, monkeypatch):
    """Every `dask scheduler`, `dask worker` and `lrdask` in the manifests: tls:// addresses
    and --tls-ca-file/--tls-cert/--tls-key naming ca.crt/tls.crt/tls.key of a Secret mounted
    read-only (not world-readable), filled by a cert-manager Certificate of this directory
    that the cluster's own CA issues."""
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS", raising=False)  # only the pod's own
    docs = [doc for _, doc in kube_docs()]
    certificates = {d["spec"]["secretName"]: d for d in docs if d["kind"] == "Certificate"}
    issuers = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Issuer"}
    # The CA: a self-signed root whose Secret a CA Issuer signs with.
    ca_issuers = {name for name, d in issuers.items() if "ca" in d["spec"]}
    assert len(ca_issuers) == 1
    [ca_issuer] = ca_issuers
    root = certificates[issuers[ca_issuer]["spec"]["ca"]["secretName"]]
    assert root["spec"]["isCA"] is True
    assert "selfSigned" in issuers[root["spec"]["issuerRef"]["name"]]["spec"]
    files = {"tls_ca_file": "ca.crt", "tls_cert": "tls.crt", "tls_key": "tls.key"}
    seen = {"scheduler": 0, "worker": 0, "lrdask": 0}
    for role, cluster, _, pod in kube_pods():
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for container in pod["containers"]:
            calls = [("dask", a) for a in invocations(container_argv(container), "dask")]
            calls += [("lrdask", a) for a in invocations(container_argv(container), "lrdask")]
            assert calls, f"{cluster}/{role}: runs neither dask nor lrdask"
            for program, args in calls:
                group = dask_group() if program == "dask" else cli
                params = parsed(group, args, tmp_path)
                env = {e["name"]: e.get("value") for e in container.get("env", [])}
                where = f"{cluster}/{role}: {program} {args[0]}"
                if program == "dask" and args[0] == "scheduler":
                    assert params["protocol"] == "tls", where
                else:
                    address = params["scheduler"] or env.get("DASK_SCHEDULER_ADDRESS")
                    assert address == f"tls://{cluster}-scheduler.lrdask.svc.cluster.local:8786"
                seen[args[0] if program == "dask" else "lrdask"] += 1
                secrets = set()
                for param, key in files.items():
                    path = params[param]
                    assert path, f"{where}: no --{param.replace('_', '-')}"
                    directory, name = path.rsplit("/", 1)
                    [mount] = [m for m in container["volumeMounts"] if m["mountPath"] == directory]
                    assert mount.get("readOnly") is True, where
                    secret = volumes[mount["name"]]["secret"]
                    assert secret["defaultMode"] & 0o007 == 0, f"{where}: others may read the key"
                    assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsGroup"]
                    assert name == key, f"{where}: {path} is not the Secret's {key}"
                    secrets.add(secret["secretName"])
                [secret] = secrets
                usages = set(certificates[secret]["spec"]["usages"])
                assert certificates[secret]["spec"]["issuerRef"]["name"] == ca_issuer
                assert "client auth" in usages, where  # Dask verifies clients too
                if program == "dask":
                    assert "server auth" in usages, where
    assert seen["scheduler"] >= 2 and seen["worker"] >= 2 and seen["lrdask"] >= 2, seen


def test_object_storage_credentials_come_from_workload_identity():
    docs = {(d["kind"], d["metadata"]["name"]): d for _, d in kube_docs()}
    account = docs[("ServiceAccount", "lrdask")]
    annotations = account["metadata"]["annotations"]
    assert annotations["eks.amazonaws.com/role-arn"].startswith("arn:aws:iam::")
    assert annotations["iam.gke.io/gcp-service-account"].endswith(".iam.gserviceaccount.com")
    assert account["automountServiceAccountToken"] is False  # no Kubernetes API token
    for role, cluster, _, pod in kube_pods():
        if role in ("job", "worker"):  # they read (and the job writes) object storage
            assert pod.get("serviceAccountName") == "lrdask", f"{cluster}/{role}"
        else:  # the scheduler reads no data
            assert "serviceAccountName" not in pod and pod["automountServiceAccountToken"] is False
        for container in pod["containers"]:
            assert "envFrom" not in container, f"{cluster}/{role}: environment from a Secret"
            for env in container.get("env", []):
                assert "valueFrom" not in env and not env["name"].startswith("AWS_"), env


def test_dashboards_are_not_published():
    """No Service of type LoadBalancer or NodePort, no Ingress; Compose binds loopback."""
    for _, doc in kube_docs():
        assert doc["kind"] not in ("Ingress", "Service"), doc["kind"]
        if doc["kind"] in ("DaskCluster", "DaskJob"):
            cluster = (
                doc["spec"] if doc["kind"] == "DaskCluster" else doc["spec"]["cluster"]["spec"]
            )
            assert cluster["scheduler"]["service"]["type"] == "ClusterIP"
    published = [
        (name, port)
        for name, service in compose()["services"].items()
        for port in service.get("ports", [])
    ]
    assert published, "the scheduler publishes its ports"
    for name, port in published:
        assert str(port).startswith("127.0.0.1:"), f"{name}: {port} is open beyond this machine"


# ------------------------------------------------- Compose's commands as local processes


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, $VAR and $$."""

    def replace(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group("name") or match.group("bare")
        op, arg = match.group("op"), match.group("arg")
        value = env.get(name)
        if op in (":-", ":?") and not value or op in ("-", "?") and value is None:
            if op.endswith("?"):
                raise AssertionError(f"${{{name}}} is required: {arg}")
            return arg
        return value or ""

    pattern = r"\$\$|\$\{(?P<name>\w+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}|\$(?P<bare>[A-Za-z_]\w*)"
    return re.sub(pattern, replace, value)


class LocalCompose:
    """The Compose services' commands as processes on 127.0.0.1: the scheduler's host name
    becomes 127.0.0.1, its ports free ports, volumes directories under ``root``."""

    SHARED_PORTS = ("8786", "8787")  # the scheduler's, which other services name
    OWN_PORTS = ("8788",)  # each worker's dashboard: one port per local process

    def __init__(self, spec: dict, root: Path, env: dict[str, str]):
        self.spec, self.root, self.env = spec, root, env
        self.shared = {port: free_port() for port in self.SHARED_PORTS}
        self.procs: dict[str, subprocess.Popen] = {}
        self.logs: dict[str, Path] = {}

    def mounts(self, service: dict) -> list[tuple[str, str]]:
        found = []
        for volume in service.get("volumes", []):
            source, target = volume.split(":")[:2]
            if source.startswith((".", "/")):
                host = (COMPOSE.parent / source).resolve()
            else:
                host = self.root / "volumes" / source
                host.mkdir(parents=True, exist_ok=True)
            found.append((target, str(host)))
        return sorted(found, key=lambda m: -len(m[0]))

    def rewrite(self, name: str, value: str) -> str:
        service = self.spec["services"][name]
        value = interpolate(str(value), self.env)
        value = re.sub(r"\bdask-scheduler\b", "127.0.0.1", value).replace("0.0.0.0", "127.0.0.1")
        ports = {**self.shared, **self._own_ports(name)}
        value = re.sub(r"(?<![\d.])(\d{4})(?!\d)", lambda m: str(ports.get(m[1], m[1])), value)
        for target, host in self.mounts(service):
            value = re.sub(rf"(?<![\w./-]){re.escape(target)}(?=$|[/\s'\"])", host, value)
        return value

    def _own_ports(self, name: str) -> dict[str, int]:
        ports = self.__dict__.setdefault("_own", {})
        return ports.setdefault(name, {port: free_port() for port in self.OWN_PORTS})

    def argv(self, name: str) -> list[str]:
        return [self.rewrite(name, arg) for arg in compose_argv(self.spec["services"][name])]

    def process_env(self, name: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("DASK_SCHEDULER_ADDRESS",)}
        env["PATH"] = BIN + os.pathsep + env.get("PATH", "")
        declared = self.spec["services"][name].get("environment", {})
        if isinstance(declared, list):
            declared = dict(item.split("=", 1) for item in declared)
        env.update({key: self.rewrite(name, value) for key, value in declared.items()})
        return env

    def order(self) -> list[str]:
        services, done = self.spec["services"], []
        while len(done) < len(services):
            name = next(
                n
                for n in services
                if n not in done and set(services[n].get("depends_on", {})) <= set(done)
            )
            done.append(name)
        return done

    def start(self, name: str) -> None:
        self.logs[name] = self.root / f"{name}.log"
        with open(self.logs[name], "w") as log:
            self.procs[name] = subprocess.Popen(
                self.argv(name), stdout=log, stderr=subprocess.STDOUT, env=self.process_env(name)
            )

    def run(self, name: str, timeout: float = 240) -> subprocess.CompletedProcess:
        return subprocess.run(
            self.argv(name),
            capture_output=True,
            text=True,
            env=self.process_env(name),
            timeout=timeout,
        )

    def wait_healthy(self, name: str) -> None:
        check = self.spec["services"][name]["healthcheck"]
        kind, *test = check["test"]
        argv = test if kind == "CMD" else ["sh", "-c", test[0]]
        argv = [self.rewrite(name, arg) for arg in argv]
        deadline = time.monotonic() + int(check["interval"].rstrip("s")) * check["retries"]
        while time.monotonic() < deadline:
            if self.procs[name].poll() is not None:
                raise AssertionError(f"{name} exited:\n{self.logs[name].read_text()}")
            probe = subprocess.run(
                argv, capture_output=True, env=self.process_env(name), timeout=30
            )
            if probe.returncode == 0:
                return
            time.sleep(0.3)
        raise AssertionError(f"{name} never became healthy:\n{self.logs[name].read_text()}")

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + 10
        for proc in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(max(0.1, deadline - time.monotonic()))
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)


@pytest.mark.cluster
def test_compose_commands_run_as_local_processes(tmp_path):
    spec = compose()
    run_date = "2026-11-26"
    local = LocalCompose(spec, tmp_path, {"RUN_DATE": run_date})
    services = spec["services"]
    results = {}
    try:
        for name in local.order():
            for dep, how in services[name].get("depends_on", {}).items():
                if how["condition"] == "service_healthy":
                    local.wait_healthy(dep)
                elif how["condition"] == "service_completed_successfully":
                    assert results[dep].returncode == 0
            if services[name].get("restart") == "no":  # a one-shot job
                results[name] = local.run(name)
                assert results[name].returncode == 0, (
                    f"{name}: {local.argv(name)} exited {results[name].returncode}:\n"
                    f"{results[name].stdout}\n{results[name].stderr}"
                )
            else:
                local.start(name)
        assert set(local.procs) == {"dask-scheduler", "dask-worker-1", "dask-worker-2"}
        assert set(results) == {"make-data", "train"}

        models = Path(local.process_env("train")["MODEL_ROOT"])
        run = models / f"run_date={run_date}"
        assert results["train"].stdout.strip() == str(run / "model.json")
        assert (run / "model.json").is_file() and (run / "_SUCCESS").is_file()
        logs = [json.loads(line) for line in results["train"].stderr.splitlines() if line.strip()]
        address = f"tcp://127.0.0.1:{local.shared['8786']}"
        assert any(f"scheduler {address}, 2 worker(s)" in r.get("message", "") for r in logs), logs
        model = json.loads((run / "model.json").read_text())
        assert model["training"]["n_rows"] == 40_000

        # `docker compose run train` again: make-data sees its partition, train has nothing to do.
        again = {name: local.run(name) for name in ("make-data", "train")}
        assert all(r.returncode == 0 for r in again.values()), again
        assert "nothing to do" in again["train"].stderr
    finally:
        local.close()
    assert all(proc.poll() is not None for proc in local.procs.values())


# ----------------------------------------------------------- Airflow, in its own venv


def _airflow_installed(python: Path) -> bool:
    if not python.exists():
        return False
    probe = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('apache-airflow'))"],
        capture_output=True,
        text=True,
    )
    return probe.returncode == 0 and probe.stdout.strip() == AIRFLOW_VERSION


@pytest.fixture(scope="session")
def airflow_python() -> Path:
    """A virtualenv with apache-airflow only, at LRDASK_AIRFLOW_VENV or ./.venv-airflow."""
    python = AIRFLOW_VENV / "bin" / "python"
    if not _airflow_installed(python):
        shutil.rmtree(AIRFLOW_VENV, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(AIRFLOW_VENV)], check=True)
        install = subprocess.run(
            [str(python), "-m", "pip", "install", "-q", f"apache-airflow=={AIRFLOW_VERSION}"],
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]
        assert _airflow_installed(python)
    return python


@pytest.mark.cluster
@pytest.mark.timeout(900)  # a first run installs Airflow (about a minute and a half)
def test_airflow_dag_loads_and_its_tasks_run(airflow_python, tmp_path):
    lake, models = tmp_path / "lake", tmp_path / "models"
    lrdask("make-data", lake / "date=2026-11-26", "--rows", 4000, "--partitions", 2)
    overrides = {
        "config": str(ROOT / "jobs" / "train.example.toml"),
        "data_root": str(lake),
        "model_root": str(models),
    }
    env = {k: v for k, v in os.environ.items() if k not in ("DASK_SCHEDULER_ADDRESS", "PYTHONPATH")}
    env.update(
        AIRFLOW_HOME=str(tmp_path / "airflow-home"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        LRDASK_BIN=os.path.join(BIN, "lrdask"),
    )
    work = tmp_path / "work"
    work.mkdir()
    result = subprocess.run(
        [str(airflow_python), str(ROOT / "tests" / "airflow_check.py"), str(DAG_FILE.parent),
         str(work), json.dumps(overrides)],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])

    assert report["airflow_version"] == AIRFLOW_VERSION
    assert report["import_errors"] == {}
    assert report["dag_warnings"] == []
    dag = report["dags"]["lrdask_nightly"]
    assert dag["catchup"] is False and dag["max_active_runs"] == 1
    assert dag["timetable"] == "CronDataIntervalTimetable" and dag["expression"] == "0 0 * * *"
    # A run just after midnight trains the day that ended: {{ ds }} is yesterday.
    assert dag["data_interval"] == ["2026-11-26T00:00:00+00:00", "2026-11-27T00:00:00+00:00"]
    tasks = dag["tasks"]
    assert list(tasks) == ["wait_for_partition", "train", "publish"]
    assert tasks["wait_for_partition"]["upstream"] == []
    assert tasks["train"]["upstream"] == ["wait_for_partition"]
    assert tasks["publish"]["upstream"] == ["train"]
    assert tasks["wait_for_partition"]["mode"] == "reschedule"
    assert tasks["train"]["retries"] >= 1

    # lrdask's exit codes: 3 (and anything unexpected) is retried, 2 and 4 are not.
    exits = report["callables"]["exits"]
    assert exits["0"].startswith("ok")
    assert exits["3"].startswith("AirflowException") and exits["1"].startswith("AirflowException")
    assert exits["2"].startswith("AirflowFailException")
    assert exits["4"].startswith("AirflowFailException")
    assert report["callables"]["sensor"] == [False, False, True]
    assert report["callables"]["publish"][0].startswith("AirflowException")

    # The three tasks, rendered by Airflow for 2026-11-26 and called in order: real training.
    run = report["run"]
    assert run["order"] == ["wait_for_partition", "train", "publish"]
    [command] = run["rendered"]["train"]["args"]
    [args] = shell_invocations(command, "lrdask")
    assert check_command(cli, "lrdask", args) == []
    assert "RUN_DATE=2026-11-26" in args
    assert run["results"]["wait_for_partition"] == "ok:True"
    assert run["results"]["train"] == "ok:None", run
    model = models / "run_date=2026-11-26" / "model.json"
    assert run["results"]["publish"] == f"ok:{model}"
    assert model.is_file() and (model.parent / "_SUCCESS").is_file()
