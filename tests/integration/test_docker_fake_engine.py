"""The docker collector against tests/fakeengine.py, for what a real engine cannot show here.

Why a fake: podman 4.3 never reports OOM kills (no `oom` event, no State.OOMKilled), and no
real engine can be told to lose its events, send garbage on /events or hang one endpoint.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from exporter.collector import Context
from exporter.collectors.docker import DockerCollector, DockerConfig, EngineError
from exporter.store import Store
from exporter.supervise import run_stream
from exporter.threads import BlockingCalls
from tests.fakeengine import FakeEngine
from tests.streams import running, value
from tests.support import eventually


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[FakeEngine]:
    fake = FakeEngine(tmp_path / "engine.sock")
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


def make(engine: FakeEngine, state_dir: Path, **options: Any) -> DockerCollector:
    options = {"interval": "1h", "timeout": "2s", **options}
    config = DockerConfig(url=engine.url, **options)
    return DockerCollector(config, Context("docker", state_dir, BlockingCalls()))


async def test_an_oom_kill_is_counted_once_and_survives_the_restart_that_clears_the_flag(
    engine: FakeEngine, tmp_path: Path
) -> None:
    engine.add("app")
    collector = make(engine, tmp_path, interval="300ms", timeout="300ms")
    async with running(collector) as run:
        await eventually(lambda: run.value("botwatch_container_oom_kills_total") == 0, 10, "app")
        engine.oom_kill("app")
        await eventually(
            lambda: run.value("botwatch_container_oom_killed", container="app") == 1, 5, "flag"
        )
        assert run.value("botwatch_container_oom_kills_total", container="app") == 1
        assert run.value("botwatch_container_events_total", container="app", event="oom") == 1
        assert run.value("botwatch_container_exits_total", container="app", exit_code="137") == 1
        assert run.value("botwatch_container_exit_code", container="app") == 137
        assert run.value("botwatch_container_state", container="app", state="exited") == 1

        engine.restart("app")
        await eventually(
            lambda: run.value("botwatch_container_oom_killed", container="app") == 0, 5, "cleared"
        )
        # Polls after the restart (a resync sees OOMKilled no more) count nothing again.
        polls = engine.requests.count("list")
        await eventually(lambda: engine.requests.count("list") >= polls + 2, 10, "two polls")
        assert run.value("botwatch_container_oom_kills_total", container="app") == 1
        assert run.value("botwatch_container_restarts_total", container="app") == 1
        assert run.value("botwatch_container_events_total", container="app", event="restart") == 1
        assert run.failure() is None


def scraped(store: Store, name: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(store.states["docker"].chunk.text.decode()):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return None


async def test_engine_away_drops_gauges_keeps_counters_and_an_unannounced_oom_is_inferred(
    engine: FakeEngine, tmp_path: Path
) -> None:
    engine.add("app")
    collector = make(engine, tmp_path, interval="300ms", timeout="300ms")
    store = Store()
    state = store.add("docker", "stream")
    supervisor = asyncio.create_task(
        run_stream(name="docker", stream=collector, store=store, blocking=BlockingCalls())
    )
    try:
        await eventually(
            lambda: state.up and scraped(store, "botwatch_container_state") is not None, 10, "up"
        )
        engine.oom_kill("app")
        engine.restart("app")
        await eventually(
            lambda: scraped(store, "botwatch_container_oom_kills_total", container="app") == 1,
            5,
            "the announced OOM",
        )

        await engine.stop()
        await eventually(lambda: not state.up, 10, "the collector to go down")
        await eventually(
            lambda: scraped(store, "botwatch_container_state") is None, 5, "gauges to go"
        )
        assert scraped(store, "botwatch_container_oom_kills_total", container="app") == 1
        # The stream ends first; reconnecting then finds no socket.
        assert state.last_error in (
            "EngineError: the event stream ended",
            "EngineError: connect: cannot reach the engine: No such file or directory",
        )

        # While nobody listens the engine forgets its events (as a restarted dockerd does).
        engine.oom_kill("app", announce=False)
        engine.history.clear()
        await engine.start()
        await eventually(lambda: state.up, 20, "the collector to reconnect")
        await eventually(
            lambda: scraped(store, "botwatch_container_oom_kills_total", container="app") == 2,
            5,
            "the OOM the resync found",
        )
        assert scraped(store, "botwatch_container_oom_killed", container="app") == 1
        assert scraped(store, "botwatch_container_events_total", container="app", event="oom") == 1
        polls = engine.requests.count("list")
        await eventually(lambda: engine.requests.count("list") >= polls + 2, 10, "two polls")
        assert scraped(store, "botwatch_container_oom_kills_total", container="app") == 2
    finally:
        supervisor.cancel()
        await asyncio.gather(supervisor, return_exceptions=True)
        await collector.close()


async def test_counters_survive_a_restart_exactly_with_the_events_of_the_downtime(
    engine: FakeEngine, tmp_path: Path
) -> None:
    engine.add("app")
    first = make(engine, tmp_path)
    async with running(first) as run:
        await eventually(lambda: run.value("botwatch_container_state", state="running"), 10, "up")
        for _ in range(2):
            engine.oom_kill("app")
            engine.restart("app")
        await eventually(
            lambda: run.value("botwatch_container_events_total", event="start") == 2, 5, "2 starts"
        )
    # botwatch is down: the engine keeps its events, and two more OOM kills happen.
    for _ in range(2):
        engine.oom_kill("app")
        engine.restart("app")

    second = make(engine, tmp_path)
    async with running(second) as run:
        await eventually(
            lambda: run.value("botwatch_container_events_total", event="start") == 4, 10, "replay"
        )
        # What the engine replayed (its history since the first collector began: the start
        # that `add` announced came before) is counted exactly once.
        assert run.value("botwatch_container_events_total", event="die") == 4
        assert run.value("botwatch_container_events_total", event="oom") == 4
        assert run.value("botwatch_container_oom_kills_total") == 4
        assert run.value("botwatch_container_exits_total", exit_code="137") == 4
        engine.oom_kill("app")
        await eventually(
            lambda: run.value("botwatch_container_oom_kills_total") == 5, 5, "one more, live"
        )
        assert run.value("botwatch_container_events_total", event="die") == 5


async def test_counters_are_exact_after_a_crash_between_checkpoints(
    engine: FakeEngine, tmp_path: Path
) -> None:
    engine.add("app")
    crashed = make(engine, tmp_path)
    task = asyncio.create_task(crashed.run(lambda: None))
    await eventually(lambda: crashed.snapshot.items, 10, "the first poll")
    engine.oom_kill("app")
    engine.restart("app")
    await eventually(lambda: crashed.checkpoint.last_success, 5, "a checkpoint")
    engine.oom_kill("app")  # counted in memory, then the process dies before the next save
    await eventually(
        lambda: value(crashed.families(), "botwatch_container_oom_kills_total") == 2, 5, "2"
    )
    task.cancel()  # no close(): nothing more is saved, as with kill -9
    await asyncio.gather(task, return_exceptions=True)
    saved = json.loads((tmp_path / "docker-checkpoint.json").read_text())
    assert saved["ledger"]["ooms"]["app"] == 1  # the second kill was never saved
    crashed.checkpoint.unlock()  # the kernel does this for a killed process

    async with running(make(engine, tmp_path)) as run:
        await eventually(lambda: run.value("botwatch_container_oom_kills_total") == 2, 10, "2")
        engine.restart("app")
        await eventually(
            lambda: run.value("botwatch_container_events_total", event="start") == 2, 5, "2"
        )
        assert run.value("botwatch_container_oom_kills_total") == 2
        assert run.value("botwatch_container_events_total", event="die") == 2


async def test_malformed_events_are_counted_and_logged_once(
    engine: FakeEngine, tmp_path: Path
) -> None:
    engine.add("app")
    collector = make(engine, tmp_path)
    with capture_logs() as logs:
        async with running(collector) as run:
            await eventually(lambda: engine.streams == 1, 10, "the event stream")
            await eventually(lambda: run.value("botwatch_container_state", state="running"), 5, "")
            engine.send_raw(b"this is not json\n")
            engine.send_raw(b'{"Type": "container", "Action": "die"}\n')
            engine.send_raw(b'["an", "array"]\n')
            await eventually(
                lambda: run.value("botwatch_docker_events_malformed_total") == 3, 5, "3 counted"
            )
            engine.oom_kill("app")
            await eventually(lambda: run.value("botwatch_container_oom_kills_total") == 1, 5, "ok")
            assert run.failure() is None
    warnings = [e for e in logs if e["event"] == "malformed docker event"]
    assert len(warnings) == 1
    assert "not JSON" in warnings[0]["error"]


@pytest.mark.parametrize("endpoint", ["list", "inspect", "events"])
async def test_a_hung_call_is_abandoned_at_the_timeout(
    engine: FakeEngine, tmp_path: Path, endpoint: str
) -> None:
    engine.add("app")
    engine.hang = {endpoint}
    collector = make(engine, tmp_path, timeout="500ms")
    async with running(collector) as run:
        await eventually(run.failure, 5, "the round to be given up")
        error = run.failure()
        assert isinstance(error, EngineError)
        assert "no answer within 0.5s" in str(error)
        assert run.value("botwatch_container_state") is None


async def test_system_df_failure_is_counted_and_the_rest_goes_on(
    engine: FakeEngine, tmp_path: Path
) -> None:
    engine.add("app")
    engine.df = {
        "LayersSize": 1000,
        "Images": [{"Id": "i1", "Size": 1000, "SharedSize": 0, "Containers": 1}],
        "Containers": [{"Id": engine.id_of("app"), "Names": ["/app"], "SizeRw": 12}],
        "Volumes": [{"Name": "data", "UsageData": {"Size": 4096, "RefCount": 1}}],
        "BuildCache": [],
    }
    collector = make(engine, tmp_path, system_df={"interval": "200ms", "timeout": "200ms"})
    with capture_logs() as logs:
        async with running(collector) as run:
            await eventually(
                lambda: run.value("botwatch_docker_volume_size_bytes", volume="data") == 4096,
                10,
                "volume size",
            )
            assert run.value("botwatch_container_rw_size_bytes", container="app") == 12
            engine.hang = {"df"}
            await eventually(
                lambda: (run.value("botwatch_docker_system_df_errors_total") or 0) >= 2, 10, "2"
            )
            assert run.value("botwatch_docker_volume_size_bytes", volume="data") is None
            assert run.value("botwatch_container_state", container="app", state="running") == 1
            assert run.failure() is None
    assert len([e for e in logs if e["event"] == "docker system df failed"]) == 1


async def test_a_second_botwatch_on_the_same_state_dir_is_refused(
    engine: FakeEngine, tmp_path: Path
) -> None:
    first = make(engine, tmp_path)
    second = make(engine, tmp_path)
    async with running(first), running(second) as run:
        await eventually(run.failure, 5, "the second to fail")
        assert "in use by another botwatch" in str(run.failure())


async def test_an_unwritable_state_dir_costs_the_counters_restart_not_the_collector(
    engine: FakeEngine, tmp_path: Path
) -> None:
    engine.add("app")
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    collector = make(engine, blocked / "state")
    with capture_logs() as logs:
        async with running(collector) as run:
            await eventually(lambda: run.value("botwatch_container_state", state="running"), 5, "")
            engine.oom_kill("app")
            await eventually(
                lambda: (run.value("botwatch_docker_checkpoint_errors_total") or 0) >= 1, 5, "1"
            )
            assert run.value("botwatch_container_oom_kills_total", container="app") == 1
            assert run.failure() is None
    errors = [e["event"] for e in logs if e["log_level"] == "error"]
    assert errors[0] == "docker checkpoint unavailable: counters will not survive a restart"
    assert errors.count("docker checkpoint failed") == 1  # a failing streak is logged once
