"""The runbook map: every alert, its rule, and the one runbook section it links to.

The only place an alert's section is written down is its entry in the packaged catalog
(exporter/runbooks/alerts/*.yaml, one file per rule group). Everything else derives from it:
the Prometheus rule files in alerts/ (`render_rules`), the dashboards' links, the
`botwatch_alert_runbook_info` metric and the landing page's map, and `lint-runbooks`.

A section is addressed the way a Git forge renders the document as Markdown: the document's
base URL + `#` + the heading's anchor (exporter/runbooks/slug.py). A heading that occurs more
than once in its document gets `-1`, `-2`, ... on its later occurrences: `occurrence` (0 for
the first) says which one an alert means. Base URLs are set when rendering, so operators point
the links at the runbooks in their own repository; the committed files use PLACEHOLDER_BASES.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from typing import Literal

import yaml
from pydantic import Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from exporter.models import Strict, ensure_unique

# The operators' two runbooks, and botwatch's own (docs/botwatch-runbook.md) for its alerts.
DocName = Literal["trader-bot", "alphaengine", "botwatch"]
Severity = Literal["critical", "warning", "info"]
# Where the committed rule files and dashboards point until an operator renders their own.
PLACEHOLDER_BASES: dict[str, str] = {
    "trader-bot": "https://runbooks.example.invalid/trader-bot.md",
    "alphaengine": "https://runbooks.example.invalid/alphaengine.md",
    "botwatch": "https://runbooks.example.invalid/botwatch-runbook.md",
}
PLACEHOLDER_GRAFANA = "https://grafana.example.invalid"
GROUPS = ("trader-bot", "alphaengine", "botwatch")
# An alert's dashboard panel: its id is this plus the alert's index in its group.
PANEL_ID_BASE = 100
ALERT_NAME = re.compile(r"^[A-Z][A-Za-z0-9]*$")
METRIC_IN_EXPR = re.compile(r"\bbotwatch_[a-z0-9_]+\b")


class RunbookRef(Strict):
    """A runbook section: the document and the heading as written there."""

    doc: DocName
    section: str
    occurrence: int = Field(default=0, ge=0)


class AlertRule(Strict):
    alert: str
    expr: str
    for_: str = Field(default="0s", alias="for")  # Prometheus duration text, as in the rule file
    severity: Severity
    summary: str  # static: one sentence ending with a period
    description: str  # templated ({{ $labels.container }} ...)
    runbook: RunbookRef
    labels: dict[str, str] = {}

    @field_validator("alert")
    @classmethod
    def _camel(cls, value: str) -> str:
        if not ALERT_NAME.match(value):
            raise PydanticCustomError("name", "must be CamelCase ([A-Z][A-Za-z0-9]*)")
        return value

    @field_validator("summary")
    @classmethod
    def _sentence(cls, value: str) -> str:
        if "{{" in value or not value.endswith("."):
            raise PydanticCustomError("summary", "must be a static sentence ending with '.'")
        return value

    def metrics(self) -> list[str]:
        """The botwatch metrics its expression reads (for the landing page's map)."""
        return sorted(set(METRIC_IN_EXPR.findall(self.expr)))


class Group(Strict):
    name: str  # the rule file: alerts/{name}.rules.yml
    stack: str  # the `stack` label every rule of the group carries
    rules: list[AlertRule]

    @model_validator(mode="after")
    def _unique(self) -> Group:
        ensure_unique(self.rules, "alert", key=lambda r: r.alert, at=lambda _: "alert")
        return self


class Catalog(Strict):
    groups: list[Group]

    def alerts(self) -> list[tuple[Group, int, AlertRule]]:
        return [(g, i, r) for g in self.groups for i, r in enumerate(g.rules)]

    def find(self, alert: str) -> tuple[Group, int, AlertRule]:
        for entry in self.alerts():
            if entry[2].alert == alert:
                return entry
        raise KeyError(alert)


@cache
def load_catalog() -> Catalog:
    """The packaged catalog; a broken one is a bug in botwatch (raises)."""
    groups = []
    folder = resources.files("exporter.runbooks") / "alerts"
    for name in GROUPS:
        doc = yaml.safe_load((folder / f"{name}.yaml").read_text(encoding="utf-8"))
        groups.append(Group.model_validate(doc))
    catalog = Catalog(groups=groups)
    ensure_unique([r for _, _, r in catalog.alerts()], "alert", key=lambda r: r.alert)
    return catalog


def runbook_url(ref: RunbookRef, bases: dict[str, str] | None = None) -> str:
    from exporter.runbooks.slug import anchor

    base = (bases or PLACEHOLDER_BASES)[ref.doc]
    return f"{base}#{anchor(ref.section, ref.occurrence)}"


def dashboard_url(group: Group, index: int, grafana: str = PLACEHOLDER_GRAFANA) -> str:
    return f"{grafana.rstrip('/')}/d/botwatch-{group.name}?viewPanel={PANEL_ID_BASE + index}"


def render_rules(
    catalog: Catalog, bases: dict[str, str] | None = None, grafana: str = PLACEHOLDER_GRAFANA
) -> dict[str, str]:
    """The Prometheus rule files, by file name (alerts/{group}.rules.yml)."""
    files = {}
    for group in catalog.groups:
        rules = []
        for index, rule in enumerate(group.rules):
            entry: dict[str, object] = {"alert": rule.alert, "expr": rule.expr}
            if rule.for_ not in ("0s", "0"):
                entry["for"] = rule.for_
            entry["labels"] = {"severity": rule.severity, "stack": group.stack, **rule.labels}
            entry["annotations"] = {
                "summary": rule.summary,
                "description": rule.description,
                "runbook_url": runbook_url(rule.runbook, bases),
                "dashboard_url": dashboard_url(group, index, grafana),
            }
            rules.append(entry)
        body = yaml.safe_dump(
            {"groups": [{"name": group.name, "rules": rules}]},
            allow_unicode=True,
            sort_keys=False,
            width=100,
        )
        header = (
            "# Generated by `botwatch-exporter render` from exporter/runbooks/alerts/"
            f"{group.name}.yaml: edit that, not this.\n"
        )
        files[f"{group.name}.rules.yml"] = header + body
    return files
