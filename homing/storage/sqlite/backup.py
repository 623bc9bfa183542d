"""`homing backup` and `homing restore` of an SQLite store, safe while the server runs.

The copy is made with SQLite's online backup API in a single step, that is inside one read
transaction: the backup is the store exactly as it was committed at one instant, every
acknowledged publish before that instant included, while the server goes on writing (in WAL
mode a reader never blocks the writer, nor the writer a reader). The backup connection is
read-only and does not take the server's lock file (`<db>.lock`, one server per store), so it
neither waits for the server nor stops it.

A backup is one self-contained file (rollback-journal mode, no `-wal` beside it), written under a
temporary name, checked with `PRAGMA integrity_check`, flushed to disk and only then renamed, so
a crash never leaves a half-written backup under the requested name. `restore` checks that the
file is a sound Homing store (integrity, the tables Homing needs, no migration newer than this
version knows) before it copies it into an empty data directory the same way.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass

from homing.errors import HomingError
from homing.storage.queries import load_migrations
from homing.storage.sqlite.core import Q

REQUIRED_TABLES = ("homing_schema_version", "accounts", "messages")


class BackupError(HomingError):
    """The backup or restore cannot be done (the message says why)."""

    status_code = 400


@dataclass(frozen=True)
class StoreSummary:
    schema_version: int
    messages: int
    bytes: int


@contextlib.contextmanager
def _connection(path: str, *, read_only: bool) -> Iterator[sqlite3.Connection]:
    if read_only:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    else:
        conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA busy_timeout=30000")
        yield conn
    finally:
        conn.close()


def _check(conn: sqlite3.Connection, what: str) -> StoreSummary:
    """Raise BackupError unless `conn` holds a sound Homing store; what it holds."""
    try:
        result = [row[0] for row in conn.execute("PRAGMA integrity_check")]
        tables = {row[0] for row in conn.execute(Q["backup_tables"])}
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"{what} is not an SQLite database: {exc}") from exc
    if result != ["ok"]:
        raise BackupError(f"{what} is damaged: integrity_check says {'; '.join(result[:5])}")
    missing = [t for t in REQUIRED_TABLES if t not in tables]
    if missing:
        raise BackupError(f"{what} is not a Homing store (no table {', '.join(missing)})")
    version = conn.execute(Q["backup_schema_version"])
    schema_version = int(version.fetchone()[0])
    known = max(v for v, _ in load_migrations("homing.storage.sqlite"))
    if schema_version > known:
        raise BackupError(
            f"{what} was written by a newer Homing (schema {schema_version}; this version "
            f"knows up to {known}): restore it with that version"
        )
    messages = int(conn.execute(Q["backup_message_count"]).fetchone()[0])
    page_size, pages = (
        conn.execute("PRAGMA page_size").fetchone()[0],
        conn.execute("PRAGMA page_count").fetchone()[0],
    )
    return StoreSummary(schema_version, messages, int(page_size) * int(pages))


def _copy(source: sqlite3.Connection, target: str) -> None:
    """Copy `source` into a new file at `target`: via a temporary name, checked and synced."""
    folder = os.path.dirname(os.path.abspath(target))
    temporary = os.path.join(folder, f".{os.path.basename(target)}.partial-{os.getpid()}")
    with contextlib.suppress(FileNotFoundError):
        os.remove(temporary)
    try:
        with _connection(temporary, read_only=False) as copy:
            # pages=-1: the whole store in one step, so in one read transaction of the source.
            source.backup(copy, pages=-1)
            copy.execute("PRAGMA journal_mode=DELETE")  # one file, no -wal to carry along
        fd = os.open(temporary, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(temporary, target)
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)  # the rename itself
        finally:
            os.close(fd)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temporary)
        raise


def backup(store: str, to: str) -> StoreSummary:
    """Copy the store at path `store` (its server may be running) into the new file `to`."""
    if not os.path.exists(store):
        raise BackupError(f"no SQLite store at {store}")
    if os.path.exists(to):
        raise BackupError(f"{to} already exists; give the backup a new file name")
    folder = os.path.dirname(os.path.abspath(to))
    if not os.path.isdir(folder):
        raise BackupError(f"the folder {folder} does not exist")
    try:
        with _connection(store, read_only=True) as source:
            _copy(source, to)
    except sqlite3.Error as exc:
        raise BackupError(f"cannot back up {store}: {exc}") from exc
    with _connection(to, read_only=True) as copy:
        return _check(copy, f"the backup {to}")


def restore(backup_file: str, store: str) -> StoreSummary:
    """Copy the backup `backup_file` into the store path `store`, whose folder must be empty."""
    if not os.path.isfile(backup_file):
        raise BackupError(f"no backup file at {backup_file}")
    folder = os.path.dirname(os.path.abspath(store))
    if os.path.isdir(folder) and os.listdir(folder):
        raise BackupError(
            f"the data directory {folder} is not empty: restore into a new, empty one (the "
            "store there is left as it is)"
        )
    try:
        with _connection(backup_file, read_only=True) as source:
            summary = _check(source, backup_file)
            os.makedirs(folder, exist_ok=True)
            with _server_lock(store):
                _copy(source, store)
    except sqlite3.Error as exc:
        raise BackupError(f"cannot restore {backup_file}: {exc}") from exc
    return summary


@contextlib.contextmanager
def _server_lock(store: str) -> Iterator[None]:
    """Hold the lock a server takes on `store` (see SqliteStorage._lock): a server started on
    the same folder meanwhile refuses to start (the store is in use) instead of racing it."""
    fd = os.open(store + ".lock", os.O_CREAT | os.O_RDWR, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BackupError(f"a Homing server is using {store}; stop it first") from None
        if os.path.exists(store):
            raise BackupError(f"{store} appeared during the restore; left as it is")
        yield
    finally:
        os.close(fd)
