"""`postgres`: PostgreSQL/TimescaleDB readiness like pg_isready; with a user, a full login,
SELECT 1 and client connections against max_connections.

Speaks the protocol itself (exporter/probes/pgwire.py, pgscram.py): a StartupMessage and
the first answer tell accepting / rejecting / no_response with no credentials at all, as
pg_isready does. With `user`, the same connection goes on to log in (trust, password, md5,
SCRAM-SHA-256; no TLS), runs two simple queries and says goodbye.

Every read is bounded in size (one message, and all answers of a check together) and the
whole check runs under a deadline a little shorter than the collector's timeout, so that a
peer that never answers still yields a Result with the step it hung in and the readiness
series, instead of the collector's bare timeout.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Literal

from pydantic import SecretStr, field_validator, model_validator
from pydantic_core import PydanticCustomError

from exporter.probes import pgwire
from exporter.probes.api import FamilySpec, Port, ProbeConfig, Result, Sample
from exporter.probes.connect import CONNECT_REASONS, Failed, open_stream
from exporter.probes.pgscram import MECHANISM, ScramClient, ScramError, salted_password
from exporter.probes.pgwire import ProtocolError, Readiness, ServerError
from exporter.threads import BlockingCalls, StillBlocked

TYPE = "postgres"
REASONS = (
    *CONNECT_REASONS,
    "rejecting",
    "too_many_connections",
    "protocol",
    "auth",
    "query",
)
READY = FamilySpec(
    "botwatch_postgres_ready",
    "1 for how the server answered a connection attempt, as pg_isready tells it: accepting, "
    "rejecting (starting up, shutting down, recovering) or no_response.",
    labels=("probe", "state"),
)
QUERY_DURATION = FamilySpec(
    "botwatch_postgres_query_duration_seconds", "How long SELECT 1 took, once logged in."
)
CONNECTIONS = FamilySpec(
    "botwatch_postgres_connections",
    "Client connections (pg_stat_activity's client backends, the probe's own included).",
)
MAX_CONNECTIONS = FamilySpec(
    "botwatch_postgres_max_connections", "The server's max_connections setting."
)
STARTED = FamilySpec(
    "botwatch_postgres_start_timestamp_seconds",
    "When the server last started (pg_postmaster_start_time), Unix time.",
)
SERVER = FamilySpec(
    "botwatch_postgres_server", "The server's version.", "info", ("probe", "version")
)
FAMILIES = (READY, QUERY_DURATION, CONNECTIONS, MAX_CONNECTIONS, STARTED, SERVER)

# The role named in a readiness-only StartupMessage; the server answers before checking it.
PLACEHOLDER_USER = "botwatch"
APPLICATION_NAME = "botwatch"
# Everything a check reads, together: more means a misbehaving peer, not a busy server.
MAX_READ_BYTES = 1 << 20
# Authentication takes at most 3 requests (SCRAM); a server asking on and on is broken.
MAX_AUTH_ROUNDS = 6
# Client backends are what max_connections limits. A role without pg_monitor (or
# pg_read_all_stats) sees other roles' sessions with backend_type hidden (NULL), but still
# sees their database: such a row is counted as a client, which also counts the odd hidden
# worker attached to a database (autovacuum, parallel query, TimescaleDB jobs).
CONNECTIONS_QUERY = (
    "SELECT count(*) FILTER (WHERE backend_type = 'client backend'"
    " OR (backend_type IS NULL AND datid IS NOT NULL)),"
    " current_setting('max_connections'),"
    " extract(epoch FROM pg_postmaster_start_time())"
    " FROM pg_stat_activity"
)
# Secrets shorter than this are not scrubbed from text (as for ${ENV} values in logs).
MIN_SCRUB_LENGTH = 4


class PostgresProbeConfig(ProbeConfig):
    type: Literal["postgres"]
    host: str = "localhost"  # or a directory holding the server's unix socket
    port: Port = 5432
    # Without a user: readiness only (like pg_isready). With one: SELECT 1 and connections.
    user: str | None = None
    password: SecretStr | None = None  # from ${ENV}: never shown
    database: str | None = None  # default: the user's name

    @field_validator("user", "database", "host")
    @classmethod
    def _no_nul(cls, value: str | None) -> str | None:
        if value is not None and "\0" in value:
            raise PydanticCustomError("nul", "must not contain a NUL character")
        return value

    @model_validator(mode="after")
    def _password_needs_user(self) -> PostgresProbeConfig:
        if self.password is not None and self.user is None:
            # Named at `user`: an error at `password` would echo the password back.
            raise PydanticCustomError("user", "required when a password is set", {"at": "user"})
        return self


def inner_budget(timeout: float) -> float:
    """The check's own deadline: ahead of the collector's by a margin, so the check reports
    where it hung (and its readiness) before the collector's timeout cancels it."""
    return timeout - min(0.5, timeout * 0.1)


@dataclass
class _Attempt:
    """What one check has learnt so far; a failure still reports all of it."""

    step: str = "connecting"
    readiness: Readiness = Readiness.NO_RESPONSE
    query_seconds: float | None = None
    connections: int | None = None
    max_connections: int | None = None
    started: float | None = None
    version: str | None = None


class _Wire:
    """Backend messages from a stream, within the check's byte budget."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.read_bytes = 0

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def receive(self) -> tuple[bytes, bytes]:
        kind, size = pgwire.parse_header(await self.reader.readexactly(pgwire.HEADER_BYTES))
        self.read_bytes += pgwire.HEADER_BYTES + size
        if self.read_bytes > MAX_READ_BYTES:
            raise ProtocolError(f"more than {MAX_READ_BYTES} bytes of answers")
        return kind, await self.reader.readexactly(size)

    async def receive_skipping(self, *skipped: bytes) -> tuple[bytes, bytes]:
        while True:
            kind, body = await self.receive()
            if kind not in skipped:
                return kind, body


class PostgresCheck:
    def __init__(self, config: PostgresProbeConfig, blocking: BlockingCalls) -> None:
        self.config = config
        self.blocking = blocking
        self.user = config.user
        self._password = config.password.get_secret_value() if config.password else None
        # The salted password for the last (salt, iterations): PBKDF2 once, not every check.
        self._salted: tuple[bytes, int, bytes] | None = None

    async def check(self) -> Result:
        attempt = _Attempt()
        budget = inner_budget(self.config.timeout)
        writer: asyncio.StreamWriter | None = None
        try:
            async with asyncio.timeout(budget):
                reader, writer = await self._connect()
                await self._converse(_Wire(reader, writer), attempt)
            # A FIN after what was sent (not a reset that could overtake the Terminate and
            # leave "connection reset" in the server's log); not awaited: the check is done.
            writer.close()
            writer = None
        except (Failed, ProtocolError, ScramError, asyncio.IncompleteReadError, OSError) as exc:
            # OSError covers TimeoutError (our deadline) and a peer gone mid-conversation.
            reason, message = _why(exc, attempt.step, budget)
            return Result(False, reason, self._scrub(message), self._samples(attempt))
        finally:
            if writer is not None:
                writer.transport.abort()  # failed: do not wait on the peer to flush or close
        return Result(True, samples=self._samples(attempt))

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        host, port = self.config.host, self.config.port
        unix_path = f"{host}/.s.PGSQL.{port}" if host.startswith("/") else None
        return await open_stream(host, port, unix_path)

    async def _converse(self, wire: _Wire, attempt: _Attempt) -> None:
        user = self.user or PLACEHOLDER_USER
        params = {"user": user, "application_name": APPLICATION_NAME}
        if self.config.database:
            params["database"] = self.config.database
        attempt.step = "waiting for the answer to the startup message"
        await wire.send(pgwire.startup_message(params))
        kind, body = await wire.receive_skipping(pgwire.NOTICE_RESPONSE, pgwire.NEGOTIATE_VERSION)
        attempt.readiness, error = pgwire.classify_first(kind, body)
        if attempt.readiness is Readiness.REJECTING:
            raise Failed("rejecting", _server_said(error))
        if error is not None and (self.user or error.code == pgwire.TOO_MANY_CONNECTIONS):
            # Readiness alone: a full server still accepts (pg_isready says so) but no
            # client gets in, which is the failure that matters.
            raise _refused(error)
        if not self.user:
            return
        await self._authenticate(wire, attempt, pgwire.parse_auth(body))
        await self._until_ready(wire, attempt)
        attempt.step = "running SELECT 1"
        started = time.perf_counter()
        rows = await self._query(wire, "SELECT 1")
        attempt.query_seconds = time.perf_counter() - started
        if rows != [[b"1"]]:
            raise ProtocolError("SELECT 1 did not return 1")
        attempt.step = "counting connections"
        self._read_counts(attempt, await self._query(wire, CONNECTIONS_QUERY))
        await wire.send(pgwire.TERMINATE)

    async def _authenticate(
        self, wire: _Wire, attempt: _Attempt, request: pgwire.AuthRequest
    ) -> None:
        scram: ScramClient | None = None
        for _ in range(MAX_AUTH_ROUNDS):
            attempt.step = f"authenticating ({request.method})"
            if request.code == pgwire.AUTH_OK:
                if scram is not None and not scram.verified:
                    raise Failed("auth", "the server skipped SCRAM's proof of the password")
                return
            scram = await self._answer(wire, request, scram)
            kind, body = await wire.receive_skipping(pgwire.NOTICE_RESPONSE)
            if kind == pgwire.ERROR_RESPONSE:
                raise _refused(pgwire.parse_error(body))
            if kind != pgwire.AUTHENTICATION:
                raise ProtocolError(f"unexpected message {pgwire.printable(kind)}")
            request = pgwire.parse_auth(body)
        raise ProtocolError(f"authentication did not end after {MAX_AUTH_ROUNDS} requests")

    async def _answer(
        self, wire: _Wire, request: pgwire.AuthRequest, scram: ScramClient | None
    ) -> ScramClient | None:
        """Answers one authentication request; returns the SCRAM exchange under way."""
        if request.code == pgwire.AUTH_CLEARTEXT:
            await wire.send(pgwire.password_message(self._needed(request)))
        elif request.code == pgwire.AUTH_MD5:
            md5 = pgwire.md5_password(self.user or "", self._needed(request), request.data)
            await wire.send(pgwire.password_message(md5))
        elif request.code == pgwire.AUTH_SASL and scram is None:
            offered = pgwire.sasl_mechanisms(request.data)
            if MECHANISM not in offered:
                names = ", ".join(offered) or "nothing"
                raise Failed("auth", f"the server offers {names}; only {MECHANISM} is known")
            scram = ScramClient(self._needed(request))
            await wire.send(pgwire.sasl_initial_response(MECHANISM, scram.first_message()))
        elif request.code == pgwire.AUTH_SASL_CONTINUE and scram is not None:
            server = scram.parse_server_first(request.data)
            salted = await self._salted_password(server.salt, server.iterations)
            await wire.send(pgwire.sasl_response(scram.final_message(server, salted)))
        elif request.code == pgwire.AUTH_SASL_FINAL and scram is not None:
            scram.verify_server_final(request.data)
        elif request.code in pgwire.SASL_CODES:
            raise ProtocolError(f"SCRAM step {request.code} out of order")
        elif request.code in pgwire.AUTH_NAMES:
            raise Failed("auth", f"unsupported authentication method {request.method}")
        else:
            raise ProtocolError(f"unknown authentication request {request.code}")
        return scram

    def _needed(self, request: pgwire.AuthRequest) -> str:
        if self._password is None:
            raise Failed("auth", f"the server asks for a password ({request.method}); none set")
        return self._password

    async def _salted_password(self, salt: bytes, iterations: int) -> bytes:
        cached = self._salted
        if cached is not None and cached[:2] == (salt, iterations):
            return cached[2]
        try:
            # PBKDF2 runs thousands of HMAC rounds (hashlib releases the GIL): off the loop.
            salted = await self.blocking.run(
                f"postgres {self.config.name} scram",
                salted_password,
                self._password or "",
                salt,
                iterations,
            )
        except StillBlocked:
            raise Failed("timeout", "the previous SCRAM key derivation is still running") from None
        self._salted = (salt, iterations, salted)
        return salted

    async def _until_ready(self, wire: _Wire, attempt: _Attempt) -> None:
        attempt.step = "waiting for the server to be ready for queries"
        while True:
            kind, body = await wire.receive()
            if kind == pgwire.READY_FOR_QUERY:
                return
            if kind == pgwire.PARAMETER_STATUS:
                name, value = pgwire.parse_parameter_status(body)
                if name == "server_version":
                    attempt.version = pgwire.one_line(value, 64)
            elif kind == pgwire.ERROR_RESPONSE:
                raise _refused(pgwire.parse_error(body))
            elif kind not in (pgwire.BACKEND_KEY_DATA, pgwire.NOTICE_RESPONSE):
                raise ProtocolError(f"unexpected message {pgwire.printable(kind)}")

    async def _query(self, wire: _Wire, sql: str) -> list[list[bytes | None]]:
        """Rows of one simple query (the first few: these queries return one)."""
        await wire.send(pgwire.query_message(sql))
        rows: list[list[bytes | None]] = []
        error: ServerError | None = None
        while True:
            kind, body = await wire.receive()
            if kind == pgwire.DATA_ROW:
                if len(rows) < 4:
                    rows.append(pgwire.parse_data_row(body))
            elif kind == pgwire.ERROR_RESPONSE:
                error = pgwire.parse_error(body)
                if error.severity in ("FATAL", "PANIC"):  # the server hangs up after these
                    raise Failed("query", _server_said(error))
            elif kind == pgwire.READY_FOR_QUERY:
                break
            elif kind not in _QUERY_NOISE:
                raise ProtocolError(f"unexpected message {pgwire.printable(kind)}")
        if error is not None:
            raise Failed("query", _server_said(error))
        return rows

    @staticmethod
    def _read_counts(attempt: _Attempt, rows: list[list[bytes | None]]) -> None:
        row = rows[0] if len(rows) == 1 else []
        try:
            count, maximum, started = row
            attempt.connections = int(count or b"")
            attempt.max_connections = int(maximum or b"")
            attempt.started = float(started) if started is not None else None
        except ValueError:
            raise ProtocolError("unexpected answer to the connections query") from None

    def _scrub(self, text: str) -> str:
        """One line, and never the password, whatever a peer echoed back."""
        text = pgwire.one_line(text)
        if self._password and len(self._password) >= MIN_SCRUB_LENGTH:
            text = text.replace(self._password, "<redacted>")
        return text

    def _samples(self, attempt: _Attempt) -> list[Sample]:
        probe = {"probe": self.config.name}
        out = [
            Sample(READY, {**probe, "state": state.value}, 1 if attempt.readiness is state else 0)
            for state in Readiness
        ]
        values = (
            (QUERY_DURATION, attempt.query_seconds),
            (CONNECTIONS, attempt.connections),
            (MAX_CONNECTIONS, attempt.max_connections),
            (STARTED, attempt.started),
        )
        out += [Sample(spec, probe, value) for spec, value in values if value is not None]
        if attempt.version is not None:
            out.append(Sample(SERVER, {**probe, "version": attempt.version}))
        return out


_QUERY_NOISE = frozenset(
    {
        pgwire.ROW_DESCRIPTION,
        pgwire.COMMAND_COMPLETE,
        pgwire.EMPTY_QUERY,
        pgwire.NOTICE_RESPONSE,
        pgwire.PARAMETER_STATUS,
        pgwire.NOTIFICATION,
    }
)


def _why(exc: Exception, step: str, budget: float) -> tuple[str, str]:
    """The reason and one-line message for what ended a check early."""
    if isinstance(exc, Failed):
        return exc.reason, str(exc)
    if isinstance(exc, TimeoutError):
        return "timeout", f"{step}: no answer within {budget:g}s"
    if isinstance(exc, ScramError):
        return "auth", str(exc)
    if isinstance(exc, asyncio.IncompleteReadError):
        return "protocol", f"{step}: connection closed"
    if isinstance(exc, OSError):
        return "protocol", f"{step}: {exc.strerror or exc}"
    return "protocol", f"{step}: {exc}"


def _refused(error: ServerError) -> Failed:
    return Failed(pgwire.login_failure(error), f"login refused: {error.line()}")


def _server_said(error: ServerError | None) -> str:
    return error.line() if error is not None else "error"


def build(config: PostgresProbeConfig, blocking: BlockingCalls) -> PostgresCheck:
    return PostgresCheck(config, blocking)
