"""Named groups of processes, picked by name or command line: are they running, since
when, and what they use (CPU, memory, threads, file descriptors, TCP connections).

What the runbooks do by hand with `top -b -n 1 | grep python`, `lsof -p $(pgrep -f
"python.*bot")` and `netstat -an | grep ESTABLISHED`. One pass over procfs per round
(`processscan`), then pure aggregation (`processgroup`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import structlog
from prometheus_client.metrics_core import Metric
from pydantic import Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from exporter.collector import Context
from exporter.collectors.processgroup import ProcessGroups, ProcessSample
from exporter.collectors.processscan import scan
from exporter.fields import Regex
from exporter.models import CollectorConfig, Strict, ensure_unique
from exporter.registry import collector

log = structlog.get_logger("exporter.collectors.process")


class ProcessGroupConfig(Strict):
    # The `process` label.
    name: str
    # Searched in the process name (comm, or the program's file name when comm is cut).
    match_name: Regex | None = None
    # Searched in the arguments joined by spaces.
    match_cmdline: Regex | None = None

    @field_validator("name")
    @classmethod
    def _named(cls, value: str) -> str:
        if not value.strip():
            raise PydanticCustomError("name", "must not be empty")
        return value

    @model_validator(mode="after")
    def _selects_something(self) -> ProcessGroupConfig:
        if self.match_name is None and self.match_cmdline is None:
            raise PydanticCustomError(
                "selector", "needs match_name, match_cmdline or both (both must match)"
            )
        return self


class ProcessConfig(CollectorConfig):
    # Read another procfs, e.g. the host's mounted at /host/proc in a container.
    procfs: Path = Path("/proc")
    # Distinct (direction, port) labels per group; later ports count as "other".
    max_ports: int = Field(10, ge=1, le=1000)
    processes: list[ProcessGroupConfig] = []

    def wanted(self) -> bool:
        return self.enabled and bool(self.processes)

    @field_validator("processes")
    @classmethod
    def _unique(cls, value: list[ProcessGroupConfig]) -> list[ProcessGroupConfig]:
        ensure_unique(value, "process name")
        return value


class ProcessCollector:
    def __init__(self, config: ProcessConfig, ctx: Context) -> None:
        self.config = config
        self.ctx = ctx
        self.groups = ProcessGroups([p.name for p in config.processes], config.max_ports)
        self._denied: set[str] = set()

    async def collect(self) -> list[Metric]:
        members = await self.ctx.blocking.run(
            "process scan", scan, self.config.procfs, self.config.processes
        )
        self._log_access(members)
        return self.groups.update(members)

    def _log_access(self, members: Mapping[str, Sequence[ProcessSample]]) -> None:
        """Once when a group's fds become unreadable, once when they are readable again."""
        for name in self.groups.names:
            denied = [s.pid for s in members.get(name, ()) if s.denied]
            if denied and name not in self._denied:
                self._denied.add(name)
                log.warning(
                    "process fds not readable (needs root or CAP_SYS_PTRACE)",
                    collector=self.ctx.name,
                    process=name,
                    pids=denied,
                )
            elif name in self._denied and members.get(name) and not denied:
                self._denied.discard(name)
                log.info("process fds readable again", collector=self.ctx.name, process=name)


@collector(
    "process",
    config=ProcessConfig,
    kind="poller",
    help="Processes by name or command line: up, CPU, memory, threads, fds, TCP connections.",
)
def build(config: ProcessConfig, ctx: Context) -> ProcessCollector:
    return ProcessCollector(config, ctx)
