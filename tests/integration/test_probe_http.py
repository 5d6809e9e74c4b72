"""The `http` probe against real servers on 127.0.0.1: an aiohttp app with one endpoint per
behaviour, raw TCP servers that break HTTP in the ways a sick target does, TLS with a
certificate made by openssl, then the `probes` collector in-process and the real daemon.

No name is looked up in DNS: targets are 127.0.0.1, and the one DNS failure is made by the
resolver aiohttp calls (socket.getaddrinfo) failing for a `.invalid` name, as glibc would.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import functools
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest

from exporter.collector import Context
from exporter.config import Config
from exporter.probes.api import Result
from exporter.probes.collector import ProbesCollector
from exporter.probes.http import HttpCheck, HttpProbeConfig, build
from exporter.probes.models import ProbesConfig
from exporter.threads import BlockingCalls
from tests.integration.conftest import Daemon
from tests.streams import running
from tests.support import eventually, promtool_lint, wait_for

pytestmark = pytest.mark.integration

BIG = 100 * 1024 * 1024
CHUNK = 64 * 1024
DASH = "https://dash.example"
SECRET = "hdr-s3cr3t-7f1d2c"  # a header value: must reach the target and nothing else
QUERY_SECRET = "qry-s3cr3t-4b2e9a"  # in the URL's query
Logs = list[MutableMapping[str, Any]]


# The target ------------------------------------------------------------------------------------


@dataclass
class Target:
    """The aiohttp app probes are pointed at, and what it saw."""

    seen: list[dict[str, str]] = field(default_factory=list)  # request headers, per request
    peers: list[int] = field(default_factory=list)  # client ports of /ok requests
    big_sent: int = 0
    big_completed: bool = False
    big_ended: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)  # ends hung handlers
    elsewhere: str = ""  # base URL of another origin, for redirects away

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/ok", self.ok)
        app.router.add_get("/status/{code}", self.status)
        app.router.add_get("/retry-seconds", self.retry_seconds)
        app.router.add_get("/retry-date", self.retry_date)
        app.router.add_get("/slow", self.slow)
        app.router.add_get("/not-json", self.not_json)
        app.router.add_get("/degraded", self.degraded)
        app.router.add_route("OPTIONS", "/cors", self.cors)
        app.router.add_route("OPTIONS", "/cors-any", self.cors_any)
        app.router.add_get("/big", self.big)
        app.router.add_get("/big-declared", self.big_declared)
        app.router.add_get("/redirect", self.redirect)
        app.router.add_get("/redirect-away", self.redirect_away)
        app.router.add_get("/loop", self.loop)
        app.router.add_get("/redirect-nowhere", self.redirect_nowhere)
        return app

    async def ok(self, request: web.Request) -> web.Response:
        self.seen.append(dict(request.headers))
        peer = request.transport.get_extra_info("peername") if request.transport else None
        self.peers.append(peer[1] if peer else 0)
        return web.json_response({"status": "ok"})

    async def status(self, request: web.Request) -> web.Response:
        self.seen.append(dict(request.headers))
        return web.Response(status=int(request.match_info["code"]))

    async def retry_seconds(self, _: web.Request) -> web.Response:
        return web.Response(status=429, headers={"Retry-After": "120"})

    async def retry_date(self, _: web.Request) -> web.Response:
        when = email.utils.formatdate(time.time() + 90, usegmt=True)
        return web.Response(status=503, headers={"Retry-After": when})

    async def slow(self, _: web.Request) -> web.Response:
        await self.release.wait()
        return web.Response()

    async def not_json(self, _: web.Request) -> web.Response:
        return web.Response(text="<html>down for maintenance</html>", content_type="text/html")

    async def degraded(self, _: web.Request) -> web.Response:
        return web.json_response({"status": "degraded", "checks": [{"name": "db", "ok": False}]})

    async def cors(self, request: web.Request) -> web.Response:
        # Like a server with CORS_ORIGINS=https://dash.example: others get no CORS headers.
        self.seen.append(dict(request.headers))
        if request.headers.get("Origin") == DASH:
            allow = {"Access-Control-Allow-Origin": DASH, "Access-Control-Allow-Methods": "GET"}
            return web.Response(status=204, headers=allow)
        return web.Response(status=403)

    async def cors_any(self, _: web.Request) -> web.Response:
        return web.Response(status=204, headers={"Access-Control-Allow-Origin": "*"})

    async def big(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()  # no Content-Length: only reading tells the size
        await response.prepare(request)
        chunk = b"x" * CHUNK
        try:
            while self.big_sent < BIG:
                await response.write(chunk)
                self.big_sent += CHUNK
            await response.write_eof()
            self.big_completed = True
        except ConnectionError:
            pass  # the client went away: what the test wants to see
        finally:
            self.big_ended.set()
        return response

    async def big_declared(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.content_length = BIG
        await response.prepare(request)
        with contextlib.suppress(ConnectionError):
            await response.write(b"x" * CHUNK)
            await self.release.wait()
        return response

    async def redirect(self, _: web.Request) -> web.Response:
        raise web.HTTPFound("/ok")

    async def redirect_away(self, _: web.Request) -> web.Response:
        raise web.HTTPFound(f"{self.elsewhere}/ok")

    async def loop(self, _: web.Request) -> web.Response:
        raise web.HTTPFound("/loop")

    async def redirect_nowhere(self, _: web.Request) -> web.Response:
        return web.Response(status=302)


@contextlib.asynccontextmanager
async def serving(app: web.Application, tls: ssl.SSLContext | None = None) -> AsyncIterator[int]:
    """`app` on 127.0.0.1 and an ephemeral port, for the block."""
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls)
    await site.start()
    try:
        yield int(runner.addresses[0][1])
    finally:
        await runner.cleanup()


@dataclass
class Served:
    target: Target
    base: str
    other: Target  # the other origin's app
    tls_base: str = ""


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    target, other = Target(), Target()
    async with serving(target.app()) as port, serving(other.app()) as other_port:
        target.elsewhere = f"http://127.0.0.1:{other_port}"
        try:
            yield Served(target, f"http://127.0.0.1:{port}", other)
        finally:
            target.release.set()
            other.release.set()


@contextlib.asynccontextmanager
async def raw_server(reply: bytes | None, close: bool) -> AsyncIterator[str]:
    """A TCP server that reads a request's head, writes `reply` (raw bytes, not necessarily
    HTTP), then closes, or waits for the client to go."""
    handlers: set[asyncio.Task[None]] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        try:
            await reader.readuntil(b"\r\n\r\n")
            if reply is not None:
                writer.write(reply)
                await writer.drain()
            if not close:
                await reader.read()  # until the client closes
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        for task in handlers:  # Python 3.11's wait_closed() does not wait for them
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        await server.wait_closed()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# Driving the probe directly ----------------------------------------------------------------


def config(url: str, **options: Any) -> HttpProbeConfig:
    return HttpProbeConfig.model_validate(
        {"name": "api", "type": "http", "url": url, "timeout": "2s", **options}
    )


async def probe(url: str, **options: Any) -> Result:
    """One check as the collector runs it: under the probe's timeout. The check must end
    by itself before that timeout (TimeoutError here fails the test); slow targets get 1s,
    so the 0.1s between the check's own deadline and this one absorbs a busy machine."""
    check = build(config(url, **options), BlockingCalls())
    try:
        async with asyncio.timeout(check.config.timeout):
            return await check.check()
    finally:
        await check.close()


def values(result: Result) -> dict[str, float]:
    return {sample.family.name: sample.value for sample in result.samples}


STATUS = "botwatch_probe_http_status_code"
REDIRECTS = "botwatch_probe_http_redirects"
RETRY_AFTER = "botwatch_probe_http_retry_after_seconds"
CERT_EXPIRY = "botwatch_probe_tls_cert_expiry_timestamp_seconds"
FAILURES = "botwatch_probe_failures_total"


async def test_ok_with_expected_json(served: Served) -> None:
    result = await probe(f"{served.base}/ok", expect_json={"path": "status", "equals": "ok"})
    assert result == Result(True, samples=result.samples)
    assert values(result) == {STATUS: 200, REDIRECTS: 0}
    assert served.target.seen[-1]["User-Agent"].startswith("botwatch/")


async def test_server_error_is_a_status_failure(served: Served) -> None:
    result = await probe(f"{served.base}/status/500")
    assert (result.success, result.reason, result.error) == (
        False,
        "status",
        "status 500, expected 2xx",
    )
    assert values(result)[STATUS] == 500
    assert RETRY_AFTER not in values(result)


async def test_valid_status_list(served: Served) -> None:
    assert (await probe(f"{served.base}/status/418", valid_status=[418])).success
    result = await probe(f"{served.base}/status/404", valid_status=[200, 204])
    assert result.error == "status 404, expected 200 or 204"


async def test_retry_after_in_seconds(served: Served) -> None:
    result = await probe(f"{served.base}/retry-seconds")
    assert (result.reason, result.error) == ("status", "status 429, expected 2xx")
    assert values(result)[RETRY_AFTER] == 120.0


async def test_retry_after_as_a_date(served: Served) -> None:
    result = await probe(f"{served.base}/retry-date")
    assert (result.reason, result.error) == ("status", "status 503, expected 2xx")
    assert 85.0 <= values(result)[RETRY_AFTER] <= 91.0  # HTTP dates have whole seconds


async def test_a_target_that_never_answers_times_out_by_itself(served: Served) -> None:
    started = time.monotonic()
    result = await probe(f"{served.base}/slow", timeout="1s")
    assert (result.reason, result.error) == (
        "timeout",
        "no response within 0.9s of sending the request",
    )
    assert time.monotonic() - started < 1.0


async def test_body_not_json(served: Served) -> None:
    result = await probe(f"{served.base}/not-json", expect_json={"path": "status", "equals": "ok"})
    assert (result.reason, result.error) == (
        "body",
        "body: not JSON (Expecting value at line 1 column 1)",
    )
    assert values(result)[STATUS] == 200


async def test_json_value_differs_or_is_missing(served: Served) -> None:
    url = f"{served.base}/degraded"
    result = await probe(url, expect_json={"path": "status", "equals": "ok"})
    assert (result.reason, result.error) == ("body", "body: $.status is 'degraded', expected 'ok'")
    result = await probe(url, expect_json={"path": "$.checks.0.ok", "equals": True})
    assert result.error == "body: $.checks.0.ok is false, expected true"
    result = await probe(url, expect_json={"path": "version", "equals": "1.2"})
    assert result.error == "body: $.version is missing"


async def test_cors_preflight_allowed(served: Served) -> None:
    result = await probe(f"{served.base}/cors", cors={"origin": DASH})
    assert result.success, result.error
    assert values(result)[STATUS] == 204
    preflight = served.target.seen[-1]
    assert preflight["Origin"] == DASH
    assert preflight["Access-Control-Request-Method"] == "GET"
    assert (await probe(f"{served.base}/cors-any", cors={"origin": DASH})).success


async def test_cors_preflight_denied(served: Served) -> None:
    result = await probe(f"{served.base}/cors", cors={"origin": "https://evil.example"})
    assert (result.reason, result.error) == (
        "cors",
        "CORS: Access-Control-Allow-Origin missing (status 403)",
    )
    result = await probe(f"{served.base}/cors-any", cors={"origin": DASH, "allow_origin": DASH})
    assert (
        result.error == "CORS: Access-Control-Allow-Origin is '*', expected 'https://dash.example'"
    )
    result = await probe(f"{served.base}/cors-any", cors={"origin": DASH, "request_method": "PUT"})
    assert result.error == "CORS: PUT is not in Access-Control-Allow-Methods"


async def test_a_100_mb_body_is_not_read(served: Served) -> None:
    limit = 1 << 20
    result = await probe(f"{served.base}/big", max_body_bytes=limit)
    assert (result.reason, result.error) == ("body", f"body: more than max_body_bytes {limit}")
    target = served.target
    # The server sees the client go away long before the end: what it got written is the
    # limit plus what the socket buffers on both sides hold.
    await asyncio.wait_for(target.big_ended.wait(), 5)
    assert not target.big_completed
    assert target.big_sent < 32 * 1024 * 1024


async def test_a_declared_100_mb_body_is_refused_from_its_header(served: Served) -> None:
    result = await probe(f"{served.base}/big-declared")
    assert (result.reason, result.error) == (
        "body",
        "body: Content-Length 104857600 is over max_body_bytes 1048576",
    )


async def test_redirects_followed_counted_or_refused(served: Served) -> None:
    result = await probe(f"{served.base}/redirect")
    assert result.success
    assert values(result) == {STATUS: 200, REDIRECTS: 1}
    result = await probe(f"{served.base}/redirect", follow_redirects=False)
    assert (result.reason, result.error) == ("status", "status 302, expected 2xx")
    result = await probe(f"{served.base}/loop")
    assert (result.reason, result.error) == ("status", "more than 10 redirects")
    result = await probe(f"{served.base}/redirect-nowhere")
    assert (result.reason, result.error) == ("status", "status 302, expected 2xx")
    assert values(result)[REDIRECTS] == 0  # a 302 without Location is not followed


async def test_each_check_opens_a_new_connection_on_one_session(served: Served) -> None:
    check = build(config(f"{served.base}/ok"), BlockingCalls())
    assert isinstance(check, HttpCheck)
    try:
        assert (await check.check()).success
        session = check._session
        assert (await check.check()).success
        assert check._session is session  # one session per probe
    finally:
        await check.close()
    assert session is not None and session.closed
    first, second = served.target.peers[-2:]
    assert first != second  # not a kept-alive connection: a new one each time


# Broken servers --------------------------------------------------------------------------------


async def test_garbage_instead_of_http() -> None:
    async with raw_server(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n", close=False) as url:
        result = await probe(url)
    assert result.reason == "protocol"
    assert result.error is not None and result.error.startswith("not a valid HTTP response (")
    assert "\n" not in result.error


async def test_connection_closed_mid_headers() -> None:
    async with raw_server(b"HTTP/1.1 200 OK\r\nContent-Type: appl", close=True) as url:
        result = await probe(url)
    assert (result.reason, result.error) == (
        "protocol",
        "connection closed before the response was complete",
    )


async def test_connection_closed_mid_body() -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"
    async with raw_server(head + b"x" * 10, close=True) as url:
        result = await probe(url)
    assert result.reason == "protocol"
    assert values(result)[STATUS] == 200


async def test_accepts_and_never_answers() -> None:
    async with raw_server(None, close=False) as url:
        result = await probe(url, timeout="1s")
    assert (result.reason, result.error) == (
        "timeout",
        "no response within 0.9s of sending the request",
    )


async def test_headers_then_a_body_that_never_comes() -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nxx"
    async with raw_server(head, close=False) as url:
        result = await probe(url, timeout="1s")
    assert (result.reason, result.error) == ("timeout", "body not complete within 0.9s")
    assert values(result)[STATUS] == 200


async def test_connection_refused() -> None:
    port = closed_port()
    result = await probe(f"http://127.0.0.1:{port}/health")
    assert (result.reason, result.error) == ("refused", f"127.0.0.1:{port}: connection refused")
    assert result.samples == []


@pytest.fixture
def resolver(monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Event]:
    """socket.getaddrinfo, where aiohttp's default resolver ends: `.invalid` names fail as
    glibc fails them (EAI_NONAME), `hang.invalid` blocks until the returned event is set,
    127.0.0.1 resolves, and any other name fails the test instead of leaving the machine."""
    real = socket.getaddrinfo
    unblock = threading.Event()

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host)
        if name.rstrip(".") == "hang.invalid":
            unblock.wait(10)
        if name.rstrip(".").endswith(".invalid"):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        if name not in ("127.0.0.1", "localhost"):
            raise AssertionError(f"the test tried to resolve {name!r}")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield unblock
    unblock.set()


async def test_name_that_does_not_resolve(resolver: threading.Event) -> None:
    result = await probe("http://nosuch.invalid/health")
    assert (result.reason, result.error) == (
        "dns",
        "cannot resolve nosuch.invalid: Name or service not known",
    )


async def test_a_hung_lookup_is_a_dns_timeout(resolver: threading.Event) -> None:
    result = await probe("http://hang.invalid/health", timeout="1s")
    resolver.set()  # the lookup thread goes; the loop's executor waits for it at the end
    assert (result.reason, result.error) == ("timeout", "DNS lookup not done within 0.9s")


# TLS -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cert:
    cert: Path
    key: Path
    not_after: float


def make_certificate(directory: Path, san: str) -> Cert:
    """A self-signed certificate (a CA too, as openssl makes them) for `san`, 30 days."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "ec"),
            *("-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "30"),
            *("-subj", "/CN=botwatch-test", "-addext", f"subjectAltName={san}"),
            *("-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    end = subprocess.run(
        ["openssl", "x509", "-noout", "-enddate", "-in", str(cert)],
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout
    return Cert(cert, key, ssl.cert_time_to_seconds(end.strip().removeprefix("notAfter=")))


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Cert:
    return make_certificate(tmp_path_factory.mktemp("tls"), "DNS:localhost,IP:127.0.0.1")


@pytest.fixture(scope="module")
def other_certificate(tmp_path_factory: pytest.TempPathFactory) -> Cert:
    return make_certificate(tmp_path_factory.mktemp("tls-other"), "DNS:api.example")


@pytest.fixture
async def tls_served(certificate: Cert) -> AsyncIterator[str]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificate.cert, certificate.key)
    async with serving(Target().app(), context) as port:
        yield f"https://127.0.0.1:{port}"


async def test_https_without_verification_reports_the_expiry(
    tls_served: str, certificate: Cert
) -> None:
    result = await probe(f"{tls_served}/ok", tls_verify=False)
    assert result.success, result.error
    assert values(result) == {STATUS: 200, REDIRECTS: 0, CERT_EXPIRY: certificate.not_after}


async def test_https_untrusted_certificate_fails_and_still_reports_the_expiry(
    tls_served: str, certificate: Cert
) -> None:
    result = await probe(f"{tls_served}/ok")
    assert result.reason == "tls"
    assert result.error is not None
    assert result.error.startswith("127.0.0.1:")
    assert result.error.endswith("certificate not accepted: self-signed certificate")
    # An untrusted, expired or soon-expiring certificate is when its date matters most.
    assert values(result) == {CERT_EXPIRY: certificate.not_after}


async def test_https_verified_against_a_trusted_certificate(
    tls_served: str, certificate: Cert, monkeypatch: pytest.MonkeyPatch
) -> None:
    # OpenSSL's default verify paths honour SSL_CERT_FILE: the test's certificate is the CA.
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate.cert))
    result = await probe(f"{tls_served}/ok")
    assert result.success, result.error
    assert values(result)[CERT_EXPIRY] == certificate.not_after
    by_name = await probe(tls_served.replace("127.0.0.1", "localhost") + "/ok")  # /etc/hosts
    assert by_name.success, by_name.error


async def test_https_certificate_for_another_name(
    other_certificate: Cert, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(other_certificate.cert))  # trusted, for api.example
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(other_certificate.cert, other_certificate.key)
    async with serving(Target().app(), context) as port:
        result = await probe(f"https://127.0.0.1:{port}/ok")
    assert result.reason == "tls"
    assert result.error == (
        f"127.0.0.1:{port}: certificate not accepted: "
        "IP address mismatch, certificate is not valid for '127.0.0.1'."
    )
    assert values(result) == {CERT_EXPIRY: other_certificate.not_after}


async def test_https_handshake_dropped_by_the_server() -> None:
    async def drop(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()  # a TLS front that does not know the name, say

    server = await asyncio.start_server(drop, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        result = await probe(f"https://127.0.0.1:{port}/ok")
    finally:
        server.close()
        await server.wait_closed()
    assert result.reason == "tls"
    assert result.error is not None
    assert result.error.startswith(f"127.0.0.1:{port}: TLS handshake failed: ")


async def test_https_to_a_plain_http_port_is_a_tls_failure(served: Served) -> None:
    result = await probe(served.base.replace("http://", "https://") + "/ok")
    assert result.reason == "tls"
    assert result.error is not None and "TLS handshake failed" in result.error


# Secrets ---------------------------------------------------------------------------------------


async def test_secret_header_reaches_the_target_only(served: Served, captured_logs: Logs) -> None:
    headers = {"X-Api-Key": SECRET}
    ok = await probe(f"{served.base}/ok", headers=headers)
    assert ok.success
    assert served.target.seen[-1]["X-Api-Key"] == SECRET
    failed = await probe(f"{served.base}/status/500?token={QUERY_SECRET}", headers=headers)
    assert served.target.seen[-1]["X-Api-Key"] == SECRET
    assert failed.error == "status 500, expected 2xx"
    # Another origin: a redirect there carries no configured header (like Authorization).
    away = await probe(f"{served.base}/redirect-away", headers=headers)
    assert away.success
    assert "X-Api-Key" not in served.other.seen[-1]
    assert served.other.seen[-1]["User-Agent"].startswith("botwatch/")
    for result in (ok, failed, away):
        assert SECRET not in repr(result)
        assert QUERY_SECRET not in repr(result)
    assert SECRET not in repr(captured_logs)


# Through the probes collector ------------------------------------------------------------------


def probes_collector(tmp_path: Path, probes: list[dict[str, Any]]) -> ProbesCollector:
    section = Config.model_validate({"probes": probes}).collector_configs()["probes"]
    assert isinstance(section, ProbesConfig)
    return ProbesCollector(section, Context("probes", tmp_path, BlockingCalls()))


def exposition(collector: ProbesCollector) -> str:
    registry = CollectorRegistry()

    class Adapter:
        def collect(self) -> Any:
            return collector.families()

    registry.register(Adapter())  # type: ignore[arg-type]
    return generate_latest(registry).decode()


async def test_through_the_probes_collector(
    served: Served, tmp_path: Path, captured_logs: Logs
) -> None:
    def fast(name: str, path: str, **options: Any) -> dict[str, Any]:
        url = f"{served.base}{path}"
        return {"name": name, "type": "http", "url": url, "interval": "200ms", **options}

    key = {"X-Api-Key": SECRET}
    collector = probes_collector(
        tmp_path,
        [
            fast("healthy", "/ok", headers=key),
            fast("broken", f"/status/500?token={QUERY_SECRET}", headers=key),
            fast("degraded", "/degraded", expect_json={"path": "status", "equals": "ok"}),
            fast("cors", "/cors", cors={"origin": "https://evil.example"}),
            fast("hung", "/slow", timeout="150ms"),
        ],
    )
    async with running(collector) as run:
        for name in ("healthy", "broken", "degraded", "cors", "hung"):
            await eventually(
                lambda name=name: (run.value("botwatch_probe_checks_total", probe=name) or 0) >= 2,
                10,
                f"two checks of {name}",
            )
        assert run.value("botwatch_probe_success", probe="healthy") == 1
        assert run.value(STATUS, probe="healthy") == 200
        for name, reason in (
            ("broken", "status"),
            ("degraded", "body"),
            ("cors", "cors"),
            ("hung", "timeout"),
        ):
            assert run.value("botwatch_probe_success", probe=name) == 0
            failures = functools.partial(run.value, FAILURES, probe=name)
            assert (failures(reason=reason) or 0) >= 2
            assert failures(reason="dns") == 0  # every reason is there from the start
        assert run.value(STATUS, probe="broken") == 500
        assert run.value(STATUS, probe="hung") is None
        assert (run.value("botwatch_probe_duration_seconds", probe="hung") or 1) < 0.2
        text = exposition(collector)
        sessions = [getattr(check, "_session", None) for _, check in collector.checks]
    # The collector's close() (at the end of `running`) closed every probe's session.
    assert all(session is not None and session.closed for session in sessions)
    assert "botwatch_probe_tls_cert_expiry_timestamp_seconds" in text  # declared, no samples
    assert SECRET not in text and QUERY_SECRET not in text
    logged = {e["probe"]: e for e in captured_logs if e["event"] == "probe failed"}
    assert logged["broken"]["error"] == "status 500, expected 2xx"
    assert logged["degraded"]["error"] == "body: $.status is 'degraded', expected 'ok'"
    assert logged["cors"]["error"] == "CORS: Access-Control-Allow-Origin missing (status 403)"
    assert logged["hung"]["reason"] == "timeout"
    assert SECRET not in repr(captured_logs) and QUERY_SECRET not in repr(captured_logs)


# The real daemon -------------------------------------------------------------------------------


@contextlib.contextmanager
def target_in_a_thread() -> Iterator[str]:
    """The target app on its own loop in a thread: the daemon fixture's waits block."""
    started = threading.Event()
    stop: list[Callable[[], None]] = []
    base: list[str] = []

    def serve() -> None:
        async def main() -> None:
            done = asyncio.Event()
            loop = asyncio.get_running_loop()
            stop.append(lambda: loop.call_soon_threadsafe(done.set))
            target = Target()
            async with serving(target.app()) as port:
                base.append(f"http://127.0.0.1:{port}")
                started.set()
                await done.wait()
                target.release.set()

        asyncio.run(main())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert started.wait(10), "the target did not start"
    try:
        yield base[0]
    finally:
        stop[0]()
        thread.join(10)


def test_daemon_serves_http_probes_and_passes_promtool(
    daemon: Callable[..., Daemon], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BOTWATCH_TEST_API_KEY", SECRET)
    with target_in_a_thread() as base:
        path = tmp_path / "botwatch.yml"
        path.write_text(
            "web: {listen_address: '127.0.0.1:0'}\n"
            f"state_dir: {tmp_path / 'state'}\n"
            "collectors: {host: {enabled: false}, oom: {enabled: false}}\n"
            "probes:\n"
            f"  - name: trader-api-health\n    type: http\n    url: {base}/ok\n"
            "    interval: 500ms\n    timeout: 400ms\n"
            "    headers: {X-Api-Key: '${BOTWATCH_TEST_API_KEY}'}\n"
            "    expect_json: {path: status, equals: ok}\n"
            f"  - name: rate-limited\n    type: http\n    url: {base}/retry-seconds\n"
            "    interval: 500ms\n    timeout: 400ms\n"
            "    headers: {X-Api-Key: '${BOTWATCH_TEST_API_KEY}'}\n"
        )
        d = daemon(path)
        wait_for(
            lambda: (
                d.sample("botwatch_probe_success", probe="rate-limited") == 0
                and d.sample("botwatch_probe_success", probe="trader-api-health") == 1
            ),
            20,
            "both probes to have run",
        )
        body = d.metrics()
    assert promtool_lint(body) == ""
    assert f'{STATUS}{{probe="trader-api-health"}} 200.0' in body
    assert f'{RETRY_AFTER}{{probe="rate-limited"}} 120.0' in body
    assert f'{FAILURES}{{probe="rate-limited",reason="status"}}' in body
    assert SECRET not in body
    failed = d.events("probe failed")
    assert failed and failed[0]["error"] == "status 429, expected 2xx"
    assert SECRET not in "".join(d.raw)
