"""HTTP basic auth against bcrypt hashes, as the exporter-toolkit does it.

bcrypt is slow on purpose (~60 ms at cost 10), so a verdict is cached per (user, hash,
password) — keyed by a digest, never the password — and a scrape every 15 s costs one hash a
config. An unknown user is checked against a dummy hash so the reply takes as long as for a
known one: response time does not tell which user names exist.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections import OrderedDict

import bcrypt

# A hash of a random password nobody knows, at the usual cost (10), for unknown users.
_DUMMY_HASH = b"$2b$10$9ptI654ee10iUjkfGuKU0uMJiQMtczCzCrLvpyTw/M./28QWaFKS6"
CACHE_SIZE = 100


def parse_basic(header: str | None) -> tuple[str, str] | None:
    """(user, password) from an `Authorization: Basic ...` header, or None."""
    if not header:
        return None
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


class BasicAuth:
    def __init__(self, users: dict[str, str]) -> None:
        self._users = {user: hashed.encode() for user, hashed in users.items()}
        self._verdicts: OrderedDict[bytes, bool] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return bool(self._users)

    def _key(self, user: str, hashed: bytes, password: str) -> bytes:
        material = b"\0".join((user.encode(), hashed, password.encode()))
        return hashlib.sha256(material).digest()

    def cached(self, user: str, password: str) -> bool | None:
        """The verdict if this exact attempt was checked before, without hashing."""
        key = self._key(user, self._users.get(user, _DUMMY_HASH), password)
        verdict = self._verdicts.get(key)
        if verdict is not None:
            self._verdicts.move_to_end(key)
        return verdict

    def check(self, user: str, password: str) -> bool:
        """bcrypt's verdict (slow: call it off the event loop), remembered for next time."""
        known = user in self._users
        hashed = self._users.get(user, _DUMMY_HASH)
        try:
            match = bcrypt.checkpw(password.encode(), hashed)
        except ValueError:
            match = False
        # Both conditions are evaluated; compare_digest keeps the user check constant-time too.
        verdict = hmac.compare_digest(bytes([known, match]), b"\x01\x01")
        key = self._key(user, hashed, password)
        self._verdicts[key] = verdict
        self._verdicts.move_to_end(key)
        while len(self._verdicts) > CACHE_SIZE:
            self._verdicts.popitem(last=False)
        return verdict
