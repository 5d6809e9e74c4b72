"""systemd units over D-Bus (dbus-fast): state, sub-state, results, restarts, exit status, memory.

A stream: on connecting it subscribes to systemd's signals, then lists the units (ListUnits)
and reads the selected ones (GetAll of the Unit and, for services, Service interfaces). A
PropertiesChanged of a selected unit, or a UnitNew of one that matches, reads that unit again
at once, so a unit that fails is on /metrics within a second; the list is read again every
`interval` and replaces the snapshot (exporter.snapshot), so units that went are dropped.

Every call has the collector's timeout. A bus that is missing, a systemd that leaves it or
stops answering, a connection that drops: the run fails, the collector is down (its gauges
go), and the supervisor reconnects with backoff. None of it can reach a scrape.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import structlog
from prometheus_client.metrics_core import Metric

from exporter import dbusapi
from exporter.collector import Context, first_error
from exporter.collectors.systemdstate import UnitReading, unit_families
from exporter.dbusapi import BusError, RemoteError
from exporter.fields import Regex, compile_regex
from exporter.models import CollectorConfig
from exporter.registry import collector
from exporter.snapshot import Snapshot

if TYPE_CHECKING:
    from dbus_fast import Message
    from dbus_fast.aio import MessageBus

log = structlog.get_logger("exporter.collectors.systemd")

SYSTEMD = "org.freedesktop.systemd1"
MANAGER_PATH = "/org/freedesktop/systemd1"
MANAGER = f"{SYSTEMD}.Manager"
UNIT = f"{SYSTEMD}.Unit"
SERVICE = f"{SYSTEMD}.Service"
UNIT_PATHS = f"{MANAGER_PATH}/unit"
# A unit that went between ListUnits and GetAll, or was never there.
GONE = {
    "org.freedesktop.DBus.Error.UnknownObject",
    "org.freedesktop.DBus.Error.UnknownInterface",
    "org.freedesktop.systemd1.NoSuchUnit",
}
MATCH_RULES = (
    f"type='signal',sender='{SYSTEMD}',interface='{dbusapi.PROPERTIES}',"
    f"member='PropertiesChanged',path_namespace='{UNIT_PATHS}'",
    f"type='signal',sender='{SYSTEMD}',interface='{MANAGER}',path='{MANAGER_PATH}'",
    f"type='signal',sender='{dbusapi.DBUS}',interface='{dbusapi.DBUS}',"
    f"member='NameOwnerChanged',arg0='{SYSTEMD}'",
)


class SystemdConfig(CollectorConfig):
    """Off unless enabled (the alphaengine preset enables it): a host without systemd must
    not get a collector that is always down because the config says nothing about it."""

    enabled: bool = False
    address: str | None = None  # None: $DBUS_SYSTEM_BUS_ADDRESS, else the system bus socket
    include: Regex = compile_regex(r"\.service$")
    exclude: Regex = compile_regex("^$")

    def selects(self, name: str) -> bool:
        return bool(self.include.search(name)) and not self.exclude.search(name)


class SystemdCollector:
    def __init__(self, config: SystemdConfig, ctx: Context) -> None:
        self.config = config
        self.ctx = ctx
        self.log = log.bind(collector=ctx.name)
        self.address = dbusapi.system_bus_address(config.address)
        # By unit object path; empty while disconnected (no stale gauges).
        self.snapshot: Snapshot[str, UnitReading] = Snapshot()
        self._bus: MessageBus | None = None
        self._lost: asyncio.Future[str] | None = None
        self._subscribe_warned = False

    async def run(self, changed: Callable[[], None]) -> None:
        self._lost = asyncio.get_running_loop().create_future()
        bus = self._bus = await dbusapi.connect(self.address, self.config.timeout)
        try:
            bus.add_message_handler(self._on_message)
            for rule in MATCH_RULES:
                await dbusapi.add_match(bus, rule, self.config.timeout)
            await self._subscribe()
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._watch(bus))
                tasks.create_task(self.snapshot.refresh_forever(self._read_units, changed))
                await self._poll()
                changed()
                tasks.create_task(self._poller(changed))
        except BaseExceptionGroup as group:
            raise first_error(group) from None
        finally:
            self._bus = None
            self.snapshot.clear()
            bus.disconnect()

    def families(self) -> list[Metric]:
        return unit_families(list(self.snapshot.items.values()))

    async def close(self) -> None:
        bus, self._bus = self._bus, None
        if bus is not None:
            bus.disconnect()

    # Parts ---------------------------------------------------------------------------

    async def _subscribe(self) -> None:
        # systemd sends unit signals only while some client is subscribed.
        try:
            await self._call(MANAGER_PATH, MANAGER, "Subscribe")
        except RemoteError as exc:
            if not self._subscribe_warned:
                self.log.warning(
                    "systemd Subscribe failed: changes wait for the poll", error=str(exc)
                )
            self._subscribe_warned = True

    async def _watch(self, bus: MessageBus) -> None:
        """Ends the run when the connection drops or systemd leaves the bus."""
        assert self._lost is not None
        disconnect = asyncio.ensure_future(bus.wait_for_disconnect())  # type: ignore[no-untyped-call]
        try:
            done, _ = await asyncio.wait(
                {disconnect, self._lost}, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            disconnect.cancel()
        if self._lost in done:
            raise BusError(self._lost.result())
        raise BusError(f"connection to {self.address} lost")

    async def _poller(self, changed: Callable[[], None]) -> None:
        while True:
            await asyncio.sleep(self.config.interval)
            await self._poll()
            changed()

    async def _poll(self) -> None:
        began = self.snapshot.begin_poll()
        timeout = self.config.timeout
        try:
            # One deadline for the whole round, however many units it reads.
            async with asyncio.timeout(timeout):
                (units,) = await self._call(MANAGER_PATH, MANAGER, "ListUnits")
                paths = {str(u[6]): None for u in units if self.config.selects(str(u[0]))}
                found = await self._read_units(paths)
        except TimeoutError:
            raise BusError(f"reading the units: no answer within {timeout:g}s") from None
        self.snapshot.replace({p: r for p, r in found.items() if r is not None}, began)

    async def _read_units(
        self, paths: Mapping[str, UnitReading | None]
    ) -> dict[str, UnitReading | None]:
        """Fresh readings of these unit paths, all at once; None for units gone or not
        selected. (What the snapshot holds of them is not needed: a read is complete.)"""
        keys = list(paths)
        readings = await asyncio.gather(*(self._read_unit(p) for p in keys))
        return dict(zip(keys, readings, strict=True))

    async def _read_unit(self, path: str) -> UnitReading | None:
        try:
            unit = await self._get_all(path, UNIT)
            name = str(unit.get("Id") or "")
            if not self.config.selects(name):
                return None
            service = await self._get_all(path, SERVICE) if name.endswith(".service") else None
        except RemoteError as exc:
            if exc.name in GONE:
                return None
            raise
        return UnitReading(name, unit, service)

    async def _get_all(self, path: str, interface: str) -> dict[str, Any]:
        (props,) = await self._call(path, dbusapi.PROPERTIES, "GetAll", "s", [interface])
        return dict(props)

    async def _call(
        self, path: str, interface: str, member: str, signature: str = "", body: Any = None
    ) -> list[Any]:
        if self._bus is None:
            raise BusError("not connected")
        return await dbusapi.call(
            self._bus,
            member,
            signature,
            body,
            destination=SYSTEMD,
            path=path,
            interface=interface,
            timeout=self.config.timeout,
        )

    def _on_message(self, message: Message) -> None:
        """Signals, on the loop: each one names a unit to read again (or none)."""
        member, body = message.member, message.body
        if member == "PropertiesChanged":
            if message.path in self.snapshot.items:
                self.snapshot.touched(message.path)
        elif member == "UnitNew" and len(body) == 2:
            if self.config.selects(str(body[0])):
                self.snapshot.touched(str(body[1]))
        elif member == "UnitRemoved" and len(body) == 2:
            # Unloaded (as the next ListUnits would show); a reloaded one comes back with
            # UnitNew. Reading it now would only make systemd load it again.
            self.snapshot.removed(str(body[1]))
        elif (
            member == "NameOwnerChanged"
            and body == [SYSTEMD, body[1], ""]
            and self._lost is not None
            and not self._lost.done()
        ):
            self._lost.set_result(f"{SYSTEMD} left the bus")


@collector(
    "systemd",
    config=SystemdConfig,
    kind="stream",
    help="systemd units over D-Bus: state, sub-state, result, restarts, exit status, memory.",
)
def build(config: SystemdConfig, ctx: Context) -> SystemdCollector:
    return SystemdCollector(config, ctx)
