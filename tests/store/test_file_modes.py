"""Issue #12: every file that holds secrets or the ledger is its owner's only (0600, folders
0700) from the moment it exists, whatever the umask; older, wider files are tightened."""

from __future__ import annotations

import logging
import os
import stat

import pytest

from modelmart.metering.journal import Journal
from modelmart.metering.recorder import Recorder
from modelmart.store.base import open_store
from modelmart.store.files import create_private_file
from tests.store.helpers import usage


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def permissive_umask():
    """umask 0: a file made without an explicit mode would come out world-readable."""
    old = os.umask(0)
    yield
    os.umask(old)


async def test_sqlite_database_wal_and_shm_are_0600(tmp_path, permissive_umask):
    path = tmp_path / "modelmart.db"
    store = await open_store(str(path))
    try:
        await store.create_customer("acme")  # a write, so the -wal has content
        for name in ("modelmart.db", "modelmart.db-wal", "modelmart.db-shm"):
            assert (tmp_path / name).exists(), name
            assert mode(tmp_path / name) == 0o600, name
    finally:
        await store.close()


async def test_an_existing_world_readable_database_is_tightened(tmp_path, permissive_umask,
                                                                 caplog):
    path = tmp_path / "old.db"
    store = await open_store(str(path))
    await store.create_customer("acme")
    await store.close()
    for name in ("old.db", "old.db-wal", "old.db-shm"):  # as an older version left them
        if (tmp_path / name).exists():
            os.chmod(tmp_path / name, 0o644)
    os.chmod(path, 0o666)
    with caplog.at_level(logging.WARNING, logger="modelmart.store.files"):
        store = await open_store(str(path))
    try:
        assert await store.get_customer("acme") is not None
        for name in ("old.db", "old.db-wal", "old.db-shm"):
            if (tmp_path / name).exists():
                assert mode(tmp_path / name) == 0o600, name
    finally:
        await store.close()
    assert "old.db was readable by other users (mode 666); it is now 600" in caplog.text


def test_journal_folder_is_0700_and_its_segments_0600(tmp_path, permissive_umask):
    folder = tmp_path / "journal"
    journal = Journal(str(folder))
    seg = journal.append(b'{"request_id": "r1"}\n')
    assert mode(folder) == 0o700
    assert mode(seg.path) == 0o600
    journal.close()


def test_an_existing_open_journal_folder_and_segment_are_tightened(tmp_path, permissive_umask,
                                                                   caplog):
    folder = tmp_path / "journal"
    folder.mkdir(mode=0o777)
    orphan = folder / "1-abc-000001.usage.jsonl"
    orphan.write_bytes(b"")
    os.chmod(orphan, 0o644)
    with caplog.at_level(logging.WARNING, logger="modelmart.store.files"):
        Journal(str(folder)).close()
    assert mode(folder) == 0o700 and mode(orphan) == 0o600
    assert "readable by other users (mode 777)" in caplog.text


async def test_recorder_journal_is_private(tmp_path, permissive_umask):
    """The recorder the gateway runs makes its journal folder private too."""
    store = await open_store(str(tmp_path / "mm.db"))
    recorder = Recorder(store, str(tmp_path / "journal"))
    try:
        await recorder.start()
        recorder.record(usage("r1"))
        segments = [p for p in (tmp_path / "journal").iterdir()]
        assert segments and all(mode(p) == 0o600 for p in segments)
        assert mode(tmp_path / "journal") == 0o700
    finally:
        await recorder.close()
        await store.close()


def test_private_files_are_made_once_and_0600(tmp_path, permissive_umask):
    path = str(tmp_path / "key")
    assert create_private_file(path, b"first") is True
    assert create_private_file(path, b"second") is False  # the first one stays
    assert open(path, "rb").read() == b"first" and mode(path) == 0o600
    assert os.listdir(tmp_path) == ["key"]  # no temporary file left behind
