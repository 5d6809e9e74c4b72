"""Blocking: one pass over a procfs tree, reading the selected processes in full.

Every process costs its `stat` (and its `cmdline` when a group matches on it); only the
processes a group selects are read further: their fd table, limits and TCP sockets.

procfs is read directly rather than through psutil, for three reasons: psutil's procfs
root is one global the host collector already sets; psutil finds a process's sockets in
the table of botwatch's own network namespace, so a containerised trader-api would show
no connections (here each process's own `net/tcp` is read); and psutil takes rlimits by
prlimit(2), which names the process by a PID of botwatch's namespace, not of the procfs
read (a host /proc mounted into a container).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from exporter.collectors.processfs import (
    COMM_MAX,
    Endpoint,
    ProcStat,
    established_endpoints,
    parse_btime,
    parse_nofile_limit,
    parse_stat,
    parse_tcp_table,
    process_name,
    socket_inode,
    split_cmdline,
)
from exporter.collectors.processgroup import ProcessSample, Selector, groups_of

# A process that exits while it is read makes its files vanish (ENOENT) or its links
# unreadable (ESRCH): either way it is simply gone.
_GONE = (FileNotFoundError, ProcessLookupError)


class Scan:
    """One round's reads; network namespace tables are read once per namespace."""

    def __init__(self, procfs: Path, selectors: Sequence[Selector]) -> None:
        self.procfs = procfs
        self.selectors = selectors
        # Without a match_cmdline nobody needs the command lines: one read per process.
        self.wants_cmdline = any(s.match_cmdline is not None for s in selectors)
        self.ticks = os.sysconf("SC_CLK_TCK")
        self.page_size = os.sysconf("SC_PAGE_SIZE")
        self.btime = parse_btime((procfs / "stat").read_text())
        self._tables: dict[str, dict[int, Endpoint]] = {}

    def run(self) -> dict[str, list[ProcessSample]]:
        members: dict[str, list[ProcessSample]] = {}
        with os.scandir(self.procfs) as entries:
            pids = [int(e.name) for e in entries if e.name.isdigit()]
        for pid in pids:
            try:
                found = self.member(pid)
            except _GONE:
                continue
            # hidepid=1 keeps another user's processes unreadable: nothing to report on.
            except PermissionError:
                continue
            if found is not None:
                groups, sample = found
                for group in groups:
                    members.setdefault(group, []).append(sample)
        return members

    def member(self, pid: int) -> tuple[list[str], ProcessSample] | None:
        base = self.procfs / str(pid)
        stat = parse_stat((base / "stat").read_bytes())
        if stat.defunct:
            return None
        argv: list[str] = []
        if self.wants_cmdline or len(stat.comm.encode()) >= COMM_MAX:
            argv = split_cmdline((base / "cmdline").read_bytes())
        groups = groups_of(self.selectors, process_name(stat.comm, argv), " ".join(argv))
        return (groups, self.sample(pid, stat)) if groups else None

    def sample(self, pid: int, stat: ProcStat) -> ProcessSample:
        base = self.procfs / str(pid)
        fds: list[str] | None
        try:
            fds = os.listdir(base / "fd")
        except PermissionError:
            fds = None
        try:
            fd_limit = parse_nofile_limit((base / "limits").read_text())
        except PermissionError:
            fd_limit = None
        return ProcessSample(
            pid=pid,
            start_ticks=stat.starttime,
            start_time=self.btime + stat.starttime / self.ticks,
            cpu_user=stat.utime / self.ticks,
            cpu_system=stat.stime / self.ticks,
            rss_bytes=stat.rss_pages * self.page_size,
            threads=stat.num_threads,
            open_fds=None if fds is None else len(fds),
            fd_limit=fd_limit,
            connections=None if fds is None else self.connections(pid, fds),
        )

    def connections(self, pid: int, fds: list[str]) -> dict[int, Endpoint] | None:
        """None when the fd links cannot be read: listing a process's fds and reading
        where they point are separate permissions (a non-dumpable process allows only the
        first)."""
        base = self.procfs / str(pid)
        inodes = set()
        for fd in fds:
            try:
                inode = socket_inode(os.readlink(base / "fd" / fd))
            except _GONE:
                continue  # closed since the listing
            except PermissionError:
                return None
            if inode is not None:
                inodes.add(inode)
        if not inodes:
            return {}
        table = self.table(pid)
        if table is None:
            return None
        return {inode: table[inode] for inode in inodes if inode in table}

    def table(self, pid: int) -> dict[int, Endpoint] | None:
        """The established sockets of the process's own network namespace (a container's
        sockets are not in the host's table)."""
        base = self.procfs / str(pid)
        try:
            namespace = os.readlink(base / "ns" / "net")
        except OSError:
            namespace = f"pid {pid}"  # cannot tell which: read this process's own view
        if namespace not in self._tables:
            sockets = []
            for name in ("tcp", "tcp6"):
                try:
                    sockets += parse_tcp_table((base / "net" / name).read_text())
                except PermissionError:
                    return None
                except _GONE:
                    # Only tcp6 may be missing (a kernel without IPv6); otherwise the
                    # process has exited, and its namespace must not be cached as empty.
                    if name == "tcp" or not base.exists():
                        raise
            self._tables[namespace] = established_endpoints(sockets)
        return self._tables[namespace]


def scan(procfs: Path, selectors: Sequence[Selector]) -> dict[str, list[ProcessSample]]:
    """Each group's processes, keyed by group name (groups with none are absent)."""
    return Scan(procfs, selectors).run()
