"""Config models of the `logs:` section: sources, rules, circuit breakers.

Rules and breakers are also the schema of the packaged packs (exporter/logs/packs/*.yaml), so
a pack and a config's inline rules are validated by the same code.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from exporter.fields import Duration
from exporter.models import CollectorConfig, Strict, ensure_unique

NAME = re.compile(r"^[a-z][a-z0-9_]*$")
SOURCE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")
LABEL_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
# Labels every match series carries already; a rule must not redefine them.
RESERVED_LABELS = frozenset({"source", "rule"})
BreakerState = Literal["closed", "open", "half_open"]


def compile_bytes(pattern: str, ignore_case: bool) -> re.Pattern[bytes]:
    """Lines are bytes (a log may hold any bytes); patterns are UTF-8, so Korean works as is.

    In a bytes pattern `\\w`, `\\d`, `\\s` and ignore_case cover ASCII only.
    """
    flags = re.MULTILINE | (re.IGNORECASE if ignore_case else 0)
    try:
        return re.compile(pattern.encode(), flags)
    except re.error as exc:
        raise PydanticCustomError("regex", "invalid regex: {reason}", {"reason": str(exc)}) from exc


class _Pattern(Strict):
    match: str
    ignore_case: bool = False

    @model_validator(mode="after")
    def _compiles(self) -> _Pattern:
        try:
            compile_bytes(self.match, self.ignore_case)
        except PydanticCustomError as exc:
            raise PydanticCustomError(
                "regex", "{reason}", {"reason": exc.message(), "at": "match"}
            ) from None
        return self

    @property
    def regex(self) -> re.Pattern[bytes]:
        return compile_bytes(self.match, self.ignore_case)

    def groups(self) -> list[str]:
        return list(self.regex.groupindex)


class RuleConfig(_Pattern):
    """Counts the lines it matches as botwatch_log_matches_total{source,rule,...labels}.

    Several entries may share a name (variants, e.g. one per order-rejection reason); on each
    line only the first matching variant of a name counts, so a catch-all placed last means
    "anything else". Labels: the pattern's named groups plus the static `labels`.
    """

    name: str
    labels: dict[str, str] = {}
    max_values: int = Field(default=20, ge=1, le=1000)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME.match(value):
            raise PydanticCustomError("name", "must match [a-z][a-z0-9_]*")
        return value

    @model_validator(mode="after")
    def _labels(self) -> RuleConfig:
        groups = self.groups()
        for label in (*groups, *self.labels):
            if not LABEL_NAME.match(label) or label in RESERVED_LABELS or label.startswith("__"):
                raise PydanticCustomError(
                    "label", "'{label}' cannot be a label name", {"label": label, "at": "match"}
                )
        both = sorted(set(groups) & set(self.labels))
        if both:
            raise PydanticCustomError(
                "label", "label '{label}' is both a group and a static label", {"label": both[0]}
            )
        return self

    def label_names(self) -> tuple[str, ...]:
        return tuple(sorted({*self.groups(), *self.labels}))


class BreakerConfig(_Pattern):
    """A line announcing a circuit breaker's state; the group `breaker`, if any, names it."""

    state: BreakerState
    breaker: str = "default"  # the name when the pattern has no `breaker` group


class Pack(Strict):
    """A reusable set of rules; the schema of exporter/logs/packs/*.yaml."""

    description: str = ""
    rules: list[RuleConfig] = []
    breakers: list[BreakerConfig] = []

    @model_validator(mode="after")
    def _variants_agree(self) -> Pack:
        check_variants(self.rules)
        return self


def check_variants(rules: list[RuleConfig], at: Callable[[int], str] = str) -> None:
    """All entries of one rule name must yield the same label names (one metric shape)."""
    seen: dict[str, tuple[str, ...]] = {}
    for index, rule in enumerate(rules):
        names = rule.label_names()
        first = seen.setdefault(rule.name, names)
        if names != first:
            raise PydanticCustomError(
                "labels",
                "rule '{name}' has labels {got} here but {first} in an earlier entry",
                {"name": rule.name, "got": list(names), "first": list(first), "at": at(index)},
            )


StartAt = Literal["end", "beginning"]


class _SourceBase(Strict):
    name: str
    packs: list[str] = []
    rules: list[RuleConfig] = []
    breakers: list[BreakerConfig] = []
    # Where to begin when there is no checkpoint for this source yet. Files that appear
    # later are always read from their start.
    start_at: StartAt = "end"

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not SOURCE_NAME.match(value):
            raise PydanticCustomError("name", "must match [A-Za-z0-9][A-Za-z0-9_.:-]*")
        return value

    @field_validator("packs")
    @classmethod
    def _packs(cls, value: list[str]) -> list[str]:
        from exporter.logs.packs import pack_names

        known = pack_names()
        for index, name in enumerate(value):
            if name not in known:
                raise PydanticCustomError(
                    "pack",
                    "unknown pack '{name}' (known: {known})",
                    {"name": name, "known": ", ".join(sorted(known)), "at": str(index)},
                )
        return value

    @model_validator(mode="after")
    def _rules_agree(self) -> _SourceBase:
        # A source's own rule may extend a pack's rule name, but not change its labels.
        rules = self.all_rules()[0]
        from_packs = len(rules) - len(self.rules)
        check_variants(
            rules, at=lambda i: f"rules.{i - from_packs}" if i >= from_packs else "packs"
        )
        return self

    def all_rules(self) -> tuple[list[RuleConfig], list[BreakerConfig]]:
        """The packs in order, then the source's own: earlier variants of a name win."""
        from exporter.logs.packs import load_pack

        rules: list[RuleConfig] = []
        breakers: list[BreakerConfig] = []
        for name in self.packs:
            pack = load_pack(name)
            rules += pack.rules
            breakers += pack.breakers
        return rules + self.rules, breakers + self.breakers


class FileSourceConfig(_SourceBase):
    type: Literal["file"]
    path: str  # an absolute path or glob of the live file(s)
    # Where rotated copies are looked for, to finish a file's unread tail after a rotation
    # (default: the live file's name followed by anything, compressed files excepted).
    rotated: str | None = None
    poll_interval: Duration = 0.25
    max_files: int = Field(default=256, ge=1)

    @field_validator("path", "rotated")
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("/"):
            raise PydanticCustomError("path", "must be an absolute path or glob")
        return value


class JournaldSourceConfig(_SourceBase):
    type: Literal["journald"]
    unit: str | list[str]
    directory: str | None = None  # read journal files here instead of the system journal
    journalctl: str = "journalctl"

    def units(self) -> list[str]:
        return [self.unit] if isinstance(self.unit, str) else list(self.unit)


class DockerSourceConfig(_SourceBase):
    type: Literal["docker"]
    container: str
    # The Docker Engine API; default: $DOCKER_HOST, else unix:///var/run/docker.sock.
    docker_url: str | None = None
    streams: list[Literal["stdout", "stderr"]] = ["stdout", "stderr"]


SourceConfig = Annotated[
    FileSourceConfig | JournaldSourceConfig | DockerSourceConfig, Field(discriminator="type")
]


class LogsConfig(CollectorConfig):
    """The `logs:` section: one stream collector, named `logs`, reads every source."""

    sources: list[SourceConfig] = []
    # How often counters and positions are written to state_dir together. /metrics shows
    # the counts as of the last checkpoint, so a kill -9 can never make a counter go back.
    checkpoint_interval: Duration = 1.0
    # The rule matcher: auto picks hyperscan where it is installed, else pure-Python `re`.
    engine: Literal["auto", "hyperscan", "re"] = "auto"

    def wanted(self) -> bool:
        return self.enabled and bool(self.sources)

    @field_validator("sources")
    @classmethod
    def _unique(cls, value: list[Any]) -> list[Any]:
        ensure_unique(value, "source name")
        return value
