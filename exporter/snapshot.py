"""A snapshot kept current by change notifications and replaced by periodic full reads.

Collectors that watch a system which both answers queries and announces changes (the
Docker engine's /events, systemd's PropertiesChanged) keep what they serve here:
- a *poll* reads everything and replaces the snapshot, so whatever vanished goes;
- a *notification* names one item, which is read again at once (`refresh`) and, for sources
  that announce a change before they store it, once more `settle` seconds later;
- a poll that began before a notification must not overwrite what that item's fresher
  read found, so notifications are numbered and a poll keeps the items touched after it
  began.

Everything here runs on the event loop; the reads themselves are the collector's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class Snapshot(Generic[K, V]):
    def __init__(self, settle: float = 0.0) -> None:
        self.items: dict[K, V] = {}
        self.settle = settle
        self._seq = 0
        self._touched: dict[K, int] = {}
        self._wanted: set[K] = set()
        self._settling: set[K] = set()
        self._wake = asyncio.Event()
        self._generation = 0

    def begin_poll(self) -> int:
        """Call right before a full read starts; pass the result to `replace`."""
        return self._seq

    def replace(self, fresh: Mapping[K, V], began: int) -> None:
        newer = {key for key, seq in self._touched.items() if seq > began}
        items = {key: value for key, value in fresh.items() if key not in newer}
        items.update({key: value for key, value in self.items.items() if key in newer})
        self.items = items
        self._touched = {key: seq for key, seq in self._touched.items() if seq > began}

    def touched(self, key: K) -> None:
        """A notification named `key`: it is read again now (and after `settle`)."""
        self._mark(key)
        self._want(key)
        if self.settle > 0 and key not in self._settling:
            self._settling.add(key)
            generation = self._generation

            def again() -> None:
                self._settling.discard(key)
                if generation == self._generation:
                    self._want(key)

            asyncio.get_running_loop().call_later(self.settle, again)

    def removed(self, key: K) -> None:
        """A notification says `key` is gone: no read needed."""
        self._mark(key)
        self.items.pop(key, None)

    def update(self, found: Mapping[K, V | None]) -> None:
        """Fresh reads of single items; None: gone, or no longer selected."""
        for key, value in found.items():
            if value is None:
                self.items.pop(key, None)
            else:
                self.items[key] = value

    async def refresh_forever(
        self,
        read: Callable[[Mapping[K, V | None]], Awaitable[Mapping[K, V | None]]],
        changed: Callable[[], None],
    ) -> None:
        """Read the touched items, a batch at a time; `read` gets what the snapshot holds of
        them and returns their fresh values (None for gone)."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            keys, self._wanted = self._wanted, set()
            found = await read({key: self.items.get(key) for key in keys})
            self.update(found)
            changed()

    def clear(self) -> None:
        """Disconnected: nothing is known, and pending re-reads are dropped."""
        self._generation += 1
        self.items = {}
        self._touched.clear()
        self._wanted.clear()
        self._settling.clear()

    def _mark(self, key: K) -> None:
        self._seq += 1
        self._touched[key] = self._seq

    def _want(self, key: K) -> None:
        self._wanted.add(key)
        self._wake.set()
