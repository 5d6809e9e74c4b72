"""Reading a live SQLite database without any risk to it (blocking; runs in a worker thread).

What SQLite does for a read-only connection (`mode=ro`, checked on 3.40):
- With the bot running, its -wal and -shm exist. A `mode=ro` reader still opens the -shm
  read-write when it may, records its read marks there and, when no other process has the
  -shm open (the bot crashed), runs WAL recovery and rewrites it. With `readonly_shm=1` it
  maps the -shm read-only, takes only shared locks, and without a live writer rebuilds the
  index in its own memory instead: no file is written in either case.
- A WAL database closed cleanly has neither file, and then any open creates them: `mode=ro`
  creates both, `mode=ro&readonly_shm=1` still creates an empty -wal before it fails. Those
  files would belong to botwatch's user and may keep the bot from writing. So the database's
  header (and the files beside it) are looked at first, and such a database is not opened.
- Between that look and SQLite's own shared lock, the bot's last connection could close and
  delete its -wal and -shm, and the open would create them again. To close that window a
  shared lock like SQLite's own (the PENDING byte checked first, as SQLite does, then the
  SHARED range) is taken before looking and held until the connection is closed: a clean
  close needs an exclusive lock, so it leaves the files in place while botwatch reads, as it
  does whenever any reader is connected. In WAL mode writers never lock the database file,
  so this costs the bot nothing; in rollback mode it is what any reader's lock costs.
- The lock is an open-file-description (OFD) lock: closing any descriptor drops all of a
  process's POSIX locks on a file, SQLite's included, but never another descriptor's OFD lock,
  so a round and an integrity check of the same database may overlap safely.
"""

from __future__ import annotations

import errno
import fcntl
import os
import sqlite3
import stat
import struct
import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from exporter.collectors.sqlitemetrics import (
    INTEGRITY,
    OPEN,
    Failure,
    IntegrityOutcome,
    Reading,
    query_step,
)
from exporter.collectors.sqlitequery import (
    ErrorKind,
    Query,
    ResultError,
    authorize,
    classify,
    query_samples,
)

# SQLite's lock bytes (os_unix.c; the lock-byte page of the file format).
PENDING_BYTE = 0x40000000
SHARED_FIRST = PENDING_BYTE + 2
SHARED_SIZE = 510
# struct flock on Linux (64-bit off_t): l_type, l_whence, l_start, l_len, l_pid, padding.
_FLOCK = struct.Struct("hhqqi4x")
_MAGIC = b"SQLite format 3\x00"
_WAL_VERSION = 2  # header bytes 18 and 19 (write and read version) in WAL mode
# How many problems a quick_check reports at most (the first ones are what an operator needs).
MAX_PROBLEMS = 10


@dataclass(frozen=True)
class Target:
    """One configured database, as the worker thread needs it."""

    name: str
    path: Path
    busy_timeout: float
    queries: tuple[Query, ...] = ()


class Unreadable(Exception):
    """Not opened, for a reason already classified."""

    def __init__(self, kind: ErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class WalFilesMissing(Exception):
    pass


class Cancel:
    """Lets the event loop stop a worker that outlived its bound: the running statement is
    interrupted and the worker stops at its next step."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self.cancelled = False

    def cancel(self) -> None:
        with self._lock:
            self.cancelled = True
            if self._conn is not None:
                self._conn.interrupt()  # thread-safe: the one call meant for another thread

    def attach(self, conn: sqlite3.Connection | None) -> None:
        with self._lock:
            self._conn = conn
            if conn is not None and self.cancelled:
                conn.interrupt()


def describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    return str(exc) or type(exc).__name__


def _ofd_lock(fd: int, kind: int, start: int, length: int) -> bool:
    try:
        fcntl.fcntl(fd, fcntl.F_OFD_SETLK, _FLOCK.pack(kind, os.SEEK_SET, start, length, 0))
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            return False
        raise
    return True


def hold_shared_lock(fd: int, timeout: float, cancel: Cancel) -> None:
    """A shared lock on the database file, as SQLite's readers take it, waiting at most
    `timeout` for a writer's exclusive lock to go (like SQLite's own busy timeout)."""
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        # A writer waiting for readers to leave holds PENDING; do not starve it.
        if _ofd_lock(fd, fcntl.F_RDLCK, PENDING_BYTE, 1):
            try:
                if _ofd_lock(fd, fcntl.F_RDLCK, SHARED_FIRST, SHARED_SIZE):
                    return
            finally:
                _ofd_lock(fd, fcntl.F_UNLCK, PENDING_BYTE, 1)
        remaining = deadline - time.monotonic()
        if cancel.cancelled or remaining <= 0:
            raise Unreadable("locked", f"database is locked (waited {timeout:g}s)")
        time.sleep(min(delay, remaining))
        delay = min(delay * 2, 0.05)


def needs_wal_files(header: bytes, path: str) -> bool:
    """Whether SQLite would open (and so create) the -wal and -shm of this database."""
    wal_header = header.startswith(_MAGIC) and len(header) >= 20 and _WAL_VERSION in header[18:20]
    # SQLite opens an existing -wal whatever the header says.
    return wal_header or os.path.exists(path + "-wal")


def _uri(path: str) -> str:
    return f"file:{urllib.parse.quote(path)}?mode=ro&readonly_shm=1"


@contextmanager
def connect(target: Target, cancel: Cancel, reading: Reading) -> Iterator[sqlite3.Connection]:
    """A read-only connection under the shared lock, closed (and the lock dropped) on exit.

    Fills in the file facts of `reading` as soon as they are known. Raises OSError,
    Unreadable, WalFilesMissing or sqlite3.Error.
    """
    path = os.fspath(target.path)
    # O_NONBLOCK: a FIFO configured by mistake must not hang the open.
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise Unreadable("other", f"not a regular file: {path}")
        reading.file_bytes = st.st_size
        reading.file_id = (st.st_dev, st.st_ino)
        try:
            reading.wal_bytes = os.stat(path + "-wal").st_size
        except FileNotFoundError:
            reading.wal_bytes = 0
        hold_shared_lock(fd, target.busy_timeout, cancel)
        if needs_wal_files(os.pread(fd, 100, 0), path) and not (
            os.path.exists(path + "-wal") and os.path.exists(path + "-shm")
        ):
            raise WalFilesMissing
        now = os.stat(path)
        if (now.st_dev, now.st_ino) != reading.file_id:
            # Replaced since it was opened: the lock is on the old file.
            raise Unreadable("other", "the file was replaced while it was opened")
        conn = sqlite3.connect(_uri(path), uri=True, timeout=target.busy_timeout)
        try:
            conn.isolation_level = None  # never an implicit BEGIN
            conn.execute("PRAGMA query_only = ON")
            conn.set_authorizer(authorize)
            cancel.attach(conn)
            yield conn
        finally:
            cancel.attach(None)
            conn.close()
    finally:
        os.close(fd)


def _fetch(conn: sqlite3.Connection, query: Query) -> list[tuple[object, ...]]:
    cursor = conn.execute(query.sql)
    try:
        # One more than allowed: enough to tell "too many" without reading them all.
        return cursor.fetchmany(query.max_values + 1)
    finally:
        cursor.close()


def read_database(target: Target, cancel: Cancel) -> Reading:
    """One round: open, answer a first read of the schema, run the queries, close."""
    reading = Reading()
    try:
        with connect(target, cancel, reading) as conn:
            # Reads the header and the schema: a file that is not a database fails here.
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            reading.up = True
            reading.succeeded.add(OPEN)
            for query in target.queries:
                if cancel.cancelled:
                    break
                step = query_step(query)
                try:
                    reading.samples[query.name] = query_samples(query, _fetch(conn, query))
                except (sqlite3.Error, ResultError) as exc:
                    kind = classify(exc)
                    reading.failures.append(Failure(step, kind, describe(exc)))
                    if kind == "locked":
                        break  # the rest would each wait out the busy timeout too
                else:
                    reading.succeeded.add(step)
    except WalFilesMissing:
        reading.wal_files_missing = True
    except Unreadable as exc:
        reading.failures.append(Failure(OPEN, exc.kind, str(exc)))
    except (OSError, sqlite3.Error) as exc:
        reading.failures.append(Failure(OPEN, classify(exc), describe(exc)))
    return reading


def check_integrity(target: Target, cancel: Cancel) -> IntegrityOutcome:
    """PRAGMA quick_check on a connection of its own: the whole file is read."""
    reading = Reading()
    try:
        with connect(target, cancel, reading) as conn:
            rows = conn.execute(f"PRAGMA quick_check({MAX_PROBLEMS})").fetchall()
    except WalFilesMissing:
        return IntegrityOutcome(None)
    except Unreadable as exc:
        return IntegrityOutcome(None, failure=Failure(INTEGRITY, exc.kind, str(exc)))
    except (OSError, sqlite3.Error) as exc:
        kind = classify(exc)
        failure = Failure(INTEGRITY, kind, describe(exc))
        if kind == "malformed":  # too damaged to even check: that is a verdict
            return IntegrityOutcome(False, reading.file_id, (describe(exc),), failure)
        return IntegrityOutcome(None, failure=failure)
    problems = tuple(str(row[0]) for row in rows)
    if problems == ("ok",):
        return IntegrityOutcome(True, reading.file_id)
    summary = f"quick_check found {len(problems)} problem(s), first: {problems[0]}"
    return IntegrityOutcome(
        False, reading.file_id, problems, Failure(INTEGRITY, "malformed", summary)
    )
