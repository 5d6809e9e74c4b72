"""Fault to page: how long from a real fault to Alertmanager's webhook, end to end.

Each round starts the e2e stack of tests/e2e/stack.py from scratch -- botwatch (both presets)
scraped every second by real Prometheus evaluating alerts/*.rules.yml every second, real
Alertmanager (group_wait 0s, group_interval 1s) posting to a webhook -- waits for the healthy
stack to be quiet, injects the faults of tests/e2e/faults.py and times each page: from the
fault's first action to the webhook receiving its alert, with the right runbook_url. The
rules' `for:` are divided by 60 (Prometheus cannot shorten them), so a page's time includes
its rule's scaled `for:`; "pipeline" is the rest: botwatch noticing and publishing, a scrape,
an evaluation, Alertmanager. The result goes to bench/RESULTS.md.

Run with `make bench`, or `.venv/bin/python bench/alert_latency.py --help` (as root).
"""

from __future__ import annotations

import argparse
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from results import demote, write_section

from tests.e2e.faults import FAULTS, PAGE_TIMEOUT, TARGET_SECONDS, Run, run_faults, wait_baseline
from tests.e2e.stack import FOR_SCALE, Stack

NAME = "alert_latency"


def version(binary: str) -> str:
    done = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
    first = (done.stdout + done.stderr).strip().splitlines()
    return first[0] if first else "?"


def pass_fail(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def one_round(index: int) -> tuple[Run, list[str], float]:
    """-> the run, what the healthy stack fired (nothing, if all is well), its start time."""
    started = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="bw-bench-", dir="/tmp"))
    with Stack.started(root) as stack:
        up = time.monotonic() - started
        print(f"round {index}: stack up in {up:.1f} s", flush=True)
        quiet = wait_baseline(stack)
        run = run_faults(stack, report=lambda line: print(line, flush=True))
    return run, quiet, up


def report(runs: list[Run], baseline: list[list[str]], startups: list[float], command: str) -> str:
    rows = []
    worst: list[float] = []
    missing = 0
    for fault in FAULTS:
        for alert in fault.pages:
            pages = [
                p for run in runs for p in run.pages if (p.fault, p.alert) == (fault.name, alert)
            ]
            took = [p.seconds for p in pages if p.seconds is not None]
            missing += len(pages) - len(took)
            wrong = sum(p.runbook_url != p.expected_url for p in pages)
            for_s = pages[0].for_seconds if pages else 0.0
            if took:
                worst.append(max(took))
                median, top = statistics.median(took), max(took)
                cells = f"{median:.1f} | {top:.1f} | {median - for_s:.1f}"
            else:
                cells = "— | — | —"
            links = "exact" if not wrong else f"{wrong} wrong"
            rows.append(
                f"| {fault.name} | {fault.source} | {alert} | {for_s:.0f} | {cells} "
                f"| {len(took)}/{len(pages)} | {links} |"
            )
    unexpected = sorted({u for run in runs for u in run.unexpected})
    noisy = sorted({u for quiet in baseline for u in quiet})
    worst_page = max(worst, default=float("inf"))
    verdict = "PASS" if worst_page <= TARGET_SECONDS and not missing else "FAIL"
    table = "\n".join(rows)
    return f"""# Alert latency: fault to page, end to end

Written by `bench/alert_latency.py`; its section replaced on every run.

- Date: {datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")}
- Machine: {platform.machine()}, Linux {platform.release()}, Python {platform.python_version()}
- {version("prometheus")}; {version("prometheus-alertmanager")}
- Reproduce: `make bench` (as root); this run: `{command}`

## Method

{len(runs)} round(s), each on a fresh stack (tests/e2e/stack.py; up in
{min(startups):.1f}–{max(startups):.1f} s before Prometheus' first scrape): botwatch running
the `trader-bot` and `alphaengine` presets, every target pointed at something real on
127.0.0.1 (podman's Docker Engine API, dbus-daemon with python-dbusmock's systemd,
PostgreSQL, Redis, journal files, a WAL-mode SQLite database, a tmpfs, aiohttp servers
standing in for trader-api, alphaengine-web and the Binance stream); Prometheus scraping it
every 1 s and evaluating the rules every 1 s (`--rules.alert.resend-delay=1s`);
Alertmanager with the shipped configuration, group_wait 0s and group_interval 1s, posting to
a webhook on 127.0.0.1.

The rules are the committed `alerts/*.rules.yml` with every `for:` divided by {FOR_SCALE}
(a minute of `for:` is a second here): Prometheus cannot shorten `for:`. Each page's time
therefore includes its rule's scaled `for:`; "pipeline" is the page time minus it. Faults
run together (trader-api's container exit last, after the others paged: Alertmanager
rightly holds back trader-api's other symptoms while its container is down); each is undone
once it paged. A page counts when the webhook received the alert firing, with exactly the
`runbook_url` of the alert catalog; each fault has {PAGE_TIMEOUT:.0f} s.

## Results

| fault | read from | alert | `for:` here s | median s | max s | pipeline s | paged | link |
|---|---|---|---:|---:|---:|---:|---|---|
{table}

| check | value | target | result |
|---|---:|---:|---|
| slowest page | {worst_page:.1f} s | ≤ {TARGET_SECONDS:g} s (1 s intervals) | {verdict} |
| faults without a page | {missing} | 0 | {pass_fail(not missing)} |
| alerts no fault explains | {len(unexpected)} | 0 | {pass_fail(not unexpected)} |
| alerts on the healthy stack | {len(noisy)} | 0 | {pass_fail(not noisy)} |
{"".join(f"{chr(10)}- unexpected: `{u}`" for u in unexpected + noisy)}

Notes:

- The clock starts at a fault's first action: the first log line written, the health
  endpoint or WebSocket server switched to failing, the rows inserted, the unit's
  PropertiesChanged, the container's panic line. Where an alert needs several events, its
  pipeline includes the time the fault takes to produce them: the WebSocket must drop four
  times (the probe reconnects with a backoff, capped at 1 s here). The API-key rejection is
  one line: its rule has no captured labels, so its counter is served at 0 from the start
  and the single line is an increase `increase()` sees.
- Log matches reach /metrics at botwatch's checkpoint (`logs.checkpoint_interval`, 1 s, the
  presets' default); docker events, systemd signals and the WebSocket probe within a second;
  the http probe, sqlite and host collectors every 1 s here (`interval: 1s`).
- Alertmanager's production timings (group_wait 30s, 10s for pages) come on top in real use.
"""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="fresh stacks, one after another")
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md")
    args = parser.parse_args(argv)
    runs: list[Run] = []
    baseline: list[list[str]] = []
    startups: list[float] = []
    for index in range(1, args.rounds + 1):
        run, quiet, up = one_round(index)
        runs.append(run)
        baseline.append(quiet)
        startups.append(up)
        for failure in run.failures:
            print(f"alert_latency: {failure}", file=sys.stderr)
    command = f".venv/bin/python bench/alert_latency.py --rounds {args.rounds}"
    text = report(runs, baseline, startups, command)
    print(text)
    if not args.no_write:
        write_section(NAME, demote(text))
    print("reproduce:", shlex.join(sys.argv))
    ok = "| FAIL |" not in text and not any(run.failures for run in runs)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
