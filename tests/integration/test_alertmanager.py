"""Alertmanager (deploy/alertmanager/): amtool's checks of the shipped configuration and
templates, then the real Alertmanager delivering to this test's webhook, Slack and PagerDuty
endpoints on 127.0.0.1, with the runbook link first and inhibition holding back symptoms.

The real Alertmanager runs the shipped alertmanager.yml with only what a test must change:
its timings (group_wait 0s, group_interval 1s), the templates' absolute path, and where the
media point (this test's HTTP sink, whose Slack URL and PagerDuty routing key are read from
files, as the shipped `api_url_file` / `routing_key_file` are). No request leaves 127.0.0.1.

tests/fixtures/alertmanager/webhook-payload.json is a webhook payload this real Alertmanager
delivered (only the start time and the external URL are made stable); the `amtool template
render` tests run on it. Capture it again with
    BOTWATCH_UPDATE_GOLDEN=1 pytest tests/integration/test_alertmanager.py -k delivers
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import re
import shutil
import socket
import subprocess
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.servers import stop_process
from tests.support import REPO, wait_for

pytestmark = pytest.mark.integration

AM_DIR = REPO / "deploy" / "alertmanager"
CONFIG = AM_DIR / "alertmanager.yml"
TEMPLATES = AM_DIR / "templates"
FIXTURES = REPO / "tests" / "fixtures" / "alertmanager"
PAYLOAD = FIXTURES / "webhook-payload.json"
UPDATE = os.environ.get("BOTWATCH_UPDATE_GOLDEN") == "1"

START_TIMEOUT = 20.0
DELIVERY_TIMEOUT = 15.0  # group_wait 0s, group_interval 1s: deliveries take well under this
STOP_TIMEOUT = 10.0
# What the fixture keeps in place of the values that change from run to run.
STABLE_EXTERNAL_URL = "http://127.0.0.1:9093"
STABLE_STARTS_AT = "2025-01-01T00:00:00Z"

# The links the alert catalog renders (exporter/runbooks/catalog.py, placeholder bases).
TRADER_API_RUNBOOK = (
    "https://runbooks.example.invalid/trader-bot.md#시나리오-1-api-서버가-시작되지-않음"
)
TRADER_DB_RUNBOOK = (
    "https://runbooks.example.invalid/trader-bot.md#시나리오-2-데이터베이스-연결-오류"
)
ALPHA_START_RUNBOOK = "https://runbooks.example.invalid/alphaengine.md#서비스-시작-실패"
ALPHA_WS_RUNBOOK = "https://runbooks.example.invalid/alphaengine.md#websocket-연결-실패"
BOTWATCH_RUNBOOK = "https://runbooks.example.invalid/botwatch-runbook.md#collector-down"
GRAFANA = "https://grafana.example.invalid/d/botwatch-{group}?viewPanel={panel}"
URL = re.compile(r"https?://[^\s|>\"']+")


def amtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["amtool", *args], capture_output=True, text=True, timeout=30, check=False, cwd=REPO
    )


def render(template: str, data: Path = PAYLOAD) -> str:
    """`amtool template render` of one of deploy/alertmanager/templates' definitions."""
    done = amtool(
        "template",
        "render",
        f"--template.glob={TEMPLATES}/*.tmpl",
        f"--template.text={{{{ template {json.dumps(template)} . }}}}",
        f"--template.data={data}",
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.rstrip("\n")


def first_url(text: str) -> str:
    found = URL.search(text)
    assert found, f"no link in {text!r}"
    return found.group(0)


def alert(
    name: str,
    severity: str,
    stack: str,
    runbook: str,
    *,
    summary: str,
    description: str,
    panel: int = 100,
    **labels: str,
) -> dict[str, Any]:
    """An alert as Prometheus posts it for a rule rendered from the catalog."""
    return {
        "labels": {"alertname": name, "severity": severity, "stack": stack, **labels},
        "annotations": {
            "summary": summary,
            "description": description,
            "runbook_url": runbook,
            "dashboard_url": GRAFANA.format(group=stack, panel=panel),
        },
        "generatorURL": f"http://127.0.0.1:9090/graph?g0.expr={name}",
    }


def resolved(alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    now = datetime.now(UTC).isoformat()
    return [{**a, "endsAt": now} for a in alerts]


# The test's side of the media -----------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    medium: str  # webhook | slack | pagerduty
    receiver: str  # the Alertmanager receiver whose integration sent it
    body: dict[str, Any]


class Sink:
    """One HTTP server on 127.0.0.1 standing in for the webhook relay, Slack and PagerDuty:
    POST /{medium}/{receiver}, answered as the real service would (PagerDuty: 202)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._deliveries: list[Delivery] = []
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                body = json.loads(self.rfile.read(length))
                medium, _, receiver = self.path.strip("/").partition("/")
                with sink._lock:
                    sink._deliveries.append(Delivery(medium, receiver, body))
                reply, status = (
                    (b'{"status":"success"}', 202)
                    if medium == "pagerduty"
                    else (
                        b"ok",
                        200,
                    )
                )
                self.send_response(status)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def url(self, medium: str, receiver: str) -> str:
        return f"{self.base}/{medium}/{receiver}"

    def received(self, medium: str | None = None, receiver: str | None = None) -> list[Delivery]:
        with self._lock:
            return [
                d
                for d in self._deliveries
                if (medium is None or d.medium == medium)
                and (receiver is None or d.receiver == receiver)
            ]

    def webhook_alerts(self, **labels: str) -> list[tuple[str, dict[str, Any]]]:
        """(status, alert) of every alert the webhook received whose labels include `labels`."""
        return [
            (payload.body["status"], a)
            for payload in self.received("webhook")
            for a in payload.body["alerts"]
            if all(a["labels"].get(k) == v for k, v in labels.items())
        ]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=STOP_TIMEOUT)


# The real Alertmanager ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def variant_config(sink: Sink, secrets: Path) -> dict[str, Any]:
    """The shipped configuration with test timings, and its media pointed at `sink`."""
    doc: dict[str, Any] = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    doc["templates"] = [str(TEMPLATES / "*.tmpl")]

    def fast(route: dict[str, Any]) -> None:
        for key, value in (("group_wait", "0s"), ("group_interval", "1s")):
            if key in route:
                route[key] = value
        for child in route.get("routes", []):
            fast(child)

    fast(doc["route"])
    secrets.mkdir(exist_ok=True)
    # The receivers share their media through YAML anchors: give each its own copy.
    doc["receivers"] = [copy.deepcopy(r) for r in doc["receivers"]]
    for receiver in doc["receivers"]:
        name = receiver["name"]
        for hook in receiver.get("webhook_configs", []):
            hook["url"] = sink.url("webhook", name)
        for slack in receiver.get("slack_configs", []):
            secret = secrets / f"slack-{name}.url"
            secret.write_text(sink.url("slack", name) + "\n")  # as an editor saves it
            slack["api_url_file"] = str(secret)
        for pagerduty in receiver.get("pagerduty_configs", []):
            secret = secrets / f"pagerduty-{name}.key"
            secret.write_text(f"routing-key-{name}\n")
            pagerduty["routing_key_file"] = str(secret)
            pagerduty["url"] = sink.url("pagerduty", name)
    return doc


class Alertmanager:
    def __init__(self, root: Path, config: dict[str, Any]) -> None:
        self.config_file = root / "alertmanager.yml"
        self.config_file.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
        self.log_file = root / "alertmanager.log"
        self.storage = root / "data"
        self.proc: subprocess.Popen[bytes] | None = None
        for _ in range(3):  # another process may take the port between free_port() and bind
            self.base = f"http://127.0.0.1:{free_port()}"
            if self._start():
                return
        raise AssertionError(f"alertmanager did not start: {self.log()}")

    def _start(self) -> bool:
        with self.log_file.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    "prometheus-alertmanager",
                    f"--config.file={self.config_file}",
                    f"--storage.path={self.storage}",
                    f"--web.listen-address={self.base.removeprefix('http://')}",
                    f"--web.external-url={self.base}",
                    "--cluster.listen-address=",
                    "--log.level=debug",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )

        def state() -> str | None:
            assert self.proc is not None
            if self.proc.poll() is not None:
                return "exited"  # e.g. the port was taken after all
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"{self.base}/-/ready", timeout=2) as response,
            ):
                return "ready" if response.status == 200 else None
            return None

        return bool(wait_for(state, START_TIMEOUT, "alertmanager to be ready") == "ready")

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")

    def _request(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.base + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            text = response.read()
        return json.loads(text) if text else None

    def post(self, alerts: list[dict[str, Any]]) -> None:
        self._request("POST", "/api/v2/alerts", alerts)

    def alerts(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._request("GET", "/api/v2/alerts")
        return result

    def stop(self) -> None:
        stop_process(self.proc)


@pytest.fixture
def sink() -> Iterator[Sink]:
    s = Sink()
    yield s
    s.close()


@pytest.fixture
def alertmanager(tmp_path: Path, sink: Sink) -> Iterator[Alertmanager]:
    am = Alertmanager(tmp_path, variant_config(sink, tmp_path / "secrets"))
    yield am
    am.stop()


def delivered(sink: Sink, medium: str, receiver: str, count: int = 1) -> list[Delivery]:
    found: list[Delivery] = wait_for(
        lambda: (found := sink.received(medium, receiver)) and len(found) >= count and found,
        DELIVERY_TIMEOUT,
        f"{medium} delivery for receiver {receiver}",
    )
    return found


def sent(sink: Sink, posted: dict[str, Any], what: str) -> None:
    """Wait until the webhook received the alert `posted` (by its labels)."""
    labels = posted["labels"]
    wait_for(partial(sink.webhook_alerts, **labels), DELIVERY_TIMEOUT, f"{labels} {what}")


# The shipped configuration --------------------------------------------------------------------


def test_check_config() -> None:
    for cwd_relative in (str(CONFIG.relative_to(REPO)), str(CONFIG)):
        done = amtool("check-config", cwd_relative)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "SUCCESS" in done.stdout
        assert " - 4 inhibit rules" in done.stdout
        assert " - 1 templates" in done.stdout  # templates/*.tmpl, relative to the config


# Every severity x stack, and what no route names: the expected receiver.
ROUTES = [
    ("critical", "trader-bot", "trader-bot-page"),
    ("warning", "trader-bot", "trader-bot-slack"),
    ("info", "trader-bot", "info"),
    ("critical", "alphaengine", "alphaengine-page"),
    ("warning", "alphaengine", "alphaengine-slack"),
    ("info", "alphaengine", "info"),
    ("critical", "botwatch", "botwatch-page"),
    ("warning", "botwatch", "botwatch-slack"),
    ("info", "botwatch", "info"),
    # An alert no stack claims: a critical one still pages the monitoring owner.
    ("critical", "", "botwatch-page"),
    ("warning", "", "default"),
    ("critical", "elsewhere", "botwatch-page"),
    ("warning", "elsewhere", "default"),
    ("", "trader-bot", "trader-bot-slack"),
]


@pytest.mark.parametrize(("severity", "stack", "receiver"), ROUTES)
def test_route(severity: str, stack: str, receiver: str) -> None:
    labels = [f"{k}={v}" for k, v in (("severity", severity), ("stack", stack)) if v]
    done = amtool(
        "config",
        "routes",
        "test",
        f"--config.file={CONFIG}",
        f"--verify.receivers={receiver}",
        "alertname=SomeAlert",
        "component=trader-api",
        *labels,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == receiver


def test_no_secret_is_committed() -> None:
    doc = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    text = json.dumps(doc)
    for key in ("api_url", "routing_key", "service_key", "slack_api_url", "password"):
        assert f'"{key}"' not in text, key
    for receiver in doc["receivers"]:
        for slack in receiver.get("slack_configs", []):
            assert slack["api_url_file"].startswith("/etc/alertmanager/secrets/")
        for pagerduty in receiver.get("pagerduty_configs", []):
            assert pagerduty["routing_key_file"].startswith("/etc/alertmanager/secrets/")
        for hook in receiver.get("webhook_configs", []):
            assert ".example.invalid/" in hook["url"]  # a placeholder, to be replaced


def test_production_timings() -> None:
    route = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))["route"]
    assert (route["group_wait"], route["group_interval"], route["repeat_interval"]) == (
        "30s",
        "5m",
        "4h",
    )
    pages = [
        r
        for top in route["routes"]
        for r in [top, *top.get("routes", [])]
        if 'severity="critical"' in r.get("matchers", [])
    ]
    assert len(pages) == 4
    for page in pages:
        assert (page["group_wait"], page["repeat_interval"]) == ("10s", "1h")


def test_catalog_follows_the_inhibition_convention() -> None:
    """The catalog's labels (exporter/runbooks/alerts/*.yaml) are what inhibit_rules expect:
    `inhibition` is source, stack or exempt; a source or stack alert is critical, and a source
    has a component label (static, or made by label_replace) or a container / unit one."""
    from exporter.runbooks.catalog import load_catalog

    for _, _, rule in load_catalog().alerts():
        role = rule.labels.get("inhibition")
        if role is None:
            continue
        assert role in ("source", "stack", "exempt"), rule.alert
        if role == "exempt":
            continue
        assert rule.severity == "critical", rule.alert
        if role == "source":
            assert rule.labels.get("component") or re.search(
                r"\b(container|unit|component)\b", rule.expr
            ), f"{rule.alert}: a down alert needs a component label or a container / unit label"
    for _, _, rule in load_catalog().alerts():
        assert set(rule.labels).isdisjoint({"severity", "stack"}), rule.alert


# The templates on the captured payload --------------------------------------------------------


def fixture_payload() -> dict[str, Any]:
    payload: dict[str, Any] = json.loads(PAYLOAD.read_text(encoding="utf-8"))
    return payload


def test_fixture_is_a_version_4_payload_with_runbook_urls() -> None:
    payload = fixture_payload()
    assert payload["version"] == "4"
    assert payload["receiver"] == "trader-bot-page"
    assert payload["commonAnnotations"]["runbook_url"] == TRADER_API_RUNBOOK
    assert len(payload["alerts"]) == 2
    assert all(a["annotations"]["runbook_url"] == TRADER_API_RUNBOOK for a in payload["alerts"])


def test_slack_templates_put_the_runbook_first() -> None:
    text = render("slack.botwatch.text")
    first, *alerts = text.splitlines()
    assert first.startswith(f":book: *<{TRADER_API_RUNBOOK}|Runbook: TraderApiHealthFailing>*")
    assert first_url(text) == TRADER_API_RUNBOOK
    assert "viewPanel=100" in first  # the dashboard, after the runbook
    assert alerts == [
        "• *The Trader API health check is failing.* "
        "Probe trader-api-health on trader-1:9877 has failed for a minute.",
        "• *The Trader API health check is failing.* "
        "Probe trader-api-health on trader-2:9877 has failed for a minute.",
    ]
    assert render("slack.botwatch.title_link") == TRADER_API_RUNBOOK
    assert (
        render("slack.botwatch.title") == "[FIRING:2] TraderApiHealthFailing (trader-bot, critical)"
    )
    assert render("slack.botwatch.color") == "danger"
    fallback = render("slack.botwatch.fallback")
    assert fallback.endswith(f"Runbook: {TRADER_API_RUNBOOK}")
    assert first_url(fallback) == TRADER_API_RUNBOOK


def test_pagerduty_templates_put_the_runbook_first() -> None:
    assert render("pagerduty.botwatch.runbook_href") == TRADER_API_RUNBOOK
    assert render("pagerduty.botwatch.runbook_text") == "Runbook: TraderApiHealthFailing"
    firing = render("pagerduty.botwatch.firing")
    assert firing.splitlines()[0] == f"Runbook: {TRADER_API_RUNBOOK}"
    assert first_url(firing) == TRADER_API_RUNBOOK
    assert render("pagerduty.botwatch.description") == (
        "[FIRING:2] TraderApiHealthFailing (trader-bot, critical): "
        "The Trader API health check is failing."
    )
    assert render("pagerduty.botwatch.severity") == "critical"


def test_silence_link_prefills_the_group(tmp_path: Path) -> None:
    assert render("botwatch.silence.url") == (
        STABLE_EXTERNAL_URL + "/#/silences/new?filter="
        "%7Balertname%3D%22TraderApiHealthFailing%22%2Cstack%3D%22trader-bot%22%7D"
    )


def test_templates_when_resolved_or_without_a_runbook(tmp_path: Path) -> None:
    payload = fixture_payload()
    payload["status"] = "resolved"
    for a in payload["alerts"]:
        a["status"] = "resolved"
    data = tmp_path / "resolved.json"
    data.write_text(json.dumps(payload))
    assert (
        render("slack.botwatch.title", data)
        == "[RESOLVED] TraderApiHealthFailing (trader-bot, critical)"
    )
    assert render("slack.botwatch.color", data) == "good"
    text = render("slack.botwatch.text", data)
    assert first_url(text) == TRADER_API_RUNBOOK
    assert "~resolved~ *The Trader API health check is failing.*" in text

    # An alert from elsewhere, without runbook_url: a working link that says so, never "".
    payload = fixture_payload()
    del payload["commonAnnotations"]["runbook_url"]
    for a in payload["alerts"]:
        del a["annotations"]["runbook_url"]
    data = tmp_path / "no-runbook.json"
    data.write_text(json.dumps(payload))
    assert render("botwatch.runbook.url", data) == STABLE_EXTERNAL_URL
    assert render("botwatch.runbook.text", data) == "No runbook for this alert (open Alertmanager)"

    # A group whose alerts do not share one runbook_url: each line leads with its own.
    payload = fixture_payload()
    del payload["commonAnnotations"]["runbook_url"]
    payload["alerts"][1]["annotations"]["runbook_url"] = TRADER_DB_RUNBOOK
    data = tmp_path / "two-runbooks.json"
    data.write_text(json.dumps(payload))
    lines = render("slack.botwatch.text", data).splitlines()
    assert first_url(lines[0]) == TRADER_API_RUNBOOK
    assert lines[1].startswith(f"• <{TRADER_API_RUNBOOK}|runbook> *")
    assert lines[2].startswith(f"• <{TRADER_DB_RUNBOOK}|runbook> *")


# The real Alertmanager ------------------------------------------------------------------------

HEALTH = {
    "summary": "The Trader API health check is failing.",
    "description": "Probe trader-api-health on {instance} has failed for a minute.",
}


def health_failing(instance: str) -> dict[str, Any]:
    return alert(
        "TraderApiHealthFailing",
        "critical",
        "trader-bot",
        TRADER_API_RUNBOOK,
        summary=HEALTH["summary"],
        description=HEALTH["description"].format(instance=instance),
        component="trader-api",
        probe="trader-api-health",
        instance=instance,
        job="botwatch",
    )


def stable(payload: dict[str, Any]) -> dict[str, Any]:
    """The payload with what changes from run to run made stable, alerts in label order."""
    out = copy.deepcopy(payload)
    out["externalURL"] = STABLE_EXTERNAL_URL
    for a in out["alerts"]:
        a["startsAt"] = STABLE_STARTS_AT
    out["alerts"].sort(key=lambda a: sorted(a["labels"].items()))
    return out


def test_real_alertmanager_delivers_the_runbook_link_first(
    alertmanager: Alertmanager, sink: Sink
) -> None:
    alertmanager.post([health_failing("trader-1:9877"), health_failing("trader-2:9877")])
    hook = delivered(sink, "webhook", "trader-bot-page")[0].body
    slack = delivered(sink, "slack", "trader-bot-page")[0].body
    page = delivered(sink, "pagerduty", "trader-bot-page")[0].body

    # The webhook: Alertmanager's version 4 payload, runbook_url as posted (Hangul and all).
    assert hook["version"] == "4"
    assert hook["status"] == "firing"
    assert hook["externalURL"] == alertmanager.base
    assert [a["annotations"]["runbook_url"] for a in hook["alerts"]] == [TRADER_API_RUNBOOK] * 2
    assert hook["commonAnnotations"]["runbook_url"] == TRADER_API_RUNBOOK
    assert hook["groupLabels"] == {"alertname": "TraderApiHealthFailing", "stack": "trader-bot"}
    if UPDATE:
        FIXTURES.mkdir(parents=True, exist_ok=True)
        PAYLOAD.write_text(json.dumps(stable(hook), indent=2, ensure_ascii=False) + "\n")
    assert stable(hook) == fixture_payload(), "the fixture is no longer what Alertmanager sends"

    # Slack: the attachment's title, its text's first line and its first button: the runbook.
    (attachment,) = slack["attachments"]
    assert slack["channel"] == "#trader-bot-alerts"
    assert attachment["title_link"] == TRADER_API_RUNBOOK
    assert first_url(attachment["text"]) == TRADER_API_RUNBOOK
    assert attachment["actions"][0] == {
        "type": "button",
        "text": "Runbook :book:",
        "url": TRADER_API_RUNBOOK,
        "style": "primary",
    }
    assert [b["text"] for b in attachment["actions"]] == ["Runbook :book:", "Dashboard", "Silence"]
    assert attachment["color"] == "danger"

    # PagerDuty Events v2: links[0] is the runbook; the key came from routing_key_file.
    assert page["routing_key"] == "routing-key-trader-bot-page"
    assert page["event_action"] == "trigger"
    assert page["links"][0] == {
        "href": TRADER_API_RUNBOOK,
        "text": "Runbook: TraderApiHealthFailing",
    }
    assert [link["text"] for link in page["links"]][1:] == ["Dashboard", "Silence in Alertmanager"]
    details = page["payload"]["custom_details"]
    assert details["runbook_url"] == TRADER_API_RUNBOOK
    assert details["firing"].startswith(f"Runbook: {TRADER_API_RUNBOOK}\n")
    assert page["payload"]["severity"] == "critical"
    assert page["payload"]["component"] == "trader-api"
    assert page["payload"]["group"] == "trader-bot"
    assert page["payload"]["class"] == "TraderApiHealthFailing"
    assert page["payload"]["summary"].startswith("[FIRING:2] TraderApiHealthFailing")

    # Resolved: PagerDuty's incident is resolved under the same dedup_key, Slack says so.
    alertmanager.post(resolved([health_failing("trader-1:9877"), health_failing("trader-2:9877")]))
    done = delivered(sink, "pagerduty", "trader-bot-page", 2)[1].body
    assert (done["event_action"], done["dedup_key"]) == ("resolve", page["dedup_key"])
    assert (
        delivered(sink, "slack", "trader-bot-page", 2)[1].body["attachments"][0]["color"] == "good"
    )


def test_real_alertmanager_routes_by_severity_and_stack(
    alertmanager: Alertmanager, sink: Sink
) -> None:
    alertmanager.post(
        [
            alert(
                "AlphaengineWebsocketReconnecting",
                "warning",
                "alphaengine",
                ALPHA_WS_RUNBOOK,
                summary="The AlphaEngine bot keeps reconnecting its WebSocket.",
                description="alphaengine-bot reconnected 12 times in 10 minutes.",
                component="alphaengine-bot",
                unit="alphaengine-bot.service",
            ),
            alert(
                "BotwatchCollectorDown",
                "critical",
                "botwatch",
                BOTWATCH_RUNBOOK,
                summary="A botwatch collector is failing.",
                description="Collector docker has failed for 5 minutes.",
                component="botwatch",
                collector="docker",
            ),
            alert(
                "TraderBotBackupOld",
                "info",
                "trader-bot",
                TRADER_DB_RUNBOOK,
                summary="The last backup is old.",
                description="The newest backup is 30 hours old.",
                component="timescaledb",
            ),
        ]
    )
    assert delivered(sink, "slack", "alphaengine-slack")[0].body["channel"] == "#alphaengine-alerts"
    delivered(sink, "webhook", "alphaengine-slack")
    assert delivered(sink, "pagerduty", "botwatch-page")[0].body["routing_key"] == (
        "routing-key-botwatch-page"
    )
    assert delivered(sink, "slack", "botwatch-page")[0].body["channel"] == "#botwatch-alerts"
    (info,) = delivered(sink, "webhook", "info")
    assert info.body["alerts"][0]["annotations"]["runbook_url"] == TRADER_DB_RUNBOOK
    # A warning pages nobody, info reaches the webhook only.
    assert {d.receiver for d in sink.received("pagerduty")} == {"botwatch-page"}
    assert {d.receiver for d in sink.received("slack")} == {"alphaengine-slack", "botwatch-page"}


def inhibitors(alertmanager: Alertmanager, posted: list[dict[str, Any]]) -> list[list[str]] | None:
    """Per posted alert, the alertnames of the alerts inhibiting it (None: not all known yet)."""
    found = alertmanager.alerts()
    names = {a["fingerprint"]: a["labels"]["alertname"] for a in found}
    by_labels = {json.dumps(a["labels"], sort_keys=True): a["status"] for a in found}
    out = []
    for p in posted:
        status = by_labels.get(json.dumps(p["labels"], sort_keys=True))
        if status is None:
            return None
        out.append(sorted(names.get(f, f) for f in status["inhibitedBy"]))
    return out


Held = list[tuple[dict[str, Any], set[str]]]  # an alert, and the alerts that may inhibit it


def held_back(alertmanager: Alertmanager, sink: Sink, held: Held, paged: list[Any]) -> None:
    """Wait until every alert of `held` is inhibited by one of its named alerts and every alert
    of `paged` is delivered; then check that no medium received any alert of `held`."""
    posted = [a for a, _ in held]
    seen: list[list[list[str]] | None] = [None]

    def inhibited() -> bool:
        seen[0] = now = inhibitors(alertmanager, posted)
        return now is not None and all(
            len(by) == 1 and by[0] in names for by, (_, names) in zip(now, held, strict=True)
        )

    try:
        wait_for(inhibited, DELIVERY_TIMEOUT, "the inhibitions")
    except AssertionError as err:
        raise AssertionError(f"{err}: wanted {[n for _, n in held]}, got {seen[0]}") from None
    for alert_ in paged:
        sent(sink, alert_, "to be delivered")
    for alert_ in posted:
        assert not sink.webhook_alerts(**alert_["labels"]), alert_["labels"]
        for delivery in sink.received():
            text = json.dumps(delivery.body, ensure_ascii=False)
            assert alert_["annotations"]["description"] not in text, (delivery, alert_)


def trader_api_down(instance: str = "trader-1:9877") -> dict[str, Any]:
    return alert(
        "TraderApiContainerNotRunning",
        "critical",
        "trader-bot",
        TRADER_API_RUNBOOK,
        summary="The trader-api container is not running.",
        description=f"Container trader-api on {instance} has not been running for a minute.",
        component="trader-api",
        inhibition="source",
        container="trader-api",
        instance=instance,
    )


def test_inhibition_holds_back_symptoms_while_the_component_is_down(
    alertmanager: Alertmanager, sink: Sink
) -> None:
    container_down = trader_api_down()
    unit_down = alert(
        "AlphaEngineServiceDown",
        "critical",
        "alphaengine",
        ALPHA_START_RUNBOOK,
        summary="An AlphaEngine service is not running.",
        description="Unit alphaengine-bot.service on alpha-1:9877 has not been active.",
        component="alphaengine-bot",
        inhibition="source",
        unit="alphaengine-bot.service",
        instance="alpha-1:9877",
    )
    # A rule over every container, without a static component: compared on `container` only.
    any_container_down = alert(
        "TraderDataStoreContainerNotRunning",
        "critical",
        "trader-bot",
        TRADER_DB_RUNBOOK,
        summary="A Trader Bot data store container is not running.",
        description="Container redis on trader-1:9877 has not been running for a minute.",
        inhibition="source",
        container="redis",
        instance="trader-1:9877",
    )
    downs = [container_down, unit_down, any_container_down]
    by_api = {"TraderApiContainerNotRunning"}
    held: Held = [
        # By component (a probe knows no container), and by container.
        (health_failing("trader-1:9877"), by_api),
        (
            alert(
                "TraderApiRestartLoop",
                "warning",
                "trader-bot",
                TRADER_API_RUNBOOK,
                summary="The trader-api container keeps restarting.",
                description="Container trader-api on trader-1:9877 restarted more than twice.",
                container="trader-api",
                instance="trader-1:9877",
            ),
            by_api,
        ),
        # By unit (no component on the symptom).
        (
            alert(
                "AlphaEngineServiceRestarting",
                "warning",
                "alphaengine",
                ALPHA_START_RUNBOOK,
                summary="An AlphaEngine service keeps restarting.",
                description="Unit alphaengine-bot.service on alpha-1:9877 was restarted.",
                unit="alphaengine-bot.service",
                instance="alpha-1:9877",
            ),
            {"AlphaEngineServiceDown"},
        ),
        (
            alert(
                "TraderRedisMemoryNearLimit",
                "warning",
                "trader-bot",
                TRADER_DB_RUNBOOK,
                summary="Redis is close to maxmemory.",
                description="Container redis uses 95% of maxmemory.",
                container="redis",
                instance="trader-1:9877",
            ),
            {"TraderDataStoreContainerNotRunning"},
        ),
    ]
    # Still paged: a cause (exempt), another component of the same stack, the same component on
    # another host, the same container name in another stack, and an alert without component or
    # container (which a "down" alert without component must not hold back: `equal` takes
    # missing labels as equal).
    paged = [
        alert(
            "TraderContainerOomKilled",
            "warning",
            "trader-bot",
            TRADER_API_RUNBOOK,
            summary="A Trader Bot container was killed by the OOM killer.",
            description="Container trader-api on trader-1:9877 was OOM-killed.",
            component="trader-api",
            inhibition="exempt",
            container="trader-api",
            instance="trader-1:9877",
        ),
        alert(
            "TimescaleDBConnectionsNearLimit",
            "warning",
            "trader-bot",
            TRADER_DB_RUNBOOK,
            summary="TimescaleDB is close to max_connections.",
            description="timescaledb on trader-1:9877 uses 95 of 100 connections.",
            component="timescaledb",
            instance="trader-1:9877",
        ),
        health_failing("trader-2:9877"),
        alert(
            "ContainerRestarting",
            "warning",
            "alphaengine",
            ALPHA_START_RUNBOOK,
            summary="A container keeps restarting.",
            description="Container trader-api on alpha-1:9877 restarted 3 times in 10 minutes.",
            container="trader-api",
            instance="trader-1:9877",
        ),
        alert(
            "TraderDiskFillingUp",
            "warning",
            "trader-bot",
            TRADER_DB_RUNBOOK,
            summary="A filesystem will be full within a day.",
            description="/ on trader-1:9877 will be full in 20 hours.",
            instance="trader-1:9877",
            mountpoint="/",
        ),
    ]

    alertmanager.post(downs)
    for down in downs:
        sent(sink, down, "to be delivered")
    alertmanager.post([a for a, _ in held] + paged)
    held_back(alertmanager, sink, held, paged)

    # The component is back: what still fires is sent now, nothing was lost.
    alertmanager.post(resolved(downs))
    for symptom, _ in held:
        sent(sink, symptom, "to be sent once its component is back")


def test_inhibition_while_the_whole_stack_is_down(alertmanager: Alertmanager, sink: Sink) -> None:
    stack_down = alert(
        "TraderStackDown",
        "critical",
        "trader-bot",
        "https://runbooks.example.invalid/trader-bot.md#전체-서비스-복구",
        summary="No Trader Bot container is running.",
        description="None of trader-api, timescaledb and redis has been running on trader-1:9877.",
        inhibition="stack",
        instance="trader-1:9877",
        job="botwatch",
    )
    alertmanager.post([stack_down])
    sent(sink, stack_down, "to be delivered")
    held: Held = [
        (trader_api_down(), {"TraderStackDown"}),  # the component's "down" alert: no page
        # Whichever Alertmanager finds first: an inhibited "down" alert still inhibits.
        (health_failing("trader-1:9877"), {"TraderStackDown", "TraderApiContainerNotRunning"}),
    ]
    paged = [
        trader_api_down("trader-2:9877"),  # another host
        alert(
            "TraderDiskSpaceCritical",
            "critical",
            "trader-bot",
            TRADER_DB_RUNBOOK,
            summary="A filesystem is almost full.",
            description="/var/lib/docker on trader-1:9877 is 97% full.",
            component="host",
            inhibition="exempt",  # may be why nothing runs
            instance="trader-1:9877",
        ),
        alert(  # another stack on the same host
            "AlphaEngineWebHealthFailing",
            "critical",
            "alphaengine",
            ALPHA_START_RUNBOOK,
            summary="The AlphaEngine web health check is failing.",
            description="Probe alphaengine-web-health on trader-1:9877 has failed for a minute.",
            component="alphaengine-web",
            instance="trader-1:9877",
        ),
    ]
    alertmanager.post([a for a, _ in held] + paged)
    held_back(alertmanager, sink, held, paged)


def test_binaries_are_the_expected_versions() -> None:
    assert shutil.which("amtool"), "install Debian's prometheus-alertmanager"
    version = subprocess.run(
        ["prometheus-alertmanager", "--version"], capture_output=True, text=True, check=True
    )
    match = re.search(r"version (\d+)\.(\d+)", version.stdout + version.stderr)
    assert match, version.stdout + version.stderr
    assert (int(match.group(1)), int(match.group(2))) >= (0, 25)
