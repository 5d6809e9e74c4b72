"""Grafana dashboards, generated from the runbook catalog: one per rule group.

`render_dashboards(catalog, bases)` returns {file name: JSON text} for grafana/dashboards/
(`botwatch-exporter render` writes them; a test checks the committed files equal a fresh
render). The dashboard of group G has uid `botwatch-{G}`; the panel of its alert number i
(0-based, in catalog order) has id PANEL_ID_BASE + i, which is where the rules'
`dashboard_url` annotation points (catalog.dashboard_url). Panel ids:

- 1 .. 99: the "alerts now" table, the first-look rows and their panels (FIXED_PANELS);
- PANEL_ID_BASE + i: alert i of the group;
- SECTION_ROW_ID_BASE + k: the row of the k-th runbook section the group's alerts link to.

Each alert's panel is titled by its summary (the symptom), shows what its expression compares
(exporter/runbooks/dashquery.py), and links to its runbook section. The trader-bot and
alphaengine dashboards start with what their runbook's first look checks by hand; the botwatch
group's dashboard is botwatch's self-health. Every query is narrowed to the dashboard's `$job`
and `$instance` and every rate uses `$__rate_interval`; the datasource is the `datasource`
variable, which defaults to the provisioned datasource (grafana/provisioning/).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from exporter.runbooks.catalog import (
    PANEL_ID_BASE,
    PLACEHOLDER_BASES,
    AlertRule,
    Catalog,
    Group,
    RunbookRef,
    runbook_url,
)
from exporter.runbooks.dashquery import Condition, conditions, scoped, shape
from exporter.runbooks.slug import anchor

Json = dict[str, Any]

SCHEMA_VERSION = 39
# The datasource grafana/provisioning/datasources/botwatch.yaml creates, and the default of
# every dashboard's `datasource` variable.
DATASOURCE_UID = "botwatch-prometheus"
DATASOURCE_NAME = "Prometheus (botwatch)"
DATASOURCE: Json = {"type": "prometheus", "uid": "${datasource}"}
SCOPE = 'job=~"$job", instance=~"$instance"'
FIXED_PANELS = range(1, PANEL_ID_BASE)
SECTION_ROW_ID_BASE = 10_000
GRID_WIDTH = 24
TITLES = {
    "trader-bot": "botwatch: Trader Bot",
    "alphaengine": "botwatch: AlphaEngine",
    "botwatch": "botwatch: self-health",
}
# A gauge whose name ends so is 1 or 0 (a state): its alert panel is a stat.
STATE_SUFFIXES = (
    "_up", "_success", "_successful", "_ok", "_fresh", "_exists", "_readonly", "_connected",
    "_listening", "_ready", "_state", "_health", "_result", "_error", "_oom_killed", "_missing",
)  # fmt: skip
STATE_FUNCTIONS = frozenset({"max", "min"})
RATE_FUNCTIONS = frozenset({"rate", "irate"})
COUNT_FUNCTIONS = frozenset({"increase", "changes", "resets", "count_over_time"})
UNIT_SUFFIXES = (
    ("_timestamp_seconds", "dateTimeFromNow"),
    ("_seconds", "s"),
    ("_bytes", "bytes"),
    ("_ratio", "percentunit"),
    ("_celsius", "celsius"),
)


# --- panels ---------------------------------------------------------------------------------


def _thresholds(steps: Sequence[tuple[str, float | None]]) -> Json:
    return {"mode": "absolute", "steps": [{"color": c, "value": v} for c, v in steps]}


NEUTRAL = _thresholds([("green", None)])
ANY_IS_BAD = _thresholds([("green", None), ("red", 1)])
# For 0/1 states: which value is the bad one.
BAD_IS_ZERO = _thresholds([("red", None), ("green", 1)])
BAD_IS_ONE = _thresholds([("green", None), ("red", 1)])


def target(expr: str, ref: str = "A", legend: str = "__auto", instant: bool = False) -> Json:
    return {
        "datasource": DATASOURCE,
        "editorMode": "code",
        "expr": expr,
        "instant": instant,
        "legendFormat": legend,
        "range": not instant,
        "refId": ref,
    }


def _link(title: str, url: str) -> Json:
    return {"targetBlank": True, "title": title, "url": url}


def _panel(
    kind: str, title: str, description: str, links: Sequence[Json], targets: list[Json]
) -> Json:
    """What every data panel starts with; the kind's own settings follow it."""
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "links": list(links),
        "targets": targets,
    }


def timeseries(
    title: str,
    targets: list[Json],
    unit: str,
    *,
    description: str = "",
    links: Sequence[Json] = (),
    thresholds: Json | None = None,
    overrides: Sequence[Json] = (),
) -> Json:
    return {
        **_panel("timeseries", title, description, links, targets),
        "fieldConfig": {
            "defaults": {
                "unit": unit,
                "color": {"mode": "palette-classic"},
                "custom": {
                    "drawStyle": "line",
                    "lineWidth": 1,
                    "fillOpacity": 10,
                    "showPoints": "never",
                    "spanNulls": False,
                    "thresholdsStyle": {"mode": "off" if thresholds is None else "dashed"},
                },
                "thresholds": thresholds or NEUTRAL,
            },
            "overrides": list(overrides),
        },
        "options": {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
    }


def stat(
    title: str,
    targets: list[Json],
    unit: str,
    *,
    thresholds: Json,
    description: str = "",
    links: Sequence[Json] = (),
    text_mode: str = "value_and_name",
) -> Json:
    return {
        **_panel("stat", title, description, links, targets),
        "fieldConfig": {
            "defaults": {
                "unit": unit,
                "color": {"mode": "thresholds"},
                "mappings": [],
                "thresholds": thresholds,
            },
            "overrides": [],
        },
        "options": {
            "colorMode": "background",
            "graphMode": "area",
            "justifyMode": "auto",
            "orientation": "auto",
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "showPercentChange": False,
            "textMode": text_mode,
            "wideLayout": True,
        },
    }


def row(title: str) -> Json:
    return {"type": "row", "title": title, "collapsed": False, "panels": []}


def alerts_table(stack: str) -> Json:
    """Firing alerts of the stack joined with botwatch_alert_runbook_info on alertname, the
    section a link to its runbook_url. An alert whose runbook info is not served (an older
    botwatch) is still listed, without a link."""
    firing = f'ALERTS{{alertstate="firing", stack="{stack}"}}'
    info = f"botwatch_alert_runbook_info{{{SCOPE}}}"
    expr = (
        f"{firing}\n"
        "  * on (alertname) group_left (runbook, section, runbook_url)\n"
        f"    topk by (alertname) (1, {info})\n"
        f"or ignoring (runbook, section, runbook_url) {firing}"
    )
    open_runbook = _link("Open the runbook section", "${__data.fields.runbook_url}")

    def column(name: str, title: str, *extra: Json) -> Json:
        properties = [{"id": "displayName", "value": title}, *extra]
        return {"matcher": {"id": "byName", "options": name}, "properties": properties}

    description = (
        "Firing alerts of this stack (`ALERTS`), joined on `alertname` with "
        "`botwatch_alert_runbook_info`, which botwatch serves for every alert of its "
        "catalog: click a section to open the runbook there."
    )
    targets = [target(expr, legend="", instant=True) | {"format": "table"}]
    return {
        **_panel("table", "Alerts firing now", description, (), targets),
        "fieldConfig": {
            "defaults": {"unit": "string", "custom": {"align": "auto", "filterable": True}},
            "overrides": [
                column("alertname", "Alert"),
                column("severity", "Severity"),
                column("section", "Runbook section", {"id": "links", "value": [open_runbook]}),
                column(
                    "runbook_url",
                    "Runbook link",
                    {"id": "links", "value": [_link("Open", "${__value.raw}")]},
                ),
            ],
        },
        "options": {
            "cellHeight": "sm",
            "footer": {"show": False, "reducer": ["sum"], "countRows": False, "fields": ""},
            "showHeader": True,
        },
        "transformations": [
            {
                "id": "organize",
                "options": {
                    "excludeByName": {
                        "Time": True,
                        "Value": True,
                        "__name__": True,
                        "alertstate": True,
                        "runbook": True,
                    },
                    "indexByName": {"alertname": 0, "severity": 1, "section": 2, "runbook_url": 3},
                    "renameByName": {},
                },
            }
        ],
    }


# --- units and shapes of derived queries ----------------------------------------------------


def _suffix_unit(metric: str) -> str:
    for suffix, unit in UNIT_SUFFIXES:
        if metric.endswith(suffix):
            return unit
    return "short"


def _rate_unit(query: str, first: str, divides: bool, functions: frozenset[str]) -> str:
    if not functions & RATE_FUNCTIONS:  # deriv(): per second of a gauge
        return "Bps" if first.endswith("_bytes") else "short"
    if divides and query.count("rate(") >= 2:
        return "percentunit"  # a ratio of two rates
    if first.endswith("_bytes_total"):
        return "Bps"
    if first.endswith("_seconds_total"):
        return "percentunit"  # CPU seconds per second: 100 % is one core
    return "cps"


def infer_unit(query: str) -> str:
    """A Grafana unit for what a query returns, from its metric names and functions."""
    found = shape(query)
    first = found.metrics[0] if found.metrics else ""
    if "time" in found.functions and first.endswith("_timestamp_seconds"):
        unit = "s"  # time() - X_timestamp_seconds: an age
    elif found.functions & (RATE_FUNCTIONS | {"deriv"}):
        unit = _rate_unit(query, first, found.divides, found.functions)
    elif found.functions & COUNT_FUNCTIONS:
        unit = "short"
    elif (
        found.divides
        and len(found.metrics) >= 2
        and len(set(map(_suffix_unit, found.metrics[:2]))) == 1
    ):
        unit = "percentunit"  # a_bytes / b_bytes, open_fds / max_fds, files_free / files
    else:
        unit = _suffix_unit(first)
    return unit


def _is_state(condition: Condition) -> bool:
    found = shape(condition.query)
    return (
        condition.threshold in (0.0, 1.0)
        and bool(found.metrics)
        and all(m == "up" or m.endswith(STATE_SUFFIXES) for m in found.metrics)
        and not found.ranged
        and not found.divides
        and found.functions <= STATE_FUNCTIONS
        and condition.fires_on(0.0) != condition.fires_on(1.0)
    )


def _shown(found: list[Condition]) -> list[Condition]:
    """What an alert panel shows: comparisons of quantities; 0/1 states unless they only
    narrow such a comparison (`... and botwatch_filesystem_readonly == 0`); operands that
    merely filter (`and on(instance) botwatch_log_source_up`) only when nothing else is
    left."""
    quantities = [c for c in found if c.op is not None and not _is_state(c)]
    states = [c for c in found if _is_state(c)]
    symptoms = [c for c in states if c.via in ("", "or")]
    shown = quantities + symptoms if quantities or symptoms else states
    return [c for c in found if c in shown] or found


def _line_thresholds(found: Sequence[Condition]) -> Json | None:
    limits = {(c.firing_op, c.threshold) for c in found if c.threshold is not None}
    if len(limits) != 1:
        return None
    op, value = limits.pop()
    if op in (">", ">="):
        return _thresholds([("green", None), ("red", value)])
    if op in ("<", "<="):
        return _thresholds([("red", None), ("green", value)])
    return None


# --- alert panels ---------------------------------------------------------------------------


def _section_title(ref: RunbookRef) -> str:
    suffix = f" (#{anchor(ref.section, ref.occurrence)})" if ref.occurrence else ""
    return f"{ref.section}{suffix}"


def _describe(rule: AlertRule, url: str) -> str:
    wait = f" for {rule.for_}" if rule.for_ not in ("0s", "0") else ""
    return (
        f"**{rule.alert}** ({rule.severity}) fires when\n\n"
        f"```\n{rule.expr.strip()}\n```\n\n"
        f"holds{wait}.\n\n"
        f"Runbook ({rule.runbook.doc}): [{_section_title(rule.runbook)}]({url})"
    )


def alert_panel(rule: AlertRule, bases: dict[str, str]) -> Json:
    url = runbook_url(rule.runbook, bases)
    links = [_link(f"Runbook: {_section_title(rule.runbook)}", url)]
    title = rule.summary.removesuffix(".")
    description = _describe(rule, url)
    found = _shown(conditions(rule.expr))
    refs = [chr(ord("A") + i) for i in range(len(found))]
    targets = [target(scoped(c.query, SCOPE), ref) for c, ref in zip(found, refs, strict=True)]
    bad = {c.fires_on(0.0) for c in found}
    if all(_is_state(c) for c in found) and len(bad) == 1:
        colours = BAD_IS_ZERO if bad.pop() else BAD_IS_ONE
        return stat(
            title, targets, "bool_yes_no", thresholds=colours, description=description, links=links
        )
    units = [infer_unit(t["expr"]) for t in targets]
    for t, unit in zip(targets, units, strict=True):
        if unit == "dateTimeFromNow":  # a bare timestamp in seconds; Grafana's are in ms
            t["expr"] = f"1000 * ({t['expr']})"
    # One threshold line for the panel when every series has the same one on the same axis;
    # else each series its own.
    limited = [(c, u) for c, u in zip(found, units, strict=True) if c.threshold is not None]
    shared = len({(c.firing_op, c.threshold) for c, _ in limited}) == 1 and all(
        u == units[0] for _, u in limited
    )
    thresholds = _line_thresholds(found) if shared else None
    overrides = []
    for condition, ref, unit in zip(found, refs, units, strict=True):
        properties: list[Json] = []
        if unit != units[0]:
            properties.append({"id": "unit", "value": unit})
        if not shared and (line := _line_thresholds([condition])) is not None:
            properties.append({"id": "thresholds", "value": line})
            properties.append({"id": "custom.thresholdsStyle", "value": {"mode": "dashed"}})
        if properties:
            matcher = {"id": "byFrameRefID", "options": ref}
            overrides.append({"matcher": matcher, "properties": properties})
    return timeseries(
        title,
        targets,
        units[0],
        description=description,
        links=links,
        thresholds=thresholds,
        overrides=overrides,
    )


# --- first-look and self-health panels ------------------------------------------------------


@dataclass(frozen=True)
class Tile:
    """A hand-written panel: queries are written plain and narrowed by scoped()."""

    title: str
    queries: tuple[tuple[str, str], ...]  # (expr, legend)
    unit: str
    description: str
    kind: Literal["stat", "timeseries", "value"] = "timeseries"
    bad: Literal[0, 1] | None = None  # stat of a 0/1 state: the bad value
    thresholds: Json | None = None
    width: int = 12
    height: int = 8

    def panel(self, links: Sequence[Json]) -> Json:
        instant = self.kind == "value"
        targets = [
            target(scoped(expr, SCOPE), chr(ord("A") + i), legend, instant)
            for i, (expr, legend) in enumerate(self.queries)
        ]
        if self.kind == "timeseries":
            return timeseries(
                self.title,
                targets,
                self.unit,
                description=self.description,
                links=links,
                thresholds=self.thresholds,
            )
        if self.bad is not None:
            colours = BAD_IS_ZERO if self.bad == 0 else BAD_IS_ONE
        else:
            colours = self.thresholds or NEUTRAL
        text = "name" if self.unit == "none" else "value_and_name"
        return stat(
            self.title,
            targets,
            self.unit,
            thresholds=colours,
            description=self.description,
            links=links,
            text_mode=text,
        )


def state(title: str, expr: str, legend: str, bad: Literal[0, 1], description: str) -> Tile:
    return Tile(
        title, ((expr, legend),), "bool_yes_no", description, "stat", bad, width=8, height=5
    )


def value(
    title: str, expr: str, legend: str, unit: str, description: str, *, limits: Json | None = None
) -> Tile:
    return Tile(title, ((expr, legend),), unit, description, "value", None, limits, 8, 5)


def graph(title: str, queries: Iterable[tuple[str, str]], unit: str, description: str) -> Tile:
    return Tile(title, tuple(queries), unit, description)


@dataclass(frozen=True)
class FixedRow:
    title: str
    tiles: tuple[Tile, ...]
    runbook: RunbookRef | None = None


DISK = graph(
    "Disk space used",
    [("1 - botwatch_filesystem_avail_bytes / botwatch_filesystem_size_bytes", "{{mountpoint}}")],
    "percentunit",
    "Share of each filesystem no longer available to unprivileged writers (`df -h`).",
)


MEMORY = graph(
    "Host memory used",
    [("1 - botwatch_memory_available_bytes / botwatch_memory_total_bytes", "memory")],
    "percentunit",
    "Share of RAM not available to new allocations (`free -h`).",
)
PROBES = state(
    "Probes succeeding",
    "botwatch_probe_success",
    "{{probe}}",
    0,
    "Last check of each probe (health endpoints, ports, databases, DNS, WebSockets).",
)

TRADER_BOT_FIRST_LOOK = FixedRow(
    "First look: containers, health, resources",
    (
        state(
            "Containers running",
            'botwatch_container_state{state="running"}',
            "{{container}}",
            0,
            "1 while the container is running (`docker compose ps`).",
        ),
        state(
            "Containers unhealthy",
            'botwatch_container_health{status="unhealthy"}',
            "{{container}}",
            1,
            "1 while the container's own health check fails.",
        ),
        PROBES,
        value(
            "Container restarts in the time range",
            "increase(botwatch_container_restarts_total[$__range])",
            "{{container}}",
            "short",
            "Restarts the engine made over the dashboard's time range.",
            limits=ANY_IS_BAD,
        ),
        value(
            "Container exit code",
            "botwatch_container_exit_code",
            "{{container}}",
            "short",
            "Exit code of each container's last run (137: killed, often by the OOM killer).",
            limits=ANY_IS_BAD,
        ),
        value(
            "OOM kills in the time range",
            "increase(botwatch_container_oom_kills_total[$__range])",
            "{{container}}",
            "short",
            "Runs ended by the OOM killer over the dashboard's time range.",
            limits=ANY_IS_BAD,
        ),
        graph(
            "Container memory (working set)",
            [("botwatch_container_memory_working_set_bytes", "{{container}}")],
            "bytes",
            "Memory in use by each container, page cache excluded (`docker stats`).",
        ),
        graph(
            "Container CPU",
            [("rate(botwatch_container_cpu_seconds_total[5m])", "{{container}}")],
            "percentunit",
            "CPU time per second: 100 % is one core (`docker stats`).",
        ),
        DISK,
        MEMORY,
        graph(
            "Docker disk use",
            [
                ("botwatch_docker_volume_size_bytes", "volume {{volume}}"),
                ("botwatch_docker_images_size_bytes", "images"),
                ("botwatch_docker_build_cache_size_bytes", "build cache"),
            ],
            "bytes",
            "What `docker system df` shows: volumes, images and the build cache.",
        ),
        graph(
            "Log rule matches",
            [
                (
                    "sum by (source, rule) (rate(botwatch_log_matches_total[5m])) > 0",
                    "{{source}}: {{rule}}",
                )
            ],
            "cps",
            "Lines per second each log rule matches (errors, 429s, circuit breaker, ...).",
        ),
    ),
    RunbookRef(doc="trader-bot", section="시스템 상태 한눈에 확인"),
)

ALPHAENGINE_FIRST_LOOK = FixedRow(
    "First look: units, health, resources",
    (
        state(
            "Units active",
            'botwatch_systemd_unit_state{state="active"}',
            "{{unit}}",
            0,
            "1 while the unit is active (`systemctl status alphaengine-*`).",
        ),
        state(
            "Units failed",
            'botwatch_systemd_unit_state{state="failed"}',
            "{{unit}}",
            1,
            "1 while the unit is in the failed state.",
        ),
        PROBES,
        value(
            "Service restarts in the time range",
            "increase(botwatch_systemd_service_restarts_total[$__range])",
            "{{unit}}",
            "short",
            "Automatic restarts systemd made over the dashboard's time range.",
            limits=ANY_IS_BAD,
        ),
        state(
            "SQLite integrity",
            "botwatch_sqlite_integrity_ok",
            "{{db}}",
            0,
            "Last `PRAGMA quick_check` of each database: 1 ok.",
        ),
        state(
            "Backup fresh",
            "botwatch_backup_fresh",
            "{{set}}",
            0,
            "1 while the newest backup is younger than its configured max_age.",
        ),
        graph(
            "Unit and process memory",
            [
                ("botwatch_systemd_unit_memory_bytes", "unit {{unit}}"),
                ("botwatch_process_resident_memory_bytes", "process {{process}}"),
            ],
            "bytes",
            "The units' MemoryCurrent and the resident memory of the bot's processes.",
        ),
        graph(
            "Process CPU",
            [("sum by (process) (rate(botwatch_process_cpu_seconds_total[5m]))", "{{process}}")],
            "percentunit",
            "CPU time per second, user and system: 100 % is one core (`top`).",
        ),
        DISK,
        MEMORY,
        graph(
            "Open files against the limit",
            [("botwatch_process_worst_fd_ratio", "{{process}}")],
            "percentunit",
            "Open file descriptors over the soft limit, for the process nearest its own.",
        ),
        graph(
            "Established connections",
            [("botwatch_process_established_connections", "{{process}} {{direction}} {{port}}")],
            "short",
            "Established TCP connections by remote (outbound) or local (inbound) port.",
        ),
        graph(
            "SQLite WAL size",
            [("botwatch_sqlite_wal_bytes", "{{db}}")],
            "bytes",
            "Size of each database's -wal file: it grows while nothing checkpoints it.",
        ),
        graph(
            "WebSocket feed silent for",
            [("time() - botwatch_ws_last_message_timestamp_seconds", "{{probe}}")],
            "s",
            "Seconds since each WebSocket probe last received a message.",
        ),
        graph(
            "Log rule matches",
            [
                (
                    "sum by (source, rule) (rate(botwatch_log_matches_total[5m])) > 0",
                    "{{source}}: {{rule}}",
                )
            ],
            "cps",
            "Lines per second each log rule matches (errors, 429s, API key errors, ...).",
        ),
    ),
    RunbookRef(doc="alphaengine", section="진단 명령어 모음"),
)

PER_MINUTE = "cpm"
SELF_HEALTH = (
    FixedRow(
        "Exporter",
        (
            state(
                "Scraped",
                "up",
                "{{instance}}",
                0,
                "Prometheus' own `up`: 1 when the last scrape of botwatch succeeded.",
            ),
            value(
                "Version",
                "botwatch_build_info",
                "{{version}} (python {{python}}, {{log_engine}})",
                "none",
                "botwatch's version, its Python and its log rule engine (hyperscan or re).",
            ),
            state(
                "Config reload successful",
                "botwatch_config_last_reload_successful",
                "{{instance}}",
                0,
                "0 after a SIGHUP with a bad config (the previous config keeps running).",
            ),
            value(
                "Config loaded",
                "botwatch_config_last_reload_success_timestamp_seconds * 1000",
                "{{instance}}",
                "dateTimeFromNow",
                "When the running config was loaded.",
            ),
            value(
                "Alerts in the runbook map",
                "count by (instance) (botwatch_alert_runbook_info)",
                "{{instance}}",
                "short",
                "Alerts botwatch serves a runbook link for (botwatch_alert_runbook_info).",
            ),
            graph(
                "Scrape duration",
                [("scrape_duration_seconds", "{{instance}}")],
                "s",
                "How long Prometheus took to scrape botwatch.",
            ),
            graph(
                "Samples per scrape",
                [("scrape_samples_scraped", "{{instance}}")],
                "short",
                "Series in each scrape of botwatch.",
            ),
        ),
    ),
    FixedRow(
        "Collectors",
        (
            state(
                "Collectors up",
                "botwatch_collector_up",
                "{{collector}}",
                0,
                "1 if the collector's last round succeeded.",
            ),
            graph(
                "Collector errors",
                [("60 * rate(botwatch_collector_errors_total[5m])", "{{collector}}")],
                PER_MINUTE,
                "Failed rounds per minute.",
            ),
            graph(
                "Collector round duration",
                [("botwatch_collector_duration_seconds", "{{collector}}")],
                "s",
                "How long each poller's last round took.",
            ),
            graph(
                "Since the last successful round",
                [("time() - botwatch_collector_last_success_timestamp_seconds", "{{collector}}")],
                "s",
                "Seconds since each collector last succeeded.",
            ),
        ),
    ),
    FixedRow(
        "Checkpoints",
        (
            graph(
                "Checkpoint write errors",
                [
                    ("60 * rate(botwatch_log_checkpoint_errors_total[5m])", "logs"),
                    ("60 * rate(botwatch_docker_checkpoint_errors_total[5m])", "docker"),
                    ("60 * rate(botwatch_oom_checkpoint_errors_total[5m])", "oom"),
                ],
                PER_MINUTE,
                "Failed writes of the checkpoints under state_dir, per minute: counts survive "
                "a restart only while these succeed.",
            ),
            graph(
                "Since the last log checkpoint",
                [("time() - botwatch_log_checkpoint_last_success_timestamp_seconds", "logs")],
                "s",
                "Seconds since the log counters and positions were last saved.",
            ),
        ),
    ),
    FixedRow(
        "Probes",
        (
            PROBES,
            graph(
                "Probe duration",
                [("botwatch_probe_duration_seconds", "{{probe}}")],
                "s",
                "How long each probe's last check took.",
            ),
            graph(
                "Probe failures by reason",
                [
                    (
                        "sum by (probe, reason) (60 * rate(botwatch_probe_failures_total[5m])) > 0",
                        "{{probe}}: {{reason}}",
                    )
                ],
                PER_MINUTE,
                "Failed checks per minute, by probe and reason.",
            ),
            graph(
                "Since the last successful check",
                [("time() - botwatch_probe_last_success_timestamp_seconds", "{{probe}}")],
                "s",
                "Seconds since each probe last succeeded.",
            ),
        ),
    ),
    FixedRow(
        "Log sources",
        (
            state(
                "Log sources up",
                "botwatch_log_source_up",
                "{{source}}",
                0,
                "0 while the file, directory, journal or container log cannot be read.",
            ),
            state(
                "Kernel log read",
                "botwatch_oom_kernel_log_up",
                "{{instance}}",
                0,
                "1 while the oom collector reads the kernel log (needs CAP_SYSLOG).",
            ),
            graph(
                "Lines read",
                [("rate(botwatch_log_lines_total[5m])", "{{source}}")],
                "cps",
                "Log lines read per second, by source.",
            ),
            graph(
                "Since the last line",
                [("time() - botwatch_log_last_line_timestamp_seconds", "{{source}}")],
                "s",
                "Seconds since each source last delivered a line: a silent log is a symptom.",
            ),
            graph(
                "Read errors, truncated lines, label overflow",
                [
                    ("60 * rate(botwatch_log_read_errors_total[5m])", "read errors {{source}}"),
                    ("60 * rate(botwatch_log_truncated_lines_total[5m])", "truncated {{source}}"),
                    (
                        "60 * rate(botwatch_log_label_overflow_total[5m])",
                        "overflow {{source}} {{rule}}",
                    ),
                ],
                PER_MINUTE,
                "Per minute: failed reads, lines cut at 1 MiB, and matches counted as `other` "
                "because a label had too many values.",
            ),
        ),
    ),
)

FIXED_ROWS: dict[str, tuple[FixedRow, ...]] = {
    "trader-bot": (TRADER_BOT_FIRST_LOOK,),
    "alphaengine": (ALPHAENGINE_FIRST_LOOK,),
    "botwatch": SELF_HEALTH,
}


# --- layout and assembly --------------------------------------------------------------------


class Layout:
    """Places panels left to right, top to bottom, on Grafana's 24-column grid."""

    def __init__(self) -> None:
        self.panels: list[Json] = []
        self.x = 0
        self.y = 0
        self.line_height = 0

    def _new_line(self) -> None:
        self.y += self.line_height
        self.x = 0
        self.line_height = 0

    def row(self, panel_id: int, panel: Json) -> None:
        self._new_line()
        self.panels.append({"id": panel_id, "gridPos": self._grid(GRID_WIDTH, 1)} | panel)
        self.y += 1

    def add(self, panel_id: int, panel: Json, width: int = 12, height: int = 8) -> None:
        if self.x + width > GRID_WIDTH:
            self._new_line()
        self.panels.append({"id": panel_id, "gridPos": self._grid(width, height)} | panel)
        self.x += width
        self.line_height = max(self.line_height, height)

    def _grid(self, width: int, height: int) -> Json:
        return {"h": height, "w": width, "x": self.x, "y": self.y}


def _variables() -> list[Json]:
    def query(name: str, label: str, expr: str) -> Json:
        return {
            "type": "query",
            "name": name,
            "label": label,
            "datasource": DATASOURCE,
            "definition": expr,
            "query": {"qryType": 1, "query": expr, "refId": "PrometheusVariableQueryEditor"},
            "refresh": 2,
            "includeAll": True,
            "multi": True,
            "allValue": ".*",
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
            "options": [],
            "regex": "",
            "sort": 1,
            "hide": 0,
        }

    return [
        {
            "type": "datasource",
            "name": "datasource",
            "label": "Data source",
            "query": "prometheus",
            "current": {"selected": True, "text": DATASOURCE_NAME, "value": DATASOURCE_UID},
            "includeAll": False,
            "multi": False,
            "options": [],
            "regex": "",
            "refresh": 1,
            "hide": 0,
        },
        query("job", "Job", "label_values(botwatch_build_info, job)"),
        query("instance", "Instance", 'label_values(botwatch_build_info{job=~"$job"}, instance)'),
    ]


def _sections(group: Group) -> list[tuple[RunbookRef, list[int]]]:
    """The runbook sections the group's alerts link to, in catalog order, each with the
    indexes of its alerts."""
    sections: dict[RunbookRef, list[int]] = {}
    for index, rule in enumerate(group.rules):
        sections.setdefault(rule.runbook, []).append(index)
    return list(sections.items())


def dashboard(group: Group, bases: dict[str, str]) -> Json:
    if PANEL_ID_BASE + len(group.rules) > SECTION_ROW_ID_BASE:
        raise ValueError(f"{group.name}: too many alerts for the panel id ranges")
    layout = Layout()
    fixed = iter(FIXED_PANELS)
    layout.add(next(fixed), alerts_table(group.stack), GRID_WIDTH, 8)
    for fixed_row in FIXED_ROWS.get(group.name, ()):
        title = fixed_row.title
        links: list[Json] = []
        if fixed_row.runbook is not None:
            url = runbook_url(fixed_row.runbook, bases)
            links = [_link(f"Runbook: {_section_title(fixed_row.runbook)}", url)]
        layout.row(next(fixed), row(title))
        for tile in fixed_row.tiles:
            layout.add(next(fixed), tile.panel(links), tile.width, tile.height)
    for k, (ref, indexes) in enumerate(_sections(group)):
        layout.row(SECTION_ROW_ID_BASE + k, row(f"Runbook: {_section_title(ref)}"))
        for index in indexes:
            layout.add(PANEL_ID_BASE + index, alert_panel(group.rules[index], bases))
    firing = f'ALERTS{{alertstate="firing", stack="{group.stack}"}}'
    return {
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                },
                {
                    "datasource": DATASOURCE,
                    "enable": True,
                    "expr": firing,
                    "iconColor": "red",
                    "name": "Firing alerts",
                    "step": "60s",
                    "tagKeys": "severity",
                    "titleFormat": "{{alertname}}",
                    "useValueForTime": False,
                },
            ]
        },
        "description": (
            f"Generated by `botwatch-exporter render` from exporter/runbooks/alerts/"
            f"{group.name}.yaml: edit that, not this."
        ),
        "editable": False,
        "fiscalYearStartMonth": 0,
        "graphTooltip": 1,
        "id": None,
        "links": [
            {
                "asDropdown": False,
                "icon": "external link",
                "includeVars": True,
                "keepTime": True,
                "tags": ["botwatch"],
                "targetBlank": False,
                "title": "botwatch",
                "type": "dashboards",
            }
        ],
        "panels": layout.panels,
        "refresh": "30s",
        "schemaVersion": SCHEMA_VERSION,
        "tags": ["botwatch", group.stack],
        "templating": {"list": _variables()},
        "time": {"from": "now-6h", "to": "now"},
        "timepicker": {},
        "timezone": "browser",
        "title": TITLES.get(group.name, f"botwatch: {group.name}"),
        "uid": f"botwatch-{group.name}",
        "version": 1,
        "weekStart": "",
    }


def render_dashboards(catalog: Catalog, bases: dict[str, str] | None = None) -> dict[str, str]:
    """The dashboards, by file name (grafana/dashboards/botwatch-{group}.json)."""
    merged = {**PLACEHOLDER_BASES, **(bases or {})}
    return {
        f"botwatch-{group.name}.json": json.dumps(
            dashboard(group, merged), indent=2, ensure_ascii=False
        )
        + "\n"
        for group in catalog.groups
    }
