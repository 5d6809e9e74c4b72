"""Snapshot: polls replace, notifications re-read single items, and neither undoes the other."""

from __future__ import annotations

import asyncio

from exporter.snapshot import Snapshot
from tests.support import eventually


async def test_a_poll_replaces_everything_it_read() -> None:
    snap: Snapshot[str, int] = Snapshot()
    snap.replace({"a": 1, "b": 1}, snap.begin_poll())
    snap.replace({"a": 2}, snap.begin_poll())
    assert snap.items == {"a": 2}


async def test_a_poll_that_began_before_a_notification_keeps_the_fresher_value() -> None:
    snap: Snapshot[str, int] = Snapshot()
    snap.replace({"a": 1, "b": 1, "c": 1}, snap.begin_poll())
    began = snap.begin_poll()
    snap.touched("a")  # while the poll reads: a changed...
    snap.update({"a": 3})  # ...and its own read came back first
    snap.removed("b")  # b went away
    snap.touched("new")
    snap.update({"new": 1})
    snap.replace({"a": 2, "b": 2, "c": 2}, began)  # the poll's older view
    assert snap.items == {"a": 3, "c": 2, "new": 1}
    # The next poll is newer than all of those: it is the truth again.
    snap.replace({"a": 4}, snap.begin_poll())
    assert snap.items == {"a": 4}


async def test_notifications_are_read_in_batches_and_settled_later() -> None:
    snap: Snapshot[str, int] = Snapshot(settle=0.05)
    reads: list[set[str]] = []
    changes: list[int] = []

    async def read(previous: dict[str, int | None]) -> dict[str, int | None]:
        reads.append(set(previous))
        return {key: len(reads) for key in previous}

    task = asyncio.create_task(snap.refresh_forever(read, lambda: changes.append(1)))
    try:
        snap.touched("a")
        snap.touched("b")
        snap.touched("a")
        await eventually(lambda: len(reads) >= 2, 5, "the read and the settling read")
        assert reads == [{"a", "b"}, {"a", "b"}]  # coalesced, then once more after settle
        assert snap.items == {"a": 2, "b": 2}
        assert len(changes) == 2
    finally:
        task.cancel()


async def test_clear_forgets_pending_settles() -> None:
    snap: Snapshot[str, int] = Snapshot(settle=0.05)
    reads: list[set[str]] = []

    async def read(previous: dict[str, int | None]) -> dict[str, int | None]:
        reads.append(set(previous))
        return dict.fromkeys(previous)

    snap.touched("a")
    snap.clear()  # disconnected before anything was read
    task = asyncio.create_task(snap.refresh_forever(read, lambda: None))
    try:
        snap.touched("b")
        await eventually(lambda: reads, 5, "b's read")
        await eventually(lambda: len(reads) == 2, 5, "b's settling read")
        assert reads == [{"b"}, {"b"}]  # a's settle timer fired into a cleared snapshot
    finally:
        task.cancel()
