"""The faults the e2e injects, the alert each must page with, and the run that measures them.

A fault names the alert(s) it must page with (`pages`) and the alerts it may legitimately set
off as well if it lasts (`may_also`, e.g. a failing health check that outlasts the 15 s of
BotwatchProbeTargetDown here). Anything else reaching the webhook, or pending or firing in
Prometheus, is unexpected. A fault is undone (`recover`) as soon as its pages arrived, as an
operator would, so that it does not go on to set off the slower alerts.

Faults of phase 1 run together; phase 2 runs after them: trader-api's container exiting
makes Alertmanager hold back every other trader-api symptom (inhibition: source), which is
right, but would hide phase 1's pages.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from tests.e2e.stack import (
    Stack,
    expected_runbook_url,
    logging_line,
    nginx_error_line,
    tracing_line,
)
from tests.support import POLL_STEP, wait_for

PAGE_TIMEOUT = 30.0  # per fault, from injection to the webhook (target: 10 s)
QUIET_WINDOW = 3.0  # observed for unexpected alerts at the baseline and at the end
BASELINE_TIMEOUT = 45.0
TARGET_SECONDS = 10.0

BINANCE = "trader_api::exchange::binance"


@dataclass(frozen=True)
class Fault:
    name: str
    stack: str  # trader-bot | alphaengine
    source: str  # what botwatch reads it from
    pages: tuple[str, ...]
    inject: Callable[[Stack], None]
    recover: Callable[[Stack], None] | None = None
    may_also: tuple[str, ...] = ()
    phase: int = 1


def burst_of_429(stack: Stack) -> None:
    stack.trader_log(
        *(
            tracing_line(
                "WARN",
                BINANCE,
                f"POST /fapi/v1/order failed: status=429 Too Many Requests attempt={i}",
            )
            for i in range(1, 9)
        )
    )


def breaker_opens(stack: Stack) -> None:
    stack.trader_log(
        tracing_line(
            "WARN",
            "trader_api::exchange",
            "circuit breaker binance transitioned to Open after 5 consecutive failures",
        )
    )


def breaker_closes(stack: Stack) -> None:
    stack.trader_log(
        tracing_line(
            "INFO", "trader_api::exchange", "circuit breaker binance transitioned to Closed"
        )
    )


def ws_drops(stack: Stack) -> None:
    assert stack.sims is not None
    stack.sims.trader.ws_dropping = True


def ws_steady(stack: Stack) -> None:
    assert stack.sims is not None
    stack.sims.trader.ws_dropping = False


def health_500(stack: Stack) -> None:
    assert stack.sims is not None
    stack.sims.trader.health_status = 500


def health_ok(stack: Stack) -> None:
    assert stack.sims is not None
    stack.sims.trader.health_status = 200


API_KEY_REJECTED = (
    "BinanceAPIException(code=-2015): Invalid API-key, IP, or permissions for action."
)


def api_key_rejected(stack: Stack) -> None:
    """The bot's order is refused for its key, once: a single rejection must page (its
    counter is there at 0 from the start, so the one line is an increase)."""
    unit = "alphaengine-bot.service"
    stack.alpha_log(unit, logging_line("ERROR", "bot.exchange", API_KEY_REJECTED))


def nginx_502s(stack: Stack) -> None:
    stack.nginx_log(
        *(
            nginx_error_line(
                f"*{i} connect() failed (111: Connection refused) while connecting to upstream, "
                'client: 127.0.0.1, server: _, request: "GET /api/positions HTTP/1.1", '
                'upstream: "http://127.0.0.1:8000/api/positions", host: "alphaengine.local"'
            )
            for i in range(1, 9)
        )
    )


def disk_nearly_full(stack: Stack) -> None:
    stack.fill_disk(0.075)  # under TraderDiskSpaceLow's 10 %, over TraderDiskSpaceCritical's 5 %
    ratio = stack.disk_avail_ratio()
    assert 0.05 < ratio < 0.10, ratio


def duplicate_orders(stack: Stack) -> None:
    now = time.time()
    insert = (
        "INSERT INTO event_store (dedup_key, kind, payload, created_at) "
        "VALUES ('order-dup-1', 'order_filled', '{}', ?)"
    )
    stack.sql((insert, (now,)), (insert, (now,)))


def duplicate_removed(stack: Stack) -> None:
    stack.sql(
        (
            "DELETE FROM event_store WHERE dedup_key = 'order-dup-1' AND id > "
            "(SELECT min(id) FROM event_store WHERE dedup_key = 'order-dup-1')",
            (),
        )
    )


def bot_unit_fails(stack: Stack) -> None:
    stack.unit(
        "alphaengine-bot.service",
        ActiveState="failed",
        SubState="failed",
        service={"Result": "exit-code", "ExecMainStatus": 1},
    )


def bot_unit_active(stack: Stack) -> None:
    stack.unit(
        "alphaengine-bot.service",
        ActiveState="active",
        SubState="running",
        service={"Result": "success", "ExecMainStatus": 0},
    )


FAULTS: tuple[Fault, ...] = (
    Fault(
        "a burst of 429s in trader-api's log",
        "trader-bot",
        "docker logs",
        ("TraderApiRateLimited",),
        burst_of_429,
    ),
    Fault(
        "trader-api's circuit breaker opens",
        "trader-bot",
        "docker logs",
        ("TraderCircuitBreakerOpen",),
        breaker_opens,
        breaker_closes,
    ),
    Fault(
        "trader-api's WebSocket drops every connection",
        "trader-bot",
        "websocket probe",
        ("TraderWebSocketFlapping",),
        ws_drops,
        ws_steady,
        # Connections that last 0.3 s leave the feed mostly down, and unhealthy.
        may_also=("TraderWebSocketDown", "BotwatchProbeTargetDown"),
    ),
    Fault(
        "trader-api /health answers 500",
        "trader-bot",
        "http probe",
        ("TraderApiHealthFailing",),
        health_500,
        health_ok,
        may_also=("BotwatchProbeTargetDown",),
    ),
    Fault(
        "the data filesystem drops below 10 % free",
        "trader-bot",
        "host",
        ("TraderDiskSpaceLow",),
        disk_nearly_full,
        Stack.free_disk,
        # predict_linear() over the jump predicts a full disk (pending here; they fire after
        # 30 s and 60 s, 30m and 1h committed).
        may_also=("TraderDiskFillingUpSoon", "TraderDiskFillingUp"),
    ),
    Fault(
        "Binance rejects AlphaEngine's API key (-2015, once)",
        "alphaengine",
        "journald",
        ("AlphaEngineApiKeyRejected",),
        api_key_rejected,
    ),
    Fault(
        "nginx cannot reach the AlphaEngine web API (8 x 502)",
        "alphaengine",
        "file",
        ("AlphaEngineNginxBadGateway",),
        nginx_502s,
    ),
    Fault(
        "duplicated dedup_key rows in event_store",
        "alphaengine",
        "sqlite",
        ("AlphaEngineDuplicateOrders",),
        duplicate_orders,
        duplicate_removed,
    ),
    Fault(
        "alphaengine-bot.service fails",
        "alphaengine",
        "systemd (D-Bus)",
        ("AlphaEngineServiceDown",),
        bot_unit_fails,
        bot_unit_active,
    ),
    Fault(
        "trader-api's container exits (panic, status 101)",
        "trader-bot",
        "docker",
        ("TraderApiContainerNotRunning",),
        Stack.crash_trader_api,
        Stack.restart_trader_api,
        phase=2,
    ),
)


@dataclass
class Page:
    fault: str
    alert: str
    seconds: float | None  # from injection to the webhook; None: not within PAGE_TIMEOUT
    for_seconds: float  # the rule's `for:` here (part of `seconds`)
    runbook_url: str | None  # as the webhook received it
    expected_url: str


@dataclass
class Run:
    pages: list[Page] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)  # "AlertName (where it was seen)"
    failures: list[str] = field(default_factory=list)  # faults that could not be injected


def firing_names(stack: Stack) -> set[str]:
    """Alert names the webhook received, in any status."""
    return {a["labels"]["alertname"] for _, a in stack.sink.webhook_alerts()}


def unexpected_now(stack: Stack, allowed: set[str]) -> list[str]:
    assert stack.prometheus is not None
    seen = [f"{n} (webhook)" for n in sorted(firing_names(stack) - allowed)]
    for alert in stack.prometheus.alerts():
        name = alert["labels"]["alertname"]
        if name not in allowed:
            seen.append(f"{name} ({alert['state']} in Prometheus: {alert['labels']})")
    return seen


def watch_quiet(stack: Stack, allowed: set[str], window: float) -> list[str]:
    """Watch for `window` seconds; -> what showed up that is not allowed."""
    end = time.monotonic() + window
    while time.monotonic() < end:
        found = unexpected_now(stack, allowed)
        if found:
            return found
        time.sleep(POLL_STEP * 5)
    return []


def wait_baseline(stack: Stack) -> list[str]:
    """Until Prometheus scrapes a healthy botwatch (every probe succeeding, every collector
    up) and has evaluated the rules on it for QUIET_WINDOW; -> anything pending or firing."""
    prometheus = stack.prometheus
    assert prometheus is not None

    def healthy() -> bool:
        return (
            prometheus.value('up{job="botwatch"}') == 1
            and prometheus.value("min(botwatch_probe_success)") == 1
            and prometheus.value("min(botwatch_collector_up)") == 1
            and prometheus.value("min(botwatch_log_source_up)") == 1
        )

    wait_for(healthy, BASELINE_TIMEOUT, "a healthy stack in Prometheus")
    return watch_quiet(stack, set(), QUIET_WINDOW)


def run_faults(
    stack: Stack,
    faults: tuple[Fault, ...] = FAULTS,
    report: Callable[[str], None] = print,
) -> Run:
    """Inject `faults` (phase by phase), wait for their pages, undo them; then watch for
    anything else for QUIET_WINDOW."""
    run = Run()
    allowed: set[str] = {a for f in faults for a in (*f.pages, *f.may_also)}
    for phase in sorted({f.phase for f in faults}):
        _phase(stack, [f for f in faults if f.phase == phase], run, report)
        run.unexpected += unexpected_now(stack, allowed)
    run.unexpected += watch_quiet(stack, allowed, QUIET_WINDOW)
    return run


def _phase(stack: Stack, batch: list[Fault], run: Run, report: Callable[[str], None]) -> None:
    """Inject `batch` together; record each page as the webhook receives it."""
    assert stack.rules is not None
    rules = stack.rules
    started: dict[str, float] = {}  # fault -> when its injection began
    lock = threading.Lock()

    def inject(fault: Fault) -> None:
        with lock:
            started[fault.name] = time.monotonic()
        fault.inject(stack)

    def page(fault: Fault, alert: str, took: float | None, url: str | None) -> None:
        run.pages.append(
            Page(
                fault.name,
                alert,
                took,
                rules.for_seconds[alert],
                url,
                expected_runbook_url(alert, stack.runbook_bases),
            )
        )

    waiting = {(f.name, a): f for f in batch for a in f.pages}
    with ThreadPoolExecutor(max_workers=len(batch)) as pool:
        injections = {f.name: pool.submit(inject, f) for f in batch}
        deadline = time.monotonic() + PAGE_TIMEOUT
        while waiting and time.monotonic() < deadline:
            firing = {
                a["labels"]["alertname"]: a
                for status, a in stack.sink.webhook_alerts()
                if status == "firing"
            }
            now = time.monotonic()
            for key, fault in sorted(waiting.items()):
                alert = key[1]
                with lock:
                    began = started.get(fault.name)
                if began is None or alert not in firing:
                    continue
                del waiting[key]
                page(fault, alert, now - began, firing[alert]["annotations"].get("runbook_url"))
                report(f"  {now - began:5.1f} s  {alert:32}  <- {fault.name}")
                if fault.recover and fault.name not in {f.name for f in waiting.values()}:
                    fault.recover(stack)
            for name, injection in injections.items():
                error = injection.exception() if injection.done() else None
                if error is not None and any(k[0] == name for k in waiting):
                    run.failures.append(f"{name}: {error!r}")
                    waiting = {k: f for k, f in waiting.items() if k[0] != name}
            time.sleep(POLL_STEP)
    for (_, alert), fault in sorted(waiting.items()):
        page(fault, alert, None, None)
        report(f"  none in {PAGE_TIMEOUT:.0f} s: {alert} <- {fault.name}")


def table(run: Run, faults: tuple[Fault, ...] = FAULTS) -> str:
    """Markdown: fault -> alert -> seconds."""
    by_name = {f.name: f for f in faults}
    rows = [
        "| fault | stack | read from | alert | `for:` here | fault to page |",
        "| --- | --- | --- | --- | ---: | ---: |",
    ]
    for page in run.pages:
        fault = by_name[page.fault]
        took = "—" if page.seconds is None else f"{page.seconds:.1f} s"
        rows.append(
            f"| {page.fault} | {fault.stack} | {fault.source} | {page.alert} "
            f"| {page.for_seconds:.0f} s | {took} |"
        )
    return "\n".join(rows)
