"""Fixtures of the Bedrock client tests: the fake upstreams, one gateway over them (the
conformance catalog plus embeddings models, ``helpers.bedrock_catalog``) and a boto3 key
pair."""

from __future__ import annotations

import pytest

from tests.conformance.providers import start_fakes
from tests.harness import GatewayServer

from .helpers import bedrock_catalog, new_aws_pair


@pytest.fixture(scope="session")
def bedrock_fakes():
    fakes = start_fakes()
    yield fakes
    for fake in fakes.values():
        fake.stop()


@pytest.fixture(scope="session")
def bedrock_gateway(bedrock_fakes):
    server = GatewayServer(bedrock_catalog(bedrock_fakes)).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def aws_pair(bedrock_gateway):
    return new_aws_pair(bedrock_gateway)


@pytest.fixture
def fakes(bedrock_fakes):
    """The fakes with empty scripts and logs."""
    for fake in bedrock_fakes.values():
        fake.replies.clear()
        fake.received.clear()
    return bedrock_fakes


