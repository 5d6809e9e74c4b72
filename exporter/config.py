"""The validated config: top-level models and the one entry point that loads them."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ValidationError, create_model, field_validator
from pydantic_core import PydanticCustomError

from exporter.configerrors import format_validation_error
from exporter.fields import Duration, ListenAddress
from exporter.logs.models import LogsConfig
from exporter.models import CollectorConfig, Strict
from exporter.probes.models import AnyProbe, ProbesConfig, unique_names
from exporter.registry import specs
from exporter.runbooks.catalog import GROUPS, PLACEHOLDER_BASES, PLACEHOLDER_GRAFANA
from exporter.runbooks.info import check_base, check_url
from exporter.secrets import secret_values
from exporter.yamlsource import ConfigError, Source, load_source

LogLevel = Literal["debug", "info", "warning", "error"]
LogFormat = Literal["json", "logfmt"]


class WebConfig(Strict):
    listen_address: ListenAddress = ":9877"
    # TLS, basic auth and headers: the exporter-toolkit's file (--web.config.file wins).
    config_file: Path | None = None
    # A scrape gets a body at most this old; bounds render work when the store churns.
    render_interval: Duration = 0.25


class LogConfig(Strict):
    level: LogLevel = "info"
    format: LogFormat | None = None  # None: json when stdout is not a terminal


def _valid(check: Callable[[str], str]) -> AfterValidator:
    def validate(value: str) -> str:
        try:
            return check(value)
        except ValueError as exc:
            raise PydanticCustomError("url", str(exc)) from None

    return AfterValidator(validate)


class RunbooksConfig(Strict):
    """Where the runbook links of botwatch_alert_runbook_info and the landing page point:
    each document's URL (the section's anchor is appended) and Grafana's, for the panels."""

    bases: dict[str, Annotated[str, _valid(check_base)]] = dict(PLACEHOLDER_BASES)
    grafana_url: Annotated[str, _valid(check_url)] = PLACEHOLDER_GRAFANA

    @field_validator("bases")
    @classmethod
    def _known(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if name not in GROUPS:
                raise PydanticCustomError(
                    "runbook",
                    "unknown runbook (known: {known})",
                    {"known": ", ".join(GROUPS), "at": name},
                )
        # A document left out keeps its placeholder, so a partial map is still a full one.
        return {**PLACEHOLDER_BASES, **value}


def _collectors_model() -> type[BaseModel]:
    fields: dict[str, Any] = {
        name: (spec.config, spec.config()) for name, spec in specs().items() if not spec.top_level
    }
    return create_model("Collectors", __base__=Strict, **fields)


CollectorsConfig = _collectors_model()


class Config(Strict):
    include: list[str] = []
    state_dir: Path = Path("/var/lib/botwatch")
    web: WebConfig = WebConfig()
    log: LogConfig = LogConfig()
    collectors: CollectorsConfig = CollectorsConfig()  # type: ignore[valid-type]
    probes: list[AnyProbe] = []
    logs: LogsConfig = LogsConfig()
    runbooks: RunbooksConfig = RunbooksConfig()

    @field_validator("probes")
    @classmethod
    def _probes(cls, value: list[Any]) -> list[Any]:
        return unique_names(value)

    def collector_configs(self) -> dict[str, CollectorConfig]:
        configs: dict[str, CollectorConfig] = {}
        for name, spec in specs().items():
            if name == "probes":
                # The one top-level section that is a list: the collector's config wraps it.
                configs[name] = ProbesConfig(targets=self.probes)
            else:
                configs[name] = getattr(self if spec.top_level else self.collectors, name)
        return configs


@dataclass(frozen=True)
class Loaded:
    config: Config
    origin: str
    secret_values: frozenset[str] = field(default_factory=frozenset)


def load_config(path: Path | None, environ: Mapping[str, str] | None = None) -> Loaded:
    """Read, expand, merge and validate; raises ConfigError with one line per problem."""
    source: Source = load_source(path, environ)
    origin = str(path) if path is not None else "preset default"
    try:
        config = Config.model_validate(source.tree)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, origin, Config, source.env_paths)) from None
    return Loaded(config, origin, frozenset(source.secret_values | secret_values(config)))
