"""The files collector's I/O: paths looked up below a root, YAML read, backup globs expanded.

Everything here blocks and runs in a BlockingCalls thread, one per path or backup set, so a
path on a dead mount holds its own thread and nothing else. Paths are resolved one
component at a time below the root, so that with `rootfs: /host/root` an absolute symlink
(a venv's `python3 -> /usr/bin/python3`) leads to the host's file, not the container's.
"""

from __future__ import annotations

import errno
import fnmatch
import os
import re
import stat
import threading
from collections.abc import Sequence
from typing import Any, Protocol

from exporter.collectors.filecheck import (
    BackupFacts,
    BackupFile,
    ContentCheck,
    Failed,
    Invalid,
    Lookup,
    Meta,
    PathFacts,
    check_yaml,
    classify,
    file_type,
    newest,
    parse_id_names,
)
from exporter.collectors.fileconfig import FilePath

# Linux gives up after this many symlinks in one lookup (ELOOP); so does Root.
MAX_SYMLINKS = 40
# /etc/passwd and /etc/group larger than this are not read (names become numeric).
MAX_ACCOUNTS_BYTES = 16 << 20
_WILDCARD = re.compile(r"[*?[]")
_GONE = (errno.ENOENT, errno.ENOTDIR)


def _parts(path: str) -> list[str]:
    return [p for p in path.split("/") if p and p != "."]


class Root:
    """Looks paths up as if `root` were `/`, as openat2's RESOLVE_IN_ROOT does: absolute
    symlink targets restart at the root and `..` never climbs above it. With root `/` the
    answers are the kernel's own."""

    def __init__(self, root: str) -> None:
        self.root = root.rstrip("/")

    # The system calls, in one place for tests to replace (a hung mount, a denied lookup).
    def lstat(self, real: str) -> os.stat_result:
        return os.lstat(real)

    def readlink(self, real: str) -> str:
        return os.readlink(real)

    def listdir(self, real: str) -> list[str]:
        return os.listdir(real)

    def read(self, real: str, limit: int) -> bytes | None:
        """At most limit + 1 bytes of a regular file (None for anything else)."""
        # O_NONBLOCK: a FIFO put in a file's place must not block the open for ever.
        fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return None
            chunks: list[bytes] = []
            size = 0
            while size <= limit:
                chunk = os.read(fd, min(1 << 16, limit + 1 - size))
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
            return b"".join(chunks)
        finally:
            os.close(fd)

    def real(self, parts: Sequence[str]) -> str:
        return self.root + "/" + "/".join(parts)

    def lookup(self, path: str, follow: bool) -> tuple[str, os.stat_result]:
        """The real path of `path` and its lstat. `follow`: through a final symlink too
        (symlinks in the middle are always followed). Raises OSError as the kernel would:
        ENOENT, ENOTDIR, ELOOP, EACCES."""
        # A trailing slash (or /.) names a directory: the kernel follows a final symlink
        # then, and a file there is ENOTDIR.
        directory = path.endswith(("/", "/."))
        follow = follow or directory
        todo = _parts(path)[::-1]
        done: list[str] = []
        links = 0
        current, st = self.real(done), None
        while todo:
            part = todo.pop()
            if part == "..":
                if done:
                    done.pop()
                current, st = self.real(done), None
                continue
            current = self.real([*done, part])
            st = self.lstat(current)
            if stat.S_ISLNK(st.st_mode) and (todo or follow):
                links += 1
                if links > MAX_SYMLINKS:
                    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
                target = self.readlink(current)
                if target.startswith("/"):
                    done = []
                todo.extend(_parts(target)[::-1])
                current, st = self.real(done), None
                continue
            if todo and not stat.S_ISDIR(st.st_mode):
                raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), path)
            done.append(part)
        if st is None:
            st = self.lstat(current)
        if directory and not stat.S_ISDIR(st.st_mode):
            raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), path)
        return current, st

    def expand(self, pattern: str) -> list[str]:
        """The paths (below the root, sorted) that `pattern` may name, as glob.glob finds
        them: wildcards match within one component, and a leading dot only explicitly.
        A path without wildcards is returned as it is, whether it exists or not."""
        candidates = [""]
        for part in _parts(pattern):
            if not _WILDCARD.search(part):
                candidates = [f"{c}/{part}" for c in candidates]
                continue
            matched: list[str] = []
            for directory in candidates:
                for name in self._names(directory):
                    hidden = name.startswith(".") and not part.startswith(".")
                    if not hidden and fnmatch.fnmatchcase(name, part):
                        matched.append(f"{directory}/{name}")
            candidates = matched
        return candidates

    def _names(self, directory: str) -> list[str]:
        try:
            real, st = self.lookup(directory or "/", follow=True)
            return sorted(self.listdir(real)) if stat.S_ISDIR(st.st_mode) else []
        except OSError as exc:
            if exc.errno in _GONE:
                return []
            raise


class Accounts(Protocol):
    def user(self, uid: int) -> str: ...

    def group(self, gid: int) -> str: ...


class SystemAccounts:
    """Names through NSS, as `ls -l` gets them (files, LDAP, systemd's dynamic users)."""

    def user(self, uid: int) -> str:
        import pwd

        try:
            return pwd.getpwuid(uid).pw_name
        except KeyError:
            return str(uid)

    def group(self, gid: int) -> str:
        import grp

        try:
            return grp.getgrgid(gid).gr_name
        except KeyError:
            return str(gid)


class RootAccounts:
    """Names from the root's own /etc/passwd and /etc/group: botwatch's NSS would name the
    users of its container. Read once, by the first thread that needs them."""

    def __init__(self, root: Root) -> None:
        self._root = root
        self._lock = threading.Lock()
        self._tables: dict[str, dict[int, str]] = {}

    def _table(self, name: str) -> dict[int, str]:
        with self._lock:
            if name not in self._tables:
                self._tables[name] = self._load(name)
            return self._tables[name]

    def _load(self, name: str) -> dict[int, str]:
        try:
            real, _ = self._root.lookup(f"/etc/{name}", follow=True)
            data = self._root.read(real, MAX_ACCOUNTS_BYTES)
        except OSError:
            return {}
        if data is None or len(data) > MAX_ACCOUNTS_BYTES:
            return {}
        return parse_id_names(data.decode("utf-8", "replace"))

    def user(self, uid: int) -> str:
        return self._table("passwd").get(uid, str(uid))

    def group(self, gid: int) -> str:
        return self._table("group").get(gid, str(gid))


def accounts_for(root: Root) -> Accounts:
    return SystemAccounts() if root.root == "" else RootAccounts(root)


def to_meta(st: os.stat_result, accounts: Accounts) -> Meta:
    return Meta(
        type=file_type(st.st_mode),
        mode=stat.S_IMODE(st.st_mode),
        uid=st.st_uid,
        gid=st.st_gid,
        owner=accounts.user(st.st_uid),
        group=accounts.group(st.st_gid),
        size=st.st_size,
        mtime=st.st_mtime,
    )


def _look(root: Root, path: str, follow: bool, accounts: Accounts) -> tuple[Lookup, str]:
    try:
        real, st = root.lookup(path, follow)
    except OSError as exc:
        return classify(exc), ""
    return to_meta(st, accounts), real


def _read_yaml(root: Root, target: Lookup, real: str, limit: int, loader: Any) -> ContentCheck:
    if not isinstance(target, Meta):
        return target
    if target.type != "file":
        return Invalid(f"not a regular file ({target.type})")
    try:
        # A file stat says is too large is not read at all.
        data = root.read(real, limit) if target.size <= limit else b""
    except OSError as exc:
        return classify(exc)
    if data is None:
        return Invalid("not a regular file")
    if target.size > limit or len(data) > limit:
        return Invalid(f"larger than {limit} bytes (max_yaml_bytes)")
    return check_yaml(data, loader)


def inspect_path(
    root: Root, spec: FilePath, accounts: Accounts, max_yaml_bytes: int, loader: Any
) -> PathFacts:
    """Everything one round needs to know about a path (its checks decide what)."""
    own, real = _look(root, spec.path, spec.follow_symlinks, accounts)
    checks = spec.checks
    if not (checks.executable or checks.yaml):
        return PathFacts(own)
    target = own
    if isinstance(own, Meta) and own.type == "symlink":
        target, real = _look(root, spec.path, True, accounts)
    content = _read_yaml(root, target, real, max_yaml_bytes, loader) if checks.yaml else None
    return PathFacts(own, target, content)


def inspect_backups(root: Root, pattern: str) -> BackupFacts | Failed:
    """The regular files (through symlinks) that match `pattern`, and the newest of them."""
    try:
        files: list[BackupFile] = []
        for path in root.expand(pattern):
            try:
                _, st = root.lookup(path, follow=True)
            except OSError as exc:
                if exc.errno in _GONE:  # rotated away since it was listed, or dangling
                    continue
                raise
            if stat.S_ISREG(st.st_mode):
                files.append(BackupFile(path, st.st_size, st.st_mtime))
    except OSError as exc:
        outcome = classify(exc)
        if isinstance(outcome, Failed):
            return outcome
        return BackupFacts(0, None)
    return BackupFacts(len(files), newest(files))


def yaml_loader() -> Any:
    """libyaml's safe loader where PyYAML was built with it (the wheels are): a 1 MiB file
    parses in 0.2 s instead of 1.5 s, and holds the GIL that much less."""
    import yaml

    return getattr(yaml, "CSafeLoader", yaml.SafeLoader)
