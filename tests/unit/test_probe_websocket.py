"""The websocket probe's pure parts: reasons for failed connects and lost connections,
the backoff schedule, what the state serves, and the config contract."""

from __future__ import annotations

import errno
import random
import socket
import ssl

import pytest
from pydantic import ValidationError
from websockets.datastructures import Headers
from websockets.exceptions import (
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidHeaderValue,
    InvalidMessage,
    InvalidStatus,
    PayloadTooBig,
)
from websockets.frames import Close
from websockets.http11 import Response

from exporter.probes.api import Sample
from exporter.probes.websocket import (
    BACKOFF_BASE,
    REASONS,
    Closed,
    FeedState,
    WebSocketProbeConfig,
    close_code_reason,
    closed_from,
    connect_failure,
    disconnect_reason,
    reconnect_delay,
    unstable_streak,
)


def reason_of(exc: BaseException) -> str:
    return connect_failure(exc, 5.0)[0]


def caused(exc: BaseException, cause: BaseException) -> BaseException:
    exc.__cause__ = cause
    return exc


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (ConnectionRefusedError(errno.ECONNREFUSED, "Connect call failed"), "refused"),
        # 3.11's create_connection when ::1 and 127.0.0.1 both refuse: no errno of its own.
        (
            OSError(
                "Multiple exceptions: [Errno 111] Connect call failed ('::1', 9, 0, 0), "
                "[Errno 111] Connect call failed ('127.0.0.1', 9)"
            ),
            "refused",
        ),
        (
            OSError(
                "Multiple exceptions: [Errno 111] Connect call failed ('::1', 9, 0, 0), "
                "[Errno 101] Network is unreachable"
            ),
            "unreachable",
        ),
        (socket.gaierror(socket.EAI_NONAME, "Name or service not known"), "dns"),
        (ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number"), "tls"),
        (ssl.SSLCertVerificationError(1, "certificate verify failed"), "tls"),
        (TimeoutError("timed out during opening handshake"), "timeout"),
        (ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"), "reset"),
        (OSError(errno.EHOSTUNREACH, "No route to host"), "unreachable"),
        (InvalidStatus(Response(403, "Forbidden", Headers())), "handshake"),
        (InvalidStatus(Response(502, "Bad Gateway", Headers())), "handshake"),
        (InvalidHeaderValue("Upgrade", "h2c"), "handshake"),
        (caused(InvalidMessage("no response"), EOFError("connection closed")), "reset"),
        (ValueError("something else"), "other"),
    ],
)
def test_connect_failures_map_to_bounded_reasons(exc: BaseException, reason: str) -> None:
    assert reason_of(exc) == reason
    assert reason == "other" or reason in REASONS


def test_connect_errors_are_one_line_and_name_the_status() -> None:
    _, error = connect_failure(InvalidStatus(Response(403, "Forbidden", Headers())), 5.0)
    assert error == "upgrade rejected: HTTP 403"
    _, error = connect_failure(TimeoutError(), 0.2)
    assert error == "no completed handshake within 0.2s"


@pytest.mark.parametrize(
    ("code", "reason"),
    [(1000, "1000"), (1001, "1001"), (1006, "1006"), (1011, "1011"), (1015, "1015")],
)
def test_known_close_codes_are_their_own_reason(code: int, reason: str) -> None:
    assert close_code_reason(code) == reason


@pytest.mark.parametrize("code", [999, 1016, 2999, 3000, 4001, 4999])
def test_other_close_codes_fold_into_other(code: int) -> None:
    assert close_code_reason(code) == "other"


@pytest.mark.parametrize(
    ("closed", "reason"),
    [
        # The peer closed with a code and we answered.
        (Closed(rcvd=1011, sent=1011, peer_first=True), "1011"),
        (Closed(rcvd=1000, sent=1000, peer_first=True), "1000"),
        (Closed(rcvd=4001, sent=4001, peer_first=True), "other"),
        # No close frame at all: EOF, or a TCP reset.
        (Closed(cause=EOFError("unexpected end of stream")), "1006"),
        (Closed(cause=ConnectionResetError(errno.ECONNRESET, "reset")), "reset"),
        # We failed the connection because a message was too big.
        (Closed(sent=1009, cause=PayloadTooBig(None, 1000)), "too_big"),
        (Closed(sent=1009), "too_big"),
        # A peer's own 1009 (it thought our message too big) is the peer's close code.
        (Closed(rcvd=1009, sent=1009, peer_first=True), "1009"),
        # We failed the connection over a bad frame.
        (Closed(sent=1002), "1002"),
    ],
)
def test_disconnects_map_to_bounded_reasons(closed: Closed, reason: str) -> None:
    assert disconnect_reason(closed)[0] == reason


def test_closed_reads_a_connection_closed_exception() -> None:
    peer = ConnectionClosedError(Close(1011, "overloaded"), Close(1011, "overloaded"), True)
    assert closed_from(peer) == Closed(1011, "overloaded", 1011, True, None)
    ours = ConnectionClosedError(None, Close(1009, "too big"))
    ours.__cause__ = cause = PayloadTooBig(None, 10)
    assert closed_from(ours) == Closed(None, "", 1009, False, cause)
    # We closed first (e.g. at shutdown) and the peer answered: not the peer's doing.
    answered = ConnectionClosedOK(Close(1001, ""), Close(1001, ""), False)
    assert closed_from(answered).peer_first is False


def test_peer_close_error_quotes_its_reason_briefly() -> None:
    _, error = disconnect_reason(Closed(rcvd=1011, rcvd_reason="x" * 200, peer_first=True))
    assert error.startswith("closed by the peer with 1011 ('xxx")
    assert len(error) < 100
    assert "\n" not in error


class TestBackoff:
    def test_doubles_from_the_base_up_to_the_cap(self) -> None:
        top = random.Random()
        top.uniform = lambda a, b: b  # type: ignore[method-assign]
        ceilings = [reconnect_delay(n, 10.0, top) for n in range(8)]
        assert ceilings == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0]

    def test_jitter_stays_in_the_upper_half_and_varies(self) -> None:
        rng = random.Random(7)
        delays = [reconnect_delay(3, 60.0, rng) for _ in range(200)]
        ceiling = BACKOFF_BASE * 2**3
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 100

    def test_a_small_cap_bounds_even_the_first_delay(self) -> None:
        rng = random.Random(1)
        assert all(0.1 <= reconnect_delay(n, 0.2, rng) <= 0.2 for n in range(20))

    def test_huge_streaks_do_not_overflow(self) -> None:
        assert reconnect_delay(10_000, 60.0, random.Random(1)) <= 60.0

    def test_unstable_connections_grow_the_streak(self) -> None:
        assert unstable_streak(0, None, 60.0) == 1  # connect failed
        assert unstable_streak(3, None, 60.0) == 4
        assert unstable_streak(3, 59.9, 60.0) == 4  # opened but dropped soon

    def test_a_connection_that_lasted_resets_it(self) -> None:
        assert unstable_streak(7, 60.0, 60.0) == 0
        assert unstable_streak(7, 3600.0, 60.0) == 0


def by_family(samples: list[Sample]) -> dict[tuple[str, str], float]:
    return {(s.family.name, s.labels.get("reason", "")): s.value for s in samples}


class TestState:
    def test_before_the_first_attempt(self) -> None:
        got = by_family(list(FeedState("feed").samples()))
        assert got[("botwatch_ws_connected", "")] == 0
        assert got[("botwatch_ws_connects", "")] == 0
        assert got[("botwatch_ws_messages", "")] == 0
        # Every error class starts at 0, close codes only once seen.
        assert {r for (name, r) in got if name == "botwatch_ws_disconnects"} == set(REASONS)
        assert all(got[("botwatch_ws_disconnects", r)] == 0 for r in REASONS)
        absent = {
            "botwatch_probe_success",
            "botwatch_ws_connect_duration_seconds",
            "botwatch_ws_ping_rtt_seconds",
            "botwatch_ws_last_message_timestamp_seconds",
        }
        assert not absent & {name for name, _ in got}

    def test_success_needs_an_open_connection_and_a_pong(self) -> None:
        state = FeedState("feed")
        state.opened(0.05)
        assert by_family(list(state.samples()))[("botwatch_probe_success", "")] == 0
        state.pong(0.002)
        got = by_family(list(state.samples()))
        assert got[("botwatch_probe_success", "")] == 1
        assert got[("botwatch_ws_ping_rtt_seconds", "")] == 0.002
        assert got[("botwatch_ws_connect_duration_seconds", "")] == 0.05

    def test_a_disconnect_counts_its_reason_and_drops_the_round_trip(self) -> None:
        state = FeedState("feed")
        state.opened(0.05)
        state.pong(0.002)
        state.message(1_700_000_000.0)
        state.ended("1011")
        got = by_family(list(state.samples()))
        assert got[("botwatch_ws_connected", "")] == 0
        assert got[("botwatch_probe_success", "")] == 0
        assert got[("botwatch_ws_disconnects", "1011")] == 1
        assert ("botwatch_ws_ping_rtt_seconds", "") not in got
        # What stays true after the disconnect stays.
        assert got[("botwatch_ws_connect_duration_seconds", "")] == 0.05
        assert got[("botwatch_ws_last_message_timestamp_seconds", "")] == 1_700_000_000.0
        assert got[("botwatch_ws_messages", "")] == 1

    def test_a_failed_first_attempt_is_an_outcome(self) -> None:
        state = FeedState("feed")
        state.ended("refused")
        got = by_family(list(state.samples()))
        assert got[("botwatch_probe_success", "")] == 0
        assert got[("botwatch_ws_disconnects", "refused")] == 1


class TestConfig:
    def make(self, **extra: object) -> WebSocketProbeConfig:
        return WebSocketProbeConfig.model_validate(
            {"name": "feed", "type": "websocket", "url": "wss://fstream.binance.com/ws", **extra}
        )

    def test_defaults(self) -> None:
        config = self.make()
        assert config.ping_interval == 30.0
        assert config.max_backoff == 60.0
        assert config.timeout == 5.0
        assert config.max_message_bytes == 1 << 20

    def test_durations(self) -> None:
        config = self.make(ping_interval="200ms", max_backoff="2s", timeout="150ms")
        assert (config.ping_interval, config.max_backoff, config.timeout) == (0.2, 2.0, 0.15)

    @pytest.mark.parametrize(
        "url", ["https://fstream.binance.com/ws", "fstream.binance.com/ws", "ws://", "ws:///x"]
    )
    def test_url_must_be_a_websocket_url_and_is_not_echoed(self, url: str) -> None:
        with pytest.raises(ValidationError) as caught:
            self.make(url=url)
        (error,) = caught.value.errors(include_input=False)
        assert error["loc"] == ("url",)
        assert error["msg"] == "must be a ws:// or wss:// URL with a host"
