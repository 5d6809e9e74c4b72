"""The part of PostgreSQL's frontend/backend protocol (3.0) a probe speaks, without I/O.

Building the few frontend messages it sends, framing and parsing what the backend answers,
and the decisions `pg_isready` makes on the first answer. Everything here works on bytes, so
it is tested on fixtures; exporter/probes/postgres.py does the reading and writing.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

PROTOCOL_3_0 = 3 << 16
HEADER_BYTES = 5  # type byte + Int32 length (which counts itself)
# No answer the probe waits for comes near this; a larger length is garbage, not a message.
MAX_MESSAGE_BYTES = 64 * 1024

# Backend message types (protocol 3.0) a server may send; anything else is not PostgreSQL.
AUTHENTICATION = b"R"
ERROR_RESPONSE = b"E"
NOTICE_RESPONSE = b"N"
PARAMETER_STATUS = b"S"
BACKEND_KEY_DATA = b"K"
READY_FOR_QUERY = b"Z"
ROW_DESCRIPTION = b"T"
DATA_ROW = b"D"
COMMAND_COMPLETE = b"C"
EMPTY_QUERY = b"I"
NOTIFICATION = b"A"
NEGOTIATE_VERSION = b"v"
BACKEND_TYPES = frozenset(b"RENSKZTDCIAv123cdGHWnst")

# Authentication request codes.
AUTH_OK = 0
AUTH_KERBEROS_V5 = 2
AUTH_CLEARTEXT = 3
AUTH_MD5 = 5
AUTH_GSS = 7
AUTH_GSS_CONTINUE = 8
AUTH_SSPI = 9
AUTH_SASL = 10
AUTH_SASL_CONTINUE = 11
AUTH_SASL_FINAL = 12
SASL_CODES = frozenset({AUTH_SASL, AUTH_SASL_CONTINUE, AUTH_SASL_FINAL})
AUTH_NAMES = {
    AUTH_OK: "ok",
    AUTH_KERBEROS_V5: "kerberos",
    AUTH_CLEARTEXT: "password",
    AUTH_MD5: "md5",
    AUTH_GSS: "gss",
    AUTH_GSS_CONTINUE: "gss",
    AUTH_SSPI: "sspi",
    # SASL's one mechanism in PostgreSQL, named as pg_hba.conf names the method.
    AUTH_SASL: "scram-sha-256",
    AUTH_SASL_CONTINUE: "scram-sha-256",
    AUTH_SASL_FINAL: "scram-sha-256",
}

# SQLSTATEs that decide something.
CANNOT_CONNECT_NOW = "57P03"  # starting up, shutting down, in recovery without hot standby
TOO_MANY_CONNECTIONS = "53300"


class ProtocolError(Exception):
    """What the peer sent is not what a PostgreSQL server sends there (one line)."""


# Frontend messages -------------------------------------------------------------------------


def startup_message(params: Mapping[str, str]) -> bytes:
    body = struct.pack("!i", PROTOCOL_3_0)
    for key, value in params.items():
        body += _cstring(key) + _cstring(value)
    body += b"\0"
    return struct.pack("!i", len(body) + 4) + body


def frame(kind: bytes, body: bytes) -> bytes:
    return kind + struct.pack("!i", len(body) + 4) + body


def password_message(password: str) -> bytes:
    """Cleartext and md5 answers: a PasswordMessage holding a C string."""
    return frame(b"p", _cstring(password))


def md5_password(user: str, password: str, salt: bytes) -> str:
    """What the server's md5 method expects: md5(md5(password + user) + salt), prefixed."""
    # MD5 is the method's own choice, not ours; SCRAM is offered by any server set up since 14.
    inner = hashlib.md5((password + user).encode()).hexdigest()
    return "md5" + hashlib.md5(inner.encode() + salt).hexdigest()


def sasl_initial_response(mechanism: str, data: bytes) -> bytes:
    return frame(b"p", _cstring(mechanism) + struct.pack("!i", len(data)) + data)


def sasl_response(data: bytes) -> bytes:
    return frame(b"p", data)


def query_message(sql: str) -> bytes:
    return frame(b"Q", _cstring(sql))


TERMINATE = frame(b"X", b"")


def _cstring(text: str) -> bytes:
    raw = text.encode()
    if b"\0" in raw:
        raise ValueError("a protocol string cannot hold a NUL byte")
    return raw + b"\0"


# Backend messages --------------------------------------------------------------------------


def parse_header(header: bytes) -> tuple[bytes, int]:
    """The type and body length of a backend message from its 5-byte header."""
    if len(header) != HEADER_BYTES:
        raise ProtocolError(f"short message header ({len(header)} bytes)")
    kind = header[:1]
    (length,) = struct.unpack("!i", header[1:])
    if kind[0] not in BACKEND_TYPES or length < 4 or length > MAX_MESSAGE_BYTES:
        raise ProtocolError(f"not a PostgreSQL message: starts with {printable(header)}")
    return kind, length - 4


@dataclass(frozen=True)
class AuthRequest:
    code: int
    data: bytes  # md5: the salt; SASL: mechanisms or server data

    @property
    def method(self) -> str:
        return AUTH_NAMES.get(self.code, f"method {self.code}")


def parse_auth(body: bytes) -> AuthRequest:
    if len(body) < 4:
        raise ProtocolError("authentication request without a code")
    (code,) = struct.unpack("!i", body[:4])
    data = body[4:]
    if code == AUTH_MD5 and len(data) != 4:
        raise ProtocolError("md5 request without a 4-byte salt")
    return AuthRequest(code, data)


def sasl_mechanisms(data: bytes) -> list[str]:
    """The mechanisms an AuthenticationSASL offers: C strings ending in an empty one."""
    return [m.decode("utf-8", "replace") for m in data.split(b"\0") if m]


@dataclass(frozen=True)
class ServerError:
    """An ErrorResponse (or NoticeResponse): the fields a one-line report needs."""

    severity: str
    code: str
    message: str

    def line(self) -> str:
        return one_line(f"{self.severity} {self.code}: {self.message}")


def parse_error(body: bytes) -> ServerError:
    fields: dict[str, str] = {}
    for part in body.split(b"\0"):
        if part:
            fields[chr(part[0])] = part[1:].decode("utf-8", "replace")
    # V is the untranslated severity (9.6+); S may be in the server's language.
    severity = fields.get("V") or fields.get("S") or "ERROR"
    return ServerError(severity, fields.get("C", ""), fields.get("M", ""))


def parse_parameter_status(body: bytes) -> tuple[str, str]:
    parts = body.split(b"\0")
    if len(parts) < 3:
        raise ProtocolError("malformed ParameterStatus")
    return parts[0].decode("utf-8", "replace"), parts[1].decode("utf-8", "replace")


def parse_data_row(body: bytes) -> list[bytes | None]:
    if len(body) < 2:
        raise ProtocolError("malformed DataRow")
    (count,) = struct.unpack("!h", body[:2])
    values: list[bytes | None] = []
    at = 2
    for _ in range(count):
        if at + 4 > len(body):
            raise ProtocolError("malformed DataRow")
        (size,) = struct.unpack("!i", body[at : at + 4])
        at += 4
        if size == -1:
            values.append(None)
            continue
        if size < 0 or at + size > len(body):
            raise ProtocolError("malformed DataRow")
        values.append(body[at : at + size])
        at += size
    return values


# Decisions ---------------------------------------------------------------------------------


class Readiness(Enum):
    """pg_isready's three outcomes (it also has "no attempt", for bad parameters)."""

    ACCEPTING = "accepting"
    REJECTING = "rejecting"
    NO_RESPONSE = "no_response"


def classify_first(kind: bytes, body: bytes) -> tuple[Readiness, ServerError | None]:
    """What the first answer to a StartupMessage says about the server, as libpq's PQping
    decides it: any authentication request means it accepts connections, and so does an
    error, unless its SQLSTATE is 57P03 (it is starting up, shutting down or recovering).
    Anything else raises ProtocolError: the peer is not a PostgreSQL server."""
    if kind == AUTHENTICATION:
        parse_auth(body)
        return Readiness.ACCEPTING, None
    if kind == ERROR_RESPONSE:
        error = parse_error(body)
        if error.code == CANNOT_CONNECT_NOW:
            return Readiness.REJECTING, error
        return Readiness.ACCEPTING, error
    raise ProtocolError(f"unexpected first answer {printable(kind)}")


def login_failure(error: ServerError) -> str:
    """The probe's reason for an error that ended a login attempt."""
    if error.code == CANNOT_CONNECT_NOW:
        return "rejecting"
    if error.code == TOO_MANY_CONNECTIONS:
        return "too_many_connections"
    # Wrong password, no such role or database, no pg_hba.conf entry, no CONNECT privilege:
    # the server is there and refuses this login.
    return "auth"


def one_line(text: str, limit: int = 200) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def printable(raw: bytes, limit: int = 16) -> str:
    """A short, safe rendering of bytes a peer sent, for an error message."""
    return repr(raw[:limit])[1:] + ("..." if len(raw) > limit else "")
