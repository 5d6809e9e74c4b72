"""FilesCollector on tmp_path trees: the AlphaEngine layout, its runbook faults, backups,
hung and denied paths. The tests run as root, so owners are real system users (daemon
stands in for alphaengine) and files are chowned to them."""

from __future__ import annotations

import asyncio
import errno
import grp
import os
import pwd
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, MutableMapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from exporter.collector import Context
from exporter.collectors.fileread import Root
from exporter.collectors.files import FilesCollector, FilesConfig
from exporter.render import render_text
from exporter.threads import BlockingCalls
from tests.support import eventually

DAEMON = pwd.getpwnam("daemon")
NOBODY = pwd.getpwnam("nobody")
FAKE_KEY = "AKIAFAKE0123456789SECRET"
SECRETS = f"binance:\n  api_key: {FAKE_KEY}\n  api_secret: {FAKE_KEY[::-1]}\n"
BASE = "/opt/alphaengine"

# The alphaengine preset's section (the runbook's paths, modes and owner).
PRESET = """
paths:
  - {path: /opt/alphaengine, checks: {type: directory, mode: "0750", owner: alphaengine,
     group: alphaengine}}
  - {path: /opt/alphaengine/config, checks: {type: directory, mode: "0700", owner: alphaengine}}
  - {path: /opt/alphaengine/config/secrets.yaml, checks: {type: file, mode: "0600",
     owner: alphaengine, yaml: true}}
  - {path: /opt/alphaengine/venv/bin/python, checks: {executable: true}}
  - {path: /opt/alphaengine/data, checks: {type: directory, owner: alphaengine}}
backups:
  - {name: alphaengine, glob: "/opt/alphaengine/backups/*.tar.gz", max_age: 26h}
"""
SECRETS_PATH = f"{BASE}/config/secrets.yaml"
PYTHON_PATH = f"{BASE}/venv/bin/python"


def chown_tree(top: Path, uid: int, gid: int) -> None:
    os.lchown(top, uid, gid)
    for directory, dirs, files in os.walk(top):
        for name in dirs + files:
            os.lchown(Path(directory, name), uid, gid)


def alphaengine_host(root: Path, now: float) -> Path:
    """The runbook's tree below `root`, owned by uid `daemon`, which the tree's own
    /etc/passwd names alphaengine; the venv's python is an absolute link into its /usr."""
    (root / "etc").mkdir(parents=True)
    (root / "etc/passwd").write_text(
        f"root:x:0:0:root:/root:/bin/bash\n"
        f"alphaengine:x:{DAEMON.pw_uid}:{DAEMON.pw_gid}::{BASE}:/usr/sbin/nologin\n"
    )
    (root / "etc/group").write_text(f"root:x:0:\nalphaengine:x:{DAEMON.pw_gid}:\n")
    interpreter = root / "usr/local/lib/alphaengine-python/bin/python3.11"
    interpreter.parent.mkdir(parents=True)
    interpreter.write_text("#!/bin/sh\n")
    interpreter.chmod(0o755)
    base = root / BASE.lstrip("/")
    for sub in ("config", "venv/bin", "data", "backups"):
        (base / sub).mkdir(parents=True)
    (base / "venv/bin/python3").symlink_to("/" + interpreter.relative_to(root).as_posix())
    (base / "venv/bin/python").symlink_to("python3")
    (base / "config/secrets.yaml").write_text(SECRETS)
    (base / "data/alphaengine_test.db").write_bytes(b"SQLite format 3\x00")
    for day in (1, 2, 3):
        backup = base / f"backups/alphaengine-2026-11-0{day}.tar.gz"
        backup.write_bytes(b"\x1f\x8b" * day)
        os.utime(backup, (now - (4 - day) * 3600, now - (4 - day) * 3600))
    chown_tree(base, DAEMON.pw_uid, DAEMON.pw_gid)
    base.chmod(0o750)
    (base / "config").chmod(0o700)
    (base / "config/secrets.yaml").chmod(0o600)
    return base


class Scrape:
    """One round's families, rendered and parsed back as Prometheus would read them."""

    def __init__(self, families: list[Any]) -> None:
        self.text = render_text(families).decode()
        self.samples = [
            (s.name, s.labels, s.value)
            for family in text_string_to_metric_families(self.text)
            for s in family.samples
        ]

    def get(self, name: str, **labels: str) -> float | None:
        found = [v for n, lab, v in self.samples if n == name and lab.items() >= labels.items()]
        assert len(found) <= 1, f"{name}{labels} matches {len(found)} samples"
        return found[0] if found else None

    def checks(self, path: str) -> dict[str, float]:
        return {
            lab["check"]: v
            for n, lab, v in self.samples
            if n == "botwatch_file_check_ok" and lab["path"] == path
        }

    def errors(self, label: str, value: str) -> dict[str, float]:
        return {
            lab["error"]: v
            for n, lab, v in self.samples
            if n.endswith("_errors_total") and lab.get(label) == value and v
        }

    def labels_of(self, name: str, **labels: str) -> dict[str, str]:
        (found,) = [
            lab for n, lab, _ in self.samples if n == name and lab.items() >= labels.items()
        ]
        return found


def make(tmp_path: Path, config: dict[str, Any] | str, root: Root | None = None) -> FilesCollector:
    section = yaml.safe_load(config) if isinstance(config, str) else config
    return FilesCollector(
        FilesConfig.model_validate(section),
        Context(name="files", state_dir=tmp_path, blocking=BlockingCalls()),
        root=root,
    )


async def scrape(collector: FilesCollector) -> Scrape:
    return Scrape(list(await collector.collect()))


def warnings(logs: list[MutableMapping[str, Any]]) -> list[tuple[str, str, str]]:
    return [
        (e["event"], e.get("path") or e.get("set", ""), e.get("check", ""))
        for e in logs
        if e["log_level"] == "warning"
    ]


@pytest.fixture
def host(tmp_path: Path) -> Path:
    root = tmp_path / "host"
    alphaengine_host(root, time.time())
    return root


def preset(root: Path, **overrides: Any) -> dict[str, Any]:
    return {**yaml.safe_load(PRESET), "rootfs": str(root), **overrides}


# --- the AlphaEngine layout ----------------------------------------------------------------


async def test_the_runbooks_layout_passes_every_check(
    tmp_path: Path, host: Path, captured_logs: list[MutableMapping[str, Any]]
) -> None:
    s = await scrape(make(tmp_path, preset(host)))
    assert s.checks(BASE) == {"type": 1, "mode": 1, "owner": 1, "group": 1}
    assert s.checks(f"{BASE}/config") == {"type": 1, "mode": 1, "owner": 1}
    assert s.checks(SECRETS_PATH) == {"type": 1, "mode": 1, "owner": 1, "yaml": 1}
    assert s.checks(PYTHON_PATH) == {"executable": 1}
    assert s.checks(f"{BASE}/data") == {"type": 1, "owner": 1}
    # Names come from the root's own /etc/passwd and /etc/group, not from this system's.
    assert s.labels_of("botwatch_file_info", path=SECRETS_PATH) == {
        "path": SECRETS_PATH,
        "type": "file",
        "mode": "0600",
        "owner": "alphaengine",
        "group": "alphaengine",
    }
    # ls -la shows the venv's python as the symlink it is; the check followed it, in the root.
    assert s.labels_of("botwatch_file_info", path=PYTHON_PATH)["type"] == "symlink"
    assert s.get("botwatch_file_exists", path=PYTHON_PATH) == 1
    assert s.get("botwatch_file_size_bytes", path=SECRETS_PATH) == len(SECRETS)
    mtime = (host / SECRETS_PATH.lstrip("/")).stat().st_mtime
    assert s.get("botwatch_file_modified_timestamp_seconds", path=SECRETS_PATH) == mtime
    assert s.get("botwatch_backup_files", set="alphaengine") == 3
    assert s.get("botwatch_backup_last_size_bytes", set="alphaengine") == 6
    assert s.get("botwatch_backup_fresh", set="alphaengine") == 1
    assert all(v == 0 for n, _, v in s.samples if n.endswith("_errors_total"))
    assert warnings(captured_logs) == []


async def test_runbook_faults_fail_their_checks(
    tmp_path: Path, host: Path, captured_logs: list[MutableMapping[str, Any]]
) -> None:
    base = host / BASE.lstrip("/")
    base.chmod(0o755)
    (base / "config").chmod(0o755)
    (base / "config/secrets.yaml").chmod(0o644)
    os.chown(base / "config/secrets.yaml", 0, 0)
    os.chown(base / "data", NOBODY.pw_uid, NOBODY.pw_gid)
    (base / "venv/bin/python").unlink()
    s = await scrape(make(tmp_path, preset(host)))
    assert s.checks(BASE) == {"type": 1, "mode": 0, "owner": 1, "group": 1}
    assert s.checks(f"{BASE}/config")["mode"] == 0
    assert s.checks(SECRETS_PATH) == {"type": 1, "mode": 0, "owner": 0, "yaml": 1}
    # No etc/passwd entry for nobody's uid in this root: the owner label is the number.
    assert s.labels_of("botwatch_file_info", path=f"{BASE}/data")["owner"] == str(NOBODY.pw_uid)
    assert s.checks(f"{BASE}/data") == {"type": 1, "owner": 0}
    assert s.get("botwatch_file_exists", path=PYTHON_PATH) == 0
    assert s.checks(PYTHON_PATH) == {"executable": 0}
    reasons = {(e["path"], e.get("check")): e["reason"] for e in captured_logs if "reason" in e}
    assert reasons == {
        (BASE, "mode"): "mode is 0755, expected 0750",
        (f"{BASE}/config", "mode"): "mode is 0755, expected 0700",
        (SECRETS_PATH, "mode"): "mode is 0644, expected 0600",
        (SECRETS_PATH, "owner"): "owner is root, expected alphaengine",
        (f"{BASE}/data", "owner"): f"owner is {NOBODY.pw_uid}, expected alphaengine",
        (PYTHON_PATH, None): "no such file or directory",
    }
    assert ("file missing", PYTHON_PATH, "") in warnings(captured_logs)


async def test_owner_names_through_nss_with_the_real_root(tmp_path: Path) -> None:
    # rootfs "/" (the default): names are the system's own, as `ls -l` shows them.
    secrets = tmp_path / "secrets.yaml"
    secrets.write_text(SECRETS)
    os.chown(secrets, DAEMON.pw_uid, DAEMON.pw_gid)
    nameless = tmp_path / "nameless"
    nameless.write_text("")
    os.chown(nameless, 54321, 54321)
    config = {
        "paths": [
            {"path": str(secrets), "checks": {"owner": "daemon", "group": DAEMON.pw_gid}},
            {"path": str(secrets), "name": "wrong-owner", "checks": {"owner": "nobody"}},
            {"path": str(nameless), "checks": {"owner": "54321"}},
        ]
    }
    s = await scrape(make(tmp_path, config))
    info = s.labels_of("botwatch_file_info", path=str(secrets))
    assert (info["owner"], info["group"]) == ("daemon", grp.getgrgid(DAEMON.pw_gid).gr_name)
    assert s.checks(str(secrets)) == {"owner": 1, "group": 1}
    assert s.checks("wrong-owner") == {"owner": 0}
    assert s.labels_of("botwatch_file_info", path=str(nameless))["owner"] == "54321"
    assert s.checks(str(nameless)) == {"owner": 1}


# --- YAML: content never shown -------------------------------------------------------------


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        (
            f"binance:\n  api_key: '{FAKE_KEY}\n",
            "line 3, column 1: found unexpected end of stream "
            "(while scanning a quoted scalar started on line 2)",
        ),
        (
            f"binance:\n\tapi_key: {FAKE_KEY}\n",
            "line 2, column 1: found a character that cannot start any token "
            "(while scanning for the next token)",
        ),
        (f"binance:\n  api_key: !{FAKE_KEY} x\n", "line 2, column 12: found an unknown tag"),
        ("", "empty document"),
    ],
    ids=["unclosed-quote", "tab", "tag", "empty"],
)
async def test_broken_secrets_never_show_their_content(
    tmp_path: Path,
    host: Path,
    captured_logs: list[MutableMapping[str, Any]],
    document: str,
    reason: str,
) -> None:
    (host / SECRETS_PATH.lstrip("/")).write_text(document)
    collector = make(tmp_path, preset(host))
    s = await scrape(collector)
    assert s.checks(SECRETS_PATH)["yaml"] == 0
    (event,) = (e for e in captured_logs if e.get("check") == "yaml")
    assert (event["event"], event["path"], event["reason"]) == (
        "file check failed",
        SECRETS_PATH,
        reason,
    )
    assert FAKE_KEY not in s.text
    assert FAKE_KEY[::-1] not in s.text
    assert FAKE_KEY not in repr(captured_logs)
    assert "AKIA" not in repr(captured_logs) + s.text

    # Fixed, then broken again: one line at each edge, none in between.
    (host / SECRETS_PATH.lstrip("/")).write_text(SECRETS)
    assert (await scrape(collector)).checks(SECRETS_PATH)["yaml"] == 1
    await collector.collect()
    events = [(e["event"], e["log_level"]) for e in captured_logs if e.get("check") == "yaml"]
    assert events == [("file check failed", "warning"), ("file check passed again", "info")]


async def test_yaml_check_bounds_what_it_reads(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_text("a: " + "x" * 2000 + "\n")
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)  # not a regular file: never opened (an open would wait for a writer)
    directory = tmp_path / "dir.yaml"
    directory.mkdir()
    config = {
        "max_yaml_bytes": 1024,
        "paths": [{"path": str(p), "checks": {"yaml": True}} for p in (big, fifo, directory)],
    }
    collector = make(tmp_path, config)
    async with asyncio.timeout(collector.config.stat_timeout):
        s = await scrape(collector)
    assert [s.checks(str(p)) for p in (big, fifo, directory)] == [{"yaml": 0}] * 3
    assert s.labels_of("botwatch_file_info", path=str(fifo))["type"] == "other"
    assert all(v == 0 for n, _, v in s.samples if n.endswith("_errors_total"))


# --- the venv's python ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("break_it", "exists", "kind", "executable"),
    [
        (lambda b: None, 1, "symlink", 1),
        (lambda b: (b / "python").unlink(), 0, None, 0),
        # Dangling in the root even though /bin/sh exists outside it: resolved in the root.
        (lambda b: _relink(b / "python", "/bin/sh"), 1, "symlink", 0),
        (lambda b: _relink(b / "python", "python3.99"), 1, "symlink", 0),
        (lambda b: _interpreter(b).chmod(0o644), 1, "symlink", 0),
        (lambda b: _relink(b / "python", "."), 1, "symlink", 0),
        (lambda b: _replace(b / "python", 0o744), 1, "file", 1),
        (lambda b: _replace(b / "python", 0o655), 1, "file", 0),
    ],
    ids=[
        "ok",
        "missing",
        "absolute-outside-root",
        "dangling",
        "not-executable",
        "directory",
        "plain-file",
        "executable-only-by-others",
    ],
)
async def test_venv_python_must_lead_to_an_executable(
    tmp_path: Path,
    host: Path,
    break_it: Callable[[Path], object],
    exists: int,
    kind: str | None,
    executable: int,
) -> None:
    break_it(host / "opt/alphaengine/venv/bin")
    s = await scrape(make(tmp_path, preset(host)))
    assert s.get("botwatch_file_exists", path=PYTHON_PATH) == exists
    if kind:
        assert s.labels_of("botwatch_file_info", path=PYTHON_PATH)["type"] == kind
    assert s.checks(PYTHON_PATH) == {"executable": executable}


def _interpreter(bin_dir: Path) -> Path:
    host = bin_dir.parents[3]
    return host / "usr/local/lib/alphaengine-python/bin/python3.11"


def _relink(link: Path, target: str) -> None:
    link.unlink()
    link.symlink_to(target)


def _replace(link: Path, mode: int) -> None:
    link.unlink()
    link.write_text("#!/bin/sh\n")
    link.chmod(mode)


async def test_symlink_loops_are_errors(tmp_path: Path) -> None:
    loop = tmp_path / "loop"
    loop.symlink_to("loop")
    config = {
        "paths": [
            {"path": str(loop), "checks": {"executable": True}},
            {"path": str(loop), "name": "followed", "follow_symlinks": True},
        ]
    }
    collector = make(tmp_path, config)
    s = await scrape(collector)
    # The link itself is there; what it leads to cannot be known.
    assert s.get("botwatch_file_exists", path=str(loop)) == 1
    assert s.checks(str(loop)) == {}
    assert s.errors("path", str(loop)) == {"symlink_loop": 1}
    assert s.get("botwatch_file_exists", path="followed") is None
    assert s.errors("path", "followed") == {"symlink_loop": 1}


async def test_follow_symlinks_describes_the_target(tmp_path: Path, host: Path) -> None:
    config = {
        "rootfs": str(host),
        "paths": [
            {"path": PYTHON_PATH, "follow_symlinks": True, "checks": {"mode": "0755"}},
            {"path": PYTHON_PATH, "name": "link", "checks": {"mode": "0777"}},
        ],
    }
    s = await scrape(make(tmp_path, config))
    assert s.labels_of("botwatch_file_info", path=PYTHON_PATH)["type"] == "file"
    assert s.checks(PYTHON_PATH) == {"mode": 1}
    assert s.labels_of("botwatch_file_info", path="link")["type"] == "symlink"
    assert s.checks("link") == {"mode": 1}
    _relink(host / PYTHON_PATH.lstrip("/"), "gone")
    s = await scrape(make(tmp_path, config))
    assert s.get("botwatch_file_exists", path=PYTHON_PATH) == 0
    assert s.get("botwatch_file_exists", path="link") == 1


# --- paths that do not exist, or cannot be looked at ---------------------------------------


async def test_a_path_below_a_regular_file_does_not_exist(tmp_path: Path) -> None:
    # ENOTDIR: the kernel's answer is that no such path can exist, like ENOENT.
    (tmp_path / "config").write_text("a file where a directory should be")
    target = str(tmp_path / "config/secrets.yaml")
    s = await scrape(make(tmp_path, {"paths": [{"path": target, "checks": {"yaml": True}}]}))
    assert s.get("botwatch_file_exists", path=target) == 0
    assert s.checks(target) == {"yaml": 0}
    assert s.errors("path", target) == {}


class FaultyRoot(Root):
    """A Root whose system calls fail or hang for one path. Needed because the tests run
    as root, for whom permissions never deny, and a dead NFS mount cannot be made here."""

    def __init__(self, root: str, at: str, fault: Callable[[], object], call: str = "lstat"):
        super().__init__(root)
        self.at = at
        self.fault = fault
        self.call = call
        self.calls: Counter[str] = Counter()

    def lstat(self, real: str) -> os.stat_result:
        self.calls[real] += 1
        if self.call == "lstat" and real == self.at:
            self.fault()
        return super().lstat(real)

    def read(self, real: str, limit: int) -> bytes | None:
        if self.call == "read" and real == self.at:
            self.fault()
        return super().read(real, limit)


def deny() -> None:
    raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))


async def test_permission_denied_is_an_error_not_a_missing_file(
    tmp_path: Path, host: Path, captured_logs: list[MutableMapping[str, Any]]
) -> None:
    root = FaultyRoot(str(host), f"{host}{BASE}/config", deny)
    collector = make(tmp_path, preset(host), root)
    s = await scrape(collector)
    # Below config/ nothing can be seen: no exists, no info, no verdicts, a counted error.
    for path in (f"{BASE}/config", SECRETS_PATH):
        assert s.get("botwatch_file_exists", path=path) is None
        assert s.get("botwatch_file_info", path=path) is None
        assert s.checks(path) == {}
        assert s.errors("path", path) == {"permission_denied": 1}
    # The rest of the tree is checked as usual.
    assert s.checks(BASE) == {"type": 1, "mode": 1, "owner": 1, "group": 1}
    assert s.checks(PYTHON_PATH) == {"executable": 1}
    s = await scrape(collector)
    assert s.errors("path", SECRETS_PATH) == {"permission_denied": 2}
    unreadable = [e for e in captured_logs if e["event"] == "file unreadable"]
    assert [(e["path"], e["reason"]) for e in unreadable] == [
        (f"{BASE}/config", "permission_denied (EACCES: Permission denied)"),
        (SECRETS_PATH, "permission_denied (EACCES: Permission denied)"),
    ]


async def test_a_secrets_file_that_cannot_be_read_has_no_yaml_verdict(
    tmp_path: Path, host: Path
) -> None:
    # What a botwatch without CAP_DAC_READ_SEARCH meets: stat works, open is denied.
    root = FaultyRoot(str(host), f"{host}{SECRETS_PATH}", deny, call="read")
    s = await scrape(make(tmp_path, preset(host), root))
    assert s.get("botwatch_file_exists", path=SECRETS_PATH) == 1
    assert s.checks(SECRETS_PATH) == {"type": 1, "mode": 1, "owner": 1}
    assert s.errors("path", SECRETS_PATH) == {"permission_denied": 1}


@pytest.fixture
async def release() -> AsyncIterator[threading.Event]:
    # Async so that it is torn down before the event loop: the stuck thread must end.
    event = threading.Event()
    try:
        yield event
    finally:
        event.set()


async def test_a_hung_path_is_a_timeout_and_the_others_go_on(
    tmp_path: Path,
    host: Path,
    release: threading.Event,
    captured_logs: list[MutableMapping[str, Any]],
) -> None:
    stuck = f"{host}{BASE}/data"
    root = FaultyRoot(str(host), stuck, release.wait)
    collector = make(
        tmp_path, preset(host, interval="1s", timeout="1s", stat_timeout="200ms"), root
    )

    async with asyncio.timeout(collector.config.timeout):
        s = await scrape(collector)
    assert s.get("botwatch_file_exists", path=f"{BASE}/data") is None
    assert s.errors("path", f"{BASE}/data") == {"timeout": 1}
    assert s.checks(SECRETS_PATH) == {"type": 1, "mode": 1, "owner": 1, "yaml": 1}
    assert s.get("botwatch_backup_files", set="alphaengine") == 3

    # Still stuck: the next round neither waits for it nor looks at it again.
    started = time.monotonic()
    s = await scrape(collector)
    assert time.monotonic() - started < collector.config.stat_timeout
    assert root.calls[stuck] == 1
    assert s.errors("path", f"{BASE}/data") == {"timeout": 2}

    release.set()

    async def seen_again() -> bool:
        return (await scrape(collector)).get("botwatch_file_exists", path=f"{BASE}/data") == 1

    await eventually(seen_again, 5, "the released path to be looked at again")
    events = [
        (e["event"], e["log_level"]) for e in captured_logs if e.get("path") == f"{BASE}/data"
    ]
    assert events == [("file unreadable", "warning"), ("file readable again", "info")]
    (warning,) = (e for e in captured_logs if e["event"] == "file unreadable")
    assert warning["reason"] == "timeout (no answer within 200ms)"


# --- age -----------------------------------------------------------------------------------


async def test_a_heartbeat_file_must_be_recent(tmp_path: Path) -> None:
    beat = tmp_path / "heartbeat"
    beat.write_text("")
    now = time.time()
    os.utime(beat, (now - 600, now - 600))
    config = {"paths": [{"path": str(beat), "checks": {"max_age": "5m"}}]}
    collector = make(tmp_path, config)
    assert (await scrape(collector)).checks(str(beat)) == {"max_age": 0}
    beat.touch()
    assert (await scrape(collector)).checks(str(beat)) == {"max_age": 1}


# --- backups -------------------------------------------------------------------------------


async def test_backups_age_and_a_newer_one_arrives(
    tmp_path: Path, host: Path, captured_logs: list[MutableMapping[str, Any]]
) -> None:
    backups = host / BASE.lstrip("/") / "backups"
    now = time.time()
    for i, old in enumerate(sorted(backups.iterdir())):
        os.utime(old, (now - 3 * 86400 + i, now - 3 * 86400 + i))
    # Neither a directory, nor a dangling link, nor a hidden partial file is a backup.
    (backups / "extracted.tar.gz").mkdir()
    (backups / "gone.tar.gz").symlink_to("nowhere.tar.gz")
    (backups / ".partial.tar.gz").write_bytes(b"x" * 100)
    collector = make(tmp_path, preset(host))
    s = await scrape(collector)
    newest = backups / "alphaengine-2026-11-03.tar.gz"
    assert s.get("botwatch_backup_files", set="alphaengine") == 3
    assert s.get("botwatch_backup_last_timestamp_seconds", set="alphaengine") == (
        newest.stat().st_mtime
    )
    assert s.get("botwatch_backup_fresh", set="alphaengine") == 0

    fresh = backups / "alphaengine-2026-11-04.tar.gz"
    fresh.write_bytes(b"\x1f\x8b" * 50)
    s = await scrape(collector)
    assert s.get("botwatch_backup_files", set="alphaengine") == 4
    assert s.get("botwatch_backup_last_timestamp_seconds", set="alphaengine") == (
        fresh.stat().st_mtime
    )
    assert s.get("botwatch_backup_last_size_bytes", set="alphaengine") == 100
    assert s.get("botwatch_backup_fresh", set="alphaengine") == 1
    events = [(e["event"], e.get("reason")) for e in captured_logs if e.get("set")]
    assert events == [
        ("backup set stale", "modified 2d23h ago, more than 1d2h"),
        ("backup set fresh again", None),
    ]


async def test_no_backups_at_all(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    config = {
        "backups": [
            {"name": "empty", "glob": f"{tmp_path}/empty/*.tar.gz", "max_age": "1d"},
            {"name": "no-dir", "glob": f"{tmp_path}/missing/*.tar.gz"},
        ]
    }
    s = await scrape(make(tmp_path, config))
    assert s.get("botwatch_backup_files", set="empty") == 0
    assert s.get("botwatch_backup_last_timestamp_seconds", set="empty") is None
    assert s.get("botwatch_backup_last_size_bytes", set="empty") is None
    assert s.get("botwatch_backup_fresh", set="empty") == 0
    assert s.get("botwatch_backup_files", set="no-dir") == 0
    assert s.get("botwatch_backup_fresh", set="no-dir") is None
    # Without paths there are no file families at all.
    assert not any(n.startswith("botwatch_file_") for n, _, _ in s.samples)


async def test_a_backup_directory_that_cannot_be_listed(tmp_path: Path, host: Path) -> None:
    root = FaultyRoot(str(host), f"{host}{BASE}/backups", deny)
    s = await scrape(make(tmp_path, preset(host), root))
    assert s.get("botwatch_backup_files", set="alphaengine") is None
    assert s.get("botwatch_backup_fresh", set="alphaengine") is None
    assert s.errors("set", "alphaengine") == {"permission_denied": 1}
