"""The http probe's judgments on what came back: status, Retry-After, JSON body, CORS.

Pure: no I/O. Each verdict is None when all is well, else the one-line error (never a
header value or the URL: what it quotes comes from the response).
"""

from __future__ import annotations

import email.utils
import json
import re
from collections.abc import Sequence
from datetime import UTC
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from exporter.probes.http import CorsCheck, JsonCheck

# Methods a browser sends cross-origin without listing them in Access-Control-Allow-Methods.
CORS_SAFELISTED_METHODS = frozenset({"GET", "HEAD", "POST"})
SHOWN_CHARS = 60
_DIGITS = re.compile(r"[0-9]+")


def status_ok(status: int, valid: Sequence[int]) -> bool:
    return status in valid if valid else 200 <= status <= 299


def expected_status(valid: Sequence[int]) -> str:
    if not valid:
        return "2xx"
    codes = [str(code) for code in sorted(set(valid))]
    return codes[0] if len(codes) == 1 else ", ".join(codes[:-1]) + " or " + codes[-1]


def retry_after_seconds(value: str, now: float) -> float | None:
    """Retry-After as seconds from `now`: delay-seconds or an HTTP date (a past date is 0);
    None when it is neither."""
    text = value.strip()
    if _DIGITS.fullmatch(text):
        return float(int(text))
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000": UTC by RFC 5322, which is what HTTP dates are
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


def json_path(path: str) -> tuple[str, ...]:
    """`status`, `$.data.items.0`, `$` -> the parts to walk; a malformed path is an error."""
    text = path.strip()
    if text == "$":
        return ()
    parts = tuple(text.removeprefix("$.").split("."))
    if not all(parts):
        raise ValueError("must be a dotted path like status or data.items.0.state")
    return parts


class PathMissing(LookupError):
    """The document has nothing at the path; the message says where the walk stopped."""


def json_lookup(document: Any, parts: Sequence[str]) -> Any:
    here, walked = document, "$"
    for part in parts:
        if isinstance(here, dict):
            if part not in here:
                raise PathMissing(f"{walked}.{part} is missing")
            here = here[part]
        elif isinstance(here, list):
            if not _DIGITS.fullmatch(part):
                raise PathMissing(f"{walked} is a list, {part!r} is not an index")
            if int(part) >= len(here):
                raise PathMissing(f"{walked} has {len(here)} items, no {part}")
            here = here[int(part)]
        else:
            raise PathMissing(f"{walked} is {shown(here)}, not an object or a list")
        walked = f"{walked}.{part}"
    return here


def json_equal(actual: Any, expected: str | float | bool | None) -> bool:
    """Equality by JSON's types: `true` is not 1 and "1" is not 1; 1 and 1.0 are equal."""
    if isinstance(actual, bool) or isinstance(expected, bool):
        return isinstance(actual, bool) and isinstance(expected, bool) and actual == expected
    if isinstance(expected, int | float):
        return isinstance(actual, int | float) and actual == expected
    return type(actual) is type(expected) and actual == expected


def shown(value: Any) -> str:
    """A value for a one-line error: strings quoted, the rest as JSON, cut short."""
    text = repr(value) if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 3] + "..."


class NotJson(ValueError):
    pass


def parse_json(body: bytes) -> Any:
    """The document, or NotJson saying in one line why not."""
    try:
        return json.loads(body)
    except RecursionError:
        raise NotJson("nested too deeply") from None
    except json.JSONDecodeError as exc:
        raise NotJson(f"{exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except UnicodeDecodeError:
        raise NotJson("not UTF-8") from None
    except ValueError:  # e.g. an integer too long to convert
        raise NotJson("unreadable") from None


def json_verdict(body: bytes, check: JsonCheck) -> str | None:
    """None when the body passes `check`, else the error (one line)."""
    parts = json_path(check.path)
    try:
        actual = json_lookup(parse_json(body), parts)
    except NotJson as exc:
        return f"body: not JSON ({exc})"
    except PathMissing as exc:
        return f"body: {exc}"
    if not json_equal(actual, check.equals):
        where = "$" + "".join(f".{part}" for part in parts)
        return f"body: {where} is {shown(actual)}, expected {shown(check.equals)}"
    return None


def cors_verdict(
    allow_origin: Sequence[str], allow_methods: Sequence[str], check: CorsCheck, status: int
) -> str | None:
    """Would a browser accept this preflight response? None if so, else the error. The
    status is checked afterwards like any probe's (a browser wants a 2xx too)."""
    if not allow_origin:
        return f"CORS: Access-Control-Allow-Origin missing (status {status})"
    if len(allow_origin) > 1:
        return f"CORS: Access-Control-Allow-Origin sent {len(allow_origin)} times"
    got = allow_origin[0].strip()
    if check.allow_origin is not None:
        accepted, wanted = {check.allow_origin}, shown(check.allow_origin)
    else:
        accepted, wanted = {check.origin, "*"}, f"{shown(check.origin)} or '*'"
    if got not in accepted:
        return f"CORS: Access-Control-Allow-Origin is {shown(got)}, expected {wanted}"
    method = check.request_method
    if method not in CORS_SAFELISTED_METHODS:
        methods = {m.strip() for line in allow_methods for m in line.split(",")}
        if method not in methods and "*" not in methods:
            return f"CORS: {method} is not in Access-Control-Allow-Methods"
    return None


def body_too_long(content_length: int | None, limit: int) -> str | None:
    if content_length is not None and content_length > limit:
        return f"body: Content-Length {content_length} is over max_body_bytes {limit}"
    return None
