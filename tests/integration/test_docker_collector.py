"""The docker collector against a real Docker Engine API: podman's (tests/podman.py).

Most tests drive the collector in-process (build it, call collect()); one runs the real
daemon against the same engine, scrapes it, lints the scrape with promtool, and takes the
engine away and back. Each test selects only its own containers by name.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.metrics_core import Metric

from exporter.collector import Context
from exporter.collectors.docker import DockerCollector, DockerConfig, EngineError
from exporter.threads import BlockingCalls
from tests.integration.conftest import Daemon
from tests.integration.podman_fixture import podman  # noqa: F401  (a fixture)
from tests.podman import IMAGE, Podman
from tests.support import eventually, promtool_lint, wait_for

SLEEPER = "while true; do sleep 1; done"
# podman runs no health checks by itself here (it would use systemd timers): the test
# runs each one with `podman healthcheck run`.
HEALTHCHECK = {"test": ["CMD-SHELL", "test -e /tmp/ok"], "interval": 3600 * 10**9, "retries": 1}


def make(engine: Podman, tmp_path: Path, **options: Any) -> DockerCollector:
    config = DockerConfig(url=engine.url, interval="5s", timeout="4s", **options)
    return DockerCollector(config, Context("docker", tmp_path, BlockingCalls()))


def value(fams: list[Metric], name: str, **labels: str) -> float | None:
    for fam in fams:
        for s in fam.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return None


def containers(fams: list[Metric]) -> set[str]:
    return {
        s.labels["container"]
        for fam in fams
        for s in fam.samples
        if s.name == "botwatch_container_state"
    }


async def test_running_exited_restart_loop_and_removal(
    podman: Podman,  # noqa: F811
    tmp_path: Path,
) -> None:
    podman.run("t1-run", SLEEPER, labels={"com.docker.compose.project": "p1"}, mem_limit="32m")
    podman.run("t1-exit3", "exit 3")
    podman.run("t1-loop", "exit 1", restart_policy={"Name": "always"})
    collector = make(podman, tmp_path, include="^t1-")
    try:

        async def settled() -> list[Metric] | None:
            fams = await collector.collect()
            ok = (
                value(fams, "botwatch_container_state", container="t1-run", state="running") == 1
                and value(fams, "botwatch_container_state", container="t1-exit3", state="exited")
                == 1
                and value(fams, "botwatch_container_exit_code", container="t1-exit3") == 3
                and (value(fams, "botwatch_container_restarts_total", container="t1-loop") or 0)
                >= 1
            )
            return fams if ok else None

        fams = await eventually(settled, 30, "running, exited(3) and a first restart")
        assert containers(fams) == {"t1-run", "t1-exit3", "t1-loop"}
        assert (
            value(fams, "botwatch_container_memory_limit_bytes", container="t1-run") == 32 * 2**20
        )
        assert (value(fams, "botwatch_container_memory_usage_bytes", container="t1-run") or 0) > 0
        assert (value(fams, "botwatch_container_cpu_seconds_total", container="t1-run") or 0) > 0
        assert value(fams, "botwatch_container_started_timestamp_seconds", container="t1-run")
        assert (
            value(fams, "botwatch_container_finished_timestamp_seconds", container="t1-run") is None
        )
        assert value(fams, "botwatch_container_finished_timestamp_seconds", container="t1-exit3")
        assert value(fams, "botwatch_container_health", container="t1-run", status="none") == 1
        assert (
            value(
                fams,
                "botwatch_container_info",
                container="t1-loop",
                image=IMAGE,
                compose_project="",
                restart_policy="always",
            )
            == 1
        )
        assert value(fams, "botwatch_container_info", container="t1-run", compose_project="p1")
        first = value(fams, "botwatch_container_restarts_total", container="t1-loop") or 0

        async def restarted_again() -> bool:
            fams = await collector.collect()
            count = value(fams, "botwatch_container_restarts_total", container="t1-loop") or 0
            return count > first

        await eventually(restarted_again, 30, "the restart count to rise")

        # A compose-project selection keeps only t1-run.
        only_p1 = make(podman, tmp_path, include="^t1-", compose_projects=["p1"])
        assert containers(await only_p1.collect()) == {"t1-run"}
        await only_p1.close()

        client = podman.client()
        try:
            client.containers.get("t1-exit3").remove(force=True)
        finally:
            client.close()
        assert containers(await collector.collect()) == {"t1-run", "t1-loop"}
    finally:
        await collector.close()


def healthcheck_run(engine: Podman, name: str) -> int:
    """`podman healthcheck run NAME` on the test engine's storage: 0 healthy, 1 unhealthy."""
    done = subprocess.run(
        ["podman", "healthcheck", "run", name],
        env=engine.env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    return done.returncode


async def test_health_starting_healthy_unhealthy(
    podman: Podman,  # noqa: F811
    tmp_path: Path,
) -> None:
    container = podman.run("t2-hc", f"touch /tmp/ok; {SLEEPER}", healthcheck=HEALTHCHECK)
    collector = make(podman, tmp_path, include="^t2-", stats=False)
    try:

        async def health() -> str | None:
            fams = await collector.collect()
            for status in ("starting", "healthy", "unhealthy", "none"):
                if value(fams, "botwatch_container_health", container="t2-hc", status=status):
                    return status
            return None

        assert await health() == "starting"
        wait_for(lambda: container.exec_run(["test", "-e", "/tmp/ok"]).exit_code == 0, 10, "ok")
        assert healthcheck_run(podman, "t2-hc") == 0
        assert await health() == "healthy"
        assert container.exec_run(["rm", "/tmp/ok"]).exit_code == 0
        assert healthcheck_run(podman, "t2-hc") != 0
        assert await health() == "unhealthy"
        # stats: false -> no resource series, the rest as before.
        fams = await collector.collect()
        assert value(fams, "botwatch_container_memory_usage_bytes", container="t2-hc") is None
    finally:
        await collector.close()


async def test_unreachable_engine_fails_the_round(tmp_path: Path) -> None:
    config = DockerConfig(url=f"unix://{tmp_path}/nothing.sock", interval="5s", timeout="2s")
    collector = DockerCollector(config, Context("docker", tmp_path, BlockingCalls()))
    with pytest.raises(EngineError) as caught:
        await collector.collect()
    assert str(caught.value) == "cannot reach the engine: No such file or directory"
    await collector.close()


def test_daemon_scrape_promtool_and_engine_away(
    podman: Podman,  # noqa: F811
    tmp_path: Path,
    daemon: Callable[..., Daemon],
) -> None:
    podman.run("t3-web", SLEEPER)
    path = tmp_path / "botwatch.yml"
    path.write_text(
        "web: {listen_address: '127.0.0.1:0'}\n"
        f"state_dir: {tmp_path}\n"
        "collectors:\n"
        "  host: {enabled: false}\n"
        f"  docker: {{enabled: true, url: '{podman.url}', include: '^t3-', interval: 1s,"
        " timeout: 800ms}\n"
    )
    d = daemon(path)
    wait_for(
        lambda: d.sample("botwatch_container_state", container="t3-web", state="running") == 1,
        20,
        "t3-web running on /metrics",
    )
    assert d.sample("botwatch_collector_up", collector="docker") == 1
    body = d.metrics()
    assert promtool_lint(body) == ""

    podman.stop()
    try:
        wait_for(
            lambda: d.sample("botwatch_collector_up", collector="docker") == 0,
            20,
            "the docker collector to go down",
        )
        assert d.proc.poll() is None
        assert d.get("/-/healthy")[0] == 200
        failures = d.events("collector failed")
        assert failures and "cannot reach the engine" in failures[0]["error"]
    finally:
        podman.start()
    wait_for(
        lambda: d.sample("botwatch_collector_up", collector="docker") == 1,
        20,
        "the docker collector to come back",
    )
    assert d.sample("botwatch_container_state", container="t3-web", state="running") == 1
