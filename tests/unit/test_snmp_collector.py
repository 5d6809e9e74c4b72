"""The collector over real UDP on 127.0.0.1, against an in-process fake SNMPv2c agent that can
drop, delay, garble or never answer: retries, malformed datagrams, concurrency and bounds,
logging, and secrets that never leave the config."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, MutableMapping
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.metrics_core import Metric

from exporter.collector import Context
from exporter.collectors.snmp import SnmpCollector
from exporter.collectors.snmpber import GET_BULK, Value, decode_message, encode_response
from exporter.collectors.snmpconfig import SnmpConfig
from exporter.threads import BlockingCalls
from tests.unit.test_snmp_walk import SYS_NAME, FakeAgent, if_table

COMMUNITY = "fake-Community-31337"


class AgentProtocol(asyncio.DatagramProtocol):
    """Answers v2c GET/GETBULK from a FakeAgent; `behave` may change or drop each answer."""

    def __init__(self, agent: FakeAgent, community: bytes) -> None:
        self.agent = agent
        self.community = community
        self.transport: asyncio.DatagramTransport | None = None
        self.received = 0
        self.behave: Callable[[int, bytes], list[bytes]] = lambda n, answer: [answer]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.received += 1
        request = decode_message(data)
        if request.community != self.community:
            return  # what agents do with a wrong community: nothing
        asyncio.get_running_loop().create_task(self._answer(request, addr))

    async def _answer(self, request: Any, addr: Any) -> None:
        oids = [oid for oid, _ in request.varbinds]
        if request.pdu_type == GET_BULK:
            response = await self.agent.bulk(oids, request.error_index)
        else:
            response = await self.agent.get(oids)
        answer = encode_response(
            self.community,
            request.request_id,
            response.varbinds,
            error_status=response.error_status,
            error_index=response.error_index,
        )
        assert self.transport is not None
        for datagram in self.behave(self.received, answer):
            self.transport.sendto(datagram, addr)


@pytest.fixture
async def agent() -> AsyncIterator[tuple[AgentProtocol, int]]:
    mib = if_table(3) | {SYS_NAME: Value("octets", b"fake-sw")}
    protocol = AgentProtocol(FakeAgent(mib), COMMUNITY.encode())
    transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
        lambda: protocol, local_addr=("127.0.0.1", 0)
    )
    port = transport.get_extra_info("sockname")[1]
    yield protocol, port
    transport.close()


def collector(*targets: dict[str, Any], timeout: str = "2s") -> SnmpCollector:
    config = SnmpConfig.model_validate(
        {"interval": "5s", "timeout": timeout, "targets": list(targets)}
    )
    return SnmpCollector(config, Context("snmp", Path("/nonexistent"), BlockingCalls()))


def target(port: int, name: str = "fake", **more: Any) -> dict[str, Any]:
    return {
        "name": name,
        "host": "127.0.0.1",
        "port": port,
        "community": COMMUNITY,
        "modules": ["if_mib", "system"],
        **more,
    }


def sample(families: list[Metric], name: str, **labels: str) -> float | None:
    for family in families:
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return None


def names_of(families: list[Metric], target_name: str) -> set[str]:
    return {
        s.labels["if_name"]
        for f in families
        for s in f.samples
        if s.name == "botwatch_snmp_if_info" and s.labels["target"] == target_name
    }


async def test_a_walk_over_udp(agent: tuple[AgentProtocol, int]) -> None:
    protocol, port = agent
    snmp = collector(target(port))
    try:
        families = await snmp.collect()
        assert sample(families, "botwatch_snmp_up", target="fake") == 1
        assert names_of(families, "fake") == {"eth1", "eth2", "eth3"}
        assert sample(families, "botwatch_snmp_sys_info", sys_name="fake-sw") == 1
        assert protocol.received == 2  # one GETBULK for the table, one GET
        await snmp.collect()
        assert protocol.received == 4  # again one each
        bulks = [reps for kind, _, reps in protocol.agent.requests if kind == "bulk"]
        assert bulks == [25, 4]  # the second asks for the 3 rows it saw, plus one
    finally:
        await snmp.close()


async def test_a_lost_datagram_is_retried(agent: tuple[AgentProtocol, int]) -> None:
    protocol, port = agent
    protocol.behave = lambda n, answer: [] if n == 1 else [answer]
    snmp = collector(target(port, modules=["if_mib"], timeout="1.5s", retries=2))
    try:
        started = time.monotonic()
        families = await snmp.collect()
        assert sample(families, "botwatch_snmp_up", target="fake") == 1
        assert time.monotonic() - started >= 0.5  # one try's wait: 1.5s / 3
        assert sample(families, "botwatch_snmp_errors_total", reason="timeout") == 0
    finally:
        await snmp.close()


async def test_garbage_and_stray_answers_are_counted_not_fatal(
    agent: tuple[AgentProtocol, int],
) -> None:
    protocol, port = agent
    stray = encode_response(COMMUNITY.encode(), 1, [])  # an answer to nobody's request

    def garble(n: int, answer: bytes) -> list[bytes]:
        return [b"\x30\x03junk", answer[:-3], stray, answer]

    protocol.behave = garble
    snmp = collector(target(port))
    try:
        families = await snmp.collect()
        assert sample(families, "botwatch_snmp_up", target="fake") == 1
        assert names_of(families, "fake") == {"eth1", "eth2", "eth3"}
        # Two undecodable datagrams per request (GETBULK and GET); the stray one is ignored.
        assert sample(families, "botwatch_snmp_errors_total", reason="malformed") == 4
    finally:
        await snmp.close()


async def test_a_silent_target_does_not_hold_up_the_others(
    agent: tuple[AgentProtocol, int],
) -> None:
    _, port = agent
    snmp = collector(
        target(port, name="good"),
        target(port, name="wrong-community", community="nope-nope", timeout="0.6s"),
        timeout="2s",
    )
    try:
        started = time.monotonic()
        families = await snmp.collect()
        elapsed = time.monotonic() - started
        assert 0.6 <= elapsed < 1.5
        assert sample(families, "botwatch_snmp_up", target="good") == 1
        assert names_of(families, "good") == {"eth1", "eth2", "eth3"}
        assert sample(families, "botwatch_snmp_up", target="wrong-community") == 0
        assert (
            sample(
                families, "botwatch_snmp_errors_total", target="wrong-community", reason="timeout"
            )
            == 1
        )
        assert names_of(families, "wrong-community") == set()
        duration = sample(
            families, "botwatch_snmp_scrape_duration_seconds", target="wrong-community"
        )
        assert duration is not None and 0.6 <= duration < 1.0
    finally:
        await snmp.close()


async def test_failure_streaks_are_logged_once_and_secrets_never(
    agent: tuple[AgentProtocol, int],
    captured_logs: list[MutableMapping[str, Any]],
) -> None:
    protocol, port = agent
    secret = "never-Shown-community-9"
    snmp = collector(target(port, community=secret, timeout="0.3s", retries=0))
    try:
        for _ in range(3):
            families = await snmp.collect()
        assert sample(families, "botwatch_snmp_errors_total", reason="timeout") == 3
        protocol.community = secret.encode()  # the agent now accepts it
        families = await snmp.collect()
        assert sample(families, "botwatch_snmp_up", target="fake") == 1
    finally:
        await snmp.close()
    events = [(e["event"], e["log_level"]) for e in captured_logs]
    assert events.count(("snmp target failed", "warning")) == 1
    assert events.count(("snmp target still failing", "debug")) == 2
    assert events.count(("snmp target recovered", "info")) == 1
    failed = next(e for e in captured_logs if e["event"] == "snmp target failed")
    assert failed["reason"] == "timeout"
    assert "wrong community" in failed["error"]
    assert secret not in repr(captured_logs)
    body = repr([s for f in families for s in f.samples])
    assert secret not in body


async def test_problems_are_logged_when_they_appear(
    agent: tuple[AgentProtocol, int],
    captured_logs: list[MutableMapping[str, Any]],
) -> None:
    protocol, port = agent
    protocol.agent.mib[(1, 3, 6, 1, 2, 1, 2, 2, 1, 8, 2)] = Value("octets", b"up")
    snmp = collector(target(port, modules=["if_mib", "host_resources"]))
    try:
        await snmp.collect()
        await snmp.collect()
    finally:
        await snmp.close()
    problems = [e for e in captured_logs if e["event"] == "snmp target answered with problems"]
    assert len(problems) == 1
    assert problems[0]["problems"] == {"malformed": 1, "no_such_object": 2}


async def test_a_dead_port_is_a_bounded_timeout() -> None:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nobody listens once it is closed
    snmp = collector(target(port, timeout="0.4s"))
    try:
        started = time.monotonic()
        families = await snmp.collect()
        assert time.monotonic() - started < 0.9
        assert sample(families, "botwatch_snmp_up", target="fake") == 0
        assert sample(families, "botwatch_snmp_errors_total", reason="timeout") == 1
    finally:
        await snmp.close()


async def test_an_unresolvable_host_is_other() -> None:
    snmp = collector(target(161, name="nowhere") | {"host": "nonexistent.invalid"})
    try:
        families = await snmp.collect()
        assert sample(families, "botwatch_snmp_up", target="nowhere") == 0
        assert sample(families, "botwatch_snmp_errors_total", reason="other") == 1
    finally:
        await snmp.close()


async def test_wraps_and_reboots_pass_through(agent: tuple[AgentProtocol, int]) -> None:
    protocol, port = agent
    mib = protocol.agent.mib
    in_errors = (1, 3, 6, 1, 2, 1, 2, 2, 1, 14, 1)
    uptime = (1, 3, 6, 1, 2, 1, 1, 3, 0)
    mib[in_errors] = Value("counter32", 2**32 - 6)
    mib[uptime] = Value("timeticks", 8_640_000)
    snmp = collector(target(port))
    try:
        before = await snmp.collect()
        mib[in_errors] = Value("counter32", 5)  # the 32-bit counter wrapped
        mib[uptime] = Value("timeticks", 1_500)  # the device rebooted
        after = await snmp.collect()
    finally:
        await snmp.close()
    eth1 = {"target": "fake", "if_name": "eth1"}
    assert sample(before, "botwatch_snmp_if_in_errors_total", **eth1) == 2**32 - 6
    assert sample(after, "botwatch_snmp_if_in_errors_total", **eth1) == 5
    assert sample(before, "botwatch_snmp_sys_uptime_seconds") == 86_400
    assert sample(after, "botwatch_snmp_sys_uptime_seconds") == 15
    assert sample(after, "botwatch_snmp_up", target="fake") == 1
    for reason in ("malformed", "other", "agent_error"):
        assert sample(after, "botwatch_snmp_errors_total", reason=reason) == 0


async def test_an_error_status_drops_that_table_only(agent: tuple[AgentProtocol, int]) -> None:
    protocol, port = agent
    storage = (1, 3, 6, 1, 2, 1, 25, 2, 3, 1)
    protocol.agent.status_for = lambda oids, reps: 5 if oids[0][:10] == storage else 0
    snmp = collector(target(port, modules=["if_mib", "system", "host_resources"]))
    try:
        families = await snmp.collect()
    finally:
        await snmp.close()
    assert sample(families, "botwatch_snmp_up", target="fake") == 1
    assert sample(families, "botwatch_snmp_errors_total", reason="agent_error") == 1
    assert names_of(families, "fake") == {"eth1", "eth2", "eth3"}
    assert sample(families, "botwatch_snmp_sys_info", sys_name="fake-sw") == 1
    assert sample(families, "botwatch_snmp_storage_size_bytes") is None
