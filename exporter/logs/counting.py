"""Per-source counters: what a batch adds, label caps, breaker state, and their JSON form.

The JSON form is what the checkpoint stores next to the source's position, and what /metrics
is rendered from, so the two can never disagree.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from exporter.logs.api import Batch
from exporter.redact import masked_label

OTHER = "other"  # what a label value past its rule's cap becomes


class Found(Protocol):
    """A rule match as RuleSet.scan reports it."""

    @property
    def rule(self) -> str: ...
    @property
    def labels(self) -> tuple[str, ...]: ...


class BreakerSeen(Protocol):
    @property
    def breaker(self) -> str: ...
    @property
    def state(self) -> str: ...


@dataclass(frozen=True)
class RuleShape:
    """What counting needs to know of a rule name."""

    labels: tuple[str, ...]
    max_values: int
    static: frozenset[str] = (
        frozenset()
    )  # labels with fixed values: bounded by config, never folded


@dataclass
class SourceCounts:
    lines: int = 0
    bytes: int = 0
    truncated: int = 0
    read_errors: int = 0
    last_line: float | None = None
    rotations: Counter[str] = field(default_factory=Counter)
    matches: Counter[tuple[str, tuple[str, ...]]] = field(default_factory=Counter)
    overflow: Counter[str] = field(default_factory=Counter)
    # Values admitted per (rule, label): persisted, so a restart keeps the same 20 values.
    admitted: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    breakers: dict[str, str] = field(default_factory=dict)
    transitions: Counter[tuple[str, str]] = field(default_factory=Counter)

    def add(
        self,
        batch: Batch,
        matches: Iterable[Found],
        events: Iterable[BreakerSeen],
        shapes: Mapping[str, RuleShape],
        redact: Callable[[str], str] = str,
    ) -> None:
        self.lines += batch.lines
        self.bytes += batch.bytes_read
        self.truncated += batch.truncated
        self.rotations.update(batch.rotations)
        if batch.lines:
            self.last_line = batch.last_timestamp or time.time()
        # Tally first (a Counter keeps first-seen order, so values are admitted in line
        # order as before), then cap once per distinct series instead of once per line.
        tally = Counter((m.rule, m.labels) for m in matches)
        for (rule, captured), n in tally.items():
            labels = tuple(masked_label(value, redact) for value in captured)
            shape = shapes[rule]
            if labels and not shape.static.issuperset(shape.labels):
                labels = self._capped(rule, labels, shape, n)
            self.matches[rule, labels] += n
        for event in events:
            breaker = masked_label(event.breaker, redact)
            if self.breakers.get(breaker) != event.state:
                self.breakers[breaker] = event.state
                self.transitions[breaker, event.state] += 1

    def _capped(
        self, rule: str, values: tuple[str, ...], shape: RuleShape, n: int
    ) -> tuple[str, ...]:
        out = list(values)
        folded = False
        for index, label in enumerate(shape.labels):
            if label in shape.static:
                continue
            admitted = self.admitted.setdefault((rule, label), set())
            if out[index] in admitted:
                continue
            if len(admitted) < shape.max_values:
                admitted.add(out[index])
            else:
                out[index] = OTHER
                folded = True
        if folded:
            self.overflow[rule] += n
        return tuple(out)

    def to_json(self) -> dict[str, Any]:
        return {
            "lines": self.lines,
            "bytes": self.bytes,
            "truncated": self.truncated,
            "read_errors": self.read_errors,
            "last_line": self.last_line,
            "rotations": dict(self.rotations),
            "matches": [[rule, list(labels), n] for (rule, labels), n in self.matches.items()],
            "overflow": dict(self.overflow),
            "admitted": [[r, lb, sorted(v)] for (r, lb), v in self.admitted.items()],
            "breakers": dict(self.breakers),
            "transitions": [[b, to, n] for (b, to), n in self.transitions.items()],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], shapes: Mapping[str, RuleShape]) -> SourceCounts:
        """Restore; series of rules that no longer exist or changed shape are dropped."""

        def fits(rule: str, labels: Sequence[str]) -> bool:
            return rule in shapes and len(labels) == len(shapes[rule].labels)

        return cls(
            lines=int(data["lines"]),
            bytes=int(data["bytes"]),
            truncated=int(data["truncated"]),
            read_errors=int(data["read_errors"]),
            last_line=data.get("last_line"),
            rotations=Counter({str(k): int(v) for k, v in data["rotations"].items()}),
            matches=Counter(
                {(r, tuple(lb)): int(n) for r, lb, n in data["matches"] if fits(r, lb)}
            ),
            overflow=Counter({r: int(n) for r, n in data["overflow"].items() if r in shapes}),
            admitted={(r, lb): set(v) for r, lb, v in data["admitted"] if r in shapes},
            breakers={str(b): str(s) for b, s in data["breakers"].items()},
            transitions=Counter({(b, to): int(n) for b, to, n in data["transitions"]}),
        )
