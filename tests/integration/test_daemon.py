"""The real daemon, as a subprocess: scrape, formats, faults, reload and shutdown."""

from __future__ import annotations

import gzip
import os
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path

from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import Daemon, fake_procfs
from tests.support import promtool_lint, run_cli, wait_for

StartDaemon = Callable[..., Daemon]
OPENMETRICS = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"


def config(tmp_path: Path, body: str, name: str = "botwatch.yml") -> Path:
    # Its own state_dir: the default (/var/lib/botwatch) is the machine's, not the test's.
    path = tmp_path / name
    path.write_text(
        f"web: {{listen_address: '127.0.0.1:0'}}\nstate_dir: {tmp_path / 'state'}\n" + body
    )
    return path


FAST_HOST = (
    "collectors:\n  host: {interval: 1s, timeout: 800ms, filesystems: {stat_timeout: 500ms}}\n"
)


def hung_host_config(tmp_path: Path) -> Path:
    proc = fake_procfs(tmp_path)
    (proc / "meminfo").unlink()
    os.mkfifo(proc / "meminfo")  # opening a FIFO with no writer blocks: a truly hung read
    return config(
        tmp_path,
        f"collectors:\n  host: {{interval: 1s, timeout: 500ms, procfs: '{proc}',"
        " filesystems: {stat_timeout: 200ms}}\n",
    )


def test_full_scrape_parses_and_passes_promtool(daemon: StartDaemon, tmp_path: Path) -> None:
    d = daemon(config(tmp_path, FAST_HOST))
    wait_for(lambda: d.get("/-/ready")[0] == 200, 20, "readiness")
    body = d.metrics()
    names = {f.name for f in text_string_to_metric_families(body)}
    assert {
        "botwatch_memory_total_bytes",
        "botwatch_cpu_seconds",
        "botwatch_filesystem_size_bytes",
        "botwatch_host_oom_kills",
        "botwatch_collector_up",
        "botwatch_build_info",
        "botwatch_config_last_reload_successful",
    } <= names
    assert d.sample("botwatch_collector_up", collector="host") == 1.0
    assert promtool_lint(body) == ""


def test_openmetrics_gzip_and_collect_filter(daemon: StartDaemon, tmp_path: Path) -> None:
    d = daemon(config(tmp_path, FAST_HOST))
    wait_for(lambda: d.get("/-/ready")[0] == 200, 20, "readiness")
    status, body, headers = d.get("/metrics", {"Accept": OPENMETRICS, "Accept-Encoding": "gzip"})
    assert status == 200
    assert headers["Content-Encoding"] == "gzip"
    assert headers["Content-Type"].startswith("application/openmetrics-text; version=1.0.0")
    text = gzip.decompress(body).decode()
    assert text.endswith("# EOF\n")
    assert "botwatch_memory_total_bytes" in {f.name for f in openmetrics_families(text)}

    status, body, headers = d.get("/metrics?collect[]=host")
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert "botwatch_memory_total_bytes" in body.decode()
    status, body, _ = d.get("/metrics?collect[]=nosuch")
    assert (status, body) == (400, b"unknown collector: nosuch\n")


def test_hung_collector_never_delays_a_scrape(daemon: StartDaemon, tmp_path: Path) -> None:
    d = daemon(hung_host_config(tmp_path))
    wait_for(lambda: d.sample("botwatch_collector_errors_total", collector="host"), 20, "a failure")
    wait_for(
        lambda: (d.sample("botwatch_collector_errors_total", collector="host") or 0) >= 3,
        20,
        "three failed rounds",
    )
    for _ in range(10):
        started = time.monotonic()
        status, _, _ = d.get("/metrics")
        assert status == 200
        assert time.monotonic() - started < 0.1
    assert d.sample("botwatch_collector_up", collector="host") == 0.0
    assert d.get("/-/healthy")[0] == 200
    # The first round timed out; later rounds refuse to pile a thread onto the stuck one.
    status, page, _ = d.get("/")
    assert b"previous call still blocked" in page
    failures = d.events("collector failed")
    assert len(failures) == 1, failures
    assert failures[0]["error"] == "timed out after 0.5s"


def test_failing_collector_goes_down_and_recovers(daemon: StartDaemon, tmp_path: Path) -> None:
    proc = fake_procfs(tmp_path)
    loadavg = (proc / "loadavg").read_bytes()
    (proc / "loadavg").unlink()
    d = daemon(
        config(
            tmp_path,
            f"collectors:\n  host: {{interval: 1s, timeout: 800ms, procfs: '{proc}',"
            " filesystems: {stat_timeout: 500ms}}\n",
        )
    )
    wait_for(lambda: d.sample("botwatch_collector_up", collector="host") == 0.0, 20, "up 0")
    assert d.sample("botwatch_memory_total_bytes") is None  # a failed round serves no stale data
    # Ready once every collector finished its first round, host's badly (oom, on by default,
    # may finish its own a moment later).
    wait_for(lambda: d.get("/-/ready")[0] == 200, 10, "ready")
    (proc / "loadavg").write_bytes(loadavg)
    wait_for(lambda: d.sample("botwatch_collector_up", collector="host") == 1.0, 20, "recovery")
    assert (d.sample("botwatch_memory_total_bytes") or 0) > 0
    assert len(d.events("collector failed")) == 1
    assert len(d.events("collector recovered")) == 1
    assert "FileNotFoundError" in d.events("collector failed")[0]["error"]


def test_sighup_applies_a_good_config_and_keeps_the_old_one_on_a_bad_one(
    daemon: StartDaemon, tmp_path: Path
) -> None:
    path = config(tmp_path, FAST_HOST)
    d = daemon(path)
    wait_for(lambda: d.sample("botwatch_collector_up", collector="host") == 1.0, 20, "host up")
    first_load = d.sample("botwatch_config_last_reload_success_timestamp_seconds")
    assert first_load

    # Good: only the root filesystem from now on.
    path.write_text(
        "web: {listen_address: '127.0.0.1:0'}\n"
        "collectors:\n  host: {interval: 1s, timeout: 800ms,"
        " filesystems: {stat_timeout: 500ms, include_mountpoints: '^/$'}}\n"
    )
    d.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: d.events("config reloaded"), 10, "the reload")
    # Bodies may be up to web.render_interval old, so poll for the new values.
    wait_for(
        lambda: (
            (d.sample("botwatch_config_last_reload_success_timestamp_seconds") or 0) > first_load
        ),
        5,
        "a newer reload timestamp",
    )
    assert d.sample("botwatch_config_last_reload_successful") == 1.0

    def only_root() -> bool:
        body = d.metrics()
        lines = [ln for ln in body.splitlines() if ln.startswith("botwatch_filesystem_size_bytes")]
        return len(lines) == 1 and 'mountpoint="/"' in lines[0]

    wait_for(only_root, 10, "the new filesystem filter")

    # Bad: the daemon keeps collecting with the config it has.
    path.write_text("collectors:\n  host: {interval: soon}\n")
    d.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: d.sample("botwatch_config_last_reload_successful") == 0.0, 10, "reload 0")
    problems = [e["problem"] for e in d.events("config reload failed")]
    assert problems == [
        f"{path}: collectors.host.interval: not a duration (use e.g. 15s, 2m, 1h30m) (got 'soon')"
    ]
    before = d.sample("botwatch_collector_last_success_timestamp_seconds", collector="host") or 0
    wait_for(
        lambda: (
            (d.sample("botwatch_collector_last_success_timestamp_seconds", collector="host") or 0)
            > before
        ),
        10,
        "the old config to keep collecting",
    )
    wait_for(only_root, 5, "the old filter to stay")


def test_sigterm_exits_0_within_2_seconds(daemon: StartDaemon, tmp_path: Path) -> None:
    d = daemon(config(tmp_path, FAST_HOST))
    wait_for(lambda: d.get("/-/ready")[0] == 200, 20, "readiness")
    started = time.monotonic()
    d.proc.send_signal(signal.SIGTERM)
    assert d.proc.wait(timeout=5) == 0
    assert time.monotonic() - started < 2.0


def test_sigterm_with_a_hung_collector_still_exits_promptly(
    daemon: StartDaemon, tmp_path: Path
) -> None:
    d = daemon(hung_host_config(tmp_path))
    wait_for(lambda: d.events("collector failed"), 20, "the hang to be noticed")
    started = time.monotonic()
    d.proc.send_signal(signal.SIGTERM)
    assert d.proc.wait(timeout=5) == 0
    assert time.monotonic() - started < 2.0


def test_port_in_use_is_one_line_and_exit_1(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = run_cli(f"--web.listen-address=127.0.0.1:{port}")
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[-1] == f"listen 127.0.0.1:{port}: address already in use"
    assert "Traceback" not in proc.stderr


def test_once_prints_the_exposition_and_reports_failure(tmp_path: Path) -> None:
    good = config(tmp_path, FAST_HOST)
    proc = run_cli("once", f"--config.file={good}")
    assert proc.returncode == 0, proc.stderr
    assert 'botwatch_collector_up{collector="host"} 1.0' in proc.stdout

    procfs = fake_procfs(tmp_path)
    (procfs / "stat").unlink()
    bad = config(tmp_path, f"collectors:\n  host: {{procfs: '{procfs}'}}\n", "bad.yml")
    proc = run_cli("once", f"--config.file={bad}")
    assert proc.returncode == 1
    assert 'botwatch_collector_up{collector="host"} 0.0' in proc.stdout
