"""The systemd collector against a real dbus-daemon with python-dbusmock's systemd template.

The template lacks SubState, the Service interface, ListUnits and Subscribe; tests/systemdmock.py
adds them. Polls are an hour apart unless a test says otherwise, so what changes on /metrics
came through PropertiesChanged.
"""

from __future__ import annotations

import asyncio
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from exporter.collector import Context
from exporter.collectors.systemd import SystemdCollector, SystemdConfig
from exporter.dbusapi import BusError
from exporter.threads import BlockingCalls
from tests.integration.conftest import Daemon
from tests.streams import running
from tests.support import eventually, promtool_lint, wait_for
from tests.systemdmock import SystemdMock

BOT = "alphaengine-bot.service"
WEB = "alphaengine-web.service"
HEALTHY: dict[str, Any] = {
    "NRestarts": 0,
    "Result": "success",
    "ExecMainStatus": 0,
    "MainPID": 4242,
    "MemoryCurrent": 50 * 2**20,
    "ControlGroup": f"/system.slice/{BOT}",
}


@pytest.fixture
def mock(tmp_path: Path) -> Iterator[SystemdMock]:
    bus = SystemdMock(tmp_path)
    try:
        yield bus
    finally:
        bus.close()


async def add_units(mock: SystemdMock) -> None:
    await mock.add_unit(
        BOT,
        ActiveState="active",
        SubState="running",
        ActiveEnterTimestamp=1_795_000_000_000_000,
        service=HEALTHY,
    )
    await mock.add_unit(WEB, ActiveState="active", SubState="running", service=HEALTHY)
    await mock.add_unit("ssh.service", ActiveState="active", SubState="running", service=HEALTHY)
    await mock.add_unit("alphaengine-bots.slice", ActiveState="active", SubState="active")


def make(mock: SystemdMock, tmp_path: Path, **options: Any) -> SystemdCollector:
    options = {"interval": "1h", "include": "^alphaengine-", **options}
    config = SystemdConfig(address=mock.address, **options)
    return SystemdCollector(config, Context("systemd", tmp_path, BlockingCalls()))


def units(run: Any) -> set[str]:
    return {
        s.labels["unit"]
        for fam in run.stream.families()
        for s in fam.samples
        if s.name == "botwatch_systemd_unit_state"
    }


async def test_a_unit_that_fails_with_oom_kill_shows_at_once(
    mock: SystemdMock, tmp_path: Path
) -> None:
    await add_units(mock)
    async with running(make(mock, tmp_path)) as run:
        await eventually(
            lambda: run.value("botwatch_systemd_unit_state", unit=BOT, state="active") == 1,
            10,
            "the first poll",
        )
        assert units(run) == {BOT, WEB, "alphaengine-bots.slice"}  # ssh is not selected
        assert run.value("botwatch_systemd_unit_sub_state_info", unit=BOT, sub_state="running")
        assert run.value("botwatch_systemd_service_restarts_total", unit=BOT) == 0
        assert run.value("botwatch_systemd_unit_result", unit=BOT, result="success") == 1
        assert run.value("botwatch_systemd_unit_memory_bytes", unit=BOT) == 50 * 2**20
        assert (
            run.value("botwatch_systemd_unit_active_enter_timestamp_seconds", unit=BOT)
            == 1_795_000_000
        )
        # A slice has no Service interface: state only.
        assert run.value("botwatch_systemd_unit_result", unit="alphaengine-bots.slice") is None

        await mock.update(
            BOT,
            ActiveState="failed",
            SubState="failed",
            service={"Result": "oom-kill", "NRestarts": 3, "ExecMainStatus": 9},
        )
        await eventually(
            lambda: run.value("botwatch_systemd_unit_state", unit=BOT, state="failed") == 1,
            5,
            "the failure, pushed",
        )
        await eventually(
            lambda: run.value("botwatch_systemd_unit_result", unit=BOT, result="oom-kill") == 1,
            5,
            "the result",
        )
        assert run.value("botwatch_systemd_service_restarts_total", unit=BOT) == 3
        assert run.value("botwatch_systemd_service_main_exit_status", unit=BOT) == 9
        assert run.value("botwatch_systemd_unit_sub_state_info", unit=BOT, sub_state="failed")
        assert run.value("botwatch_systemd_unit_state", unit=WEB, state="active") == 1
        assert run.failure() is None


async def test_a_bus_that_goes_away_fails_the_run(mock: SystemdMock, tmp_path: Path) -> None:
    await add_units(mock)
    async with running(make(mock, tmp_path)) as run:
        await eventually(
            lambda: run.value("botwatch_systemd_unit_state", unit=BOT, state="active"), 10, "up"
        )
        mock.kill_bus()
        await eventually(run.failure, 10, "the run to end")
        assert isinstance(run.failure(), BusError)
        assert str(run.failure()) == f"connection to {mock.address} lost"


async def test_a_missing_bus_fails_the_run_in_one_line(tmp_path: Path) -> None:
    config = SystemdConfig(address=f"unix:path={tmp_path}/nothing", interval="5s")
    collector = SystemdCollector(config, Context("systemd", tmp_path, BlockingCalls()))
    async with running(collector) as run:
        await eventually(run.failure, 10, "the run to fail")
        assert isinstance(run.failure(), BusError)
        assert str(run.failure()) == (
            f"connect unix:path={tmp_path}/nothing: No such file or directory"
        )


async def test_a_method_that_never_answers_is_given_up_at_the_timeout(
    mock: SystemdMock, tmp_path: Path
) -> None:
    await add_units(mock)
    # A timeout a loaded host's dbusmock always meets, so only the hang can break it.
    async with running(make(mock, tmp_path, interval="2s", timeout="1s")) as run:
        await eventually(
            lambda: run.value("botwatch_systemd_unit_state", unit=BOT, state="active"), 10, "poll"
        )
        await mock.hang("ListUnits")
        await eventually(run.failure, 10, "the hung poll to fail the run")
        assert str(run.failure()) == "reading the units: no answer within 1s"
        assert run.value("botwatch_systemd_unit_state") is None  # gauges went with it


@pytest.fixture
def config_file(tmp_path: Path, mock: SystemdMock) -> Callable[..., Path]:
    def write(interval: str = "1h", timeout: str = "1s") -> Path:
        path = tmp_path / "botwatch.yml"
        path.write_text(
            "web: {listen_address: '127.0.0.1:0'}\n"
            f"state_dir: {tmp_path / 'state'}\n"
            "collectors:\n"
            "  host: {enabled: false}\n"
            f"  systemd: {{enabled: true, address: '{mock.address}', include: '^alphaengine-',"
            f" interval: {interval}, timeout: {timeout}}}\n"
        )
        return path

    return write


def test_daemon_push_promtool_and_systemd_away_and_back(
    mock: SystemdMock, config_file: Callable[..., Path], daemon: Callable[..., Daemon]
) -> None:
    asyncio.run(add_units(mock))
    d = daemon(config_file())
    wait_for(
        lambda: d.sample("botwatch_systemd_unit_state", unit=BOT, state="active") == 1,
        20,
        "the units on /metrics",
    )
    assert d.sample("botwatch_collector_up", collector="systemd") == 1
    assert promtool_lint(d.metrics()) == ""

    asyncio.run(mock.update(BOT, ActiveState="failed", service={"Result": "oom-kill"}))
    wait_for(
        lambda: d.sample("botwatch_systemd_unit_result", unit=BOT, result="oom-kill") == 1,
        10,
        "the failure on /metrics",
    )

    mock.stop_systemd()
    wait_for(
        lambda: d.sample("botwatch_collector_up", collector="systemd") == 0,
        20,
        "the collector to go down",
    )
    assert d.proc.poll() is None
    assert d.get("/-/healthy")[0] == 200
    assert d.sample("botwatch_systemd_unit_state", unit=BOT) is None
    failures = d.events("collector failed")
    assert failures and failures[0]["error"] == "BusError: org.freedesktop.systemd1 left the bus"

    mock.start_systemd()
    wait_for(
        lambda: d.sample("botwatch_collector_up", collector="systemd") == 1,
        30,
        "the collector to come back",
    )
    # Units loaded after botwatch listed them arrive by UnitNew, not by the hourly poll.
    asyncio.run(add_units(mock))
    wait_for(
        lambda: d.sample("botwatch_systemd_unit_state", unit=BOT, state="active") == 1,
        10,
        "the units again",
    )


def test_daemon_scrape_is_unaffected_by_a_hung_systemd(
    mock: SystemdMock, config_file: Callable[..., Path], daemon: Callable[..., Daemon]
) -> None:
    asyncio.run(add_units(mock))
    d = daemon(config_file(interval="1s", timeout="500ms"))
    wait_for(lambda: d.sample("botwatch_collector_up", collector="systemd") == 1, 20, "up")
    asyncio.run(mock.hang("ListUnits"))
    # While systemd hangs (every poll waits out its timeout, reconnects, and waits again),
    # every scrape is answered from what is already rendered.
    deadline = time.monotonic() + 3
    scrapes = 0
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"{d.base}/metrics", timeout=2) as response:
            assert response.status == 200
        scrapes += 1
    assert scrapes > 10
    wait_for(
        lambda: d.sample("botwatch_collector_up", collector="systemd") == 0, 10, "down at last"
    )
