"""Process groups on synthetic snapshots: selection, aggregation, the CPU counter across
exits, bounded port labels, and the families a round serves."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace

import pytest
from prometheus_client.metrics_core import Metric

from exporter.collectors.processfs import Endpoint
from exporter.collectors.processgroup import (
    CpuLedger,
    PortLabels,
    ProcessGroups,
    ProcessSample,
    aggregate,
    groups_of,
    selects,
)

# What the presets use (README, exporter/presets): kept here so a change is deliberate.
TRADER_API_NAME = r"^trader-api$"
BOT_CMDLINE = r"python[0-9.]* -m bot( |$)"
WEB_CMDLINE = r"(^|/|-m )(uvicorn|gunicorn|hypercorn)(:| |$)"

OUT_443 = Endpoint("outbound", 443)
OUT_5432 = Endpoint("outbound", 5432)
IN_8000 = Endpoint("inbound", 8000)


@dataclass(frozen=True)
class Sel:
    name: str
    match_name: re.Pattern[str] | None = None
    match_cmdline: re.Pattern[str] | None = None


def sel(name: str, match_name: str | None = None, match_cmdline: str | None = None) -> Sel:
    return Sel(
        name,
        re.compile(match_name) if match_name is not None else None,
        re.compile(match_cmdline) if match_cmdline is not None else None,
    )


def proc(pid: int, **fields: object) -> ProcessSample:
    base = ProcessSample(
        pid=pid,
        start_ticks=pid * 100,
        start_time=1_700_000_000.0 + pid,
        cpu_user=1.0,
        cpu_system=0.5,
        rss_bytes=100 << 20,
        threads=4,
        open_fds=10,
        fd_limit=1024,
        connections={},
    )
    return replace(base, **fields)  # type: ignore[arg-type]


# --- selection ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cmdline", "bot", "web"),
    [
        ("/opt/alphaengine/venv/bin/python -m bot", True, False),
        ("python3.11 -m bot --config config/secrets.yaml", True, False),
        ("python -m botwatch", False, False),
        ("python -m bot.tools.backfill", False, False),
        ("grep -E python.*bot", False, False),
        ("/opt/alphaengine/venv/bin/uvicorn web.app:app --host 127.0.0.1 --port 8000", False, True),
        ("/opt/alphaengine/venv/bin/python -m uvicorn web.app:app --port 8000", False, True),
        ("gunicorn -k uvicorn.workers.UvicornWorker -b 127.0.0.1:8000 web.app:app", False, True),
        ("gunicorn: worker [web.app:app]", False, True),
        ("python -m uvicorn_tools", False, False),
    ],
)
def test_the_preset_command_line_regexes(cmdline: str, bot: bool, web: bool) -> None:
    assert bool(re.search(BOT_CMDLINE, cmdline)) is bot
    assert bool(re.search(WEB_CMDLINE, cmdline)) is web


def test_name_and_command_line_must_both_match_when_both_are_given() -> None:
    both = sel("bot", match_name="^python", match_cmdline=BOT_CMDLINE)
    assert selects(both, "python3.11", "python3.11 -m bot")
    assert not selects(both, "bash", "bash -c python -m bot")
    assert not selects(both, "python3.11", "python3.11 -m pytest")
    assert selects(sel("api", match_name=TRADER_API_NAME), "trader-api", "")
    assert not selects(sel("api", match_name=TRADER_API_NAME), "trader-api-migrate", "")


def test_a_process_belongs_to_every_group_that_selects_it() -> None:
    selectors = [
        sel("bot", match_cmdline=BOT_CMDLINE),
        sel("python", match_name="^python"),
        sel("api", match_name=TRADER_API_NAME),
    ]
    assert groups_of(selectors, "python3", "python3 -m bot") == ["bot", "python"]
    assert groups_of(selectors, "sshd", "sshd: root") == []


# --- aggregation --------------------------------------------------------------------------


def test_a_group_sums_its_processes_and_reports_the_oldest_start() -> None:
    reading = aggregate(
        [
            proc(10, rss_bytes=300, threads=5, open_fds=20, fd_limit=1024),
            proc(11, rss_bytes=200, threads=2, open_fds=1000, fd_limit=4096),
            proc(9, rss_bytes=100, threads=1, open_fds=3, fd_limit=2048),
        ]
    )
    assert reading.instances == 3
    assert (reading.rss_bytes, reading.threads, reading.open_fds) == (600, 8, 1023)
    assert reading.start_time == 1_700_000_009.0
    # The tightest limit, and the process nearest its own limit (not the sum's ratio).
    assert reading.max_fds == 1024
    assert reading.worst_fd_ratio == pytest.approx(1000 / 4096)
    assert reading.access_denied == 0


def test_unreadable_processes_are_left_out_of_fds_and_connections_and_counted() -> None:
    mine = proc(10, open_fds=50, fd_limit=100, connections={1: OUT_443})
    # Another user's process: fds not listable at all.
    theirs = proc(11, open_fds=None, fd_limit=1024, connections=None)
    # Listable, but where the fds point is not readable (a non-dumpable process).
    half = proc(12, open_fds=7, fd_limit=1024, connections=None)
    reading = aggregate([mine, theirs, half])
    assert reading.instances == 3
    assert reading.access_denied == 2
    assert reading.open_fds == 57
    assert reading.worst_fd_ratio == 0.5
    assert reading.connections == Counter({OUT_443: 1})
    # Memory, threads and start time come from the world-readable stat: still complete.
    assert reading.rss_bytes == 3 * (100 << 20)

    nobody_readable = aggregate([theirs])
    assert nobody_readable.open_fds is None
    assert nobody_readable.worst_fd_ratio is None
    assert nobody_readable.connections is None
    assert nobody_readable.max_fds == 1024


def test_a_socket_shared_by_forked_workers_is_one_connection() -> None:
    master = proc(10, connections={1: OUT_5432, 2: IN_8000})
    worker = proc(11, connections={1: OUT_5432, 3: IN_8000})
    assert aggregate([master, worker]).connections == Counter({OUT_5432: 1, IN_8000: 2})


def test_an_empty_group() -> None:
    reading = aggregate([])
    assert (reading.instances, reading.rss_bytes, reading.start_time) == (0, 0, None)
    assert reading.open_fds is None
    assert reading.connections is None


# --- the CPU counter ----------------------------------------------------------------------


def test_cpu_keeps_what_exited_workers_used() -> None:
    ledger = CpuLedger()
    assert ledger.update([]) is None  # never seen: no series yet
    a, b = proc(10, cpu_user=5.0, cpu_system=1.0), proc(11, cpu_user=3.0, cpu_system=2.0)
    assert ledger.update([a, b]) == (8.0, 3.0)
    a2 = replace(a, cpu_user=6.0, cpu_system=1.5)
    assert ledger.update([a2]) == (9.0, 3.5)  # b exited: its 3.0 + 2.0 stay
    # A new worker on b's PID is another process: counted from its own start.
    b_again = proc(11, start_ticks=99_999, cpu_user=0.25, cpu_system=0.0)
    assert ledger.update([a2, b_again]) == (9.25, 3.5)
    # All gone (the bot crashed): the counter stays where it was, for rate() to read 0.
    assert ledger.update([]) == (9.25, 3.5)
    # Restarted: it goes on from there, no reset.
    restarted = proc(10, start_ticks=123_456, cpu_user=0.5, cpu_system=0.25)
    assert ledger.update([restarted]) == (9.75, 3.75)


def test_cpu_never_goes_down_over_random_churn() -> None:
    ledger = CpuLedger()
    previous = (0.0, 0.0)
    live: dict[int, ProcessSample] = {}
    for step in range(60):
        # Deterministic churn: a worker exits every few rounds and another starts.
        if step % 4 == 0 and live:
            live.pop(min(live))
        if step % 3 == 0:
            pid = 100 + step
            live[pid] = proc(pid, cpu_user=0.0, cpu_system=0.0)
        live = {
            p: replace(s, cpu_user=s.cpu_user + 0.1, cpu_system=s.cpu_system + 0.05)
            for p, s in live.items()
        }
        now = ledger.update(list(live.values()))
        assert now is not None
        assert now[0] >= previous[0] and now[1] >= previous[1]
        previous = now


# --- port labels --------------------------------------------------------------------------


def test_ports_past_the_cap_are_other_and_admitted_ports_stay_at_zero() -> None:
    labels = PortLabels(cap=2)
    first = labels.fold(Counter({OUT_443: 3, OUT_5432: 1}))
    assert first == {("outbound", "443"): 3, ("outbound", "5432"): 1}
    second = labels.fold(Counter({IN_8000: 4, Endpoint("outbound", 6379): 1}))
    assert second == {
        ("outbound", "443"): 0,
        ("outbound", "5432"): 0,
        ("inbound", "other"): 4,
        ("outbound", "other"): 1,
    }
    # "other" has appeared: it stays too, and the admitted set never changes.
    assert labels.fold(Counter({OUT_443: 1})) == {
        ("outbound", "443"): 1,
        ("outbound", "5432"): 0,
        ("inbound", "other"): 0,
        ("outbound", "other"): 0,
    }


def test_the_busiest_new_ports_are_admitted_first() -> None:
    labels = PortLabels(cap=1)
    folded = labels.fold(Counter({Endpoint("outbound", 9000): 1, OUT_443: 5}))
    assert folded == {("outbound", "443"): 5, ("outbound", "other"): 1}


# --- the families of a round --------------------------------------------------------------


def values(families: Sequence[Metric]) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families for s in f.samples}


def value(families: Sequence[Metric], name: str, **labels: str) -> float | None:
    return values(families).get((name, tuple(sorted(labels.items()))))


def names(families: Sequence[Metric], process: str) -> set[str]:
    return {s.name for f in families for s in f.samples if s.labels["process"] == process}


def test_a_round_serves_every_group_and_only_what_is_known() -> None:
    groups = ProcessGroups(["trader-api", "alphaengine-bot"], max_ports=10)
    api = proc(7, open_fds=900, fd_limit=1024, connections={1: OUT_5432, 2: OUT_443})
    families = groups.update({"trader-api": [api]})
    assert value(families, "botwatch_process_up", process="trader-api") == 1
    assert value(families, "botwatch_process_instances", process="trader-api") == 1
    assert value(families, "botwatch_process_open_fds", process="trader-api") == 900
    assert value(families, "botwatch_process_max_fds", process="trader-api") == 1024
    assert value(families, "botwatch_process_worst_fd_ratio", process="trader-api") == (
        pytest.approx(900 / 1024)
    )
    assert value(families, "botwatch_process_cpu_seconds_total", process="trader-api", mode="user")
    conns = "botwatch_process_established_connections"
    assert value(families, conns, process="trader-api", direction="outbound", port="443") == 1
    assert value(families, conns, process="trader-api", direction="outbound", port="5432") == 1
    # A group that never ran: up 0 and its count, nothing that would be a made-up value.
    assert names(families, "alphaengine-bot") == {
        "botwatch_process_up",
        "botwatch_process_instances",
        "botwatch_process_access_denied",
    }
    assert value(families, "botwatch_process_up", process="alphaengine-bot") == 0

    # trader-api exits: its gauges go, its CPU counter stays.
    families = groups.update({})
    assert names(families, "trader-api") == {
        "botwatch_process_up",
        "botwatch_process_instances",
        "botwatch_process_access_denied",
        "botwatch_process_cpu_seconds_total",
    }
    assert value(families, "botwatch_process_up", process="trader-api") == 0
    assert [f.name for f in families] == [
        "botwatch_process_up",
        "botwatch_process_instances",
        "botwatch_process_access_denied",
        "botwatch_process_cpu_seconds",
    ]


def test_an_unreadable_group_says_so_instead_of_serving_zeros() -> None:
    groups = ProcessGroups(["nginx"], max_ports=10)
    families = groups.update({"nginx": [proc(3, open_fds=None, connections=None)]})
    assert value(families, "botwatch_process_access_denied", process="nginx") == 1
    assert "botwatch_process_open_fds" not in names(families, "nginx")
    assert "botwatch_process_established_connections" not in names(families, "nginx")
    assert value(families, "botwatch_process_resident_memory_bytes", process="nginx") == 100 << 20
