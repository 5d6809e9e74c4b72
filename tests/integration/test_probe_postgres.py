"""The postgres probe against a real PostgreSQL 15 (tests/servers.py), and raw TCP fakes for
what a real server does not do on demand (garbage, silence, hanging up mid-handshake).

One cluster per module: initdb with SCRAM and a superuser password, a pg_hba.conf that also
has trust, md5 and cleartext roles, and a template copy from which a test can start a
server of its own to shut down or fill up.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator, MutableMapping
from pathlib import Path
from typing import Any

import pytest

from exporter.collector import Context
from exporter.config import Config
from exporter.probes import pgwire
from exporter.probes.api import Result
from exporter.probes.collector import ProbesCollector
from exporter.probes.models import ProbesConfig
from exporter.probes.postgres import PostgresCheck, PostgresProbeConfig
from exporter.threads import BlockingCalls
from tests.integration.conftest import Daemon, daemon_config
from tests.servers import (
    PG_ADMIN,
    PG_BIN,
    PostgresCluster,
    PostgresServer,
    answering,
    endless,
    free_port,
    raw_server,
    silent,
)
from tests.streams import running
from tests.support import assert_no_secrets, eventually, promtool_lint, wait_for

pytestmark = pytest.mark.integration

PASSWORD = "pg-Secret-4f1c9e"  # greppable: it must turn up nowhere
MD5_PASSWORD = "md5-Secret-77ab"
PLAIN_PASSWORD = "plain-Secret-31d0"
MAX_CONNECTIONS = 20
FIXTURES = Path(__file__).parent.parent / "fixtures" / "probes" / "postgres"


@pytest.fixture(scope="module")
def cluster() -> Iterator[PostgresCluster]:
    made = PostgresCluster.create(PASSWORD)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture(scope="module")
def server(cluster: PostgresCluster) -> PostgresServer:
    started = cluster.start(f"max_connections={MAX_CONNECTIONS}")
    started.psql(
        "SET password_encryption = 'md5';"
        f" CREATE ROLE md5user LOGIN PASSWORD '{MD5_PASSWORD}';"
        " SET password_encryption = 'scram-sha-256';"
        f" CREATE ROLE plainuser LOGIN PASSWORD '{PLAIN_PASSWORD}';"
        " CREATE ROLE trusty LOGIN;"
    )
    return started


def probe(port: int, host: str = "127.0.0.1", **options: Any) -> PostgresCheck:
    config = PostgresProbeConfig.model_validate(
        {"name": "db", "type": "postgres", "host": host, "port": port, "timeout": "2s", **options}
    )
    return PostgresCheck(config, BlockingCalls())


def login(server: PostgresServer, **options: Any) -> PostgresCheck:
    return probe(server.port, user=PG_ADMIN, password=PASSWORD, database="postgres", **options)


def values(result: Result) -> dict[str, float]:
    """Sample values by family name, `state`/`version` label appended where there is one."""
    out = {}
    for s in result.samples:
        extra = s.labels.get("state") or s.labels.get("version")
        out[s.family.name + (f"/{extra}" if extra else "")] = s.value
    return out


def readiness(result: Result) -> str:
    [state] = [
        s.labels["state"]
        for s in result.samples
        if s.family.name == "botwatch_postgres_ready" and s.value == 1
    ]
    return state


def assert_no_secret(*texts: object) -> None:
    assert_no_secrets((PASSWORD, MD5_PASSWORD, PLAIN_PASSWORD), *texts)


# Readiness -----------------------------------------------------------------------------------


@pytest.mark.parametrize("over", ["tcp", "unix"])
async def test_readiness_without_credentials(server: PostgresServer, over: str) -> None:
    host = str(server.sockets) if over == "unix" else "127.0.0.1"
    result = await probe(server.port, host).check()
    assert (result.success, result.error) == (True, None)
    assert values(result) == {
        "botwatch_postgres_ready/accepting": 1,
        "botwatch_postgres_ready/rejecting": 0,
        "botwatch_postgres_ready/no_response": 0,
    }


async def test_a_server_shutting_down_is_rejecting(cluster: PostgresCluster) -> None:
    own = cluster.start()
    # A smart shutdown waits for open sessions and turns new ones away meanwhile (57P03):
    # a session held open keeps the server in that state as long as the test needs.
    with own.idle_sessions(1):
        own.proc.terminate()
        isready = [str(PG_BIN / "pg_isready"), "-h", "127.0.0.1", "-p", str(own.port)]
        wait_for(
            lambda: subprocess.run(isready, capture_output=True, check=False).returncode == 1,
            10,
            "pg_isready to say rejecting",
        )
        for check in (probe(own.port), login(own)):
            result = await check.check()
            assert (result.success, result.reason) == (False, "rejecting")
            assert result.error == "FATAL 57P03: the database system is shutting down"
            assert readiness(result) == "rejecting"
    own.proc.wait(timeout=10)
    result = await probe(own.port).check()
    assert (result.reason, readiness(result)) == ("refused", "no_response")


async def test_a_full_server_accepts_but_lets_nobody_in(cluster: PostgresCluster) -> None:
    own = cluster.start("max_connections=2", "superuser_reserved_connections=0")
    with own.idle_sessions(2):
        for check in (probe(own.port), login(own)):
            result = await check.check()
            assert (result.success, result.reason) == (False, "too_many_connections")
            assert readiness(result) == "accepting"  # as pg_isready says
            assert result.error == "login refused: FATAL 53300: sorry, too many clients already"


# Logging in ----------------------------------------------------------------------------------


@pytest.mark.parametrize("over", ["tcp", "unix"])
async def test_scram_login_counts_connections_against_max_connections(
    server: PostgresServer, over: str
) -> None:
    host = str(server.sockets) if over == "unix" else "127.0.0.1"
    check = login(server, host=host)
    version = server.psql("SHOW server_version")
    started = float(server.psql("SELECT extract(epoch FROM pg_postmaster_start_time())"))
    assert int(server.psql("SHOW max_connections")) == MAX_CONNECTIONS
    with server.idle_sessions(3):
        # The probe's own session counts too; a session that just ended may linger a moment.
        async def three_and_mine() -> Result | None:
            result = await check.check()
            return result if values(result).get("botwatch_postgres_connections") == 4 else None

        result = await eventually(three_and_mine, 10, "3 idle sessions and the probe's")
    assert (result.success, result.reason, result.error) == (True, None, None)
    got = values(result)
    assert got["botwatch_postgres_max_connections"] == MAX_CONNECTIONS
    assert got["botwatch_postgres_ready/accepting"] == 1
    assert 0 < got["botwatch_postgres_query_duration_seconds"] < 1
    assert got["botwatch_postgres_start_timestamp_seconds"] == pytest.approx(started)
    assert got[f"botwatch_postgres_server/{version}"] == 1


async def test_a_role_without_pg_monitor_still_counts_other_roles_sessions(
    server: PostgresServer,
) -> None:
    # plainuser sees the admin's psql sessions with backend_type hidden (NULL).
    check = probe(server.port, user="plainuser", password=PLAIN_PASSWORD, database="postgres")
    with server.idle_sessions(3):

        async def three_and_mine() -> bool:
            return values(await check.check()).get("botwatch_postgres_connections") == 4

        await eventually(three_and_mine, 10, "3 hidden sessions and the probe's")


@pytest.mark.parametrize(
    ("user", "password"),
    [("md5user", MD5_PASSWORD), ("plainuser", PLAIN_PASSWORD), ("trusty", None)],
)
async def test_md5_cleartext_and_trust_logins(
    server: PostgresServer, user: str, password: str | None
) -> None:
    result = await probe(server.port, user=user, password=password, database="postgres").check()
    assert (result.success, result.error) == (True, None)
    assert values(result)["botwatch_postgres_max_connections"] == MAX_CONNECTIONS


async def test_a_wrong_password_is_auth_and_is_not_shown(server: PostgresServer) -> None:
    wrong = "wrong-" + PASSWORD
    result = await probe(server.port, user=PG_ADMIN, password=wrong, database="postgres").check()
    assert (result.success, result.reason) == (False, "auth")
    assert result.error == (
        f'login refused: FATAL 28P01: password authentication failed for user "{PG_ADMIN}"'
    )
    assert readiness(result) == "accepting"
    assert wrong not in str(result)


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"user": PG_ADMIN}, "the server asks for a password (scram-sha-256); none set"),
        (
            {"user": PG_ADMIN, "password": PASSWORD, "database": "nodb"},
            'login refused: FATAL 3D000: database "nodb" does not exist',
        ),
        (
            {"user": "nobody_here", "password": PASSWORD},
            'login refused: FATAL 28P01: password authentication failed for user "nobody_here"',
        ),
    ],
)
async def test_other_refused_logins(
    server: PostgresServer, options: dict[str, str], error: str
) -> None:
    result = await probe(server.port, **options).check()
    assert (result.success, result.reason, result.error) == (False, "auth", error)
    assert readiness(result) == "accepting"


# What no real server does on demand ----------------------------------------------------------


async def test_a_closed_port_is_refused() -> None:
    port = free_port()
    result = await probe(port).check()
    assert (result.reason, result.error) == ("refused", f"127.0.0.1:{port}: connection refused")
    assert readiness(result) == "no_response"


async def test_a_socket_directory_without_the_socket_is_refused(tmp_path: Path) -> None:
    result = await probe(5432, str(tmp_path)).check()
    assert (result.reason, result.error) == ("refused", f"{tmp_path}/.s.PGSQL.5432: no such socket")


async def test_an_unknown_host_is_dns() -> None:
    result = await probe(5432, "no-such-host.invalid").check()
    assert result.reason == "dns"
    assert result.error is not None and result.error.startswith("cannot resolve no-such-host")


async def test_garbage_is_protocol_and_no_response() -> None:
    async with raw_server(answering(b"HTTP/1.1 400 Bad Request\r\n\r\n")) as port:
        result = await probe(port).check()
    assert (result.reason, readiness(result)) == ("protocol", "no_response")
    assert result.error == (
        "waiting for the answer to the startup message:"
        " not a PostgreSQL message: starts with 'HTTP/'"
    )


async def test_silence_is_a_timeout_with_the_step_named() -> None:
    async with raw_server(silent) as port:
        started = time.monotonic()
        result = await probe(port, timeout="1s").check()
        elapsed = time.monotonic() - started
    assert (result.reason, readiness(result)) == ("timeout", "no_response")
    assert result.error == "waiting for the answer to the startup message: no answer within 0.9s"
    assert 0.85 < elapsed < 1.5  # its own deadline (0.9s) ended it, not a hang


async def test_hanging_up_mid_handshake_is_protocol() -> None:
    # An AuthenticationSASL cut in the middle of its mechanism list.
    first = (FIXTURES / "first-sasl.bin").read_bytes()
    async with raw_server(answering(first[:12])) as port:
        result = await probe(port).check()
    assert (result.reason, result.error) == (
        "protocol",
        "waiting for the answer to the startup message: connection closed",
    )


async def test_hanging_up_after_the_password_is_protocol() -> None:
    # Asks for a cleartext password, reads it, hangs up: still accepting, then broken.
    cleartext = b"R\x00\x00\x00\x08\x00\x00\x00\x03"
    async with raw_server(answering(cleartext)) as port:
        result = await probe(port, user="u", password=PASSWORD).check()
    assert (result.reason, readiness(result)) == ("protocol", "accepting")
    assert result.error == "authenticating (password): connection closed"


async def test_an_endless_stream_of_notices_is_cut_off() -> None:
    notice = pgwire.frame(pgwire.NOTICE_RESPONSE, b"SNOTICE\0Mx\0\0")
    async with raw_server(endless(notice * 256)) as port:
        result = await probe(port).check()
    assert result.reason == "protocol"
    assert result.error == (
        "waiting for the answer to the startup message: more than 1048576 bytes of answers"
    )


async def test_a_server_asking_for_kerberos_is_auth() -> None:
    kerberos = b"R\x00\x00\x00\x08\x00\x00\x00\x02"
    async with raw_server(answering(kerberos)) as port:
        result = await probe(port, user="u", password=PASSWORD).check()
    assert (result.reason, result.error) == ("auth", "unsupported authentication method kerberos")


# Through the collector and the daemon --------------------------------------------------------


def probes_section(port: int, sockets: Path) -> list[dict[str, Any]]:
    return [
        {"name": "ready", "type": "postgres", "host": "127.0.0.1", "port": port},
        {"name": "unix", "type": "postgres", "host": str(sockets), "port": port},
        {
            "name": "login",
            "type": "postgres",
            "host": "127.0.0.1",
            "port": port,
            "user": PG_ADMIN,
            "password": PASSWORD,
            "database": "postgres",
        },
        {
            "name": "wrong",
            "type": "postgres",
            "host": "127.0.0.1",
            "port": port,
            "user": PG_ADMIN,
            "password": "x" + PASSWORD,
            "database": "postgres",
        },
    ]


async def test_through_the_probes_collector(
    server: PostgresServer, tmp_path: Path, captured_logs: list[MutableMapping[str, Any]]
) -> None:
    probes = [
        {**p, "interval": "1s", "timeout": "900ms"}
        for p in probes_section(server.port, server.sockets)
    ]
    config = Config.model_validate({"probes": probes}).collector_configs()["probes"]
    assert isinstance(config, ProbesConfig)
    collector = ProbesCollector(config, Context("probes", tmp_path, BlockingCalls()))
    async with running(collector) as run:
        await eventually(
            lambda: all(
                run.value("botwatch_probe_checks_total", probe=n)
                for n in ("ready", "unix", "login", "wrong")
            ),
            5,
            "a check of every probe",
        )
        assert run.value("botwatch_probe_success", probe="ready") == 1
        assert run.value("botwatch_probe_success", probe="unix") == 1
        assert run.value("botwatch_probe_success", probe="login") == 1
        assert run.value("botwatch_postgres_max_connections", probe="login") == MAX_CONNECTIONS
        assert run.value("botwatch_probe_success", probe="wrong") == 0
        assert (run.value("botwatch_probe_failures_total", probe="wrong", reason="auth") or 0) >= 1
        assert run.value("botwatch_postgres_ready", probe="wrong", state="accepting") == 1
        assert run.value("botwatch_probe_failures_total", probe="ready", reason="query") == 0
        samples = [(s.name, s.labels, s.value) for f in collector.families() for s in f.samples]
    failed = [e for e in captured_logs if e.get("event") == "probe failed"]
    assert [(e["probe"], e["reason"]) for e in failed] == [("wrong", "auth")]
    assert_no_secret(samples, captured_logs)


def test_through_the_daemon(
    server: PostgresServer,
    tmp_path: Path,
    daemon: Callable[..., Daemon],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BW_TEST_PG_PASSWORD", PASSWORD)
    monkeypatch.setenv("BW_TEST_PG_WRONG", "x" + PASSWORD)
    entries = []
    for entry in probes_section(server.port, server.sockets):
        if "password" in entry:
            env = "BW_TEST_PG_PASSWORD" if entry["name"] == "login" else "BW_TEST_PG_WRONG"
            entry["password"] = "${" + env + "}"
        entries.append({**entry, "interval": "1s", "timeout": "900ms"})
    d = daemon(daemon_config(tmp_path, probes=entries))
    wait_for(
        lambda: all(
            d.sample("botwatch_probe_success", probe=n) is not None
            for n in ("ready", "unix", "login", "wrong")
        ),
        20,
        "a check of every probe on /metrics",
    )
    wait_for(
        lambda: d.sample("botwatch_postgres_max_connections", probe="login") == MAX_CONNECTIONS,
        20,
        "the login probe on /metrics",
    )
    wait_for(
        lambda: d.sample("botwatch_probe_failures_total", probe="wrong", reason="auth"),
        20,
        "the wrong password's failure",
    )
    body = d.metrics()
    assert promtool_lint(body) == ""
    assert d.sample("botwatch_postgres_ready", probe="ready", state="accepting") == 1
    assert d.sample("botwatch_postgres_ready", probe="unix", state="accepting") == 1
    assert d.sample("botwatch_probe_success", probe="login") == 1
    _, landing, _ = d.get("/")
    d.stop()
    assert any(e.get("probe") == "wrong" and e.get("reason") == "auth" for e in d.logs)
    assert_no_secret(body, landing.decode(), "".join(d.raw))
