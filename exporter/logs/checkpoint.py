"""The log checkpoint: counters and positions of every source in one file (exporter.statefile)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from exporter import statefile
from exporter.statefile import StateFileError as CheckpointError
from exporter.statefile import set_aside

FILENAME = "logs-checkpoint.json"
LOCK_NAME = "logs.lock"
VERSION = 1
KEY = "sources"

__all__ = [
    "FILENAME",
    "KEY",
    "LOCK_NAME",
    "VERSION",
    "CheckpointError",
    "read",
    "set_aside",
    "write",
]


def write(path: Path, sources: dict[str, Any]) -> None:
    statefile.write(path, VERSION, {KEY: sources})


def read(path: Path) -> dict[str, Any] | None:
    """The sources of the checkpoint; None when there is none yet."""
    return statefile.read(path, VERSION, KEY)
