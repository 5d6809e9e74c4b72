"""`listener`: is a local TCP port listening, and which process holds it (from /proc).

The runbooks' "Address already in use" (`lsof -i :3000`): the probe fails when nothing
listens, or when `process` is set and someone else holds the port. Seeing other users'
processes needs root (or CAP_SYS_PTRACE); without it the owner is "" (unknown).
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from exporter.collectors.processfs import (
    TCP_LISTEN,
    parse_tcp_table,
    process_name,
    socket_inode,
    split_cmdline,
)
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


def listeners(port: int, procfs: Path = Path("/proc")) -> list[Owner]:
    """The processes listening on `port` over TCP, IPv4 or IPv6, in botwatch's own network
    namespace (blocking: reads /proc). Read directly rather than through psutil, whose procfs
    root is one setting for the whole process (the host collector moves it)."""
    inodes: set[int] = set()
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(OSError):
            text = (procfs / "self" / "net" / table).read_text()
            inodes |= {
                s.inode
                for s in parse_tcp_table(text)
                if s.state == TCP_LISTEN and s.local_port == port and s.inode
            }
    if not inodes:
        return []
    owners: dict[int, Owner] = {}
    for entry in procfs.iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):  # gone meanwhile, or not ours to see
            for fd in (entry / "fd").iterdir():
                if socket_inode(os.readlink(fd)) in inodes:
                    owners[int(entry.name)] = _owner(entry)
                    break
    if not owners:
        # A socket nobody's fds show (another user's process, without root): it listens.
        return [Owner("", "")]
    return list(owners.values())


def _owner(process: Path) -> Owner:
    comm = (process / "comm").read_text().strip()
    argv = split_cmdline((process / "cmdline").read_bytes())
    return Owner(process_name(comm, argv), " ".join(argv))


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
