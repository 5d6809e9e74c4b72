"""`websocket`: a WebSocket feed held open like the bot holds it (websockets).

SKELETON: the config model below is the contract (its class name and `type` are used by
exporter/probes/models.py); the implementation is to be written.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from exporter.fields import Duration
from exporter.probes.api import Check, FamilySpec, ProbeConfig, Watch
from exporter.threads import BlockingCalls

TYPE = "websocket"
REASONS: tuple[str, ...] = ()
FAMILIES: tuple[FamilySpec, ...] = ()


class WebSocketProbeConfig(ProbeConfig):
    type: Literal["websocket"]
    url: str  # ws:// or wss://
    headers: dict[str, str] = {}  # values may come from ${ENV}: never shown
    subscribe: str | None = None  # sent after each connect, as the bot subscribes
    ping_interval: Duration = 30.0  # as the runbook prescribes
    max_backoff: Duration = 60.0  # reconnects back off up to this
    max_message_bytes: int = Field(default=1 << 20, ge=1)


def build(config: WebSocketProbeConfig, blocking: BlockingCalls) -> Check | Watch:
    raise NotImplementedError("websocket probes are not implemented yet")
