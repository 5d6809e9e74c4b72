"""redis probe, the pure parts: RESP2 encoding and incremental parsing with its limits, INFO
parsing and the series it gives, on Redis 7.0's real bytes (tests/fixtures/probes/redis)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from exporter.probes import resp
from exporter.probes.redis import RedisProbeConfig, info_samples
from exporter.probes.resp import ErrorReply, ProtocolError

FIXTURES = Path(__file__).parent.parent / "fixtures" / "probes" / "redis"
PING_INFO = (FIXTURES / "ping-info-7.0.bin").read_bytes()
MAX = 1 << 20


def parse_all(raw: bytes) -> list[resp.Reply]:
    out, at = [], 0
    while at < len(raw):
        parsed = resp.parse(raw, MAX, at)
        assert parsed is not None
        reply, at = parsed
        out.append(reply)
    return out


def fixture_info() -> dict[str, str]:
    pong, info = parse_all(PING_INFO)
    assert pong == "PONG"
    assert isinstance(info, bytes)
    return resp.parse_info(info.decode())


def test_commands_are_arrays_of_bulk_strings() -> None:
    assert resp.encode("PING") == b"*1\r\n$4\r\nPING\r\n"
    assert resp.encode("AUTH", "user", b"p\xc3\xa4ss") == (
        b"*3\r\n$4\r\nAUTH\r\n$4\r\nuser\r\n$5\r\np\xc3\xa4ss\r\n"
    )


@pytest.mark.parametrize(
    ("raw", "reply"),
    [
        (b"+PONG\r\n", "PONG"),
        (b"-LOADING Redis is loading\r\n", ErrorReply("LOADING Redis is loading")),
        (b":-42\r\n", -42),
        (b"$3\r\nabc\r\n", b"abc"),
        (b"$0\r\n\r\n", b""),
        (b"$-1\r\n", None),
        (b"*-1\r\n", None),
        (b"*2\r\n$1\r\na\r\n*1\r\n:1\r\n", [b"a", [1]]),
        (b"$4\r\na\r\nb\r\n", b"a\r\nb"),  # CRLF inside a bulk string is data
    ],
)
def test_replies(raw: bytes, reply: resp.Reply) -> None:
    assert resp.parse(raw + b"+NEXT\r\n", MAX) == (reply, len(raw))


def test_every_prefix_of_a_reply_is_incomplete_not_an_error() -> None:
    for cut in range(len(PING_INFO)):
        parsed = resp.parse(PING_INFO[:cut], MAX, 7)  # after +PONG\r\n
        assert parsed is None or cut == len(PING_INFO)


def test_error_codes() -> None:
    assert ErrorReply("WRONGPASS invalid username-password pair").code == "WRONGPASS"
    assert ErrorReply("ERR").code == "ERR"


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (b"HTTP/1.1 400 Bad Request\r\n", "not a RESP reply: 'HTTP/1.1 400 Bad'..."),
        (b"\x16\x03\x01", "not a RESP reply: '\\x16\\x03\\x01'"),  # a TLS record
        (b"_\r\n", "not a RESP reply: '_\\r\\n'"),  # RESP3 null: not asked for
        (b"+" + b"x" * (resp.MAX_LINE_BYTES + 1), "a reply line longer than 65536 bytes"),
        (b"$2000000\r\n", "a bulk reply of 2000000 bytes (at most 1048576)"),
        (b"$-5\r\n", "a bulk reply of -5 bytes (at most 1048576)"),
        (b"$3\r\nabcde\r\n", "a bulk reply not ended by CRLF"),
        (b"*5000\r\n", "an array of 5000 items (at most 1024)"),
        (b"*1\r\n" * 5 + b":1\r\n", "arrays nested deeper than 4"),
        (b":12a\r\n", "not a number: '12a'"),
        (b"$\r\n", "not a number: ''"),
    ],
)
def test_garbage_and_limits(raw: bytes, error: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        resp.parse(raw, MAX)
    assert str(caught.value) == error


def test_info_of_redis_7() -> None:
    info = fixture_info()
    assert info["redis_version"] == "7.0.15"
    assert info["maxmemory"] == "67108864"
    assert info["maxmemory_policy"] == "allkeys-lru"
    assert info["multiplexing_api"] == "epoll"
    assert resp.keyspace(info) == {"db0": 1, "db3": 1}
    assert resp.number(info, "used_memory") == 1040416
    assert resp.number(info, "maxmemory_policy") is None
    assert resp.number(info, "no_such_field") is None


def test_info_samples() -> None:
    got = {
        (s.family.name, tuple(sorted(s.labels.items()))): s.value
        for s in info_samples("cache", fixture_info())
    }
    probe = (("probe", "cache"),)
    assert got == {
        ("botwatch_redis_uptime_seconds", probe): 0,
        ("botwatch_redis_memory_used_bytes", probe): 1040416,
        ("botwatch_redis_memory_max_bytes", probe): 64 * 2**20,
        ("botwatch_redis_maxmemory_policy", (("policy", "allkeys-lru"), *probe)): 1,
        ("botwatch_redis_connected_clients", probe): 1,
        ("botwatch_redis_max_clients", probe): 10000,
        ("botwatch_redis_keyspace_hits", probe): 1,
        ("botwatch_redis_keyspace_misses", probe): 1,
        ("botwatch_redis_evicted_keys", probe): 0,
        ("botwatch_redis_rejected_connections", probe): 0,
        ("botwatch_redis_db_keys", (("db", "db0"), *probe)): 1,
        ("botwatch_redis_db_keys", (("db", "db3"), *probe)): 1,
        ("botwatch_redis_server", (*probe, ("role", "master"), ("version", "7.0.15"))): 1,
    }


def test_no_maxmemory_means_no_limit_series() -> None:
    info = {**fixture_info(), "maxmemory": "0", "maxmemory_policy": "noeviction"}
    names = {s.family.name for s in info_samples("cache", info)}
    assert "botwatch_redis_memory_max_bytes" not in names
    assert "botwatch_redis_maxmemory_policy" in names


def test_an_older_or_odd_info_gives_what_it_has() -> None:
    info = resp.parse_info(
        "# Server\r\nredis_version:5.0.7\r\nuptime_in_seconds:12\r\n\r\n"
        "# Memory\r\nused_memory:abc\r\n# Keyspace\r\ndb0:expires=1\r\ndbx:keys=2\r\n"
        "no separator line\r\nconfig_file:/etc/redis:7.conf\r\n"
    )
    assert info["config_file"] == "/etc/redis:7.conf"
    got = {s.family.name: s.value for s in info_samples("old", info)}
    assert got == {"botwatch_redis_uptime_seconds": 12, "botwatch_redis_server": 1.0}


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ("LOADING Redis is loading the dataset in memory", "loading"),
        ("NOAUTH Authentication required.", "auth"),
        ("WRONGPASS invalid username-password pair or user is disabled.", "auth"),
        ("NOPERM User probe has no permissions to run the 'info' command", "auth"),
        ("ERR unknown command 'PING'", "protocol"),
        ("BUSY Redis is busy running a script.", "protocol"),
    ],
)
def test_error_reasons(message: str, reason: str) -> None:
    assert resp.error_reason(ErrorReply(message)) == reason


def config(**options: object) -> RedisProbeConfig:
    return RedisProbeConfig.model_validate({"name": "cache", "type": "redis", **options})


def test_config_keeps_the_password_out_of_its_repr() -> None:
    probe = config(username="probe", password="hunter2-secret")
    assert "hunter2-secret" not in repr(probe)
    assert probe != config(username="probe", password="another-secret")


def test_a_username_needs_a_password() -> None:
    with pytest.raises(ValidationError, match="required when a username is set"):
        config(username="probe")
