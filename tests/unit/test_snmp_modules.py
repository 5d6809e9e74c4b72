"""Walked varbinds to series, for each module, on fixtures: (OID, value) lists as an agent
returns them. No network."""

from __future__ import annotations

from collections import Counter

import pytest
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector, CollectorRegistry

from exporter.collectors.snmpber import Oid, Value, VarBind
from exporter.collectors.snmpmetrics import Families, Problems, TargetView, self_samples
from exporter.collectors.snmpmodules import (
    HOST_RESOURCES,
    IF_MIB,
    SYSTEM,
    CustomColumn,
    Module,
    Walked,
    custom_module,
    custom_table_key,
)
from tests.support import promtool_lint

IF = (1, 3, 6, 1, 2, 1, 2, 2, 1)
IFX = (1, 3, 6, 1, 2, 1, 31, 1, 1, 1)
HR_STORAGE = (1, 3, 6, 1, 2, 1, 25, 2, 3, 1)
HR_PROCESSOR_LOAD = (1, 3, 6, 1, 2, 1, 25, 3, 3, 1, 2)

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def columns(varbinds: list[tuple[Oid, Value]], *column_oids: Oid) -> dict[Oid, list[VarBind]]:
    """Group full (OID, value) pairs by column, as walk_table returns them."""
    out: dict[Oid, list[VarBind]] = {c: [] for c in column_oids}
    for oid, value in varbinds:
        for column in column_oids:
            if oid[: len(column)] == column:
                out[column].append((oid[len(column) :], value))
    return out


def octets(text: str) -> Value:
    return Value("octets", text.encode())


# What a small switch answers: two ports, one down, one without ifXTable.
IF_FIXTURE: list[tuple[Oid, Value]] = [
    ((*IF, 2, 1), octets("GigabitEthernet0/1")),
    ((*IF, 2, 2), octets("GigabitEthernet0/2")),
    ((*IF, 2, 3), octets("Vlan1")),
    ((*IF, 7, 1), Value("integer", 1)),
    ((*IF, 7, 2), Value("integer", 2)),
    ((*IF, 7, 3), Value("integer", 1)),
    ((*IF, 8, 1), Value("integer", 1)),
    ((*IF, 8, 2), Value("integer", 7)),
    ((*IF, 8, 3), Value("integer", 5)),
    ((*IF, 13, 1), Value("counter32", 3)),
    ((*IF, 14, 1), Value("counter32", 4294967295)),
    ((*IF, 19, 1), Value("counter32", 0)),
    ((*IF, 20, 1), Value("counter32", 9)),
    ((*IFX, 1, 1), octets("Gi0/1")),
    ((*IFX, 1, 2), octets("Gi0/2")),
    ((*IFX, 6, 1), Value("counter64", 2**64 - 1)),
    ((*IFX, 6, 2), Value("counter64", 0)),
    ((*IFX, 10, 1), Value("counter64", 123456789012)),
    ((*IFX, 15, 1), Value("gauge32", 1000)),
    ((*IFX, 15, 2), Value("gauge32", 0)),
    ((*IFX, 18, 1), octets("uplink to ISP")),
]


def walked_if(varbinds: list[tuple[Oid, Value]]) -> Walked:
    return Walked(tables={"if_mib": columns(varbinds, *IF_MIB.tables[0].columns)})


def convert(module: Module, walked: Walked, target: str = "sw1") -> tuple[Samples, Problems]:
    problems: Problems = Counter()
    out = Families(module.families)
    module.convert(target, walked, out, problems)
    return samples(out.families()), problems


def samples(families: list[Metric]) -> Samples:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in families
        for s in family.samples
    }


def value(found: Samples, name: str, **labels: str) -> float:
    return found[(name, tuple(sorted(labels.items())))]


def render(families: list[Metric]) -> str:
    class Static(Collector):
        def collect(self) -> list[Metric]:
            return families

    registry = CollectorRegistry()
    registry.register(Static())
    return generate_latest(registry).decode()


def test_if_mib_series_and_labels() -> None:
    found, problems = convert(IF_MIB, walked_if(IF_FIXTURE))
    assert problems == Counter()
    gi1 = {"target": "sw1", "if_index": "1", "if_name": "Gi0/1"}
    # Passed through as a float: above 2**53 it is rounded, as in any Prometheus sample.
    assert value(found, "botwatch_snmp_if_in_octets_total", **gi1) == float(2**64 - 1)
    assert value(found, "botwatch_snmp_if_out_octets_total", **gi1) == 123456789012
    assert value(found, "botwatch_snmp_if_in_errors_total", **gi1) == 4294967295
    assert value(found, "botwatch_snmp_if_in_discards_total", **gi1) == 3
    assert value(found, "botwatch_snmp_if_out_errors_total", **gi1) == 9
    assert value(found, "botwatch_snmp_if_speed_bytes", **gi1) == 125_000_000
    info = {**gi1, "if_descr": "GigabitEthernet0/1", "if_alias": "uplink to ISP"}
    assert value(found, "botwatch_snmp_if_info", **info) == 1
    states = {
        labels: v
        for (name, labels), v in found.items()
        if name == "botwatch_snmp_if_oper_status" and ("if_index", "2") in labels
    }
    assert len(states) == 7
    assert [dict(k)["status"] for k, v in states.items() if v == 1] == ["lowerLayerDown"]
    gi2 = {"target": "sw1", "if_index": "2", "if_name": "Gi0/2"}
    assert value(found, "botwatch_snmp_if_admin_status", **gi2, status="down") == 1
    assert value(found, "botwatch_snmp_if_admin_status", **gi2, status="up") == 0


def test_if_name_falls_back_to_if_descr() -> None:
    found, _ = convert(IF_MIB, walked_if(IF_FIXTURE))
    vlan = {"target": "sw1", "if_index": "3", "if_name": "Vlan1"}
    assert value(found, "botwatch_snmp_if_oper_status", **vlan, status="dormant") == 1
    assert ("botwatch_snmp_if_in_octets_total", tuple(sorted(vlan.items()))) not in found


def test_wrong_types_and_out_of_range_enums_are_skipped_and_counted() -> None:
    bad = [
        ((*IF, 8, 1), Value("octets", b"up")),  # a string for an enum
        ((*IF, 7, 1), Value("integer", 9)),  # no such admin state
        ((*IFX, 6, 1), Value("gauge32", 5)),  # a gauge for a counter
        ((*IFX, 15, 1), Value("integer", -1)),
        ((*IFX, 1, 1), Value("integer", 3)),  # a number for a name
        ((*IF, 2, 7, 1), octets("two-part index")),
        ((*IF, 14, 1), Value("counter32", 1)),
    ]
    found, problems = convert(IF_MIB, walked_if(bad))
    assert problems == Counter({"malformed": 6})
    # What was good on the row is still there.
    assert (
        value(found, "botwatch_snmp_if_in_errors_total", target="sw1", if_index="1", if_name="")
        == 1
    )


def test_labels_are_cut_and_decoded() -> None:
    long_name = [((*IFX, 1, 1), Value("octets", b"x" * 300 + b"\xff\x00\x00"))]
    found, _ = convert(IF_MIB, walked_if(long_name))
    (key,) = [k for k in found if k[0] == "botwatch_snmp_if_info"]
    assert dict(key[1])["if_name"] == "x" * 256


def test_a_failed_table_gives_no_series() -> None:
    found, problems = convert(IF_MIB, Walked())
    assert found == {}
    assert problems == Counter()


def test_system() -> None:
    walked = Walked(
        scalars={
            (1, 3, 6, 1, 2, 1, 1, 3, 0): Value("timeticks", 4294967295),
            (1, 3, 6, 1, 2, 1, 1, 5, 0): octets("edge-router"),
        }
    )
    found, _ = convert(SYSTEM, walked)
    assert value(found, "botwatch_snmp_sys_uptime_seconds", target="sw1") == 42949672.95
    assert value(found, "botwatch_snmp_sys_info", target="sw1", sys_name="edge-router") == 1


HR_FIXTURE: list[tuple[Oid, Value]] = [
    ((*HR_STORAGE, 2, 1), Value("oid", (1, 3, 6, 1, 2, 1, 25, 2, 1, 2))),
    ((*HR_STORAGE, 2, 36), Value("oid", (1, 3, 6, 1, 2, 1, 25, 2, 1, 4))),
    ((*HR_STORAGE, 2, 40), Value("oid", (1, 3, 6, 1, 4, 1, 99, 1))),
    ((*HR_STORAGE, 2, 41), Value("oid", (1, 3, 6, 1, 2, 1, 25, 2, 1, 4))),
    ((*HR_STORAGE, 3, 1), octets("Physical memory")),
    ((*HR_STORAGE, 3, 36), octets("/")),
    ((*HR_STORAGE, 3, 40), octets("vendor thing")),
    ((*HR_STORAGE, 3, 41), octets("/huge")),
    ((*HR_STORAGE, 4, 1), Value("integer", 1024)),
    ((*HR_STORAGE, 4, 36), Value("integer", 4096)),
    ((*HR_STORAGE, 4, 40), Value("integer", 0)),
    ((*HR_STORAGE, 4, 41), Value("integer", 4096)),
    ((*HR_STORAGE, 5, 1), Value("integer", 24684084)),
    ((*HR_STORAGE, 5, 36), Value("integer", 66052044)),
    ((*HR_STORAGE, 5, 40), Value("integer", 5)),
    ((*HR_STORAGE, 5, 41), Value("integer", -5)),  # Integer32 overflowed on the agent
    ((*HR_STORAGE, 6, 1), Value("integer", 1073312)),
    ((*HR_STORAGE, 6, 36), Value("integer", 5914069)),
    ((*HR_STORAGE, 6, 40), Value("integer", 1)),
    ((*HR_STORAGE, 6, 41), Value("integer", 7)),
    ((*HR_PROCESSOR_LOAD, 196608), Value("integer", 45)),
    ((*HR_PROCESSOR_LOAD, 196609), Value("integer", 101)),
]


def test_host_resources() -> None:
    storage, processor = HOST_RESOURCES.tables
    walked = Walked(
        tables={
            "hr_storage": columns(HR_FIXTURE, *storage.columns),
            "hr_processor": columns(HR_FIXTURE, *processor.columns),
        }
    )
    found, problems = convert(HOST_RESOURCES, walked)
    root = {"target": "sw1", "storage_index": "36", "storage": "/", "storage_type": "fixed_disk"}
    assert value(found, "botwatch_snmp_storage_size_bytes", **root) == 66052044 * 4096
    assert value(found, "botwatch_snmp_storage_used_bytes", **root) == 5914069 * 4096
    ram = {"storage_index": "1", "storage": "Physical memory", "storage_type": "ram"}
    assert value(found, "botwatch_snmp_storage_used_bytes", target="sw1", **ram) == 1073312 * 1024
    huge = {"storage_index": "41", "storage": "/huge", "storage_type": "fixed_disk"}
    assert value(found, "botwatch_snmp_storage_used_bytes", target="sw1", **huge) == 7 * 4096
    assert (
        "botwatch_snmp_storage_size_bytes",
        tuple(sorted({"target": "sw1", **huge}.items())),
    ) not in found
    assert not [k for k in found if dict(k[1]).get("storage_index") == "40"]  # units 0
    cpu = value(found, "botwatch_snmp_processor_load_ratio", target="sw1", processor="196608")
    assert cpu == 0.45
    assert problems == Counter({"malformed": 3})  # units 0, size -5, load 101


def test_custom_table_kinds_labels_and_scale() -> None:
    base = (1, 3, 6, 1, 4, 1, 318, 1, 1, 1, 2, 2)
    module = custom_module(
        "ups",
        "battery",
        [
            CustomColumn((*base, 1), "ups_battery_capacity_ratio", "gauge", "Charge.", 0.01),
            CustomColumn((*base, 2), "ups_battery_name", "label", ""),
            CustomColumn((*base, 3), "ups_battery_replacements_total", "counter", "Swaps."),
            CustomColumn((*base, 4), "ups_model", "info", "Model."),
            CustomColumn((*base, 5), "ups_temperature_celsius", "gauge", "Temp."),
        ],
    )
    data = [
        ((*base, 1, 1, 7), Value("gauge32", 87)),
        ((*base, 1, 2, 7), Value("gauge32", 100)),
        ((*base, 2, 1, 7), octets("left")),
        ((*base, 3, 1, 7), Value("counter32", 2)),
        ((*base, 3, 2, 7), Value("octets", b"x")),
        ((*base, 4, 1, 7), octets("Smart-UPS 1500")),
        ((*base, 5, 1, 7), octets(" 31.5 ")),
        ((*base, 5, 2, 7), octets("n/a")),
    ]
    walked = Walked(tables={custom_table_key("ups"): columns(data, *module.tables[0].columns)})
    found, problems = convert(module, walked)
    left = {"target": "sw1", "battery": "1.7", "ups_battery_name": "left"}
    right = {"target": "sw1", "battery": "2.7", "ups_battery_name": ""}
    assert value(found, "botwatch_snmp_ups_battery_capacity_ratio", **left) == 0.87
    assert value(found, "botwatch_snmp_ups_battery_capacity_ratio", **right) == 1.0
    assert value(found, "botwatch_snmp_ups_battery_replacements_total", **left) == 2
    assert value(found, "botwatch_snmp_ups_model_info", **left, ups_model="Smart-UPS 1500") == 1
    assert value(found, "botwatch_snmp_ups_temperature_celsius", **left) == 31.5
    assert problems == Counter({"malformed": 2})  # octets for a counter, "n/a" for a gauge


@pytest.mark.parametrize("up", [True, False])
def test_a_full_exposition_passes_promtool(up: bool) -> None:
    out = Families([spec for m in (IF_MIB, SYSTEM, HOST_RESOURCES) for spec in m.families])
    problems: Problems = Counter()
    if up:
        IF_MIB.convert("sw1", walked_if(IF_FIXTURE), out, problems)
    self_samples(out, [TargetView("sw1", up, 0.012, {"timeout": 0 if up else 1})])
    body = render(out.families())
    assert promtool_lint(body) == ""
    assert 'botwatch_snmp_errors_total{reason="limit",target="sw1"} 0.0' in body
    assert ('botwatch_snmp_up{target="sw1"} 1.0' in body) is up
