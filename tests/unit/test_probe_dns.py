"""The `dns` probe type without a network: its config, what an answer or a getaddrinfo
result means, and a system resolver that hangs."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import ValidationError

from exporter.config import Config
from exporter.configerrors import format_validation_error
from exporter.probes import dns, dnswire
from exporter.probes.api import Result
from exporter.probes.dns import DnsCheck, DnsProbeConfig, outcome, parse_server, read_answer
from exporter.probes.dnswire import AAAA, CNAME, Question, WireError
from exporter.threads import BlockingCalls
from tests.support import eventually
from tests.unit.test_dnswire import (
    QNAME_AT,
    QR,
    RA,
    RD,
    header,
    pointer,
    question,
    record,
    response,
)

A_TYPE = dnswire.A
ASKED = Question("exchange.test", A_TYPE)
WHERE = "exchange.test A @127.0.0.1:53"


def probe(**fields: Any) -> DnsProbeConfig:
    return DnsProbeConfig.model_validate({"name": "p", "type": "dns", **fields})


def config_errors(entry: dict[str, Any]) -> list[str]:
    with pytest.raises(ValidationError) as caught:
        Config.model_validate({"probes": [{"name": "p", "type": "dns", **entry}]})
    return format_validation_error(caught.value, "c.yml", Config, {})


def samples(result: Result) -> dict[str, float]:
    return {s.family.name: s.value for s in result.samples}


# Config ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "normal"),
    [
        ("127.0.0.53", "127.0.0.53:53"),
        ("127.0.0.1:5353", "127.0.0.1:5353"),
        (" 127.0.0.1:5353 ", "127.0.0.1:5353"),
        ("::1", "[::1]:53"),
        ("[::1]:5353", "[::1]:5353"),
        ("[2001:DB8::1]", "[2001:db8::1]:53"),
    ],
)
def test_server_forms(written: str, normal: str) -> None:
    assert probe(host="exchange.test", server=written).server == normal


def test_defaults_to_the_system_resolver_and_a_records() -> None:
    config = probe(host="fapi.binance.com.")
    assert (config.server, config.record, config.timeout) == (None, "A", 5.0)


@pytest.mark.parametrize("server", ["dns.google", "127.0.0.1:0", "127.0.0.1:x", "[::1", "[::1]x"])
def test_bad_server_is_one_line(server: str) -> None:
    assert config_errors({"host": "a.test", "server": server}) == [
        "c.yml: probes[0].server: not an IP address with an optional port "
        f"(e.g. '127.0.0.53:53', '[::1]:53') (got {server!r})"
    ]


def test_bad_host_and_record_are_one_line_each() -> None:
    assert config_errors({"host": "a..test", "record": "MX"}) == [
        "c.yml: probes[0].host: not a host name: empty label (two dots in a row, or a leading "
        "dot) (got 'a..test')",
        "c.yml: probes[0].record: must be one of 'A' or 'AAAA' (got 'MX')",
    ]


def test_parse_server_keeps_the_address_apart() -> None:
    assert parse_server("[fe80::1]:53") == ("fe80::1", 53)


# Answers -----------------------------------------------------------------------------------


def a_record(last: int, ttl: int = 60, owner: bytes = QNAME_AT) -> bytes:
    return record(owner, A_TYPE, ttl, bytes([127, 0, 0, last]))


def test_answer_with_addresses_counts_distinct_ones_and_the_smallest_ttl() -> None:
    packet = response(7, "Exchange.TEST", [a_record(2, 300), a_record(3, 30), a_record(2, 300)])
    result = outcome(read_answer(packet, 7, ASKED), ASKED, "p", WHERE)
    assert result.success
    assert samples(result) == {
        "botwatch_probe_dns_addresses": 2,
        "botwatch_probe_dns_answer_ttl_seconds": 30,
    }


def test_the_cname_ttl_counts_too() -> None:
    cname = record(QNAME_AT, CNAME, 5, b"\x04edge" + QNAME_AT)  # edge.exchange.test
    target_at = len(header(7, 0) + question("exchange.test")) + 2 + 10  # the CNAME's rdata
    packet = response(7, "exchange.test", [cname, a_record(2, 300, owner=pointer(target_at))])
    result = outcome(read_answer(packet, 7, ASKED), ASKED, "p", WHERE)
    assert result.success
    assert samples(result)["botwatch_probe_dns_answer_ttl_seconds"] == 5


@pytest.mark.parametrize(
    ("rcode", "reason", "text", "addresses"),
    [
        (dnswire.NXDOMAIN, "nxdomain", "NXDOMAIN", 0),
        (dnswire.SERVFAIL, "servfail", "SERVFAIL", None),
        (dnswire.REFUSED, "refused", "REFUSED", None),
        (dnswire.FORMERR, "error", "FORMERR", None),
        (dnswire.NOTIMP, "error", "NOTIMP", None),
        (11, "error", "RCODE11", None),
    ],
)
def test_rcodes(rcode: int, reason: str, text: str, addresses: int | None) -> None:
    result = outcome(
        read_answer(response(7, "exchange.test", [], rcode=rcode), 7, ASKED), ASKED, "p", WHERE
    )
    assert (result.success, result.reason, result.error) == (False, reason, f"{WHERE}: {text}")
    assert samples(result).get("botwatch_probe_dns_addresses") == addresses


def test_no_record_of_the_asked_type_is_empty() -> None:
    v6 = record(QNAME_AT, AAAA, 60, bytes(16))
    result = outcome(read_answer(response(7, "exchange.test", [v6]), 7, ASKED), ASKED, "p", WHERE)
    assert (result.success, result.reason) == (False, "empty")
    assert result.error == f"{WHERE}: no A record in the answer"
    assert samples(result) == {"botwatch_probe_dns_addresses": 0}


@pytest.mark.parametrize(
    ("packet", "problem"),
    [
        (response(8, "exchange.test", [a_record(2)]), "answer has ID 8, the query had 7"),
        (response(7, "exchange.test", [], flags=RD), r"not a response \(QR bit clear\)"),
        (response(7, "exchange.test", [], flags=QR | 2 << 11), "opcode 2, the query had 0"),
        (response(7, "other.test", [a_record(2)]), "answer is for other.test A"),
        (response(7, "exchange.test", [], qtype=AAAA), "answer is for exchange.test AAAA"),
        (header(7, QR | RD | RA, qd=0), "answer is for no question"),
        (header(7, QR | RD | RA, qd=2) + question("exchange.test") * 2, "answer is for"),
        (b"\x00\x07garbage", "shorter than a DNS header"),
    ],
)
def test_answers_that_are_not_ours(packet: bytes, problem: str) -> None:
    with pytest.raises(WireError, match=problem):
        read_answer(packet, 7, ASKED)


def test_an_error_reply_may_leave_the_question_out() -> None:
    message = read_answer(header(7, QR | dnswire.FORMERR, qd=0), 7, ASKED)
    assert outcome(message, ASKED, "p", WHERE).reason == "error"


# The system resolver -----------------------------------------------------------------------


class FakeLookup:
    """getaddrinfo stand-in: records its calls, answers or raises, or hangs until let go."""

    def __init__(self, answer: list[tuple[Any, ...]] | Exception) -> None:
        self.answer = answer
        self.calls: list[tuple[Any, ...]] = []
        self.hang = threading.Event()
        self.hang.set()

    def __call__(self, *args: Any) -> list[tuple[Any, ...]]:
        self.calls.append(args)
        self.hang.wait(30)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def info(address: str, family: int = socket.AF_INET) -> tuple[Any, ...]:
    return (family, socket.SOCK_STREAM, 6, "", (address, 0))


@pytest.fixture
def lookup_released() -> Iterator[list[FakeLookup]]:
    # A hung fake must not outlive its test in a thread.
    made: list[FakeLookup] = []
    yield made
    for fake in made:
        fake.hang.set()


async def test_system_resolver_counts_distinct_addresses() -> None:
    fake = FakeLookup([info("2001:db8::1", socket.AF_INET6)] * 2 + [info("2001:db8::2")])
    check = DnsCheck(probe(host="exchange.test", record="AAAA"), BlockingCalls(), lookup=fake)
    result = await check.check()
    assert result.success
    assert samples(result) == {"botwatch_probe_dns_addresses": 2}
    assert fake.calls == [("exchange.test", None, socket.AF_INET6, socket.SOCK_STREAM)]


@pytest.mark.parametrize(
    ("errno", "reason", "addresses"),
    [
        (socket.EAI_NONAME, "nxdomain", 0),
        (socket.EAI_NODATA, "empty", 0),
        (socket.EAI_AGAIN, "timeout", None),
        (socket.EAI_FAIL, "error", None),
    ],
)
async def test_system_resolver_errors(errno: int, reason: str, addresses: int | None) -> None:
    fake = FakeLookup(socket.gaierror(errno, "what glibc says"))
    result = await DnsCheck(probe(host="exchange.test"), BlockingCalls(), lookup=fake).check()
    assert (result.success, result.reason) == (False, reason)
    assert result.error == "exchange.test A (system resolver): what glibc says"
    assert samples(result).get("botwatch_probe_dns_addresses") == addresses


async def test_a_hung_lookup_holds_one_thread_and_fails_the_next_checks_at_once(
    lookup_released: list[FakeLookup],
) -> None:
    fake = FakeLookup([info("127.0.0.2")])
    lookup_released.append(fake)
    fake.hang.clear()
    check = DnsCheck(probe(host="exchange.test"), BlockingCalls(), lookup=fake)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):  # what the collector does with the probe's timeout
            await check.check()
    for _ in range(3):
        result = await check.check()
        assert (result.success, result.reason) == (False, "timeout")
        assert "previous call still blocked" in str(result.error)
    assert len(fake.calls) == 1  # the later checks started no thread
    fake.hang.set()

    async def recovered() -> bool:
        return (await check.check()).success

    await eventually(recovered, 5, "a check after the lookup came back")
    assert len(fake.calls) == 2


def test_build_makes_a_check() -> None:
    built = dns.build(probe(host="exchange.test", server="127.0.0.1"), BlockingCalls())
    assert built.server == ("127.0.0.1", 53)
    assert built.question == Question("exchange.test", A_TYPE)
