"""The gateway app under uvicorn as under modelmart's own server: JSON, streams, and a client
that leaves mid-stream (under uvicorn there is no ``modelmart.disconnect`` extension: the
stream watches with a task of its own); and ``modelmart serve --server uvicorn``, with
workers too."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import httpx
import pytest
import yaml

from tests.conftest import UPSTREAM_KEY, gateway_catalog
from tests.fakes.script import Reply, free_port
from tests.harness import GatewayServer

from .serving import KINDS

CHAT = "/v1/chat/completions"
MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module", params=KINDS)
def gateway(request, fake_openai, fake_anthropic):
    server = GatewayServer(gateway_catalog(fake_openai, fake_anthropic),
                           server=request.param).start()
    yield server
    server.stop()


def test_json_and_streams(gateway, fakes):
    fake, _ = fakes
    headers = {"authorization": f"Bearer {gateway.key}"}
    fake.queue(Reply(text="Hello there"))
    resp = httpx.post(gateway.url + CHAT, headers=headers, timeout=10,
                      json={"model": "gpt-fake", "messages": MESSAGES})
    assert resp.status_code == 200
    assert resp.json()["choices"][0]["message"]["content"] == "Hello there"
    fake.queue(Reply(text="Hello there", chunk_size=2))
    resp = httpx.post(gateway.url + CHAT, headers=headers, timeout=10,
                      json={"model": "gpt-fake", "messages": MESSAGES, "stream": True})
    assert resp.status_code == 200 and resp.text.rstrip().endswith("data: [DONE]")


def test_a_client_leaving_mid_stream_stops_the_upstream(gateway, fakes):
    fake, _ = fakes
    fake.queue(Reply(text="slow " * 200, chunk_size=5, event_delay=0.05))
    with httpx.stream("POST", gateway.url + CHAT, timeout=30,
                      headers={"authorization": f"Bearer {gateway.key}"},
                      json={"model": "gpt-fake", "messages": MESSAGES, "stream": True}) as resp:
        assert resp.status_code == 200
        for _ in zip(range(3), resp.iter_bytes()):
            pass
    assert fake.client_disconnected.wait(3), "the upstream stream was not closed"


@pytest.mark.parametrize("workers", [1, 2])
def test_modelmart_serve_with_uvicorn(tmp_path, fakes, workers):
    fake, _ = fakes
    config = tmp_path / "modelmart.yaml"
    config.write_text(yaml.safe_dump({"bundled_model": False, "models": {"gpt-fake": {
        "provider": "openai", "model": "gpt-4o-mini", "base_url": f"{fake.base_url}/v1",
        "api_key": UPSTREAM_KEY, "price": {"markup": "0.5"}}}}))
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if k not in ("MODELMART_REDIS_URL", "MODELMART_COORDINATOR_SOCKET")}
    env["MODELMART_JOURNAL_DIR"] = str(tmp_path / "journal")
    log = open(tmp_path / "serve.log", "w+")
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelmart.cli.main", "serve", "--server", "uvicorn",
         "--workers", str(workers), "--port", str(port), "--config", str(config),
         "--database", f"sqlite:///{tmp_path / 'mm.db'}", "--log-level", "warning"],
        cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                health = httpx.get(url + "/health", timeout=1)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
                time.sleep(0.1)
        assert health.status_code == 200 and health.headers["server"] == "uvicorn"
        key = re.search(r"\(shown once\): (\S+)", (tmp_path / "serve.log").read_text()).group(1)
        fake.queue(Reply(text="via uvicorn"))
        resp = httpx.post(url + CHAT, headers={"authorization": f"Bearer {key}"}, timeout=10,
                          json={"model": "gpt-fake", "messages": MESSAGES})
        assert resp.status_code == 200, resp.text
        assert resp.json()["choices"][0]["message"]["content"] == "via uvicorn"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
        log.close()
    assert code == 0, (tmp_path / "serve.log").read_text()
