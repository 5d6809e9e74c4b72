"""Docker Engine API container JSON -> metric families. Pure: no I/O, no docker SDK.

Input per container: its entry from `GET /containers/json?all=1`, its inspect
(`GET /containers/{id}/json`) and, for running containers, an optional one-shot
`GET /containers/{id}/stats?stream=0`. Docker and podman's compatible API both fit;
where podman differs (State.Status "stopped", no memory_stats.stats) it is noted below.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
)
from prometheus_client.metrics_core import Metric

from exporter.logs.dockerlogs import NS, parse_timestamp

JSON = Mapping[str, Any]

STATES = ("created", "running", "paused", "restarting", "removing", "exited", "dead")
HEALTH = ("starting", "healthy", "unhealthy", "none")
COMPOSE_PROJECT = "com.docker.compose.project"
COMPOSE_SERVICE = "com.docker.compose.service"
# podman's own words for Docker's states (libpod ContainerStatus), as its compat API
# passes them through in inspect State.Status.
_PODMAN_STATES = {
    "configured": "created",
    "initialized": "created",
    "stopped": "exited",
    "stopping": "running",
}


@dataclass(frozen=True)
class ContainerReading:
    """What one round read about one container."""

    listed: JSON
    inspect: JSON
    stats: JSON | None = None


@dataclass(frozen=True)
class Selection:
    include: re.Pattern[str]
    exclude: re.Pattern[str]
    compose_projects: tuple[str, ...] = ()

    def selects(self, name: str, labels: Mapping[str, str] | None) -> bool:
        if not self.include.search(name) or self.exclude.search(name):
            return False
        if self.compose_projects:
            return (labels or {}).get(COMPOSE_PROJECT) in self.compose_projects
        return True

    def selects_listed(self, entry: JSON) -> bool:
        """Decided on the list entry, so unselected containers are never inspected."""
        return self.selects(listed_name(entry), entry.get("Labels"))


def listed_name(entry: JSON) -> str:
    """The container's own name from a list entry (Names also holds links: "/web/db")."""
    names = [str(n).lstrip("/") for n in entry.get("Names") or ()]
    own = [n for n in names if "/" not in n]
    return (own or names or [str(entry.get("Id", ""))[:12]])[0]


def container_name(inspect: JSON) -> str:
    return str(inspect.get("Name") or "").lstrip("/") or str(inspect.get("Id", ""))[:12]


def container_state(state: JSON) -> str | None:
    """One of STATES, or None for a status this version does not know."""
    if state.get("Dead"):
        return "dead"
    if state.get("Restarting"):
        return "restarting"
    if state.get("Paused"):
        return "paused"
    status = str(state.get("Status") or "").lower()
    if status in STATES:
        return status
    if status in _PODMAN_STATES:
        return _PODMAN_STATES[status]
    return "running" if state.get("Running") else None


def health_status(state: JSON) -> str:
    """One of HEALTH; "none" when the container has no health check."""
    health = state.get("Health") or {}
    status = str(health.get("Status") or "").lower()
    return status if status in HEALTH else "none"


def engine_time_ns(text: Any) -> int | None:
    """An engine timestamp -> ns since the epoch; None for the zero time (0001-01-01) or garbage."""
    if not isinstance(text, str) or not text or text.startswith("0001-01-01"):
        return None
    try:
        ns = parse_timestamp(text.encode())
    except ValueError:
        return None
    return ns if ns > 0 else None


def engine_time(text: Any) -> float | None:
    """An engine timestamp -> Unix seconds (see engine_time_ns)."""
    ns = engine_time_ns(text)
    return None if ns is None else ns / NS


def working_set(memory: JSON) -> float | None:
    """Usage minus inactive file cache (what the OOM killer weighs), as `docker stats` does.

    cgroup v1 reports total_inactive_file (and inactive_file), v2 inactive_file; podman
    reports no breakdown at all, and then the working set is the usage.
    """
    usage = memory.get("usage")
    if usage is None:
        return None
    breakdown = memory.get("stats") or {}
    inactive = breakdown.get("total_inactive_file", breakdown.get("inactive_file", 0))
    return float(usage - inactive if inactive < usage else usage)


def restart_policy(inspect: JSON) -> str:
    policy = ((inspect.get("HostConfig") or {}).get("RestartPolicy") or {}).get("Name")
    return str(policy or "no")


def container_families(readings: Sequence[ContainerReading]) -> list[Metric]:
    """Pure: the round's readings to metric families (sorted by container name)."""
    label = ["container"]
    state_fam = GaugeMetricFamily(
        "botwatch_container_state",
        "1 for the container's current state, 0 for the others.",
        labels=["container", "state"],
    )
    health_fam = GaugeMetricFamily(
        "botwatch_container_health",
        'Health-check status, 1 for the current one ("none": no health check).',
        labels=["container", "status"],
    )
    # Not `_restart_count`: promtool rejects `_count` outside histograms and summaries.
    # A counter (inspect RestartCount; it resets when the container is recreated), so
    # increase() over a window is the restart rate an alert wants.
    restarts = CounterMetricFamily(
        "botwatch_container_restarts",
        "Times the engine has restarted the container (inspect RestartCount).",
        labels=label,
    )
    exit_code = GaugeMetricFamily(
        "botwatch_container_exit_code",
        "Exit code of the container's last run (0 while it has never exited).",
        labels=label,
    )
    oom = GaugeMetricFamily(
        "botwatch_container_oom_killed",
        "1 if the last run was ended by the OOM killer (inspect State.OOMKilled).",
        labels=label,
    )
    started = GaugeMetricFamily(
        "botwatch_container_started_timestamp_seconds",
        "When the container last started, Unix time.",
        labels=label,
    )
    finished = GaugeMetricFamily(
        "botwatch_container_finished_timestamp_seconds",
        "When the container last stopped, Unix time (absent if it never has).",
        labels=label,
    )
    mem_usage = GaugeMetricFamily(
        "botwatch_container_memory_usage_bytes",
        "Memory charged to the container's cgroup, page cache included.",
        labels=label,
    )
    mem_ws = GaugeMetricFamily(
        "botwatch_container_memory_working_set_bytes",
        "Memory usage minus inactive file cache.",
        labels=label,
    )
    mem_limit = GaugeMetricFamily(
        "botwatch_container_memory_limit_bytes",
        "The container's memory limit (absent when unlimited).",
        labels=label,
    )
    cpu = CounterMetricFamily(
        "botwatch_container_cpu_seconds",
        "CPU time the container has used, all CPUs together.",
        labels=label,
    )
    info = InfoMetricFamily(
        "botwatch_container",
        "The container's image, compose project and service, and restart policy.",
        labels=["container", "image", "compose_project", "compose_service", "restart_policy"],
    )
    for r in sorted(readings, key=lambda r: container_name(r.inspect)):
        name = container_name(r.inspect)
        state = r.inspect.get("State") or {}
        config = r.inspect.get("Config") or {}
        current = container_state(state)
        for s in STATES:
            state_fam.add_metric([name, s], 1 if s == current else 0)
        status = health_status(state)
        for h in HEALTH:
            health_fam.add_metric([name, h], 1 if h == status else 0)
        restarts.add_metric([name], float(r.inspect.get("RestartCount") or 0))
        exit_code.add_metric([name], float(state.get("ExitCode") or 0))
        oom.add_metric([name], 1 if state.get("OOMKilled") else 0)
        for fam, key in ((started, "StartedAt"), (finished, "FinishedAt")):
            when = engine_time(state.get(key))
            if when is not None:
                fam.add_metric([name], when)
        limit = (r.inspect.get("HostConfig") or {}).get("Memory") or 0
        if limit > 0:
            mem_limit.add_metric([name], float(limit))
        if r.stats is not None:
            memory = r.stats.get("memory_stats") or {}
            if memory.get("usage") is not None:
                mem_usage.add_metric([name], float(memory["usage"]))
            ws = working_set(memory)
            if ws is not None:
                mem_ws.add_metric([name], ws)
            total = ((r.stats.get("cpu_stats") or {}).get("cpu_usage") or {}).get("total_usage")
            if total is not None:
                cpu.add_metric([name], total / NS)
        labels = config.get("Labels") or r.listed.get("Labels") or {}
        image = config.get("Image") or r.listed.get("Image") or r.inspect.get("Image") or ""
        info.add_metric(
            [
                name,
                str(image),
                str(labels.get(COMPOSE_PROJECT, "")),
                str(labels.get(COMPOSE_SERVICE, "")),
                restart_policy(r.inspect),
            ],
            {},
        )
    return [
        state_fam,
        health_fam,
        restarts,
        exit_code,
        oom,
        started,
        finished,
        mem_usage,
        mem_ws,
        mem_limit,
        cpu,
        info,
    ]
