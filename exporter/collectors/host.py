"""This host: filesystems, memory, swap, CPU, load, boot time and kernel OOM kills.

psutil reads meminfo and stat below `procfs`; mounts, loadavg and vmstat are parsed here
(psutil takes load from the running kernel and mounts from its own namespace). Each
filesystem is stat'ed in its own thread under `stat_timeout`: a dead NFS mount is reported
by botwatch_filesystem_device_error and left alone until its stuck call returns.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from pydantic import ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from exporter.collector import Context
from exporter.collectors.procfs import Mount, parse_loadavg, parse_mounts, parse_vmstat
from exporter.fields import Duration, Regex, compile_regex, format_duration
from exporter.models import CollectorConfig, Strict, effective_timeout
from exporter.registry import collector
from exporter.threads import StillBlocked

log = structlog.get_logger("exporter.collectors.host")

# The same pseudo and container-internal filesystems node_exporter skips by default.
DEFAULT_EXCLUDE_FSTYPES = (
    "^(autofs|binfmt_misc|bpf|cgroup2?|configfs|debugfs|devpts|devtmpfs|fusectl|hugetlbfs"
    "|iso9660|mqueue|nsfs|overlay|proc|procfs|pstore|rpc_pipefs|securityfs|selinuxfs"
    "|squashfs|sysfs|tracefs)$"
)
DEFAULT_EXCLUDE_MOUNTPOINTS = (
    "^/(dev|proc|run/credentials/.+|sys|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)"
)


DEFAULT_STAT_TIMEOUT = 5.0


class FilesystemsConfig(Strict):
    include_mountpoints: Regex = compile_regex(".*")
    exclude_mountpoints: Regex = compile_regex(DEFAULT_EXCLUDE_MOUNTPOINTS)
    include_fstypes: Regex = compile_regex(".*")
    exclude_fstypes: Regex = compile_regex(DEFAULT_EXCLUDE_FSTYPES)
    stat_timeout: Duration = DEFAULT_STAT_TIMEOUT

    def selects(self, mount: Mount) -> bool:
        return bool(
            self.include_mountpoints.search(mount.mountpoint)
            and not self.exclude_mountpoints.search(mount.mountpoint)
            and self.include_fstypes.search(mount.fstype)
            and not self.exclude_fstypes.search(mount.fstype)
        )


class HostConfig(CollectorConfig):
    procfs: Path = Path("/proc")
    rootfs: Path = Path("/")
    filesystems: FilesystemsConfig = FilesystemsConfig()

    @model_validator(mode="before")
    @classmethod
    def _default_stat_timeout_fits_timeout(cls, data: Any) -> Any:
        # A short collector timeout brings the per-mount one down with it.
        if isinstance(data, dict):
            filesystems = data.get("filesystems") or {}
            if isinstance(filesystems, dict) and "stat_timeout" not in filesystems:
                stat_timeout = min(DEFAULT_STAT_TIMEOUT, effective_timeout(data) / 2)
                data = {**data, "filesystems": {**filesystems, "stat_timeout": stat_timeout}}
        return data

    @field_validator("filesystems")
    @classmethod
    def _stat_within_timeout(cls, value: FilesystemsConfig, info: ValidationInfo) -> Any:
        timeout = info.data.get("timeout")
        if timeout is not None and value.stat_timeout >= timeout:
            raise PydanticCustomError(
                "timeout",
                "must be shorter than the collector timeout ({timeout})",
                {"timeout": format_duration(timeout), "at": "stat_timeout"},
            )
        return value


@dataclass(frozen=True)
class FsStat:
    size: int
    free: int
    avail: int
    files: int
    files_free: int
    readonly: bool


@dataclass
class HostReadings:
    """Everything one round read, before it becomes metrics."""

    memory_total: int
    memory_available: int
    swap_total: int
    swap_used: int
    cpu_seconds: dict[str, float]
    load: tuple[float, float, float]
    boot_time: float
    oom_kills: int | None
    filesystems: list[tuple[Mount, FsStat | None]] = field(default_factory=list)


def host_families(r: HostReadings) -> list[Metric]:
    """Pure: readings to metric families."""
    fams: list[Metric] = []

    def gauge(name: str, doc: str, value: float) -> None:
        fams.append(GaugeMetricFamily(name, doc, value=value))

    gauge("botwatch_memory_total_bytes", "Total usable memory.", r.memory_total)
    gauge(
        "botwatch_memory_available_bytes",
        "Memory available for new work without swapping (MemAvailable).",
        r.memory_available,
    )
    gauge("botwatch_swap_total_bytes", "Total swap space.", r.swap_total)
    gauge("botwatch_swap_used_bytes", "Swap space in use.", r.swap_used)
    cpu = CounterMetricFamily(
        "botwatch_cpu_seconds", "CPU time spent in each mode, all CPUs together.", labels=["mode"]
    )
    for mode, seconds in sorted(r.cpu_seconds.items()):
        cpu.add_metric([mode], seconds)
    fams.append(cpu)
    for minutes, value in zip((1, 5, 15), r.load, strict=True):
        gauge(f"botwatch_load{minutes}", f"{minutes}-minute load average.", value)
    gauge("botwatch_boot_timestamp_seconds", "When the host booted, Unix time.", r.boot_time)
    if r.oom_kills is not None:
        fams.append(
            CounterMetricFamily(
                "botwatch_host_oom_kills",
                "Processes the kernel OOM killer has ended since boot (/proc/vmstat oom_kill).",
                value=r.oom_kills,
            )
        )
    fams.extend(filesystem_families(r.filesystems))
    return fams


_FS_GAUGES = (
    ("size_bytes", "Filesystem size.", "size"),
    ("free_bytes", "Free space, including blocks reserved for root.", "free"),
    ("avail_bytes", "Space available to unprivileged users.", "avail"),
    ("files", "Total inodes.", "files"),
    ("files_free", "Free inodes.", "files_free"),
)


def filesystem_families(filesystems: list[tuple[Mount, FsStat | None]]) -> list[Metric]:
    labels = ["device", "mountpoint", "fstype"]
    fams = {
        attr: GaugeMetricFamily(f"botwatch_filesystem_{suffix}", doc, labels=labels)
        for suffix, doc, attr in _FS_GAUGES
    }
    readonly = GaugeMetricFamily(
        "botwatch_filesystem_readonly", "1 if the filesystem is mounted read-only.", labels=labels
    )
    error = GaugeMetricFamily(
        "botwatch_filesystem_device_error",
        "1 if the filesystem could not be stat'ed in time (hung, gone or denied).",
        labels=labels,
    )
    for mount, stat in sorted(filesystems, key=lambda item: item[0].mountpoint):
        values = [mount.device, mount.mountpoint, mount.fstype]
        error.add_metric(values, 0 if stat else 1)
        readonly.add_metric(values, 1 if mount.readonly or (stat and stat.readonly) else 0)
        if stat:
            for attr, fam in fams.items():
                fam.add_metric(values, getattr(stat, attr))
    return [*fams.values(), readonly, error]


def statvfs_reading(statvfs: Callable[[str], os.statvfs_result], path: str) -> FsStat:
    st = statvfs(path)
    return FsStat(
        size=st.f_blocks * st.f_frsize,
        free=st.f_bfree * st.f_frsize,
        avail=st.f_bavail * st.f_frsize,
        files=st.f_files,
        files_free=st.f_ffree,
        readonly=bool(st.f_flag & os.ST_RDONLY),
    )


def read_mount_table(procfs: Path) -> str:
    """PID 1's mount table is the host's even from inside a container (with hostPID)."""
    try:
        return (procfs / "1" / "mounts").read_text()
    except OSError:  # absent in fixture trees, or hidden by hidepid
        return (procfs / "self" / "mounts").read_text()


class HostCollector:
    def __init__(
        self,
        config: HostConfig,
        ctx: Context,
        statvfs: Callable[[str], os.statvfs_result] = os.statvfs,
    ) -> None:
        self.config = config
        self.ctx = ctx
        self._statvfs = statvfs
        self._failing_mounts: set[str] = set()

    async def collect(self) -> list[Metric]:
        readings = await self.ctx.blocking.run("host /proc", self._read_proc)
        mounts = [m for m in readings.pop("mounts") if self.config.filesystems.selects(m)]
        stats = await asyncio.gather(*(self._stat(m) for m in mounts))
        return host_families(
            HostReadings(**readings, filesystems=list(zip(mounts, stats, strict=True)))
        )

    def _read_proc(self) -> dict[str, Any]:
        import psutil

        procfs = self.config.procfs
        # psutil has one process-wide procfs root; botwatch has one host collector.
        psutil.PROCFS_PATH = str(procfs)
        memory = psutil.virtual_memory()
        swap = psutil.swap_memory()
        cpu = psutil.cpu_times()
        vmstat = parse_vmstat((procfs / "vmstat").read_text())
        return {
            "memory_total": memory.total,
            "memory_available": memory.available,
            "swap_total": swap.total,
            "swap_used": swap.used,
            "cpu_seconds": cpu._asdict(),
            "load": parse_loadavg((procfs / "loadavg").read_text()),
            "boot_time": psutil.boot_time(),
            "oom_kills": vmstat.get("oom_kill"),
            "mounts": parse_mounts(read_mount_table(procfs)),
        }

    async def _stat(self, mount: Mount) -> FsStat | None:
        path = str(self.config.rootfs / mount.mountpoint.lstrip("/"))
        try:
            stat = await asyncio.wait_for(
                self.ctx.blocking.run(
                    f"statvfs {mount.mountpoint}", statvfs_reading, self._statvfs, path
                ),
                self.config.filesystems.stat_timeout,
            )
        except (TimeoutError, StillBlocked, OSError) as exc:
            if mount.mountpoint not in self._failing_mounts:
                self._failing_mounts.add(mount.mountpoint)
                reason = "timed out" if isinstance(exc, TimeoutError) else str(exc)
                log.warning(
                    "filesystem unreadable",
                    collector=self.ctx.name,
                    mountpoint=mount.mountpoint,
                    error=reason,
                )
            return None
        if mount.mountpoint in self._failing_mounts:
            self._failing_mounts.discard(mount.mountpoint)
            log.info(
                "filesystem readable again", collector=self.ctx.name, mountpoint=mount.mountpoint
            )
        return stat


@collector(
    "host",
    config=HostConfig,
    kind="poller",
    help="Filesystems, memory, swap, CPU, load, boot time and kernel OOM kills (psutil, /proc).",
)
def build(config: HostConfig, ctx: Context) -> HostCollector:
    return HostCollector(config, ctx)
