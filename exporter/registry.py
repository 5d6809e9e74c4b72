"""The one table of collectors: name, config model, factory and kind.

Config, CLI and the landing page all derive from it. A collector module registers itself
with @collector(...) when imported; it must import its third-party library inside the
factory, so that validating a config costs nothing for collectors that are not enabled.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from exporter.collector import Context, Poller, Stream
from exporter.models import CollectorConfig

BUILTIN_MODULES = (
    "exporter.collectors.host",
    "exporter.collectors.docker",
    "exporter.collectors.systemd",
    "exporter.collectors.oom",
    "exporter.collectors.sqlite",
    "exporter.collectors.files",
    "exporter.collectors.process",
    "exporter.collectors.snmp",
    "exporter.logs.collector",
    "exporter.probes.collector",
)

Kind = Literal["poller", "stream"]
Factory = Callable[[Any, Context], Poller | Stream]


@dataclass(frozen=True)
class CollectorSpec:
    name: str
    config: type[CollectorConfig]
    factory: Factory
    kind: Kind
    help: str
    # Its config is a top-level section of its own (`logs:`) rather than `collectors.NAME`.
    top_level: bool = False


_SPECS: dict[str, CollectorSpec] = {}


def collector(
    name: str, *, config: type[CollectorConfig], kind: Kind, help: str, top_level: bool = False
) -> Callable[[Factory], Factory]:
    def register(factory: Factory) -> Factory:
        if name in _SPECS and _SPECS[name].factory is not factory:
            raise RuntimeError(f"collector {name!r} registered twice")
        _SPECS[name] = CollectorSpec(name, config, factory, kind, help, top_level)
        return factory

    return register


def specs() -> dict[str, CollectorSpec]:
    for module in BUILTIN_MODULES:
        importlib.import_module(module)
    return dict(sorted(_SPECS.items()))
