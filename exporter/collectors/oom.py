"""OOM kills as counters an alert can rely on: from the memory cgroups and the kernel log.

Two sources, because each misses what the other sees:
- the cgroups' own counters (memory.events / memory.oom_control), read every `interval`
  under `timeout` for the selected cgroups. A unit's cgroup is removed and created afresh
  (at 0) on every restart, so botwatch keeps its own monotonic totals (oomledger.py). A
  unit killed and restarted between two reads leaves no trace here;
- the kernel log, followed in a daemon thread: every `Killed process` record, with the
  victim's cgroup from the `oom-kill:` record before it. It needs CAP_SYSLOG (or root);
  without it only `botwatch_oom_kernel_log_up` says so, the cgroups go on.

The cgroup scan is what `run` does: when the hierarchy cannot be read the collector is
down. The kernel log and the checkpoint do not depend on it: they start with the first
`run` and go on until `close`, so kills the kernel reports are counted (and published) even
while the cgroup part is failing. Totals, the cgroups' last raw values and the kernel log
position (boot id + SEQ) are checkpointed together, so after a restart of botwatch each
kill is counted once.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog
from prometheus_client.metrics_core import Metric
from pydantic import Field

from exporter.collector import Context
from exporter.collectors.oomcgroupfs import CgroupError, Hierarchy, scan
from exporter.collectors.oomkmsg import KernelLogUnavailable, follow, read_boot_id
from exporter.collectors.oomledger import (
    CgroupLedger,
    KernelLedger,
    cgroup_families,
    kernel_families,
)
from exporter.collectors.oomparse import KmsgBatch, KmsgDecoder
from exporter.fields import Regex, compile_regex
from exporter.models import CollectorConfig, Strict
from exporter.registry import collector
from exporter.statefile import Checkpoint
from exporter.threads import StillBlocked

log = structlog.get_logger("exporter.collectors.oom")

CHECKPOINT_INTERVAL = 1.0
# The kernel log moving on without a kill (other subsystems' records) is saved seldom: a
# checkpoint only has to keep counts and position in step, and a kill saves both at once.
POSITION_SAVE_INTERVAL = 60.0
# How long a first round waits for the kernel log to be opened (or found unreadable).
KERNEL_LOG_WAIT = 2.0
# systemd services, and containers: docker, podman, containerd (kubernetes) and CRI-O scopes
# (systemd cgroup driver), docker's and podman's directories (cgroupfs driver).
DEFAULT_INCLUDE = (
    r"\.service$"
    r"|/(docker|libpod|cri-containerd|crio)-[0-9a-f]{64}\.scope$"
    r"|/docker/[0-9a-f]{64}$"
    r"|/libpod_parent/libpod-[0-9a-f]{64}$"
)


class CgroupSelection(Strict):
    """Cgroups by their path relative to the hierarchy (`/system.slice/x.service`)."""

    include: Regex = compile_regex(DEFAULT_INCLUDE)
    exclude: Regex = compile_regex("^$")

    def selects(self, path: str) -> bool:
        return bool(self.include.search(path) and not self.exclude.search(path))


class OomConfig(CollectorConfig):
    sysfs: Path = Path("/sys")  # cgroups under {sysfs}/fs/cgroup (node_exporter's --path.sysfs)
    procfs: Path = Path("/proc")  # the boot id, to tell a reboot from a restart of botwatch
    kmsg: Path = Path("/dev/kmsg")
    kernel_log: bool = True
    cgroups: CgroupSelection = CgroupSelection()
    max_values: int = Field(default=50, ge=1, le=1000)


class OomCollector:
    def __init__(self, config: OomConfig, ctx: Context) -> None:
        self.config = config
        self.ctx = ctx
        self.log = log.bind(collector=ctx.name)
        self.checkpoint = Checkpoint.of(ctx, "oom")
        # None until the first run restored them from the checkpoint.
        self.cgroups: CgroupLedger | None = None
        self.kernel: KernelLedger | None = None
        self.kernel_up = False
        self.hierarchy: Hierarchy | None = None
        self._boot_id: str | None = None
        self._changed: Callable[[], None] = _nothing
        self._tasks: list[asyncio.Task[None]] = []
        # Batches of a reader that has been replaced or stopped are not applied: their
        # records are read again from the position the counts belong to.
        self._reader = 0
        self._kernel_failure: str | None = None
        self._malformed_streak = False
        self._dirty = False  # counts changed: save within CHECKPOINT_INTERVAL
        self._moved = False  # only the kernel log position moved
        self._saving = asyncio.Lock()
        # Set once the kernel log was opened or found unreadable: the first publish (and
        # `once`) then says which, rather than "not read" for a log about to be opened.
        self._kernel_known = asyncio.Event()

    # The Stream protocol -------------------------------------------------------------

    async def run(self, changed: Callable[[], None]) -> None:
        if self.cgroups is None:
            await self._restore()
        if not self._tasks:
            self._tasks.append(asyncio.create_task(self._checkpointer()))
            if self.config.kernel_log:
                self._tasks.append(asyncio.create_task(self._kernel_log()))
        # The kernel log announces its updates through `self._changed`: this run's changed()
        # once its first scan is done (a run is up only then), or the last ended run's,
        # which publishes without marking anything up (kills are counted while it is down).
        try:
            while True:
                await self._scan()
                if self.config.kernel_log and not self._kernel_known.is_set():
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(min(KERNEL_LOG_WAIT, self.config.timeout)):
                            await self._kernel_known.wait()
                self._changed = changed
                changed()
                await asyncio.sleep(self.config.interval)
        finally:
            self._changed = changed

    def families(self) -> list[Metric]:
        fams: list[Metric] = []
        if self.cgroups is not None:
            fams += cgroup_families(self.cgroups)
        if self.kernel is not None and self.config.kernel_log:
            fams += kernel_families(self.kernel, self.kernel_up)
        fams.append(self.checkpoint.errors_family())
        return fams

    async def close(self) -> None:
        self._reader += 1
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.cgroups is not None:
            await self._save()
        self.checkpoint.unlock()

    # The cgroups ---------------------------------------------------------------------

    async def _scan(self) -> None:
        assert self.cgroups is not None
        timeout = self.config.timeout
        try:
            async with asyncio.timeout(timeout):
                hierarchy, readings = await self.ctx.blocking.run(
                    f"{self.ctx.name} cgroups", scan, self.config.sysfs, self.config.cgroups.selects
                )
        except TimeoutError:
            raise CgroupError(f"cgroup scan: no answer within {timeout:g}s") from None
        except StillBlocked as exc:
            raise CgroupError(f"cgroup scan: {exc}") from None
        if hierarchy != self.hierarchy:
            self.log.info(
                "reading memory cgroups", version=hierarchy.version, root=str(hierarchy.root)
            )
            self.hierarchy = hierarchy
        if self.cgroups.update(readings, time.time()):
            self._dirty = True

    # The kernel log ------------------------------------------------------------------

    async def _kernel_log(self) -> None:
        """Follow the kernel log; when it cannot be read, try again every interval."""
        loop = asyncio.get_running_loop()
        while True:
            self._reader += 1
            reader = self._reader
            stop = threading.Event()

            def opened(reader: int = reader) -> None:
                with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                    loop.call_soon_threadsafe(self._opened, reader)

            def deliver(batch: KmsgBatch, reader: int = reader) -> None:
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(self._apply, reader, batch)

            decoder = KmsgDecoder(self._start_after())
            try:
                await self.ctx.blocking.run(
                    f"{self.ctx.name} kernel log",
                    follow,
                    self.config.kmsg,
                    decoder,
                    stop,
                    opened,
                    deliver,
                )
            except KernelLogUnavailable as exc:
                self._unavailable(str(exc))
            except StillBlocked:
                pass  # the previous reader has not seen its stop yet (within STOP_POLL)
            finally:
                stop.set()
            await asyncio.sleep(self.config.interval)

    def _start_after(self) -> int | None:
        """Where a (re)opened kernel log starts counting (see KmsgDecoder)."""
        assert self.kernel is not None
        kernel, boot_id = self.kernel, self._boot_id
        if kernel.boot_id != boot_id:
            # Another boot: all its records are new. No boot seen yet (a first start), or
            # none readable now: what the log holds now is from before botwatch counted.
            known = kernel.boot_id is not None and boot_id is not None
            kernel.boot_id, kernel.seq = boot_id, -1 if known else None
            self._dirty = True
        return kernel.seq

    def _opened(self, reader: int) -> None:
        if reader != self._reader:
            return
        self.kernel_up = True
        self._kernel_known.set()
        if self._kernel_failure is not None:
            self.log.info("kernel log readable again", path=str(self.config.kmsg))
            self._kernel_failure = None
        self._changed()

    def _unavailable(self, error: str) -> None:
        self.kernel_up = False
        self._kernel_known.set()
        # Not the collector's failure: the cgroups are still counted. Logged once a streak.
        if self._kernel_failure is None:
            self.log.warning(
                "kernel log unavailable: OOM kills are counted from cgroups only",
                path=str(self.config.kmsg),
                error=error,
            )
        self._kernel_failure = error
        self._changed()

    def _apply(self, reader: int, batch: KmsgBatch) -> None:
        if reader != self._reader or self.kernel is None:
            return
        kernel = self.kernel
        for kill in batch.kills:
            kernel.count(kill)
        kernel.lost += batch.lost
        kernel.malformed += len(batch.malformed)
        if batch.last_seq is not None:
            kernel.seq = batch.last_seq
        if batch.malformed and not self._malformed_streak:
            # Counted every time, logged once per streak.
            self.log.warning("malformed kernel log record", error=batch.malformed[0])
            self._malformed_streak = True
        if batch.last_ok:
            self._malformed_streak = False
        if batch.kills or batch.lost or batch.malformed:
            self._dirty = True
            self._changed()
        else:
            self._moved = True

    # The checkpoint ------------------------------------------------------------------

    async def _restore(self) -> None:
        try:
            self.checkpoint.lock()
        except OSError as exc:
            # No state_dir to write: OOM kills are still worth counting; the counters then
            # start again at each restart, and every failed save is counted.
            self.log.error(
                "oom checkpoint unavailable: counters will not survive a restart",
                error=f"{exc.strerror}: {exc.filename}",
            )
        saved = await self.ctx.blocking.run(f"{self.ctx.name} checkpoint", self.checkpoint.load)
        self._boot_id = await self.ctx.blocking.run(
            f"{self.ctx.name} boot id", read_boot_id, self.config.procfs
        )
        cgroups, kernel = CgroupLedger(), KernelLedger(self.config.max_values)
        if saved:
            try:
                cgroups = CgroupLedger.from_json(saved["cgroups"])
                kernel = KernelLedger.from_json(saved["kernel"], self.config.max_values)
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                self.log.error("oom checkpoint unusable: counting starts again", error=repr(exc))
        self.cgroups, self.kernel = cgroups, kernel

    def _state(self) -> dict[str, Any]:
        assert self.cgroups is not None and self.kernel is not None
        return {"cgroups": self.cgroups.to_json(), "kernel": self.kernel.to_json()}

    async def _save(self) -> None:
        # One save at a time, so close() waits for one in flight instead of colliding.
        async with self._saving:
            if not await self.checkpoint.save(self._state()):
                self._dirty = True

    async def _checkpointer(self) -> None:
        saved_at = time.monotonic()
        while True:
            await asyncio.sleep(CHECKPOINT_INTERVAL)
            moved = self._moved and time.monotonic() - saved_at >= POSITION_SAVE_INTERVAL
            if not (self._dirty or moved):
                continue
            self._dirty = self._moved = False
            saved_at = time.monotonic()
            # Shielded: a close() meanwhile waits for this write, then writes the last state.
            await asyncio.shield(self._save())


def _nothing() -> None:
    pass


@collector(
    "oom",
    config=OomConfig,
    kind="stream",
    help="OOM kills: per-cgroup counters (memory.events, memory.oom_control) kept monotonic "
    "across unit restarts, and each kill in the kernel log with its process and cgroup.",
)
def build(config: OomConfig, ctx: Context) -> OomCollector:
    return OomCollector(config, ctx)
