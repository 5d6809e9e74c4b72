"""Blocking calls in daemon threads, at most one in flight per key.

asyncio.to_thread's executor joins its threads at exit, so one statvfs stuck on a dead NFS
mount would stop SIGTERM from ever finishing; and retrying a call that is still stuck only
piles up threads. Here a stuck call keeps its key busy (the next attempt fails at once with
StillBlocked) and never delays shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class StillBlocked(Exception):
    def __init__(self, key: str, seconds: float) -> None:
        super().__init__(f"{key}: previous call still blocked after {seconds:.0f}s")
        self.key = key


class BlockingCalls:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._busy: dict[str, float] = {}

    async def run(self, key: str, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        with self._lock:
            since = self._busy.get(key)
            if since is not None:
                raise StillBlocked(key, time.monotonic() - since)
            self._busy[key] = time.monotonic()

        def settle(ok: bool, value: Any) -> None:
            if future.done():
                return
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)

        def work() -> None:
            ok: bool
            value: Any
            try:
                ok, value = True, fn(*args)
            except BaseException as exc:  # handed to the awaiting coroutine
                ok, value = False, exc
            finally:
                with self._lock:
                    self._busy.pop(key, None)
            # The loop may have closed while this call was stuck; then nobody is waiting.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(settle, ok, value)

        threading.Thread(target=work, name=f"botwatch:{key}", daemon=True).start()
        return await future
