"""One relay per SQLite file: a second one, in another process or in the same, is refused.

SQLite lets one writer in at a time. A second relay on the same file would not fail: each would
wait for the other's writes (SQLite's busy timeout) with its event loop stopped, and both would
crawl. So a relay holds an exclusive lock on a file beside the database (`relay.db.lock`) for as
long as it runs, and one that cannot take it refuses to start.

The lock is `flock`'s: the kernel drops it when its holder's file is closed, however the process
ends, so a killed relay never leaves a stale lock behind; and it belongs to an open file, not to
a process, so two relays started in one process (as tests do) exclude each other too. The file
itself is left in place: only the lock on it means anything.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from app.store.database import sqlite_file

LOCK_FILE_SUFFIX = ".lock"


class DatabaseInUseError(RuntimeError):
    """Another relay holds the SQLite file; the message says which and what to do."""


@contextlib.contextmanager
def held(database_url: str) -> Iterator[None]:
    """Hold the lock of the SQLite file `database_url` names for the duration of the block;
    nothing for another database, which several relays may share.

    :raises DatabaseInUseError: another relay holds it.
    """
    path = sqlite_file(database_url)
    if path is None:
        yield
        return
    lock = Path(f"{path}{LOCK_FILE_SUFFIX}")
    with lock.open("a+") as file:
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.seek(0)
            holder = file.read().strip() or "unknown"
            raise DatabaseInUseError(
                f"another relay (process {holder}) is using the SQLite database {path}, "
                f"holding {lock}: a SQLite file serves one relay process, so this one does not "
                "start. Stop the other one first, or run several relays on PostgreSQL "
                "(RELAY_DATABASE_URL=postgresql://…)"
            ) from None
        # Who holds it, for the message a second relay gives.
        file.truncate(0)
        file.write(f"{os.getpid()}\n")
        file.flush()
        yield
