"""The docker log source: one container's stdout/stderr through the Docker Engine API.

The SDK's log stream is blocking, so it is read in a daemon thread (BlockingCalls) that hands
complete lines to the loop in batches. The stream ends when the container stops; the source
then reads the stopped container's log once more to its end (a followed stream can end before
the last lines), waits for it to run again (or to be recreated under the same name) and goes on.

Position: {"since": <RFC 3339 timestamp, ns>, "seen": N, "container": <id>}. The engine's
`since` filter is inclusive and, through the SDK, only exact to the second (podman even prints
log timestamps to the second only), so a resume asks for since=<that second> and skips the
first N lines it gets: N counts the lines already delivered whose timestamp falls in that
second. The engine returns the lines of that second in log order, so this is exact -- also when
many lines share one timestamp -- as long as the container's log is not rewritten; "container"
keeps a recreated container's first lines from being skipped.
"""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import random
import re
import struct
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from exporter import dockerapi
from exporter.logs.api import MAX_LINE_BYTES, Batch, Position, Sink, join_lines
from exporter.logs.models import DockerSourceConfig
from exporter.threads import BlockingCalls, StillBlocked

if TYPE_CHECKING:
    import docker

NS = 1_000_000_000
REQUEST_TIMEOUT = 10.0  # one inspect; the log stream itself has no timeout
# Podman answers a log request only with its first line; asking again this often keeps the
# reading thread stoppable meanwhile (see dockerapi.open_stream).
HEADER_WAIT = 1.0
BATCH_SECONDS = 0.05  # a batch collects lines for at most this long...
BATCH_LINES = 1000  # ...or this many lines
HIGH_WATER = 10 * BATCH_LINES  # the reading thread waits while this many lines are unhanded
TTY_LINE_LIMIT = MAX_LINE_BYTES + 64  # room for the timestamp prefix

# ---------------------------------------------------------------------------- pure parts

_TIMESTAMP = re.compile(
    rb"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?(?:Z|([+-])(\d\d):(\d\d))$"
)


def parse_timestamp(text: bytes) -> int:
    """RFC 3339 (as Docker's RFC3339Nano or podman's RFC3339 print it) -> ns since the epoch."""
    m = _TIMESTAMP.match(text)
    if m is None:
        raise ValueError(f"not an RFC 3339 timestamp: {text[:40]!r}")
    year, month, day, hour, minute, second = (int(g) for g in m.group(1, 2, 3, 4, 5, 6))
    seconds = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
    if m.group(8):
        offset = int(m.group(9)) * 3600 + int(m.group(10)) * 60
        seconds -= offset if m.group(8) == b"+" else -offset
    fraction = m.group(7) or b""
    return seconds * NS + int(fraction.ljust(9, b"0") or b"0")


def format_timestamp(ns: int) -> str:
    """ns since the epoch -> RFC 3339 in UTC with all nine digits (sorts as text)."""
    seconds, fraction = divmod(ns, NS)
    day = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{day}.{fraction:09d}Z"


class FrameReader:
    """Log frames ("<timestamp> <content>") -> complete lines with their timestamps.

    A frame without a final newline is part of a longer line (the engine splits long lines;
    a process may also stop mid-line): it is held until the line ends, and the line takes the
    timestamp of its last frame. Lines are cut at MAX_LINE_BYTES.
    """

    def __init__(self) -> None:
        self._held: list[bytes] = []
        self._held_size = 0
        self._held_raw = 0
        self._last_prefix = b""
        self._last_ns = 0

    def feed(self, frame: bytes) -> list[tuple[int, bytes, int, bool]]:
        """-> [(timestamp ns, line without newline, raw bytes, cut)] completed by `frame`."""
        ns, content = self._split(frame)
        pieces = content.split(b"\n")
        lines = []
        for piece in pieces[:-1]:
            self._hold(piece)
            line = b"".join(self._held)
            lines.append((ns, line, self._held_raw + 1, self._held_size > len(line)))
            self._held, self._held_size, self._held_raw = [], 0, 0
        if pieces[-1]:
            self._hold(pieces[-1])
        return lines

    def _hold(self, piece: bytes) -> None:
        room = MAX_LINE_BYTES - min(self._held_size, MAX_LINE_BYTES)
        if room:
            self._held.append(piece[:room])
        self._held_size += len(piece)
        self._held_raw += len(piece)

    def _split(self, frame: bytes) -> tuple[int, bytes]:
        space = frame.find(b" ")
        if space <= 0:
            raise ValueError(f"no timestamp before {frame[:40]!r}")
        prefix = frame[:space]
        if prefix != self._last_prefix:
            # Podman's timestamps change once a second: most frames reuse the last parse.
            self._last_ns = parse_timestamp(prefix)
            self._last_prefix = prefix
        return self._last_ns, frame[space + 1 :]


Frame = tuple[int, bytes]  # (stream: 1 stdout, 2 stderr, 0 a TTY's only one; payload)
HEADER = struct.Struct(">BxxxL")


def demux(chunks: Iterable[bytes]) -> Iterator[Frame]:
    """The multiplexed log stream (8-byte header: stream, size; then the payload) -> frames."""
    buffer = bytearray()
    for chunk in chunks:
        buffer += chunk
        start = 0
        while len(buffer) - start >= HEADER.size:
            stream, size = HEADER.unpack_from(buffer, start)
            end = start + HEADER.size + size
            if len(buffer) < end:
                break
            yield stream, bytes(buffer[start + HEADER.size : end])
            start = end
        del buffer[:start]


def tty_frames(chunks: Iterable[bytes]) -> Iterator[Frame]:
    """A TTY container's log is one byte stream without frames: split it at newlines.

    The terminal turned each "\\n" into "\\r\\n"; the "\\r" goes, as it would on a pipe.
    (A TTY line the engine split into parts keeps the inner parts' timestamps as text.)
    """
    buffer = bytearray()
    for chunk in chunks:
        buffer += chunk
        if b"\n" in chunk:
            end = buffer.rfind(b"\n")
            for line in bytes(buffer[:end]).split(b"\n"):
                yield 0, (line[:-1] if line.endswith(b"\r") else line) + b"\n"
            del buffer[: end + 1]
        elif len(buffer) > TTY_LINE_LIMIT:
            del buffer[TTY_LINE_LIMIT:]  # FrameReader cuts the line at MAX_LINE_BYTES anyway
    if buffer:
        yield 0, bytes(buffer)


class LineReader:
    """Frames of all streams -> complete lines in the order they complete.

    A partial line of stdout must not be joined with the next stderr line: each stream has
    its own FrameReader.
    """

    def __init__(self) -> None:
        self._readers: dict[int, FrameReader] = {}

    def feed(self, frame: Frame) -> list[tuple[int, bytes, int, bool]]:
        stream, payload = frame
        if not payload:
            return []
        reader = self._readers.get(stream)
        if reader is None:
            reader = self._readers[stream] = FrameReader()
        return reader.feed(payload)


@dataclass
class Cursor:
    """Where delivery stands; see the module docstring for how a resume uses it."""

    second: int | None = None  # the latest second delivered; None: read from the beginning
    seen: int = 0  # lines delivered with a timestamp in `second`
    latest: int | None = None  # the latest timestamp delivered (ns)
    container: str | None = None  # the container the counted lines came from

    def delivered(self, ns: int, container: str) -> None:
        second = ns // NS
        other = self.container not in (None, container)
        if other or self.second is None or second > self.second:
            self.second, self.seen, self.latest = second, 1, ns
        elif second == self.second:
            self.seen += 1
            self.latest = max(ns, self.latest or ns)
        # An older second (timestamps out of order): a resume from `second` skips it anyway.
        self.container = container

    def skip_for(self, container: str) -> int:
        """How many lines of a stream opened with since=second were delivered already."""
        return self.seen if self.container in (None, container) else 0

    def position(self) -> Position:
        assert self.latest is not None
        return {
            "since": format_timestamp(self.latest),
            "seen": self.seen,
            "container": self.container,
        }

    @classmethod
    def restore(cls, position: Position | None) -> Cursor | None:
        """A saved position -> Cursor; None if there is none or it is unusable."""
        if not position:
            return None
        since, seen, container = (position.get(k) for k in ("since", "seen", "container"))
        if not isinstance(since, str) or type(seen) is not int or seen < 0:
            return None
        try:
            latest = parse_timestamp(since.encode())
        except ValueError:
            return None
        return cls(latest // NS, seen, latest, container if isinstance(container, str) else None)


# ------------------------------------------------------------------------ thread <-> loop


class _Outbox:
    """Lines read by the thread, waiting for the loop; the cursor moves with them.

    Lines and cursor change under one lock, so a batch taken by the loop and the position it
    carries always agree.
    """

    def __init__(self, cursor: Cursor) -> None:
        self.lock = threading.Lock()
        self.cursor = cursor
        self.lines: list[bytes] = []
        self.raw = 0
        self.truncated = 0
        self.latest: int | None = None
        self.room = threading.Event()
        self.room.set()

    def put(self, ns: int, line: bytes, raw: int, cut: bool, container: str) -> int:
        """Thread side; -> how many lines are waiting now."""
        with self.lock:
            self.lines.append(line)
            self.raw += raw
            self.truncated += cut
            self.latest = ns
            self.cursor.delivered(ns, container)
            waiting = len(self.lines)
            if waiting >= HIGH_WATER:
                self.room.clear()
            return waiting

    def take(self) -> Batch | None:
        """Loop side: everything waiting as one batch."""
        with self.lock:
            if not self.lines:
                return None
            lines, self.lines = self.lines, []
            raw, truncated, self.raw, self.truncated = self.raw, self.truncated, 0, 0
            position = self.cursor.position()
            latest = self.latest
            self.room.set()
        data, count, _ = join_lines(lines)
        return Batch(
            data=data,
            lines=count,
            position=position,
            bytes_read=raw,
            truncated=truncated,
            last_timestamp=latest / NS if latest is not None else None,
        )


def _is_not_found(exc: BaseException) -> bool:
    import docker.errors

    return isinstance(exc, docker.errors.NotFound)


@dataclass(frozen=True)
class _State:
    id: str
    running: bool
    started_at: str


# ----------------------------------------------------------------------------- source


class DockerLogSource:
    RETRY_MIN = 0.5  # backoff while the engine or the container is away
    RETRY_MAX = 30.0
    WAIT_MIN = 0.1  # polling a stopped container until it runs again
    WAIT_MAX = 2.0

    def __init__(
        self,
        name: str,
        config: DockerSourceConfig,
        position: Position | None,
        blocking: BlockingCalls,
    ) -> None:
        self.name = name
        self.config = config
        self._blocking = blocking
        self._key = f"docker-logs:{name}"
        restored = Cursor.restore(position)
        # No position: from the beginning, or (start_at end) from where the log ends when the
        # source first finds the container.
        self._start_at_end = restored is None and config.start_at == "end"
        self._outbox = _Outbox(restored or Cursor())
        self._unusable_position = position is not None and restored is None
        self._client: docker.DockerClient | None = None
        self._stream: dockerapi.StoppableResponse | None = None
        self._sink: Sink | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._rng = random.Random()
        self._closed = False

    async def run(self, sink: Sink) -> None:
        self._sink = sink
        self._loop = asyncio.get_running_loop()
        if self._unusable_position:
            sink.error("saved docker log position unusable: reading as on a first start")
            self._unusable_position = False
        attempt = 0
        try:
            while True:
                stream = self._stream = dockerapi.StoppableResponse()
                try:
                    state = await self._call(self._follow, stream)
                    self._flush()
                    attempt = 0
                    await self._until_changed(state)
                    continue
                except StillBlocked as exc:
                    reason = str(exc)
                except Exception as exc:  # never out of run(): any failure is "down", retried
                    reason = f"container {self.config.container}: {dockerapi.describe(exc)}"
                    if self._start_at_end and _is_not_found(exc):
                        # Not there at the first start: when it appears, all of it is new.
                        self._start_at_end = False
                self._flush()
                self._drop_client()
                sink.down(reason)
                ceiling = min(self.RETRY_MAX, self.RETRY_MIN * 2.0**attempt)
                attempt += 1
                await asyncio.sleep(ceiling * self._rng.uniform(0.5, 1.0))
        finally:
            self._sink = None
            self._stop_stream()

    async def close(self) -> None:
        self._closed = True
        self._sink = None
        self._stop_stream()
        self._drop_client()

    async def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await self._blocking.run(self._key, fn, *args)

    async def _until_changed(self, last: _State) -> None:
        """Wait after a stream ended until there may be more to read."""
        delay = self.WAIT_MIN
        while True:
            state: _State = await self._call(self._inspect)
            if state.id != last.id or state.started_at != last.started_at:
                return  # restarted (or recreated) since: read what it wrote
            if state.running:
                # Still the same run: the engine ended the stream (or the container is about
                # to stop). Go on after a pause, so a misbehaving engine is not hammered.
                await asyncio.sleep(self.WAIT_MIN)
                return
            if last.running:
                # Stopped since the stream was opened. An engine's followed stream may end
                # before the last lines (podman stops its file tail a fixed 250 ms after the
                # exit event; under load that is too soon), and those are often the crash
                # message: read once more, to the end of the now final log.
                return
            await asyncio.sleep(delay)
            delay = min(self.WAIT_MAX, delay * 2)

    # Thread side ---------------------------------------------------------------------

    def _docker(self) -> docker.DockerClient:
        if self._closed:
            raise RuntimeError("source closed")
        if self._client is None:
            self._client = dockerapi.client(self.config.docker_url, REQUEST_TIMEOUT)
        return self._client

    def _inspect(self) -> _State:
        attrs = self._docker().api.inspect_container(self.config.container)
        state = attrs.get("State") or {}
        return _State(attrs["Id"], bool(state.get("Running")), str(state.get("StartedAt")))

    def _follow(self, stream: dockerapi.StoppableResponse) -> _State:
        """Read the container's log until the stream ends -> its state when it was opened."""
        client = self._docker()
        attrs = client.api.inspect_container(self.config.container)
        state = attrs.get("State") or {}
        opened = _State(attrs["Id"], bool(state.get("Running")), str(state.get("StartedAt")))
        options: dict[str, Any] = {
            "stdout": "stdout" in self.config.streams,
            "stderr": "stderr" in self.config.streams,
            "timestamps": True,
        }
        cursor = self._outbox.cursor
        if self._start_at_end:
            end = self._end_of_log(client, opened.id, options)
            if end is not None:  # (an empty log: all that comes is new)
                with self._outbox.lock:
                    cursor.second, cursor.seen, cursor.container = *end, opened.id
            self._start_at_end = False
        skip = 0
        if cursor.second is not None:
            options["since"] = cursor.second
            skip = cursor.skip_for(opened.id)
        # A stopped container's log is final: read it to its end without following.
        params = {key: int(value) for key, value in options.items()}
        params["follow"] = int(opened.running)
        self._to_loop(self._up)
        # Not the SDK's logs(): it drops which stream a frame belongs to (needed to keep a
        # partial stdout line apart from stderr lines), and it can be stopped from another
        # thread only through private attributes.
        response = dockerapi.open_stream(
            client,
            f"/containers/{opened.id}/logs",
            params,
            stream,
            connect_timeout=REQUEST_TIMEOUT,
            # Podman sends the response headers only with the first line to show.
            header_wait=HEADER_WAIT,
        )
        if response is not None:
            chunks = dockerapi.read_chunks(response)
            tty = bool((attrs.get("Config") or {}).get("Tty"))
            self._read(tty_frames(chunks) if tty else demux(chunks), opened.id, skip, stream)
        return opened

    def _end_of_log(
        self, client: docker.DockerClient, container: str, options: dict[str, Any]
    ) -> tuple[int, int] | None:
        """The log's end now, as (second, lines stamped in it or later) for a Cursor.

        Only the engine's timestamps are compared, never this host's clock: the second of
        the last line, and the lines a since=second request returns now, which the resumed
        stream will skip.
        """
        last: bytes = client.api.logs(container, stream=False, tail=1, **options)
        if not last:
            return None
        second = parse_timestamp(last.split(b" ", 1)[0]) // NS
        tail: bytes = client.api.logs(container, stream=False, since=second, **options)
        return second, tail.count(b"\n")

    def _read(
        self,
        frames: Iterable[Frame],
        container: str,
        skip: int,
        stream: dockerapi.StoppableResponse,
    ) -> None:
        reader = LineReader()
        outbox = self._outbox
        for frame in frames:
            try:
                lines = reader.feed(frame)
            except ValueError as exc:
                self._to_loop(self._error, f"docker log frame without timestamp: {exc}")
                continue
            for ns, line, raw, cut in lines:
                if skip:
                    skip -= 1  # delivered before this stream was opened
                    continue
                waiting = outbox.put(ns, line, raw, cut, container)
                if waiting == 1:
                    self._to_loop(self._arm_flush)
                elif waiting == BATCH_LINES:
                    self._to_loop(self._flush)
                elif waiting >= HIGH_WATER:
                    # The loop is behind: stop reading (the engine buffers) until it catches up.
                    while not outbox.room.wait(0.5) and not stream.stopped:
                        pass

    def _to_loop(self, fn: Callable[..., None], *args: Any) -> None:
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(fn, *args)

    # Loop side -----------------------------------------------------------------------

    def _arm_flush(self) -> None:
        if self._loop is not None:
            self._loop.call_later(BATCH_SECONDS, self._flush)

    def _flush(self) -> None:
        sink = self._sink
        if sink is None:
            return  # stopped: what was not delivered is read again from the position
        batch = self._outbox.take()
        if batch is not None:
            sink.batch(batch)

    def _up(self) -> None:
        if self._sink is not None:
            self._sink.up()

    def _error(self, what: str) -> None:
        if self._sink is not None:
            self._sink.error(what)

    def _stop_stream(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.stop()

    def _drop_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()
