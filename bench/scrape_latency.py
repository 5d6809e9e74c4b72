"""Scrape latency and idle footprint: botwatch (default preset) against Debian's node_exporter.

Everything runs on 127.0.0.1. Each target is loaded on its own (node_exporter first, then
botwatch) by N concurrent keep-alive clients that scrape like Prometheus 2.x; then both sit
idle, unscraped, while their CPU time and RSS are measured. The results are printed and
written to its section of bench/RESULTS.md (replaced on every run).

Run with `make bench`, or `.venv/bin/python bench/scrape_latency.py --help` for the flags.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import math
import os
import platform
import re
import shlex
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import aiohttp
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results import RESULTS, demote, write_section

ROOT = Path(__file__).resolve().parent.parent
NODE_EXPORTER = "prometheus-node-exporter"
HOST = "127.0.0.1"
# What Prometheus 2.x sends on every scrape; the exporters negotiate format and gzip from it.
SCRAPE_HEADERS = {
    "Accept": "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
    "Accept-Encoding": "gzip",
    "User-Agent": "botwatch-bench/1 (Prometheus/2.x-like)",
}
# Prometheus' default scrape timeout; a request slower than this counts as an error.
REQUEST_TIMEOUT = 10.0
STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 5.0
POLL_INTERVAL = 0.05
# A client that fails this many times in a row stops, so a dead target cannot spin the loop.
MAX_CONSECUTIVE_ERRORS = 50
TARGET_P99_RATIO = 1.0
TARGET_RSS_MB = 60.0
TARGET_CPU_PERCENT = 1.0
MIB = 1024 * 1024
_LOGFMT_LEVEL = re.compile(r"\blevel=(\w+)")
PROBLEM_LEVELS = {"warn", "warning", "error", "critical", "fatal"}


class BenchError(Exception):
    """The benchmark cannot go on; the message says why."""


# --- daemons ------------------------------------------------------------------------------


class StderrLog:
    """Drains a daemon's stderr on a thread so a full pipe never stalls the daemon under load."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.tail: deque[str] = deque(maxlen=40)
        self.problems: list[str] = []
        self.problem_count = 0
        self.events: Counter[str] = Counter()  # problems by "level event"
        self.address: str | None = None
        self.version: str | None = None
        self.listening = threading.Event()
        self._thread = threading.Thread(target=self._drain, args=(stream,), daemon=True)
        self._thread.start()

    def _drain(self, stream: IO[bytes]) -> None:
        for raw in stream:
            self._take(raw.decode(errors="replace").rstrip())

    def _take(self, line: str) -> None:
        self.tail.append(line)
        record = _json_object(line)
        level = str(record.get("level", "")) if record else _logfmt_level(line)
        if level.lower() in PROBLEM_LEVELS:
            self.problem_count += 1
            self.events[f"{level.lower()} {record.get('event', '?') if record else '?'}"] += 1
            if len(self.problems) < 10:
                self.problems.append(line)
        if record and record.get("event") == "listening" and not self.listening.is_set():
            self.address = str(record.get("address", ""))
            self.version = str(record.get("version", "")) or None
            self.listening.set()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)


def _json_object(line: str) -> dict[str, object] | None:
    if not line.startswith("{"):
        return None
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _logfmt_level(line: str) -> str:
    match = _LOGFMT_LEVEL.search(line)
    return match.group(1) if match else ""


@dataclass
class Daemon:
    name: str
    proc: subprocess.Popen[bytes]
    log: StderrLog
    base_url: str = ""

    def check_alive(self) -> None:
        code = self.proc.poll()
        if code is not None:
            tail = "\n".join(self.log.tail) or "(no output)"
            raise BenchError(f"{self.name} exited with status {code}; last stderr lines:\n{tail}")


def spawn(name: str, argv: Sequence[str], preexec_fn: Callable[[], None] | None = None) -> Daemon:
    proc = subprocess.Popen(
        list(argv),
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        preexec_fn=preexec_fn,  # noqa: PLW1509 - called before the bench starts threads
    )
    assert proc.stderr is not None
    return Daemon(name, proc, StderrLog(proc.stderr))


def stop(daemon: Daemon) -> None:
    """SIGTERM, then SIGKILL if the daemon outlives STOP_TIMEOUT; only ever by its own PID."""
    if daemon.proc.poll() is None:
        daemon.proc.terminate()
        try:
            daemon.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            print(f"{daemon.name} ignored SIGTERM for {STOP_TIMEOUT:.0f} s; killing it")
            daemon.proc.kill()
            daemon.proc.wait(STOP_TIMEOUT)
    daemon.log.join(STOP_TIMEOUT)


def free_port() -> int:
    # Racy by nature (the port is free only until someone else takes it), which is fine on a
    # bench host; node_exporter exits with a clear error if it lost the race.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def start_botwatch(
    config: Path | None = None, preexec_fn: Callable[[], None] | None = None
) -> Daemon:
    """botwatch on a free port (learnt from its `listening` line); the embedded default
    config unless `config` is given."""
    argv = [sys.executable, "-m", "exporter", "run", f"--web.listen-address={HOST}:0"]
    argv += ["--log.format=json", *([f"--config.file={config}"] if config else [])]
    daemon = spawn("botwatch", argv, preexec_fn)
    address = wait_listening(daemon, time.monotonic() + STARTUP_TIMEOUT)
    daemon.base_url = f"http://{address}"
    return daemon


def wait_listening(daemon: Daemon, deadline: float) -> str:
    """The address from botwatch's `listening` log line (port 0 means we learn it there)."""
    while time.monotonic() < deadline:
        if daemon.log.listening.wait(POLL_INTERVAL):
            # With several listeners the line joins them with commas; we only asked for one.
            address = (daemon.log.address or "").split(",")[0]
            if not address.startswith(f"{HOST}:"):
                raise BenchError(f"botwatch logged an unexpected listen address: {address!r}")
            return address
        daemon.check_alive()
    raise BenchError(f"botwatch did not log 'listening' within {STARTUP_TIMEOUT:.0f} s")


def start_node_exporter(binary: str) -> Daemon:
    port = free_port()
    daemon = spawn("node_exporter", [binary, f"--web.listen-address={HOST}:{port}"])
    daemon.base_url = f"http://{HOST}:{port}"
    return daemon


def node_exporter_version(binary: str) -> str:
    out = subprocess.run(
        [binary, "--version"], capture_output=True, text=True, timeout=10, check=False
    )
    # node_exporter prints "node_exporter, version 1.5.0 (branch: ..., revision: ...)".
    first = (out.stdout or out.stderr).splitlines()[:1]
    match = re.search(r"version (\S+)(?: \(branch: [^,]*, revision: ([^)]*)\))?", "".join(first))
    if not match:
        return "unknown"
    return f"{match.group(1)} (Debian {match.group(2)})" if match.group(2) else match.group(1)


async def wait_http_ok(daemon: Daemon, path: str) -> None:
    """Poll until `path` answers 200: readiness, not just an open socket."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    last = "no answer yet"
    timeout = aiohttp.ClientTimeout(total=2)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        while time.monotonic() < deadline:
            daemon.check_alive()
            try:
                async with session.get(daemon.base_url + path) as resp:
                    await resp.read()
                    if resp.status == 200:
                        return
                    last = f"HTTP {resp.status}"
            except (aiohttp.ClientError, TimeoutError) as exc:
                last = type(exc).__name__
            await asyncio.sleep(POLL_INTERVAL)
    raise BenchError(f"{daemon.name} {path} not OK within {STARTUP_TIMEOUT:.0f} s ({last})")


# --- load ---------------------------------------------------------------------------------


@dataclass
class Phase:
    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    wire_bytes: int = 0


@dataclass
class LoadResult:
    target: str
    latencies: list[float]
    errors: Counter[str]
    wall: float
    server_cpu: float
    wire_bytes: int

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.wall if self.wall > 0 else 0.0

    def percentile_ms(self, q: float) -> float:
        return percentile(self.latencies, q) * 1000


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile; NaN when there is nothing to rank."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


async def client(session: aiohttp.ClientSession, url: str, until: float, out: Phase) -> None:
    consecutive_errors = 0
    while (start := time.perf_counter()) < until and consecutive_errors < MAX_CONSECUTIVE_ERRORS:
        try:
            async with session.get(url) as resp:
                # The raw (gzipped) body, read in full: the server's work and the transfer are
                # measured, not this client's decompression, which shares the CPUs with it.
                body = await resp.read()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            out.errors[type(exc).__name__] += 1
            consecutive_errors += 1
            continue
        elapsed = time.perf_counter() - start
        if status != 200:
            out.errors[f"HTTP {status}"] += 1
            consecutive_errors += 1
            continue
        consecutive_errors = 0
        out.latencies.append(elapsed)
        out.wire_bytes += len(body)


def open_sessions(count: int) -> list[aiohttp.ClientSession]:
    # One session and one connection per client, like `count` Prometheus servers each keeping
    # its scrape connection alive to the target.
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
    return [
        aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=1),
            headers=SCRAPE_HEADERS,
            timeout=timeout,
            auto_decompress=False,
        )
        for _ in range(count)
    ]


async def run_phase(sessions: Sequence[aiohttp.ClientSession], url: str, seconds: float) -> Phase:
    phase = Phase()
    until = time.perf_counter() + seconds
    await asyncio.gather(*(client(s, url, until, phase) for s in sessions))
    return phase


async def load(daemon: Daemon, clients: int, duration: float, warmup: float) -> LoadResult:
    url = daemon.base_url + "/metrics"
    process = psutil.Process(daemon.proc.pid)
    sessions = open_sessions(clients)
    try:
        # The warm-up opens the keep-alive connections and fills any caches; it is not counted.
        if warmup > 0:
            await run_phase(sessions, url, warmup)
        cpu_before = cpu_seconds(process)
        started = time.perf_counter()
        phase = await run_phase(sessions, url, duration)
        wall = time.perf_counter() - started
        server_cpu = cpu_seconds(process) - cpu_before
    finally:
        await asyncio.gather(*(s.close() for s in sessions))
    daemon.check_alive()
    return LoadResult(
        daemon.name, phase.latencies, phase.errors, wall, server_cpu, phase.wire_bytes
    )


@dataclass
class Exposition:
    series: int
    content_type: str
    encoding: str
    wire_bytes: int
    plain_bytes: int


async def one_scrape(daemon: Daemon) -> Exposition:
    """One Prometheus-like scrape, to report what each target serves (format, size, series)."""
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
    async with (
        aiohttp.ClientSession(
            headers=SCRAPE_HEADERS, timeout=timeout, auto_decompress=False
        ) as session,
        session.get(daemon.base_url + "/metrics") as resp,
    ):
        raw = await resp.read()
        if resp.status != 200:
            raise BenchError(f"{daemon.name} /metrics answered HTTP {resp.status}")
        encoding = resp.headers.get("Content-Encoding", "identity")
        content_type = resp.headers.get("Content-Type", "?")
    plain = gzip.decompress(raw) if encoding == "gzip" else raw
    return Exposition(count_series(plain), content_type, encoding, len(raw), len(plain))


def count_series(body: bytes) -> int:
    # A sample line is any non-empty line that is not a comment (# HELP/TYPE/UNIT/EOF).
    return sum(1 for line in body.splitlines() if line.strip() and not line.startswith(b"#"))


# --- idle footprint -----------------------------------------------------------------------


@dataclass
class Idle:
    target: str
    cpu_percent: float
    rss_mb: float
    peak_sampled_mb: float
    hwm_mb: float | None
    wall: float


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system + times.children_user + times.children_system


def vm_hwm_mb(pid: int) -> float | None:
    """The kernel's lifetime peak RSS (VmHWM), which catches the load phase's high point."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    return int(match.group(1)) * 1024 / MIB if match else None


def measure_idle(daemons: Sequence[Daemon], seconds: float) -> list[Idle]:
    processes = [psutil.Process(d.proc.pid) for d in daemons]
    before = [cpu_seconds(p) for p in processes]
    peaks = [0.0] * len(daemons)
    started = time.monotonic()
    deadline = started + seconds
    # Sleeping is the measurement here: nothing may touch the daemons during the window. It
    # wakes each second only to notice a daemon that died and to sample RSS.
    while (now := time.monotonic()) < deadline:
        time.sleep(min(1.0, deadline - now))
        for i, (daemon, process) in enumerate(zip(daemons, processes, strict=True)):
            daemon.check_alive()
            peaks[i] = max(peaks[i], process.memory_info().rss / MIB)
    wall = time.monotonic() - started
    return [
        Idle(
            target=daemon.name,
            cpu_percent=100 * (cpu_seconds(process) - cpu0) / wall,
            rss_mb=process.memory_info().rss / MIB,
            peak_sampled_mb=peak,
            hwm_mb=vm_hwm_mb(process.pid),
            wall=wall,
        )
        for daemon, process, cpu0, peak in zip(daemons, processes, before, peaks, strict=True)
    ]


# --- report -------------------------------------------------------------------------------


@dataclass
class Report:
    args: argparse.Namespace
    started: datetime
    order: list[str]
    versions: dict[str, str]
    expositions: dict[str, Exposition]
    loads: dict[str, LoadResult]
    idle: dict[str, Idle]
    problems: dict[str, StderrLog]


def machine() -> str:
    cpus = len(os.sched_getaffinity(0))
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    py = platform.python_version()
    return f"{cpus} CPUs (nproc), {model}, Linux {platform.release()}, Python {py}"


def command(args: argparse.Namespace) -> str:
    flags = (
        f"--duration {args.duration:g} --clients {args.clients} "
        f"--idle-seconds {args.idle_seconds:g} --warmup {args.warmup:g}"
    )
    return f".venv/bin/python bench/scrape_latency.py {flags}"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def fmt(value: float, digits: int = 2) -> str:
    return "n/a" if math.isnan(value) else f"{value:.{digits}f}"


def errors_text(errors: Counter[str]) -> str:
    if not errors:
        return "0"
    detail = ", ".join(f"{k} ×{v}" for k, v in errors.most_common())
    return f"{sum(errors.values())} ({detail})"


def latency_table(report: Report) -> list[str]:
    rows = [
        "| target | series | format served | body gzip / plain | requests | errors "
        "| p50 ms | p99 ms | max ms | req/s | server CPU ms/scrape |",
        "|---|---:|---|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for name in report.order:
        res, exp = report.loads[name], report.expositions[name]
        served = exp.content_type.split(";")[0] + (" + gzip" if exp.encoding == "gzip" else "")
        per_scrape = 1000 * res.server_cpu / len(res.latencies) if res.latencies else math.nan
        rows.append(
            f"| {name} | {exp.series} | {served} "
            f"| {exp.wire_bytes / 1024:.1f} KiB / {exp.plain_bytes / 1024:.1f} KiB "
            f"| {len(res.latencies)} | {errors_text(res.errors)} "
            f"| {fmt(res.percentile_ms(50))} | {fmt(res.percentile_ms(99))} "
            f"| {fmt(max(res.latencies, default=math.nan) * 1000)} | {res.rps:.0f} "
            f"| {fmt(per_scrape, 3)} |"
        )
    return rows


def checks_table(report: Report) -> list[str]:
    bw, ne = report.loads["botwatch"], report.loads["node_exporter"]
    p99_ratio = bw.percentile_ms(99) / ne.percentile_ms(99)
    rps_ratio = bw.rps / ne.rps if ne.rps else math.nan
    idle = report.idle["botwatch"]
    return [
        "| check | value | target | result |",
        "|---|---:|---:|---|",
        f"| botwatch p99 / node_exporter p99 | {fmt(p99_ratio)} | ≤ {TARGET_P99_RATIO:g} "
        f"| {verdict(p99_ratio <= TARGET_P99_RATIO)} |",
        f"| botwatch req/s / node_exporter req/s | {fmt(rps_ratio)} | (for information) | — |",
        f"| botwatch idle RSS | {idle.rss_mb:.1f} MB ({idle.rss_mb * MIB / 1e6:.1f} decimal MB) "
        f"| ≤ {TARGET_RSS_MB:g} MB "
        f"| {verdict(idle.rss_mb <= TARGET_RSS_MB)} |",
        f"| botwatch idle CPU | {idle.cpu_percent:.2f} % of a core "
        f"| ≤ {TARGET_CPU_PERCENT:g} % | {verdict(idle.cpu_percent <= TARGET_CPU_PERCENT)} |",
        "| botwatch errors under load | "
        f"{sum(bw.errors.values())} | 0 | {verdict(not bw.errors)} |",
    ]


def idle_table(report: Report) -> list[str]:
    rows = [
        "| target | RSS at end MB | highest RSS sampled while idle MB | lifetime peak RSS "
        "(VmHWM) MB | CPU % of one core |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in report.order:
        idle = report.idle[name]
        hwm = "n/a" if idle.hwm_mb is None else f"{idle.hwm_mb:.1f}"
        rows.append(
            f"| {name} | {idle.rss_mb:.1f} | {idle.peak_sampled_mb:.1f} | {hwm} "
            f"| {idle.cpu_percent:.2f} |"
        )
    return rows


def log_section(report: Report) -> list[str]:
    lines = []
    for name in report.order:
        log = report.problems[name]
        lines.append(f"- {name}: {log.problem_count} warning/error line(s) on stderr")
        lines.extend(f"  - `{line[:300]}`" for line in log.problems[:5])
    return lines


def render_markdown(report: Report) -> str:
    args = report.args
    idle_wall = report.idle["botwatch"].wall
    parts = [
        "# Scrape latency and idle footprint: botwatch vs node_exporter",
        "",
        "Written by `bench/scrape_latency.py`; its section replaced on every run.",
        "",
        f"- Date: {report.started.strftime('%Y-%m-%d %H:%M:%S UTC')}",
        f"- Machine: {machine()}",
        f"- botwatch {report.versions['botwatch']} (embedded default preset, "
        "`python -m exporter run --web.listen-address=127.0.0.1:0 --log.format=json`)",
        f"- node_exporter {report.versions['node_exporter']} (`{NODE_EXPORTER}`, default flags)",
        "- Reproduce: `make bench` (installs `bench/deps.txt` with `scripts/install-debs.sh`, "
        "then runs `.venv/bin/python bench/scrape_latency.py`). This run:",
        f"  `{command(args)}`",
        "",
        "## Method",
        "",
        f"- Targets were loaded one after the other, in this order: {', '.join(report.order)}.",
        f"- Per target: {args.clients} concurrent clients, each with its own keep-alive "
        f"connection, loop `GET /metrics` for {args.duration:g} s after a {args.warmup:g} s "
        "warm-up that is not counted.",
        f"- Headers as Prometheus 2.x: `Accept: {SCRAPE_HEADERS['Accept']}`, "
        "`Accept-Encoding: gzip`. The full (gzipped) body is read; latency is from sending "
        "the request to the last body byte. Non-200 answers and transport errors count as "
        f"errors; the request timeout is {REQUEST_TIMEOUT:g} s.",
        "- The two do different work per scrape: node_exporter runs its collectors on every "
        "scrape, while botwatch collects on its own interval and serves a body rendered at "
        "most once per `web.render_interval` (and gzipped once), shared by concurrent scrapes.",
        "- The load generator (Python, aiohttp) runs on the same host and competes with the "
        "target for the CPUs, so absolute figures are pessimistic; the ratio is the point.",
        f"- Idle: after the load, both daemons sat unscraped for {idle_wall:.1f} s. CPU % is "
        "process CPU time (user + system) over that window divided by wall time; RSS is "
        "read at its end. MB in the tables means MiB (2^20 bytes); the RSS target is checked "
        "in MiB.",
        "",
        "## Scrape latency",
        "",
        *latency_table(report),
        "",
        "Series = sample lines in one scrape (non-empty lines not starting with `#`).",
        "",
        "## Targets",
        "",
        *checks_table(report),
        "",
        f"## Idle footprint ({idle_wall:.0f} s, no scrapes)",
        "",
        *idle_table(report),
        "",
        "## Daemon stderr during the run",
        "",
        *log_section(report),
        "",
    ]
    return "\n".join(parts)


# --- main ---------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of load per target")
    parser.add_argument("--clients", type=int, default=20, help="concurrent scrapers per target")
    parser.add_argument(
        "--idle-seconds", type=float, default=60.0, help="unscraped window for CPU and RSS"
    )
    parser.add_argument("--warmup", type=float, default=1.0, help="uncounted seconds of load")
    args = parser.parse_args(argv)
    if args.duration <= 0 or args.clients < 1 or args.idle_seconds <= 0 or args.warmup < 0:
        parser.error("--duration, --clients and --idle-seconds must be positive")
    return args


async def scrape_targets(
    daemons: Sequence[Daemon], args: argparse.Namespace
) -> tuple[dict[str, Exposition], dict[str, LoadResult]]:
    expositions: dict[str, Exposition] = {}
    loads: dict[str, LoadResult] = {}
    for daemon in daemons:
        expositions[daemon.name] = await one_scrape(daemon)
        print(f"loading {daemon.name}: {args.clients} clients × {args.duration:g} s ...")
        loads[daemon.name] = await load(daemon, args.clients, args.duration, args.warmup)
    return expositions, loads


async def wait_ready(botwatch: Daemon, node: Daemon) -> None:
    await asyncio.gather(wait_http_ok(botwatch, "/-/ready"), wait_http_ok(node, "/metrics"))


def run(args: argparse.Namespace, binary: str) -> Report:
    started = datetime.now(UTC)
    versions = {"node_exporter": node_exporter_version(binary)}
    daemons: list[Daemon] = []
    try:
        node = start_node_exporter(binary)
        daemons.append(node)
        botwatch = start_botwatch()
        daemons.append(botwatch)
        versions["botwatch"] = botwatch.log.version or "unknown"
        asyncio.run(wait_ready(botwatch, node))
        # node_exporter first, then botwatch, so botwatch is measured after its own warm-up
        # and neither target is loaded while the other one is.
        expositions, loads = asyncio.run(scrape_targets([node, botwatch], args))
        print(f"idle window: {args.idle_seconds:g} s with no scrapes ...")
        idle = measure_idle([node, botwatch], args.idle_seconds)
    finally:
        for daemon in reversed(daemons):
            stop(daemon)
    return Report(
        args=args,
        started=started,
        order=[node.name, botwatch.name],
        versions=versions,
        expositions=expositions,
        loads=loads,
        idle={i.target: i for i in idle},
        problems={d.name: d.log for d in daemons},
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    binary = shutil.which(NODE_EXPORTER)
    if binary is None:
        print(
            f"{NODE_EXPORTER} is not installed; run `scripts/install-debs.sh bench/deps.txt` "
            "(as root) or `make bench`, then try again.",
            file=sys.stderr,
        )
        return 1
    try:
        report = run(args, binary)
    except BenchError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    text = render_markdown(report)
    write_section("scrape_latency", demote(text))
    print(text)
    print(f"wrote {shlex.quote(str(RESULTS.relative_to(ROOT)))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
