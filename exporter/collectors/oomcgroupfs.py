"""Reading the memory cgroups' OOM counters from a cgroup hierarchy. Blocking: run it in a
thread (ctx.blocking).

Which hierarchy: cgroup v2 when the memory controller is there (unified mode at
`fs/cgroup`, or hybrid mode's `fs/cgroup/unified` if it has memory), else cgroup v1's memory
controller at `fs/cgroup/memory`. Cgroups are named by their path relative to that root,
as systemd and the kernel log name them (`/system.slice/alphaengine-bot.service`).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from exporter.collectors.oomledger import CgroupReading
from exporter.collectors.oomparse import memory_events_counters, oom_control_counters

# systemd nests units five levels deep under user sessions, kubernetes pods four; deeper
# trees (containers nesting their own cgroups) are not walked further.
MAX_DEPTH = 8
# A cgroup removed while it is read answers with one of these: it is simply gone.
_GONE = (errno.ENOENT, errno.ENODEV, errno.ENOTDIR)


class CgroupError(Exception):
    """The cgroup hierarchy cannot be read (the message is one line and names the path)."""


@dataclass(frozen=True)
class Hierarchy:
    version: Literal[1, 2]
    root: Path

    @property
    def counters_file(self) -> str:
        return "memory.events" if self.version == 2 else "memory.oom_control"

    def counters(self, text: str) -> dict[str, int]:
        return memory_events_counters(text) if self.version == 2 else oom_control_counters(text)


def find_hierarchy(sysfs: Path) -> Hierarchy:
    base = sysfs / "fs" / "cgroup"
    if not base.is_dir():
        raise CgroupError(f"cgroup hierarchy not found: {base}")
    for root in (base, base / "unified"):
        controllers = _read(root / "cgroup.controllers")
        if controllers is not None and "memory" in controllers.split():
            return Hierarchy(2, root)
    if (base / "memory").is_dir():
        return Hierarchy(1, base / "memory")
    raise CgroupError(f"no memory controller under {base} (neither cgroup v2 nor v1)")


def scan(
    sysfs: Path, selects: Callable[[str], bool], max_depth: int = MAX_DEPTH
) -> tuple[Hierarchy, dict[str, CgroupReading]]:
    """The selected cgroups' readings. Raises CgroupError."""
    readings: dict[str, CgroupReading] = {}
    try:
        hierarchy = find_hierarchy(sysfs)
        for path, directory, ino in walk(hierarchy.root, max_depth):
            if not selects(path):
                continue
            text = _read(Path(directory) / hierarchy.counters_file)
            if text is not None:
                readings[path] = CgroupReading(ino, hierarchy.counters(text))
    except OSError as exc:
        raise CgroupError(f"{exc.filename or sysfs}: {exc.strerror}") from None
    return hierarchy, readings


def walk(root: Path, max_depth: int) -> Iterator[tuple[str, str, int]]:
    """(relative path, directory, inode) of the root and every cgroup below it."""
    yield "/", str(root), os.stat(root).st_ino
    stack: list[tuple[str, str, int]] = [("", str(root), 0)]
    while stack:
        relative, directory, depth = stack.pop()
        try:
            with os.scandir(directory) as entries:
                children = [e for e in entries if e.is_dir(follow_symlinks=False)]
        except OSError as exc:
            if depth and exc.errno in _GONE:
                continue  # removed since its parent was listed
            raise
        for child in sorted(children, key=lambda e: e.name):
            path = f"{relative}/{child.name}"
            yield path, child.path, child.inode()
            if depth + 1 < max_depth:
                stack.append((path, child.path, depth + 1))


def _read(path: Path) -> str | None:
    """The file's text; None when it is not there (a cgroup without the controller, or
    removed meanwhile)."""
    try:
        return path.read_text()
    except OSError as exc:
        if exc.errno in _GONE:
            return None
        raise
