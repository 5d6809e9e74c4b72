"""The process collector on this host's real /proc, against processes the test starts:
a `python -m bot` holding files and a TCP connection to a server of the test's, and a
forking `python -m uvicorn` whose workers accept connections. Once in-process
(`collect()`), once through the real daemon with promtool on the full scrape.

Every child gets a comm (process name) unique to the test run, and each group matches on
that name *and* on the presets' command-line regex: the presets' regexes are exercised on
real command lines, and another run of this suite on the same host is never counted.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import select
import signal
import socket
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest
from prometheus_client.metrics_core import Metric

from exporter.collector import Context
from exporter.collectors.process import ProcessCollector, ProcessConfig
from exporter.collectors.processscan import scan
from exporter.threads import BlockingCalls
from tests.integration.conftest import Daemon
from tests.support import eventually, promtool_lint, wait_for
from tests.unit.test_processgroup import BOT_CMDLINE, WEB_CMDLINE

pytestmark = pytest.mark.integration

# PR_SET_NAME: the comm /proc/PID/stat shows; forked workers inherit it.
SET_COMM = """\
import ctypes, os
ctypes.CDLL(None).prctl(15, os.environ["CHILD_COMM"].encode(), 0, 0, 0)
"""
BOT = SET_COMM + textwrap.dedent("""\
    import resource, socket, sys
    resource.setrlimit(resource.RLIMIT_NOFILE, (int(os.environ["CHILD_NOFILE"]), 4096))
    port, nfiles = int(sys.argv[1]), int(sys.argv[2])
    conn = socket.create_connection(("127.0.0.1", port)) if port else None
    held = [open(os.devnull, "rb") for _ in range(nfiles)]
    print("ready", flush=True)
    sys.stdin.read()  # until stopped, or until the test's end of the pipe closes
""")
# Like uvicorn/gunicorn with workers: one listening socket, forked workers accepting on it.
UVICORN = SET_COMM + textwrap.dedent("""\
    import signal, socket, sys
    workers = int(sys.argv[sys.argv.index("--workers") + 1])
    server = socket.create_server(("127.0.0.1", 0))
    held, pids = [], []

    def serve():
        while True:
            held.append(server.accept()[0])

    for _ in range(workers - 1):
        pid = os.fork()
        if pid == 0:
            ctypes.CDLL(None).prctl(1, signal.SIGTERM, 0, 0, 0)  # die with the master
            serve()
        pids.append(pid)

    def stop(*_):
        for pid in pids:
            try:
                os.kill(pid, signal.SIGTERM)
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    print("ready", server.getsockname()[1], *pids, flush=True)
    serve()
""")


@dataclass
class Child:
    proc: subprocess.Popen[str]
    words: list[str]

    @property
    def pid(self) -> int:
        return self.proc.pid


@dataclass
class Children:
    """Starts the fake bot and web server from a directory of their own; stops each by PID."""

    root: Path
    comm: str = field(default_factory=lambda: "bw" + uuid.uuid4().hex[:12])
    started: list[Child] = field(default_factory=list)
    extra_pids: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        (self.root / "bot.py").write_text(BOT)
        (self.root / "uvicorn.py").write_text(UVICORN)

    def _start(self, args: list[str], nofile: int = 1024) -> Child:
        env = {
            **os.environ,
            "PYTHONPATH": str(self.root),
            "CHILD_COMM": self.comm,
            "CHILD_NOFILE": str(nofile),
        }
        proc = subprocess.Popen(
            [sys.executable, *args],
            cwd=self.root,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        child = Child(proc, [])
        self.started.append(child)
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 20)
        assert ready, f"child {args} did not get ready"
        child.words = proc.stdout.readline().split()
        assert child.words[:1] == ["ready"], child.words
        return child

    def bot(self, port: int, nfiles: int, nofile: int = 1024) -> Child:
        return self._start(["-m", "bot", str(port), str(nfiles)], nofile)

    def web(self, workers: int) -> tuple[Child, int, list[int]]:
        args = ["-m", "uvicorn", "app:app", "--host", "127.0.0.1", "--port", "0"]
        child = self._start([*args, "--workers", str(workers)])
        port, *pids = (int(w) for w in child.words[1:])
        self.extra_pids += pids
        return child, port, pids

    def stop(self, child: Child) -> None:
        os.kill(child.pid, signal.SIGTERM)
        child.proc.wait(timeout=10)

    def stop_all(self) -> None:
        for child in self.started:
            if child.proc.poll() is None:
                # SIGTERM first: the fake server then stops and reaps its workers itself.
                os.kill(child.pid, signal.SIGTERM)
                try:
                    child.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    child.proc.kill()
                    child.proc.wait(timeout=10)
            for stream in (child.proc.stdin, child.proc.stdout):
                if stream is not None:
                    stream.close()
        for pid in self.extra_pids:  # workers normally die with their master
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def groups(self) -> list[dict[str, str]]:
        name = f"^{self.comm}$"
        return [
            {"name": "alphaengine-bot", "match_name": name, "match_cmdline": BOT_CMDLINE},
            {"name": "alphaengine-web", "match_name": name, "match_cmdline": WEB_CMDLINE},
        ]


@pytest.fixture
def children(tmp_path: Path) -> Iterator[Children]:
    kids = Children(tmp_path)
    try:
        yield kids
    finally:
        kids.stop_all()


@pytest.fixture
def server() -> Iterator[socket.socket]:
    """What the bot connects to: the exchange, the database."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        yield listener


def make_collector(children: Children, tmp_path: Path, **config: object) -> ProcessCollector:
    return ProcessCollector(
        ProcessConfig.model_validate({"processes": children.groups(), **config}),
        Context("process", tmp_path, BlockingCalls()),
    )


def sample(families: list[Metric], name: str, **labels: str) -> float | None:
    for family in families:
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return float(s.value)
    return None


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def cpu_total(families: list[Metric], process: str) -> float:
    name = "botwatch_process_cpu_seconds_total"
    user = sample(families, name, process=process, mode="user")
    system = sample(families, name, process=process, mode="system")
    assert user is not None and system is not None
    return user + system


# --- in-process ---------------------------------------------------------------------------


async def test_the_bot_its_files_its_limit_and_its_connection(
    children: Children, server: socket.socket, tmp_path: Path
) -> None:
    port = server.getsockname()[1]
    bot = children.bot(port, nfiles=5, nofile=64)
    collector = make_collector(children, tmp_path)
    families = await collector.collect()

    def value(name: str, **labels: str) -> float | None:
        return sample(families, name, process="alphaengine-bot", **labels)

    assert value("botwatch_process_up") == 1
    assert value("botwatch_process_instances") == 1
    assert value("botwatch_process_access_denied") == 0
    # stdin, stdout, stderr, the socket, the 5 files (and whatever Python holds itself).
    open_fds = fd_count(bot.pid)
    assert open_fds >= 9
    assert value("botwatch_process_open_fds") == open_fds
    assert value("botwatch_process_max_fds") == 64
    assert value("botwatch_process_worst_fd_ratio") == pytest.approx(open_fds / 64)
    conns = "botwatch_process_established_connections"
    assert value(conns, direction="outbound", port=str(port)) == 1
    assert value("botwatch_process_threads") == 1
    # psutil reads the same files its own way: an independent check of the arithmetic.
    ps = psutil.Process(bot.pid)
    assert value("botwatch_process_start_timestamp_seconds") == pytest.approx(
        ps.create_time(), abs=0.02
    )
    rss = value("botwatch_process_resident_memory_bytes")
    assert rss is not None and abs(rss - ps.memory_info().rss) < 4 << 20
    times = ps.cpu_times()
    assert cpu_total(families, "alphaengine-bot") == pytest.approx(
        times.user + times.system, abs=0.05
    )
    # The web group runs nothing here: up 0, and nothing invented for it.
    assert sample(families, "botwatch_process_up", process="alphaengine-web") == 0
    assert sample(families, "botwatch_process_open_fds", process="alphaengine-web") is None


async def test_workers_are_one_group_and_accepted_connections_count_by_local_port(
    children: Children, tmp_path: Path
) -> None:
    master, port, workers = children.web(workers=3)
    collector = make_collector(children, tmp_path)
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(2)]
    try:
        conns = "botwatch_process_established_connections"
        labels = {"process": "alphaengine-web", "direction": "inbound", "port": str(port)}

        rounds: list[list[Metric]] = []

        async def accepted() -> bool:
            rounds.append(await collector.collect())
            return sample(rounds[-1], conns, **labels) == 2

        await eventually(accepted, 10, "both connections to be accepted")
        families = rounds[-1]
        pids = [master.pid, *workers]

        def value(name: str) -> float | None:
            return sample(families, name, process="alphaengine-web")

        assert value("botwatch_process_instances") == 3
        assert value("botwatch_process_threads") == 3
        assert value("botwatch_process_open_fds") == sum(fd_count(p) for p in pids)
        # The oldest process: the master, whose start a worker's exit does not move.
        master_start = psutil.Process(master.pid).create_time()
        assert value("botwatch_process_start_timestamp_seconds") == pytest.approx(
            master_start, abs=0.02
        )
        before = cpu_total(families, "alphaengine-web")

        # A worker exits (its master does not reap it: a zombie is not a process that runs).
        os.kill(workers[0], signal.SIGKILL)
        wait_for(
            lambda: psutil.Process(workers[0]).status() == psutil.STATUS_ZOMBIE,
            10,
            "the worker to be a zombie",
        )
        families = await collector.collect()
        assert value("botwatch_process_instances") == 2
        assert value("botwatch_process_up") == 1
        # The CPU counter keeps what the worker used: rate() sees no reset.
        assert cpu_total(families, "alphaengine-web") >= before
        assert value("botwatch_process_start_timestamp_seconds") == pytest.approx(
            master_start, abs=0.02
        )
    finally:
        for client in clients:
            client.close()


async def test_an_exit_takes_the_gauges_and_a_restart_moves_the_start_time(
    children: Children, server: socket.socket, tmp_path: Path
) -> None:
    port = server.getsockname()[1]
    collector = make_collector(children, tmp_path)
    first = children.bot(port, nfiles=1)
    families = await collector.collect()
    started = sample(
        families, "botwatch_process_start_timestamp_seconds", process="alphaengine-bot"
    )
    assert started is not None
    cpu_before = cpu_total(families, "alphaengine-bot")

    children.stop(first)
    families = await collector.collect()
    mine = {s.name for f in families for s in f.samples if s.labels["process"] == "alphaengine-bot"}
    assert sample(families, "botwatch_process_up", process="alphaengine-bot") == 0
    assert sample(families, "botwatch_process_instances", process="alphaengine-bot") == 0
    assert mine == {
        "botwatch_process_up",
        "botwatch_process_instances",
        "botwatch_process_access_denied",
        "botwatch_process_cpu_seconds_total",  # a counter: it stays
    }
    assert cpu_total(families, "alphaengine-bot") == cpu_before

    children.bot(port, nfiles=1)
    families = await collector.collect()
    assert sample(families, "botwatch_process_up", process="alphaengine-bot") == 1
    restarted = sample(
        families, "botwatch_process_start_timestamp_seconds", process="alphaengine-bot"
    )
    assert restarted is not None and restarted > started
    assert cpu_total(families, "alphaengine-bot") >= cpu_before


def scan_as(uid: int, gid: int, groups: list[dict[str, str]]) -> list[list[object]]:
    """Scan /proc from a forked child that has become another user (no exec: the
    interpreter under /root may not be readable to that user)."""
    config = ProcessConfig.model_validate({"processes": groups})
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        status = 1
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            found = scan(Path("/proc"), config.processes)
            bots = found["alphaengine-bot"]
            seen = [[s.pid, s.open_fds, s.connections, s.denied] for s in bots]
            os.write(write_end, json.dumps(seen).encode())
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        out = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    rows: list[list[object]] = json.loads(out)
    return rows


def test_another_users_process_is_counted_but_its_files_are_not_read(
    children: Children, server: socket.socket
) -> None:
    # Scanning as another user needs root (as `make test` and CI run): not skipped otherwise.
    assert os.geteuid() == 0, "this test switches to user nobody: run the suite as root"
    bot = children.bot(server.getsockname()[1], nfiles=2)  # root's process
    nobody = pwd.getpwnam("nobody")
    rows = scan_as(nobody.pw_uid, nobody.pw_gid, children.groups())
    assert rows == [[bot.pid, None, None, True]]


# --- through the daemon -------------------------------------------------------------------


def test_the_daemon_serves_the_groups_and_promtool_accepts_the_scrape(
    children: Children,
    server: socket.socket,
    tmp_path: Path,
    daemon: Callable[..., Daemon],
) -> None:
    port = server.getsockname()[1]
    bot = children.bot(port, nfiles=3)
    _, web_port, _ = children.web(workers=2)
    config = tmp_path / "botwatch.yml"
    config.write_text(
        "web: {listen_address: '127.0.0.1:0'}\n"
        f"state_dir: {tmp_path / 'state'}\n"
        "collectors:\n"
        "  process:\n"
        "    interval: 250ms\n"
        f"    processes: {json.dumps(children.groups())}\n"
    )
    d = daemon(config)
    bot_labels = {"process": "alphaengine-bot"}
    connection = {**bot_labels, "direction": "outbound", "port": str(port)}
    wait_for(
        lambda: d.sample("botwatch_process_established_connections", **connection) == 1,
        20,
        "the bot's connection on /metrics",
    )
    assert d.sample("botwatch_process_instances", process="alphaengine-web") == 2
    assert d.sample("botwatch_collector_up", collector="process") == 1
    body = d.metrics()
    assert "botwatch_process_cpu_seconds_total{" in body
    assert promtool_lint(body) == ""
    # Scraping only this collector works too (its name is registered like any other).
    status, only, _ = d.get("/metrics?collect[]=process")
    assert status == 200 and b"botwatch_process_up{" in only
    assert web_port > 0

    children.stop(bot)
    wait_for(lambda: d.sample("botwatch_process_up", **bot_labels) == 0, 20, "the bot to be down")
    assert d.sample("botwatch_process_open_fds", **bot_labels) is None
    assert promtool_lint(d.metrics()) == ""
