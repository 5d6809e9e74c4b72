"""OOM kills from text: cgroup counter files, cgroup paths, kernel log records. Pure, no I/O.

Kernel log records are the /dev/kmsg format, `PRIO,SEQ,TIMESTAMP_US,FLAGS[,...];MESSAGE`,
one record per line, followed by continuation lines (` SUBSYSTEM=...`) that say nothing
about OOM kills. A kill is announced by two records of the same OOM event: `oom-kill:...`
names the victim's memory cgroup, then `... Killed process PID (NAME) ...` is the kill.
KillAssembler joins the two by PID; KmsgDecoder turns bytes into batches of kills while
keeping the record sequence numbers that let a restart count each kill once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# The counters each hierarchy's file holds, by the names /metrics uses.
V2_COUNTERS = ("oom", "oom_kill")
V1_COUNTERS = ("oom_kill",)

# systemd gives these unit types cgroups of their own.
UNIT_SUFFIXES = (".service", ".scope", ".slice", ".socket", ".mount", ".swap")
_CONTAINER_SCOPE = re.compile(r"(?:docker|libpod|cri-containerd|crio)-([0-9a-f]{64})\.scope")
_CONTAINER_DIR = re.compile(r"[0-9a-f]{64}")
_LIBPOD_DIR = re.compile(r"libpod-([0-9a-f]{64})")
SHORT_ID = 12

# The kernel escapes every byte below space, from DEL up, and the backslash as \xNN.
_ESCAPE = re.compile(rb"\\x([0-9a-fA-F]{2})")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Linux 5.x/6.x: `oom-kill:constraint=...,oom_memcg=...|global_oom,task_memcg=PATH,task=...`.
# Cgroup paths may hold commas; the tail after task_memcg is fixed, so anchor on it.
_OOM_CONTEXT = re.compile(
    r"oom-kill:.*,task_memcg=(?P<memcg>.*),task=.*,pid=(?P<pid>\d+),uid=\d+$", re.DOTALL
)
# `Memory cgroup out of memory: `, `Out of memory: `, `Out of memory (oom_kill_allocating_
# task): ` or, before 5.0, no prefix. `Kill process ... or sacrifice child` only picks a
# victim; `oom_reaper: reaped process` follows a kill already counted.
_KILLED = re.compile(
    r"(?:(?:Memory cgroup out of memory|Out of memory(?: \([^)]*\))?): )?"
    r"Killed process (?P<pid>\d+) \((?P<name>.*?)\)(?=$| total-vm:)",
    re.DOTALL,
)
KERNEL_FACILITY = 0  # userspace writes to /dev/kmsg never get it (the kernel enforces that)
MAX_PENDING_VICTIMS = 64


# cgroup files ---------------------------------------------------------------------------


def parse_flat_keyed(text: str) -> dict[str, int]:
    """`key value` lines (memory.events, memory.oom_control); other lines are skipped."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, _, value = line.strip().partition(" ")
        value = value.strip()
        if key and value.isdigit():
            out[key] = int(value)
    return out


def memory_events_counters(text: str) -> dict[str, int]:
    """cgroup v2 memory.events -> the OOM counters it holds."""
    values = parse_flat_keyed(text)
    return {name: values[name] for name in V2_COUNTERS if name in values}


def oom_control_counters(text: str) -> dict[str, int]:
    """cgroup v1 memory.oom_control -> the OOM counters it holds (oom_kill since Linux 4.13)."""
    values = parse_flat_keyed(text)
    return {name: values[name] for name in V1_COUNTERS if name in values}


@dataclass(frozen=True)
class CgroupLabels:
    unit: str
    container: str


def cgroup_labels(path: str) -> CgroupLabels:
    """A cgroup path relative to its hierarchy -> its systemd unit and container id."""
    parts = [p for p in path.split("/") if p]
    leaf = parts[-1] if parts else ""
    parent = parts[-2] if len(parts) > 1 else ""
    unit = leaf if leaf.endswith(UNIT_SUFFIXES) else ""
    container = ""
    if match := _CONTAINER_SCOPE.fullmatch(leaf):
        container = match.group(1)[:SHORT_ID]
    elif parent == "docker" and _CONTAINER_DIR.fullmatch(leaf):
        container = leaf[:SHORT_ID]  # docker with the cgroupfs driver
    elif parent == "libpod_parent" and (match := _LIBPOD_DIR.fullmatch(leaf)):
        container = match.group(1)[:SHORT_ID]  # podman with the cgroupfs manager
    return CgroupLabels(unit, container)


# kernel log records -----------------------------------------------------------------------


class MalformedRecord(Exception):
    """A kernel log line that is not a record (the message is one line); `seq` when its
    header could still be read."""

    def __init__(self, message: str, seq: int | None = None) -> None:
        super().__init__(message)
        self.seq = seq


@dataclass(frozen=True)
class KmsgRecord:
    prio: int
    seq: int
    usec: int
    message: str

    @property
    def facility(self) -> int:
        return self.prio >> 3


def unescape(raw: bytes) -> str:
    """The kernel's \\xNN escapes undone, so UTF-8 process names read as written; control
    characters stay escaped (a label value must be printable), as does invalid UTF-8."""
    text = _ESCAPE.sub(lambda m: bytes([int(m.group(1), 16)]), raw).decode(
        "utf-8", "backslashreplace"
    )
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def parse_record(line: bytes) -> KmsgRecord:
    """One record line (without its newline). Raises MalformedRecord."""
    header, sep, message = line.partition(b";")
    fields = header.split(b",")
    if not sep or len(fields) < 4 or not all(f.isdigit() for f in fields[:3]):
        raise MalformedRecord(f"not a kernel log record: {_excerpt(line)}")
    prio, seq, usec = (int(f) for f in fields[:3])
    try:
        # The kernel writes ASCII only; raw bytes above it are not from a kernel.
        message.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedRecord(f"not UTF-8: {_excerpt(line)}", seq) from None
    return KmsgRecord(prio, seq, usec, unescape(message))


def _excerpt(line: bytes) -> str:
    return repr(line[:80])


@dataclass(frozen=True)
class OomContext:
    """`oom-kill:` — which memory cgroup the victim PID is in."""

    pid: int
    memcg: str


@dataclass(frozen=True)
class Killed:
    """`Killed process PID (NAME)` — one kill."""

    pid: int
    process: str


def oom_event(record: KmsgRecord) -> OomContext | Killed | None:
    """What a record says about an OOM kill; None for everything else."""
    if record.facility != KERNEL_FACILITY:
        return None
    message = record.message
    if message.startswith("oom-kill:"):
        if context := _OOM_CONTEXT.match(message):
            return OomContext(int(context.group("pid")), context.group("memcg"))
        return None
    if killed := _KILLED.match(message):
        return Killed(int(killed.group("pid")), killed.group("name"))
    return None


@dataclass(frozen=True)
class Kill:
    process: str
    cgroup: str  # the victim's memory cgroup; "" when no oom-kill record named it


class KillAssembler:
    """Joins `oom-kill:` and `Killed process` records of one OOM event by PID."""

    def __init__(self) -> None:
        self._memcg: dict[int, str] = {}

    def feed(self, event: OomContext | Killed | None) -> Kill | None:
        if isinstance(event, OomContext):
            self._memcg.pop(event.pid, None)
            self._memcg[event.pid] = event.memcg
            # A context whose kill record was lost must not stay forever.
            while len(self._memcg) > MAX_PENDING_VICTIMS:
                del self._memcg[next(iter(self._memcg))]
            return None
        if isinstance(event, Killed):
            return Kill(event.process, self._memcg.pop(event.pid, ""))
        return None


# kernel log stream ------------------------------------------------------------------------


@dataclass
class KmsgBatch:
    """What the records read since the last batch add up to."""

    kills: list[Kill] = field(default_factory=list)
    lost: int = 0
    malformed: list[str] = field(default_factory=list)
    # The newest record read; the position a checkpoint stores with these counts.
    last_seq: int | None = None
    # Whether the last line in the batch was a good record (ends a malformed streak).
    last_ok: bool | None = None


class KmsgDecoder:
    """Bytes of /dev/kmsg (one record per read) or of a file of records -> batches.

    `after` says where counting starts:
    - None: a first start; what the log holds now happened before botwatch watched, so
      nothing counts until `caught_up()` (the reader reached the end of what is there);
    - a SEQ: records up to it were counted before (same boot): they are read again only
      to learn victims' cgroups;
    - -1: everything counts (a new boot since the checkpoint).
    A jump in SEQ among counted records means records were overwritten unread: lost.
    """

    MAX_LINE = 64 * 1024

    def __init__(self, after: int | None) -> None:
        self._last = after
        self._skipping = after is None
        # Resumed behind the saved SEQ: malformed lines there were counted before.
        self._behind = after is not None and after >= 0
        self._assembler = KillAssembler()
        self._partial = b""
        self._discarding = False
        self._batch = KmsgBatch()
        self._reported = after

    @property
    def counting(self) -> bool:
        return not self._skipping and not self._behind

    def feed(self, data: bytes) -> None:
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            if self._discarding:
                self._discarding = False  # the end of a line dropped as too long
                continue
            self._line(line)
        if len(self._partial) > self.MAX_LINE:
            if not self._discarding:
                self._malformed(f"record over {self.MAX_LINE} bytes: {_excerpt(self._partial)}")
            self._discarding = True
            self._partial = b""

    def caught_up(self) -> None:
        """The reader is at the end of what the log holds: from here on everything is new."""
        self._skipping = False
        self._behind = False

    def take(self) -> KmsgBatch | None:
        """The batch since the last take, or None when nothing changed."""
        batch = self._batch
        batch.last_seq = self._last
        if not (batch.kills or batch.lost or batch.malformed or self._last != self._reported):
            return None
        self._reported = self._last
        self._batch = KmsgBatch()
        return batch

    def _line(self, line: bytes) -> None:
        if not line.strip() or line.startswith(b" "):
            return  # blank, or a continuation line (` SUBSYSTEM=...`, ` DEVICE=...`)
        record: KmsgRecord | None = None
        try:
            record = parse_record(line)
            seq: int | None = record.seq
        except MalformedRecord as exc:
            error, seq = str(exc), exc.seq
        if seq is None:
            self._malformed(error)  # no SEQ: whether it is new cannot be told
            return
        last = self._last
        if self._skipping or (last is not None and seq <= last):
            # Seen before (or before counting began): only learn which cgroup a victim is in.
            if record is not None:
                self._assembler.feed(oom_event(record))
            if last is None or seq > last:
                self._last = seq
            if self._behind and last is not None and seq >= last:
                self._behind = False
            self._batch.last_ok = record is not None
            return
        self._behind = False
        if last is not None and seq > last + 1:
            self._batch.lost += seq - last - 1
        self._last = seq
        if record is None:
            self._malformed(error)
            return
        self._batch.last_ok = True
        if kill := self._assembler.feed(oom_event(record)):
            self._batch.kills.append(kill)

    def _malformed(self, error: str) -> None:
        self._batch.last_ok = False
        if self.counting:
            self._batch.malformed.append(error)
