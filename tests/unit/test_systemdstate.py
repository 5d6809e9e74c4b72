"""systemdstate: unit properties -> families (pure), with the shapes systemd really sends."""

from __future__ import annotations

from typing import Any

import pytest

from exporter.collectors.systemdstate import (
    ACTIVE_STATES,
    RESULTS,
    UINT64_MAX,
    UnitReading,
    unit_families,
)
from tests.streams import value

UNIT = {
    "Id": "alphaengine-bot.service",
    "LoadState": "loaded",
    "ActiveState": "active",
    "SubState": "running",
    "ActiveEnterTimestamp": 1_795_000_000_123_456,
}
SERVICE = {
    "NRestarts": 2,
    "Result": "success",
    "ExecMainStatus": 0,
    "MemoryCurrent": 104_857_600,
}


def reading(unit: dict[str, Any] | None = None, service: dict[str, Any] | None = None) -> Any:
    return UnitReading(
        "alphaengine-bot.service", {**UNIT, **(unit or {})}, {**SERVICE, **(service or {})}
    )


@pytest.mark.parametrize("state", ACTIVE_STATES)
def test_each_active_state_is_one_series_of_six(state: str) -> None:
    fams = unit_families([reading({"ActiveState": state})])
    for s in ACTIVE_STATES:
        assert value(fams, "botwatch_systemd_unit_state", state=s) == (1 if s == state else 0)


def test_an_unknown_state_sets_none() -> None:
    fams = unit_families([reading({"ActiveState": "maintenance"})])
    assert all(value(fams, "botwatch_systemd_unit_state", state=s) == 0 for s in ACTIVE_STATES)


@pytest.mark.parametrize("result", RESULTS)
def test_each_result(result: str) -> None:
    fams = unit_families([reading(service={"Result": result})])
    for r in RESULTS:
        assert value(fams, "botwatch_systemd_unit_result", result=r) == (1 if r == result else 0)


def test_values_and_units() -> None:
    fams = unit_families([reading(service={"NRestarts": 3, "ExecMainStatus": 137})])
    assert value(fams, "botwatch_systemd_service_restarts_total") == 3
    assert value(fams, "botwatch_systemd_service_main_exit_status") == 137
    assert value(fams, "botwatch_systemd_unit_memory_bytes") == 104_857_600
    assert value(fams, "botwatch_systemd_unit_active_enter_timestamp_seconds") == pytest.approx(
        1_795_000_000.123456
    )
    assert value(fams, "botwatch_systemd_unit_sub_state_info", sub_state="running") == 1


def test_what_systemd_leaves_unset_is_left_out() -> None:
    # No memory accounting: MemoryCurrent is UINT64_MAX. Never active: timestamp 0.
    fams = unit_families(
        [reading({"ActiveEnterTimestamp": 0}, {"MemoryCurrent": UINT64_MAX, "Result": ""})]
    )
    assert value(fams, "botwatch_systemd_unit_memory_bytes") is None
    assert value(fams, "botwatch_systemd_unit_active_enter_timestamp_seconds") is None
    assert value(fams, "botwatch_systemd_unit_result") is None
    # An old systemd without NRestarts; a unit that is not a service.
    old = UnitReading("a.service", UNIT, {"Result": "success"})
    socket = UnitReading("a.socket", {**UNIT, "SubState": "listening"})
    fams = unit_families([old, socket])
    assert value(fams, "botwatch_systemd_service_restarts_total") is None
    assert value(fams, "botwatch_systemd_unit_result", unit="a.socket") is None
    assert value(fams, "botwatch_systemd_unit_state", unit="a.socket", state="active") == 1


def test_garbage_values_are_left_out_not_fatal() -> None:
    fams = unit_families(
        [reading({"ActiveEnterTimestamp": "x", "SubState": 3}, {"NRestarts": True})]
    )
    assert value(fams, "botwatch_systemd_unit_active_enter_timestamp_seconds") is None
    assert value(fams, "botwatch_systemd_service_restarts_total") is None
    assert value(fams, "botwatch_systemd_unit_sub_state_info") is None
