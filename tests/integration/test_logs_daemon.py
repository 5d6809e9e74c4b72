"""The `logs` collector in the real daemon: packs on real sources, garbage, restarts, faults."""

from __future__ import annotations

import json
import os
import shutil
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from exporter.logs import checkpoint
from tests.integration.conftest import Daemon
from tests.integration.test_journald import Journal
from tests.logsupport import logs_config
from tests.support import wait_for

pytestmark = pytest.mark.integration

StartDaemon = Callable[..., Daemon]


def file_source(path: Path, packs: str = "[alphaengine]") -> str:
    return (
        f"    - {{name: app, type: file, path: '{path}', start_at: beginning,"
        f" poll_interval: 50ms, packs: {packs}}}\n"
    )


def value(d: Daemon, name: str, **labels: str) -> float:
    found = d.sample(name, **labels)
    return -1.0 if found is None else found


def wait_value(d: Daemon, name: str, expected: float, timeout: float = 20, **labels: str) -> None:
    wait_for(lambda: value(d, name, **labels) == expected, timeout, f"{name}{labels} == {expected}")


GOOD = (
    b"2026-11-23 03:12:45,123 - bot.store - ERROR - sqlite3.OperationalError: database is locked\n"
)


def app_log(tmp_path: Path, content: bytes = GOOD) -> tuple[Path, Path]:
    """tmp_path/app.log holding `content`, and a config reading it with the alphaengine pack."""
    log = tmp_path / "app.log"
    log.write_bytes(content)
    return log, logs_config(tmp_path, file_source(log))


def test_garbage_is_counted_and_the_next_good_line_still_matches(
    daemon: StartDaemon, tmp_path: Path
) -> None:
    binary = bytes(range(256)) * 64  # holds 64 newlines of its own
    content = b"".join(
        [
            b"\xff\xfe\xfa not utf-8 \xc3\x28\n",
            b"nul \x00 in \x00 the middle\n",
            b"x" * (10 * 1024 * 1024) + b" database is locked\n",  # a 10 MB line
            GOOD,
            binary + b"\n",
            GOOD,
        ]
    )
    _, cfg = app_log(tmp_path, content)
    d = daemon(cfg)
    wait_value(d, "botwatch_log_lines_total", content.count(b"\n"), source="app")
    assert value(d, "botwatch_log_truncated_lines_total", source="app") == 1
    # The cut 10 MB line loses its tail (where the match was); both good lines count.
    assert value(d, "botwatch_log_matches_total", source="app", rule="db_locked") == 2
    assert value(d, "botwatch_log_source_up", source="app") == 1
    assert d.proc.poll() is None


def test_clean_restart_restores_counters_and_reads_on_without_repeats(
    daemon: StartDaemon, tmp_path: Path
) -> None:
    log, cfg = app_log(tmp_path, GOOD * 3)
    d = daemon(cfg)
    wait_value(d, "botwatch_log_matches_total", 3, source="app", rule="db_locked")
    assert d.stop() == 0
    saved = json.loads((tmp_path / "state" / checkpoint.FILENAME).read_bytes())
    assert saved["sources"]["app"]["counts"]["lines"] == 3
    with log.open("ab") as f:
        f.write(GOOD * 2)  # written while botwatch is down
    d = daemon(cfg)
    # Restored, never below the last value, then the two new lines: 5, not 7 and not 2.
    wait_value(d, "botwatch_log_matches_total", 5, source="app", rule="db_locked")
    assert value(d, "botwatch_log_lines_total", source="app") == 5


def test_vanished_directory_marks_the_source_down_and_it_recovers(
    daemon: StartDaemon, tmp_path: Path
) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "app.log").write_bytes(GOOD)
    d = daemon(logs_config(tmp_path, file_source(logs / "app.log")))
    wait_value(d, "botwatch_log_lines_total", 1, source="app")
    shutil.rmtree(logs)
    wait_value(d, "botwatch_log_source_up", 0, source="app")
    assert len([e for e in d.events("log source down") if e.get("source") == "app"]) == 1
    logs.mkdir()
    (logs / "app.log").write_bytes(GOOD * 2)
    wait_value(d, "botwatch_log_source_up", 1, source="app")
    wait_value(d, "botwatch_log_lines_total", 3, source="app")
    assert value(d, "botwatch_collector_up", collector="logs") == 1


def test_unwritable_state_dir_is_counted_and_metrics_still_flow(
    daemon: StartDaemon, tmp_path: Path
) -> None:
    log, cfg = app_log(tmp_path)
    (tmp_path / "state").mkdir()
    d = daemon(cfg)
    wait_value(d, "botwatch_log_lines_total", 1, source="app")
    # A directory where the checkpoint's temp file must go: every write fails, even as root.
    (tmp_path / "state" / (checkpoint.FILENAME + ".tmp")).mkdir()
    with log.open("ab") as f:
        f.write(GOOD)
    wait_for(lambda: value(d, "botwatch_log_checkpoint_errors_total") > 0, 20, "a failed write")
    wait_value(d, "botwatch_log_lines_total", 2, source="app")
    assert len(d.events("log checkpoint failed")) == 1
    os.rmdir(tmp_path / "state" / (checkpoint.FILENAME + ".tmp"))
    wait_for(lambda: d.events("log checkpoint works again"), 20, "the checkpoint to recover")


def test_a_second_daemon_on_the_same_state_dir_does_not_count(
    daemon: StartDaemon, tmp_path: Path
) -> None:
    _, cfg = app_log(tmp_path)
    first = daemon(cfg)
    wait_value(first, "botwatch_log_lines_total", 1, source="app")
    second = daemon(cfg)
    wait_value(second, "botwatch_collector_up", 0, collector="logs")
    failures = second.events("collector failed")
    assert any("in use by another botwatch" in str(e.get("error")) for e in failures)


def test_journald_source_counts_the_alphaengine_pack_korean_included(
    daemon: StartDaemon, tmp_path: Path
) -> None:
    directory = tmp_path / "journal"
    directory.mkdir()
    journal = Journal(directory)
    journal.write(("alphaengine-bot.service", "bot started"))
    sources = (
        "    - {name: bot, type: journald, unit: alphaengine-bot.service, start_at: beginning,"
        f" directory: '{directory}', packs: [alphaengine]}}\n"
    )
    d = daemon(logs_config(tmp_path, sources))
    wait_value(d, "botwatch_log_lines_total", 1, source="bot")
    journal.write(
        ("alphaengine-bot.service", "sqlite3.OperationalError: database is locked"),
        ("alphaengine-web.service", "sqlite3.OperationalError: database is locked"),
        ("alphaengine-bot.service", "OSError: [Errno 28] No space left on device"),
    )
    wait_value(d, "botwatch_log_lines_total", 3, source="bot")
    assert value(d, "botwatch_log_matches_total", source="bot", rule="db_locked") == 1
    assert value(d, "botwatch_log_matches_total", source="bot", rule="disk_full") == 1
    # kill -9 and back: the cursor in the checkpoint resumes exactly.
    os.kill(d.proc.pid, signal.SIGKILL)
    d.proc.wait()
    journal.write(("alphaengine-bot.service", "sqlite3.OperationalError: database is locked"))
    d = daemon(logs_config(tmp_path, sources))
    wait_value(d, "botwatch_log_matches_total", 2, source="bot", rule="db_locked")
    assert value(d, "botwatch_log_lines_total", source="bot") == 4
