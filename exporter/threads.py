"""Blocking calls in daemon threads, at most one in flight per key.

asyncio.to_thread's executor joins its threads at exit, so one statvfs stuck on a dead NFS
mount would stop SIGTERM from ever finishing; and retrying a call that is still stuck only
piles up threads. Here a stuck call keeps its key busy (the next attempt fails at once with
StillBlocked) and never delays shutdown.

Each key has one worker thread that serves its calls one after another and ends after a
minute without work. A thread per call would do too, but glibc gives short-lived threads
fresh malloc arenas: at a few calls a second the soak saw RSS climb in 0.5 MiB steps.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
IDLE_SECONDS = 60.0
Job = Callable[[], None]


class StillBlocked(Exception):
    def __init__(self, key: str, seconds: float) -> None:
        super().__init__(f"{key}: previous call still blocked after {seconds:.0f}s")
        self.key = key


class BlockingCalls:
    def __init__(self, idle: float = IDLE_SECONDS) -> None:
        self.idle = idle
        self._lock = threading.Lock()
        self._busy: dict[str, float] = {}
        self._workers: dict[str, queue.SimpleQueue[Job]] = {}

    def _worker(self, key: str, jobs: queue.SimpleQueue[Job]) -> None:
        while True:
            try:
                job = jobs.get(timeout=self.idle)
            except queue.Empty:
                with self._lock:
                    # A job put after the timeout but before this lock must still run.
                    if jobs.empty():
                        if self._workers.get(key) is jobs:
                            del self._workers[key]
                        return
                continue
            job()

    def _submit(self, key: str, job: Job) -> None:
        """Called with the lock held: the worker cannot retire between lookup and put."""
        jobs = self._workers.get(key)
        if jobs is None:
            jobs = self._workers[key] = queue.SimpleQueue()
            thread = threading.Thread(
                target=self._worker, args=(key, jobs), name=f"botwatch:{key}", daemon=True
            )
            thread.start()
        jobs.put(job)

    @property
    def in_flight(self) -> set[str]:
        """Keys with a call running now."""
        with self._lock:
            return set(self._busy)

    @property
    def threads(self) -> int:
        """Worker threads alive now (idle ones included)."""
        with self._lock:
            return len(self._workers)

    async def run(self, key: str, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()

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

        with self._lock:
            since = self._busy.get(key)
            if since is not None:
                raise StillBlocked(key, time.monotonic() - since)
            self._busy[key] = time.monotonic()
            self._submit(key, work)
        return await future
