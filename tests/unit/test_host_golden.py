"""The host collector over a fixture /proc, rendered and compared byte for byte.

`make update-golden` (BOTWATCH_UPDATE_GOLDEN=1) rewrites tests/fixtures/golden/host.prom
instead of comparing; review the diff before committing it. CPU seconds are ticks divided
by SC_CLK_TCK, which is 100 on Linux.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter.collector import Context
from exporter.collectors.host import HostCollector, HostConfig
from exporter.render import render_text
from exporter.threads import BlockingCalls

FIXTURES = Path(__file__).parent.parent / "fixtures"
ROOTFS = FIXTURES / "host"
GOLDEN = FIXTURES / "golden" / "host.prom"
UNREADABLE = "/mnt/archive"


def fs(
    blocks: int, bfree: int, bavail: int, files: int, ffree: int, flag: int = 0
) -> os.statvfs_result:
    """A statvfs result with 4 KiB blocks (f_bsize, f_frsize, ..., f_flag, f_namemax)."""
    return os.statvfs_result((4096, 4096, blocks, bfree, bavail, files, ffree, ffree, flag, 255))


# Keyed by mountpoint; the fake statvfs is called with the path below ROOTFS.
STATVFS = {
    "/": fs(61_202_366, 20_117_504, 16_989_183, 15_302_656, 14_211_381, os.ST_RELATIME),
    "/boot/efi": fs(130_812, 129_540, 129_540, 0, 0, os.ST_RELATIME),
    "/media/usb backup": fs(244_190_208, 98_304_000, 85_999_616, 61_054_976, 60_998_112),
    "/run": fs(407_586, 405_881, 405_881, 2_038_070, 2_036_998, os.ST_NOSUID | os.ST_NODEV),
    "/srv/data": fs(488_243_200, 300_000_000, 300_000_000, 195_297_280, 195_000_000),
    "/srv/snapshots": fs(
        122_096_646, 10_000_000, 3_899_834, 30_531_584, 30_400_000, os.ST_RDONLY | os.ST_RELATIME
    ),
}


class FakeStatvfs:
    def __init__(self, rootfs: Path) -> None:
        self.rootfs = rootfs
        self.paths: list[str] = []

    def __call__(self, path: str) -> os.statvfs_result:
        self.paths.append(path)
        relative = Path(path).relative_to(self.rootfs).as_posix()
        mountpoint = "/" if relative == "." else f"/{relative}"
        if mountpoint == UNREADABLE:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)
        return STATVFS[mountpoint]


async def collect_fixture(tmp_path: Path) -> tuple[bytes, FakeStatvfs]:
    statvfs = FakeStatvfs(ROOTFS)
    collector = HostCollector(
        HostConfig(procfs=ROOTFS / "proc", rootfs=ROOTFS),
        Context(name="host", state_dir=tmp_path, blocking=BlockingCalls()),
        statvfs=statvfs,
    )
    families = await collector.collect()
    return render_text(families), statvfs


def samples(body: bytes) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }


def fs_labels(device: str, mountpoint: str, fstype: str) -> frozenset[tuple[str, str]]:
    return frozenset({"device": device, "mountpoint": mountpoint, "fstype": fstype}.items())


async def test_host_golden(tmp_path: Path, restore_procfs_path: None) -> None:
    body, statvfs = await collect_fixture(tmp_path)

    # The meaning of the golden file, checked independently of it, so that a careless
    # `make update-golden` cannot bless a regression.
    got = samples(body)
    assert got["botwatch_memory_total_bytes", frozenset()] == 16_303_428 * 1024
    assert got["botwatch_memory_available_bytes", frozenset()] == 9_872_104 * 1024
    assert got["botwatch_swap_used_bytes", frozenset()] == (4_194_300 - 3_801_084) * 1024
    assert got["botwatch_host_oom_kills_total", frozenset()] == 3
    assert got["botwatch_load15", frozenset()] == 0.61
    assert got["botwatch_boot_timestamp_seconds", frozenset()] == 1_767_168_000
    assert got["botwatch_cpu_seconds_total", frozenset({("mode", "user")})] == pytest.approx(
        4_705_163 / os.sysconf("SC_CLK_TCK")
    )
    errors = {
        dict(labels)["mountpoint"]: value
        for (name, labels), value in got.items()
        if name == "botwatch_filesystem_device_error"
    }
    # Pseudo and container filesystems are skipped; the escaped space is decoded.
    assert errors == {
        "/": 0,
        "/boot/efi": 0,
        "/media/usb backup": 0,
        "/mnt/archive": 1,
        "/run": 0,
        "/srv/data": 0,
        "/srv/snapshots": 0,
    }
    assert sorted(statvfs.paths) == sorted(
        [str(ROOTFS), *(str(ROOTFS / m.lstrip("/")) for m in errors if m != "/")]
    )
    # The later of the two /srv/data mounts wins.
    data = fs_labels("/dev/mapper/vg0-data", "/srv/data", "xfs")
    assert got["botwatch_filesystem_size_bytes", data] == 488_243_200 * 4096
    archive = fs_labels("nas01:/export/archive", "/mnt/archive", "nfs")
    assert ("botwatch_filesystem_size_bytes", archive) not in got
    readonly = {
        dict(labels)["mountpoint"]
        for (name, labels), value in got.items()
        if name == "botwatch_filesystem_readonly" and value == 1
    }
    assert readonly == {"/srv/snapshots"}

    if os.environ.get("BOTWATCH_UPDATE_GOLDEN") == "1":
        GOLDEN.write_bytes(body)  # then compared like any run; review the diff before commit
    assert GOLDEN.exists(), f"{GOLDEN} is missing: run `make update-golden`"
    # Compared as text so that a mismatch shows a line diff; then as bytes.
    assert body.decode() == GOLDEN.read_text(), "output changed: `make update-golden` if intended"
    assert body == GOLDEN.read_bytes()


def test_golden_passes_promtool() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail(
            "promtool not found: install Debian's `prometheus` package "
            "(`make test` does, via scripts/install-debs.sh scripts/test-deps.txt)"
        )
    with GOLDEN.open("rb") as golden:
        result = subprocess.run(
            [promtool, "check", "metrics"],
            stdin=golden,
            capture_output=True,
            timeout=60,
            check=False,
        )
    output = (result.stdout + result.stderr).decode()
    assert result.returncode == 0, f"promtool check metrics failed:\n{output}"
