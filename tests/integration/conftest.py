"""Starting the real daemon as a subprocess on 127.0.0.1 and an ephemeral port."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.servers import stop_process
from tests.support import REPO, wait_for


class Daemon:
    def __init__(self, config: Path | None, *extra: str) -> None:
        args = [sys.executable, "-m", "exporter", "run", "--log.format=json", "--log.level=debug"]
        if config is not None:
            args.append(f"--config.file={config}")
        self.proc = subprocess.Popen(
            [*args, *extra],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.logs: list[dict[str, Any]] = []
        self.raw: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.raw.append(line)
            with contextlib.suppress(ValueError):  # a stray non-JSON line (e.g. a crash)
                self.logs.append(json.loads(line))

    def events(self, name: str) -> list[dict[str, Any]]:
        return [e for e in list(self.logs) if e.get("event") == name]

    def wait_listening(self, timeout: float = 20) -> str:
        def address() -> str | None:
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited {self.proc.returncode}: {''.join(self.raw)}")
            found = self.events("listening")
            return str(found[0]["address"]) if found else None

        self.base = "http://" + wait_for(address, timeout, "the daemon to listen")
        return self.base

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes, Any]:
        request = urllib.request.Request(self.base + path, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read(), response.headers
        except urllib.error.HTTPError as err:
            return err.code, err.read(), err.headers

    def metrics(self) -> str:
        status, body, _ = self.get("/metrics")
        assert status == 200
        return body.decode()

    def sample(self, name: str, **labels: str) -> float | None:
        """The value of one sample in a fresh scrape, or None if absent."""
        from prometheus_client.parser import text_string_to_metric_families

        for family in text_string_to_metric_families(self.metrics()):
            for sample in family.samples:
                if sample.name == name and all(
                    sample.labels.get(k) == v for k, v in labels.items()
                ):
                    return float(sample.value)
        return None

    def stop(self) -> int:
        stop_process(self.proc)
        # The reader ends at the pipe's EOF; then the pipe is closed, not left to the GC.
        self._reader.join(timeout=10)
        if self.proc.stderr is not None and not self._reader.is_alive():
            self.proc.stderr.close()
        return self.proc.returncode


def daemon_config(tmp_path: Path, **sections: Any) -> Path:
    """A config file for the daemon: an ephemeral port on 127.0.0.1, a state_dir in tmp_path,
    the host collector off, and `sections` (YAML-ready values) on top."""
    import yaml

    doc: dict[str, Any] = {
        "web": {"listen_address": "127.0.0.1:0"},
        "state_dir": str(tmp_path / "state"),
        "collectors": {"host": {"enabled": False}},
        **sections,
    }
    path = tmp_path / "botwatch.yml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.fixture
def daemon() -> Iterator[Callable[..., Daemon]]:
    started: list[Daemon] = []

    def start(config: Path | None, *extra: str) -> Daemon:
        d = Daemon(config, *extra)
        started.append(d)
        d.wait_listening()
        return d

    yield start
    for d in started:
        d.stop()


def fake_procfs(root: Path) -> Path:
    """A procfs tree copied from this host's, so a test can break or hang single files."""
    proc = root / "proc"
    (proc / "self").mkdir(parents=True)
    for name in ("meminfo", "stat", "vmstat", "loadavg"):
        (proc / name).write_bytes(Path("/proc", name).read_bytes())
    (proc / "self" / "mounts").write_text("/dev/vda / ext4 rw,relatime 0 0\n")
    return proc
