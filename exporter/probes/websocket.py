"""`websocket`: a WebSocket feed held open the way the trading bot holds it (websockets).

One connection, kept open: connect (the handshake bounded by `timeout`), send `subscribe`,
ping every `ping_interval` and time the pong (none within `timeout` is a dead connection),
count what arrives, and reconnect after any disconnect with capped exponential backoff.
A feed that stays connected but goes silent is what a reconnect counter misses, hence
`botwatch_ws_last_message_timestamp_seconds`.

Secrets: header values (often ${ENV}) and the URL (a listen key may be in its path) appear
in no metric, label, log or error; events name the probe.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import random
import re
import socket
import ssl
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

import structlog
from pydantic import Field, field_validator
from pydantic_core import PydanticCustomError

from exporter import __version__
from exporter.fields import Duration
from exporter.probes.api import SUCCESS, FamilySpec, ProbeConfig, Sample
from exporter.threads import BlockingCalls

if TYPE_CHECKING:
    from websockets.asyncio.client import ClientConnection
    from websockets.exceptions import ConnectionClosed

log = structlog.get_logger("exporter.probes")

TYPE = "websocket"
# The failure classes that are not close codes. Each starts at 0 so that increase() sees
# its first occurrence; close codes appear when they first happen.
REASONS = (
    "refused",
    "dns",
    "tls",
    "handshake",
    "timeout",
    "ping_timeout",
    "too_big",
    "reset",
    "unreachable",
)
# Close codes of RFC 6455 and its registry (1004 reserved, 1005/1006/1015 never on the
# wire but reported locally); anything else, e.g. an application's 4xxx, folds into OTHER.
KNOWN_CLOSE_CODES = frozenset(range(1000, 1016))
OTHER = "other"
MESSAGE_TOO_BIG = 1009

CONNECTED = FamilySpec("botwatch_ws_connected", "1 while the WebSocket connection is open.")
CONNECTS = FamilySpec("botwatch_ws_connects", "WebSocket handshakes that succeeded.", "counter")
DISCONNECTS = FamilySpec(
    "botwatch_ws_disconnects",
    "WebSocket connections lost and connect attempts failed, by reason: the close code "
    "(1000, 1006, 1011, ..., other) or refused, dns, tls, handshake, timeout, ping_timeout, "
    "too_big, reset, unreachable.",
    "counter",
    ("probe", "reason"),
)
CONNECT_DURATION = FamilySpec(
    "botwatch_ws_connect_duration_seconds",
    "How long the last successful connect took (TCP, TLS and the upgrade).",
)
PING_RTT = FamilySpec(
    "botwatch_ws_ping_rtt_seconds",
    "Round trip of the last answered ping on the open connection.",
)
MESSAGES = FamilySpec("botwatch_ws_messages", "WebSocket messages received.", "counter")
LAST_MESSAGE = FamilySpec(
    "botwatch_ws_last_message_timestamp_seconds", "When the last message arrived, Unix time."
)
FAMILIES = (CONNECTED, CONNECTS, DISCONNECTS, CONNECT_DURATION, PING_RTT, MESSAGES, LAST_MESSAGE)

# The first reconnect waits up to this; each unstable connection in a row doubles it.
BACKOFF_BASE = 0.5
# On shutdown the closing handshake gets this long before the socket is dropped.
STOP_CLOSE_TIMEOUT = 0.5
USER_AGENT = f"botwatch-exporter/{__version__}"
# The library's own logger would print request headers at debug level: keep it above that.
_WIRE_LOG = logging.getLogger("exporter.probes.websocket.wire")
_WIRE_LOG.setLevel(logging.INFO)
_ERRNO_IN_TEXT = re.compile(r"\[Errno (\d+)\]")


class WebSocketProbeConfig(ProbeConfig):
    type: Literal["websocket"]
    url: str  # ws:// or wss://
    headers: dict[str, str] = {}  # values may come from ${ENV}: never shown
    subscribe: str | None = None  # sent after each connect, as the bot subscribes
    ping_interval: Duration = 30.0  # as the runbook prescribes
    max_backoff: Duration = 60.0  # reconnects back off up to this
    max_message_bytes: int = Field(default=1 << 20, ge=1)

    @field_validator("url")
    @classmethod
    def _ws_url(cls, value: str) -> str:
        # Caught at load time rather than as an endless run of failed connects.
        parts = urlsplit(value)
        if parts.scheme not in ("ws", "wss") or not parts.hostname:
            raise PydanticCustomError("url", "must be a ws:// or wss:// URL with a host")
        return value


# Pure parts -------------------------------------------------------------------------------


def close_code_reason(code: int) -> str:
    """A close code as a bounded label value."""
    return str(code) if code in KNOWN_CLOSE_CODES else OTHER


def oserror_reason(exc: OSError) -> tuple[str, str]:
    """A failed TCP connect (or TLS, which raises OSError subclasses) as reason and error."""
    if isinstance(exc, socket.gaierror):
        return "dns", f"cannot resolve the host: {exc.strerror or exc}"
    if isinstance(exc, ssl.SSLError):
        # Set by the ssl module when it raises, absent when constructed by hand.
        detail = getattr(exc, "verify_message", None) or getattr(exc, "reason", None)
        return "tls", f"TLS: {detail or type(exc).__name__}"
    if isinstance(exc, TimeoutError):
        return "timeout", "timed out"
    return errno_reason(exc)


def errno_reason(exc: OSError) -> tuple[str, str]:
    """A TCP connect that failed with an errno: refused, reset, or else unreachable."""
    codes = {exc.errno} if exc.errno is not None else set()
    if not codes:
        # Python 3.11 folds the failures of a host's several addresses into one OSError
        # without an errno; their errnos are only in the text.
        codes = {int(found) for found in _ERRNO_IN_TEXT.findall(str(exc))}
    if codes and codes <= {errno.ECONNREFUSED}:
        return "refused", "connection refused"
    if codes and codes <= {errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED}:
        return "reset", "connection reset by the peer"
    return "unreachable", exc.strerror or "cannot connect"


def connect_failure(exc: BaseException, timeout: float) -> tuple[str, str]:
    """Why a connect attempt failed, as (reason, one-line error without URL or headers)."""
    from websockets.exceptions import InvalidHandshake, InvalidMessage, InvalidStatus

    if isinstance(exc, TimeoutError):
        return "timeout", f"no completed handshake within {timeout:g}s"
    if isinstance(exc, InvalidStatus):
        return "handshake", f"upgrade rejected: HTTP {exc.response.status_code}"
    if isinstance(exc, InvalidMessage) and isinstance(exc.__cause__, EOFError | OSError):
        # The peer hung up before it answered: a dropped connection, not a refusal.
        return "reset", "connection closed before the upgrade was answered"
    if isinstance(exc, InvalidHandshake):
        return "handshake", f"bad upgrade response: {type(exc).__name__}"
    if isinstance(exc, OSError):
        return oserror_reason(exc)
    return OTHER, type(exc).__name__


@dataclass(frozen=True)
class Closed:
    """What a ConnectionClosed tells: the close frames received and sent, and the cause."""

    rcvd: int | None = None
    rcvd_reason: str = ""
    sent: int | None = None
    peer_first: bool = False  # the peer sent its close frame before we sent ours
    cause: BaseException | None = None


def closed_from(exc: ConnectionClosed) -> Closed:
    return Closed(
        rcvd=exc.rcvd.code if exc.rcvd else None,
        rcvd_reason=exc.rcvd.reason if exc.rcvd else "",
        sent=exc.sent.code if exc.sent else None,
        peer_first=bool(exc.rcvd and (exc.sent is None or exc.rcvd_then_sent)),
        cause=exc.__cause__,
    )


def disconnect_reason(closed: Closed) -> tuple[str, str]:
    """Why an open connection ended, as (reason, one-line error)."""
    from websockets.exceptions import PayloadTooBig

    if isinstance(closed.cause, PayloadTooBig) or (
        closed.sent == MESSAGE_TOO_BIG and not closed.peer_first
    ):
        return "too_big", "a message exceeded max_message_bytes"
    if closed.rcvd is not None and closed.peer_first:
        said = f" ({closed.rcvd_reason[:60]!r})" if closed.rcvd_reason else ""
        return close_code_reason(closed.rcvd), f"closed by the peer with {closed.rcvd}{said}"
    if closed.sent is not None:
        # We failed the connection (e.g. 1002 for a protocol error by the peer).
        return close_code_reason(closed.sent), f"closed with {closed.sent} after a bad frame"
    if isinstance(closed.cause, ConnectionResetError | BrokenPipeError):
        return "reset", "connection reset by the peer"
    return "1006", "connection lost without a close frame"


def reconnect_delay(unstable: int, cap: float, rng: random.Random) -> float:
    """The wait before a reconnect: doubling with each unstable connection in a row, capped
    at `cap`, with jitter over the upper half (never zero, never in step with others)."""
    # The exponent stops growing long after the cap is reached: a feed down for days
    # must not overflow the float.
    ceiling = min(cap, BACKOFF_BASE * 2.0 ** min(max(0, unstable), 64))
    return float(ceiling * rng.uniform(0.5, 1.0))


def unstable_streak(previous: int, lasted: float | None, cap: float) -> int:
    """Unstable connections in a row after this one ended (`lasted` None: never opened).

    A connection that lasted at least `cap` resets the backoff: reconnecting at once after
    it still makes at most about one connect per `cap`, the rate the cap allows anyway.
    """
    if lasted is not None and lasted >= cap:
        return 0
    return previous + 1


@dataclass
class FeedState:
    """What the probe knows about its feed; the metrics are read from here alone."""

    probe: str
    connected: bool = False
    answered: bool = False  # the last ping on the open connection got its pong
    attempted: bool = False  # the first connect attempt has ended, either way
    connects: int = 0
    disconnects: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REASONS, 0))
    connect_duration: float | None = None
    rtt: float | None = None
    messages: int = 0
    last_message: float | None = None

    @property
    def healthy(self) -> bool:
        return self.connected and self.answered

    def opened(self, duration: float) -> None:
        self.attempted = self.connected = True
        self.answered = False
        self.connects += 1
        self.connect_duration = duration

    def ended(self, reason: str) -> None:
        """A connection ended or an attempt failed."""
        self.attempted = True
        self.connected = self.answered = False
        self.rtt = None  # the round trip of a connection that is gone is no longer true
        self.disconnects[reason] = self.disconnects.get(reason, 0) + 1

    def pong(self, rtt: float) -> None:
        self.answered = True
        self.rtt = rtt

    def message(self, at: float) -> None:
        self.messages += 1
        self.last_message = at

    def samples(self) -> Iterable[Sample]:
        probe = {"probe": self.probe}
        yield Sample(CONNECTED, probe, 1 if self.connected else 0)
        yield Sample(CONNECTS, probe, self.connects)
        for reason, count in self.disconnects.items():
            yield Sample(DISCONNECTS, {**probe, "reason": reason}, count)
        yield Sample(MESSAGES, probe, self.messages)
        if self.attempted:  # before the first attempt ends, success would be a guess
            yield Sample(SUCCESS, probe, 1 if self.healthy else 0)
        if self.connect_duration is not None:
            yield Sample(CONNECT_DURATION, probe, self.connect_duration)
        if self.rtt is not None:
            yield Sample(PING_RTT, probe, self.rtt)
        if self.last_message is not None:
            yield Sample(LAST_MESSAGE, probe, self.last_message)


# I/O --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ended:
    lasted: float | None  # how long the connection was open; None: it never opened
    reason: str
    error: str


class FeedWatch:
    def __init__(self, config: WebSocketProbeConfig, rng: random.Random | None = None) -> None:
        self.config = config
        self.rng = rng or random.Random()
        self.state = FeedState(config.name)
        self.log = log.bind(collector="probes", probe=config.name, type=TYPE)
        self._failing = False  # inside a failure streak that has been logged

    def samples(self) -> Iterable[Sample]:
        return self.state.samples()

    async def run(self, changed: Callable[[], None]) -> None:
        unstable = 0
        try:
            while True:
                ended = await self._session(changed)
                self.state.ended(ended.reason)
                changed()
                if not self._failing:
                    self._failing = True
                    self.log.warning("probe failed", reason=ended.reason, error=ended.error)
                else:
                    self.log.debug("probe still failing", reason=ended.reason, error=ended.error)
                unstable = unstable_streak(unstable, ended.lasted, self.config.max_backoff)
                await asyncio.sleep(reconnect_delay(unstable, self.config.max_backoff, self.rng))
        finally:
            self.state.connected = self.state.answered = False

    async def _session(self, changed: Callable[[], None]) -> Ended:
        """One connection from connect to its end."""
        from websockets.asyncio.client import connect

        timeout = self.config.timeout
        started = time.monotonic()
        try:
            ws = await connect(
                self.config.url,
                additional_headers=self.config.headers,
                user_agent_header=USER_AGENT,
                open_timeout=timeout,
                # Pings are ours: the library's keepalive would end a dead connection
                # with 1011, indistinguishable from a peer's 1011, and time nothing we see.
                ping_interval=None,
                ping_timeout=None,
                close_timeout=timeout,
                max_size=self.config.max_message_bytes,
                logger=_WIRE_LOG,
            )
        except Exception as exc:
            return Ended(None, *connect_failure(exc, timeout))
        self.state.opened(time.monotonic() - started)
        changed()
        self.log.debug("websocket connected")
        opened = time.monotonic()
        reason, error = await self._holding(ws, changed)
        return Ended(time.monotonic() - opened, reason, error)

    async def _holding(self, ws: ClientConnection, changed: Callable[[], None]) -> tuple[str, str]:
        """Read until the connection ends; a ping without its pong ends it first."""
        from websockets.exceptions import ConnectionClosed

        pinger = asyncio.create_task(self._pinging(ws, changed))
        # Whatever ends the pinger (a timeout, or a bug) must also end the connection,
        # or the feed would go on unwatched.
        pinger.add_done_callback(lambda _: ws.transport.abort())
        try:
            if self.config.subscribe is not None:
                await ws.send(self.config.subscribe)
            while True:
                await ws.recv(decode=False)  # the content is not ours to look at
                self.state.message(time.time())
                changed()
        except ConnectionClosed as exc:
            closed = closed_from(exc)
        except asyncio.CancelledError:
            await _close_for_stop(ws)
            raise
        finally:
            pinger.cancel()
            await asyncio.gather(pinger, return_exceptions=True)
            ws.transport.abort()  # already closed, unless a bug got us here: then now
        if not pinger.cancelled():
            failure = pinger.exception()
            if failure is not None and not isinstance(failure, ConnectionClosed):
                raise failure  # a bug: the collector logs it and starts the watch again
            if failure is None and pinger.result():
                timeout = self.config.timeout
                return "ping_timeout", f"no pong within {timeout:g}s"
        return disconnect_reason(closed)

    async def _pinging(self, ws: ClientConnection, changed: Callable[[], None]) -> bool:
        """Ping now and every ping_interval; True when a pong did not come in time."""
        while True:
            waiter = await ws.ping()
            try:
                async with asyncio.timeout(self.config.timeout):
                    rtt = await waiter
            except TimeoutError:
                return True
            self.state.pong(rtt)
            changed()
            if self._failing:
                self._failing = False
                self.log.info("probe recovered")
            await asyncio.sleep(self.config.ping_interval)


async def _close_for_stop(ws: ClientConnection) -> None:
    """A polite close (1001: going away) when botwatch stops, but never a slow one."""
    with contextlib.suppress(Exception):
        async with asyncio.timeout(STOP_CLOSE_TIMEOUT):
            await ws.close(1001)


def build(config: WebSocketProbeConfig, blocking: BlockingCalls) -> FeedWatch:
    return FeedWatch(config)
