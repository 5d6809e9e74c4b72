"""The docker collector against a real Docker Engine API: podman's (tests/podman.py).

Most tests drive the collector in-process (tests/streams.py); one runs the real daemon
against the same engine, scrapes it, lints the scrape with promtool, and takes the engine
away and back. Each test selects only its own containers by name. The poll interval is an
hour unless a test says otherwise, so what changes is what the event stream delivered.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client.metrics_core import Metric

from exporter.collector import Context
from exporter.collectors.docker import DockerCollector, DockerConfig, EngineError
from exporter.threads import BlockingCalls
from tests.integration.conftest import Daemon
from tests.integration.podman_fixture import podman  # noqa: F401  (a fixture)
from tests.podman import IMAGE, Podman
from tests.streams import running
from tests.support import eventually, promtool_lint, wait_for

SLEEPER = "while true; do sleep 1; done"
# podman runs no health checks by itself here (it would use systemd timers): the test
# runs each one with `podman healthcheck run`.
HEALTHCHECK = {"test": ["CMD-SHELL", "test -e /tmp/ok"], "interval": 3600 * 10**9, "retries": 1}


def make(engine: Podman, tmp_path: Path, **options: Any) -> DockerCollector:
    options = {"interval": "1h", **options}
    config = DockerConfig(url=engine.url, **options)
    return DockerCollector(config, Context("docker", tmp_path, BlockingCalls()))


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
    # Polled every 5 s here: stats (memory, CPU) come with the poll only. (Not every second:
    # the timeout is capped by the interval, and a loaded CI host's podman can take a second.)
    async with running(make(podman, tmp_path, include="^t1-", interval="5s")) as run:

        def unsettled() -> list[str]:
            checks = {
                "t1-run running": run.value(
                    "botwatch_container_state", container="t1-run", state="running"
                )
                == 1,
                "t1-exit3 exited": run.value(
                    "botwatch_container_state", container="t1-exit3", state="exited"
                )
                == 1,
                "exit code 3": run.value("botwatch_container_exit_code", container="t1-exit3") == 3,
                "a restart of t1-loop": (
                    run.value("botwatch_container_restarts_total", container="t1-loop") or 0
                )
                >= 1,
                "t1-run's memory": (
                    run.value("botwatch_container_memory_usage_bytes", container="t1-run") or 0
                )
                > 0,
                "t1-run's CPU": (
                    run.value("botwatch_container_cpu_seconds_total", container="t1-run") or 0
                )
                > 0,
            }
            return [what for what, ok in checks.items() if not ok]

        try:
            await eventually(lambda: not unsettled(), 30, "running, exited(3), restart, stats")
        except AssertionError as exc:
            # Which part never came says where to look (the engine's restart policy, stats).
            raise AssertionError(
                f"{exc}: still missing {unsettled()}; the collector failed: {run.failure()!r}"
            ) from None
        fams = list(run.stream.families())
        assert containers(fams) == {"t1-run", "t1-exit3", "t1-loop"}
        assert run.value("botwatch_container_memory_limit_bytes", container="t1-run") == 32 * 2**20
        assert run.value("botwatch_container_started_timestamp_seconds", container="t1-run")
        assert (
            run.value("botwatch_container_finished_timestamp_seconds", container="t1-run") is None
        )
        assert run.value("botwatch_container_finished_timestamp_seconds", container="t1-exit3")
        assert run.value("botwatch_container_health", container="t1-run", status="none") == 1
        assert (
            run.value(
                "botwatch_container_info",
                container="t1-loop",
                image=IMAGE,
                compose_project="",
                restart_policy="always",
            )
            == 1
        )
        assert run.value("botwatch_container_info", container="t1-run", compose_project="p1")
        first = run.value("botwatch_container_restarts_total", container="t1-loop") or 0
        dies = run.value("botwatch_container_events_total", container="t1-loop", event="die") or 0
        await eventually(
            lambda: (
                (run.value("botwatch_container_restarts_total", container="t1-loop") or 0) > first
            ),
            30,
            "the restart count to rise",
        )
        await eventually(
            lambda: (
                (
                    run.value("botwatch_container_events_total", container="t1-loop", event="die")
                    or 0
                )
                > dies
            ),
            30,
            "die events of the loop",
        )
        assert run.value("botwatch_container_exits_total", container="t1-loop", exit_code="1")

        # A compose-project selection keeps only t1-run.
        only_p1 = make(podman, tmp_path / "p1", include="^t1-", compose_projects=["p1"])
        async with running(only_p1) as p1:
            await eventually(
                lambda: p1.value("botwatch_container_state", state="running"), 30, "p1's poll"
            )
            assert containers(list(p1.stream.families())) == {"t1-run"}

        # Removed: gone from the snapshot at its event, without a poll.
        client = podman.client()
        try:
            client.containers.get("t1-exit3").remove(force=True)
        finally:
            client.close()
        await eventually(
            lambda: containers(list(run.stream.families())) == {"t1-run", "t1-loop"}, 10, "removal"
        )
        assert run.failure() is None


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


async def test_health_starting_healthy_unhealthy_from_events(
    podman: Podman,  # noqa: F811
    tmp_path: Path,
) -> None:
    container = podman.run("t2-hc", f"touch /tmp/ok; {SLEEPER}", healthcheck=HEALTHCHECK)
    # The poll runs once an hour: each change below can only come from an event.
    async with running(make(podman, tmp_path, include="^t2-", stats=False)) as run:

        def health() -> str | None:
            for status in ("starting", "healthy", "unhealthy", "none"):
                if run.value("botwatch_container_health", container="t2-hc", status=status):
                    return status
            return None

        await eventually(lambda: health() == "starting", 30, "starting")
        wait_for(lambda: container.exec_run(["test", "-e", "/tmp/ok"]).exit_code == 0, 10, "ok")
        assert healthcheck_run(podman, "t2-hc") == 0
        await eventually(lambda: health() == "healthy", 10, "healthy")
        assert container.exec_run(["rm", "/tmp/ok"]).exit_code == 0
        assert healthcheck_run(podman, "t2-hc") != 0
        await eventually(lambda: health() == "unhealthy", 10, "unhealthy")
        await eventually(
            lambda: (
                run.value(
                    "botwatch_container_events_total", container="t2-hc", event="health_status"
                )
                == 2
            ),
            10,
            "two health_status events",
        )
        # stats: false -> no resource series, the rest as before.
        assert run.value("botwatch_container_memory_usage_bytes", container="t2-hc") is None


async def test_unreachable_engine_fails_the_run(tmp_path: Path) -> None:
    config = DockerConfig(url=f"unix://{tmp_path}/nothing.sock", interval="5s", timeout="2s")
    async with running(
        DockerCollector(config, Context("docker", tmp_path, BlockingCalls()))
    ) as run:
        await eventually(run.failure, 10, "the run to fail")
        assert isinstance(run.failure(), EngineError)
        assert str(run.failure()) == "connect: cannot reach the engine: No such file or directory"


async def test_counters_are_exact_across_a_botwatch_restart(
    podman: Podman,  # noqa: F811
    tmp_path: Path,
) -> None:
    """podman keeps its events in a file: those of botwatch's downtime are replayed."""
    container = podman.run("t4-app", SLEEPER)

    def cycle() -> None:
        container.stop(timeout=0)
        container.start()

    async with running(make(podman, tmp_path, include="^t4-")) as run:
        await eventually(lambda: run.value("botwatch_container_state", state="running"), 30, "up")
        for _ in range(2):
            cycle()
        await eventually(
            lambda: run.value("botwatch_container_events_total", event="start") == 2, 30, "2"
        )
    for _ in range(3):
        cycle()
    async with running(make(podman, tmp_path, include="^t4-")) as run:
        await eventually(
            lambda: run.value("botwatch_container_events_total", event="start") == 5, 30, "5"
        )
        assert run.value("botwatch_container_events_total", event="die") == 5
        cycle()
        await eventually(
            lambda: run.value("botwatch_container_events_total", event="start") == 6, 30, "6"
        )
        assert run.value("botwatch_container_events_total", event="die") == 6
        assert run.failure() is None


async def test_system_df_volume_and_writable_layer_sizes(
    podman: Podman,  # noqa: F811
    tmp_path: Path,
) -> None:
    client = podman.client()
    try:
        client.volumes.create("t5-data")
    finally:
        client.close()
    script = f"dd if=/dev/zero of=/data/f bs=1024 count=300; echo x > /rw; {SLEEPER}"
    podman.run("t5-app", script, volumes={"t5-data": {"bind": "/data", "mode": "rw"}})
    async with running(make(podman, tmp_path, include="^t5-", system_df={"interval": "1s"})) as run:
        await eventually(
            lambda: (
                (run.value("botwatch_docker_volume_size_bytes", volume="t5-data") or 0)
                >= 300 * 1024
            ),
            30,
            "the volume's 300 KiB",
        )
        assert run.value("botwatch_docker_volume_containers", volume="t5-data") == 1
        assert (run.value("botwatch_container_rw_size_bytes", container="t5-app") or 0) > 0
        assert (run.value("botwatch_docker_images_size_bytes") or 0) > 0
        assert run.value("botwatch_docker_images") == 1
        assert run.value("botwatch_docker_system_df_errors_total") == 0


def test_daemon_event_driven_scrape_promtool_and_engine_away(
    podman: Podman,  # noqa: F811
    tmp_path: Path,
    daemon: Callable[..., Daemon],
) -> None:
    podman.run("t3-web", SLEEPER)
    victim = podman.run("t3-victim", SLEEPER)
    podman.run("t3-gone", SLEEPER)
    path = tmp_path / "botwatch.yml"
    # An hour between polls: every change below reaches /metrics through the event stream,
    # or (after the engine's absence) through the resync that follows a reconnect.
    path.write_text(
        "web: {listen_address: '127.0.0.1:0'}\n"
        f"state_dir: {tmp_path}\n"
        "collectors:\n"
        "  host: {enabled: false}\n"
        f"  docker: {{enabled: true, url: '{podman.url}', include: '^t3-', interval: 1h,"
        " timeout: 5s}\n"
    )
    d = daemon(path)
    wait_for(
        lambda: d.sample("botwatch_container_state", container="t3-victim", state="running") == 1,
        20,
        "t3-victim running on /metrics",
    )
    assert d.sample("botwatch_collector_up", collector="docker") == 1
    assert promtool_lint(d.metrics()) == ""

    victim.kill()
    wait_for(
        lambda: d.sample("botwatch_container_exit_code", container="t3-victim") == 137,
        10,
        "the die event on /metrics",
    )
    assert d.sample("botwatch_container_state", container="t3-victim", state="exited") == 1
    assert d.sample("botwatch_container_events_total", container="t3-victim", event="die") == 1
    assert d.sample("botwatch_container_exits_total", container="t3-victim", exit_code="137") == 1

    podman.stop()
    try:
        wait_for(
            lambda: d.sample("botwatch_collector_up", collector="docker") == 0,
            20,
            "the docker collector to go down",
        )
        assert d.proc.poll() is None
        assert d.get("/-/healthy")[0] == 200
        # Gauges go with the engine (they would lie); counters stay.
        assert d.sample("botwatch_container_state", container="t3-web") is None
        assert d.sample("botwatch_container_events_total", container="t3-victim", event="die") == 1
        failures = d.events("collector failed")
        assert failures and failures[0]["error"].startswith("EngineError: ")
        # While botwatch cannot see it, a container dies and is removed.
        podman.cli("rm", "--force", "--time=0", "t3-gone")
    finally:
        podman.start()
    wait_for(
        lambda: d.sample("botwatch_collector_up", collector="docker") == 1,
        30,
        "the docker collector to come back",
    )
    # The resync reflects the gap, and the engine's replayed events are counted.
    assert d.sample("botwatch_container_state", container="t3-gone") is None
    assert d.sample("botwatch_container_state", container="t3-web", state="running") == 1
    wait_for(
        lambda: d.sample("botwatch_container_events_total", container="t3-gone", event="die") == 1,
        10,
        "the die of the gap",
    )
    assert d.sample("botwatch_container_events_total", container="t3-victim", event="die") == 1
    assert promtool_lint(d.metrics()) == ""
