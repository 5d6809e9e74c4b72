"""systemd unit properties (as D-Bus GetAll returns them) -> metric families. Pure: no I/O.

Input per unit: the properties of its org.freedesktop.systemd1.Unit interface and, for a
service, of org.freedesktop.systemd1.Service, with Variants already unwrapped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.metrics_core import Metric

ACTIVE_STATES = ("active", "activating", "deactivating", "inactive", "failed", "reloading")
# Service results as systemd names them (service_result_table in systemd's service.c).
RESULTS = (
    "success",
    "protocol",
    "timeout",
    "exit-code",
    "signal",
    "core-dump",
    "watchdog",
    "start-limit-hit",
    "resources",
    "oom-kill",
)
# systemd's "no value" for a uint64 property (MemoryCurrent without memory accounting).
UINT64_MAX = 2**64 - 1
USEC = 1_000_000


@dataclass(frozen=True)
class UnitReading:
    name: str
    unit: Mapping[str, Any]
    service: Mapping[str, Any] | None = None


def _number(props: Mapping[str, Any] | None, key: str) -> float | None:
    if props is None:
        return None
    value = props.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def unit_families(readings: Sequence[UnitReading]) -> list[Metric]:
    label = ["unit"]
    state = GaugeMetricFamily(
        "botwatch_systemd_unit_state",
        "1 for the unit's current ActiveState, 0 for the others.",
        labels=["unit", "state"],
    )
    sub_state = InfoMetricFamily(
        "botwatch_systemd_unit_sub_state",
        "The unit's SubState (running, dead, auto-restart, exited, ...).",
        labels=["unit", "sub_state"],
    )
    active_enter = GaugeMetricFamily(
        "botwatch_systemd_unit_active_enter_timestamp_seconds",
        "When the unit last entered the active state, Unix time (absent if it never has).",
        labels=label,
    )
    memory = GaugeMetricFamily(
        "botwatch_systemd_unit_memory_bytes",
        "Memory of the unit's cgroup (MemoryCurrent; absent without memory accounting).",
        labels=label,
    )
    restarts = CounterMetricFamily(
        "botwatch_systemd_service_restarts",
        "Automatic restarts of the service (NRestarts; reset when it is started by hand).",
        labels=label,
    )
    result = GaugeMetricFamily(
        "botwatch_systemd_unit_result",
        "1 for the service's last Result (oom-kill, exit-code, signal, ...), 0 for the others.",
        labels=["unit", "result"],
    )
    exit_status = GaugeMetricFamily(
        "botwatch_systemd_service_main_exit_status",
        "Exit status of the service's main process when it last exited (or its signal).",
        labels=label,
    )
    for r in sorted(readings, key=lambda r: r.name):
        current = r.unit.get("ActiveState")
        for s in ACTIVE_STATES:
            state.add_metric([r.name, s], 1 if s == current else 0)
        sub = r.unit.get("SubState")
        if isinstance(sub, str) and sub:
            sub_state.add_metric([r.name, sub], {})
        entered = _number(r.unit, "ActiveEnterTimestamp")
        if entered:
            active_enter.add_metric([r.name], entered / USEC)
        # MemoryCurrent lives on Service, Slice and Scope; systemd also serves it on Unit.
        used = _number(r.service, "MemoryCurrent")
        if used is None:
            used = _number(r.unit, "MemoryCurrent")
        if used is not None and used < UINT64_MAX:
            memory.add_metric([r.name], used)
        if r.service is None:
            continue
        count = _number(r.service, "NRestarts")
        if count is not None:
            restarts.add_metric([r.name], count)
        last = r.service.get("Result")
        if isinstance(last, str) and last:
            for res in RESULTS:
                result.add_metric([r.name, res], 1 if res == last else 0)
        status = _number(r.service, "ExecMainStatus")
        if status is not None:
            exit_status.add_metric([r.name], status)
    return [state, sub_state, active_enter, memory, restarts, result, exit_status]
