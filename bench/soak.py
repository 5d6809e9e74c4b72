"""Soak: the real daemon under a steady load for 10 minutes; does RSS or the fd count grow?

Everything runs on 127.0.0.1 in a temporary directory. The bench starts:

- the daemon, `python -m exporter run` with a config written here: a file log source with
  the trader-bot and alphaengine packs, the host collector, an http probe against a healthy
  server, an http probe against a flaky one (200, then 503, then a hang past the probe's
  timeout, on a loop), and a tcp probe against a listener that is up half the time (the
  other half connections are refused);
- a writer thread appending a steady mix of lines the packs count (both stacks' formats,
  label values past the rules' caps, circuit breakers changing state) and routine lines
  they must not, rotating the file every `--rotate-every` seconds, cycling through rename,
  copytruncate and delete-and-recreate so the tailer's rotation paths are soaked too;
- a scraper: /metrics plain and gzipped every second, the OpenMetrics format and the
  landing page now and then.

Every `--sample-every` seconds it records the daemon's RSS, open fds and threads, the lines
written against the daemon's botwatch_log_lines_total, and the number of series served.
The least-squares slopes of RSS and fds after the warm-up, the final figures and the
verdict go to the soak section of bench/RESULTS.md.

Run with `make bench`, or `.venv/bin/python bench/soak.py --duration 60` for a quick check;
`--help` lists the flags.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import gzip
import json
import os
import platform
import random
import re
import shlex
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

import aiohttp
import psutil
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results import write_section
from scrape_latency import BenchError, Daemon, start_botwatch, stop

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
SOURCE = "soak"
PACKS = ("trader-bot", "alphaengine")
SEED = 20261123
KIB = 1024
MIB = 1024 * 1024
STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
DRAIN_TIMEOUT = 30.0  # after the writer stops, the daemon must count every line within this
REQUEST_TIMEOUT = 10.0
LANDING_EVERY = 15.0
OPENMETRICS_EVERY = 5  # every 5th scrape round asks for OpenMetrics too
FLAKY_PHASE = 20.0  # seconds each of the flaky http server's 200 / 503 / hang phases last
TCP_PHASE = 30.0  # seconds the tcp listener is up, then down
PROBE_INTERVAL = "1s"
PROBE_TIMEOUT = "800ms"
HANG_SECONDS = 3.0  # longer than PROBE_TIMEOUT
# Targets. RSS: growth after warm-up below 1 % of the daemon's RSS per 10 minutes (at
# ~60 MiB, ≈ 60 KiB/min). fds: a slope below 0.2 fd/min (under 2 fds per 10 minutes; a
# rotated file held for rotate_wait or a probe's socket make single samples jump by 1-3).
RSS_SHARE_PER_10_MIN = 0.01
FD_SLOPE_LIMIT = 0.2
MAX_TABLE_ROWS = 21
PR_SET_PDEATHSIG = 1

# --- the log load ---------------------------------------------------------------------------

# Lines the packs count, in both stacks' formats. {var} and {code} take more distinct values
# than the rules' caps (20) admit, so the overflow path runs; {breaker}/{state} announce
# circuit breaker transitions. Times are filled in as the line is written.
TRADER_PROBLEMS = (
    "{ts}Z ERROR trader_api::exchange::binance: Rate limit exceeded, retry after 30s",
    "{ts}Z ERROR trader_api::exchange::binance: HTTP 429 Too Many Requests",
    "{ts}Z  WARN trader_api::risk: Circuit breaker is open, rejecting order",
    "{ts}Z  WARN trader_api::risk: circuit breaker {breaker} transitioned to {state}",
    '{{"timestamp":"{ts}Z","level":"ERROR","fields":{{"message":"WebSocket disconnected"}},'
    '"target":"trader_api::ws"}}',
    '{{"timestamp":"{ts}Z","level":"ERROR","fields":{{"message":"Binance API error",'
    '"code":{code},"msg":"Timestamp for this request is outside of the recvWindow."}},'
    '"target":"trader_api::exchange"}}',
    "{ts}Z ERROR trader_api::auth: JWT validation failed: token expired",
    "{ts}Z ERROR trader_api::auth: Invalid token",
    "{ts}Z ERROR trader_api::config: {var} not set",
    "{ts}Z ERROR trader_api::db: Connection refused to timescaledb",
    "{ts}Z ERROR trader_api::exchange: Invalid API key",
    "{ts}Z ERROR trader_api::orders: Order rejected: insufficient balance",
)
ALPHA_PROBLEMS = (
    "{day} {clock},123 - bot.exchange - ERROR - Order rejected: insufficient balance",
    "{day} {clock},456 - bot.ws - WARNING - WebSocket connection closed, reconnecting (attempt 3)",
    "{day} {clock},457 - bot.ws - WARNING - WebSocket 연결 끊김, 재연결 시도...",
    "{day} {clock},789 - bot.store - ERROR - sqlite3.OperationalError: database is locked",
    "{day} {clock},790 - bot.exchange - ERROR - APIError(code={code}): Invalid request",
    '{{"event": "order rejected", "reason": "position limit exceeded", "level": "error",'
    ' "timestamp": "{ts}Z"}}',
    '{{"event": "WebSocket \\uc5f0\\uacb0 \\ub04a\\uae40", "level": "warning",'
    ' "timestamp": "{ts}Z"}}',
)
PROBLEMS = TRADER_PROBLEMS + ALPHA_PROBLEMS
# ... and the ordinary lines around them, which no rule may count.
ROUTINE = (
    "{ts}Z  INFO trader_api::strategy: tick processed symbol=BTCUSDT price=43125.{n} qty=0.0{n}",
    "{ts}Z DEBUG trader_api::ws: message received stream=btcusdt@bookTicker seq={n}",
    '{{"timestamp":"{ts}Z","level":"INFO","fields":{{"message":"order book updated",'
    '"depth":{n}}},"target":"trader_api::market"}}',
    "{ts}Z  INFO trader_api::risk: rate limit ok: {n}/1200",
    "{day} {clock},{n:03d} - bot.strategy - INFO - signal evaluated: momentum={n} hold",
    '{{"event": "heartbeat", "level": "info", "latency_ms": {n}, "timestamp": "{ts}Z"}}',
    "{day} {clock},001 - bot.ws - INFO - WebSocket reconnected successfully",
    '10.0.0.5 - - [23/Nov/2026:03:12:45 +0000] "GET /api/v1/positions HTTP/1.1" 200 {n} "-" '
    '"Mozilla/5.0"',
)
VARS = tuple(f"SOAK_SETTING_{i}" for i in range(40))
CODES = tuple(f"-{1000 + i * 17}" for i in range(40))
BREAKERS = ("binance", "redis", "timescaledb")
BREAKER_STATES = ("Open", "HalfOpen", "Closed")
ROTATION_KINDS = ("rename", "copytruncate", "recreate")


class Writer:
    """Appends the mixed log at a steady rate on its own thread and rotates it on a cycle."""

    def __init__(self, path: Path, rate: int, problem_share: float, rotate_every: float) -> None:
        self.path = path
        self.rotated = path.with_name(path.name + ".1")
        self.rate = rate
        self.problem_share = problem_share
        self.rotate_every = rotate_every
        self.written = 0
        self.problems = 0
        self.rotations: Counter[str] = Counter()
        self.behind = 0.0  # the longest the writer fell behind its schedule, seconds
        self.error: BaseException | None = None
        self._deadline = 0.0
        self._stop = threading.Event()
        self._rng = random.Random(SEED)
        self._thread = threading.Thread(target=self._run, name="soak-writer", daemon=True)

    def start(self, deadline: float) -> None:
        self._deadline = deadline
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join(STOP_TIMEOUT)

    def _line(self, now: float) -> str:
        stamp = datetime.fromtimestamp(now, UTC)
        day, clock = f"{stamp:%Y-%m-%d}", f"{stamp:%H:%M:%S}"
        rng = self._rng
        fields = {
            "ts": f"{day}T{clock}.{stamp.microsecond:06d}",
            "day": day,
            "clock": clock,
            "n": rng.randrange(1000),
            "var": rng.choice(VARS),
            "code": rng.choice(CODES),
            "breaker": rng.choice(BREAKERS),
            "state": rng.choice(BREAKER_STATES),
        }
        if rng.random() < self.problem_share:
            self.problems += 1
            return rng.choice(PROBLEMS).format(**fields) + "\n"
        return rng.choice(ROUTINE).format(**fields) + "\n"

    def _rotate(self, out: TextIO) -> TextIO:
        kind = ROTATION_KINDS[sum(self.rotations.values()) % len(ROTATION_KINDS)]
        out.flush()
        if kind == "rename":  # logrotate `create`
            os.replace(self.path, self.rotated)
            out.close()
            out = self.path.open("a", encoding="utf-8")
        elif kind == "copytruncate":  # the writer keeps its O_APPEND descriptor
            self.rotated.unlink(missing_ok=True)
            shutil.copyfile(self.path, self.rotated)
            os.truncate(self.path, 0)
        else:  # delete and recreate
            self.rotated.unlink(missing_ok=True)
            self.path.unlink()
            out.close()
            out = self.path.open("a", encoding="utf-8")
        self.rotations[kind] += 1
        return out

    def _run(self) -> None:
        tick = 0.05
        per_tick = max(1, round(self.rate * tick))
        started = time.monotonic()
        next_rotation = started + self.rotate_every
        out: TextIO = self.path.open("a", encoding="utf-8")
        try:
            n = 0
            while not self._stop.is_set() and time.monotonic() < self._deadline:
                now = time.time()
                out.write("".join(self._line(now) for _ in range(per_tick)))
                out.flush()
                self.written += per_tick
                n += 1
                if time.monotonic() >= next_rotation:
                    out = self._rotate(out)
                    next_rotation += self.rotate_every
                wait = started + n * tick - time.monotonic()
                self.behind = max(self.behind, -wait)
                if wait > 0:
                    self._stop.wait(wait)
        except BaseException as exc:  # reported by the main thread
            self.error = exc
        finally:
            out.close()


# --- the targets the probes check -----------------------------------------------------------


@dataclass
class Targets:
    http_sock: socket.socket
    tcp_sock: socket.socket
    started: float = field(default_factory=time.monotonic)
    http_hits: Counter[str] = field(default_factory=Counter)
    tcp_accepts: int = 0
    tcp_flips: int = 0

    @property
    def http_port(self) -> int:
        return int(self.http_sock.getsockname()[1])

    @property
    def tcp_port(self) -> int:
        return int(self.tcp_sock.getsockname()[1])

    def flaky_phase(self) -> str:
        phase = int((time.monotonic() - self.started) // FLAKY_PHASE) % 3
        return ("ok", "503", "hang")[phase]


def bound_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, 0))
    return sock


async def serve_http(targets: Targets) -> web.AppRunner:
    async def health(_: web.Request) -> web.Response:
        targets.http_hits["health"] += 1
        return web.json_response({"status": "ok"})

    async def flaky(_: web.Request) -> web.Response:
        phase = targets.flaky_phase()
        targets.http_hits[f"flaky-{phase}"] += 1
        if phase == "503":
            return web.json_response({"status": "down"}, status=503)
        if phase == "hang":
            await asyncio.sleep(HANG_SECONDS)
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_get("/flaky", flaky)
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
    await runner.setup()
    await web.SockSite(runner, targets.http_sock).start()
    return runner


async def flap_tcp(targets: Targets, deadline: float) -> None:
    """A listener that accepts (and closes) for TCP_PHASE seconds, then is gone as long."""

    async def accept(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        targets.tcp_accepts += 1
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()

    port = targets.tcp_port
    sock: socket.socket | None = targets.tcp_sock
    while time.monotonic() < deadline:
        if sock is not None:
            server = await asyncio.start_server(accept, sock=sock)
            sock = None
        else:
            server = await asyncio.start_server(accept, HOST, port, reuse_address=True)
        try:
            await asyncio.sleep(min(TCP_PHASE, max(0.0, deadline - time.monotonic())))
        finally:
            server.close()
            await server.wait_closed()
        targets.tcp_flips += 1
        await asyncio.sleep(min(TCP_PHASE, max(0.0, deadline - time.monotonic())))
        targets.tcp_flips += 1


# --- the daemon -----------------------------------------------------------------------------


def write_config(work: Path, log: Path, targets: Targets) -> Path:
    config = {
        "state_dir": str(work / "state"),
        "collectors": {
            "host": {"interval": "5s"},
            # Only the host collector: no docker, systemd or kernel log on a bench host.
            "docker": {"enabled": False},
            "systemd": {"enabled": False},
            "oom": {"enabled": False},
        },
        "probes": [
            {
                "name": "soak-http",
                "type": "http",
                "url": f"http://{HOST}:{targets.http_port}/health",
                "expect_json": {"path": "status", "equals": "ok"},
                "interval": PROBE_INTERVAL,
                "timeout": PROBE_TIMEOUT,
            },
            {
                "name": "soak-http-flaky",
                "type": "http",
                "url": f"http://{HOST}:{targets.http_port}/flaky",
                "interval": PROBE_INTERVAL,
                "timeout": PROBE_TIMEOUT,
            },
            {
                "name": "soak-tcp",
                "type": "tcp",
                "host": HOST,
                "port": targets.tcp_port,
                "interval": PROBE_INTERVAL,
                "timeout": PROBE_TIMEOUT,
            },
        ],
        "logs": {
            "sources": [
                {
                    "name": SOURCE,
                    "type": "file",
                    "path": str(log),
                    "start_at": "beginning",
                    "packs": list(PACKS),
                }
            ]
        },
    }
    path = work / "botwatch.yml"
    path.write_text(json.dumps(config, indent=2) + "\n")  # JSON is YAML
    (work / "state").mkdir()
    return path


def _die_with_parent() -> None:
    # Linux: the daemon gets SIGKILL if the bench itself is killed before its cleanup runs.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def start_daemon(config: Path) -> Daemon:
    return start_botwatch(config, preexec_fn=_die_with_parent)


def stop_daemon(daemon: Daemon) -> int | None:
    stop(daemon)
    return daemon.proc.returncode


# --- scraping and sampling ------------------------------------------------------------------

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')

Series = list[tuple[str, dict[str, str], float]]


def parse_exposition(text: str) -> Series:
    out: Series = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if match:
            labels = dict(_LABEL.findall(match.group(2) or ""))
            out.append((match.group(1), labels, float(match.group(3))))
    return out


def value(series: Series, name: str, **labels: str) -> float | None:
    for got, have, v in series:
        if got == name and all(have.get(k) == w for k, w in labels.items()):
            return v
    return None


@dataclass
class ScrapeStats:
    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: Counter[str] = field(default_factory=Counter)
    wire_bytes: Counter[str] = field(default_factory=Counter)

    def add(self, kind: str, seconds: float, size: int) -> None:
        self.latencies.setdefault(kind, []).append(seconds)
        self.wire_bytes[kind] += size


@dataclass
class Sample:
    t: float  # seconds since the load started
    rss: int  # bytes
    fds: int
    threads: int
    cpu: float  # the daemon's user+system seconds so far
    written: int
    counted: int
    series: int
    memory: dict[str, int]  # RSS bytes by kind of mapping (rss_breakdown)


async def fetch(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str]
) -> tuple[int, dict[str, str], bytes]:
    async with session.get(url, headers=headers) as resp:
        return resp.status, dict(resp.headers), await resp.read()


PLAIN = {"Accept": "text/plain;version=0.0.4", "Accept-Encoding": "identity"}
GZIP = {"Accept": "text/plain;version=0.0.4", "Accept-Encoding": "gzip"}
OPENMETRICS = {
    "Accept": "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
    "Accept-Encoding": "gzip",
}


async def scrape(
    session: aiohttp.ClientSession, base: str, kind: str, stats: ScrapeStats
) -> str | None:
    """One scrape of /metrics (plain, gzip or openmetrics) or / (landing); the body as text."""
    url = base + ("/" if kind == "landing" else "/metrics")
    headers = {"plain": PLAIN, "gzip": GZIP, "openmetrics": OPENMETRICS}.get(kind, PLAIN)
    started = time.perf_counter()
    try:
        status, got, body = await fetch(session, url, headers)
    except (aiohttp.ClientError, TimeoutError) as exc:
        stats.errors[f"{kind}: {type(exc).__name__}"] += 1
        return None
    elapsed = time.perf_counter() - started
    if status != 200:
        stats.errors[f"{kind}: HTTP {status}"] += 1
        return None
    if headers.get("Accept-Encoding") == "gzip":
        if got.get("Content-Encoding") != "gzip":
            stats.errors[f"{kind}: not gzipped"] += 1
            return None
        try:
            text = gzip.decompress(body).decode()
        except (OSError, EOFError, UnicodeDecodeError):
            stats.errors[f"{kind}: bad gzip body"] += 1
            return None
    else:
        text = body.decode(errors="replace")
    if kind == "openmetrics" and not text.rstrip().endswith("# EOF"):
        stats.errors[f"{kind}: no # EOF"] += 1
    if kind != "landing" and "botwatch_log_lines_total" not in text:
        stats.errors[f"{kind}: no botwatch_log_lines_total"] += 1
    stats.add(kind, elapsed, len(body))
    return text


# glibc gives threads their own malloc arenas, each made of heaps mapped at multiples of
# HEAP_MAX_SIZE (64 MiB on 64-bit); Python's object allocator maps 256 KiB arenas anywhere.
GLIBC_HEAP_ALIGN = 64 * MIB
_MAPPING = re.compile(r"^([0-9a-f]+)-[0-9a-f]+ (\S+) \S+ \S+ \S+\s*(.*)$")
MEMORY_KINDS = {
    "heap": "glibc main heap ([heap])",
    "arenas": "glibc thread arenas",
    "anon": "other anonymous (Python objects, thread stacks, mmaps)",
    "files": "file-backed (code, libraries)",
}


def rss_breakdown(pid: int) -> dict[str, int]:
    """The daemon's RSS by kind of mapping, from /proc/PID/smaps (bytes)."""
    out = dict.fromkeys(MEMORY_KINDS, 0)
    kind: str | None = None
    with open(f"/proc/{pid}/smaps") as smaps:
        for line in smaps:
            head = _MAPPING.match(line)
            if head:
                start, perms, name = int(head.group(1), 16), head.group(2), head.group(3)
                if name == "[heap]":
                    kind = "heap"
                elif name.startswith("/"):
                    kind = "files"
                elif not name and perms.startswith("rw") and start % GLIBC_HEAP_ALIGN == 0:
                    kind = "arenas"
                else:
                    kind = "anon"
            elif line.startswith("Rss:") and kind is not None:
                out[kind] += int(line.split()[1]) * KIB
    return out


def read_proc(pid: int) -> tuple[int, int, int, float]:
    """RSS bytes, open fds, threads and CPU seconds of the daemon."""
    proc = psutil.Process(pid)
    with proc.oneshot():
        times = proc.cpu_times()
        return proc.memory_info().rss, proc.num_fds(), proc.num_threads(), times.user + times.system


@dataclass
class Run:
    samples: list[Sample] = field(default_factory=list)
    stats: ScrapeStats = field(default_factory=ScrapeStats)
    final: Series = field(default_factory=list)
    drained_after: float | None = None  # seconds from the writer's stop to every line counted
    load_seconds: float = 0.0


async def take_sample(
    session: aiohttp.ClientSession, daemon: Daemon, writer: Writer, t: float, run: Run
) -> Sample | None:
    written = writer.written  # read before the scrape: counted can only be behind it
    text = await scrape(session, daemon.base_url, "plain", run.stats)
    if text is None:
        return None
    series = parse_exposition(text)
    rss, fds, threads, cpu = read_proc(daemon.proc.pid)
    counted = int(value(series, "botwatch_log_lines_total", source=SOURCE) or 0)
    memory = rss_breakdown(daemon.proc.pid)
    return Sample(t, rss, fds, threads, cpu, written, counted, len(series), memory)


async def soak(args: argparse.Namespace, daemon: Daemon, writer: Writer, targets: Targets) -> Run:
    run = Run()
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
    runner = await serve_http(targets)
    try:
        async with aiohttp.ClientSession(timeout=timeout, auto_decompress=False) as session:
            await wait_ready(session, daemon)
            started = time.monotonic()
            deadline = started + args.duration
            targets.started = started
            flapper = asyncio.create_task(flap_tcp(targets, deadline))
            writer.start(deadline)
            next_sample = started
            next_landing = started + LANDING_EVERY
            rounds = 0
            while True:
                now = time.monotonic()
                daemon.check_alive()
                if writer.error is not None:
                    raise BenchError(f"the writer failed: {writer.error!r}")
                if now >= next_sample:
                    sample = await take_sample(session, daemon, writer, now - started, run)
                    if sample is not None:
                        run.samples.append(sample)
                        print(progress(sample), flush=True)
                    next_sample += args.sample_every
                if now >= deadline:
                    break
                rounds += 1
                kinds = ["plain", "gzip"]
                if rounds % OPENMETRICS_EVERY == 0:
                    kinds.append("openmetrics")
                if now >= next_landing:
                    kinds.append("landing")
                    next_landing += LANDING_EVERY
                for kind in kinds:
                    await scrape(session, daemon.base_url, kind, run.stats)
                await asyncio.sleep(max(0.0, min(now + 1.0, deadline) - time.monotonic()))
            writer.stop()
            run.load_seconds = time.monotonic() - started
            flapper.cancel()
            await asyncio.gather(flapper, return_exceptions=True)
            run.drained_after, run.final = await drain(session, daemon, writer, run)
    finally:
        await runner.cleanup()
    if len(run.samples) < 2:
        raise BenchError("fewer than two samples were taken")
    return run


async def wait_ready(session: aiohttp.ClientSession, daemon: Daemon) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    last = "no answer yet"
    while time.monotonic() < deadline:
        daemon.check_alive()
        try:
            status, _, body = await fetch(session, daemon.base_url + "/-/ready", {})
            if status == 200:
                return
            last = f"HTTP {status}: {body.decode(errors='replace').strip()}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            last = type(exc).__name__
        await asyncio.sleep(0.1)
    raise BenchError(f"the daemon was not ready within {STARTUP_TIMEOUT:.0f} s ({last})")


async def drain(
    session: aiohttp.ClientSession, daemon: Daemon, writer: Writer, run: Run
) -> tuple[float | None, Series]:
    """Wait (bounded) until the daemon has counted every line written; the last scrape."""
    stopped = time.monotonic()
    deadline = stopped + DRAIN_TIMEOUT
    series: Series = []
    while True:
        daemon.check_alive()
        text = await scrape(session, daemon.base_url, "plain", run.stats)
        if text is not None:
            series = parse_exposition(text)
            counted = value(series, "botwatch_log_lines_total", source=SOURCE) or 0
            if counted >= writer.written:
                return time.monotonic() - stopped, series
        if time.monotonic() > deadline:
            return None, series
        await asyncio.sleep(0.25)


def progress(s: Sample) -> str:
    return (
        f"t={s.t:5.0f}s rss={s.rss / MIB:6.1f} MiB fds={s.fds:3d} threads={s.threads:2d} "
        f"written={s.written:,} counted={s.counted:,} series={s.series}"
    )


# --- analysis and report --------------------------------------------------------------------


def slope(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of y over x; 0 with fewer than two distinct x."""
    n = len(points)
    if n < 2:
        return 0.0
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    if sxx == 0:
        return 0.0
    return float(sum((x - mx) * (y - my) for x, y in points) / sxx)


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


@dataclass
class Verdict:
    rss_slope_kib: float  # KiB per minute after warm-up
    rss_limit_kib: float
    fd_slope: float  # fds per minute after warm-up
    lines_ok: bool
    rotations_ok: bool
    scrapes_ok: bool

    @property
    def rss_ok(self) -> bool:
        return self.rss_slope_kib < self.rss_limit_kib

    @property
    def fds_ok(self) -> bool:
        return self.fd_slope < FD_SLOPE_LIMIT

    @property
    def passed(self) -> bool:
        checks = (self.rss_ok, self.fds_ok, self.lines_ok, self.rotations_ok, self.scrapes_ok)
        return all(checks)


def mark(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def effective_warmup(args: argparse.Namespace) -> float:
    # A short check keeps at least half of its run for the slope.
    return float(min(args.warmup, args.duration / 2))


def judge(args: argparse.Namespace, run: Run, writer: Writer) -> Verdict:
    warm = effective_warmup(args)
    after = [s for s in run.samples if s.t >= warm] or run.samples
    rss_slope = slope([(s.t / 60, s.rss / KIB) for s in after])
    fd_slope = slope([(s.t / 60, float(s.fds)) for s in after])
    mean_rss = sum(s.rss for s in after) / max(1, len(after))
    limit = mean_rss * RSS_SHARE_PER_10_MIN / 10 / KIB  # KiB per minute
    counted = value(run.final, "botwatch_log_lines_total", source=SOURCE)
    served = rotations_served(run.final)
    return Verdict(
        rss_slope_kib=rss_slope,
        rss_limit_kib=limit,
        fd_slope=fd_slope,
        lines_ok=counted is not None and int(counted) == writer.written,
        rotations_ok=all(served.get(k, 0) == writer.rotations[k] for k in ROTATION_KINDS),
        scrapes_ok=not run.stats.errors,
    )


def rotations_served(series: Series) -> dict[str, int]:
    return {
        labels["kind"]: int(v)
        for name, labels, v in series
        if name == "botwatch_log_rotations_total" and labels.get("source") == SOURCE
    }


def sample_table(samples: Sequence[Sample], warm: float) -> list[str]:
    step = max(1, -(-len(samples) // MAX_TABLE_ROWS))
    shown = list(samples[::step])
    if samples and shown[-1] is not samples[-1]:
        shown.append(samples[-1])
    rows = [
        "| t (s) | RSS (MiB) | fds | threads | CPU (s) | lines written | counted | behind "
        "| series |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in shown:
        flag = "" if s.t >= warm else " (warm-up)"
        rows.append(
            f"| {s.t:.0f}{flag} | {s.rss / MIB:.2f} | {s.fds} | {s.threads} | {s.cpu:.1f} | "
            f"{s.written:,} | {s.counted:,} | {s.written - s.counted:,} | {s.series} |"
        )
    note = f"One sample in {step} of {len(samples)}" if step > 1 else f"All {len(samples)} samples"
    return [
        f"{note} (taken every {samples[1].t - samples[0].t:.0f} s):",
        "",
        *rows,
    ]


def growth_note(after: Sequence[Sample]) -> list[str]:
    """Where the RSS grew after warm-up, in a sentence (the memory table has the detail)."""
    start, end = after[0], after[-1]
    change = {kind: (end.memory[kind] - start.memory[kind]) / KIB for kind in MEMORY_KINDS}
    return [
        f"RSS grew {(end.rss - start.rss) / KIB:+,.0f} KiB from t={start.t:.0f} s to "
        f"t={end.t:.0f} s: {change['arenas']:+,.0f} KiB in glibc's per-thread malloc arenas, "
        f"{change['heap']:+,.0f} KiB in the main heap, {change['anon']:+,.0f} KiB in other "
        f"anonymous memory (Python's object arenas among it), {change['files']:+,.0f} KiB "
        "file-backed.",
        "",
    ]


def memory_rows(after: Sequence[Sample]) -> list[str]:
    start, end = after[0], after[-1]
    rows = [
        f"| RSS by mapping (smaps) | t={start.t:.0f} s | t={end.t:.0f} s | change |",
        "|---|---:|---:|---:|",
    ]
    for kind, label in MEMORY_KINDS.items():
        a, b = start.memory[kind], end.memory[kind]
        rows.append(
            f"| {label} | {a / MIB:.2f} MiB | {b / MIB:.2f} MiB | {(b - a) / KIB:+,.0f} KiB |"
        )
    return rows


def collector_rows(series: Series) -> list[str]:
    rows = ["| collector | up | errors |", "|---|---:|---:|"]
    ups = {lb["collector"]: v for n, lb, v in series if n == "botwatch_collector_up"}
    errors = {lb["collector"]: v for n, lb, v in series if n == "botwatch_collector_errors_total"}
    for name in sorted(ups):
        rows.append(f"| {name} | {ups[name]:.0f} | {errors.get(name, 0):.0f} |")
    return rows


def probe_summary(series: Series) -> str:
    """Per probe: checks run, failures by reason, and the last result."""
    checks: dict[str, float] = {}
    failures: dict[str, Counter[str]] = {}
    success: dict[str, float] = {}
    for name, labels, v in series:
        probe = labels.get("probe", "?")
        if name == "botwatch_probe_checks_total":
            checks[probe] = v
        elif name == "botwatch_probe_failures_total" and v:
            failures.setdefault(probe, Counter())[labels.get("reason", "?")] += int(v)
        elif name == "botwatch_probe_success":
            success[probe] = v
    parts = []
    for probe in sorted(checks):
        failed = ", ".join(f"{r} {n}" for r, n in sorted(failures.get(probe, Counter()).items()))
        parts.append(
            f"{probe}: {checks[probe]:.0f} checks, failed: {failed or 'none'}, "
            f"last success={success.get(probe, float('nan')):.0f}"
        )
    return "; ".join(parts) or "(no botwatch_probe_checks_total series)"


def report(args: argparse.Namespace, run: Run, writer: Writer, targets: Targets, d: Daemon) -> str:
    samples = run.samples
    verdict = judge(args, run, writer)
    warm = effective_warmup(args)
    after = [s for s in samples if s.t >= warm] or samples
    first, last = samples[0], samples[-1]
    max_rss = max(samples, key=lambda s: s.rss)
    max_fds = max(samples, key=lambda s: s.fds)
    counted = value(run.final, "botwatch_log_lines_total", source=SOURCE)
    matches = sum(
        v
        for n, lb, v in run.final
        if n == "botwatch_log_matches_total" and lb.get("source") == SOURCE
    )
    overflow = sum(
        v
        for n, lb, v in run.final
        if n == "botwatch_log_label_overflow_total" and lb.get("source") == SOURCE
    )
    served = rotations_served(run.final)
    half = len(after) // 2
    halves = [
        slope([(s.t / 60, s.rss / KIB) for s in part]) for part in (after[: half + 1], after[half:])
    ]
    cpu_share = (last.cpu - first.cpu) / max(1e-9, last.t - first.t)
    fd_slope_10 = verdict.fd_slope * 10
    command = "make bench  # or: " + shlex.join(
        [".venv/bin/python", "bench/soak.py", *sys.argv[1:]]
    )
    drained = (
        f"all counted {run.drained_after:.1f} s after the writer stopped"
        if run.drained_after is not None
        else f"NOT all counted {DRAIN_TIMEOUT:.0f} s after the writer stopped"
    )
    latency_rows = ["| request | n | p50 (ms) | p99 (ms) | max (ms) | bytes/response |"]
    latency_rows.append("|---|---:|---:|---:|---:|---:|")
    for kind, values in sorted(run.stats.latencies.items()):
        latency_rows.append(
            f"| {kind} | {len(values)} | {percentile(values, 0.5) * 1e3:.1f} | "
            f"{percentile(values, 0.99) * 1e3:.1f} | {max(values) * 1e3:.1f} | "
            f"{run.stats.wire_bytes[kind] / len(values):,.0f} |"
        )
    problems = ", ".join(f"{k} ×{n}" for k, n in run_problems(d).most_common(8)) or "none"
    lines = [
        "## Soak: RSS and open fds under a steady load",
        "",
        "Written by `bench/soak.py`; its section replaced on every run.",
        "",
        f"- Date: {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC",
        f"- Machine: {os.cpu_count()} CPUs, {platform.machine()}, Python "
        f"{platform.python_version()}, psutil for RSS/fds",
        f"- Reproduce: `{command}`",
        f"- Run: {run.load_seconds:.0f} s of load, warm-up {warm:.0f} s excluded from the "
        f"slopes, a sample every {args.sample_every:.0f} s",
        "- Daemon: `python -m exporter run --web.listen-address=127.0.0.1:0 --log.format=json "
        "--config.file=CFG`",
        f"  with the host collector (every 5 s), three probes every {PROBE_INTERVAL} "
        f"(http healthy; http flaky: 200 / 503 / hang past the {PROBE_TIMEOUT} timeout, "
        f"{FLAKY_PHASE:.0f} s each; tcp up {TCP_PHASE:.0f} s / refused {TCP_PHASE:.0f} s) "
        f"and a file log source with the packs {', '.join(PACKS)}",
        f"- Load: {args.rate:,} lines/s ({args.problem_share:.0%} lines the packs count), "
        f"the file rotated every {args.rotate_every:.0f} s "
        f"({', '.join(f'{k} ×{writer.rotations[k]}' for k in ROTATION_KINDS)}); "
        "/metrics scraped plain and gzipped every second, OpenMetrics every "
        f"{OPENMETRICS_EVERY} s, / every {LANDING_EVERY:.0f} s",
        "",
        "| check | value | target | result |",
        "|---|---:|---:|---|",
        f"| RSS slope after warm-up | {verdict.rss_slope_kib:+.1f} KiB/min | "
        f"< {verdict.rss_limit_kib:.0f} KiB/min (1 % of RSS per 10 min) | "
        f"{mark(verdict.rss_ok)} |",
        f"| open fds slope after warm-up | {verdict.fd_slope:+.3f} /min "
        f"({fd_slope_10:+.1f} per 10 min) | < {FD_SLOPE_LIMIT} /min | {mark(verdict.fds_ok)} |",
        f"| lines written vs counted | {writer.written:,} vs "
        f"{int(counted) if counted is not None else 'none':,} ({drained}) | equal | "
        f"{mark(verdict.lines_ok)} |",
        f"| rotations seen vs made | {served} vs {dict(writer.rotations)} | equal | "
        f"{mark(verdict.rotations_ok)} |",
        f"| scrape errors | {sum(run.stats.errors.values())}"
        f"{' ' + str(dict(run.stats.errors)) if run.stats.errors else ''} | 0 | "
        f"{mark(verdict.scrapes_ok)} |",
        "",
        f"**Verdict: {mark(verdict.passed)}.**",
        "",
        *growth_note(after),
        "| | first | last | max | after warm-up: min – max |",
        "|---|---:|---:|---:|---:|",
        f"| RSS (MiB) | {first.rss / MIB:.2f} | {last.rss / MIB:.2f} | "
        f"{max_rss.rss / MIB:.2f} (t={max_rss.t:.0f} s) | "
        f"{min(s.rss for s in after) / MIB:.2f} – {max(s.rss for s in after) / MIB:.2f} |",
        f"| open fds | {first.fds} | {last.fds} | {max_fds.fds} (t={max_fds.t:.0f} s) | "
        f"{min(s.fds for s in after)} – {max(s.fds for s in after)} |",
        f"| threads | {first.threads} | {last.threads} | {max(s.threads for s in samples)} | "
        f"{min(s.threads for s in after)} – {max(s.threads for s in after)} |",
        f"| series served | {first.series} | {last.series} | {max(s.series for s in samples)} | "
        f"{min(s.series for s in after)} – {max(s.series for s in after)} |",
        "",
        f"- RSS slope over the first and the second half after warm-up: {halves[0]:+.1f} and "
        f"{halves[1]:+.1f} KiB/min (a steady leak shows about the same slope in both; "
        "glibc arena growth comes in steps)",
        f"- Daemon CPU: {cpu_share:.1%} of one core on average; the writer fell behind its "
        f"schedule by at most {writer.behind * 1e3:.0f} ms",
        f"- Counted: {matches:,.0f} rule matches from {writer.problems:,} problem lines "
        f"({overflow:,.0f} folded into `other` past a label cap)",
        f"- Probes: {probe_summary(run.final)}; targets served "
        f"{dict(targets.http_hits)}, tcp accepts {targets.tcp_accepts}, "
        f"{targets.tcp_flips} listener flips",
        f"- Daemon warnings/errors logged: {sum(run_problems(d).values())} ({problems})",
        "",
        *memory_rows(after),
        "",
        *collector_rows(run.final),
        "",
        *latency_rows,
        "",
        *sample_table(samples, warm),
        "",
        "RSS is the daemon's resident set (psutil, /proc/PID/status VmRSS); fds are the entries "
        "of /proc/PID/fd. The slopes are least-squares fits over the samples from the end of "
        "the warm-up on. The lines counted are the daemon's `botwatch_log_lines_total` for the "
        "source, read right after the bench reads its own count, so `behind` is what was "
        "still in flight at that moment.",
    ]
    return "\n".join(lines)


def run_problems(daemon: Daemon) -> Counter[str]:
    return daemon.log.events


# --- main -----------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of load")
    parser.add_argument(
        "--warmup", type=float, default=120.0, help="seconds left out of the slopes (at most half)"
    )
    parser.add_argument("--sample-every", type=float, default=10.0, help="seconds")
    parser.add_argument("--rate", type=int, default=3000, help="log lines per second")
    parser.add_argument("--problem-share", type=float, default=0.05)
    parser.add_argument("--rotate-every", type=float, default=60.0, help="seconds")
    parser.add_argument(
        "--no-write", action="store_true", help="print the report, leave bench/RESULTS.md alone"
    )
    args = parser.parse_args(argv)
    if args.duration < 2 * args.sample_every:
        parser.error("--duration must cover at least two samples")
    if not (args.sample_every > 0 and 0 < args.rate <= 100_000 and args.rotate_every > 0):
        parser.error("--sample-every, --rate and --rotate-every must be positive (rate ≤ 100k)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM (e.g. from make or a CI timeout) unwinds like Ctrl-C, so the daemon is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    daemon: Daemon | None = None
    writer: Writer | None = None
    with tempfile.TemporaryDirectory(prefix="botwatch-soak-") as tmp:
        work = Path(tmp)
        log = work / "app.log"
        log.touch()
        targets = Targets(bound_socket(), bound_socket())
        try:
            config = write_config(work, log, targets)
            daemon = start_daemon(config)
            print(
                f"daemon pid {daemon.proc.pid} on {daemon.base_url}; soaking {args.duration:.0f} s",
                flush=True,
            )
            writer = Writer(log, args.rate, args.problem_share, args.rotate_every)
            run = asyncio.run(soak(args, daemon, writer, targets))
            text = report(args, run, writer, targets, daemon)
        except BenchError as exc:
            print(f"soak: {exc}", file=sys.stderr)
            return 1
        finally:
            if writer is not None:
                writer.stop()
            if daemon is not None:
                code = stop_daemon(daemon)
                print(f"daemon stopped (exit status {code})", flush=True)
            for sock in (targets.http_sock, targets.tcp_sock):
                sock.close()
    if not args.no_write:
        write_section("soak", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
