"""The end-to-end stack on 127.0.0.1: botwatch with both presets, real Prometheus loading the
alert rules, real Alertmanager paging a webhook receiver, and everything botwatch watches.

    with Stack.started(Path(tempfile.mkdtemp())) as stack:
        stack.trader_log("... status=429 Too Many Requests")   # faults.py has the faults
        stack.sink.webhook_alerts(alertname="TraderApiRateLimited")

What botwatch watches here. Every target the presets name is replaced by one of these (the
config check below fails when a preset gains a probe or log source this file does not know):

- docker engine: podman's Docker Engine API (tests/podman.py), containers trader-api,
  timescaledb and redis (busybox);
- trader-api's logs (docker source): that container's stdout; it cats a FIFO the test writes;
- trader-api /health, its CORS preflight and /ws, and the listener probe on its port:
  sims.TraderApi (aiohttp) on a free port;
- timescaledb (postgres probe): a real PostgreSQL 15; redis: a real redis-server
  (tests/servers.py);
- binance-dns, binance-ping, binance-futures-dns: disabled (no network here);
  binance-futures (websocket): sims.Exchange, a mark-price stream;
- systemd (alphaengine-* units): dbus-daemon with python-dbusmock's systemd
  (tests/systemdmock.py);
- alphaengine-bot and -web logs (journald): journal files written by systemd-journal-remote;
  nginx's error log: a file;
- alphaengine-web /health and port: sims.AlphaEngineWeb; the processes `python -m bot` and
  uvicorn: two idle stand-ins with those command lines;
- sqlite alphaengine_test.db: a WAL-mode database the test holds open, as the bot does;
- files under /opt/alphaengine: a tree below a test root (`rootfs`) with its own etc/passwd;
- host: a fixture procfs (this machine's CPU and memory stay out of it) whose only mount is a
  4 MiB tmpfs the test mounts and fills; its net/ is this machine's, since the listener
  probes read sockets below the host collector's procfs (psutil has one, process-wide).

Collectors and probes run every second (docker, systemd and files every 5 s: the first two
are pushed changes by events, the last is not faulted); the WebSocket probe of trader-api
backs off at most 1 s between reconnects.

Alert rules: the committed alerts/*.rules.yml, with every `for:` divided by FOR_SCALE
(one minute of `for:` is one second here) and nothing else changed. Prometheus cannot shorten
`for:`, and waiting minutes per fault would make the test useless; scaling them all by one
factor keeps their order, so a fault still pages with its own alert before the slower ones
it would set off. runbook_url annotations are checked to be the committed ones.

Alertmanager: deploy/alertmanager/alertmanager.yml with test timings (group_wait 0s,
group_interval 1s) and its media pointed at the test's Sink (tests/integration/
test_alertmanager.py).

Needs root (podman, the tmpfs, PostgreSQL as another user), like `make test`.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import sqlite3
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from exporter.runbooks.catalog import load_catalog, render_rules, runbook_url
from exporter.yamlsource import load_preset, merge
from tests.e2e.sims import Sims
from tests.integration.test_alertmanager import Alertmanager, Sink, free_port, variant_config
from tests.podman import Podman
from tests.servers import PostgresCluster, PostgresServer, RedisServer, stop_process
from tests.support import REPO, wait_for
from tests.systemdmock import SystemdMock

HOST = "127.0.0.1"
PRESETS = ("trader-bot", "alphaengine")
FOR_SCALE = 60  # a rule's `for:` here is its committed value divided by this (at least 1 s)
START_TIMEOUT = 60.0
JOURNAL_REMOTE = "/lib/systemd/systemd-journal-remote"
ALERTS_DIR = REPO / "alerts"

# The trader-api container: its stdout is whatever the test writes to the FIFO /io/log; it
# exits with 101 (a Rust panic's status) at the FIFO's end of file once /io/exit exists.
TRADER_SCRIPT = "while [ ! -e /io/exit ]; do cat /io/log; done; exit 101"
IDLE_SCRIPT = "while true; do sleep 1; done"
TRADER_CONTAINERS = ("timescaledb", "redis")  # beside trader-api, idle

ALPHA_UNITS = ("alphaengine-bot.service", "alphaengine-web.service")
ALPHA_UID = 1990  # the `alphaengine` account of the files tree's own etc/passwd
DISK_MOUNTPOINT = "/var/lib/docker"  # the host's data filesystem as botwatch sees it
DISK_SIZE = "4m"
# Stand-ins the process collector finds by command line, as it finds the real processes
# (python -m bot; uvicorn serving the web API): module -> arguments after it.
STANDINS = {"bot": [], "uvicorn": ["app.main:app", "--host", HOST, "--port", "{web_port}"]}


# The alert rules -------------------------------------------------------------------------

_DURATION = re.compile(r"(\d+)(ms|s|m|h|d)")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def seconds(duration: str) -> float:
    """A Prometheus duration ("1h30m") in seconds."""
    parts = _DURATION.findall(duration)
    if not parts or "".join(n + u for n, u in parts) != duration:
        raise ValueError(f"not a Prometheus duration: {duration!r}")
    return sum(int(n) * _UNITS[u] for n, u in parts)


def scaled(duration: str) -> str:
    return f"{max(1, round(seconds(duration) / FOR_SCALE))}s"


def committed_rules() -> dict[str, str]:
    """alerts/*.rules.yml as committed."""
    return {p.name: p.read_text(encoding="utf-8") for p in sorted(ALERTS_DIR.glob("*.rules.yml"))}


@dataclass(frozen=True)
class Rules:
    directory: Path
    for_seconds: dict[str, float]  # alert -> its `for:` here
    runbook_urls: dict[str, str]  # alert -> its runbook_url annotation


def write_rules(directory: Path, files: dict[str, str]) -> Rules:
    """The rule files with every `for:` scaled down by FOR_SCALE, nothing else changed."""
    directory.mkdir(parents=True, exist_ok=True)
    for_seconds: dict[str, float] = {}
    urls: dict[str, str] = {}
    for name, text in files.items():
        doc = yaml.safe_load(text)
        for group in doc["groups"]:
            for rule in group["rules"]:
                if "for" in rule:
                    rule["for"] = scaled(rule["for"])
                for_seconds[rule["alert"]] = seconds(rule.get("for", "0s"))
                urls[rule["alert"]] = rule["annotations"]["runbook_url"]
        header = f"# {name} with every `for:` divided by {FOR_SCALE} (test copy, see tests/e2e).\n"
        body = yaml.safe_dump(doc, allow_unicode=True, sort_keys=False, width=100)
        (directory / name).write_text(header + body, encoding="utf-8")
    return Rules(directory, for_seconds, urls)


def expected_runbook_url(alert: str, bases: dict[str, str] | None = None) -> str:
    """The link the catalog gives `alert` (what the committed rule files were rendered from)."""
    return runbook_url(load_catalog().find(alert)[2].runbook, bases)


# Processes ---------------------------------------------------------------------------------


def http_get(url: str, timeout: float = 5) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def answers(url: str) -> bool:
    with contextlib.suppress(OSError):
        return http_get(url, timeout=2)[0] == 200
    return False


@dataclass(frozen=True)
class Standin:
    proc: subprocess.Popen[bytes]

    def stop(self) -> None:
        stop_process(self.proc)


class Botwatch:
    """The real daemon: `python -m exporter run`, on 127.0.0.1 and a port it picks."""

    def __init__(self, root: Path, config: Path) -> None:
        self.log_file = root / "botwatch.log"
        with self.log_file.open("wb") as log:
            self.proc: subprocess.Popen[bytes] = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "exporter",
                    "run",
                    f"--config.file={config}",
                    "--log.format=json",
                ],
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                start_new_session=True,  # a Ctrl-C of the demo is for the demo, not for it
            )
        self.base = "http://" + wait_for(self._address, START_TIMEOUT, "botwatch to listen")
        wait_for(lambda: answers(f"{self.base}/-/ready"), START_TIMEOUT, "botwatch /-/ready")

    def _address(self) -> str | None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"botwatch exited {self.proc.returncode}: {self.log()[-3000:]}")
        for line in self.log().splitlines():
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                if event.get("event") == "listening":
                    return str(event["address"])
        return None

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")

    def stop(self) -> None:
        stop_process(self.proc)


class Prometheus:
    def __init__(self, root: Path, rules: Path, botwatch: str, alertmanager: str) -> None:
        self.root = root
        self.log_file = root / "prometheus.log"
        config = {
            "global": {
                "scrape_interval": "1s",
                "scrape_timeout": "1s",
                "evaluation_interval": "1s",
            },
            "rule_files": [str(rules / "*.rules.yml")],
            "alerting": {
                "alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}],
            },
            "scrape_configs": [
                {"job_name": "botwatch", "static_configs": [{"targets": [botwatch]}]},
            ],
        }
        self.config_file = root / "prometheus.yml"
        self.config_file.write_text(yaml.safe_dump(config, sort_keys=False))
        self.proc: subprocess.Popen[bytes] | None = None
        for _ in range(3):  # another process may take the port between free_port() and bind
            self.base = f"http://{HOST}:{free_port()}"
            if self._start():
                return
        raise RuntimeError(f"prometheus did not start: {self.log()[-3000:]}")

    def _start(self) -> bool:
        with self.log_file.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    "prometheus",
                    f"--config.file={self.config_file}",
                    f"--storage.tsdb.path={self.root / 'data'}",
                    f"--web.listen-address={self.base.removeprefix('http://')}",
                    "--rules.alert.resend-delay=1s",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

        def state() -> str | None:
            assert self.proc is not None
            if self.proc.poll() is not None:
                return "exited"
            return "ready" if answers(f"{self.base}/-/ready") else None

        return bool(wait_for(state, START_TIMEOUT, "prometheus to be ready") == "ready")

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")

    def api(self, path: str, **params: str) -> Any:
        query = urllib.parse.urlencode(params)
        status, body = http_get(f"{self.base}/api/v1/{path}?{query}")
        answer = json.loads(body)
        if status != 200 or answer.get("status") != "success":
            raise RuntimeError(f"prometheus {path} {params}: {status} {body[:500]!r}")
        return answer["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.api("query", query=expr)["result"]
        return result

    def value(self, expr: str) -> float | None:
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else None

    def alerts(self) -> list[dict[str, Any]]:
        """Pending and firing alerts."""
        alerts: list[dict[str, Any]] = self.api("alerts")["alerts"]
        return alerts

    def stop(self) -> None:
        stop_process(self.proc)


class Journal:
    """A journal directory written with systemd-journal-remote, read by botwatch's
    `journalctl --directory` (there is no journald here)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.boot = uuid.uuid4().hex
        self._count = 0
        self._lock = threading.Lock()

    def write(self, unit: str, *messages: str) -> None:
        with self._lock:
            export = b"".join(self._entry(unit, m) for m in messages)
            subprocess.run(
                [JOURNAL_REMOTE, "-o", str(self.directory / "remote.journal"), "-"],
                input=export,
                capture_output=True,
                check=True,
                timeout=30,
            )

    def _entry(self, unit: str, message: str) -> bytes:
        self._count += 1
        fields = [
            f"__REALTIME_TIMESTAMP={time.time_ns() // 1000}",
            f"__MONOTONIC_TIMESTAMP={self._count}",
            f"_BOOT_ID={self.boot}",
            f"_SYSTEMD_UNIT={unit}",
            f"SYSLOG_IDENTIFIER={unit.removesuffix('.service')}",
        ]
        raw = message.encode()
        head = "".join(f"{f}\n" for f in fields).encode()
        return head + b"MESSAGE\n" + struct.pack("<Q", len(raw)) + raw + b"\n\n"


# Log lines as the bots write them -------------------------------------------------------------


def tracing_line(level: str, target: str, message: str) -> str:
    """trader-api (Rust, tracing's default text format)."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return f"{now} {level:>5} {target}: {message}"


def logging_line(level: str, logger: str, message: str) -> str:
    """AlphaEngine (Python logging: '%(asctime)s - %(name)s - %(levelname)s - %(message)s')."""
    now = datetime.now()  # logging's asctime: local time
    return f"{now:%Y-%m-%d %H:%M:%S},{now.microsecond // 1000:03d} - {logger} - {level} - {message}"


def nginx_error_line(message: str) -> str:
    return f"{datetime.now():%Y/%m/%d %H:%M:%S} [error] 4242#4242: {message}"


# The stack -----------------------------------------------------------------------------------


@dataclass
class Stack:
    root: Path
    # Where the runbook links point; None: the committed rules' placeholder links.
    runbook_bases: dict[str, str] | None = None
    sims: Sims | None = None
    sink: Sink = field(default_factory=Sink)
    podman: Podman | None = None
    systemd: SystemdMock | None = None
    pg_cluster: PostgresCluster | None = None
    postgres: PostgresServer | None = None
    redis: RedisServer | None = None
    alertmanager: Alertmanager | None = None
    botwatch: Botwatch | None = None
    prometheus: Prometheus | None = None
    rules: Rules | None = None
    journal: Journal | None = None
    database: sqlite3.Connection | None = None
    standins: list[subprocess.Popen[bytes]] = field(default_factory=list)
    _mounted: bool = False
    _trader_fd: int | None = None
    _trader_lock: threading.Lock = field(default_factory=threading.Lock)
    _db_lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    @contextlib.contextmanager
    def started(cls, root: Path, runbook_bases: dict[str, str] | None = None) -> Iterator[Stack]:
        stack = cls(root, runbook_bases)
        try:
            stack.start()
            yield stack
        finally:
            stack.close()

    # Paths
    @property
    def host_root(self) -> Path:
        """The rootfs of the host and files collectors."""
        return self.root / "host"

    @property
    def disk(self) -> Path:
        return self.host_root / DISK_MOUNTPOINT.lstrip("/")

    @property
    def alpha_home(self) -> Path:
        return self.host_root / "opt" / "alphaengine"

    @property
    def db_path(self) -> Path:
        return self.alpha_home / "data" / "alphaengine_test.db"

    @property
    def nginx_log_path(self) -> Path:
        return self.root / "var" / "log" / "nginx" / "alphaengine_error.log"

    @property
    def io(self) -> Path:
        return self.root / "io"

    # Start and stop ----------------------------------------------------------------------

    def start(self) -> None:
        if os.geteuid() != 0:
            raise RuntimeError("the e2e stack needs root (podman, a tmpfs, PostgreSQL's account)")
        self.root.mkdir(parents=True, exist_ok=True)
        self.sims = Sims()
        files = committed_rules()
        if self.runbook_bases is not None:
            files = render_rules(load_catalog(), self.runbook_bases)
        self.rules = write_rules(self.root / "rules", files)
        # What botwatch needs running before it starts, side by side.
        with ThreadPoolExecutor(max_workers=6) as pool:
            jobs = [
                pool.submit(self._start_podman),
                pool.submit(self._start_systemd),
                pool.submit(self._start_postgres),
                pool.submit(self._start_redis),
                pool.submit(self._start_alertmanager),
                pool.submit(self._prepare_host),
            ]
            for job in jobs:
                job.result()
        self._start_standins()
        config = self.root / "botwatch.yml"
        config.write_text(yaml.safe_dump(self.botwatch_config(), sort_keys=False))
        self.botwatch = Botwatch(self.root, config)
        assert self.alertmanager is not None
        prom_root = self.root / "prometheus"
        prom_root.mkdir()
        self.prometheus = Prometheus(
            prom_root,
            self.rules.directory,
            self.botwatch.base.removeprefix("http://"),
            self.alertmanager.base.removeprefix("http://"),
        )

    def close(self) -> None:
        """Stop everything by PID, newest first, whatever state `start` left it in."""
        parts: list[tuple[object, str]] = [
            (self.prometheus, "stop"),
            (self.alertmanager, "stop"),
            (self.botwatch, "stop"),
            (self.sink, "close"),
            (self.sims, "close"),
            *((Standin(p), "stop") for p in self.standins),
            (self.database, "close"),
            (self, "_close_trader_fifo"),
            (self.podman, "close"),
            (self.systemd, "close"),
            (self.pg_cluster, "close"),
            (self.redis, "stop"),
            (self, "_unmount"),
        ]
        for part, method in parts:
            if part is not None:
                with contextlib.suppress(Exception):
                    getattr(part, method)()
        shutil.rmtree(self.root, ignore_errors=True)

    def _start_podman(self) -> None:
        self.podman = Podman.create()
        self.podman.start()
        self.io.mkdir()
        os.mkfifo(self.io / "log")
        self.podman.run(
            "trader-api", TRADER_SCRIPT, volumes={str(self.io): {"bind": "/io", "mode": "rw"}}
        )
        for name in TRADER_CONTAINERS:
            self.podman.run(name, IDLE_SCRIPT)

    def _start_systemd(self) -> None:
        import asyncio

        self.systemd = SystemdMock(self._dir("systemd"))

        async def units() -> None:
            assert self.systemd is not None
            for pid, unit in enumerate(ALPHA_UNITS, start=4242):
                await self.systemd.add_unit(
                    unit,
                    ActiveState="active",
                    SubState="running",
                    service={
                        "NRestarts": 0,
                        "Result": "success",
                        "ExecMainStatus": 0,
                        "MainPID": pid,
                        "MemoryCurrent": 80 * 2**20,
                        "ControlGroup": f"/system.slice/{unit}",
                    },
                )

        asyncio.run(units())

    def _start_postgres(self) -> None:
        self.pg_cluster = PostgresCluster.create("e2e-password")
        self.postgres = self.pg_cluster.start()

    def _start_redis(self) -> None:
        self.redis = RedisServer(self._dir("redis"))

    def _start_alertmanager(self) -> None:
        root = self._dir("alertmanager")
        self.alertmanager = Alertmanager(root, variant_config(self.sink, root / "secrets"))

    def _dir(self, name: str) -> Path:
        path = self.root / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _prepare_host(self) -> None:
        """The host as botwatch sees it: a fixture procfs, a tmpfs, the AlphaEngine tree,
        the bots' logs and database."""
        proc = self.root / "proc"
        (proc / "self").mkdir(parents=True)
        for name in ("stat", "vmstat", "loadavg"):  # a snapshot: no CPU busy, no new OOM kill
            (proc / name).write_bytes(Path("/proc", name).read_bytes())
        (proc / "meminfo").write_text(_roomy_meminfo(Path("/proc/meminfo").read_text()))
        (proc / "self" / "mounts").write_text(
            f"tmpfs {DISK_MOUNTPOINT} tmpfs rw,nosuid,nodev,size={DISK_SIZE} 0 0\n"
        )
        self.disk.mkdir(parents=True)
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={DISK_SIZE}", "tmpfs", str(self.disk)],
            check=True,
            capture_output=True,
            timeout=30,
        )
        self._mounted = True
        self._alpha_tree()
        self.journal = Journal(self.root / "journal")
        for unit in ALPHA_UNITS:
            self.journal.write(unit, logging_line("INFO", "bot.main", f"{unit} started"))
        self.nginx_log_path.parent.mkdir(parents=True)
        self.nginx_log_path.touch()

    def _alpha_tree(self) -> None:
        etc = self.host_root / "etc"
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "passwd").write_text(
            f"root:x:0:0:root:/root:/bin/sh\n"
            f"alphaengine:x:{ALPHA_UID}:{ALPHA_UID}::/opt/alphaengine:/usr/sbin/nologin\n"
        )
        (etc / "group").write_text(f"root:x:0:\nalphaengine:x:{ALPHA_UID}:\n")
        home = self.alpha_home
        layout: list[tuple[Path, int, str | None]] = [  # path, mode, file content (None: dir)
            (home, 0o750, None),
            (home / "config", 0o700, None),
            (home / "config" / "secrets.yaml", 0o600, "binance:\n  api_key: e2e\n"),
            (home / "venv" / "bin", 0o755, None),
            (home / "venv" / "bin" / "python", 0o755, "#!/bin/sh\n"),
            (home / "data", 0o750, None),
            (home / "backups", 0o750, None),
        ]
        for path, mode, content in layout:
            if content is None:
                path.mkdir(parents=True, exist_ok=True)
            else:
                path.write_text(content)
            path.chmod(mode)
            os.chown(path, ALPHA_UID, ALPHA_UID)
        backup = home / "backups" / f"alphaengine-{datetime.now(UTC):%Y%m%d}.tar.gz"
        backup.write_bytes(b"\x1f\x8b")
        # The bot's store: WAL mode, held open (as the running bot holds it, so its -wal
        # and -shm exist), with a day of distinct orders.
        db = sqlite3.connect(self.db_path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(
            "CREATE TABLE event_store (id INTEGER PRIMARY KEY, dedup_key TEXT NOT NULL, "
            "kind TEXT NOT NULL, payload TEXT, created_at REAL NOT NULL)"
        )
        db.execute(
            "CREATE TABLE command_store (id INTEGER PRIMARY KEY, status TEXT NOT NULL, "
            "payload TEXT, created_at REAL NOT NULL)"
        )
        with self._db_lock:
            db.execute("BEGIN")
            for i in range(50):
                db.execute(
                    "INSERT INTO event_store (dedup_key, kind, payload, created_at) "
                    "VALUES (?, 'order_filled', '{}', ?)",
                    (f"order-{i:05d}", time.time()),
                )
                db.execute(
                    "INSERT INTO command_store (status, payload, created_at) "
                    "VALUES ('done', '{}', ?)",
                    (time.time(),),
                )
            db.execute("COMMIT")
        self.database = db

    def _start_standins(self) -> None:
        assert self.sims is not None
        folder = self._dir("standins")
        for module, args in STANDINS.items():
            argv = [a.format(web_port=self.sims.alpha_web_port) for a in args]
            (folder / f"{module}.py").write_text(
                f'"""Stands in for AlphaEngine\'s `{module}` process (idle until SIGTERM)."""\n'
                "import signal\n\nsignal.pause()\n"
            )
            self.standins.append(
                subprocess.Popen(
                    [sys.executable, "-m", module, *argv],
                    cwd=folder,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
            )

    def _unmount(self) -> None:
        if self._mounted:
            subprocess.run(["umount", str(self.disk)], capture_output=True, timeout=30, check=False)
            self._mounted = False

    # botwatch's configuration ---------------------------------------------------------------

    def botwatch_config(self) -> dict[str, Any]:
        """Both presets, every target of theirs pointed at this stack (by name)."""
        assert self.sims and self.podman and self.systemd and self.postgres and self.redis
        assert self.journal is not None
        preset: dict[str, Any] = {}
        for name in PRESETS:
            preset = merge(preset, load_preset(name))
        probes = {p["name"]: p for p in preset["probes"]}
        sources = {s["name"]: s for s in preset["logs"]["sources"]}
        trader = f"{HOST}:{self.sims.trader_port}"
        alpha = f"{HOST}:{self.sims.alpha_web_port}"
        fast = {"interval": "1s", "timeout": "1s"}
        probe_overrides: dict[str, dict[str, Any]] = {
            "trader-api-health": {"url": f"http://{trader}/health", **fast},
            "trader-api-cors": {"url": f"http://{trader}/api/v1/health", **fast},
            "trader-api-port": {"port": self.sims.trader_port, **fast},
            # Backoff capped at 1 s: a feed that drops at every connect drops four times in
            # a few seconds (with the default 60 s cap the fourth comes after ~8 s).
            "trader-api-ws": {"url": f"ws://{trader}/ws", "max_backoff": "1s"},
            "timescaledb": {"host": HOST, "port": self.postgres.port, **fast},
            "redis": {"host": HOST, "port": self.redis.port, **fast},
            "alphaengine-web-health": {"url": f"http://{alpha}/health", **fast},
            "alphaengine-web-port": {"port": self.sims.alpha_web_port, **fast},
            "binance-futures": {"url": f"ws://{HOST}:{self.sims.exchange_port}/ws"},
            # No network here: the exchange's DNS and REST ping are not probed.
            "binance-dns": {"enabled": False},
            "binance-ping": {"enabled": False},
            "binance-futures-dns": {"enabled": False},
        }
        source_overrides: dict[str, dict[str, Any]] = {
            "trader-api": {"docker_url": self.podman.url},
            "alphaengine-bot": {"directory": str(self.journal.directory)},
            "alphaengine-web": {"directory": str(self.journal.directory)},
            "nginx": {"path": str(self.nginx_log_path)},
        }
        unknown = sorted(set(probes) - set(probe_overrides)) + sorted(
            set(sources) - set(source_overrides)
        )
        if unknown:
            raise RuntimeError(f"the e2e stack does not know where to point {unknown}")
        database = {
            **preset["collectors"]["sqlite"]["databases"][0],
            "path": str(self.db_path),
        }
        return {
            "include": list(PRESETS),
            "state_dir": str(self._dir("state")),
            "web": {"listen_address": f"{HOST}:0"},
            "log": {"level": "info", "format": "json"},
            "collectors": {
                "host": {
                    **fast,
                    "procfs": str(self.root / "proc"),
                    "rootfs": str(self.host_root),
                },
                "docker": {"url": self.podman.url, "interval": "5s"},
                "systemd": {"address": self.systemd.address, "interval": "5s"},
                "sqlite": {**fast, "databases": [database]},
                "files": {"interval": "5s", "rootfs": str(self.host_root)},
                "process": {**fast},
            },
            **({"runbooks": {"bases": self.runbook_bases}} if self.runbook_bases else {}),
            # Lists of named items merge by name: each item replaces the preset's.
            "probes": [{**probes[name], **change} for name, change in probe_overrides.items()],
            "logs": {
                "sources": [
                    {**sources[name], **change} for name, change in source_overrides.items()
                ]
            },
        }

    # Faults' building blocks ---------------------------------------------------------------

    def trader_log(self, *lines: str) -> None:
        """Lines on trader-api's stdout, through the FIFO its container cats."""
        data = "".join(f"{line}\n" for line in lines).encode()
        with self._trader_lock:
            fd = self._trader_fifo()
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]

    def _trader_fifo(self) -> int:
        """The FIFO's write end, held open so that `cat` never sees an end of file between
        two writes (it would exit, and what is written before it reopens would be lost)."""
        if self._trader_fd is None:
            fifo = self.io / "log"

            def opened() -> int | None:
                try:  # ENXIO until the container's cat opens it for reading
                    return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
                except OSError as exc:
                    if exc.errno != errno.ENXIO:
                        raise
                    return None

            fd: int = wait_for(opened, START_TIMEOUT, "trader-api to read its FIFO")
            os.set_blocking(fd, True)
            self._trader_fd = fd
        return self._trader_fd

    def _close_trader_fifo(self) -> None:
        with self._trader_lock:
            if self._trader_fd is not None:
                os.close(self._trader_fd)
                self._trader_fd = None

    def alpha_log(self, unit: str, *lines: str) -> None:
        assert self.journal is not None
        self.journal.write(unit, *lines)

    def nginx_log(self, *lines: str) -> None:
        with self.nginx_log_path.open("a") as log:
            log.write("".join(f"{line}\n" for line in lines))

    def sql(self, *statements: tuple[str, tuple[Any, ...]]) -> None:
        """Statements in one transaction on the bot's open connection."""
        assert self.database is not None
        with self._db_lock:
            self.database.execute("BEGIN IMMEDIATE")
            for sql, params in statements:
                self.database.execute(sql, params)
            self.database.execute("COMMIT")

    def unit(self, name: str, *, service: dict[str, Any] | None = None, **props: Any) -> None:
        import asyncio

        assert self.systemd is not None
        asyncio.run(self.systemd.update(name, service=service, **props))

    def fill_disk(self, avail_ratio: float) -> None:
        """Leave `avail_ratio` of the tmpfs available."""
        st = os.statvfs(self.disk)
        target = int(st.f_blocks * avail_ratio)
        with (self.disk / "fill").open("ab") as f:
            f.write(b"\0" * max(0, (st.f_bavail - target) * st.f_frsize))

    def free_disk(self) -> None:
        (self.disk / "fill").unlink(missing_ok=True)

    def disk_avail_ratio(self) -> float:
        st = os.statvfs(self.disk)
        return st.f_bavail / st.f_blocks

    def crash_trader_api(self) -> None:
        """trader-api panics and exits (101), as its container's main process."""
        (self.io / "exit").touch()
        self.trader_log(
            tracing_line(
                "ERROR",
                "trader_api",
                "thread 'main' panicked at src/exchange/binance.rs:118:14: "
                "called `Result::unwrap()` on an `Err` value",
            )
        )
        self._close_trader_fifo()  # cat reads the line, then the end of file: the loop ends

    def restart_trader_api(self) -> None:
        """The operator brings trader-api back (docker compose up -d)."""
        assert self.podman is not None
        (self.io / "exit").unlink(missing_ok=True)
        client = self.podman.client()
        try:
            client.containers.get("trader-api").start()
        finally:
            client.close()

    # Observing ------------------------------------------------------------------------------

    def metric(self, name: str, **labels: str) -> float | None:
        """A sample of botwatch's /metrics now."""
        from prometheus_client.parser import text_string_to_metric_families

        assert self.botwatch is not None
        _, body = http_get(f"{self.botwatch.base}/metrics")
        for family in text_string_to_metric_families(body.decode()):
            for sample in family.samples:
                if sample.name == name and all(
                    sample.labels.get(k) == v for k, v in labels.items()
                ):
                    return float(sample.value)
        return None

    def urls(self) -> dict[str, str]:
        assert self.prometheus and self.alertmanager and self.botwatch
        return {
            "Prometheus alerts": f"{self.prometheus.base}/alerts",
            "Alertmanager": f"{self.alertmanager.base}/#/alerts",
            "botwatch": f"{self.botwatch.base}/",
        }


def _roomy_meminfo(text: str) -> str:
    """This machine's meminfo with 80 % of its memory available."""
    found = re.search(r"^MemTotal:\s+(\d+)", text, re.M)
    if found is None:
        raise RuntimeError("/proc/meminfo has no MemTotal")
    available = int(found.group(1)) * 8 // 10
    return re.sub(r"^(MemAvailable:\s+)\d+", rf"\g<1>{available}", text, flags=re.M)
