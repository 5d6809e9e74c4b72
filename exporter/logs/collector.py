"""The `logs` collector: one stream that reads every configured log source.

Exactness rests on one rule: a batch's lines are counted and its position adopted in the same
step on the event loop, and the checkpoint writes counters and positions of all sources in one
atomic file. /metrics shows the counts as of the last checkpoint, so after a kill -9 the
restored counters are never below what Prometheus has already scraped; lines read after that
checkpoint are read again from the checkpointed position and counted once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from exporter.collector import Context, Families
from exporter.logs import checkpoint
from exporter.logs.api import Batch, Position, Source
from exporter.logs.counting import RuleShape, SourceCounts
from exporter.logs.metrics import CheckpointView, SourceView, families
from exporter.logs.models import (
    DockerSourceConfig,
    FileSourceConfig,
    JournaldSourceConfig,
    LogsConfig,
    RuleConfig,
    SourceConfig,
)
from exporter.logs.rules import RuleSet
from exporter.registry import collector
from exporter.statefile import Checkpoint

log = structlog.get_logger("exporter.logs")

# Checkpoint at least this often even when no source delivered, so the checkpoint's age
# says whether botwatch is alive, not whether the logs are quiet.
KEEPALIVE = 60.0


def shapes_of(rules: list[RuleConfig], ruleset: RuleSet) -> dict[str, RuleShape]:
    static: dict[str, set[str]] = {}
    for rule in rules:
        fixed = set(rule.labels)
        static[rule.name] = static[rule.name] & fixed if rule.name in static else fixed
    return {
        name: RuleShape(labels, ruleset.max_values[name], frozenset(static.get(name, ())))
        for name, labels in ruleset.label_names.items()
    }


def make_source(config: SourceConfig, position: Position | None, ctx: Context) -> Source:
    # Each source type imports its library only when configured (RSS and start-up time).
    if isinstance(config, FileSourceConfig):
        from exporter.logs.tail import FileSource

        return FileSource(config.name, config, position, ctx.blocking)
    if isinstance(config, JournaldSourceConfig):
        from exporter.logs.journald import JournaldSource

        return JournaldSource(config.name, config, position)
    if isinstance(config, DockerSourceConfig):
        from exporter.logs.dockerlogs import DockerLogSource

        return DockerLogSource(config.name, config, position, ctx.blocking)
    raise TypeError(f"unknown log source config {type(config).__name__}")


@dataclass
class Tracked:
    """A source's live state: what it has counted and where it stands, always in step."""

    config: SourceConfig
    ruleset: RuleSet
    shapes: dict[str, RuleShape]
    counts: SourceCounts
    position: Position | None
    up: bool = True
    down_reason: str | None = None
    source: Source | None = field(default=None, repr=False)

    def snapshot(self) -> dict[str, Any]:
        return {
            "type": self.config.type,
            "position": self.position,
            "counts": self.counts.to_json(),
        }


class SourceSink:
    """Where one source delivers; counting and adopting the position happen together."""

    def __init__(
        self, tracked: Tracked, dirty: Callable[[], None], redact: Callable[[str], str] = str
    ) -> None:
        self.tracked = tracked
        self.dirty = dirty
        self.redact = redact
        self.log = log.bind(source=tracked.config.name)
        self.erring = False

    def batch(self, batch: Batch) -> None:
        t = self.tracked
        matches, events = t.ruleset.scan(batch.data) if batch.lines else ([], [])
        t.counts.add(batch, matches, events, t.shapes, self.redact)
        t.position = batch.position
        if batch.lines:
            self.erring = False
        self.up()
        self.dirty()

    def up(self) -> None:
        t = self.tracked
        if not t.up:
            t.up = True
            self.log.info("log source recovered")
            self.dirty()

    def down(self, reason: str) -> None:
        t = self.tracked
        if t.up:
            t.up = False
            self.log.warning("log source down", reason=reason)
            self.dirty()
        elif reason != t.down_reason:
            self.log.debug("log source still down", reason=reason)
        t.down_reason = reason

    def error(self, what: str) -> None:
        # Counted every time; logged once per run of errors (a journal full of bad entries
        # must not flood the daemon's own log), again after lines have come through.
        self.tracked.counts.read_errors += 1
        if not self.erring:
            self.log.warning("log read error", error=what)
        else:
            self.log.debug("log read error", error=what)
        self.erring = True
        self.dirty()


class LogsCollector:
    def __init__(self, config: LogsConfig, ctx: Context) -> None:
        self.config = config
        self.ctx = ctx
        self.checkpoint = Checkpoint(
            ctx.state_dir,
            checkpoint.FILENAME,
            lock_name=checkpoint.LOCK_NAME,
            version=checkpoint.VERSION,
            key=checkpoint.KEY,
            what="log checkpoint",
            blocking=ctx.blocking,
            durable=ctx.durable,
        )
        self.tracked: dict[str, Tracked] | None = None
        self.published: list[SourceView] = []
        self._snapshot: dict[str, Any] = {}
        self._dirty = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def run(self, changed: Callable[[], None]) -> None:
        if self.tracked is None:
            self.checkpoint.lock()
            self.tracked = self._restore()
            self._snapshot = self._take()
        self._publish(changed)
        try:
            for t in self.tracked.values():
                t.source = make_source(t.config, t.position, self.ctx)
                sink = SourceSink(t, self._dirty.set, self.ctx.redact)
                self._tasks.append(asyncio.create_task(t.source.run(sink), name=t.config.name))
            while True:
                await self._wait(KEEPALIVE)
                await self._wait(self.config.checkpoint_interval, dirty=False)
                self._dirty.clear()
                self._snapshot = self._take()
                if not await self.checkpoint.save(self._snapshot):
                    self._dirty.set()  # retry at the next interval, not at the keep-alive
                self._publish(changed)
        finally:
            await self._stop_sources()

    async def _wait(self, timeout: float, dirty: bool = True) -> None:
        """Sleep until `timeout` (or new counts, if `dirty`); a source that stops is a failure."""
        waiter = asyncio.ensure_future(self._dirty.wait() if dirty else asyncio.sleep(timeout))
        try:
            done, _ = await asyncio.wait(
                {waiter, *self._tasks}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            waiter.cancel()
        for task in self._tasks:
            if task in done:
                error = task.exception() if not task.cancelled() else None
                raise RuntimeError(f"log source {task.get_name()} stopped: {error!r}")

    def families(self) -> Families:
        return families(
            self.published, CheckpointView(self.checkpoint.last_success, self.checkpoint.errors)
        )

    async def close(self) -> None:
        await self._stop_sources()
        if self.tracked is not None:
            await self.checkpoint.save(self._take())
        self.checkpoint.unlock()

    async def _stop_sources(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for t in (self.tracked or {}).values():
            if t.source is not None:
                with contextlib.suppress(Exception):
                    await t.source.close()
                t.source = None

    def _restore(self) -> dict[str, Tracked]:
        saved = self.checkpoint.load()
        tracked = {}
        for config in self.config.sources:
            rules, breakers = config.all_rules()
            engine = None if self.config.engine == "auto" else self.config.engine
            ruleset = RuleSet(rules, breakers, engine=engine)
            shapes = shapes_of(rules, ruleset)
            entry = saved.get(config.name)
            counts, position = SourceCounts(), None
            if isinstance(entry, dict) and entry.get("type") == config.type:
                try:
                    counts = SourceCounts.from_json(entry["counts"], shapes)
                    position = entry.get("position")
                except (KeyError, TypeError, ValueError) as exc:
                    log.error("log checkpoint entry unusable", source=config.name, error=repr(exc))
            tracked[config.name] = Tracked(config, ruleset, shapes, counts, position)
        return tracked

    def _take(self) -> dict[str, Any]:
        """Counters and positions of all sources at one instant (on the loop: consistent)."""
        assert self.tracked is not None
        return {name: t.snapshot() for name, t in self.tracked.items()}

    def _publish(self, changed: Callable[[], None]) -> None:
        assert self.tracked is not None
        snapshot = self._snapshot
        self.published = [
            SourceView(
                name=name,
                kind=t.config.type,
                up=t.up,
                counts=snapshot[name]["counts"],
                shapes=t.shapes,
                static_series=t.ruleset.static_series,
            )
            for name, t in self.tracked.items()
        ]
        changed()


@collector(
    "logs",
    config=LogsConfig,
    kind="stream",
    help="log sources: lines, rule matches and circuit breakers",
    top_level=True,
)
def build_logs(config: LogsConfig, ctx: Context) -> LogsCollector:
    return LogsCollector(config, ctx)
