"""What /metrics serves: each collector's latest chunk, its health, and botwatch's own state.

Everything here is mutated on the event loop only; render threads receive immutable chunks.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from exporter import __version__
from exporter.families import reload_families
from exporter.logs.rules import available_engine
from exporter.redact import Redactor
from exporter.render import EMPTY, Chunk
from exporter.runbooks.catalog import PLACEHOLDER_BASES, PLACEHOLDER_GRAFANA, load_catalog
from exporter.runbooks.info import INFO_METRIC, runbook_info
from exporter.websecurity import WEB_METRICS

OWN_METRICS = WEB_METRICS | frozenset(
    {
        "botwatch_collector_up",
        "botwatch_collector_duration_seconds",
        "botwatch_collector_errors",
        "botwatch_collector_last_success_timestamp_seconds",
        "botwatch_build_info",
        "botwatch_config_last_reload_successful",
        "botwatch_config_last_reload_success_timestamp_seconds",
        INFO_METRIC,
    }
)


@dataclass
class CollectorState:
    name: str
    kind: str
    up: bool = False
    finished_first_round: bool = False
    duration: float | None = None
    errors_total: int = 0
    last_success: float | None = None
    last_error: str | None = None
    last_error_time: float | None = None
    chunk: Chunk = field(default=EMPTY)


class Store:
    def __init__(self, redact: Redactor | None = None) -> None:
        self.redact = redact or Redactor()
        self.states: dict[str, CollectorState] = {}
        self.version = 0
        self.reload_ok = True
        self.reload_time = time.time()
        self.runbook_bases: dict[str, str] = dict(PLACEHOLDER_BASES)
        self.grafana_url = PLACEHOLDER_GRAFANA
        # One gauge per catalog alert; rebuilt only when the configured links change.
        self._runbook_info = runbook_info(load_catalog(), self.runbook_bases)
        # More of botwatch's own families (the web config's), served with every scrape.
        self.extra_own: list[Callable[[], list[Metric]]] = []

    def _changed(self) -> None:
        self.version += 1

    def touch(self) -> None:
        """Something behind `extra_own` changed: cached bodies are stale."""
        self._changed()

    def add(self, name: str, kind: str) -> CollectorState:
        self.states[name] = state = CollectorState(name, kind)
        self._changed()
        return state

    def remove(self, name: str) -> None:
        if self.states.pop(name, None) is not None:
            self._changed()

    def reserved_for(self, name: str) -> frozenset[str]:
        """Family names a collector may not use: botwatch's own and other collectors'."""
        others = (s.chunk.names for n, s in self.states.items() if n != name)
        return OWN_METRICS.union(*others)

    def publish(self, name: str, chunk: Chunk) -> None:
        self.states[name].chunk = chunk
        self._changed()

    def succeeded(self, name: str, duration: float | None = None) -> bool:
        """Record a good round; True when it ends a failure streak."""
        state = self.states[name]
        recovered = not state.up and state.finished_first_round
        state.up = True
        state.finished_first_round = True
        state.duration = duration
        state.last_success = time.time()
        self._changed()
        return recovered

    def failed(
        self, name: str, error: str, duration: float | None = None, keep_series: bool = False
    ) -> bool:
        """Record a failure; True when it starts a failure streak.

        A poller's series go with a failed round (stale gauges lie); a stream keeps its
        counters through a reconnect, since dropping them would break rate().
        """
        state = self.states[name]
        first = state.up or not state.finished_first_round
        state.up = False
        state.finished_first_round = True
        state.duration = duration
        state.errors_total += 1
        state.last_error = self.redact(error)
        state.last_error_time = time.time()
        if not keep_series:
            state.chunk = EMPTY
        self._changed()
        return first

    def set_reload(self, ok: bool) -> None:
        self.reload_ok = ok
        if ok:
            self.reload_time = time.time()
        self._changed()

    def set_runbooks(self, bases: Mapping[str, str], grafana_url: str) -> None:
        """The configured runbook links (`runbooks:`), for the info metric and the landing page."""
        if dict(bases) == self.runbook_bases and grafana_url == self.grafana_url:
            return
        self.runbook_bases = dict(bases)
        self.grafana_url = grafana_url
        self._runbook_info = runbook_info(load_catalog(), self.runbook_bases)
        self._changed()

    @property
    def ready(self) -> bool:
        return all(s.finished_first_round for s in self.states.values())

    def chunks(self, names: Iterable[str] | None = None) -> list[Chunk]:
        selected = self.states if names is None else set(names)
        return [s.chunk for n, s in sorted(self.states.items()) if n in selected]

    def own_families(self, names: Iterable[str] | None = None) -> list[Metric]:
        selected = sorted(self.states if names is None else set(names) & set(self.states))
        up = GaugeMetricFamily(
            "botwatch_collector_up",
            "1 if the collector's last round succeeded.",
            labels=["collector"],
        )
        duration = GaugeMetricFamily(
            "botwatch_collector_duration_seconds",
            "How long the collector's last round took (pollers only).",
            labels=["collector"],
        )
        errors = CounterMetricFamily(
            "botwatch_collector_errors",
            "Failed rounds (pollers) or failures (streams) since botwatch started.",
            labels=["collector"],
        )
        last = GaugeMetricFamily(
            "botwatch_collector_last_success_timestamp_seconds",
            "When the collector last succeeded, Unix time.",
            labels=["collector"],
        )
        for name in selected:
            state = self.states[name]
            if state.finished_first_round:  # "down" before the first round would be a lie
                up.add_metric([name], 1 if state.up else 0)
            errors.add_metric([name], state.errors_total)
            if state.duration is not None:
                duration.add_metric([name], state.duration)
            if state.last_success is not None:
                last.add_metric([name], state.last_success)
        build = GaugeMetricFamily(
            "botwatch_build_info",
            "botwatch's version, Python version and log rule engine (hyperscan or re); always 1.",
            labels=["version", "python", "log_engine"],
        )
        build.add_metric([__version__, platform.python_version(), available_engine()], 1)
        own = [up, duration, errors, last, build]
        own += reload_families(
            "botwatch_config",
            "1 if the last config load (start-up or SIGHUP) succeeded.",
            "the config",
            self.reload_ok,
            self.reload_time,
        )
        own += [family for provider in self.extra_own for family in provider()]
        # The catalog (a series per alert) belongs to the full scrape; a collect[] scrape asks
        # for particular collectors, and several such jobs would each repeat it.
        return own if names is not None else [*own, self._runbook_info]
