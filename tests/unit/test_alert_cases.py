"""The promtool unit tests of the alert rules, as data, and the generator of alerts/tests/.

For every alert of the catalog (exporter/runbooks/alerts/*.yaml) one Case gives input series
that make it fire, the labels it must fire with, and healthy series of the same metrics on
which it must stay silent. `render_tests()` turns them into alerts/tests/{group}.test.yml:
per alert a "fires" test (exp_labels and exp_annotations pinned: summary, description with
its labels filled in, runbook_url, dashboard_url, all derived from the catalog) and a
"silent" test (exp_alerts: []). promtool reads the committed files; the test below fails
when they are not what this module generates. After changing the catalog or a case:

    .venv/bin/python -m tests.unit.test_alert_cases      # rewrites alerts/tests/*.test.yml
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from exporter.runbooks.catalog import dashboard_url, load_catalog, runbook_url

ROOT = Path(__file__).resolve().parents[2]
TESTS_DIR = ROOT / "alerts" / "tests"
INSTANCE = "bot-host:9877"
JOB = "botwatch"
PLACEHOLDER = re.compile(r"\{\{\s*\$labels\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


@dataclass(frozen=True)
class S:
    """An input series: metric, promtool's expanding values ('0+1x60'), labels.

    instance and job are added unless given (an alert's labels keep them)."""

    metric: str
    values: str
    labels: dict[str, str] = field(default_factory=dict)

    def render(self) -> dict[str, str]:
        labels = {"instance": INSTANCE, "job": JOB, **self.labels}
        inner = ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        return {"series": f"{self.metric}{{{inner}}}", "values": self.values}


def s(metric: str, values: str, **labels: str) -> S:
    return S(metric, values, labels)


def log(rule: str, values: str, source: str, **labels: str) -> S:
    return s("botwatch_log_matches_total", values, source=source, rule=rule, **labels)


@dataclass(frozen=True)
class Case:
    alert: str
    firing: list[S]
    healthy: list[S]
    # The labels of each alert expected to fire, besides severity, stack and the catalog's own
    # labels; instance and job are added unless given.
    expect: list[dict[str, str]]
    eval_time: str = "30m"
    interval: str = "1m"


def case(
    alert: str,
    firing: list[S],
    healthy: list[S],
    *expect: dict[str, str],
    eval_time: str = "30m",
    interval: str = "1m",
) -> Case:
    return Case(alert, firing, healthy, list(expect), eval_time, interval)


# --- Trader Bot -----------------------------------------------------------------------------
TRADER_GATE = s("botwatch_log_source_up", "1x60", source="trader-api")
API = {"source": "trader-api"}
BREAKER = {**API, "breaker": "binance"}


def fs(metric: str, values: str, **extra: str) -> S:
    return s(metric, values, device="/dev/sda1", mountpoint="/", fstype="ext4", **extra)


FS_LABELS = {"device": "/dev/sda1", "mountpoint": "/", "fstype": "ext4"}
# A read-only filesystem is always "full": it must never page.
CDROM = [
    S(metric, values, {"device": "/dev/sr0", "mountpoint": "/media/cdrom", "fstype": "iso9660"})
    for metric, values in (
        ("botwatch_filesystem_avail_bytes", "0x60"),
        ("botwatch_filesystem_size_bytes", "100x60"),
        ("botwatch_filesystem_files_free", "0x60"),
        ("botwatch_filesystem_files", "100x60"),
        ("botwatch_filesystem_readonly", "1x60"),
    )
]


def disk(avail: str, *, size: str = "100x60", gate: S = TRADER_GATE) -> list[S]:
    return [
        fs("botwatch_filesystem_avail_bytes", avail),
        fs("botwatch_filesystem_size_bytes", size),
        fs("botwatch_filesystem_readonly", "0x60"),
        gate,
    ]


def inodes(free: str) -> list[S]:
    return [
        fs("botwatch_filesystem_files_free", free),
        fs("botwatch_filesystem_files", "100x60"),
        fs("botwatch_filesystem_readonly", "0x60"),
        TRADER_GATE,
    ]


def fill(avail: str, samples: int) -> list[S]:
    """A filesystem of 1000 bytes sampled every 5m, `samples` long."""
    return [
        fs("botwatch_filesystem_avail_bytes", avail),
        fs("botwatch_filesystem_size_bytes", f"1000x{samples}"),
        fs("botwatch_filesystem_readonly", f"0x{samples}"),
        s("botwatch_log_source_up", f"1x{samples}", source="trader-api"),
    ]


def container_state(container: str, running: str) -> list[S]:
    other = "0x60" if running.startswith("1") else "1x60"
    return [
        s("botwatch_container_state", running, container=container, state="running"),
        s("botwatch_container_state", other, container=container, state="exited"),
    ]


def host_memory(avail: str, gate: S) -> list[S]:
    return [
        s("botwatch_memory_available_bytes", avail),
        s("botwatch_memory_total_bytes", "100x60"),
        gate,
    ]


def if_errors(in_errors: str, gate: S) -> list[S]:
    iface = {"target": "edge-router", "if_index": "2", "if_name": "eth1"}
    return [
        s("botwatch_snmp_if_in_errors_total", in_errors, **iface),
        s("botwatch_snmp_if_out_errors_total", "0x60", **iface),
        gate,
    ]


IFACE = {"target": "edge-router", "if_index": "2", "if_name": "eth1"}
HOST2 = "bot-host-2:9877"

TRADER = [
    case(
        "TraderApiHealthFailing",
        [s("botwatch_probe_success", "0x60", probe="trader-api-health")],
        [s("botwatch_probe_success", "1x60", probe="trader-api-health")],
        {"probe": "trader-api-health"},
    ),
    case(
        "TraderApiContainerNotRunning",
        container_state("trader-api", "0x60"),
        container_state("trader-api", "1x60"),
        {"container": "trader-api", "state": "running"},
    ),
    case(
        "TraderApiRestartLoop",
        [s("botwatch_container_restarts_total", "0+1x60", container="trader-api")],
        # Restarts long ago: a counter's value alone never pages.
        [s("botwatch_container_restarts_total", "3x60", container="trader-api")],
        {"container": "trader-api"},
    ),
    case(
        "TraderApiPortInUse",
        [log("port_in_use", "0+1x60", "trader-api")],
        [log("port_in_use", "0x60", "trader-api")],
        {**API, "rule": "port_in_use"},
    ),
    case(
        "TraderApiConfigMissing",
        [log("config_missing", "1+1x60", "trader-api", var="JWT_SECRET")],
        [log("config_missing", "1x60", "trader-api", var="JWT_SECRET")],
        {**API, "rule": "config_missing", "var": "JWT_SECRET"},
    ),
    case(
        "TimescaleDBContainerNotRunning",
        container_state("timescaledb", "0x60") + container_state("redis", "0x60"),
        container_state("timescaledb", "1x60") + container_state("redis", "0x60"),
        {"container": "timescaledb", "state": "running"},
    ),
    case(
        "TraderRedisContainerNotRunning",
        container_state("redis", "0x60") + container_state("timescaledb", "0x60"),
        container_state("redis", "1x60") + container_state("timescaledb", "0x60"),
        {"container": "redis", "state": "running"},
    ),
    case(
        "TimescaleDBNotReady",
        [
            s("botwatch_postgres_ready", "0x60", probe="timescaledb", state="accepting"),
            s("botwatch_postgres_ready", "1x60", probe="timescaledb", state="no_response"),
        ],
        [
            s("botwatch_postgres_ready", "1x60", probe="timescaledb", state="accepting"),
            s("botwatch_postgres_ready", "0x60", probe="timescaledb", state="no_response"),
        ],
        {"probe": "timescaledb", "state": "accepting"},
    ),
    case(
        "TraderRedisDown",
        [s("botwatch_probe_success", "0x60", probe="redis")],
        [s("botwatch_probe_success", "1x60", probe="redis")],
        {"probe": "redis"},
    ),
    case(
        "TraderApiDatabaseErrors",
        [log("db_connection_error", "0+2x60", "trader-api")],
        [log("db_connection_error", "0+0.2x60", "trader-api")],
        {**API, "rule": "db_connection_error"},
    ),
    case(
        "TraderApiRateLimited",
        [log("rate_limited", "0+3x60", "trader-api")],
        # A 429 now and then is the clients' retry logic at work.
        [log("rate_limited", "0+0.5x60", "trader-api")],
        {**API, "rule": "rate_limited"},
    ),
    case(
        "TraderApiRateLimitingProbes",
        [s("botwatch_probe_http_status_code", "429x60", probe="trader-api-health")],
        [s("botwatch_probe_http_status_code", "200x60", probe="trader-api-health")],
        {"probe": "trader-api-health"},
    ),
    case(
        "TraderCircuitBreakerOpen",
        [
            s("botwatch_circuit_breaker_state", "1x60", **API, breaker="binance", state="open"),
            s("botwatch_circuit_breaker_state", "0x60", **API, breaker="binance", state="closed"),
        ],
        [
            s("botwatch_circuit_breaker_state", "0x60", **API, breaker="binance", state="open"),
            s("botwatch_circuit_breaker_state", "1x60", **API, breaker="binance", state="closed"),
        ],
        {**API, "breaker": "binance", "state": "open"},
    ),
    case(
        "TraderCircuitBreakerFlapping",
        [s("botwatch_circuit_breaker_transitions_total", "0+1x60", **BREAKER, to="open")],
        [s("botwatch_circuit_breaker_transitions_total", "1x60", **BREAKER, to="open")],
        {**BREAKER, "to": "open"},
    ),
    case(
        "TraderApiSlow",
        [s("botwatch_probe_duration_seconds", "1.5x60", probe="trader-api-health")],
        [s("botwatch_probe_duration_seconds", "0.05x60", probe="trader-api-health")],
        {"probe": "trader-api-health"},
    ),
    case(
        "TraderApiTimeouts",
        [s("botwatch_probe_failures_total", "0+1x60", probe="trader-api-health", reason="timeout")],
        [s("botwatch_probe_failures_total", "0x60", probe="trader-api-health", reason="timeout")],
        {"probe": "trader-api-health", "reason": "timeout"},
    ),
    case(
        "TimescaleDBConnectionsNearLimit",
        [
            s("botwatch_postgres_connections", "95x60", probe="timescaledb"),
            s("botwatch_postgres_max_connections", "100x60", probe="timescaledb"),
        ],
        [
            s("botwatch_postgres_connections", "20x60", probe="timescaledb"),
            s("botwatch_postgres_max_connections", "100x60", probe="timescaledb"),
        ],
        {"probe": "timescaledb"},
    ),
    case(
        "TraderRedisCacheHitRatioLow",
        [
            s("botwatch_redis_keyspace_hits_total", "0+60x60", probe="redis"),
            s("botwatch_redis_keyspace_misses_total", "0+300x60", probe="redis"),
        ],
        [
            s("botwatch_redis_keyspace_hits_total", "0+600x60", probe="redis"),
            s("botwatch_redis_keyspace_misses_total", "0+60x60", probe="redis"),
        ],
        {"probe": "redis"},
    ),
    case(
        "TraderExchangeConnectionFailing",
        [log("exchange_connection_failed", "0+1x60", "trader-api")],
        [log("exchange_connection_failed", "0x60", "trader-api")],
        {**API, "rule": "exchange_connection_failed"},
    ),
    case(
        "TraderExchangeApiKeyRejected",
        # One rejection, 5 minutes before the evaluation, pages.
        [log("exchange_api_key_rejected", "0x25 1x35", "trader-api")],
        # -1021 (timestamp outside recvWindow) is an exchange error, not a key problem.
        [
            log("exchange_api_key_rejected", "0x60", "trader-api"),
            log("exchange_api_error", "1+1x60", "trader-api", code="-1021"),
        ],
        {**API, "rule": "exchange_api_key_rejected"},
    ),
    case(
        "TraderExchangeUnreachable",
        [
            s("botwatch_probe_success", "0x60", probe="binance-ping"),
            # AlphaEngine's futures probes are not the Trader Bot's.
            s("botwatch_probe_success", "0x60", probe="binance-futures-dns"),
        ],
        [
            s("botwatch_probe_success", "1x60", probe="binance-ping"),
            s("botwatch_probe_success", "1x60", probe="binance-dns"),
        ],
        {"probe": "binance-ping"},
    ),
    case(
        "TraderApiAuthFailures",
        [log("auth_failed", "0+5x60", "trader-api", reason="invalid_token")],
        [log("auth_failed", "0+1x60", "trader-api", reason="token_expired")],
        {**API, "rule": "auth_failed", "reason": "invalid_token"},
    ),
    case(
        "TraderWebSocketFlapping",
        [
            s("botwatch_ws_disconnects_total", "0+1x60", probe="trader-api-ws", reason="1006"),
            s("botwatch_ws_disconnects_total", "0x60", probe="trader-api-ws", reason="refused"),
        ],
        [
            s("botwatch_ws_disconnects_total", "0x60", probe="trader-api-ws", reason="1006"),
            s("botwatch_ws_disconnects_total", "0x60", probe="trader-api-ws", reason="refused"),
        ],
        {"probe": "trader-api-ws"},
    ),
    case(
        "TraderWebSocketDown",
        [s("botwatch_ws_connected", "0x60", probe="trader-api-ws")],
        [s("botwatch_ws_connected", "1x60", probe="trader-api-ws")],
        {"probe": "trader-api-ws"},
    ),
    case("TraderDiskSpaceLow", disk("8x60") + CDROM, disk("50x60") + CDROM, FS_LABELS),
    case("TraderDiskSpaceCritical", disk("3x60") + CDROM, disk("50x60") + CDROM, FS_LABELS),
    case(
        "TraderDiskFillingUp",
        # 24 bytes an hour off 390 of 1000: empty in about 16 hours.
        fill("390-2x40", 41),
        # As full, but steady: a threshold alone is not a prediction.
        fill("390x40", 41),
        FS_LABELS,
        eval_time="2h",
        interval="5m",
    ),
    case(
        "TraderDiskFillingUpSoon",
        # 60 bytes an hour off 190 of 1000: empty in about 3 hours.
        fill("190-5x20", 21),
        fill("190x20", 21),
        FS_LABELS,
        eval_time="1h",
        interval="5m",
    ),
    case("TraderDiskInodesLow", inodes("3x60") + CDROM, inodes("50x60") + CDROM, FS_LABELS),
    case(
        "TraderDiskFullErrors",
        [log("disk_full", "0+1x60", "trader-api")],
        [log("disk_full", "0x60", "trader-api")],
        {**API, "rule": "disk_full"},
    ),
    case(
        "TraderContainerOomKilled",
        [s("botwatch_container_oom_kills_total", "0x10 1x50", container="trader-api")],
        # Kills long ago: the counter's value alone never pages.
        [s("botwatch_container_oom_kills_total", "2x60", container="trader-api")],
        {"container": "trader-api", "component": "trader-api"},
        eval_time="15m",
    ),
    case(
        "TraderContainerMemoryNearLimit",
        [
            s("botwatch_container_memory_working_set_bytes", "950x60", container="trader-api"),
            s("botwatch_container_memory_limit_bytes", "1000x60", container="trader-api"),
            # No limit, no ratio.
            s("botwatch_container_memory_working_set_bytes", "950x60", container="redis"),
        ],
        [
            s("botwatch_container_memory_working_set_bytes", "500x60", container="trader-api"),
            s("botwatch_container_memory_limit_bytes", "1000x60", container="trader-api"),
        ],
        {"container": "trader-api", "component": "trader-api"},
    ),
    case(
        "TraderHostMemoryLow",
        host_memory("5x60", TRADER_GATE),
        host_memory("50x60", TRADER_GATE),
        {},
    ),
    case(
        "TraderApiOutOfMemoryErrors",
        [log("out_of_memory", "0+1x60", "trader-api")],
        [log("out_of_memory", "0x60", "trader-api")],
        {**API, "rule": "out_of_memory"},
    ),
    case(
        "TraderRedisMemoryNearLimit",
        [
            s("botwatch_redis_memory_used_bytes", "95x60", probe="redis"),
            s("botwatch_redis_memory_max_bytes", "100x60", probe="redis"),
            s("botwatch_redis_maxmemory_policy_info", "1x60", probe="redis", policy="noeviction"),
        ],
        [
            s("botwatch_redis_memory_used_bytes", "50x60", probe="redis"),
            s("botwatch_redis_memory_max_bytes", "100x60", probe="redis"),
            s("botwatch_redis_maxmemory_policy_info", "1x60", probe="redis", policy="noeviction"),
        ],
        {"probe": "redis", "policy": "noeviction"},
    ),
    case(
        "TraderApiCorsPreflightFailing",
        [s("botwatch_probe_success", "0x60", probe="trader-api-cors")],
        [s("botwatch_probe_success", "1x60", probe="trader-api-cors")],
        {"probe": "trader-api-cors"},
    ),
    case(
        "TraderApiCorsRejected",
        [log("cors_rejected", "0+1x60", "trader-api")],
        [log("cors_rejected", "0+0.2x60", "trader-api")],
        {**API, "rule": "cors_rejected"},
    ),
    case(
        "TraderOrdersRejected",
        [
            log("order_rejected", "0+1x60", "trader-api", reason="insufficient_balance"),
            log("order_rejected", "0+1x60", "trader-api", reason="daily_loss_limit"),
        ],
        [
            log("order_rejected", "0x60", "trader-api", reason="insufficient_balance"),
            log("order_rejected", "0+1x60", "trader-api", reason="daily_loss_limit"),
        ],
        {**API, "rule": "order_rejected", "reason": "insufficient_balance"},
    ),
    case(
        "TraderDailyLossLimitReached",
        [log("order_rejected", "0+1x60", "trader-api", reason="daily_loss_limit")],
        [
            log("order_rejected", "0x60", "trader-api", reason="daily_loss_limit"),
            log("order_rejected", "0+1x60", "trader-api", reason="insufficient_balance"),
        ],
        {**API, "rule": "order_rejected", "reason": "daily_loss_limit"},
    ),
    case(
        "TraderApiCpuHigh",
        [s("botwatch_container_cpu_seconds_total", "0+60x60", container="trader-api")],
        [s("botwatch_container_cpu_seconds_total", "0+6x60", container="trader-api")],
        {"container": "trader-api"},
    ),
    case(
        "TraderHostCpuHigh",
        [
            s("botwatch_cpu_seconds_total", "0+3x60", mode="idle"),
            s("botwatch_cpu_seconds_total", "0+57x60", mode="user"),
            TRADER_GATE,
        ],
        [
            s("botwatch_cpu_seconds_total", "0+50x60", mode="idle"),
            s("botwatch_cpu_seconds_total", "0+10x60", mode="user"),
            TRADER_GATE,
        ],
        {},
    ),
    case(
        "TraderApiMemoryLeak",
        [
            # 120 bytes an hour against a limit of 1000 ...
            s("botwatch_container_memory_working_set_bytes", "100+10x40", container="trader-api"),
            s("botwatch_container_memory_limit_bytes", "1000x40", container="trader-api"),
            # ... and on a second host without a limit, against the host's memory.
            S(
                "botwatch_container_memory_working_set_bytes",
                "100+10x40",
                {"instance": HOST2, "container": "trader-api"},
            ),
            S("botwatch_memory_total_bytes", "1000x40", {"instance": HOST2}),
        ],
        [
            s("botwatch_container_memory_working_set_bytes", "500x40", container="trader-api"),
            s("botwatch_container_memory_limit_bytes", "1000x40", container="trader-api"),
            S(
                "botwatch_container_memory_working_set_bytes",
                "500x40",
                {"instance": HOST2, "container": "trader-api"},
            ),
            S("botwatch_memory_total_bytes", "1000x40", {"instance": HOST2}),
        ],
        {"container": "trader-api"},
        {"container": "trader-api", "instance": HOST2},
        eval_time="3h",
        interval="5m",
    ),
    case(
        "TraderExchangeLatencyHigh",
        [s("botwatch_probe_duration_seconds", "2x60", probe="binance-ping")],
        [s("botwatch_probe_duration_seconds", "0.2x60", probe="binance-ping")],
        {"probe": "binance-ping"},
    ),
    case(
        "TraderNetworkInterfaceErrors",
        if_errors("0+120x60", TRADER_GATE),
        if_errors("0+6x60", TRADER_GATE),
        IFACE,
    ),
    case(
        "TraderStackDown",
        [
            s("botwatch_collector_up", "1x60", collector="docker"),
            *container_state("trader-api", "0x60"),
            *container_state("timescaledb", "0x60"),
            *container_state("redis", "0x60"),
            TRADER_GATE,
        ],
        [
            s("botwatch_collector_up", "1x60", collector="docker"),
            *container_state("trader-api", "1x60"),
            *container_state("timescaledb", "0x60"),
            *container_state("redis", "0x60"),
            TRADER_GATE,
        ],
        {},
    ),
    case(
        "TraderApiPanicking",
        [log("unhandled_exception", "0+1x60", "trader-api")],
        [log("unhandled_exception", "0x60", "trader-api")],
        {**API, "rule": "unhandled_exception"},
    ),
]

# --- AlphaEngine ----------------------------------------------------------------------------
ALPHA_GATE = s("botwatch_log_source_up", "1x60", source="alphaengine-bot")
BOT = {"source": "alphaengine-bot"}
BOT_UNIT = "alphaengine-bot.service"
BACKUP_UNIT = "alphaengine-backup.service"
VENV_PYTHON = "/opt/alphaengine/venv/bin/python"
DEDUP = {"db": "alphaengine", "table": "event_store", "column": "dedup_key"}
DB = {"db": "alphaengine"}
SECRETS = "/opt/alphaengine/config/secrets.yaml"
FUTURES = {"probe": "binance-futures"}

ALPHAENGINE = [
    case(
        "AlphaEngineServiceDown",
        [
            s("botwatch_systemd_unit_state", "0x60", unit=BOT_UNIT, state="active"),
            s("botwatch_systemd_unit_state", "1x60", unit=BOT_UNIT, state="failed"),
            # A oneshot unit of the same family is inactive by design.
            s("botwatch_systemd_unit_state", "0x60", unit=BACKUP_UNIT, state="active"),
        ],
        [
            s("botwatch_systemd_unit_state", "1x60", unit=BOT_UNIT, state="active"),
            s("botwatch_systemd_unit_state", "0x60", unit=BOT_UNIT, state="failed"),
        ],
        {"unit": BOT_UNIT, "state": "active", "component": "alphaengine-bot"},
    ),
    case(
        "AlphaEngineServiceRestarting",
        [s("botwatch_systemd_service_restarts_total", "0+1x60", unit=BOT_UNIT)],
        [s("botwatch_systemd_service_restarts_total", "4x60", unit=BOT_UNIT)],
        {"unit": BOT_UNIT, "component": "alphaengine-bot"},
    ),
    case(
        "AlphaEngineProcessMissing",
        [
            s("botwatch_process_up", "0x60", process="alphaengine-bot"),
            s("botwatch_process_up", "1x60", process="alphaengine-web"),
        ],
        [
            s("botwatch_process_up", "1x60", process="alphaengine-bot"),
            s("botwatch_process_up", "1x60", process="alphaengine-web"),
        ],
        {"process": "alphaengine-bot", "component": "alphaengine-bot"},
    ),
    case(
        "AlphaEngineVenvBroken",
        [s("botwatch_file_check_ok", "0x60", path=VENV_PYTHON, check="executable")],
        [s("botwatch_file_check_ok", "1x60", path=VENV_PYTHON, check="executable")],
        {"path": VENV_PYTHON, "check": "executable"},
    ),
    case(
        "AlphaEngineFilePermissionsWrong",
        [
            s("botwatch_file_check_ok", "0x60", path="/opt/alphaengine/config", check="mode"),
            s("botwatch_file_exists", "1x60", path="/opt/alphaengine/config"),
            # A missing file fails every check; that is AlphaEngineSecretsInvalid's business.
            s("botwatch_file_check_ok", "0x60", path=SECRETS, check="mode"),
            s("botwatch_file_exists", "0x60", path=SECRETS),
        ],
        [
            s("botwatch_file_check_ok", "1x60", path="/opt/alphaengine/config", check="mode"),
            s("botwatch_file_exists", "1x60", path="/opt/alphaengine/config"),
        ],
        {"path": "/opt/alphaengine/config", "check": "mode"},
    ),
    case(
        "AlphaEngineSecretsInvalid",
        [s("botwatch_file_check_ok", "0x60", path=SECRETS, check="yaml")],
        [s("botwatch_file_check_ok", "1x60", path=SECRETS, check="yaml")],
        {"path": SECRETS, "check": "yaml"},
    ),
    case(
        "AlphaEngineConfigMissing",
        [log("config_missing", "0+1x60", "alphaengine-bot", var="secrets.yaml")],
        [log("config_missing", "0x60", "alphaengine-bot", var="secrets.yaml")],
        {**BOT, "rule": "config_missing", "var": "secrets.yaml", "component": "alphaengine-bot"},
    ),
    case(
        "AlphaEngineDatabaseLocked",
        [log("db_locked", "0+1x60", "alphaengine-bot")],
        [log("db_locked", "0x60", "alphaengine-bot")],
        {**BOT, "rule": "db_locked"},
    ),
    case(
        "AlphaEngineDatabaseLockContention",
        [s("botwatch_sqlite_query_errors_total", "0+1x60", **DB, error="locked")],
        [s("botwatch_sqlite_query_errors_total", "0x60", **DB, error="locked")],
        {**DB, "error": "locked"},
    ),
    case(
        "AlphaEngineWalGrowing",
        # From 70 MB, 1 MB more every 5 minutes.
        [s("botwatch_sqlite_wal_bytes", "70000000+1000000x30", **DB)],
        # Large after a burst, but not growing: checkpoints keep up.
        [s("botwatch_sqlite_wal_bytes", "100000000x30", **DB)],
        DB,
        eval_time="2h",
        interval="5m",
    ),
    case(
        "AlphaEngineWebSocketConnectFailing",
        [log("ws_connect_failed", "0+1x60", "alphaengine-bot")],
        [log("ws_connect_failed", "0x60", "alphaengine-bot")],
        {**BOT, "rule": "ws_connect_failed"},
    ),
    case(
        "AlphaEngineExchangeStreamUnreachable",
        [s("botwatch_ws_connected", "0x60", **FUTURES)],
        [s("botwatch_ws_connected", "1x60", **FUTURES)],
        FUTURES,
    ),
    case(
        "AlphaEngineExchangeDnsFailing",
        [s("botwatch_probe_success", "0x60", probe="binance-futures-dns")],
        [s("botwatch_probe_success", "1x60", probe="binance-futures-dns")],
        {"probe": "binance-futures-dns"},
    ),
    case(
        "AlphaEngineApiKeyRejected",
        [log("exchange_api_key_rejected", "0x25 1x35", "alphaengine-bot")],
        [
            log("exchange_api_key_rejected", "0x60", "alphaengine-bot"),
            log("exchange_api_error", "1+1x60", "alphaengine-bot", code="-1021"),
        ],
        {**BOT, "rule": "exchange_api_key_rejected"},
    ),
    case(
        "AlphaEngineRateLimited",
        [log("rate_limited", "0+1x60", "alphaengine-bot")],
        [log("rate_limited", "0+0.2x60", "alphaengine-bot")],
        {**BOT, "rule": "rate_limited"},
    ),
    case(
        "AlphaEngineDatabaseCorrupt",
        [s("botwatch_sqlite_integrity_ok", "0x60", **DB)],
        [s("botwatch_sqlite_integrity_ok", "1x60", **DB)],
        DB,
    ),
    case(
        "AlphaEngineDatabaseCorruptionLogged",
        [log("db_corrupt", "0+1x60", "alphaengine-bot")],
        [log("db_corrupt", "0x60", "alphaengine-bot")],
        {**BOT, "rule": "db_corrupt"},
    ),
    case(
        "AlphaEngineDatabaseFileMissing",
        [s("botwatch_sqlite_query_errors_total", "0+4x60", **DB, error="missing_file")],
        [s("botwatch_sqlite_query_errors_total", "0x60", **DB, error="missing_file")],
        {**DB, "error": "missing_file"},
    ),
    case(
        "AlphaEngineBackupStale",
        [s("botwatch_backup_fresh", "0x60", set="alphaengine")],
        [s("botwatch_backup_fresh", "1x60", set="alphaengine")],
        {"set": "alphaengine"},
    ),
    case(
        "AlphaEngineOomKilled",
        [
            s(
                "botwatch_cgroup_oom_kills_total",
                "0x10 1x50",
                cgroup="/system.slice/alphaengine-bot.service",
                unit=BOT_UNIT,
            )
        ],
        [
            s(
                "botwatch_cgroup_oom_kills_total",
                "1x60",
                cgroup="/system.slice/alphaengine-bot.service",
                unit=BOT_UNIT,
            )
        ],
        {
            "cgroup": "/system.slice/alphaengine-bot.service",
            "unit": BOT_UNIT,
            "component": "alphaengine-bot",
        },
        eval_time="15m",
    ),
    case(
        "AlphaEngineMemoryErrors",
        [log("out_of_memory", "0+1x60", "alphaengine-bot")],
        [log("out_of_memory", "0x60", "alphaengine-bot")],
        {**BOT, "rule": "out_of_memory", "component": "alphaengine-bot"},
    ),
    case(
        "AlphaEngineHostMemoryLow",
        host_memory("5x60", ALPHA_GATE),
        host_memory("50x60", ALPHA_GATE),
        {},
    ),
    case(
        "AlphaEngineReconnectStorm",
        [log("ws_reconnect_attempt", "0+1x60", "alphaengine-bot")],
        [log("ws_reconnect_attempt", "0+0.1x60", "alphaengine-bot")],
        {**BOT, "rule": "ws_reconnect_attempt"},
    ),
    case(
        "AlphaEngineExchangeStreamFlapping",
        [s("botwatch_ws_disconnects_total", "0+1x60", **FUTURES, reason="1006")],
        [s("botwatch_ws_disconnects_total", "0x60", **FUTURES, reason="1006")],
        FUTURES,
    ),
    case(
        "AlphaEngineExchangeFeedStale",
        [
            s("botwatch_ws_last_message_timestamp_seconds", "0x60", **FUTURES),
            s("botwatch_ws_connected", "1x60", **FUTURES),
        ],
        # A message every minute (the timestamp keeps up with the clock).
        [
            s("botwatch_ws_last_message_timestamp_seconds", "0+60x60", **FUTURES),
            s("botwatch_ws_connected", "1x60", **FUTURES),
        ],
        FUTURES,
    ),
    case(
        "AlphaEngineNetworkInterfaceErrors",
        if_errors("0+120x60", ALPHA_GATE),
        if_errors("0+6x60", ALPHA_GATE),
        IFACE,
    ),
    case(
        "AlphaEngineWebHealthFailing",
        [s("botwatch_probe_success", "0x60", probe="alphaengine-web-health")],
        [s("botwatch_probe_success", "1x60", probe="alphaengine-web-health")],
        {"probe": "alphaengine-web-health"},
    ),
    case(
        "AlphaEngineNginxBadGateway",
        [log("upstream_error", "0+2x60", "nginx", status="502")],
        # 500 is the web API's own error, answered through nginx: not a gateway failure.
        [
            log("upstream_error", "0x60", "nginx", status="502"),
            log("upstream_error", "0+10x60", "nginx", status="500"),
        ],
        {"source": "nginx", "rule": "upstream_error", "status": "502"},
    ),
    case(
        "AlphaEnginePortInUse",
        [
            log("port_in_use", "0+1x60", "alphaengine-web"),
            # nginx's own port (80) is not the web API's.
            log("port_in_use", "0+1x60", "nginx"),
        ],
        [log("port_in_use", "0x60", "alphaengine-web")],
        {"source": "alphaengine-web", "rule": "port_in_use"},
    ),
    case(
        "AlphaEngineDuplicateOrders",
        [s("botwatch_sqlite_duplicate_keys", "2x60", **DEDUP)],
        [s("botwatch_sqlite_duplicate_keys", "0x60", **DEDUP)],
        DEDUP,
    ),
]

# --- botwatch itself ------------------------------------------------------------------------
BOTWATCH = [
    case(
        "BotwatchScrapeFailing",
        [s("up", "0x60")],
        [s("up", "1x60")],
        {},
    ),
    case(
        "BotwatchCollectorDown",
        [s("botwatch_collector_up", "0x60", collector="docker")],
        [s("botwatch_collector_up", "1x60", collector="docker")],
        {"collector": "docker"},
    ),
    case(
        "BotwatchCollectorErrors",
        [
            s("botwatch_collector_errors_total", "0+1x60", collector="systemd"),
            s("botwatch_collector_up", "1x60", collector="systemd"),
        ],
        [
            s("botwatch_collector_errors_total", "2x60", collector="systemd"),
            s("botwatch_collector_up", "1x60", collector="systemd"),
        ],
        {"collector": "systemd"},
    ),
    case(
        "BotwatchLogSourceDown",
        [s("botwatch_log_source_up", "0x60", source="nginx")],
        [s("botwatch_log_source_up", "1x60", source="nginx")],
        {"source": "nginx"},
    ),
    case(
        "BotwatchLogSourceSilent",
        [
            s("botwatch_log_last_line_timestamp_seconds", "0x90", source="alphaengine-bot"),
            s("botwatch_log_source_up", "1x90", source="alphaengine-bot"),
        ],
        [
            s("botwatch_log_last_line_timestamp_seconds", "0+60x90", source="alphaengine-bot"),
            s("botwatch_log_source_up", "1x90", source="alphaengine-bot"),
            # An error log is quiet when all is well, a request log when nobody calls.
            s("botwatch_log_last_line_timestamp_seconds", "0x90", source="nginx"),
            s("botwatch_log_source_up", "1x90", source="nginx"),
            s("botwatch_log_last_line_timestamp_seconds", "0x90", source="alphaengine-web"),
            s("botwatch_log_source_up", "1x90", source="alphaengine-web"),
        ],
        {"source": "alphaengine-bot"},
        eval_time="75m",
    ),
    case(
        "BotwatchConfigReloadFailed",
        [s("botwatch_config_last_reload_successful", "0x60")],
        [s("botwatch_config_last_reload_successful", "1x60")],
        {},
    ),
    case(
        "BotwatchProbeTargetDown",
        [s("botwatch_probe_success", "0x60", probe="edge-router-ping")],
        [s("botwatch_probe_success", "1x60", probe="edge-router-ping")],
        {"probe": "edge-router-ping"},
    ),
    case(
        "BotwatchCheckpointErrors",
        [
            s("botwatch_log_checkpoint_errors_total", "0+1x60"),
            s("botwatch_docker_checkpoint_errors_total", "0x60"),
            s("botwatch_oom_checkpoint_errors_total", "0x60"),
        ],
        [
            s("botwatch_log_checkpoint_errors_total", "1x60"),
            s("botwatch_docker_checkpoint_errors_total", "0x60"),
            s("botwatch_oom_checkpoint_errors_total", "0x60"),
        ],
        {"checkpoint": "logs"},
    ),
    case(
        "BotwatchKernelLogUnreadable",
        [s("botwatch_oom_kernel_log_up", "0x60")],
        [s("botwatch_oom_kernel_log_up", "1x60")],
        {},
    ),
    case(
        "BotwatchLogLabelOverflow",
        [s("botwatch_log_label_overflow_total", "0+1x60", **API, rule="exchange_api_error")],
        [s("botwatch_log_label_overflow_total", "3x60", **API, rule="exchange_api_error")],
        {**API, "rule": "exchange_api_error"},
    ),
]

CASES: dict[str, list[Case]] = {
    "trader-bot": TRADER,
    "alphaengine": ALPHAENGINE,
    "botwatch": BOTWATCH,
}


def fill_in(description: str, labels: dict[str, str]) -> str:
    """The description as Prometheus renders it for these labels ($labels only)."""

    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in labels:
            raise KeyError(f"description names $labels.{name}, not among {sorted(labels)}")
        return labels[name]

    return PLACEHOLDER.sub(one, description)


def _test_file(group_name: str) -> dict[str, Any]:
    catalog = load_catalog()
    by_name = {c.alert: c for c in CASES[group_name]}
    group = next(g for g in catalog.groups if g.name == group_name)
    missing = [r.alert for r in group.rules if r.alert not in by_name]
    extra = sorted(set(by_name) - {r.alert for r in group.rules})
    if missing or extra:
        raise KeyError(f"{group_name}: alerts without a case {missing}, cases of no alert {extra}")
    tests: list[dict[str, Any]] = []
    for index, rule in enumerate(group.rules):
        c = by_name[rule.alert]
        expected = []
        for extra_labels in c.expect:
            labels = {
                "instance": INSTANCE,
                "job": JOB,
                **extra_labels,
                "severity": rule.severity,
                "stack": group.stack,
                **rule.labels,
            }
            expected.append(
                {
                    "exp_labels": dict(sorted(labels.items())),
                    "exp_annotations": {
                        "summary": rule.summary,
                        "description": fill_in(rule.description, labels),
                        "runbook_url": runbook_url(rule.runbook),
                        "dashboard_url": dashboard_url(group, index),
                    },
                }
            )
        for name, series, exp in (
            (f"{rule.alert} fires", c.firing, expected),
            (f"{rule.alert} stays silent on healthy series", c.healthy, []),
        ):
            tests.append(
                {
                    "name": name,
                    "interval": c.interval,
                    "input_series": [one.render() for one in series],
                    "alert_rule_test": [
                        {"eval_time": c.eval_time, "alertname": rule.alert, "exp_alerts": exp}
                    ],
                }
            )
    return {
        "rule_files": [f"../{group_name}.rules.yml"],
        "evaluation_interval": "1m",
        "tests": tests,
    }


def render_tests() -> dict[str, str]:
    """alerts/tests/{group}.test.yml, by file name."""
    files = {}
    for group_name in CASES:
        body = yaml.safe_dump(
            _test_file(group_name), allow_unicode=True, sort_keys=False, width=100
        )
        header = (
            "# Generated by tests/unit/test_alert_cases.py from its cases and the catalog "
            "(python -m tests.unit.test_alert_cases): edit those, not this.\n"
        )
        files[f"{group_name}.test.yml"] = header + body
    return files


def test_committed_promtool_tests_are_current() -> None:
    for name, text in render_tests().items():
        path = TESTS_DIR / name
        assert path.exists(), f"{path} is missing: run python -m tests.unit.test_alert_cases"
        assert path.read_text(encoding="utf-8") == text, (
            f"{path} is stale: run python -m tests.unit.test_alert_cases"
        )


def test_every_alert_has_exactly_one_case() -> None:
    catalog = {r.alert: g.name for g, _, r in load_catalog().alerts()}
    cases = [(c.alert, group) for group, cs in CASES.items() for c in cs]
    assert sorted(cases) == sorted(catalog.items())


if __name__ == "__main__":
    TESTS_DIR.mkdir(parents=True, exist_ok=True)
    for file_name, text in render_tests().items():
        (TESTS_DIR / file_name).write_text(text, encoding="utf-8")
        print(f"wrote {TESTS_DIR / file_name}", file=sys.stderr)
