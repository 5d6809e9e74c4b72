"""The sqlite collector in the real daemon, next to a process writing the database."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.fixtures.sqlite.fakebot import Bot, create
from tests.integration.conftest import Daemon
from tests.support import promtool_lint, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def writer(tmp_path: Path) -> Iterator[Path]:
    data = tmp_path / "data"
    data.mkdir()
    db = data / "alphaengine_test.db"
    create(db, keys=["a", "a", "b", "c", "c", "c"], commands=3)
    bot = Bot("write", db)
    try:
        yield db
    finally:
        report = bot.stop()
        assert report["errors"] == 0
        assert report["max_wait"] < 2.0


def test_the_daemon_serves_a_live_database_and_promtool_accepts_the_scrape(
    tmp_path: Path, writer: Path, daemon: Callable[..., Daemon]
) -> None:
    config = tmp_path / "botwatch.yml"
    config.write_text(
        f"state_dir: {tmp_path / 'state'}\n"
        "collectors:\n"
        "  host: {enabled: false}\n"
        "  sqlite:\n"
        "    interval: 1s\n"
        "    timeout: 900ms\n"
        "    databases:\n"
        "      - name: alphaengine\n"
        f"        path: {writer}\n"
        "        tables: [event_store, command_store]\n"
        "        duplicates: [{table: event_store, column: dedup_key}]\n"
        "        queries:\n"
        "          - name: sent\n"
        "            sql: SELECT status, count(*) FROM command_store GROUP BY status\n"
        "            metric: botwatch_sqlite_commands\n"
        "            help: Commands by status.\n"
        "            label: status\n"
        "      - name: gone\n"
        f"        path: {tmp_path / 'gone.db'}\n"
    )
    d = daemon(config, "--web.listen-address=127.0.0.1:0")
    wait_for(lambda: d.sample("botwatch_sqlite_up", db="alphaengine") == 1, 20, "the first round")
    body = d.metrics()
    assert promtool_lint(body) == ""
    assert d.sample("botwatch_collector_up", collector="sqlite") == 1
    assert d.sample("botwatch_sqlite_duplicate_keys", db="alphaengine", table="event_store") == 2
    assert d.sample("botwatch_sqlite_table_rows", table="command_store") == 3
    assert d.sample("botwatch_sqlite_commands", status="sent") == 3
    assert d.sample("botwatch_sqlite_integrity_ok", db="alphaengine") == 1
    assert (d.sample("botwatch_sqlite_table_rows", table="event_store") or 0) >= 6
    # A missing database is its own problem, not the collector's.
    assert d.sample("botwatch_sqlite_up", db="gone") == 0
    wait_for(
        lambda: (
            (d.sample("botwatch_sqlite_query_errors_total", db="gone", error="missing_file") or 0)
            >= 2
        ),
        10,
        "a second round",
    )
    assert d.sample("botwatch_collector_up", collector="sqlite") == 1
    failed = [e for e in d.events("sqlite failed") if e.get("db") == "gone"]
    assert len(failed) == 1 and failed[0]["error"] == "missing_file"
    assert sorted(os.listdir(writer.parent)) == [
        writer.name,
        f"{writer.name}-shm",
        f"{writer.name}-wal",
    ]
    assert not (tmp_path / "gone.db").exists()
    assert d.stop() == 0
