"""Real Redis and PostgreSQL servers, and raw TCP fakes, for the probe tests.

    redis = RedisServer(tmp_path, "--requirepass", "s3cret")   # redis-server on 127.0.0.1
    redis.cli("CONFIG", "SET", "maxmemory", "64mb")             # redis-cli, not our client
    cluster = PostgresCluster.create("s3cret")                  # initdb as a non-root user
    server = cluster.start()                                    # postgres -D ... -k ... -p ...
    server.psql("SHOW max_connections")                         # psql, not our client

Every server runs in the foreground on 127.0.0.1 and a free port, and is stopped by its PID
(PID 1 here reaps no orphans). PostgreSQL refuses to run as root: as root, the cluster
belongs to the `postgres` user (or `nobody`) and lives in a directory of its own under /tmp,
since pytest's tmp_path is not reachable for other users. Readiness is polled with a
deadline, through pg_isready and redis-cli, never waited for with a sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

from tests.support import wait_for

PG_BIN = Path("/usr/lib/postgresql/15/bin")
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
PG_ADMIN = "botwatch_admin"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop_process(proc: subprocess.Popen[Any] | None) -> None:
    """SIGTERM, then SIGKILL after STOP_TIMEOUT; by the process's own PID only."""
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# Prometheus ----------------------------------------------------------------------------------

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"


class PrometheusServer:
    """Debian's prometheus with `config`, its data and log under `root`, on 127.0.0.1."""

    def __init__(self, config: Path, root: Path) -> None:
        if not Path(PROMETHEUS).exists():
            raise AssertionError("prometheus is not installed (Debian package prometheus)")
        self.log = root / "prometheus.log"
        port = free_port()
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [
                    PROMETHEUS,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={root / 'data'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.base = f"http://127.0.0.1:{port}"

    def alive(self) -> None:
        """Raise with Prometheus' own log if it has exited."""
        if self.proc.poll() is not None:
            raise AssertionError(self.log.read_text())

    def stop(self) -> None:
        stop_process(self.proc)


# Redis ---------------------------------------------------------------------------------------


class RedisServer:
    def __init__(
        self, root: Path, *args: str, password: str | None = None, port: int | None = None
    ) -> None:
        self.root = root
        self.password = password
        self.port = port or free_port()
        self.log = root / f"redis-{self.port}.log"
        extra = [*args, "--requirepass", password] if password else list(args)
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [
                    "redis-server",
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(root),
                    *extra,
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        wait_for(self._ready, START_TIMEOUT, "redis-server to answer PING")

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"redis-server exited: {self.log.read_text()}")
        done = subprocess.run(
            self._cli_args("PING"), capture_output=True, text=True, timeout=5, check=False
        )
        return done.stdout.strip() == "PONG"

    def _cli_args(self, *command: str) -> list[str]:
        auth = ["-a", self.password, "--no-auth-warning"] if self.password else []
        return ["redis-cli", "-h", "127.0.0.1", "-p", str(self.port), *auth, *command]

    def cli(self, *command: str) -> str:
        done = subprocess.run(
            self._cli_args(*command), capture_output=True, text=True, timeout=10, check=True
        )
        return done.stdout.strip()

    def stop(self) -> None:
        stop_process(self.proc)


# PostgreSQL ----------------------------------------------------------------------------------


def _server_user() -> pwd.struct_passwd | None:
    """The account to run PostgreSQL as; None: as ourselves (we are not root)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise AssertionError("no non-root user to run PostgreSQL as (create `postgres`)")


class PostgresCluster:
    """An initdb'ed data directory (SCRAM, a superuser with a password) kept as a template:
    each `start()` runs a server on a fresh copy, so a test may stop or fill its own."""

    # Roles the pg_hba.conf below gives other methods than SCRAM.
    HBA = (
        "host all trusty 127.0.0.1/32 trust\n"
        "host all md5user 127.0.0.1/32 md5\n"
        "host all plainuser 127.0.0.1/32 password\n"
        "local all all scram-sha-256\n"
        "host all all 127.0.0.1/32 scram-sha-256\n"
    )

    def __init__(self, root: Path, password: str, account: pwd.struct_passwd | None) -> None:
        self.root = root
        self.password = password
        self.account = account
        self.template = root / "template"
        self.servers: list[PostgresServer] = []

    @classmethod
    def create(cls, password: str) -> PostgresCluster:
        account = _server_user()
        root = Path(tempfile.mkdtemp(prefix="bw-pg-"))
        cluster = cls(root, password, account)
        (root / "pwfile").write_text(password + "\n")
        cluster.chown(root)
        cluster.chown(root / "pwfile")
        cluster.run(
            PG_BIN / "initdb",
            "-D",
            str(cluster.template),
            "-U",
            PG_ADMIN,
            "--auth=scram-sha-256",
            f"--pwfile={root / 'pwfile'}",
            "--encoding=UTF8",
            "--no-locale",
            "--no-sync",
            "--no-instructions",
        )
        (cluster.template / "pg_hba.conf").write_text(cls.HBA)
        return cluster

    def chown(self, path: Path) -> None:
        if self.account is not None:
            os.chown(path, self.account.pw_uid, self.account.pw_gid)

    def _as_account(self) -> dict[str, Any]:
        if self.account is None:
            return {}
        return {"user": self.account.pw_uid, "group": self.account.pw_gid, "extra_groups": []}

    def run(self, *args: str | Path) -> str:
        done = subprocess.run(
            [str(a) for a in args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            cwd=self.root,
            env={"PATH": os.environ.get("PATH", ""), "LC_ALL": "C"},
            **self._as_account(),
        )
        if done.returncode != 0:
            raise AssertionError(f"{args[0]} failed: {done.stdout}{done.stderr}")
        return str(done.stdout)

    def start(self, *settings: str) -> PostgresServer:
        """A server on a copy of the template; `settings` are `name=value` (-c)."""
        index = len(self.servers)
        data = self.root / f"data{index}"
        sockets = self.root / f"sock{index}"
        # copytree as root, then hand the copy over: postgres insists on owning its data.
        shutil.copytree(self.template, data, symlinks=True)
        sockets.mkdir()
        for path in [data, sockets, *data.rglob("*")]:
            self.chown(path)
        server = PostgresServer(self, data, sockets, settings)
        self.servers.append(server)
        return server

    def close(self) -> None:
        for server in self.servers:
            server.stop()
        shutil.rmtree(self.root, ignore_errors=True)


class PostgresServer:
    def __init__(
        self, cluster: PostgresCluster, data: Path, sockets: Path, settings: tuple[str, ...]
    ) -> None:
        self.cluster = cluster
        self.data = data
        self.sockets = sockets
        self.port = free_port()
        self.log = cluster.root / f"{data.name}.log"
        options = [arg for setting in ("fsync=off", *settings) for arg in ("-c", setting)]
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [
                    str(PG_BIN / "postgres"),
                    "-D",
                    str(data),
                    "-k",
                    str(sockets),
                    "-p",
                    str(self.port),
                    "-h",
                    "127.0.0.1",
                    *options,
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=cluster.root,
                env={"PATH": os.environ.get("PATH", ""), "LC_ALL": "C"},
                **cluster._as_account(),
            )
        wait_for(self.ready, START_TIMEOUT, "PostgreSQL to accept connections")

    def ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"postgres exited: {self.log.read_text()}")
        isready = [str(PG_BIN / "pg_isready"), "-h", str(self.sockets), "-p", str(self.port)]
        return subprocess.run(isready, capture_output=True, timeout=10, check=False).returncode == 0

    def psql_args(self, database: str = "postgres") -> list[str]:
        return [
            str(PG_BIN / "psql"),
            "-h",
            str(self.sockets),
            "-p",
            str(self.port),
            "-U",
            PG_ADMIN,
            "-d",
            database,
            "-AtX",
            "-v",
            "ON_ERROR_STOP=1",
        ]

    def psql_env(self) -> dict[str, str]:
        return {"PATH": os.environ.get("PATH", ""), "PGPASSWORD": self.cluster.password}

    def psql(self, sql: str) -> str:
        done = subprocess.run(
            [*self.psql_args(), "-c", sql],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
            env=self.psql_env(),
        )
        if done.returncode != 0:
            raise AssertionError(f"psql failed: {done.stderr}")
        return done.stdout.strip()

    @contextlib.contextmanager
    def idle_sessions(self, count: int) -> Iterator[None]:
        """`count` psql sessions held open for the block. Each one proves it is connected
        by answering a query (psql then waits on its stdin), so this also works when the
        sessions take the server's last free slots and no other client could check."""
        sessions: list[subprocess.Popen[str]] = []
        try:
            for _ in range(count):
                session = subprocess.Popen(
                    self.psql_args(),
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                    text=True,
                    env=self.psql_env(),
                )
                sessions.append(session)
                assert session.stdin is not None and session.stdout is not None
                session.stdin.write("SELECT 'connected';\n")
                session.stdin.flush()
                # psql answers, or exits (EOF) when it cannot connect: no deadline needed.
                assert session.stdout.readline().strip() == "connected", "psql did not connect"
            yield
        finally:
            for session in sessions:
                assert session.stdin is not None
                session.stdin.close()  # psql quits at the end of its input
                stop_process(session)

    def stop(self) -> None:
        stop_process(self.proc)


# Fakes -----------------------------------------------------------------------------------------


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def raw_server(handler: Handler) -> AsyncIterator[int]:
    """A TCP server on 127.0.0.1 that runs `handler` for each connection; yields its port.
    For what no real server does on demand: garbage, silence, a hang-up mid-handshake.
    On the way out every connection is cut and its handler awaited (never cancelled:
    asyncio logs a cancelled connection handler as an error)."""
    writers: list[asyncio.StreamWriter] = []
    handlers: list[asyncio.Task[Any]] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        task = asyncio.current_task()
        if task is not None:
            handlers.append(task)
        with contextlib.suppress(ConnectionError):
            await handler(reader, writer)

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()
        for writer in writers:
            writer.transport.abort()
        await asyncio.wait_for(asyncio.gather(*handlers, return_exceptions=True), 10)
        await server.wait_closed()


async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Accepts, reads, never answers: until the client gives up."""
    while await reader.read(4096):
        pass


def answering(reply: bytes, then_close: bool = True) -> Handler:
    """Waits for the client's first bytes, sends `reply`, then hangs up (or goes silent)."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(4096)
        writer.write(reply)
        await writer.drain()
        if then_close:
            writer.close()
        else:
            await silent(reader, writer)

    return handler


def endless(chunk: bytes) -> Handler:
    """Answers the first bytes with `chunk`, over and over, until the client hangs up."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(4096)
        while not writer.is_closing():
            writer.write(chunk)
            await writer.drain()

    return handler
