"""Log throughput: botwatch's log pipeline against Debian's mtail on the same file, same run.

A reproducible mixed log (fixed seed; Rust tracing text and JSON, Python logging, structlog
JSON and nginx lines, a few percent of them errors the packs know) is read by:

- botwatch: the real `logs` collector (FileSource -> RuleSet.scan -> counting -> checkpoint)
  with the three packaged packs, in a worker process pinned to one core, from the file's
  start until every line is counted. Once with the fast engine, once with the pure-Python
  fallback. The worker samples its own RSS while it reads.
- mtail: one program per botwatch rule variant (the same regular expressions), pinned to the
  same core with GOMAXPROCS=1. mtail seeks to the end of a file it starts on, so it starts on
  an empty file and the log is appended once it is up; done when every program saw every line.

Results go to the log_throughput section of bench/RESULTS.md. Run with `make bench`, or
`.venv/bin/python bench/log_throughput.py --help`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results import write_section

ROOT = Path(__file__).resolve().parent.parent
SEED = 20261123
PACKS = ("trader-bot", "alphaengine", "nginx")
TARGET_LINES_PER_SECOND = 1_500_000
TARGET_RATIO = 50.0
MIB = 1024 * 1024
MTAIL_TIMEOUT = 900.0

# Lines the packs must count (runbook error strings in the stacks' formats) ...
PROBLEMS = (
    "{ts}Z ERROR trader_api::exchange::binance: Rate limit exceeded, retry after 30s",
    "{ts}Z  WARN trader_api::risk: Circuit breaker is open, rejecting order",
    '{{"timestamp":"{ts}Z","level":"ERROR","fields":{{"message":"WebSocket disconnected"}},'
    '"target":"trader_api::ws"}}',
    '{{"timestamp":"{ts}Z","level":"ERROR","fields":{{"message":"Binance API error",'
    '"code":-1021,"msg":"Timestamp for this request is outside of the recvWindow."}},'
    '"target":"trader_api::exchange"}}',
    "{ts}Z ERROR trader_api::auth: JWT validation failed: token expired",
    "{ts},123 - bot.exchange - ERROR - Order rejected: insufficient balance",
    "{ts},456 - bot.ws - WARNING - WebSocket connection closed, reconnecting (attempt 3)",
    "{ts},789 - bot.store - ERROR - sqlite3.OperationalError: database is locked",
    '{{"event": "order rejected", "reason": "position limit exceeded", "level": "error",'
    ' "timestamp": "{ts}Z"}}',
    "2026/11/23 03:12:45 [error] 812#812: *5 connect() failed (111: Connection refused) while "
    'connecting to upstream, client: 10.0.0.5, server: _, request: "GET /api/status HTTP/1.1"',
)
# ... and the ordinary lines around them.
ROUTINE = (
    "{ts}Z  INFO trader_api::strategy: tick processed symbol=BTCUSDT price=43125.{n} qty=0.0{n}",
    "{ts}Z DEBUG trader_api::ws: message received stream=btcusdt@bookTicker seq={n}",
    '{{"timestamp":"{ts}Z","level":"INFO","fields":{{"message":"order book updated",'
    '"depth":{n}}},"target":"trader_api::market"}}',
    "{ts},{n:03d} - bot.strategy - INFO - signal evaluated: momentum={n} threshold=0.75 hold",
    '{{"event": "heartbeat", "level": "info", "latency_ms": {n}, "timestamp": "{ts}Z"}}',
    '10.0.0.5 - - [23/Nov/2026:03:12:45 +0000] "GET /api/v1/positions HTTP/1.1" 200 {n} "-" '
    '"Mozilla/5.0"',
)


def generate(path: Path, lines: int, problem_share: float) -> int:
    """Write the mixed log; returns its size in bytes. Same seed, same bytes."""
    rng = random.Random(SEED)
    size = 0
    with path.open("w", encoding="utf-8") as out:
        chunk: list[str] = []
        for i in range(lines):
            ts = f"2026-11-23T03:{(i // 60000) % 60:02d}:{(i // 1000) % 60:02d}.{i % 1000:03d}"
            pool = PROBLEMS if rng.random() < problem_share else ROUTINE
            chunk.append(rng.choice(pool).format(ts=ts, n=rng.randrange(1000)) + "\n")
            if len(chunk) == 10000:
                text = "".join(chunk)
                size += len(text.encode())
                out.write(text)
                chunk = []
        text = "".join(chunk)
        size += len(text.encode())
        out.write(text)
    return size


# --- botwatch worker (runs in its own process, pinned to one core) -------------------------


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def worker(log: Path, lines: int, engine: str) -> dict[str, Any]:
    from exporter.collector import Context
    from exporter.config import Config
    from exporter.logs.collector import LogsCollector
    from exporter.threads import BlockingCalls

    state = Path(tempfile.mkdtemp(prefix="botwatch-bench-state-"))
    config = Config.model_validate(
        {
            "state_dir": str(state),
            "logs": {
                "engine": engine,
                "sources": [
                    {
                        "name": "bench",
                        "type": "file",
                        "path": str(log),
                        "start_at": "beginning",
                        "packs": list(PACKS),
                    }
                ],
            },
        }
    )
    ctx = Context(name="logs", state_dir=state, blocking=BlockingCalls())
    collector = LogsCollector(config.logs, ctx)
    samples: list[tuple[int, int]] = []  # (lines counted, RSS) while reading
    stop = threading.Event()

    def sample_rss() -> None:
        while not stop.wait(0.02):
            tracked = collector.tracked
            if tracked is not None:
                samples.append((tracked["bench"].counts.lines, rss_bytes()))

    async def run() -> tuple[float, dict[str, Any]]:
        task = asyncio.create_task(collector.run(lambda: None))
        while collector.tracked is None:
            await asyncio.sleep(0.001)
        tracked = collector.tracked["bench"]
        started = time.perf_counter()
        while tracked.counts.lines < lines:
            if task.done():
                task.result()
                raise RuntimeError("the collector stopped early")
            await asyncio.sleep(0.002)
        elapsed = time.perf_counter() - started
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await collector.close()
        matches = sum(tracked.counts.matches.values())
        return elapsed, {"matches": matches, "engine": tracked.ruleset.engine}

    sampler = threading.Thread(target=sample_rss, daemon=True)
    sampler.start()
    elapsed, extra = asyncio.run(run())
    stop.set()
    shutil.rmtree(state, ignore_errors=True)
    # "Flat" is judged from the first tenth of the file on: start-up (imports, compiling the
    # rule database, the first read buffers) is a one-off cost, not growth.
    reading = [rss for done, rss in samples if done >= lines // 10] or [rss_bytes()]
    return {
        "seconds": elapsed,
        "lines_per_second": lines / elapsed,
        "rss_start": reading[0],
        "rss_peak": max(reading),
        "rss_end": reading[-1],
        **extra,
    }


def run_worker(log: Path, lines: int, engine: str, core: int) -> dict[str, Any]:
    cmd = ["taskset", "-c", str(core), sys.executable, __file__, "worker"]
    cmd += ["--log", str(log), "--lines", str(lines), "--engine", engine]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"botwatch worker failed: {proc.stderr.strip()[-2000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


# --- mtail ----------------------------------------------------------------------------------


def mtail_program(directory: Path) -> int:
    """One program holding every rule variant's regex (what an operator would write, and
    faster for mtail than a program per rule); returns the number of rules."""
    from exporter.logs.packs import load_pack

    actions = []
    for pack in PACKS:
        for rule in load_pack(pack).rules:
            flags = "(?i)" if rule.ignore_case else ""
            regex = (flags + rule.match).replace("/", "\\/")
            actions.append(f'/{regex}/ {{\n  matched["{rule.name}"]++\n}}\n')
    program = "counter lines_seen\ncounter matched by rule\n/$/ {\n  lines_seen++\n}\n"
    (directory / "botwatch.mtail").write_text(program + "".join(actions))
    return len(actions)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def mtail_counts(port: int) -> dict[str, float]:
    url = f"http://127.0.0.1:{port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    seen: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("lines_seen{"):
            prog = line.split('prog="', 1)[1].split('"', 1)[0]
            seen[prog] = float(line.rsplit(" ", 1)[1])
    return seen


def copy_head(src: Path, dst: Path, lines: int) -> None:
    with src.open("rb") as f, dst.open("wb") as out:
        for _ in range(lines):
            out.write(f.readline())


def run_mtail(log: Path, lines: int, core: int, work: Path) -> dict[str, Any]:
    progs = work / "progs"
    progs.mkdir()
    rules = mtail_program(progs)
    live = work / "mtail.log"
    live.touch()
    port = free_port()
    cmd = ["taskset", "-c", str(core), "mtail", "-progs", str(progs), "-logs", str(live)]
    cmd += ["-address", "127.0.0.1", "-port", str(port), "-logtostderr"]
    env = {**os.environ, "GOMAXPROCS": "1"}
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=(work / "mtail.err").open("wb")
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if mtail_counts(port):
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"mtail did not come up; see {work / 'mtail.err'}")
            time.sleep(0.1)
        started = time.perf_counter()
        with log.open("rb") as src, live.open("ab") as dst:
            shutil.copyfileobj(src, dst, 8 * MIB)
        deadline = time.monotonic() + MTAIL_TIMEOUT
        while True:
            counts = mtail_counts(port)
            if counts and min(counts.values()) >= lines:
                break
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"mtail did not finish: {min(counts.values(), default=0)}")
            time.sleep(0.05)
        elapsed = time.perf_counter() - started
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    return {"seconds": elapsed, "lines_per_second": lines / elapsed, "rules": rules}


# --- report ---------------------------------------------------------------------------------


def mib(value: float) -> str:
    return f"{value / MIB:.1f} MiB"


def report(
    args: argparse.Namespace,
    size: int,
    fast: dict[str, Any],
    fallback: dict[str, Any],
    mtail: dict[str, Any],
) -> str:
    fast_lps = float(fast["lines_per_second"])
    ratio = fast_lps / float(mtail["lines_per_second"])
    rss_growth = float(fast["rss_peak"]) - float(fast["rss_start"])
    mtail_version = subprocess.run(
        ["mtail", "-version"], capture_output=True, text=True, check=False
    ).stdout.split(" git")[0]
    command = "make bench  # or: " + shlex.join(
        [".venv/bin/python", "bench/log_throughput.py", *sys.argv[1:]]
    )
    rows = [
        f"| botwatch ({fast['engine']}) | {fast_lps:,.0f} | {float(fast['seconds']):.2f} |",
        f"| botwatch ({fallback['engine']}, fallback) | "
        f"{float(fallback['lines_per_second']):,.0f} | {float(fallback['seconds']):.2f} |",
        f"| {mtail_version} (one program, {mtail['rules']} regexes; first "
        f"{args.mtail_lines:,} lines) | "
        f"{float(mtail['lines_per_second']):,.0f} | {float(mtail['seconds']):.2f} |",
    ]
    ok_speed = fast_lps >= TARGET_LINES_PER_SECOND
    ok_ratio = ratio >= TARGET_RATIO
    return "\n".join(
        [
            "## Log throughput: botwatch vs mtail",
            "",
            "Written by `bench/log_throughput.py`; its section replaced on every run.",
            "",
            f"- Date: {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC",
            f"- Machine: {os.cpu_count()} CPUs, {platform.machine()}, Python "
            f"{platform.python_version()}; each reader pinned to CPU {args.core} (`taskset`), "
            "mtail with GOMAXPROCS=1",
            f"- Input: {args.lines:,} lines, {size / 1e6:.0f} MB, seed {SEED}, "
            f"{args.problem_share:.0%} problem lines; packs {', '.join(PACKS)}; "
            f"{fast['matches']:,} matches counted",
            f"- Reproduce: `{command}`",
            "",
            "| reader | lines/s | seconds |",
            "|---|---:|---:|",
            *rows,
            "",
            "| check | value | target | result |",
            "|---|---:|---:|---|",
            f"| botwatch lines/s, one core | {fast_lps:,.0f} | ≥ {TARGET_LINES_PER_SECOND:,} | "
            f"{'PASS' if ok_speed else 'FAIL'} |",
            f"| botwatch / mtail | {ratio:,.1f}× | ≥ {TARGET_RATIO:.0f}× | "
            f"{'PASS' if ok_ratio else 'FAIL'} |",
            f"| botwatch RSS from 10 % of the file to its end | {mib(fast['rss_start'])}, peak "
            f"{mib(fast['rss_peak'])}, end {mib(fast['rss_end'])} (+{rss_growth / MIB:.1f} MiB) "
            "| flat (< 8 MiB growth) | "
            f"{'PASS' if rss_growth < 8 * MIB else 'FAIL'} |",
            "",
            "botwatch's time runs from the collector's start to the moment every line is "
            "counted (reading, matching, counting; checkpoints on their normal 1 s schedule). "
            "mtail's runs from the start of the append to the moment every program has seen "
            "every line. mtail runs one program holding every rule variant's regex (the packs' "
            "own; RE2 accepts them) plus a line counter. mtail slows with every regex it "
            "holds: the packs have over a hundred, where the issue's 15 k lines/s figure was "
            "taken with 30.",
        ]
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command")
    w = sub.add_parser("worker", help="internal: run botwatch's pipeline on a file")
    w.add_argument("--log", type=Path, required=True)
    w.add_argument("--lines", type=int, required=True)
    w.add_argument("--engine", default="auto")
    parser.add_argument("--lines", type=int, default=2_000_000)
    parser.add_argument("--problem-share", type=float, default=0.04)
    parser.add_argument(
        "--mtail-lines",
        type=int,
        default=100_000,
        help="mtail reads this many first lines of the same file (it needs ~20 min for 2 M)",
    )
    parser.add_argument("--core", type=int, default=0, help="the CPU every reader is pinned to")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command == "worker":
        print(json.dumps(worker(args.log, args.lines, args.engine)))
        return 0
    if shutil.which("mtail") is None:
        print("mtail is not installed: run `make bench` (installs bench/deps.txt)", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="botwatch-bench-logs-") as tmp:
        work = Path(tmp)
        log = work / "mixed.log"
        size = generate(log, args.lines, args.problem_share)
        print(f"generated {args.lines:,} lines, {size / 1e6:.0f} MB", flush=True)
        fast = run_worker(log, args.lines, "auto", args.core)
        print(
            f"botwatch ({fast['engine']}): {float(fast['lines_per_second']):,.0f} lines/s",
            flush=True,
        )
        fallback = run_worker(log, args.lines, "re", args.core)
        print(f"botwatch (re): {float(fallback['lines_per_second']):,.0f} lines/s", flush=True)
        head = work / "head.log"
        mtail_lines = min(args.mtail_lines, args.lines)
        copy_head(log, head, mtail_lines)
        mtail = run_mtail(head, mtail_lines, args.core, work)
        print(f"mtail: {float(mtail['lines_per_second']):,.0f} lines/s", flush=True)
        text = report(args, size, fast, fallback, mtail)
    write_section("log_throughput", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
