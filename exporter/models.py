"""Base config models every section builds on."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from exporter.fields import Duration, format_duration, parse_duration

DEFAULT_TIMEOUT = 10.0


class Strict(BaseModel):
    """Unknown keys are errors: a typo must never silently fall back to a default."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


class CollectorConfig(Strict):
    """What every collector accepts. `interval` and `timeout` only matter to pollers."""

    # The timeout when none is written (capped by the interval); a slow kind of round
    # (docker system df walks every volume) sets a longer one.
    default_timeout: ClassVar[float] = DEFAULT_TIMEOUT

    enabled: bool = True
    interval: Duration = 15.0
    timeout: Duration = DEFAULT_TIMEOUT

    def wanted(self) -> bool:
        """Whether the collector should run: enabled, and with something to do."""
        return self.enabled

    @model_validator(mode="before")
    @classmethod
    def _default_timeout_fits_interval(cls, data: Any) -> Any:
        # `interval: 5s` alone must not be an error about a timeout nobody wrote.
        if isinstance(data, dict) and "timeout" not in data:
            data = {**data, "timeout": effective_timeout(data, cls.default_timeout)}
        return data

    @field_validator("timeout")
    @classmethod
    def _timeout_within_interval(cls, timeout: float, info: ValidationInfo) -> float:
        interval = info.data.get("interval")
        if interval is not None and timeout > interval:
            raise PydanticCustomError(
                "timeout",
                "must not exceed the interval ({interval})",
                {"interval": format_duration(interval)},
            )
        return timeout


def effective_timeout(section: dict[str, Any], default: float = DEFAULT_TIMEOUT) -> float:
    """The timeout a raw collector section asks for, or the default that fits its interval."""
    try:
        if "timeout" in section:
            return parse_duration(section["timeout"])
        if "interval" in section:
            return min(default, parse_duration(section["interval"]))
    except ValueError:
        pass  # reported by field validation with its key path
    return default


T = TypeVar("T")


def ensure_unique(
    items: Sequence[T],
    what: str,
    key: Callable[[T], str] = lambda item: str(getattr(item, "name", "")),
    at: Callable[[T], str] = lambda _: "name",
    hint: str = "",
) -> None:
    """The one-line error for the first item whose key an earlier one has: names are labels,
    and two series with one label would silently be one."""
    seen: set[str] = set()
    for index, item in enumerate(items):
        value = key(item)
        if value in seen:
            raise PydanticCustomError(
                "duplicate",
                "{what} '{value}' is used twice{hint}",
                {"what": what, "value": value, "hint": hint, "at": f"{index}.{at(item)}"},
            )
        seen.add(value)
