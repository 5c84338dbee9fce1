"""Issue #12 end to end: boto3's SigV4 signatures still verify against AWS secrets that are
stored encrypted (SQLite under `modelmart serve`, PostgreSQL with $MODELMART_SECRET_KEY);
`modelmart serve` with the wrong server key refuses to start, saying why; the files serve
makes are its owner's only, even under umask 0."""

from __future__ import annotations

import os
import sqlite3
import stat
import uuid

import asyncpg
import boto3
import botocore.exceptions
import pytest
from botocore.config import Config

from modelmart.store.sealing import new_server_key
from tests.harness import GatewayServer
from tests.marketplace.helpers import (ServeProcess, cli_key, poll, priced_catalog,
                                       write_config)
from tests.pg import create_database, run_async

USER = [{"role": "user", "content": [{"text": "hi"}]}]


@pytest.fixture(autouse=True)
def no_configured_key(monkeypatch):
    monkeypatch.delenv("MODELMART_SECRET_KEY", raising=False)
    monkeypatch.delenv("MODELMART_SECRET_KEY_FILE", raising=False)


def bedrock(url: str, view: dict):
    return boto3.client("bedrock-runtime", endpoint_url=url, region_name="us-east-1",
                        aws_access_key_id=view["aws_access_key_id"],
                        aws_secret_access_key=view["aws_secret_access_key"],
                        config=Config(retries={"max_attempts": 1}))


def converse_when_loaded(client) -> dict:
    """The first call that the server's key cache (which polls) lets through."""
    def attempt():
        try:
            return client.converse(modelId="oa-list", messages=USER)
        except botocore.exceptions.ClientError as err:
            if err.response["ResponseMetadata"]["HTTPStatusCode"] == 401:
                return None  # not loaded yet
            raise
    return poll(attempt, 5.0, 0.05, "the AWS key to be accepted")


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_serve_on_sqlite_sigv4_works_files_are_private_and_a_wrong_key_stops_it(
        tmp_path, fake_openai, fake_anthropic, scripted):
    config = write_config(tmp_path, priced_catalog(fake_openai, fake_anthropic))
    db = f"sqlite:///{tmp_path / 'mm.db'}"
    old_umask = os.umask(0)  # serve inherits it: every file must be 0600 all the same
    try:
        serve = ServeProcess(tmp_path, config, db).wait_ready()
        try:
            view = cli_key(db, "default", "--aws")
            resp = converse_when_loaded(bedrock(serve.url, view))
            assert resp["output"]["message"]["content"] == [{"text": "echo: hi"}]
            for name in ("mm.db", "mm.db-wal", "mm.db-shm", "mm.key"):
                assert mode(tmp_path / name) == 0o600, name
            assert mode(tmp_path / "journal") == 0o700
            assert all(mode(p) == 0o600 for p in (tmp_path / "journal").iterdir())
        finally:
            serve.stop()
    finally:
        os.umask(old_umask)
    with sqlite3.connect(tmp_path / "mm.db") as conn:
        [(stored,)] = conn.execute("SELECT aws_secret FROM api_keys WHERE aws_access_key_id "
                                   "= ?", (view["aws_access_key_id"],)).fetchall()
    assert stored.startswith("v1:") and view["aws_secret_access_key"] not in stored

    wrong = ServeProcess(tmp_path, config, db, env={"MODELMART_SECRET_KEY": new_server_key()})
    try:
        assert wrong.proc.wait(60) != 0
    finally:
        wrong.stop()
    log = wrong.log()
    assert "cannot decrypt the AWS secrets of 1 key(s)" in log
    assert "but $MODELMART_SECRET_KEY holds" in log


@pytest.fixture
def pg_db(postgres_url):
    return run_async(create_database(postgres_url, f"t_{uuid.uuid4().hex}"))


def test_gateway_on_postgresql_sigv4_works_with_the_secret_encrypted(
        pg_db, monkeypatch, fake_openai, fake_anthropic, scripted):
    monkeypatch.setenv("MODELMART_SECRET_KEY", new_server_key())  # every replica's
    server = GatewayServer(priced_catalog(fake_openai, fake_anthropic),
                           database_url=pg_db).start()
    try:
        view = cli_key(pg_db, "acme", "--aws")  # another process, same key from the env
        resp = converse_when_loaded(bedrock(server.url, view))
        assert resp["output"]["message"]["content"] == [{"text": "echo: hi"}]
    finally:
        server.stop()

    async def stored():
        conn = await asyncpg.connect(pg_db)
        try:
            return await conn.fetchval("SELECT aws_secret FROM api_keys WHERE "
                                       "aws_access_key_id = $1", view["aws_access_key_id"])
        finally:
            await conn.close()
    value = run_async(stored())
    assert value.startswith("v1:") and view["aws_secret_access_key"] not in value
