"""Grafana dashboards, generated from the runbook catalog (SKELETON: to be written).

Contract: `render_dashboards(catalog, bases)` returns {file name: JSON text} for
grafana/dashboards/; each alert's panel has id PANEL_ID_BASE + its index in its group, in the
dashboard with uid `botwatch-{group.name}` (catalog.dashboard_url links there).
"""

from __future__ import annotations

from exporter.runbooks.catalog import Catalog


def render_dashboards(catalog: Catalog, bases: dict[str, str] | None = None) -> dict[str, str]:
    return {}
