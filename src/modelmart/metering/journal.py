"""The append-only journal that makes a usage record durable before the response is sent.

Each process writes its own segment files (named with its pid and a random tag) and holds
an exclusive ``flock`` on every segment it owns until the segment's records are all in the
database. So a segment that can be locked belongs to nobody alive: an orphan of a killed
process, or of a recorder that closed while the database was down, and it is replayed.

Records are written with one ``os.write`` on an ``O_APPEND`` fd and no fsync: data handed to
the kernel survives ``kill -9`` of the process, which is the failure guarded against here
(power loss is not; the database's own durability covers rows once inserted).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import secrets
import time
from dataclasses import dataclass, fields
from typing import Iterator

import orjson

from modelmart.store.files import PRIVATE_FILE, private_dir, tighten
from modelmart.store.records import UsageRecord
from modelmart.store.rows import usage_row_from_json

log = logging.getLogger(__name__)

SUFFIX = ".usage.jsonl"
CREATING = ".creating-"  # a segment before it is locked and renamed into view
STALE_CREATING_S = 60.0
_FIELDS = {f.name for f in fields(UsageRecord)}


def encode(rec: UsageRecord) -> bytes:
    # default=str: an odd value in ``extra`` must not cost the record its durability.
    return orjson.dumps(rec, default=str, option=orjson.OPT_APPEND_NEWLINE)


def row(line: bytes) -> tuple:
    """The ledger row of a journal line (``usage_to_row(decode(line))``, without the record)."""
    data = orjson.loads(line)
    if not isinstance(data, dict):
        raise ValueError("a journal line must be a JSON object")
    return usage_row_from_json(data)


def decode(line: bytes) -> UsageRecord:
    data = orjson.loads(line)
    if not isinstance(data, dict):
        raise ValueError("a journal line must be a JSON object")
    return UsageRecord(**{k: v for k, v in data.items() if k in _FIELDS})


@dataclass(slots=True, eq=False)
class Segment:
    path: str
    fd: int
    written: int = 0  # records appended (since the last truncation)
    committed: int = 0  # of those, records known to be in the database
    size: int = 0
    sealed: bool = False  # no longer appended to; deleted once fully committed


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class Journal:
    """This process's segments in ``directory``."""

    def __init__(self, directory: str, max_segment_bytes: int = 8 << 20) -> None:
        # The ledger is the operator's business: the folder is 0700 and segments 0600.
        private_dir(directory)
        for name in os.listdir(directory):  # segments an older version or a copy left wider
            tighten(os.path.join(directory, name))
        self.directory = directory
        self.max_segment_bytes = max_segment_bytes
        self.active: Segment | None = None
        self.segments: list[Segment] = []
        self._tag = f"{os.getpid()}-{secrets.token_hex(6)}"
        self._seq = 0

    def append(self, line: bytes) -> Segment:
        seg = self.active
        if seg is None or seg.size >= self.max_segment_bytes:
            seg = self._open_segment()
        _write_all(seg.fd, line)
        seg.written += 1
        seg.size += len(line)
        return seg

    def _open_segment(self) -> Segment:
        if self.active is not None:
            self.active.sealed = True
            self._release_if_done(self.active)
        self._seq += 1
        name = f"{self._tag}-{self._seq:06d}{SUFFIX}"
        # Created under a name replay ignores, locked, then renamed: replay must never see
        # (and lock, and delete) a segment between its creation and our lock.
        tmp = os.path.join(self.directory, CREATING + name)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC,
                     PRIVATE_FILE)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        path = os.path.join(self.directory, name)
        os.rename(tmp, path)
        self.active = Segment(path, fd)
        self.segments.append(self.active)
        return self.active

    def committed(self, seg: Segment, count: int) -> None:
        seg.committed += count
        self._release_if_done(seg)

    def _release_if_done(self, seg: Segment) -> None:
        if seg.committed < seg.written or seg.fd < 0:
            return
        if seg.sealed:
            self._remove(seg)
        elif seg.written:
            # Everything in the live segment is in the database: empty it in place rather
            # than churn files. Safe: we hold its lock, and O_APPEND writes follow the end.
            os.ftruncate(seg.fd, 0)
            seg.written = seg.committed = seg.size = 0

    def _remove(self, seg: Segment) -> None:
        # Unlink before closing, so no replayer can lock it in between.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(seg.path)
        os.close(seg.fd)
        seg.fd = -1
        self.segments.remove(seg)
        if seg is self.active:
            self.active = None

    def close(self) -> None:
        """Removes fully committed segments; leaves the rest, unlocked, for replay."""
        for seg in list(self.segments):
            if seg.committed >= seg.written:
                self._remove(seg)
            else:
                os.close(seg.fd)
                seg.fd = -1
                self.segments.remove(seg)
        self.active = None


# -- replay of orphans ------------------------------------------------------------------


def _same_file(fd: int, path: str) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)


def _try_lock(path: str) -> int | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None  # a live writer owns it
    if not _same_file(fd, path):  # replayed and removed by another process meanwhile
        os.close(fd)
        return None
    return fd


def _clean_stale_creating(path: str) -> None:
    """A process killed between creating and renaming a segment leaves an empty file."""
    with contextlib.suppress(FileNotFoundError):
        if time.time() - os.stat(path).st_mtime > STALE_CREATING_S:
            fd = _try_lock(path)
            if fd is not None:
                os.unlink(path)
                os.close(fd)


def read_segment(fd: int, path: str) -> list[UsageRecord]:
    """The records in a segment; a torn last line (killed mid-write) or any corrupt line
    is skipped with a warning, never fatal."""
    with open(fd, "rb", closefd=False) as f:
        data = f.read()
    records = []
    for number, line in enumerate(data.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            records.append(decode(line))
        except (orjson.JSONDecodeError, TypeError, ValueError):
            log.warning("usage journal %s line %d is unreadable (%d bytes); skipped",
                        path, number, len(line))
    return records


def orphans(directory: str) -> Iterator[tuple[str, int]]:
    """Locked (path, fd) of each segment no live process owns. The caller removes the
    file (``discard``) once its records are stored, or just closes fd to leave it."""
    if not os.path.isdir(directory):
        return
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        if name.startswith(CREATING):
            _clean_stale_creating(path)
        elif name.endswith(SUFFIX):
            fd = _try_lock(path)
            if fd is not None:
                yield path, fd


def discard(path: str, fd: int) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    os.close(fd)
