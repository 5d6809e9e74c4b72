"""The one place that talks D-Bus (dbus-fast, asyncio): connecting, calls with a timeout,
match rules, and errors as one line.

dbus-fast is imported lazily: a config without D-Bus parts never pays for it.
"""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dbus_fast.aio import MessageBus

SYSTEM_BUS = "unix:path=/var/run/dbus/system_bus_socket"
DBUS = "org.freedesktop.DBus"
DBUS_PATH = "/org/freedesktop/DBus"
PROPERTIES = "org.freedesktop.DBus.Properties"


class BusError(Exception):
    """A D-Bus failure, as one line: what was asked and what went wrong."""


def system_bus_address(address: str | None) -> str:
    """The configured address, else $DBUS_SYSTEM_BUS_ADDRESS, else the standard socket."""
    return address or os.environ.get("DBUS_SYSTEM_BUS_ADDRESS") or SYSTEM_BUS


async def connect(address: str, timeout: float) -> MessageBus:
    from dbus_fast.aio import MessageBus

    try:
        async with asyncio.timeout(timeout):
            return await MessageBus(bus_address=address, auth_timeout=timeout).connect()
    except TimeoutError:
        raise BusError(f"connect {address}: no answer within {timeout:g}s") from None
    except (OSError, EOFError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise BusError(f"connect {address}: {reason or type(exc).__name__}") from None
    except Exception as exc:  # dbus-fast's authentication errors have no common base
        raise BusError(f"connect {address}: {type(exc).__name__}: {exc}") from None


async def call(
    bus: MessageBus,
    member: str,
    signature: str = "",
    body: list[Any] | None = None,
    *,
    destination: str,
    path: str,
    interface: str,
    timeout: float,
) -> list[Any]:
    """One method call; its reply's body, Variants unwrapped. Raises BusError."""
    from dbus_fast import Message, MessageType

    message = Message(
        destination=destination,
        path=path,
        interface=interface,
        member=member,
        signature=signature,
        body=body or [],
    )
    try:
        async with asyncio.timeout(timeout):
            reply = await bus.call(message)
    except TimeoutError:
        raise BusError(f"{member} {path}: no answer within {timeout:g}s") from None
    except (OSError, EOFError) as exc:
        raise BusError(f"{member} {path}: connection lost ({exc})") from None
    if reply is None:
        raise BusError(f"{member} {path}: no reply")
    if reply.message_type == MessageType.ERROR:
        detail = reply.body[0] if reply.body and isinstance(reply.body[0], str) else ""
        raise RemoteError(reply.error_name or "", f"{member} {path}: {reply.error_name}: {detail}")
    return [unwrap(value) for value in reply.body]


class RemoteError(BusError):
    """The other side answered with a D-Bus error (its name is kept for decisions)."""

    def __init__(self, name: str, text: str) -> None:
        super().__init__(text)
        self.name = name


async def add_match(bus: MessageBus, rule: str, timeout: float) -> None:
    """Ask the bus daemon to route these signals to this connection."""
    await call(
        bus,
        "AddMatch",
        "s",
        [rule],
        destination=DBUS,
        path=DBUS_PATH,
        interface=DBUS,
        timeout=timeout,
    )


def unwrap(value: Any) -> Any:
    """Variants (nested in lists and dicts too) -> plain Python values."""
    from dbus_fast import Variant

    if isinstance(value, Variant):
        return unwrap(value.value)
    if isinstance(value, list):
        return [unwrap(v) for v in value]
    if isinstance(value, dict):
        return {k: unwrap(v) for k, v in value.items()}
    return value
