"""The websocket probe against real servers on 127.0.0.1: a websockets server the test
steers (stream, close with a code, drop the TCP connection, go silent, reject the upgrade,
be down), a raw server that upgrades and then never answers a ping, and an aiohttp server
that answers 502. Pings, handshakes and backoff are all 200 ms here, so each test takes
well under a second or two.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import re
import socket
import struct
import time
from collections.abc import AsyncIterator, Callable, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import State

from exporter.collector import Context
from exporter.config import Config
from exporter.probes.collector import ProbesCollector
from exporter.probes.models import ProbesConfig
from exporter.probes.websocket import FeedWatch, WebSocketProbeConfig, build
from exporter.threads import BlockingCalls
from tests.integration.conftest import Daemon
from tests.streams import running
from tests.support import eventually, promtool_lint

pytestmark = pytest.mark.integration

FAST = {"timeout": "200ms", "ping_interval": "200ms", "max_backoff": "200ms"}
WAIT = 5.0  # deadline of every wait; the conditions come true within a second
Logs = list[MutableMapping[str, Any]]


# Servers ----------------------------------------------------------------------------------


class CountingPings(ServerConnection):
    """A server connection that counts the pings it answered (the library answers them)."""

    pings = 0

    def process_event(self, event: Any) -> None:
        if isinstance(event, Frame) and event.opcode is Opcode.PING:
            self.pings += 1
        super().process_event(event)


@dataclass
class Session:
    ws: ServerConnection
    path: str
    headers: Headers
    received: list[str | bytes] = field(default_factory=list)


class Feed:
    """A websockets server on 127.0.0.1: sends what it is told, when it is told."""

    def __init__(self) -> None:
        self.sessions: list[Session] = []
        self.reject_status: int | None = None  # answer the upgrade with this instead
        self.close_on_open: int | None = None  # close each connection at once with this
        self.server: Server | None = None
        self.port = 0

    async def start(self, port: int = 0) -> Feed:
        self.server = await serve(
            self._handle,
            "127.0.0.1",
            port,
            process_request=self._request,
            create_connection=CountingPings,
            ping_interval=None,  # only the probe pings
            max_size=None,
        )
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None

    def url(self, path: str = "/ws") -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    def _request(self, conn: ServerConnection, request: Request) -> Response | None:
        if self.reject_status is not None:
            return conn.respond(self.reject_status, "rejected\n")
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        session = Session(ws, ws.request.path, ws.request.headers)
        self.sessions.append(session)
        if self.close_on_open is not None:
            await ws.close(self.close_on_open)
            return
        with contextlib.suppress(ConnectionClosed):
            async for message in ws:
                session.received.append(message)

    @property
    def open(self) -> list[Session]:
        return [s for s in self.sessions if s.ws.state is State.OPEN]

    @property
    def pings(self) -> int:
        return sum(s.ws.pings for s in self.sessions if isinstance(s.ws, CountingPings))

    async def send(self, message: str) -> None:
        for session in self.open:
            await session.ws.send(message)

    async def close_all(self, code: int) -> None:
        for session in self.open:
            await session.ws.close(code)

    def drop_all(self, reset: bool = False) -> None:
        """End every connection without a close frame: a FIN, or with `reset` an RST."""
        for session in self.open:
            if reset:
                sock = session.ws.transport.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            session.ws.transport.abort()


class RawServer:
    """A TCP server that speaks just enough HTTP to misbehave:
    - "deaf": completes the upgrade with a hand-written 101, then never answers a ping;
    - "mute": reads the upgrade request and never answers it;
    - "not_tls": answers a TLS ClientHello with plain HTTP.
    """

    GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.upgraded = 0
        self.writers: list[asyncio.StreamWriter] = []
        self.server: asyncio.Server | None = None
        self.port = 0

    async def __aenter__(self) -> RawServer:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.writers:
            writer.close()
        await self.server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            if self.mode == "not_tls":
                await reader.read(1)
                writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            else:
                request = await reader.readuntil(b"\r\n\r\n")
                if self.mode == "deaf":
                    writer.write(self._switching(request))
                    self.upgraded += 1
            await writer.drain()
            while await reader.read(1 << 16):
                pass  # pings included: read and never answered

    def _switching(self, request: bytes) -> bytes:
        found = re.search(rb"(?im)^sec-websocket-key:\s*(\S+)", request)
        assert found is not None
        accept = base64.b64encode(hashlib.sha1(found.group(1) + self.GUID).digest())
        return (
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
        )


@contextlib.asynccontextmanager
async def bad_gateway() -> AsyncIterator[int]:
    """A plain aiohttp server (a proxy whose upstream is down): 502 for everything."""

    async def answer(_: web.Request) -> web.Response:
        return web.Response(status=502, text="upstream down\n")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def feed_server(port: int = 0) -> AsyncIterator[Feed]:
    feed = await Feed().start(port)
    try:
        yield feed
    finally:
        await feed.stop()


def closed_port() -> int:
    """A port nothing listens on (bound, read, released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# The probe --------------------------------------------------------------------------------


class Probe:
    """A websocket Watch running in a task; reads what it would serve."""

    def __init__(self, watch: FeedWatch) -> None:
        self.watch = watch
        self.changes = 0

    def changed(self) -> None:
        self.changes += 1

    def value(self, family: str, **labels: str) -> float | None:
        for sample in self.watch.samples():
            if sample.family.name == family and all(
                sample.labels.get(k) == v for k, v in labels.items()
            ):
                return sample.value
        return None

    def __call__(self, family: str, **labels: str) -> float:
        """The value, 0 when absent (counters before their first event, for arithmetic)."""
        return self.value(family, **labels) or 0.0

    def disconnects(self, reason: str) -> float:
        return self("botwatch_ws_disconnects", reason=reason)

    @property
    def healthy(self) -> bool:
        return self("botwatch_ws_connected") == 1 and self("botwatch_probe_success") == 1


@contextlib.asynccontextmanager
async def probing(url: str, **options: Any) -> AsyncIterator[Probe]:
    config = WebSocketProbeConfig.model_validate(
        {"name": "feed", "type": "websocket", "url": url, **FAST, **options}
    )
    watch = build(config, BlockingCalls())
    probe = Probe(watch)
    task = asyncio.create_task(watch.run(probe.changed))
    try:
        yield probe
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled(), "a Watch runs until it is cancelled"


async def until(condition: Callable[[], Any], what: str) -> Any:
    return await eventually(condition, WAIT, what)


# Tests ------------------------------------------------------------------------------------


async def test_streams_counts_messages_and_times_pings() -> None:
    async with feed_server() as feed:
        async with probing(feed.url(), subscribe='{"method":"SUB"}') as p:
            await until(lambda: p.healthy, "connected, first pong back")
            assert p("botwatch_ws_connects") == 1
            assert 0 < p("botwatch_ws_ping_rtt_seconds") < 0.2
            assert 0 < p("botwatch_ws_connect_duration_seconds") < 0.2
            assert p.value("botwatch_ws_last_message_timestamp_seconds") is None

            before, changes = time.time(), p.changes
            for n in range(5):
                await feed.send(f'{{"e":"markPrice","n":{n}}}')
            await until(lambda: p("botwatch_ws_messages") == 5, "five messages")
            assert before <= p("botwatch_ws_last_message_timestamp_seconds") <= time.time()
            assert p.changes >= changes + 5  # each message is announced
            (session,) = feed.sessions
            assert session.received[0] == '{"method":"SUB"}'
            assert session.headers["User-Agent"].startswith("botwatch-exporter/")
            assert p("botwatch_ws_connects") == 1
            assert all(p.disconnects(r) == 0 for r in ("refused", "timeout", "ping_timeout"))
        # Stopping the probe says goodbye properly: 1001, going away.
        await until(lambda: session.ws.state is State.CLOSED, "the server side closed")
        assert session.ws.close_code == 1001


async def test_closes_with_a_code_reconnect_and_resubscribe() -> None:
    async with feed_server() as feed, probing(feed.url(), subscribe="SUB") as p:

        async def close_with(code: int, reason: str) -> None:
            await until(lambda: p.healthy and feed.open and feed.open[0].received, "subscribed")
            await feed.close_all(code)
            await until(lambda: p.disconnects(reason) == 1, f"a {reason} disconnect")

        await close_with(1011, "1011")
        await close_with(1000, "1000")
        await close_with(4001, "other")
        await until(lambda: p.healthy and len(feed.sessions) == 4, "the fourth connection")
        await until(lambda: feed.sessions[3].received, "the fourth subscription")
        assert [s.received for s in feed.sessions] == [["SUB"]] * 4
        assert p("botwatch_ws_connects") == 4
        assert p.value("botwatch_ws_disconnects", reason="4001") is None  # bounded


async def test_a_connection_dropped_without_a_close_frame() -> None:
    async with feed_server() as feed, probing(feed.url()) as p:
        await until(lambda: p.healthy, "connected")
        feed.drop_all()
        await until(lambda: p.disconnects("1006") == 1, "a FIN without a close frame: 1006")
        await until(lambda: p.healthy and len(feed.open) == 1, "reconnected")
        feed.drop_all(reset=True)
        await until(lambda: p.disconnects("reset") == 1, "an RST: reset")
        await until(lambda: p.healthy and p("botwatch_ws_connects") == 3, "reconnected again")


async def test_a_silent_feed_stays_connected_while_its_last_message_ages() -> None:
    async with feed_server() as feed, probing(feed.url()) as p:
        await until(lambda: p.healthy, "connected")
        await feed.send("tick")
        await until(lambda: p("botwatch_ws_messages") == 1, "the message")
        last = p("botwatch_ws_last_message_timestamp_seconds")
        answered = feed.pings
        # The feed goes quiet but answers pings: the connection is fine, the data is not.
        await until(lambda: feed.pings >= answered + 3, "three more answered pings")
        assert p("botwatch_ws_last_message_timestamp_seconds") == last
        assert p("botwatch_ws_messages") == 1
        assert p.healthy
        assert p("botwatch_ws_ping_rtt_seconds") > 0
        assert p("botwatch_ws_connects") == 1


async def test_a_ping_without_a_pong_is_a_dead_connection(captured_logs: Logs) -> None:
    async with RawServer("deaf") as deaf, probing(f"ws://127.0.0.1:{deaf.port}/ws") as p:
        await until(lambda: p.disconnects("ping_timeout") >= 2, "two ping timeouts")
        assert deaf.upgraded >= 2
        assert p("botwatch_ws_connects") >= 2
        assert p("botwatch_probe_success") == 0
        assert p.value("botwatch_ws_ping_rtt_seconds") is None
        assert p.disconnects("1006") == 0  # closed by us, counted once as ping_timeout
    failed = [e for e in captured_logs if e["event"] == "probe failed"]
    assert [(e["reason"], e["error"]) for e in failed] == [("ping_timeout", "no pong within 0.2s")]


@contextlib.asynccontextmanager
async def rejecting(kind: str) -> AsyncIterator[str]:
    """A URL whose connect fails the way `kind` says."""
    if kind == "403":
        async with feed_server() as feed:
            feed.reject_status = 403
            yield feed.url()
    elif kind == "502":
        async with bad_gateway() as port:
            yield f"ws://127.0.0.1:{port}/ws"
    elif kind == "mute":
        async with RawServer("mute") as mute:
            yield f"ws://127.0.0.1:{mute.port}/ws"
    elif kind == "not_tls":
        async with RawServer("not_tls") as plain:
            yield f"wss://127.0.0.1:{plain.port}/ws"
    else:
        yield f"ws://127.0.0.1:{closed_port()}/ws"


@pytest.mark.parametrize(
    ("kind", "reason", "error"),
    [
        ("403", "handshake", "upgrade rejected: HTTP 403"),
        ("502", "handshake", "upgrade rejected: HTTP 502"),
        ("mute", "timeout", "no completed handshake within 0.2s"),
        ("not_tls", "tls", "TLS: "),  # then OpenSSL's reason, whose wording varies
        ("closed", "refused", "connection refused"),
    ],
)
async def test_failed_connects_count_their_reason(
    kind: str, reason: str, error: str, captured_logs: Logs
) -> None:
    async with rejecting(kind) as url, probing(url) as p:
        await until(lambda: p.disconnects(reason) >= 2, f"two {reason} failures")
        assert p("botwatch_ws_connects") == 0
        assert p("botwatch_ws_connected") == 0
        assert p("botwatch_probe_success") == 0
        assert p.value("botwatch_ws_connect_duration_seconds") is None
    (failed,) = [e for e in captured_logs if e["event"] == "probe failed"]
    assert (failed["probe"], failed["reason"]) == ("feed", reason)
    assert failed["error"].startswith(error)


async def test_down_then_up_logs_only_the_edges_of_each_streak(captured_logs: Logs) -> None:
    port = closed_port()
    async with probing(f"ws://127.0.0.1:{port}/ws") as p:
        await until(lambda: p.disconnects("refused") >= 3, "three refused connects")
        async with feed_server(port) as feed:
            await until(lambda: p.healthy, "connected once the server is up")
            await feed.close_all(1011)
            await until(lambda: p.disconnects("1011") == 1 and p.healthy, "back after a 1011")
            # Read before the server's shutdown (1001) starts a third streak.
            events = [
                (e["event"], e.get("reason"))
                for e in captured_logs
                if e.get("probe") == "feed" and e["log_level"] != "debug"
            ]
    assert events == [
        ("probe failed", "refused"),
        ("probe recovered", None),
        ("probe failed", "1011"),
        ("probe recovered", None),
    ]
    retries = [e for e in captured_logs if e["event"] == "probe still failing"]
    assert len(retries) >= 2
    assert all(e["log_level"] == "debug" for e in retries)


async def test_reconnects_are_rate_bounded_by_the_backoff() -> None:
    async with feed_server() as feed:
        feed.close_on_open = 1011  # accepts, then closes at once: the tight-loop trap
        started = time.monotonic()
        async with probing(feed.url(), subscribe="SUB") as p:
            await until(lambda: p.disconnects("1011") >= 6, "six accepted-then-closed connects")
            elapsed = time.monotonic() - started
            connects, drops = p("botwatch_ws_connects"), p.disconnects("1011")
        # Each drop is followed by one reconnect, after a wait of at least half the cap.
        assert connects == len(feed.sessions)
        assert drops <= connects <= drops + 1
        assert elapsed >= (drops - 1) * 0.1
        assert connects <= elapsed / 0.1 + 1


async def test_an_oversized_message_closes_the_connection() -> None:
    async with feed_server() as feed, probing(feed.url(), max_message_bytes=1000) as p:
        await until(lambda: p.healthy, "connected")
        await feed.send("x" * 1000)  # at the limit: fine
        await until(lambda: p("botwatch_ws_messages") == 1, "the message at the limit")
        await feed.send("y" * 1001)
        await until(lambda: p.disconnects("too_big") == 1, "a too_big disconnect")
        assert p("botwatch_ws_messages") == 1
        await until(lambda: p.healthy and p("botwatch_ws_connects") == 2, "reconnected")


async def test_secrets_reach_the_server_and_nothing_else(captured_logs: Logs) -> None:
    api_key = "k3y-" + os.urandom(8).hex()
    listen_key = "lk" + os.urandom(8).hex()
    async with feed_server() as feed:
        url = feed.url(f"/ws/{listen_key}")
        async with probing(url, headers={"X-MBX-APIKEY": api_key}, subscribe="SUB") as p:
            await until(lambda: p.healthy, "connected")
            (session,) = feed.sessions
            assert session.headers["X-MBX-APIKEY"] == api_key
            assert session.path == f"/ws/{listen_key}"
            await feed.close_all(1011)
            await until(lambda: p.disconnects("1011") == 1, "a disconnect")
            feed.reject_status = 403
            await until(lambda: p.disconnects("handshake") >= 1, "a rejected upgrade")
            await feed.stop()
            await until(lambda: p.disconnects("refused") >= 1, "a refused connect")
            exposed = [(s.family.name, dict(s.labels), s.value) for s in p.watch.samples()]
    assert any(e["event"] == "probe failed" for e in captured_logs)
    for text in (repr(captured_logs), repr(exposed)):
        assert api_key not in text
        assert listen_key not in text
        assert url not in text


# Through the collector and the daemon -----------------------------------------------------


def collector_for(*entries: dict[str, Any], tmp_path: Path) -> ProbesCollector:
    config = Config.model_validate({"probes": list(entries)}).collector_configs()["probes"]
    assert isinstance(config, ProbesConfig)
    return ProbesCollector(config, Context("probes", tmp_path, BlockingCalls()))


def exposition(families: Any) -> str:
    class Families:
        def collect(self) -> Any:
            return families

    registry = CollectorRegistry()
    registry.register(Families())
    return generate_latest(registry).decode()


async def test_through_the_probes_collector(tmp_path: Path) -> None:
    async with feed_server() as feed:
        down = f"ws://127.0.0.1:{closed_port()}/ws"
        probes = collector_for(
            {"name": "binance", "type": "websocket", "url": feed.url(), **FAST},
            {"name": "down", "type": "websocket", "url": down, **FAST},
            tmp_path=tmp_path,
        )
        async with running(probes) as run:

            def count(name: str, **labels: str) -> float:
                return run.value(name, **labels) or 0.0

            await until(lambda: count("botwatch_probe_success", probe="binance"), "up")
            await feed.send("a")
            await feed.send("b")
            await until(lambda: count("botwatch_ws_messages_total", probe="binance") == 2, "2")
            await until(
                lambda: count("botwatch_ws_disconnects_total", probe="down", reason="refused"),
                "the other probe refused",
            )
            assert count("botwatch_ws_connected", probe="binance") == 1
            assert count("botwatch_ws_connects_total", probe="binance") == 1
            assert count("botwatch_ws_ping_rtt_seconds", probe="binance") > 0
            assert run.value("botwatch_ws_connected", probe="down") == 0
            assert run.value("botwatch_probe_success", probe="down") == 0
            assert run.failure() is None
            body = exposition(probes.families())
    assert body.count("# TYPE botwatch_probe_success gauge") == 1
    assert promtool_lint(body) == ""


DAEMON_CONFIG = """\
web: {listen_address: "127.0.0.1:0"}
probes:
  - name: binance-futures
    type: websocket
    url: "URL"
    headers: {X-MBX-APIKEY: "${BOTWATCH_TEST_WS_KEY}"}
    subscribe: '{"method": "SUBSCRIBE", "params": ["btcusdt@markPrice"], "id": 1}'
    ping_interval: 200ms
    timeout: 200ms
    max_backoff: 200ms
"""


async def test_through_the_daemon(
    daemon: Callable[..., Daemon], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    api_key = "k3y-" + os.urandom(8).hex()
    listen_key = "lk" + os.urandom(8).hex()
    monkeypatch.setenv("BOTWATCH_TEST_WS_KEY", api_key)
    async with feed_server() as feed:
        config = tmp_path / "botwatch.yml"
        state = f"state_dir: {tmp_path / 'state'}\n"
        config.write_text(state + DAEMON_CONFIG.replace("URL", feed.url(f"/ws/{listen_key}")))
        d = await asyncio.to_thread(daemon, config)

        async def scraped(name: str, wanted: float, **labels: str) -> bool:
            found = await asyncio.to_thread(d.sample, name, probe="binance-futures", **labels)
            return (found or 0) >= wanted

        await until(lambda: scraped("botwatch_probe_success", 1), "the daemon's probe up")
        (session,) = feed.sessions
        assert session.headers["X-MBX-APIKEY"] == api_key
        assert session.received == [
            '{"method": "SUBSCRIBE", "params": ["btcusdt@markPrice"], "id": 1}'
        ]
        for n in range(3):
            await feed.send(f"m{n}")
        await until(lambda: scraped("botwatch_ws_messages_total", 3), "3 messages on /metrics")
        await feed.close_all(1011)
        await until(lambda: scraped("botwatch_ws_disconnects_total", 1, reason="1011"), "1011")
        await until(lambda: scraped("botwatch_ws_connected", 1), "reconnected")
        body = await asyncio.to_thread(d.metrics)
        failed = d.events("probe failed")  # before the server's shutdown (1001)
    assert promtool_lint(body) == ""
    assert 'botwatch_collector_up{collector="probes"} 1.0' in body
    assert 'botwatch_ws_messages_total{probe="binance-futures"} 3.0' in body
    assert 'botwatch_ws_disconnects_total{probe="binance-futures",reason="refused"} 0.0' in body
    assert [(e["probe"], e["reason"]) for e in failed] == [("binance-futures", "1011")]
    logs = "".join(d.raw)
    for text in (body, logs):
        assert api_key not in text
        assert listen_key not in text
