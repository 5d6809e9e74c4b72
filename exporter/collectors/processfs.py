"""Pure parsers for the per-process files under /proc the `process` collector reads.

They take the files' raw content, so they are tested on literal text; reading them (and
deciding what a missing or forbidden file means) is `processscan`'s business.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

# The kernel truncates a process's comm to 15 bytes (TASK_COMM_LEN - 1).
COMM_MAX = 15
TCP_ESTABLISHED = 0x01
TCP_LISTEN = 0x0A


@dataclass(frozen=True)
class ProcStat:
    """The fields of /proc/PID/stat the collector uses; times in clock ticks."""

    comm: str
    state: str
    ppid: int
    utime: int
    stime: int
    num_threads: int
    starttime: int
    rss_pages: int

    @property
    def defunct(self) -> bool:
        # A zombie has exited and only waits for its parent; it runs nothing and holds no
        # files, so it is not counted as a running process.
        return self.state in ("Z", "X", "x")


def parse_stat(data: bytes) -> ProcStat:
    """/proc/PID/stat. The comm may itself hold spaces and parentheses, so it is the text
    between the first '(' and the *last* ')'."""
    head, _, tail = data.rpartition(b")")
    comm = head.partition(b"(")[2].decode("utf-8", "replace")
    fields = tail.split()
    # fields[0] is field 3 of proc(5), so field N is fields[N - 3].
    return ProcStat(
        comm=comm,
        state=fields[0].decode("ascii", "replace"),
        ppid=int(fields[1]),
        utime=int(fields[11]),
        stime=int(fields[12]),
        num_threads=int(fields[17]),
        starttime=int(fields[19]),
        rss_pages=int(fields[21]),
    )


def split_cmdline(data: bytes) -> list[str]:
    """/proc/PID/cmdline: NUL-separated arguments (empty for kernel threads)."""
    return data.decode("utf-8", "replace").rstrip("\0").split("\0") if data.strip(b"\0") else []


def process_name(comm: str, argv: list[str]) -> str:
    """The comm, or the program's file name when the comm is that name cut at 15 bytes
    (as ps and psutil show it): `match_name` sees `alphaengine-worker`, not `alphaengine-wor`."""
    if len(comm.encode()) >= COMM_MAX and argv:
        program = os.path.basename(argv[0])
        if program.startswith(comm):
            return program
    return comm


def parse_btime(data: str) -> float:
    """Boot time (Unix seconds) from /proc/stat; process start times count from it."""
    for line in data.splitlines():
        if line.startswith("btime "):
            return float(line.split()[1])
    raise ValueError("no btime line in /proc/stat")


def parse_nofile_limit(data: str) -> int | None:
    """The soft RLIMIT_NOFILE from /proc/PID/limits; None when it is unlimited or missing.

    The file is read rather than prlimit(2) called: it names the process by its PID in the
    procfs being read, which is not this process's PID namespace when the host's /proc is
    mounted into a container."""
    for line in data.splitlines():
        if line.startswith("Max open files"):
            soft = line[len("Max open files") :].split()[0]
            return int(soft) if soft.isdigit() else None
    return None


def socket_inode(link: str) -> int | None:
    """The inode of an fd's link target when it is a socket (`socket:[12345]`)."""
    if link.startswith("socket:[") and link.endswith("]"):
        return int(link[8:-1])
    return None


@dataclass(frozen=True)
class TcpSocket:
    local_port: int
    remote_port: int
    state: int
    inode: int


def _port(address: str) -> int:
    # "0100007F:1F90" (IPv4) or 32 hex digits ":1F90" (IPv6): the port is after the colon.
    return int(address.rpartition(":")[2], 16)


def parse_tcp_table(data: str) -> list[TcpSocket]:
    """/proc/PID/net/tcp or tcp6: every socket of the network namespace."""
    sockets = []
    for line in data.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10:
            continue
        sockets.append(
            TcpSocket(
                local_port=_port(fields[1]),
                remote_port=_port(fields[2]),
                state=int(fields[3], 16),
                inode=int(fields[9]),
            )
        )
    return sockets


@dataclass(frozen=True)
class Endpoint:
    """Which side of an established connection this host is, and the service's port: the
    remote port when it connected out (443 to an exchange), the local one when it accepted
    (8000 behind nginx). The other side's port is ephemeral and would make a label per
    connection."""

    direction: str  # "inbound" | "outbound"
    port: int


def established_endpoints(sockets: list[TcpSocket]) -> dict[int, Endpoint]:
    """Established sockets of one network namespace by inode. A socket is inbound when its
    local port is one something in the namespace listens on."""
    listening = {s.local_port for s in sockets if s.state == TCP_LISTEN}
    endpoints = {}
    for s in sockets:
        # inode 0: accepted by the kernel but not yet by the program (no fd holds it yet).
        if s.state != TCP_ESTABLISHED or s.inode == 0:
            continue
        if s.local_port in listening:
            endpoints[s.inode] = Endpoint("inbound", s.local_port)
        else:
            endpoints[s.inode] = Endpoint("outbound", s.remote_port)
    return endpoints
