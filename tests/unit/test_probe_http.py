"""The http probe's pure parts: config validation, status matching, Retry-After, the JSON
path, the CORS decision, the certificate's notAfter and the classification of aiohttp's
errors (on exceptions built here: no network)."""

from __future__ import annotations

import email.utils
import errno
import socket
import ssl
import textwrap
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDict, CIMultiDictProxy
from pydantic import ValidationError
from yarl import URL

from exporter.config import load_config
from exporter.probes import http
from exporter.probes.http import (
    CorsCheck,
    HttpProbeConfig,
    JsonCheck,
    Observed,
    Step,
    classify,
    own_deadline,
)
from exporter.probes.httpjudge import (
    PathMissing,
    body_too_long,
    cors_verdict,
    expected_status,
    json_equal,
    json_lookup,
    json_path,
    json_verdict,
    retry_after_seconds,
    shown,
    status_ok,
)
from exporter.probes.tlscert import asn1_time, cert_not_after
from exporter.yamlsource import ConfigError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "probes" / "http"
NOW = 1_800_000_000.0


def probe(**options: Any) -> HttpProbeConfig:
    return HttpProbeConfig.model_validate(
        {"name": "api", "type": "http", "url": "http://127.0.0.1:3000/health", **options}
    )


def der(name: str) -> bytes:
    return ssl.PEM_cert_to_DER_cert((FIXTURES / name).read_text())


# Families and reasons --------------------------------------------------------------------------


def test_families_follow_the_naming_rules() -> None:
    names = [spec.name for spec in http.FAMILIES]
    assert names == [
        "botwatch_probe_http_status_code",
        "botwatch_probe_http_redirects",
        "botwatch_probe_http_retry_after_seconds",
        "botwatch_probe_tls_cert_expiry_timestamp_seconds",
    ]
    assert all(spec.labels == ("probe",) and spec.kind == "gauge" for spec in http.FAMILIES)
    assert set(http.REASONS) >= {"timeout", "refused", "dns", "tls", "status", "body", "cors"}


# Config ----------------------------------------------------------------------------------------


def test_defaults_and_normalisation() -> None:
    config = probe(method="post", cors=None)
    assert config.method == "POST"
    assert config.valid_status == []
    assert config.max_body_bytes == 1 << 20
    assert config.tls_verify and config.follow_redirects
    assert config.timeout == 5.0
    cors = probe(cors={"origin": "https://dash.example/", "request_method": "put"}).cors
    assert cors == CorsCheck(origin="https://dash.example", request_method="PUT")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"url": "ftp://h/x"}, "must be an http:// or https:// URL"),
        ({"url": "http:///x"}, "URL has no host"),
        ({"url": "/health"}, "must be an http:// or https:// URL"),
        ({"url": "http://h:99999/"}, "not a valid URL"),
        ({"method": "GE T"}, "must be a method name"),
        ({"headers": {"X Bad": "v"}}, "not a header name"),
        ({"headers": {"X-Token": "a\r\nX-Injected: 1"}}, "line break or NUL"),
        ({"valid_status": [200, 99]}, "greater than or equal to 100"),
        ({"valid_status": [600]}, "less than or equal to 599"),
        ({"max_body_bytes": -1}, "greater than or equal to 0"),
        ({"expect_json": {"path": "a..b", "equals": 1}}, "must be a dotted path"),
        ({"expect_json": {"path": "", "equals": 1}}, "must be a dotted path"),
        ({"cors": {"origin": "dash.example"}}, "must be an http:// or https:// origin"),
        ({"cors": {"origin": "https://d.example/app"}}, "no path"),
        ({"cors": {"origin": "https://d.example"}, "method": "GET"}, "drop method"),
        ({"cors": {"origin": "https://d.example"}, "body": "{}"}, "drop body"),
        ({"method": "HEAD", "expect_json": {"path": "a", "equals": 1}}, "no body to check"),
        ({"tls_verfy": False}, "Extra inputs are not permitted"),
    ],
)
def test_bad_configs_are_rejected(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        probe(**options)


def test_equals_keeps_the_yaml_type() -> None:
    # A smart union: YAML `true`, `1`, `1.5`, `"1"` and `null` stay what they were written as.
    for value in (True, 1, 1.5, "1", None):
        check = probe(expect_json={"path": "a", "equals": value}).expect_json
        assert check is not None
        assert type(check.equals) is type(value)


def test_a_bad_header_value_from_the_environment_is_not_echoed(tmp_path: Path) -> None:
    path = tmp_path / "botwatch.yml"
    path.write_text(
        textwrap.dedent("""\
            probes:
              - name: api
                type: http
                url: http://127.0.0.1:3000/health
                headers: {Authorization: "${API_TOKEN}"}
            """)
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path, {"API_TOKEN": "Bearer abc\ndef-secret"})
    text = "\n".join(caught.value.lines)
    assert "def-secret" not in text
    assert "probes[0].headers.Authorization" in text
    assert "the value of $API_TOKEN" in text


# Status ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "valid", "ok"),
    [
        (200, [], True),
        (204, [], True),
        (299, [], True),
        (199, [], False),
        (301, [], False),
        (500, [], False),
        (500, [500], True),
        (200, [204], False),
        (404, [200, 404], True),
    ],
)
def test_status_matching(status: int, valid: list[int], ok: bool) -> None:
    assert status_ok(status, valid) is ok


def test_expected_status_text() -> None:
    assert expected_status([]) == "2xx"
    assert expected_status([204]) == "204"
    assert expected_status([204, 200]) == "200 or 204"
    assert expected_status([301, 200, 302, 200]) == "200, 301 or 302"


# Retry-After -----------------------------------------------------------------------------------


def test_retry_after_delay_seconds() -> None:
    assert retry_after_seconds("120", NOW) == 120.0
    assert retry_after_seconds(" 0 ", NOW) == 0.0


def test_retry_after_http_date() -> None:
    date = email.utils.formatdate(NOW + 90, usegmt=True)  # IMF-fixdate
    assert retry_after_seconds(date, NOW) == 90.0
    assert retry_after_seconds(email.utils.formatdate(NOW - 30, usegmt=True), NOW) == 0.0
    # RFC 850 and asctime dates are obsolete, but RFC 9110 still has recipients accept them.
    for date in ("Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994"):
        assert retry_after_seconds(date, 784111777.0 - 5) == 5.0


@pytest.mark.parametrize("value", ["", "soon", "-5", "1.5", "12 s", "²"])
def test_retry_after_garbage(value: str) -> None:
    assert retry_after_seconds(value, NOW) is None


# JSON --------------------------------------------------------------------------------------------

DOC = {"status": "ok", "data": {"items": [{"state": "up"}, {"state": "down"}], "n": 2}}


def test_json_path_parts() -> None:
    assert json_path("status") == ("status",)
    assert json_path("$.data.items.0.state") == ("data", "items", "0", "state")
    assert json_path("$") == ()
    with pytest.raises(ValueError, match="dotted path"):
        json_path("data.")


def test_json_lookup_walks_objects_and_lists() -> None:
    assert json_lookup(DOC, ("data", "items", "1", "state")) == "down"
    assert json_lookup(DOC, ()) is DOC
    assert json_lookup({"0": "key"}, ("0",)) == "key"  # a number on an object is a key


@pytest.mark.parametrize(
    ("parts", "message"),
    [
        (("version",), "$.version is missing"),
        (("data", "items", "2"), "$.data.items has 2 items, no 2"),
        (("data", "items", "first"), "$.data.items is a list, 'first' is not an index"),
        (("data", "items", "-1"), "$.data.items is a list, '-1' is not an index"),
        (("status", "code"), "$.status is 'ok', not an object or a list"),
    ],
)
def test_json_lookup_says_where_it_stopped(parts: tuple[str, ...], message: str) -> None:
    with pytest.raises(PathMissing) as caught:
        json_lookup(DOC, parts)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("actual", "expected", "equal"),
    [
        ("ok", "ok", True),
        ("ok", "OK", False),
        (1, 1, True),
        (1, 1.0, True),
        (True, True, True),
        (True, 1, False),
        (1, True, False),
        (0, False, False),
        ("1", 1, False),
        (1, "1", False),
        (None, None, True),
        (None, "null", False),
        ({"a": 1}, "ok", False),
    ],
)
def test_json_equality_is_by_json_type(actual: Any, expected: Any, equal: bool) -> None:
    assert json_equal(actual, expected) is equal


def test_json_verdicts() -> None:
    check = JsonCheck(path="$.status", equals="ok")
    assert json_verdict(b'{"status": "ok"}', check) is None
    assert json_verdict(b'{"status": "degraded"}', check) == (
        "body: $.status is 'degraded', expected 'ok'"
    )
    assert json_verdict(b"<html>", check) == ("body: not JSON (Expecting value at line 1 column 1)")
    assert json_verdict(b"", check) == "body: not JSON (Expecting value at line 1 column 1)"
    assert json_verdict(b'"\xff"', check) == "body: not JSON (not UTF-8)"
    assert json_verdict(b"[" * 100_000, check) == "body: not JSON (nested too deeply)"
    assert json_verdict(b"{}", check) == "body: $.status is missing"
    up = JsonCheck(path="data.items.0.up", equals=True)
    assert json_verdict(b'{"data": {"items": [{"up": false}]}}', up) == (
        "body: $.data.items.0.up is false, expected true"
    )
    root = JsonCheck(path="$", equals="pong")
    assert json_verdict(b'"pong"', root) is None


def test_shown_values_stay_short_and_on_one_line() -> None:
    assert shown("a\nb") == "'a\\nb'"
    assert shown(None) == "null"
    assert shown({"k": [1, 2]}) == '{"k": [1, 2]}'
    long = shown("x" * 500)
    assert len(long) == 60
    assert long.endswith("...")


# CORS --------------------------------------------------------------------------------------------

DASH = "https://dash.example"


def test_cors_allowed_origin() -> None:
    check = CorsCheck(origin=DASH)
    assert cors_verdict([DASH], [], check, 204) is None
    assert cors_verdict(["*"], [], check, 200) is None
    assert cors_verdict([f" {DASH} "], [], check, 200) is None


def test_cors_rejections() -> None:
    check = CorsCheck(origin=DASH)
    assert cors_verdict([], [], check, 403) == (
        "CORS: Access-Control-Allow-Origin missing (status 403)"
    )
    assert cors_verdict(["https://other.example"], [], check, 200) == (
        "CORS: Access-Control-Allow-Origin is 'https://other.example', "
        "expected 'https://dash.example' or '*'"
    )
    assert cors_verdict([DASH, DASH], [], check, 200) == (
        "CORS: Access-Control-Allow-Origin sent 2 times"
    )


def test_cors_explicit_allow_origin_is_exact() -> None:
    check = CorsCheck(origin=DASH, allow_origin=DASH)
    assert cors_verdict([DASH], [], check, 200) is None
    assert cors_verdict(["*"], [], check, 200) == (
        "CORS: Access-Control-Allow-Origin is '*', expected 'https://dash.example'"
    )
    star = CorsCheck(origin=DASH, allow_origin="*")
    assert cors_verdict(["*"], [], star, 200) is None
    assert cors_verdict([DASH], [], star, 200) is not None


def test_cors_non_safelisted_method_must_be_allowed() -> None:
    put = CorsCheck(origin=DASH, request_method="PUT")
    assert cors_verdict([DASH], ["GET, PUT"], put, 204) is None
    assert cors_verdict([DASH], ["GET", "PUT,DELETE"], put, 204) is None
    assert cors_verdict([DASH], ["*"], put, 204) is None
    assert cors_verdict([DASH], ["GET, POST"], put, 204) == (
        "CORS: PUT is not in Access-Control-Allow-Methods"
    )
    assert cors_verdict([DASH], [], put, 204) is not None
    # GET, HEAD and POST need no Access-Control-Allow-Methods at all.
    assert cors_verdict([DASH], [], CorsCheck(origin=DASH, request_method="POST"), 204) is None


# Body size, deadline, steps, samples -------------------------------------------------------------


def test_body_too_long_by_content_length() -> None:
    assert body_too_long(None, 10) is None
    assert body_too_long(10, 10) is None
    assert body_too_long(11, 10) == "body: Content-Length 11 is over max_body_bytes 10"


def test_own_deadline_comes_before_the_collectors() -> None:
    assert own_deadline(5.0) == pytest.approx(4.9)
    assert own_deadline(0.5) == pytest.approx(0.45)
    assert 0 < own_deadline(0.01) < 0.01


def test_timeout_errors_name_the_step() -> None:
    assert Step("dns").timeout_error(2.9) == "DNS lookup not done within 2.9s"
    assert Step("connect").timeout_error(2.9) == "no connection (TCP/TLS) within 2.9s"
    assert Step("response").timeout_error(0.45) == (
        "no response within 0.45s of sending the request"
    )
    assert Step("body").timeout_error(4.9) == "body not complete within 4.9s"


def test_observed_samples_only_what_was_seen() -> None:
    assert Observed().samples("api") == []
    samples = Observed(status=503, redirects=0, retry_after=30.0).samples("api")
    assert [(s.family.name, s.labels, s.value) for s in samples] == [
        ("botwatch_probe_http_status_code", {"probe": "api"}, 503),
        ("botwatch_probe_http_redirects", {"probe": "api"}, 0),
        ("botwatch_probe_http_retry_after_seconds", {"probe": "api"}, 30.0),
    ]


# Certificates ----------------------------------------------------------------------------------

# `openssl x509 -enddate` of the fixtures (see tests/fixtures/probes/http/README.md).
UTCTIME_NOT_AFTER = "Nov 24 03:06:30 2036 GMT"
GENERALIZED_NOT_AFTER = "Nov  3 03:06:30 2126 GMT"


def test_cert_not_after_utctime() -> None:
    assert cert_not_after(der("utctime.pem")) == ssl.cert_time_to_seconds(UTCTIME_NOT_AFTER)


def test_cert_not_after_generalized_time() -> None:
    expected = ssl.cert_time_to_seconds(GENERALIZED_NOT_AFTER)
    assert cert_not_after(der("generalizedtime.pem")) == expected


def test_asn1_times() -> None:
    assert asn1_time(0x17, "491231235959Z") == 2524607999.0  # 2049: UTCTime's last year
    assert asn1_time(0x17, "500101000000Z") == -631152000.0  # 1950
    assert asn1_time(0x18, "20300101000000Z") == 1893456000.0
    for tag, text in ((0x17, "3001010000Z"), (0x18, "300101000000Z"), (0x02, "x")):
        with pytest.raises(ValueError):
            asn1_time(tag, text)


@pytest.mark.parametrize("cut", [0, 1, 5, 40, 120])
def test_cert_not_after_rejects_truncated_or_foreign_bytes(cut: int) -> None:
    with pytest.raises(ValueError):
        cert_not_after(der("utctime.pem")[:cut])
    with pytest.raises(ValueError):
        cert_not_after(b"\x02\x01\x00" + bytes(cut))


# Classifying aiohttp's errors ------------------------------------------------------------------

SECRET_URL = URL("https://user:pw-secret@api.example:8443/health?token=q-secret")


def key(host: str = "api.example", port: int = 8443) -> Any:
    return aiohttp.client_reqrep.ConnectionKey(host, port, True, True, None, None, None)


def request_info() -> aiohttp.RequestInfo:
    headers = CIMultiDictProxy(CIMultiDict({"X-Api-Key": "h-secret"}))
    return aiohttp.RequestInfo(SECRET_URL, "GET", headers, SECRET_URL)


def verify_error(message: str) -> ssl.SSLCertVerificationError:
    error = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify")
    error.verify_message = message
    return error


def ssl_error(reason: str) -> ssl.SSLError:
    error = ssl.SSLError(1, f"[SSL: {reason}] wrong version number")
    error.reason = reason
    return error


CLASSIFIED = [
    (
        aiohttp.ClientConnectorDNSError(
            key("nosuch.invalid"), socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        ),
        "dns",
        "cannot resolve nosuch.invalid: Name or service not known",
    ),
    (
        aiohttp.ClientConnectorError(
            key(), ConnectionRefusedError(errno.ECONNREFUSED, "Connect call failed")
        ),
        "refused",
        "api.example:8443: connection refused",
    ),
    (
        aiohttp.ClientConnectorError(key(), OSError(errno.ECONNREFUSED, "Connection refused")),
        "refused",
        "api.example:8443: connection refused",
    ),
    (
        aiohttp.ClientConnectorError(key(), OSError(errno.EHOSTUNREACH, "No route to host")),
        "unreachable",
        "api.example:8443: No route to host",
    ),
    (
        aiohttp.ClientConnectorCertificateError(key(), verify_error("certificate has expired")),
        "tls",
        "api.example:8443: certificate not accepted: certificate has expired",
    ),
    (
        aiohttp.ClientConnectorSSLError(key(), ssl_error("WRONG_VERSION_NUMBER")),
        "tls",
        "api.example:8443: TLS handshake failed: WRONG_VERSION_NUMBER",
    ),
    (
        aiohttp.TooManyRedirects(request_info(), ()),
        "status",
        "more than 10 redirects",
    ),
    (
        aiohttp.NonHttpUrlRedirectClientError("ftp://elsewhere/?token=q-secret"),
        "protocol",
        "redirected to an invalid or non-HTTP location",
    ),
    (
        aiohttp.ClientResponseError(
            request_info(), (), status=400, message="Invalid status line 'SSH-2.0'\n  ^"
        ),
        "protocol",
        "not a valid HTTP response (Invalid status line 'SSH-2.0')",
    ),
    (
        aiohttp.ServerDisconnectedError(),
        "protocol",
        "connection closed before the response was complete",
    ),
    (
        aiohttp.ClientPayloadError("Response payload is not completed"),
        "protocol",
        "body incomplete or malformed (connection closed mid-body?)",
    ),
    (
        aiohttp.ClientOSError(errno.ECONNRESET, "Connection reset by peer"),
        "protocol",
        "connection error: Connection reset by peer",
    ),
    (aiohttp.SocketTimeoutError(), "timeout", "timed out"),
]


def test_a_reset_while_connecting_is_a_tls_failure_for_https_only() -> None:
    reset = aiohttp.ClientConnectorError(
        key(), ConnectionResetError(errno.ECONNRESET, "Connection reset by peer")
    )
    assert classify(reset, tls=True) == (
        "tls",
        "api.example:8443: TLS handshake failed: Connection reset by peer",
    )
    assert classify(reset) == ("unreachable", "api.example:8443: Connection reset by peer")


@pytest.mark.parametrize(("exc", "reason", "error"), CLASSIFIED)
def test_classify(exc: BaseException, reason: str, error: str) -> None:
    assert classify(exc) == (reason, error)
    assert reason in http.REASONS


@pytest.mark.parametrize(("exc", "reason", "error"), CLASSIFIED)
def test_classified_errors_hold_no_url_secret(exc: BaseException, reason: str, error: str) -> None:
    _, text = classify(exc)
    assert "secret" not in text
    assert "\n" not in text
