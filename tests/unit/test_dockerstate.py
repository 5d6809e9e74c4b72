"""dockerstate: Engine API container JSON -> metric families, on recorded podman JSON.

The fixtures in tests/fixtures/dockerstate/ are podman 4.3's compat API answers (cgroup
v1 host), captured once: `list.json`, `inspect-NAME.json` and `stats-NAME.json` for web
(running, healthy, 64 MiB limit, compose labels), worker (running, unlimited), fresh
(created), paused, exit3 (exited 3) and loop (restart policy always on `exit 1`). States
and shapes podman cannot produce here (restarting, removing, dead, unhealthy, the cgroup
breakdowns Docker adds to memory_stats) are variations of those.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.metrics_core import Metric

from exporter.collectors.dockerstate import (
    HEALTH,
    STATES,
    ContainerReading,
    Selection,
    container_families,
    container_state,
    engine_time,
    listed_name,
    working_set,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "dockerstate"


def load(name: str) -> Any:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def listed(name: str) -> dict[str, Any]:
    entries: list[dict[str, Any]] = load("list")
    return next(e for e in entries if listed_name(e) == name)


def reading(name: str, **state: Any) -> ContainerReading:
    inspect = copy.deepcopy(load(f"inspect-{name}"))
    inspect["State"].update(state)
    stats_file = FIXTURES / f"stats-{name}.json"
    stats = json.loads(stats_file.read_text()) if stats_file.exists() else None
    return ContainerReading(listed(name), inspect, stats)


def samples(fams: list[Metric], name: str) -> dict[tuple[str, ...], float]:
    """{label values (sorted by label name): value} of one family's samples named `name`."""
    return {
        tuple(v for _, v in sorted(s.labels.items())): s.value
        for fam in fams
        for s in fam.samples
        if s.name == name
    }


def current(fams: list[Metric], family: str, container: str) -> list[str]:
    """The label values (state or status) whose series is 1 for this container."""
    return [
        other
        for labels, value in samples(fams, family).items()
        if value == 1
        for c, other in [labels]
        if c == container
    ]


@pytest.mark.parametrize(
    ("name", "overrides", "expected"),
    [
        ("web", {}, "running"),
        ("worker", {}, "running"),
        ("fresh", {}, "created"),
        ("paused", {}, "paused"),
        ("exit3", {}, "exited"),
        ("loop", {}, "exited"),  # podman says "stopped" between two restarts
        ("loop", {"Status": "restarting", "Restarting": True}, "restarting"),
        ("exit3", {"Status": "removing"}, "removing"),
        ("exit3", {"Status": "dead", "Dead": True}, "dead"),
        ("fresh", {"Status": "configured"}, "created"),  # libpod's word
    ],
)
def test_each_state_is_one_series_of_seven(
    name: str, overrides: dict[str, Any], expected: str
) -> None:
    fams = container_families([reading(name, **overrides)])
    series = samples(fams, "botwatch_container_state")
    assert sorted(s for _, s in series) == sorted(STATES)
    assert current(fams, "botwatch_container_state", name) == [expected]


def test_unknown_status_sets_no_state() -> None:
    assert container_state({"Status": "exploded", "Running": False}) is None
    fams = container_families([reading("exit3", Status="exploded")])
    assert current(fams, "botwatch_container_state", "exit3") == []


@pytest.mark.parametrize(
    ("name", "health", "expected"),
    [
        ("web", None, "healthy"),
        ("web", "unhealthy", "unhealthy"),
        ("web", "starting", "starting"),
        ("worker", None, "none"),  # no health check
    ],
)
def test_health(name: str, health: str | None, expected: str) -> None:
    r = reading(name)
    if health is not None:
        r.inspect["State"]["Health"]["Status"] = health
    fams = container_families([r])
    assert sorted(s for _, s in samples(fams, "botwatch_container_health")) == sorted(HEALTH)
    assert current(fams, "botwatch_container_health", name) == [expected]


def test_exit_code_restarts_and_oom() -> None:
    fams = container_families([reading("exit3"), reading("loop"), reading("web", OOMKilled=True)])
    assert samples(fams, "botwatch_container_exit_code") == {
        ("exit3",): 3,
        ("loop",): 1,
        ("web",): 0,
    }
    assert samples(fams, "botwatch_container_restarts_total") == {
        ("exit3",): 0,
        ("loop",): 25,
        ("web",): 0,
    }
    assert samples(fams, "botwatch_container_oom_killed") == {
        ("exit3",): 0,
        ("loop",): 0,
        ("web",): 1,
    }


def test_timestamps_and_the_zero_time() -> None:
    fams = container_families([reading("web"), reading("exit3"), reading("fresh")])
    started = samples(fams, "botwatch_container_started_timestamp_seconds")
    finished = samples(fams, "botwatch_container_finished_timestamp_seconds")
    assert started == {
        ("exit3",): pytest.approx(engine_time("2026-11-23T17:00:22.210964421Z")),
        ("web",): pytest.approx(engine_time("2026-11-23T17:00:21.297942718Z")),
    }
    # web is still running and fresh never ran: their 0001-01-01 is no timestamp.
    assert list(finished) == [("exit3",)]
    assert engine_time("2026-11-23T17:00:22Z") == 1795453222.0
    assert engine_time("2026-11-23T18:00:22.5+01:00") == 1795453222.5
    for zero_or_bad in ("0001-01-01T00:00:00Z", "", None, "yesterday"):
        assert engine_time(zero_or_bad) is None


def test_memory_and_cpu_from_podman_stats() -> None:
    fams = container_families([reading("web"), reading("worker"), reading("exit3")])
    web = load("stats-web")
    assert samples(fams, "botwatch_container_memory_usage_bytes")[("web",)] == 487424
    # podman reports no memory breakdown: the working set is the usage.
    assert samples(fams, "botwatch_container_memory_working_set_bytes")[("web",)] == 487424
    # Limit from the container's config: worker is unlimited (podman's stats would say
    # the host's memory), exit3 is not running.
    assert samples(fams, "botwatch_container_memory_limit_bytes") == {("web",): 64 * 2**20}
    cpu = samples(fams, "botwatch_container_cpu_seconds_total")
    assert cpu[("web",)] == web["cpu_stats"]["cpu_usage"]["total_usage"] / 1e9
    assert set(cpu) == {("web",), ("worker",)}  # no stats for a stopped container


def test_working_set_for_cgroup_v1_and_v2_shapes() -> None:
    memory = load("stats-web")["memory_stats"]
    # Docker on cgroup v1: both keys; total_inactive_file counts the whole hierarchy.
    v1 = {**memory, "stats": {"inactive_file": 1000, "total_inactive_file": 4096}}
    # Docker on cgroup v2: inactive_file only (plus anon, file, ... not used here).
    v2 = {**memory, "stats": {"anon": 300000, "file": 90000, "inactive_file": 8192}}
    assert working_set(v1) == 487424 - 4096
    assert working_set(v2) == 487424 - 8192
    assert working_set({"usage": 100, "stats": {"inactive_file": 500}}) == 100
    assert working_set(memory) == 487424
    assert working_set({}) is None


def test_info_labels() -> None:
    fams = container_families([reading("web"), reading("loop")])
    assert set(samples(fams, "botwatch_container_info")) == {
        # sorted label names: compose_project, compose_service, container, image, policy
        ("trader-bot", "trader-api", "web", "localhost/busybox:latest", "unless-stopped"),
        ("", "", "loop", "localhost/busybox:latest", "always"),
    }


def test_every_listed_container_gets_its_series() -> None:
    names = [listed_name(e) for e in load("list")]
    assert sorted(names) == ["exit3", "fresh", "loop", "paused", "web", "worker"]
    fams = container_families([reading(n) for n in names])
    assert {c for c, _ in samples(fams, "botwatch_container_state")} == set(names)
    assert container_families([]) and all(not f.samples for f in container_families([]))


@pytest.mark.parametrize(
    ("include", "exclude", "projects", "expected"),
    [
        (".*", "^$", (), ["exit3", "fresh", "loop", "paused", "web", "worker"]),
        ("^(web|worker)$", "^$", (), ["web", "worker"]),
        (".*", "^(loop|paused)$", (), ["exit3", "fresh", "web", "worker"]),
        ("e", "r", (), ["exit3", "paused", "web"]),  # search, not full match
        (".*", "^$", ("trader-bot",), ["web"]),
        ("^w", "^$", ("trader-bot", "other"), ["web"]),
        (".*", "^web$", ("trader-bot",), []),
    ],
)
def test_selection(
    include: str, exclude: str, projects: tuple[str, ...], expected: list[str]
) -> None:
    selection = Selection(re.compile(include), re.compile(exclude), projects)
    entries = load("list")
    assert sorted(listed_name(e) for e in entries if selection.selects_listed(e)) == expected


def test_listed_name_skips_link_aliases() -> None:
    assert listed_name({"Id": "abc", "Names": ["/web/db", "/db"]}) == "db"
    assert listed_name({"Id": "0123456789abcdef", "Names": []}) == "0123456789ab"


def test_docker_collector_is_off_unless_enabled() -> None:
    from exporter.collectors.docker import DockerConfig
    from exporter.config import Config

    assert not Config().collector_configs()["docker"].wanted()
    assert not DockerConfig.model_validate({"url": "unix:///x.sock"}).wanted()
    on = Config.model_validate({"collectors": {"docker": {"enabled": True}}})
    assert on.collector_configs()["docker"].wanted()
    # system df walks every volume: its own, slower schedule and a longer default timeout.
    df = DockerConfig().system_df
    assert (df.enabled, df.interval, df.timeout) == (True, 300.0, 60.0)
    assert DockerConfig.model_validate({"system_df": {"interval": "30s"}}).system_df.timeout == 30
    config = DockerConfig.model_validate({"include": "^(a|b)$", "compose_projects": ["p"]})
    assert config.selection().selects("a", {"com.docker.compose.project": "p"})
    assert not config.selection().selects("a", {})


def test_importing_the_collectors_does_not_import_their_libraries() -> None:
    # docker's SDK and dbus-fast cost RSS and start-up time: only an enabled collector pays.
    import subprocess
    import sys

    code = (
        "import sys, exporter.registry as r; r.specs();"
        "print('docker' in sys.modules or 'dbus_fast' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "False"
