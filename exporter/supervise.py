"""Running collectors: pollers on a fixed schedule under a timeout, streams under backoff.

Both record each outcome in the store and log only the first failure of a streak and the
recovery that ends it; the retries in between are at debug level.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable

import structlog

from exporter.collector import Poller, Stream
from exporter.render import Chunk
from exporter.store import Store
from exporter.threads import BlockingCalls

log = structlog.get_logger("exporter.supervise")

# Streams publish at most this often: a burst of log lines is one render, not thousands.
STREAM_DEBOUNCE = 0.25
BACKOFF_BASE = 0.5
BACKOFF_CAP = 60.0
# A stream that ran this long before failing starts its backoff from the beginning again.
BACKOFF_RESET_AFTER = 60.0


def describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def backoff_delay(attempt: int, rng: random.Random) -> float:
    """Capped exponential backoff with jitter over the upper half (never a zero wait)."""
    # The exponent is bounded: 2.0**1024 overflows, after ~17 hours of failures at the cap.
    ceiling = min(BACKOFF_CAP, BACKOFF_BASE * 2.0 ** min(attempt, 64))
    return float(ceiling * rng.uniform(0.5, 1.0))


class Outcome:
    """Records rounds in the store and logs the edges of failure streaks."""

    def __init__(self, store: Store, name: str) -> None:
        self.store = store
        self.name = name
        self.log = log.bind(collector=name)

    def ok(self, duration: float | None) -> None:
        if self.store.succeeded(self.name, duration):
            self.log.info("collector recovered")

    def failed(self, error: str, duration: float | None, keep_series: bool = False) -> None:
        first = self.store.failed(self.name, error, duration, keep_series)
        error = self.store.states[self.name].last_error or ""
        if first:
            self.log.warning("collector failed", error=error)
        else:
            self.log.debug("collector still failing", error=error)


async def render_chunk(store: Store, blocking: BlockingCalls, name: str, families: object) -> Chunk:
    reserved = store.reserved_for(name)
    return await blocking.run(f"render {name}", Chunk.build, families, reserved)


async def poll_once(
    *, name: str, poller: Poller, timeout: float, store: Store, blocking: BlockingCalls
) -> bool:
    outcome = Outcome(store, name)
    started = time.monotonic()
    try:
        async with asyncio.timeout(timeout):
            families = await poller.collect()
            chunk = await render_chunk(store, blocking, name, families)
    except TimeoutError:
        outcome.failed(f"timed out after {timeout:g}s", time.monotonic() - started)
        return False
    except Exception as exc:
        outcome.failed(describe(exc), time.monotonic() - started)
        return False
    store.publish(name, chunk)
    outcome.ok(time.monotonic() - started)
    return True


async def run_poller(
    *,
    name: str,
    poller: Poller,
    interval: float,
    timeout: float,
    store: Store,
    blocking: BlockingCalls,
    rng: random.Random | None = None,
) -> None:
    """Poll forever on a fixed-rate schedule; a late round skips the ticks it missed."""
    rng = rng or random.Random()
    # A small random offset spreads collectors that share an interval, while the first
    # round still comes soon enough for /-/ready.
    next_at = time.monotonic() + rng.uniform(0, min(interval / 10, 1.0))
    while True:
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        await poll_once(name=name, poller=poller, timeout=timeout, store=store, blocking=blocking)
        next_at += interval
        now = time.monotonic()
        if next_at < now:
            next_at += ((now - next_at) // interval + 1) * interval


async def run_stream(
    *,
    name: str,
    stream: Stream,
    store: Store,
    blocking: BlockingCalls,
    rng: random.Random | None = None,
    sleep: Callable[[float], object] = asyncio.sleep,
) -> None:
    """Run a stream forever, republishing its families (debounced) after each change.

    A publish marks the stream up only once the current run has called its `changed()`: a
    change announced just before a failure must not mark a broken stream up, nor may the
    publish after a failure mark up a restarted run that has not connected yet. After a
    failure the stream's families are published once more, so the stream decides what
    still holds while it is down (counters stay; gauges go, as with a failed poll).
    """
    rng = rng or random.Random()
    outcome = Outcome(store, name)
    flush_pending = asyncio.Event()
    # Which run of the stream is current, and which one last announced itself: a publish
    # marks the stream up only for the current run, once it has called its own changed().
    current = 0
    announced = -1

    def announcer(run: int) -> Callable[[], None]:
        def changed() -> None:
            nonlocal announced
            if run == current:
                announced = run
            flush_pending.set()

        return changed

    # One publish at a time: an older render must never land after a newer one.
    publishing = asyncio.Lock()

    async def publish() -> bool:
        async with publishing:
            try:
                store.publish(name, await render_chunk(store, blocking, name, stream.families()))
            except Exception as exc:
                outcome.failed(f"cannot publish: {describe(exc)}", None, keep_series=True)
                return False
            return True

    async def flusher() -> None:
        while True:
            await flush_pending.wait()
            await asyncio.sleep(STREAM_DEBOUNCE)
            flush_pending.clear()
            if await publish() and announced == current:
                outcome.ok(None)

    flush_task = asyncio.create_task(flusher(), name=f"flush {name}")
    attempt = 0
    try:
        while True:
            started = time.monotonic()
            current += 1
            try:
                await stream.run(announcer(current))
                error = "stream ended"
            except Exception as exc:
                error = describe(exc)
            current += 1  # between runs: no publish marks it up
            outcome.failed(error, None, keep_series=True)
            await publish()  # at once, not debounced: gauges the failure made untrue go now
            if time.monotonic() - started >= BACKOFF_RESET_AFTER:
                attempt = 0
            await sleep(backoff_delay(attempt, rng))  # type: ignore[misc]
            attempt += 1
    finally:
        flush_task.cancel()


async def stream_once(
    *, name: str, stream: Stream, timeout: float, store: Store, blocking: BlockingCalls
) -> bool:
    """For `once`: run the stream until it first reports (or the timeout), then publish."""
    outcome = Outcome(store, name)
    reported = asyncio.Event()
    started = time.monotonic()
    task = asyncio.create_task(stream.run(reported.set))
    waiter = asyncio.create_task(reported.wait())
    try:
        done, _ = await asyncio.wait(
            {task, waiter}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
        if waiter not in done:
            failure = task.exception() if task in done else None
            if failure is not None:
                error = describe(failure)
            else:
                error = "stream ended" if task in done else f"no report within {timeout:g}s"
            outcome.failed(error, time.monotonic() - started)
            return False
        store.publish(name, await render_chunk(store, blocking, name, stream.families()))
    except Exception as exc:
        outcome.failed(describe(exc), time.monotonic() - started)
        return False
    finally:
        for pending in (task, waiter):
            pending.cancel()
        await asyncio.gather(task, waiter, return_exceptions=True)
    outcome.ok(time.monotonic() - started)
    return True
