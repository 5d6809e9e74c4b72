"""SourceSink: counting and the position move together; trouble is logged once per streak."""

from __future__ import annotations

from structlog.testing import capture_logs

from exporter.logs.api import Batch, join_lines
from exporter.logs.collector import SourceSink, Tracked, shapes_of
from exporter.logs.counting import SourceCounts
from exporter.logs.models import FileSourceConfig, RuleConfig
from exporter.logs.rules import RuleSet


def tracked() -> Tracked:
    rules = [RuleConfig(name="db_locked", match="database is locked")]
    ruleset = RuleSet(rules, engine="re")
    config = FileSourceConfig(name="app", type="file", path="/x.log")
    return Tracked(config, ruleset, shapes_of(rules, ruleset), SourceCounts(), None)


def test_a_batch_is_counted_and_its_position_adopted_in_one_step() -> None:
    t = tracked()
    sink = SourceSink(t, lambda: None)
    data, lines, _ = join_lines([b"database is locked", b"fine"])
    sink.batch(Batch(data, lines, {"offset": 42}, len(data)))
    assert t.position == {"offset": 42}
    assert t.counts.lines == 2
    assert t.counts.matches == {("db_locked", ()): 1}


def test_errors_are_all_counted_but_logged_once_per_streak() -> None:
    t = tracked()
    sink = SourceSink(t, lambda: None)
    with capture_logs() as logs:
        for n in range(5):
            sink.error(f"bad entry {n}")
        data, lines, _ = join_lines([b"ok"])
        sink.batch(Batch(data, lines, {"offset": 3}, len(data)))
        sink.error("bad entry after good lines")
    warnings = [e["error"] for e in logs if e["log_level"] == "warning"]
    assert warnings == ["bad entry 0", "bad entry after good lines"]
    assert t.counts.read_errors == 6


def test_down_is_logged_once_and_recovery_once() -> None:
    t = tracked()
    sink = SourceSink(t, lambda: None)
    with capture_logs() as logs:
        sink.down("directory /var/log/app: No such file or directory")
        sink.down("directory /var/log/app: No such file or directory")
        sink.up()
        sink.up()
    assert [e["event"] for e in logs if e["log_level"] != "debug"] == [
        "log source down",
        "log source recovered",
    ]
    assert t.up
