"""/metrics, health, readiness and the landing page, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.core import GaugeMetricFamily

from exporter.redact import Redactor
from exporter.render import Chunk
from exporter.store import Store
from exporter.web import Exposition, make_app

OPENMETRICS = {"Accept": "application/openmetrics-text; version=1.0.0"}


def publish(store: Store, name: str, metric: str, value: float) -> None:
    family = GaugeMetricFamily(metric, "Test metric.", value=value)
    store.publish(name, Chunk.build([family], store.reserved_for(name)))
    store.succeeded(name, 0.01)


@pytest.fixture
def store() -> Store:
    store = Store(Redactor(["topsecret"]))
    store.add("alpha", "poller")
    store.add("beta", "poller")
    return store


@pytest.fixture
async def client(store: Store) -> AsyncIterator[TestClient]:  # type: ignore[type-arg]
    app = make_app(store, Exposition(store, render_interval=0.2))
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield client


async def test_ready_only_after_every_first_round(client: TestClient, store: Store) -> None:  # type: ignore[type-arg]
    assert (await client.get("/-/healthy")).status == 200
    response = await client.get("/-/ready")
    assert (response.status, await response.text()) == (503, "Waiting for: alpha, beta\n")
    publish(store, "alpha", "botwatch_a", 1)
    store.failed("beta", "broken")
    assert (await client.get("/-/ready")).status == 200


async def test_text_openmetrics_gzip_and_filter(client: TestClient, store: Store) -> None:  # type: ignore[type-arg]
    publish(store, "alpha", "botwatch_a", 1)
    publish(store, "beta", "botwatch_b", 2)
    text = await (await client.get("/metrics")).text()
    assert "botwatch_a 1.0" in text
    assert "botwatch_b 2.0" in text
    assert not text.endswith("# EOF\n")

    response = await client.get(
        "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert response.headers["Content-Type"].startswith("application/openmetrics-text")
    assert (await response.text()).endswith("# EOF\n")

    raw = await client.get("/metrics", headers={"Accept-Encoding": "gzip"}, auto_decompress=False)
    assert raw.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(await raw.read()).decode() == text

    only = await (await client.get("/metrics", params={"collect[]": "beta"})).text()
    assert "botwatch_b 2.0" in only
    assert "botwatch_a" not in only
    assert 'botwatch_collector_up{collector="beta"} 1.0' in only
    assert 'collector="alpha"' not in only


async def test_concurrent_scrapes_share_one_cached_body(store: Store) -> None:
    publish(store, "alpha", "botwatch_a", 1)
    exposition = Exposition(store, render_interval=60)
    bodies = await asyncio.gather(*(exposition.get("text", False) for _ in range(20)))
    assert all(body is bodies[0] for body in bodies)
    publish(store, "alpha", "botwatch_a", 5)
    # Within render_interval the cached body is served even though the store changed...
    assert await exposition.get("text", False) is bodies[0]
    # ...and once the interval is over, the next scrape renders the new state.
    exposition.render_interval = 0
    assert b"botwatch_a 5.0" in await exposition.get("text", False)


async def test_concurrent_filtered_scrapes_all_succeed(client: TestClient, store: Store) -> None:  # type: ignore[type-arg]
    big = GaugeMetricFamily("botwatch_big", "Many series, so that renders overlap.", labels=["i"])
    for i in range(5000):
        big.add_metric([str(i)], i)
    store.publish("alpha", Chunk.build([big], store.reserved_for("alpha")))
    store.succeeded("alpha")
    responses = await asyncio.gather(
        *(
            # OpenMetrics: the chunk's first OpenMetrics render is slow enough to overlap.
            client.get("/metrics", params={"collect[]": "alpha"}, headers=OPENMETRICS)
            for _ in range(10)
        )
    )
    assert [r.status for r in responses] == [200] * 10
    texts = [await r.text() for r in responses]
    assert all('botwatch_big{i="4999"} 4999.0' in text for text in texts)


async def test_landing_page_lists_collectors_and_escapes_redacted_errors(
    client: TestClient,
    store: Store,  # type: ignore[type-arg]
) -> None:
    publish(store, "alpha", "botwatch_a", 1)
    store.failed("beta", "<script>alert(1)</script> token=topsecret")
    page = await (await client.get("/")).text()
    assert '<a href="/metrics">Metrics</a>' in page
    assert '<tr class="up"><td><a href="/metrics?collect[]=alpha">alpha</a>' in page
    assert '<tr class="down">' in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; token=&lt;redacted&gt;" in page
    assert "topsecret" not in page
    assert "<script>" not in page
