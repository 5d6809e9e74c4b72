"""Driving a stream collector in-process: run it as a task, read what it would publish."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from prometheus_client.metrics_core import Metric

from exporter.collector import Stream


@dataclass
class Running:
    stream: Stream
    task: asyncio.Task[None] | None = None
    changes: int = 0

    def changed(self) -> None:
        self.changes += 1

    def value(self, name: str, **labels: str) -> float | None:
        """The value of one sample of what the stream would publish now, or None."""
        return value(self.stream.families(), name, **labels)

    def failure(self) -> BaseException | None:
        """What `run` raised, once it has ended (None while it runs)."""
        if self.task is None or not self.task.done() or self.task.cancelled():
            return None
        return self.task.exception()


def value(fams: list[Metric] | tuple[Metric, ...], name: str, **labels: str) -> float | None:
    for fam in fams:
        for s in fam.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return None


@contextlib.asynccontextmanager
async def running(stream: Stream) -> AsyncIterator[Running]:
    """`stream.run(changed)` as a task for the block; then cancelled, awaited and closed."""
    run = Running(stream)
    run.task = task = asyncio.create_task(stream.run(run.changed))
    try:
        yield run
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        close = getattr(stream, "close", None)
        if close is not None:
            await close()
