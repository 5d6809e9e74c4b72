"""HostCollector behaviour: hung filesystems, mount selection and config validation."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, MutableMapping
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.metrics_core import Metric
from pydantic import ValidationError

from exporter.collector import Context
from exporter.collectors.host import (
    FilesystemsConfig,
    FsStat,
    HostCollector,
    HostConfig,
    HostReadings,
    filesystem_families,
    host_families,
)
from exporter.collectors.procfs import Mount
from exporter.threads import BlockingCalls
from tests.support import eventually

ROOTFS = Path(__file__).parent.parent / "fixtures" / "host"
PROCFS = ROOTFS / "proc"
STUCK = "/mnt/archive"
# What the fixture's /proc/1/mounts yields under the default selection.
DEFAULT_SELECTED = {
    "/",
    "/boot/efi",
    "/media/usb backup",
    "/mnt/archive",
    "/run",
    "/srv/data",
    "/srv/snapshots",
}
DISK = os.statvfs_result((4096, 4096, 1000, 600, 500, 100, 40, 40, 0, 255))


@pytest.fixture
async def release() -> AsyncIterator[threading.Event]:
    # Async so that it is torn down before the event loop: a loop that closes while an
    # executor thread is still stuck would wait for that thread forever.
    event = threading.Event()
    try:
        yield event
    finally:
        event.set()  # whatever the outcome, the stuck statvfs thread ends


def mountpoint_of(path: str) -> str:
    relative = Path(path).relative_to(ROOTFS).as_posix()
    return "/" if relative == "." else f"/{relative}"


def make_collector(
    statvfs: Callable[[str], os.statvfs_result], tmp_path: Path, **config: object
) -> HostCollector:
    return HostCollector(
        HostConfig(procfs=PROCFS, rootfs=ROOTFS, **config),
        Context(name="host", state_dir=tmp_path, blocking=BlockingCalls()),
        statvfs=statvfs,
    )


def by_mountpoint(families: list[Metric], name: str) -> dict[str, float]:
    (family,) = (f for f in families if f.name == name)
    return {s.labels["mountpoint"]: s.value for s in family.samples}


def device_errors(families: list[Metric]) -> dict[str, float]:
    return by_mountpoint(families, "botwatch_filesystem_device_error")


def sizes(families: list[Metric]) -> dict[str, float]:
    return by_mountpoint(families, "botwatch_filesystem_size_bytes")


# --- a hung filesystem ---------------------------------------------------------------


async def test_hung_statvfs_is_reported_and_not_retried_until_it_returns(
    tmp_path: Path,
    restore_procfs_path: None,
    release: threading.Event,
    captured_logs: list[MutableMapping[str, Any]],
) -> None:
    # A dead NFS mount cannot be produced here, so statvfs is replaced by one that hangs.
    calls: Counter[str] = Counter()

    def statvfs(path: str) -> os.statvfs_result:
        mountpoint = mountpoint_of(path)
        calls[mountpoint] += 1
        if mountpoint == STUCK:
            release.wait()
        return DISK

    collector = make_collector(
        statvfs, tmp_path, interval=1.0, timeout=1.0, filesystems={"stat_timeout": 0.25}
    )
    config = collector.config
    readable = DEFAULT_SELECTED - {STUCK}

    # The round fits in the collector's timeout even though one statvfs never returns.
    async with asyncio.timeout(config.timeout):
        first = await collector.collect()
    assert device_errors(first) == {m: (1 if m == STUCK else 0) for m in DEFAULT_SELECTED}
    assert sizes(first) == dict.fromkeys(readable, 1000 * 4096)
    assert calls[STUCK] == 1

    # Still stuck: the next round neither waits for it nor starts another call.
    started = time.monotonic()
    second = await collector.collect()
    assert time.monotonic() - started < config.filesystems.stat_timeout
    assert calls[STUCK] == 1
    assert device_errors(second)[STUCK] == 1
    assert sizes(second) == dict.fromkeys(readable, 1000 * 4096)
    assert all(calls[m] == 2 for m in readable)

    # Once the call returns, a later round stats the mount again and reads it.
    release.set()
    rounds: list[list[Metric]] = []

    async def readable_again() -> bool:
        rounds.append(await collector.collect())
        return device_errors(rounds[-1])[STUCK] == 0

    await eventually(readable_again, 5, "the released statvfs to be read")
    families = rounds[-1]
    assert sizes(families)[STUCK] == 1000 * 4096
    assert calls[STUCK] == 2

    # One warning for the streak and one line for its recovery, not one per round.
    events = [(e["event"], e["log_level"]) for e in captured_logs if e.get("mountpoint") == STUCK]
    assert events == [
        ("filesystem unreadable", "warning"),
        ("filesystem readable again", "info"),
    ]
    (warning,) = (e for e in captured_logs if e["event"] == "filesystem unreadable")
    assert warning["error"] == "timed out"


async def test_statvfs_error_is_a_device_error_not_a_failed_round(
    tmp_path: Path, restore_procfs_path: None
) -> None:
    def statvfs(path: str) -> os.statvfs_result:
        if mountpoint_of(path) == "/srv/data":
            raise OSError(5, "Input/output error", path)
        return DISK

    families = await make_collector(statvfs, tmp_path).collect()
    assert device_errors(families) == {m: int(m == "/srv/data") for m in DEFAULT_SELECTED}
    assert set(sizes(families)) == DEFAULT_SELECTED - {"/srv/data"}


async def test_readonly_from_statvfs_flag_or_mount_options(
    tmp_path: Path, restore_procfs_path: None
) -> None:
    # /srv/snapshots is mounted "ro"; /boot/efi is "rw" in /proc but statvfs says read-only
    # (as after errors=remount-ro, before /proc/mounts is re-read).
    def statvfs(path: str) -> os.statvfs_result:
        flag = os.ST_RDONLY if mountpoint_of(path) == "/boot/efi" else 0
        return os.statvfs_result((4096, 4096, 10, 5, 5, 10, 5, 5, flag, 255))

    families = await make_collector(statvfs, tmp_path).collect()
    readonly = by_mountpoint(families, "botwatch_filesystem_readonly")
    assert {m for m, v in readonly.items() if v == 1} == {"/srv/snapshots", "/boot/efi"}


def test_oom_kills_omitted_when_the_kernel_has_no_counter() -> None:
    readings = HostReadings(
        memory_total=1,
        memory_available=1,
        swap_total=0,
        swap_used=0,
        cpu_seconds={"user": 1.0},
        load=(0.0, 0.0, 0.0),
        boot_time=1.0,
        oom_kills=None,
    )
    names = {f.name for f in host_families(readings)}
    assert "botwatch_host_oom_kills" not in names
    assert "botwatch_load1" in names
    readings.oom_kills = 0
    assert "botwatch_host_oom_kills" in {f.name for f in host_families(readings)}


def test_filesystem_families_sorted_by_mountpoint() -> None:
    stat = FsStat(size=1, free=1, avail=1, files=1, files_free=1, readonly=False)
    b = Mount("/dev/b", "/b", "ext4", frozenset({"rw"}))
    a = Mount("/dev/a", "/a", "ext4", frozenset({"rw"}))
    families = filesystem_families([(b, stat), (a, None)])
    assert [s.labels["mountpoint"] for s in families[-1].samples] == ["/a", "/b"]
    assert [s.value for s in families[-1].samples] == [1, 0]


# --- mount selection -------------------------------------------------------------------


def mount(mountpoint: str, fstype: str) -> Mount:
    return Mount("/dev/x", mountpoint, fstype, frozenset({"rw"}))


@pytest.mark.parametrize(
    ("mountpoint", "fstype", "selected"),
    [
        ("/", "ext4", True),
        ("/srv/data", "xfs", True),
        ("/mnt/archive", "nfs", True),
        ("/run", "tmpfs", True),
        ("/proc", "proc", False),
        ("/sys", "sysfs", False),
        ("/sys/fs/cgroup", "cgroup2", False),
        ("/sys/fs/cgroup/memory", "cgroup", False),
        ("/dev", "devtmpfs", False),
        ("/dev/shm", "tmpfs", False),  # by mountpoint
        ("/device-data", "ext4", True),  # /dev only as a whole path component
        ("/run/credentials/systemd-journald.service", "tmpfs", False),
        ("/run/docker/netns/5b2a", "nsfs", False),  # by fstype
        ("/var/lib/docker/overlay2/9f2c/merged", "overlay", False),
        ("/", "overlay", False),  # a container's root
        ("/var/lib/docker", "ext4", True),  # docker's own volume, not what is inside it
        ("/snap/core22/1380", "squashfs", False),
    ],
)
def test_default_selection(mountpoint: str, fstype: str, selected: bool) -> None:
    assert FilesystemsConfig().selects(mount(mountpoint, fstype)) is selected


@pytest.mark.parametrize(
    ("config", "selected"),
    [
        pytest.param({}, DEFAULT_SELECTED, id="defaults"),
        pytest.param({"include_mountpoints": "^/srv/"}, {"/srv/data", "/srv/snapshots"}),
        pytest.param(
            {"include_mountpoints": "^/srv/", "exclude_fstypes": "^xfs$"},
            {"/srv/snapshots"},
            id="include-mountpoints-exclude-fstypes",
        ),
        pytest.param(
            {"exclude_mountpoints": "^/(media|mnt)/"},
            # The default exclusion is replaced, not extended: tmpfs below /dev and
            # /run/credentials come back (proc, sysfs and the like stay out by fstype).
            (DEFAULT_SELECTED - {"/media/usb backup", "/mnt/archive"})
            | {"/dev/shm", "/run/credentials/systemd-journald.service"},
            id="exclude-mountpoints-replaces-default",
        ),
        pytest.param(
            {"include_fstypes": "^tmpfs$"},
            {"/run"},  # /dev/shm and /run/credentials/* stay excluded by mountpoint
            id="include-fstypes",
        ),
        pytest.param(
            {"include_fstypes": "^(ext4|nfs)$", "exclude_fstypes": "^nfs$"},
            {"/", "/media/usb backup", "/srv/snapshots"},
            id="exclude-wins-over-include",
        ),
        pytest.param(
            {"include_mountpoints": "^/media/usb backup$"},
            {"/media/usb backup"},
            id="unescaped-mountpoint",
        ),
    ],
)
async def test_selection_through_collector(
    config: dict[str, str], selected: set[str], tmp_path: Path, restore_procfs_path: None
) -> None:
    statted: list[str] = []

    def statvfs(path: str) -> os.statvfs_result:
        statted.append(mountpoint_of(path))
        return DISK

    families = await make_collector(statvfs, tmp_path, filesystems=config).collect()
    assert set(device_errors(families)) == selected
    assert sorted(statted) == sorted(selected)


def test_invalid_regex_rejected() -> None:
    with pytest.raises(ValidationError, match="invalid regex"):
        HostConfig(filesystems={"include_mountpoints": "^/(srv"})


# --- config validation -----------------------------------------------------------------


@pytest.mark.parametrize("stat_timeout", [2.0, 3.0])
def test_stat_timeout_must_be_shorter_than_timeout(stat_timeout: float) -> None:
    with pytest.raises(ValidationError, match="shorter than the collector timeout"):
        HostConfig(interval=5.0, timeout=2.0, filesystems={"stat_timeout": stat_timeout})


def test_stat_timeout_shorter_than_timeout_accepted() -> None:
    config = HostConfig(interval=5.0, timeout=2.0, filesystems={"stat_timeout": "1500ms"})
    assert config.filesystems.stat_timeout == 1.5


def test_timeout_must_not_exceed_interval() -> None:
    with pytest.raises(ValidationError, match="must not exceed the interval"):
        HostConfig(interval=5.0, timeout=6.0, filesystems={"stat_timeout": 1.0})


def test_timeout_equal_to_interval_accepted() -> None:
    config = HostConfig(interval="5s", timeout="5s", filesystems={"stat_timeout": 1.0})
    assert (config.interval, config.timeout) == (5.0, 5.0)


def test_default_stat_timeout_follows_a_short_timeout() -> None:
    assert HostConfig(interval=5.0, timeout=2.0).filesystems.stat_timeout == 1.0
    assert HostConfig().filesystems.stat_timeout == 5.0


def test_default_timeout_follows_a_short_interval() -> None:
    config = HostConfig(interval=5.0)
    assert (config.timeout, config.filesystems.stat_timeout) == (5.0, 2.5)
    assert HostConfig(interval=60.0).timeout == 10.0


def test_explicit_values_that_do_not_fit_are_still_errors() -> None:
    with pytest.raises(ValidationError, match="must not exceed the interval"):
        HostConfig(interval=5.0, timeout=6.0)
    with pytest.raises(ValidationError, match="shorter than the collector timeout"):
        HostConfig(interval=5.0, timeout=2.0, filesystems={"stat_timeout": 3.0})
