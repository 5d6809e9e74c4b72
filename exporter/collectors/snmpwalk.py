"""Walking a target's modules over any SNMP client: GETBULK for tables, one GET for scalars.

A table's columns are walked together: each GETBULK asks for the next rows of every
column still going, and a column stops at the first varbind outside its subtree, at
endOfMibView, or at an OID that does not increase (an agent that loops; counted as
malformed). Every varbind counts against the target's `max_varbinds`, so a device whose
walk never ends stops at that bound (`limit`). The first request of a table asks for as
many rows as the last round found, plus one to see the end: a table that did not change
is read in one round trip. `tooBig` halves the repetitions and asks again.

All tables and the scalars of a target are requested concurrently. A table the agent
answers with an error-status is dropped (reason agent_error, auth or no_such_object)
while the others are kept; a timeout or an authentication failure fails the whole target.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from exporter.collector import first_error
from exporter.collectors.snmpber import (
    AUTHORIZATION_ERROR,
    NO_SUCH_NAME,
    TOO_BIG,
    Oid,
    Value,
    VarBind,
    error_status_name,
)
from exporter.collectors.snmpmetrics import Problems, Reason
from exporter.collectors.snmpmodules import Module, Table, Walked

_NO_SUCH = frozenset({"no_such_object", "no_such_instance"})


class SnmpFailure(Exception):
    """The target cannot be walked this round (timeout, auth, transport): it is down."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason: Reason = reason


class TableFailure(Exception):
    """One table (or the scalars) could not be read; the target's other data stands."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason: Reason = reason


@dataclass(frozen=True)
class Response:
    error_status: int
    error_index: int
    varbinds: list[VarBind]


class Client(Protocol):
    async def get(self, oids: Sequence[Oid]) -> Response: ...

    async def bulk(self, oids: Sequence[Oid], max_repetitions: int) -> Response: ...


class Budget:
    """The varbinds a target may still return this round."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.left = limit

    def take(self, count: int) -> None:
        self.left -= count
        if self.left < 0:
            raise TableFailure("limit", f"more than max_varbinds ({self.limit}) varbinds")


def status_reason(status: int) -> Reason:
    if status == AUTHORIZATION_ERROR:
        return "auth"
    if status == NO_SUCH_NAME:  # what an SNMPv1-style agent says for a missing object
        return "no_such_object"
    return "agent_error"


def _in_column(oid: Oid, column: Oid) -> bool:
    return len(oid) > len(column) and oid[: len(column)] == column


async def walk_table(
    client: Client,
    table: Table,
    *,
    max_repetitions: int,
    budget: Budget,
    problems: Problems,
    expected_rows: int | None = None,
) -> dict[Oid, list[VarBind]]:
    """Each column's rows as (index, value), in walk order."""
    rows: dict[Oid, list[VarBind]] = {column: [] for column in table.columns}
    last: dict[Oid, Oid] = {column: column for column in table.columns}
    active = list(table.columns)
    cap = max_repetitions
    repetitions = cap if expected_rows is None else max(1, min(cap, expected_rows + 1))
    while active:
        response = await client.bulk([last[column] for column in active], repetitions)
        if response.error_status:
            if response.error_status == TOO_BIG and repetitions > 1:
                cap = repetitions = max(1, repetitions // 2)
                continue
            raise TableFailure(
                status_reason(response.error_status),
                f"{table.key}: the agent answered {error_status_name(response.error_status)}",
            )
        varbinds = response.varbinds
        if not varbinds:
            raise TableFailure("malformed", f"{table.key}: an empty GETBULK response")
        budget.take(len(varbinds))
        width = len(active)
        finished: set[Oid] = set()
        progressed = False
        for position, (oid, value) in enumerate(varbinds):
            column = active[position % width]
            if column in finished:
                continue
            if (
                value.kind == "end_of_mib_view"
                or value.kind in _NO_SUCH
                or not _in_column(oid, column)
            ):
                finished.add(column)
                continue
            if oid <= last[column]:
                problems["malformed"] += 1  # the agent went back: stop before it loops
                finished.add(column)
                continue
            rows[column].append((oid[len(column) :], value))
            last[column] = oid
            progressed = True
        if not progressed and not finished:
            raise TableFailure("malformed", f"{table.key}: the walk does not advance")
        active = [column for column in active if column not in finished]
        repetitions = cap
    if not any(rows.values()):
        problems["no_such_object"] += 1
    return rows


async def get_scalars(
    client: Client, oids: Sequence[Oid], *, budget: Budget, problems: Problems
) -> dict[Oid, Value]:
    response = await client.get(oids)
    if response.error_status:
        raise TableFailure(
            status_reason(response.error_status),
            f"GET: the agent answered {error_status_name(response.error_status)}",
        )
    budget.take(len(response.varbinds))
    wanted = set(oids)
    found: dict[Oid, Value] = {}
    for oid, value in response.varbinds:
        if oid not in wanted:
            problems["malformed"] += 1
        elif value.kind in _NO_SUCH:
            problems["no_such_object"] += 1
        else:
            found[oid] = value
    return found


async def walk_target(
    client: Client,
    modules: Sequence[Module],
    *,
    max_repetitions: int,
    max_varbinds: int,
    rows_seen: dict[str, int],
    problems: Problems,
    notes: dict[str, str],
) -> Walked:
    """Everything the modules ask for. `rows_seen` (table key -> rows) is read as the hint
    for each table's first request and updated; `notes` gets one message per problem reason
    that failed a table, for the log."""
    budget = Budget(max_varbinds)
    walked = Walked()
    tables: dict[str, Table] = {t.key: t for m in modules for t in m.tables}
    scalars = tuple(dict.fromkeys(oid for m in modules for oid in m.scalars))

    async def read_table(table: Table) -> None:
        try:
            columns = await walk_table(
                client,
                table,
                max_repetitions=max_repetitions,
                budget=budget,
                problems=problems,
                expected_rows=rows_seen.get(table.key),
            )
        except TableFailure as exc:
            problems[exc.reason] += 1
            notes.setdefault(exc.reason, str(exc))
            return
        walked.tables[table.key] = columns
        rows_seen[table.key] = max((len(rows) for rows in columns.values()), default=0)

    async def read_scalars() -> None:
        try:
            walked.scalars = await get_scalars(client, scalars, budget=budget, problems=problems)
        except TableFailure as exc:
            problems[exc.reason] += 1
            notes.setdefault(exc.reason, str(exc))

    try:
        async with asyncio.TaskGroup() as group:
            for table in tables.values():
                group.create_task(read_table(table))
            if scalars:
                group.create_task(read_scalars())
    except BaseExceptionGroup as failed:
        raise first_error(failed) from None
    return walked
