"""`listener`: is a local TCP port listening, and which process holds it (psutil).

The runbooks' "Address already in use" (`lsof -i :3000`): the probe fails when nothing
listens, or when `process` is set and someone else holds the port. Seeing other users'
processes needs root (or CAP_SYS_PTRACE); without it the owner is "" (unknown).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from exporter.fields import Regex
from exporter.probes.api import FamilySpec, Port, ProbeConfig, Result, Sample
from exporter.threads import BlockingCalls

TYPE = "listener"
REASONS = ("not_listening", "wrong_owner")
LISTENING = FamilySpec(
    "botwatch_port_listening", "1 if something listens on the port.", labels=("probe", "port")
)
OWNER = FamilySpec(
    "botwatch_port_owner",
    'The process that listens on the port ("" when it cannot be seen).',
    "info",
    ("probe", "port", "process"),
)
FAMILIES = (LISTENING, OWNER)


class ListenerProbeConfig(ProbeConfig):
    type: Literal["listener"]
    port: Port
    # The process that should own the port: a regex on its name or command line.
    process: Regex | None = None


@dataclass(frozen=True)
class Owner:
    name: str
    cmdline: str


def listeners(port: int) -> list[Owner]:
    """The processes listening on `port` over TCP, IPv4 or IPv6 (blocking: /proc)."""
    import psutil

    owners = []
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status != psutil.CONN_LISTEN or not conn.laddr or conn.laddr.port != port:
            continue
        name = cmdline = ""
        if conn.pid is not None:
            try:
                process = psutil.Process(conn.pid)
                name, cmdline = process.name(), " ".join(process.cmdline())
            except psutil.Error:
                pass  # gone meanwhile, or not ours to see
        owners.append(Owner(name, cmdline))
    return owners


def owned_by(owners: list[Owner], wanted: re.Pattern[str]) -> bool:
    return any(wanted.search(o.name) or wanted.search(o.cmdline) for o in owners)


class ListenerCheck:
    def __init__(self, config: ListenerProbeConfig, blocking: BlockingCalls) -> None:
        self.config = config
        self.blocking = blocking

    async def check(self) -> Result:
        port = self.config.port
        owners = await self.blocking.run(f"listener {self.config.name}", listeners, port)
        labels = {"probe": self.config.name, "port": str(port)}
        samples = [Sample(LISTENING, labels, 1 if owners else 0)]
        samples += [Sample(OWNER, {**labels, "process": name}) for name in {o.name for o in owners}]
        if not owners:
            return Result(False, "not_listening", f"nothing listens on port {port}", samples)
        wanted = self.config.process
        if wanted is not None and not owned_by(owners, wanted):
            names = ", ".join(sorted({o.name or "?" for o in owners}))
            error = f"port {port} is held by {names}, not /{wanted.pattern}/"
            return Result(False, "wrong_owner", error, samples)
        return Result(True, samples=samples)


def build(config: ListenerProbeConfig, blocking: BlockingCalls) -> ListenerCheck:
    return ListenerCheck(config, blocking)
