"""Every query of every dashboard parses and evaluates on a real Prometheus (2.42, Debian's).

Prometheus runs on 127.0.0.1 with an empty scrape config; each panel target, annotation and
template variable query has Grafana's variables replaced by concrete values and goes to
/api/v1/query, which must answer "success" (an empty result is fine: there is no data). The
dashboards of the packaged catalog and of a sample catalog with expressions of every shape
(tests/unit/test_dashboards.py) are both checked.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from exporter.runbooks.catalog import Catalog, load_catalog
from exporter.runbooks.dashboards import render_dashboards
from tests.servers import PrometheusServer
from tests.support import wait_for
from tests.unit.test_dashboards import panels, sample_catalog

pytestmark = pytest.mark.integration

# Grafana's variables, longest names first, as a dashboard would expand them.
VARIABLES = [
    ("${__rate_interval}", "1m"),
    ("$__rate_interval", "1m"),
    ("$__interval_ms", "15000"),
    ("$__interval", "15s"),
    ("$__range_s", "3600"),
    ("$__range_ms", "3600000"),
    ("$__range", "1h"),
    ("${instance}", "127.0.0.1:9877|127.0.0.1:9878"),
    ("$instance", "127.0.0.1:9877|127.0.0.1:9878"),
    ("${job}", "botwatch"),
    ("$job", "botwatch"),
]
LABEL_VALUES = re.compile(r"^label_values\((?P<selector>.*),\s*(?P<label>\w+)\)$", re.S)


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("prometheus")
    config = root / "prometheus.yml"
    config.write_text("global:\n  scrape_interval: 15s\nscrape_configs: []\n")
    server = PrometheusServer(config, root)

    def ready() -> bool:
        server.alive()
        try:
            with urllib.request.urlopen(f"{server.base}/-/ready", timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    try:
        wait_for(ready, 30, "Prometheus to be ready")
        yield server.base
    finally:
        server.stop()


def concrete(expr: str) -> str:
    for name, value in VARIABLES:
        expr = expr.replace(name, value)
    assert "$__" not in expr and "$job" not in expr and "$instance" not in expr, expr
    return expr


def queries(catalog: Catalog) -> list[tuple[str, str]]:
    """(where, PromQL) of every panel target, annotation and variable query."""
    found = []
    for text in render_dashboards(catalog).values():
        board = json.loads(text)
        uid = board["uid"]
        for panel in panels(board):
            for target in panel.get("targets", []):
                found.append((f"{uid} panel {panel['id']} {panel['title']!r}", target["expr"]))
        for annotation in board["annotations"]["list"]:
            if "expr" in annotation:
                found.append((f"{uid} annotation {annotation['name']!r}", annotation["expr"]))
        for variable in board["templating"]["list"]:
            if variable["type"] == "query":
                match = LABEL_VALUES.match(variable["query"]["query"])
                assert match, variable["query"]
                found.append((f"{uid} variable {variable['name']}", match["selector"]))
    return found


def query(base: str, expr: str) -> dict[str, Any]:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            body: dict[str, Any] = json.load(response)
    except urllib.error.HTTPError as err:
        body = json.load(err)
    return body


@pytest.mark.parametrize("catalog", [load_catalog(), sample_catalog()], ids=["packaged", "sample"])
def test_every_dashboard_query_parses_on_prometheus(prometheus: str, catalog: Catalog) -> None:
    found = queries(catalog)
    assert len(found) > 20
    failures = []
    for where, expr in found:
        answer = query(prometheus, concrete(expr))
        if answer.get("status") != "success":
            failures.append(f"{where}: {answer.get('error')}\n    {concrete(expr)}")
    assert not failures, "\n".join(failures)


def test_a_broken_query_is_reported(prometheus: str) -> None:
    # The check above can fail: Prometheus rejects what does not parse.
    answer = query(prometheus, concrete('rate(botwatch_x{job=~"$job"}[$__rate_interval]'))
    assert answer["status"] == "error"
    assert answer["errorType"] == "bad_data"
