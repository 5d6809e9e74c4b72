"""The files collector's pure parts: verdicts, modes, the YAML check's wording, families."""

from __future__ import annotations

import errno
import stat
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from exporter.collectors.filecheck import (
    ERRORS,
    BackupFacts,
    BackupFile,
    Failed,
    Invalid,
    Meta,
    Missing,
    PathFacts,
    Valid,
    Verdict,
    backup_fresh,
    check_yaml,
    classify,
    evaluate,
    failures,
    file_type,
    format_age,
    format_mode,
    newest,
    parse_id_names,
)
from exporter.collectors.fileconfig import FileChecks
from exporter.collectors.filemetrics import BackupRound, PathRound, backup_families, file_families
from exporter.collectors.files import changes, path_problems
from exporter.render import render_text

FAKE_KEY = "AKIAFAKE0123456789SECRET"
LOADERS = [yaml.SafeLoader, *([yaml.CSafeLoader] if yaml.__with_libyaml__ else [])]
NOW = 1_800_000_000.0


def meta(**changes: Any) -> Meta:
    base: dict[str, Any] = {
        "type": "file",
        "mode": 0o600,
        "uid": 1,
        "gid": 1,
        "owner": "alphaengine",
        "group": "alphaengine",
        "size": 10,
        "mtime": NOW - 60,
    }
    return Meta(**{**base, **changes})


def verdicts(checks: dict[str, Any], facts: PathFacts) -> dict[str, tuple[bool | None, str]]:
    return {v.check: (v.ok, v.reason) for v in evaluate(FileChecks(**checks), facts, NOW)}


# --- modes, types, errors ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "text"),
    [
        (stat.S_IFDIR | 0o750, "0750"),
        (stat.S_IFREG | 0o600, "0600"),
        (stat.S_IFDIR | 0o2775, "2775"),
        (stat.S_IFDIR | 0o1777, "1777"),
        (stat.S_IFREG | 0o4755, "4755"),
        (stat.S_IFREG, "0000"),
    ],
)
def test_mode_is_four_octal_digits_with_special_bits(mode: int, text: str) -> None:
    assert format_mode(mode) == text


def test_file_types() -> None:
    assert file_type(stat.S_IFREG) == "file"
    assert file_type(stat.S_IFDIR) == "directory"
    assert file_type(stat.S_IFLNK) == "symlink"
    assert [file_type(m) for m in (stat.S_IFIFO, stat.S_IFSOCK, stat.S_IFCHR)] == ["other"] * 3


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (errno.ENOENT, Missing("no such file or directory")),
        (errno.ENOTDIR, Missing("not a directory")),
        (errno.EACCES, Failed("permission_denied", "EACCES: Permission denied")),
        (errno.EPERM, Failed("permission_denied", "EPERM: Operation not permitted")),
        (errno.ELOOP, Failed("symlink_loop", "ELOOP: Too many levels of symbolic links")),
        (errno.EIO, Failed("io_error", "EIO: Input/output error")),
        (errno.ESTALE, Failed("io_error", "ESTALE: Stale file handle")),
        (errno.ENAMETOOLONG, Failed("other", "ENAMETOOLONG: File name too long")),
    ],
)
def test_errors_are_absent_or_failed(code: int, expected: Missing | Failed) -> None:
    import os

    assert classify(OSError(code, os.strerror(code), "/x")) == expected


def test_ages_read_compactly() -> None:
    assert [format_age(s) for s in (0, 45, 60, 420, 3600, 7500, 86400, 93784, -5)] == [
        "0s",
        "45s",
        "1m",
        "7m",
        "1h",
        "2h5m",
        "1d",
        "1d2h",
        "0s",
    ]


# --- verdicts ------------------------------------------------------------------------------


def test_every_metadata_check_passes_on_the_expected_values() -> None:
    checks = {"type": "file", "mode": "0600", "owner": "alphaengine", "group": "1", "max_age": 120}
    assert verdicts(checks, PathFacts(meta())) == {
        "type": (True, ""),
        "mode": (True, ""),
        "owner": (True, ""),
        "group": (True, ""),
        "max_age": (True, ""),
    }


def test_metadata_checks_say_what_they_found() -> None:
    found = meta(type="directory", mode=0o755, owner="root", uid=0, group="root", gid=0)
    checks = {"type": "file", "mode": "0750", "owner": "alphaengine", "group": "alphaengine"}
    assert verdicts({**checks, "max_age": 30}, PathFacts(found)) == {
        "type": (False, "type is directory, expected file"),
        "mode": (False, "mode is 0755, expected 0750"),
        "owner": (False, "owner is root, expected alphaengine"),
        "group": (False, "group is root, expected alphaengine"),
        "max_age": (False, "modified 1m ago, more than 30s"),
    }


def test_mode_match_is_exact_special_bits_included() -> None:
    assert verdicts({"mode": "0750"}, PathFacts(meta(mode=0o2750)))["mode"] == (
        False,
        "mode is 2750, expected 0750",
    )
    assert verdicts({"mode": "750"}, PathFacts(meta(mode=0o750)))["mode"] == (True, "")


def test_an_owner_without_a_name_matches_its_number() -> None:
    nameless = meta(owner="1500", uid=1500)
    assert verdicts({"owner": "1500"}, PathFacts(nameless))["owner"] == (True, "")
    assert verdicts({"owner": "alphaengine"}, PathFacts(nameless))["owner"][0] is False
    # A named owner matches its uid too, for configs written with numbers.
    assert verdicts({"owner": 1}, PathFacts(meta()))["owner"] == (True, "")


def test_a_missing_path_fails_every_check() -> None:
    checks = {"mode": "0600", "owner": "x", "executable": True, "yaml": True, "max_age": 60}
    result = verdicts(checks, PathFacts(Missing("no such file or directory")))
    assert set(result) == {"mode", "owner", "executable", "yaml", "max_age"}
    assert set(result.values()) == {(False, "missing (no such file or directory)")}


def test_a_path_that_cannot_be_looked_at_leaves_every_check_unknown() -> None:
    facts = PathFacts(Failed("permission_denied", "EACCES: Permission denied"))
    result = verdicts({"mode": "0600", "yaml": True}, facts)
    assert result == {"mode": (None, "permission_denied"), "yaml": (None, "permission_denied")}


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (meta(mode=0o755), (True, "")),
        (meta(mode=0o700), (True, "")),
        (meta(mode=0o644), (False, "not executable by its owner (mode 0644)")),
        (meta(mode=0o011), (False, "not executable by its owner (mode 0011)")),
        (meta(type="directory", mode=0o755), (False, "not a regular file (directory)")),
        (
            Missing("no such file or directory"),
            (False, "missing (no such file or directory, through symlinks)"),
        ),
        (Failed("symlink_loop", "ELOOP"), (None, "symlink_loop")),
    ],
    ids=["0755", "0700", "0644", "group-and-other-only", "directory", "dangling", "loop"],
)
def test_executable_means_a_regular_file_its_owner_may_run(
    target: Meta | Missing | Failed, expected: tuple[bool | None, str]
) -> None:
    link = meta(type="symlink", mode=0o777)
    assert verdicts({"executable": True}, PathFacts(link, target=target)) == {
        "executable": expected
    }


def test_yaml_verdicts() -> None:
    own = meta()
    assert verdicts({"yaml": True}, PathFacts(own, own, Valid())) == {"yaml": (True, "")}
    bad = PathFacts(own, own, Invalid("line 2, column 1: found unexpected end of stream"))
    assert verdicts({"yaml": True}, bad) == {
        "yaml": (False, "line 2, column 1: found unexpected end of stream")
    }
    denied = PathFacts(own, own, Failed("permission_denied", "EACCES"))
    assert verdicts({"yaml": True}, denied) == {"yaml": (None, "permission_denied")}


def test_failures_are_counted_once_each() -> None:
    denied = Failed("permission_denied", "EACCES: Permission denied")
    assert failures(PathFacts(denied)) == [denied]
    assert failures(PathFacts(meta(), denied, denied)) == [denied]
    assert failures(PathFacts(meta(), meta(), Valid())) == []
    assert failures(PathFacts(Missing("not a directory"))) == []


def test_unchecked_paths_have_no_verdicts() -> None:
    assert evaluate(FileChecks(), PathFacts(meta()), NOW) == []
    assert evaluate(FileChecks(executable=False, yaml=False), PathFacts(meta()), NOW) == []


# --- backups -------------------------------------------------------------------------------


def test_newest_backup_by_mtime_then_name() -> None:
    old = BackupFile("/b/2026-11-01.tar.gz", 5, NOW - 86400)
    new = BackupFile("/b/2026-11-02.tar.gz", 7, NOW - 3600)
    twin = BackupFile("/b/2026-11-03.tar.gz", 9, NOW - 3600)
    assert newest([old, new]) == new
    assert newest([twin, new, old]) == twin
    assert newest([]) is None


def test_backup_freshness() -> None:
    facts = BackupFacts(2, BackupFile("/b/x.tar.gz", 1, NOW - 7200))
    assert backup_fresh(facts, 3 * 3600, NOW) == (True, "")
    assert backup_fresh(facts, 3600, NOW) == (False, "modified 2h ago, more than 1h")
    assert backup_fresh(BackupFacts(0, None), 3600, NOW) == (False, "no file matches")


# --- names below a root --------------------------------------------------------------------


def test_passwd_and_group_files_name_ids() -> None:
    passwd = (
        "root:x:0:0:root:/root:/bin/bash\n"
        "# a comment:x:5:\n"
        "alphaengine:x:1001:1001::/opt/alphaengine:/usr/sbin/nologin\n"
        "shadowed:x:1001:1001::/:/bin/false\n"
        "broken line\n"
        "+nis\n"
        "odd:x:notanumber:1::/:/bin/false\n"
    )
    assert parse_id_names(passwd) == {0: "root", 1001: "alphaengine"}
    assert parse_id_names("daemon:x:1:\nalphaengine:x:1001:bot,web\n") == {
        1: "daemon",
        1001: "alphaengine",
    }


# --- the YAML check ------------------------------------------------------------------------

# (name, document with the fake key next to the fault, the exact wording)
BROKEN_YAML = [
    (
        "key-without-colon",
        f"api_key: {FAKE_KEY}\nsecret {FAKE_KEY}\nother: 1\n",
        "line 3, column 1: could not find expected ':' "
        "(while scanning a simple key started on line 2)",
    ),
    (
        "tab-indent",
        f"binance:\n\tapi_key: {FAKE_KEY}\n",
        "line 2, column 1: found a character that cannot start any token "
        "(while scanning for the next token)",
    ),
    (
        "unclosed-quote",
        f"api_key: '{FAKE_KEY}\n",
        "line 2, column 1: found unexpected end of stream "
        "(while scanning a quoted scalar started on line 1)",
    ),
    (
        "flow-mapping",
        f"binance: {{api_key: {FAKE_KEY}\n",
        "line 2, column 1: expected ',' or '}' (while parsing a flow mapping started on line 1)",
    ),
    (
        "bad-indent",
        f"binance:\n  api_key: 1\n secret: {FAKE_KEY}\n",
        "line 3, column 2: did not find expected key "
        "(while parsing a block mapping started on line 1)",
    ),
    (
        "alias-named-like-the-key",
        f"api_key: *{FAKE_KEY}\n",
        "line 1, column 10: found an undefined alias",
    ),
    (
        "duplicate-anchor",
        f"a: &{FAKE_KEY} 1\nb: &{FAKE_KEY} 2\n",
        "line 2, column 4: found a duplicate anchor",
    ),
    (
        "tag-named-like-the-key",
        f"api_key: !{FAKE_KEY} x\n",
        "line 1, column 10: found an unknown tag",
    ),
    (
        "python-tag",
        f"api_key: !!python/object:{FAKE_KEY} x\n",
        "line 1, column 10: found an unknown tag",
    ),
    (
        "two-documents",
        f"a: 1\n---\napi_key: {FAKE_KEY}\n",
        "line 2, column 1: found more than one document",
    ),
    (
        "at-sign",
        f"api_key: @{FAKE_KEY}\n",
        "line 1, column 10: found a character that cannot start any token "
        "(while scanning for the next token)",
    ),
    (
        "mapping-in-value",
        f"api_key: secret: {FAKE_KEY}\n",
        "line 1, column 16: mapping values are not allowed here",
    ),
    ("impossible-date", "expires: 2026-13-45\n", "invalid value (ValueError)"),
    ("control-character", f"api_key: {FAKE_KEY}\x01\n", "offset 33: found a control character"),
    ("empty", "", "empty document"),
    ("only-a-comment", f"# api_key: {FAKE_KEY}\n", "empty document"),
    ("null", "~\n", "empty document"),
]


@pytest.mark.parametrize("loader", LOADERS, ids=lambda loader: loader.__name__)
@pytest.mark.parametrize(
    ("name", "document", "expected"), BROKEN_YAML, ids=[case[0] for case in BROKEN_YAML]
)
def test_broken_yaml_is_described_without_its_content(
    name: str, document: str, expected: str, loader: Any
) -> None:
    verdict = check_yaml(document.encode(), loader)
    assert verdict == Invalid(expected)
    assert FAKE_KEY not in verdict.reason
    assert "AKIA" not in verdict.reason


@pytest.mark.parametrize("loader", LOADERS, ids=lambda loader: loader.__name__)
def test_yaml_faults_without_a_line(loader: Any) -> None:
    assert check_yaml(b"api_key: AKIA\xff\xfeFAKE\n", loader) == Invalid(
        "offset 13: not valid UTF-8"
    )
    # libyaml stops at its nesting limit; PyYAML runs out of recursion: both fail the check.
    assert "nested too deeply" in check_yaml(b"[" * 5000, loader).reason  # type: ignore[union-attr]


@pytest.mark.parametrize("loader", LOADERS, ids=lambda loader: loader.__name__)
def test_valid_yaml(loader: Any) -> None:
    assert check_yaml(f"binance:\n  api_key: {FAKE_KEY}\n".encode(), loader) == Valid()
    assert check_yaml("a: 1\n".encode("utf-16"), loader) == Valid()
    # safe_load keeps the last of duplicate keys, and so does the check (as the runbook's).
    assert check_yaml(b"a: 1\na: 2\n", loader) == Valid()


# --- families and log bookkeeping ----------------------------------------------------------


def samples(families: list[Any]) -> dict[tuple[str, tuple[str, ...]], float]:
    """Each sample of the rendered exposition, keyed by name and sorted label values."""
    text = render_text(families).decode()
    return {
        (s.name, tuple(v for _, v in sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_families_for_present_missing_and_unreadable_paths() -> None:
    present = PathRound(
        "/opt/alphaengine", PathFacts(meta(type="directory", mode=0o750)), [Verdict("mode", True)]
    )
    missing = PathRound(
        "/gone", PathFacts(Missing("no such file or directory")), [Verdict("mode", False, "x")]
    )
    denied = PathRound(
        "/denied", PathFacts(Failed("permission_denied", "EACCES")), [Verdict("mode", None)]
    )
    errors = {"/opt/alphaengine": {}, "/gone": {}, "/denied": {"permission_denied": 3}}
    found = samples(file_families([present, missing, denied], errors))
    assert found[("botwatch_file_exists", ("/opt/alphaengine",))] == 1
    assert found[("botwatch_file_exists", ("/gone",))] == 0
    assert found[("botwatch_file_size_bytes", ("/opt/alphaengine",))] == 10
    assert found[("botwatch_file_modified_timestamp_seconds", ("/opt/alphaengine",))] == NOW - 60
    info = ("alphaengine", "0750", "alphaengine", "/opt/alphaengine", "directory")
    assert found[("botwatch_file_info", info)] == 1
    assert found[("botwatch_file_check_ok", ("mode", "/opt/alphaengine"))] == 1
    assert found[("botwatch_file_check_ok", ("mode", "/gone"))] == 0
    assert found[("botwatch_file_errors_total", ("permission_denied", "/denied"))] == 3
    assert found[("botwatch_file_errors_total", ("timeout", "/gone"))] == 0
    # Unknown is absent: no exists, no info, no verdict for the path that was denied.
    assert {key for key in found if "/denied" in key[1]} == {
        ("botwatch_file_errors_total", (error, "/denied")) for error in ERRORS
    }


def test_backup_families() -> None:
    rounds = [
        BackupRound("db", BackupFacts(3, BackupFile("/b/3.tar.gz", 42, NOW - 5)), True),
        BackupRound("empty", BackupFacts(0, None), False),
        BackupRound("plain", BackupFacts(0, None), None),
        BackupRound("hung", Failed("timeout", "no answer within 5s"), None),
    ]
    found = samples(backup_families(rounds, {"hung": {"timeout": 1}}))
    assert found[("botwatch_backup_files", ("db",))] == 3
    assert found[("botwatch_backup_last_timestamp_seconds", ("db",))] == NOW - 5
    assert found[("botwatch_backup_last_size_bytes", ("db",))] == 42
    assert found[("botwatch_backup_fresh", ("db",))] == 1
    assert found[("botwatch_backup_files", ("empty",))] == 0
    assert found[("botwatch_backup_fresh", ("empty",))] == 0
    assert ("botwatch_backup_last_timestamp_seconds", ("empty",)) not in found
    assert found[("botwatch_backup_files", ("plain",))] == 0
    assert ("botwatch_backup_fresh", ("plain",)) not in found
    assert {key[0] for key in found if key[1][-1] == "hung"} == {"botwatch_backup_errors_total"}
    assert found[("botwatch_backup_errors_total", ("timeout", "hung"))] == 1


def test_problems_are_logged_at_their_start_and_end_only() -> None:
    found = meta(mode=0o755)
    problems = path_problems(
        PathFacts(found), evaluate(FileChecks(mode="0750"), PathFacts(found), NOW)
    )
    assert problems == {"mode": "mode is 0755, expected 0750"}
    assert changes({}, problems) == (problems, [])
    # Still failing, even for another reason: nothing new to say.
    assert changes(problems, {"mode": "mode is 0777, expected 0750"}) == ({}, [])
    assert changes(problems, {}) == ({}, ["mode"])
    missing = PathFacts(Missing("no such file or directory"))
    checks = FileChecks(mode="0750", yaml=True)
    assert path_problems(missing, evaluate(checks, missing, NOW)) == {
        "exists": "no such file or directory"
    }
