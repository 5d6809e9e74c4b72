"""`make demo`: the e2e stack left running, a simulated Trader Bot and AlphaEngine breaking
one way after another, until Ctrl-C.

    sudo make demo        # or, as root: .venv/bin/python -m tests.e2e.demo [--hold 20]

It prints the addresses of Prometheus' alerts page, Alertmanager's and botwatch's landing
page, then loops over the faults of tests/e2e/faults.py: inject one, print the page the
webhook receives (alert, receiver, runbook link), keep the fault up for --hold seconds so it
can be looked at, undo it, go on. The runbook links point at a local copy of the runbooks
(tests/fixtures/runbooks, docs/botwatch-runbook.md) served with the same heading anchors a
Git forge renders, so each link opens the section the alert names. Rules: alerts/*.rules.yml
rendered for those links, every `for:` divided by 60, as in the e2e test. Everything listens
on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import html
import itertools
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any

from exporter.runbooks.slug import outline
from tests.e2e.faults import FAULTS, PAGE_TIMEOUT, Fault, wait_baseline
from tests.e2e.stack import FOR_SCALE, HOST, Stack
from tests.support import POLL_STEP, REPO

RUNBOOKS = {
    "trader-bot": REPO / "tests" / "fixtures" / "runbooks" / "trader-bot.md",
    "alphaengine": REPO / "tests" / "fixtures" / "runbooks" / "alphaengine.md",
    "botwatch": REPO / "docs" / "botwatch-runbook.md",
}


def runbook_html(name: str, markdown: str) -> str:
    """The Markdown as text, its headings as HTML headings with the forge's anchors."""
    headings = {located.line: located.heading for located in outline(markdown)}
    parts = [
        "<!doctype html><meta charset='utf-8'>",
        f"<title>{html.escape(name)} runbook</title>",
        "<style>body{font-family:sans-serif;max-width:60em;margin:auto}"
        "pre{white-space:pre-wrap}:target{background:#ffec99}</style>",
    ]
    text: list[str] = []
    for number, line in enumerate(markdown.splitlines(), start=1):
        heading = headings.get(number)
        if heading is None:
            text.append(line)
            continue
        if text:
            parts.append(f"<pre>{html.escape(chr(10).join(text))}</pre>")
            text = []
        level = min(heading.level, 6)
        anchor = html.escape(heading.anchor, quote=True)
        parts.append(f"<h{level} id='{anchor}'>{html.escape(heading.text)}</h{level}>")
    if text:
        parts.append(f"<pre>{html.escape(chr(10).join(text))}</pre>")
    return "\n".join(parts)


class RunbookServer:
    """The runbooks on 127.0.0.1: /trader-bot.md, /alphaengine.md, /botwatch-runbook.md."""

    def __init__(self) -> None:
        pages = {
            f"/{path.name}": runbook_html(name, path.read_text(encoding="utf-8")).encode()
            for name, path in RUNBOOKS.items()
        }
        index = "".join(f"<li><a href='{p}'>{p[1:]}</a>" for p in pages)
        pages["/"] = f"<!doctype html><meta charset='utf-8'><ul>{index}</ul>".encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = pages.get(self.path.split("?")[0])
                self.send_response(200 if body else 404)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.end_headers()
                self.wfile.write(body or b"not found")

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((HOST, 0), Handler)
        self.base = f"http://{HOST}:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def bases(self) -> dict[str, str]:
        return {name: f"{self.base}/{path.name}" for name, path in RUNBOOKS.items()}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class PagePrinter(threading.Thread):
    """Prints every notification the webhook receives, runbook link first."""

    def __init__(self, stack: Stack) -> None:
        super().__init__(daemon=True)
        self.stack = stack
        self.stopped = threading.Event()

    def run(self) -> None:
        seen = 0
        while not self.stopped.wait(POLL_STEP * 10):
            deliveries = self.stack.sink.received("webhook")
            for delivery in deliveries[seen:]:
                for alert in delivery.body["alerts"]:
                    labels, notes = alert["labels"], alert["annotations"]
                    print(
                        f"    {alert['status'].upper():8} {labels['alertname']} "
                        f"[{labels.get('severity')}, to {delivery.receiver}]\n"
                        f"             runbook: {notes.get('runbook_url')}",
                        flush=True,
                    )
            seen = len(deliveries)


def wait_page(stack: Stack, fault: Fault, after: int) -> bool:
    """Until the webhook has received every page of `fault` in a delivery after `after`."""
    deadline = time.monotonic() + PAGE_TIMEOUT
    while time.monotonic() < deadline:
        firing = {
            a["labels"]["alertname"]
            for delivery in stack.sink.received("webhook")[after:]
            for a in delivery.body["alerts"]
            if a["status"] == "firing"
        }
        if set(fault.pages) <= firing:
            return True
        time.sleep(POLL_STEP * 5)
    return False


def still_firing(stack: Stack, fault: Fault) -> bool:
    assert stack.prometheus is not None
    names = {a["labels"]["alertname"] for a in stack.prometheus.alerts() if a["state"] == "firing"}
    return set(fault.pages) <= names


def demo(hold: float) -> None:
    runbooks = RunbookServer()
    root = Path(tempfile.mkdtemp(prefix="bw-demo-", dir="/tmp"))
    try:
        print("starting botwatch, Prometheus, Alertmanager and the simulated bots ...", flush=True)
        with Stack.started(root, runbook_bases=runbooks.bases()) as stack:
            urls = {**stack.urls(), "runbooks": f"{runbooks.base}/"}
            print("\n".join(f"  {name:18} {url}" for name, url in urls.items()))
            print(f"(alert rules: alerts/*.rules.yml with every `for:` divided by {FOR_SCALE})")
            quiet = wait_baseline(stack)
            print("healthy and quiet" if not quiet else f"not quiet: {quiet}", flush=True)
            printer = PagePrinter(stack)
            printer.start()
            for round_ in itertools.count(1):
                for fault in FAULTS:
                    print(f"\n[{round_}] fault: {fault.name} -> {', '.join(fault.pages)}")
                    again = still_firing(stack, fault)
                    after = len(stack.sink.received("webhook"))
                    started = time.monotonic()
                    fault.inject(stack)
                    if again:
                        # Log alerts count over 5-15 minutes (windows are not scaled): the
                        # alert never resolved, so Alertmanager does not page it again.
                        print("  still firing from before: no new page", flush=True)
                    elif wait_page(stack, fault, after):
                        print(f"  paged after {time.monotonic() - started:.1f} s", flush=True)
                    else:
                        print(f"  no page within {PAGE_TIMEOUT:.0f} s", flush=True)
                    time.sleep(hold)  # pacing: time to look at the pages
                    if fault.recover is not None:
                        fault.recover(stack)
                        print("  undone", flush=True)
                    time.sleep(hold / 2)
    finally:
        runbooks.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hold", type=float, default=20.0, help="seconds each fault stays up")
    args = parser.parse_args(argv)

    def interrupt(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    try:
        demo(args.hold)
    except KeyboardInterrupt:
        print("\nstopped (everything it started is stopped)")
    except Exception as exc:  # a stack that would not start: one line, not a traceback
        print(f"demo: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
