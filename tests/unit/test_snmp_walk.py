"""GETBULK table walks and scalar GETs against an in-memory agent: ends of columns,
truncated answers, tooBig, agents that loop or never end, error-status, and failures."""

from __future__ import annotations

import asyncio
import bisect
from collections import Counter
from collections.abc import Callable, Sequence

import pytest

from exporter.collectors.snmpber import NO_SUCH_NAME, TOO_BIG, Oid, Value, VarBind
from exporter.collectors.snmpmetrics import Problems
from exporter.collectors.snmpmodules import (
    HOST_RESOURCES,
    IF_MIB,
    SYSTEM,
    CustomColumn,
    Table,
    custom_module,
)
from exporter.collectors.snmpwalk import (
    Budget,
    Response,
    SnmpFailure,
    TableFailure,
    get_scalars,
    walk_table,
    walk_target,
)

IF_DESCR = (1, 3, 6, 1, 2, 1, 2, 2, 1, 2)
IF_OPER = (1, 3, 6, 1, 2, 1, 2, 2, 1, 8)
IF_IN_ERRORS = (1, 3, 6, 1, 2, 1, 2, 2, 1, 14)
SYS_UPTIME = (1, 3, 6, 1, 2, 1, 1, 3, 0)
SYS_NAME = (1, 3, 6, 1, 2, 1, 1, 5, 0)
END = Value("end_of_mib_view")


class FakeAgent:
    """An agent over a dict of OIDs, with GETBULK's row-major answers."""

    def __init__(self, mib: dict[Oid, Value], *, max_answer: int = 1000) -> None:
        self.mib = mib
        self.order = sorted(mib)
        self.max_answer = max_answer  # varbinds per answer, as net-snmp caps at ~100
        self.requests: list[tuple[str, list[Oid], int]] = []
        self.status_for: Callable[[Sequence[Oid], int], int] = lambda oids, reps: 0

    def next_after(self, oid: Oid) -> VarBind:
        position = bisect.bisect_right(self.order, oid)
        if position == len(self.order):
            return oid, END
        found = self.order[position]
        return found, self.mib[found]

    async def get(self, oids: Sequence[Oid]) -> Response:
        self.requests.append(("get", list(oids), 0))
        return Response(0, 0, [(oid, self.mib.get(oid, Value("no_such_object"))) for oid in oids])

    async def bulk(self, oids: Sequence[Oid], max_repetitions: int) -> Response:
        self.requests.append(("bulk", list(oids), max_repetitions))
        status = self.status_for(oids, max_repetitions)
        if status:
            return Response(status, 1, [(oid, Value("null")) for oid in oids])
        out: list[VarBind] = []
        current = list(oids)
        for _ in range(max_repetitions):
            row = [self.next_after(oid) for oid in current]
            out.extend(row)
            current = [oid for oid, _ in row]
        return Response(0, 0, out[: self.max_answer])


def if_table(rows: int) -> dict[Oid, Value]:
    mib: dict[Oid, Value] = {}
    for index in range(1, rows + 1):
        mib[(*IF_DESCR, index)] = Value("octets", f"eth{index}".encode())
        mib[(*IF_OPER, index)] = Value("integer", 1 + index % 2)
        mib[(*IF_IN_ERRORS, index)] = Value("counter32", index * 10)
    mib[SYS_UPTIME] = Value("timeticks", 12345)
    mib[(1, 3, 6, 1, 2, 1, 99)] = Value("integer", 0)  # something after the table
    return mib


TABLE = Table("t", (IF_DESCR, IF_OPER, IF_IN_ERRORS))


async def walk(
    agent: FakeAgent,
    table: Table = TABLE,
    *,
    reps: int = 25,
    limit: int = 10_000,
    expected: int | None = None,
) -> tuple[dict[Oid, list[VarBind]], Problems]:
    problems: Problems = Counter()
    rows = await walk_table(
        agent,
        table,
        max_repetitions=reps,
        budget=Budget(limit),
        problems=problems,
        expected_rows=expected,
    )
    return rows, problems


async def test_columns_end_at_their_subtree() -> None:
    agent = FakeAgent(if_table(4))
    rows, problems = await walk(agent)
    assert [index for index, _ in rows[IF_DESCR]] == [(1,), (2,), (3,), (4,)]
    assert rows[IF_OPER][1] == ((2,), Value("integer", 1))
    assert rows[IF_IN_ERRORS][3] == ((4,), Value("counter32", 40))
    assert problems == Counter()
    assert len(agent.requests) == 1


async def test_rows_seen_last_round_make_one_small_request() -> None:
    agent = FakeAgent(if_table(4))
    await walk(agent, expected=4)
    assert agent.requests == [("bulk", list(TABLE.columns), 5)]


async def test_a_table_larger_than_the_hint_is_still_walked_to_its_end() -> None:
    agent = FakeAgent(if_table(60))
    rows, _ = await walk(agent, expected=2, reps=25)
    assert [len(r) for r in rows.values()] == [60, 60, 60]
    assert [reps for _, _, reps in agent.requests] == [3, 25, 25, 25]


async def test_truncated_answers_resume_where_each_column_stopped() -> None:
    # 7 varbinds an answer: rows end mid-way, so columns advance unevenly.
    agent = FakeAgent(if_table(10), max_answer=7)
    rows, problems = await walk(agent)
    for column in TABLE.columns:
        assert [index for index, _ in rows[column]] == [(i,) for i in range(1, 11)]
    assert problems == Counter()


async def test_too_big_halves_the_repetitions() -> None:
    agent = FakeAgent(if_table(8))
    agent.status_for = lambda oids, reps: TOO_BIG if len(oids) * reps > 12 else 0
    rows, _ = await walk(agent, reps=16)
    assert [len(r) for r in rows.values()] == [8, 8, 8]
    assert [reps for _, _, reps in agent.requests][:4] == [16, 8, 4, 4]


async def test_too_big_at_one_repetition_fails_the_table() -> None:
    agent = FakeAgent(if_table(2))
    agent.status_for = lambda oids, reps: TOO_BIG
    with pytest.raises(TableFailure) as failed:
        await walk(agent, reps=2)
    assert failed.value.reason == "agent_error"
    assert "tooBig" in str(failed.value)


@pytest.mark.parametrize(
    ("status", "reason"), [(5, "agent_error"), (16, "auth"), (NO_SUCH_NAME, "no_such_object")]
)
async def test_error_status_fails_the_table(status: int, reason: str) -> None:
    agent = FakeAgent(if_table(2))
    agent.status_for = lambda oids, reps: status
    with pytest.raises(TableFailure) as failed:
        await walk(agent)
    assert failed.value.reason == reason


class LoopingAgent(FakeAgent):
    """Answers every GETBULK with the same varbinds: a naive walker never stops."""

    async def bulk(self, oids: Sequence[Oid], max_repetitions: int) -> Response:
        self.requests.append(("bulk", list(oids), max_repetitions))
        return Response(0, 0, [((*IF_DESCR, 1), Value("octets", b"eth1"))] * len(oids))


async def test_an_agent_that_goes_back_is_stopped_and_counted() -> None:
    agent = LoopingAgent({})
    rows, problems = await walk(agent, Table("t", (IF_DESCR,)))
    assert rows[IF_DESCR] == [((1,), Value("octets", b"eth1"))]
    assert problems["malformed"] == 1
    assert len(agent.requests) == 2


class EndlessAgent(FakeAgent):
    """A column that never ends: every answer continues it."""

    async def bulk(self, oids: Sequence[Oid], max_repetitions: int) -> Response:
        self.requests.append(("bulk", list(oids), max_repetitions))
        start = oids[0][-1] if len(oids[0]) > len(IF_DESCR) else 0
        return Response(
            0,
            0,
            [((*IF_DESCR, start + i), Value("integer", i)) for i in range(1, max_repetitions + 1)],
        )


async def test_a_walk_that_never_ends_stops_at_max_varbinds() -> None:
    agent = EndlessAgent({})
    with pytest.raises(TableFailure) as failed:
        await walk(agent, Table("t", (IF_DESCR,)), limit=1000)
    assert failed.value.reason == "limit"
    assert len(agent.requests) == 41  # 40 full answers of 25, the 41st goes past the limit


async def test_an_empty_answer_fails_the_table() -> None:
    class Mute(FakeAgent):
        async def bulk(self, oids: Sequence[Oid], max_repetitions: int) -> Response:
            return Response(0, 0, [])

    with pytest.raises(TableFailure, match="empty"):
        await walk(Mute({}))


async def test_an_empty_table_is_no_such_object() -> None:
    rows, problems = await walk(FakeAgent({(1, 3, 6, 1, 2, 1, 99): Value("integer", 1)}))
    assert rows == {column: [] for column in TABLE.columns}
    assert problems == Counter({"no_such_object": 1})


async def test_scalars_missing_or_foreign_are_counted() -> None:
    agent = FakeAgent({SYS_UPTIME: Value("timeticks", 5)})
    problems: Problems = Counter()
    found = await get_scalars(agent, [SYS_UPTIME, SYS_NAME], budget=Budget(100), problems=problems)
    assert found == {SYS_UPTIME: Value("timeticks", 5)}
    assert problems == Counter({"no_such_object": 1})


class Recorder:
    """A client that fails one kind of request and answers the rest from FakeAgent."""

    def __init__(self, agent: FakeAgent, fail_get: BaseException | None = None) -> None:
        self.agent = agent
        self.fail_get = fail_get
        self.cancelled = 0

    async def get(self, oids: Sequence[Oid]) -> Response:
        if self.fail_get is not None:
            raise self.fail_get
        return await self.agent.get(oids)

    async def bulk(self, oids: Sequence[Oid], max_repetitions: int) -> Response:
        try:
            # Held open: the walk is still under way when the GET fails, whatever the timing.
            if self.fail_get is not None:
                await asyncio.Event().wait()
            return await self.agent.bulk(oids, max_repetitions)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise


async def run_target(client: object, modules: Sequence[object]) -> tuple[object, Problems, dict]:
    problems: Problems = Counter()
    notes: dict[str, str] = {}
    seen: dict[str, int] = {}
    walked = await walk_target(
        client,  # type: ignore[arg-type]
        modules,  # type: ignore[arg-type]
        max_repetitions=25,
        max_varbinds=1000,
        rows_seen=seen,
        problems=problems,
        notes=notes,
    )
    return walked, problems, seen


async def test_a_target_walk_reads_tables_and_scalars_together() -> None:
    agent = FakeAgent(if_table(3) | {SYS_NAME: Value("octets", b"sw1")})
    walked, problems, seen = await run_target(agent, [IF_MIB, SYSTEM, HOST_RESOURCES])
    assert walked.scalars == {  # type: ignore[attr-defined]
        SYS_UPTIME: Value("timeticks", 12345),
        SYS_NAME: Value("octets", b"sw1"),
    }
    tables = walked.tables  # type: ignore[attr-defined]
    assert len(tables["if_mib"][IF_DESCR]) == 3
    assert seen == {"if_mib": 3, "hr_storage": 0, "hr_processor": 0}
    # host_resources' two tables are empty on this agent: counted, not fatal.
    assert problems == Counter({"no_such_object": 2})


async def test_a_failing_table_is_dropped_and_the_others_kept() -> None:
    agent = FakeAgent(if_table(2))
    agent.status_for = lambda oids, reps: 5 if oids[0][:9] == (1, 3, 6, 1, 2, 1, 25, 2, 3) else 0
    walked, problems, _ = await run_target(agent, [IF_MIB, HOST_RESOURCES])
    assert set(walked.tables) == {"if_mib", "hr_processor"}  # type: ignore[attr-defined]
    assert problems["agent_error"] == 1


async def test_a_target_failure_cancels_its_other_requests() -> None:
    client = Recorder(FakeAgent(if_table(2)), fail_get=SnmpFailure("timeout", "no answer"))
    with pytest.raises(SnmpFailure, match="no answer"):
        await run_target(client, [IF_MIB, SYSTEM])
    assert client.cancelled == 1


async def test_custom_tables_are_walked_under_their_own_key() -> None:
    module = custom_module(
        "if_mib",  # a custom table may not be called that in config; keys stay apart anyway
        "index",
        [CustomColumn(IF_OPER, "oper", "gauge", "help")],
    )
    walked, _, _ = await run_target(FakeAgent(if_table(2)), [IF_MIB, module])
    assert set(walked.tables) == {"if_mib", "table if_mib"}  # type: ignore[attr-defined]
