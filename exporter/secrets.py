"""Which configured values are secrets, so logs, errors and labels can mask them.

Values expanded from ${ENV} are secrets wherever they land (yamlsource); this adds those
written literally: every SecretStr field, request headers that carry credentials, and
credentials in a URL (user:password@, ?token=...).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from pydantic import BaseModel, SecretStr

from exporter.yamlsource import MIN_SECRET_LENGTH

# Header and query parameter names whose values are credentials.
SENSITIVE_NAME = re.compile(r"auth|token|key|secret|pass|cookie|session|signature", re.I)


def _from_url(url: str) -> Iterator[str]:
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return
    if password:
        yield password
    for name, value in parse_qsl(parts.query):
        if SENSITIVE_NAME.search(name):
            yield value


def _walk(node: Any, key: str = "") -> Iterator[str]:
    if isinstance(node, SecretStr):
        yield node.get_secret_value()
    elif isinstance(node, BaseModel):
        for name in type(node).model_fields:
            yield from _walk(getattr(node, name), name)
    elif isinstance(node, dict):
        for name, value in node.items():
            if key == "headers" and isinstance(value, str) and SENSITIVE_NAME.search(str(name)):
                yield value
            else:
                yield from _walk(value)
    elif isinstance(node, list | tuple):
        for item in node:
            yield from _walk(item)
    elif isinstance(node, str) and key.endswith("url") and "://" in node:
        yield from _from_url(node)


def secret_values(config: BaseModel) -> set[str]:
    """Every secret the config holds (shorter ones are too common to mask)."""
    return {value for value in _walk(config) if len(value) >= MIN_SECRET_LENGTH}
