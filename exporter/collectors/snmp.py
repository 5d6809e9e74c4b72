"""SNMP: network devices and hosts, every target walked concurrently each round.

Each target's walk runs under its own `timeout`. A target that does not answer or refuses
our credentials is one target down (`botwatch_snmp_up 0`, its data series absent, the
reason counted); one that answers a table with an error-status, or with varbinds of the
wrong type, loses that table or those values only (counted). Neither delays the other
targets beyond its own timeout nor fails the round. The pieces:

- snmpconfig.py: targets, credentials, modules, custom tables;
- snmpmodules.py: the OIDs each module walks and how varbinds become series (pure);
- snmpwalk.py: GETBULK table walks and GETs over any client;
- snmpclient.py: SNMPv2c over our own BER codec (snmpber.py; pysnmp's pyasn1 decoding
  costs ~65 µs a varbind, ours ~3 µs), SNMPv3 over pysnmp 7's asyncio API;
- snmpmetrics.py: families and value conversions (pure).

A client (socket, pysnmp transport target) is opened once per target and kept while the
target answers; after a failed round it is opened afresh (the name resolved again).
pysnmp is imported only when a target needs it (SNMPv3).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog
from prometheus_client.metrics_core import Metric

from exporter.collector import Context
from exporter.collectors.snmpclient import Engines, NativeClient, PysnmpClient
from exporter.collectors.snmpconfig import SnmpConfig, TargetConfig
from exporter.collectors.snmpmetrics import REASONS, Families, Problems, TargetView, self_samples
from exporter.collectors.snmpmodules import Module, Walked
from exporter.collectors.snmpwalk import Client, SnmpFailure, walk_target
from exporter.fields import format_duration
from exporter.redact import Redactor
from exporter.registry import collector
from exporter.supervise import describe

log = structlog.get_logger("exporter.collectors.snmp")
# What an agent does not answer at all, which therefore looks like a timeout on the wire.
SILENT = {
    "2c": "v2c: a wrong community is not answered either",
    "3": "v3: a wrong priv_key is not answered either",
}


class OpenClient(Client, Protocol):
    async def open(self) -> None: ...

    def close(self) -> None: ...

    def take_malformed(self) -> int: ...


@dataclass
class Target:
    config: TargetConfig
    modules: tuple[Module, ...]
    redact: Redactor
    client: OpenClient | None = None
    errors: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REASONS, 0))
    rows_seen: dict[str, int] = field(default_factory=dict)
    failing: str | None = None  # the reason of the failure streak it is in
    noted: frozenset[str] = frozenset()  # problem reasons of the last round

    @property
    def name(self) -> str:
        return self.config.label

    @property
    def per_try(self) -> float:
        """Each request's wait: all tries of one request fit in the target's timeout."""
        return self.config.timeout / (self.config.retries + 1)


@dataclass
class Outcome:
    target: Target
    walked: Walked | None
    problems: Problems
    notes: dict[str, str]
    duration: float
    failure: tuple[str, str] | None = None


class SnmpCollector:
    def __init__(self, config: SnmpConfig, ctx: Context, *, v2c_via_pysnmp: bool = False) -> None:
        """`v2c_via_pysnmp` walks v2c targets with pysnmp as well (the benchmark compares)."""
        self.config = config
        self.ctx = ctx
        self._v2c_via_pysnmp = v2c_via_pysnmp
        modules = config.modules()
        self.targets = [
            Target(t, tuple(modules[m] for m in t.modules), Redactor(t.secrets()))
            for t in config.targets
        ]
        used = {m.name: m for t in self.targets for m in t.modules}
        self._declared = [spec for module in used.values() for spec in module.families]
        self._engines = Engines()

    async def collect(self) -> list[Metric]:
        outcomes = await asyncio.gather(*(self._round(t) for t in self.targets))
        return self.families(outcomes)

    def families(self, outcomes: Sequence[Outcome]) -> list[Metric]:
        out = Families(self._declared)
        views = []
        for outcome in outcomes:
            target = outcome.target
            if outcome.walked is not None:
                for module in target.modules:
                    module.convert(target.name, outcome.walked, out, outcome.problems)
            for reason, count in outcome.problems.items():
                target.errors[reason] = target.errors.get(reason, 0) + count
            self._log(outcome)
            views.append(
                TargetView(target.name, outcome.failure is None, outcome.duration, target.errors)
            )
        self_samples(out, views)
        return out.families()

    async def close(self) -> None:
        for target in self.targets:
            if target.client is not None:
                target.client.close()
                target.client = None
        self._engines.close()

    async def _round(self, target: Target) -> Outcome:
        started = time.perf_counter()
        problems: Problems = Counter()
        notes: dict[str, str] = {}
        walked: Walked | None = None
        failure: tuple[str, str] | None = None
        try:
            async with asyncio.timeout(target.config.timeout):
                client = await self._client(target)
                walked = await walk_target(
                    client,
                    target.modules,
                    max_repetitions=target.config.max_repetitions,
                    max_varbinds=target.config.max_varbinds,
                    rows_seen=target.rows_seen,
                    problems=problems,
                    notes=notes,
                )
        except TimeoutError:
            timeout = format_duration(target.config.timeout)
            failure = (
                "timeout",
                f"no complete walk within {timeout} ({SILENT[target.config.version]})",
            )
        except SnmpFailure as exc:
            failure = (exc.reason, str(exc))
        except Exception as exc:
            failure = ("other", describe(exc))
        if target.client is not None:
            problems["malformed"] += target.client.take_malformed()
        if failure is not None:
            walked = None
            problems[failure[0]] += 1
            if target.client is not None:  # opened afresh next round
                target.client.close()
                target.client = None
        duration = time.perf_counter() - started
        return Outcome(target, walked, problems, notes, duration, failure)

    async def _client(self, target: Target) -> OpenClient:
        if target.client is None:
            config = target.config
            client: OpenClient
            if config.version == "2c" and not self._v2c_via_pysnmp:
                community = config.community.get_secret_value() if config.community else ""
                client = NativeClient(
                    config.host, config.port, community.encode(), target.per_try, config.retries
                )
            else:
                client = PysnmpClient(self._engines, config, target.per_try, config.retries)
            await client.open()
            target.client = client
        return target.client

    def _log(self, outcome: Outcome) -> None:
        target = outcome.target
        fields: dict[str, Any] = {"collector": self.ctx.name, "target": target.name}
        if outcome.failure is not None:
            reason, message = outcome.failure
            if target.failing != reason:
                log.warning(
                    "snmp target failed", **fields, reason=reason, error=target.redact(message)
                )
            else:
                log.debug("snmp target still failing", **fields, reason=reason)
            target.failing = reason
            return
        if target.failing is not None:
            log.info("snmp target recovered", **fields)
            target.failing = None
        problems = frozenset(r for r, n in outcome.problems.items() if n)
        if problems - target.noted:
            details = {r: outcome.notes.get(r, "") for r in sorted(problems)}
            log.warning(
                "snmp target answered with problems",
                **fields,
                problems={r: outcome.problems[r] for r in sorted(problems)},
                detail=target.redact("; ".join(d for d in details.values() if d)),
            )
        target.noted = problems


@collector(
    "snmp",
    config=SnmpConfig,
    kind="poller",
    help="Network devices and hosts over SNMP v2c/v3: interfaces, uptime, storage, CPU, "
    "custom OID tables (off unless targets are listed).",
)
def build(config: SnmpConfig, ctx: Context) -> SnmpCollector:
    return SnmpCollector(config, ctx)
