"""Pure parsers for the /proc files psutil does not read from a configurable root."""

from __future__ import annotations

import re
from dataclasses import dataclass

_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")


@dataclass(frozen=True)
class Mount:
    device: str
    mountpoint: str
    fstype: str
    options: frozenset[str]

    @property
    def readonly(self) -> bool:
        return "ro" in self.options


def _unescape(field: str) -> str:
    # The kernel writes space, tab, newline and backslash in mount paths as \ooo.
    return _OCTAL_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), field)


def parse_mounts(text: str) -> list[Mount]:
    """/proc/PID/mounts; a later mount on the same mountpoint hides the earlier one."""
    by_mountpoint: dict[str, Mount] = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 4:
            continue
        mount = Mount(
            device=_unescape(fields[0]),
            mountpoint=_unescape(fields[1]),
            fstype=fields[2],
            options=frozenset(fields[3].split(",")),
        )
        by_mountpoint.pop(mount.mountpoint, None)
        by_mountpoint[mount.mountpoint] = mount
    return list(by_mountpoint.values())


def parse_loadavg(text: str) -> tuple[float, float, float]:
    one, five, fifteen = (float(x) for x in text.split()[:3])
    return one, five, fifteen


def parse_vmstat(text: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if value.strip().isdigit():
            out[name] = int(value)
    return out
