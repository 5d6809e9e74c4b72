"""ProcessCollector rounds on a synthetic /proc tree, and what it logs about processes it
may not read."""

from __future__ import annotations

import shutil
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.metrics_core import Metric

from exporter.collector import Context
from exporter.collectors import process as process_module
from exporter.collectors.process import ProcessCollector, ProcessConfig
from exporter.collectors.processgroup import ProcessSample, Selector
from exporter.threads import BlockingCalls
from tests.unit.test_processgroup import BOT_CMDLINE, proc
from tests.unit.test_processscan import FakeProc, tcp_line


def collector(tmp_path: Path, procfs: Path, **config: Any) -> ProcessCollector:
    groups = [
        {"name": "trader-api", "match_name": "^trader-api$"},
        {"name": "alphaengine-bot", "match_cmdline": BOT_CMDLINE},
    ]
    return ProcessCollector(
        ProcessConfig.model_validate({"procfs": procfs, "processes": groups, **config}),
        Context("process", tmp_path, BlockingCalls()),
    )


def value(families: Sequence[Metric], name: str, **labels: str) -> float | None:
    for family in families:
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return float(s.value)
    return None


async def test_rounds_on_a_procfs_tree(tmp_path: Path) -> None:
    fake = FakeProc(tmp_path / "proc")
    ports = [443, 5432, 6379, 8080]
    fake.add(
        10,
        "trader-api",
        ["/app/trader-api"],
        fds={i: f"socket:[{100 + i}]" for i in range(len(ports))},
        tcp=[tcp_line(40000 + i, port, 0x01, 100 + i) for i, port in enumerate(ports)],
    )
    fake.add(11, "python3", ["python3", "-m", "bot"])
    coll = collector(tmp_path, fake.root, max_ports=2)
    families = await coll.collect()
    conns = "botwatch_process_established_connections"
    api = {"process": "trader-api", "direction": "outbound"}
    assert value(families, conns, **api, port="443") == 1
    assert value(families, conns, **api, port="5432") == 1
    assert value(families, conns, **api, port="other") == 2  # max_ports: 2
    assert value(families, "botwatch_process_up", process="alphaengine-bot") == 1
    cpu = value(families, "botwatch_process_cpu_seconds_total", process="trader-api", mode="user")

    # trader-api exits: down, its gauges gone, its CPU counter kept.
    shutil.rmtree(fake.root / "10")
    families = await coll.collect()
    assert value(families, "botwatch_process_up", process="trader-api") == 0
    assert value(families, conns, **api, port="443") is None
    assert (
        value(families, "botwatch_process_cpu_seconds_total", process="trader-api", mode="user")
        == cpu
    )


async def test_a_missing_procfs_fails_the_round(tmp_path: Path) -> None:
    coll = collector(tmp_path, tmp_path / "no-such-proc")
    with pytest.raises(FileNotFoundError):
        await coll.collect()


async def test_unreadable_files_are_logged_when_they_start_and_when_they_end(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    captured_logs: list[MutableMapping[str, Any]],
) -> None:
    # Being denied cannot be staged in a file tree for root; the scan's result is given.
    readable = proc(7)
    denied = replace(readable, open_fds=None, connections=None)
    rounds: list[Mapping[str, list[ProcessSample]]] = [
        {"trader-api": [denied]},
        {"trader-api": [denied]},
        {},  # gone: neither denied nor readable
        {"trader-api": [denied]},
        {"trader-api": [readable]},
    ]

    def fake_scan(procfs: Path, selectors: Sequence[Selector]) -> Mapping[str, list[Any]]:
        return rounds.pop(0)

    monkeypatch.setattr(process_module, "scan", fake_scan)
    coll = collector(tmp_path, tmp_path)
    served = [await coll.collect() for _ in range(5)]
    denied_values = [
        value(f, "botwatch_process_access_denied", process="trader-api") for f in served
    ]
    assert denied_values == [1, 1, 0, 1, 0]
    events = [
        (e["event"], e["log_level"], e.get("pids"))
        for e in captured_logs
        if e.get("process") == "trader-api"
    ]
    assert events == [
        ("process fds not readable (needs root or CAP_SYS_PTRACE)", "warning", [7]),
        ("process fds readable again", "info", None),
    ]
