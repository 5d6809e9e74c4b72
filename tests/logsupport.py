"""Helpers the log-source tests share: a recording sink, a running source, a daemon config."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

from exporter.logs.api import Batch, Position, Source


class RecordingSink:
    """api.Sink that remembers every call: batches, and the order of batch/up/down events."""

    def __init__(self) -> None:
        self.batches: list[Batch] = []
        self.events: list[str] = []  # "batch", "up", "down: REASON", in the order they came
        self.ups = 0
        self.downs: list[str] = []
        self.errors: list[str] = []

    def batch(self, batch: Batch) -> None:
        assert batch.lines == batch.data.count(b"\n")
        self.batches.append(batch)
        self.events.append("batch")

    def up(self) -> None:
        self.ups += 1
        self.events.append("up")

    def down(self, reason: str) -> None:
        self.downs.append(reason)
        self.events.append(f"down: {reason}")

    def error(self, what: str) -> None:
        self.errors.append(what)

    def data(self) -> bytes:
        return b"".join(b.data for b in self.batches)

    def lines(self) -> list[bytes]:
        """The delivered lines, without their b"\\n" (every batch holds whole lines)."""
        return self.data().split(b"\n")[:-1]

    @property
    def position(self) -> Position | None:
        return self.batches[-1].position if self.batches else None


@contextlib.asynccontextmanager
async def running(source: Source, sink: RecordingSink) -> AsyncIterator[None]:
    """`source.run(sink)` as a task for the block; then cancelled, awaited and closed."""
    task = asyncio.create_task(source.run(sink))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task  # a source that raised fails the test here
        await source.close()


def open_log(path: Path) -> int:
    """A descriptor on `path` as a logging app holds one: append-only, created if missing."""
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)


def logs_config(tmp_path: Path, sources_yaml: str, checkpoint_interval: str = "100ms") -> Path:
    """A daemon config in tmp_path: ephemeral port, its own state_dir, host collector off,
    and a logs section with `sources_yaml` (list items indented by four spaces)."""
    path = tmp_path / "botwatch.yml"
    path.write_text(
        f"""
web: {{listen_address: '127.0.0.1:0'}}
state_dir: {tmp_path / "state"}
collectors: {{host: {{enabled: false}}}}
logs:
  checkpoint_interval: {checkpoint_interval}
  sources:
{sources_yaml}"""
    )
    return path
