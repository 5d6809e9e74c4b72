"""Docker containers by polling the Engine API: state, health, restarts, exit code, resources.

Each round lists all containers (stopped ones too), inspects the selected ones and, when
`stats` is on, takes one-shot stats of the running ones; all in one blocking-call thread
(ctx.blocking), so a hung engine costs the round its timeout and never blocks the loop.
The JSON becomes metrics in collectors/dockerstate.py (pure, tested on fixtures).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from prometheus_client.metrics_core import Metric

from exporter import dockerapi
from exporter.collector import Context
from exporter.collectors.dockerstate import ContainerReading, Selection, container_families
from exporter.fields import Regex, compile_regex
from exporter.models import CollectorConfig
from exporter.registry import collector

if TYPE_CHECKING:
    import docker


class DockerConfig(CollectorConfig):
    """Off unless enabled (the trader-bot preset enables it): a host without an engine must
    not get a collector that is always down because the config says nothing about docker."""

    enabled: bool = False
    url: str | None = None  # None: $DOCKER_HOST, else unix:///var/run/docker.sock
    include: Regex = compile_regex(".*")
    exclude: Regex = compile_regex("^$")
    compose_projects: list[str] = []
    stats: bool = True

    def selection(self) -> Selection:
        return Selection(self.include, self.exclude, tuple(self.compose_projects))


class EngineError(Exception):
    """The engine could not be asked; the message is one line (dockerapi.describe)."""


class DockerCollector:
    def __init__(self, config: DockerConfig, ctx: Context) -> None:
        self.config = config
        self.ctx = ctx
        self._selection = config.selection()
        self._client: docker.DockerClient | None = None

    async def collect(self) -> list[Metric]:
        readings = await self.ctx.blocking.run(f"{self.ctx.name} poll", self._read)
        return container_families(readings)

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await self.ctx.blocking.run(f"{self.ctx.name} close", client.close)

    def _read(self) -> list[ContainerReading]:
        import docker.errors

        try:
            if self._client is None:
                self._client = dockerapi.client(self.config.url, timeout=self.config.timeout)
            return self._read_all(self._client.api)
        except (docker.errors.DockerException, OSError) as exc:
            # requests' errors are OSErrors; a JSON decode error is a ValueError (and
            # OSError); both mean the engine did not answer as one should.
            raise EngineError(dockerapi.describe(exc)) from None

    def _read_all(self, api: Any) -> list[ContainerReading]:
        import docker.errors

        readings = []
        for entry in api.containers(all=True):
            if not self._selection.selects_listed(entry):
                continue
            try:
                inspect = api.inspect_container(entry["Id"])
            except docker.errors.NotFound:
                continue  # removed since the list: gone from this round
            state = inspect.get("State") or {}
            stats = None
            if self.config.stats and state.get("Running") and not state.get("Paused"):
                stats = self._stats(api, entry["Id"])
            readings.append(ContainerReading(entry, inspect, stats))
        return readings

    def _stats(self, api: Any, container: str) -> dict[str, Any] | None:
        """One-shot stats, or None when this container cannot give them right now.

        A container in a restart loop can stop between inspect and stats (podman then
        answers with an empty body): it loses its resource series for this round only.
        """
        import docker.errors
        import docker.utils

        # Without one-shot the engine samples twice, a second apart, for CPU percentages.
        one_shot = True if docker.utils.version_gte(api.api_version, "1.41") else None
        try:
            stats: dict[str, Any] = api.stats(container, stream=False, one_shot=one_shot)
        except (docker.errors.APIError, ValueError):
            return None
        return stats or None


@collector(
    "docker",
    config=DockerConfig,
    kind="poller",
    help="Docker containers: state, health, restarts, exit codes, memory and CPU (Engine API).",
)
def build(config: DockerConfig, ctx: Context) -> DockerCollector:
    return DockerCollector(config, ctx)
