"""Docker containers from the Engine API: a snapshot kept current by events, and resynced.

One stream collector, several parts in one task group per connection:
- the event stream (`/events`, opened first, with `since` just before the newest event
  counted): each container event is counted in the ledger (dockerevents.py) and makes the
  container be inspected again at once, so a die, restart or health change reaches
  /metrics within a second, not at the next poll;
- the poll, every `interval` under `timeout`: list + inspect (+ stats) of the selected
  containers, the complete truth that replaces the snapshot (a removed container goes);
- `system df` on its own slow schedule (volumes, images, build cache);
- the checkpoint of the ledger, so counters survive botwatch's restarts exactly.

Any engine call that fails or hangs past its timeout ends the connection: the collector is
down, its container gauges go (counters stay), and the supervisor reconnects with backoff;
the first poll after reconnecting resynchronises everything the gap changed. The SDK is
blocking: every call runs in a daemon thread (ctx.blocking), never on the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import structlog
from prometheus_client.core import CounterMetricFamily
from prometheus_client.metrics_core import Metric

from exporter import dockerapi
from exporter.collector import Context, first_error
from exporter.collectors.dockerdf import df_families
from exporter.collectors.dockerevents import (
    REMOVED,
    JsonLines,
    Ledger,
    MalformedEvent,
    ledger_families,
    parse_event,
)
from exporter.collectors.dockerstate import (
    JSON,
    ContainerReading,
    Selection,
    container_families,
    container_name,
    engine_time_ns,
)
from exporter.fields import Duration, Regex, compile_regex
from exporter.models import CollectorConfig
from exporter.registry import collector
from exporter.snapshot import Snapshot
from exporter.statefile import Checkpoint
from exporter.threads import StillBlocked

if TYPE_CHECKING:
    import docker

log = structlog.get_logger("exporter.collectors.docker")
T = TypeVar("T")

CHECKPOINT_INTERVAL = 1.0
SETTLE_AFTER = 1.0


class SystemDfConfig(CollectorConfig):
    """`docker system df`: it walks every volume, so it runs seldom and may take long."""

    default_timeout = 60.0

    interval: Duration = 300.0


class DockerConfig(CollectorConfig):
    """Off unless enabled (the trader-bot preset enables it): a host without an engine must
    not get a collector that is always down because the config says nothing about docker."""

    enabled: bool = False
    url: str | None = None  # None: $DOCKER_HOST, else unix:///var/run/docker.sock
    include: Regex = compile_regex(".*")
    exclude: Regex = compile_regex("^$")
    compose_projects: list[str] = []
    stats: bool = True
    # Follow /events (changes within a second); off: the poll alone, every `interval`.
    events: bool = True
    system_df: SystemDfConfig = SystemDfConfig()

    def selection(self) -> Selection:
        return Selection(self.include, self.exclude, tuple(self.compose_projects))


class EngineError(Exception):
    """The engine could not be asked; the message is one line (dockerapi.describe)."""


class DockerCollector:
    def __init__(self, config: DockerConfig, ctx: Context) -> None:
        self.config = config
        self.ctx = ctx
        self.log = log.bind(collector=ctx.name)
        self._selection = config.selection()
        self._client: docker.DockerClient | None = None
        self.checkpoint = Checkpoint.of(ctx, "ledger")
        self.ledger: Ledger | None = None
        # By container id; empty while disconnected (no stale gauges). podman announces
        # health_status before it stores the new status: events are read again a second later.
        self.snapshot: Snapshot[str, ContainerReading] = Snapshot(settle=SETTLE_AFTER)
        self.df: JSON | None = None
        self.df_errors = 0
        self._df_failing = False
        self._malformed_streak = False
        self._dirty = asyncio.Event()
        self._events: dockerapi.StoppableResponse | None = None
        self._generation = 0
        self._changed: Callable[[], None] = _nothing

    # The Stream protocol -------------------------------------------------------------

    async def run(self, changed: Callable[[], None]) -> None:
        if self.ledger is None:
            try:
                self.checkpoint.lock()
            except OSError as exc:
                # No state_dir to write: containers are still worth watching; the counters
                # then start from 0 at each restart, and every failed save is counted.
                self.log.error(
                    "docker checkpoint unavailable: counters will not survive a restart",
                    error=f"{exc.strerror}: {exc.filename}",
                )
            self.ledger = self._restore()
        self._generation += 1
        self._changed = changed
        try:
            await self._call("connect", self._connect)
            async with asyncio.TaskGroup() as tasks:
                if self.config.events:
                    # Opened before the first poll: nothing can fall between the two.
                    response = await self._open_events(self.ledger.since_ns())
                    tasks.create_task(self._pump_events(response))
                    tasks.create_task(self.snapshot.refresh_forever(self._refresh, changed))
                await self._poll()
                tasks.create_task(self._poller())
                if self.config.system_df.enabled:
                    tasks.create_task(self._df_rounds())
                tasks.create_task(self._checkpointer())
        except BaseExceptionGroup as group:
            # One part failed and the group cancelled the rest: that part's error is the
            # collector's (the supervisor logs it and reconnects).
            raise first_error(group) from None
        finally:
            self._disconnect()

    def families(self) -> list[Metric]:
        fams = container_families(list(self.snapshot.items.values()))
        if self.ledger is not None:
            fams += ledger_families(self.ledger)
        if self.df is not None:
            fams += df_families(self.df, self._selection)
        fams.append(
            CounterMetricFamily(
                "botwatch_docker_system_df_errors",
                "system df rounds that failed or timed out.",
                value=self.df_errors,
            )
        )
        fams.append(self.checkpoint.errors_family())
        return fams

    async def close(self) -> None:
        self._disconnect()
        if self.ledger is not None:
            await self.checkpoint.save(self.ledger.to_json())
        self.checkpoint.unlock()
        client, self._client = self._client, None
        if client is not None:
            await self.ctx.blocking.run(f"{self.ctx.name} close", client.close)

    # Parts ---------------------------------------------------------------------------

    async def _poll(self) -> None:
        """Replace the snapshot with a fresh list; keep what events changed meanwhile."""
        assert self.ledger is not None
        began = self.snapshot.begin_poll()
        self.snapshot.replace(await self._call("poll", self._read_all), began)
        readings = self.snapshot.items.values()
        self._infer_ooms(readings)
        if self.ledger.present([container_name(r.inspect) for r in readings], time.time()):
            self._dirty.set()
        self._changed()

    async def _poller(self) -> None:
        while True:
            await asyncio.sleep(self.config.interval)
            await self._poll()

    async def _refresh(
        self, previous: Mapping[str, ContainerReading | None]
    ) -> dict[str, ContainerReading | None]:
        found = await self._call("inspect", self._inspect_some, previous)
        self._infer_ooms(r for r in found.values() if r is not None)
        return found

    async def _open_events(self, since_ns: int) -> Any:
        holder = self._events = dockerapi.StoppableResponse()
        since = f"{since_ns // 10**9}.{since_ns % 10**9:09d}"
        return await self._call("events", self._open_event_stream, holder, since)

    async def _pump_events(self, response: Any) -> None:
        generation = self._generation
        loop = asyncio.get_running_loop()

        def deliver(docs: list[Any], errors: list[str]) -> None:
            if generation == self._generation:  # not from a stream this run has left
                self._on_events(docs, errors)

        def pump() -> None:
            lines = JsonLines()
            for chunk in dockerapi.read_chunks(response):
                docs, errors = lines.feed(chunk)
                with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                    loop.call_soon_threadsafe(deliver, docs, errors)

        await self.ctx.blocking.run(f"{self.ctx.name} event stream", pump)
        raise EngineError("the event stream ended")

    def _on_events(self, docs: list[Any], errors: list[str]) -> None:
        assert self.ledger is not None
        for error in errors:
            self._malformed(error)
        counted = False
        for doc in docs:
            try:
                event = parse_event(doc)
            except MalformedEvent as exc:
                self._malformed(str(exc))
                continue
            if event is None:
                continue
            # Docker puts a container's labels among the event's attributes, podman does
            # not: with compose_projects set, podman's new containers count from the poll on.
            known = event.id in self.snapshot.items
            if not known and not self._selection.selects(event.name, event.attributes):
                continue
            counted |= self.ledger.count(event)
            if not event.refreshes:
                continue
            if event.action in REMOVED:
                self.snapshot.removed(event.id)
                self._changed()
            else:
                self.snapshot.touched(event.id)
        if counted:
            self._malformed_streak = False
            self._dirty.set()
            self._changed()

    def _malformed(self, error: str) -> None:
        assert self.ledger is not None
        self.ledger.malformed += 1
        # Counted every time, logged once per streak: a broken engine must not flood the log.
        if not self._malformed_streak:
            self.log.warning("malformed docker event", error=error)
        self._malformed_streak = True
        self._dirty.set()
        self._changed()

    def _infer_ooms(self, readings: Iterable[ContainerReading]) -> None:
        assert self.ledger is not None
        for r in readings:
            state = r.inspect.get("State") or {}
            if state.get("OOMKilled") and self.ledger.infer_oom(
                container_name(r.inspect),
                engine_time_ns(state.get("StartedAt")),
                engine_time_ns(state.get("FinishedAt")),
            ):
                self._dirty.set()

    async def _df_rounds(self) -> None:
        df = self.config.system_df
        while True:
            try:
                self.df = await self._call("system df", self._system_df, timeout=df.timeout)
            except EngineError as exc:
                # Slow or failing df is not a down engine: the rest goes on without it.
                self.df = None
                self.df_errors += 1
                if not self._df_failing:
                    self.log.warning("docker system df failed", error=str(exc))
                self._df_failing = True
            else:
                if self._df_failing:
                    self.log.info("docker system df works again")
                self._df_failing = False
            self._changed()
            await asyncio.sleep(df.interval)

    async def _checkpointer(self) -> None:
        assert self.ledger is not None
        while True:
            await self._dirty.wait()
            await asyncio.sleep(CHECKPOINT_INTERVAL)
            self._dirty.clear()
            if not await self.checkpoint.save(self.ledger.to_json()):
                self._dirty.set()

    def _restore(self) -> Ledger:
        saved = self.checkpoint.load()
        if saved:
            try:
                return Ledger.from_json(saved)
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                self.log.error("docker checkpoint unusable: counting starts again", error=repr(exc))
        return Ledger(horizon_ns=time.time_ns())

    def _disconnect(self) -> None:
        self._generation += 1
        self._changed = _nothing
        events, self._events = self._events, None
        if events is not None:
            events.stop()
        self.snapshot.clear()
        self.df = None

    async def _call(
        self, what: str, fn: Callable[..., T], *args: Any, timeout: float | None = None
    ) -> T:
        """`fn(*args)` in a thread, given up after `timeout` (default: the collector's)."""
        timeout = self.config.timeout if timeout is None else timeout
        try:
            async with asyncio.timeout(timeout):
                return await self.ctx.blocking.run(
                    f"{self.ctx.name} {what}", self._guarded, what, fn, *args
                )
        except TimeoutError:
            raise EngineError(f"{what}: no answer within {timeout:g}s") from None
        except StillBlocked as exc:
            raise EngineError(f"{what}: {exc}") from None

    # Thread side ---------------------------------------------------------------------

    def _guarded(self, what: str, fn: Callable[..., T], *args: Any) -> T:
        import docker.errors

        try:
            return fn(*args)
        except (docker.errors.DockerException, OSError) as exc:
            # requests' errors are OSErrors; a JSON decode error is a ValueError (and
            # OSError); both mean the engine did not answer as one should.
            raise EngineError(f"{what}: {dockerapi.describe(exc)}") from None

    def _connect(self) -> None:
        if self._client is None:
            self._client = dockerapi.client(self.config.url, timeout=self.config.timeout)

    def _api(self) -> Any:
        if self._client is None:
            raise EngineError("not connected")
        return self._client.api

    def _open_event_stream(self, holder: dockerapi.StoppableResponse, since: str) -> Any:
        assert self._client is not None
        # No server-side filters: podman 4.3's compat API answers any with no events at all.
        # Engines send the headers at once; waiting for them is bounded all the same, so a
        # hung engine leaves no thread behind once the holder is stopped.
        response = dockerapi.open_stream(
            self._client,
            "/events",
            {"since": since},
            holder,
            connect_timeout=self.config.timeout,
            header_wait=self.config.timeout,
        )
        if response is None:
            raise EngineError("event stream stopped while opening")
        return response

    def _read_all(self) -> dict[str, ContainerReading]:
        import docker.errors

        api = self._api()
        readings = {}
        for entry in api.containers(all=True):
            if not self._selection.selects_listed(entry):
                continue
            try:
                inspect = api.inspect_container(entry["Id"])
            except docker.errors.NotFound:
                continue  # removed since the list: gone from this round
            readings[inspect["Id"]] = ContainerReading(entry, inspect, self._stats(api, inspect))
        return readings

    def _inspect_some(
        self, previous: Mapping[str, ContainerReading | None]
    ) -> dict[str, ContainerReading | None]:
        """Fresh readings of these containers (`previous`: what the snapshot holds of them);
        None for those gone or no longer selected."""
        import docker.errors

        api = self._api()
        found: dict[str, ContainerReading | None] = {}
        for cid, before in previous.items():
            try:
                inspect = api.inspect_container(cid)
            except docker.errors.NotFound:
                found[cid] = None
                continue
            config = inspect.get("Config") or {}
            if not self._selection.selects(container_name(inspect), config.get("Labels")):
                found[cid] = None
                continue
            state = inspect.get("State") or {}
            if before is None:
                found[cid] = ContainerReading({}, inspect)
                continue
            # Stats come with the poll; an event's inspect keeps them for the same run only.
            same_run = state.get("Running") and state.get("StartedAt") == (
                before.inspect.get("State") or {}
            ).get("StartedAt")
            found[cid] = ContainerReading(
                before.listed, inspect, before.stats if same_run else None
            )
        return found

    def _stats(self, api: Any, inspect: JSON) -> dict[str, Any] | None:
        """One-shot stats of a running container, or None (off, or it cannot give them now).

        A container in a restart loop can stop between inspect and stats (podman then
        answers with an empty body): it loses its resource series for this round only.
        """
        import docker.errors
        import docker.utils

        state = inspect.get("State") or {}
        if not self.config.stats or not state.get("Running") or state.get("Paused"):
            return None
        # Without one-shot the engine samples twice, a second apart, for CPU percentages.
        one_shot = True if docker.utils.version_gte(api.api_version, "1.41") else None
        try:
            stats: dict[str, Any] = api.stats(inspect["Id"], stream=False, one_shot=one_shot)
        except (docker.errors.APIError, ValueError):
            return None
        return stats or None

    def _system_df(self) -> JSON:
        df: JSON = self._api().df()
        return df


def _nothing() -> None:
    pass


@collector(
    "docker",
    config=DockerConfig,
    kind="stream",
    help="Docker containers: state, health, restarts, exit codes, OOM kills, memory and CPU, "
    "events, volume and image disk use (Engine API).",
)
def build(config: DockerConfig, ctx: Context) -> DockerCollector:
    return DockerCollector(config, ctx)
