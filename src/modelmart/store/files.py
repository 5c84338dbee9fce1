"""Files only their owner may read: the SQLite database, the server key, the ledger journal.

Each is created with its final mode (``os.open``/``mkdir`` with the mode, which the umask
can only narrow), never chmod-ed after a window in which another user could open it. A file
found with a wider mode (made by an older version, or copied in) is tightened with a
warning.
"""

from __future__ import annotations

import logging
import os
import secrets
import stat

log = logging.getLogger(__name__)

PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700
# The files SQLite keeps beside a database. SQLite creates them with the database file's
# own mode, so a private database gets private companions.
SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")


def tighten(path: str, mode: int = PRIVATE_FILE) -> bool:
    """Removes every permission bit of ``path`` beyond ``mode``; True if there were any."""
    try:
        current = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return False
    if not current & ~mode:
        return False
    try:
        os.chmod(path, current & mode)
    except FileNotFoundError:
        return False
    except OSError as err:
        log.warning("%s is readable by other users (mode %03o) and could not be made "
                    "private: %s", path, current, err)
        return False
    log.warning("%s was readable by other users (mode %03o); it is now %03o",
                path, current, current & mode)
    return True


def private_sqlite_file(path: str) -> None:
    """Creates the database file 0600 before SQLite opens it (SQLite would make it 0644
    less the umask, and its -wal and -shm after it); tightens an existing one and its
    companions."""
    if path in ("", ":memory:") or path.startswith("file:"):
        return
    # Never open an existing database: closing any descriptor of a file drops every POSIX
    # lock this process holds on it, the locks of other connections included.
    if not os.path.exists(path):
        try:
            os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
                             PRIVATE_FILE))
        except FileExistsError:
            pass  # made meanwhile by another starter (0600 if by us, tightened below if not)
    for name in (path, *(path + suffix for suffix in SQLITE_COMPANIONS)):
        tighten(name)


def private_dir(path: str) -> None:
    """``path`` as a directory only its owner can enter (made 0700, or tightened)."""
    os.makedirs(path, mode=PRIVATE_DIR, exist_ok=True)
    tighten(path, PRIVATE_DIR)


def create_private_file(path: str, data: bytes) -> bool:
    """Writes ``path`` (0600) unless it exists; True if this call made it.

    Written under a temporary name and linked into place, so concurrent starters never
    read a half-written file: one link wins, the others find the winner's file.
    """
    tmp = f"{path}.{secrets.token_hex(6)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, PRIVATE_FILE)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)
    except FileExistsError:
        return False
    finally:
        os.unlink(tmp)
    return True
