"""The runbook map at run time: the `botwatch_alert_runbook_info` metric and the rows of the
landing page's map, both from the catalog and the configured base URLs.

Prometheus' `ALERTS` series carry an alert's labels but not its annotations, so a Grafana
table of firing alerts joins them with this metric on `alertname` to show the runbook link.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from exporter.runbooks.catalog import (
    GROUPS,
    PLACEHOLDER_BASES,
    Catalog,
    dashboard_url,
    runbook_url,
)

INFO_METRIC = "botwatch_alert_runbook_info"


def check_url(url: str) -> str:
    """An absolute http(s) URL; raises ValueError with a one-line reason ("must ...")."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("must be an absolute http:// or https:// URL")
    if any(ch.isspace() for ch in url):
        raise ValueError("must not contain whitespace")
    return url


def check_base(url: str) -> str:
    """A runbook document's URL: the section's anchor is appended, so it carries none."""
    check_url(url)
    if "#" in url:
        raise ValueError("must not contain '#' (the section's anchor is appended to it)")
    return url


def resolve_bases(given: Mapping[str, str]) -> dict[str, str]:
    """The bases for every document: the given ones over the placeholders."""
    unknown = sorted(set(given) - set(GROUPS))
    if unknown:
        raise ValueError(f"unknown runbook {unknown[0]!r} (known: {', '.join(GROUPS)})")
    return {**PLACEHOLDER_BASES, **given}


def runbook_info(catalog: Catalog, bases: Mapping[str, str]) -> Metric:
    family = GaugeMetricFamily(
        INFO_METRIC,
        "Each alert's runbook section and link (join with ALERTS on alertname); always 1.",
        labels=["alertname", "runbook", "section", "runbook_url"],
    )
    for _, _, rule in catalog.alerts():
        ref = rule.runbook
        family.add_metric([rule.alert, ref.doc, ref.section, runbook_url(ref, dict(bases))], 1)
    return family


def sample_names(families: Iterable[Metric]) -> frozenset[str]:
    """The series names of families with at least one sample (`x_total`, not `x`), as an
    alert's expression names them."""
    return frozenset(sample.name for family in families for sample in family.samples)


@dataclass(frozen=True)
class MapRow:
    stack: str
    alert: str
    severity: str
    doc: str
    section: str
    runbook_url: str
    dashboard_url: str
    metrics: tuple[tuple[str, bool], ...]  # (metric, served now)

    @property
    def coverage(self) -> str:
        """'live' when every metric it reads is served, 'partial', 'none', or 'external'
        when it reads no botwatch metric (Prometheus' own `up`)."""
        served = sum(1 for _, ok in self.metrics if ok)
        if not self.metrics:
            return "external"
        if served == len(self.metrics):
            return "live"
        return "partial" if served else "none"


def runbook_map(
    catalog: Catalog, bases: Mapping[str, str], grafana: str, served: frozenset[str]
) -> list[MapRow]:
    return [
        MapRow(
            stack=group.stack,
            alert=rule.alert,
            severity=rule.severity,
            doc=rule.runbook.doc,
            section=rule.runbook.section,
            runbook_url=runbook_url(rule.runbook, dict(bases)),
            dashboard_url=dashboard_url(group, index, grafana),
            metrics=tuple((name, name in served) for name in rule.metrics()),
        )
        for group, index, rule in catalog.alerts()
    ]
