"""postgres probe, the pure parts: pgwire framing and readiness decisions on real server bytes
(tests/fixtures/probes/postgres), the SCRAM client on RFC 7677's example, and the config."""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

import pytest
from pydantic import ValidationError

from exporter.config import load_config
from exporter.probes import pgwire
from exporter.probes.pgscram import (
    MAX_ITERATIONS,
    ScramClient,
    ScramError,
    salted_password,
    saslprep,
)
from exporter.probes.pgwire import ProtocolError, Readiness
from exporter.probes.postgres import PostgresProbeConfig, inner_budget
from exporter.yamlsource import ConfigError

FIXTURES = Path(__file__).parent.parent / "fixtures" / "probes" / "postgres"

# RFC 7677 section 3: user "user", password "pencil".
RFC_NONCE = "rOprNGfwEbeRWgbNEkqO"
RFC_SERVER_FIRST = (
    b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
)
RFC_CLIENT_FINAL = (
    b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
    b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
)
RFC_SERVER_FINAL = b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="


def messages(name: str) -> list[tuple[bytes, bytes]]:
    """The backend messages of a fixture, framed by pgwire itself."""
    raw = (FIXTURES / name).read_bytes()
    out, at = [], 0
    while at < len(raw):
        kind, size = pgwire.parse_header(raw[at : at + pgwire.HEADER_BYTES])
        at += pgwire.HEADER_BYTES
        out.append((kind, raw[at : at + size]))
        at += size
    assert at == len(raw)
    return out


# Frontend messages ---------------------------------------------------------------------------


def test_startup_message_is_protocol_3_with_nul_terminated_pairs() -> None:
    raw = pgwire.startup_message({"user": "trader", "database": "trader"})
    body = b"\x00\x03\x00\x00user\x00trader\x00database\x00trader\x00\x00"
    assert raw == struct.pack("!i", len(body) + 4) + body


def test_frontend_frames() -> None:
    assert pgwire.query_message("SELECT 1") == b"Q\x00\x00\x00\x0dSELECT 1\x00"
    assert pgwire.TERMINATE == b"X\x00\x00\x00\x04"
    assert pgwire.password_message("pw") == b"p\x00\x00\x00\x07pw\x00"
    assert pgwire.sasl_initial_response("SCRAM-SHA-256", b"n,,n=,r=x") == (
        b"p\x00\x00\x00\x1fSCRAM-SHA-256\x00\x00\x00\x00\x09n,,n=,r=x"
    )
    assert pgwire.sasl_response(b"c=biws") == b"p\x00\x00\x00\x0ac=biws"


def test_a_nul_in_a_name_is_refused_not_sent() -> None:
    with pytest.raises(ValueError, match="NUL"):
        pgwire.startup_message({"user": "a\0b"})


def test_md5_password_is_the_servers_double_hash() -> None:
    # pg_authid holds md5(password + user): "md5" + 3175bce1... for postgres/postgres.
    stored = hashlib.md5(b"postgrespostgres").hexdigest()
    assert stored == "3175bce1d3201d16594cebf9d7eb3f9d"
    salt = b"\x8a\x0e\xe1u"
    expected = "md5" + hashlib.md5(stored.encode() + salt).hexdigest()
    assert pgwire.md5_password("postgres", "postgres", salt) == expected


# Backend messages ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "error"),
    [
        (b"HTTP/", "not a PostgreSQL message: starts with 'HTTP/'"),
        (
            b"\x00\x00\x00\x08\x04",
            "not a PostgreSQL message: starts with '\\x00\\x00\\x00\\x08\\x04'",
        ),
        (b"R\x00\x00\x00\x03", "not a PostgreSQL message: starts with 'R\\x00\\x00\\x00\\x03'"),
        (b"E\x7f\xff\xff\xff", "not a PostgreSQL message: starts with 'E\\x7f\\xff\\xff\\xff'"),
        (b"R\x00\x00", "short message header (3 bytes)"),
    ],
)
def test_headers_that_are_not_postgresql(header: bytes, error: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        pgwire.parse_header(header)
    assert str(caught.value) == error


def test_first_answer_sasl_means_accepting() -> None:
    [(kind, body)] = messages("first-sasl.bin")
    assert pgwire.classify_first(kind, body) == (Readiness.ACCEPTING, None)
    request = pgwire.parse_auth(body)
    assert (request.code, request.method) == (pgwire.AUTH_SASL, "scram-sha-256")
    assert pgwire.sasl_mechanisms(request.data) == ["SCRAM-SHA-256"]


def test_first_answer_md5_carries_the_salt() -> None:
    [(kind, body)] = messages("first-md5.bin")
    assert pgwire.classify_first(kind, body)[0] is Readiness.ACCEPTING
    assert pgwire.parse_auth(body) == pgwire.AuthRequest(pgwire.AUTH_MD5, b"\x8a\x0e\xe1u")


def test_shutting_down_means_rejecting() -> None:
    [(kind, body)] = messages("first-shutting-down.bin")
    state, error = pgwire.classify_first(kind, body)
    assert state is Readiness.REJECTING
    assert error is not None
    assert error.line() == "FATAL 57P03: the database system is shutting down"
    assert pgwire.login_failure(error) == "rejecting"


def test_a_full_server_still_accepts_as_pg_isready_says() -> None:
    [(kind, body)] = messages("first-too-many.bin")
    state, error = pgwire.classify_first(kind, body)
    assert state is Readiness.ACCEPTING
    assert error is not None
    assert error.line() == "FATAL 53300: sorry, too many clients already"
    assert pgwire.login_failure(error) == "too_many_connections"


@pytest.mark.parametrize(
    ("fixture", "line"),
    [
        ("scram-wrong-password.bin", "FATAL 28P01: password authentication failed for user"),
        ("login-no-database.bin", 'FATAL 3D000: database "nodb" does not exist'),
    ],
)
def test_login_errors_are_auth_failures(fixture: str, line: str) -> None:
    kind, body = messages(fixture)[-1]
    assert kind == pgwire.ERROR_RESPONSE
    error = pgwire.parse_error(body)
    assert error.line().startswith(line)
    assert pgwire.classify_first(kind, body)[0] is Readiness.ACCEPTING
    assert pgwire.login_failure(error) == "auth"


@pytest.mark.parametrize("first", [b"S", b"Z", b"D"])
def test_any_other_first_answer_is_a_protocol_error(first: bytes) -> None:
    with pytest.raises(ProtocolError, match="unexpected first answer"):
        pgwire.classify_first(first, b"\x00")


def test_an_authentication_request_without_a_code_is_garbage() -> None:
    with pytest.raises(ProtocolError):
        pgwire.classify_first(b"R", b"\x00")
    with pytest.raises(ProtocolError, match="salt"):
        pgwire.parse_auth(struct.pack("!i", pgwire.AUTH_MD5) + b"\x01")


def test_login_trust_sequence() -> None:
    found = messages("login-trust.bin")
    kinds = b"".join(kind for kind, _ in found)
    assert kinds == b"R" + b"S" * 13 + b"KZ"
    assert pgwire.parse_auth(found[0][1]).code == pgwire.AUTH_OK
    params = dict(pgwire.parse_parameter_status(body) for kind, body in found if kind == b"S")
    assert params["server_version"] == "15.18 (Debian 15.18-0+deb12u1)"


def test_select_1_rows() -> None:
    found = messages("select-1.bin")
    assert [kind for kind, _ in found] == [b"T", b"D", b"C", b"Z"]
    assert pgwire.parse_data_row(found[1][1]) == [b"1"]


def test_data_row_nulls_and_malformed_rows() -> None:
    row = struct.pack("!hi", 2, -1) + struct.pack("!i", 2) + b"20"
    assert pgwire.parse_data_row(row) == [None, b"20"]
    for broken in (b"\x00", struct.pack("!hi", 1, 5) + b"abc", struct.pack("!h", 3)):
        with pytest.raises(ProtocolError, match="malformed DataRow"):
            pgwire.parse_data_row(broken)


def test_query_error_prefers_the_untranslated_severity() -> None:
    _, body = messages("query-error.bin")[0]
    assert pgwire.parse_error(body) == pgwire.ServerError("ERROR", "22012", "division by zero")
    translated = b"SFEHLER\x00VERROR\x00C42P01\x00MRelation nicht da\x00\x00"
    assert pgwire.parse_error(translated).severity == "ERROR"
    assert pgwire.parse_error(b"\x00") == pgwire.ServerError("ERROR", "", "")


def test_one_line_flattens_and_caps() -> None:
    assert pgwire.one_line("a\nb\r\n  c") == "a b c"
    assert pgwire.one_line("x" * 300) == "x" * 197 + "..."


# SCRAM ---------------------------------------------------------------------------------------


def test_scram_replays_rfc_7677() -> None:
    client = ScramClient("pencil", nonce=RFC_NONCE, username="user")
    assert client.first_message() == b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
    server = client.parse_server_first(RFC_SERVER_FIRST)
    assert (server.iterations, len(server.salt)) == (4096, 16)
    salted = salted_password("pencil", server.salt, server.iterations)
    assert client.final_message(server, salted) == RFC_CLIENT_FINAL
    assert not client.verified
    client.verify_server_final(RFC_SERVER_FINAL)
    assert client.verified


def test_scram_for_postgresql_sends_no_user_name() -> None:
    client = ScramClient("pencil", nonce=RFC_NONCE)
    assert client.first_message() == b"n,,n=,r=rOprNGfwEbeRWgbNEkqO"


def test_scram_rejects_a_server_that_does_not_know_the_password() -> None:
    client = ScramClient("pencil", nonce=RFC_NONCE, username="user")
    server = client.parse_server_first(RFC_SERVER_FIRST)
    client.final_message(server, salted_password("pencil", server.salt, 4096))
    forged = b"v=" + b"A" * 43 + b"="
    with pytest.raises(ScramError, match="does not match"):
        client.verify_server_final(forged)
    with pytest.raises(ScramError, match="server error: invalid-proof"):
        client.verify_server_final(b"e=invalid-proof")
    assert not client.verified


@pytest.mark.parametrize(
    ("server_first", "error"),
    [
        (b"r=someoneelse,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096", "does not extend"),
        (b"r=rOprNGfwEbeRWgbNEkqO,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096", "does not extend"),
        (b"r=rOprNGfwEbeRWgbNEkqOxx,s=***,i=4096", "not base64"),
        (b"r=rOprNGfwEbeRWgbNEkqOxx,s=,i=4096", "no salt"),
        (b"r=rOprNGfwEbeRWgbNEkqOxx,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=0", "iteration count"),
        (
            b"r=rOprNGfwEbeRWgbNEkqOxx,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=%d" % (MAX_ITERATIONS + 1),
            "iteration count",
        ),
        (b"m=ext,r=rOprNGfwEbeRWgbNEkqOxx,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=1", "extension"),
        (b"garbage", "malformed"),
        (b"r=\xff\xfe", "not ASCII"),
    ],
)
def test_scram_rejects_a_bad_server_first_message(server_first: bytes, error: str) -> None:
    client = ScramClient("pencil", nonce=RFC_NONCE)
    with pytest.raises(ScramError, match=error):
        client.parse_server_first(server_first)


def test_scram_server_first_twice_is_refused() -> None:
    client = ScramClient("pencil", nonce=RFC_NONCE, username="user")
    server = client.parse_server_first(RFC_SERVER_FIRST)
    salted = salted_password("pencil", server.salt, server.iterations)
    client.final_message(server, salted)
    with pytest.raises(ScramError, match="twice"):
        client.final_message(server, salted)


def test_scram_final_before_the_exchange_is_refused() -> None:
    with pytest.raises(ScramError, match="before"):
        ScramClient("pencil").verify_server_final(RFC_SERVER_FINAL)


def test_nonces_are_fresh_and_comma_free() -> None:
    nonces = {ScramClient("x").nonce for _ in range(20)}
    assert len(nonces) == 20
    assert not any("," in n for n in nonces)


@pytest.mark.parametrize(
    ("password", "prepared"),
    [
        ("s3cret pw\x07", "s3cret pw\x07"),  # ASCII as it is, as PostgreSQL does
        ("I\u00adX", "IX"),  # RFC 4013's examples: soft hyphen mapped to nothing
        ("\u00aa", "a"),  # NFKC
        ("\u2168", "IX"),
        ("pass\u00a0word\u00e9", "pass word\u00e9"),  # non-ASCII space to space
        ("bad\u0007\u00e9", "bad\u0007\u00e9"),  # prohibited: the raw password, as the server
        ("\u0627\u0031", "\u0627\u0031"),  # bidi rule broken: raw
    ],
)
def test_saslprep(password: str, prepared: str) -> None:
    assert saslprep(password) == prepared


def test_salted_password_uses_the_prepared_password() -> None:
    salt = b"0123456789abcdef"
    assert salted_password("I\u00adX", salt, 2) == hashlib.pbkdf2_hmac("sha256", b"IX", salt, 2)


# Config --------------------------------------------------------------------------------------


def config(**options: object) -> PostgresProbeConfig:
    return PostgresProbeConfig.model_validate({"name": "db", "type": "postgres", **options})


def test_config_defaults_are_readiness_only() -> None:
    probe = config()
    assert (probe.host, probe.port, probe.user, probe.password) == ("localhost", 5432, None, None)


def test_the_password_is_not_in_the_configs_repr() -> None:
    probe = config(user="trader", password="hunter2-secret")
    assert "hunter2-secret" not in repr(probe)
    assert "hunter2-secret" not in probe.model_dump_json()
    assert probe == config(user="trader", password="hunter2-secret")
    assert probe != config(user="trader", password="other-secret")  # a reload sees a change


def test_a_password_needs_a_user() -> None:
    with pytest.raises(ValidationError, match="required when a password is set"):
        config(password="x")


def test_config_errors_never_echo_the_password(tmp_path: Path) -> None:
    path = tmp_path / "botwatch.yml"
    path.write_text(
        "probes:\n"
        "  - {name: db, type: postgres, password: literal-Secret-1}\n"
        "  - {name: db2, type: postgres, password: '${PGPW}', port: 0}\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path, {"PGPW": "env-Secret-2"})
    assert caught.value.lines == [
        f"{path}: probes[0].user: required when a password is set (got None)",
        f"{path}: probes[1].port: must be at least 1 (got 0)",
    ]


def test_names_cannot_hold_nul() -> None:
    with pytest.raises(ValidationError, match="NUL"):
        config(user="a\0b")


@pytest.mark.parametrize(("timeout", "budget"), [(5.0, 4.5), (1.0, 0.9), (10.0, 9.5)])
def test_the_checks_own_deadline_comes_first(timeout: float, budget: float) -> None:
    assert inner_budget(timeout) == pytest.approx(budget)
