"""No secret leaks: botwatch runs every collector with secrets in its environment, in ${ENV}
config values, written literally in the config, in secrets.yaml, in a container's
environment, on a process's command line and in log lines; it hits error paths on purpose
(wrong passwords, wrong SNMP keys, a target echoing the token back, a broken secrets.yaml),
then /metrics, /, every log line, every error message and the state files are searched for
each secret value."""

from __future__ import annotations

import asyncio
import gzip
import sqlite3
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.conftest import Daemon
from tests.integration.podman_fixture import podman  # noqa: F401  (a fixture)
from tests.integration.test_snmp import AUTH_KEY, PRIV_KEY, USER, Snmpd
from tests.podman import Podman
from tests.servers import PostgresCluster, RedisServer, free_port
from tests.support import assert_no_secrets, run_cli, wait_for
from tests.systemdmock import SystemdMock

pytestmark = pytest.mark.integration

# Each secret is distinct and long enough that finding it anywhere can only be a leak.
ENV_SECRETS = {
    "LEAK_HTTP_TOKEN": "tok-Http-1f9e2c7a",
    "LEAK_WS_KEY": "key-Ws-6b0d41e3",
    "LEAK_PG_PASSWORD": "pg-Wrong-Pass-93ac",
    "LEAK_SNMP_COMMUNITY": "comm-Wrong-58e1",
    "LEAK_SNMP_AUTH": "auth-Wrong-Key-77d0",
    "LEAK_SNMP_PRIV": "priv-Wrong-Key-2f6b",
    "LEAK_GOOD_AUTH": AUTH_KEY,
    "LEAK_GOOD_PRIV": PRIV_KEY,
}
LITERAL_SECRETS = {
    "redis_password": "redis-Literal-4c21",
    "query_token": "qry-Literal-0a7f",
    "url_password": "url-Pass-Literal-e35b",
}
FILE_SECRET = "binance-Secret-In-Yaml-c0de"
CONTAINER_SECRET = "container-Env-Secret-9d1e"
ARGV_SECRET = "argv-Api-Key-5a3c"
WEB_PASSWORD = "web-Scrape-Pass-b7e4"
WEB_WRONG = "web-Wrong-Pass-61fa"
SECRETS = [
    *ENV_SECRETS.values(),
    *LITERAL_SECRETS.values(),
    FILE_SECRET,
    CONTAINER_SECRET,
    ARGV_SECRET,
    WEB_PASSWORD,
    WEB_WRONG,
]


class EchoHandler(BaseHTTPRequestHandler):
    """A careless target: every request is refused with its credentials quoted back."""

    def do_GET(self) -> None:
        quoted = " ".join(f"{k}={v}" for k, v in self.headers.items()) + " " + self.path
        body = f"denied: {quoted}".encode()
        self.send_response(401 if self.path.startswith("/echo") else 403)
        self.send_header("X-Echo", quoted[:200])
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def echo_server() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), EchoHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[dict[str, Any]]:
    cluster = PostgresCluster.create("pg-Right-Pass-0000")
    snmpd = redis = systemd = None
    try:
        postgres = cluster.start()
        redis = RedisServer(tmp_path, password="redis-Right-Pass-0000")
        snmpd = Snmpd(tmp_path)
        systemd = SystemdMock(tmp_path)
        asyncio.run(
            systemd.add_unit(
                "alphaengine-bot.service",
                ActiveState="active",
                SubState="running",
                service={"NRestarts": 0, "Result": "success"},
            )
        )
        yield {"postgres": postgres, "redis": redis, "snmpd": snmpd, "systemd": systemd}
    finally:
        for server in (systemd, snmpd, redis):
            if server is not None:
                server.close() if hasattr(server, "close") else server.stop()
        cluster.close()


def files(tmp_path: Path) -> dict[str, Path]:
    secrets_yaml = tmp_path / "secrets.yaml"
    # Broken YAML whose error position sits right on the secret, world-readable: the
    # files collector reports both problems and must quote neither the line nor the value.
    secrets_yaml.write_text(f"binance:\n  api_secret: {FILE_SECRET}\n  : [unclosed\n")
    secrets_yaml.chmod(0o644)
    token = ENV_SECRETS["LEAK_HTTP_TOKEN"]
    db = tmp_path / "orders.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE event_store (dedup_key TEXT, api_key TEXT)")
        conn.executemany("INSERT INTO event_store VALUES (?, ?)", [("a", token), ("a", token)])
    app_log = tmp_path / "app.log"
    app_log.write_text(
        f"ERROR Invalid API-key, IP, or permissions for action. key={token}\n"
        f"WARNING 429 Too Many Requests api_key={LITERAL_SECRETS['query_token']}\n"
    )
    return {"secrets": secrets_yaml, "db": db, "log": app_log}


def config(tmp_path: Path, echo: int, servers: dict[str, Any], podman_url: str) -> Path:
    made = files(tmp_path)
    snmpd: Snmpd = servers["snmpd"]
    v3 = {"host": "127.0.0.1", "port": snmpd.port, "version": "3", "user": USER}
    v3 |= {"auth_protocol": "SHA", "priv_protocol": "AES", "timeout": "1s", "retries": 0}
    doc: dict[str, Any] = {
        "web": {"listen_address": "127.0.0.1:0"},
        "state_dir": str(tmp_path / "state"),
        "log": {"level": "debug"},
        "collectors": {
            "host": {"interval": "1s", "timeout": "1s"},
            "docker": {"enabled": True, "url": podman_url, "include": "^leak-", "interval": "1s"},
            "systemd": {
                "enabled": True,
                "address": servers["systemd"].address,
                "include": "^alphaengine-",
                "interval": "1s",
            },
            "sqlite": {
                "interval": "1s",
                "databases": [
                    {
                        "name": "orders",
                        "path": str(made["db"]),
                        "duplicates": [{"table": "event_store", "column": "dedup_key"}],
                        "queries": [
                            {
                                "name": "keys",
                                "sql": "SELECT api_key, count(*) FROM event_store GROUP BY 1",
                                "metric": "botwatch_sqlite_leak_rows_per_key",
                                "help": "Rows per key.",
                                "label": "key",
                            }
                        ],
                    }
                ],
            },
            "files": {
                "interval": "1s",
                "paths": [{"path": str(made["secrets"]), "checks": {"mode": "0600", "yaml": True}}],
            },
            "process": {
                "interval": "1s",
                "processes": [{"name": "leaky", "match_cmdline": "leaky-bot"}],
            },
            "snmp": {
                "interval": "2s",
                "timeout": "2s",
                "targets": [
                    {
                        "name": "v2c-wrong",
                        "host": "127.0.0.1",
                        "port": snmpd.port,
                        "community": "${LEAK_SNMP_COMMUNITY}",
                        "timeout": "1s",
                        "retries": 0,
                    },
                    {
                        "name": "v3-wrong",
                        **v3,
                        "auth_key": "${LEAK_SNMP_AUTH}",
                        "priv_key": "${LEAK_SNMP_PRIV}",
                    },
                    {
                        "name": "v3-good",
                        **v3,
                        "auth_key": "${LEAK_GOOD_AUTH}",
                        "priv_key": "${LEAK_GOOD_PRIV}",
                    },
                ],
            },
        },
        "probes": [
            {
                "name": "api-echo",
                "type": "http",
                "url": f"http://127.0.0.1:{echo}/echo?api_key={LITERAL_SECRETS['query_token']}",
                "headers": {"Authorization": "Bearer ${LEAK_HTTP_TOKEN}"},
                "interval": "1s",
                "timeout": "1s",
            },
            {
                "name": "api-userinfo",
                "type": "http",
                "url": f"http://ops:{LITERAL_SECRETS['url_password']}@127.0.0.1:{echo}/echo",
                "interval": "1s",
                "timeout": "1s",
            },
            {
                "name": "feed",
                "type": "websocket",
                "url": f"ws://127.0.0.1:{echo}/ws",
                "headers": {"X-Api-Key": "${LEAK_WS_KEY}"},
                "max_backoff": "1s",
            },
            {
                "name": "db",
                "type": "postgres",
                "host": "127.0.0.1",
                "port": servers["postgres"].port,
                "user": "postgres",
                "password": "${LEAK_PG_PASSWORD}",
                "interval": "1s",
                "timeout": "1s",
            },
            {
                "name": "cache",
                "type": "redis",
                "host": "127.0.0.1",
                "port": servers["redis"].port,
                "password": LITERAL_SECRETS["redis_password"],
                "interval": "1s",
                "timeout": "1s",
            },
            {"name": "closed", "type": "tcp", "host": "127.0.0.1", "port": free_port()},
        ],
        "logs": {
            "sources": [
                {
                    "name": "app",
                    "type": "file",
                    "path": str(made["log"]),
                    "packs": ["trader-bot"],
                    "start_at": "beginning",
                    "rules": [{"name": "leaked_key", "match": r"key=(?P<key>\S+)"}],
                },
                {
                    "name": "container",
                    "type": "docker",
                    "docker_url": podman_url,
                    "container": "leak-bot",
                    "start_at": "beginning",
                    "rules": [{"name": "leaked_env", "match": r"secret=(?P<value>\S+)"}],
                },
            ]
        },
    }
    path = tmp_path / "botwatch.yml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def web_config(tmp_path: Path) -> Path:
    import bcrypt

    hashed = bcrypt.hashpw(WEB_PASSWORD.encode(), bcrypt.gensalt(4)).decode()
    path = tmp_path / "web.yml"
    path.write_text(yaml.safe_dump({"basic_auth_users": {"prometheus": hashed}}))
    return path


COLLECTORS = ("host", "docker", "systemd", "oom", "sqlite", "files", "process", "snmp")
COLLECTORS += ("probes", "logs")


def samples(body: str) -> list[tuple[str, dict[str, str], float]]:
    from prometheus_client.parser import text_string_to_metric_families

    families = text_string_to_metric_families(body)
    return [(s.name, s.labels, s.value) for f in families for s in f.samples]


def scan(where: str, text: str) -> None:
    assert_no_secrets(SECRETS, text, where=where)


def fetch(base: str, path: str, password: str, accept: str = "") -> tuple[int, str]:
    import base64

    token = base64.b64encode(f"prometheus:{password}".encode()).decode()
    headers = {"Authorization": f"Basic {token}", "Accept-Encoding": "gzip"}
    if accept:
        headers["Accept"] = accept
    request = urllib.request.Request(base + path, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
            if response.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            return response.status, body.decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def test_no_secret_in_metrics_pages_logs_errors_or_state(
    tmp_path: Path,
    echo_server: int,
    servers: dict[str, Any],
    podman: Podman,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    daemon: Callable[..., Daemon],
) -> None:
    for name, value in ENV_SECRETS.items():
        monkeypatch.setenv(name, value)
    podman.run(
        "leak-bot",
        # Only the configured secret is printed: botwatch cannot mask what it was never told.
        "echo secret=$WS_KEY; echo started; sleep 600",
        environment={"BOT_SECRET": CONTAINER_SECRET, "WS_KEY": ENV_SECRETS["LEAK_WS_KEY"]},
    )
    # A bot with its key on the command line; it runs until the test closes its stdin.
    leaky = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; sys.stdin.read()",
            "leaky-bot",
            f"--api-key={ARGV_SECRET}",
        ],
        stdin=subprocess.PIPE,
    )
    try:
        d = daemon(
            config(tmp_path, echo_server, servers, podman.url),
            f"--web.config.file={web_config(tmp_path)}",
        )

        def metrics() -> str:
            status, body = fetch(d.base, "/metrics", WEB_PASSWORD)
            assert status == 200
            return body

        def exercised() -> list[str]:
            found = samples(metrics())
            wanted = [
                ("botwatch_log_matches_total", {"rule": "leaked_key", "key": "redacted"}, 2),
                ("botwatch_sqlite_leak_rows_per_key", {"db": "orders", "key": "redacted"}, 2),
                ("botwatch_log_matches_total", {"rule": "leaked_env", "value": "redacted"}, 1),
                ("botwatch_snmp_up", {"target": "v3-good"}, 1),
                ("botwatch_snmp_up", {"target": "v3-wrong"}, 0),
                ("botwatch_snmp_up", {"target": "v2c-wrong"}, 0),
                ("botwatch_process_up", {"process": "leaky"}, 1),
                *(("botwatch_collector_up", {"collector": c}, None) for c in COLLECTORS),
            ]
            return [
                f"{name}{labels}"
                for name, labels, value in wanted
                if not any(
                    n == name and labels.items() <= got.items() and value in (None, v)
                    for n, got, v in found
                )
            ]

        try:
            wait_for(lambda: not exercised(), 60, "every collector and every secret path to run")
        except AssertionError as exc:
            got = [x for x in samples(metrics()) if "leak" in x[0] or "log_matches" in x[0]]
            raise AssertionError(f"{exc}; still missing: {exercised()}; {got}") from None
        assert fetch(d.base, "/metrics", WEB_WRONG)[0] == 401
        # Every page and format, every log line so far, the state botwatch wrote.
        scan("/metrics", metrics())
        scan(
            "/metrics (OpenMetrics)",
            fetch(d.base, "/metrics", WEB_PASSWORD, "application/openmetrics-text; version=1.0.0")[
                1
            ],
        )
        for path in ("/", "/-/ready", "/-/healthy"):
            scan(path, fetch(d.base, path, WEB_PASSWORD)[1])
        d.proc.send_signal(1)  # SIGHUP: the reload path logs too
        wait_for(lambda: d.events("config reloaded"), 20, "the reload")
        d.stop()
        scan("the daemon's log", "".join(d.raw))
        assert any(e.get("event") == "probe failed" for e in d.logs), "the error paths ran"
        for state in (tmp_path / "state").rglob("*"):
            if state.is_file():
                scan(str(state), state.read_text(errors="replace"))
    finally:
        assert leaky.stdin is not None
        leaky.stdin.close()
        leaky.wait(timeout=10)


def test_no_secret_in_config_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Bad values in secret fields, written literally or from ${ENV}: named, never shown."""
    for name, value in ENV_SECRETS.items():
        monkeypatch.setenv(name, value)
    bad = {
        "collectors": {
            "snmp": {
                "targets": [
                    # Too short for SNMPv3 (8 characters at least), and one with an unknown key.
                    {
                        "name": "a",
                        "host": "h",
                        "version": "3",
                        "user": "u",
                        "auth_protocol": "SHA",
                        "auth_key": "short7",
                    },
                    {
                        "name": "b",
                        "host": "h",
                        "community": "${LEAK_SNMP_COMMUNITY}",
                        "bogus": LITERAL_SECRETS["query_token"],
                    },
                ]
            },
            "host": {"interval": "${LEAK_HTTP_TOKEN}"},
        },
        "probes": [
            {"name": "r", "type": "redis", "password": [LITERAL_SECRETS["redis_password"]]},
            {"name": "p", "type": "postgres", "password": {"x": ENV_SECRETS["LEAK_PG_PASSWORD"]}},
        ],
    }
    path = tmp_path / "bad.yml"
    path.write_text(yaml.safe_dump(bad))
    result = run_cli("check-config", str(path))
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) >= 4
    scan("check-config's errors", result.stderr + result.stdout)
    assert "short7" not in result.stderr
    assert "the value of $LEAK_HTTP_TOKEN" in result.stderr
