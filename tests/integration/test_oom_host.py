"""The oom collector on this host's real /dev/kmsg and cgroup hierarchy (as root, like CI:
reading the kernel log needs CAP_SYSLOG). Read only: nothing is written to the kernel log."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter.collector import Context
from exporter.collectors.oom import OomCollector, OomConfig
from exporter.threads import BlockingCalls
from tests.streams import running
from tests.support import eventually, promtool_lint, run_cli

pytestmark = pytest.mark.integration


async def test_the_real_kernel_log_is_followed_from_its_end(
    tmp_path: Path,
) -> None:
    collector = OomCollector(OomConfig(interval="200ms"), Context("oom", tmp_path, BlockingCalls()))
    async with running(collector) as run:
        await eventually(lambda: run.value("botwatch_oom_kernel_log_up") == 1, 10, "opened")
        await eventually(lambda: run.changes and run.failure() is None, 10, "the first scan")
        kernel = collector.kernel
        assert kernel is not None
        # Caught up with what the buffer held: its position is known, none of it counted.
        await eventually(lambda: kernel.seq is not None and kernel.seq >= 0, 10, "the end")
        assert kernel.kills == {}
        assert run.value("botwatch_oom_kernel_log_malformed_total") == 0


def test_once_serves_the_oom_metrics_and_promtool_accepts_them(tmp_path: Path) -> None:
    config = tmp_path / "botwatch.yml"
    config.write_text(
        f"state_dir: {tmp_path / 'state'}\n"
        "collectors:\n"
        "  host: {enabled: false}\n"
        "  oom: {interval: 1s}\n"
    )
    done = run_cli("once", f"--config.file={config}")
    body = done.stdout
    assert 'botwatch_collector_up{collector="oom"} 1.0' in body, done.stderr
    assert "botwatch_oom_kernel_log_up 1.0" in body
    # Only this collector's part: the others are not this test's business.
    ours = [line for line in body.splitlines() if "botwatch_oom_" in line or "_cgroup_oom" in line]
    assert promtool_lint("\n".join(ours) + "\n") == ""
    # `once` looks without writing: a daemon on the same state_dir is not disturbed.
    assert not (tmp_path / "state" / "oom-checkpoint.json").exists()
