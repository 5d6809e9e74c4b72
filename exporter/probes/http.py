"""`http`: HTTP(S) endpoint: status, JSON body, CORS preflight, Retry-After, TLS expiry (aiohttp).

The config and the exchange live here; the judgments on a response are in httpjudge.py, the
certificate's expiry in tlscert.py.

One check is one request (redirects followed when asked), on a fresh connection each time:
a probe that reused a keep-alive connection would miss a listener that stopped accepting
and a renewed certificate. The session (connector, TLS context) lives as long as the probe.

The check gives itself a little less than the probe's `timeout`, so that a slow target is
reported with the step it was stuck in (DNS, connect, response, body); the collector's own
cut at `timeout` stays the backstop. Everything read from the target is bounded: header
lines by aiohttp's limits, the body by `max_body_bytes`.

Secrets: header values (often `${ENV}` tokens) and the URL (its query or userinfo may hold
one) are never put in an error, a label or a log event; errors name at most host:port.
Configured headers go to the configured origin only: a redirect elsewhere drops them, as
aiohttp itself drops Authorization.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import re
import ssl
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from exporter import __version__
from exporter.models import Strict
from exporter.probes.api import FamilySpec, ProbeConfig, Result, Sample
from exporter.probes.httpjudge import (
    SHOWN_CHARS,
    body_too_long,
    cors_verdict,
    expected_status,
    json_path,
    json_verdict,
    retry_after_seconds,
    status_ok,
)
from exporter.probes.tlscert import cert_not_after
from exporter.threads import BlockingCalls

if TYPE_CHECKING:
    from types import SimpleNamespace

    import aiohttp

TYPE = "http"
REASONS = (
    "timeout",
    "dns",
    "refused",
    "unreachable",
    "tls",
    "protocol",  # not HTTP, connection closed or reset mid-response, a bad redirect
    "status",
    "body",  # too big, not JSON, path missing, value differs
    "cors",
)
STATUS_CODE = FamilySpec(
    "botwatch_probe_http_status_code",
    "HTTP status of the probe's last response (after redirects).",
)
REDIRECTS = FamilySpec(
    "botwatch_probe_http_redirects",
    "Redirects the probe's last check followed before its final response.",
)
RETRY_AFTER = FamilySpec(
    "botwatch_probe_http_retry_after_seconds",
    "Retry-After of the probe's last response when it was a 429 or 503, in seconds.",
)
CERT_EXPIRY = FamilySpec(
    "botwatch_probe_tls_cert_expiry_timestamp_seconds",
    "When the server's TLS certificate expires (its notAfter), Unix time.",
)
FAMILIES = (STATUS_CODE, REDIRECTS, RETRY_AFTER, CERT_EXPIRY)

MAX_REDIRECTS = 10
# Statuses whose Retry-After tells a client when to come back (RFC 9110 section 10.2.3).
RETRY_AFTER_STATUSES = frozenset({429, 503})
# How long before the collector's cut the check stops itself to say which step was slow.
OWN_DEADLINE_MARGIN = 0.1
READ_CHUNK = 64 * 1024
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 token: methods, header names


# Config ------------------------------------------------------------------------------------


def _http_url(value: str, what: str) -> str:
    from yarl import URL

    try:
        url = URL(value)
        host = url.host
    except (ValueError, TypeError):
        raise PydanticCustomError("url", "not a valid {what}", {"what": what}) from None
    if url.scheme not in ("http", "https"):
        raise PydanticCustomError("url", "must be an http:// or https:// {what}", {"what": what})
    if not host:
        raise PydanticCustomError("url", "{what} has no host", {"what": what})
    return value


def _method(value: str) -> str:
    if not _TOKEN.fullmatch(value):
        raise ValueError("must be a method name like GET or POST")
    return value.upper()


def _header_name(value: str) -> str:
    if not _TOKEN.fullmatch(value):
        raise ValueError("not a header name")
    return value


def _header_value(value: str) -> str:
    # A config error shows a literal value (one from ${ENV} is named, not shown).
    if any(c in value for c in "\r\n\0"):
        raise ValueError("a header value must not hold a line break or NUL")
    return value


Method = Annotated[str, AfterValidator(_method)]
HeaderName = Annotated[str, AfterValidator(_header_name)]
HeaderValue = Annotated[str, AfterValidator(_header_value)]
StatusCode = Annotated[int, Field(ge=100, le=599)]


class JsonCheck(Strict):
    """The body is JSON and the value at `path` equals `equals`. The path is dotted
    (`data.items.0.state`; numbers index lists; `$.` in front is allowed, `$` is the root)."""

    path: str
    equals: str | int | float | bool | None

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        json_path(value)
        return value


class CorsCheck(Strict):
    """OPTIONS with Origin and Access-Control-Request-Method; success when the response's
    Access-Control-Allow-Origin is `allow_origin` (default: `origin`, or `*`)."""

    origin: str
    request_method: Method = "GET"
    allow_origin: str | None = None

    @field_validator("origin")
    @classmethod
    def _origin(cls, value: str) -> str:
        from yarl import URL

        _http_url(value, "origin")
        if URL(value).path not in ("", "/") or "?" in value or "#" in value:
            raise PydanticCustomError("origin", "an origin is scheme://host[:port], no path")
        return value.rstrip("/")


class HttpProbeConfig(ProbeConfig):
    type: Literal["http"]
    url: str  # http:// or https://
    method: Method = "GET"
    # Values may come from ${ENV} (tokens): they never appear in a metric, log or error.
    headers: dict[HeaderName, HeaderValue] = {}
    body: str | None = None
    valid_status: list[StatusCode] = []  # empty: any 2xx
    expect_json: JsonCheck | None = None  # e.g. {path: status, equals: ok}
    cors: CorsCheck | None = None  # a preflight instead of `method` (runbook scenario 11)
    max_body_bytes: int = Field(default=1 << 20, ge=0)  # read at most this much
    tls_verify: bool = True
    follow_redirects: bool = True

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return _http_url(value, "URL")

    @model_validator(mode="after")
    def _consistent(self) -> HttpProbeConfig:
        if self.cors is not None:
            for key in ("method", "body", "expect_json"):
                if key in self.model_fields_set:
                    raise PydanticCustomError(
                        "cors",
                        "a cors probe sends an OPTIONS preflight: drop {key}",
                        {"key": key, "at": key},
                    )
        if self.method == "HEAD" and self.expect_json is not None:
            raise PydanticCustomError(
                "head", "a HEAD response has no body to check", {"at": "expect_json"}
            )
        return self


# Pure parts ----------------------------------------------------------------------------------


def own_deadline(timeout: float) -> float:
    """The part of the collector's timeout the check gives itself."""
    return timeout - min(OWN_DEADLINE_MARGIN, timeout / 10)


def classify(exc: BaseException, tls: bool = False) -> tuple[str, str]:  # noqa: PLR0911
    """A failed exchange's reason and one-line error (`tls`: the URL is https). Built from
    the exception's parts (host, port, OS error), never from str(exc): aiohttp's messages
    quote the full URL."""
    import aiohttp

    if isinstance(exc, aiohttp.ClientConnectorError):
        return _not_connected(exc, tls)
    if isinstance(exc, aiohttp.TooManyRedirects):
        return "status", f"more than {MAX_REDIRECTS} redirects"
    if isinstance(exc, aiohttp.RedirectClientError | aiohttp.NonHttpUrlClientError):
        return "protocol", "redirected to an invalid or non-HTTP location"
    if isinstance(exc, aiohttp.ClientResponseError):  # the parser's, as no status raises
        return "protocol", f"not a valid HTTP response ({_first_line(exc.message)})"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "protocol", "connection closed before the response was complete"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "protocol", "body incomplete or malformed (connection closed mid-body?)"
    if isinstance(exc, TimeoutError):
        return "timeout", "timed out"
    if isinstance(exc, OSError):
        return "protocol", f"connection error: {_os_text(exc)}"
    return "protocol", type(exc).__name__


def _not_connected(exc: aiohttp.ClientConnectorError, tls: bool) -> tuple[str, str]:
    import aiohttp

    where, os_error = f"{exc.host}:{exc.port}", exc.os_error
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return "dns", f"cannot resolve {exc.host}: {_os_text(os_error)}"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        cert = exc.certificate_error
        why = getattr(cert, "verify_message", None) or getattr(cert, "reason", None) or "?"
        return "tls", f"{where}: certificate not accepted: {why}"
    if isinstance(exc, aiohttp.ClientSSLError):
        why = getattr(os_error, "reason", None) or _os_text(os_error)
        return "tls", f"{where}: TLS handshake failed: {why}"
    if isinstance(os_error, ConnectionRefusedError) or os_error.errno == errno.ECONNREFUSED:
        return "refused", f"{where}: connection refused"
    if tls and isinstance(os_error, ConnectionResetError | ConnectionAbortedError):
        # TCP was up (a reset to the SYN is "refused"): the peer dropped the handshake.
        return "tls", f"{where}: TLS handshake failed: {_os_text(os_error)}"
    return "unreachable", f"{where}: {_os_text(os_error)}"


def _os_text(error: OSError) -> str:
    return error.strerror or type(error).__name__


def _first_line(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else "empty"
    return line if len(line) <= SHOWN_CHARS else line[: SHOWN_CHARS - 3] + "..."


@dataclass
class Observed:
    """What the check saw of the final response; kept when a later step fails."""

    status: int | None = None
    redirects: int | None = None
    retry_after: float | None = None
    cert_expiry: float | None = None

    def samples(self, probe: str) -> list[Sample]:
        labels = {"probe": probe}
        pairs = (
            (STATUS_CODE, self.status),
            (REDIRECTS, self.redirects),
            (RETRY_AFTER, self.retry_after),
            (CERT_EXPIRY, self.cert_expiry),
        )
        return [Sample(spec, labels, value) for spec, value in pairs if value is not None]


@dataclass
class Step:
    """Where an exchange is, for a timeout's error."""

    name: str = "connect"

    def timeout_error(self, seconds: float) -> str:
        limit = f"{seconds:.3g}s"
        return {
            "dns": f"DNS lookup not done within {limit}",
            "connect": f"no connection (TCP/TLS) within {limit}",
            "response": f"no response within {limit} of sending the request",
            "body": f"body not complete within {limit}",
        }[self.name]


class Failed(Exception):
    """A check that ends in a failed Result from within the exchange."""

    def __init__(self, reason: str, error: str) -> None:
        super().__init__(error)
        self.reason, self.error = reason, error


# I/O -----------------------------------------------------------------------------------------


class HttpCheck:
    def __init__(self, config: HttpProbeConfig) -> None:
        from yarl import URL

        self.config = config
        self._https = URL(config.url).scheme == "https"
        self._session: aiohttp.ClientSession | None = None
        # DER certificates of this check's TLS handshakes, in order (see _tls_context).
        self._peer_certs: list[bytes] = []
        self._peek_context: ssl.SSLContext | None = None

    async def check(self) -> Result:
        config = self.config
        loop = asyncio.get_running_loop()
        budget = own_deadline(config.timeout)
        deadline = loop.time() + budget
        seen, step = Observed(), Step()
        self._peer_certs.clear()
        import aiohttp

        try:
            async with asyncio.timeout_at(deadline):
                await self._exchange(seen, step)
        except Failed as failed:
            return Result(False, failed.reason, failed.error, seen.samples(config.name))
        except TimeoutError:
            error = step.timeout_error(budget)
            return Result(False, "timeout", error, seen.samples(config.name))
        except (aiohttp.ClientError, OSError) as exc:
            reason, error = classify(exc, tls=self._https)
            if isinstance(exc, aiohttp.ClientConnectorCertificateError):
                # An expired or untrusted certificate is when its expiry matters most.
                seen.cert_expiry = await self._peek_expiry(exc.host, exc.port, deadline)
            return Result(False, reason, error, seen.samples(config.name))
        return Result(True, samples=seen.samples(config.name))

    async def close(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    async def _exchange(self, seen: Observed, step: Step) -> None:
        config, cors = self.config, self.config.cors
        headers = dict(config.headers)
        if not any(name.lower() == "user-agent" for name in headers):
            headers["User-Agent"] = f"botwatch/{__version__}"
        method = "OPTIONS" if cors else config.method
        if cors is not None:
            headers |= {"Origin": cors.origin, "Access-Control-Request-Method": cors.request_method}
        data = config.body.encode() if config.body is not None else None
        session = self._session or self._open()
        async with session.request(
            method,
            config.url,
            headers=headers,
            data=data,
            allow_redirects=config.follow_redirects,
            max_redirects=MAX_REDIRECTS + 1,  # aiohttp fails on reaching it, not passing it
            trace_request_ctx=step,
        ) as response:
            step.name = "body"
            self._observe(response, seen)
            if cors is not None:
                error = cors_verdict(
                    response.headers.getall("Access-Control-Allow-Origin", []),
                    response.headers.getall("Access-Control-Allow-Methods", []),
                    cors,
                    response.status,
                )
                if error:
                    raise Failed("cors", error)
            if not status_ok(response.status, config.valid_status):
                wanted = expected_status(config.valid_status)
                raise Failed("status", f"status {response.status}, expected {wanted}")
            if method == "HEAD":
                return  # no body follows, whatever Content-Length says
            too_long = body_too_long(response.content_length, config.max_body_bytes)
            if too_long:
                response.close()  # not drained: the connection goes with it
                raise Failed("body", too_long)
            body = await read_at_most(response.content, config.max_body_bytes)
            if body is None:
                response.close()
                raise Failed("body", f"body: more than max_body_bytes {config.max_body_bytes}")
        if config.expect_json is not None:
            error = json_verdict(body, config.expect_json)
            if error:
                raise Failed("body", error)

    def _observe(self, response: aiohttp.ClientResponse, seen: Observed) -> None:
        seen.status = response.status
        # A redirect without Location ends the chain, yet aiohttp lists it in the history.
        seen.redirects = sum(1 for hop in response.history if hop is not response)
        value = response.headers.get("Retry-After")
        if response.status in RETRY_AFTER_STATUSES and value is not None:
            seen.retry_after = retry_after_seconds(value, time.time())
        if response.url.scheme == "https" and self._peer_certs:
            # The last handshake is the final hop's: every hop has a connection of its own.
            with contextlib.suppress(ValueError):
                seen.cert_expiry = cert_not_after(self._peer_certs[-1])

    async def _peek_expiry(self, host: str, port: int | None, deadline: float) -> float | None:
        """A second handshake that does not verify, to read the certificate's expiry."""
        if self._peek_context is None:
            self._peek_context = self._tls_context(verify=False)
        self._peer_certs.clear()
        with contextlib.suppress(OSError, TimeoutError, ValueError):
            async with asyncio.timeout_at(deadline):
                _, writer = await asyncio.open_connection(
                    host, port or 443, ssl=self._peek_context, server_hostname=host
                )
                writer.transport.abort()  # the certificate was all it was for
        with contextlib.suppress(ValueError, IndexError):
            return cert_not_after(self._peer_certs[-1])
        return None

    def _open(self) -> aiohttp.ClientSession:
        import aiohttp

        connector = aiohttp.TCPConnector(
            ssl=self._tls_context(self.config.tls_verify),
            force_close=True,  # a fresh connection per check: see the module's docstring
            use_dns_cache=False,  # a probe must see DNS fail when it fails
            limit=0,
        )
        tracing = aiohttp.TraceConfig()
        tracing.on_connection_create_start.append(_at_step("connect"))
        tracing.on_dns_resolvehost_start.append(_at_step("dns"))
        tracing.on_dns_resolvehost_end.append(_at_step("connect"))
        tracing.on_request_headers_sent.append(_at_step("response"))
        self._session = aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            trust_env=False,  # no proxy from the environment: probe the target itself
            # The check's own deadline bounds every step; aiohttp's 5-minute default is moot.
            timeout=aiohttp.ClientTimeout(total=None),
            trace_configs=[tracing],
            middlewares=(_same_origin_headers(self.config),),
        )
        return self._session

    def _tls_context(self, verify: bool) -> ssl.SSLContext:
        """A client context that also records each handshake's peer certificate, verified or
        not (asyncio's TLS goes through SSLContext.wrap_bio, hence sslobject_class)."""
        context = ssl.create_default_context()
        if not verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        sink = self._peer_certs

        class Recording(ssl.SSLObject):
            def do_handshake(self) -> None:
                super().do_handshake()
                der = self.getpeercert(binary_form=True)
                if der:
                    sink.append(der)

        context.sslobject_class = Recording
        return context


async def read_at_most(stream: aiohttp.StreamReader, limit: int) -> bytes | None:
    """The whole body if it is at most `limit` bytes, else None after reading limit + 1."""
    body = bytearray()
    while len(body) <= limit:
        chunk = await stream.read(min(READ_CHUNK, limit + 1 - len(body)))
        if not chunk:
            return bytes(body)
        body += chunk
    return None


def _at_step(name: str) -> Any:
    async def mark(
        session: aiohttp.ClientSession, context: SimpleNamespace, params: object
    ) -> None:
        step = context.trace_request_ctx
        if isinstance(step, Step):
            step.name = name

    return mark


def _same_origin_headers(config: HttpProbeConfig) -> Any:
    """Client middleware: the configured headers go to the configured origin only."""
    from yarl import URL

    origin = URL(config.url).origin()
    names = list(config.headers)

    async def middleware(request: aiohttp.ClientRequest, handler: Any) -> aiohttp.ClientResponse:
        if request.url.origin() != origin:
            for name in names:
                request.headers.popall(name, None)
        response: aiohttp.ClientResponse = await handler(request)
        return response

    return middleware


def build(config: HttpProbeConfig, blocking: BlockingCalls) -> HttpCheck:
    return HttpCheck(config)
