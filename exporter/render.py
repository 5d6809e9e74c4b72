"""Exposition rendering: per-collector chunks rendered once, bodies assembled from them.

prometheus_client spends ~30 µs per sample, so nothing is rendered on the scrape path that
was rendered before: each collector's chunk is rendered in its own round (which also proves
the families are valid), OpenMetrics chunks on first demand, and a scrape concatenates.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from prometheus_client.exposition import generate_latest as _text
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.exposition import generate_latest as _openmetrics

TEXT = "text"
OPENMETRICS = "openmetrics"
CONTENT_TYPES = {
    TEXT: "text/plain; version=0.0.4; charset=utf-8",
    OPENMETRICS: "application/openmetrics-text; version=1.0.0; charset=utf-8",
}
_OM_EOF = b"# EOF\n"
_NAME = re.compile(r"^botwatch_[a-zA-Z0-9_]*$")


class InvalidFamilies(Exception):
    """A collector returned something that is not a valid set of botwatch metric families."""


class _Families:
    """The minimal registry prometheus_client's generators accept."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families


def render_text(families: Sequence[Metric]) -> bytes:
    return bytes(_text(_Families(families)))


def render_openmetrics(families: Sequence[Metric]) -> bytes:
    body = bytes(_openmetrics(_Families(families)))  # type: ignore[no-untyped-call]
    return body.removesuffix(_OM_EOF)


def check_families(families: object, reserved: frozenset[str]) -> tuple[Metric, ...]:
    if not isinstance(families, list | tuple):
        raise InvalidFamilies(f"expected a list of metric families, got {type(families).__name__}")
    names: set[str] = set()
    for family in families:
        if not isinstance(family, Metric):
            raise InvalidFamilies(f"not a metric family: {type(family).__name__}")
        if not _NAME.match(family.name):
            raise InvalidFamilies(f"metric {family.name!r} is outside the botwatch_ namespace")
        if family.name in names or family.name in reserved:
            raise InvalidFamilies(f"metric {family.name!r} is declared twice")
        names.add(family.name)
    return tuple(families)


@dataclass(eq=False)
class Chunk:
    """One collector's families and their rendered forms; replaced whole on each update."""

    families: tuple[Metric, ...]
    text: bytes
    _openmetrics: bytes | None = field(default=None, repr=False)

    @classmethod
    def build(cls, families: object, reserved: frozenset[str]) -> Chunk:
        checked = check_families(families, reserved)
        try:
            return cls(checked, render_text(checked))
        except Exception as exc:
            raise InvalidFamilies(f"cannot render: {exc!r}") from exc

    @property
    def names(self) -> frozenset[str]:
        return frozenset(f.name for f in self.families)

    def rendered(self, fmt: str) -> bytes:
        if fmt == TEXT:
            return self.text
        if self._openmetrics is None:
            self._openmetrics = render_openmetrics(self.families)
        return self._openmetrics


EMPTY = Chunk((), b"")


def assemble(fmt: str, chunks: Sequence[Chunk], own: Sequence[Metric]) -> bytes:
    """A whole exposition: the collectors' chunks, then botwatch's own metrics."""
    parts = [chunk.rendered(fmt) for chunk in chunks]
    if fmt == TEXT:
        parts.append(render_text(own))
    else:
        parts.append(render_openmetrics(own))
        parts.append(_OM_EOF)
    return b"".join(parts)


def negotiate(accept: str) -> str:
    """OpenMetrics only when the client asks for it, as Prometheus does."""
    for part in accept.split(","):
        if part.split(";")[0].strip() == "application/openmetrics-text":
            return OPENMETRICS
    return TEXT
