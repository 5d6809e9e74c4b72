"""Following the kernel log: /dev/kmsg, or a file of records in its format (followed like
`tail -f`). Blocking: `follow` runs in a daemon thread (ctx.blocking) until `stop` is set.

/dev/kmsg hands out one record per read() and keeps a read position per open file:
non-blocking, EAGAIN means nothing new, and EPIPE means the records at our position were
overwritten in the ring buffer; the position then moves on to the oldest record left, and
the jump in sequence numbers tells KmsgDecoder how many were lost.
"""

from __future__ import annotations

import os
import select
import stat
import threading
from collections.abc import Callable
from pathlib import Path

from exporter.collectors.oomparse import KmsgBatch, KmsgDecoder

# A stop request is seen within this (the select timeout).
STOP_POLL = 0.25
# A regular file at its end is looked at again after this.
FILE_POLL = 0.1
# /dev/kmsg refuses a read smaller than the record (EINVAL); records are at most 8 KiB.
READ_SIZE = 16 * 1024
# Reads per batch: a long backlog (the whole buffer after a reboot) reaches the loop in parts.
MAX_READS = 512


class KernelLogUnavailable(Exception):
    """The kernel log cannot be opened or read (one line naming the path and the reason)."""


def read_boot_id(procfs: Path) -> str | None:
    try:
        return (procfs / "sys" / "kernel" / "random" / "boot_id").read_text().strip() or None
    except OSError:
        return None


def follow(
    path: Path,
    decoder: KmsgDecoder,
    stop: threading.Event,
    opened: Callable[[], None],
    deliver: Callable[[KmsgBatch], None],
) -> None:
    """Read records into `decoder` and hand each batch to `deliver` until `stop` is set.

    Raises KernelLogUnavailable when the log cannot be opened or a read fails.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise KernelLogUnavailable(f"{path}: {exc.strerror}") from None
    try:
        device = stat.S_ISCHR(os.fstat(fd).st_mode)
        opened()
        while not stop.is_set():
            at_end = _drain(fd, path, decoder)
            if at_end:
                decoder.caught_up()
            if batch := decoder.take():
                deliver(batch)
            if not at_end:
                continue
            if device:
                select.select([fd], [], [], STOP_POLL)
            else:
                stop.wait(FILE_POLL)
    finally:
        os.close(fd)


def _drain(fd: int, path: Path, decoder: KmsgDecoder) -> bool:
    """Read up to MAX_READS times; True when the end of the log was reached."""
    for _ in range(MAX_READS):
        try:
            data = os.read(fd, READ_SIZE)
        except BlockingIOError:
            return True
        except (BrokenPipeError, InterruptedError):
            continue  # overwritten (the next record's SEQ shows how many), or a signal
        except OSError as exc:
            raise KernelLogUnavailable(f"{path}: read: {exc.strerror}") from None
        if not data:
            return True  # the end of a regular file; a writer may append more
        decoder.feed(data)
    return False
