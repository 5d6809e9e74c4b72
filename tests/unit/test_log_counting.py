"""Counting, label caps, breaker state, the checkpoint file and the families rendered from it."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import NamedTuple

import pytest
from prometheus_client.exposition import generate_latest

from exporter.logs import checkpoint
from exporter.logs.api import Batch, join_lines
from exporter.logs.counting import OTHER, RuleShape, SourceCounts
from exporter.logs.metrics import CheckpointView, SourceView, families


class M(NamedTuple):
    rule: str
    labels: tuple[str, ...]


class B(NamedTuple):
    breaker: str
    state: str


SHAPES = {
    "rate_limited": RuleShape((), 20),
    "exchange_api_error": RuleShape(("code",), 2),
    "order_rejected": RuleShape(("reason",), 1, frozenset({"reason"})),
}


def batch(lines: list[bytes], **kw: object) -> Batch:
    data, count, truncated = join_lines(lines)
    return Batch(data, count, {"offset": len(data)}, len(data), truncated, **kw)  # type: ignore[arg-type]


def test_adds_lines_bytes_rotations_and_matches() -> None:
    counts = SourceCounts()
    counts.add(
        batch([b"a", b"b"], rotations=["rename"], last_timestamp=1700000000.0),
        [M("rate_limited", ())],
        [],
        SHAPES,
    )
    counts.add(batch([b"c"]), [M("rate_limited", ())], [], SHAPES)
    assert (counts.lines, counts.bytes) == (3, 6)
    assert counts.rotations == {"rename": 1}
    assert counts.matches == {("rate_limited", ()): 2}
    assert counts.last_line is not None
    assert counts.last_line > 1700000000.0  # the second batch had no timestamp: time of reading


def test_captured_labels_fold_into_other_past_the_cap_and_count_the_overflow() -> None:
    counts = SourceCounts()
    found = [M("exchange_api_error", (code,)) for code in ("-1003", "-1021", "-2015", "-1003")]
    counts.add(batch([b"x"] * 4), found, [], SHAPES)
    assert counts.matches == {
        ("exchange_api_error", ("-1003",)): 2,
        ("exchange_api_error", ("-1021",)): 1,
        ("exchange_api_error", (OTHER,)): 1,
    }
    assert counts.overflow == {"exchange_api_error": 1}


def test_static_labels_are_never_folded() -> None:
    counts = SourceCounts()
    found = [M("order_rejected", (r,)) for r in ("insufficient_balance", "position_limit")]
    counts.add(batch([b"x", b"y"]), found, [], SHAPES)
    assert counts.matches[("order_rejected", ("position_limit",))] == 1
    assert not counts.overflow


def test_breaker_transitions_count_only_changes() -> None:
    counts = SourceCounts()
    events = [B("binance", "open"), B("binance", "open"), B("binance", "half_open")]
    counts.add(batch([b"1", b"2", b"3"]), [], events, SHAPES)
    counts.add(batch([b"4"]), [], [B("binance", "closed")], SHAPES)
    assert counts.breakers == {"binance": "closed"}
    assert counts.transitions == {
        ("binance", "open"): 1,
        ("binance", "half_open"): 1,
        ("binance", "closed"): 1,
    }


def test_json_round_trip_keeps_everything_including_admitted_values() -> None:
    counts = SourceCounts()
    found = [M("exchange_api_error", ("-1003",)), M("exchange_api_error", ("-1021",))]
    counts.add(batch([b"x", b"y"], rotations=["copytruncate"]), found, [B("b", "open")], SHAPES)
    restored = SourceCounts.from_json(json.loads(json.dumps(counts.to_json())), SHAPES)
    assert restored == counts
    # The cap is still full after a restart: a third code folds.
    restored.add(batch([b"z"]), [M("exchange_api_error", ("-9999",))], [], SHAPES)
    assert restored.matches[("exchange_api_error", (OTHER,))] == 1


def test_restore_drops_series_of_rules_that_are_gone_or_changed_shape() -> None:
    counts = SourceCounts()
    counts.add(
        batch([b"x", b"y"]), [M("rate_limited", ()), M("exchange_api_error", ("1",))], [], SHAPES
    )
    shapes = {"exchange_api_error": RuleShape(("code", "endpoint"), 20)}
    restored = SourceCounts.from_json(counts.to_json(), shapes)
    assert not restored.matches
    assert restored.lines == 2


def test_checkpoint_is_replaced_atomically_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "state" / checkpoint.FILENAME
    assert checkpoint.read(path) is None
    checkpoint.write(path, {"a": {"position": {"offset": 1}}})
    checkpoint.write(path, {"a": {"position": {"offset": 2}}})
    assert checkpoint.read(path) == {"a": {"position": {"offset": 2}}}
    assert sorted(os.listdir(path.parent)) == [checkpoint.FILENAME]  # no temp file left
    assert path.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"{not json", "not valid JSON"),
        (b'{"version": 99}', "version 99"),
        (b"[]", "version None"),
        (b'{"version": 1}', "no sources"),
    ],
)
def test_a_bad_checkpoint_is_a_clear_error_and_can_be_set_aside(
    tmp_path: Path, body: bytes, problem: str
) -> None:
    path = tmp_path / checkpoint.FILENAME
    path.write_bytes(body)
    with pytest.raises(checkpoint.CheckpointError, match=problem) as caught:
        checkpoint.read(path)
    assert str(path) in str(caught.value)
    aside = checkpoint.set_aside(path)
    assert aside is not None and aside.read_bytes() == body and not path.exists()


def render(views: list[SourceView]) -> str:
    class Collected:
        def collect(self) -> list[object]:
            return families(views, CheckpointView(1700000000.0, 0))  # type: ignore[return-value]

    return generate_latest(Collected()).decode()  # type: ignore[arg-type]


def test_families_start_known_series_at_zero_and_show_breakers() -> None:
    counts = SourceCounts()
    counts.add(batch([b"x"]), [M("exchange_api_error", ("-1003",))], [B("binance", "open")], SHAPES)
    view = SourceView(
        name="trader-api",
        kind="file",
        up=True,
        counts=counts.to_json(),
        shapes=SHAPES,
        static_series={
            "rate_limited": [()],
            "order_rejected": [("insufficient_balance",), ("other",)],
        },
    )
    text = render([view])
    assert 'botwatch_log_matches_total{rule="rate_limited",source="trader-api"} 0.0' in text
    assert (
        'botwatch_log_matches_total{code="-1003",rule="exchange_api_error",source="trader-api"} 1.0'
        in text
    )
    assert (
        'botwatch_log_matches_total{reason="other",rule="order_rejected",source="trader-api"} 0.0'
        in text
    )
    assert 'botwatch_log_rotations_total{kind="copytruncate",source="trader-api"} 0.0' in text
    assert (
        'botwatch_log_label_overflow_total{rule="exchange_api_error",source="trader-api"} 0.0'
        in text
    )
    assert (
        'botwatch_circuit_breaker_state{breaker="binance",source="trader-api",state="open"} 1.0'
        in text
    )
    assert (
        'botwatch_circuit_breaker_state{breaker="binance",source="trader-api",state="closed"} 0.0'
        in text
    )
    assert 'botwatch_log_source_up{source="trader-api"} 1.0' in text
