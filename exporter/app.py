"""The running set of collectors: built from a Config, replaced piecewise on reload."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import structlog

from exporter import collector as api
from exporter.collector import Context, Poller, Stream
from exporter.config import Config, Loaded, load_config
from exporter.logsetup import configure
from exporter.models import CollectorConfig
from exporter.redact import Redactor
from exporter.registry import CollectorSpec, specs
from exporter.store import Store
from exporter.supervise import describe, poll_once, run_poller, run_stream, stream_once
from exporter.threads import BlockingCalls
from exporter.yamlsource import ConfigError

log = structlog.get_logger("exporter.app")

CLOSE_TIMEOUT = 1.0


@dataclass
class Running:
    config: CollectorConfig
    collector: Poller | Stream | _Broken
    task: asyncio.Task[None] | None


def build(
    spec: CollectorSpec,
    cfg: CollectorConfig,
    config: Config,
    redact: Callable[[str], str],
    durable: bool = True,
) -> tuple[Poller | Stream, Context]:
    ctx = Context(
        name=spec.name,
        state_dir=config.state_dir,
        blocking=BlockingCalls(),
        durable=durable,
        redact=redact,
    )
    return spec.factory(cfg, ctx), ctx


class App:
    def __init__(self, loaded: Loaded, path: Path | None, log_overrides: dict[str, str | None]):
        self.path = path
        self.loaded = loaded
        self.log_overrides = log_overrides
        self.secrets = set(loaded.secret_values)
        self.store = Store(Redactor(self.secrets))
        self._apply_runbooks()
        self.running: dict[str, Running] = {}
        # Two SIGHUPs in quick succession must not start one collector twice.
        self._reloading = asyncio.Lock()

    def _redact(self, text: str) -> str:
        # The store's redactor is replaced on reload (new secrets); look it up each time.
        return self.store.redact(text)

    @property
    def config(self) -> Config:
        return self.loaded.config

    def configure_logging(self) -> None:
        level = self.log_overrides.get("level") or self.config.log.level
        fmt = self.log_overrides.get("format") or self.config.log.format
        configure(level, fmt, self.store.redact)

    def _enabled(self, config: Config) -> dict[str, CollectorConfig]:
        return {n: c for n, c in config.collector_configs().items() if c.wanted()}

    def _apply_runbooks(self) -> None:
        """The configured runbook links, for botwatch_alert_runbook_info and the landing page."""
        runbooks = self.config.runbooks
        self.store.set_runbooks(runbooks.bases, runbooks.grafana_url)

    async def collect_once(self) -> bool:
        """`once`: every enabled collector one time, concurrently; True if all succeeded."""
        all_specs = specs()

        async def one(name: str, cfg: CollectorConfig) -> bool:
            spec = all_specs[name]
            self.store.add(name, spec.kind)
            collector, ctx = build(spec, cfg, self.config, self._redact, durable=False)
            try:
                if isinstance(collector, Poller):
                    return await poll_once(
                        name=name,
                        poller=collector,
                        timeout=cfg.timeout,
                        store=self.store,
                        blocking=ctx.blocking,
                    )
                return await stream_once(
                    name=name,
                    stream=collector,
                    timeout=cfg.timeout,
                    store=self.store,
                    blocking=ctx.blocking,
                )
            finally:
                await api.close(collector)

        results = await asyncio.gather(
            *(one(name, cfg) for name, cfg in self._enabled(self.config).items())
        )
        return all(results)

    async def apply(self, config: Config) -> None:
        """Start what is new or changed, stop what is gone or changed, keep the rest."""
        wanted = self._enabled(config)
        stale = [
            n
            for n, r in self.running.items()
            if wanted.get(n) != r.config or isinstance(r.collector, _Broken)
        ]
        for name in stale:
            await self._stop(name)
        all_specs = specs()
        for name, cfg in wanted.items():
            if name not in self.running:
                self._start(all_specs[name], cfg, config)

    def _start(self, spec: CollectorSpec, cfg: CollectorConfig, config: Config) -> None:
        self.store.add(spec.name, spec.kind)
        try:
            collector, ctx = build(spec, cfg, config, self._redact)
        except Exception as exc:
            # Factories only wire things up (connecting is the first round's job), so this
            # is rare; the collector is down, the daemon goes on, and a reload retries it.
            self.store.failed(spec.name, f"cannot start: {describe(exc)}")
            log.warning(
                "collector failed",
                collector=spec.name,
                error=self.store.states[spec.name].last_error,
            )
            self.running[spec.name] = Running(cfg, _Broken(), None)
            return
        if isinstance(collector, Poller):
            coro = run_poller(
                name=spec.name,
                poller=collector,
                interval=cfg.interval,
                timeout=cfg.timeout,
                store=self.store,
                blocking=ctx.blocking,
            )
        elif isinstance(collector, Stream):
            coro = run_stream(
                name=spec.name, stream=collector, store=self.store, blocking=ctx.blocking
            )
        else:
            raise TypeError(f"collector {spec.name!r} is neither a poller nor a stream")
        self.running[spec.name] = Running(cfg, collector, asyncio.create_task(coro, name=spec.name))

    async def _stop(self, name: str) -> None:
        running = self.running.pop(name)
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                if running.task is not None:
                    running.task.cancel()
                    await asyncio.gather(running.task, return_exceptions=True)
                await api.close(running.collector)
        except Exception as exc:
            log.warning("collector did not close cleanly", collector=name, error=describe(exc))
        self.store.remove(name)

    async def stop(self) -> None:
        await asyncio.gather(*(self._stop(name) for name in list(self.running)))

    async def reload(self) -> bool:
        """SIGHUP: a bad new config leaves the running one untouched."""
        async with self._reloading:
            return await self._reload()

    async def _reload(self) -> bool:
        try:
            loaded = load_config(self.path)
        except ConfigError as exc:
            for line in exc.lines:
                log.error("config reload failed", problem=line)
            self.store.set_reload(False)
            return False
        for key in ("listen_address", "config_file"):
            if getattr(loaded.config.web, key) != getattr(self.config.web, key):
                log.warning(f"web.{key} changes take effect at the next restart")
        self.secrets |= loaded.secret_values
        self.store.redact = Redactor(self.secrets)
        self.loaded = loaded
        self._apply_runbooks()
        self.configure_logging()
        await self.apply(loaded.config)
        self.store.set_reload(True)
        log.info("config reloaded", origin=loaded.origin)
        return True


class _Broken:
    """Stands in for a collector whose factory failed, so reload can retry it."""
