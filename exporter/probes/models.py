"""The `probes:` list: one tagged union of every probe type's config, and the collector's view.

Adding a type: a module under exporter/probes/ (see api.py), its config class in `AnyProbe`
and its module in `TYPE_MODULES`.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, field_validator

from exporter.models import CollectorConfig, ensure_unique
from exporter.probes.api import ProbeConfig
from exporter.probes.dns import DnsProbeConfig
from exporter.probes.http import HttpProbeConfig
from exporter.probes.listener import ListenerProbeConfig
from exporter.probes.postgres import PostgresProbeConfig
from exporter.probes.redis import RedisProbeConfig
from exporter.probes.tcp import TcpProbeConfig
from exporter.probes.websocket import WebSocketProbeConfig

AnyProbe = Annotated[
    HttpProbeConfig
    | WebSocketProbeConfig
    | TcpProbeConfig
    | ListenerProbeConfig
    | DnsProbeConfig
    | PostgresProbeConfig
    | RedisProbeConfig,
    Field(discriminator="type"),
]
TYPE_MODULES = {
    kind: f"exporter.probes.{kind}"
    for kind in ("http", "websocket", "tcp", "listener", "dns", "postgres", "redis")
}


def unique_names(probes: list[Any]) -> list[Any]:
    ensure_unique(probes, "probe name")
    return probes


class ProbesConfig(CollectorConfig):
    """The `probes` collector's config: the top-level `probes:` list (Config builds it)."""

    targets: list[AnyProbe] = []

    @field_validator("targets")
    @classmethod
    def _unique(cls, value: list[Any]) -> list[Any]:
        return unique_names(value)

    def enabled_probes(self) -> list[ProbeConfig]:
        return [p for p in self.targets if p.enabled]

    def wanted(self) -> bool:
        return self.enabled and bool(self.enabled_probes())
