"""HTTP: /metrics from cached bodies, health and readiness, and the landing page.

No handler does collection I/O; /metrics serves bytes rendered at most once per
`render_interval` per format, and concurrent scrapes share one render.
"""

from __future__ import annotations

import asyncio
import gzip
import html
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client.metrics_core import Metric

from exporter import __version__
from exporter.registry import specs
from exporter.render import CONTENT_TYPES, Chunk, assemble, negotiate
from exporter.runbooks.catalog import load_catalog
from exporter.runbooks.info import MapRow, runbook_map, sample_names
from exporter.store import Store
from exporter.threads import BlockingCalls


def _render(fmt: str, chunks: Sequence[Chunk], own: Sequence[Metric]) -> tuple[bytes, bytes]:
    # Prometheus always asks for gzip, so the compressed body is made with the plain one.
    data = assemble(fmt, chunks, own)
    return data, gzip.compress(data, compresslevel=6, mtime=0)


@dataclass(frozen=True)
class Body:
    version: int
    rendered_at: float
    data: bytes
    gzipped: bytes


class Exposition:
    def __init__(self, store: Store, render_interval: float) -> None:
        self.store = store
        self.render_interval = render_interval
        self._blocking = BlockingCalls()
        self._cache: dict[str, Body] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def _cached(self, fmt: str) -> Body | None:
        body = self._cache.get(fmt)
        if body is not None and (
            body.version == self.store.version
            or time.monotonic() - body.rendered_at < self.render_interval
        ):
            return body
        return None

    async def _build(self, fmt: str, names: Sequence[str] | None) -> Body:
        version = self.store.version
        chunks, own = self.store.chunks(names), self.store.own_families(names)
        data, gzipped = await self._blocking.run(f"render {fmt}", _render, fmt, chunks, own)
        return Body(version, time.monotonic(), data, gzipped)

    async def get(self, fmt: str, gzipped: bool, names: Sequence[str] | None = None) -> bytes:
        """The body for one scrape; concurrent scrapes wait for one shared render."""
        body = None if names else self._cached(fmt)
        if body is None:
            async with self._locks.setdefault(fmt, asyncio.Lock()):
                if names:
                    body = await self._build(fmt, names)
                else:
                    body = self._cached(fmt)
                    if body is None:
                        body = self._cache[fmt] = await self._build(fmt, None)
        return body.gzipped if gzipped else body.data


def make_app(
    store: Store, exposition: Exposition, middlewares: Sequence[Middleware] = ()
) -> web.Application:
    async def metrics(request: web.Request) -> web.Response:
        names = request.query.getall("collect[]", [])
        unknown = sorted(set(names) - set(store.states))
        if unknown:
            raise web.HTTPBadRequest(text=f"unknown collector: {', '.join(unknown)}\n")
        fmt = negotiate(request.headers.get("Accept", ""))
        wants_gzip = "gzip" in request.headers.get("Accept-Encoding", "")
        data = await exposition.get(fmt, wants_gzip, names or None)
        headers = {"Content-Type": CONTENT_TYPES[fmt], "Vary": "Accept, Accept-Encoding"}
        if wants_gzip:
            headers["Content-Encoding"] = "gzip"
        return web.Response(body=data, headers=headers)

    async def healthy(_: web.Request) -> web.Response:
        return web.Response(text="Healthy.\n")

    async def ready(_: web.Request) -> web.Response:
        if store.ready:
            return web.Response(text="Ready.\n")
        waiting = sorted(n for n, s in store.states.items() if not s.finished_first_round)
        return web.Response(status=503, text=f"Waiting for: {', '.join(waiting)}\n")

    async def landing(_: web.Request) -> web.Response:
        return web.Response(text=landing_page(store), content_type="text/html")

    app = web.Application(middlewares=list(middlewares))
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/-/healthy", healthy)
    app.router.add_get("/-/ready", ready)
    app.router.add_get("/", landing)
    return app


def _when(timestamp: float | None, now: float) -> str:
    if timestamp is None:
        return "never"
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(timestamp))
    return f"{stamp} ({now - timestamp:.0f}s ago)"


_MARK = {True: ("served", "✓ served"), False: ("missing", "✗ not served")}
_COVERAGE = {
    "live": "all served",
    "partial": "partly served",
    "none": "no data here",
    "external": "Prometheus' own series",
}


def _map_row(row: MapRow) -> str:
    e = html.escape
    metrics = "".join(
        f'<li class="{_MARK[ok][0]}" data-metric="{e(name)}"><code>{e(name)}</code> '
        f'<span class="mark">{_MARK[ok][1]}</span></li>'
        for name, ok in row.metrics
    )
    return (
        f'<tr class="alert {row.coverage}" data-alert="{e(row.alert)}">'
        f"<td>{e(row.alert)}<br><small>{e(row.stack)}</small></td>"
        f'<td class="sev-{e(row.severity)}">{e(row.severity)}</td>'
        f'<td><a class="runbook" href="{e(row.runbook_url)}">{e(row.section)}</a>'
        f"<br><small>{e(row.doc)} · "
        f'<a class="dashboard" href="{e(row.dashboard_url)}">dashboard</a></small></td>'
        f'<td><ul class="metrics">{metrics}</ul></td>'
        f'<td class="coverage">{_COVERAGE[row.coverage]}</td></tr>'
    )


def runbook_map_html(store: Store) -> str:
    """Every alert, its runbook section and whether this botwatch serves what it reads."""
    own = store.own_families()
    served = sample_names([*(f for c in store.chunks() for f in c.families), *own])
    rows = runbook_map(load_catalog(), store.runbook_bases, store.grafana_url, served)
    if not rows:
        return "<p>The alert catalog is empty.</p>"
    counts = Counter(row.coverage for row in rows)
    summary = (
        f'<p id="runbook-summary">{len(rows)} alerts: {counts["live"]} with all their metrics '
        f"served here, {counts['partial']} with some, {counts['none']} with none"
        + (f", {counts['external']} on Prometheus' own series" if counts["external"] else "")
        + ".</p>\n"
    )
    return (
        summary
        + '<table id="runbook-table"><tr><th>Alert</th><th>Severity</th><th>Runbook section</th>'
        "<th>Metrics it reads</th><th>Live data here</th></tr>\n"
        + "\n".join(_map_row(row) for row in rows)
        + "\n</table>"
    )


def landing_page(store: Store) -> str:
    now = time.time()
    helps = specs()
    rows = []
    for name, state in sorted(store.states.items()):
        status = "starting" if not state.finished_first_round else ("up" if state.up else "down")
        error = state.last_error or ""
        if error and state.last_error_time is not None:
            error = f"{error} — {_when(state.last_error_time, now)}"
        help_text = helps[name].help if name in helps else ""
        rows.append(
            f'<tr class="{status}"><td><a href="/metrics?collect[]={html.escape(name)}">'
            f"{html.escape(name)}</a><br><small>{html.escape(help_text)}</small></td>"
            f"<td>{state.kind}</td><td>{status}</td>"
            f"<td>{_when(state.last_success, now)}</td><td>{state.errors_total}</td>"
            f"<td>{html.escape(error)}</td></tr>"
        )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>botwatch</title>
<style>
body{{font-family:system-ui,sans-serif;margin:2em;color:#222}}
table{{border-collapse:collapse}} td,th{{border:1px solid #ccc;padding:.4em .7em;text-align:left;
vertical-align:top}} tr.down td{{background:#fde8e8}} tr.starting td{{background:#fff7e0}}
small{{color:#666}} ul.metrics{{margin:0;padding-left:1em}} li.served .mark{{color:#1a7f37}}
li.missing .mark{{color:#b42318}} tr.alert.none td.coverage{{background:#fde8e8}}
tr.alert.partial td.coverage{{background:#fff7e0}} tr.alert.live td.coverage{{background:#e6f4ea}}
.sev-critical{{color:#b42318;font-weight:bold}}
</style></head>
<body><h1>botwatch {html.escape(__version__)}</h1>
<p><a href="/metrics">Metrics</a> · <a href="/-/healthy">Health</a> ·
<a href="/-/ready">Readiness</a> · <a href="#runbook-map">Runbook map</a></p>
<table><tr><th>Collector</th><th>Kind</th><th>State</th><th>Last success</th><th>Errors</th>
<th>Last error</th></tr>
{"".join(rows)}
</table>
<h2 id="runbook-map">Runbook map</h2>
<p>Each alert, the runbook section it links to, and whether this botwatch serves the metrics
its expression reads right now (a family with at least one sample).</p>
{runbook_map_html(store)}
</body></html>
"""
