"""SNMP walk latency: botwatch's `if_mib` walk against Debian's snmp_exporter, same agent, same run.

One net-snmp snmpd on 127.0.0.1 (its real interfaces) is walked for the same 12 IF-MIB
columns (numeric OIDs) by:

- snmp_exporter 0.21 (`prometheus-snmp-exporter`), module `if_mib` from the hand-written
  bench/snmp/snmp.yml; one walk is one `GET /snmp?module=if_mib&target=...`;
- botwatch's snmp collector, in this process: one walk is one `collect()` of a collector
  with that one target, as the daemon's poller calls it;

and, for information, botwatch's v2c walk through pysnmp instead of its own codec, and
both exporters over SNMPv3 authPriv (SHA/AES). The rounds interleave the variants, so all
of them see the same agent at the same time. Each variant reports its own walk time
(snmp_exporter: `snmp_scrape_walk_duration_seconds`; botwatch:
`botwatch_snmp_scrape_duration_seconds`), and the bench times each walk from outside.
The result goes to the snmp_walk section of bench/RESULTS.md.

Run with `make bench`, or `.venv/bin/python bench/snmp_walk.py --help`.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import os
import platform
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import aiohttp
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from results import demote, write_section
from scrape_latency import (
    HOST,
    STARTUP_TIMEOUT,
    BenchError,
    Daemon,
    StderrLog,
    free_port,
    percentile,
    spawn,
    stop,
    wait_http_ok,
)

from exporter import __version__
from exporter.collector import Context
from exporter.collectors.snmp import SnmpCollector
from exporter.collectors.snmpconfig import SnmpConfig
from exporter.threads import BlockingCalls

SNMP_EXPORTER = "prometheus-snmp-exporter"
SNMPD = "snmpd"
MODULES = Path(__file__).resolve().parent / "snmp" / "snmp.yml"
# The v3 user of bench/snmp/snmp.yml's if_mib_v3 module.
COMMUNITY = "public"
V3_USER = "botwatch-bench"
V3_AUTH = "bench-auth-key"
V3_PRIV = "bench-priv-key"
TARGET_P50_RATIO = 1.0
REQUEST_TIMEOUT = 10.0
POLL_INTERVAL = 0.05
_SAMPLE = re.compile(r"^(?P<name>\w+)(?:\{(?P<labels>[^}]*)\})? (?P<value>\S+)$")
_IF_NAME = re.compile(r'ifName="([^"]*)"')


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


# --- daemons ------------------------------------------------------------------------------


def start_snmpd(work: Path) -> tuple[Daemon, int]:
    port = free_udp_port()
    conf = work / "snmpd.conf"
    conf.write_text(
        f"agentAddress udp:{HOST}:{port}\n"
        f"rocommunity {COMMUNITY} {HOST}\n"
        f'createUser {V3_USER} SHA "{V3_AUTH}" AES "{V3_PRIV}"\n'
        f"rouser {V3_USER} priv\n"
    )
    argv = [SNMPD, "-f", "-Lo", "-C", "-c", str(conf), "-M", "/nonexistent", "-m", ""]
    argv += ["-I", "-systemstats,smux"]
    proc = subprocess.Popen(
        argv,
        cwd=work,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        # Its engine boots and users go here, not to /var/lib/snmp.
        env={**os.environ, "SNMP_PERSISTENT_DIR": str(work / "persist")},
    )
    stream: IO[bytes] | None = proc.stderr
    assert stream is not None
    return Daemon("snmpd", proc, StderrLog(stream)), port


def start_snmp_exporter(binary: str) -> Daemon:
    port = free_port()
    argv = [binary, f"--config.file={MODULES}", f"--web.listen-address={HOST}:{port}"]
    daemon = spawn("snmp_exporter", argv)
    daemon.base_url = f"http://{HOST}:{port}"
    return daemon


def version_line(argv: Sequence[str], pattern: str) -> str:
    out = subprocess.run(list(argv), capture_output=True, text=True, timeout=10, check=False)
    match = re.search(pattern, out.stdout + out.stderr)
    return match.group(1) if match else "unknown"


# --- one walk of each kind ----------------------------------------------------------------


@dataclass
class Walk:
    wall: float  # as timed by the bench: request to answer (snmp_exporter) or collect()
    own: float  # as the exporter reports it: the walk alone
    cpu: float  # the exporter's CPU time for it (botwatch: this process)
    if_names: frozenset[str]


@dataclass
class Variant:
    name: str
    run: Callable[[], Awaitable[Walk]]
    walks: list[Walk] = field(default_factory=list)


async def exporter_walk(
    session: aiohttp.ClientSession, daemon: Daemon, module: str, target: str
) -> Walk:
    url = f"{daemon.base_url}/snmp?module={module}&target={target}"
    process = psutil.Process(daemon.proc.pid)
    cpu_before = sum(process.cpu_times()[:2])
    started = time.perf_counter()
    async with session.get(url) as resp:
        body = await resp.text()
        status = resp.status
    wall = time.perf_counter() - started
    cpu = sum(process.cpu_times()[:2]) - cpu_before
    if status != 200:
        raise BenchError(f"snmp_exporter answered HTTP {status}: {body[:200]}")
    own = None
    for line in body.splitlines():
        match = _SAMPLE.match(line)
        if match and match["name"] == "snmp_scrape_walk_duration_seconds":
            own = float(match["value"])
    if own is None:
        raise BenchError(f"snmp_exporter did not walk {module}: {body[:300]}")
    names = frozenset(_IF_NAME.findall(body))
    return Walk(wall, own, cpu, names)


async def botwatch_walk(collector: SnmpCollector) -> Walk:
    cpu_before = time.process_time()
    started = time.perf_counter()
    families = await collector.collect()
    wall = time.perf_counter() - started
    cpu = time.process_time() - cpu_before
    own, up, names = None, None, set()
    for family in families:
        for s in family.samples:
            if s.name == "botwatch_snmp_scrape_duration_seconds":
                own = s.value
            elif s.name == "botwatch_snmp_up":
                up = s.value
            elif s.name == "botwatch_snmp_if_info":
                names.add(s.labels["if_name"])
    if up != 1 or own is None:
        raise BenchError("botwatch's walk failed (botwatch_snmp_up is not 1)")
    return Walk(wall, float(own), cpu, frozenset(names))


def botwatch_collector(target: dict[str, object], *, via_pysnmp: bool = False) -> SnmpCollector:
    config = SnmpConfig.model_validate(
        {"interval": "15s", "timeout": "10s", "targets": [{"name": "bench", **target}]}
    )
    context = Context("snmp", Path("/nonexistent"), BlockingCalls())
    return SnmpCollector(config, context, v2c_via_pysnmp=via_pysnmp)


# --- the run ------------------------------------------------------------------------------


@dataclass
class Report:
    args: argparse.Namespace
    started: datetime
    versions: dict[str, str]
    interfaces: int
    variants: list[Variant]


async def wait_snmpd(collector: SnmpCollector, snmpd: Daemon) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        snmpd.check_alive()
        try:
            await botwatch_walk(collector)
        except BenchError:
            await asyncio.sleep(POLL_INTERVAL)
        else:
            return
    raise BenchError(f"snmpd did not answer within {STARTUP_TIMEOUT:.0f} s")


async def measure(
    args: argparse.Namespace, exporter: Daemon, snmpd: Daemon, snmpd_port: int
) -> list[Variant]:
    target = f"{HOST}:{snmpd_port}"
    common: dict[str, object] = {"host": HOST, "port": snmpd_port, "modules": ["if_mib"]}
    v2c = {**common, "community": COMMUNITY}
    v3 = {
        **common,
        "version": "3",
        "user": V3_USER,
        "auth_protocol": "SHA",
        "auth_key": V3_AUTH,
        "priv_protocol": "AES",
        "priv_key": V3_PRIV,
    }
    native = botwatch_collector(v2c)
    through_pysnmp = botwatch_collector(v2c, via_pysnmp=True)
    secure = botwatch_collector(v3)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session:
            await wait_snmpd(native, snmpd)
            variants = [
                Variant(
                    "snmp_exporter, v2c",
                    lambda: exporter_walk(session, exporter, "if_mib", target),
                ),
                Variant("botwatch, v2c", lambda: botwatch_walk(native)),
                Variant("botwatch, v2c through pysnmp", lambda: botwatch_walk(through_pysnmp)),
                Variant(
                    "snmp_exporter, v3 authPriv",
                    lambda: exporter_walk(session, exporter, "if_mib_v3", target),
                ),
                Variant("botwatch, v3 authPriv (pysnmp)", lambda: botwatch_walk(secure)),
            ]
            for _ in range(args.warmup):
                for variant in variants:
                    await variant.run()
            for _ in range(args.rounds):
                for variant in variants:
                    variant.walks.append(await variant.run())
    finally:
        for collector in (native, through_pysnmp, secure):
            await collector.close()
    names = {v.name: v.walks[0].if_names for v in variants}
    if len(set(names.values())) != 1:
        raise BenchError(f"the variants did not walk the same interfaces: {names}")
    return variants


def run(args: argparse.Namespace, binary: str) -> Report:
    started = datetime.now(UTC)
    versions = {
        "snmp_exporter": version_line([binary, "--version"], r"version (\S+ \(branch: [^)]*\))"),
        "snmpd": version_line([SNMPD, "-v"], r"NET-SNMP version:\s+(\S+)"),
        "pysnmp": importlib.metadata.version("pysnmp"),
        "botwatch": __version__,
    }
    daemons: list[Daemon] = []
    with tempfile.TemporaryDirectory(prefix="bench-snmp-") as work:
        try:
            snmpd, port = start_snmpd(Path(work))
            daemons.append(snmpd)
            exporter = start_snmp_exporter(binary)
            daemons.append(exporter)

            async def go() -> list[Variant]:
                await wait_http_ok(exporter, "/metrics")
                return await measure(args, exporter, snmpd, port)

            print(f"walking {args.rounds} rounds of each variant ...")
            variants = asyncio.run(go())
            for daemon in daemons:
                daemon.check_alive()
        finally:
            for daemon in reversed(daemons):
                stop(daemon)
    interfaces = len(variants[0].walks[0].if_names)
    return Report(args, started, versions, interfaces, variants)


# --- report -------------------------------------------------------------------------------


def ms(values: Sequence[float], q: float) -> str:
    return f"{percentile(values, q) * 1000:.2f}"


def render(report: Report) -> str:
    args = report.args
    rows = []
    for variant in report.variants:
        own = [w.own for w in variant.walks]
        wall = [w.wall for w in variant.walks]
        cpu = sum(w.cpu for w in variant.walks) / len(variant.walks) * 1000
        rows.append(
            f"| {variant.name} | {ms(own, 50)} | {ms(own, 99)} | {ms(wall, 50)} | "
            f"{ms(wall, 99)} | {cpu:.2f} |"
        )
    by_name = {v.name: v for v in report.variants}
    peer, ours = by_name["snmp_exporter, v2c"], by_name["botwatch, v2c"]
    own_ratio = percentile([w.own for w in ours.walks], 50) / percentile(
        [w.own for w in peer.walks], 50
    )
    wall_ratio = percentile([w.wall for w in ours.walks], 50) / percentile(
        [w.wall for w in peer.walks], 50
    )
    p99_ratio = percentile([w.own for w in ours.walks], 99) / percentile(
        [w.own for w in peer.walks], 99
    )
    verdict = "PASS" if own_ratio <= TARGET_P50_RATIO else "FAIL"
    checks = [
        f"| botwatch v2c walk p50 / snmp_exporter v2c walk p50 | {own_ratio:.3f} "
        f"| ≤ {TARGET_P50_RATIO:g} | {verdict} |",
        f"| botwatch v2c walk p99 / snmp_exporter v2c walk p99 | {p99_ratio:.3f} "
        "| (for information) | — |",
        f"| botwatch v2c outside p50 / snmp_exporter v2c outside p50 | {wall_ratio:.3f} "
        "| (for information) | — |",
    ]
    v = report.versions
    command = f".venv/bin/python bench/snmp_walk.py --rounds {args.rounds} --warmup {args.warmup}"
    return f"""# SNMP walk: botwatch vs snmp_exporter

Written by `bench/snmp_walk.py`; its section replaced on every run.

- Date: {report.started.strftime("%Y-%m-%d %H:%M:%S UTC")}
- Machine: {os.cpu_count()} CPUs, Linux {platform.release()}, Python {platform.python_version()}
- Agent: net-snmp snmpd {v["snmpd"]} on 127.0.0.1, this host's {report.interfaces} interfaces
- snmp_exporter {v["snmp_exporter"]} (`{SNMP_EXPORTER}`), modules in `bench/snmp/snmp.yml`
- botwatch {v["botwatch"]} (its snmp collector in the bench's process), pysnmp {v["pysnmp"]}
- Reproduce: `make bench` (installs `bench/deps.txt`); this run: `{command}`

## Method

The same 12 IF-MIB columns (numeric OIDs: ifName, ifDescr, ifAlias, ifOperStatus,
ifAdminStatus, ifHCIn/OutOctets, ifIn/OutErrors, ifIn/OutDiscards, ifHighSpeed) of the
same snmpd. Each round walks once with every variant, one after the other, so all of them
meet the agent in the same state: {args.rounds} rounds, after {args.warmup} uncounted ones.

- *walk*: the exporter's own figure for the walk alone: snmp_exporter's
  `snmp_scrape_walk_duration_seconds`, botwatch's `botwatch_snmp_scrape_duration_seconds`.
- *outside*: timed by the bench. snmp_exporter: `GET /snmp?module=...` over a keep-alive
  connection (aiohttp in this process), walk + metrics + HTTP. botwatch: one `collect()`
  (walk + families), as its poller runs it; a botwatch scrape never walks.
- *CPU*: the exporter's user + system time per walk, averaged over the rounds
  (snmp_exporter: its process, from /proc in 10 ms ticks; botwatch: this process, which
  does nothing else meanwhile).

How they walk: snmp_exporter (gosnmp) walks each column as its own subtree, one GETBULK
(max-repetitions 25) or more per column, one column after the other. botwatch asks for all
columns of a table in each GETBULK, with max-repetitions set to the rows it found last
round plus one, so an unchanged table is one round trip; it decodes v2c answers with its
own BER codec. The "through pysnmp" row is the same walk decoded by pysnmp/pyasn1, which
is what SNMPv3 uses (pysnmp does USM authentication and privacy).

## Results

| variant | walk p50 ms | walk p99 ms | outside p50 ms | outside p99 ms | CPU ms/walk |
|---|---:|---:|---:|---:|---:|
{chr(10).join(rows)}

| check | value | target | result |
|---|---:|---:|---|
{chr(10).join(checks)}
"""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=5, help="uncounted rounds first")
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.warmup < 1:
        parser.error("--rounds and --warmup must be at least 1")
    binary = shutil.which(SNMP_EXPORTER)
    if binary is None or shutil.which(SNMPD) is None:
        print(
            f"{SNMP_EXPORTER} and {SNMPD} are needed; run `scripts/install-debs.sh "
            "bench/deps.txt` (as root) or `make bench`, then try again.",
            file=sys.stderr,
        )
        return 1
    try:
        report = run(args, binary)
    except BenchError as exc:
        print(f"snmp_walk: {exc}", file=sys.stderr)
        return 1
    text = render(report)
    print(text)
    if not args.no_write:
        write_section("snmp_walk", demote(text))
    print("reproduce:", shlex.join(sys.argv))
    by_name = {v.name: v for v in report.variants}
    ours = percentile([w.own for w in by_name["botwatch, v2c"].walks], 50)
    peer = percentile([w.own for w in by_name["snmp_exporter, v2c"].walks], 50)
    return 0 if ours <= peer * TARGET_P50_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
