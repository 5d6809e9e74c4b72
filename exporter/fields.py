"""Reusable config field types: durations, regexes, listen addresses.

Each type validates and normalises at config load, so a collector receives ready values
(seconds as float, compiled patterns) and a bad value is reported with its key path.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer
from pydantic_core import PydanticCustomError

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def parse_duration(value: Any) -> float:
    """'15s', '2m', '1h30m', '250ms' (Prometheus style) or a bare number of seconds."""
    if isinstance(value, bool):
        raise PydanticCustomError("duration", "not a duration")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        pos, seconds = 0, 0.0
        for match in _DURATION_PART.finditer(text):
            if match.start() != pos:
                break
            seconds += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
            pos = match.end()
        if pos == 0 or pos != len(text):
            raise PydanticCustomError("duration", "not a duration (use e.g. 15s, 2m, 1h30m)")
    else:
        raise PydanticCustomError("duration", "not a duration")
    if seconds <= 0:
        raise PydanticCustomError("duration", "must be a positive duration")
    return seconds


def format_duration(seconds: float) -> str:
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    if seconds % 60 or seconds < 60:
        return f"{seconds:g}s"
    return f"{seconds / 60:g}m"


def compile_regex(value: Any) -> re.Pattern[str]:
    if isinstance(value, re.Pattern):
        return value
    if not isinstance(value, str):
        raise PydanticCustomError("regex", "must be a regular expression string")
    try:
        return re.compile(value)
    except re.error as exc:
        raise PydanticCustomError("regex", "invalid regex: {reason}", {"reason": str(exc)}) from exc


def parse_listen_address(value: Any) -> str:
    """host:port, [v6]:port or :port (all interfaces); port 0 asks the kernel for a free one."""
    if not isinstance(value, str):
        raise PydanticCustomError("listen", "must be a string like ':9877' or '127.0.0.1:9877'")
    split_listen_address(value)
    return value


def split_listen_address(value: str) -> tuple[str | None, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise PydanticCustomError("listen", "not host:port (e.g. ':9877' or '127.0.0.1:9877')")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise PydanticCustomError("listen", "IPv6 hosts need brackets, e.g. '[::1]:9877'")
    return (host or None), int(port)


Duration = Annotated[float, BeforeValidator(parse_duration), PlainSerializer(format_duration)]
Regex = Annotated[
    re.Pattern[str], BeforeValidator(compile_regex), PlainSerializer(lambda p: p.pattern)
]
ListenAddress = Annotated[str, BeforeValidator(parse_listen_address)]
