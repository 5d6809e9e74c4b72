"""Base config models every section builds on."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from exporter.fields import Duration, format_duration


class Strict(BaseModel):
    """Unknown keys are errors: a typo must never silently fall back to a default."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


class CollectorConfig(Strict):
    """What every collector accepts. `interval` and `timeout` only matter to pollers."""

    enabled: bool = True
    interval: Duration = 15.0
    timeout: Duration = 10.0

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
