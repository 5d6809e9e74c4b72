"""The OOM counters botwatch owns, their JSON form for the checkpoint, and their families.

A cgroup's own counters restart at 0 whenever systemd or a container engine removes and
recreates it (each restart of a unit), so /metrics cannot show them raw: CgroupLedger keeps,
per cgroup path, the last raw value and inode and adds what each reading grew by. A new
inode, or a raw value below the last, is a new cgroup: all of its raw value is new. Kernel
kills are counted per (process, cgroup) with a cap on distinct values of each label.
Pure: no I/O.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from exporter.collectors.oomparse import Kill, cgroup_labels

FORGET_AFTER = 3600.0
OTHER = "other"
CAPPED_LABELS = ("process", "cgroup")


@dataclass(frozen=True)
class CgroupReading:
    """One cgroup as a scan found it: its directory's inode and its raw counters."""

    ino: int
    counters: Mapping[str, int]


@dataclass
class CgroupEntry:
    ino: int
    seen: float  # Unix time it was last present
    last: dict[str, int]
    total: dict[str, int]


@dataclass
class CgroupLedger:
    entries: dict[str, CgroupEntry] = field(default_factory=dict)

    def update(self, readings: Mapping[str, CgroupReading], now: float) -> bool:
        """Add what grew since the last reading; True when a checkpoint should keep it."""
        changed = False
        for path, reading in readings.items():
            entry = self.entries.get(path)
            if entry is None:
                # Everything it counted happened in this cgroup's life, which a scan sees
                # whole: a first sighting starts from its raw values.
                self.entries[path] = CgroupEntry(
                    reading.ino, now, dict(reading.counters), dict(reading.counters)
                )
                changed = True
                continue
            recreated = bool(entry.ino and reading.ino and entry.ino != reading.ino)
            for name, raw in reading.counters.items():
                last = entry.last.get(name)
                grew = raw if last is None or recreated or raw < last else raw - last
                entry.total[name] = entry.total.get(name, 0) + grew
            changed |= recreated or entry.last != reading.counters or entry.ino != reading.ino
            entry.ino = reading.ino
            entry.last = dict(reading.counters)
            entry.seen = now
        for path in [p for p, e in self.entries.items() if now - e.seen > FORGET_AFTER]:
            del self.entries[path]
            changed = True
        return changed

    def to_json(self) -> dict[str, Any]:
        return {
            path: {"ino": e.ino, "seen": e.seen, "last": dict(e.last), "total": dict(e.total)}
            for path, e in self.entries.items()
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> CgroupLedger:
        """Raises KeyError, TypeError, ValueError or AttributeError for an unusable document."""
        return cls(
            {
                str(path): CgroupEntry(
                    int(e["ino"]), float(e["seen"]), _counts(e["last"]), _counts(e["total"])
                )
                for path, e in doc.items()
            }
        )


@dataclass
class KernelLedger:
    """Kills read from the kernel log, and where in the log counting stands."""

    max_values: int
    kills: Counter[tuple[str, str]] = field(default_factory=Counter)
    # Values admitted per capped label: kept, so a restart keeps the same ones.
    admitted: dict[str, set[str]] = field(default_factory=dict)
    overflow: Counter[str] = field(default_factory=Counter)
    lost: int = 0
    malformed: int = 0
    boot_id: str | None = None
    # Newest record whose kills are counted; -1: none yet of this boot, count from its start.
    seq: int | None = None

    def count(self, kill: Kill) -> None:
        process = self._capped("process", kill.process)
        # "" (no oom-kill record named the cgroup) is one fixed value, not a slot.
        cgroup = self._capped("cgroup", kill.cgroup) if kill.cgroup else ""
        self.kills[process, cgroup] += 1

    def _capped(self, label: str, value: str) -> str:
        admitted = self.admitted.setdefault(label, set())
        if value in admitted:
            return value
        if len(admitted) < self.max_values:
            admitted.add(value)
            return value
        self.overflow[label] += 1
        return OTHER

    def to_json(self) -> dict[str, Any]:
        return {
            "kills": [[process, cgroup, n] for (process, cgroup), n in self.kills.items()],
            "admitted": {label: sorted(values) for label, values in self.admitted.items()},
            "overflow": dict(self.overflow),
            "lost": self.lost,
            "malformed": self.malformed,
            "boot_id": self.boot_id,
            "seq": self.seq,
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any], max_values: int) -> KernelLedger:
        """Raises KeyError, TypeError, ValueError or AttributeError for an unusable document."""
        seq = doc["seq"]
        boot_id = doc["boot_id"]
        return cls(
            max_values=max_values,
            kills=Counter({(str(p), str(c)): int(n) for p, c, n in doc["kills"]}),
            admitted={str(k): {str(v) for v in vs} for k, vs in doc["admitted"].items()},
            overflow=Counter(_counts(doc["overflow"])),
            lost=int(doc["lost"]),
            malformed=int(doc["malformed"]),
            boot_id=None if boot_id is None else str(boot_id),
            seq=None if seq is None else int(seq),
        )


def _counts(value: Any) -> dict[str, int]:
    return {str(k): int(v) for k, v in dict(value).items()}


def cgroup_families(ledger: CgroupLedger) -> list[Metric]:
    labels = ["cgroup", "unit", "container"]
    kills = CounterMetricFamily(
        "botwatch_cgroup_oom_kills",
        "Processes of the cgroup killed by the OOM killer (memory.events or memory.oom_control "
        "oom_kill), summed over the cgroup's re-creations.",
        labels=labels,
    )
    ooms = CounterMetricFamily(
        "botwatch_cgroup_oom",
        "Times the cgroup hit its memory limit and the OOM killer ran (cgroup v2 "
        "memory.events oom), summed over the cgroup's re-creations.",
        labels=labels,
    )
    for path in sorted(ledger.entries):
        entry = ledger.entries[path]
        names = cgroup_labels(path)
        values = [path, names.unit, names.container]
        if "oom_kill" in entry.total:
            kills.add_metric(values, entry.total["oom_kill"])
        if "oom" in entry.total:
            ooms.add_metric(values, entry.total["oom"])
    return [kills, ooms]


def kernel_families(ledger: KernelLedger, up: bool) -> list[Metric]:
    kills = CounterMetricFamily(
        "botwatch_oom_kills",
        "Processes the OOM killer killed, from the kernel log: the process name and its "
        'memory cgroup ("" when the log did not name it).',
        labels=["source", "process", "cgroup"],
    )
    for (process, cgroup), n in sorted(ledger.kills.items()):
        kills.add_metric(["kernel", process, cgroup], n)
    overflow = CounterMetricFamily(
        "botwatch_oom_label_overflow",
        'Kernel-log OOM kills whose label value was past max_values and counted as "other".',
        labels=["label"],
    )
    for label in CAPPED_LABELS:
        overflow.add_metric([label], ledger.overflow.get(label, 0))
    return [
        kills,
        overflow,
        GaugeMetricFamily(
            "botwatch_oom_kernel_log_up",
            "1 while the kernel log is being read; 0 when it cannot be opened or read.",
            value=1 if up else 0,
        ),
        CounterMetricFamily(
            "botwatch_oom_kernel_log_lost",
            "Kernel log records overwritten before botwatch read them (kills among them are "
            "not in botwatch_oom_kills_total).",
            value=ledger.lost,
        ),
        CounterMetricFamily(
            "botwatch_oom_kernel_log_malformed",
            "Kernel log records that could not be parsed.",
            value=ledger.malformed,
        ),
    ]
