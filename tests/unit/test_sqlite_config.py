"""`collectors.sqlite`: a bad section is one line per problem with its key path, exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from exporter.cli import main
from exporter.collectors.sqliteconfig import DatabaseConfig, SqliteConfig
from exporter.config import load_config

HEAD = "collectors:\n  sqlite:\n    databases:\n"
DB = "      - name: bot\n        path: /srv/bot.db\n"
PREFIX = "{f}: collectors.sqlite.databases"


def query(name: str, sql: str, metric: str = "botwatch_sqlite_a", **more: object) -> str:
    """One entry of a `queries:` list, in YAML's flow style (JSON is YAML)."""
    fields = {"name": name, "sql": sql, "metric": metric, "help": "A.", **more}
    return f"          - {json.dumps(fields)}\n"


def queries(*entries: str) -> str:
    return DB + "        queries:\n" + "".join(entries)


NOT_SELECT = "must be a read-only SELECT (or WITH ... SELECT), not"
NOT_IDENTIFIER = "must be a plain SQL identifier (letters, digits and _)"

# (name, the databases part of the file, the exact expected stderr lines)
CASES: list[tuple[str, str, list[str]]] = [
    (
        "syntax",
        queries(query("a", "SELECT 1"), query("b", "SELECT count(* FROM t", "botwatch_sqlite_b")),
        [
            PREFIX + '[0].queries[1].sql: SQL error: near "FROM": syntax error '
            "(got 'SELECT count(* FROM t')"
        ],
    ),
    (
        "delete",
        queries(query("a", "DELETE FROM x")),
        [PREFIX + f"[0].queries[0].sql: {NOT_SELECT} DELETE (got 'DELETE FROM x')"],
    ),
    (
        "checkpoint",
        queries(query("a", "PRAGMA wal_checkpoint(TRUNCATE)")),
        [
            PREFIX + f"[0].queries[0].sql: {NOT_SELECT} PRAGMA "
            "(got 'PRAGMA wal_checkpoint(TRUNCATE)')"
        ],
    ),
    (
        "two-statements",
        queries(query("a", "SELECT 1; DELETE FROM t")),
        [
            PREFIX + "[0].queries[0].sql: must be a single statement (found text after ';') "
            "(got 'SELECT 1; DELETE FROM t')"
        ],
    ),
    (
        "cte-write",
        queries(query("a", "WITH k AS (SELECT 1) DELETE FROM t")),
        [
            PREFIX + "[0].queries[0].sql: must be read-only: WITH ... DELETE writes "
            "(got 'WITH k AS (SELECT 1) DELETE FROM t')"
        ],
    ),
    (
        "bad-table",
        DB + "        tables: [event_store, 'event-store']\n",
        [PREFIX + f"[0].tables[1]: {NOT_IDENTIFIER} (got 'event-store')"],
    ),
    (
        "bad-column",
        DB + "        duplicates: [{table: event_store, column: 'dedup_key; DROP'}]\n",
        [PREFIX + f"[0].duplicates[0].column: {NOT_IDENTIFIER} (got 'dedup_key; DROP')"],
    ),
    (
        "table-twice",
        DB + "        tables: [event_store, command_store, event_store]\n",
        [PREFIX + "[0].tables[2]: is listed twice (got 'event_store')"],
    ),
    (
        "duplicate-database-names",
        DB + "      - {name: bot, path: /srv/other.db}\n",
        [PREFIX + "[1].name: another database has this name (got 'bot')"],
    ),
    (
        "same-path",
        DB + "      - {name: other, path: /srv/./bot.db}\n",
        [PREFIX + "[1].path: database 'bot' has the same path (got '/srv/./bot.db')"],
    ),
    (
        "duplicate-query-names",
        queries(query("a", "SELECT 1"), query("a", "SELECT 2", "botwatch_sqlite_b")),
        [PREFIX + "[0].queries[1].name: another query has this name (got 'a')"],
    ),
    (
        "same-series",
        queries(query("a", "SELECT 1"), query("b", "SELECT 2")),
        [
            PREFIX + "[0].queries[1].metric: another query feeds this metric with the same "
            "labels (got 'botwatch_sqlite_a')"
        ],
    ),
    (
        "metric-help-differs",
        queries(query("a", "SELECT 1"))
        + "      - name: other\n        path: /srv/other.db\n        queries:\n"
        + query("a", "SELECT 1", help="B."),
        [
            PREFIX + "[1].queries[0].help: differs from the help of botwatch_sqlite_a in "
            "databases[0].queries[0] (got 'B.')"
        ],
    ),
    (
        "metric-labels-differ",
        queries(
            query("a", "SELECT 1", labels={"k": "x"}),
            query("b", "SELECT k, 1 FROM t", label="s"),
        ),
        [
            PREFIX + "[0].queries[1].metric: has other label names than in "
            "databases[0].queries[0] (db, k) (got 'botwatch_sqlite_a')"
        ],
    ),
    (
        "metric-prefix",
        queries(query("a", "SELECT 1", "botwatch_orders")),
        [
            PREFIX + "[0].queries[0].metric: must be a metric name starting with "
            "botwatch_sqlite_ (got 'botwatch_orders')"
        ],
    ),
    (
        "metric-own",
        queries(query("a", "SELECT 1", "botwatch_sqlite_table_rows")),
        [
            PREFIX + "[0].queries[0].metric: is served by botwatch itself "
            "(got 'botwatch_sqlite_table_rows')"
        ],
    ),
    (
        "label-db",
        queries(query("a", "SELECT 1", labels={"db": "x"})),
        [
            PREFIX + "[0].queries[0].labels: label 'db': 'db' is set by botwatch (the "
            "database's name) (got a mapping)"
        ],
    ),
    (
        "label-twice",
        queries(query("a", "SELECT s, 1 FROM t", labels={"s": "x"}, label="s")),
        [PREFIX + "[0].queries[0].label: 's' is also a static label (got 's')"],
    ),
    (
        "relative-path",
        "      - {name: bot, path: data/bot.db}\n",
        [PREFIX + "[0].path: must be an absolute path (got 'data/bot.db')"],
    ),
    (
        "busy-timeout",
        "      - {name: bot, path: /srv/bot.db, busy_timeout: 10s}\n",
        [PREFIX + "[0].busy_timeout: must be shorter than the collector timeout (10s) (got '10s')"],
    ),
    (
        "integrity-timeout",
        "      - {name: bot, path: /srv/bot.db, integrity_interval: 1m, integrity_timeout: 2m}\n",
        [PREFIX + "[0].integrity_timeout: must not exceed integrity_interval (1m) (got '2m')"],
    ),
    (
        "typo",
        "      - {name: bot, path: /srv/bot.db, integrity_intervall: 1m}\n",
        [PREFIX + "[0].integrity_intervall: unknown key (did you mean 'integrity_interval'?)"],
    ),
]


@pytest.mark.parametrize(("name", "databases", "expected"), CASES, ids=[c[0] for c in CASES])
def test_bad_sqlite_config_is_one_line_per_problem(
    name: str,
    databases: str,
    expected: list[str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / f"{name}.yml"
    path.write_text(HEAD + databases)
    assert main(["check-config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [line.replace("{f}", str(path)) for line in expected]
    assert "Traceback" not in err


def test_the_default_config_does_not_run_it() -> None:
    config = load_config(None).config
    assert not config.collector_configs()["sqlite"].wanted()
    assert not SqliteConfig(databases=[]).wanted()
    assert not SqliteConfig(enabled=False, databases=[{"name": "a", "path": "/a.db"}]).wanted()
    assert SqliteConfig(databases=[{"name": "a", "path": "/a.db"}]).wanted()


def test_defaults_follow_the_timeouts_they_must_fit() -> None:
    db = SqliteConfig(databases=[{"name": "a", "path": "/a.db"}]).databases[0]
    assert (db.busy_timeout, db.integrity_interval, db.integrity_timeout) == (1.0, 600.0, 60.0)
    short = SqliteConfig(timeout="1s", interval="1s", databases=[{"name": "a", "path": "/a.db"}])
    assert short.databases[0].busy_timeout == 0.5
    assert DatabaseConfig(name="a", path="/a.db", integrity_interval="30s").integrity_timeout == 30


def test_a_good_section_passes_check_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "ok.yml"
    path.write_text(
        HEAD + DB + "        busy_timeout: 500ms\n"
        "        integrity_interval: 1h\n"
        "        tables: [event_store, command_store, order]\n"
        "        duplicates: [{table: event_store, column: dedup_key}]\n"
        "        queries:\n"
        "          - name: open_orders\n"
        "            sql: |\n"
        "              -- the orders still waiting on the exchange\n"
        "              SELECT count(*) FROM command_store WHERE status = 'sent';\n"
        "            metric: botwatch_sqlite_open_orders\n"
        "            help: Orders sent and not yet answered.\n"
        "          - name: by_status\n"
        "            sql: SELECT status, count(*) FROM command_store GROUP BY status\n"
        "            metric: botwatch_sqlite_commands\n"
        "            help: Commands by status.\n"
        "            label: status\n"
        "            labels: {store: command}\n"
    )
    assert main(["check-config", str(path)]) == 0, capsys.readouterr().err
    section = load_config(path).config.collector_configs()["sqlite"]
    assert isinstance(section, SqliteConfig)
    db = section.databases[0]
    names = [q.name for q in db.all_queries()]
    assert names == [
        "tables[0]",
        "tables[1]",
        "tables[2]",
        "duplicates[0]",
        "open_orders",
        "by_status",
    ]
    # The trailing semicolon and comment are kept out of what runs.
    assert db.queries[0].sql.endswith("status = 'sent'")
