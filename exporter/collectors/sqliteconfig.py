"""`collectors.sqlite`: the databases, their built-in checks and configured queries.

Everything a round will run is decided here, at load: identifiers are checked and quoted,
configured SQL must be one read-only SELECT that compiles, and a metric fed by several
queries must have one help and one set of label names.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from exporter.collectors.sqlitemetrics import OWN_METRICS
from exporter.collectors.sqlitequery import (
    Query,
    check_identifier,
    check_label_name,
    check_metric_name,
    check_sql,
    duplicate_keys_query,
    table_rows_query,
)
from exporter.fields import Duration, format_duration
from exporter.models import CollectorConfig, Strict, effective_timeout

DEFAULT_BUSY_TIMEOUT = 1.0
DEFAULT_INTEGRITY_INTERVAL = 600.0
DEFAULT_INTEGRITY_TIMEOUT = 60.0

SqlIdentifier = Annotated[str, AfterValidator(check_identifier)]
MetricName = Annotated[str, AfterValidator(check_metric_name)]
LabelName = Annotated[str, AfterValidator(check_label_name)]
SelectSql = Annotated[str, AfterValidator(check_sql)]
Name = Annotated[str, Field(min_length=1)]


def _duplicate(message: str, at: str) -> PydanticCustomError:
    return PydanticCustomError("duplicate", message, {"at": at})


class DuplicatesConfig(Strict):
    """A column whose values must be unique: how many values occur more than once."""

    table: SqlIdentifier
    column: SqlIdentifier


class QueryConfig(Strict):
    name: Name
    sql: SelectSql
    metric: MetricName
    help: Name
    labels: dict[str, str] = {}
    # Set: the query returns rows of (label value, number) and the first column fills this
    # label. Unset: it returns one row with one number.
    label: LabelName | None = None
    max_values: int = Field(50, ge=1, le=1000)

    @field_validator("labels")
    @classmethod
    def _label_names(cls, labels: dict[str, str]) -> dict[str, str]:
        for name in labels:
            try:
                check_label_name(name)
            except ValueError as exc:
                raise PydanticCustomError(
                    "label", "label {name}: {reason}", {"name": repr(name), "reason": str(exc)}
                ) from None
        return labels

    @model_validator(mode="after")
    def _label_not_static(self) -> QueryConfig:
        if self.label is not None and self.label in self.labels:
            raise PydanticCustomError(
                "label", "'{label}' is also a static label", {"label": self.label, "at": "label"}
            )
        if self.metric in OWN_METRICS:
            raise PydanticCustomError("metric", "is served by botwatch itself", {"at": "metric"})
        return self

    def query(self) -> Query:
        return Query(
            name=self.name,
            sql=self.sql,
            metric=self.metric,
            help=self.help,
            labels=tuple(sorted(self.labels.items())),
            label=self.label,
            max_values=self.max_values,
        )


class DatabaseConfig(Strict):
    name: Name  # the `db` label
    path: Path
    busy_timeout: Duration = DEFAULT_BUSY_TIMEOUT
    integrity_interval: Duration = DEFAULT_INTEGRITY_INTERVAL
    integrity_timeout: Duration = DEFAULT_INTEGRITY_TIMEOUT
    tables: list[SqlIdentifier] = []
    duplicates: list[DuplicatesConfig] = []
    queries: list[QueryConfig] = []

    @model_validator(mode="before")
    @classmethod
    def _default_integrity_timeout_fits(cls, data: Any) -> Any:
        # `integrity_interval: 30s` alone must not be an error about an unwritten timeout.
        if isinstance(data, dict) and "integrity_timeout" not in data:
            timeout = effective_timeout(
                {"interval": data.get("integrity_interval", DEFAULT_INTEGRITY_INTERVAL)},
                DEFAULT_INTEGRITY_TIMEOUT,
            )
            data = {**data, "integrity_timeout": timeout}
        return data

    @field_validator("path")
    @classmethod
    def _absolute(cls, path: Path) -> Path:
        if not path.is_absolute():
            raise PydanticCustomError("path", "must be an absolute path")
        return Path(os.path.normpath(path))

    @field_validator("integrity_timeout")
    @classmethod
    def _within_interval(cls, timeout: float, info: ValidationInfo) -> float:
        interval = info.data.get("integrity_interval")
        if interval is not None and timeout > interval:
            raise PydanticCustomError(
                "timeout",
                "must not exceed integrity_interval ({interval})",
                {"interval": format_duration(interval)},
            )
        return timeout

    @field_validator("tables")
    @classmethod
    def _unique_tables(cls, tables: list[str]) -> list[str]:
        for index, table in enumerate(tables):
            if table in tables[:index]:
                raise _duplicate("is listed twice", str(index))
        return tables

    @field_validator("duplicates")
    @classmethod
    def _unique_duplicates(cls, checks: list[DuplicatesConfig]) -> list[DuplicatesConfig]:
        for index, check in enumerate(checks):
            if check in checks[:index]:
                raise _duplicate("is listed twice", str(index))
        return checks

    @field_validator("queries")
    @classmethod
    def _unique_queries(cls, queries: list[QueryConfig]) -> list[QueryConfig]:
        names: set[str] = set()
        series: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
        for index, query in enumerate(queries):
            if query.name in names:
                raise _duplicate("another query has this name", f"{index}.name")
            names.add(query.name)
            if query.label is None:
                # Two single-value queries may share a metric only with different labels.
                key = (query.metric, tuple(sorted(query.labels.items())))
                if key in series:
                    raise PydanticCustomError(
                        "duplicate",
                        "another query feeds this metric with the same labels",
                        {"at": f"{index}.metric"},
                    )
                series.add(key)
        return queries

    def all_queries(self) -> tuple[Query, ...]:
        return (
            *(table_rows_query(i, table) for i, table in enumerate(self.tables)),
            *(duplicate_keys_query(i, d.table, d.column) for i, d in enumerate(self.duplicates)),
            *(q.query() for q in self.queries),
        )


class SqliteConfig(CollectorConfig):
    databases: list[DatabaseConfig] = []

    def wanted(self) -> bool:
        return self.enabled and bool(self.databases)

    @model_validator(mode="before")
    @classmethod
    def _default_busy_timeout_fits(cls, data: Any) -> Any:
        # A short collector timeout brings the databases' default busy timeout down with it.
        if isinstance(data, dict) and isinstance(data.get("databases"), list):
            busy = min(DEFAULT_BUSY_TIMEOUT, effective_timeout(data) / 2)
            data = {
                **data,
                "databases": [
                    {"busy_timeout": busy, **db} if isinstance(db, dict) else db
                    for db in data["databases"]
                ],
            }
        return data

    @field_validator("databases")
    @classmethod
    def _consistent(cls, dbs: list[DatabaseConfig], info: ValidationInfo) -> list[DatabaseConfig]:
        timeout = info.data.get("timeout")
        names: dict[str, int] = {}
        paths: dict[Path, str] = {}
        metrics: dict[str, tuple[str, tuple[str, ...], str]] = {}
        for index, db in enumerate(dbs):
            if db.name in names:
                raise _duplicate("another database has this name", f"{index}.name")
            names[db.name] = index
            if db.path in paths:
                raise PydanticCustomError(
                    "duplicate",
                    "database {other} has the same path",
                    {"other": repr(paths[db.path]), "at": f"{index}.path"},
                )
            paths[db.path] = db.name
            if timeout is not None and db.busy_timeout >= timeout:
                raise PydanticCustomError(
                    "timeout",
                    "must be shorter than the collector timeout ({timeout})",
                    {"timeout": format_duration(timeout), "at": f"{index}.busy_timeout"},
                )
            for q_index, query in enumerate(db.queries):
                at = f"{index}.queries.{q_index}"
                labels = query.query().label_names
                first = metrics.setdefault(
                    query.metric, (query.help, labels, f"databases[{index}].queries[{q_index}]")
                )
                if first[0] != query.help:
                    raise PydanticCustomError(
                        "metric",
                        "differs from the help of {metric} in {first}",
                        {"metric": query.metric, "first": first[2], "at": f"{at}.help"},
                    )
                if first[1] != labels:
                    raise PydanticCustomError(
                        "metric",
                        "has other label names than in {first} ({labels})",
                        {"first": first[2], "labels": ", ".join(first[1]), "at": f"{at}.metric"},
                    )
        return dbs
