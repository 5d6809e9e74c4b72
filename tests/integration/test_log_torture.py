"""Rotation torture on the real daemon: random rotations, kill -9 twice, exact final counts."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from exporter.logs import checkpoint
from tests.integration.conftest import Daemon
from tests.logsupport import logs_config, open_log
from tests.support import wait_for

StartDaemon = Callable[..., Daemon]

SEED = 20261123
ROTATIONS = 120
KINDS = ("rename", "copytruncate", "recreate")


@dataclass
class Truth:
    lines: int = 0
    bytes: int = 0
    sevens: int = 0  # lines whose number ends in 7: what the test rule counts
    errors: int = 0
    rotations: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))


class Writer(threading.Thread):
    """Appends numbered lines and rotates app.log at random, like logrotate and apps do."""

    def __init__(self, log: Path, checkpoint: Path) -> None:
        super().__init__(daemon=True)
        self.log = log
        self.checkpoint = checkpoint
        self.rng = random.Random(SEED)
        self.truth = Truth()
        self.next_name = 1
        self.failure: BaseException | None = None

    def run(self) -> None:
        try:
            fd = open_log(self.log)
            for _ in range(ROTATIONS):
                deadline = time.monotonic() + self.rng.uniform(0.02, 0.15)
                while time.monotonic() < deadline:
                    self._write(fd, self.rng.randint(1, 40))
                    time.sleep(0.002)  # pacing a load generator, not waiting for a condition
                fd = self._rotate(fd, self.rng.choice(KINDS))
            self._write(fd, 100)
            os.close(fd)
        except BaseException as exc:
            self.failure = exc

    def _write(self, fd: int, count: int) -> None:
        chunk = []
        for _ in range(count):
            n = self.truth.lines
            level = "ERROR" if n % 13 == 0 else "INFO"
            # Lengths vary, so bytes_total catches a line counted twice and another lost.
            line = f"seq={n} level={level} msg={'x' * (n % 17)}\n".encode()
            chunk.append(line)
            self.truth.lines += 1
            self.truth.bytes += len(line)
            self.truth.sevens += n % 10 == 7
            self.truth.errors += level == "ERROR"
        os.write(fd, b"".join(chunk))

    def _rotated(self) -> Path:
        path = self.log.with_name(f"{self.log.name}.{self.next_name}")
        self.next_name += 1
        return path

    def _rotate(self, fd: int, kind: str) -> int:
        if kind == "rename":
            os.rename(self.log, self._rotated())
            os.close(fd)
        elif kind == "copytruncate":
            # The writer pauses only here: lines written between copy and truncate would be
            # lost by copytruncate itself, whoever reads the file.
            shutil.copyfile(self.log, self._rotated())
            os.truncate(self.log, 0)
            self.truth.rotations[kind] += 1
            return fd
        else:
            # A deleted file's lines exist only in the reader once it is gone: a kill -9
            # before the next checkpoint would lose them, whoever the reader. So delete
            # only once a checkpoint covers the whole file.
            wait_for(self._checkpointed, 30, "a checkpoint covering the live file")
            os.unlink(self.log)
            os.close(fd)
        self.truth.rotations[kind] += 1
        return open_log(self.log)

    def _checkpointed(self) -> bool:
        st = os.stat(self.log)
        try:
            saved = json.loads(self.checkpoint.read_bytes())
        except (OSError, ValueError):
            return False
        position = saved["sources"].get("app", {}).get("position") or {}
        return any(
            f["ino"] == st.st_ino and f["dev"] == st.st_dev and f["offset"] == st.st_size
            for f in position.get("files", [])
        )


def config(tmp_path: Path, log: Path) -> Path:
    source = f"""\
    - name: app
      type: file
      path: {log}
      start_at: beginning
      poll_interval: 50ms
      rules:
        - {{name: sevens, match: 'seq=\\d*7 '}}
        - {{name: error_lines, match: 'level=ERROR'}}
"""
    return logs_config(tmp_path, source, checkpoint_interval="200ms")


def counters(d: Daemon) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    found: dict[str, float] = {}
    for family in text_string_to_metric_families(d.metrics()):
        for s in family.samples:
            if s.labels.get("source") != "app" or not s.name.endswith("_total"):
                continue
            key = s.name + "".join(f",{k}={v}" for k, v in sorted(s.labels.items()))
            found[key] = s.value
    return found


def test_counts_are_exact_through_random_rotations_and_two_kill_9(
    daemon: StartDaemon, tmp_path: Path
) -> None:
    log = tmp_path / "logs" / "app.log"
    log.parent.mkdir()
    log.touch()
    cfg = config(tmp_path, log)
    current: list[Daemon] = [daemon(cfg)]
    writer = Writer(log, tmp_path / "state" / checkpoint.FILENAME)
    writer.start()

    seen: dict[str, float] = {}

    def scrape_and_check_monotonic() -> dict[str, float]:
        now = counters(current[-1])
        for key, value in now.items():
            assert value >= seen.get(key, 0), f"{key} went back from {seen[key]} to {value}"
            seen[key] = value
        return now

    for _ in range(2):
        wait_for(
            lambda: (
                writer.truth.lines > 0
                and scrape_and_check_monotonic().get("botwatch_log_lines_total,source=app", 0) > 0
            ),
            30,
            "lines to be counted",
        )
        target = sum(writer.truth.rotations.values()) + 15
        wait_for(
            lambda target=target: sum(writer.truth.rotations.values()) >= target,
            60,
            "more rotations",
        )
        scrape_and_check_monotonic()
        os.kill(current[-1].proc.pid, signal.SIGKILL)
        current[-1].proc.wait()
        current.append(daemon(cfg))
        scrape_and_check_monotonic()

    writer.join(timeout=120)
    assert not writer.is_alive() and writer.failure is None, writer.failure
    truth = writer.truth
    assert sum(truth.rotations.values()) >= 100 and all(truth.rotations.values())

    def settled() -> bool:
        now = scrape_and_check_monotonic()
        return now.get("botwatch_log_lines_total,source=app") == truth.lines

    wait_for(settled, 60, f"all {truth.lines} lines to be counted")
    final = scrape_and_check_monotonic()
    assert final["botwatch_log_bytes_total,source=app"] == truth.bytes
    assert final["botwatch_log_matches_total,rule=sevens,source=app"] == truth.sevens
    assert final["botwatch_log_matches_total,rule=error_lines,source=app"] == truth.errors
    assert final["botwatch_log_truncated_lines_total,source=app"] == 0
    for kind in KINDS:
        assert final[f"botwatch_log_rotations_total,kind={kind},source=app"] > 0
