"""Helpers of the Bedrock client tests (InvokeModel, the control plane, LangChain; fixtures
in ``conftest.py``): the catalog — the conformance one (the bundled model, real, and the
fake OpenAI, Anthropic, Bedrock and Gemini upstreams, one model each) plus embeddings models
on each upstream that embeds —, boto3 clients with key pairs, and the ledger."""

from __future__ import annotations

import asyncio
import time

import boto3
from botocore.config import Config

from modelmart.store.base import open_store
from tests.conformance.providers import (
    AWS_ACCESS_KEY, AWS_SECRET, GEMINI_KEY, MODEL, OPENAI_KEY, catalog,
)

CUSTOMER = "bedrock-clients"
EMBED_MODELS = {"local": MODEL["local"], "openai": "emb-openai", "gemini": "emb-gemini",
                "titan": "emb-titan", "nova": "emb-nova", "cohere": "emb-cohere"}
BEDROCK_EMBED_IDS = {"titan": "amazon.titan-embed-text-v2:0",
                     "nova": "amazon.nova-2-multimodal-embeddings-v1:0",
                     "cohere": "cohere.embed-english-v3"}
EMBED_COST = {"input": "0.1", "output": 0, "caching": False}
EMBED_PRICE = {"input": "0.2", "output": 0, "caching": False}


def bedrock_catalog(fakes: dict) -> dict:
    data = catalog(fakes)
    models = data["models"]
    models["emb-openai"] = {"provider": "openai", "model": "text-embedding-3-small",
                            "base_url": f"{fakes['openai'].base_url}/v1", "api_key": OPENAI_KEY}
    models["emb-gemini"] = {"provider": "gemini", "model": "gemini-embedding-001",
                            "base_url": fakes["gemini"].base_url, "api_key": GEMINI_KEY}
    for name, upstream in BEDROCK_EMBED_IDS.items():
        models[EMBED_MODELS[name]] = {
            "provider": "bedrock", "model": upstream, "base_url": fakes["bedrock"].base_url,
            "options": {"aws_access_key_id": AWS_ACCESS_KEY, "aws_secret_access_key": AWS_SECRET,
                        "region": "us-east-1"}}
    for name in ("openai", "gemini", "titan", "nova", "cohere"):
        models[EMBED_MODELS[name]].update(cost=EMBED_COST, price=EMBED_PRICE,
                                          retries={"attempts": 1, "max_attempts": 1})
    return data


def new_aws_pair(gateway, customer: str = CUSTOMER, **key_options) -> tuple[str, str]:
    akid, secret = gateway.new_aws_key(customer, **key_options)
    deadline = time.monotonic() + 5
    while gateway.app.keys.by_aws_access_key_id(akid) is None:  # the key cache polls
        assert time.monotonic() < deadline, "new key not picked up"
        time.sleep(0.02)
    return akid, secret


def client(gateway, pair, service: str = "bedrock-runtime", region: str = "us-east-1"):
    return boto3.client(service, endpoint_url=gateway.url, region_name=region,
                        aws_access_key_id=pair[0], aws_secret_access_key=pair[1],
                        config=Config(retries={"total_max_attempts": 1}, read_timeout=120))


def request_id(response: dict) -> str:
    return response["ResponseMetadata"]["HTTPHeaders"]["x-request-id"]


def ledger_rows(gateway, request_ids: list[str], timeout: float = 10.0) -> dict:
    """The ledger rows of these requests, waiting for the journal to reach the store."""
    async def fetch():
        store = await open_store(gateway.database_url)
        try:
            return {rid: await store.get_usage(rid) for rid in request_ids}
        finally:
            await store.close()

    deadline = time.monotonic() + timeout
    while True:
        rows = asyncio.run(fetch())
        if all(rows.values()) or time.monotonic() > deadline:
            missing = [rid for rid, row in rows.items() if row is None]
            assert not missing, f"no ledger row for {missing}"
            return rows
        time.sleep(0.05)


def customer_rows(gateway, customer: str) -> list:
    async def rows():
        store = await open_store(gateway.database_url)
        try:
            found = await store.get_customer(customer)
            return await store.usage_rows(customer_id=found.id)
        finally:
            await store.close()

    return asyncio.run(rows())
