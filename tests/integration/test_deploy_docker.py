"""deploy/docker: the Dockerfile read instruction by instruction, and its HEALTHCHECK command
run for real against a real daemon. (The image build itself is deploy/docker/build-test.sh:
a minute or more, so not part of the suite.)"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import urllib.parse
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.conftest import Daemon, daemon_config
from tests.support import REPO

pytestmark = pytest.mark.integration

DOCKERFILE = REPO / "deploy" / "docker" / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
HEALTHY_URL = "http://127.0.0.1:9877/-/healthy"
URL_VARIABLE = "BOTWATCH_HEALTHCHECK_URL"
SECRET_NAME = re.compile(r"passw|secret|token|credential|api_?key|private", re.IGNORECASE)
StartDaemon = Callable[..., Daemon]


def instructions(text: str | None = None) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order: comments dropped, `\\` continuations joined."""
    found: list[tuple[str, str]] = []
    pending = ""
    for raw in (text if text is not None else DOCKERFILE.read_text()).splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and not pending):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = (pending + line).strip(), ""
        name, _, args = line.partition(" ")
        found.append((name.upper(), args.strip()))
    assert not pending, "the Dockerfile ends inside a continuation"
    return found


def stages() -> list[list[tuple[str, str]]]:
    """The instructions of each stage, FROM first; [0] holds the global ARGs before it."""
    split: list[list[tuple[str, str]]] = [[]]
    for inst in instructions():
        if inst[0] == "FROM":
            split.append([])
        split[-1].append(inst)
    return split


def args_of(stage: list[tuple[str, str]], name: str) -> list[str]:
    return [args for inst, args in stage if inst == name]


def dockerfile_user() -> str:
    [user] = args_of(stages()[-1], "USER")
    return user


def dockerfile_healthcheck() -> list[str]:
    """The exec-form command of the final stage's HEALTHCHECK."""
    [health] = args_of(stages()[-1], "HEALTHCHECK")
    options, sep, command = health.partition("CMD ")
    assert sep, f"HEALTHCHECK without CMD: {health}"
    assert all(o.startswith("--") for o in options.split()), options
    argv = json.loads(command)
    assert isinstance(argv, list), "use the exec form: no shell in the check"
    return [str(a) for a in argv]


def test_base_is_slim_and_replaceable_and_the_build_is_multi_stage() -> None:
    split = stages()
    assert ("ARG", "BASE=python:3.11-slim-bookworm") in split[0]
    froms = [stage[0][1] for stage in split[1:]]
    assert froms == ["${BASE} AS build", "${BASE}"]
    final = split[-1]
    # Only the finished virtualenv comes over from the build stage.
    assert args_of(final, "COPY") == ["--from=build /opt/botwatch/venv /opt/botwatch/venv"]
    for run in args_of(final, "RUN"):
        assert not re.search(r"\b(pip|apt-get|apt|gcc|curl|wget)\b", run), run


def test_runs_as_a_fixed_numeric_non_root_user() -> None:
    uid, sep, gid = dockerfile_user().partition(":")
    assert sep and uid.isdigit() and gid.isdigit(), "numeric uid:gid, so runtimes can check it"
    assert int(uid) != 0 and int(gid) != 0
    [run] = args_of(stages()[-1], "RUN")
    assert f"useradd --uid {uid}" in run and f"groupadd --gid {gid}" in run
    assert "install -d -o botwatch -g botwatch -m 0750 /var/lib/botwatch" in run


def test_serves_9877_and_starts_botwatch() -> None:
    final = stages()[-1]
    assert args_of(final, "EXPOSE") == ["9877"]
    assert json.loads(args_of(final, "ENTRYPOINT")[0]) == ["botwatch-exporter"]
    assert json.loads(args_of(final, "CMD")[0]) == ["run", "--web.listen-address=:9877"]
    assert 'botwatch-exporter = "exporter.cli:main"' in (REPO / "pyproject.toml").read_text()


def test_the_healthcheck_asks_healthy_with_pythons_urllib() -> None:
    argv = dockerfile_healthcheck()
    assert argv[:2] == ["python", "-c"]
    assert "urllib.request" in argv[2]
    assert repr(HEALTHY_URL) in argv[2]
    assert urllib.parse.urlsplit(HEALTHY_URL).port == 9877
    [health] = args_of(stages()[-1], "HEALTHCHECK")
    assert "--timeout=" in health and "--interval=" in health


def test_no_secrets_in_env_or_arg() -> None:
    for inst, args in instructions():
        if inst not in ("ENV", "ARG"):
            continue
        for pair in shlex.split(args):
            name, _, value = pair.partition("=")
            assert not SECRET_NAME.search(name), f"{inst} {name}: looks like a secret"
            assert not re.search(r"://[^/@\s]*:[^/@\s]*@", value), f"{inst} {name}: credentials"


def test_dockerignore_lets_in_only_what_the_build_copies() -> None:
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*", "an allow list: nothing enters the context unless named"
    allowed = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    copied = set()
    for stage in stages()[1:]:
        for args in args_of(stage, "COPY"):
            if not args.startswith("--from="):
                copied.update(args.split()[:-1])
    assert copied == allowed


def run_healthcheck(url: str) -> subprocess.CompletedProcess[str]:
    """The HEALTHCHECK's argv as the image runs it: `python` is the venv's, first on PATH."""
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        URL_VARIABLE: url,
    }
    return subprocess.run(
        dockerfile_healthcheck(), env=env, capture_output=True, text=True, timeout=30, check=False
    )


def test_the_healthcheck_passes_on_a_serving_daemon_and_fails_without_one(
    daemon: StartDaemon, tmp_path: Path
) -> None:
    d = daemon(daemon_config(tmp_path))
    url = d.base + "/-/healthy"
    healthy = run_healthcheck(url)
    assert healthy.returncode == 0, healthy.stderr

    # Any answer but a 2xx is a failure, too.
    wrong = run_healthcheck(d.base + "/-/no-such-page")
    assert wrong.returncode != 0
    assert "404" in wrong.stderr

    d.stop()
    down = run_healthcheck(url)
    assert down.returncode != 0
    assert "Connection refused" in down.stderr


def test_build_test_script_passes_shellcheck() -> None:
    script = REPO / "deploy" / "docker" / "build-test.sh"
    assert script.stat().st_mode & 0o111, "build-test.sh is not executable"
    assert shutil.which("shellcheck"), "shellcheck is missing (Debian package shellcheck)"
    result = subprocess.run(
        ["shellcheck", str(script)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
