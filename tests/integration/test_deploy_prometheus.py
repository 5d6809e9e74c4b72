"""deploy/prometheus: promtool accepts the config (and the rule files it names), the TLS variant
is valid too, and a real Prometheus on it scrapes a real botwatch and loads every rule."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.conftest import Daemon, daemon_config
from tests.servers import PrometheusServer
from tests.support import REPO, wait_for

pytestmark = pytest.mark.integration

CONFIG = REPO / "deploy" / "prometheus" / "prometheus.yml"
RULE_FILES = sorted((REPO / "alerts").glob("*.rules.yml"))
StartDaemon = Callable[..., Daemon]


def promtool_check(path: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    if shutil.which("promtool") is None:
        pytest.fail("promtool is missing (Debian package prometheus)")
    return subprocess.run(
        ["promtool", "check", "config", str(path)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def config() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(CONFIG.read_text())
    return doc


def tls_variant() -> str:
    """The commented-out scrape job between the BEGIN/END markers, uncommented once."""
    text = CONFIG.read_text()
    block = text[text.index("# BEGIN tls-variant") : text.index("# END tls-variant")]
    lines = []
    for line in block.splitlines()[1:]:
        match = re.match(r"^(\s*)# ?(.*)$", line)
        lines.append(match.group(1) + match.group(2) if match else line)
    return "\n".join(lines) + "\n"


def test_promtool_accepts_the_config_and_every_shipped_rule_file(tmp_path: Path) -> None:
    assert RULE_FILES, "no alerts/*.rules.yml"
    # From another directory: rule_files resolve against the config file, not the cwd.
    result = promtool_check(CONFIG, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(RULE_FILES)} rule files found" in result.stdout
    checked = re.findall(r"^Checking (\S+\.rules\.yml)$", result.stdout, re.MULTILINE)
    assert [Path(p) for p in checked] == [p.resolve() for p in RULE_FILES]


def test_the_job_is_the_one_the_rules_watch() -> None:
    doc = config()
    [job] = [j for j in doc["scrape_configs"] if j["job_name"] == "botwatch"]
    assert job["scrape_interval"] == "15s"
    rules = (REPO / "alerts" / "botwatch.rules.yml").read_text()
    watched = re.search(r'up\{job=~"([^"]+)"\}', rules)
    assert watched, "BotwatchDown's up{job=~...} selector"
    assert re.fullmatch(watched.group(1), job["job_name"])
    [alertmanagers] = doc["alerting"]["alertmanagers"]
    assert alertmanagers["static_configs"][0]["targets"]


def test_the_tls_variant_is_a_valid_scrape_job(tmp_path: Path) -> None:
    variant = tls_variant()
    job = yaml.safe_load(variant)[0]
    assert job["scheme"] == "https"
    assert {"ca_file", "cert_file", "key_file"} <= set(job["tls_config"])
    assert set(job["basic_auth"]) == {"username", "password_file"}  # no password inline
    # promtool checks that the files exist: give it some, where the variant names them.
    files = tmp_path / "files"
    files.mkdir()
    for name in ("ca.crt", "client.crt", "client.key", "password"):
        (files / name).write_text("placeholder\n")
    variant = variant.replace("/etc/prometheus/botwatch", str(files))
    assert "/etc/prometheus" not in variant
    text = CONFIG.read_text()
    head = text[: text.index("scrape_configs:")].replace("../../alerts", str(REPO / "alerts"))
    path = tmp_path / "prometheus.yml"
    path.write_text(head + "scrape_configs:\n" + variant)
    result = promtool_check(path, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def api(base: str, path: str) -> Any:
    with urllib.request.urlopen(base + path, timeout=5) as response:
        return json.load(response)["data"]


def test_prometheus_scrapes_botwatch_and_loads_every_rule(
    daemon: StartDaemon, tmp_path: Path
) -> None:
    d = daemon(daemon_config(tmp_path))
    # The shipped file with the test's addresses, faster intervals and absolute rule paths.
    doc = config()
    doc["global"].update(scrape_interval="1s", evaluation_interval="1s")
    doc["rule_files"] = [str((CONFIG.parent / p).resolve()) for p in doc["rule_files"]]
    [job] = doc["scrape_configs"]
    job.update(scrape_interval="1s", scrape_timeout="1s")
    job["static_configs"][0]["targets"] = [d.base.removeprefix("http://")]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(doc))
    prometheus = PrometheusServer(path, tmp_path)

    def targets_up() -> bool:
        prometheus.alive()
        try:
            active = api(prometheus.base, "/api/v1/targets")["activeTargets"]
        except (urllib.error.URLError, OSError):
            return False
        return any(t["labels"]["job"] == "botwatch" and t["health"] == "up" for t in active)

    try:
        wait_for(targets_up, 30, "Prometheus to scrape botwatch")
        groups = api(prometheus.base, "/api/v1/rules")["groups"]
        loaded = sum(len(g["rules"]) for g in groups)
        shipped = sum(
            len(g["rules"]) for p in RULE_FILES for g in yaml.safe_load(p.read_text())["groups"]
        )
        assert loaded == shipped
        assert {Path(g["file"]).name for g in groups} == {p.name for p in RULE_FILES}
    finally:
        prometheus.stop()
