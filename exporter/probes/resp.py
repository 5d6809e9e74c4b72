"""The part of Redis's RESP2 protocol a probe speaks, and INFO's text, without I/O.

`parse` works on a buffer and says "need more" (None) until a whole reply is in it, so the
probe reads in chunks and every limit (line length, bulk size, array length, nesting) is
checked here, on fixtures, before any byte is trusted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

CRLF = b"\r\n"
# A status line, error or length header longer than this is not Redis talking.
MAX_LINE_BYTES = 64 * 1024
MAX_ARRAY_ITEMS = 1024
MAX_DEPTH = 4


class ProtocolError(Exception):
    """What the peer sent is not a RESP2 reply, or breaks a limit (one line)."""


@dataclass(frozen=True)
class ErrorReply:
    """A `-` reply: `-LOADING Redis is loading the dataset in memory`."""

    message: str

    @property
    def code(self) -> str:
        """The first word, which Redis uses as the error's kind (ERR, NOAUTH, LOADING...)."""
        return self.message.split(" ", 1)[0]


# str: a simple string (+OK); bytes | None: a bulk string (None: null); int; list: an array.
Reply = str | int | bytes | None | ErrorReply | list["Reply"]


def encode(*args: str | bytes) -> bytes:
    """A command as RESP2 clients send it: an array of bulk strings."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        raw = arg.encode() if isinstance(arg, str) else arg
        out.append(b"$%d\r\n%s\r\n" % (len(raw), raw))
    return b"".join(out)


def parse(buf: bytes, max_bulk: int, start: int = 0, depth: int = 0) -> tuple[Reply, int] | None:
    """One reply from `buf[start:]` and where it ends, or None while it is incomplete."""
    end = buf.find(CRLF, start, start + MAX_LINE_BYTES + 2)
    if end < 0:
        if len(buf) - start > MAX_LINE_BYTES:
            raise ProtocolError(f"a reply line longer than {MAX_LINE_BYTES} bytes")
        if buf[start : start + 1] and buf[start] not in b"+-:$*":
            raise ProtocolError(f"not a RESP reply: {printable(buf[start:])}")
        return None
    kind, line, after = buf[start : start + 1], buf[start + 1 : end], end + 2
    if kind == b"$":
        return _bulk(buf, _integer(line), after, max_bulk)
    if kind == b"*":
        return _array(buf, _integer(line), after, max_bulk, depth)
    return _scalar(kind, line, buf[start:]), after


def _scalar(kind: bytes, line: bytes, raw: bytes) -> Reply:
    if kind == b"+":
        return line.decode("utf-8", "replace")
    if kind == b"-":
        return ErrorReply(line.decode("utf-8", "replace"))
    if kind == b":":
        return _integer(line)
    raise ProtocolError(f"not a RESP reply: {printable(raw)}")


def _bulk(buf: bytes, size: int, at: int, max_bulk: int) -> tuple[Reply, int] | None:
    if size == -1:
        return None, at
    if size < 0 or size > max_bulk:
        raise ProtocolError(f"a bulk reply of {size} bytes (at most {max_bulk})")
    if len(buf) < at + size + 2:
        return None
    if buf[at + size : at + size + 2] != CRLF:
        raise ProtocolError("a bulk reply not ended by CRLF")
    return buf[at : at + size], at + size + 2


def _array(buf: bytes, count: int, at: int, max_bulk: int, depth: int) -> tuple[Reply, int] | None:
    if count == -1:
        return None, at
    if count < 0 or count > MAX_ARRAY_ITEMS:
        raise ProtocolError(f"an array of {count} items (at most {MAX_ARRAY_ITEMS})")
    if depth >= MAX_DEPTH:
        raise ProtocolError(f"arrays nested deeper than {MAX_DEPTH}")
    items: list[Reply] = []
    for _ in range(count):
        parsed = parse(buf, max_bulk, at, depth + 1)
        if parsed is None:
            return None
        item, at = parsed
        items.append(item)
    return items, at


def _integer(line: bytes) -> int:
    if not re.fullmatch(rb"-?\d{1,19}", line):
        raise ProtocolError(f"not a number: {printable(line)}")
    return int(line)


def printable(raw: bytes, limit: int = 16) -> str:
    """A short, safe rendering of bytes a peer sent, for an error message."""
    return repr(raw[:limit])[1:] + ("..." if len(raw) > limit else "")


def one_line(text: str, limit: int = 200) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


# What a reply means --------------------------------------------------------------------------

# Error kinds that mean "not allowed": no or wrong credentials, or an ACL without the command.
AUTH_ERRORS = frozenset({"NOAUTH", "WRONGPASS", "NOPERM"})


def error_reason(error: ErrorReply) -> str:
    """The probe's reason for an error reply to PING or INFO."""
    if error.code == "LOADING":
        return "loading"
    if error.code in AUTH_ERRORS:
        return "auth"
    return "protocol"


# INFO --------------------------------------------------------------------------------------

_KEYSPACE = re.compile(r"db\d{1,5}")


def parse_info(text: str) -> dict[str, str]:
    """INFO's `key:value` lines of every section, in one mapping (keys are unique across
    sections); `# Section` headers and blank lines are skipped."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition(":")
        if sep:
            out[key.strip()] = value.strip()
    return out


def keyspace(info: dict[str, str]) -> dict[str, int]:
    """Keys per database from INFO's keyspace lines: `db0:keys=12,expires=3,avg_ttl=0`."""
    out: dict[str, int] = {}
    for key, value in info.items():
        if not _KEYSPACE.fullmatch(key):
            continue
        fields = dict(part.partition("=")[::2] for part in value.split(","))
        keys = fields.get("keys", "")
        if keys.isdigit():
            out[key] = int(keys)
    return out


def number(info: dict[str, str], key: str) -> float | None:
    """A numeric INFO field, or None when it is missing or not a number."""
    try:
        return float(info[key])
    except (KeyError, ValueError):
        return None
