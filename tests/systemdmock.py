"""A real D-Bus daemon with python-dbusmock's systemd template, for the systemd collector.

    mock = SystemdMock(tmp_path)      # dbus-daemon on a private socket, the mock on it
    await mock.add_unit("alphaengine-bot.service", ActiveState="active", SubState="running",
                        service={"NRestarts": 0, "Result": "success"})
    await mock.update("alphaengine-bot.service", ActiveState="failed")  # PropertiesChanged
    mock.stop_systemd(); mock.start_systemd()   # the bus stays; the mock goes and comes back
    mock.close()

The template (Debian's python3-dbusmock, run with Debian's /usr/bin/python3, which has
dbus-python) lacks what the collector reads besides ActiveState: SubState, the
org.freedesktop.systemd1.Service interface (NRestarts, Result, ExecMainStatus, MainPID,
MemoryCurrent, ControlGroup), ListUnits and Subscribe. They are added here, through the mock's
own D-Bus API (org.freedesktop.DBus.Mock), from the test process with dbus-fast.
Both processes run in the foreground and are stopped by PID (PID 1 here reaps no orphans).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from dbus_fast import Message, MessageType, Variant
from dbus_fast.aio import MessageBus

from tests.servers import stop_process
from tests.support import POLL_STEP

SYSTEMD = "org.freedesktop.systemd1"
MANAGER_PATH = "/org/freedesktop/systemd1"
MANAGER = f"{SYSTEMD}.Manager"
UNIT = f"{SYSTEMD}.Unit"
SERVICE = f"{SYSTEMD}.Service"
MOCK = "org.freedesktop.DBus.Mock"
START_TIMEOUT = 30.0
TEMPLATE_UNIT_PROPERTIES = {"Id", "Names", "LoadState", "ActiveState"}

# Executed inside the mock (dbus-python): `self` is the manager, `objects` every mock object.
LIST_UNITS = f"""
ret = []
for name, path in sorted(self.units.items()):
    props = objects[path].props[{UNIT!r}]
    ret.append((name, '', props.get('LoadState', 'loaded'), props.get('ActiveState', ''),
                props.get('SubState', ''), '', dbus.ObjectPath(path), dbus.UInt32(0), '',
                dbus.ObjectPath('/')))
"""

# D-Bus signatures of what the collector reads, so values arrive with their real types.
SIGNATURES = {
    "Id": "s",
    "LoadState": "s",
    "ActiveState": "s",
    "SubState": "s",
    "ActiveEnterTimestamp": "t",
    "NRestarts": "u",
    "Result": "s",
    "ExecMainStatus": "i",
    "ExecMainCode": "i",
    "MainPID": "u",
    "MemoryCurrent": "t",
    "ControlGroup": "s",
}


def variants(props: dict[str, Any]) -> dict[str, Variant]:
    return {name: Variant(SIGNATURES[name], value) for name, value in props.items()}


class SystemdMock:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.socket = root / "system_bus_socket"
        self.address = f"unix:path={self.socket}"
        self.units: dict[str, str] = {}  # name -> object path
        self._bus: subprocess.Popen[bytes] | None = None
        self._systemd: subprocess.Popen[bytes] | None = None
        self._start_bus()
        self.start_systemd()

    def _start_bus(self) -> None:
        self._bus = subprocess.Popen(
            ["dbus-daemon", "--session", "--nofork", "--nopidfile", f"--address={self.address}"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=open(self.root / "dbus-daemon.log", "wb"),  # noqa: SIM115
        )
        deadline = time.monotonic() + START_TIMEOUT
        while not self.socket.exists():
            if self._bus.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("dbus-daemon did not start")
            time.sleep(POLL_STEP)

    def start_systemd(self) -> None:
        """Start the mock systemd on the bus; returns once it owns its name."""
        log = open(self.root / "dbusmock.log", "ab")  # noqa: SIM115
        with log:
            self._systemd = subprocess.Popen(
                ["/usr/bin/python3", "-m", "dbusmock", "--template", "systemd"],
                env={**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": self.address},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while not asyncio.run(self._owned()):
            if self._systemd.poll() is not None or time.monotonic() > deadline:
                log_text = (self.root / "dbusmock.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"the systemd mock did not start: {log_text}")
            time.sleep(POLL_STEP)
        self.units = {}
        asyncio.run(self._manager_methods())

    def stop_systemd(self) -> None:
        """The mock goes away (its bus name vanishes); the bus stays."""
        if self._systemd is not None and self._systemd.poll() is None:
            self._systemd.terminate()
            self._systemd.wait(timeout=10)

    def kill_bus(self) -> None:
        """The bus daemon dies (SIGKILL: no goodbye signals); every connection drops."""
        if self._bus is not None and self._bus.poll() is None:
            self._bus.kill()
            self._bus.wait()

    def close(self) -> None:
        self.stop_systemd()
        stop_process(self._bus)

    # Calls into the mock -----------------------------------------------------------------

    async def call(
        self, path: str, interface: str, member: str, signature: str = "", body: Any = ()
    ) -> list[Any]:
        bus = await MessageBus(bus_address=self.address).connect()
        try:
            reply = await bus.call(
                Message(
                    destination=SYSTEMD,
                    path=path,
                    interface=interface,
                    member=member,
                    signature=signature,
                    body=list(body),
                )
            )
        finally:
            bus.disconnect()
        assert reply is not None
        if reply.message_type == MessageType.ERROR:
            raise RuntimeError(f"{member}: {reply.error_name}: {reply.body}")
        return list(reply.body)

    async def _owned(self) -> bool:
        with contextlib.suppress(OSError, RuntimeError, EOFError):
            bus = await MessageBus(bus_address=self.address).connect()
            try:
                reply = await bus.call(
                    Message(
                        destination="org.freedesktop.DBus",
                        path="/org/freedesktop/DBus",
                        interface="org.freedesktop.DBus",
                        member="NameHasOwner",
                        signature="s",
                        body=[SYSTEMD],
                    )
                )
            finally:
                bus.disconnect()
            return reply is not None and reply.body == [True]
        return False

    async def _manager_methods(self) -> None:
        await self.call(
            MANAGER_PATH,
            MOCK,
            "AddMethod",
            "sssss",
            [MANAGER, "ListUnits", "", "a(ssssssouso)", LIST_UNITS],
        )
        await self.call(
            MANAGER_PATH, MOCK, "AddMethod", "sssss", [MANAGER, "Subscribe", "", "", ""]
        )

    async def hang(self, method: str = "ListUnits") -> None:
        """Make a manager method never answer (the mock's only thread then sleeps)."""
        code = "import time; time.sleep(3600)"
        out = "a(ssssssouso)" if method == "ListUnits" else ""
        await self.call(MANAGER_PATH, MOCK, "AddMethod", "sssss", [MANAGER, method, "", out, code])

    async def add_unit(
        self, name: str, *, service: dict[str, Any] | None = None, **unit: Any
    ) -> str:
        await self.call(MANAGER_PATH, MOCK, "AddMockUnit", "s", [name])
        (path,) = await self.call(MANAGER_PATH, MANAGER, "GetUnit", "s", [name])
        self.units[name] = path
        # The template's own unit properties exist already: those are updated instead.
        new = {k: v for k, v in unit.items() if k not in TEMPLATE_UNIT_PROPERTIES}
        known = {k: v for k, v in unit.items() if k in TEMPLATE_UNIT_PROPERTIES}
        await self.call(path, MOCK, "AddProperties", "sa{sv}", [UNIT, variants(new)])
        if known:
            await self.call(path, MOCK, "UpdateProperties", "sa{sv}", [UNIT, variants(known)])
        if service is not None:
            await self.call(path, MOCK, "AddProperties", "sa{sv}", [SERVICE, variants(service)])
        # systemd announces a unit it loads; the template does not, so a collector that
        # listed the units a moment before would never hear of this one.
        await self.call(
            MANAGER_PATH,
            MOCK,
            "EmitSignal",
            "sssav",
            [MANAGER, "UnitNew", "so", [Variant("s", name), Variant("o", path)]],
        )
        return str(path)

    async def update(
        self, name: str, *, service: dict[str, Any] | None = None, **unit: Any
    ) -> None:
        """Change properties: the mock emits PropertiesChanged, as systemd does."""
        path = self.units[name]
        if service:
            await self.call(path, MOCK, "UpdateProperties", "sa{sv}", [SERVICE, variants(service)])
        if unit:
            await self.call(path, MOCK, "UpdateProperties", "sa{sv}", [UNIT, variants(unit)])
