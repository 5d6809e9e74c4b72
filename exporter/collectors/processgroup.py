"""Pure: which process belongs to which group, and a group's processes as metric families.

`ProcessGroups` keeps the little a group needs from earlier rounds: the CPU time of
members that have exited (so the group's CPU counter does not drop when a worker exits)
and the port labels it has admitted (so they stay bounded and stable).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from exporter.collectors.processfs import Endpoint

OTHER = "other"


class Selector(Protocol):
    """One configured group: its label and the regexes that pick its processes."""

    @property
    def name(self) -> str: ...

    @property
    def match_name(self) -> re.Pattern[str] | None: ...

    @property
    def match_cmdline(self) -> re.Pattern[str] | None: ...


def selects(selector: Selector, name: str, cmdline: str) -> bool:
    """Both given regexes must find a match (re.search): name and command line narrow each
    other down, e.g. a `python` whose command line says `-m bot`."""
    if selector.match_name is not None and not selector.match_name.search(name):
        return False
    return selector.match_cmdline is None or bool(selector.match_cmdline.search(cmdline))


def groups_of(selectors: Iterable[Selector], name: str, cmdline: str) -> list[str]:
    """Every group a process belongs to: groups are independent selections, like pgrep."""
    return [s.name for s in selectors if selects(s, name, cmdline)]


@dataclass(frozen=True)
class ProcessSample:
    """One process as one round read it."""

    pid: int
    # With the PID, the identity of a process: a PID reused by a new process is another one.
    start_ticks: int
    start_time: float
    cpu_user: float
    cpu_system: float
    rss_bytes: int
    threads: int
    # None: its fd table was not ours to read (another user's process without root).
    open_fds: int | None
    # The soft RLIMIT_NOFILE; None when unlimited or unreadable.
    fd_limit: int | None
    # Established TCP sockets by inode; None when its fds could not be read.
    connections: Mapping[int, Endpoint] | None

    @property
    def key(self) -> tuple[int, int]:
        return self.pid, self.start_ticks

    @property
    def denied(self) -> bool:
        """Whether some of what needs ptrace-read access could not be read."""
        return self.open_fds is None or self.connections is None


@dataclass(frozen=True)
class GroupReading:
    """A group's processes together; fields are None when no member could tell."""

    instances: int
    access_denied: int
    rss_bytes: int
    threads: int
    start_time: float | None
    open_fds: int | None
    max_fds: int | None
    worst_fd_ratio: float | None
    # Distinct sockets: a connection a forked worker inherited is counted once.
    connections: Counter[Endpoint] | None


def aggregate(samples: Sequence[ProcessSample]) -> GroupReading:
    fds = [(s.open_fds, s.fd_limit) for s in samples if s.open_fds is not None]
    limits = [s.fd_limit for s in samples if s.fd_limit]
    with_sockets = [s.connections for s in samples if s.connections is not None]
    sockets: dict[int, Endpoint] = {}
    for connections in with_sockets:
        sockets.update(connections)
    return GroupReading(
        instances=len(samples),
        access_denied=sum(1 for s in samples if s.denied),
        rss_bytes=sum(s.rss_bytes for s in samples),
        threads=sum(s.threads for s in samples),
        start_time=min((s.start_time for s in samples), default=None),
        open_fds=sum(n for n, _ in fds) if fds else None,
        max_fds=min(limits, default=None),
        worst_fd_ratio=max((n / limit for n, limit in fds if limit), default=None),
        connections=Counter(sockets.values()) if with_sockets else None,
    )


@dataclass
class CpuLedger:
    """A group's CPU seconds as a counter that only goes up.

    The live members' sum drops whenever one exits (a recycled gunicorn worker), and
    rate() would read each drop as a reset and count the whole remaining sum again. So the
    last reading of each member that has gone is kept and added. What a member used after
    the last round before it exited is lost, as is all of a process that lived between
    two rounds.
    """

    live: dict[tuple[int, int], tuple[float, float]] = field(default_factory=dict)
    gone: tuple[float, float] = (0.0, 0.0)
    seen: bool = False

    def update(self, samples: Sequence[ProcessSample]) -> tuple[float, float] | None:
        """(user, system) seconds, or None before the group's first member was seen: a
        series that starts at a process's lifetime total is no spike in rate(), one that
        jumps there from 0 is."""
        current = {s.key: (s.cpu_user, s.cpu_system) for s in samples}
        user, system = self.gone
        for key, (u, s) in self.live.items():
            if key not in current:
                user, system = user + u, system + s
        self.gone = (user, system)
        self.live = current
        self.seen = self.seen or bool(current)
        if not self.seen:
            return None
        return (
            user + sum(u for u, _ in current.values()),
            system + sum(s for _, s in current.values()),
        )


@dataclass
class PortLabels:
    """Bounded port labels: the first `cap` (direction, port) pairs a group shows are
    admitted for good; later ones count as port "other". Admitted pairs stay (at 0) so
    that a lost connection is a 0, not a missing series, and a label never changes
    meaning between rounds."""

    cap: int
    admitted: set[Endpoint] = field(default_factory=set)
    overflowed: set[str] = field(default_factory=set)

    def fold(self, counts: Counter[Endpoint]) -> dict[tuple[str, str], int]:
        # The busiest new pairs first, so a burst of new ports admits the ones that matter.
        for endpoint in sorted(counts, key=lambda e: (-counts[e], e.direction, e.port)):
            if endpoint not in self.admitted and len(self.admitted) < self.cap:
                self.admitted.add(endpoint)
        out = {(e.direction, str(e.port)): 0 for e in self.admitted}
        out.update(dict.fromkeys(((d, OTHER) for d in self.overflowed), 0))
        for endpoint, n in counts.items():
            if endpoint in self.admitted:
                out[endpoint.direction, str(endpoint.port)] += n
            else:
                self.overflowed.add(endpoint.direction)
                out[endpoint.direction, OTHER] = out.get((endpoint.direction, OTHER), 0) + n
        return out


def _gauge(name: str, doc: str, labels: Sequence[str] = ("process",)) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=list(labels))


class ProcessGroups:
    """The configured groups, in config order, and what they keep between rounds."""

    def __init__(self, names: Sequence[str], max_ports: int) -> None:
        self.names = list(names)
        self.cpu = {name: CpuLedger() for name in self.names}
        self.ports = {name: PortLabels(max_ports) for name in self.names}

    def update(self, members: Mapping[str, Sequence[ProcessSample]]) -> list[Metric]:
        """This round's members of each group (absent: none) to the complete families."""
        up = _gauge("botwatch_process_up", "1 if at least one process of the group runs.")
        instances = _gauge("botwatch_process_instances", "Processes in the group.")
        denied = _gauge(
            "botwatch_process_access_denied",
            "Processes of the group whose fd table or sockets could not be read (another"
            " user's, without root); the fd and connection series leave out what was not read.",
        )
        cpu = CounterMetricFamily(
            "botwatch_process_cpu_seconds",
            "CPU time of the group's processes by mode; kept when a process exits.",
            labels=["process", "mode"],
        )
        rss = _gauge(
            "botwatch_process_resident_memory_bytes",
            "Resident memory of the group's processes, summed (shared pages count in each).",
        )
        threads = _gauge("botwatch_process_threads", "Threads of the group's processes.")
        started = _gauge(
            "botwatch_process_start_timestamp_seconds",
            "When the group's oldest process started, Unix time: a restart moves it.",
        )
        open_fds = _gauge(
            "botwatch_process_open_fds", "Open file descriptors of the group's processes."
        )
        max_fds = _gauge(
            "botwatch_process_max_fds",
            "The lowest soft open-files limit (RLIMIT_NOFILE) of the group's processes.",
        )
        worst = _gauge(
            "botwatch_process_worst_fd_ratio",
            "Open file descriptors over the soft limit of the process closest to it (0-1).",
        )
        connections = _gauge(
            "botwatch_process_established_connections",
            "Established TCP connections of the group: outbound by remote port, inbound by"
            ' local port; ports past the cap are "other".',
            ("process", "direction", "port"),
        )
        for name in self.names:
            samples = members.get(name, ())
            reading = aggregate(samples)
            up.add_metric([name], 1 if samples else 0)
            instances.add_metric([name], reading.instances)
            denied.add_metric([name], reading.access_denied)
            seconds = self.cpu[name].update(samples)
            if seconds is not None:
                cpu.add_metric([name, "user"], seconds[0])
                cpu.add_metric([name, "system"], seconds[1])
            if not samples:
                continue
            rss.add_metric([name], reading.rss_bytes)
            threads.add_metric([name], reading.threads)
            if reading.start_time is not None:
                started.add_metric([name], reading.start_time)
            if reading.open_fds is not None:
                open_fds.add_metric([name], reading.open_fds)
            if reading.max_fds is not None:
                max_fds.add_metric([name], reading.max_fds)
            if reading.worst_fd_ratio is not None:
                worst.add_metric([name], reading.worst_fd_ratio)
            if reading.connections is not None:
                folded = self.ports[name].fold(reading.connections)
                for (direction, port), n in sorted(folded.items()):
                    connections.add_metric([name, direction, port], n)
        families: list[Metric] = [
            up,
            instances,
            denied,
            cpu,
            rss,
            threads,
            started,
            open_fds,
            max_fds,
            worst,
            connections,
        ]
        return [f for f in families if f.samples]
