"""The Grafana dashboards: committed = rendered, every alert has its panel, and the rules every
panel follows (units, datasource variable, $job/$instance, $__rate_interval).

The catalog grows while botwatch does; these tests hold for whatever it holds, and
SAMPLE_RULES adds expressions of every shape the generator must read.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from exporter.runbooks.catalog import (
    PANEL_ID_BASE,
    AlertRule,
    Catalog,
    Group,
    dashboard_url,
    load_catalog,
    runbook_url,
)
from exporter.runbooks.dashboards import (
    DATASOURCE_UID,
    FIXED_ROWS,
    GRID_WIDTH,
    infer_unit,
    render_dashboards,
)
from exporter.runbooks.dashquery import Condition, conditions, scoped, shape
from exporter.runbooks.slug import anchor, headings
from tests.support import REPO

DASHBOARDS = REPO / "grafana" / "dashboards"
PROVISIONING = REPO / "grafana" / "provisioning"
RERENDER = (
    "re-render grafana/dashboards/ (botwatch-exporter render, or render_dashboards("
    "load_catalog()) written to grafana/dashboards/{name})"
)

Json = dict[str, Any]

# Expressions of every shape the generator must read, in all three groups.
SAMPLE_RULES: dict[str, list[dict[str, Any]]] = {
    "trader-bot": [
        {
            "alert": "SampleProbeDown",
            "expr": 'botwatch_probe_success{probe="trader-api-health"} == 0',
            "runbook": {"doc": "trader-bot", "section": "시나리오 1: API 서버가 시작되지 않음"},
        },
        {
            "alert": "SampleRestarts",
            "expr": 'increase(botwatch_container_restarts_total{container="trader-api"}[15m]) > 3',
            "runbook": {"doc": "trader-bot", "section": "시나리오 1: API 서버가 시작되지 않음"},
        },
        {
            "alert": "SampleRateLimited",
            "expr": 'sum by (source) (rate(botwatch_log_matches_total{rule="rate_limited"}[5m]))'
            " > 0.5",
            "runbook": {"doc": "trader-bot", "section": "시나리오 3: Rate Limit 초과 (429 에러)"},
        },
        {
            "alert": "SampleDiskFilling",
            "expr": "predict_linear(botwatch_filesystem_avail_bytes[6h], 4 * 3600) < 0\n"
            "and botwatch_filesystem_avail_bytes / botwatch_filesystem_size_bytes < 0.2",
            "runbook": {"doc": "trader-bot", "section": "시나리오 9: 디스크 공간 부족"},
        },
        {
            "alert": "SampleGatedMemory",
            "expr": "botwatch_memory_available_bytes / botwatch_memory_total_bytes < 0.1\n"
            'and on(instance, job) botwatch_log_source_up{source=~".*trader.*"}',
            "runbook": {"doc": "trader-bot", "section": "시나리오 10: 메모리 부족 (OOM)"},
        },
        {
            "alert": "SampleNothingRuns",
            "expr": 'group by (instance, job) (botwatch_collector_up{collector="docker"} == 1)\n'
            'unless on(instance, job) botwatch_container_state{state="running"} == 1',
            "runbook": {"doc": "trader-bot", "section": "전체 서비스 복구"},
        },
        {
            "alert": "SampleRedisFull",
            "expr": "botwatch_redis_memory_used_bytes > 0.9 * botwatch_redis_memory_max_bytes",
            "runbook": {"doc": "trader-bot", "section": "시나리오 5: API 응답이 느림"},
        },
    ],
    "alphaengine": [
        {
            "alert": "SampleFeedSilent",
            "expr": 'time() - botwatch_ws_last_message_timestamp_seconds{probe="binance"} > 120',
            "runbook": {"doc": "alphaengine", "section": "WebSocket 연결 실패"},
        },
        {
            "alert": "SampleRestartLoop",
            "expr": "sum by (unit) (increase(botwatch_systemd_service_restarts_total[10m])) > 2\n"
            'unless on (unit) botwatch_systemd_unit_state{state="inactive"} == 1',
            "runbook": {"doc": "alphaengine", "section": "증상", "occurrence": 6},
        },
        {
            "alert": "SampleReadonly",
            "expr": "max by (mountpoint) (botwatch_filesystem_readonly) == 1",
            "runbook": {"doc": "alphaengine", "section": "DB 손상"},
        },
        {
            "alert": "SampleBackupOld",
            "expr": "botwatch_backup_last_timestamp_seconds < 1",
            "runbook": {"doc": "alphaengine", "section": "DB 손상"},
        },
    ],
    "botwatch": [
        {
            "alert": "SampleCollectorGone",
            "expr": 'absent(botwatch_collector_up{collector="host"})',
            "runbook": {"doc": "botwatch", "section": "Collector down"},
        },
        {
            "alert": "SampleTargetDown",
            "expr": 'up{job="botwatch"} == 0',
            "runbook": {"doc": "botwatch", "section": "Target down"},
        },
        {
            "alert": "SampleWatchdog",
            "expr": "vector(1)",
            "runbook": {"doc": "botwatch", "section": "Target down"},
        },
        {
            "alert": "SampleCpu",
            "expr": "rate(botwatch_cpu_seconds_total{mode!='idle'}[2m] offset 1m) >= 0.9",
            "runbook": {"doc": "botwatch", "section": "Target down"},
        },
    ],
}


def sample_catalog() -> Catalog:
    groups = []
    for name, rules in SAMPLE_RULES.items():
        parsed = [
            AlertRule.model_validate(
                {
                    "for": "5m",
                    "severity": "warning",
                    "summary": f"{rule['alert']} is a sample symptom.",
                    "description": "Sample on {{ $labels.instance }}.",
                    **rule,
                }
            )
            for rule in rules
        ]
        groups.append(Group(name=name, stack=name, rules=parsed))
    return Catalog(groups=groups)


def catalogs() -> list[Catalog]:
    return [load_catalog(), sample_catalog()]


CATALOG_IDS = ["packaged", "sample"]


def rendered(catalog: Catalog, bases: dict[str, str] | None = None) -> dict[str, Json]:
    """Dashboards by uid."""
    found = {}
    for text in render_dashboards(catalog, bases).values():
        board = json.loads(text)
        found[board["uid"]] = board
    return found


def panels(board: Json) -> Iterator[Json]:
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels", [])


def exprs(board: Json) -> Iterator[str]:
    for panel in panels(board):
        for target in panel.get("targets", []):
            yield target["expr"]


# --- committed = rendered -------------------------------------------------------------------


def test_committed_dashboards_equal_a_fresh_render() -> None:
    expected = render_dashboards(load_catalog())
    committed = {p.name for p in DASHBOARDS.glob("*.json")}
    assert committed == set(expected), f"grafana/dashboards/ holds other files: {RERENDER}"
    for name, text in expected.items():
        assert (DASHBOARDS / name).read_text(encoding="utf-8") == text, (
            f"grafana/dashboards/{name} is stale: {RERENDER}"
        )


def test_render_is_deterministic_and_one_dashboard_per_group() -> None:
    catalog = load_catalog()
    assert render_dashboards(catalog) == render_dashboards(catalog)
    boards = rendered(catalog)
    assert set(boards) == {f"botwatch-{g.name}" for g in catalog.groups}
    assert {f"botwatch-{g}.json" for g in ("trader-bot", "alphaengine", "botwatch")} <= set(
        render_dashboards(catalog)
    )
    for board in boards.values():
        assert board["schemaVersion"] >= 39
        assert board["editable"] is False
        assert board["title"].startswith("botwatch: ")


# --- every alert has its panel --------------------------------------------------------------


@pytest.mark.parametrize("catalog", catalogs(), ids=CATALOG_IDS)
def test_every_alert_has_its_panel_with_the_runbook_link(catalog: Catalog) -> None:
    boards = rendered(catalog)
    for group, index, rule in catalog.alerts():
        # Where the rule's dashboard_url annotation points.
        link = urlsplit(dashboard_url(group, index))
        uid = link.path.rsplit("/", 1)[-1]
        panel_id = int(parse_qs(link.query)["viewPanel"][0])
        assert panel_id == PANEL_ID_BASE + index
        matching = [p for p in panels(boards[uid]) if p["id"] == panel_id]
        assert len(matching) == 1, f"{rule.alert}: no panel {panel_id} in {uid}"
        panel = matching[0]
        assert panel["type"] in ("timeseries", "stat")
        assert panel["title"] == rule.summary.removesuffix(".")
        url = runbook_url(rule.runbook)
        assert [link["url"] for link in panel["links"]] == [url]
        assert panel["links"][0]["title"].startswith(f"Runbook: {rule.runbook.section}")
        assert rule.alert in panel["description"]
        assert url in panel["description"]
        assert panel["targets"], rule.alert


@pytest.mark.parametrize("catalog", catalogs(), ids=CATALOG_IDS)
def test_alert_panels_sit_in_the_row_of_their_runbook_section(catalog: Catalog) -> None:
    boards = rendered(catalog)
    for group in catalog.groups:
        current_row = None
        placed: dict[int, str] = {}
        for panel in boards[f"botwatch-{group.name}"]["panels"]:
            if panel["type"] == "row":
                current_row = panel["title"]
            elif panel["id"] >= PANEL_ID_BASE:
                assert current_row is not None
                placed[panel["id"] - PANEL_ID_BASE] = current_row
        assert sorted(placed) == list(range(len(group.rules)))
        for index, rule in enumerate(group.rules):
            assert placed[index].startswith(f"Runbook: {rule.runbook.section}")
        # One row per section: alerts sharing a section share a row.
        assert len(set(placed.values())) == len({r.runbook for r in group.rules})


def test_other_base_urls_change_every_runbook_link() -> None:
    bases = {
        "trader-bot": "https://git.example.com/ops/trader-bot/README.md",
        "alphaengine": "https://git.example.com/ops/alphaengine/README.md",
        "botwatch": "https://git.example.com/ops/botwatch/docs/botwatch-runbook.md",
    }
    catalog = sample_catalog()
    boards = rendered(catalog, bases)
    for group, index, rule in catalog.alerts():
        board = boards[f"botwatch-{group.name}"]
        panel = next(p for p in panels(board) if p["id"] == PANEL_ID_BASE + index)
        assert panel["links"][0]["url"] == runbook_url(rule.runbook, bases)
        assert panel["links"][0]["url"].startswith(bases[rule.runbook.doc] + "#")
    text = "".join(render_dashboards(catalog, bases).values())
    assert "runbooks.example.invalid" not in text
    # Bases left out keep their placeholder rather than failing.
    partial = render_dashboards(catalog, {"trader-bot": bases["trader-bot"]})
    assert bases["trader-bot"] in partial["botwatch-trader-bot.json"]


def test_a_section_repeated_in_its_document_is_told_apart_by_its_anchor() -> None:
    board = rendered(sample_catalog())["botwatch-alphaengine"]
    rows = [p["title"] for p in board["panels"] if p["type"] == "row"]
    assert f"Runbook: 증상 (#{anchor('증상', 6)})" in rows
    assert anchor("증상", 6) == "증상-6"


# --- rules every panel follows --------------------------------------------------------------


@pytest.mark.parametrize("catalog", catalogs(), ids=CATALOG_IDS)
def test_every_panel_has_a_unit_and_the_datasource_variable(catalog: Catalog) -> None:
    for board in rendered(catalog).values():
        for panel in panels(board):
            if panel["type"] == "row":
                continue
            where = f"{board['uid']} panel {panel['id']} {panel['title']!r}"
            assert panel["fieldConfig"]["defaults"].get("unit"), where
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, where
            assert panel["targets"], where
            for target in panel["targets"]:
                assert target["datasource"]["uid"] == "${datasource}", where
            assert panel["title"] and panel["description"], where


RATE_CALL = re.compile(r"\b(i?rate)\s*\(([^()\[\]]|\([^()]*\))*?\[([^\]]*)\]")


@pytest.mark.parametrize("catalog", catalogs(), ids=CATALOG_IDS)
def test_rates_use_rate_interval_and_queries_follow_job_and_instance(catalog: Catalog) -> None:
    for board in rendered(catalog).values():
        for expr in exprs(board):
            for match in RATE_CALL.finditer(expr):
                assert match.group(3) == "$__rate_interval", expr
            # The alerts table's ALERTS come from Prometheus' rules; `vector(1)` reads nothing.
            if "ALERTS" not in expr and shape(expr).metrics:
                assert 'job=~"$job"' in expr, expr
                assert 'instance=~"$instance"' in expr, expr


@pytest.mark.parametrize("catalog", catalogs(), ids=CATALOG_IDS)
def test_template_variables_and_panel_ids(catalog: Catalog) -> None:
    for board in rendered(catalog).values():
        variables = {v["name"]: v for v in board["templating"]["list"]}
        assert {"datasource", "job", "instance"} <= set(variables)
        assert variables["datasource"]["type"] == "datasource"
        assert variables["datasource"]["query"] == "prometheus"
        assert variables["datasource"]["current"]["value"] == DATASOURCE_UID
        for name in ("job", "instance"):
            assert variables[name]["datasource"]["uid"] == "${datasource}"
            assert variables[name]["includeAll"] and variables[name]["allValue"] == ".*"
        ids = [p["id"] for p in panels(board)]
        assert len(ids) == len(set(ids)), board["uid"]
        alerts = len(next(g for g in catalog.groups if f"botwatch-{g.name}" == board["uid"]).rules)
        alert_ids = range(PANEL_ID_BASE, PANEL_ID_BASE + alerts)
        for panel in panels(board):
            if panel["type"] != "row" and panel["id"] not in alert_ids:
                assert 0 < panel["id"] < PANEL_ID_BASE, panel["title"]


@pytest.mark.parametrize("catalog", catalogs(), ids=CATALOG_IDS)
def test_panels_fit_the_grid_without_overlapping(catalog: Catalog) -> None:
    for board in rendered(catalog).values():
        taken: set[tuple[int, int]] = set()
        for panel in board["panels"]:
            grid = panel["gridPos"]
            assert grid["x"] >= 0 and grid["x"] + grid["w"] <= GRID_WIDTH, panel["title"]
            cells = {
                (x, y)
                for x in range(grid["x"], grid["x"] + grid["w"])
                for y in range(grid["y"], grid["y"] + grid["h"])
            }
            assert not cells & taken, f"{board['uid']}: {panel['title']} overlaps"
            taken |= cells


def test_the_alerts_table_joins_alerts_with_their_runbook_links() -> None:
    for name, board in rendered(load_catalog()).items():
        table = board["panels"][0]
        assert table["type"] == "table"
        expr = table["targets"][0]["expr"]
        stack = name.removeprefix("botwatch-")
        assert f'ALERTS{{alertstate="firing", stack="{stack}"}}' in expr
        assert "group_left (runbook, section, runbook_url)" in expr
        assert "botwatch_alert_runbook_info" in expr
        assert table["targets"][0]["format"] == "table"
        assert table["targets"][0]["instant"] is True
        overrides = {
            o["matcher"]["options"]: {p["id"]: p["value"] for p in o["properties"]}
            for o in table["fieldConfig"]["overrides"]
        }
        assert overrides["section"]["links"][0]["url"] == "${__data.fields.runbook_url}"
        assert overrides["runbook_url"]["links"][0]["url"] == "${__value.raw}"


def test_the_self_health_dashboard_covers_botwatch_itself() -> None:
    board = rendered(load_catalog())["botwatch-botwatch"]
    text = "\n".join(exprs(board))
    for metric in (
        "botwatch_collector_up",
        "botwatch_collector_errors_total",
        "botwatch_collector_duration_seconds",
        "scrape_duration_seconds",
        "botwatch_log_checkpoint_errors_total",
        "botwatch_probe_success",
        "botwatch_log_source_up",
    ):
        assert metric in text, metric


# --- derived queries ------------------------------------------------------------------------


def test_conditions_drop_comparisons_with_constants_and_split_set_operators() -> None:
    assert conditions('botwatch_probe_success{probe="a"} == 0') == [
        Condition('botwatch_probe_success{probe="a"}', "==", 0.0)
    ]
    assert conditions("0.5 < rate(x[5m])") == [Condition("rate(x[5m])", ">", 0.5)]
    assert conditions("x > 64 * 1024 ^ 2") == [Condition("x", ">", 64 * 1024**2)]
    assert conditions("(a > 1 or b < -2) unless on (job) c == 1 and d") == [
        Condition("a", ">", 1.0),
        Condition("b", "<", -2.0, "or"),
        Condition("c", "==", 1.0, "unless"),
        Condition("d", via="and"),
    ]
    assert conditions("a > bool 0.9 * b") == [
        Condition("a", ">", None),
        Condition("0.9 * b", "<", None),
    ]
    assert conditions('label_replace(x > 5, "k", "v", "", "") or y') == [
        Condition('label_replace(x, "k", "v", "", "")', ">", 5.0),
        Condition("y", via="or"),
    ]
    assert conditions('absent(x{a="b == c"})') == [Condition('absent(x{a="b == c"})')]
    assert conditions("a > 1 and a > 1") == [Condition("a", ">", 1.0)]
    assert conditions("a ¤ 1") == [Condition("a ¤ 1")]  # unreadable: shown as written


def test_an_exclusion_fires_on_the_opposite_of_its_comparison() -> None:
    running, excluded = conditions("x == 1 unless y == 1")
    assert (running.fires_on(1), running.fires_on(0)) == (True, False)
    assert (excluded.fires_on(1), excluded.fires_on(0)) == (False, True)
    assert excluded.firing_op == "!="


def test_scoped_narrows_every_selector_and_rate_window() -> None:
    scope = 'job=~"$job"'
    assert scoped("up", scope) == 'up{job=~"$job"}'
    assert scoped('x{a="b",}', scope) == 'x{a="b", job=~"$job"}'
    assert scoped('{__name__="x"}', scope) == '{__name__="x", job=~"$job"}'
    assert scoped("sum by (rate) (rate(x[5m]))", scope) == (
        'sum by (rate) (rate(x{job=~"$job"}[$__rate_interval]))'
    )
    assert scoped("increase(x[5m]) offset 1h", scope) == 'increase(x{job=~"$job"}[5m]) offset 1h'
    assert scoped("rate(x[5m:30s])", scope) == 'rate(x{job=~"$job"}[5m:30s])'
    assert scoped('label_replace(x, "a", "$1", "b", "(.*)")', scope) == (
        'label_replace(x{job=~"$job"}, "a", "$1", "b", "(.*)")'
    )
    assert scoped("a and on (instance) time() - b > 1", scope) == (
        'a{job=~"$job"} and on (instance) time() - b{job=~"$job"} > 1'
    )


@pytest.mark.parametrize(
    ("query", "unit"),
    [
        ("botwatch_container_memory_working_set_bytes", "bytes"),
        ("botwatch_probe_duration_seconds", "s"),
        ("time() - botwatch_log_last_line_timestamp_seconds", "s"),
        ("rate(botwatch_log_lines_total[1m])", "cps"),
        ("rate(botwatch_log_bytes_total[1m])", "Bps"),
        ("rate(botwatch_container_cpu_seconds_total[1m])", "percentunit"),
        ("increase(botwatch_container_restarts_total[15m])", "short"),
        ("botwatch_filesystem_avail_bytes / botwatch_filesystem_size_bytes", "percentunit"),
        ("botwatch_process_open_fds / botwatch_process_max_fds", "percentunit"),
        ("botwatch_snmp_processor_load_ratio", "percentunit"),
        ("botwatch_backup_last_timestamp_seconds", "dateTimeFromNow"),
        ("botwatch_redis_connected_clients", "short"),
    ],
)
def test_units_follow_metric_names_and_functions(query: str, unit: str) -> None:
    assert infer_unit(query) == unit


def test_sample_panels_have_the_expected_shape() -> None:
    boards = rendered(sample_catalog())
    by_title = {p["title"]: p for b in boards.values() for p in panels(b)}

    def panel(alert: str) -> Json:
        return by_title[f"{alert} is a sample symptom"]

    probe = panel("SampleProbeDown")
    assert probe["type"] == "stat"
    assert probe["fieldConfig"]["defaults"]["thresholds"]["steps"][0]["color"] == "red"
    readonly = panel("SampleReadonly")
    assert readonly["type"] == "stat"
    assert readonly["fieldConfig"]["defaults"]["thresholds"]["steps"][0]["color"] == "green"
    restarts = panel("SampleRestarts")
    assert restarts["type"] == "timeseries"
    assert "[15m]" in restarts["targets"][0]["expr"]  # the alert's own window
    assert restarts["fieldConfig"]["defaults"]["thresholds"]["steps"][1]["value"] == 3
    disk = panel("SampleDiskFilling")
    assert [t["refId"] for t in disk["targets"]] == ["A", "B"]
    assert disk["fieldConfig"]["defaults"]["unit"] == "bytes"
    # Two thresholds on two axes: each series has its own.
    overrides = {
        o["matcher"]["options"]: {p["id"]: p["value"] for p in o["properties"]}
        for o in disk["fieldConfig"]["overrides"]
    }
    assert overrides["B"]["unit"] == "percentunit"
    assert overrides["A"]["thresholds"]["steps"] == [
        {"color": "red", "value": None},
        {"color": "green", "value": 0.0},
    ]
    assert overrides["B"]["thresholds"]["steps"][1]["value"] == 0.2
    # A filter (`and on(...) x`) and a narrowing state (`unless ... == 1`) are not shown.
    gated = panel("SampleGatedMemory")
    assert [t["expr"].split("{")[0] for t in gated["targets"]] == [
        "botwatch_memory_available_bytes"
    ]
    loop = panel("SampleRestartLoop")
    assert len(loop["targets"]) == 1
    assert "increase(botwatch_systemd_service_restarts_total" in loop["targets"][0]["expr"]
    # Nothing but an exclusion: it is the symptom, red when the container is not running.
    nothing = panel("SampleNothingRuns")
    assert nothing["type"] == "stat"
    assert nothing["targets"][0]["expr"].startswith("botwatch_container_state{")
    assert nothing["fieldConfig"]["defaults"]["thresholds"]["steps"][0]["color"] == "red"
    redis = panel("SampleRedisFull")
    assert len(redis["targets"]) == 2
    assert redis["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"]["mode"] == "off"
    backup = panel("SampleBackupOld")
    assert backup["targets"][0]["expr"].startswith("1000 * (")
    assert panel("SampleFeedSilent")["fieldConfig"]["defaults"]["unit"] == "s"


# --- hand-written panels --------------------------------------------------------------------


def _documented_metrics() -> set[str]:
    """Metric names the README documents, its shorthand (`_free_bytes` after
    `botwatch_filesystem_size_bytes`) expanded generously."""
    known: set[str] = set()
    for line in (REPO / "README.md").read_text(encoding="utf-8").splitlines():
        last = None
        for name in re.findall(r"`((?:botwatch)?_[a-z0-9_]+)[`{]", line):
            if name.startswith("botwatch_"):
                known.add(name)
                last = name
            elif last is not None:
                parts = last.split("_")
                known.update("_".join(parts[:i]) + name for i in range(2, len(parts)))
    return known


def test_hand_written_panels_read_documented_metrics() -> None:
    known = _documented_metrics() | {"botwatch_alert_runbook_info"}
    for board in rendered(load_catalog()).values():
        for panel in panels(board):
            if panel["type"] == "row" or panel["id"] >= PANEL_ID_BASE:
                continue
            for target in panel["targets"]:
                for name in re.findall(r"\bbotwatch_[a-z0-9_]+", target["expr"]):
                    assert name in known, f"{panel['title']}: {name} is not in the README"


def test_first_look_rows_link_to_sections_of_the_runbooks() -> None:
    runbooks = REPO / "tests" / "fixtures" / "runbooks"
    documents = {
        doc: {h.text for h in headings((runbooks / f"{doc}.md").read_text(encoding="utf-8"))}
        for doc in ("trader-bot", "alphaengine")
    }
    for rows in FIXED_ROWS.values():
        for fixed in rows:
            if fixed.runbook is not None:
                assert fixed.runbook.section in documents[fixed.runbook.doc]


# --- provisioning ---------------------------------------------------------------------------


def test_provisioning_files_point_at_the_dashboards_and_the_datasource() -> None:
    providers = yaml.safe_load((PROVISIONING / "dashboards" / "botwatch.yaml").read_text())
    assert providers["apiVersion"] == 1
    [provider] = providers["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"]
    assert {"name", "orgId", "folder", "allowUiUpdates"} <= set(provider)

    sources = yaml.safe_load((PROVISIONING / "datasources" / "botwatch.yaml").read_text())
    assert sources["apiVersion"] == 1
    [source] = sources["datasources"]
    assert source["type"] == "prometheus"
    assert source["uid"] == DATASOURCE_UID
    assert source["access"] == "proxy"
    assert urlsplit(source["url"]).scheme in ("http", "https")
    assert re.fullmatch(r"\d+[smh]", source["jsonData"]["timeInterval"])
    for board in rendered(load_catalog()).values():
        default = next(v for v in board["templating"]["list"] if v["name"] == "datasource")
        assert default["current"] == {
            "selected": True,
            "text": source["name"],
            "value": source["uid"],
        }
