"""deploy/compose: the compose file is valid Compose, locked down, and consistent with the image
and with the botwatch config it mounts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.config import load_config
from tests.integration.test_deploy_docker import dockerfile_healthcheck, dockerfile_user
from tests.support import REPO, run_cli

pytestmark = pytest.mark.integration

COMPOSE_DIR = REPO / "deploy" / "compose"
COMPOSE = COMPOSE_DIR / "docker-compose.yml"


def compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return doc


def botwatch_service() -> dict[str, Any]:
    service: dict[str, Any] = compose()["services"]["botwatch"]
    return service


def mounts() -> dict[str, dict[str, Any]]:
    """Volumes by their target (the compose file uses the long syntax only)."""
    found = {}
    for volume in botwatch_service()["volumes"]:
        assert isinstance(volume, dict), f"use the long syntax: {volume}"
        found[volume["target"]] = volume
    return found


def flags() -> dict[str, str]:
    command = botwatch_service()["command"]
    assert command[0] == "run"
    return dict(arg.split("=", 1) for arg in command[1:])


def check_jsonschema(path: Path) -> subprocess.CompletedProcess[str]:
    """The Compose specification's JSON schema, as check-jsonschema ships it."""
    schema = ("--builtin-schema", "vendor.compose-spec")
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", *schema, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_compose_file_matches_the_compose_specification() -> None:
    result = check_jsonschema(COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_rejects_a_typo(tmp_path: Path) -> None:
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(COMPOSE.read_text().replace("read_only: true\n", "readonly: true\n", 1))
    result = check_jsonschema(broken)
    assert result.returncode == 1
    assert "'readonly'" in result.stdout


def test_the_service_is_locked_down() -> None:
    s = botwatch_service()
    assert s["read_only"] is True
    assert s["cap_drop"] == ["ALL"]
    assert "cap_add" not in s
    assert "privileged" not in s
    assert "no-new-privileges:true" in s["security_opt"]
    assert s["restart"] in ("unless-stopped", "always", "on-failure")
    # The image's numeric user; the docker socket's group from the environment, required.
    assert s["user"] == dockerfile_user()
    uid, _, gid = s["user"].partition(":")
    assert int(uid) != 0 and int(gid) != 0
    [group] = s["group_add"]
    assert group.startswith("${DOCKER_GID:?")
    for key in ("pid", "network_mode", "ipc", "userns_mode"):
        assert key not in s, f"{key}: shares a host namespace"


def test_everything_from_the_host_is_read_only() -> None:
    found = mounts()
    writable = [t for t, v in found.items() if not v.get("read_only")]
    # Only the state directory, a named volume, is writable.
    assert writable == ["/var/lib/botwatch"]
    assert found["/var/lib/botwatch"]["type"] == "volume"
    assert found["/var/lib/botwatch"]["source"] in compose()["volumes"]
    assert found["/var/run/docker.sock"]["source"] == "/var/run/docker.sock"
    for target, source in (("/host/proc", "/proc"), ("/host/sys", "/sys"), ("/host/root", "/")):
        assert found[target]["source"] == source


def test_it_joins_the_trader_network() -> None:
    assert botwatch_service()["networks"] == ["trader-network"]
    assert compose()["networks"]["trader-network"] == {"external": True}
    # Published on loopback only: anything wider is an operator's decision (README.md).
    assert all(str(p).startswith("127.0.0.1:") for p in botwatch_service()["ports"])


def test_the_healthcheck_is_the_images() -> None:
    health = botwatch_service()["healthcheck"]
    assert health["test"] == ["CMD", *dockerfile_healthcheck()]
    assert health["retries"] >= 1


def test_the_mounted_files_are_the_ones_the_command_reads() -> None:
    found = mounts()
    f = flags()
    for flag, name in (("--config.file", "botwatch.yml"), ("--web.config.file", "web.yml")):
        volume = found[f[flag]]
        assert volume["type"] == "bind"
        assert (COMPOSE_DIR / volume["source"]).resolve() == COMPOSE_DIR / name


def test_the_config_passes_check_config_and_reads_the_mounted_host() -> None:
    result = run_cli("check-config", "deploy/compose/botwatch.yml")
    assert result.returncode == 0, result.stderr
    assert "docker" in result.stdout
    config = load_config(COMPOSE_DIR / "botwatch.yml").config
    assert str(config.state_dir) in mounts()
    collectors = config.collectors
    for path in (
        collectors.host.procfs,
        collectors.host.rootfs,
        collectors.process.procfs,
        collectors.oom.procfs,
        collectors.oom.sysfs,
    ):
        assert str(path) in mounts(), f"{path} is not mounted"


def test_the_presets_probes_point_at_the_network_not_at_localhost() -> None:
    included = yaml.safe_load((REPO / "exporter" / "presets" / "trader-bot.yaml").read_text())
    config = load_config(COMPOSE_DIR / "botwatch.yml").config
    # Each override replaced the preset's probe of the same name: none was added by a typo.
    assert [p.name for p in config.probes] == [p["name"] for p in included["probes"]]
    for probe in config.probes:
        address = str(getattr(probe, "url", "") or getattr(probe, "host", ""))
        assert "localhost" not in address and "127.0.0.1" not in address, probe.name
        assert probe.type != "listener", f"{probe.name}: reads botwatch's own namespace"
