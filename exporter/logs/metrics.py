"""The log collector's families, rendered from checkpointed snapshots (counting.to_json)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.samples import Sample

from exporter.logs.counting import RuleShape

ROTATION_KINDS = ("rename", "copytruncate", "recreate")
BREAKER_STATES = ("closed", "open", "half_open")


@dataclass(frozen=True)
class SourceView:
    """One source as /metrics shows it."""

    name: str
    kind: str  # file | journald | docker
    up: bool
    counts: Mapping[str, Any]  # SourceCounts.to_json()
    shapes: Mapping[str, RuleShape]
    static_series: Mapping[str, Sequence[tuple[str, ...]]]  # series that start at 0


@dataclass(frozen=True)
class CheckpointView:
    last_success: float | None
    errors: int


def _counter(name: str, doc: str, labels: Sequence[str]) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, labels=list(labels))


def _matches(views: Sequence[SourceView]) -> Metric:
    # Rules carry different labels, so samples are built by hand rather than with add_metric.
    family = Metric(
        "botwatch_log_matches",
        "Log lines a rule matched (per line, the first matching variant of a rule counts).",
        "counter",
    )
    for view in views:
        values: dict[tuple[str, tuple[str, ...]], float] = {}
        for rule, series in view.static_series.items():
            for labels in series:
                values[rule, tuple(labels)] = 0
        for rule, labels, count in view.counts["matches"]:
            if rule in view.shapes:
                values[rule, tuple(labels)] = count
        for (rule, labels), count in sorted(values.items()):
            names = view.shapes[rule].labels
            sample_labels = {
                "source": view.name,
                "rule": rule,
                **dict(zip(names, labels, strict=True)),
            }
            family.samples.append(Sample("botwatch_log_matches_total", sample_labels, count))
    return family


def families(views: Sequence[SourceView], checkpoint: CheckpointView) -> list[Metric]:
    per_source = [
        ("botwatch_log_lines", "Lines read from the source.", "lines"),
        ("botwatch_log_bytes", "Bytes read from the source.", "bytes"),
        (
            "botwatch_log_truncated_lines",
            "Lines longer than 1 MiB, cut there (the rest of the line is dropped).",
            "truncated",
        ),
        ("botwatch_log_read_errors", "Failed reads and unparseable entries.", "read_errors"),
    ]
    out: list[Metric] = []
    for name, doc, key in per_source:
        family = _counter(name, doc, ["source"])
        for view in views:
            family.add_metric([view.name], view.counts[key])
        out.append(family)
    out.append(_matches(views))

    up = GaugeMetricFamily(
        "botwatch_log_source_up", "1 if the source can be read now.", labels=["source"]
    )
    last = GaugeMetricFamily(
        "botwatch_log_last_line_timestamp_seconds",
        "When the source last delivered a line, Unix time (the entry's own time where known).",
        labels=["source"],
    )
    rotations = _counter(
        "botwatch_log_rotations", "Rotations of a file source seen, by kind.", ["source", "kind"]
    )
    overflow = _counter(
        "botwatch_log_label_overflow",
        "Matches whose label value fell past the rule's max_values and was counted as 'other'.",
        ["source", "rule"],
    )
    state = GaugeMetricFamily(
        "botwatch_circuit_breaker_state",
        "The state a circuit breaker last announced in the log: 1 for the current state.",
        labels=["source", "breaker", "state"],
    )
    transitions = _counter(
        "botwatch_circuit_breaker_transitions",
        "Circuit breaker state changes announced in the log, by the state entered.",
        ["source", "breaker", "to"],
    )
    for view in views:
        counts = view.counts
        up.add_metric([view.name], 1 if view.up else 0)
        if counts["last_line"] is not None:
            last.add_metric([view.name], counts["last_line"])
        kinds = dict.fromkeys(ROTATION_KINDS, 0) if view.kind == "file" else {}
        for kind, n in sorted({**kinds, **counts["rotations"]}.items()):
            rotations.add_metric([view.name, kind], n)
        captured = [r for r, shape in view.shapes.items() if set(shape.labels) - shape.static]
        for rule, n in sorted({**dict.fromkeys(captured, 0), **counts["overflow"]}.items()):
            overflow.add_metric([view.name, rule], n)
        for breaker, current in sorted(counts["breakers"].items()):
            for s in BREAKER_STATES:
                state.add_metric([view.name, breaker, s], 1 if s == current else 0)
        for breaker, to, n in sorted(counts["transitions"]):
            transitions.add_metric([view.name, breaker, to], n)
    out += [up, last, rotations, overflow, state, transitions]

    ok = GaugeMetricFamily(
        "botwatch_log_checkpoint_last_success_timestamp_seconds",
        "When counters and positions were last written to state_dir together, Unix time.",
    )
    if checkpoint.last_success is not None:
        ok.add_metric([], checkpoint.last_success)
    errors = CounterMetricFamily(
        "botwatch_log_checkpoint_errors",
        "Checkpoint writes that failed (counts are then not durable until one succeeds).",
        value=checkpoint.errors,
    )
    out += [ok, errors]
    return out
