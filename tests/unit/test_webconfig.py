"""The web config file's parsing, the basic-auth header and the TLS settings' mapping."""

from __future__ import annotations

import base64
import ssl
from pathlib import Path

import bcrypt
import pytest

from exporter.webauth import BasicAuth, parse_basic
from exporter.webconfig import CIPHER_SUITES, CURVES, parse_web_config
from exporter.websecurity import TokenBucket
from exporter.yamlsource import ConfigError

HASH = bcrypt.hashpw(b"right-password", bcrypt.gensalt(4)).decode()


def parse(text: str):  # type: ignore[no-untyped-def]
    return parse_web_config(text, "web.yml", Path("/etc/botwatch"))


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse(text)
    return caught.value.lines


def test_empty_file_is_plain_http_without_auth() -> None:
    config = parse("")
    assert config.tls_server_config is None and not config.basic_auth_users


def test_relative_paths_are_relative_to_the_file() -> None:
    config = parse("tls_server_config: {cert_file: a.crt, key_file: /abs/b.key}")
    assert config.tls_server_config is not None
    assert config.tls_server_config.cert_file == Path("/etc/botwatch/a.crt")
    assert config.tls_server_config.key_file == Path("/abs/b.key")


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("tls_server_config: {cert_file: a}", "web.yml: tls_server_config.key_file: a private key"),
        (
            "tls_server_config: {cert_file: a, key_file: b, client_auth_type: "
            "RequireAndVerifyClientCert}",
            "web.yml: tls_server_config.client_ca_file: RequireAndVerifyClientCert needs",
        ),
        (
            "tls_server_config: {cert_file: a, key_file: b, client_ca_file: c}",
            "web.yml: tls_server_config.client_auth_type: a client CA is given but",
        ),
        (
            "tls_server_config: {cert_file: a, key_file: b, client_allowed_sans: [x]}",
            "web.yml: tls_server_config.client_allowed_sans: client_allowed_sans needs",
        ),
        (
            "tls_server_config: {cert_file: a, key_file: b, min_version: TLS13, "
            "max_version: TLS12}",
            "web.yml: tls_server_config.min_version: min_version is above max_version",
        ),
        (
            "tls_server_config: {cert_file: a, key_file: b, cipher_suites: [TLS_NOPE]}",
            "web.yml: tls_server_config.cipher_suites[0]: unknown cipher suite",
        ),
        (
            "tls_server_config: {cert_file: a, key_file: b, curve_preferences: [X25519, "
            "CurveP256]}",
            "web.yml: tls_server_config.curve_preferences: botwatch can pin one curve only",
        ),
        (
            "http_server_config: {headers: {X-Frame-Options: allow}}",
            "web.yml: http_server_config.headers.X-Frame-Options: must be one of",
        ),
        ("rate_limit: {interval: soon}", "web.yml: rate_limit.interval:"),
        ("basic_auth_users: {'a:b': " + HASH + "}", "web.yml: basic_auth_users.a:b: a user"),
        ("- a list", "web.yml: top level: must be a mapping"),
        ("a: [", "web.yml: line 1, column"),
    ],
)
def test_bad_files(text: str, line: str) -> None:
    got = problems(text)
    assert len(got) == 1, got
    assert got[0].startswith(line), got


def test_errors_never_show_secret_values() -> None:
    got = problems("basic_auth_users: {prometheus: hunter2-plaintext}")
    assert got == [
        "web.yml: basic_auth_users.prometheus: not a bcrypt hash (make one with: "
        "htpasswd -nBC 10 '' | tr -d ':\\n') (got a secret value, not shown)"
    ]
    got = problems("tls_server_config: {cert: x, key: [inline-key-material]}")
    assert "inline-key-material" not in got[0]


def test_blank_headers_are_unset() -> None:
    config = parse("http_server_config: {headers: {X-XSS-Protection: '', X-Frame-Options: deny}}")
    assert config.http_server_config.headers == {"X-Frame-Options": "deny"}


def test_every_cipher_suite_name_maps_to_a_suite_openssl_offers() -> None:
    for go_name, openssl_name in CIPHER_SUITES.items():
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.set_ciphers(openssl_name)  # raises if OpenSSL has no such suite
        # TLS 1.3's suites (TLS_*) are always there and not set by set_ciphers.
        offered = {c["name"] for c in context.get_ciphers() if not c["name"].startswith("TLS_")}
        assert offered == {openssl_name}, go_name


def test_every_curve_name_is_known_to_openssl() -> None:
    for openssl_name in CURVES.values():
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).set_ecdh_curve(openssl_name)


def basic(value: str) -> str:
    return "Basic " + base64.b64encode(value.encode()).decode()


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (basic("prometheus:pa:ss"), ("prometheus", "pa:ss")),
        (basic("u:"), ("u", "")),
        ("basic " + base64.b64encode(b"u:p").decode(), ("u", "p")),
        (basic("no-colon"), None),
        ("Bearer abc", None),
        ("Basic !!!", None),
        ("Basic " + base64.b64encode(b"\xff:\xfe").decode(), None),
        (None, None),
        ("", None),
    ],
)
def test_parse_basic(header: str | None, expected: tuple[str, str] | None) -> None:
    assert parse_basic(header) == expected


def test_basic_auth_verdicts_and_cache() -> None:
    auth = BasicAuth({"prometheus": HASH})
    assert auth.cached("prometheus", "right-password") is None
    assert auth.check("prometheus", "right-password")
    assert auth.cached("prometheus", "right-password") is True
    assert not auth.check("prometheus", "wrong")
    assert auth.cached("prometheus", "wrong") is False
    # An unknown user is checked against the dummy hash and never passes.
    assert not auth.check("nobody", "right-password")
    # bcrypt refuses passwords over 72 bytes; that is a failed login, not a crash.
    assert not auth.check("prometheus", "x" * 100)


def test_basic_auth_cache_is_bounded() -> None:
    auth = BasicAuth({"u": HASH})
    for index in range(150):
        auth.check("u", f"guess-{index}")
    assert auth.cached("u", "guess-0") is None
    assert auth.cached("u", "guess-149") is False


def test_token_bucket() -> None:
    bucket = TokenBucket(interval=3600, burst=3)
    assert [bucket.take() for _ in range(5)] == [True, True, True, False, False]
    bucket.updated -= 3600  # an interval later, one token is back
    assert [bucket.take() for _ in range(2)] == [True, False]
