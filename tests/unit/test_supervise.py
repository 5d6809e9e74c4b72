"""Supervision: outcomes in the store, logging at the edges of failure streaks, backoff."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

import pytest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from structlog.testing import capture_logs

from exporter.collector import Families
from exporter.redact import Redactor
from exporter.store import Store
from exporter.supervise import (
    BACKOFF_CAP,
    backoff_delay,
    poll_once,
    run_poller,
    run_stream,
)
from exporter.threads import BlockingCalls
from tests.support import eventually


def gauge(name: str = "botwatch_thing", value: float = 1.0) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, "A thing.", value=value)


class ScriptedPoller:
    """Returns or raises the scripted outcomes in order, then repeats the last."""

    def __init__(self, *outcomes: object) -> None:
        self.outcomes = list(outcomes)
        self.calls = 0

    async def collect(self) -> Families:
        outcome = self.outcomes[min(self.calls, len(self.outcomes) - 1)]
        self.calls += 1
        if isinstance(outcome, BaseException):
            raise outcome
        if outcome == "hang":
            await asyncio.Event().wait()
        return outcome  # type: ignore[return-value]


def new_store(*names: str, secrets: tuple[str, ...] = ()) -> Store:
    store = Store(Redactor(secrets))
    for name in names:
        store.add(name, "poller")
    return store


async def once(store: Store, poller: ScriptedPoller, name: str = "p", timeout: float = 1) -> bool:
    return await poll_once(
        name=name, poller=poller, timeout=timeout, store=store, blocking=BlockingCalls()
    )


async def test_failure_streak_is_logged_once_and_recovery_once() -> None:
    store = new_store("p")
    poller = ScriptedPoller([gauge()], OSError("boom"), OSError("boom"), OSError("boom"), [gauge()])
    with capture_logs() as logs:
        results = [await once(store, poller) for _ in range(5)]
    assert results == [True, False, False, False, True]
    events = [(e["event"], e["log_level"]) for e in logs]
    assert events == [
        ("collector failed", "warning"),
        ("collector still failing", "debug"),
        ("collector still failing", "debug"),
        ("collector recovered", "info"),
    ]
    state = store.states["p"]
    assert (state.up, state.errors_total, state.last_error) == (True, 3, "OSError: boom")


async def test_failed_round_drops_the_series_and_the_next_good_one_restores_them() -> None:
    store = new_store("p")
    poller = ScriptedPoller([gauge()], RuntimeError("x"), [gauge(value=2)])
    await once(store, poller)
    assert b"botwatch_thing 1.0" in store.states["p"].chunk.text
    await once(store, poller)
    assert store.states["p"].chunk.text == b""
    await once(store, poller)
    assert b"botwatch_thing 2.0" in store.states["p"].chunk.text


async def test_hanging_collector_times_out() -> None:
    store = new_store("p")
    assert not await once(store, ScriptedPoller("hang"), timeout=0.05)
    state = store.states["p"]
    assert state.last_error == "timed out after 0.05s"
    assert state.duration is not None
    assert 0.05 <= state.duration < 1


@pytest.mark.parametrize(
    ("garbage", "error"),
    [
        ("nonsense", "InvalidFamilies: expected a list of metric families, got str"),
        ([1, 2], "InvalidFamilies: not a metric family: int"),
        ([gauge("node_thing")], "InvalidFamilies: metric 'node_thing' is outside the botwatch_"),
        ([gauge(), gauge()], "InvalidFamilies: metric 'botwatch_thing' is declared twice"),
        ([gauge("botwatch_collector_up")], "InvalidFamilies: metric 'botwatch_collector_up' is"),
    ],
)
async def test_garbage_is_a_failure_not_a_crash(garbage: object, error: str) -> None:
    store = new_store("p")
    assert not await once(store, ScriptedPoller(garbage))
    assert (store.states["p"].last_error or "").startswith(error)


async def test_unrenderable_sample_is_a_failure() -> None:
    family = GaugeMetricFamily("botwatch_thing", "A thing.", labels=["x"])
    family.add_metric([object()], 1)  # type: ignore[list-item]
    store = new_store("p")
    assert not await once(store, ScriptedPoller([family]))
    assert (store.states["p"].last_error or "").startswith("InvalidFamilies: cannot render")


async def test_two_collectors_cannot_own_one_metric_name() -> None:
    store = new_store("a", "b")
    assert await once(store, ScriptedPoller([gauge()]), name="a")
    assert not await once(store, ScriptedPoller([gauge()]), name="b")
    assert "declared twice" in (store.states["b"].last_error or "")


async def test_secrets_never_reach_the_store_or_the_log() -> None:
    store = new_store("p", secrets=("s3cr3t-token",))
    poller = ScriptedPoller(ConnectionError("auth failed for s3cr3t-token at http://u:pw@h/x"))
    with capture_logs() as logs:
        await once(store, poller)
    expected = "ConnectionError: auth failed for <redacted> at http://<redacted>@h/x"
    assert store.states["p"].last_error == expected
    assert logs[0]["error"] == expected


async def test_poller_keeps_a_fixed_rate_schedule() -> None:
    store = new_store("p")
    poller = ScriptedPoller([gauge()])
    task = asyncio.create_task(
        run_poller(
            name="p",
            poller=poller,
            interval=0.05,
            timeout=0.04,
            store=store,
            blocking=BlockingCalls(),
            rng=random.Random(1),
        )
    )
    try:
        await eventually(lambda: poller.calls >= 5, 5, "five rounds")
        assert store.states["p"].up
    finally:
        task.cancel()


def test_backoff_survives_a_very_long_failure_streak() -> None:
    assert backoff_delay(10_000, random.Random(1)) <= BACKOFF_CAP


def test_backoff_grows_exponentially_with_jitter_and_is_capped() -> None:
    rng = random.Random(7)
    delays = [backoff_delay(attempt, rng) for attempt in range(12)]
    for attempt, delay in enumerate(delays):
        ceiling = min(BACKOFF_CAP, 0.5 * 2**attempt)
        assert ceiling / 2 <= delay <= ceiling
    assert delays[-1] <= BACKOFF_CAP
    assert len({round(d, 6) for d in delays[-4:]}) == 4  # jitter: capped delays still differ


LINE_PACE = 0.01  # the fake stream's own rhythm: one counted "line" every 10 ms


class FlakyStream:
    """Fails `failures` times, then counts and reports forever."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.starts = 0
        self.count = 0

    async def run(self, changed: Callable[[], None]) -> None:
        self.starts += 1
        if self.starts <= self.failures:
            raise ConnectionError(f"refused #{self.starts}")
        while True:
            self.count += 1
            changed()
            await asyncio.sleep(LINE_PACE)

    def families(self) -> Families:
        return [CounterMetricFamily("botwatch_lines", "Lines.", value=self.count)]


async def test_stream_restarts_with_backoff_then_publishes() -> None:
    store = Store()
    store.add("s", "stream")
    stream = FlakyStream(failures=3)
    waits: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        waits.append(seconds)

    task = asyncio.create_task(
        run_stream(
            name="s",
            stream=stream,
            store=store,
            blocking=BlockingCalls(),
            rng=random.Random(3),
            sleep=fake_sleep,
        )
    )
    try:
        await eventually(lambda: store.states["s"].up, 5, "a publish after the restarts")
    finally:
        task.cancel()
    assert stream.starts == 4
    assert len(waits) == 3
    assert waits[0] < waits[2]  # exponential growth
    state = store.states["s"]
    assert (state.up, state.errors_total) == (True, 3)
    assert state.duration is None
    assert b"botwatch_lines_total" in state.chunk.text


class GaugeStream:
    """Serves a gauge only while connected; its run announces itself, then fails on cue."""

    def __init__(self) -> None:
        self.connected = False
        self.fail = asyncio.Event()
        self.runs = 0

    async def run(self, changed: Callable[[], None]) -> None:
        self.runs += 1
        if self.runs > 1:
            await asyncio.Event().wait()  # the restarted run never connects
        self.connected = True
        changed()
        await self.fail.wait()
        changed()  # announced just before failing: must not mark it up again
        self.connected = False
        raise ConnectionError("engine went away")

    def families(self) -> Families:
        fams: list[CounterMetricFamily | GaugeMetricFamily] = [
            CounterMetricFamily("botwatch_events", "Events.", value=3)
        ]
        if self.connected:
            fams.append(gauge("botwatch_state"))
        return fams


async def test_a_failed_stream_republishes_what_still_holds_and_stays_down() -> None:
    store = Store()
    store.add("s", "stream")
    stream = GaugeStream()

    async def no_wait(_: float) -> None:
        pass  # the restart comes before the failure's publish: it must not mark it up

    task = asyncio.create_task(
        run_stream(name="s", stream=stream, store=store, blocking=BlockingCalls(), sleep=no_wait)
    )
    state = store.states["s"]
    try:
        await eventually(lambda: state.up and b"botwatch_state " in state.chunk.text, 5, "up")
        stream.fail.set()
        await eventually(lambda: b"botwatch_state " not in state.chunk.text, 5, "gauge dropped")
        assert b"botwatch_events_total 3.0" in state.chunk.text  # counters stay
        assert stream.runs == 2
        assert (state.up, state.errors_total) == (False, 1)
    finally:
        task.cancel()
