"""`collectors.snmp`: the targets, their credentials and modules, and custom OID tables.

Everything is checked at load: a target's version and credentials agree, modules exist,
custom metric names are valid and free. Community strings and v3 keys are SecretStr:
they are never shown, not in an error (pydantic shows `**********`), a log or the
landing page. Validating a config imports nothing from pysnmp.
"""

from __future__ import annotations

import importlib.util
import re
from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    Field,
    PlainSerializer,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from exporter.collectors.snmpber import Oid, format_oid, parse_oid
from exporter.collectors.snmpmodules import (
    BUILTIN,
    RESERVED_NAMES,
    ColumnType,
    CustomColumn,
    Module,
    custom_module,
    family_name,
    value_label,
)
from exporter.fields import Duration, format_duration
from exporter.models import (
    DEFAULT_TIMEOUT,
    CollectorConfig,
    Strict,
    effective_timeout,
    ensure_unique,
)

# A target's walk gets this share of the collector's timeout unless it sets its own, so a
# target that does not answer is reported as such instead of the whole round timing out.
TARGET_SHARE = 0.9
DEFAULT_PORT = 161
# RFC 3414 §11.2: passphrases shorter than 8 characters are refused by agents (net-snmp).
MIN_KEY_CHARS = 8

AuthProtocol = Literal["MD5", "SHA", "SHA224", "SHA256", "SHA384", "SHA512"]
# net-snmp's names: AES192/AES256 extend the key as net-snmp does (Blumenthal draft),
# AES192C/AES256C as Cisco does (Reeder draft).
PrivProtocol = Literal["DES", "3DES", "AES", "AES192", "AES256", "AES192C", "AES256C"]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]*\Z")
_MODULE = re.compile(r"[a-z][a-z0-9_]*\Z")
_METRIC = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
_GAUGE_SUFFIXES = ("_total", "_created", "_count", "_sum", "_bucket", "_info")


def _oid(value: Any) -> Oid:
    if isinstance(value, tuple):
        return value
    if not isinstance(value, str):
        raise PydanticCustomError("oid", "must be a numeric OID string like 1.3.6.1.2.1.2.2.1.8")
    try:
        return parse_oid(value)
    except ValueError as exc:
        raise PydanticCustomError("oid", str(exc)) from None


OidField = Annotated[Oid, BeforeValidator(_oid), PlainSerializer(format_oid)]


def _version(value: Any) -> Any:
    # `version: 3` is an int in YAML and `version: 2c` a string: both mean the same thing.
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class ColumnConfig(Strict):
    oid: OidField
    metric: str
    type: ColumnType = "gauge"
    help: str | None = None
    scale: float = 1.0

    @field_validator("metric")
    @classmethod
    def _metric(cls, metric: str) -> str:
        if not _METRIC.match(metric) or metric.startswith("__"):
            raise PydanticCustomError(
                "metric", "must be a metric name (letters, digits and _), without botwatch_snmp_"
            )
        if metric.startswith("botwatch_"):
            raise PydanticCustomError(
                "metric", "is prefixed with botwatch_snmp_ already: write the rest only"
            )
        return metric

    @model_validator(mode="after")
    def _consistent(self) -> ColumnConfig:
        if self.type == "gauge" and self.metric.endswith(_GAUGE_SUFFIXES):
            raise PydanticCustomError(
                "metric",
                "a gauge's name must not end in _total, _created, _count, _sum, _bucket "
                "or _info (use type: counter or info)",
                {"at": "metric"},
            )
        if self.scale == 0 or self.scale != self.scale:
            raise PydanticCustomError("scale", "must be a non-zero number", {"at": "scale"})
        if self.scale != 1.0 and self.type not in ("gauge", "counter"):
            raise PydanticCustomError(
                "scale", "applies to gauge and counter columns only", {"at": "scale"}
            )
        return self

    def family(self) -> str:
        return family_name(self.metric, self.type)

    def column(self) -> CustomColumn:
        text = self.help or f"SNMP {format_oid(self.oid)} ({self.type})."
        return CustomColumn(self.oid, self.metric, self.type, text, self.scale)


class TableConfig(Strict):
    name: str  # what a target lists in `modules`
    index_label: str = "index"  # the row's index (dotted when it has several parts)
    table: list[ColumnConfig] = Field(min_length=1, max_length=64)

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        if not _MODULE.match(name):
            raise PydanticCustomError("name", "must match [a-z][a-z0-9_]*")
        if name in BUILTIN:
            raise PydanticCustomError("name", "is a built-in module")
        return name

    @field_validator("index_label")
    @classmethod
    def _index_label(cls, label: str) -> str:
        return _label_name(label)

    @field_validator("table")
    @classmethod
    def _columns(cls, columns: list[ColumnConfig], info: ValidationInfo) -> list[ColumnConfig]:
        index_label = info.data.get("index_label", "index")
        ensure_unique(columns, "column OID", key=lambda c: format_oid(c.oid), at=lambda _: "oid")
        ensure_unique(columns, "metric", key=lambda c: c.metric, at=lambda _: "metric")
        labels = {"target", index_label}
        # Label columns first: an info column's value label must not clash with any of them,
        # wherever they are listed.
        ordered = sorted(enumerate(columns), key=lambda item: item[1].type != "label")
        for position, column in ordered:
            if column.type not in ("label", "info"):
                continue
            name = column.metric if column.type == "label" else value_label(column.metric)
            at = f"{position}.metric"
            try:
                _label_name(name)
            except PydanticCustomError as exc:
                raise PydanticCustomError("label", exc.message(), {"at": at}) from None
            if name in labels:
                raise PydanticCustomError(
                    "label",
                    "'{label}' is already a label of this table",
                    {"label": name, "at": at},
                )
            if column.type == "label":
                labels.add(name)
        return columns

    def module(self) -> Module:
        return custom_module(self.name, self.index_label, [c.column() for c in self.table])


def _label_name(label: str) -> str:
    if not _METRIC.match(label) or label.startswith("__"):
        raise PydanticCustomError("label", "must be a label name (letters, digits and _)")
    if label == "target":
        raise PydanticCustomError("label", "'target' is set by botwatch (the target's name)")
    return label


class TargetConfig(Strict):
    name: str | None = None  # the `target` label; default: host, or host:port
    host: str = Field(min_length=1)
    port: int = Field(DEFAULT_PORT, ge=1, le=65535)
    version: Annotated[Literal["2c", "3"], BeforeValidator(_version)] = "2c"
    community: SecretStr | None = None  # 2c; e.g. "${SNMP_COMMUNITY}"
    user: str | None = None  # 3: the USM user name
    auth_protocol: AuthProtocol | None = None  # 3: none = noAuthNoPriv
    auth_key: SecretStr | None = None
    priv_protocol: PrivProtocol | None = None  # 3: none = authNoPriv
    priv_key: SecretStr | None = None
    # The whole walk of this target; SnmpConfig fills in TARGET_SHARE of its own timeout.
    timeout: Duration = DEFAULT_TIMEOUT * TARGET_SHARE
    retries: int = Field(2, ge=0, le=10)
    max_repetitions: int = Field(25, ge=1, le=100)
    max_varbinds: int = Field(20_000, ge=100, le=1_000_000)
    modules: list[str] = Field(["if_mib"], min_length=1)

    @field_validator("name")
    @classmethod
    def _name(cls, name: str | None) -> str | None:
        if name is not None and not _NAME.match(name):
            raise PydanticCustomError("name", "must match [A-Za-z0-9][A-Za-z0-9_.:-]*")
        return name

    @field_validator("modules")
    @classmethod
    def _unique_modules(cls, modules: list[str]) -> list[str]:
        for index, module in enumerate(modules):
            if module in modules[:index]:
                raise PydanticCustomError("duplicate", "is listed twice", {"at": str(index)})
        return modules

    @model_validator(mode="after")
    def _credentials(self) -> TargetConfig:
        if self.version == "2c":
            for key in ("user", "auth_protocol", "auth_key", "priv_protocol", "priv_key"):
                if getattr(self, key) is not None:
                    raise _at(key, "only with version 3")
            if self.community is None:
                raise _at("community", 'required with version 2c (e.g. "${SNMP_COMMUNITY}")')
            return self
        if self.community is not None:
            raise _at("community", "only with version 2c (version 3 uses user and keys)")
        if not self.user:
            raise _at("user", "required with version 3")
        for protocol, key in (("auth_protocol", "auth_key"), ("priv_protocol", "priv_key")):
            if (getattr(self, protocol) is None) != (getattr(self, key) is None):
                missing = key if getattr(self, key) is None else protocol
                raise _at(missing, f"{protocol} and {key} go together")
            secret = getattr(self, key)
            if secret is not None and len(secret.get_secret_value()) < MIN_KEY_CHARS:
                raise _at(key, f"must be at least {MIN_KEY_CHARS} characters")
        if self.priv_protocol is not None:
            if self.auth_protocol is None:
                raise _at("priv_protocol", "needs auth_protocol (there is no noAuthPriv)")
            if importlib.util.find_spec("cryptography") is None:
                raise _at(
                    "priv_protocol",
                    "needs the Python package 'cryptography', which is not installed",
                )
        return self

    @property
    def label(self) -> str:
        """Its `target` label."""
        if self.name is not None:
            return self.name
        if self.port == DEFAULT_PORT:
            return self.host
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def security_level(self) -> str:
        if self.auth_protocol is None:
            return "noAuthNoPriv"
        return "authNoPriv" if self.priv_protocol is None else "authPriv"

    def secrets(self) -> list[str]:
        return [
            s.get_secret_value()
            for s in (self.community, self.auth_key, self.priv_key)
            if s is not None and s.get_secret_value()
        ]


def _at(key: str, message: str) -> PydanticCustomError:
    return PydanticCustomError("target", message, {"at": key})


class SnmpConfig(CollectorConfig):
    tables: list[TableConfig] = []  # custom OID tables, used by name in a target's modules
    targets: list[TargetConfig] = []

    def wanted(self) -> bool:
        return self.enabled and bool(self.targets)

    @model_validator(mode="before")
    @classmethod
    def _default_target_timeout(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("targets"), list | tuple):
            timeout = effective_timeout(data) * TARGET_SHARE
            data = {
                **data,
                "targets": [
                    {"timeout": timeout, **t} if isinstance(t, dict) else t for t in data["targets"]
                ],
            }
        return data

    @field_validator("tables")
    @classmethod
    def _tables(cls, tables: list[TableConfig]) -> list[TableConfig]:
        ensure_unique(tables, "table name")
        owners: dict[str, str] = {}
        for t_index, table in enumerate(tables):
            for c_index, column in enumerate(table.table):
                family = column.family()
                at = f"{t_index}.table.{c_index}.metric"
                if column.type == "label":
                    continue
                if family in RESERVED_NAMES:
                    raise PydanticCustomError(
                        "metric",
                        "is served by botwatch itself ({family})",
                        {"family": family, "at": at},
                    )
                if family in owners:
                    raise PydanticCustomError(
                        "metric",
                        "{family} is fed by table '{other}' already",
                        {"family": family, "other": owners[family], "at": at},
                    )
                owners[family] = table.name
        return tables

    @field_validator("targets")
    @classmethod
    def _targets(cls, targets: list[TargetConfig], info: ValidationInfo) -> list[TargetConfig]:
        ensure_unique(targets, "target name", key=lambda t: t.label, hint=" (set `name`)")
        known = set(BUILTIN) | {t.name for t in info.data.get("tables") or []}
        timeout = info.data.get("timeout")
        for index, target in enumerate(targets):
            for m_index, module in enumerate(target.modules):
                if module not in known:
                    raise PydanticCustomError(
                        "module",
                        "unknown module '{module}' (known: {known})",
                        {
                            "module": module,
                            "known": ", ".join(sorted(known)),
                            "at": f"{index}.modules.{m_index}",
                        },
                    )
            if timeout is not None and target.timeout >= timeout:
                raise PydanticCustomError(
                    "timeout",
                    "must be shorter than the collector timeout ({timeout})",
                    {"timeout": format_duration(timeout), "at": f"{index}.timeout"},
                )
        return targets

    def modules(self) -> dict[str, Module]:
        """Every module a target may name: the built-in ones and the custom tables."""
        return {**BUILTIN, **{t.name: t.module() for t in self.tables}}
