"""deploy/systemd: the unit passes systemd's own checks, is hardened, and its command line,
config and web config start a working daemon."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from tests.integration.conftest import Daemon
from tests.support import REPO, run_cli, wait_for

pytestmark = pytest.mark.integration

SYSTEMD = REPO / "deploy" / "systemd"
UNIT = SYSTEMD / "botwatch.service"
DROPINS = SYSTEMD / "botwatch.service.d"
# Where a real system keeps the units every service depends on (sysinit.target, ...).
SYSTEM_UNITS = Path("/lib/systemd/system")
StartDaemon = Callable[..., Daemon]


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """systemd's unit syntax: sections, repeated keys kept in order, `\\` continuations."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith(("#", ";"))):
            continue
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        line, pending = (pending + line).strip(), ""
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"a setting before any section: {line}"
        key, sep, value = line.partition("=")
        assert sep, f"not KEY=VALUE: {line}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def service() -> dict[str, list[str]]:
    return parse_unit(UNIT.read_text())["Service"]


def one(settings: dict[str, list[str]], key: str) -> str:
    values = settings.get(key)
    assert values is not None, f"{key}= is not set"
    assert len(values) == 1, f"{key}= is set {len(values)} times: {values}"
    return values[0]


def exec_start() -> list[str]:
    return shlex.split(one(service(), "ExecStart"))


def systemd_root(tmp_path: Path, unit_text: str | None = None) -> Path:
    """A file-system root for `systemd-analyze --root`: this system's units, the unit and its
    drop-ins, and an executable at each path the unit runs (botwatch is not installed here)."""
    root = tmp_path / "root"
    shutil.copytree(SYSTEM_UNITS, root / "usr/lib/systemd/system", symlinks=True)
    (root / "usr/bin").mkdir()
    (root / "bin").symlink_to("usr/bin")  # merged /usr, as on Debian 12
    units = root / "etc/systemd/system"
    shutil.copytree(DROPINS, units / "botwatch.service.d")
    (units / "botwatch.service").write_text(unit_text or UNIT.read_text())
    for key in ("ExecStart", "ExecReload"):
        program = Path(shlex.split(one(service(), key))[0])
        target = root / program.relative_to("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("#!/bin/sh\n")
        target.chmod(0o755)
    return root


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    if shutil.which("systemd-analyze") is None:
        pytest.fail("systemd-analyze is missing (Debian package systemd)")
    return subprocess.run(
        ["systemd-analyze", *args], capture_output=True, text=True, timeout=60, check=False
    )


def verify(root: Path) -> subprocess.CompletedProcess[str]:
    return analyze("verify", f"--root={root}", "--man=no", "--generators=no", "botwatch.service")


def test_systemd_analyze_verify_passes_without_a_word(tmp_path: Path) -> None:
    result = verify(systemd_root(tmp_path))
    # Unknown keys and unparsable values are only warnings: any output at all fails.
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_the_verify_harness_catches_typos_and_missing_programs(tmp_path: Path) -> None:
    broken = UNIT.read_text().replace("ProtectSystem=strict", "ProtectSytem=strict")
    result = verify(systemd_root(tmp_path / "typo", broken))
    assert "Unknown key 'ProtectSytem'" in result.stderr

    root = systemd_root(tmp_path / "missing")
    (root / exec_start()[0].lstrip("/")).unlink()
    result = verify(root)
    assert result.returncode != 0
    assert "is not executable" in result.stderr


def test_systemd_rates_the_exposure_low(tmp_path: Path) -> None:
    # 0 (locked down) .. 10 (unprotected); --threshold is in tenths: fail above 2.0.
    result = analyze(
        "security", "--offline=true", "--threshold=20", f"--root={systemd_root(tmp_path)}",
        "botwatch.service",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr
    assert "Overall exposure level for botwatch.service" in result.stdout


def test_hardening_directives() -> None:
    s = service()
    assert one(s, "User") == "botwatch"
    assert one(s, "Group") == "botwatch"
    assert "DynamicUser" not in s  # its own user, so files and groups can name it
    groups = " ".join(s["SupplementaryGroups"]).split()
    assert {"systemd-journal", "adm"} <= set(groups)
    # Optional groups live in drop-ins: a missing group stops the unit from starting.
    assert not {"docker", "alphaengine"} & set(groups)
    assert one(s, "ProtectSystem") == "strict"
    assert one(s, "StateDirectory") == "botwatch"
    assert one(s, "ReadWritePaths") == "/var/lib/botwatch"
    assert "ReadWriteDirectories" not in s
    assert one(s, "NoNewPrivileges") == "yes"
    assert one(s, "CapabilityBoundingSet") == ""
    assert s.get("AmbientCapabilities", [""]) == [""]
    assert one(s, "PrivateTmp") == "yes"
    assert one(s, "ProtectHome") == "yes"
    families = one(s, "RestrictAddressFamilies").split()
    assert sorted(families) == ["AF_INET", "AF_INET6", "AF_NETLINK", "AF_UNIX"]
    assert one(s, "EnvironmentFile") == "-/etc/botwatch/botwatch.env"
    assert one(s, "Restart") == "on-failure"
    reload = shlex.split(one(s, "ExecReload"))
    assert Path(reload[0]).name == "kill"
    assert reload[1:] == ["-HUP", "$MAINPID"]
    for key in (
        "PrivateDevices", "ProtectKernelTunables", "ProtectKernelModules", "ProtectKernelLogs",
        "ProtectControlGroups", "RestrictSUIDSGID", "LockPersonality", "RestrictNamespaces",
        "MemoryDenyWriteExecute",
    ):  # fmt: skip
        assert one(s, key) == "yes", key
    # botwatch reads other users' processes and /proc/meminfo, /proc/stat ...
    assert s.get("ProtectProc", ["default"]) == ["default"]
    assert s.get("ProcSubset", ["all"]) == ["all"]


def test_dropins_add_only_their_group() -> None:
    for group in ("docker", "alphaengine"):
        sections = parse_unit((DROPINS / f"{group}.conf").read_text())
        assert sections == {"Service": {"SupplementaryGroups": [group]}}


def test_exec_start_names_the_shipped_files() -> None:
    args = exec_start()
    assert Path(args[0]).name == "botwatch-exporter"
    assert args[1] == "run"
    flags = dict(a.split("=", 1) for a in args[2:])
    assert flags["--config.file"] == "/etc/botwatch/botwatch.yml"
    assert flags["--web.listen-address"] == ":9877"
    assert flags["--web.config.file"] == "/etc/botwatch/web.yml"
    # install.sh copies these two files to exactly those paths.
    install = (SYSTEMD / "install.sh").read_text()
    assert 'copy_once "$HERE/botwatch.yml" "$CONFDIR/botwatch.yml"' in install
    assert 'copy_once "$HERE/web.yml" "$CONFDIR/web.yml"' in install
    assert "CONFDIR=/etc/botwatch" in install
    assert "PREFIX=${BOTWATCH_PREFIX:-/opt/botwatch}" in install
    assert args[0] == "/opt/botwatch/venv/bin/botwatch-exporter"
    # ...the console script of this distribution, which install.sh pip-installs there.
    assert 'botwatch-exporter = "exporter.cli:main"' in (REPO / "pyproject.toml").read_text()


def test_example_config_passes_check_config() -> None:
    result = run_cli("check-config", "deploy/systemd/botwatch.yml")
    assert result.returncode == 0, result.stderr
    assert "systemd" in result.stdout and "sqlite" in result.stdout
    doc = yaml.safe_load((SYSTEMD / "botwatch.yml").read_text())
    assert doc["include"] == ["alphaengine"]
    # The unit makes exactly this directory writable.
    assert doc["state_dir"] == "/var/lib/" + one(service(), "StateDirectory")


def test_web_configs_pass_promtool_and_botwatch() -> None:
    for path in (SYSTEMD / "web.yml", REPO / "deploy" / "compose" / "web.yml"):
        result = subprocess.run(
            ["promtool", "check", "web-config", str(path)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        result = run_cli("check-web-config", str(path))
        assert result.returncode == 0, result.stdout + result.stderr


def test_install_script_passes_shellcheck() -> None:
    script = SYSTEMD / "install.sh"
    assert script.stat().st_mode & 0o111, "install.sh is not executable"
    assert shutil.which("shellcheck"), "shellcheck is missing (Debian package shellcheck)"
    for check in (["sh", "-n", str(script)], ["shellcheck", "--shell=sh", str(script)]):
        result = subprocess.run(check, capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 0, result.stdout + result.stderr


def test_the_units_command_line_serves(daemon: StartDaemon, tmp_path: Path) -> None:
    """ExecStart as written, with the program, the files and the port moved into the test."""
    config = yaml.safe_load((SYSTEMD / "botwatch.yml").read_text())
    config["state_dir"] = str(tmp_path / "state")
    moved = {
        "/etc/botwatch/botwatch.yml": tmp_path / "botwatch.yml",
        "/etc/botwatch/web.yml": SYSTEMD / "web.yml",
    }
    moved["/etc/botwatch/botwatch.yml"].write_text(yaml.safe_dump(config))
    args = []
    for arg in exec_start()[2:]:
        flag, _, value = arg.partition("=")
        if flag == "--web.listen-address":
            value = "127.0.0.1:0"
        elif flag == "--log.format":
            continue  # the Daemon helper reads JSON logs
        args.append(f"{flag}={moved.get(value, value)}")
    d = daemon(None, *args)
    status, body, _ = d.get("/-/healthy")
    assert status == 200, body
    # The alphaengine preset's collectors run (down, here: this host has no AlphaEngine).
    for name in ("systemd", "sqlite", "files", "process", "logs"):
        wait_for(
            lambda name=name: d.sample("botwatch_collector_up", collector=name) is not None,
            20,
            f"the {name} collector's first round",
        )
