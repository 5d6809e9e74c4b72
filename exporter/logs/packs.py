"""The packaged rule packs: exporter/logs/packs/*.yaml, validated as models.Pack.

A pack ships with botwatch, so a broken one is a bug in this release, not in the user's
config; the error still names the file and the key, so it can be found quickly.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from importlib.abc import Traversable

from pydantic import ValidationError

from exporter.configerrors import format_validation_error
from exporter.logs.models import Pack
from exporter.yamlsource import ConfigError, parse_yaml

# exporter.logs.packs is this module, so the YAML directory is reached from its parent.
_PACKAGE = "exporter.logs"
_DIRECTORY = "packs"
_SUFFIX = ".yaml"


def _directory() -> Traversable:
    return resources.files(_PACKAGE).joinpath(_DIRECTORY)


def _origin(name: str) -> str:
    return f"exporter/logs/{_DIRECTORY}/{name}{_SUFFIX}"


@cache
def pack_names() -> frozenset[str]:
    """Names of the packaged packs (file stems)."""
    return frozenset(
        entry.name.removesuffix(_SUFFIX)
        for entry in _directory().iterdir()
        if entry.name.endswith(_SUFFIX) and entry.is_file()
    )


@cache
def load_pack(name: str) -> Pack:
    """The named pack, parsed and validated once per process.

    Raises ConfigError naming the pack file when it is unknown, unreadable or invalid.
    """
    if name not in pack_names():
        known = ", ".join(sorted(pack_names()))
        raise ConfigError([f"unknown pack {name!r} (known: {known})"])
    origin = _origin(name)
    try:
        text = _directory().joinpath(name + _SUFFIX).read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{origin}: cannot read: {exc}"]) from None
    tree = parse_yaml(text, origin)  # a SafeLoader that also rejects duplicate keys
    if not isinstance(tree, dict):
        raise ConfigError([f"{origin}: top level: must be a mapping"])
    try:
        return Pack.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, origin, Pack, {})) from None
