"""deploy/compose.yaml's topology started from its own files, without Docker (there is no
container engine here): PostgreSQL and Redis as the compose file configures them, the two
replicas with the compose file's command and environment (service names resolved to
loopback, container ports to free ones), and nginx with deploy/nginx.conf, the file the
compose file mounts. The OpenAI SDK then talks to the bundled model through nginx."""

from __future__ import annotations

import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from modelmart.store.sealing import new_server_key
from tests.fakes.script import free_port
from tests.pg import SUPERUSER, PostgresProcess, run_async
from tests.redis_server import _die_with_parent, _wait_for_redis

from .common import DEPLOY, compose, interpolate, nginx_binary

BUNDLED = "smollm2-135m"


def _wait_port(port: int, proc: subprocess.Popen, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"{what} exited ({proc.returncode})"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"{what} did not listen on {port}")


async def _create_role_and_database(admin_url: str, user: str, password: str, db: str) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f"CREATE ROLE \"{user}\" LOGIN PASSWORD '{password}'")
        await conn.execute(f'CREATE DATABASE "{db}" OWNER "{user}"')
    finally:
        await conn.close()


class Topology:
    """The compose file's services as local processes."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.spec = compose()["services"]
        self.procs: list[subprocess.Popen] = []
        self.logs: dict[str, Path] = {}
        self.secrets = {"MODELMART_SECRET_KEY": new_server_key(),
                        "MODELMART_ADMIN_KEY": "mm-" + secrets.token_urlsafe(32)}
        self.hosts: dict[str, str] = {}  # "service:container port" -> "127.0.0.1:port"
        self.pg: PostgresProcess | None = None
        self.ports: dict[str, int] = {}
        self.metrics_ports: dict[str, int] = {}

    # ---- the services ---------------------------------------------------------------------
    def start(self) -> "Topology":
        self._postgres()
        self._redis()
        for name in self._replicas_in_order():
            self._replica(name)
        self._lb()
        return self

    def _postgres(self) -> None:
        env = self.spec["postgres"]["environment"]
        self.pg = PostgresProcess(database="bootstrap")
        run_async(_create_role_and_database(
            f"postgresql://{SUPERUSER}@127.0.0.1:{self.pg.port}/postgres",
            env["POSTGRES_USER"], env["POSTGRES_PASSWORD"], env["POSTGRES_DB"]))
        self.hosts["postgres:5432"] = f"127.0.0.1:{self.pg.port}"

    def _redis(self) -> None:
        command = self.spec["redis"]["command"]
        assert command[0] == "redis-server"
        port = free_port()
        proc = self._spawn("redis", ["redis-server", *command[1:], "--port", str(port),
                                     "--bind", "127.0.0.1", "--dir", str(self.folder),
                                     "--protected-mode", "no"], cwd=self.folder)
        _wait_for_redis(port, proc)
        self.hosts["redis:6379"] = f"127.0.0.1:{port}"

    def _replicas_in_order(self) -> list[str]:
        names = [n for n in self.spec if n.startswith("replica")]
        # depends_on: replica2 waits for replica1 to be healthy
        return sorted(names, key=lambda n: n in str(self.spec[names[0]].get("depends_on", "")))

    def _replica(self, name: str) -> None:
        service = self.spec[name]
        home = self.folder / name  # the image's /var/lib/modelmart, the service's volume
        home.mkdir()
        env = {k: v for k, v in os.environ.items() if not k.startswith("MODELMART_")}
        env["MODELMART_JOURNAL_DIR"] = str(home / "journal")  # the Dockerfile's ENV
        for key, value in service["environment"].items():
            value = interpolate(str(value), self.secrets)
            for service_address, local in self.hosts.items():
                value = value.replace(service_address, local)
            env[key] = value
        argv = list(service["command"])
        port, metrics = free_port(), free_port()
        swap = {"--host": "127.0.0.1", "--port": str(port), "--metrics-port": str(metrics)}
        for i, word in enumerate(argv[:-1]):
            if word in swap:
                argv[i + 1] = swap[word]
        proc = self._spawn(name, [sys.executable, "-m", "modelmart.cli.main", *argv],
                           cwd=home, env=env)
        self.ports[name], self.metrics_ports[name] = port, metrics
        self.hosts[f"{name}:8000"] = f"127.0.0.1:{port}"
        deadline = time.monotonic() + 90  # the compose healthcheck: GET /health
        while True:
            assert proc.poll() is None, f"{name} exited:\n{self.log(name)}"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"{name} not healthy:\n{self.log(name)}"
            time.sleep(0.1)

    def _lb(self) -> None:
        mount = next(v for v in self.spec["lb"]["volumes"] if v.endswith(":/etc/nginx/nginx.conf:ro"))
        conf = (DEPLOY / mount.split(":")[0]).read_text()
        for service_address, local in self.hosts.items():
            conf = conf.replace(f"server {service_address}", f"server {local}")
        published = self.spec["lb"]["ports"][0]  # "127.0.0.1:8080:8080"
        container_port = published.rsplit(":", 1)[1]
        self.ports["lb"] = free_port()
        conf, n = re.subn(rf"listen {container_port};", f"listen 127.0.0.1:{self.ports['lb']};",
                          conf)
        assert n == 1
        (self.folder / "nginx").mkdir()
        path = self.folder / "nginx" / "nginx.conf"
        path.write_text(conf)
        proc = self._spawn("lb", [nginx_binary(), "-p", str(self.folder / "nginx"), "-c",
                                  str(path), "-g", f"daemon off; pid {self.folder}/nginx.pid;"],
                           cwd=self.folder)
        _wait_port(self.ports["lb"], proc, "nginx")

    def _spawn(self, name: str, argv: list[str], cwd: Path, env: dict | None = None):
        self.logs[name] = self.folder / f"{name}.log"
        out = open(self.logs[name], "w")
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                preexec_fn=_die_with_parent)
        self.procs.append(proc)
        return proc

    def log(self, name: str) -> str:
        return self.logs[name].read_text()

    def close(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(40)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self.pg is not None:
            self.pg.close()

    # ---- looking at it ---------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ports['lb']}"

    def first_api_key(self) -> str:
        """What the operator reads in the first replica's log."""
        match = re.search(r"API key for customer 'default' \(shown once\): (\S+)",
                          self.log("replica1"))
        assert match, self.log("replica1")
        return match.group(1)

    def scrape(self, name: str) -> str:
        """A replica's --metrics-port (inside the compose network; no admin key there)."""
        resp = httpx.get(f"http://127.0.0.1:{self.metrics_ports[name]}/metrics", timeout=10)
        assert resp.status_code == 200
        return resp.text


@pytest.fixture(scope="module")
def topology(tmp_path_factory):
    nginx_binary()  # skip (or fail in CI) before starting anything
    t = Topology(tmp_path_factory.mktemp("compose"))
    try:
        yield t.start()
    finally:
        t.close()


def _requests_served(text: str) -> float:
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == "modelmart_requests_total")


def test_the_openai_sdk_through_nginx_reaches_both_replicas(topology):
    client = openai.OpenAI(base_url=f"{topology.url}/v1", api_key=topology.first_api_key(),
                           max_retries=0, timeout=120)
    for _ in range(2):
        reply = client.chat.completions.create(
            model=BUNDLED, max_tokens=6, messages=[{"role": "user", "content": "Say hi."}])
        assert reply.choices[0].message.content and reply.usage.completion_tokens <= 6
    chunks = list(client.chat.completions.create(
        model=BUNDLED, max_tokens=6, stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "Count to three."}]))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert chunks[-1].usage is not None
    # nginx spread them (least_conn): each replica answered some.
    served = {name: _requests_served(topology.scrape(name)) for name in ("replica1", "replica2")}
    assert sum(served.values()) == 3 and all(served.values()), served
    # Shared state: the admin key from the deployment's secret, through the balancer.
    admin = {"Authorization": f"Bearer {topology.secrets['MODELMART_ADMIN_KEY']}"}
    customers = httpx.get(f"{topology.url}/admin/v1/customers", headers=admin).json()
    assert [c["name"] for c in customers] == ["default"]
    ready = httpx.get(f"{topology.url}/ready")
    assert ready.status_code == 200 and ready.json()["status"] == "ready", ready.text
    assert httpx.get(f"{topology.url}/metrics").status_code == 404  # kept inside


def test_every_metric_on_the_grafana_dashboard_is_exported(topology):
    import json

    dashboard = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
    wanted = {name for panel in dashboard["panels"] for target in panel["targets"]
              for name in re.findall(r"\bmodelmart_[a-z_]+", target["expr"])}
    text = topology.scrape("replica1") + topology.scrape("replica2")
    exported = set(re.findall(r"^(modelmart_[a-z_]+)", text, re.M)) | set(
        re.findall(r"^# TYPE (modelmart_[a-z_]+)", text, re.M))
    assert wanted - exported == set()
    assert len(wanted) >= 15
