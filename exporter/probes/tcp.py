"""`tcp`: can a connection to host:port be made, and how long does it take."""

from __future__ import annotations

import asyncio
from typing import Literal

from exporter.probes.api import FamilySpec, Port, ProbeConfig, Result
from exporter.probes.connect import CONNECT_REASONS, Failed, open_stream
from exporter.threads import BlockingCalls

TYPE = "tcp"
REASONS = CONNECT_REASONS
FAMILIES: tuple[FamilySpec, ...] = ()


class TcpProbeConfig(ProbeConfig):
    type: Literal["tcp"]
    host: str
    port: Port


class TcpCheck:
    def __init__(self, config: TcpProbeConfig) -> None:
        self.config = config

    async def check(self) -> Result:
        try:
            _, writer = await open_stream(self.config.host, self.config.port)
        except Failed as exc:
            return Result(False, exc.reason, str(exc))
        writer.close()
        # The peer may be gone already: the connection was made, which is the check.
        await asyncio.gather(writer.wait_closed(), return_exceptions=True)
        return Result(True)


def build(config: TcpProbeConfig, blocking: BlockingCalls) -> TcpCheck:
    return TcpCheck(config)
