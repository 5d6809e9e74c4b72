"""`redis`: Redis PING and INFO (memory, policy, keyspace hits, clients), over RESP2.

One connection per check: AUTH when a password is set, PING (timed), INFO, then hang up.
The protocol and INFO parsing are in exporter/probes/resp.py. Counters come from the server
as they are: a restart of Redis resets them (Prometheus's rate() copes), and
`botwatch_redis_uptime_seconds` shows the restart.

Every read is bounded (a reply line, INFO's size, all bytes of a check) and the whole check
runs under a deadline a little shorter than the collector's timeout, so a server that
accepts and never answers still yields a Result naming the step it hung in.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Literal

from pydantic import SecretStr, model_validator
from pydantic_core import PydanticCustomError

from exporter.probes import resp
from exporter.probes.api import FamilySpec, Port, ProbeConfig, Result, Sample
from exporter.probes.connect import CONNECT_REASONS, Failed, open_stream
from exporter.probes.resp import ErrorReply, ProtocolError, Reply
from exporter.threads import BlockingCalls

TYPE = "redis"
REASONS = (*CONNECT_REASONS, "auth", "protocol", "loading")

PING = FamilySpec("botwatch_redis_ping_seconds", "How long PING took to answer.")
UPTIME = FamilySpec(
    "botwatch_redis_uptime_seconds", "Seconds since the server started (drops at a restart)."
)
MEMORY_USED = FamilySpec(
    "botwatch_redis_memory_used_bytes", "Memory Redis has allocated (used_memory)."
)
MEMORY_MAX = FamilySpec(
    "botwatch_redis_memory_max_bytes", "The maxmemory limit; absent when there is none."
)
POLICY = FamilySpec(
    "botwatch_redis_maxmemory_policy",
    "What Redis does at maxmemory (maxmemory_policy).",
    "info",
    ("probe", "policy"),
)
CLIENTS = FamilySpec(
    "botwatch_redis_connected_clients", "Client connections, the probe's own included."
)
MAX_CLIENTS = FamilySpec("botwatch_redis_max_clients", "The maxclients limit.")
HITS = FamilySpec("botwatch_redis_keyspace_hits", "Key lookups that found the key.", "counter")
MISSES = FamilySpec("botwatch_redis_keyspace_misses", "Key lookups that found no key.", "counter")
EVICTED = FamilySpec(
    "botwatch_redis_evicted_keys", "Keys evicted to stay under maxmemory.", "counter"
)
REJECTED = FamilySpec(
    "botwatch_redis_rejected_connections",
    "Connections refused because of maxclients.",
    "counter",
)
KEYS = FamilySpec("botwatch_redis_db_keys", "Keys per database.", labels=("probe", "db"))
SERVER = FamilySpec(
    "botwatch_redis_server",
    "The server's version and replication role.",
    "info",
    ("probe", "version", "role"),
)
FAMILIES = (
    PING,
    UPTIME,
    MEMORY_USED,
    MEMORY_MAX,
    POLICY,
    CLIENTS,
    MAX_CLIENTS,
    HITS,
    MISSES,
    EVICTED,
    REJECTED,
    KEYS,
    SERVER,
)
# Plain numbers INFO gives: each one is a family of one series.
NUMBERS = (
    (UPTIME, "uptime_in_seconds"),
    (MEMORY_USED, "used_memory"),
    (CLIENTS, "connected_clients"),
    (MAX_CLIENTS, "maxclients"),
    (HITS, "keyspace_hits"),
    (MISSES, "keyspace_misses"),
    (EVICTED, "evicted_keys"),
    (REJECTED, "rejected_connections"),
)
# INFO is a few KiB; a server's errorstats can grow it, not to this.
MAX_INFO_BYTES = 1 << 20
MAX_READ_BYTES = MAX_INFO_BYTES + 64 * 1024
READ_CHUNK = 64 * 1024
# Databases reported: the default `databases 16`, with room; only non-empty ones are listed.
MAX_DBS = 64
MAX_LABEL_CHARS = 64
# Secrets shorter than this are not scrubbed from text (as for ${ENV} values in logs).
MIN_SCRUB_LENGTH = 4


class RedisProbeConfig(ProbeConfig):
    type: Literal["redis"]
    host: str = "localhost"
    port: Port = 6379
    username: str | None = None  # ACL user (Redis 6+); None: the default user
    password: SecretStr | None = None  # from ${ENV}: never shown

    @model_validator(mode="after")
    def _username_needs_password(self) -> RedisProbeConfig:
        if self.username is not None and self.password is None:
            # Named at `password`, whose value (None) is safe to show.
            raise PydanticCustomError(
                "password", "required when a username is set", {"at": "password"}
            )
        return self


def inner_budget(timeout: float) -> float:
    """The check's own deadline: ahead of the collector's by a margin, so the check reports
    where it hung before the collector's timeout cancels it."""
    return timeout - min(0.5, timeout * 0.1)


def info_samples(probe: str, info: dict[str, str]) -> Iterator[Sample]:
    """The series INFO gives; a field this server version lacks is left out."""
    labels = {"probe": probe}
    for spec, key in NUMBERS:
        value = resp.number(info, key)
        if value is not None:
            yield Sample(spec, labels, value)
    limit = resp.number(info, "maxmemory")
    if limit:  # 0 is "no limit": a 0 would make every used/max ratio +Inf
        yield Sample(MEMORY_MAX, labels, limit)
    if "maxmemory_policy" in info:
        yield Sample(POLICY, {**labels, "policy": _label(info["maxmemory_policy"])})
    for db, count in sorted(resp.keyspace(info).items())[:MAX_DBS]:
        yield Sample(KEYS, {**labels, "db": db}, count)
    if "redis_version" in info:
        version, role = _label(info["redis_version"]), _label(info.get("role", ""))
        yield Sample(SERVER, {**labels, "version": version, "role": role})


def _label(value: str) -> str:
    return value[:MAX_LABEL_CHARS]


class _Replies:
    """Replies from a stream, read in chunks within the check's byte budget."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.buffer = b""
        self.read_bytes = 0

    async def ask(self, *command: str) -> Reply:
        self.writer.write(resp.encode(*command))
        await self.writer.drain()
        while True:
            parsed = resp.parse(self.buffer, MAX_INFO_BYTES)
            if parsed is not None:
                reply, used = parsed
                self.buffer = self.buffer[used:]
                return reply
            chunk = await self.reader.read(READ_CHUNK)
            if not chunk:
                raise asyncio.IncompleteReadError(self.buffer, None)
            self.read_bytes += len(chunk)
            if self.read_bytes > MAX_READ_BYTES:
                raise ProtocolError(f"more than {MAX_READ_BYTES} bytes of replies")
            self.buffer += chunk


class RedisCheck:
    def __init__(self, config: RedisProbeConfig) -> None:
        self.config = config
        self._password = config.password.get_secret_value() if config.password else None

    async def check(self) -> Result:
        budget = inner_budget(self.config.timeout)
        step = "connecting"
        samples: list[Sample] = []
        writer: asyncio.StreamWriter | None = None
        try:
            async with asyncio.timeout(budget):
                reader, writer = await self._connect()
                replies = _Replies(reader, writer)
                if self._password is not None:
                    step = "authenticating"
                    await self._auth(replies)
                step = "waiting for PONG"
                started = time.perf_counter()
                pong = await replies.ask("PING")
                ping_seconds = time.perf_counter() - started
                _expect(pong, "PONG", "PING")
                samples.append(Sample(PING, {"probe": self.config.name}, ping_seconds))
                step = "reading INFO"
                info = _bulk(await replies.ask("INFO"), "INFO")
                samples += info_samples(self.config.name, resp.parse_info(info))
            writer.close()  # a FIN, not awaited: the check is done (QUIT would only wait)
            writer = None
        except (Failed, ProtocolError, asyncio.IncompleteReadError, OSError) as exc:
            # OSError covers TimeoutError (our deadline) and a peer gone mid-conversation.
            reason, message = _why(exc, step, budget)
            return Result(False, reason, self._scrub(message), samples)
        finally:
            if writer is not None:
                writer.transport.abort()  # failed: do not wait on the peer to flush or close
        return Result(True, samples=samples)

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await open_stream(self.config.host, self.config.port)

    async def _auth(self, replies: _Replies) -> None:
        user = [self.config.username] if self.config.username else []
        reply = await replies.ask("AUTH", *user, self._password or "")
        if isinstance(reply, ErrorReply):
            # Whatever the kind (WRONGPASS, ERR no password set...): the login failed.
            raise Failed("auth", f"AUTH: {reply.message}")
        _expect(reply, "OK", "AUTH")

    def _scrub(self, text: str) -> str:
        """One line, and never the password: Redis quotes a command's arguments in some
        errors (`unknown command 'AUTH', with args beginning with: ...`)."""
        text = resp.one_line(text)
        if self._password and len(self._password) >= MIN_SCRUB_LENGTH:
            text = text.replace(self._password, "<redacted>")
        return text


def _expect(reply: Reply, wanted: str, command: str) -> None:
    if isinstance(reply, ErrorReply):
        raise Failed(resp.error_reason(reply), f"{command}: {reply.message}")
    if reply != wanted:
        shown = resp.printable(reply) if isinstance(reply, bytes) else repr(reply)[:40]
        raise Failed("protocol", f"{command} answered {shown}, not {wanted}")


def _bulk(reply: Reply, command: str) -> str:
    if isinstance(reply, ErrorReply):
        raise Failed(resp.error_reason(reply), f"{command}: {reply.message}")
    if not isinstance(reply, bytes):
        raise Failed("protocol", f"{command} answered {repr(reply)[:40]}, not a bulk string")
    return reply.decode("utf-8", "replace")


def _why(exc: Exception, step: str, budget: float) -> tuple[str, str]:
    """The reason and one-line message for what ended a check early."""
    if isinstance(exc, Failed):
        return exc.reason, str(exc)
    if isinstance(exc, TimeoutError):
        return "timeout", f"{step}: no answer within {budget:g}s"
    if isinstance(exc, asyncio.IncompleteReadError):
        return "protocol", f"{step}: connection closed"
    if isinstance(exc, OSError):
        return "protocol", f"{step}: {exc.strerror or exc}"
    return "protocol", f"{step}: {exc}"


def build(config: RedisProbeConfig, blocking: BlockingCalls) -> RedisCheck:
    return RedisCheck(config)
