"""What each SNMP module walks (numeric OIDs: no MIB files at run time) and how its
varbinds become series. Pure: walked data in, samples out.

- `if_mib`: IF-MIB ifTable and ifXTable, one row per ifIndex. Every series has
  `target`, `if_index` and `if_name` (ifName; ifDescr where the agent has no ifXTable);
  ifDescr and ifAlias are on the info series only, so free-text descriptions do not
  multiply the counters' series.
- `system`: SNMPv2-MIB sysUpTime.0 and sysName.0, read with one GET.
- `host_resources`: HOST-RESOURCES-MIB hrStorageTable (bytes = allocation units x count)
  and hrProcessorLoad.
- custom tables from the config: column OIDs to metric names, the row index as a label.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from exporter.collectors.snmpber import Oid, Value, VarBind, format_oid
from exporter.collectors.snmpmetrics import (
    ANY_LABEL,
    COUNTERS,
    ENUM,
    METRIC_PREFIX,
    SELF_FAMILIES,
    Families,
    FamilySpec,
    Problems,
    gauge_number,
    label_text,
    number,
)


@dataclass(frozen=True)
class Table:
    """Columns walked together with GETBULK; `key` names the walk (unique per target)."""

    key: str
    columns: tuple[Oid, ...]


@dataclass
class Walked:
    """One target's round: each table's columns as (index, value) rows in walk order, and
    the scalars a GET returned. A table whose walk failed is absent."""

    tables: dict[str, dict[Oid, list[VarBind]]] = field(default_factory=dict)
    scalars: dict[Oid, Value] = field(default_factory=dict)


Convert = Callable[[str, Walked, Families, Problems], None]


@dataclass(frozen=True)
class Module:
    name: str
    tables: tuple[Table, ...]
    scalars: tuple[Oid, ...]
    families: tuple[FamilySpec, ...]
    convert: Convert


def _oid(text: str) -> Oid:
    return tuple(int(part) for part in text.split("."))


def _rows(columns: Mapping[Oid, list[VarBind]], problems: Problems) -> dict[int, dict[Oid, Value]]:
    """Rows of a table indexed by one integer (ifIndex, hrStorageIndex, ...)."""
    rows: dict[int, dict[Oid, Value]] = {}
    for column, entries in columns.items():
        for index, value in entries:
            if len(index) != 1:
                problems["malformed"] += 1
                continue
            rows.setdefault(index[0], {})[column] = value
    return rows


# --- if_mib -------------------------------------------------------------------------------

IF_DESCR = _oid("1.3.6.1.2.1.2.2.1.2")
IF_ADMIN_STATUS = _oid("1.3.6.1.2.1.2.2.1.7")
IF_OPER_STATUS = _oid("1.3.6.1.2.1.2.2.1.8")
IF_IN_DISCARDS = _oid("1.3.6.1.2.1.2.2.1.13")
IF_IN_ERRORS = _oid("1.3.6.1.2.1.2.2.1.14")
IF_OUT_DISCARDS = _oid("1.3.6.1.2.1.2.2.1.19")
IF_OUT_ERRORS = _oid("1.3.6.1.2.1.2.2.1.20")
IF_NAME = _oid("1.3.6.1.2.1.31.1.1.1.1")
IF_HC_IN_OCTETS = _oid("1.3.6.1.2.1.31.1.1.1.6")
IF_HC_OUT_OCTETS = _oid("1.3.6.1.2.1.31.1.1.1.10")
IF_HIGH_SPEED = _oid("1.3.6.1.2.1.31.1.1.1.15")
IF_ALIAS = _oid("1.3.6.1.2.1.31.1.1.1.18")
IF_COLUMNS = (
    IF_NAME,
    IF_DESCR,
    IF_ALIAS,
    IF_OPER_STATUS,
    IF_ADMIN_STATUS,
    IF_HC_IN_OCTETS,
    IF_HC_OUT_OCTETS,
    IF_IN_ERRORS,
    IF_OUT_ERRORS,
    IF_IN_DISCARDS,
    IF_OUT_DISCARDS,
    IF_HIGH_SPEED,
)
IF_LABELS = ("target", "if_index", "if_name")
# IF-MIB's enumerations, value 1 first.
OPER_STATES = ("up", "down", "testing", "unknown", "dormant", "notPresent", "lowerLayerDown")
ADMIN_STATES = ("up", "down", "testing")

IF_INFO = FamilySpec(
    "botwatch_snmp_if",
    "An interface's descriptions: ifDescr and ifAlias (the configured port description).",
    "info",
    (*IF_LABELS, "if_descr", "if_alias"),
)
IF_OPER = FamilySpec(
    "botwatch_snmp_if_oper_status",
    "1 for the interface's operational state (ifOperStatus): up, down, testing, unknown, "
    "dormant, notPresent or lowerLayerDown.",
    labels=(*IF_LABELS, "status"),
)
IF_ADMIN = FamilySpec(
    "botwatch_snmp_if_admin_status",
    "1 for the interface's configured state (ifAdminStatus): up, down or testing.",
    labels=(*IF_LABELS, "status"),
)
IF_SPEED = FamilySpec(
    "botwatch_snmp_if_speed_bytes",
    "The interface's nominal speed in bytes per second (ifHighSpeed Mbit/s x 10^6 / 8).",
    labels=IF_LABELS,
)
IF_COUNTERS = (
    (
        IF_HC_IN_OCTETS,
        FamilySpec(
            "botwatch_snmp_if_in_octets",
            "Octets received, framing included (ifHCInOctets, 64-bit).",
            "counter",
            IF_LABELS,
        ),
    ),
    (
        IF_HC_OUT_OCTETS,
        FamilySpec(
            "botwatch_snmp_if_out_octets",
            "Octets sent, framing included (ifHCOutOctets, 64-bit).",
            "counter",
            IF_LABELS,
        ),
    ),
    (
        IF_IN_ERRORS,
        FamilySpec(
            "botwatch_snmp_if_in_errors",
            "Inbound packets with errors (ifInErrors, 32-bit: it wraps).",
            "counter",
            IF_LABELS,
        ),
    ),
    (
        IF_OUT_ERRORS,
        FamilySpec(
            "botwatch_snmp_if_out_errors",
            "Outbound packets that could not be sent because of errors (ifOutErrors, 32-bit).",
            "counter",
            IF_LABELS,
        ),
    ),
    (
        IF_IN_DISCARDS,
        FamilySpec(
            "botwatch_snmp_if_in_discards",
            "Inbound packets dropped without an error, e.g. for lack of buffers "
            "(ifInDiscards, 32-bit).",
            "counter",
            IF_LABELS,
        ),
    ),
    (
        IF_OUT_DISCARDS,
        FamilySpec(
            "botwatch_snmp_if_out_discards",
            "Outbound packets dropped without an error (ifOutDiscards, 32-bit).",
            "counter",
            IF_LABELS,
        ),
    ),
)
# ifHighSpeed is in units of 1,000,000 bit/s.
BYTES_PER_MBIT = 1_000_000 / 8


def _states(
    out: Families,
    *,
    spec: FamilySpec,
    labels: tuple[str, ...],
    value: int | None,
    states: Sequence[str],
    problems: Problems,
) -> None:
    if value is None:
        return
    if not 1 <= value <= len(states):
        problems["malformed"] += 1
        return
    for number_, state in enumerate(states, 1):
        out.add(spec, (*labels, state), 1.0 if number_ == value else 0.0)


def convert_if_mib(target: str, walked: Walked, out: Families, problems: Problems) -> None:
    columns = walked.tables.get("if_mib")
    if columns is None:
        return
    for if_index, row in sorted(_rows(columns, problems).items()):
        descr = label_text(row.get(IF_DESCR), problems)
        name = label_text(row.get(IF_NAME), problems)
        alias = label_text(row.get(IF_ALIAS), problems)
        labels = (target, str(if_index), name or descr or "")
        out.add(IF_INFO, (*labels, descr or "", alias or ""))
        oper = number(row.get(IF_OPER_STATUS), problems, ENUM)
        _states(out, spec=IF_OPER, labels=labels, value=oper, states=OPER_STATES, problems=problems)
        admin = number(row.get(IF_ADMIN_STATUS), problems, ENUM)
        _states(
            out, spec=IF_ADMIN, labels=labels, value=admin, states=ADMIN_STATES, problems=problems
        )
        for column, spec in IF_COUNTERS:
            count = number(row.get(column), problems, COUNTERS)
            if count is not None:
                out.add(spec, labels, float(count))
        speed = number(row.get(IF_HIGH_SPEED), problems)
        if speed is not None:
            if speed < 0:
                problems["malformed"] += 1
            else:
                out.add(IF_SPEED, labels, speed * BYTES_PER_MBIT)


IF_MIB = Module(
    name="if_mib",
    tables=(Table("if_mib", IF_COLUMNS),),
    scalars=(),
    families=(IF_INFO, IF_OPER, IF_ADMIN, *(spec for _, spec in IF_COUNTERS), IF_SPEED),
    convert=convert_if_mib,
)

# --- system -------------------------------------------------------------------------------

SYS_UPTIME = _oid("1.3.6.1.2.1.1.3.0")
SYS_NAME = _oid("1.3.6.1.2.1.1.5.0")
TIMETICKS_PER_SECOND = 100

SYS_UPTIME_SECONDS = FamilySpec(
    "botwatch_snmp_sys_uptime_seconds",
    "Time since the agent (re)started (sysUpTime / 100): it goes back at a reboot or an "
    "agent restart, and wraps after 497 days.",
)
SYS_INFO = FamilySpec(
    "botwatch_snmp_sys", "The device's name (sysName).", "info", ("target", "sys_name")
)


def convert_system(target: str, walked: Walked, out: Families, problems: Problems) -> None:
    ticks = number(walked.scalars.get(SYS_UPTIME), problems)
    if ticks is not None:
        out.add(SYS_UPTIME_SECONDS, (target,), ticks / TIMETICKS_PER_SECOND)
    name = label_text(walked.scalars.get(SYS_NAME), problems)
    if name is not None:
        out.add(SYS_INFO, (target, name))


SYSTEM = Module(
    name="system",
    tables=(),
    scalars=(SYS_UPTIME, SYS_NAME),
    families=(SYS_UPTIME_SECONDS, SYS_INFO),
    convert=convert_system,
)

# --- host_resources -----------------------------------------------------------------------

HR_STORAGE_TYPE = _oid("1.3.6.1.2.1.25.2.3.1.2")
HR_STORAGE_DESCR = _oid("1.3.6.1.2.1.25.2.3.1.3")
HR_STORAGE_UNITS = _oid("1.3.6.1.2.1.25.2.3.1.4")
HR_STORAGE_SIZE = _oid("1.3.6.1.2.1.25.2.3.1.5")
HR_STORAGE_USED = _oid("1.3.6.1.2.1.25.2.3.1.6")
HR_PROCESSOR_LOAD = _oid("1.3.6.1.2.1.25.3.3.1.2")
# hrStorageTypes: 1.3.6.1.2.1.25.2.1.N
HR_STORAGE_TYPES = _oid("1.3.6.1.2.1.25.2.1")
STORAGE_TYPE_NAMES = {
    1: "other",
    2: "ram",
    3: "virtual_memory",
    4: "fixed_disk",
    5: "removable_disk",
    6: "floppy_disk",
    7: "compact_disc",
    8: "ram_disk",
    9: "flash_memory",
    10: "network_disk",
}
STORAGE_LABELS = ("target", "storage_index", "storage", "storage_type")
STORAGE_SIZE = FamilySpec(
    "botwatch_snmp_storage_size_bytes",
    "Size of a storage area (hrStorageSize x hrStorageAllocationUnits): a filesystem, "
    "RAM, swap, buffers.",
    labels=STORAGE_LABELS,
)
STORAGE_USED = FamilySpec(
    "botwatch_snmp_storage_used_bytes",
    "Space in use in a storage area (hrStorageUsed x hrStorageAllocationUnits).",
    labels=STORAGE_LABELS,
)
PROCESSOR_LOAD = FamilySpec(
    "botwatch_snmp_processor_load_ratio",
    "Share of the last minute a processor was busy (hrProcessorLoad / 100), 0-1.",
    labels=("target", "processor"),
)
PERCENT = 100


def storage_type(value: Value | None, problems: Problems) -> str:
    """hrStorageType as a word (fixed_disk, ram, ...); a vendor's own type OID as is."""
    if value is None:
        return ""
    if value.kind != "oid" or not isinstance(value.data, tuple):
        problems["malformed"] += 1
        return ""
    oid = value.data
    if oid[:-1] == HR_STORAGE_TYPES and oid[-1] in STORAGE_TYPE_NAMES:
        return STORAGE_TYPE_NAMES[oid[-1]]
    return format_oid(oid)


def convert_host_resources(target: str, walked: Walked, out: Families, problems: Problems) -> None:
    storage = walked.tables.get("hr_storage")
    if storage is not None:
        for index, row in sorted(_rows(storage, problems).items()):
            descr = label_text(row.get(HR_STORAGE_DESCR), problems) or ""
            labels = (target, str(index), descr, storage_type(row.get(HR_STORAGE_TYPE), problems))
            units = number(row.get(HR_STORAGE_UNITS), problems)
            if units is None:
                continue
            if units <= 0:
                problems["malformed"] += 1
                continue
            for column, spec in ((HR_STORAGE_SIZE, STORAGE_SIZE), (HR_STORAGE_USED, STORAGE_USED)):
                count = number(row.get(column), problems)
                if count is None:
                    continue
                if count < 0:  # Integer32 overflowed on the agent: no honest value to give
                    problems["malformed"] += 1
                    continue
                out.add(spec, labels, float(count * units))
    processors = walked.tables.get("hr_processor")
    if processors is not None:
        for index, row in sorted(_rows(processors, problems).items()):
            load = number(row.get(HR_PROCESSOR_LOAD), problems)
            if load is None:
                continue
            if not 0 <= load <= PERCENT:
                problems["malformed"] += 1
                continue
            out.add(PROCESSOR_LOAD, (target, str(index)), load / PERCENT)


HOST_RESOURCES = Module(
    name="host_resources",
    tables=(
        Table(
            "hr_storage",
            (HR_STORAGE_TYPE, HR_STORAGE_DESCR, HR_STORAGE_UNITS, HR_STORAGE_SIZE, HR_STORAGE_USED),
        ),
        Table("hr_processor", (HR_PROCESSOR_LOAD,)),
    ),
    scalars=(),
    families=(STORAGE_SIZE, STORAGE_USED, PROCESSOR_LOAD),
    convert=convert_host_resources,
)

BUILTIN: dict[str, Module] = {m.name: m for m in (IF_MIB, SYSTEM, HOST_RESOURCES)}
# Every family name botwatch serves itself: custom tables may not take one.
RESERVED_NAMES = frozenset(
    spec.name for spec in (*SELF_FAMILIES, *(f for m in BUILTIN.values() for f in m.families))
)

# --- custom tables ------------------------------------------------------------------------

ColumnType = Literal["gauge", "counter", "info", "label"]


@dataclass(frozen=True)
class CustomColumn:
    oid: Oid
    metric: str  # as configured, without the botwatch_snmp_ prefix
    type: ColumnType
    help: str
    scale: float = 1.0


def family_name(metric: str, kind: ColumnType) -> str:
    """The family a custom column feeds: botwatch_snmp_<metric> without `_total`/`_info`
    (the exposition adds those back)."""
    if kind == "counter":
        metric = metric.removesuffix("_total")
    elif kind == "info":
        metric = metric.removesuffix("_info")
    return METRIC_PREFIX + metric


def value_label(metric: str) -> str:
    """The label an info column's text goes in: its metric name without `_info`."""
    return metric.removesuffix("_info")


def custom_table_key(name: str) -> str:
    """Its walk's key: apart from the built-in tables' keys whatever the table is called."""
    return f"table {name}"


def custom_module(name: str, index_label: str, columns: Sequence[CustomColumn]) -> Module:
    label_columns = tuple(c for c in columns if c.type == "label")
    labels = ("target", index_label, *(c.metric for c in label_columns))
    specs: dict[Oid, FamilySpec] = {}
    for column in columns:
        if column.type == "gauge":
            specs[column.oid] = FamilySpec(
                family_name(column.metric, "gauge"), column.help, "gauge", labels
            )
        elif column.type == "counter":
            specs[column.oid] = FamilySpec(
                family_name(column.metric, "counter"), column.help, "counter", labels
            )
        elif column.type == "info":
            specs[column.oid] = FamilySpec(
                family_name(column.metric, "info"),
                column.help,
                "info",
                (*labels, value_label(column.metric)),
            )

    key = custom_table_key(name)

    def convert(target: str, walked: Walked, out: Families, problems: Problems) -> None:
        table = walked.tables.get(key)
        if table is None:
            return
        extra: dict[Oid, list[str]] = {}
        for position, column in enumerate(label_columns):
            for index, value in table.get(column.oid, ()):
                text = label_text(value, problems, ANY_LABEL)
                row = extra.setdefault(index, [""] * len(label_columns))
                row[position] = text or ""
        blank = [""] * len(label_columns)
        for column in columns:
            spec = specs.get(column.oid)
            if spec is None:
                continue
            for index, value in table.get(column.oid, ()):
                row_labels = (target, format_oid(index), *extra.get(index, blank))
                if column.type == "info":
                    text = label_text(value, problems, ANY_LABEL)
                    if text is not None:
                        out.add(spec, (*row_labels, text))
                    continue
                found = gauge_number(value, problems) if column.type == "gauge" else None
                if column.type == "counter":
                    count = number(value, problems)
                    if count is not None and count < 0:
                        problems["malformed"] += 1
                        count = None
                    found = None if count is None else float(count)
                if found is not None:
                    out.add(spec, row_labels, found * column.scale)

    return Module(
        name=name,
        tables=(Table(key, tuple(c.oid for c in columns)),),
        scalars=(),
        families=tuple(specs.values()),
        convert=convert,
    )
