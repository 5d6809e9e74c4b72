"""The sqlite collector's pure parts: SQL checks, the authorizer, error kinds, result shapes."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest

from exporter.collectors.sqlitequery import (
    Query,
    ResultError,
    SqlError,
    authorize,
    check_identifier,
    check_label_name,
    check_metric_name,
    check_select_shape,
    check_sql,
    classify,
    duplicate_keys_query,
    query_samples,
    quote_identifier,
    table_rows_query,
)


@pytest.mark.parametrize(
    ("sql", "statement"),
    [
        ("SELECT count(*) FROM event_store", "SELECT count(*) FROM event_store"),
        ("  select 1 ;  -- trailing comment", "select 1"),
        ("select 'a;b'; /* c;d */", "select 'a;b'"),
        ("-- why\nSELECT 1", "-- why\nSELECT 1"),
        ("WITH x AS (SELECT 1) SELECT * FROM x", "WITH x AS (SELECT 1) SELECT * FROM x"),
        (
            "with recursive r(n) as (select 1 union all select n+1 from r) select count(*) from r",
            "with recursive r(n) as (select 1 union all select n+1 from r) select count(*) from r",
        ),
        ("SELECT replace(a, 'x', 'y') FROM t", "SELECT replace(a, 'x', 'y') FROM t"),
        ('SELECT "delete" FROM "update"', 'SELECT "delete" FROM "update"'),
        ("VALUES (1)", "VALUES (1)"),
        # A schema the in-memory check cannot know is left to the first round.
        ("SELECT missing_column FROM missing_table", "SELECT missing_column FROM missing_table"),
    ],
)
def test_read_only_statements_are_accepted(sql: str, statement: str) -> None:
    assert check_sql(sql) == statement


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("DELETE FROM x", "must be a read-only SELECT (or WITH ... SELECT), not DELETE"),
        (
            "PRAGMA wal_checkpoint(TRUNCATE)",
            "must be a read-only SELECT (or WITH ... SELECT), not PRAGMA",
        ),
        ("ATTACH 'x.db' AS x", "must be a read-only SELECT (or WITH ... SELECT), not ATTACH"),
        (
            "VACUUM INTO '/tmp/copy.db'",
            "must be a read-only SELECT (or WITH ... SELECT), not VACUUM",
        ),
        ("WITH x AS (SELECT 1) DELETE FROM t", "must be read-only: WITH ... DELETE writes"),
        (
            "WITH x(a) AS (SELECT 1) INSERT INTO t SELECT a FROM x",
            "must be read-only: WITH ... INSERT writes",
        ),
        ("SELECT 1; DROP TABLE t", "must be a single statement (found text after ';')"),
        ("SELECT 1;;", "must be a single statement (found text after ';')"),
        ("", "is empty"),
        ("-- nothing", "is empty"),
        ("SELECT 'open", "unterminated ' at offset 7"),
        ("SELECT 1 /* open", "unterminated /* at offset 9"),
        ("SELECT (1", "SQL error: incomplete input"),
        ("SELECT 1 FROM t WHERE", "SQL error: incomplete input"),
        ("SELECT count(count(*))", "SQL error: misuse of aggregate function count()"),
        ("SELECT nosuchfunction(1)", "SQL error: no such function: nosuchfunction"),
        (
            "SELECT load_extension('evil')",
            "SQL error: not authorized to use function: load_extension",
        ),
        (
            "SELECT * FROM pragma_table_info('t')",
            "must only read (refused by the read-only authorizer)",
        ),
    ],
)
def test_anything_else_is_refused_with_a_reason(sql: str, message: str) -> None:
    with pytest.raises(SqlError) as caught:
        check_sql(sql)
    assert str(caught.value) == message


def test_shape_check_alone_needs_no_sqlite() -> None:
    assert check_select_shape("select 1;") == "select 1"
    with pytest.raises(SqlError):
        check_select_shape("update t set a = 1")


def test_identifiers_are_plain_and_quoted() -> None:
    assert check_identifier("event_store") == "event_store"
    for bad in ("event-store", "1table", "a b", 'x"; DROP TABLE t; --', ""):
        with pytest.raises(ValueError, match="plain SQL identifier"):
            check_identifier(bad)
    assert quote_identifier("order") == '"order"'


def test_metric_and_label_names() -> None:
    assert check_metric_name("botwatch_sqlite_open_orders") == "botwatch_sqlite_open_orders"
    for bad in ("open_orders", "botwatch_open_orders", "botwatch_sqlite_", "botwatch_sqlite_a-b"):
        with pytest.raises(ValueError, match="must be a metric name"):
            check_metric_name(bad)
    with pytest.raises(ValueError, match="must not end in _total"):
        check_metric_name("botwatch_sqlite_orders_total")
    assert check_label_name("status") == "status"
    for bad in ("__status", "1x", "a-b"):
        with pytest.raises(ValueError, match="must be a label name"):
            check_label_name(bad)
    with pytest.raises(ValueError, match="set by botwatch"):
        check_label_name("db")


@pytest.fixture
def orders() -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(":memory:")
    conn.executescript(
        """
        CREATE TABLE event_store (id INTEGER PRIMARY KEY, dedup_key TEXT);
        INSERT INTO event_store (dedup_key) VALUES
            ('a'), ('a'), ('a'), ('b'), ('c'), ('c'), (NULL), (NULL), ('d');
        CREATE TABLE "order" (id INTEGER);
        """
    )
    conn.set_authorizer(authorize)
    yield conn
    conn.close()


def test_duplicate_keys_match_the_runbook_query(orders: sqlite3.Connection) -> None:
    runbook = orders.execute(
        "SELECT dedup_key, COUNT(*) as cnt FROM event_store GROUP BY dedup_key HAVING cnt > 1"
    ).fetchall()
    query = duplicate_keys_query(0, "event_store", "dedup_key")
    (row,) = orders.execute(query.sql).fetchall()
    assert row[0] == len(runbook) == 3  # a, c and NULL, as the runbook shows them
    assert query_samples(query, [row]) == [(("dedup_key", "event_store"), 3.0)]


def test_table_rows_quote_keyword_names(orders: sqlite3.Connection) -> None:
    assert orders.execute(table_rows_query(0, "event_store").sql).fetchone() == (9,)
    assert orders.execute(table_rows_query(1, "order").sql).fetchone() == (0,)


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO event_store (dedup_key) VALUES ('x')",
        "DELETE FROM event_store",
        "UPDATE event_store SET dedup_key = 'x'",
        "DROP TABLE event_store",
        "CREATE TABLE t (a)",
        "CREATE TEMP TABLE t (a)",
        "ATTACH ':memory:' AS other",
        "PRAGMA wal_checkpoint(TRUNCATE)",
        "PRAGMA journal_mode = DELETE",
        "BEGIN IMMEDIATE",
        "VACUUM",
        "SELECT * FROM pragma_table_info('event_store')",
    ],
)
def test_the_authorizer_refuses_every_write_before_it_runs(
    orders: sqlite3.Connection, sql: str
) -> None:
    with pytest.raises(sqlite3.DatabaseError, match=r"not authorized|authorization denied"):
        orders.execute(sql)
    assert orders.execute("SELECT count(*) FROM event_store").fetchone() == (9,)


def test_the_authorizer_lets_reads_and_quick_check_through(orders: sqlite3.Connection) -> None:
    assert orders.execute("PRAGMA quick_check").fetchall() == [("ok",)]
    assert orders.execute(
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3) "
        "SELECT sum(n) FROM r"
    ).fetchone() == (6,)
    assert authorize(sqlite3.SQLITE_FUNCTION, None, "LOAD_EXTENSION", None, None) == (
        sqlite3.SQLITE_DENY
    )


def sqlite_error(code: int, message: str) -> sqlite3.Error:
    error = sqlite3.OperationalError(message)
    error.sqlite_errorcode = code
    return error


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (sqlite_error(5, "database is locked"), "locked"),
        (sqlite_error(517, "database is locked"), "locked"),  # SQLITE_BUSY_SNAPSHOT
        (sqlite_error(6, "database table is locked"), "locked"),
        (sqlite_error(15, "locking protocol"), "locked"),
        (sqlite_error(11, "database disk image is malformed"), "malformed"),
        (sqlite_error(26, "file is not a database"), "malformed"),
        (sqlite_error(1, "no such table: event_store"), "missing_table"),
        (sqlite_error(1, "no such column: dedup_key"), "other"),
        (sqlite_error(14, "unable to open database file"), "other"),
        (sqlite3.OperationalError("database is locked"), "locked"),
        (sqlite3.DatabaseError("database disk image is malformed"), "malformed"),
        (FileNotFoundError(2, "No such file or directory"), "missing_file"),
        (PermissionError(13, "Permission denied"), "other"),
        (ResultError("x"), "other"),
    ],
)
def test_errors_are_classified(error: BaseException, kind: str) -> None:
    assert classify(error) == kind


def test_real_errors_carry_their_codes(orders: sqlite3.Connection) -> None:
    with pytest.raises(sqlite3.Error) as caught:
        orders.execute("SELECT count(*) FROM command_store")
    assert classify(caught.value) == "missing_table"


SINGLE = Query(
    "open", "SELECT 1", "botwatch_sqlite_open_orders", "Open orders.", (("side", "buy"),)
)
BY_STATUS = Query(
    "by_status",
    "SELECT status, count(*) FROM orders GROUP BY status",
    "botwatch_sqlite_orders",
    "Orders by status.",
    (("venue", "binance"),),
    label="status",
    max_values=3,
)


@pytest.mark.parametrize(
    ("query", "rows", "samples"),
    [
        (SINGLE, [(7,)], [(("buy",), 7.0)]),
        (SINGLE, [(2.5,)], [(("buy",), 2.5)]),
        (SINGLE, [(None,)], []),  # max() of an empty table: absent, not an error
        (SINGLE, [], []),
        (
            BY_STATUS,
            [("open", 2), ("filled", 5), (None, 1)],
            [(("open", "binance"), 2.0), (("filled", "binance"), 5.0), (("", "binance"), 1.0)],
        ),
        (BY_STATUS, [], []),
    ],
)
def test_rows_become_samples(query: Query, rows: list[tuple[Any, ...]], samples: Any) -> None:
    assert query.label_names[0] == "db"
    assert query_samples(query, rows) == samples


def test_label_names_are_db_then_sorted() -> None:
    assert BY_STATUS.label_names == ("db", "status", "venue")


@pytest.mark.parametrize(
    ("query", "rows", "message"),
    [
        (SINGLE, [(1,), (2,)], "open: returned more than one row"),
        (SINGLE, [(1, 2)], "open: returned 2 columns, expected one column"),
        (SINGLE, [("seven",)], "open: str value 'seven' is not a number"),
        (SINGLE, [(b"\x00",)], "open: bytes value b'\\x00' is not a number"),
        (BY_STATUS, [("a", 1)] * 4, "by_status: returned more than 3 rows (max_values)"),
        (BY_STATUS, [(3,)], "by_status: returned 1 columns, expected two columns"),
        (BY_STATUS, [("a", 1), ("a", 2)], "by_status: label value 'a' returned twice"),
    ],
)
def test_rows_of_the_wrong_shape_are_errors(
    query: Query, rows: list[tuple[Any, ...]], message: str
) -> None:
    with pytest.raises(ResultError) as caught:
        query_samples(query, rows)
    assert str(caught.value).startswith(message)
