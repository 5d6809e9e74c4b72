"""What one round learnt about each database, and the metric families made from it (pure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from exporter.collectors.sqlitequery import (
    DUPLICATE_KEYS,
    ERROR_KINDS,
    TABLE_ROWS,
    ErrorKind,
    Query,
    Sample,
)

# The steps a failure can come from; a query's step is "query:" + its name.
OPEN = "open"
INTEGRITY = "integrity"

# Names the collector itself serves: a configured query may not feed them.
OWN_METRICS = frozenset(
    {
        "botwatch_sqlite_up",
        "botwatch_sqlite_file_bytes",
        "botwatch_sqlite_wal_bytes",
        "botwatch_sqlite_wal_files_missing",
        "botwatch_sqlite_integrity_ok",
        "botwatch_sqlite_integrity_check_timestamp_seconds",
        "botwatch_sqlite_query_errors",
        TABLE_ROWS,
        DUPLICATE_KEYS,
    }
)


def query_step(query: Query) -> str:
    return f"query:{query.name}"


@dataclass(frozen=True)
class Failure:
    step: str  # OPEN, INTEGRITY or query_step(...)
    kind: ErrorKind
    message: str


@dataclass
class Reading:
    """One round's look at one database."""

    file_bytes: int | None = None
    wal_bytes: int | None = None
    # (st_dev, st_ino): tells a file replaced (restored from a backup) from the one checked.
    file_id: tuple[int, int] | None = None
    up: bool = False
    # In WAL mode with its -wal or -shm absent: left unopened, since opening would create them.
    wal_files_missing: bool = False
    samples: dict[str, list[Sample]] = field(default_factory=dict)  # by query name
    failures: list[Failure] = field(default_factory=list)
    succeeded: set[str] = field(default_factory=set)  # steps that ran without error


@dataclass(frozen=True)
class IntegrityOutcome:
    """One quick_check: a verdict (ok True/False), or None when it could not run."""

    ok: bool | None
    file_id: tuple[int, int] | None = None
    problems: tuple[str, ...] = ()
    failure: Failure | None = None


@dataclass(frozen=True)
class DbView:
    """Everything the families need about one database."""

    name: str
    reading: Reading
    queries: Sequence[Query]
    errors: Mapping[ErrorKind, int]
    integrity_ok: bool | None = None
    integrity_time: float | None = None


def sqlite_families(views: Sequence[DbView]) -> list[Metric]:
    db = ["db"]
    up = GaugeMetricFamily(
        "botwatch_sqlite_up", "1 if the database was opened read-only and answered.", labels=db
    )
    size = GaugeMetricFamily("botwatch_sqlite_file_bytes", "Size of the database file.", labels=db)
    wal = GaugeMetricFamily(
        "botwatch_sqlite_wal_bytes", "Size of the database's -wal file (0 without one).", labels=db
    )
    wal_missing = GaugeMetricFamily(
        "botwatch_sqlite_wal_files_missing",
        "1 if the database is in WAL mode but its -wal or -shm file is absent, so it was not "
        "opened (a read-only open would create them).",
        labels=db,
    )
    integrity = GaugeMetricFamily(
        "botwatch_sqlite_integrity_ok",
        "1 if the last PRAGMA quick_check found no problem, 0 if it (or a query) found corruption.",
        labels=db,
    )
    checked = GaugeMetricFamily(
        "botwatch_sqlite_integrity_check_timestamp_seconds",
        "When botwatch_sqlite_integrity_ok was last decided, Unix time.",
        labels=db,
    )
    errors = CounterMetricFamily(
        "botwatch_sqlite_query_errors",
        "Failed opens, queries and integrity checks, by kind of error.",
        labels=["db", "error"],
    )
    custom: dict[str, GaugeMetricFamily] = {}
    for view in views:
        r = view.reading
        up.add_metric([view.name], 1 if r.up else 0)
        wal_missing.add_metric([view.name], 1 if r.wal_files_missing else 0)
        if r.file_bytes is not None:
            size.add_metric([view.name], r.file_bytes)
            wal.add_metric([view.name], r.wal_bytes or 0)
        if view.integrity_ok is not None and view.integrity_time is not None:
            integrity.add_metric([view.name], 1 if view.integrity_ok else 0)
            checked.add_metric([view.name], view.integrity_time)
        for kind in ERROR_KINDS:
            errors.add_metric([view.name, kind], view.errors.get(kind, 0))
        for query in view.queries:
            family = custom.get(query.metric)
            if family is None:
                family = GaugeMetricFamily(query.metric, query.help, labels=query.label_names)
                custom[query.metric] = family
            for values, number in r.samples.get(query.name, ()):
                family.add_metric([view.name, *values], number)
    return [up, size, wal, wal_missing, integrity, checked, errors, *custom.values()]
