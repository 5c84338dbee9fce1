"""A slice of the matrix with the gateway served by uvicorn rather than modelmart's own
server (``modelmart serve --server uvicorn``): the OpenAI Chat and Anthropic Messages
surfaces against the fake OpenAI upstream, streamed and not. Under uvicorn the app has no
``modelmart.disconnect`` extension: a stream watches for the client leaving with a task of
its own (``api/http.run_stream``)."""

from __future__ import annotations

import pytest

from tests.harness import GatewayServer

from .cells import MODES, STREAM_ONLY, Cell
from .providers import catalog
from .test_matrix import SCENARIO

SURFACES = ("openai-chat", "anthropic-messages")
SCENARIOS = ("text", "tool", "error_429", "error_midstream")
CELLS = [Cell(surface, "openai", mode, scenario)
         for surface in SURFACES for mode in MODES for scenario in SCENARIOS
         if mode == "stream" or scenario not in STREAM_ONLY]


@pytest.fixture(scope="module")
def gateway(upstreams):
    """This module's gateway: the same app, under uvicorn."""
    server = GatewayServer(catalog(upstreams), server="uvicorn").start()
    yield server
    server.stop()


@pytest.mark.parametrize("cell", CELLS, ids=lambda c: c.id)
def test_under_uvicorn(cell: Cell, clients, upstreams, gateway):
    import uvicorn

    assert isinstance(gateway.server, uvicorn.Server)
    fake = upstreams[cell.provider]
    SCENARIO[cell.scenario](clients[cell.surface], cell.provider, fake, cell.stream)
    assert not fake.replies, "a scripted reply was never requested"
