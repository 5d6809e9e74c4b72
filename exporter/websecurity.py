"""The web config at run time: re-read when it changes, enforced on every request.

The file and the certificate files it names are checked (stat) on each new connection and
each request, as the toolkit re-reads its file; a changed set is loaded whole or not at all,
so a half-written certificate keeps the previous one serving and is reported once.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web
from prometheus_client.core import CounterMetricFamily
from prometheus_client.metrics_core import Metric

from exporter.families import reload_families
from exporter.webauth import BasicAuth, parse_basic
from exporter.webconfig import WebConfigFile, load_web_config
from exporter.webtls import SwitchingContext, TlsError, build_context
from exporter.yamlsource import ConfigError

log = structlog.get_logger("exporter.web")

WEB_METRICS = frozenset(
    {
        "botwatch_web_config_last_reload_successful",
        "botwatch_web_config_last_reload_success_timestamp_seconds",
        "botwatch_web_requests_rejected",
    }
)
# bcrypt runs in threads; more at once would let a password-guessing flood take every core.
BCRYPT_CONCURRENCY = 2
Signature = tuple[tuple[int, int, int, int] | None, ...]


def _signature(paths: list[Path]) -> Signature:
    out: list[tuple[int, int, int, int] | None] = []
    for path in paths:
        try:
            st = path.stat()
        except OSError:
            out.append(None)
        else:
            out.append((st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
    return tuple(out)


@dataclass(frozen=True)
class Loaded:
    """One consistent generation of the web config."""

    config: WebConfigFile
    context: ssl.SSLContext | None
    auth: BasicAuth
    signature: Signature


def load(path: Path) -> Loaded:
    """Read and build everything the file asks for; raises ConfigError (one line each)."""
    # Signatures from before each read: a write racing a read is seen at the next check.
    signature = _signature([path])
    config = load_web_config(path)
    context = None
    if config.tls_server_config is not None:
        signature += _signature(config.tls_server_config.files())
        try:
            context = build_context(config.tls_server_config)
        except TlsError as exc:
            raise ConfigError([f"{path}: {exc}"]) from None
    users = {u: h.get_secret_value() for u, h in config.basic_auth_users.items()}
    return Loaded(config, context, BasicAuth(users), signature)


class TokenBucket:
    def __init__(self, interval: float, burst: int) -> None:
        self.interval, self.burst = interval, max(burst, 1)
        self.tokens = float(self.burst)
        self.updated = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.updated) / self.interval)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class WebSecurity:
    """The current web config and what it enforces; `check()` picks up changes."""

    def __init__(self, path: Path, on_change: Callable[[], None] = lambda: None) -> None:
        self.path = path
        self.current = load(path)  # start-up: a bad file raises, the caller exits 2
        self.reload_ok = True
        self.reload_time = time.time()
        self.rejected: Counter[str] = Counter()
        self._on_change = on_change
        self._failed_signature: Signature | None = None
        self._bucket = self._new_bucket()
        self._bcrypt = asyncio.Semaphore(BCRYPT_CONCURRENCY)

    @property
    def tls(self) -> bool:
        return self.current.context is not None

    def _new_bucket(self) -> TokenBucket | None:
        limit = self.current.config.rate_limit
        return TokenBucket(limit.interval, limit.burst) if limit.interval else None

    def _files(self) -> list[Path]:
        tls = self.current.config.tls_server_config
        return [self.path, *(tls.files() if tls is not None else [])]

    def check(self) -> Loaded:
        """The config to use now, reloading first if any of its files changed."""
        signature = _signature(self._files())
        if signature in (self.current.signature, self._failed_signature):
            return self.current
        try:
            fresh = self._load_same_mode()
        except ConfigError as exc:
            self._failed_signature = signature
            self.reload_ok = False
            for line in exc.lines:
                log.error("web config reload failed, keeping the previous one", problem=line)
            self._on_change()
            return self.current
        self.current, self._failed_signature = fresh, None
        self.reload_ok, self.reload_time = True, time.time()
        self._bucket = self._new_bucket()
        log.info("web config reloaded", file=str(self.path), tls=self.tls)
        self._on_change()
        return self.current

    def _load_same_mode(self) -> Loaded:
        fresh = load(self.path)
        if (fresh.context is not None) != self.tls:
            raise ConfigError(
                [f"{self.path}: tls_server_config: turning TLS on or off needs a restart"]
            )
        return fresh

    def ssl_context(self) -> SwitchingContext | None:
        if not self.tls:
            return None

        def newest() -> ssl.SSLContext:
            context = self.check().context
            assert context is not None  # TLS cannot be turned off without a restart
            return context

        return SwitchingContext(newest)

    def _reject(self, reason: str, response: web.Response) -> web.Response:
        self.rejected[reason] += 1
        self._on_change()
        return response

    async def _authorized(self, loaded: Loaded, request: web.Request) -> bool:
        credentials = parse_basic(request.headers.get("Authorization"))
        if credentials is None:
            return False
        verdict = loaded.auth.cached(*credentials)
        if verdict is None:
            async with self._bcrypt:
                verdict = await asyncio.to_thread(loaded.auth.check, *credentials)
        return verdict

    @web.middleware
    async def middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        loaded = self.check()
        refusal = await self._refusal(loaded, request)
        response = await handler(request) if refusal is None else refusal
        response.headers.update(loaded.config.http_server_config.headers)
        return response

    async def _refusal(self, loaded: Loaded, request: web.Request) -> web.Response | None:
        """The reply that turns the request away, or None to serve it."""
        if self._bucket is not None and not self._bucket.take():
            return self._reject("rate_limited", web.Response(status=429, text="Too many.\n"))
        if not _san_allowed(loaded, request):
            return self._reject("client_san", web.Response(status=403, text="Forbidden.\n"))
        needs_auth = loaded.auth.enabled and not _open(request)
        if needs_auth and not await self._authorized(loaded, request):
            return self._reject(
                "unauthorized",
                web.Response(
                    status=401,
                    text="Unauthorized.\n",
                    headers={"WWW-Authenticate": 'Basic realm="botwatch", charset="UTF-8"'},
                ),
            )
        return None

    def families(self) -> list[Metric]:
        rejected = CounterMetricFamily(
            "botwatch_web_requests_rejected",
            "HTTP requests refused by the web config: unauthorized (basic auth), client_san "
            "(client certificate not in client_allowed_sans), rate_limited.",
            labels=["reason"],
        )
        for reason in ("unauthorized", "client_san", "rate_limited"):
            rejected.add_metric([reason], self.rejected[reason])
        reload = reload_families(
            "botwatch_web_config",
            "1 if the web config file (--web.config.file) last loaded successfully.",
            "the web config file",
            self.reload_ok,
            self.reload_time,
        )
        return [*reload, rejected]


def _open(request: web.Request) -> bool:
    # Liveness only ("Healthy."): container and kubelet probes carry no credentials.
    return request.path == "/-/healthy"


def _sans(certificate: Any) -> set[str]:
    """The values of a verified peer certificate's subjectAltName (DNS, IP, email, URI)."""
    entries = certificate.get("subjectAltName") or () if certificate else ()
    return {str(value) for _, value in entries}


def _san_allowed(loaded: Loaded, request: web.Request) -> bool:
    tls = loaded.config.tls_server_config
    if tls is None or not tls.client_allowed_sans:
        return True
    ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
    certificate = ssl_object.getpeercert() if ssl_object is not None else None
    return bool(_sans(certificate) & set(tls.client_allowed_sans))
