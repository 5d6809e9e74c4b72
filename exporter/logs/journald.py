"""The journald log source: `journalctl --follow --output=json` as a subprocess.

journalctl does the journal's hard parts (file rotation, vacuuming, boots, cursors), so this
source only parses its JSON lines. Position: {"cursor": <__CURSOR of the last entry read>};
a restart asks for the entries after that cursor, which the journal defines exactly: no entry
is delivered twice or lost while it stays in the journal.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
import time
from dataclasses import dataclass
from typing import Any

from exporter.logs.api import MAX_LINE_BYTES, Batch, Position, Sink, join_lines
from exporter.logs.models import JournaldSourceConfig

# A JSON line longer than this is skipped as one read error: a MESSAGE near MAX_LINE_BYTES
# of non-UTF-8 bytes is ~4x that as a JSON array of numbers.
MAX_ENTRY_JSON = 8 * MAX_LINE_BYTES
# At most this much JSON is parsed into one batch: everything journalctl has written so far,
# within a bound that keeps one batch from holding the loop for long.
READ_CHUNK = 1 << 20
STOP_TIMEOUT = 2.0


@dataclass(frozen=True)
class Entry:
    """What a journal entry contributes: its MESSAGE values (usually one) and its place."""

    messages: list[bytes]
    cursor: str
    realtime: float | None  # Unix seconds (µs precision), None if absent or malformed


class EntryError(ValueError):
    """A journalctl output line that is not a usable entry."""


def parse_entry(line: bytes) -> Entry:
    """One line of `journalctl --output=json` -> Entry, or EntryError."""
    try:
        obj = json.loads(line)
    except ValueError as exc:  # UnicodeDecodeError included
        raise EntryError(f"not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise EntryError("not a JSON object")
    cursor = obj.get("__CURSOR")
    if not isinstance(cursor, str) or not cursor:
        raise EntryError("entry without __CURSOR")
    return Entry(message_values(obj.get("MESSAGE")), cursor, realtime(obj))


def message_values(value: Any) -> list[bytes]:
    """MESSAGE as journalctl's JSON writes it -> its values as bytes.

    A string is valid UTF-8 text; an array of numbers is one value of raw bytes (not UTF-8,
    or holding control characters such as ANSI colours); an array of those is a field that
    occurs several times in the entry; null is a value journalctl did not print (over 4096
    bytes without --all); no MESSAGE at all is an entry without a line.
    """
    if value is None:
        return []
    if isinstance(value, str):
        # journalctl writes UTF-8 only; an escaped lone surrogate must not crash the source.
        return [value.encode("utf-8", "replace")]
    if isinstance(value, list):
        if value and all(type(item) is int for item in value):
            try:
                return [bytes(value)]
            except ValueError:
                raise EntryError("MESSAGE byte array holds values over 255") from None
        values: list[bytes] = []
        for item in value:
            if isinstance(item, list | str) or item is None:
                values += message_values(item)
            else:
                raise EntryError(f"MESSAGE array holds a {type(item).__name__}")
        return values
    raise EntryError(f"MESSAGE is a {type(value).__name__}")


def realtime(obj: dict[str, Any]) -> float | None:
    value = obj.get("__REALTIME_TIMESTAMP")
    if isinstance(value, str) and value.isdigit():
        return int(value) / 1e6
    return None


def command(config: JournaldSourceConfig, cursor: str | None, since: float | None) -> list[str]:
    """The journalctl command line that continues after `cursor`.

    Without a cursor: from `since` (Unix seconds) if given, else from config.start_at.
    """
    args = [
        config.journalctl,
        "--output=json",
        # Without --all, fields over 4096 bytes come out as null: the line would be lost.
        "--all",
        # Only MESSAGE besides the always-present __CURSOR and timestamps: much less JSON.
        "--output-fields=MESSAGE",
        "--follow",
        # --follow alone implies --boot (systemd 252): it would skip the entries of an older
        # boot after a saved cursor, i.e. the last lines written before a reboot.
        "--merge",
        "--no-pager",
        "--quiet",
    ]
    args += [f"--unit={unit}" for unit in config.units()]
    if config.directory is not None:
        args.append(f"--directory={config.directory}")
    if cursor is not None:
        args += [f"--after-cursor={cursor}", "--no-tail"]
    elif since is not None:
        args += [f"--since=@{since:.6f}", "--no-tail"]
    elif config.start_at == "beginning":
        args.append("--no-tail")
    else:
        args.append("--lines=0")
    return args


# What sd_journal_get_cursor() writes: s=<seqnum id>;i=<seqnum>;b=<boot>;m=<mono>;t=<rt>;x=<hash>.
# journalctl exits on a cursor it cannot parse, so a damaged one would keep the source down.
CURSOR = re.compile(r"[sibmtx]=[0-9a-f]+(?:;[sibmtx]=[0-9a-f]+)*")


def position_cursor(position: Position | None) -> str | None:
    """The saved cursor, or None if there is none or it is not a journal cursor."""
    cursor = (position or {}).get("cursor")
    return cursor if isinstance(cursor, str) and CURSOR.fullmatch(cursor) else None


class JournaldSource:
    # Restart delays after journalctl exits: capped exponential with jitter.
    RETRY_MIN = 0.5
    RETRY_MAX = 30.0
    # A journalctl that runs this long (or delivers) counts as up and resets the backoff.
    HEALTHY_AFTER = 1.0

    def __init__(self, name: str, config: JournaldSourceConfig, position: Position | None) -> None:
        self.name = name
        self.config = config
        self.cursor = position_cursor(position)
        self._unusable_position = position is not None and self.cursor is None
        self._since: float | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._rng = random.Random()

    async def run(self, sink: Sink) -> None:
        if self._unusable_position:
            sink.error("saved journal position unusable: reading as on a first start")
            self._unusable_position = False
        if self.cursor is None and self.config.start_at == "end":
            # If journalctl must be restarted before it delivered anything, it goes on from
            # this first start, not from a new "end" that would skip what came meanwhile.
            self._since = time.time()
        since = None  # the first start honours start_at exactly ("--lines=0")
        attempt = 0
        while True:
            started = time.monotonic()
            reason, delivered = await self._run_once(sink, since)
            since = self._since
            if delivered or time.monotonic() - started >= self.HEALTHY_AFTER:
                attempt = 0
            sink.down(reason)
            ceiling = min(self.RETRY_MAX, self.RETRY_MIN * 2.0**attempt)
            attempt += 1
            await asyncio.sleep(ceiling * self._rng.uniform(0.5, 1.0))

    async def _run_once(self, sink: Sink, since: float | None) -> tuple[str, bool]:
        """Run journalctl until it exits -> (why it stopped, whether it delivered)."""
        args = command(self.config, self.cursor, since)
        try:
            proc = await asyncio.create_subprocess_exec(
                *args,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                limit=READ_CHUNK,
            )
        except OSError as exc:
            return f"cannot run {args[0]}: {exc.strerror or exc}", False
        self._proc = proc
        assert proc.stdout is not None and proc.stderr is not None
        stderr = asyncio.create_task(first_line(proc.stderr))
        loop = asyncio.get_running_loop()
        healthy = loop.call_later(self.HEALTHY_AFTER, _up_if_running, proc, sink)
        try:
            delivered = await self._read(proc.stdout, sink)
            status = await proc.wait()
            message = await stderr
        finally:
            healthy.cancel()
            stderr.cancel()
            await stop(proc)
            self._proc = None
        detail = f": {message}" if message else ""
        return f"journalctl exited with status {status}{detail}", delivered

    async def _read(self, stdout: asyncio.StreamReader, sink: Sink) -> bool:
        """Deliver batches until EOF -> whether anything was delivered."""
        pending = b""
        skipping = False  # inside an oversized line, dropping until its end
        delivered = False
        while chunk := await stdout.read(READ_CHUNK):
            if skipping:
                end = chunk.find(b"\n")
                if end < 0:
                    continue
                chunk, skipping = chunk[end + 1 :], False
            data = pending + chunk
            end = data.rfind(b"\n")
            if end < 0:
                pending = data
            else:
                pending = data[end + 1 :]
                if self._deliver(data[:end].split(b"\n"), sink):
                    delivered = True
            if len(pending) > MAX_ENTRY_JSON:
                sink.error(f"journal entry over {MAX_ENTRY_JSON} bytes of JSON skipped")
                pending, skipping = b"", True
        return delivered

    def _deliver(self, lines: list[bytes], sink: Sink) -> bool:
        messages: list[bytes] = []
        cursor: str | None = None
        timestamp: float | None = None
        for line in lines:
            if not line:
                continue
            try:
                entry = parse_entry(line)
            except EntryError as exc:
                sink.error(f"unusable journal entry: {exc}")
                continue
            messages += entry.messages
            cursor = entry.cursor
            timestamp = entry.realtime if entry.realtime is not None else timestamp
        if cursor is None:
            return False
        data, count, truncated = join_lines(messages)
        self.cursor = cursor
        self._since = None
        sink.up()
        sink.batch(
            Batch(
                data=data,
                lines=count,
                position={"cursor": cursor},
                bytes_read=sum(len(m) + 1 for m in messages),
                truncated=truncated,
                last_timestamp=timestamp,
            )
        )
        return True

    async def close(self) -> None:
        proc = self._proc
        if proc is not None:
            await stop(proc)

    @property
    def pid(self) -> int | None:
        """The running journalctl's PID (for tests and diagnostics)."""
        return self._proc.pid if self._proc is not None else None


def _up_if_running(proc: asyncio.subprocess.Process, sink: Sink) -> None:
    if proc.returncode is None:
        sink.up()


async def first_line(stream: asyncio.StreamReader) -> str:
    """The first non-empty line of `stream`, read to its end so the child never blocks."""
    first = ""
    while True:
        try:
            line = await stream.readline()
        except ValueError:  # a line over the reader's limit: dropped by readline
            continue
        if not line:
            return first
        if not first:
            first = " ".join(line.decode("utf-8", "replace").split())[:300]


async def stop(proc: asyncio.subprocess.Process) -> None:
    """Terminate, then kill; always reap (no zombie), even when cancelled meanwhile."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            await asyncio.wait_for(asyncio.shield(proc.wait()), STOP_TIMEOUT)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
    await asyncio.shield(proc.wait())
