"""Turning pydantic's errors into one line per problem: `FILE: key.path: message (got X)`."""

from __future__ import annotations

import types
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, SecretStr, ValidationError

from exporter.yamlsource import KeyPath, closest, format_path

_PLAIN = {
    "missing": "required key is missing",
    "bool_parsing": "must be true or false",
    "bool_type": "must be true or false",
    "int_parsing": "must be an integer",
    "int_type": "must be an integer",
    "int_from_float": "must be an integer",
    "float_parsing": "must be a number",
    "float_type": "must be a number",
    "string_type": "must be a string",
    "dict_type": "must be a mapping",
    "model_type": "must be a mapping",
    "model_attributes_type": "must be a mapping",
    "list_type": "must be a list",
    "path_type": "must be a path",
}
# Errors about a key rather than a value: showing the value adds nothing.
_NO_VALUE = {"missing", "extra_forbidden", "union_tag_not_found"}
_MAX_VALUE_CHARS = 60


def _unwrap(tp: Any) -> Any:
    while True:
        origin = get_origin(tp)
        if origin is Annotated:
            tp = get_args(tp)[0]
        elif origin in (Union, types.UnionType):
            options = [a for a in get_args(tp) if a is not type(None)]
            tp = options[0] if len(options) == 1 else tp
            if len(options) != 1:
                return tp
        else:
            return tp


def _union_option(tp: Any, tag: str) -> Any:
    """The member of a union tagged `type: <tag>`, or None."""
    for option in get_args(tp):
        option = _unwrap(option)  # noqa: PLW2901
        if isinstance(option, type) and issubclass(option, BaseModel):
            field = option.model_fields.get("type")
            if field is not None and tag in get_args(field.annotation):
                return option
    return None


def _step(tp: Any, part: str | int) -> tuple[Any, bool]:
    """The type one key below `tp`, and whether `part` was a tagged union's tag."""
    tp = _unwrap(tp)
    if isinstance(part, str) and get_origin(tp) in (Union, types.UnionType):
        option = _union_option(tp, part)
        if option is not None:
            return option, True
    if isinstance(part, int):
        args = get_args(tp)
        return (args[0] if args else None), False
    if get_origin(tp) is dict:
        args = get_args(tp)
        return (args[1] if args else None), False
    if isinstance(tp, type) and issubclass(tp, BaseModel) and part in tp.model_fields:
        return tp.model_fields[part].annotation, False
    return None, False


def _strip_tags(root: type[BaseModel], path: KeyPath) -> KeyPath:
    """pydantic puts a tagged union's tag in the location (`sources.0.file.path`); users
    wrote `sources[0].path`, so the tag goes."""
    tp: Any = root
    out: list[str | int] = []
    for part in path:
        tp, is_tag = _step(tp, part)
        if not is_tag:
            out.append(part)
    return tuple(out)


def _keys_at(root: type[BaseModel], path: KeyPath) -> list[str]:
    """The valid keys of the model found at `path` below `root` (empty if none)."""
    tp: Any = root
    for part in path:
        tp, _ = _step(tp, part)
        if tp is None:
            return []
    tp = _unwrap(tp)
    return list(tp.model_fields) if isinstance(tp, type) and issubclass(tp, BaseModel) else []


def _secret(root: type[BaseModel], path: KeyPath) -> bool:
    """Whether the key at `path` holds a secret (a SecretStr field, or inside one)."""
    tp: Any = root
    for part in path:
        tp, _ = _step(tp, part)
        if tp is None:
            return False
        if _unwrap(tp) is SecretStr:
            return True
    return False


def _show(value: Any) -> str:
    # A mapping or list may hold secrets under keys the error is not about.
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    text = repr(value)
    return text if len(text) <= _MAX_VALUE_CHARS else text[: _MAX_VALUE_CHARS - 3] + "..."


def _message(error: Any, root: type[BaseModel], path: KeyPath) -> str:
    kind, ctx = error["type"], error.get("ctx") or {}
    if kind == "extra_forbidden":
        return f"unknown key ({closest(str(path[-1]), _keys_at(root, path[:-1]))})"
    templates = {
        "literal_error": "must be one of {expected}",
        "union_tag_invalid": "unknown type (known: {expected_tags})",
        "union_tag_not_found": "required key 'type' is missing",
        "greater_than": "must be more than {gt}",
        "greater_than_equal": "must be at least {ge}",
        "less_than": "must be less than {lt}",
        "less_than_equal": "must be at most {le}",
    }
    if kind in templates:
        return templates[kind].format(**ctx)
    if kind in _PLAIN:
        return _PLAIN[kind]
    return str(error["msg"]).removeprefix("Value error, ")


def _refine(error: Any) -> tuple[KeyPath, Any]:
    """A validator that checks one key against its siblings names it in ctx['at']."""
    path: KeyPath = tuple(error["loc"])
    value = error["input"]
    at = (error.get("ctx") or {}).get("at")
    if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
        at = "type"  # the entry is fine but for its `type`: name that key
    if at:
        for part in str(at).split("."):
            key: str | int = int(part) if part.isdigit() else part
            path = (*path, key)
            try:
                value = value[key]
            except (KeyError, IndexError, TypeError):
                value = None
    return path, value


def format_validation_error(
    exc: ValidationError,
    origin: str,
    root: type[BaseModel],
    env_paths: dict[KeyPath, list[str]],
) -> list[str]:
    lines = []
    for error in exc.errors():
        raw_path, value = _refine(error)
        path = _strip_tags(root, raw_path)
        line = f"{origin}: {format_path(path)}: {_message(error, root, raw_path)}"
        if error["type"] not in _NO_VALUE:
            # A value that came from the environment may be a secret: name the variable only.
            from_env = next((v for p, v in env_paths.items() if path[: len(p)] == p), None)
            if from_env:
                got = "the value of $" + ", $".join(from_env)
            elif value is not None and _secret(root, path):
                got = "a secret value, not shown"
            else:
                got = _show(value)
            line += f" (got {got})"
        lines.append(line)
    return lines
