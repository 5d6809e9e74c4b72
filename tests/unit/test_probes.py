"""The probes collector: scheduling, timeouts, failure reasons; and the tcp and listener types."""

from __future__ import annotations

import asyncio
import random
import socket
import subprocess
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from exporter.collector import Context
from exporter.config import Config
from exporter.probes.api import FamilySpec, ProbeConfig, Result, Sample
from exporter.probes.collector import CheckState, ProbesCollector
from exporter.probes.listener import listeners
from exporter.probes.models import ProbesConfig
from exporter.threads import BlockingCalls
from tests.streams import running
from tests.support import eventually, promtool_lint, wait_for


def probes(*entries: dict[str, Any], tmp_path: Path = Path("/nonexistent")) -> ProbesCollector:
    # A short interval, so the first check (at a random offset within it) comes soon.
    targets = [{"interval": "500ms", **entry} for entry in entries]
    config = Config.model_validate({"probes": targets}).collector_configs()["probes"]
    assert isinstance(config, ProbesConfig)
    return ProbesCollector(config, Context("probes", tmp_path, BlockingCalls()))


class Scripted:
    """A Check that returns, hangs or raises as told."""

    def __init__(self, behaviour: str = "ok") -> None:
        self.behaviour = behaviour
        self.calls = 0

    async def check(self) -> Result:
        self.calls += 1
        if self.behaviour == "hang":
            await asyncio.Event().wait()
        if self.behaviour == "raise":
            raise KeyError("bug")
        return Result(self.behaviour == "ok", None if self.behaviour == "ok" else "refused")


def with_checks(**checks: tuple[Scripted, str]) -> ProbesCollector:
    """A collector running these Checks: name -> (check, interval)."""
    collector = probes()
    for name, (check, interval) in checks.items():
        config = ProbeConfig(name=name, type="fake", interval=interval)
        collector.checks.append((CheckState(config, ("refused",)), check))
    return collector


async def test_a_hung_check_times_out_and_delays_no_other_probe() -> None:
    slow, fast = Scripted("hang"), Scripted("ok")  # timeouts: the interval, 200 ms
    async with running(with_checks(slow=(slow, "200ms"), fast=(fast, "200ms"))) as run:
        await eventually(
            lambda: run.value("botwatch_probe_failures_total", probe="slow", reason="timeout") == 2,
            10,
            "two timeouts",
        )
        assert (run.value("botwatch_probe_checks_total", probe="fast") or 0) >= 2
        assert run.value("botwatch_probe_success", probe="slow") == 0
        assert run.value("botwatch_probe_success", probe="fast") == 1
        assert run.value("botwatch_probe_last_success_timestamp_seconds", probe="fast")
        assert run.value("botwatch_probe_last_success_timestamp_seconds", probe="slow") is None
        assert run.failure() is None


async def test_failures_are_counted_by_reason_and_logged_at_the_edges(
    captured_logs: list[MutableMapping[str, Any]],
) -> None:
    check = Scripted("fail")
    async with running(with_checks(flaky=(check, "50ms"))) as run:
        await eventually(lambda: check.calls >= 3, 10, "three failures")
        check.behaviour = "ok"
        calls = check.calls
        await eventually(lambda: check.calls >= calls + 2, 10, "two good checks")
        check.behaviour = "raise"
        await eventually(
            lambda: run.value("botwatch_probe_failures_total", reason="internal"), 10, "a bug"
        )
        assert (run.value("botwatch_probe_failures_total", reason="refused") or 0) >= 3
        assert run.value("botwatch_probe_failures_total", reason="timeout") == 0
    events = [(e["event"], e.get("reason")) for e in captured_logs if e.get("probe") == "flaky"]
    assert events[:3] == [
        ("probe failed", "refused"),
        ("probe recovered", None),
        ("probe failed", "internal"),
    ]


async def test_first_checks_are_spread_over_the_interval() -> None:
    collector = with_checks(**{f"p{i}": (Scripted(), "10s") for i in range(20)})
    collector.rng = random.Random(7)
    started: list[float] = []
    loop = asyncio.get_running_loop()
    for _, check in collector.checks:
        original = check.check

        async def timed(original: Callable[[], Any] = original) -> Result:
            started.append(loop.time())
            result: Result = await original()
            return result

        check.check = timed  # type: ignore[method-assign]
    begin = loop.time()
    async with running(collector):
        await eventually(lambda: len(started) >= 3, 15, "some first checks")
    offsets = sorted(t - begin for t in started)
    # 20 probes with one interval do not hit their targets together.
    assert offsets[-1] - offsets[0] > 0.05


def test_before_the_first_check_only_counters_are_served() -> None:
    state = CheckState(ProbeConfig(name="p", type="fake"), ("refused",))
    names = {s.family.name for s in state.samples()}
    assert names == {"botwatch_probe_checks", "botwatch_probe_failures"}


class Crashing:
    """A Watch with a bug: it raises; the collector logs and starts it again."""

    def __init__(self) -> None:
        self.runs = 0

    async def run(self, changed: Callable[[], None]) -> None:
        self.runs += 1
        raise RuntimeError("bug")

    def samples(self) -> Iterable[Sample]:
        return [Sample(FamilySpec("botwatch_ws_connected", "x"), {"probe": "w"}, 0)]


async def test_a_watch_that_crashes_is_logged_and_restarted(
    captured_logs: list[MutableMapping[str, Any]],
) -> None:
    collector = probes()
    watch = Crashing()
    collector.watches.append((ProbeConfig(name="w", type="fake"), watch))
    async with running(collector) as run:
        await eventually(lambda: watch.runs >= 2, 10, "a restart")
        assert run.value("botwatch_ws_connected", probe="w") == 0
        assert run.failure() is None
    assert any(e["event"] == "probe watch stopped" for e in captured_logs)


# tcp and listener ---------------------------------------------------------------------


@pytest.fixture
def listening() -> Iterator[int]:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield server.getsockname()[1]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def other_process() -> Iterator[int]:
    """A port held by another process (busybox's nc), as when something else took :3000."""
    port = closed_port()
    proc = subprocess.Popen(
        ["busybox", "nc", "-l", "-p", str(port)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        # Not by connecting: nc serves one connection, then stops listening.
        wait_for(lambda: listeners(port), 10, "nc to listen")
        yield port
    finally:
        proc.kill()
        proc.wait()


async def test_tcp_open_closed_and_unresolvable(listening: int) -> None:
    collector = probes(
        {"name": "open", "type": "tcp", "host": "127.0.0.1", "port": listening},
        {"name": "closed", "type": "tcp", "host": "127.0.0.1", "port": closed_port()},
        # Not a valid host name: the resolver refuses it without asking any server.
        {"name": "nowhere", "type": "tcp", "host": "bad host name!", "port": 1},
    )
    async with running(collector) as run:
        await eventually(lambda: run.value("botwatch_probe_success", probe="closed") == 0, 15, "")
        await eventually(lambda: run.value("botwatch_probe_success", probe="open") == 1, 15, "")
        await eventually(lambda: run.value("botwatch_probe_success", probe="nowhere") == 0, 15, "")
        assert run.value("botwatch_probe_failures_total", probe="closed", reason="refused")
        assert run.value("botwatch_probe_failures_total", probe="nowhere", reason="dns")
        assert run.value("botwatch_probe_failures_total", probe="open", reason="refused") == 0
        assert (run.value("botwatch_probe_duration_seconds", probe="open") or 1) < 1


async def test_listener_owner_and_the_wrong_owner(other_process: int) -> None:
    collector = probes(
        {"name": "any", "type": "listener", "port": other_process},
        {"name": "ours", "type": "listener", "port": other_process, "process": "^trader-api$"},
        {"name": "free", "type": "listener", "port": closed_port()},
    )
    async with running(collector) as run:
        for name in ("any", "ours", "free"):
            await eventually(
                lambda n=name: run.value("botwatch_probe_checks_total", probe=n), 15, name
            )
        port = str(other_process)
        assert run.value("botwatch_probe_success", probe="any") == 1
        assert run.value("botwatch_port_listening", probe="any", port=port) == 1
        assert run.value("botwatch_port_owner_info", probe="any", port=port, process="busybox")
        assert run.value("botwatch_probe_success", probe="ours") == 0
        assert run.value("botwatch_probe_failures_total", probe="ours", reason="wrong_owner")
        assert run.value("botwatch_probe_failures_total", probe="free", reason="not_listening")
        assert run.value("botwatch_port_listening", probe="free") == 0


async def test_a_full_exposition_passes_promtool(listening: int) -> None:
    collector = probes(
        {"name": "open", "type": "tcp", "host": "127.0.0.1", "port": listening},
        {"name": "l", "type": "listener", "port": listening},
    )
    async with running(collector) as run:
        await eventually(lambda: run.value("botwatch_port_listening"), 15, "both checks")
        await eventually(lambda: run.value("botwatch_probe_success", probe="open"), 15, "tcp")
        registry = CollectorRegistry()

        class Adapter:
            def collect(self) -> Any:
                return collector.families()

        registry.register(Adapter())  # type: ignore[arg-type]
        assert promtool_lint(generate_latest(registry).decode()) == ""


def test_probes_are_off_without_targets_and_names_are_labels() -> None:
    assert not Config().collector_configs()["probes"].wanted()
    one = Config.model_validate({"probes": [{"name": "a", "type": "tcp", "host": "h", "port": 1}]})
    assert one.collector_configs()["probes"].wanted()
    off = {"name": "a", "type": "tcp", "host": "h", "port": 1, "enabled": False}
    assert not Config.model_validate({"probes": [off]}).collector_configs()["probes"].wanted()


def test_the_listener_reads_this_hosts_proc_whatever_psutil_was_told(
    other_process: int, tmp_path: Path, restore_procfs_path: None
) -> None:
    import psutil

    # The host collector points psutil's process-wide procfs root at its own (a fixture, or
    # the host's /proc mounted in a container): the listener must not follow it.
    psutil.PROCFS_PATH = str(tmp_path)
    owners = listeners(other_process)
    assert [o.name for o in owners] == ["busybox"]
