"""Readings to families: what each database state looks like on /metrics."""

from __future__ import annotations

from prometheus_client.metrics_core import Metric

from exporter.collectors.sqlitemetrics import OPEN, DbView, Failure, Reading, sqlite_families
from exporter.collectors.sqlitequery import (
    ERROR_KINDS,
    Query,
    duplicate_keys_query,
    table_rows_query,
)
from exporter.render import render_text
from tests.support import promtool_lint

QUERIES = (
    table_rows_query(0, "event_store"),
    duplicate_keys_query(0, "event_store", "dedup_key"),
    Query("by_status", "SELECT 1, 1", "botwatch_sqlite_orders", "Orders.", label="status"),
)


def samples(families: list[Metric]) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families for s in f.samples}


def test_an_answering_database_and_a_missing_one() -> None:
    up = Reading(
        file_bytes=8192,
        wal_bytes=4152,
        up=True,
        samples={
            "tables[0]": [(("event_store",), 9.0)],
            "duplicates[0]": [(("dedup_key", "event_store"), 3.0)],
            "by_status": [(("open",), 2.0)],
        },
    )
    missing = Reading(failures=[Failure(OPEN, "missing_file", "gone")])
    families = sqlite_families(
        [
            DbView("bot", up, QUERIES, dict.fromkeys(ERROR_KINDS, 0), True, 1.7e9),
            DbView("web", missing, QUERIES[:1], {"missing_file": 4}),
        ]
    )
    got = samples(families)
    assert got[("botwatch_sqlite_up", (("db", "bot"),))] == 1
    assert got[("botwatch_sqlite_up", (("db", "web"),))] == 0
    assert got[("botwatch_sqlite_file_bytes", (("db", "bot"),))] == 8192
    assert got[("botwatch_sqlite_wal_bytes", (("db", "bot"),))] == 4152
    assert ("botwatch_sqlite_file_bytes", (("db", "web"),)) not in got  # no file, no size
    assert got[("botwatch_sqlite_integrity_ok", (("db", "bot"),))] == 1
    assert got[("botwatch_sqlite_integrity_check_timestamp_seconds", (("db", "bot"),))] == 1.7e9
    assert ("botwatch_sqlite_integrity_ok", (("db", "web"),)) not in got  # never checked
    rows = (("db", "bot"), ("table", "event_store"))
    assert got[("botwatch_sqlite_table_rows", rows)] == 9
    duplicates = (("column", "dedup_key"), ("db", "bot"), ("table", "event_store"))
    assert got[("botwatch_sqlite_duplicate_keys", duplicates)] == 3
    assert got[("botwatch_sqlite_orders", (("db", "bot"), ("status", "open")))] == 2
    # Every kind of error is there from the start, so rate() sees the first one.
    errors = {
        dict(labels)["error"]: value
        for (name, labels), value in got.items()
        if name == "botwatch_sqlite_query_errors_total" and dict(labels)["db"] == "web"
    }
    assert errors == {kind: (4 if kind == "missing_file" else 0) for kind in ERROR_KINDS}
    assert promtool_lint(render_text(families).decode()) == ""


def test_a_database_left_unopened_for_its_wal_files() -> None:
    reading = Reading(file_bytes=4096, wal_bytes=0, file_id=(1, 2), wal_files_missing=True)
    got = samples(sqlite_families([DbView("bot", reading, QUERIES, {})]))
    assert got[("botwatch_sqlite_up", (("db", "bot"),))] == 0
    assert got[("botwatch_sqlite_wal_files_missing", (("db", "bot"),))] == 1
    assert got[("botwatch_sqlite_wal_bytes", (("db", "bot"),))] == 0
    assert not any(name == "botwatch_sqlite_table_rows" for name, _ in got)
