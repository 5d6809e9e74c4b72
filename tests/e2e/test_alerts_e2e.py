"""End to end: real faults make real Prometheus and Alertmanager page with the right runbook.

botwatch (the daemon, both presets), Prometheus 2.42 loading alerts/*.rules.yml (each `for:`
divided by 60, see tests/e2e/stack.py) and Alertmanager 0.25 with the shipped configuration
(test timings) delivering to a webhook in this test; the faults of tests/e2e/faults.py, both
stacks, every log source type, probes, host, sqlite, systemd and docker. For each fault the
webhook must receive its alert, with exactly the runbook_url the catalog gives it, within
PAGE_TIMEOUT; nothing else may fire, and the healthy stack must be quiet first. Fault-to-page
seconds are printed (`pytest -s`); bench/alert_latency.py reports them in bench/RESULTS.md.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.faults import FAULTS, PAGE_TIMEOUT, run_faults, table, wait_baseline
from tests.e2e.stack import Stack, committed_rules, expected_runbook_url, write_rules

pytestmark = pytest.mark.integration


@pytest.fixture
def stack() -> Iterator[Stack]:
    # Not pytest's tmp_path: PostgreSQL runs as another user, and conmon's socket paths
    # below podman's run root must stay short.
    with Stack.started(Path(tempfile.mkdtemp(prefix="bw-e2e-", dir="/tmp"))) as started:
        yield started


def test_rules_copy_keeps_the_committed_links(tmp_path: Path) -> None:
    rules = write_rules(tmp_path, committed_rules())
    assert rules.for_seconds["TraderApiHealthFailing"] == 1  # for: 1m
    assert rules.for_seconds["TraderDiskSpaceLow"] == 5  # for: 5m
    assert rules.for_seconds["TraderDiskFillingUp"] == 60  # for: 1h
    for alert, url in rules.runbook_urls.items():
        assert url == expected_runbook_url(alert), alert


def test_faults_page_with_their_runbook_and_nothing_else_fires(stack: Stack) -> None:
    quiet = wait_baseline(stack)
    assert not quiet, f"the healthy stack is not quiet: {quiet}"

    print()
    run = run_faults(stack)
    print(table(run))

    assert not run.failures, run.failures
    late = [f"{p.alert} <- {p.fault}" for p in run.pages if p.seconds is None]
    assert not late, f"no page within {PAGE_TIMEOUT:.0f} s: {late}"
    for page in run.pages:
        assert page.runbook_url == page.expected_url, page
    assert {p.alert for p in run.pages} == {a for f in FAULTS for a in f.pages}
    assert not run.unexpected, f"fired without a fault: {run.unexpected}"
    assert len({f.name for f in FAULTS}) >= 8
    assert {f.stack for f in FAULTS} == {"trader-bot", "alphaengine"}
