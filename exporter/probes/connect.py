"""Opening a probe's connection, with the failure classified the same way for every type."""

from __future__ import annotations

import asyncio
import errno
import socket

# What a connection attempt can fail with; types that connect list these among their REASONS.
CONNECT_REASONS = ("timeout", "refused", "dns", "unreachable")


class Failed(Exception):
    """A check's failure, raised where it is found: its reason and one-line error."""

    def __init__(self, reason: str, error: str) -> None:
        super().__init__(error)
        self.reason = reason


async def open_stream(
    host: str, port: int, unix_path: str | None = None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """TCP to host:port, or the unix socket `unix_path`; raises Failed with a CONNECT_REASON."""
    target = unix_path or f"{host}:{port}"
    try:
        if unix_path is not None:
            return await asyncio.open_unix_connection(unix_path)
        return await asyncio.open_connection(host, port)
    except socket.gaierror as exc:
        raise Failed("dns", f"cannot resolve {host}: {exc.strerror}") from None
    except TimeoutError:  # the kernel's connect timeout (ETIMEDOUT), not a probe's deadline
        raise Failed("timeout", f"{target}: connection timed out") from None
    except FileNotFoundError:
        raise Failed("refused", f"{target}: no such socket") from None
    except OSError as exc:
        refused = isinstance(exc, ConnectionRefusedError) or exc.errno == errno.ECONNREFUSED
        reason = "refused" if refused else "unreachable"
        what = "connection refused" if refused else (exc.strerror or str(exc))
        raise Failed(reason, f"{target}: {what}") from None
