"""Reading the config's YAML: duplicate-key detection, ${VAR} expansion and preset merging.

Everything here works on plain trees (dicts, lists, scalars) before validation, and reports
problems as one line each with the key path, so the models never see half-expanded input.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

KeyPath = tuple[str | int, ...]

_ENV_REF = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
# Shorter values are too common to redact without mangling every log line they occur in.
MIN_SECRET_LENGTH = 4


class ConfigError(Exception):
    """A config that cannot be used; each entry of `lines` is one complete problem report."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


def format_path(path: KeyPath) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "top level"


@dataclass
class Source:
    """A loaded, expanded and merged config tree plus what the environment contributed."""

    tree: dict[str, Any]
    env_paths: dict[KeyPath, list[str]] = field(default_factory=dict)
    secret_values: set[str] = field(default_factory=set)


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys instead of silently keeping the last one."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: dict[Any, Any] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            mark = key_node.start_mark
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", mark)
        seen[key] = True
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,
)


def parse_yaml(text: str, origin: str) -> Any:
    try:
        return yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ConfigError([f"{origin}: {where}invalid YAML: {exc.problem}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"{origin}: invalid YAML: {exc}"]) from None


def read_file(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{path}: cannot read config: file not found"]) from None
    except IsADirectoryError:
        raise ConfigError([f"{path}: cannot read config: is a directory"]) from None
    except PermissionError:
        raise ConfigError([f"{path}: cannot read config: permission denied"]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{path}: cannot read config: not UTF-8 ({exc.reason})"]) from None
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read config: {exc.strerror}"]) from None


def _walk_strings(tree: Any, path: KeyPath = ()) -> Iterator[tuple[KeyPath, str]]:
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from _walk_strings(value, (*path, str(key)))
    elif isinstance(tree, list):
        for index, value in enumerate(tree):
            yield from _walk_strings(value, (*path, index))
    elif isinstance(tree, str):
        yield path, tree


def _set(tree: Any, path: KeyPath, value: Any) -> None:
    for part in path[:-1]:
        tree = tree[part]
    tree[path[-1]] = value


def expand_env(tree: Any, environ: Mapping[str, str], origin: str) -> Source:
    """Replace ${VAR} and ${VAR:-default} in every string value; $$ is a literal $."""
    source = Source(tree=tree)
    errors: list[str] = []
    for path, text in list(_walk_strings(tree)):
        if "$" not in text:
            continue
        used: list[str] = []

        def substitute(match: re.Match[str], path: KeyPath = path, used: list[str] = used) -> str:
            if match.group(0) == "$$":
                return "$"
            name, default = match.group(1), match.group(2)
            if name in environ:
                used.append(name)
                value = environ[name]
                if len(value) >= MIN_SECRET_LENGTH:
                    source.secret_values.add(value)
                return value
            if default is not None:
                return default
            errors.append(
                f"{origin}: {format_path(path)}: environment variable {name} is not set "
                f"(give a default with ${{{name}:-value}})"
            )
            return ""

        expanded = _ENV_REF.sub(substitute, text)
        if used:
            source.env_paths[path] = used
        if expanded != text:
            _set(tree, path, expanded)
    if errors:
        raise ConfigError(errors)
    return source


def preset_names() -> list[str]:
    files = resources.files("exporter.presets").iterdir()
    return sorted(f.name.removesuffix(".yaml") for f in files if f.name.endswith(".yaml"))


def load_preset(name: str) -> dict[str, Any]:
    text = resources.files("exporter.presets").joinpath(f"{name}.yaml").read_text("utf-8")
    tree = parse_yaml(text, f"preset {name}")
    return dict(tree) if isinstance(tree, dict) else {}


def closest(word: str, choices: list[str]) -> str:
    match = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f"did you mean {match[0]!r}?" if match else "valid: " + ", ".join(choices)


def _merge_named_lists(base: list[Any], over: list[Any]) -> list[Any]:
    """Items with a `name` replace the base item of the same name; others are appended."""
    names = {item.get("name"): i for i, item in enumerate(base) if isinstance(item, dict)}
    merged = list(base)
    for item in over:
        index = names.get(item.get("name")) if isinstance(item, dict) else None
        if index is None:
            merged.append(item)
        else:
            merged[index] = item
    return merged


def merge(base: Any, over: Any) -> Any:
    """`over` wins; mappings merge key by key, lists of named mappings merge by name."""
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for key, value in over.items():
            out[key] = merge(base[key], value) if key in base else value
        return out
    if (
        isinstance(base, list)
        and isinstance(over, list)
        and all(isinstance(i, dict) and "name" in i for i in base + over)
    ):
        return _merge_named_lists(base, over)
    return over


def apply_includes(tree: dict[str, Any], origin: str) -> dict[str, Any]:
    includes = tree.get("include", [])
    if includes is None:
        includes = []
    if not isinstance(includes, list):
        raise ConfigError([f"{origin}: include: must be a list of preset names (got {includes!r})"])
    available = preset_names()
    merged: dict[str, Any] = {}
    errors = []
    for index, name in enumerate(includes):
        if name not in available:
            errors.append(
                f"{origin}: include[{index}]: unknown preset {name!r} "
                f"({closest(str(name), available)})"
            )
            continue
        merged = merge(merged, load_preset(name))
    if errors:
        raise ConfigError(errors)
    merged.pop("include", None)
    result: dict[str, Any] = merge(merged, tree)
    return result


def load_source(path: Path | None, environ: Mapping[str, str] | None = None) -> Source:
    """Read the user's file (or the embedded default preset), expand ${VAR}, merge presets."""
    env = os.environ if environ is None else environ
    if path is None:
        origin, tree = "preset default", load_preset("default")
    else:
        origin = str(path)
        tree = parse_yaml(read_file(path), origin)
    if tree is None:
        tree = {}
    if not isinstance(tree, dict):
        raise ConfigError([f"{origin}: top level: must be a mapping (got a {type(tree).__name__})"])
    # Presets are merged before expansion so that they may use ${VAR:-default} too.
    return expand_env(apply_includes(tree, origin), env, origin)
