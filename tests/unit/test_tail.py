"""FileTailer and FileSource on real files: appends, every rotation kind, restarts, long and
binary lines, unreadable and vanished directories, and a seeded rotation torture."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from exporter.logs.api import MAX_LINE_BYTES
from exporter.logs.models import FileSourceConfig
from exporter.logs.tail import FP_MAX, FileSource, FileTailer, ReadResult, fingerprint
from exporter.threads import BlockingCalls
from tests.logsupport import RecordingSink, open_log, running
from tests.support import REPO, eventually, wait_for


class Reader:
    """A FileTailer plus everything it delivered, across restarts."""

    def __init__(self, pattern: Path | str, **kwargs: Any) -> None:
        self.pattern = str(pattern)
        kwargs.setdefault("rotate_wait", 0.0)
        self.kwargs = kwargs
        self.tailer = FileTailer(self.pattern, **kwargs)
        self.data = b""
        self.rotations: Counter[str] = Counter()
        self.truncated = 0
        self.bytes_read = 0
        self.errors: list[str] = []
        self.last: ReadResult | None = None

    def poll(self) -> ReadResult:
        """One poll as FileSource does it: read again at once while `more`."""
        while True:
            result = self.tailer.read()
            batch = result.batch
            assert batch.lines == batch.data.count(b"\n")
            assert not batch.data or batch.data.endswith(b"\n")
            assert self.tailer.position() == batch.position
            json.dumps(batch.position)  # JSON types only
            self.data += batch.data
            self.rotations.update(batch.rotations)
            self.truncated += batch.truncated
            self.bytes_read += batch.bytes_read
            self.errors += result.errors
            self.last = result
            if not result.more:
                return result

    def take(self) -> bytes:
        """What was delivered since the last take."""
        data, self.data = self.data, b""
        return data

    def restart(self, position: dict[str, Any] | None = None) -> None:
        """kill -9 and start again from `position` (default: the last one returned)."""
        if position is None:
            position = self.tailer.position()
        position = json.loads(json.dumps(position))  # as the checkpoint stores it
        self.tailer.close()
        self.tailer = FileTailer(self.pattern, position=position, **self.kwargs)

    def close(self) -> None:
        self.tailer.close()


@pytest.fixture
def logs(tmp_path: Path) -> Path:
    d = tmp_path / "logs"
    d.mkdir()
    return d


@pytest.fixture
def readers() -> Iterator[list[Reader]]:
    made: list[Reader] = []
    yield made
    for reader in made:
        reader.close()


@pytest.fixture
def reader(readers: list[Reader]) -> Callable[..., Reader]:
    def make(pattern: Path | str, **kwargs: Any) -> Reader:
        made = Reader(pattern, **kwargs)
        readers.append(made)
        return made

    return make


def append(path: Path, data: bytes | str) -> None:
    with path.open("ab") as f:
        f.write(data.encode() if isinstance(data, str) else data)


def numbered(prefix: str, start: int, stop: int) -> bytes:
    return b"".join(f"{prefix}{n} {'.' * (n % 7)}\n".encode() for n in range(start, stop))


def started(
    reader: Callable[..., Reader],
    live: Path,
    first: bytes = b"",
    fd: int | None = None,
    **kwargs: Any,
) -> Reader:
    """A reader on `live` (created empty if missing) after its first round; then, if given,
    `first` appended (through the writer's `fd` if given) and read in one more round."""
    live.touch()
    r = reader(live, **kwargs)
    r.poll()
    if first:
        if fd is None:
            append(live, first)
        else:
            os.write(fd, first)
        r.poll()
    return r


def shift_rotated(logs: Path) -> None:
    """logrotate's chain before a rotation: app.log.2 -> .3, then .1 -> .2."""
    for n in (3, 2, 1):
        src = logs / f"app.log.{n}"
        if src.exists():
            os.rename(src, logs / f"app.log.{n + 1}")


def entry(result: ReadResult, path: Path) -> dict[str, Any]:
    (found,) = [e for e in result.batch.position["files"] if e["path"] == str(path)]
    return dict(found)


# -- appends, partial lines, start_at ---------------------------------------------------------


def test_appended_lines_are_read_once(logs: Path, reader: Callable[..., Reader]) -> None:
    live = logs / "app.log"
    append(live, "before start\n")
    r = reader(live)
    assert r.poll().batch.lines == 0  # start_at=end
    append(live, numbered("a", 0, 100))
    append(live, numbered("a", 100, 200))
    r.poll()
    assert r.take() == numbered("a", 0, 200)
    assert r.bytes_read == len(numbered("a", 0, 200))
    assert r.poll().batch.lines == 0
    assert entry(r.poll(), live)["offset"] == live.stat().st_size


def test_partial_line_is_held_until_its_newline_and_reread_after_restart(
    logs: Path, reader: Callable[..., Reader]
) -> None:
    live = logs / "app.log"
    r = started(reader, live)
    append(live, "one\ntw")
    assert r.poll().batch.data == b"one\n"
    assert entry(r.last or r.poll(), live)["offset"] == 4  # the start of the partial line
    append(live, "o\nthr")
    assert r.poll().batch.data == b"two\n"
    r.restart()
    append(live, "ee\n")
    assert r.poll().batch.data == b"three\n"
    assert r.bytes_read == len(b"one\ntwo\nthree\n")


def test_start_at_end_and_beginning(logs: Path, reader: Callable[..., Reader]) -> None:
    live = logs / "app.log"
    append(live, "old\npar")
    append(logs / "app.log.1", "rotated history\n")
    at_end = reader(live)
    at_beginning = reader(live, start_at="beginning")
    assert at_end.poll().batch.data == b""
    # Rotated files too: a rotation may come before the first round.
    assert at_beginning.poll().batch.data == b"rotated history\nold\n"
    append(live, "tial\nnew\n")
    # start_at=end stops before a line being written, so it is read whole.
    assert at_end.poll().batch.data == b"partial\nnew\n"
    assert at_beginning.poll().batch.data == b"partial\nnew\n"


def test_files_appearing_later_are_read_from_their_start(
    logs: Path, reader: Callable[..., Reader]
) -> None:
    append(logs / "a.log", "a existing\n")
    r = reader(logs / "*.log")
    r.poll()
    append(logs / "b.log", "b1\nb2\n")
    append(logs / "a.log", "a1\n")
    r.poll()
    assert sorted(r.take().splitlines()) == [b"a1", b"b1", b"b2"]
    assert r.last is not None and r.last.files == 2
    # A file appearing in a live path that did not exist at the first start.
    r2 = reader(logs / "later.log")
    r2.poll()
    append(logs / "later.log", "first\n")
    assert r2.poll().batch.data == b"first\n"


def test_glob_with_several_files(logs: Path, reader: Callable[..., Reader]) -> None:
    paths = [logs / f"svc{i}.log" for i in range(5)]
    for p in paths:
        p.touch()
    (logs / "notes.txt").write_text("not matched\n")
    (logs / "svc9.log.gz").write_bytes(b"\x1f\x8b compressed\n")
    r = reader(logs / "svc*.log*")
    assert r.poll().files == 5
    for round_no in range(3):
        for i, p in enumerate(paths):
            append(p, numbered(f"s{i}-", round_no * 10, round_no * 10 + 10))
        r.poll()
    expected = b"".join(numbered(f"s{i}-", 0, 30) for i in range(5))
    assert sorted(r.take().splitlines()) == sorted(expected.splitlines())


# -- rotations ----------------------------------------------------------------------------------


def test_rename_rotation_drains_the_old_inode_then_reads_the_new_file(
    logs: Path, reader: Callable[..., Reader]
) -> None:
    live = logs / "app.log"
    fd = open_log(live)
    try:
        r = started(reader, live, first=numbered("old", 0, 10), fd=fd)
        os.write(fd, numbered("old", 10, 20))
        os.rename(live, logs / "app.log.1")
        # The writer has not reopened yet: these land in the renamed inode.
        os.write(fd, numbered("old", 20, 25))
        append(live, numbered("new", 0, 5))
        r.poll()
        os.write(fd, numbered("old", 25, 30))  # still writing to it after we noticed
        r.poll()
    finally:
        os.close(fd)
    data = r.take()
    assert data.startswith(numbered("old", 0, 25))  # the old inode is drained first
    assert sorted(data.splitlines()) == sorted(
        (numbered("old", 0, 30) + numbered("new", 0, 5)).splitlines()
    )
    assert r.rotations == {"rename": 1}


def test_rename_rotation_to_a_name_outside_the_globs(
    logs: Path, tmp_path: Path, reader: Callable[..., Reader]
) -> None:
    live = logs / "app.log"
    r = started(reader, live)
    append(live, "a\n")
    os.rename(live, tmp_path / "elsewhere")
    append(tmp_path / "elsewhere", "b\n")
    append(live, "c\n")
    r.poll()
    assert r.take() == b"a\nb\nc\n"  # drained through the descriptor
    assert r.rotations == {"rename": 1}
    r.poll()
    r.poll()
    assert r.poll().files == 1  # forgotten after the grace


def test_copytruncate_finishes_the_tail_from_the_copy(
    logs: Path, reader: Callable[..., Reader]
) -> None:
    live = logs / "app.log"
    r = started(reader, live, first=numbered("a", 0, 10))
    append(live, numbered("a", 10, 20))  # unread when the rotation comes
    shutil.copyfile(live, logs / "app.log.1")
    os.truncate(live, 0)
    append(live, numbered("b", 0, 3))
    r.poll()
    assert r.take() == numbered("a", 0, 20) + numbered("b", 0, 3)
    assert r.rotations == {"copytruncate": 1}
    # The copy is tracked at its end: more polls read nothing twice.
    append(live, numbered("b", 3, 4))
    r.poll()
    assert r.take() == numbered("b", 3, 4)


def test_copytruncate_with_a_shorter_new_file_is_detected_by_size(
    logs: Path, reader: Callable[..., Reader]
) -> None:
    live = logs / "app.log"
    r = started(reader, live, first=numbered("a", 0, 50))
    append(live, numbered("a", 50, 51))
    shutil.copyfile(live, logs / "app.log-20261123")
    os.truncate(live, 0)
    append(live, "b\n")
    r.poll()
    assert r.take() == numbered("a", 0, 51) + b"b\n"


def test_a_truncation_during_a_read_is_not_taken_for_lines(
    logs: Path, reader: Callable[..., Reader], monkeypatch: pytest.MonkeyPatch
) -> None:
    """copytruncate between the round's check and its read: the read gets new lines at the
    old offset. The round must drop them; the next one finds the copy."""
    live = logs / "app.log"
    r = started(reader, live, first=numbered("a", 0, 20))
    offset = live.stat().st_size
    append(live, numbered("a", 20, 30))
    real_pread = os.pread
    fired: list[bool] = []

    def pread(fd: int, n: int, at: int) -> bytes:
        if at == offset and n > FP_MAX and not fired:
            fired.append(True)
            shutil.copyfile(live, logs / "app.log.1")
            os.truncate(live, 0)
            append(live, numbered("b", 0, 100))  # longer than the old offset
        return real_pread(fd, n, at)

    monkeypatch.setattr(os, "pread", pread)
    r.poll()
    assert fired
    r.poll()
    assert r.take() == numbered("a", 0, 30) + numbered("b", 0, 100)


def test_copy_being_written_is_held_and_never_read_twice(
    logs: Path, reader: Callable[..., Reader]
) -> None:
    live = logs / "app.log"
    r = started(reader, live)
    content = numbered("a", 0, 200)
    append(live, content)
    r.poll()
    append(live, numbered("a", 200, 210))
    # The tailer looks while logrotate is half way through the copy.
    copy = logs / "app.log.1"
    full = live.read_bytes()
    copy.write_bytes(full[: len(full) // 2])
    r.poll()
    assert r.last is not None and entry(r.last, copy)["hold"] is True
    append(copy, full[len(full) // 2 :])
    r.poll()  # may see the finished copy before the truncation
    os.truncate(live, 0)
    append(live, "b\n")
    r.poll()
    assert r.take() == numbered("a", 0, 210) + b"b\n"


def test_a_backup_copy_is_never_read(logs: Path, reader: Callable[..., Reader]) -> None:
    live = logs / "app.log"
    r = started(reader, live, first=numbered("a", 0, 100))
    shutil.copyfile(live, logs / "app.log.bak")
    for n in range(100, 103):
        append(live, numbered("a", n, n + 1))
        r.poll()
    assert r.take() == numbered("a", 0, 103)
    # Even once the original is gone, the copy holds nothing new.
    os.unlink(live)
    for _ in range(3):
        r.poll()
    append(live, "new\n")
    r.poll()
    assert r.take() == b"new\n"


def test_a_new_file_starting_with_the_same_banner_is_read(
    logs: Path, reader: Callable[..., Reader]
) -> None:
    live = logs / "app.log"
    banner = b"#" * 2000 + b"\n"
    live.write_bytes(banner)
    r = reader(live, start_at="beginning")
    append(live, numbered("a", 0, 100))
    r.poll()
    os.rename(live, logs / "app.log.1")
    live.write_bytes(banner + b"b1\n")  # the same first 1 KiB, shorter than the old file
    r.poll()
    r.poll()
    assert r.take() == banner + numbered("a", 0, 100) + banner + b"b1\n"


def test_several_renames_between_two_rounds(logs: Path, reader: Callable[..., Reader]) -> None:
    live = logs / "app.log"
    r = started(reader, live, first=numbered("gen0-", 0, 5))
    expected = numbered("gen0-", 0, 5)
    for gen in range(4):
        block = numbered(f"gen{gen}-", 5, 10) if gen == 0 else numbered(f"gen{gen}-", 0, 10)
        append(live, block)
        expected += block
        shift_rotated(logs)
        os.rename(live, logs / "app.log.1")
        live.touch()
    append(live, b"last\n")
    expected += b"last\n"
    r.poll()
    assert sorted(r.take().splitlines()) == sorted(expected.splitlines())
    r.poll()
    assert r.take() == b""


def test_several_copytruncates_between_two_rounds(
    logs: Path, reader: Callable[..., Reader]
) -> None:
    live = logs / "app.log"
    fd = open_log(live)
    try:
        r = started(reader, live, first=numbered("gen0-", 0, 5), fd=fd)
        expected = numbered("gen0-", 0, 5)
        for gen in range(4):
            block = numbered(f"gen{gen}-", 5, 10) if gen == 0 else numbered(f"gen{gen}-", 0, 10)
            os.write(fd, block)
            expected += block
            shift_rotated(logs)
            shutil.copyfile(live, logs / "app.log.1")
            os.truncate(live, 0)
        os.write(fd, b"last\n")
        expected += b"last\n"
        r.poll()
    finally:
        os.close(fd)
    assert sorted(r.take().splitlines()) == sorted(expected.splitlines())
    assert r.rotations["copytruncate"] >= 1


def test_delete_and_recreate(logs: Path, reader: Callable[..., Reader]) -> None:
    live = logs / "app.log"
    fd = open_log(live)
    r = started(reader, live, first=b"a1\n", fd=fd)
    os.write(fd, b"a2\n")
    os.unlink(live)
    os.write(fd, b"a3\n")  # a writer that has not reopened yet
    append(live, "b1\n")
    r.poll()
    os.write(fd, b"a4\n")
    os.close(fd)
    r.poll()
    assert r.take() == b"a1\na2\na3\nb1\na4\n"
    assert r.rotations == {"recreate": 1}
    r.poll()
    assert r.poll().files == 1  # the deleted inode is closed after the grace
    assert [e["path"] for e in r.tailer.position()["files"]] == [str(live)]


def test_a_deleted_file_is_kept_for_rotate_wait(logs: Path, reader: Callable[..., Reader]) -> None:
    live = logs / "app.log"
    fd = open_log(live)
    try:
        r = reader(live, rotate_wait=3600)
        r.poll()
        os.unlink(live)
        for n in range(5):
            os.write(fd, f"late{n}\n".encode())
            assert r.poll().files == 1
        assert r.take() == b"".join(f"late{n}\n".encode() for n in range(5))
    finally:
        os.close(fd)


def test_last_line_without_newline_of_a_forgotten_file_is_delivered(
    logs: Path, reader: Callable[..., Reader]
) -> None:
    live = logs / "app.log"
    r = started(reader, live)
    append(live, "done\nunfinished")
    assert r.poll().batch.data == b"done\n"
    os.unlink(live)
    for _ in range(3):
        r.poll()
    assert r.take() == b"done\nunfinished\n"
    assert r.bytes_read == len(b"done\nunfinished")


# -- restarts -----------------------------------------------------------------------------------


def test_restart_mid_file(logs: Path, reader: Callable[..., Reader]) -> None:
    live = logs / "app.log"
    r = started(reader, live, first=numbered("a", 0, 10))
    checkpoint = r.tailer.position()
    append(live, numbered("a", 10, 20))
    r.poll()
    r.take()
    r.restart(checkpoint)  # the lines after the checkpoint are read again, once
    append(live, numbered("a", 20, 30))
    r.poll()
    assert r.take() == numbered("a", 10, 30)


def test_restart_with_an_empty_position_reads_every_file_from_its_start(
    logs: Path, reader: Callable[..., Reader]
) -> None:
    append(logs / "app.log", "a\n")
    append(logs / "app.log.1", "old\n")
    r = reader(logs / "app.log", position={"files": []})
    r.poll()
    assert r.take() == b"old\na\n"


def test_restart_after_rename_while_down(logs: Path, reader: Callable[..., Reader]) -> None:
    live = logs / "app.log"
    r = started(reader, live, first=numbered("a", 0, 10))
    checkpoint = r.tailer.position()
    r.close()
    # Down: two rotations, and the first rotated file is finished from the checkpoint.
    append(live, numbered("a", 10, 20))
    os.rename(live, logs / "app.log.1")
    append(live, numbered("b", 0, 10))
    os.rename(logs / "app.log.1", logs / "app.log.2")
    os.rename(live, logs / "app.log.1")
    append(live, numbered("c", 0, 10))
    r2 = reader(live, position=checkpoint)
    r2.poll()
    assert r2.take() == numbered("a", 10, 20) + numbered("b", 0, 10) + numbered("c", 0, 10)
    assert r2.rotations["rename"] == 1


def test_restart_after_copytruncate_while_down(logs: Path, reader: Callable[..., Reader]) -> None:
    live = logs / "app.log"
    r = started(reader, live, first=numbered("a", 0, 10))
    checkpoint = r.tailer.position()
    r.close()
    append(live, numbered("a", 10, 20))
    shutil.copyfile(live, logs / "app.log.1")
    os.truncate(live, 0)
    append(live, numbered("b", 0, 5))
    r2 = reader(live, position=checkpoint)
    r2.poll()
    assert r2.take() == numbered("a", 10, 20) + numbered("b", 0, 5)
    assert r2.rotations == {"copytruncate": 1}


def test_restart_right_after_a_truncation_keeps_the_orphan(
    logs: Path, reader: Callable[..., Reader]
) -> None:
    """Killed after the truncation was seen but before the copy was: the copy is still
    found after the restart, through the orphan kept in the position."""
    live = logs / "app.log"
    r = started(reader, live, first=numbered("a", 0, 10))
    assert r.take() == numbered("a", 0, 10)
    append(live, numbered("a", 10, 20))
    content = live.read_bytes()
    os.truncate(live, 0)
    append(live, "b\n")
    r.poll()
    assert r.take() == b"b\n"
    checkpoint = r.tailer.position()
    assert len(checkpoint["files"]) == 2  # the file and the orphan
    r.close()
    (logs / "app.log.1").write_bytes(content)  # the copy shows up late
    r2 = reader(live, position=checkpoint)
    r2.poll()
    assert r2.take() == numbered("a", 10, 20)


def test_restart_when_the_inode_was_reused(logs: Path, reader: Callable[..., Reader]) -> None:
    live = logs / "app.log"
    append(live, numbered("a", 0, 10))
    r = reader(live, start_at="beginning")
    r.poll()
    position = r.tailer.position()
    r.close()
    # Same inode, other content: same as a file never seen.
    live.write_bytes(b"other\n")
    r2 = reader(live, position=position)
    r2.poll()
    assert r2.take() == b"other\n"


def test_unusable_position_entries_are_reported(logs: Path, reader: Callable[..., Reader]) -> None:
    append(logs / "app.log", "a\n")
    r = reader(logs / "app.log", position={"files": [{"path": 3}, "junk"]})
    r.poll()
    assert r.take() == b"a\n"
    assert r.errors == [f"{logs}/app.log: 2 unusable position entries"]


# -- long lines, binary -------------------------------------------------------------------------


def test_a_line_over_the_limit_is_cut_and_the_rest_dropped(
    logs: Path, reader: Callable[..., Reader]
) -> None:
    live = logs / "app.log"
    r = started(reader, live)
    exact = b"e" * MAX_LINE_BYTES + b"\n"
    content = b"short\n" + b"x" * (MAX_LINE_BYTES + 10) + b"\nafter\n" + exact
    append(live, content)
    r.poll()
    assert r.take() == b"short\n" + b"x" * MAX_LINE_BYTES + b"\nafter\n" + exact
    assert r.truncated == 1
    assert r.bytes_read == len(content)


def test_a_10mb_line_and_a_restart_while_dropping(
    logs: Path, reader: Callable[..., Reader]
) -> None:
    live = logs / "app.log"
    r = started(reader, live, read_limit=64 << 10, first=b"before\n" + b"y" * (3 << 20))
    assert r.take() == b"before\n" + b"y" * MAX_LINE_BYTES + b"\n"
    assert r.truncated == 1
    position = r.tailer.position()
    assert position["files"][0]["dropping"] is True
    r.restart()
    append(live, b"y" * (7 << 20) + b"\nnext\n")
    r.poll()
    assert r.take() == b"next\n"
    assert r.truncated == 1
    assert r.bytes_read == live.stat().st_size


def test_start_at_end_inside_a_long_line_drops_its_rest(
    logs: Path, reader: Callable[..., Reader]
) -> None:
    live = logs / "app.log"
    live.write_bytes(b"z" * (MAX_LINE_BYTES + 5))
    r = reader(live)
    r.poll()
    append(live, "zzz\nok\n")
    r.poll()
    assert r.take() == b"ok\n"


def test_invalid_utf8_nul_and_binary_bytes(logs: Path, reader: Callable[..., Reader]) -> None:
    live = logs / "app.log"
    live.touch()
    binary = logs / "blob.log"
    r = reader(logs / "*.log")
    r.poll()
    junk = b"\xff\xfe\xfd bad utf-8 \xc3\x28 \x00nul\x00\n\x00\x00\x00\n"
    append(live, junk + "한국어 ok\n".encode())
    blob = random.Random(7).randbytes(300_000)
    binary.write_bytes(blob + b"\ngood line\n")
    r.poll()
    text = junk + "한국어 ok\n".encode()
    assert r.take() in (blob + b"\ngood line\n" + text, text + blob + b"\ngood line\n")


# -- down: permission, vanished directory, not a file ----------------------------------------

PERMISSION_SCRIPT = """
import json, os, sys
from exporter.logs.tail import FileTailer

base = sys.argv[1]
d = os.path.join(base, "logs")
out = {}
t = FileTailer(os.path.join(d, "app.log"), start_at="beginning", rotate_wait=0)
os.seteuid(65534)
out["dir"] = t.read().down
os.seteuid(0)
r = t.read()
out["dir_after"] = [r.down, r.batch.data.decode()]
os.chmod(d, 0o755)
with open(os.path.join(d, "other.log"), "w") as f:
    f.write("secret\\n")
os.chmod(os.path.join(d, "other.log"), 0o600)
t2 = FileTailer(os.path.join(d, "other.log"), start_at="beginning", rotate_wait=0)
os.seteuid(65534)
out["file"] = t2.read().down
os.seteuid(0)
r = t2.read()
out["file_after"] = [r.down, r.batch.data.decode()]
print(json.dumps(out))
"""


def test_permission_denied_is_down_until_readable_again() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to switch to an unprivileged user and back")
    # Not under tmp_path: pytest's base directory is private to root.
    base = tempfile.mkdtemp(prefix="botwatch-tail-")
    try:
        os.chmod(base, 0o755)
        d = os.path.join(base, "logs")
        os.mkdir(d, 0o700)
        Path(d, "app.log").write_text("visible\n")
        proc = subprocess.run(
            [sys.executable, "-c", PERMISSION_SCRIPT, base],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        out = json.loads(proc.stdout)
    finally:
        shutil.rmtree(base)
    assert out["dir"] == f"{d}: Permission denied"
    assert out["dir_after"] == [None, "visible\n"]
    assert out["file"] == f"{d}/other.log: permission denied"
    assert out["file_after"] == [None, "secret\n"]


def test_vanished_directory_and_its_return(
    tmp_path: Path, logs: Path, reader: Callable[..., Reader]
) -> None:
    live = logs / "app.log"
    fd = open_log(live)
    r = reader(live)
    assert r.poll().down is None
    os.write(fd, b"a1\n")
    r.poll()
    os.write(fd, b"a2\n")
    shutil.rmtree(logs)
    os.write(fd, b"a3\n")
    os.close(fd)
    result = r.poll()
    assert result.down == f"{logs}: directory not found"
    assert r.take() == b"a1\na2\na3\n"  # drained through the descriptor
    for _ in range(3):
        assert r.poll().down == f"{logs}: directory not found"  # retried every round
    assert r.last is not None and r.last.files == 0
    logs.mkdir()
    append(live, "b1\n")
    assert r.poll().down is None
    assert r.take() == b"b1\n"


def test_restart_while_the_directory_is_missing_keeps_the_position(
    tmp_path: Path, logs: Path, reader: Callable[..., Reader]
) -> None:
    live = logs / "app.log"
    append(live, "a1\n")
    r = reader(live, start_at="beginning")
    r.poll()
    position = r.tailer.position()
    r.close()
    os.rename(logs, tmp_path / "away")
    r2 = reader(live, position=position)
    assert r2.poll().down == f"{logs}: directory not found"
    assert r2.tailer.position() == position
    os.rename(tmp_path / "away", logs)
    append(live, "a2\n")
    assert r2.poll().down is None
    assert r2.take() == b"a2\n"


def test_a_directory_at_the_live_path_is_down(logs: Path, reader: Callable[..., Reader]) -> None:
    live = logs / "app.log"
    live.mkdir()
    r = reader(live)
    assert r.poll().down == f"{live}: not a regular file"
    live.rmdir()
    append(live, "x\n")
    assert r.poll().down is None
    assert r.take() == b"x\n"


def test_max_files_caps_tracking_and_reports_once(
    logs: Path, reader: Callable[..., Reader]
) -> None:
    for i in range(3):
        append(logs / f"f{i}.log", f"{i}\n")
    r = reader(logs / "*.log", max_files=2, start_at="beginning")
    assert r.poll().files == 2
    r.poll()
    assert r.errors == [f"{logs}/*.log: 3 files, only 2 are tracked (max_files)"]
    assert r.take() == b"0\n1\n"


# -- torture ------------------------------------------------------------------------------------

SEED = 20261123
ROTATIONS = 120
KINDS = ("rename", "rename_chain", "copytruncate", "recreate")


class Rotator(threading.Thread):
    """Appends numbered lines and rotates at random; knows exactly what it wrote."""

    def __init__(
        self, logs: Path, seed: int, covered: Callable[[os.stat_result, bytes], bool]
    ) -> None:
        super().__init__(daemon=True)
        self.live = logs / "app.log"
        self.covered = covered
        self.rng = random.Random(seed)
        self.lines = 0
        self.done: Counter[str] = Counter()
        self.serial = 0
        self.failure: BaseException | None = None

    def run(self) -> None:
        try:
            fd = open_log(self.live)
            for _ in range(ROTATIONS):
                for _ in range(self.rng.randint(0, 4)):
                    self.write(fd, self.rng.randint(1, 40))
                    time.sleep(self.rng.random() * 0.001)  # lets the reader in mid-way
                fd = self.rotate(fd, self.rng.choice(KINDS))
            self.write(fd, 10)
            os.close(fd)
        except BaseException as exc:
            self.failure = exc

    def write(self, fd: int, count: int) -> None:
        n = self.lines
        os.write(fd, b"".join(f"{i} {'x' * (i % 23)}\n".encode() for i in range(n, n + count)))
        self.lines += count

    def archive_first(self) -> None:
        """app.log.1 moves on to a unique name (never deleted: nothing may be lost)."""
        first = self.live.with_name("app.log.1")
        if first.exists():
            self.serial += 1
            os.rename(first, self.live.with_name(f"app.log-{self.serial:05d}"))

    def rotate(self, fd: int, kind: str) -> int:
        self.done[kind] += 1
        if kind == "copytruncate":
            self.archive_first()
            shutil.copyfile(self.live, self.live.with_name("app.log.1"))
            os.truncate(self.live, 0)
            return fd
        if kind == "recreate":
            # Deleted lines survive a kill -9 only once a checkpoint holds them.
            st = os.fstat(fd)
            head = self.live.read_bytes()[:FP_MAX]
            wait_for(lambda: self.covered(st, head), 10, "a checkpoint holding the file")
            os.unlink(self.live)
        else:
            if kind == "rename_chain":
                self.archive_first()
                target = self.live.with_name("app.log.1")
            else:
                self.serial += 1
                target = self.live.with_name(f"app.log-{self.serial:05d}")
            os.rename(self.live, target)
            self.write(fd, self.rng.randint(0, 3))  # before the writer reopens
        os.close(fd)
        return open_log(self.live)


@pytest.mark.parametrize("seed", [SEED, SEED + 1, SEED + 2])
def test_torture_random_rotations_and_two_restarts_deliver_each_line_once(
    logs: Path, seed: int
) -> None:
    live = logs / "app.log"
    kwargs: dict[str, Any] = {"start_at": "beginning", "rotate_wait": 0.01, "read_limit": 64 << 10}
    tailer = FileTailer(str(live), **kwargs)
    received: list[bytes] = []
    checkpoint: tuple[dict[str, Any], int] | None = None
    entries: list[dict[str, Any]] = []

    def covered(st: os.stat_result, head: bytes) -> bool:
        # By inode and fingerprint: an inode number is soon reused by a new file.
        return any(
            (e["dev"], e["ino"], e["offset"]) == (st.st_dev, st.st_ino, st.st_size)
            and e["fp"] == fingerprint(head[: e["fp_len"]])
            for e in entries
        )

    rotator = Rotator(logs, seed, covered)
    restarts_at = [40, 85]
    rotations: Counter[str] = Counter()
    rounds = 0
    deadline = time.monotonic() + 60
    try:
        rotator.start()
        while rotator.is_alive() or len(received) < rotator.lines:
            assert time.monotonic() < deadline, f"{len(received)} of {rotator.lines} lines"
            assert rotator.failure is None, rotator.failure
            result = tailer.read()
            assert result.down is None and not result.errors, (result.down, result.errors)
            received += result.batch.data.splitlines()
            rotations.update(result.batch.rotations)
            rounds += 1
            if rounds % 4 == 0:
                position = json.loads(json.dumps(result.batch.position))
                checkpoint = (position, len(received))
                entries = position["files"]
            if restarts_at and sum(rotator.done.values()) >= restarts_at[0] and checkpoint:
                # kill -9: what came after the checkpoint is lost and must be read again.
                restarts_at.pop(0)
                tailer.close()
                del received[checkpoint[1] :]
                tailer = FileTailer(str(live), position=checkpoint[0], **kwargs)
            if not result.more:
                time.sleep(0.0005)  # pacing, like poll_interval
        for _ in range(5):  # nothing more may come
            received += tailer.read().batch.data.splitlines()
    finally:
        tailer.close()
        rotator.join(timeout=10)
    assert rotator.failure is None, rotator.failure
    assert not restarts_at
    assert sum(rotator.done.values()) == ROTATIONS and all(rotator.done[k] for k in KINDS)
    numbers = Counter(int(line.split(b" ", 1)[0]) for line in received)
    assert numbers == Counter(range(rotator.lines))
    assert rotations["rename"] and rotations["copytruncate"] and rotations["recreate"]


# -- FileSource ---------------------------------------------------------------------------------


def source_config(path: Path) -> FileSourceConfig:
    return FileSourceConfig.model_construct(
        type="file", name="app", path=str(path), start_at="beginning", poll_interval=0.01
    )


class CountingReads:
    def __init__(self, source: FileSource) -> None:
        self.calls = 0
        tailer = source._tailer
        self.read = tailer.read

        def counted() -> ReadResult:
            self.calls += 1
            return self.read()

        tailer.read = counted  # type: ignore[method-assign]


async def test_file_source_delivers_changes_only_and_reports_down_and_up(logs: Path) -> None:
    live = logs / "app.log"
    live.write_bytes(b"one\ntwo\n")
    source = FileSource("app", source_config(live), None, BlockingCalls())
    reads = CountingReads(source)
    sink = RecordingSink()
    async with running(source, sink):
        await eventually(lambda: sink.data() == b"one\ntwo\n", 5, "the first lines")
        delivered, calls = len(sink.batches), reads.calls
        await eventually(lambda: reads.calls >= calls + 5, 5, "idle rounds")
        assert len(sink.batches) == delivered  # nothing changed, nothing delivered
        shutil.rmtree(logs)
        await eventually(lambda: f"down: {logs}: directory not found" in sink.events, 5, "down")
        calls = reads.calls
        await eventually(lambda: reads.calls >= calls + 5, 5, "rounds while down")
        assert sum(e.startswith("down") for e in sink.events) <= 2  # not once a round
        logs.mkdir()
        live.write_bytes(b"three\n")
        await eventually(lambda: sink.events[-1] in ("up", "batch"), 5, "up")
        assert "up" in sink.events[-2:]
        await eventually(lambda: sink.data().endswith(b"three\n"), 5, "lines after the return")
        assert sink.errors == []


async def test_file_source_survives_a_failing_round(logs: Path) -> None:
    live = logs / "app.log"
    live.write_bytes(b"one\n")
    source = FileSource("app", source_config(live), None, BlockingCalls())
    tailer = source._tailer
    real = tailer.read
    failed: list[bool] = []

    def flaky() -> ReadResult:
        if not failed:
            failed.append(True)
            raise RuntimeError("boom")
        return real()

    tailer.read = flaky  # type: ignore[method-assign]
    sink = RecordingSink()
    async with running(source, sink):
        await eventually(lambda: sink.data() == b"one\n", 5, "lines after the failure")
        assert sink.errors == [f"{live}: RuntimeError: boom"]


async def test_file_source_reports_a_hung_read_as_down(logs: Path) -> None:
    live = logs / "app.log"
    live.write_bytes(b"one\n")
    source = FileSource("app", source_config(live), None, BlockingCalls())
    tailer = source._tailer
    real = tailer.read
    release = threading.Event()
    entered = threading.Event()

    def hung() -> ReadResult:
        entered.set()
        release.wait(10)  # a read stuck on a dead NFS mount
        return real()

    tailer.read = hung  # type: ignore[method-assign]
    sink = RecordingSink()
    first = asyncio.create_task(source.run(sink))
    await eventually(entered.is_set, 5, "the read to hang")
    first.cancel()  # the collector gives up on it; its thread stays stuck
    with contextlib.suppress(asyncio.CancelledError):
        await first
    async with running(source, sink):
        try:
            await eventually(
                lambda: any("still blocked" in e for e in sink.events), 5, "down while stuck"
            )
            release.set()
            await eventually(lambda: sink.data() == b"one\n", 5, "lines once unstuck")
            await eventually(lambda: "up" in sink.events, 5, "up")
        finally:
            release.set()  # before the source is cancelled and closed
