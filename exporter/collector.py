"""What a collector is: the two shapes the supervisor runs, and what it hands them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from prometheus_client.metrics_core import Metric

from exporter.threads import BlockingCalls

Families = Sequence[Metric]


@runtime_checkable
class Poller(Protocol):
    """Called every interval under a timeout; returns the complete set of its series."""

    async def collect(self) -> Families: ...


@runtime_checkable
class Stream(Protocol):
    """Runs until cancelled, owning its counters; calls `changed()` after updating them.

    The first `changed()` after a (re)start also marks the stream up, so a stream calls it
    once it is connected even before it has anything to count.
    `families()` is called on the event loop, debounced after `changed()`, so it must only
    read in-memory state. `run` returning or raising is a failure: the supervisor restarts
    it with capped exponential backoff, and publishes `families()` once more meanwhile, so
    what a stream serves while it is down is its own choice (keep counters, drop gauges).
    """

    async def run(self, changed: Callable[[], None]) -> None: ...

    def families(self) -> Families: ...


@dataclass(frozen=True)
class Context:
    """What a collector factory receives besides its own config section."""

    name: str
    state_dir: Path
    blocking: BlockingCalls
    # False for `once`: look, but write no state a running daemon depends on.
    durable: bool = True
    # Masks configured secret values; for what a collector takes from outside (log lines)
    # and would otherwise serve as a label.
    redact: Callable[[str], str] = str


def first_error(group: BaseExceptionGroup[Any]) -> BaseException:
    """The error a TaskGroup of a stream's parts ended with: the first part that failed
    (the group then cancelled the rest), which is the stream's failure."""
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error


async def close(collector: object) -> None:
    """Release a collector's resources if it holds any (connections, files)."""
    closer = getattr(collector, "close", None)
    if closer is not None:
        await closer()
