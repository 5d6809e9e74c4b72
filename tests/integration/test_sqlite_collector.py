"""The sqlite collector, in-process, on real database files that another process (the fake
bot in tests/fixtures/sqlite) writes, holds open, locks or abandons while botwatch reads."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.metrics_core import Metric
from structlog.testing import capture_logs

from exporter.collector import Context
from exporter.collectors.sqlite import SqliteCollector
from exporter.collectors.sqliteconfig import SqliteConfig
from exporter.collectors.sqlitefile import Cancel, Target, check_integrity, connect, read_database
from exporter.collectors.sqlitemetrics import IntegrityOutcome, Reading
from exporter.threads import BlockingCalls
from tests.fixtures.sqlite.fakebot import Bot, create
from tests.support import eventually

pytestmark = pytest.mark.integration

# Three keys occur more than once (a, c and NULL, as the runbook's GROUP BY shows them).
KEYS = ["a", "a", "a", "b", "c", "c", None, None, "d"]

# Reads while the writer runs are paced, not waiting for anything: a window of real load.
READ_PACE = 0.01


def value(families: list[Metric], name: str, **labels: str) -> float | None:
    for family in families:
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return None


def errors(families: list[Metric], db: str) -> dict[str, float]:
    return {
        s.labels["error"]: s.value
        for f in families
        for s in f.samples
        if s.name == "botwatch_sqlite_query_errors_total" and s.labels["db"] == db
    }


def make(tmp_path: Path, *databases: dict[str, Any], **section: Any) -> SqliteCollector:
    config = SqliteConfig(timeout="2s", databases=list(databases), **section)
    return SqliteCollector(config, Context("sqlite", tmp_path, BlockingCalls()))


@pytest.fixture
async def closing() -> AsyncIterator[list[SqliteCollector]]:
    collectors: list[SqliteCollector] = []
    yield collectors
    for collector in collectors:
        await collector.close()


@pytest.fixture
def bots() -> Iterator[list[Bot]]:
    started: list[Bot] = []
    yield started
    for bot in started:
        bot.kill()


class DirectoryWatch:
    """Every name that shows up in a directory, seen by polling it from a thread."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.seen: set[str] = set(os.listdir(directory))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.wait(0.0005):
            self.seen.update(os.listdir(self.directory))

    def stop(self) -> set[str]:
        self._stop.set()
        self._thread.join()
        self.seen.update(os.listdir(self.directory))
        return self.seen


def fingerprint(directory: Path) -> dict[str, tuple[str, int]]:
    return {
        p.name: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(directory.iterdir())
    }


async def test_a_live_wal_database_is_measured_without_blocking_its_writer(
    tmp_path: Path, closing: list[SqliteCollector], bots: list[Bot]
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    db = data / "alphaengine_test.db"
    create(db, keys=KEYS, commands=4)
    writer = Bot("write", db)
    bots.append(writer)
    watch = DirectoryWatch(data)
    collector = make(
        tmp_path,
        {
            "name": "alphaengine",
            "path": db,
            "busy_timeout": "1s",
            # A quick_check nearly every round, overlapping the writer's transactions.
            "integrity_interval": "50ms",
            "tables": ["event_store", "command_store"],
            "duplicates": [{"table": "event_store", "column": "dedup_key"}],
        },
    )
    closing.append(collector)
    rows: list[float] = []
    checks: set[float] = set()
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        families = await collector.collect()
        assert value(families, "botwatch_sqlite_up", db="alphaengine") == 1
        rows.append(value(families, "botwatch_sqlite_table_rows", table="event_store") or 0)
        assert value(families, "botwatch_sqlite_table_rows", table="command_store") == 4
        # The writer's keys are all new: the duplicates stay those of the fixture.
        assert value(families, "botwatch_sqlite_duplicate_keys", column="dedup_key") == 3
        assert value(families, "botwatch_sqlite_integrity_ok", db="alphaengine") in (None, 1)
        checks.add(value(families, "botwatch_sqlite_integrity_check_timestamp_seconds") or 0)
        assert set(errors(families, "alphaengine").values()) == {0}
        await asyncio.sleep(READ_PACE)
    report = writer.stop()
    assert watch.stop() == {db.name, f"{db.name}-wal", f"{db.name}-shm"}
    # The writer never failed and never waited for botwatch beyond the busy timeout (in WAL
    # mode it should not wait at all; the margin is for a loaded test machine).
    assert report["errors"] == 0
    assert report["commits"] > 50
    assert report["max_wait"] < 1.0 + 1.0
    # Each round saw a committed state: never fewer rows than before, never more than written.
    assert rows == sorted(rows)
    assert len(KEYS) < rows[-1] <= report["rows"]
    assert len(checks - {0}) > 1  # quick_check ran again and again alongside


async def test_the_integrity_check_runs_on_its_own_schedule_and_is_kept(
    tmp_path: Path, closing: list[SqliteCollector], bots: list[Bot]
) -> None:
    db = tmp_path / "bot.db"
    create(db, keys=KEYS)
    bots.append(Bot("hold", db))
    calls: list[float] = []

    def counting(target: Target, cancel: Cancel) -> IntegrityOutcome:
        calls.append(time.monotonic())
        return check_integrity(target, cancel)

    config = SqliteConfig(databases=[{"name": "bot", "path": db, "integrity_interval": "1h"}])
    collector = SqliteCollector(
        config, Context("sqlite", tmp_path, BlockingCalls()), check=counting
    )
    closing.append(collector)
    first = await collector.collect()
    # The first round waits for a check of a small database: it is there at once.
    assert value(first, "botwatch_sqlite_integrity_ok") == 1
    stamp = value(first, "botwatch_sqlite_integrity_check_timestamp_seconds")
    assert stamp is not None and abs(stamp - time.time()) < 10
    for _ in range(5):
        families = await collector.collect()
        assert value(families, "botwatch_sqlite_integrity_ok") == 1
        assert value(families, "botwatch_sqlite_integrity_check_timestamp_seconds") == stamp
    assert len(calls) == 1


async def test_a_quick_check_past_its_timeout_is_interrupted_and_counted(
    tmp_path: Path, closing: list[SqliteCollector], bots: list[Bot]
) -> None:
    db = tmp_path / "bot.db"
    create(db, keys=KEYS)
    bots.append(Bot("hold", db))
    interrupted = threading.Event()

    def endless(target: Target, cancel: Cancel) -> IntegrityOutcome:
        reading = Reading()
        with connect(target, cancel, reading) as conn:
            try:
                conn.execute(
                    "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) "
                    "SELECT count(*) FROM r"
                ).fetchone()
            except sqlite3.OperationalError as exc:
                assert str(exc) == "interrupted"
                interrupted.set()
        return IntegrityOutcome(None)

    config = SqliteConfig(
        databases=[
            {"name": "bot", "path": db, "integrity_interval": "1h", "integrity_timeout": "200ms"}
        ]
    )
    collector = SqliteCollector(config, Context("sqlite", tmp_path, BlockingCalls()), check=endless)
    closing.append(collector)
    await collector.collect()
    await asyncio.to_thread(interrupted.wait, 10)
    families = await collector.collect()
    assert errors(families, "bot")["other"] == 1
    assert value(families, "botwatch_sqlite_integrity_ok") is None  # no verdict yet
    assert value(families, "botwatch_sqlite_up") == 1


async def test_a_cleanly_closed_wal_database_is_not_opened(
    tmp_path: Path, closing: list[SqliteCollector], bots: list[Bot]
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    db = data / "bot.db"
    create(db, keys=KEYS)
    # The bot ran and stopped: its last close checkpointed and removed -wal and -shm.
    Bot("hold", db).stop()
    assert sorted(os.listdir(data)) == ["bot.db"]
    before = fingerprint(data)
    collector = make(tmp_path, {"name": "bot", "path": db, "tables": ["event_store"]})
    closing.append(collector)
    with capture_logs() as logs:
        for _ in range(3):
            families = await collector.collect()
    assert fingerprint(data) == before  # nothing created, nothing touched
    assert value(families, "botwatch_sqlite_up") == 0
    assert value(families, "botwatch_sqlite_wal_files_missing") == 1
    assert value(families, "botwatch_sqlite_file_bytes") == db.stat().st_size
    assert value(families, "botwatch_sqlite_wal_bytes") == 0
    assert set(errors(families, "bot").values()) == {0}  # a state, not an error
    assert [e["event"] for e in logs if e["log_level"] != "debug"] == [
        "sqlite wal files absent, database not opened"
    ]
    # The bot starts again: measured at the next round.
    bots.append(Bot("hold", db))
    families = await collector.collect()
    assert value(families, "botwatch_sqlite_up") == 1
    assert value(families, "botwatch_sqlite_wal_files_missing") == 0
    assert value(families, "botwatch_sqlite_table_rows") == len(KEYS)


async def test_a_crashed_bots_wal_is_read_and_left_exactly_as_it_was(
    tmp_path: Path, closing: list[SqliteCollector]
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    db = data / "bot.db"
    create(db, keys=KEYS)
    Bot("crash", db).kill()  # its last commit is only in the -wal; nobody has it open
    before = fingerprint(data)
    assert sorted(before) == ["bot.db", "bot.db-shm", "bot.db-wal"]
    collector = make(tmp_path, {"name": "bot", "path": db, "tables": ["command_store"]})
    closing.append(collector)
    families = await collector.collect()
    assert value(families, "botwatch_sqlite_up") == 1
    assert value(families, "botwatch_sqlite_table_rows") == 1  # the row in the -wal
    assert value(families, "botwatch_sqlite_integrity_ok") == 1
    # No recovery written to the -shm, no checkpoint into the database, no file removed.
    assert fingerprint(data) == before


async def test_a_wal_without_its_shm_is_not_opened(
    tmp_path: Path, closing: list[SqliteCollector]
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    db = data / "bot.db"
    create(db, keys=KEYS)
    Bot("crash", db).kill()
    (data / "bot.db-shm").unlink()
    before = fingerprint(data)
    collector = make(tmp_path, {"name": "bot", "path": db})
    closing.append(collector)
    families = await collector.collect()
    assert value(families, "botwatch_sqlite_wal_files_missing") == 1
    assert value(families, "botwatch_sqlite_wal_bytes") == (data / "bot.db-wal").stat().st_size
    assert fingerprint(data) == before


def test_the_shared_lock_keeps_a_closing_bot_from_removing_its_wal(
    tmp_path: Path, bots: list[Bot]
) -> None:
    # The window between looking for -wal/-shm and SQLite's own lock: were the bot's last
    # connection to close in it, opening would create the files again. While botwatch
    # holds its lock, a closing bot leaves them in place instead.
    db = tmp_path / "bot.db"
    create(db, keys=KEYS)
    bot = Bot("hold", db)
    target = Target("bot", db, 1.0)
    with connect(target, Cancel(), Reading()) as conn:
        bot.stop()
        assert sorted(os.listdir(tmp_path)) == ["bot.db", "bot.db-shm", "bot.db-wal"]
        assert conn.execute("SELECT count(*) FROM event_store").fetchone() == (len(KEYS),)
    # Without botwatch, the next bot's close removes them as usual.
    Bot("hold", db).stop()
    assert sorted(os.listdir(tmp_path)) == ["bot.db"]


async def test_a_rollback_journal_database_is_read_too(
    tmp_path: Path, closing: list[SqliteCollector]
) -> None:
    db = tmp_path / "bot.db"
    create(db, wal=False, keys=KEYS, commands=2)
    collector = make(
        tmp_path, {"name": "bot", "path": db, "tables": ["event_store", "command_store"]}
    )
    closing.append(collector)
    families = await collector.collect()
    assert value(families, "botwatch_sqlite_up") == 1
    assert value(families, "botwatch_sqlite_table_rows", table="command_store") == 2
    assert value(families, "botwatch_sqlite_wal_files_missing") == 0
    assert sorted(os.listdir(tmp_path)) == ["bot.db"]


def corrupt_copy(source: Path, target: Path, page: int) -> None:
    shutil.copyfile(source, target)
    page_size = sqlite3.connect(source).execute("PRAGMA page_size").fetchone()[0]
    with target.open("r+b") as f:
        f.seek((page - 1) * page_size + 8)
        f.write(b"\xa5" * 200)


async def test_a_corrupted_copy_fails_its_integrity_check(
    tmp_path: Path, closing: list[SqliteCollector]
) -> None:
    good = tmp_path / "good.db"
    create(good, wal=False, keys=[f"k{i}" for i in range(2000)])
    # Page 1 is the header and schema; the tables' pages come after it.
    corrupt_copy(good, tmp_path / "bad.db", page=4)
    with capture_logs() as logs:
        collector = make(
            tmp_path,
            {"name": "good", "path": good},
            {"name": "bad", "path": tmp_path / "bad.db", "tables": ["event_store"]},
        )
        closing.append(collector)
        families = await collector.collect()
    assert value(families, "botwatch_sqlite_integrity_ok", db="good") == 1
    assert value(families, "botwatch_sqlite_integrity_ok", db="bad") == 0
    assert errors(families, "bad")["malformed"] >= 1
    assert set(errors(families, "good").values()) == {0}
    problems = [e for e in logs if e["event"] == "sqlite integrity problems"]
    assert problems and problems[0]["db"] == "bad"


async def test_a_file_that_is_not_a_database_is_malformed_and_down(
    tmp_path: Path, closing: list[SqliteCollector]
) -> None:
    good = tmp_path / "good.db"
    create(good, wal=False, keys=KEYS)
    corrupt_copy(good, tmp_path / "bad.db", page=1)  # the header itself
    collector = make(tmp_path, {"name": "bad", "path": tmp_path / "bad.db"})
    closing.append(collector)
    for _ in range(2):
        families = await collector.collect()
    assert value(families, "botwatch_sqlite_up") == 0
    assert value(families, "botwatch_sqlite_integrity_ok") == 0  # decided by the round
    assert errors(families, "bad")["malformed"] == 2


async def test_missing_tables_and_files_are_counted(
    tmp_path: Path, closing: list[SqliteCollector]
) -> None:
    db = tmp_path / "bot.db"
    create(db, wal=False, keys=KEYS)
    gone = tmp_path / "never" / "there.db"
    collector = make(
        tmp_path,
        {"name": "bot", "path": db, "tables": ["event_store", "position_store"]},
        {"name": "gone", "path": gone, "tables": ["event_store"]},
    )
    closing.append(collector)
    with capture_logs() as logs:
        for _ in range(3):
            families = await collector.collect()
    assert value(families, "botwatch_sqlite_up", db="bot") == 1
    assert value(families, "botwatch_sqlite_table_rows", db="bot", table="event_store") == 9
    assert value(families, "botwatch_sqlite_table_rows", table="position_store") is None
    assert errors(families, "bot")["missing_table"] == 3
    assert value(families, "botwatch_sqlite_up", db="gone") == 0
    assert value(families, "botwatch_sqlite_file_bytes", db="gone") is None
    assert errors(families, "gone")["missing_file"] == 3
    assert not gone.parent.exists()
    # Logged once per streak, naming the database and the error.
    warnings = [(e["db"], e["step"], e["error"]) for e in logs if e["log_level"] == "warning"]
    assert sorted(warnings) == [
        ("bot", "query:tables[1]", "missing_table"),
        ("gone", "open", "missing_file"),
    ]
    # The file appears: measured, and the recovery is logged.
    gone.parent.mkdir()
    create(gone, wal=False, keys=["x"])
    with capture_logs() as logs:
        families = await collector.collect()
    assert value(families, "botwatch_sqlite_up", db="gone") == 1
    assert value(families, "botwatch_sqlite_table_rows", db="gone") == 1
    assert [(e["event"], e["db"]) for e in logs if e["log_level"] == "info"] == [
        ("sqlite recovered", "gone")
    ]


@pytest.mark.parametrize(
    ("wal", "mode"), [(False, "lock"), (True, "lock-exclusive-mode")], ids=["rollback", "wal"]
)
async def test_a_locked_database_waits_at_most_its_busy_timeout(
    tmp_path: Path, closing: list[SqliteCollector], bots: list[Bot], wal: bool, mode: str
) -> None:
    db = tmp_path / "bot.db"
    create(db, wal=wal, keys=KEYS)
    locker = Bot(mode, db)
    bots.append(locker)
    before = sorted(os.listdir(tmp_path))
    collector = make(
        tmp_path, {"name": "bot", "path": db, "busy_timeout": "300ms", "tables": ["event_store"]}
    )
    closing.append(collector)
    started = time.monotonic()
    families = await collector.collect()
    took = time.monotonic() - started
    assert 0.3 <= took < 0.3 + 1.0
    assert value(families, "botwatch_sqlite_up") == 0
    assert errors(families, "bot")["locked"] == 1
    assert sorted(os.listdir(tmp_path)) == before
    locker.stop()
    if wal:  # its clean close removed -wal and -shm: the bot must run to be read
        bots.append(Bot("hold", db))
    families = await collector.collect()
    assert value(families, "botwatch_sqlite_up") == 1
    assert value(families, "botwatch_sqlite_table_rows") == len(KEYS)


async def test_a_stuck_database_does_not_hold_up_the_others(
    tmp_path: Path, closing: list[SqliteCollector]
) -> None:
    for name in ("a", "b"):
        create(tmp_path / f"{name}.db", wal=False, keys=KEYS)
    release = threading.Event()

    def read(target: Target, cancel: Cancel) -> Reading:
        if target.name == "a":
            release.wait(30)  # e.g. a read on a hung network filesystem
        return read_database(target, cancel)

    config = SqliteConfig(
        timeout="500ms",
        databases=[{"name": n, "path": tmp_path / f"{n}.db"} for n in ("a", "b")],
    )
    collector = SqliteCollector(config, Context("sqlite", tmp_path, BlockingCalls()), read=read)
    closing.append(collector)
    try:
        started = time.monotonic()
        families = await collector.collect()
        assert time.monotonic() - started < 0.5  # within the collector's timeout
        assert value(families, "botwatch_sqlite_up", db="a") == 0
        assert value(families, "botwatch_sqlite_up", db="b") == 1
        assert errors(families, "a")["locked"] == 1
        # Still stuck: reported at once, without a second thread piling up behind it.
        started = time.monotonic()
        families = await collector.collect()
        assert time.monotonic() - started < 0.2
        assert errors(families, "a")["locked"] == 2
        assert value(families, "botwatch_sqlite_up", db="b") == 1
    finally:
        release.set()

    async def a_up_again() -> bool:
        return value(await collector.collect(), "botwatch_sqlite_up", db="a") == 1

    await eventually(a_up_again, 10, "database a to answer once released")


async def test_a_replaced_file_is_checked_again(
    tmp_path: Path, closing: list[SqliteCollector]
) -> None:
    db = tmp_path / "bot.db"
    create(db, wal=False, keys=KEYS)
    collector = make(tmp_path, {"name": "bot", "path": db, "integrity_interval": "1h"})
    closing.append(collector)
    families = await collector.collect()
    first = value(families, "botwatch_sqlite_integrity_check_timestamp_seconds")
    # Restored from a backup: a new file under the same name.
    create(tmp_path / "restored.db", wal=False, keys=["x"])
    os.replace(tmp_path / "restored.db", db)

    async def checked_again() -> bool:
        families = await collector.collect()
        second = value(families, "botwatch_sqlite_integrity_check_timestamp_seconds")
        ok = value(families, "botwatch_sqlite_integrity_ok")
        return first is not None and second is not None and second > first and ok == 1

    await eventually(checked_again, 10, "a quick_check of the restored file")


async def test_paths_are_passed_to_sqlite_verbatim(
    tmp_path: Path, closing: list[SqliteCollector]
) -> None:
    odd = tmp_path / "a dir?with#odd%20chars"
    odd.mkdir()
    db = odd / "bot.db"
    create(db, wal=False, keys=KEYS)
    collector = make(tmp_path, {"name": "bot", "path": db, "tables": ["event_store"]})
    closing.append(collector)
    families = await collector.collect()
    assert value(families, "botwatch_sqlite_table_rows") == len(KEYS)
    assert sorted(os.listdir(odd)) == ["bot.db"]
