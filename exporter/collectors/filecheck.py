"""The files collector's pure parts: what a look at a path found, and the checks' verdicts.

Nothing here touches the file system, so every verdict is tested on made-up facts. The YAML
check's wording lives here too: it must never carry a byte of the file (secrets.yaml holds
API keys), so its messages are built only from this module's own text and line numbers.
"""

from __future__ import annotations

import errno
import re
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from exporter.collectors.fileconfig import FileChecks

ERRORS = ("permission_denied", "symlink_loop", "io_error", "timeout", "other")
_ERRNO_ERRORS = {
    errno.EACCES: "permission_denied",
    errno.EPERM: "permission_denied",
    errno.ELOOP: "symlink_loop",
    errno.EIO: "io_error",
    errno.ESTALE: "io_error",
    errno.ENXIO: "io_error",
    errno.EREMOTEIO: "io_error",
}
# "Does not exist" is an answer about the path, not a failure to look at it.
_ABSENT_ERRNOS = {errno.ENOENT: "no such file or directory", errno.ENOTDIR: "not a directory"}


@dataclass(frozen=True)
class Meta:
    """What stat said about a path, owner and group already named."""

    type: str  # file, directory, symlink, other
    mode: int  # permission bits with setuid/setgid/sticky
    uid: int
    gid: int
    owner: str  # the user's name, or the uid as text when it has none
    group: str
    size: int
    mtime: float


@dataclass(frozen=True)
class Missing:
    reason: str


@dataclass(frozen=True)
class Failed:
    """Looking failed: the answer is unknown. `detail` is for the log (an errno's name and
    text, or a timeout), never anything read from the file."""

    error: str  # one of ERRORS
    detail: str


Lookup = Meta | Missing | Failed


@dataclass(frozen=True)
class Valid:
    pass


@dataclass(frozen=True)
class Invalid:
    reason: str


ContentCheck = Valid | Invalid | Missing | Failed


@dataclass(frozen=True)
class PathFacts:
    """One round's look at a path: itself, what it leads to, and its content if asked."""

    own: Lookup  # the path (or, with follow_symlinks, what it points to)
    target: Lookup | None = None  # through symlinks; only when a check needs it
    yaml: ContentCheck | None = None  # only with the yaml check


@dataclass(frozen=True)
class Verdict:
    check: str
    ok: bool | None  # None: unknown, the path could not be looked at
    reason: str = ""  # why it failed; empty when ok


def file_type(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "directory"
    if stat.S_ISLNK(mode):
        return "symlink"
    return "other"


def format_mode(mode: int) -> str:
    """The permission bits as `ls`-free octal text with four digits: 0750, 2775, 0600."""
    return f"{stat.S_IMODE(mode):04o}"


def classify(exc: OSError) -> Missing | Failed:
    if exc.errno in _ABSENT_ERRNOS:
        return Missing(_ABSENT_ERRNOS[exc.errno])
    error = _ERRNO_ERRORS.get(exc.errno or 0, "other")
    name = errno.errorcode.get(exc.errno or 0, "unknown error")
    return Failed(error, f"{name}: {exc.strerror}" if exc.strerror else name)


def format_age(seconds: float) -> str:
    """A compact age for log lines: 45s, 7m, 2h5m, 3d4h."""
    whole = max(0, int(seconds))
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h{minutes}m" if minutes else f"{hours}h"
    if minutes:
        return f"{minutes}m{secs}s" if secs else f"{minutes}m"
    return f"{secs}s"


def _account_matches(expected: str, name: str, number: int) -> bool:
    return expected in (name, str(number))


def _age_verdict(max_age: float, mtime: float, now: float) -> tuple[bool, str]:
    age = now - mtime
    if age <= max_age:
        return True, ""
    return False, f"modified {format_age(age)} ago, more than {format_age(max_age)}"


def _metadata_verdict(check: str, checks: FileChecks, meta: Meta, now: float) -> Verdict:
    if check == "type":
        ok = meta.type == checks.type
        return Verdict(check, ok, "" if ok else f"type is {meta.type}, expected {checks.type}")
    if check == "mode":
        actual = format_mode(meta.mode)
        ok = actual == checks.mode
        return Verdict(check, ok, "" if ok else f"mode is {actual}, expected {checks.mode}")
    if check == "owner":
        assert checks.owner is not None
        ok = _account_matches(checks.owner, meta.owner, meta.uid)
        return Verdict(check, ok, "" if ok else f"owner is {meta.owner}, expected {checks.owner}")
    if check == "group":
        assert checks.group is not None
        ok = _account_matches(checks.group, meta.group, meta.gid)
        return Verdict(check, ok, "" if ok else f"group is {meta.group}, expected {checks.group}")
    assert checks.max_age is not None
    ok, reason = _age_verdict(checks.max_age, meta.mtime, now)
    return Verdict(check, ok, reason)


def _executable_verdict(target: Lookup | None) -> Verdict:
    if isinstance(target, Failed):
        return Verdict("executable", None, target.error)
    if not isinstance(target, Meta):
        reason = target.reason if isinstance(target, Missing) else "not looked at"
        return Verdict("executable", False, f"missing ({reason}, through symlinks)")
    if target.type != "file":
        return Verdict("executable", False, f"not a regular file ({target.type})")
    if not target.mode & stat.S_IXUSR:
        return Verdict(
            "executable", False, f"not executable by its owner (mode {format_mode(target.mode)})"
        )
    return Verdict("executable", True)


def _yaml_verdict(content: ContentCheck | None) -> Verdict:
    if isinstance(content, Valid):
        return Verdict("yaml", True)
    if isinstance(content, Invalid):
        return Verdict("yaml", False, content.reason)
    if isinstance(content, Failed):
        return Verdict("yaml", None, content.error)
    reason = content.reason if isinstance(content, Missing) else "not read"
    return Verdict("yaml", False, f"missing ({reason}, through symlinks)")


def evaluate(checks: FileChecks, facts: PathFacts, now: float) -> list[Verdict]:
    """Every configured check's verdict. A missing path fails them all; a path that could
    not be looked at leaves them unknown."""
    verdicts = []
    for check in checks.configured():
        own = facts.own
        if isinstance(own, Failed):
            verdicts.append(Verdict(check, None, own.error))
        elif isinstance(own, Missing):
            verdicts.append(Verdict(check, False, f"missing ({own.reason})"))
        elif check == "executable":
            verdicts.append(_executable_verdict(facts.target))
        elif check == "yaml":
            verdicts.append(_yaml_verdict(facts.yaml))
        else:
            verdicts.append(_metadata_verdict(check, checks, own, now))
    return verdicts


def failures(facts: PathFacts) -> list[Failed]:
    """Each failed attempt to look, once: the path, following it, reading it."""
    found: list[Failed] = []
    for part in (facts.own, facts.target, facts.yaml):
        if isinstance(part, Failed) and part not in found:
            found.append(part)
    return found


# --- backups -------------------------------------------------------------------------------


@dataclass(frozen=True)
class BackupFile:
    path: str
    size: int
    mtime: float


@dataclass(frozen=True)
class BackupFacts:
    files: int  # regular files matching the glob
    newest: BackupFile | None


def newest(files: Iterable[BackupFile]) -> BackupFile | None:
    """The most recently modified; on a tie, the last name (backups are usually dated)."""
    return max(files, key=lambda f: (f.mtime, f.path), default=None)


def backup_fresh(facts: BackupFacts, max_age: float, now: float) -> tuple[bool, str]:
    if facts.newest is None:
        return False, "no file matches"
    return _age_verdict(max_age, facts.newest.mtime, now)


# --- owner and group names below a root ---------------------------------------------------


def parse_id_names(text: str) -> dict[int, str]:
    """/etc/passwd or /etc/group: name in the first field, the numeric id in the third.
    The first entry of an id wins, as getpwuid(3) returns it."""
    names: dict[int, str] = {}
    for line in text.splitlines():
        fields = line.split(":")
        if len(fields) < 3 or not fields[0] or line.startswith("#"):
            continue
        if fields[2].isdigit():
            names.setdefault(int(fields[2]), fields[0])
    return names


# --- the YAML check ------------------------------------------------------------------------

# Known problems, matched in PyYAML's and libyaml's messages, each reported in this table's
# own words: a message is never echoed, since several quote the offending text.
_PROBLEMS = (
    (r"could not find expected ':'", "could not find expected ':'"),
    (r"cannot start any token", "found a character that cannot start any token"),
    (r"found unexpected end of stream", "found unexpected end of stream"),
    (r"unknown escape character", "found an unknown escape character"),
    (r"expected ',' or '\}'", "expected ',' or '}'"),
    (r"expected ',' or '\]'", "expected ',' or ']'"),
    (r"expected <block end>|did not find expected key", "did not find expected key"),
    (r"undefined alias", "found an undefined alias"),
    (r"duplicate anchor|second occurrence", "found a duplicate anchor"),
    (r"could not determine a constructor", "found an unknown tag"),
    (r"undefined tag handle", "found an undefined tag handle"),
    (r"found another document", "found more than one document"),
    (r"unhashable key|unacceptable key", "found an unhashable key"),
    (r"mapping values are not allowed", "mapping values are not allowed here"),
    (r"block sequence entries are not allowed", "block sequence entries are not allowed here"),
    (r"tab character", "found a tab character where indentation is expected"),
    (r"node content", "did not find expected node content"),
    (r"expected '-' indicator", "did not find expected '-' indicator"),
    (r"maximum nesting depth", "nested too deeply"),
    (r"a comment or a line break", "expected a comment or a line break"),
)
_PROBLEM_PATTERNS = tuple((re.compile(p), text) for p, text in _PROBLEMS)
_BY_CLASS = {
    "ScannerError": "syntax error",
    "ParserError": "syntax error",
    "ComposerError": "invalid document structure",
    "ConstructorError": "unsupported value",
}
# PyYAML's and libyaml's contexts are fixed phrases ("while scanning a simple key"); only
# those of exactly that shape are kept (one embeds an anchor's name and never matches).
_CONTEXT = re.compile(r"^while (scanning|parsing|constructing) (an? )?[a-z][a-z -]*$")


def _phrase(problem: str | None, kind: str) -> str:
    for pattern, text in _PROBLEM_PATTERNS:
        if problem and pattern.search(problem):
            return text
    return _BY_CLASS.get(kind, "invalid YAML")


def describe_yaml_error(exc: BaseException) -> str:
    """Where the YAML is broken and what kind of problem it is, in words that cannot
    contain any of the file's content."""
    import yaml

    if isinstance(exc, yaml.reader.ReaderError):
        problem = "characters are not allowed" in str(exc.reason)
        text = "found a control character" if problem else f"not valid {_encoding(exc)}"
        return f"offset {exc.position}: {text}"
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        text = _phrase(exc.problem, type(exc).__name__)
        context = exc.context or ""
        if _CONTEXT.match(context):
            started = exc.context_mark
            if started is not None and mark is not None and started.line != mark.line:
                context += f" started on line {started.line + 1}"
            text += f" ({context})"
        return where + text
    if isinstance(exc, yaml.YAMLError):
        return "invalid YAML"
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    # The constructors raise plain errors for impossible values (a date 2001-13-45): their
    # text may quote the value, so only the kind is given.
    return f"invalid value ({type(exc).__name__})"


def _encoding(exc: Any) -> str:
    encoding = str(getattr(exc, "encoding", "") or "")
    return "UTF-16" if encoding.lower().startswith("utf-16") else "UTF-8"


def check_yaml(data: bytes, loader: Any) -> Invalid | Valid:
    """The runbook's `yaml.safe_load(open(...))`, with a loader of the safe family. An empty
    document fails too: a secrets file truncated to nothing parses, and the bot then fails."""
    import yaml

    try:
        # `loader` is yaml.CSafeLoader or yaml.SafeLoader: no tag builds an object.
        document = yaml.load(data, Loader=loader)
    except Exception as exc:  # any failure to parse is the check's verdict
        return Invalid(describe_yaml_error(exc))
    if document is None:
        return Invalid("empty document")
    return Valid()
