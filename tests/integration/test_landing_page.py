"""The runbook map on the real daemon: botwatch_alert_runbook_info in a scrape, and the landing
page loaded in a real headless Chromium (Debian's `chromium`), before and after a SIGHUP that
changes the links and adds a probe. Everything listens on 127.0.0.1.
"""

from __future__ import annotations

import shutil
import signal
import struct
import subprocess
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter.runbooks.catalog import PLACEHOLDER_BASES, load_catalog, runbook_url
from exporter.runbooks.info import INFO_METRIC
from tests.integration.conftest import Daemon, daemon_config
from tests.servers import free_port
from tests.support import promtool_lint, wait_for

pytestmark = pytest.mark.integration

StartDaemon = Callable[..., Daemon]
# `&` must survive HTML escaping into an href and back.
BASE_A = "https://git.example.com/ops/runbooks/blob/main/trader-bot.md?plain=0&ref=main"
BASE_B = "https://git.example.com/ops/runbooks/blob/v2/trader-bot.md"
GRAFANA = "https://grafana.ops.example.com"
WINDOW = (1400, 2400)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def chromium(url: str, profile: Path, *extra: str) -> str:
    binary = shutil.which("chromium")
    assert binary, "install Debian's chromium (a test dependency of the landing page)"
    result = subprocess.run(
        [
            binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={profile}",
            *extra,
            url,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


@dataclass
class Row:
    alert: str
    classes: list[str]
    runbook_href: str = ""
    runbook_text: str = ""
    dashboard_href: str = ""
    metrics: dict[str, str] = field(default_factory=dict)  # metric -> served | missing


class MapParser(HTMLParser):
    """The rows of the runbook map, as the browser's DOM has them."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[Row] = []
        self.summary = ""
        self.in_table = False
        self.in_runbook_link = False
        self.in_summary = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self.in_summary = tag == "p" and a.get("id") == "runbook-summary"
        if tag == "table" and a.get("id") == "runbook-table":
            self.in_table = True
        if not self.in_table:
            return
        classes = a.get("class", "").split()
        if tag == "tr" and "alert" in classes:
            self.rows.append(Row(a["data-alert"], classes))
        elif tag == "a" and "runbook" in classes:
            self.rows[-1].runbook_href = a["href"]
            self.in_runbook_link = True
        elif tag == "a" and "dashboard" in classes:
            self.rows[-1].dashboard_href = a["href"]
        elif tag == "li" and "data-metric" in a:
            self.rows[-1].metrics[a["data-metric"]] = classes[0]

    def handle_endtag(self, tag: str) -> None:
        if tag == "p":
            self.in_summary = False
        if tag == "table":
            self.in_table = False
        if tag == "a":
            self.in_runbook_link = False

    def handle_data(self, data: str) -> None:
        if self.in_summary:
            self.summary += data
        if self.in_runbook_link:
            self.rows[-1].runbook_text += data


def page_rows(d: Daemon, profile: Path) -> list[Row]:
    parser = MapParser()
    parser.feed(chromium(d.base + "/", profile, "--dump-dom"))
    # The summary line counts the rows by their coverage class.
    counts = Counter(row.classes[1] for row in parser.rows)
    assert parser.summary.startswith(
        f"{len(parser.rows)} alerts: {counts['live']} with all their metrics served here, "
        f"{counts['partial']} with some, {counts['none']} with none"
    ), parser.summary
    return parser.rows


def served_series(d: Daemon) -> set[str]:
    return {s.name for f in text_string_to_metric_families(d.metrics()) for s in f.samples}


def info_samples(d: Daemon) -> list[dict[str, str]]:
    return [
        s.labels
        for f in text_string_to_metric_families(d.metrics())
        if f.name == INFO_METRIC
        for s in f.samples
    ]


def write_config(tmp_path: Path, bases: dict[str, str], **sections: Any) -> Path:
    return daemon_config(tmp_path, runbooks={"bases": bases, "grafana_url": GRAFANA}, **sections)


def assert_map(rows: list[Row], bases: dict[str, str], before: set[str], after: set[str]) -> None:
    catalog = load_catalog()
    assert [r.alert for r in rows] == [rule.alert for _, _, rule in catalog.alerts()]
    links = {**PLACEHOLDER_BASES, **bases}
    for row, (group, index, rule) in zip(rows, catalog.alerts(), strict=True):
        assert row.runbook_href == runbook_url(rule.runbook, links)
        assert row.runbook_text == rule.runbook.section
        assert row.dashboard_href == f"{GRAFANA}/d/botwatch-{group.name}?viewPanel={100 + index}"
        assert list(row.metrics) == rule.metrics()
        for metric, mark in row.metrics.items():
            # A series that came or went between the two scrapes around the page load is
            # not a fair test of the page; every other one must be marked as served or not.
            if (metric in before) == (metric in after):
                assert mark == ("served" if metric in after else "missing"), (row.alert, metric)


def test_info_metric_is_served_with_the_configured_links(
    daemon: StartDaemon, tmp_path: Path
) -> None:
    d = daemon(write_config(tmp_path, {"trader-bot": BASE_A}))
    wait_for(lambda: d.get("/-/ready")[0] == 200, 20, "readiness")
    body = d.metrics()
    assert promtool_lint(body) == ""
    links = {**PLACEHOLDER_BASES, "trader-bot": BASE_A}
    assert info_samples(d) == [
        {
            "alertname": rule.alert,
            "runbook": rule.runbook.doc,
            "section": rule.runbook.section,
            "runbook_url": runbook_url(rule.runbook, links),
        }
        for _, _, rule in load_catalog().alerts()
    ]
    # A collect[] scrape asks for particular collectors: the catalog is not repeated there.
    _, only, _ = d.get("/metrics?collect[]=oom")
    assert "botwatch_collector_up" in only.decode()
    assert INFO_METRIC not in only.decode()


def test_landing_page_map_in_headless_chromium(daemon: StartDaemon, tmp_path: Path) -> None:
    config = write_config(tmp_path, {"trader-bot": BASE_A})
    d = daemon(config)
    wait_for(lambda: d.get("/-/ready")[0] == 200, 20, "readiness")

    before = served_series(d)
    rows = page_rows(d, tmp_path / "profile-1")
    after = served_series(d)
    assert_map(rows, {"trader-bot": BASE_A}, before, after)
    by_alert = {r.alert: r for r in rows}
    # No probe is configured yet; botwatch's own series are always there.
    assert by_alert["TraderApiHealthFailing"].metrics == {"botwatch_probe_success": "missing"}
    assert "none" in by_alert["TraderApiHealthFailing"].classes
    assert by_alert["BotwatchConfigReloadFailed"].metrics == {
        "botwatch_config_last_reload_successful": "served"
    }
    assert "live" in by_alert["BotwatchConfigReloadFailed"].classes

    # SIGHUP: new links, and a probe (its target refuses connections: the series still exists).
    probe = {
        "name": "trader-api-health",
        "type": "http",
        "url": f"http://127.0.0.1:{free_port()}/health",
        "interval": "1s",
        "timeout": "500ms",
    }
    write_config(tmp_path, {"trader-bot": BASE_B}, probes=[probe])
    d.proc.send_signal(signal.SIGHUP)
    wait_for(
        lambda: (
            "botwatch_probe_success" in served_series(d)
            and all(
                s["runbook_url"].startswith(BASE_B + "#")
                for s in info_samples(d)
                if s["runbook"] == "trader-bot"
            )
        ),
        20,
        "the reloaded links and the probe's first round",
    )
    before = served_series(d)
    rows = page_rows(d, tmp_path / "profile-2")
    after = served_series(d)
    assert_map(rows, {"trader-bot": BASE_B}, before, after)
    by_alert = {r.alert: r for r in rows}
    assert by_alert["TraderApiHealthFailing"].metrics == {"botwatch_probe_success": "served"}
    assert "live" in by_alert["TraderApiHealthFailing"].classes
    assert by_alert["TraderApiHealthFailing"].runbook_href.startswith(BASE_B + "#시나리오-1-")

    shot = tmp_path / "landing.png"
    chromium(
        d.base + "/",
        tmp_path / "profile-3",
        f"--screenshot={shot}",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        "--hide-scrollbars",
    )
    png = shot.read_bytes()
    assert png.startswith(PNG_SIGNATURE)
    assert struct.unpack(">II", png[16:24]) == WINDOW  # IHDR: width, height
    assert len(png) > 50_000, "a page of tables is more than a blank screenshot"
