"""`http`: HTTP(S) endpoint: status, JSON body, CORS preflight, Retry-After, TLS expiry (aiohttp).

SKELETON: the config model below is the contract (its class name and `type` are used by
exporter/probes/models.py); the implementation is to be written.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from exporter.models import Strict
from exporter.probes.api import Check, FamilySpec, ProbeConfig, Watch
from exporter.threads import BlockingCalls

TYPE = "http"
REASONS: tuple[str, ...] = ()
FAMILIES: tuple[FamilySpec, ...] = ()


class HttpProbeConfig(ProbeConfig):
    type: Literal["http"]
    url: str  # http:// or https://
    method: str = "GET"
    # Values may come from ${ENV} (tokens): they never appear in a metric, log or error.
    headers: dict[str, str] = {}
    body: str | None = None
    valid_status: list[int] = []  # empty: any 2xx
    expect_json: JsonCheck | None = None  # e.g. {path: status, equals: ok}
    cors: CorsCheck | None = None  # a preflight instead of `method` (runbook scenario 11)
    max_body_bytes: int = Field(default=1 << 20, ge=0)  # read at most this much
    tls_verify: bool = True
    follow_redirects: bool = True


class JsonCheck(Strict):
    """The body is JSON and the value at `path` (dotted; list indexes are numbers) equals."""

    path: str
    equals: str | int | float | bool | None


class CorsCheck(Strict):
    """OPTIONS with Origin and Access-Control-Request-Method; success when the response's
    Access-Control-Allow-Origin is `allow_origin` (default: `origin`, or `*`)."""

    origin: str
    request_method: str = "GET"
    allow_origin: str | None = None


def build(config: HttpProbeConfig, blocking: BlockingCalls) -> Check | Watch:
    raise NotImplementedError("http probes are not implemented yet")
