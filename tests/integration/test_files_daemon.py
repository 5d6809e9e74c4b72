"""The files collector in the real daemon: a full scrape, a fault that shows, and a
directory the daemon is really denied (root without CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import Daemon
from tests.support import promtool_lint, wait_for
from tests.unit.test_files_collector import (
    BASE,
    FAKE_KEY,
    PRESET,
    PYTHON_PATH,
    SECRETS_PATH,
    alphaengine_host,
)

StartDaemon = Callable[..., Daemon]
# Capabilities that let root past every permission check on files.
DAC = "dac_override,dac_read_search"


def write_config(tmp_path: Path, files: dict[str, object]) -> Path:
    config = {
        "web": {"listen_address": "127.0.0.1:0"},
        "state_dir": str(tmp_path / "state"),
        "collectors": {
            "host": {
                "interval": "1s",
                "timeout": "800ms",
                "filesystems": {"stat_timeout": "500ms"},
            },
            "files": {"interval": "1s", "timeout": "800ms", **files},
        },
    }
    path = tmp_path / "botwatch.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_files_on_the_full_scrape(daemon: StartDaemon, tmp_path: Path) -> None:
    host = tmp_path / "host"
    alphaengine_host(host, time.time())
    d = daemon(write_config(tmp_path, {**yaml.safe_load(PRESET), "rootfs": str(host)}))
    wait_for(lambda: d.get("/-/ready")[0] == 200, 20, "readiness")
    body = d.metrics()
    assert promtool_lint(body) == ""
    names = {f.name for f in text_string_to_metric_families(body)}
    assert {
        "botwatch_file_exists",
        "botwatch_file_size_bytes",
        "botwatch_file_modified_timestamp_seconds",
        "botwatch_file_info",
        "botwatch_file_check_ok",
        "botwatch_file_errors",
        "botwatch_backup_files",
        "botwatch_backup_last_timestamp_seconds",
        "botwatch_backup_last_size_bytes",
        "botwatch_backup_fresh",
        "botwatch_backup_errors",
        "botwatch_memory_total_bytes",
    } <= names
    assert d.sample("botwatch_collector_up", collector="files") == 1.0
    assert d.sample("botwatch_file_check_ok", path=SECRETS_PATH, check="yaml") == 1.0
    assert d.sample("botwatch_file_check_ok", path=PYTHON_PATH, check="executable") == 1.0
    assert d.sample("botwatch_backup_files", set="alphaengine") == 3.0

    # secrets.yaml broken by a hand edit: the check fails within a round or two, and
    # neither the scrape nor the daemon's log holds a byte of it.
    (host / SECRETS_PATH.lstrip("/")).write_text(f"binance:\n  api_key: '{FAKE_KEY}\n")
    wait_for(
        lambda: d.sample("botwatch_file_check_ok", path=SECRETS_PATH, check="yaml") == 0.0,
        10,
        "the yaml check to fail",
    )
    (event,) = d.events("file check failed")
    assert event["reason"] == (
        "line 3, column 1: found unexpected end of stream "
        "(while scanning a quoted scalar started on line 2)"
    )
    assert event["collector"] == "files"
    assert FAKE_KEY not in d.metrics()
    assert not any(FAKE_KEY in line for line in d.raw)
    assert d.sample("botwatch_collector_up", collector="files") == 1.0


def can_drop_dac() -> bool:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        return False
    probe = subprocess.run(
        ["setpriv", f"--bounding-set=-{DAC.replace(',', ',-')}", "true"],
        capture_output=True,
        check=False,
    )
    return probe.returncode == 0


def test_a_really_denied_directory(
    daemon: StartDaemon, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Root (as `make test` and CI run) and util-linux's setpriv: a failure here, not a skip.
    assert can_drop_dac(), "needs root and setpriv(1) to drop CAP_DAC_*"
    # The daemon runs as root without the two capabilities that bypass permissions, so the
    # kernel itself answers EACCES. The runbook's layout, with the install directory's group
    # set to root's: a botwatch in the alphaengine group, which may enter /opt/alphaengine
    # (0750) but not config/ (0700).
    host = tmp_path / "host"
    alphaengine_host(host, time.time())
    os.chown(host / BASE.lstrip("/"), -1, 0)
    path = write_config(tmp_path, {**yaml.safe_load(PRESET), "rootfs": str(host)})
    wrapper = tmp_path / "python-without-dac"
    drop = DAC.replace(",", ",-")
    wrapper.write_text(
        "#!/bin/sh\n"
        f'exec setpriv --bounding-set=-{drop} --inh-caps=-{drop} "{sys.executable}" "$@"\n'
    )
    wrapper.chmod(0o755)
    with monkeypatch.context() as patch:
        patch.setattr(sys, "executable", str(wrapper))  # only for the Popen in daemon()
        d = daemon(path)
    wait_for(lambda: d.get("/-/ready")[0] == 200, 20, "readiness")
    wait_for(
        lambda: d.sample(
            "botwatch_file_errors_total", path=SECRETS_PATH, error="permission_denied"
        ),
        10,
        "a permission_denied error",
    )
    # config/ itself is seen and passes; what is below it is unknown, not missing.
    assert d.sample("botwatch_file_check_ok", path=f"{BASE}/config", check="mode") == 1.0
    assert d.sample("botwatch_file_check_ok", path=f"{BASE}/config", check="owner") == 1.0
    assert d.sample("botwatch_file_exists", path=SECRETS_PATH) is None
    assert d.sample("botwatch_file_check_ok", path=SECRETS_PATH, check="yaml") is None
    assert d.sample("botwatch_file_check_ok", path=PYTHON_PATH, check="executable") == 1.0
    (event,) = (e for e in d.events("file unreadable") if e["path"] == SECRETS_PATH)
    assert event["reason"] == "permission_denied (EACCES: Permission denied)"
    assert promtool_lint(d.metrics()) == ""
