"""`tcp`: can a connection to host:port be made, and how long does it take."""

from __future__ import annotations

import asyncio
import errno
import socket
from typing import Literal

from exporter.probes.api import FamilySpec, Port, ProbeConfig, Result
from exporter.threads import BlockingCalls

TYPE = "tcp"
REASONS = ("timeout", "refused", "dns", "unreachable")
FAMILIES: tuple[FamilySpec, ...] = ()


class TcpProbeConfig(ProbeConfig):
    type: Literal["tcp"]
    host: str
    port: Port


class TcpCheck:
    def __init__(self, config: TcpProbeConfig) -> None:
        self.config = config

    async def check(self) -> Result:
        host, port = self.config.host, self.config.port
        try:
            _, writer = await asyncio.open_connection(host, port)
        except socket.gaierror as exc:
            return Result(False, "dns", f"cannot resolve {host}: {exc.strerror}")
        except ConnectionRefusedError:
            return Result(False, "refused", f"{host}:{port}: connection refused")
        except OSError as exc:
            reason = "refused" if exc.errno == errno.ECONNREFUSED else "unreachable"
            return Result(False, reason, f"{host}:{port}: {exc.strerror or exc}")
        writer.close()
        # The peer may be gone already: the connection was made, which is the check.
        await asyncio.gather(writer.wait_closed(), return_exceptions=True)
        return Result(True)


def build(config: TcpProbeConfig, blocking: BlockingCalls) -> TcpCheck:
    return TcpCheck(config)
