"""The web config file (`--web.config.file`): the format of Prometheus' exporter-toolkit.

Operators already write these files for node_exporter and friends, so the keys, the values
and the defaults are the toolkit's. Where Python's ssl cannot do what a key asks, the file
is refused with a one-line error rather than served with a weaker setting than written.
Relative paths are relative to the file's own directory, as in the toolkit.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from exporter.configerrors import format_validation_error
from exporter.fields import parse_duration
from exporter.models import Strict
from exporter.yamlsource import ConfigError, parse_yaml, read_file

TlsVersion = Literal["TLS10", "TLS11", "TLS12", "TLS13"]
ClientAuth = Literal[
    "NoClientCert",
    "RequestClientCert",
    "RequireAnyClientCert",
    "VerifyClientCertIfGiven",
    "RequireAndVerifyClientCert",
]
# The toolkit's two client-auth modes that accept a certificate nobody verified: Python's
# ssl has no "ask but do not check" mode, and an unchecked certificate proves nothing.
UNVERIFIED_CLIENT_AUTH = ("RequestClientCert", "RequireAnyClientCert")
VERIFIED_CLIENT_AUTH = ("VerifyClientCertIfGiven", "RequireAndVerifyClientCert")

# Go's names (crypto/tls) of the TLS 1.2 suites it offers, and OpenSSL's for the same suite.
CIPHER_SUITES = {
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
}
# TLS 1.3 suites are not configurable in Go either: listing them is accepted and changes nothing.
TLS13_SUITES = ("TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256")
CURVES = {"CurveP256": "prime256v1", "CurveP384": "secp384r1", "CurveP521": "secp521r1"}
CURVES |= {"X25519": "X25519"}

# The response headers the toolkit lets a file set, and the values it accepts for two of them.
HEADER_VALUES: dict[str, tuple[str, ...] | None] = {
    "Content-Security-Policy": None,
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-Content-Type-Options": ("nosniff",),
    "X-XSS-Protection": None,
    "Strict-Transport-Security": None,
}
# What a bcrypt hash looks like: $2a$ / $2b$ / $2y$, a two-digit cost, 53 characters.
_BCRYPT = re.compile(r"^\$2[aby]?\$(0[4-9]|[12]\d|3[01])\$[./A-Za-z0-9]{53}$")


def _fail(kind: str, message: str, **ctx: Any) -> PydanticCustomError:
    return PydanticCustomError(kind, message, ctx)


class TlsServerConfig(Strict):
    cert_file: Path | None = None
    key_file: Path | None = None
    cert: str | None = None
    key: SecretStr | None = None
    client_auth_type: ClientAuth = "NoClientCert"
    client_ca_file: Path | None = None
    client_ca: str | None = None
    client_allowed_sans: list[str] = []
    min_version: TlsVersion = "TLS12"
    max_version: TlsVersion = "TLS13"
    cipher_suites: list[str] = []
    prefer_server_cipher_suites: bool = True
    curve_preferences: list[str] = []

    @field_validator("client_auth_type")
    @classmethod
    def _verifiable(cls, value: str) -> str:
        if value in UNVERIFIED_CLIENT_AUTH:
            raise _fail(
                "client_auth",
                "botwatch only accepts client certificates it verifies: use "
                "RequireAndVerifyClientCert (or VerifyClientCertIfGiven)",
            )
        return value

    @field_validator("cipher_suites")
    @classmethod
    def _suites(cls, value: list[str]) -> list[str]:
        for index, name in enumerate(value):
            if name not in CIPHER_SUITES and name not in TLS13_SUITES:
                raise _fail("cipher", "unknown cipher suite (Go's names)", at=str(index))
        return value

    @field_validator("curve_preferences")
    @classmethod
    def _curves(cls, value: list[str]) -> list[str]:
        for index, name in enumerate(value):
            if name not in CURVES:
                known = ", ".join(CURVES)
                raise _fail("curve", "unknown curve (known: {known})", known=known, at=str(index))
        if len(value) > 1:
            # Python's ssl can pin one ECDH group; quietly using the first would turn
            # away clients that only offer a later one.
            raise _fail("curve", "botwatch can pin one curve only: list a single one")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> TlsServerConfig:
        if self.cert_file is not None and self.cert is not None:
            raise _fail("tls", "give cert_file or cert, not both", at="cert")
        if self.key_file is not None and self.key is not None:
            raise _fail("tls", "give key_file or key, not both", at="key")
        if self.cert_file is None and self.cert is None:
            raise _fail("tls", "a certificate is required (cert_file or cert)", at="cert_file")
        if self.key_file is None and self.key is None:
            raise _fail("tls", "a private key is required (key_file or key)", at="key_file")
        if self.client_ca_file is not None and self.client_ca is not None:
            raise _fail("tls", "give client_ca_file or client_ca, not both", at="client_ca")
        verifies = self.client_auth_type in VERIFIED_CLIENT_AUTH
        has_ca = self.client_ca_file is not None or self.client_ca is not None
        if verifies and not has_ca:
            mode = self.client_auth_type
            raise _fail("tls", "{mode} needs client_ca_file", mode=mode, at="client_ca_file")
        if has_ca and not verifies:
            raise _fail(
                "tls",
                "a client CA is given but client_auth_type does not check client certificates",
                at="client_auth_type",
            )
        if self.client_allowed_sans and self.client_auth_type != "RequireAndVerifyClientCert":
            raise _fail(
                "tls",
                "client_allowed_sans needs client_auth_type RequireAndVerifyClientCert",
                at="client_allowed_sans",
            )
        versions = list(TlsVersion.__args__)  # type: ignore[attr-defined]
        if versions.index(self.min_version) > versions.index(self.max_version):
            raise _fail("tls", "min_version is above max_version", at="min_version")
        return self

    def files(self) -> list[Path]:
        return [p for p in (self.cert_file, self.key_file, self.client_ca_file) if p is not None]


class HttpServerConfig(Strict):
    # aiohttp serves HTTP/1.1 only; the key is accepted so toolkit files load unchanged.
    http2: bool = True
    headers: dict[str, str] = {}

    @field_validator("headers")
    @classmethod
    def _allowed(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if name not in HEADER_VALUES:
                known = ", ".join(HEADER_VALUES)
                raise _fail("header", "header not allowed (allowed: {known})", known=known, at=name)
            accepted = HEADER_VALUES[name]
            if accepted is not None and text.lower() not in accepted:
                raise _fail("header", "must be one of {accepted}", accepted=accepted, at=name)
        # A blank value means unset, as in the toolkit.
        return {name: text for name, text in value.items() if text}


def _interval(value: Any) -> float:
    # 0 turns the limiter off, as in the toolkit; anything else is a duration.
    if value in (0, "0", "0s"):
        return 0.0
    return parse_duration(value)


class RateLimit(Strict):
    interval: Annotated[float, BeforeValidator(_interval)] = 0.0
    burst: int = Field(default=0, ge=0)


class WebConfigFile(Strict):
    tls_server_config: TlsServerConfig | None = None
    http_server_config: HttpServerConfig = HttpServerConfig()
    basic_auth_users: dict[str, SecretStr] = {}
    rate_limit: RateLimit = RateLimit()

    @field_validator("basic_auth_users")
    @classmethod
    def _hashes(cls, value: dict[str, SecretStr]) -> dict[str, SecretStr]:
        for user, hashed in value.items():
            if ":" in user or not user:
                raise _fail("user", "a user name must be non-empty and without ':'", at=user)
            if not _BCRYPT.match(hashed.get_secret_value()):
                raise _fail(
                    "bcrypt",
                    "not a bcrypt hash (make one with: htpasswd -nBC 10 '' | tr -d ':\\n')",
                    at=user,
                )
        return value


def resolve(config: WebConfigFile, directory: Path) -> WebConfigFile:
    """Paths made absolute against the file's directory."""
    tls = config.tls_server_config
    if tls is None:
        return config
    paths = {
        key: directory / value
        for key in ("cert_file", "key_file", "client_ca_file")
        if (value := getattr(tls, key)) is not None
    }
    return config.model_copy(update={"tls_server_config": tls.model_copy(update=paths)})


def parse_web_config(text: str, origin: str, directory: Path) -> WebConfigFile:
    """Validate the file's text; raises ConfigError with one line per problem."""
    tree = parse_yaml(text, origin)
    if tree is None:
        tree = {}
    if not isinstance(tree, dict):
        raise ConfigError([f"{origin}: top level: must be a mapping"])
    try:
        config = WebConfigFile.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, origin, WebConfigFile, {})) from None
    return resolve(config, directory)


def load_web_config(path: Path) -> WebConfigFile:
    return parse_web_config(read_file(path), str(path), path.parent)
