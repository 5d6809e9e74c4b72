"""The sqlite collector's SQL, without touching a database file: what a configured query may
be, the built-in queries, the authorizer every connection runs under, error classification,
and turning result rows into samples.

Configured SQL is checked three times over. At config load its shape must be one SELECT (a
tokenizer finds the statement's verb, past any WITH clause) and it must compile on an
in-memory database; at run time the connection is read-only (`mode=ro`, `query_only`) and an
authorizer refuses at compile time anything that is not a read. Each layer alone would stop
a write; together a mistake in one of them is not enough.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

ErrorKind = Literal["locked", "malformed", "missing_table", "missing_file", "other"]
ERROR_KINDS: tuple[ErrorKind, ...] = (
    "locked",
    "malformed",
    "missing_table",
    "missing_file",
    "other",
)

METRIC_PREFIX = "botwatch_sqlite_"
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_METRIC = re.compile(r"botwatch_sqlite_[a-zA-Z0-9_]+\Z")
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
# prometheus_client and promtool treat these suffixes as parts of other metric types.
_GAUGE_SUFFIXES = ("_total", "_created", "_count", "_sum", "_bucket")
# Functions that reach outside the database; off by default in SQLite, refused regardless.
_DENIED_FUNCTIONS = frozenset({"load_extension", "fts3_tokenizer"})
# The one pragma botwatch runs itself.
_ALLOWED_PRAGMAS = frozenset({"quick_check"})
_READ_ACTIONS = frozenset({sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_RECURSIVE})
_WRITE_VERBS = frozenset({"INSERT", "REPLACE", "UPDATE", "DELETE"})
# Errors an in-memory database without the real schema cannot avoid; decided at run time.
_SCHEMA_ERRORS = ("no such table:", "no such column:")


class SqlError(ValueError):
    """A configured statement that can never run: one line, for the config error."""


def check_identifier(name: str) -> str:
    """A plain SQL identifier (letters, digits, underscore); it is quoted where it is used."""
    if not _IDENTIFIER.match(name):
        raise ValueError("must be a plain SQL identifier (letters, digits and _)")
    return name


def quote_identifier(name: str) -> str:
    # Quoted, so a table named like a keyword (`order`) still works.
    return '"' + name.replace('"', '""') + '"'


def check_metric_name(name: str) -> str:
    if not _METRIC.match(name):
        raise ValueError(f"must be a metric name starting with {METRIC_PREFIX}")
    if name.endswith(_GAUGE_SUFFIXES):
        raise ValueError("a gauge's name must not end in _total, _created, _count, _sum or _bucket")
    return name


def check_label_name(name: str) -> str:
    if not _LABEL.match(name) or name.startswith("__"):
        raise ValueError("must be a label name (letters, digits and _, not starting with __)")
    if name == "db":
        raise ValueError("'db' is set by botwatch (the database's name)")
    return name


@dataclass(frozen=True)
class _Token:
    kind: Literal["word", "semicolon", "other"]
    text: str
    depth: int
    start: int


_TOKEN = re.compile(
    r"""
      (?P<space>\s+|--[^\n]*|/\*.*?\*/)
    | (?P<quoted>'(?:[^']|'')*'|"(?:[^"]|"")*"|`(?:[^`]|``)*`|\[[^\]]*\])
    | (?P<unterminated>['"`[]|/\*)
    | (?P<word>[^\W\d]\w*)
    | (?P<semicolon>;)
    | (?P<other>.)
    """,
    re.DOTALL | re.VERBOSE,
)


def _tokens(sql: str) -> Iterator[_Token]:
    """Words, semicolons and everything else, with comments and quoted text skipped and each
    token's parenthesis depth; an unterminated quote or comment is an error."""
    depth = 0
    for match in _TOKEN.finditer(sql):
        kind, text = match.lastgroup, match.group()
        if kind == "space":
            continue
        if kind == "unterminated":
            raise SqlError(f"unterminated {text} at offset {match.start()}")
        if text == "(":
            depth += 1
        elif text == ")":
            depth = max(0, depth - 1)
        if kind == "word":
            yield _Token("word", text, depth, match.start())
        elif kind == "semicolon":
            yield _Token("semicolon", text, depth, match.start())
        else:
            yield _Token("other", text, depth, match.start())


def check_select_shape(sql: str) -> str:
    """One SELECT, or WITH ... SELECT; returns it without its trailing semicolon."""
    tokens = list(_tokens(sql))
    if not tokens:
        raise SqlError("is empty")
    ends = [index for index, t in enumerate(tokens) if t.kind == "semicolon"]
    if ends and ends[0] != len(tokens) - 1:
        raise SqlError("must be a single statement (found text after ';')")
    first = tokens[0]
    verb = first.text.upper() if first.kind == "word" else first.text
    if verb == "WITH":
        # The statement's own verb is the first one outside the common table expressions,
        # whose bodies are all inside parentheses.
        main = next(
            (
                t.text.upper()
                for t in tokens[1:]
                if t.kind == "word"
                and t.depth == 0
                and t.text.upper() in {"SELECT", "VALUES", *_WRITE_VERBS}
            ),
            "",
        )
        if main in _WRITE_VERBS:
            raise SqlError(f"must be read-only: WITH ... {main} writes")
        verb = main or "WITH"
    if verb not in {"SELECT", "VALUES"}:
        raise SqlError(f"must be a read-only SELECT (or WITH ... SELECT), not {verb}")
    return sql[: tokens[ends[0]].start if ends else len(sql)].strip()


def authorize(
    action: int, arg1: str | None, arg2: str | None, db: str | None, src: str | None
) -> int:
    """sqlite3's authorizer: reads and ordinary functions only, and botwatch's quick_check.

    Called while a statement compiles, so a refused statement never starts.
    """
    if action in _READ_ACTIONS:
        return sqlite3.SQLITE_OK
    if action == sqlite3.SQLITE_FUNCTION:
        return (
            sqlite3.SQLITE_DENY if (arg2 or "").lower() in _DENIED_FUNCTIONS else sqlite3.SQLITE_OK
        )
    if action == sqlite3.SQLITE_PRAGMA and (arg1 or "").lower() in _ALLOWED_PRAGMAS:
        return sqlite3.SQLITE_OK
    return sqlite3.SQLITE_DENY


def check_sql(sql: str) -> str:
    """The statement a configured query runs, or SqlError saying why it never could."""
    body = check_select_shape(sql)
    scratch = sqlite3.connect(":memory:")
    try:
        scratch.set_authorizer(authorize)
        # EXPLAIN compiles without running: a query that would run forever is still checked.
        scratch.execute("EXPLAIN " + body).close()
    except sqlite3.Warning as exc:  # more than one statement slipped past the tokenizer
        raise SqlError(str(exc)) from None
    except sqlite3.Error as exc:
        message = str(exc)
        if message.startswith(_SCHEMA_ERRORS):
            return body
        if message in ("not authorized", "authorization denied"):
            raise SqlError("must only read (refused by the read-only authorizer)") from None
        raise SqlError(f"SQL error: {message}") from None
    finally:
        scratch.close()
    return body


@dataclass(frozen=True)
class Query:
    """One statement a round runs on a database, and the metric its result feeds."""

    name: str  # for logs: the configured name, or `tables[1]`, `duplicates[0]`
    sql: str
    metric: str
    help: str
    # Static labels, sorted by name; `label` (if any) is filled from the first column.
    labels: tuple[tuple[str, str], ...] = ()
    label: str | None = None
    max_values: int = 50

    @property
    def label_names(self) -> tuple[str, ...]:
        """The metric's labels in exposition order: db, then the rest by name."""
        names = [k for k, _ in self.labels]
        if self.label is not None:
            names.append(self.label)
        return ("db", *sorted(names))


TABLE_ROWS = "botwatch_sqlite_table_rows"
DUPLICATE_KEYS = "botwatch_sqlite_duplicate_keys"


def table_rows_query(index: int, table: str) -> Query:
    return Query(
        name=f"tables[{index}]",
        sql=f"SELECT count(*) FROM {quote_identifier(table)}",
        metric=TABLE_ROWS,
        help="Rows in the table (SELECT count(*)).",
        labels=(("table", table),),
    )


def duplicate_keys_query(index: int, table: str, column: str) -> Query:
    # The runbook's own check (GROUP BY key HAVING count > 1), counted: NULL is one key there
    # too, so an operator who runs it by hand sees as many rows as this reports.
    column_sql = quote_identifier(column)
    return Query(
        name=f"duplicates[{index}]",
        sql=(
            f"SELECT count(*) FROM (SELECT 1 FROM {quote_identifier(table)}"
            f" GROUP BY {column_sql} HAVING count(*) > 1)"
        ),
        metric=DUPLICATE_KEYS,
        help="Values of the column that occur in more than one row of the table.",
        labels=(("column", column), ("table", table)),
    )


_CODE_KINDS: dict[int, ErrorKind] = {
    sqlite3.SQLITE_BUSY: "locked",
    sqlite3.SQLITE_LOCKED: "locked",
    # A reader that cannot find a consistent WAL snapshot after many retries: contention.
    sqlite3.SQLITE_PROTOCOL: "locked",
    sqlite3.SQLITE_CORRUPT: "malformed",
    sqlite3.SQLITE_NOTADB: "malformed",
}
# For errors without a code (and as a fallback), SQLite's standard messages.
_MESSAGE_KINDS: tuple[tuple[str, ErrorKind], ...] = (
    ("no such table:", "missing_table"),
    ("database is locked", "locked"),
    ("database table is locked", "locked"),
    ("database disk image is malformed", "malformed"),
    ("file is not a database", "malformed"),
)


def classify(exc: BaseException) -> ErrorKind:
    """Which kind of failure an exception from opening or querying a database is."""
    if isinstance(exc, FileNotFoundError):
        return "missing_file"
    if not isinstance(exc, sqlite3.Error):
        return "other"
    code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
    if code in _CODE_KINDS:
        return _CODE_KINDS[code]
    message = str(exc)
    return next((kind for text, kind in _MESSAGE_KINDS if text in message), "other")


class ResultError(ValueError):
    """A query's rows do not have the shape its metric needs."""


Sample = tuple[tuple[str, ...], float]


def _number(value: Any, query: Query) -> float | None:
    if value is None:
        return None  # max() of an empty table: no sample, and not an error
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise ResultError(f"{query.name}: {type(value).__name__} value {value!r} is not a number")


def query_samples(query: Query, rows: Sequence[Sequence[Any]]) -> list[Sample]:
    """Rows to samples, label values in `query.label_names` order.

    Without `label`: at most one row of one number. With it: rows of (label value, number),
    at most `max_values` of them, each label value once. NULL numbers give no sample.
    """
    static = dict(query.labels)
    columns = 1 if query.label is None else 2
    if len(rows) > (1 if query.label is None else query.max_values):
        limit = "one row" if query.label is None else f"{query.max_values} rows (max_values)"
        raise ResultError(f"{query.name}: returned more than {limit}")
    samples: list[Sample] = []
    seen: set[str] = set()
    for row in rows:
        if len(row) != columns:
            shape = "one column" if columns == 1 else "two columns (label value, number)"
            raise ResultError(f"{query.name}: returned {len(row)} columns, expected {shape}")
        labels = dict(static)
        if query.label is not None:
            value = "" if row[0] is None else str(row[0])
            if value in seen:
                raise ResultError(f"{query.name}: label value {value!r} returned twice")
            seen.add(value)
            labels[query.label] = value
        number = _number(row[-1], query)
        if number is not None:
            samples.append((tuple(labels[name] for name in query.label_names[1:]), number))
    return samples
