"""DockerLogSource: pure parsing on recorded engine output, then against a real engine.

The engine is podman's Docker-compatible API service (tests/podman.py, one per module), with
busybox containers printing numbered lines; the ground truth is the container's whole log as
the engine returns it without following.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from exporter import dockerapi
from exporter.logs.api import MAX_LINE_BYTES, Position
from exporter.logs.dockerlogs import (
    NS,
    Cursor,
    DockerLogSource,
    FrameReader,
    LineReader,
    demux,
    format_timestamp,
    parse_timestamp,
    tty_frames,
)
from exporter.logs.models import DockerSourceConfig
from exporter.threads import BlockingCalls
from tests.integration.podman_fixture import podman  # noqa: F401  (a fixture)
from tests.logsupport import RecordingSink, running
from tests.podman import Podman
from tests.support import eventually, wait_for

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "docker"
# Numbered lines on both streams, ~100 a second: podman stamps logs to the second, so a
# second holds many lines with one timestamp, which a resume must tell apart.
COUNTER = "i=0; while true; do echo out $i; echo err $i >&2; i=$((i+1)); usleep 20000; done"


# Pure parts, on recorded podman output -------------------------------------------------------


def lines_of(frames: Any) -> list[tuple[int, bytes]]:
    reader = LineReader()
    return [(ns, line) for frame in frames for ns, line, _, _ in reader.feed(frame)]


def at(text: str) -> int:
    return parse_timestamp(text.encode())


def test_podman_body_to_lines_in_any_chunking() -> None:
    body = (FIXTURES / "podman-logs.bin").read_bytes()
    expected = [
        (at("2026-11-23T15:31:52Z"), b"plain"),
        (at("2026-11-23T15:31:53Z"), b"partial rest"),  # stamped with its last part
        (at("2026-11-23T15:31:53Z"), "주문 거부됨".encode()),
        (at("2026-11-23T15:31:53Z"), b"\xff\xfe raw"),
        (at("2026-11-23T15:31:53Z"), b"err line"),  # stderr, while stdout's line is open
        (at("2026-11-23T15:31:54Z"), b"out-part out-rest"),
        (at("2026-11-23T15:31:54Z"), b""),
        # "no newline at exit" is held: a line is delivered once it is complete
    ]
    assert lines_of(demux([body])) == expected
    assert lines_of(demux(body[i : i + 1] for i in range(len(body)))) == expected
    assert lines_of(demux([body[:10], body[10:37], body[37:]])) == expected


def test_podman_tty_body_to_lines() -> None:
    body = (FIXTURES / "podman-tty-logs.bin").read_bytes()
    expected = [b"tty line", b"cr\r"]  # the terminal's "\r" before "\n" goes, one only
    assert [line for _, line in lines_of(tty_frames([body]))] == expected
    bytewise = tty_frames(body[i : i + 1] for i in range(len(body)))
    assert [line for _, line in lines_of(bytewise)] == expected


def test_docker_style_timestamps() -> None:
    # Docker prints RFC3339Nano: nanoseconds with trailing zeros trimmed, any UTC offset.
    base = at("2024-01-15T10:20:30Z")
    assert base == 1705314030 * NS
    assert at("2024-01-15T10:20:30.123456789Z") == base + 123456789
    assert at("2024-01-15T10:20:30.1Z") == base + 100_000_000
    assert at("2024-01-15T19:20:30.5+09:00") == base + 500_000_000
    assert at("2024-01-15T05:20:30-05:00") == base
    assert format_timestamp(base + 1) == "2024-01-15T10:20:30.000000001Z"
    assert at(format_timestamp(base + 987654321)) == base + 987654321
    for bad in ("", "2024-01-15", "2024-01-15T10:20:30", "2024-01-15T10:20:30.Z", "x"):
        with pytest.raises(ValueError):
            at(bad)


def test_frame_reader_cuts_long_lines_and_rejects_frames_without_timestamp() -> None:
    reader = FrameReader()
    ts = b"2024-01-15T10:20:30.000000001Z "
    half = b"a" * (MAX_LINE_BYTES // 2 + 10)
    assert reader.feed(ts + half) == []
    assert reader.feed(ts + half) == []
    ((ns, line, raw, cut),) = reader.feed(ts + b"tail\n")
    assert (ns, len(line), raw, cut) == (
        at(ts.decode().strip()),
        MAX_LINE_BYTES,
        2 * len(half) + 5,
        True,
    )
    assert reader.feed(ts + b"short\n") == [(ns, b"short", 6, False)]
    with pytest.raises(ValueError):
        reader.feed(b"no-timestamp-here")
    # Two lines in one frame (a TTY stream, or an engine that batches) are two lines.
    assert [line for _, line, _, _ in reader.feed(ts + b"a\nb\n")] == [b"a", b"b"]


def test_cursor_counts_lines_per_second() -> None:
    cursor = Cursor()
    for ns in (5 * NS + 1, 5 * NS + 1, 5 * NS + 9, 6 * NS, 6 * NS + 3, 6 * NS + 2):
        cursor.delivered(ns, "c1")
    # Out of order within second 6 still counts: a since=6 request returns all three.
    assert (cursor.second, cursor.seen, cursor.latest) == (6, 3, 6 * NS + 3)
    cursor.delivered(5 * NS, "c1")  # an older second: not in a since=6 request, not counted
    assert cursor.seen == 3
    assert cursor.skip_for("c1") == 3
    assert cursor.skip_for("c2") == 0  # a recreated container's log starts afresh
    position = cursor.position()
    assert position == {"since": format_timestamp(6 * NS + 3), "seen": 3, "container": "c1"}
    assert Cursor.restore(position) == cursor
    cursor.delivered(6 * NS, "c2")
    assert (cursor.second, cursor.seen, cursor.container) == (6, 1, "c2")


@pytest.mark.parametrize(
    "position",
    [
        {"since": "yesterday", "seen": 1},
        {"since": "2024-01-15T10:20:30Z", "seen": -1},
        {"since": "2024-01-15T10:20:30Z", "seen": True},
        {"since": 5, "seen": 1},
        {"cursor": "s=1"},
    ],
)
def test_unusable_positions(position: Position) -> None:
    assert Cursor.restore(position) is None


def test_position_without_container_still_skips() -> None:
    cursor = Cursor.restore({"since": "2024-01-15T10:20:30Z", "seen": 4})
    assert cursor is not None and cursor.skip_for("any") == 4


# Against podman ----------------------------------------------------------------------------


def source(
    engine: Podman,
    container: str,
    position: Position | None = None,
    calls: BlockingCalls | None = None,
    **fields: Any,
) -> DockerLogSource:
    # model_construct: the tests are about reading, not about config validation.
    config = DockerSourceConfig.model_construct(
        type="docker", name=container, container=container, docker_url=engine.url, **fields
    )
    src = DockerLogSource(container, config, position, calls or BlockingCalls())
    src.RETRY_MIN, src.RETRY_MAX = 0.1, 0.5
    return src


def truth(container: Any, stdout: bool = True, stderr: bool = True) -> list[bytes]:
    """The container's whole log (for these streams), as the engine has it."""
    log: bytes = container.logs(stdout=stdout, stderr=stderr)
    return log.split(b"\n")[:-1]


async def whole_log(delivered: Callable[[], list[bytes]], container: Any, timeout: float) -> None:
    """Wait until the delivered lines are the container's whole log; else say where they part."""
    try:
        await eventually(lambda: delivered() == truth(container), timeout, "the whole log")
    except AssertionError as exc:
        got, want = delivered(), truth(container)
        parts = difflib.SequenceMatcher(a=got, b=want, autojunk=False).get_opcodes()
        where = [
            f"{op} delivered[{a1}:{a2}] {got[a1:a2][:3]} engine[{b1}:{b2}] {want[b1:b2][:3]}"
            for op, a1, a2, b1, b2 in parts
            if op != "equal"
        ]
        raise AssertionError(
            f"{exc}: {len(got)} lines delivered, {len(want)} logged; {where[:5]}"
        ) from None


@pytest.mark.integration
async def test_restarts_and_a_resume_neither_lose_nor_repeat(podman: Podman) -> None:  # noqa: F811
    container = podman.run("counter", COUNTER)
    first = RecordingSink()
    calls = BlockingCalls()
    src = source(podman, "counter", calls=calls, start_at="beginning")
    async with running(src, first):
        await eventually(lambda: len(first.lines()) >= 40, 15, "the first lines")
        container.stop(timeout=0)
        container.start()  # the log goes on, the counter starts again at 0
        await eventually(lambda: first.lines().count(b"out 0") == 2, 15, "the second run")
        await eventually(lambda: first.lines()[-1] >= b"err 3", 15, "more of the second run")
    # close() ends the blocking read at once, not when the next line comes.
    await eventually(lambda: not calls.in_flight, 2, "the blocking read to end")
    saved = first.position
    assert saved is not None and saved["seen"] >= 1, saved

    # The container writes on while nothing reads it...
    written = len(truth(container))
    await eventually(lambda: len(truth(container)) >= written + 20, 10, "lines while away")
    second = RecordingSink()
    async with running(source(podman, "counter", saved, start_at="beginning"), second):
        await eventually(second.lines, 10, "the resumed source to deliver")
        container.stop(timeout=0)
        await whole_log(lambda: first.lines() + second.lines(), container, 15)
    assert len(first.lines()) + len(second.lines()) > 100
    assert not first.errors and not second.errors and not first.downs and not second.downs


@pytest.mark.integration
async def test_the_last_lines_before_a_stop_are_read(
    podman: Podman,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A fake cut: podman ends a followed stream a fixed 250 ms after the exit event, which
    # under load can be before its tail read the last lines; that race is not provoked here.
    script = "echo early; while [ ! -e /go ]; do usleep 10000; done; echo last words; exit 3"
    container = podman.run("crasher", script)
    real_read_chunks = dockerapi.read_chunks
    cut: list[bool] = []

    def read_until_early(response: Any) -> Iterator[bytes]:
        for chunk in real_read_chunks(response):
            yield chunk
            if b"early" in chunk and not cut:
                # The stream ends only once the container has exited, without its last words.
                container.exec_run(["touch", "/go"])
                wait_for(lambda: container.reload() or container.status == "exited", 15, "exit")
                cut.append(True)
                return

    monkeypatch.setattr(dockerapi, "read_chunks", read_until_early)
    sink = RecordingSink()
    async with running(source(podman, "crasher", start_at="beginning"), sink):
        # Only once the container has exited is its log final, and the whole of it a fair test.
        await eventually(lambda: cut, 20, "the stream cut after the exit")
        await whole_log(sink.lines, container, 10)
    assert cut and sink.lines() == [b"early", b"last words"]
    assert not sink.errors and not sink.downs


@pytest.mark.integration
async def test_start_at_end_and_stream_selection(podman: Podman) -> None:  # noqa: F811
    container = podman.run("selector", COUNTER)
    await eventually(lambda: len(truth(container)) >= 20, 10, "some history")
    before = len(truth(container, stdout=False))
    err, out = RecordingSink(), RecordingSink()
    err_src = source(podman, "selector", streams=["stderr"], start_at="end")
    out_src = source(podman, "selector", streams=["stdout"], start_at="beginning")
    async with running(err_src, err), running(out_src, out):
        await eventually(lambda: len(err.lines()) >= 20, 10, "new stderr lines")
        container.stop(timeout=0)
        await eventually(lambda: out.lines() == truth(container, stderr=False), 10, "all of stdout")
        await eventually(
            lambda: err.lines() == truth(container, stdout=False)[-len(err.lines()) :],
            10,
            "stderr to its end",
        )
    # Only lines written after the start, and from there none missing.
    assert len(truth(container, stdout=False)) - len(err.lines()) >= before
    assert all(line.startswith(b"err ") for line in err.lines())
    assert all(line.startswith(b"out ") for line in out.lines())


@pytest.mark.integration
async def test_start_at_end_on_an_empty_log(podman: Podman) -> None:  # noqa: F811
    # Nothing logged yet at the start: the first line after it is new, whatever the clocks.
    container = podman.run("quiet", "while [ ! -e /go ]; do usleep 10000; done; echo go; sleep 30")
    sink = RecordingSink()
    async with running(source(podman, "quiet", start_at="end"), sink):
        await eventually(lambda: sink.ups, 10, "the stream to open")
        container.exec_run(["touch", "/go"])
        await eventually(sink.lines, 10, "the line")
    assert sink.lines() == [b"go"]


@pytest.mark.integration
async def test_missing_container_is_down_until_it_appears(podman: Podman) -> None:  # noqa: F811
    sink = RecordingSink()
    async with running(source(podman, "late", start_at="end"), sink):
        await eventually(lambda: sink.downs, 10, "a down report")
        # Not there at the first start: once it appears, all of its log is new.
        podman.run("late", "echo first; echo second; sleep 30")
        await eventually(lambda: len(sink.lines()) >= 2, 10, "its lines")
    assert sink.lines() == [b"first", b"second"]
    assert sink.downs[0].startswith("container late: not found: "), sink.downs


@pytest.mark.integration
async def test_tty_container(podman: Podman) -> None:  # noqa: F811
    podman.run("tty", "echo one; echo '주문 거부됨'; sleep 30", tty=True)
    sink = RecordingSink()
    async with running(source(podman, "tty", start_at="beginning"), sink):
        await eventually(lambda: len(sink.lines()) >= 2, 10, "its lines")
    assert sink.lines() == [b"one", "주문 거부됨".encode()]


@pytest.mark.integration
async def test_engine_down_is_reported_and_recovered(podman: Podman) -> None:  # noqa: F811
    container = podman.run("outage", COUNTER)
    sink = RecordingSink()
    async with running(source(podman, "outage", start_at="beginning"), sink):
        await eventually(lambda: len(sink.lines()) >= 10, 10, "the first lines")
        podman.stop()
        await eventually(lambda: sink.downs, 15, "the engine to be reported down")
        ups = sink.ups
        lines = len(sink.lines())
        podman.start()
        await eventually(lambda: sink.ups > ups, 15, "the engine to be back")
        await eventually(lambda: len(sink.lines()) >= lines + 20, 10, "lines after the outage")
        container.stop(timeout=0)
        await whole_log(sink.lines, container, 10)
    # (While podman shuts down, a request may also fail otherwise first.)
    assert "container outage: cannot reach the engine: No such file or directory" in sink.downs


@pytest.mark.integration
async def test_recreated_container_is_read_from_its_start(podman: Podman) -> None:  # noqa: F811
    # A new container under the old name (docker compose does this on every change) has a
    # log of its own: the old one's position must not make the source skip its first lines.
    old = podman.run("phoenix", "for i in 1 2 3; do echo old $i; done; sleep 30")
    sink = RecordingSink()
    async with running(source(podman, "phoenix", start_at="beginning"), sink):
        await eventually(lambda: len(sink.lines()) >= 3, 10, "the old container's lines")
        old.remove(force=True)
        podman.run("phoenix", "for i in 1 2 3; do echo new $i; done; sleep 30")
        await eventually(lambda: len(sink.lines()) >= 6, 15, "the new container's lines")
    assert sink.lines() == [b"old 1", b"old 2", b"old 3", b"new 1", b"new 2", b"new 3"]


@pytest.mark.integration
async def test_long_lines_are_joined_and_cut(podman: Podman) -> None:  # noqa: F811
    # Podman's conmon logs a long line in 8 KiB parts: the source joins them into one line,
    # cut at MAX_LINE_BYTES (counted as truncated, all its bytes as read).
    script = (
        "head -c 3000000 /dev/zero | tr '\\0' x; echo; "
        "head -c 20000 /dev/zero | tr '\\0' y; echo; echo short; sleep 30"
    )
    podman.run("long", script)
    sink = RecordingSink()
    async with running(source(podman, "long", start_at="beginning"), sink):
        await eventually(lambda: len(sink.lines()) >= 3, 20, "the lines")
    assert sink.lines() == [b"x" * MAX_LINE_BYTES, b"y" * 20000, b"short"]
    assert sum(b.truncated for b in sink.batches) == 1
    assert sum(b.bytes_read for b in sink.batches) == 3000001 + 20001 + 6
