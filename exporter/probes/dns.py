"""`dns`: resolve a name: success, time, number of addresses.

SKELETON: the config model below is the contract (its class name and `type` are used by
exporter/probes/models.py); the implementation is to be written.
"""

from __future__ import annotations

from typing import Literal

from exporter.probes.api import Check, FamilySpec, ProbeConfig, Watch
from exporter.threads import BlockingCalls

TYPE = "dns"
REASONS: tuple[str, ...] = ()
FAMILIES: tuple[FamilySpec, ...] = ()


class DnsProbeConfig(ProbeConfig):
    type: Literal["dns"]
    host: str  # the name to resolve, e.g. fapi.binance.com
    server: str | None = None  # "ip:port" of a DNS server to ask; None: the system resolver
    record: Literal["A", "AAAA"] = "A"


def build(config: DnsProbeConfig, blocking: BlockingCalls) -> Check | Watch:
    raise NotImplementedError("dns probes are not implemented yet")
