"""The oom collector in-process, on copies of the fixture trees that change while it runs:
cgroup counters that grow, cgroups removed and recreated, kernel log records appended,
botwatch restarted on the same state_dir, and what it does when a source is missing."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from exporter.collector import Context
from exporter.collectors import oom, oomcgroupfs
from exporter.collectors.oom import OomCollector, OomConfig
from exporter.collectors.oomcgroupfs import CgroupError
from exporter.collectors.oomledger import OTHER
from exporter.config import Config
from exporter.store import Store
from exporter.supervise import run_stream
from exporter.threads import BlockingCalls
from tests.streams import Running, running, value
from tests.support import eventually, promtool_lint, wait_for

FIXTURES = Path(__file__).parent.parent / "fixtures" / "oom"
DOCKER_ID = "f061fdec4bda17fed36f8af5199e89c4be21ccee1f5b45aa904b0ffd4f20adc9"
LIBPOD_ID = "ff631fd9b06a838b910b0b4d4586f42904e06f2d9c832b952ea3a2a4a18205f6"
CGROUPFS_ID = "1dd2ed91fd56c06df2093e41e6f229c0ef3b50009f1e23569b1bc17adc74d6c2"
BOT = "/system.slice/alphaengine-bot.service"
WEB = "/system.slice/alphaengine-web.service"
SCOPE = f"/system.slice/docker-{DOCKER_ID}.scope"
LIBPOD = f"/machine.slice/libpod-{LIBPOD_ID}.scope"
CGROUPFS = f"/docker/{CGROUPFS_ID}"
KILLS = "botwatch_cgroup_oom_kills_total"
OOMS = "botwatch_cgroup_oom_total"
KERNEL_KILLS = "botwatch_oom_kills_total"
WAIT = 5.0


@dataclass
class Host:
    """A copy of the fixtures in tmp_path: sysfs, procfs, a kernel log file, a state_dir."""

    root: Path
    version: int

    @property
    def sysfs(self) -> Path:
        return self.root / "sys"

    @property
    def procfs(self) -> Path:
        return self.root / "proc"

    @property
    def kmsg(self) -> Path:
        return self.root / "kmsg"

    @property
    def state(self) -> Path:
        return self.root / "state"

    def cgroup(self, path: str) -> Path:
        base = self.sysfs / "fs" / "cgroup"
        return (base if self.version == 2 else base / "memory") / path.lstrip("/")

    def counts(self, path: str, oom_kill: int, oom: int = 0) -> None:
        directory = self.cgroup(path)
        directory.mkdir(parents=True, exist_ok=True)
        if self.version == 2:
            text = f"low 0\nhigh 0\nmax 9\noom {oom}\noom_kill {oom_kill}\noom_group_kill 0\n"
            (directory / "memory.events").write_text(text)
        else:
            text = f"oom_kill_disable 0\nunder_oom 0\noom_kill {oom_kill}\n"
            (directory / "memory.oom_control").write_text(text)

    def remove(self, path: str) -> None:
        shutil.rmtree(self.cgroup(path))

    def log(self, *parts: str) -> None:
        with self.kmsg.open("ab") as f:
            for part in parts:
                f.write((FIXTURES / "kmsg" / part).read_bytes())

    def log_bytes(self, data: bytes) -> None:
        with self.kmsg.open("ab") as f:
            f.write(data)

    def reboot(self) -> None:
        (self.procfs / "sys/kernel/random/boot_id").write_text(
            "d1d2ef25-cd0e-487a-803c-656bcbb7302b\n"
        )


def host_of(tmp_path: Path, version: int = 2, *log: str) -> Host:
    host = Host(tmp_path, version)
    shutil.copytree(FIXTURES / f"v{version}", host.sysfs)
    shutil.copytree(FIXTURES / "proc", host.procfs)
    host.kmsg.touch()
    host.log(*log)
    return host


def make(host: Host, **options: Any) -> OomCollector:
    defaults = {"sysfs": host.sysfs, "procfs": host.procfs, "kmsg": host.kmsg, "interval": "100ms"}
    config = OomConfig(**{**defaults, **options})
    return OomCollector(config, Context("oom", host.state, BlockingCalls()))


async def scans(run: Running, n: int = 2) -> None:
    """Until `n` more rounds have ended (changed() after each): one began after the call."""
    target = run.changes + n
    await eventually(lambda: run.changes >= target, WAIT, f"{n} more rounds")


def kernel_kills(run: Running, process: str, cgroup: str = "") -> float | None:
    return run.value(KERNEL_KILLS, source="kernel", process=process, cgroup=cgroup)


# cgroups --------------------------------------------------------------------------------


async def test_v2_counters_grow_and_stay_monotonic_when_a_cgroup_is_recreated(
    tmp_path: Path,
) -> None:
    host = host_of(tmp_path, 2)
    async with running(make(host, kernel_log=False)) as run:
        await eventually(lambda: run.value(KILLS, cgroup=BOT) == 2, WAIT, "the first scan")
        assert run.value(KILLS, cgroup=BOT, unit="alphaengine-bot.service", container="") == 2
        assert run.value(OOMS, cgroup=BOT) == 2
        assert run.value(KILLS, cgroup=WEB) == 0
        docker_unit = f"docker-{DOCKER_ID}.scope"
        assert run.value(KILLS, cgroup=SCOPE, unit=docker_unit, container=DOCKER_ID[:12]) == 1
        assert run.value(KILLS, cgroup=LIBPOD, container=LIBPOD_ID[:12]) == 4
        assert run.value(OOMS, cgroup=LIBPOD) == 3
        assert run.value(KILLS, cgroup=CGROUPFS, unit="", container=CGROUPFS_ID[:12]) == 0
        selected = {
            s.labels["cgroup"] for f in run.stream.families() for s in f.samples if s.name == KILLS
        }
        assert selected == {
            BOT,
            WEB,
            SCOPE,
            LIBPOD,
            CGROUPFS,
            "/system.slice/docker.service",
            "/user.slice/user-1000.slice/user@1000.service",
        }

        host.counts(BOT, oom_kill=5, oom=3)
        await eventually(lambda: run.value(KILLS, cgroup=BOT) == 5, WAIT, "growth")
        assert run.value(OOMS, cgroup=BOT) == 3

        # The unit stops: its cgroup goes, its series stays.
        host.remove(BOT)
        await scans(run)
        assert run.value(KILLS, cgroup=BOT) == 5
        # It starts again in a new cgroup, counting from 0.
        host.counts(BOT, oom_kill=1, oom=1)
        await eventually(lambda: run.value(KILLS, cgroup=BOT) == 6, WAIT, "the new cgroup")
        assert run.value(OOMS, cgroup=BOT) == 4
        await scans(run)
        assert run.value(KILLS, cgroup=BOT) == 6
        assert run.failure() is None


async def test_v1_hybrid_reads_the_memory_controller(tmp_path: Path) -> None:
    host = host_of(tmp_path, 1)
    collector = make(host, kernel_log=False)
    async with running(collector) as run:
        await eventually(lambda: run.value(KILLS, cgroup=BOT) == 1, WAIT, "the first scan")
        assert collector.hierarchy is not None and collector.hierarchy.version == 1
        assert run.value(KILLS, cgroup=CGROUPFS, container=CGROUPFS_ID[:12]) == 2
        assert run.value(KILLS, cgroup=SCOPE, container=DOCKER_ID[:12]) == 0
        assert run.value(KILLS, cgroup="/") is None  # not selected
        assert run.value(KILLS, cgroup="/user.slice/user-1000.slice/session-3.scope") is None
        assert run.value(OOMS) is None  # v1 has no such counter

        host.remove(CGROUPFS)
        await scans(run)
        host.counts(CGROUPFS, oom_kill=1)
        await eventually(lambda: run.value(KILLS, cgroup=CGROUPFS) == 3, WAIT, "recreated")


async def test_the_selection_is_configurable(tmp_path: Path) -> None:
    host = host_of(tmp_path, 2)
    cgroups = {"include": r"^/(system|user)\.slice/", "exclude": r"docker"}
    async with running(make(host, kernel_log=False, cgroups=cgroups)) as run:
        await eventually(lambda: run.value(KILLS, cgroup=BOT) == 2, WAIT, "the first scan")
        assert run.value(KILLS, cgroup="/user.slice/user-1000.slice/session-3.scope") == 5
        assert run.value(KILLS, cgroup=SCOPE) is None
        assert run.value(KILLS, cgroup="/system.slice/docker.service") is None


# the kernel log ---------------------------------------------------------------------------


async def test_kernel_log_records_appended_while_running_are_counted(tmp_path: Path) -> None:
    # What the log holds at a first start happened before botwatch counted.
    host = host_of(tmp_path, 2, "1-boot", "2-memcg-oom")
    collector = make(host)
    async with running(collector) as run:
        await eventually(lambda: run.value("botwatch_oom_kernel_log_up") == 1, WAIT, "opened")
        await eventually(lambda: collector.kernel and collector.kernel.seq == 2318, WAIT, "end")
        assert kernel_kills(run, "python3", BOT) is None

        host.log("3-global-oom")
        await eventually(lambda: kernel_kills(run, "node", SCOPE) == 1, WAIT, "the global OOM")
        assert run.value("botwatch_oom_kernel_log_malformed_total") == 2
        assert run.value("botwatch_oom_kernel_log_lost_total") == 0
        assert run.value("botwatch_oom_label_overflow_total", label="process") == 0

        # A kill whose oom-kill record is missing still counts, without a cgroup.
        host.log_bytes(
            b"3,2345,9500000000,-;Out of memory: Killed process 777 (worker) total-vm:1kB\n"
        )
        await eventually(lambda: kernel_kills(run, "worker", "") == 1, WAIT, "the bare kill")
        assert kernel_kills(run, "node", SCOPE) == 1
        assert run.failure() is None


async def test_a_restart_counts_nothing_twice_and_loses_nothing(tmp_path: Path) -> None:
    host = host_of(tmp_path, 2, "1-boot")
    first = make(host)
    async with running(first) as run:
        await eventually(lambda: first.kernel and first.kernel.seq == 2284, WAIT, "the end")
        host.log("2-memcg-oom")
        await eventually(lambda: kernel_kills(run, "python3", BOT) == 1, WAIT, "the memcg OOM")
        await eventually(lambda: run.value(KILLS, cgroup=LIBPOD) == 4, WAIT, "a scan")
    checkpoint = json.loads((host.state / "oom-checkpoint.json").read_text())
    assert checkpoint["oom"]["kernel"]["seq"] == 2318

    # While botwatch is away: the kernel logs another OOM, BOT is OOM-killed twice more,
    # LIBPOD's container is recreated, and WEB's unit is restarted and OOM-killed once.
    host.log("3-global-oom")
    host.counts(BOT, oom_kill=4, oom=4)
    host.remove(LIBPOD)
    host.counts(LIBPOD, oom_kill=2, oom=2)
    host.remove(WEB)
    host.counts(WEB, oom_kill=1, oom=1)

    second = make(host)
    async with running(second) as run:
        await eventually(lambda: kernel_kills(run, "node", SCOPE) == 1, WAIT, "the global OOM")
        await eventually(lambda: run.value(KILLS, cgroup=BOT) == 4, WAIT, "a scan")
        assert kernel_kills(run, "python3", BOT) == 1
        assert run.value("botwatch_oom_kernel_log_malformed_total") == 2
        assert run.value("botwatch_oom_kernel_log_lost_total") == 0
        assert run.value(OOMS, cgroup=BOT) == 4
        assert run.value(KILLS, cgroup=LIBPOD) == 6
        assert run.value(OOMS, cgroup=LIBPOD) == 5
        assert run.value(KILLS, cgroup=WEB) == 1
        await scans(run)
        assert run.value(KILLS, cgroup=BOT) == 4
        assert kernel_kills(run, "node", SCOPE) == 1

    # After a reboot the whole log is new; what it lost since the boot is counted too.
    host.reboot()
    third = make(host)
    async with running(third) as run:
        await eventually(lambda: kernel_kills(run, "node", SCOPE) == 2, WAIT, "the new boot")
        assert kernel_kills(run, "python3", BOT) == 2
        assert run.value("botwatch_oom_kernel_log_lost_total") == 2280
        assert run.value("botwatch_oom_kernel_log_malformed_total") == 4
        assert run.value(KILLS, cgroup=BOT) == 4


async def test_an_unreadable_kernel_log_is_not_a_failure_of_the_collector(
    tmp_path: Path, captured_logs: list[MutableMapping[str, Any]]
) -> None:
    host = host_of(tmp_path, 2)
    missing = tmp_path / "no-kmsg"
    async with running(make(host, kmsg=missing)) as run:
        await eventually(lambda: run.value(KILLS, cgroup=BOT) == 2, WAIT, "the first scan")
        await eventually(lambda: run.value("botwatch_oom_kernel_log_up") == 0, WAIT, "down")
        await scans(run, 4)  # several retries
        assert run.failure() is None
        warnings = [e for e in captured_logs if e["event"].startswith("kernel log unavailable")]
        assert len(warnings) == 1
        assert warnings[0]["path"] == str(missing)
        assert warnings[0]["error"] == f"{missing}: No such file or directory"

        shutil.copy(FIXTURES / "kmsg" / "1-boot", missing)
        await eventually(lambda: run.value("botwatch_oom_kernel_log_up") == 1, WAIT, "readable")
        assert [e["event"] for e in captured_logs].count("kernel log readable again") == 1


async def test_a_kernel_log_that_fails_to_read_is_down_too(tmp_path: Path) -> None:
    host = host_of(tmp_path, 2)
    async with running(make(host, kmsg=tmp_path)) as run:  # a directory opens, but reads fail
        await eventually(lambda: run.value("botwatch_oom_kernel_log_up") == 0, WAIT, "down")
        await eventually(lambda: run.value(KILLS, cgroup=BOT) == 2, WAIT, "the first scan")
        assert run.failure() is None


async def test_kernel_log_disabled(tmp_path: Path) -> None:
    host = host_of(tmp_path, 2)
    async with running(make(host, kernel_log=False)) as run:
        await eventually(lambda: run.value(KILLS, cgroup=BOT) == 2, WAIT, "the first scan")
        assert run.value("botwatch_oom_kernel_log_up") is None


async def test_the_stream_is_announced_only_once_the_first_scan_is_done(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    host = host_of(tmp_path, 2, "1-boot")
    collector = make(host)

    def scan_once_the_kernel_log_is_open(*args: Any) -> Any:
        # In the scan's thread: the kernel log opening first must not announce the run.
        wait_for(lambda: collector.kernel_up, WAIT, "the kernel log to open")
        return oomcgroupfs.scan(*args)

    monkeypatch.setattr(oom, "scan", scan_once_the_kernel_log_is_open)
    seen: list[float | None] = []
    task = asyncio.create_task(
        collector.run(lambda: seen.append(value(collector.families(), KILLS, cgroup=BOT)))
    )
    try:
        await eventually(lambda: collector.kernel_up and len(seen) >= 2, WAIT, "two rounds")
        assert all(kills == 2 for kills in seen)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await collector.close()


# failures -------------------------------------------------------------------------------


async def test_a_missing_hierarchy_fails_the_collector_but_not_the_kernel_log(
    tmp_path: Path,
) -> None:
    host = host_of(tmp_path, 2)
    shutil.rmtree(host.sysfs / "fs")
    collector = make(host)
    async with running(collector) as run:
        await eventually(run.failure, WAIT, "run() to fail")
        error = run.failure()
        assert isinstance(error, CgroupError)
        assert str(error) == f"cgroup hierarchy not found: {host.sysfs}/fs/cgroup"
        # The kernel log goes on: its kills are counted and published while it is down.
        await eventually(lambda: run.value("botwatch_oom_kernel_log_up") == 1, WAIT, "opened")
        host.log("2-memcg-oom")
        await eventually(lambda: kernel_kills(run, "python3", BOT) == 1, WAIT, "the kill")


def scraped(store: Store, name: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(store.states["oom"].chunk.text.decode()):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return None


async def test_under_the_supervisor_down_while_the_hierarchy_is_missing_then_up(
    tmp_path: Path,
) -> None:
    host = host_of(tmp_path, 2)
    aside = tmp_path / "aside"
    (host.sysfs / "fs").rename(aside)
    collector = make(host)
    store = Store()
    state = store.add("oom", "stream")

    retry = asyncio.Event()

    async def backoff(seconds: float) -> None:
        # Retries when the test says so: a kill is published while down without one.
        await retry.wait()
        retry.clear()

    supervisor = asyncio.create_task(
        run_stream(
            name="oom", stream=collector, store=store, blocking=BlockingCalls(), sleep=backoff
        )
    )
    try:
        await eventually(lambda: state.last_error, WAIT, "the failure")
        assert not state.up
        assert state.last_error == (
            f"CgroupError: cgroup hierarchy not found: {host.sysfs}/fs/cgroup"
        )
        host.log("2-memcg-oom")
        await eventually(
            lambda: scraped(store, KERNEL_KILLS, process="python3", cgroup=BOT) == 1,
            WAIT,
            "the kill published while down",
        )
        assert not state.up
        aside.rename(host.sysfs / "fs")
        retry.set()
        await eventually(lambda: state.up, WAIT, "up")
        await eventually(lambda: scraped(store, KILLS, cgroup=BOT) == 2, WAIT, "the cgroups")
        assert scraped(store, KERNEL_KILLS, process="python3", cgroup=BOT) == 1
    finally:
        supervisor.cancel()
        await asyncio.gather(supervisor, return_exceptions=True)
        await collector.close()


async def test_no_memory_controller(tmp_path: Path) -> None:
    host = host_of(tmp_path, 1)
    shutil.rmtree(host.sysfs / "fs/cgroup/memory")
    async with running(make(host, kernel_log=False)) as run:
        await eventually(run.failure, WAIT, "run() to fail")
        assert str(run.failure()) == (
            f"no memory controller under {host.sysfs}/fs/cgroup (neither cgroup v2 nor v1)"
        )


async def test_counters_stay_after_a_failure_and_counting_resumes(tmp_path: Path) -> None:
    host = host_of(tmp_path, 2)
    collector = make(host, kernel_log=False)
    async with running(collector) as first:
        await eventually(lambda: first.value(KILLS, cgroup=BOT) == 2, WAIT, "the first scan")
        aside = tmp_path / "aside"
        (host.sysfs / "fs").rename(aside)
        await eventually(first.failure, WAIT, "run() to fail")
        assert first.value(KILLS, cgroup=BOT) == 2
        assert first.value(OOMS, cgroup=LIBPOD) == 3
        # What the supervisor does next: run it again once the hierarchy is back.
        aside.rename(host.sysfs / "fs")
        host.counts(BOT, oom_kill=3, oom=2)
        async with running(collector) as second:
            await eventually(lambda: second.value(KILLS, cgroup=BOT) == 3, WAIT, "resumed")


async def test_one_state_dir_one_botwatch(tmp_path: Path) -> None:
    host = host_of(tmp_path, 2)
    async with running(make(host, kernel_log=False)) as first:
        await eventually(lambda: first.value(KILLS, cgroup=BOT) == 2, WAIT, "the first scan")
        async with running(make(host, kernel_log=False)) as second:
            await eventually(second.failure, WAIT, "the second to fail")
            assert "in use by another botwatch" in str(second.failure())


# the exposition -------------------------------------------------------------------------


class _Families:
    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> list[Metric]:
        return self._families


async def test_promtool_accepts_the_full_exposition(tmp_path: Path) -> None:
    host = host_of(tmp_path, 2, "1-boot")
    collector = make(host, max_values=1)
    async with running(collector) as run:
        await eventually(lambda: collector.kernel and collector.kernel.seq == 2284, WAIT, "end")
        host.log("2-memcg-oom", "3-global-oom")
        await eventually(lambda: kernel_kills(run, OTHER, OTHER) == 1, WAIT, "the capped kill")
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Families(collector.families()))  # type: ignore[arg-type]
        body = generate_latest(registry).decode()
    for name in (
        KILLS,
        OOMS,
        KERNEL_KILLS,
        "botwatch_oom_label_overflow_total",
        "botwatch_oom_kernel_log_up",
        "botwatch_oom_kernel_log_lost_total",
        "botwatch_oom_kernel_log_malformed_total",
        "botwatch_oom_checkpoint_errors_total",
    ):
        assert f"\n{name}" in body, name
    assert promtool_lint(body) == ""


def test_config_defaults_and_validation() -> None:
    config = Config.model_validate({}).collectors.oom  # type: ignore[attr-defined]
    assert config.enabled and config.kernel_log
    assert (config.interval, config.max_values, str(config.kmsg)) == (15.0, 50, "/dev/kmsg")
    selects = config.cgroups.selects
    assert selects(BOT) and selects(SCOPE) and selects(LIBPOD) and selects(CGROUPFS)
    assert not selects("/system.slice") and not selects("/init.scope")
    assert not selects(f"/machine.slice/libpod-conmon-{LIBPOD_ID}.scope")
    with pytest.raises(ValueError, match="max_values"):
        OomConfig(max_values=0)
    with pytest.raises(ValueError, match="includ"):
        OomConfig.model_validate({"cgroups": {"includ": ".*"}})
