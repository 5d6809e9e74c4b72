"""The client side of SCRAM-SHA-256 (RFC 5802, RFC 7677) as PostgreSQL uses it, without I/O.

PostgreSQL ignores the SCRAM user name (the StartupMessage names the role) and, without TLS,
takes no channel binding: the client sends `n,,n=,r=<nonce>`. The password goes through
SASLprep the way the server prepared it when it stored the verifier: ASCII as it is, else
RFC 4013, and the raw password when SASLprep rejects it.

The salted password (PBKDF2, thousands of HMAC rounds) is a separate step, so the caller
can compute it off the event loop and keep it for the next login with the same salt.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import stringprep
import unicodedata
from dataclasses import dataclass

MECHANISM = "SCRAM-SHA-256"
GS2_HEADER = "n,,"  # no channel binding: no TLS here
NONCE_BYTES = 18
# PostgreSQL's default is 4096 (scram_iterations, 16+, may raise it). A server asking for far
# more would make each login burn CPU; past this it is refused rather than obeyed.
MAX_ITERATIONS = 1_000_000


class ScramError(Exception):
    """The server's SCRAM messages are malformed or do not prove it knows the password."""


def saslprep(password: str) -> str:
    if password.isascii():
        return password  # what PostgreSQL does too, control characters included
    try:
        return _rfc4013(password)
    except ValueError:
        return password  # the server stored the verifier of the raw password then


def _rfc4013(text: str) -> str:
    mapped = "".join(
        " " if stringprep.in_table_c12(c) else c for c in text if not stringprep.in_table_b1(c)
    )
    normal = unicodedata.normalize("NFKC", mapped)
    prohibited = (
        stringprep.in_table_a1,
        stringprep.in_table_c12,
        stringprep.in_table_c21_c22,
        stringprep.in_table_c3,
        stringprep.in_table_c4,
        stringprep.in_table_c5,
        stringprep.in_table_c6,
        stringprep.in_table_c7,
        stringprep.in_table_c8,
        stringprep.in_table_c9,
    )
    if any(check(c) for c in normal for check in prohibited):
        raise ValueError("prohibited character")
    if any(stringprep.in_table_d1(c) for c in normal) and (
        any(stringprep.in_table_d2(c) for c in normal)
        or not stringprep.in_table_d1(normal[0])
        or not stringprep.in_table_d1(normal[-1])
    ):
        raise ValueError("mixed bidirectional text")
    return normal


def salted_password(password: str, salt: bytes, iterations: int) -> bytes:
    return hashlib.pbkdf2_hmac("sha256", saslprep(password).encode(), salt, iterations)


def new_nonce() -> str:
    return base64.b64encode(secrets.token_bytes(NONCE_BYTES)).decode()


@dataclass(frozen=True)
class ServerFirst:
    raw: str
    nonce: str
    salt: bytes
    iterations: int


def _attributes(message: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in message.split(","):
        if len(part) < 2 or part[1] != "=":
            raise ScramError("malformed SCRAM message")
        out.setdefault(part[0], part[2:])
    return out


def _hmac(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


class ScramClient:
    """One SCRAM exchange. `username` stays empty for PostgreSQL; tests set it to replay
    RFC 7677's example."""

    def __init__(self, password: str, nonce: str | None = None, username: str = "") -> None:
        self._password = password
        self.nonce = nonce or new_nonce()
        self._first_bare = f"n={username},r={self.nonce}"
        self._expected_server_signature: bytes | None = None
        # True once the server proved it knows the password (its signature matched).
        self.verified = False

    def first_message(self) -> bytes:
        return (GS2_HEADER + self._first_bare).encode()

    def parse_server_first(self, data: bytes) -> ServerFirst:
        try:
            raw = data.decode("ascii")
        except UnicodeDecodeError:
            raise ScramError("SCRAM server-first message is not ASCII") from None
        attrs = _attributes(raw)
        if "m" in attrs:
            raise ScramError("SCRAM server asks for an unsupported extension")
        nonce, salt_text, count = attrs.get("r", ""), attrs.get("s", ""), attrs.get("i", "")
        if not nonce.startswith(self.nonce) or len(nonce) == len(self.nonce):
            raise ScramError("SCRAM server nonce does not extend the client's")
        try:
            salt = base64.b64decode(salt_text, validate=True)
        except ValueError:
            raise ScramError("SCRAM salt is not base64") from None
        if not salt:
            raise ScramError("SCRAM server sent no salt")
        if not count.isdigit() or not 1 <= int(count) <= MAX_ITERATIONS:
            raise ScramError(f"SCRAM iteration count out of range (1..{MAX_ITERATIONS})")
        return ServerFirst(raw, nonce, salt, int(count))

    def final_message(self, server: ServerFirst, salted: bytes) -> bytes:
        """The client-final message, given the salted password for the server's salt and
        iteration count; remembers the signature the server must answer with."""
        if self._expected_server_signature is not None:
            raise ScramError("SCRAM server-first message came twice")
        channel = base64.b64encode(GS2_HEADER.encode()).decode()
        without_proof = f"c={channel},r={server.nonce}"
        auth_message = f"{self._first_bare},{server.raw},{without_proof}".encode()
        client_key = _hmac(salted, b"Client Key")
        stored_key = hashlib.sha256(client_key).digest()
        signature = _hmac(stored_key, auth_message)
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        self._expected_server_signature = _hmac(_hmac(salted, b"Server Key"), auth_message)
        return f"{without_proof},p={base64.b64encode(proof).decode()}".encode()

    def verify_server_final(self, data: bytes) -> None:
        if self._expected_server_signature is None:
            raise ScramError("SCRAM server-final message before the client-final one")
        attrs = _attributes(data.decode("ascii", "replace"))
        if "e" in attrs:
            raise ScramError(f"SCRAM server error: {attrs['e'][:60]}")
        try:
            signature = base64.b64decode(attrs.get("v", ""), validate=True)
        except ValueError:
            raise ScramError("SCRAM server signature is not base64") from None
        if not hmac.compare_digest(signature, self._expected_server_signature):
            raise ScramError("SCRAM server signature does not match: not the real server")
        self.verified = True
