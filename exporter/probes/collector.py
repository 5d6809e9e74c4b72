"""The `probes` collector: every configured probe, each on its own schedule and task.

A Check runs every `interval`, first after a random offset (probes that share an interval
do not hit their targets together), under its `timeout`; a slow check delays nothing but
itself. A Watch runs for as long as the collector does. A failed target is a failed check
with a reason, counted and logged at the edges of a failure streak; the collector itself
is down only if it could not start. Results are in memory; /metrics renders them.
"""

from __future__ import annotations

import asyncio
import importlib
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import ModuleType

import structlog
from prometheus_client.metrics_core import Metric

from exporter.collector import Context
from exporter.probes.api import (
    CHECKS,
    COMMON,
    DURATION,
    FAILURES,
    LAST_SUCCESS,
    SUCCESS,
    Check,
    FamilySet,
    FamilySpec,
    ProbeConfig,
    Result,
    Sample,
    Watch,
)
from exporter.probes.models import TYPE_MODULES, ProbesConfig
from exporter.registry import collector
from exporter.supervise import backoff_delay, describe

log = structlog.get_logger("exporter.probes")

# A probe's first check comes after a random offset within this (or its interval).
MAX_START_SPREAD = 10.0
# What a check that raised (a bug, not a target's failure) is counted as.
INTERNAL = "internal"
TIMEOUT = "timeout"


def type_module(kind: str) -> ModuleType:
    return importlib.import_module(TYPE_MODULES[kind])


@dataclass
class CheckState:
    """A Check probe's history: the last result and the counters."""

    config: ProbeConfig
    reasons: tuple[str, ...]
    result: Result | None = None
    duration: float | None = None
    checks: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    last_success: float | None = None

    def __post_init__(self) -> None:
        # Every reason starts at 0, so increase() sees a reason's first failure. The
        # collector itself gives "timeout" (any type can) and "internal" (a probe's bug).
        self.failures = dict.fromkeys((*self.reasons, TIMEOUT, INTERNAL), 0)

    def record(self, result: Result, duration: float) -> None:
        self.result, self.duration = result, duration
        self.checks += 1
        if result.success:
            self.last_success = time.time()
        else:
            reason = result.reason if result.reason in self.failures else INTERNAL
            self.failures[reason] += 1

    def samples(self) -> Iterable[Sample]:
        probe = {"probe": self.config.name}
        yield Sample(CHECKS, probe, self.checks)
        for reason, count in self.failures.items():
            yield Sample(FAILURES, {**probe, "reason": reason}, count)
        if self.result is None:
            return  # no check yet: success would be a guess either way
        yield Sample(SUCCESS, probe, 1 if self.result.success else 0)
        if self.duration is not None:
            yield Sample(DURATION, probe, self.duration)
        if self.last_success is not None:
            yield Sample(LAST_SUCCESS, probe, self.last_success)
        yield from self.result.samples


class ProbesCollector:
    def __init__(self, config: ProbesConfig, ctx: Context) -> None:
        self.config = config
        self.ctx = ctx
        self.rng = random.Random()
        self.checks: list[tuple[CheckState, Check]] = []
        self.watches: list[tuple[ProbeConfig, Watch]] = []
        self.specs: list[FamilySpec] = list(COMMON)
        for probe in config.enabled_probes():
            module = type_module(probe.type)
            self.specs += [s for s in module.FAMILIES if s not in self.specs]
            built = module.build(probe, ctx.blocking)
            if isinstance(built, Check):
                self.checks.append((CheckState(probe, tuple(module.REASONS)), built))
            elif isinstance(built, Watch):
                self.watches.append((probe, built))
            else:
                raise TypeError(f"probe type {probe.type!r} built neither a Check nor a Watch")

    async def run(self, changed: Callable[[], None]) -> None:
        async with asyncio.TaskGroup() as tasks:
            for state, check in self.checks:
                tasks.create_task(self._checking(state, check, changed))
            for probe, watch in self.watches:
                tasks.create_task(self._watching(probe, watch, changed))
            changed()  # running: up, whatever the targets say

    def families(self) -> list[Metric]:
        out = FamilySet()
        for spec in self.specs:
            out.declare(spec)
        for state, _ in self.checks:
            for sample in state.samples():
                out.add(sample)
        for _, watch in self.watches:
            for sample in watch.samples():
                out.add(sample)
        return out.families()

    async def close(self) -> None:
        """Probe types that hold resources (a client session) have `close()`."""
        for probe in [check for _, check in self.checks] + [watch for _, watch in self.watches]:
            closer = getattr(probe, "close", None)
            if closer is not None:
                await closer()

    async def _checking(self, state: CheckState, check: Check, changed: Callable[[], None]) -> None:
        probe = state.config
        plog = log.bind(collector=self.ctx.name, probe=probe.name, type=probe.type)
        next_at = time.monotonic() + self.rng.uniform(0, min(probe.interval, MAX_START_SPREAD))
        failing = False
        while True:
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            started = time.monotonic()
            result = await _timed(check, probe.timeout)
            state.record(result, time.monotonic() - started)
            changed()
            if not result.success and not failing:
                plog.warning("probe failed", reason=result.reason, error=result.error)
            elif result.success and failing:
                plog.info("probe recovered")
            failing = not result.success
            next_at += probe.interval
            now = time.monotonic()
            if next_at < now:  # a check longer than the interval: skip the ticks it missed
                next_at += ((now - next_at) // probe.interval + 1) * probe.interval

    async def _watching(
        self, probe: ProbeConfig, watch: Watch, changed: Callable[[], None]
    ) -> None:
        """A Watch must not end; if one does (a bug), it is logged and started again."""
        attempt = 0
        while True:
            started = time.monotonic()
            try:
                await watch.run(changed)
                error = "ended"
            except Exception as exc:
                error = describe(exc)
            log.error("probe watch stopped", collector=self.ctx.name, probe=probe.name, error=error)
            if time.monotonic() - started > 60:
                attempt = 0
            await asyncio.sleep(backoff_delay(attempt, self.rng))
            attempt += 1


async def _timed(check: Check, timeout: float) -> Result:
    try:
        async with asyncio.timeout(timeout):
            return await check.check()
    except TimeoutError:
        return Result(False, TIMEOUT, f"no answer within {timeout:g}s")
    except Exception as exc:  # a bug in the probe type, not the target's failure
        return Result(False, INTERNAL, describe(exc))


@collector(
    "probes",
    config=ProbesConfig,
    kind="stream",
    help="active probes: HTTP, WebSocket, TCP, listeners, DNS, PostgreSQL, Redis",
    top_level=True,
)
def build(config: ProbesConfig, ctx: Context) -> ProbesCollector:
    return ProbesCollector(config, ctx)
