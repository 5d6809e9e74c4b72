"""BlockingCalls: one worker thread per key, reused, retired when idle; stuck keys stay busy."""

from __future__ import annotations

import asyncio
import threading

import pytest

from exporter.threads import BlockingCalls, StillBlocked
from tests.support import eventually


def served_here() -> int:
    """How many calls the current thread has served (thread ids are reused, objects not)."""
    thread = threading.current_thread()
    count: int = getattr(thread, "served", 0) + 1
    thread.served = count  # type: ignore[attr-defined]
    return count


async def test_calls_on_one_key_reuse_one_thread() -> None:
    calls = BlockingCalls()
    assert [await calls.run("k", served_here) for _ in range(50)] == list(range(1, 51))
    assert calls.threads == 1
    assert threading.current_thread() is threading.main_thread()


async def test_keys_run_side_by_side() -> None:
    calls = BlockingCalls()
    both = threading.Barrier(2, timeout=10)
    # Each call waits for the other: they can only both finish if they run at once.
    results = await asyncio.gather(calls.run("a", both.wait), calls.run("b", both.wait))
    assert sorted(results) == [0, 1]
    assert calls.threads == 2


async def test_errors_reach_the_caller_and_the_key_is_free_again() -> None:
    calls = BlockingCalls()

    def fail() -> None:
        raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        await calls.run("k", fail)
    assert await calls.run("k", lambda: 42) == 42


async def test_a_stuck_call_keeps_its_key_busy_and_others_free() -> None:
    calls = BlockingCalls()
    release = threading.Event()
    stuck = asyncio.ensure_future(calls.run("stuck", release.wait, 30))
    await eventually(lambda: calls.threads == 1, 5, "the worker to start")
    with pytest.raises(StillBlocked, match="stuck: previous call still blocked"):
        await calls.run("stuck", lambda: None)
    assert await calls.run("other", lambda: "fine") == "fine"
    release.set()
    assert await stuck is True
    assert await calls.run("stuck", lambda: "again") == "again"


async def test_idle_workers_retire_and_a_new_call_starts_one() -> None:
    calls = BlockingCalls(idle=0.05)
    first = await calls.run("k", threading.get_ident)
    await eventually(lambda: calls.threads == 0, 5, "the idle worker to retire")
    assert not any(t.name == "botwatch:k" and t.ident == first for t in threading.enumerate())
    assert await calls.run("k", lambda: "back") == "back"


async def test_many_calls_around_the_idle_deadline_are_never_lost() -> None:
    # Jobs land while workers decide to retire: each must still run exactly once.
    calls = BlockingCalls(idle=0.001)
    done = []
    for index in range(300):
        done.append(await calls.run(f"k{index % 3}", lambda i=index: i))
    assert done == list(range(300))
