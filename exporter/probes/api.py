"""What a probe type is, and what it hands the `probes` collector.

A probe type is a module under exporter/probes/ with:
- a config model (`type: Literal["NAME"]`, deriving from `ProbeConfig`), listed in
  exporter/probes/models.py, which makes it part of the `probes:` list's tagged union;
- `FAMILIES`: the metric families it serves besides the common ones, and `REASONS`: the
  failure reasons it can give (each one's counter starts at 0);
- `build(config) -> Check | Watch`, importing its third-party library inside, so that
  validating a config costs nothing for types not in use.

A **Check** runs once per `interval` under `timeout` (the collector schedules and times it);
a **Watch** holds a connection open for as long as it runs (a WebSocket feed) and reports
its own state. Neither may raise out for a failed target: a failure is a Result (Check) or
state (Watch) with a reason. What they put in errors and labels never holds a secret: the
collector's log and landing page redact configured secret values, labels are never redacted.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Protocol, runtime_checkable

from pydantic import Field, field_validator
from pydantic_core import PydanticCustomError

from exporter import families
from exporter.families import Kind
from exporter.models import CollectorConfig


@dataclass(frozen=True)
class FamilySpec:
    """A metric family: its name without `_total` / `_info`, help, kind and label names."""

    name: str
    help: str
    kind: Kind = "gauge"
    labels: tuple[str, ...] = ("probe",)


SUCCESS = FamilySpec("botwatch_probe_success", "1 if the probe's last check succeeded.")
DURATION = FamilySpec(
    "botwatch_probe_duration_seconds", "How long the probe's last check took, failed or not."
)
CHECKS = FamilySpec("botwatch_probe_checks", "Checks the probe has run.", "counter")
FAILURES = FamilySpec(
    "botwatch_probe_failures",
    "Failed checks by reason (timeout, refused, dns, tls, status, body, ...).",
    "counter",
    ("probe", "reason"),
)
LAST_SUCCESS = FamilySpec(
    "botwatch_probe_last_success_timestamp_seconds", "When the probe last succeeded, Unix time."
)
# What every probe serves; a Watch serves SUCCESS itself (1 while its target is healthy).
COMMON = (SUCCESS, DURATION, CHECKS, FAILURES, LAST_SUCCESS)


@dataclass(frozen=True)
class Sample:
    family: FamilySpec
    labels: Mapping[str, str]  # every label of the family, `probe` included
    value: float = 1.0  # info families: always 1


@dataclass
class Result:
    """One check's outcome. `reason` (one of the type's REASONS) and `error` (one line for
    the log) are set when it failed; `samples` are the type's own series for this check."""

    success: bool
    reason: str | None = None
    error: str | None = None
    samples: list[Sample] = field(default_factory=list)


@runtime_checkable
class Check(Protocol):
    async def check(self) -> Result: ...


@runtime_checkable
class Watch(Protocol):
    """Runs until cancelled, calling `changed()` whenever its state changed; never raises
    for a failing target (it reconnects by itself). `samples()` is called on the loop."""

    async def run(self, changed: Callable[[], None]) -> None: ...

    def samples(self) -> Iterable[Sample]: ...


class FamilySet(families.FamilySet):
    """Probe samples gathered into one family per name."""

    def add(self, sample: Sample) -> None:
        spec = sample.family
        self.add_values(
            spec, [str(sample.labels.get(label, "")) for label in spec.labels], sample.value
        )


# Config ------------------------------------------------------------------------------------

PROBE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")


class ProbeConfig(CollectorConfig):
    """What every probe has: `name` (its `probe` label), `type`, `enabled`, `interval` and
    `timeout` (for a Check: the whole check; for a Watch: each step, e.g. a handshake)."""

    default_timeout = 5.0

    name: str
    type: str  # each type narrows it to its Literal, the union's tag

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not PROBE_NAME.match(value):
            raise PydanticCustomError("name", "must match [A-Za-z0-9][A-Za-z0-9_.:-]*")
        return value


Port = Annotated[int, Field(ge=1, le=65535)]
