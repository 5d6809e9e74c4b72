"""The log checkpoint: counters and positions of every source in one file, replaced atomically.

Written as temp file + fsync + rename + fsync of the directory, so after a crash or power
loss the file is either the previous checkpoint or the new one, never a mix.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any

FILENAME = "logs-checkpoint.json"
VERSION = 1


class CheckpointError(Exception):
    pass


def write(path: Path, sources: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    body = json.dumps(
        {"version": VERSION, "written": time.time(), "sources": sources},
        separators=(",", ":"),
    ).encode()
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(body)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def read(path: Path) -> dict[str, Any] | None:
    """The sources of the checkpoint; None when there is none yet."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise CheckpointError(f"{path}: not valid JSON: {exc}") from None
    version = doc.get("version") if isinstance(doc, dict) else None
    if version != VERSION:
        raise CheckpointError(f"{path}: unknown checkpoint version {version!r}")
    sources = doc.get("sources")
    if not isinstance(sources, dict):
        raise CheckpointError(f"{path}: no sources mapping")
    return sources


def set_aside(path: Path) -> Path | None:
    """Keep an unreadable checkpoint for inspection instead of overwriting it."""
    target = path.with_name(f"{path.name}.bad-{int(time.time())}")
    with contextlib.suppress(OSError):
        os.replace(path, target)
        return target
    return None
