"""Docker Engine `/events` -> counters. Pure: no I/O, no docker SDK.

The ledger counts each container event once, across reconnects and botwatch restarts: the
stream is reopened with `since` a little before the newest event counted, and the events
of that overlap are recognised by (time, container, action). Counters are kept per
container *name*, so a container that compose recreates goes on counting where the old one
stopped; the names of containers gone for FORGET_AFTER are dropped, so one-off containers
with random names do not pile up.

OOM kills come from two places: the `oom` event, and an inspect that shows State.OOMKilled
for a run that ended after counting began and whose OOM no event announced (the event was
missed while the engine or botwatch was away, or this engine never sends it).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import CounterMetricFamily
from prometheus_client.metrics_core import Metric

NS = 1_000_000_000
# The events /metrics counts, as the issue and the runbooks name them.
COUNTED = ("die", "oom", "restart", "kill", "start", "stop", "health_status")
# Events that cannot change what inspect shows; every other one refreshes the container.
NO_REFRESH_PREFIXES = ("exec", "attach", "detach", "top", "resize", "export", "copy", "commit")
# Actions whose container is gone: the snapshot drops it without asking the engine.
REMOVED = ("destroy", "remove")
# How far before the newest counted event a reconnect asks the engine to start again:
# engines may write events slightly out of order (podman's come from several processes).
OVERLAP_NS = 5 * NS
FORGET_AFTER = 3600.0
# Exit codes are 0..255; anything else the engine reports is one label value.
OTHER_EXIT = "other"


class JsonLines:
    """The bytes of `/events` -> JSON documents. Engines write one document per line (Go's
    json.Encoder); a line that never ends is given up at MAX_LINE bytes."""

    MAX_LINE = 1 << 20

    def __init__(self) -> None:
        self._partial = b""

    def feed(self, chunk: bytes) -> tuple[list[Any], list[str]]:
        """-> (documents completed by `chunk`, one description per unusable line)."""
        *lines, self._partial = (self._partial + chunk).split(b"\n")
        errors = []
        if len(self._partial) > self.MAX_LINE:
            errors.append(f"event line over {self.MAX_LINE} bytes: {self._partial[:60]!r}")
            self._partial = b""
        docs = []
        for line in lines:
            if not line.strip():
                continue
            try:
                docs.append(json.loads(line))
            except ValueError as exc:
                errors.append(f"not JSON ({exc}): {line[:80]!r}")
        return docs, errors


@dataclass(frozen=True)
class Event:
    id: str
    name: str
    action: str  # "health_status", not Docker's "health_status: healthy"
    time_ns: int
    attributes: Mapping[str, str]
    exit_code: int | None = None

    @property
    def key(self) -> str:
        return f"{self.time_ns}:{self.id}:{self.action}"

    @property
    def refreshes(self) -> bool:
        return not self.action.startswith(NO_REFRESH_PREFIXES)


class MalformedEvent(Exception):
    """A document on the event stream that is not a usable event (the message says why)."""


def parse_event(doc: Any) -> Event | None:
    """A container event from one `/events` document; None for other types.

    Raises MalformedEvent for a container event without the fields every engine sends.
    """
    if not isinstance(doc, dict):
        raise MalformedEvent(f"not an object: {str(doc)[:80]!r}")
    if (doc.get("Type") or doc.get("type")) != "container":
        return None
    raw_action = doc.get("Action") or doc.get("status")
    actor = doc.get("Actor")
    actor = actor if isinstance(actor, dict) else {}
    cid = actor.get("ID") or doc.get("id")
    if not isinstance(raw_action, str) or not raw_action or not isinstance(cid, str) or not cid:
        raise MalformedEvent(f"container event without Action or ID: {json.dumps(doc)[:120]}")
    # Docker: "health_status: healthy", "exec_start: sh -c ..."; podman: "health_status".
    action = raw_action.split(":", 1)[0].strip()
    raw_attrs = actor.get("Attributes")
    attrs = {str(k): str(v) for k, v in raw_attrs.items()} if isinstance(raw_attrs, dict) else {}
    time_ns = doc.get("timeNano")
    if not isinstance(time_ns, int) or time_ns <= 0:
        seconds = doc.get("time")
        if not isinstance(seconds, int | float) or seconds <= 0:
            raise MalformedEvent(f"container event without time: {json.dumps(doc)[:120]}")
        time_ns = int(seconds * NS)
    exit_code = None
    if action == "die":
        try:
            exit_code = int(attrs.get("exitCode", ""))
        except ValueError:
            exit_code = None
    return Event(cid, attrs.get("name", ""), action, time_ns, attrs, exit_code)


def exit_label(code: int) -> str:
    return str(code) if 0 <= code <= 255 else OTHER_EXIT


@dataclass
class Ledger:
    """Event counters per container name, and what it takes to count each event once."""

    # Counting began here (ns): an OOM an inspect shows for a run that ended before it
    # happened before botwatch watched, and is not counted.
    horizon_ns: int
    events: dict[str, dict[str, int]] = field(default_factory=dict)
    ooms: dict[str, int] = field(default_factory=dict)
    exits: dict[str, dict[str, int]] = field(default_factory=dict)
    # Per name: the time of the OOM counted last (an event's time, or an inferred run's end).
    last_oom_ns: dict[str, int] = field(default_factory=dict)
    newest_ns: int = 0
    # Keys of events counted within OVERLAP_NS of the newest: what a reopened stream repeats.
    recent: dict[str, int] = field(default_factory=dict)
    # Per name: when it was last seen in a snapshot (Unix seconds).
    seen: dict[str, float] = field(default_factory=dict)
    malformed: int = 0

    def since_ns(self) -> int:
        """Where a (re)opened event stream starts: the overlap before the newest event."""
        return max(self.horizon_ns, self.newest_ns - OVERLAP_NS)

    def count(self, event: Event) -> bool:
        """Count a selected container's event; False if it was counted before."""
        if event.key in self.recent or event.time_ns < self.newest_ns - OVERLAP_NS:
            return False
        self.recent[event.key] = event.time_ns
        if event.time_ns > self.newest_ns:
            self.newest_ns = event.time_ns
            floor = self.newest_ns - OVERLAP_NS
            self.recent = {k: t for k, t in self.recent.items() if t >= floor}
        name = event.name
        self._ensure(name)
        if event.action in COUNTED:
            self.events[name][event.action] += 1
        if event.action == "oom" and event.time_ns > self.last_oom_ns.get(name, 0):
            self.ooms[name] += 1
            self.last_oom_ns[name] = event.time_ns
        if event.exit_code is not None:
            label = exit_label(event.exit_code)
            self.exits[name][label] = self.exits[name].get(label, 0) + 1
        return True

    def infer_oom(self, name: str, started_ns: int | None, finished_ns: int | None) -> bool:
        """An inspect says this run was OOM-killed: count it unless an event already did."""
        if finished_ns is None or finished_ns <= self.horizon_ns:
            return False
        last = self.last_oom_ns.get(name, 0)
        if last >= finished_ns or (started_ns is not None and last >= started_ns):
            return False  # counted: by its event (within the run) or by an earlier inference
        self._ensure(name)
        self.ooms[name] += 1
        self.last_oom_ns[name] = finished_ns
        return True

    def present(self, names: Iterable[str], now: float) -> bool:
        """The names in a fresh snapshot get (zeroed) series; long-gone ones are dropped.

        Returns True when something changed that a checkpoint should keep.
        """
        changed = False
        for name in names:
            changed |= name not in self.seen
            self.seen[name] = now
            self._ensure(name)
        for name in [n for n, t in self.seen.items() if now - t > FORGET_AFTER]:
            for table in (self.seen, self.events, self.ooms, self.exits, self.last_oom_ns):
                table.pop(name, None)
            changed = True
        return changed

    def _ensure(self, name: str) -> None:
        # Series start at 0 when a container is first seen, so increase() sees its first event.
        if name not in self.events:
            self.events[name] = dict.fromkeys(COUNTED, 0)
            self.ooms.setdefault(name, 0)
            self.exits.setdefault(name, {})

    def to_json(self) -> dict[str, Any]:
        """A copy, taken on the loop: the checkpoint thread serialises it while counting
        goes on."""
        return {
            "horizon_ns": self.horizon_ns,
            "events": {name: dict(counts) for name, counts in self.events.items()},
            "ooms": dict(self.ooms),
            "exits": {name: dict(counts) for name, counts in self.exits.items()},
            "last_oom_ns": dict(self.last_oom_ns),
            "newest_ns": self.newest_ns,
            "recent": dict(self.recent),
            "seen": dict(self.seen),
            "malformed": self.malformed,
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Ledger:
        """Raises KeyError, TypeError, ValueError or AttributeError for a document this
        version cannot use."""

        def counts(value: Any) -> dict[str, int]:
            return {str(k): int(v) for k, v in dict(value).items()}

        ledger = cls(
            horizon_ns=int(doc["horizon_ns"]),
            events={
                str(n): {**dict.fromkeys(COUNTED, 0), **counts(v)} for n, v in doc["events"].items()
            },
            ooms=counts(doc["ooms"]),
            exits={str(n): counts(v) for n, v in doc["exits"].items()},
            last_oom_ns=counts(doc["last_oom_ns"]),
            newest_ns=int(doc["newest_ns"]),
            recent=counts(doc["recent"]),
            seen={str(n): float(t) for n, t in doc["seen"].items()},
            malformed=int(doc.get("malformed", 0)),
        )
        for name in ledger.seen:
            ledger._ensure(name)
        for table in ledger.events.values():
            for action in COUNTED:
                table.setdefault(action, 0)
        return ledger


def ledger_families(ledger: Ledger) -> list[Metric]:
    label = ["container"]
    events = CounterMetricFamily(
        "botwatch_container_events",
        "Container events from the engine's event stream, by action.",
        labels=["container", "event"],
    )
    ooms = CounterMetricFamily(
        "botwatch_container_oom_kills",
        "Runs of the container ended by the OOM killer (oom events, and inspects showing "
        "OOMKilled for runs no event announced).",
        labels=label,
    )
    exits = CounterMetricFamily(
        "botwatch_container_exits",
        'Exits (die events) by exit code ("other" outside 0-255).',
        labels=["container", "exit_code"],
    )
    malformed = CounterMetricFamily(
        "botwatch_docker_events_malformed",
        "Documents on the event stream that were not a usable event.",
        value=ledger.malformed,
    )
    for name in sorted(ledger.events):
        for action in COUNTED:
            events.add_metric([name, action], ledger.events[name].get(action, 0))
        ooms.add_metric([name], ledger.ooms.get(name, 0))
        for code, n in sorted(ledger.exits.get(name, {}).items()):
            exits.add_metric([name, code], n)
    return [events, ooms, exits, malformed]
