"""The SNMP collector's metric families: their specs, the per-target self-metrics, and turning
varbind values into numbers and label text. Pure.

Every family a configured module can serve is declared each round, so HELP and TYPE stay
on /metrics while a target is down. Values are passed through as the agent reports them:
a counter that wraps or restarts with its device goes down, which Prometheus' rate() and
increase() read as a reset; sysUpTime going back shows the reboot.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from exporter import families
from exporter.collectors.snmpber import Kind, Value, format_oid
from exporter.families import FamilySet

Reason = Literal["timeout", "auth", "no_such_object", "malformed", "agent_error", "limit", "other"]
REASONS: tuple[Reason, ...] = (
    "timeout",
    "auth",
    "no_such_object",
    "malformed",
    "agent_error",
    "limit",
    "other",
)
# What one round found wrong, by reason (a varbind, a table, or the whole target).
Problems = Counter[str]
METRIC_PREFIX = "botwatch_snmp_"
# Label values from a device (ifDescr, hrStorageDescr, custom columns) are cut here.
MAX_LABEL_CHARS = 256


@dataclass(frozen=True)
class FamilySpec:
    """A family: its name without `_total` / `_info`, help, kind and label names."""

    name: str
    help: str
    kind: families.Kind = "gauge"
    labels: tuple[str, ...] = ("target",)

    def exposed(self) -> str:
        """The name its samples carry on /metrics."""
        return self.name + {"gauge": "", "counter": "_total", "info": "_info"}[self.kind]


UP = FamilySpec(
    "botwatch_snmp_up",
    "1 if the target answered this round's walk; 0 after a timeout, an authentication "
    "failure or a transport error, and then its data series are absent.",
)
DURATION = FamilySpec(
    "botwatch_snmp_scrape_duration_seconds",
    "How long the target's last walk took, failed or not.",
)
ERRORS = FamilySpec(
    "botwatch_snmp_errors",
    "SNMP problems by reason: timeout (v2c: also a wrong community, which agents do not "
    "answer), auth (v3), no_such_object, malformed (a varbind of the wrong type, skipped), "
    "agent_error (an error-status), limit (max_varbinds reached), other.",
    "counter",
    ("target", "reason"),
)
SELF_FAMILIES = (UP, DURATION, ERRORS)


class Families(FamilySet):
    """The SNMP collector's samples, by family."""

    def add(self, spec: FamilySpec, labels: Sequence[str], value: float = 1.0) -> None:
        self.add_values(spec, labels, value)


@dataclass
class TargetView:
    """What the families show of one target after a round."""

    name: str
    up: bool
    duration: float
    errors: Mapping[str, int]


def self_samples(out: Families, views: Sequence[TargetView]) -> None:
    for spec in SELF_FAMILIES:
        out.declare(spec)
    for view in views:
        out.add(UP, (view.name,), 1.0 if view.up else 0.0)
        out.add(DURATION, (view.name,), view.duration)
        for reason in REASONS:
            out.add(ERRORS, (view.name, reason), view.errors.get(reason, 0))


# --- values -------------------------------------------------------------------------------

NUMERIC: frozenset[Kind] = frozenset({"integer", "counter32", "gauge32", "timeticks", "counter64"})
COUNTERS: frozenset[Kind] = frozenset({"counter32", "counter64"})
ENUM: frozenset[Kind] = frozenset({"integer"})
TEXT: frozenset[Kind] = frozenset({"octets"})


def number(value: Value | None, problems: Problems, kinds: frozenset[Kind] = NUMERIC) -> int | None:
    """The integer a varbind holds, or None: absent (None), or of a type the column does not
    take, which counts as malformed."""
    if value is None:
        return None
    if value.kind in kinds and isinstance(value.data, int):
        return value.data
    problems["malformed"] += 1
    return None


def gauge_number(value: Value | None, problems: Problems) -> float | None:
    """A gauge column: any integer type, or text holding a decimal number (UCD-SNMP's
    laLoad, many vendors' sensors)."""
    if value is not None and value.kind == "octets" and isinstance(value.data, bytes):
        try:
            return float(value.data.decode("ascii").strip())
        except (UnicodeDecodeError, ValueError):
            problems["malformed"] += 1
            return None
    found = number(value, problems)
    return None if found is None else float(found)


def label_text(
    value: Value | None, problems: Problems, kinds: frozenset[Kind] = TEXT
) -> str | None:
    """A varbind as a label value: text decoded as UTF-8 (invalid bytes replaced, trailing
    NULs dropped) and cut at MAX_LABEL_CHARS; with wider `kinds`, numbers, OIDs and IPv4
    addresses in their usual notation."""
    if value is None:
        return None
    kind, data = value
    if kind not in kinds:
        problems["malformed"] += 1
        return None
    if kind == "octets" and isinstance(data, bytes):
        text = data.decode("utf-8", "replace").rstrip("\x00")
    elif kind == "ipaddress" and isinstance(data, bytes) and len(data) == 4:
        text = ".".join(str(b) for b in data)
    elif kind == "oid" and isinstance(data, tuple):
        text = format_oid(data)
    elif isinstance(data, int):
        text = str(data)
    else:
        problems["malformed"] += 1
        return None
    return text[:MAX_LABEL_CHARS]


ANY_LABEL: frozenset[Kind] = frozenset({*NUMERIC, "octets", "oid", "ipaddress"})
