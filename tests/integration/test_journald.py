"""JournaldSource against real journal files and the real journalctl (systemd 252).

There is no journald here (no systemd as PID 1), so the tests write journal files themselves:
entries in journal export format go through

    /lib/systemd/systemd-journal-remote -o DIR/remote.journal -      (entries on stdin)

which creates DIR/remote.journal or appends to it, and the source runs

    journalctl --output=json --all --output-fields=MESSAGE --follow --merge --no-pager \
        --quiet --unit=U --directory=DIR  (--lines=0 | --no-tail | --after-cursor=C --no-tail)

on that directory, as it would on /var/log/journal without --directory. Ground truth comes
from `journalctl --directory=DIR --output=json --unit=U` without --follow.
"""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from exporter.logs.api import Position
from exporter.logs.journald import JournaldSource
from exporter.logs.models import JournaldSourceConfig
from tests.logsupport import RecordingSink, running
from tests.support import eventually

pytestmark = pytest.mark.integration

JOURNAL_REMOTE = "/lib/systemd/systemd-journal-remote"
UNIT = "bot.service"
OTHER = "other.service"


class Journal:
    """A journal directory written through systemd-journal-remote."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.boot = uuid.uuid4().hex
        self.count = 0

    def write(self, *entries: tuple[str, str | bytes]) -> None:
        """Append (unit, MESSAGE) entries; a bytes MESSAGE is stored as is (binary field)."""
        export = b"".join(self._export(unit, message) for unit, message in entries)
        subprocess.run(
            [JOURNAL_REMOTE, "-o", str(self.directory / "remote.journal"), "-"],
            input=export,
            capture_output=True,
            check=True,
            timeout=30,
        )

    def _export(self, unit: str, message: str | bytes) -> bytes:
        self.count += 1
        now = time.time_ns() // 1000
        fields = [
            f"__REALTIME_TIMESTAMP={now}",
            f"__MONOTONIC_TIMESTAMP={self.count}",
            f"_BOOT_ID={self.boot}",
            f"_SYSTEMD_UNIT={unit}",
        ]
        head = "".join(f + "\n" for f in fields).encode()
        raw = message.encode() if isinstance(message, str) else message
        # The binary form (name, LE64 length, bytes) carries any bytes, newlines included.
        return head + b"MESSAGE\n" + struct.pack("<Q", len(raw)) + raw + b"\n\n"

    def entries(self, unit: str = UNIT) -> list[dict[str, Any]]:
        """Ground truth: the unit's entries as journalctl shows them without following."""
        out = subprocess.run(
            [
                *("journalctl", f"--directory={self.directory}", "--output=json", "--all"),
                *("--merge", "--no-pager", f"--unit={unit}"),
            ],
            capture_output=True,
            check=True,
            timeout=30,
        ).stdout
        return [json.loads(line) for line in out.splitlines()]


@pytest.fixture
def journal(tmp_path: Path) -> Journal:
    directory = tmp_path / "journal"
    directory.mkdir()
    return Journal(directory)


def source(
    journal: Journal | None, position: Position | None = None, **fields: Any
) -> JournaldSource:
    values: dict[str, Any] = {"type": "journald", "name": "j", "unit": UNIT}
    if journal is not None:
        values["directory"] = str(journal.directory)
    # model_construct: the tests are about reading, not about config validation.
    config = JournaldSourceConfig.model_construct(**{**values, **fields})
    return JournaldSource("j", config, position)


def fake_journalctl(tmp_path: Path, script: str) -> Path:
    """A stand-in journalctl: an executable shell script in tmp_path."""
    fake = tmp_path / "journalctl"
    fake.write_text("#!/bin/sh\n" + script)
    fake.chmod(0o755)
    return fake


def reaped(pid: int) -> bool:
    return not Path(f"/proc/{pid}").exists()


async def test_selected_unit_from_beginning_in_batches(journal: Journal) -> None:
    entries: list[tuple[str, str | bytes]] = []
    for i in range(40):
        entries += [(UNIT, f"line {i}"), (OTHER, f"other {i}")]
    entries += [
        (UNIT, "주문 거부됨: 잔고 부족"),
        (UNIT, b"raw \xff\xfe not utf-8"),
        (UNIT, "Traceback (most recent call last):\n  File x\nValueError: boom"),
    ]
    journal.write(*entries)
    sink = RecordingSink()
    src = source(journal, start_at="beginning")

    expected = [f"line {i}".encode() for i in range(40)] + [
        "주문 거부됨: 잔고 부족".encode(),
        b"raw \xff\xfe not utf-8",
        b"Traceback (most recent call last):",
        b"  File x",
        b"ValueError: boom",
    ]
    async with running(src, sink):
        await eventually(lambda: len(sink.lines()) >= len(expected), 10, "all unit entries")
        pid = src.pid
    assert pid is not None and reaped(pid)
    assert sink.lines() == expected
    assert not sink.errors and not sink.downs
    # Entries already written arrive together, not one sink.batch per entry.
    assert len(sink.batches) <= 5, [b.lines for b in sink.batches]
    truth = journal.entries()
    assert sink.position == {"cursor": truth[-1]["__CURSOR"]}
    assert sink.batches[-1].last_timestamp == int(truth[-1]["__REALTIME_TIMESTAMP"]) / 1e6


async def test_follow_then_resume_from_cursor_exactly(journal: Journal) -> None:
    journal.write(*[(UNIT, f"old {i}") for i in range(5)])
    first = RecordingSink()
    src = source(journal)  # start_at end: only entries written after the start
    async with running(src, first):
        # "up" comes after journalctl has run ~1 s: it has long seeked to the end by then.
        await eventually(lambda: first.ups, 10, "journalctl to run")
        journal.write(*[(UNIT, f"new {i}") for i in range(20)], (OTHER, "not mine"))
        await eventually(lambda: len(first.lines()) >= 20, 10, "the appended entries")
        journal.write((UNIT, "new 20"))
        await eventually(lambda: len(first.lines()) >= 21, 10, "one more appended entry")
    assert first.lines() == [f"new {i}".encode() for i in range(21)]
    saved = first.position
    assert saved is not None

    # Written while the source is stopped: more than journalctl's default tail of 10.
    journal.write(*[(UNIT, f"later {i}") for i in range(15)])
    second = RecordingSink()
    async with running(source(journal, saved), second):
        await eventually(lambda: len(second.lines()) >= 15, 10, "entries after the cursor")
        journal.write((UNIT, "live"))
        await eventually(lambda: len(second.lines()) >= 16, 10, "a live entry")
    assert second.lines() == [f"later {i}".encode() for i in range(15)] + [b"live"]

    # Resuming from any entry's cursor (not only a batch's end) is exact too.
    truth = journal.entries()
    middle = next(e for e in truth if e["MESSAGE"] == "new 9")
    third = RecordingSink()
    async with running(source(journal, {"cursor": middle["__CURSOR"]}), third):
        await eventually(lambda: len(third.lines()) >= 27, 10, "entries after new 9")
    assert third.lines() == [e["MESSAGE"].encode() for e in truth[truth.index(middle) + 1 :]]


async def test_killed_journalctl_is_restarted_from_its_cursor(journal: Journal) -> None:
    sink = RecordingSink()
    src = source(journal, start_at="beginning")
    src.RETRY_MIN = 0.05
    journal.write((UNIT, "before 0"), (UNIT, "before 1"))
    async with running(src, sink):
        await eventually(lambda: len(sink.lines()) >= 2, 10, "the first entries")
        pid = src.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        await eventually(lambda: sink.downs, 10, "the exit to be reported")
        journal.write((UNIT, "after 0"), (UNIT, "after 1"))
        await eventually(lambda: len(sink.lines()) >= 4, 10, "entries after the restart")
        await eventually(lambda: src.pid not in (None, pid), 10, "a new journalctl")
    assert reaped(pid)
    assert sink.downs == ["journalctl exited with status -9"]
    assert sink.lines() == [b"before 0", b"before 1", b"after 0", b"after 1"]


async def test_missing_journalctl_is_down_and_retried(journal: Journal) -> None:
    sink = RecordingSink()
    src = source(journal, journalctl="/nonexistent/journalctl")
    src.RETRY_MIN = 0.05
    async with running(src, sink):
        await eventually(lambda: len(sink.downs) >= 3, 10, "repeated down reports")
    assert set(sink.downs) == {"cannot run /nonexistent/journalctl: No such file or directory"}
    assert not sink.batches and not sink.ups


async def test_missing_directory_reports_journalctls_error(tmp_path: Path) -> None:
    sink = RecordingSink()
    src = source(None, directory=str(tmp_path / "absent"))
    async with running(src, sink):
        await eventually(lambda: sink.downs, 10, "a down report")
    assert sink.downs[0] == (
        f"journalctl exited with status 1: Failed to open {tmp_path / 'absent'}:"
        " No such file or directory"
    )


async def test_unparseable_output_is_counted_and_skipped(tmp_path: Path) -> None:
    # A stand-in journalctl: JSON that is not an entry, then an entry, then a failure.
    fake = fake_journalctl(
        tmp_path,
        "echo 'not json at all'\n"
        'echo \'{"__CURSOR":"s=1;i=1","MESSAGE":"kept","__REALTIME_TIMESTAMP":"1000000"}\'\n'
        "echo 'fatal: journal corrupted' >&2\n"
        "echo 'second stderr line' >&2\n"
        "exit 3\n",
    )
    sink = RecordingSink()
    # A damaged saved cursor is reported and dropped (journalctl would exit on it forever).
    src = source(None, {"cursor": "garbage"}, journalctl=str(fake))
    async with running(src, sink):
        await eventually(lambda: sink.downs, 10, "the exit to be reported")
    assert sink.lines()[0] == b"kept"
    assert sink.errors[0] == "saved journal position unusable: reading as on a first start"
    assert sink.errors[1].startswith("unusable journal entry: not JSON")
    assert sink.downs[0] == "journalctl exited with status 3: fatal: journal corrupted"
    assert sink.batches[0].position == {"cursor": "s=1;i=1"}
    assert sink.batches[0].last_timestamp == 1.0


async def test_restart_before_any_entry_keeps_start_at_end(journal: Journal) -> None:
    # No cursor yet: a restarted journalctl must not begin at a new end (losing what came
    # while it was away) nor at the beginning (old entries): it goes on from the first start.
    journal.write((UNIT, "old"))
    sink = RecordingSink()
    src = source(journal)
    src.RETRY_MIN = 0.5
    async with running(src, sink):
        await eventually(lambda: sink.ups, 10, "journalctl to run")
        pid = src.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        await eventually(lambda: sink.downs, 10, "the exit to be reported")
        journal.write((UNIT, "while away"))  # before the restart (0.25-0.5 s backoff)
        await eventually(sink.lines, 10, "the entry written meanwhile")
        restarted = Path(f"/proc/{src.pid}/cmdline").read_bytes().split(b"\0")
    assert sink.lines() == [b"while away"]
    assert any(arg.startswith(b"--since=@") for arg in restarted)


async def test_oversized_entry_is_skipped_as_one_error(tmp_path: Path) -> None:
    fake = fake_journalctl(
        tmp_path,
        # One JSON line over MAX_ENTRY_JSON (8 MiB), then a normal entry.
        'printf \'{"__CURSOR":"s=1;i=1","MESSAGE":"\'\n'
        "head -c 9000000 /dev/zero | tr '\\0' x\n"
        "printf '\"}\\n'\n"
        'echo \'{"__CURSOR":"s=1;i=2","MESSAGE":"after"}\'\n'
        "exec sleep 60\n",
    )
    sink = RecordingSink()
    async with running(source(None, journalctl=str(fake)), sink):
        await eventually(sink.lines, 10, "the entry after the oversized one")
    assert sink.lines() == [b"after"]
    assert sink.errors == [f"journal entry over {8 << 20} bytes of JSON skipped"]
    assert sink.position == {"cursor": "s=1;i=2"}
