"""The `collectors.files` section: paths with their checks, and sets of backups."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from exporter.fields import Duration, format_duration
from exporter.models import CollectorConfig, Strict, effective_timeout, ensure_unique

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")
_OCTAL_MODE = re.compile(r"^[0-7]{3,4}$")

DEFAULT_STAT_TIMEOUT = 5.0
DEFAULT_MAX_YAML_BYTES = 1 << 20

# The order checks are listed in: what a path is, who may touch it, then its content.
CHECKS = ("type", "mode", "owner", "group", "executable", "yaml", "max_age")
FileType = Literal["file", "directory", "symlink", "other"]


def _mode(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        # YAML reads 0750 as the octal number 488 and 750 as the decimal number 750; which
        # one was meant cannot be told from the number, so only the quoted text is accepted.
        raise PydanticCustomError(
            "mode", 'must be quoted, like "0750" (an unquoted mode is read as a number)'
        )
    if not isinstance(value, str) or not _OCTAL_MODE.match(value):
        raise PydanticCustomError("mode", 'must be 3 or 4 octal digits, like "0750"')
    return value.zfill(4)


def _account(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return str(value)
    if isinstance(value, str) and value and not value.isspace():
        return value
    raise PydanticCustomError("account", "must be a name or a numeric id")


Mode = Annotated[str, BeforeValidator(_mode)]
Account = Annotated[str, BeforeValidator(_account)]


def _name(value: str) -> str:
    if not NAME.match(value):
        raise PydanticCustomError("name", "must match [A-Za-z0-9][A-Za-z0-9_.:-]*")
    return value


class FileChecks(Strict):
    """Expected values; a check left out (or false) is not made."""

    type: FileType | None = None
    mode: Mode | None = None  # exact, setuid/setgid/sticky bits included
    owner: Account | None = None  # a user name, or a uid
    group: Account | None = None
    # A regular file its owner may execute, through any symlinks (a venv's bin/python).
    executable: bool = False
    # It parses with PyYAML's safe loader and is not empty; its content is never shown.
    yaml: bool = False
    max_age: Duration | None = None  # modified at most this long ago

    def configured(self) -> list[str]:
        return [c for c in CHECKS if getattr(self, c) not in (None, False)]


class FilePath(Strict):
    path: str
    name: str | None = None  # the `path` label; default: the path itself
    # false: describe the path itself, as `ls -la` does (a symlink is a symlink);
    # true: what it points to, as `ls -laL` does (a dangling symlink does not exist).
    follow_symlinks: bool = False
    checks: FileChecks = FileChecks()

    @property
    def label(self) -> str:
        return self.name if self.name is not None else self.path

    @field_validator("path")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise PydanticCustomError("path", "must be an absolute path")
        return value

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        return None if value is None else _name(value)


class BackupSet(Strict):
    name: str  # the `set` label
    glob: str  # wildcards within a path component: * ? [...]
    max_age: Duration | None = None  # the newest backup must be at most this old

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _name(value)

    @field_validator("glob")
    @classmethod
    def _glob(cls, value: str) -> str:
        if not value.startswith("/"):
            raise PydanticCustomError("path", "must be an absolute path or glob")
        if "**" in value:
            raise PydanticCustomError(
                "glob", "'**' is not supported (wildcards match within one directory)"
            )
        return value


class FilesConfig(CollectorConfig):
    # Paths and globs are looked up below this, absolute symlinks included, so that
    # botwatch in a container checks the host's files (node_exporter's --path.rootfs).
    rootfs: Path = Path("/")
    # How long one path (or backup set) may take, its checks included; a slower one is
    # reported as a timeout and not looked at again until its stuck call returns.
    stat_timeout: Duration = DEFAULT_STAT_TIMEOUT
    # A larger file fails its yaml check unread.
    max_yaml_bytes: int = Field(default=DEFAULT_MAX_YAML_BYTES, ge=1)
    paths: list[FilePath] = []
    backups: list[BackupSet] = []

    def wanted(self) -> bool:
        return self.enabled and bool(self.paths or self.backups)

    @model_validator(mode="before")
    @classmethod
    def _default_stat_timeout_fits_timeout(cls, data: Any) -> Any:
        if isinstance(data, dict) and "stat_timeout" not in data:
            data = {**data, "stat_timeout": min(DEFAULT_STAT_TIMEOUT, effective_timeout(data) / 2)}
        return data

    @field_validator("stat_timeout")
    @classmethod
    def _stat_within_timeout(cls, value: float, info: ValidationInfo) -> float:
        timeout = info.data.get("timeout")
        if timeout is not None and value >= timeout:
            raise PydanticCustomError(
                "timeout",
                "must be shorter than the collector timeout ({timeout})",
                {"timeout": format_duration(timeout)},
            )
        return value

    @field_validator("rootfs")
    @classmethod
    def _rootfs_absolute(cls, value: Path) -> Path:
        if not value.is_absolute():
            raise PydanticCustomError("path", "must be an absolute path")
        return value

    @field_validator("paths")
    @classmethod
    def _unique_labels(cls, value: list[FilePath]) -> list[FilePath]:
        ensure_unique(
            value,
            "path label",
            key=lambda entry: entry.label,
            at=lambda entry: "name" if entry.name is not None else "path",
            hint=" (give one of them a name)",
        )
        return value

    @field_validator("backups")
    @classmethod
    def _unique_sets(cls, value: list[BackupSet]) -> list[BackupSet]:
        ensure_unique(value, "backup set name")
        return value
