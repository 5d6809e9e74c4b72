"""The `dns` probe against a real DNS server: dnsmasq (Debian's dnsmasq-base) on 127.0.0.1
and an ephemeral port, with no upstream and no hosts file, so no query leaves the machine.

What this dnsmasq answers: the names configured below; NXDOMAIN for other names under
.test (`--local=/test/`), REFUSED for names anywhere else (it has no upstream to ask).
The system resolver is tried on `localhost` only, which /etc/hosts answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import os
import pwd
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import yaml

from exporter.collector import Context
from exporter.config import Config
from exporter.probes import dns, dnswire
from exporter.probes.api import Result
from exporter.probes.collector import ProbesCollector
from exporter.probes.models import ProbesConfig
from exporter.threads import BlockingCalls
from tests.integration.conftest import Daemon
from tests.servers import stop_process
from tests.streams import running
from tests.support import eventually, promtool_lint, wait_for
from tests.unit.test_dnswire import QNAME_AT, QR, RA, RD, TC, record, response

pytestmark = pytest.mark.integration

BIG = 60  # A records of big.test: more than fit in 512 bytes of UDP
DNSMASQ_RECORDS = [
    "--local=/test/",
    "--local-ttl=60",
    "--address=/exchange.test/127.0.0.2",
    "--host-record=multi.test,127.0.0.3",
    "--host-record=multi.test,127.0.0.4",
    "--host-record=v6.test,::5",
    "--cname=alias.test,multi.test",
    "--cname=alias2.test,alias.test",
    *(f"--host-record=big.test,127.0.1.{n}" for n in range(1, BIG + 1)),
]


# dnsmasq -----------------------------------------------------------------------------------


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 (dnsmasq serves both)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = int(udp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port


def answers(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.2)
        sock.sendto(dnswire.encode_query(1, "exchange.test", dnswire.A), ("127.0.0.1", port))
        try:
            return bool(sock.recv(512))
        except OSError:
            return False


def start_dnsmasq(port: int, log: Path) -> subprocess.Popen[bytes]:
    dnsmasq = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
    if not Path(dnsmasq).exists():
        pytest.fail("dnsmasq not installed (Debian package dnsmasq-base)")
    with log.open("ab") as out:
        return subprocess.Popen(
            [
                dnsmasq,
                "--keep-in-foreground",
                "--conf-file=/dev/null",
                "--no-resolv",
                "--no-hosts",
                "--listen-address=127.0.0.1",
                "--bind-interfaces",
                f"--port={port}",
                "--pid-file=",  # none: not /run/dnsmasq.pid
                # Stay who we are (as root it would switch to nobody).
                f"--user={pwd.getpwuid(os.getuid()).pw_name}",
                f"--group={grp.getgrgid(os.getgid()).gr_name}",
                "--log-facility=-",
                *DNSMASQ_RECORDS,
            ],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
        )


def wait_until_up(proc: subprocess.Popen[bytes], port: int) -> bool:
    """True once it answers, False if it exited (its port was taken)."""
    try:
        wait_for(lambda: proc.poll() is not None or answers(port), 10, "dnsmasq to answer")
    except AssertionError:
        proc.kill()
        proc.wait()
        raise
    return proc.poll() is None


@pytest.fixture(scope="module")
def dnsmasq(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """dnsmasq's port; it is stopped by its PID when the module's tests are done."""
    log = tmp_path_factory.mktemp("dnsmasq") / "dnsmasq.log"
    for _ in range(3):  # another process may take the port between free_port() and bind
        port = free_port()
        proc = start_dnsmasq(port, log)
        if wait_until_up(proc, port):
            break
    else:
        pytest.fail(f"dnsmasq did not start: {log.read_text()}")
    yield port
    stop_process(proc)


def probe(**fields: Any) -> dns.DnsProbeConfig:
    return dns.DnsProbeConfig.model_validate({"name": "p", "type": "dns", **fields})


async def check(config: dns.DnsProbeConfig, retransmit: float = dns.RETRANSMIT) -> Result:
    """One check under the probe's timeout, as the collector runs it."""
    async with asyncio.timeout(config.timeout):
        return await dns.DnsCheck(config, BlockingCalls(), retransmit=retransmit).check()


def values(result: Result) -> dict[str, float]:
    return {s.family.name: s.value for s in result.samples}


ADDRESSES = "botwatch_probe_dns_addresses"
TTL = "botwatch_probe_dns_answer_ttl_seconds"


# Against dnsmasq ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "record", "count"),
    [
        ("exchange.test", "A", 1),
        ("EXCHANGE.test.", "A", 1),
        ("multi.test", "A", 2),
        ("v6.test", "AAAA", 1),
        ("alias2.test", "A", 2),  # alias2 -> alias -> multi, all in one answer
    ],
)
async def test_addresses(dnsmasq: int, host: str, record: str, count: int) -> None:
    result = await check(probe(host=host, record=record, server=f"127.0.0.1:{dnsmasq}"))
    assert (result.success, result.reason, result.error) == (True, None, None)
    assert values(result) == {ADDRESSES: count, TTL: 60}


async def test_truncated_udp_answer_is_asked_again_over_tcp(dnsmasq: int) -> None:
    result = await check(probe(host="big.test", server=f"127.0.0.1:{dnsmasq}"))
    assert result.success, result.error
    assert values(result) == {ADDRESSES: BIG, TTL: 60}


@pytest.mark.parametrize(
    ("host", "record", "reason", "rcode"),
    [
        ("unknown.test", "A", "nxdomain", "NXDOMAIN"),  # a local domain: it knows there is none
        ("unknown.example", "A", "refused", "REFUSED"),  # it has no upstream to ask
        ("v6.test", "A", "empty", "no A record in the answer"),  # NOERROR, only an AAAA
    ],
)
async def test_negative_answers(
    dnsmasq: int, host: str, record: str, reason: str, rcode: str
) -> None:
    result = await check(probe(host=host, record=record, server=f"127.0.0.1:{dnsmasq}"))
    assert (result.success, result.reason) == (False, reason)
    assert result.error == f"{host} {record} @127.0.0.1:{dnsmasq}: {rcode}"


async def test_dead_server_port_is_no_answer() -> None:
    port = free_port()  # nothing listens: the kernel answers with ICMP port unreachable
    result = await check(probe(host="exchange.test", server=f"127.0.0.1:{port}"))
    assert (result.success, result.reason) == (False, "timeout")
    assert result.error == (
        f"exchange.test A @127.0.0.1:{port}: no answer: connection refused (nothing listens there)"
    )
    assert values(result) == {}


# Against a fake ----------------------------------------------------------------------------

Reply = Callable[[dnswire.Message], bytes | None]


class FakeServer(asyncio.DatagramProtocol):
    """Answers each query with reply(query); None: stays silent."""

    def __init__(self, reply: Reply) -> None:
        self.reply = reply
        self.queries: list[dnswire.Message] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        query = dnswire.decode(data)
        self.queries.append(query)
        answer = self.reply(query)
        if answer is not None and self.transport is not None:
            self.transport.sendto(answer, addr)


@contextlib.asynccontextmanager
async def fake_server(reply: Reply) -> AsyncIterator[tuple[int, FakeServer]]:
    loop = asyncio.get_running_loop()
    transport, server = await loop.create_datagram_endpoint(
        lambda: FakeServer(reply), local_addr=("127.0.0.1", 0)
    )
    try:
        yield transport.get_extra_info("sockname")[1], server
    finally:
        transport.close()


def answer(query: dnswire.Message, qid: int | None = None, name: str | None = None) -> bytes:
    """A proper answer (127.0.0.9), or one with another ID or question."""
    asked = query.questions[0]
    return response(
        query.header.id if qid is None else qid,
        name or asked.name,
        [record(QNAME_AT, dnswire.A, 30, bytes([127, 0, 0, 9]))],
        qtype=asked.qtype,
    )


# Replies a real server does not send (or dnsmasq cannot be made to send without an
# upstream: SERVFAIL, a truncated answer with no TCP), hence a fake.
FAKE_REPLIES: list[tuple[str, Reply, str, str]] = [
    ("garbage", lambda q: b"\x00\x01 this is not DNS", "error", "not a response (QR bit clear)"),
    ("short", lambda q: q.header.id.to_bytes(2, "big") + b"\x80", "error", "3 bytes, shorter"),
    (
        "wrong-id",
        lambda q: answer(q, qid=(q.header.id + 1) % 65536),
        "error",
        "answer has ID",
    ),
    (
        "wrong-question",
        lambda q: answer(q, name="other.test"),
        "error",
        "answer is for other.test A",
    ),
    (
        "servfail",
        lambda q: response(q.header.id, q.questions[0].name, [], rcode=dnswire.SERVFAIL),
        "servfail",
        "SERVFAIL",
    ),
    (
        "truncated-no-tcp",
        lambda q: response(q.header.id, q.questions[0].name, [], flags=QR | RD | RA | TC),
        "error",
        "(TCP): answer truncated over UDP: connection refused",
    ),
]


@pytest.mark.parametrize(
    ("reply", "reason", "error"),
    [pytest.param(*case[1:], id=case[0]) for case in FAKE_REPLIES],
)
async def test_answers_a_real_server_would_not_give(reply: Reply, reason: str, error: str) -> None:
    async with fake_server(reply) as (port, _):
        result = await check(probe(host="exchange.test", server=f"127.0.0.1:{port}"))
    assert (result.success, result.reason) == (False, reason)
    assert error in str(result.error)


async def test_a_lost_datagram_is_sent_again() -> None:
    def second_time(query: dnswire.Message) -> bytes | None:
        return answer(query) if len(server.queries) > 1 else None

    async with fake_server(second_time) as (port, server):
        result = await check(
            probe(host="exchange.test", server=f"127.0.0.1:{port}"), retransmit=0.05
        )
    assert result.success, result.error
    assert values(result) == {ADDRESSES: 1, TTL: 30}
    assert len({q.header.id for q in server.queries}) == 1  # the same query, resent


# The system resolver -----------------------------------------------------------------------


async def test_system_resolver_finds_localhost_in_etc_hosts() -> None:
    result = await check(probe(host="localhost"))
    assert result.success, result.error
    assert values(result)[ADDRESSES] >= 1


# The collector and the daemon --------------------------------------------------------------


def probes_config(port: int, silent: int, interval: str) -> list[dict[str, Any]]:
    """A probe that succeeds, one that gets NXDOMAIN, one with no answer, one on localhost."""
    probes = [
        {"name": "exchange", "host": "exchange.test", "server": f"127.0.0.1:{port}"},
        {"name": "gone", "host": "unknown.test", "server": f"127.0.0.1:{port}"},
        {"name": "quiet", "host": "exchange.test", "server": f"127.0.0.1:{silent}"},
        {"name": "local", "host": "localhost"},
    ]
    return [{**entry, "type": "dns", "interval": interval} for entry in probes]


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A UDP port that takes queries and never answers (no ICMP either)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


async def test_through_the_probes_collector(dnsmasq: int, silent_port: int, tmp_path: Path) -> None:
    config = Config.model_validate({"probes": probes_config(dnsmasq, silent_port, "200ms")})
    probes = config.collector_configs()["probes"]
    assert isinstance(probes, ProbesConfig)
    collector = ProbesCollector(probes, Context("probes", tmp_path, BlockingCalls()))
    async with running(collector) as run:

        def failures(probe: str, reason: str) -> float | None:
            return run.value("botwatch_probe_failures_total", probe=probe, reason=reason)

        await eventually(
            lambda: (
                run.value("botwatch_probe_success", probe="exchange") == 1
                and run.value("botwatch_probe_success", probe="local") == 1
                and (failures("gone", "nxdomain") or 0) >= 1
                and (failures("quiet", "timeout") or 0) >= 1
            ),
            10,
            "every probe's first check",
        )
        assert run.value(ADDRESSES, probe="exchange") == 1
        assert run.value(TTL, probe="exchange") == 60
        assert run.value(ADDRESSES, probe="gone") == 0
        assert run.value(TTL, probe="local") is None  # only a server's answer has TTLs
        assert run.value("botwatch_probe_success", probe="gone") == 0
        for reason in dns.REASONS:
            assert failures("exchange", reason) == 0


async def test_through_the_daemon(
    daemon: Callable[..., Daemon], dnsmasq: int, silent_port: int, tmp_path: Path
) -> None:
    path = tmp_path / "botwatch.yml"
    path.write_text(
        yaml.safe_dump(
            {
                "web": {"listen_address": "127.0.0.1:0"},
                "state_dir": str(tmp_path / "state"),
                "probes": probes_config(dnsmasq, silent_port, "1s"),
            }
        )
    )
    d = daemon(path)
    wait_for(
        lambda: (
            d.sample("botwatch_probe_success", probe="exchange") == 1
            and d.sample("botwatch_probe_failures_total", probe="quiet", reason="timeout")
        ),
        15,
        "the dns probes in a scrape",
    )
    assert d.sample(ADDRESSES, probe="exchange") == 1
    assert d.sample(TTL, probe="exchange") == 60
    assert promtool_lint(d.metrics()) == ""
