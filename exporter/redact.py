"""Keeping secret values out of logs, errors and the landing page."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

MASK = "<redacted>"
# user:password@ in URLs that an exception message may quote back.
_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s:]+:[^/@\s]*@")


class Redactor:
    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # Longest first, so a secret that contains another is masked whole.
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return _URL_CREDENTIALS.sub(rf"\g<scheme>{MASK}@", text)


REDACTED_LABEL = "redacted"


def masked_label(value: str, redact: Callable[[str], str]) -> str:
    """A label value taken from outside (a log line, a query's row) that holds a configured
    secret becomes "redacted": a label must never carry one, and masking part of it would
    still make a new series per secret."""
    return value if redact(value) == value else REDACTED_LABEL
