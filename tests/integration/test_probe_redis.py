"""The redis probe against a real redis-server (tests/servers.py; driven by redis-cli, not by
the code under test), and raw TCP fakes for what Redis does not do on demand."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable, Iterator, MutableMapping
from pathlib import Path
from typing import Any

import pytest

from exporter.collector import Context
from exporter.config import Config
from exporter.probes.api import Result
from exporter.probes.collector import ProbesCollector
from exporter.probes.models import ProbesConfig
from exporter.probes.redis import RedisCheck, RedisProbeConfig
from exporter.threads import BlockingCalls
from tests.integration.conftest import Daemon, daemon_config
from tests.servers import RedisServer, answering, endless, free_port, raw_server, silent
from tests.streams import running
from tests.support import assert_no_secrets, eventually, promtool_lint, wait_for

pytestmark = pytest.mark.integration

PASSWORD = "redis-Secret-9b2e"  # greppable: it must turn up nowhere
ACL_PASSWORD = "acl-Secret-51f7"


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def locked(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path, password=PASSWORD)
    try:
        yield server
    finally:
        server.stop()


def probe(port: int, **options: Any) -> RedisCheck:
    config = RedisProbeConfig.model_validate(
        {"name": "cache", "type": "redis", "host": "127.0.0.1", "port": port, **options}
    )
    return RedisCheck(config)


def values(result: Result) -> dict[str, float]:
    """Sample values by family name, with `policy`/`db` appended where there is one."""
    out = {}
    for s in result.samples:
        extra = s.labels.get("policy") or s.labels.get("db")
        out[s.family.name + (f"/{extra}" if extra else "")] = s.value
    return out


def info_field(server: RedisServer, section: str, key: str) -> str:
    for line in server.cli("INFO", section).splitlines():
        name, _, value = line.partition(":")
        if name == key:
            return value.strip()
    raise AssertionError(f"INFO {section} has no {key}")


def assert_no_secret(*texts: object) -> None:
    assert_no_secrets((PASSWORD, ACL_PASSWORD), *texts)


# A real server ---------------------------------------------------------------------------------


async def test_memory_limit_and_policy_follow_config_set(redis: RedisServer) -> None:
    check = probe(redis.port)
    result = await check.check()
    assert (result.success, result.error) == (True, None)
    got = values(result)
    assert "botwatch_redis_memory_max_bytes" not in got  # maxmemory 0: no limit
    assert got["botwatch_redis_maxmemory_policy/noeviction"] == 1
    assert got["botwatch_redis_server"] == 1
    assert 0 < got["botwatch_redis_ping_seconds"] < 1

    redis.cli("CONFIG", "SET", "maxmemory", "64mb")
    redis.cli("CONFIG", "SET", "maxmemory-policy", "allkeys-lru")
    got = values(await check.check())
    assert got["botwatch_redis_memory_max_bytes"] == 64 * 2**20
    assert got["botwatch_redis_maxmemory_policy/allkeys-lru"] == 1
    assert "botwatch_redis_maxmemory_policy/noeviction" not in got
    used = int(info_field(redis, "memory", "used_memory"))
    # Not equal: each connection's buffers count, and redis-cli's differs from the probe's.
    assert got["botwatch_redis_memory_used_bytes"] == pytest.approx(used, rel=0.1)
    assert got["botwatch_redis_max_clients"] == int(info_field(redis, "clients", "maxclients"))
    assert 0 <= got["botwatch_redis_uptime_seconds"] < 60


async def test_hits_and_misses_move_with_gets(redis: RedisServer) -> None:
    check = probe(redis.port)
    before = values(await check.check())
    assert "botwatch_redis_db_keys/db0" not in before  # an empty database is not listed
    redis.cli("SET", "price:BTCUSDT", "97000")
    redis.cli("GET", "price:BTCUSDT")
    redis.cli("GET", "price:BTCUSDT")
    redis.cli("GET", "price:missing")
    after = values(await check.check())
    assert after["botwatch_redis_keyspace_hits"] == before["botwatch_redis_keyspace_hits"] + 2
    assert after["botwatch_redis_keyspace_misses"] == before["botwatch_redis_keyspace_misses"] + 1
    assert after["botwatch_redis_db_keys/db0"] == 1
    assert after["botwatch_redis_evicted_keys"] == 0
    assert after["botwatch_redis_rejected_connections"] == 0


async def test_connected_clients_count_the_probes_own(redis: RedisServer) -> None:
    check = probe(redis.port)
    with contextlib.ExitStack() as held:
        for _ in range(3):
            held.enter_context(socket.create_connection(("127.0.0.1", redis.port)))

        async def four() -> bool:
            return values(await check.check())["botwatch_redis_connected_clients"] == 4

        await eventually(four, 10, "3 idle clients and the probe")


async def test_a_stopped_server_is_refused_and_a_restart_resets_counters(
    tmp_path: Path,
) -> None:
    first = RedisServer(tmp_path)
    try:
        first.cli("GET", "missing")
        check = probe(first.port)
        assert values(await check.check())["botwatch_redis_keyspace_misses"] == 1
    finally:
        first.stop()
    result = await check.check()
    assert (result.reason, result.error) == (
        "refused",
        f"127.0.0.1:{first.port}: connection refused",
    )
    assert result.samples == []
    again = RedisServer(tmp_path, port=first.port)
    try:
        got = values(await check.check())
    finally:
        again.stop()
    # Passed through as Redis counts them: Prometheus's rate() treats the drop as a reset.
    assert got["botwatch_redis_keyspace_misses"] == 0
    assert got["botwatch_redis_uptime_seconds"] < 60


async def test_password_right_wrong_and_missing(locked: RedisServer) -> None:
    result = await probe(locked.port, password=PASSWORD).check()
    assert (result.success, result.error) == (True, None)

    wrong = await probe(locked.port, password="wrong-" + PASSWORD).check()
    assert (wrong.success, wrong.reason) == (False, "auth")
    assert wrong.error == "AUTH: WRONGPASS invalid username-password pair or user is disabled."
    assert wrong.samples == []

    missing = await probe(locked.port).check()
    assert (missing.reason, missing.error) == ("auth", "PING: NOAUTH Authentication required.")
    assert_no_secret(result, wrong, missing)


async def test_a_password_the_server_does_not_want_is_auth(redis: RedisServer) -> None:
    result = await probe(redis.port, password=PASSWORD).check()
    assert result.reason == "auth"
    assert result.error is not None
    assert result.error.startswith("AUTH: ERR AUTH <password> called without any password")


async def test_an_acl_user_and_its_permissions(redis: RedisServer) -> None:
    redis.cli("ACL", "SETUSER", "probe", "on", f">{ACL_PASSWORD}", "+ping", "+info")
    redis.cli("ACL", "SETUSER", "pinger", "on", f">{ACL_PASSWORD}", "+ping")
    result = await probe(redis.port, username="probe", password=ACL_PASSWORD).check()
    assert (result.success, result.error) == (True, None)
    denied = await probe(redis.port, username="pinger", password=ACL_PASSWORD).check()
    assert (denied.reason, denied.error) == (
        "auth",
        "INFO: NOPERM this user has no permissions to run the 'info' command",
    )
    assert "botwatch_redis_ping_seconds" in values(denied)  # PING worked: it is kept
    assert_no_secret(result, denied)


# What Redis does not do on demand -------------------------------------------------------------


async def test_a_closed_port_is_refused() -> None:
    port = free_port()
    result = await probe(port).check()
    assert (result.reason, result.error) == ("refused", f"127.0.0.1:{port}: connection refused")


async def test_garbage_is_protocol() -> None:
    async with raw_server(answering(b"SSH-2.0-OpenSSH_9.2\r\n")) as port:
        result = await probe(port).check()
    assert (result.reason, result.error) == (
        "protocol",
        "waiting for PONG: not a RESP reply: 'SSH-2.0-OpenSSH_'...",
    )


async def test_silence_is_a_timeout_with_the_step_named() -> None:
    async with raw_server(silent) as port:
        started = time.monotonic()
        result = await probe(port, timeout="1s").check()
        elapsed = time.monotonic() - started
    assert (result.reason, result.error) == ("timeout", "waiting for PONG: no answer within 0.9s")
    assert 0.85 < elapsed < 1.5  # its own deadline (0.9s) ended it, not a hang


async def test_hanging_up_mid_reply_is_protocol() -> None:
    async with raw_server(answering(b"+PO")) as port:
        result = await probe(port).check()
    assert (result.reason, result.error) == ("protocol", "waiting for PONG: connection closed")


async def test_an_endless_line_is_cut_off() -> None:
    async with raw_server(endless(b"+" + b"A" * 65536)) as port:
        result = await probe(port).check()
    assert (result.reason, result.error) == (
        "protocol",
        "waiting for PONG: a reply line longer than 65536 bytes",
    )


async def test_an_info_too_large_is_refused_before_it_is_read() -> None:
    async def huge_info(reader: Any, writer: Any) -> None:
        await reader.read(4096)
        writer.write(b"+PONG\r\n")
        await reader.read(4096)
        writer.write(b"$999999999\r\n")
        await silent(reader, writer)

    async with raw_server(huge_info) as port:
        result = await probe(port).check()
    assert (result.reason, result.error) == (
        "protocol",
        "reading INFO: a bulk reply of 999999999 bytes (at most 1048576)",
    )
    assert "botwatch_redis_ping_seconds" in values(result)


@pytest.mark.parametrize(
    ("reply", "reason", "error"),
    [
        (
            b"-LOADING Redis is loading the dataset in memory\r\n",
            "loading",
            "PING: LOADING Redis is loading the dataset in memory",
        ),
        (b"-ERR unknown command 'PING'\r\n", "protocol", "PING: ERR unknown command 'PING'"),
        (b"+OK\r\n", "protocol", "PING answered 'OK', not PONG"),
        (b":1\r\n", "protocol", "PING answered 1, not PONG"),
    ],
)
async def test_ping_answers(reply: bytes, reason: str, error: str) -> None:
    async with raw_server(answering(reply)) as port:
        result = await probe(port).check()
    assert (result.reason, result.error) == (reason, error)


async def test_an_error_quoting_the_password_back_is_scrubbed() -> None:
    # Redis quotes a few arguments of a command it does not know; a proxy may too.
    echo = f"-ERR unknown command 'AUTH', with args beginning with: '{PASSWORD}'\r\n"
    async with raw_server(answering(echo.encode())) as port:
        result = await probe(port, password=PASSWORD).check()
    assert result.reason == "auth"
    assert result.error == (
        "AUTH: ERR unknown command 'AUTH', with args beginning with: '<redacted>'"
    )


# Through the collector and the daemon ---------------------------------------------------------


def probes_section(open_port: int, locked_port: int) -> list[dict[str, Any]]:
    return [
        {"name": "open", "type": "redis", "host": "127.0.0.1", "port": open_port},
        {
            "name": "locked",
            "type": "redis",
            "host": "127.0.0.1",
            "port": locked_port,
            "password": PASSWORD,
        },
        {
            "name": "wrong",
            "type": "redis",
            "host": "127.0.0.1",
            "port": locked_port,
            "password": "x" + PASSWORD,
        },
    ]


async def test_through_the_probes_collector(
    redis: RedisServer,
    locked: RedisServer,
    tmp_path: Path,
    captured_logs: list[MutableMapping[str, Any]],
) -> None:
    redis.cli("CONFIG", "SET", "maxmemory", "32mb")
    probes = [
        {**p, "interval": "1s", "timeout": "900ms"} for p in probes_section(redis.port, locked.port)
    ]
    config = Config.model_validate({"probes": probes}).collector_configs()["probes"]
    assert isinstance(config, ProbesConfig)
    collector = ProbesCollector(config, Context("probes", tmp_path, BlockingCalls()))
    async with running(collector) as run:
        await eventually(
            lambda: all(
                run.value("botwatch_probe_checks_total", probe=n)
                for n in ("open", "locked", "wrong")
            ),
            5,
            "a check of every probe",
        )
        assert run.value("botwatch_probe_success", probe="open") == 1
        assert run.value("botwatch_redis_memory_max_bytes", probe="open") == 32 * 2**20
        assert run.value("botwatch_probe_success", probe="locked") == 1
        assert run.value("botwatch_redis_keyspace_hits_total", probe="locked") == 0
        assert run.value("botwatch_probe_success", probe="wrong") == 0
        assert (run.value("botwatch_probe_failures_total", probe="wrong", reason="auth") or 0) >= 1
        assert run.value("botwatch_probe_failures_total", probe="open", reason="loading") == 0
        samples = [(s.name, s.labels, s.value) for f in collector.families() for s in f.samples]
    failed = [e for e in captured_logs if e.get("event") == "probe failed"]
    assert [(e["probe"], e["reason"]) for e in failed] == [("wrong", "auth")]
    assert_no_secret(samples, captured_logs)


def test_through_the_daemon(
    redis: RedisServer,
    locked: RedisServer,
    tmp_path: Path,
    daemon: Callable[..., Daemon],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BW_TEST_REDIS_PASSWORD", PASSWORD)
    monkeypatch.setenv("BW_TEST_REDIS_WRONG", "x" + PASSWORD)
    redis.cli("CONFIG", "SET", "maxmemory-policy", "volatile-lru")
    entries = []
    for entry in probes_section(redis.port, locked.port):
        if "password" in entry:
            env = "BW_TEST_REDIS_PASSWORD" if entry["name"] == "locked" else "BW_TEST_REDIS_WRONG"
            entry["password"] = "${" + env + "}"
        entries.append({**entry, "interval": "1s", "timeout": "900ms"})
    d = daemon(daemon_config(tmp_path, probes=entries))
    wait_for(
        lambda: all(
            d.sample("botwatch_probe_success", probe=n) is not None
            for n in ("open", "locked", "wrong")
        ),
        20,
        "a check of every probe on /metrics",
    )
    body = d.metrics()
    assert promtool_lint(body) == ""
    assert d.sample("botwatch_probe_success", probe="open") == 1
    assert d.sample("botwatch_probe_success", probe="locked") == 1
    assert d.sample("botwatch_probe_success", probe="wrong") == 0
    assert (
        d.sample("botwatch_redis_maxmemory_policy_info", probe="open", policy="volatile-lru") == 1
    )
    _, landing, _ = d.get("/")
    d.stop()
    assert any(e.get("probe") == "wrong" and e.get("reason") == "auth" for e in d.logs)
    assert_no_secret(body, landing.decode(), "".join(d.raw))
