"""A collector's durable state under state_dir: one JSON file, locked, replaced atomically.

Written as temp file + fsync + rename + fsync of the directory, so after a crash or power
loss the file is either the previous version or the new one, never a mix. A lock file keeps
a second botwatch on the same state_dir from undoing this one's state. Writes run in a
daemon thread: an fsync stuck on a dead disk must not hold up the loop or SIGTERM.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
from prometheus_client.core import CounterMetricFamily

from exporter.threads import BlockingCalls, StillBlocked

if TYPE_CHECKING:
    from exporter.collector import Context

log = structlog.get_logger("exporter.statefile")


class StateFileError(Exception):
    pass


def write(path: Path, version: int, body: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = json.dumps(
        {"version": version, "written": time.time(), **body}, separators=(",", ":")
    ).encode()
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(data)
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


def read(path: Path, version: int, key: str) -> dict[str, Any] | None:
    """The mapping stored under `key`; None when there is no file yet."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StateFileError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise StateFileError(f"{path}: not valid JSON: {exc}") from None
    found = doc.get("version") if isinstance(doc, dict) else None
    if found != version:
        raise StateFileError(f"{path}: unknown checkpoint version {found!r}")
    value = doc.get(key)
    if not isinstance(value, dict):
        raise StateFileError(f"{path}: no {key} mapping")
    return value


def set_aside(path: Path) -> Path | None:
    """Keep an unreadable file for inspection instead of overwriting it."""
    target = path.with_name(f"{path.name}.bad-{int(time.time())}")
    with contextlib.suppress(OSError):
        os.replace(path, target)
        return target
    return None


class Checkpoint:
    """One collector's checkpoint file: lock, load once, save off the loop, count failures.

    With `durable` false (the `once` command) it reads but never locks or writes: looking
    must not disturb a daemon that runs on the same state_dir.
    """

    def __init__(
        self,
        state_dir: Path,
        filename: str,
        *,
        lock_name: str,
        version: int,
        key: str,
        what: str,
        blocking: BlockingCalls,
        durable: bool = True,
        name: str = "",
    ) -> None:
        self.name = name  # the collector's, for errors_family()
        self.state_dir = state_dir
        self.path = state_dir / filename
        self.version = version
        self.key = key
        self.what = what  # "log checkpoint", "docker checkpoint": in every log event
        self.blocking = blocking
        self.durable = durable
        self.last_success: float | None = None
        self.errors = 0
        self._failing = False
        self._lock_fd: int | None = None
        self._lock_name = lock_name

    @classmethod
    def of(cls, ctx: Context, key: str) -> Checkpoint:
        """A collector's own checkpoint: `{name}-checkpoint.json`, lock `{name}.lock`,
        failed writes served as `botwatch_{name}_checkpoint_errors_total`."""
        return cls(
            ctx.state_dir,
            f"{ctx.name}-checkpoint.json",
            lock_name=f"{ctx.name}.lock",
            version=1,
            key=key,
            what=f"{ctx.name} checkpoint",
            blocking=ctx.blocking,
            durable=ctx.durable,
            name=ctx.name,
        )

    def lock(self) -> None:
        """Raises RuntimeError when another botwatch holds this state_dir's lock."""
        if not self.durable or self._lock_fd is not None:
            return
        self.state_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.state_dir / self._lock_name, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RuntimeError(
                f"{self.state_dir} is in use by another botwatch (lock {self._lock_name})"
            ) from None
        self._lock_fd = fd

    def errors_family(self) -> CounterMetricFamily:
        name = self.name
        return CounterMetricFamily(
            f"botwatch_{name}_checkpoint_errors",
            f"Failed writes of the {name} collector's checkpoint ({self.path.name}).",
            value=self.errors,
        )

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def load(self) -> dict[str, Any]:
        """What was saved, or {}: an unreadable file is set aside and logged, not fatal."""
        try:
            return read(self.path, self.version, self.key) or {}
        except StateFileError as exc:
            aside = set_aside(self.path) if self.durable else None
            log.error(
                f"{self.what} unreadable: counting starts again",
                error=str(exc),
                moved_to=str(aside) if aside else None,
            )
            return {}

    async def save(self, state: dict[str, Any]) -> bool:
        try:
            return await self.blocking.run(f"{self.what} write", self._write, state)
        except StillBlocked as exc:
            return self._failed(str(exc))

    def _write(self, state: dict[str, Any]) -> bool:
        if not self.durable:
            return True
        try:
            write(self.path, self.version, {self.key: state})
        except OSError as exc:
            return self._failed(exc.strerror)
        if self._failing:
            log.info(f"{self.what} works again", path=str(self.path))
        self._failing = False
        self.last_success = time.time()
        return True

    def _failed(self, error: str | None) -> bool:
        self.errors += 1
        if not self._failing:
            log.error(f"{self.what} failed", path=str(self.path), error=error)
        self._failing = True
        return False
