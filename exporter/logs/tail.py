"""Tailing log files by path or glob, each line exactly once through rotations and restarts.

Rotation model
--------------
A file is an inode, (st_dev, st_ino), checked by a fingerprint: a hash of its first bytes (up
to FP_MAX; it grows while a short file grows). Every file matching the live glob or the
rotated glob is tracked with an open descriptor, so an inode stays readable whatever happens
to its name. Each round lists the globs, compares what it finds with what is tracked, then
reads complete lines from every tracked file:

* rename (logrotate `create`): the live path shows a new inode while the old one turns up
  under a rotated name (or nowhere: then it is only reachable through our descriptor). The old
  inode keeps its offset and is drained to EOF, and lines a writer still appends to it are
  read too; the new file is read from its start.
* delete and recreate: the same, except the old inode has st_nlink == 0.
* copytruncate: the inode stays but shrinks below our offset, or its first bytes change. It
  is read again from 0. What was not read yet lives on in the copy: the tracked offset and
  fingerprint become an orphan, and the new file whose first bytes carry that fingerprint is
  read from the orphan's offset instead of from 0.
* a file that appears later is read from its start, unless its first bytes agree with a
  tracked file's: then it may be a copy being written (the truncation comes only after the
  copy), and reading it would repeat lines. Such a file is held unread until it turns out to
  be the copy (the original is truncated: read from the orphan's offset), or to differ (read
  from 0), or the original is forgotten (its content was read: skip it).
* a tracked inode that left the globs is drained, kept for `rotate_wait` seconds and at least
  GRACE_ROUNDS rounds, since a writer may still append to it, then closed and forgotten; a last
  line without its newline is delivered then, with a newline added.

Positions
---------
The position is {"files": [{"path", "dev", "ino", "offset", "fp_len", "fp", "dropping",
"hold"}, ...]}: one entry per tracked file, plus orphans waiting for their copy. `offset`
is just past the last complete line consumed, so a partial line is read again after a
restart; `dropping` says the offset is inside the dropped rest of a line cut at
MAX_LINE_BYTES. On a restart, entries are matched to the files in the globs by inode and
fingerprint; a file not in the position is new and read from its start (rotations while we
were down), one whose inode is known but whose first bytes changed was truncated, and the
entry becomes an orphan that finds its copy by fingerprint. Only the very first start, with
no position at all, positions the files that exist (live and rotated) by `start_at`: at their
end, or from their start as if the position were empty.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import glob
import hashlib
import os
import re
import stat
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from exporter.logs.api import MAX_LINE_BYTES, Batch, Position, Sink
from exporter.logs.models import FileSourceConfig
from exporter.threads import BlockingCalls, StillBlocked

FP_MAX = 1024  # bytes at the start of a file that identify it along with its inode
# A copy is compared with its original here too, just before their common end: a new file
# that merely starts with the same banner as another differs there.
WINDOW = 256
GRACE_ROUNDS = 2
COMPRESSED = (".gz", ".bz2", ".xz", ".zst", ".lz4", ".zip")
_MAGIC = re.compile(r"[*?[]")
_NEWLINE = b"\n"

Key = tuple[int, int]


def fingerprint(head: bytes) -> str:
    return hashlib.blake2b(head, digest_size=16).hexdigest()


def _compatible(a: bytes, b: bytes) -> bool:
    """Whether one of two non-empty heads starts with the other."""
    k = min(len(a), len(b))
    return k > 0 and a[:k] == b[:k]


def _signature(st: os.stat_result) -> tuple[int, int, int]:
    return st.st_size, st.st_mtime_ns, st.st_ctime_ns


def _one_line(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


@dataclass
class ReadResult:
    batch: Batch
    more: bool  # read_limit was hit: call read() again at once
    down: str | None  # why the source cannot be read now; None when it can
    errors: list[str]  # counted, non-fatal read errors of this round
    files: int  # files tracked now


@dataclass(eq=False)
class _File:
    path: str
    dev: int
    ino: int
    fd: int
    head: bytes
    size: int
    live: bool
    offset: int = 0
    dropping: bool = False
    hold: bool = False  # may be a copy of another tracked file: not read (see module doc)
    sig: tuple[int, int, int] | None = None  # stat when the head was last checked
    scanned: int = -1  # size read up to last time: a held partial line waits until it grows
    at_eof: bool = False  # read to its end this round
    gone: tuple[int, float] | None = None  # (round, monotonic time) it left the globs
    _fp: tuple[bytes, str] = (b"", fingerprint(b""))

    @property
    def key(self) -> Key:
        return self.dev, self.ino

    def fp(self) -> str:
        if self._fp[0] is not self.head:
            self._fp = (self.head, fingerprint(self.head))
        return self._fp[1]

    def entry(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "dev": self.dev,
            "ino": self.ino,
            "offset": 0 if self.hold else self.offset,
            "fp_len": len(self.head),
            "fp": self.fp(),
            "dropping": self.dropping and not self.hold,
            "hold": self.hold,
        }


@dataclass(eq=False)
class _Orphan:
    """Where a truncated file stood: its copy, once found, is read on from here."""

    path: str
    dev: int
    ino: int
    offset: int
    dropping: bool
    fp_len: int
    fp: str
    head: bytes | None  # the bytes themselves when known (not after a restart)
    since: tuple[int, float]

    def matches(self, head: bytes) -> bool:
        if len(head) < self.fp_len:
            return False
        if self.head is not None:
            return head[: self.fp_len] == self.head
        return fingerprint(head[: self.fp_len]) == self.fp

    def entry(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "dev": self.dev,
            "ino": self.ino,
            "offset": self.offset,
            "fp_len": self.fp_len,
            "fp": self.fp,
            "dropping": self.dropping,
            "hold": False,
        }


@dataclass
class _Entry:
    """One file of a restored position, not matched to a file yet."""

    raw: dict[str, Any]
    dev: int
    ino: int
    offset: int
    fp_len: int
    fp: str
    dropping: bool
    hold: bool

    @classmethod
    def parse(cls, raw: Any) -> _Entry | None:
        if not isinstance(raw, dict):
            return None
        ints = [raw.get(k) for k in ("dev", "ino", "offset", "fp_len")]
        if not all(type(v) is int and v >= 0 for v in ints):
            return None
        if not isinstance(raw.get("fp"), str) or not isinstance(raw.get("path"), str):
            return None
        dev, ino, offset, fp_len = (int(v) for v in ints if v is not None)
        if fp_len > FP_MAX:
            return None
        dropping, hold = raw.get("dropping") is True, raw.get("hold") is True
        return cls(raw, dev, ino, offset, fp_len, raw["fp"], dropping, hold)

    def matches(self, f: _File) -> bool:
        if len(f.head) < self.fp_len or f.size < self.offset:
            return False
        return fingerprint(f.head[: self.fp_len]) == self.fp


@dataclass(frozen=True)
class _Seen:
    path: str
    st: os.stat_result
    live: bool


@dataclass
class _Round:
    budget: int
    now: float
    parts: list[bytes | memoryview] = field(default_factory=list)
    bytes_read: int = 0
    truncated: int = 0
    rotations: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    down: str | None = None
    more: bool = False

    def set_down(self, reason: str) -> None:
        if self.down is None:  # the first reason is the one worth logging
            self.down = reason


class _Glob:
    """One glob, listed so that a missing or unreadable directory is seen, not swallowed."""

    def __init__(self, pattern: str, live: bool) -> None:
        self.pattern = pattern
        self.live = live
        self.directory, name = os.path.split(pattern)
        self.listed = not _MAGIC.search(self.directory)
        self.magic = bool(_MAGIC.search(name))
        self.regex = re.compile(fnmatch.translate(name))
        self.hidden = name.startswith(".")
        # The deepest directory without wildcards: listing it reports why nothing matches.
        root = self.directory
        while _MAGIC.search(root):
            root = os.path.dirname(root)
        self.root = root or "/"
        # Compressed rotated files are not text; an exact live path is taken as given.
        self.skip_compressed = self.magic or not live

    def wanted(self, name: str) -> bool:
        if name.startswith(".") and not self.hidden:
            return False  # as glob does
        return not (self.skip_compressed and name.endswith(COMPRESSED))

    def paths(self, listings: dict[str, list[str] | OSError]) -> list[str]:
        """Matching paths; raises OSError when the directory cannot be listed."""
        names = listings.get(self.root)
        if names is None:
            try:
                names = os.listdir(self.root)
            except OSError as exc:
                names = exc
            listings[self.root] = names
        if isinstance(names, OSError):
            raise names
        if self.listed:
            return [
                os.path.join(self.directory, name)
                for name in names
                if self.regex.match(name) and self.wanted(name)
            ]
        return [p for p in glob.glob(self.pattern) if self.wanted(os.path.basename(p))]


def _split(data: bytes, dropping: bool, out: list[bytes | memoryview]) -> tuple[int, bool, int]:
    """Append the complete lines of `data` to `out`, cutting lines at MAX_LINE_BYTES.

    Returns (bytes consumed, still dropping the rest of a cut line, lines cut). Bytes after
    the last newline are not consumed (a partial line) unless they belong to a line already
    known to be too long. Lines are never split into a list: each step looks for the last
    newline within the next MAX_LINE_BYTES + 1 bytes, so normal data costs a few calls per
    chunk however many lines it holds.
    """
    end = len(data)
    view = memoryview(data)
    q = 0
    cut = 0
    if dropping:
        k = data.find(_NEWLINE)
        if k < 0:
            return end, True, 0
        q = k + 1
    start = q
    while True:
        if end - q <= MAX_LINE_BYTES:
            j = data.rfind(_NEWLINE, q)
            if j >= 0:
                q = j + 1
            break
        j = data.rfind(_NEWLINE, q, q + MAX_LINE_BYTES + 1)
        if j >= 0:
            q = j + 1  # every line up to j is short enough; q starts a line again
            continue
        # The line at q is longer than the limit: its first MAX_LINE_BYTES are the line.
        if q > start:
            out.append(view[start:q])
        out.append(view[q : q + MAX_LINE_BYTES])
        out.append(_NEWLINE)
        cut += 1
        k = data.find(_NEWLINE, q + MAX_LINE_BYTES)
        if k < 0:
            return end, True, cut
        q = start = k + 1
    if q > start:
        out.append(view[start:q])
    return q, False, cut


def _line_start_before_eof(fd: int, size: int) -> tuple[int, bool]:
    """(offset, dropping) for start_at=end: past the last complete line, so that a line
    being written now is read whole once its newline comes."""
    if size == 0:
        return 0, False
    n = min(size, MAX_LINE_BYTES + 1)
    tail = os.pread(fd, n, size - n)
    j = tail.rfind(_NEWLINE)
    if j >= 0:
        return size - n + j + 1, False
    if size <= MAX_LINE_BYTES:
        return 0, False
    return size, True  # inside a line already too long: drop the rest of it


class FileTailer:
    """Synchronous, one round per read(); meant to run in a worker thread (see FileSource)."""

    def __init__(
        self,
        pattern: str,
        *,
        rotated: str | None = None,
        start_at: Literal["end", "beginning"] = "end",
        position: Position | None = None,
        max_files: int = 256,
        read_limit: int = 4 << 20,
        rotate_wait: float = 5.0,
    ) -> None:
        self.pattern = pattern
        rotated_globs = [rotated] if rotated else [pattern + ".*", pattern + "-*"]
        self._globs = [_Glob(pattern, True)] + [_Glob(g, False) for g in rotated_globs]
        self._start_at = start_at
        self._max_files = max_files
        self._read_limit = read_limit
        self._rotate_wait = rotate_wait
        self._files: dict[Key, _File] = {}
        self._orphans: list[_Orphan] = []
        self._initial = position is None
        self._restore: dict[Key, list[_Entry]] = {}
        self._restore_since: tuple[int, float] | None = None  # the first listing after start
        self._bad_entries = 0
        for raw in (position or {}).get("files") or []:
            entry = _Entry.parse(raw)
            if entry is None:
                self._bad_entries += 1
            else:
                self._restore.setdefault((entry.dev, entry.ino), []).append(entry)
        self._round_no = 0
        self._position: Position = {"files": [e.raw for es in self._restore.values() for e in es]}
        self._over_cap = False
        self._denied: set[str] = set()  # unreadable rotated files, reported once each
        self._lock = threading.Lock()
        self._closed = False

    # -- public -----------------------------------------------------------------------------

    def read(self) -> ReadResult:
        """One round: list, follow rotations, read up to read_limit bytes of complete lines."""
        with self._lock:
            if self._closed:
                return ReadResult(Batch(b"", 0, self._position), False, None, [], 0)
            try:
                return self._round()
            finally:
                if self._closed:  # close() came while this round ran
                    self._close_all()

    def position(self) -> Position:
        return self._position

    def close(self) -> None:
        self._closed = True
        # A round stuck in a read (dead NFS) holds the lock: it closes the files when it
        # returns. Closing under it could hand its descriptor numbers to someone else.
        if self._lock.acquire(blocking=False):
            try:
                self._close_all()
            finally:
                self._lock.release()

    # -- one round --------------------------------------------------------------------------

    def _round(self) -> ReadResult:
        self._round_no += 1
        r = _Round(budget=self._read_limit, now=time.monotonic())
        if self._bad_entries:
            r.errors.append(f"{self.pattern}: {self._bad_entries} unusable position entries")
            self._bad_entries = 0
        seen = self._scan(r)
        if seen is None:
            self._without_listing(r)
        else:
            if self._restore:
                self._restore_from(seen, r)
            self._match(seen, r)
        self._check_all(r)
        self._decide(r)
        self._read_all(r)
        self._expire(r)
        self._initial = False
        self._position = self._build_position()
        data = b"".join(r.parts)
        batch = Batch(
            data=data,
            lines=data.count(_NEWLINE),
            position=self._position,
            bytes_read=r.bytes_read,
            truncated=r.truncated,
            rotations=r.rotations,
        )
        return ReadResult(batch, r.more, r.down, r.errors, len(self._files))

    def _scan(self, r: _Round) -> dict[Key, _Seen] | None:
        """The regular files in the globs by inode, live names first; None if a directory
        could not be listed (then nothing may be taken as gone)."""
        found: dict[Key, _Seen] = {}
        listings: dict[str, list[str] | OSError] = {}
        for g in self._globs:
            try:
                paths = g.paths(listings)
            except (FileNotFoundError, NotADirectoryError):
                if not g.live:
                    continue  # no rotated copies there (yet)
                r.set_down(f"{g.root}: directory not found")
                return None
            except OSError as exc:
                r.set_down(f"{g.root}: {_one_line(exc)}")
                return None
            for path in sorted(paths):
                seen = self._stat(path, g, r)
                if seen is None:
                    continue
                key = (seen.st.st_dev, seen.st.st_ino)
                if key not in found or (seen.live and not found[key].live):
                    found[key] = seen
        return found

    def _stat(self, path: str, g: _Glob, r: _Round) -> _Seen | None:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return None  # removed since the listing
        except OSError as exc:
            if g.live:
                r.set_down(f"{path}: {_one_line(exc)}")
            return None
        if not stat.S_ISREG(st.st_mode):
            if g.live and not g.magic:
                r.set_down(f"{path}: not a regular file")
            return None
        return _Seen(path, st, g.live)

    def _without_listing(self, r: _Round) -> None:
        """The directory cannot be listed: keep reading what we hold. Only an inode that was
        deleted is known to be gone."""
        for f in self._files.values():
            try:
                deleted = os.fstat(f.fd).st_nlink == 0
            except OSError:
                deleted = True
            if deleted:
                self._left(f, r)

    def _restore_from(self, seen: dict[Key, _Seen], r: _Round) -> None:
        if self._restore_since is None:
            self._restore_since = (self._round_no, r.now)
        # A file being renamed while we list may be missing from one listing: an entry is
        # dropped (gone while we were down) only when not found for a grace.
        expired = self._due(self._restore_since, r)
        for key in list(self._restore):
            found = seen.get(key)
            if found is None:
                if expired:
                    del self._restore[key]
                continue
            try:
                f = self._open(found)
            except PermissionError:
                r.set_down(f"{found.path}: permission denied")
                continue  # kept until the file can be opened
            except OSError:
                if expired:
                    del self._restore[key]
                continue
            self._resume(f, found, self._restore.pop(key), r)

    def _resume(self, f: _File, found: _Seen, entries: list[_Entry], r: _Round) -> None:
        match = next((e for e in entries if e.matches(f)), None)
        for e in entries:
            if e is not match and (e.offset or e.dropping) and e.fp_len:
                self._orphans.append(self._orphan_of(e))
        if match is None:
            # Same inode, other first bytes: truncated (or the inode reused) while we were
            # down. Decided like any new file: it may even be a copy.
            f.hold = True
            if found.live:
                r.rotations.append("copytruncate")
        else:
            f.offset, f.dropping, f.hold = match.offset, match.dropping, match.hold
            was = str(match.raw["path"])
            if was != found.path and not found.live and fnmatch.fnmatchcase(was, self.pattern):
                r.rotations.append("rename")  # while we were down
        self._add(f)

    def _orphan_of(self, e: _Entry) -> _Orphan:
        path = str(e.raw["path"])
        since = (self._round_no, time.monotonic())
        return _Orphan(path, e.dev, e.ino, e.offset, e.dropping, e.fp_len, e.fp, None, since)

    def _match(self, seen: dict[Key, _Seen], r: _Round) -> None:
        for f in self._files.values():
            found = seen.get(f.key)
            if found is None:
                self._left(f, r)
                continue
            if f.live and not found.live:
                r.rotations.append("rename")
            f.gone = None
            f.path, f.live = found.path, found.live
        new = [s for key, s in seen.items() if key not in self._files and key not in self._restore]
        new.sort(key=lambda s: (not s.live, s.path))
        room = self._max_files - len(self._files)
        if len(new) > room and not self._over_cap:
            r.errors.append(
                f"{self.pattern}: {len(self._files) + len(new)} files, only {self._max_files}"
                " are tracked (max_files)"
            )
        self._over_cap = len(new) > room
        for s in new[: max(room, 0)]:
            self._track_new(s, r)

    def _track_new(self, s: _Seen, r: _Round) -> None:
        try:
            f = self._open(s)
        except FileNotFoundError:
            return
        except PermissionError:
            if s.live:
                r.set_down(f"{s.path}: permission denied")
            elif s.path not in self._denied:
                self._denied.add(s.path)
                r.errors.append(f"{s.path}: permission denied")
            return
        except OSError as exc:
            r.errors.append(f"{s.path}: {_one_line(exc)}")
            return
        if self._initial and self._start_at == "end":
            try:
                f.offset, f.dropping = _line_start_before_eof(f.fd, f.size)
            except OSError as exc:
                os.close(f.fd)
                r.errors.append(f"{s.path}: {_one_line(exc)}")
                return
        else:
            f.hold = True  # new: read from 0 unless it may be a copy (decided this round)
        self._add(f)

    def _open(self, s: _Seen) -> _File:
        # O_NONBLOCK: the name may have become a FIFO since the stat.
        fd = os.open(s.path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            st = os.fstat(fd)
            head = os.pread(fd, min(st.st_size, FP_MAX), 0) if stat.S_ISREG(st.st_mode) else None
        except BaseException:
            os.close(fd)
            raise
        if head is None or (st.st_dev, st.st_ino) != (s.st.st_dev, s.st.st_ino):
            # Replaced since the listing (a FIFO, or a rotation): seen anew next round.
            os.close(fd)
            raise FileNotFoundError(s.path)
        return _File(s.path, st.st_dev, st.st_ino, fd, head, st.st_size, s.live, sig=_signature(st))

    def _add(self, f: _File) -> None:
        self._files[f.key] = f
        self._denied.discard(f.path)

    def _left(self, f: _File, r: _Round) -> None:
        if f.gone is not None:
            return
        f.gone = (self._round_no, r.now)
        if f.live:
            try:
                deleted = os.fstat(f.fd).st_nlink == 0
            except OSError:
                deleted = True
            r.rotations.append("recreate" if deleted else "rename")
            f.live = False

    def _check_all(self, r: _Round) -> None:
        """Refresh sizes and heads; a head that changed means the file was truncated."""
        for f in self._files.values():
            try:
                # Not the listing's stat: a file opened this round was looked at after it.
                st = os.fstat(f.fd)
                f.size = st.st_size
                sig = _signature(st)
                if sig == f.sig:
                    continue
                head = os.pread(f.fd, FP_MAX, 0)
            except OSError as exc:
                r.errors.append(f"{f.path}: {_one_line(exc)}")
                f.sig = None
                continue
            f.sig = sig
            if f.hold or (f.size >= f.offset and head.startswith(f.head)):
                f.head = head
            else:
                self._truncated(f, head, r)

    def _truncated(self, f: _File, head: bytes, r: _Round) -> None:
        r.rotations.append("copytruncate")
        if (f.offset or f.dropping) and f.head:
            since = (self._round_no, r.now)
            self._orphans.append(
                _Orphan(
                    f.path, f.dev, f.ino, f.offset, f.dropping, len(f.head), f.fp(), f.head, since
                )
            )
        f.offset, f.dropping, f.head, f.scanned = 0, False, head, -1

    def _decide(self, r: _Round) -> None:
        holds = [f for f in self._files.values() if f.hold]
        if not holds:
            return
        for o in list(self._orphans):
            candidates = [u for u in holds if u.hold and o.matches(u.head)]
            if not candidates:
                continue
            self._orphans.remove(o)
            copy = max(candidates, key=lambda u: u.size)
            for u in candidates:
                u.hold = False
                u.offset = u.size  # another copy of lines we have read
            if o.offset <= copy.size:
                copy.offset, copy.dropping = o.offset, o.dropping
        for u in holds:
            if u.hold and u.head and not self._may_be_copy(u, r):
                u.hold = False
                u.offset = 0

    def _may_be_copy(self, u: _File, r: _Round) -> bool:
        try:
            size = os.fstat(u.fd).st_size
            for t in self._files.values():
                if t is u or t.hold or not _compatible(u.head, t.head):
                    continue
                # A copy is never longer than its original, and agrees with it at the end.
                if size <= os.fstat(t.fd).st_size and (
                    size <= FP_MAX or self._same_window(u, t, size)
                ):
                    return True
                # Unless the original was truncated since this round looked at it: then it
                # is still a copy (of what the original was), and the next round finds the
                # truncation and reads it from the right offset.
                if self._truncated_since(t):
                    return True
        except OSError as exc:
            r.errors.append(f"{u.path}: {_one_line(exc)}")
            return True  # decide when it can be read
        # Shorter than a truncated file's head and agreeing with it: a copy being written.
        if any(
            o.head is not None and len(u.head) < o.fp_len and _compatible(u.head, o.head)
            for o in self._orphans
        ):
            return True
        # A copy of a file in the restored position that the listing missed (being renamed):
        # once that file is found, it may turn out truncated, and this its copy.
        return any(
            e.fp_len and len(u.head) >= e.fp_len and fingerprint(u.head[: e.fp_len]) == e.fp
            for entries in self._restore.values()
            for e in entries
        )

    @staticmethod
    def _same_window(u: _File, t: _File, size: int) -> bool:
        p = max(FP_MAX, size - WINDOW)
        return os.pread(u.fd, size - p, p) == os.pread(t.fd, size - p, p)

    @staticmethod
    def _truncated_since(t: _File) -> bool:
        size = os.fstat(t.fd).st_size
        if size < t.size or size < t.offset:
            return True
        return os.pread(t.fd, len(t.head), 0) != t.head

    def _read_all(self, r: _Round) -> None:
        for f in self._files.values():
            f.at_eof = f.hold
        # Rotated and vanished inodes first, oldest first: their lines came before.
        order = sorted(
            self._files.values(), key=lambda f: (f.live, f.sig[1] if f.sig else 0, f.path)
        )
        for f in order:
            if f.hold:
                continue
            if r.budget <= 0:
                r.more = True
                return
            self._read_file(f, r)

    def _read_file(self, f: _File, r: _Round) -> None:
        if f.size <= f.scanned:
            f.at_eof = True  # nothing new since we last read to the end
            return
        offset, dropping = f.offset, f.dropping
        parts: list[bytes | memoryview] = []
        cut = 0
        first = b""
        try:
            while r.budget > 0:
                # A chunk must hold a whole maximal line, or a long line would never move.
                want = max(r.budget, MAX_LINE_BYTES + 1)
                data = os.pread(f.fd, want, offset)
                first = first or data
                r.budget -= len(data)
                used, dropping, n = _split(data, dropping, parts)
                cut += n
                if len(data) < want:
                    f.at_eof = True
                    f.scanned = offset + len(data)
                    offset += used
                    break
                offset += used
            else:
                r.more = True
            if offset != f.offset and not self._verify(f, first):
                # Truncated while we read: what we read may be new data at an old offset.
                # Discard it; the next round sees the truncation and finds the copy.
                f.sig, f.scanned, f.at_eof = None, -1, False
                return
        except OSError as exc:
            r.errors.append(f"{f.path}: {_one_line(exc)}")
            f.sig, f.at_eof = None, False
            return
        r.parts += parts
        r.truncated += cut
        r.bytes_read += offset - f.offset
        f.offset, f.dropping = offset, dropping

    def _verify(self, f: _File, first: bytes) -> bool:
        """Whether the file still starts as it did when we read `first` at f.offset.

        The first bytes known are the head checked this round, extended by what we read
        when that starts within them: a head still empty at the check proves nothing.
        """
        known = f.head
        if f.offset <= len(known) < FP_MAX:
            known += first[len(known) - f.offset : FP_MAX - f.offset]
        head = os.pread(f.fd, FP_MAX, 0)
        if not head.startswith(known):
            return False
        f.head = head  # may have grown with what we just read
        return True

    def _expire(self, r: _Round) -> None:
        for f in [f for f in self._files.values() if f.gone and self._due(f.gone, r)]:
            if f.at_eof:
                self._forget(f, r)
        self._orphans = [o for o in self._orphans if not self._due(o.since, r)]

    def _due(self, since: tuple[int, float], r: _Round) -> bool:
        rounds, at = since
        return self._round_no - rounds >= GRACE_ROUNDS and r.now - at >= self._rotate_wait

    def _forget(self, f: _File, r: _Round) -> None:
        try:
            if not f.hold and not f.dropping:
                rest = os.pread(f.fd, MAX_LINE_BYTES + 1, f.offset)
                if _NEWLINE in rest or len(rest) > MAX_LINE_BYTES:
                    return  # written to since we read it: drain first
                if rest:  # the writer never finished its last line: deliver it as is
                    r.parts += [rest, _NEWLINE]
                    r.bytes_read += len(rest)
                    f.offset += len(rest)
            size = os.fstat(f.fd).st_size
        except OSError as exc:
            r.errors.append(f"{f.path}: {_one_line(exc)}")
            size = f.size
        # Files held as possible copies of this one hold lines we have read from it.
        for u in self._files.values():
            if u.hold and u is not f and not f.hold and _compatible(u.head, f.head):
                u.hold = False
                u.offset = min(u.size, size)
        del self._files[f.key]
        with contextlib.suppress(OSError):
            os.close(f.fd)

    def _build_position(self) -> Position:
        files = [f.entry() for f in self._files.values()]
        files += [o.entry() for o in self._orphans]
        files += [e.raw for entries in self._restore.values() for e in entries]
        return {"files": files}

    def _close_all(self) -> None:
        files, self._files = self._files, {}
        for f in files.values():
            with contextlib.suppress(OSError):
                os.close(f.fd)


class FileSource:
    """The async Source for `type: file`: runs FileTailer rounds in a daemon thread."""

    def __init__(
        self,
        name: str,
        config: FileSourceConfig,
        position: Position | None,
        blocking: BlockingCalls,
    ) -> None:
        self.name = name
        self.config = config
        self._blocking = blocking
        self._delivered = position
        self._pending: list[ReadResult] = []
        self._tailer = FileTailer(
            config.path,
            rotated=config.rotated,
            start_at=config.start_at,
            position=position,
            max_files=config.max_files,
        )

    def _read(self) -> None:
        # Kept here, not only returned: when the awaiting run() was cancelled while this
        # round ran, the next run() still delivers it (the tailer has moved past it).
        self._pending.append(self._tailer.read())

    async def run(self, sink: Sink) -> None:
        key = f"logs.file:{self.name}"
        down: str | None = None
        while True:
            try:
                await self._blocking.run(key, self._read)
            except StillBlocked:
                # A read hangs (dead NFS): the source is down until that thread returns.
                reason = f"{self.config.path}: a previous read is still blocked"
                if down != reason:
                    down = reason
                    sink.down(down)
                await asyncio.sleep(self.config.poll_interval)
                continue
            except Exception as exc:  # a bug must not end the source: counted and retried
                sink.error(f"{self.config.path}: {type(exc).__name__}: {exc}")
                await asyncio.sleep(self.config.poll_interval)
                continue
            more = False
            while self._pending:
                result = self._pending.pop(0)
                down = self._deliver(sink, result, down)
                more = result.more
            if not more:
                await asyncio.sleep(self.config.poll_interval)

    def _deliver(self, sink: Sink, result: ReadResult, down: str | None) -> str | None:
        batch = result.batch
        delivered = False
        if (
            batch.lines
            or batch.bytes_read
            or batch.truncated
            or batch.rotations
            or batch.position != self._delivered
        ):
            sink.batch(batch)
            self._delivered = batch.position
            delivered = True
        for what in result.errors:
            sink.error(what)
        if result.down is not None:
            # A batch counts as a sign of life to the sink, so say again that we are down.
            if result.down != down or delivered:
                sink.down(result.down)
            return result.down
        if down is not None:
            sink.up()
        return None

    async def close(self) -> None:
        self._tailer.close()
