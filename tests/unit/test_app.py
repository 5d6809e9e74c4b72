"""Reload semantics: keep what is unchanged, restart what changed, never run one twice."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from exporter.app import App
from exporter.config import load_config

GOOD = "collectors:\n  host: {interval: 1s, timeout: 800ms, filesystems: {stat_timeout: 500ms}}\n"


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[App]:
    path = tmp_path / "botwatch.yml"
    path.write_text(GOOD)
    app = App(load_config(path), path, {})
    await app.apply(app.config)
    yield app
    await app.stop()


def host_tasks() -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks() if t.get_name() == "host" and not t.done()]


async def test_unchanged_collector_keeps_running_across_a_reload(app: App) -> None:
    before = app.running["host"].task
    assert await app.reload()
    assert app.running["host"].task is before


async def test_changed_collector_is_restarted(app: App) -> None:
    before = app.running["host"].task
    assert app.path is not None
    app.path.write_text(GOOD.replace("interval: 1s", "interval: 2s"))
    assert await app.reload()
    assert app.running["host"].task is not before
    assert before is not None and before.cancelled()
    assert len(host_tasks()) == 1


async def test_concurrent_reloads_run_one_collector(app: App) -> None:
    assert app.path is not None
    app.path.write_text(GOOD.replace("interval: 1s", "interval: 3s"))
    assert all(await asyncio.gather(*(app.reload() for _ in range(5))))
    assert len(host_tasks()) == 1


async def test_disabling_removes_the_collector_and_its_series(app: App) -> None:
    assert app.path is not None
    app.path.write_text("collectors:\n  host: {enabled: false}\n")
    assert await app.reload()
    assert "host" not in app.store.states
    assert host_tasks() == []


async def test_bad_reload_keeps_the_running_config(app: App) -> None:
    before = app.running["host"].task
    assert app.path is not None
    app.path.write_text("collectors:\n  host: {interval: soon}\n")
    assert not await app.reload()
    assert app.store.reload_ok is False
    assert app.running["host"].task is before
    assert app.config.collectors.host.interval == 1.0
