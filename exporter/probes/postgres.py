"""`postgres`: PostgreSQL/TimescaleDB readiness like pg_isready; with credentials, SELECT 1
and connections against max_connections.

SKELETON: the config model below is the contract (its class name and `type` are used by
exporter/probes/models.py); the implementation is to be written.
"""

from __future__ import annotations

from typing import Literal

from exporter.probes.api import Check, FamilySpec, Port, ProbeConfig, Watch
from exporter.threads import BlockingCalls

TYPE = "postgres"
REASONS: tuple[str, ...] = ()
FAMILIES: tuple[FamilySpec, ...] = ()


class PostgresProbeConfig(ProbeConfig):
    type: Literal["postgres"]
    host: str = "localhost"  # or a directory holding the server's unix socket
    port: Port = 5432
    # Without a user: readiness only (like pg_isready). With one: SELECT 1 and connections.
    user: str | None = None
    password: str | None = None  # from ${ENV}: never shown
    database: str | None = None  # default: the user's name


def build(config: PostgresProbeConfig, blocking: BlockingCalls) -> Check | Watch:
    raise NotImplementedError("postgres probes are not implemented yet")
