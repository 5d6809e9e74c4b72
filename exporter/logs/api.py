"""The contract between the log pipeline's parts.

    source (file / journald / docker) --Batch--> Sink --> RuleSet.scan --> counting --> checkpoint

A batch carries the source position *after* its lines, so that counting a batch and adopting
its position is one step on the event loop: the checkpoint stores both together, and a restart
neither loses nor repeats a line.

Lines travel as one `bytes` buffer of complete lines, never as a list: splitting millions of
lines into Python objects would cost more than matching them (see RuleSet.scan).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

# A source's position as it goes into the checkpoint: JSON types only (dict/list/str/int/...).
Position = dict[str, Any]

MAX_LINE_BYTES = 1 << 20  # a longer line is cut here (the rest dropped) and counted as truncated


@dataclass
class Batch:
    """Complete lines read from one source, and where the source stands after them."""

    # Complete lines, each terminated by b"\n" (the source adds it where the transport has
    # none, e.g. a journal entry); no line longer than MAX_LINE_BYTES before its b"\n".
    data: bytes
    lines: int  # == data.count(b"\n")
    position: Position
    bytes_read: int = 0  # raw bytes consumed from the source, dropped parts of cut lines included
    truncated: int = 0  # lines cut at MAX_LINE_BYTES
    rotations: list[str] = field(default_factory=list)  # "rename" | "copytruncate" | "recreate"
    last_timestamp: float | None = None  # Unix time of the last line if the source knows it


class Sink(Protocol):
    """Where a source delivers. Called on the event loop only."""

    def batch(self, batch: Batch) -> None:
        """Count these lines and adopt batch.position as the source's position."""

    def up(self) -> None:
        """The source is readable (again). Idempotent."""

    def down(self, reason: str) -> None:
        """The source cannot be read now (missing directory, permission, engine away).

        The source keeps retrying by itself; the sink logs the first report of a streak only.
        `reason` must be one line and must not contain secrets.
        """

    def error(self, what: str) -> None:
        """One counted, non-fatal read error (an unparseable journal entry, a failed read)."""


class Source(Protocol):
    """One configured log source. Built with the position restored from the checkpoint
    (None on a first start); `run` delivers to the sink until cancelled, handling its own
    retries; it must not raise for I/O trouble (report it with sink.down / sink.error)."""

    name: str

    async def run(self, sink: Sink) -> None: ...

    async def close(self) -> None: ...


Emit = Callable[[Batch], None]


def join_lines(lines: list[bytes]) -> tuple[bytes, int, int]:
    """Lines without terminators -> (buffer, number of lines, number of lines cut).

    Embedded newlines split a line (a journal entry holding a traceback); lines are cut at
    MAX_LINE_BYTES.
    """
    out: list[bytes] = []
    truncated = 0
    for line in lines:
        for part in line.split(b"\n") if b"\n" in line else (line,):
            if len(part) > MAX_LINE_BYTES:
                part = part[:MAX_LINE_BYTES]  # noqa: PLW2901
                truncated += 1
            out.append(part)
    if not out:
        return b"", 0, 0
    count = len(out)
    out.append(b"")
    return b"\n".join(out), count, truncated
