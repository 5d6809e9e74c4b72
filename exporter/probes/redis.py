"""`redis`: Redis PING and INFO (memory, policy, keyspace hits, clients).

SKELETON: the config model below is the contract (its class name and `type` are used by
exporter/probes/models.py); the implementation is to be written.
"""

from __future__ import annotations

from typing import Literal

from exporter.probes.api import Check, FamilySpec, Port, ProbeConfig, Watch
from exporter.threads import BlockingCalls

TYPE = "redis"
REASONS: tuple[str, ...] = ()
FAMILIES: tuple[FamilySpec, ...] = ()


class RedisProbeConfig(ProbeConfig):
    type: Literal["redis"]
    host: str = "localhost"
    port: Port = 6379
    username: str | None = None  # ACL user (Redis 6+); None: the default user
    password: str | None = None  # from ${ENV}: never shown


def build(config: RedisProbeConfig, blocking: BlockingCalls) -> Check | Watch:
    raise NotImplementedError("redis probes are not implemented yet")
