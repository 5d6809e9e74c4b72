"""Series of many sources gathered into one metric family per name, in a stable order.

Collectors whose samples come from many targets (probes, SNMP devices) describe each family
once (a spec: name without `_total`/`_info`, help, kind, label names) and add samples to it;
a family declared but without samples is still served, so HELP and TYPE stay put while a
target is down.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal, Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.metrics_core import Metric

Kind = Literal["gauge", "counter", "info"]


class Spec(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def help(self) -> str: ...
    @property
    def kind(self) -> Kind: ...
    @property
    def labels(self) -> tuple[str, ...]: ...


class FamilySet:
    def __init__(self, declared: Iterable[Spec] = ()) -> None:
        self._families: dict[str, tuple[Spec, Metric]] = {}
        for spec in declared:
            self.declare(spec)

    def declare(self, spec: Spec) -> None:
        known = self._families.get(spec.name)
        if known is None:
            self._families[spec.name] = (spec, new_family(spec))
        elif known[0] != spec:
            raise ValueError(f"{spec.name}: declared twice, differently")

    def add_values(self, spec: Spec, labels: Sequence[str], value: float = 1.0) -> None:
        """One sample: its label values in the order of spec.labels (info: value unused)."""
        self.declare(spec)
        family = self._families[spec.name][1]
        if isinstance(family, InfoMetricFamily):
            family.add_metric(labels, {})
        else:
            family.add_metric(labels, value)  # type: ignore[attr-defined]

    def families(self) -> list[Metric]:
        return [family for _, (_, family) in sorted(self._families.items())]


def new_family(spec: Spec) -> Metric:
    labels = list(spec.labels)
    if spec.kind == "counter":
        return CounterMetricFamily(spec.name, spec.help, labels=labels)
    if spec.kind == "info":
        return InfoMetricFamily(spec.name, spec.help, labels=labels)
    return GaugeMetricFamily(spec.name, spec.help, labels=labels)


def reload_families(prefix: str, ok_help: str, subject: str, ok: bool, at: float) -> list[Metric]:
    """The pair a reloadable file is watched by: `{prefix}_last_reload_successful` and
    `{prefix}_last_reload_success_timestamp_seconds` (Prometheus' own names for its config)."""
    return [
        GaugeMetricFamily(f"{prefix}_last_reload_successful", ok_help, value=int(ok)),
        GaugeMetricFamily(
            f"{prefix}_last_reload_success_timestamp_seconds",
            f"When {subject} was last loaded successfully, Unix time.",
            value=at,
        ),
    ]
