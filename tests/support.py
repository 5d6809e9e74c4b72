"""Helpers every test layer shares: waiting for conditions and running the real CLI."""

from __future__ import annotations

import asyncio
import platform
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
# Where pyproject.toml installs hyperscan, its engine must be tested: a broken install fails
# the rule tests instead of quietly leaving only the fallback covered.
HYPERSCAN_EXPECTED = platform.machine() == "x86_64" and sys.platform == "linux"
RULE_ENGINES = ["re", "hyperscan"] if HYPERSCAN_EXPECTED else ["re"]
NO_HYPERSCAN_HERE = "hyperscan is a dependency on x86_64 Linux only"
# How often a wait re-checks its condition; every wait also has its own deadline.
POLL_STEP = 0.02


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll until `condition()` is truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(POLL_STEP)


async def eventually(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    """The asyncio twin of wait_for: lets the loop run between checks."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if isinstance(result, Awaitable):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(POLL_STEP)


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`python -m exporter ARGS` as a user would run it, from the repository root."""
    return subprocess.run(
        [sys.executable, "-m", "exporter", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def promtool_lint(body: str) -> str:
    """`promtool check metrics` on an exposition: '' when clean, else what it printed."""
    lint = subprocess.run(
        ["promtool", "check", "metrics"],
        input=body,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return "" if lint.returncode == 0 else (lint.stdout + lint.stderr or "promtool failed")


def assert_no_secrets(secrets: Iterable[str], *texts: object, where: str = "output") -> None:
    """None of `secrets` appears in any of `texts` (each taken as str)."""
    for text in texts:
        found = [secret for secret in secrets if secret in str(text)]
        assert not found, f"{where} holds {found}"
