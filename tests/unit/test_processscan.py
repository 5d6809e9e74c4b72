"""The procfs scan on a synthetic /proc tree: what is read, from where, and what a
process that vanishes or a kernel without IPv6 does to a round."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from exporter.collectors.processfs import Endpoint
from exporter.collectors.processscan import scan
from tests.unit.test_processfs import LIMITS, STAT
from tests.unit.test_processgroup import BOT_CMDLINE, WEB_CMDLINE, sel

BTIME = 1_700_000_000
TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
TCP_HEADER = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid\n"


def tcp_line(local_port: int, remote_port: int, state: int, inode: int) -> str:
    return (
        f"   0: 0100007F:{local_port:04X} 0100007F:{remote_port:04X} {state:02X}"
        f" 00000000:00000000 00:00000000 00000000  1000        0 {inode} 1 0\n"
    )


class FakeProc:
    """A /proc tree with just the files the collector reads."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir()
        (root / "stat").write_text(f"cpu  1 2 3 4\nbtime {BTIME}\nprocesses 99\n")
        (root / "self").mkdir()  # non-numeric entries are not processes

    def add(
        self,
        pid: int,
        comm: str,
        argv: list[str],
        *,
        state: str = "S",
        fds: dict[int, str] | None = None,
        tcp: list[str] | None = None,
        tcp6: list[str] | None = None,
        netns: str | None = "net:[4026531840]",
    ) -> Path:
        base = self.root / str(pid)
        base.mkdir()
        stat = STAT.replace(b"4242 (trader-api) S", f"{pid} ({comm}) {state}".encode())
        (base / "stat").write_bytes(stat)
        (base / "cmdline").write_bytes(b"".join(a.encode() + b"\0" for a in argv))
        (base / "limits").write_text(LIMITS)
        (base / "fd").mkdir()
        for fd, target in (fds or {0: "/dev/null"}).items():
            (base / "fd" / str(fd)).symlink_to(target)
        (base / "net").mkdir()
        (base / "net" / "tcp").write_text(TCP_HEADER + "".join(tcp or []))
        if tcp6 is not None:
            (base / "net" / "tcp6").write_text(TCP_HEADER + "".join(tcp6))
        if netns is not None:
            (base / "ns").mkdir()
            (base / "ns" / "net").symlink_to(netns)
        return base


@pytest.fixture
def fake(tmp_path: Path) -> FakeProc:
    return FakeProc(tmp_path / "proc")


def test_a_selected_process_is_read_in_full(fake: FakeProc) -> None:
    fake.add(
        300,
        "python3.11",
        ["/opt/alphaengine/venv/bin/python3.11", "-m", "bot"],
        fds={0: "/dev/null", 1: "pipe:[7]", 3: "socket:[9001]", 4: "socket:[9002]"},
        tcp=[tcp_line(41000, 443, 0x01, 9001), tcp_line(8000, 0, 0x0A, 9003)],
        tcp6=[tcp_line(41001, 6379, 0x01, 9002)],
    )
    fake.add(301, "sshd", ["sshd: root@pts/0"])
    found = scan(fake.root, [sel("alphaengine-bot", match_cmdline=BOT_CMDLINE)])
    (bot,) = found["alphaengine-bot"]
    assert bot.pid == 300
    assert (bot.cpu_user, bot.cpu_system) == (731 / TICKS, 229 / TICKS)
    assert bot.start_time == BTIME + 912345 / TICKS
    assert (bot.threads, bot.rss_bytes) == (7, 5120 * PAGE)
    assert (bot.open_fds, bot.fd_limit) == (4, 1024)
    assert bot.connections == {
        9001: Endpoint("outbound", 443),
        9002: Endpoint("outbound", 6379),
    }
    assert not bot.denied


def test_only_selected_processes_and_live_ones(fake: FakeProc) -> None:
    fake.add(10, "uvicorn", ["/venv/bin/uvicorn", "app:app"])
    fake.add(11, "uvicorn", ["/venv/bin/uvicorn", "app:app"])
    fake.add(12, "uvicorn", ["/venv/bin/uvicorn", "app:app"], state="Z")  # not reaped yet
    fake.add(13, "python3", ["python3", "-m", "bot"])
    found = scan(
        fake.root,
        [sel("web", match_cmdline=WEB_CMDLINE), sel("cron", match_name="^cron$")],
    )
    assert sorted(s.pid for s in found["web"]) == [10, 11]
    assert "cron" not in found


def test_a_process_in_two_groups_is_read_once_and_counted_in_both(fake: FakeProc) -> None:
    fake.add(20, "python3", ["python3", "-m", "bot"])
    found = scan(
        fake.root, [sel("bot", match_cmdline=BOT_CMDLINE), sel("python", match_name="^python")]
    )
    assert found["bot"] == found["python"]


def test_match_name_sees_the_program_name_a_15_byte_comm_was_cut_from(fake: FakeProc) -> None:
    fake.add(30, "alphaengine-wor", ["/usr/bin/alphaengine-worker"])
    found = scan(fake.root, [sel("worker", match_name="^alphaengine-worker$")])
    assert [s.pid for s in found["worker"]] == [30]


def test_inbound_is_told_by_a_listener_of_another_process_in_the_namespace(
    fake: FakeProc,
) -> None:
    # gunicorn: the master holds the listening socket, a worker the accepted connection.
    table = [tcp_line(8000, 0, 0x0A, 500), tcp_line(8000, 51000, 0x01, 501)]
    fake.add(40, "gunicorn", ["gunicorn: master"], fds={3: "socket:[500]"}, tcp=table)
    fake.add(
        41, "gunicorn", ["gunicorn: worker"], fds={3: "socket:[500]", 9: "socket:[501]"}, tcp=table
    )
    found = scan(fake.root, [sel("web", match_cmdline=WEB_CMDLINE)])
    by_pid = {s.pid: s.connections for s in found["web"]}
    assert by_pid == {40: {}, 41: {501: Endpoint("inbound", 8000)}}


def test_each_network_namespace_has_its_own_table(fake: FakeProc) -> None:
    # A containerised trader-api: its sockets are in its namespace's table only.
    fake.add(
        50,
        "trader-api",
        ["/app/trader-api"],
        fds={5: "socket:[700]"},
        tcp=[tcp_line(42000, 5432, 0x01, 700)],
        netns="net:[4026532999]",
    )
    fake.add(51, "trader-api", ["/app/trader-api"], fds={5: "socket:[700]"}, tcp=[])
    found = scan(fake.root, [sel("api", match_name="^trader-api$")])
    by_pid = {s.pid: s.connections for s in found["api"]}
    assert by_pid == {50: {700: Endpoint("outbound", 5432)}, 51: {}}


def test_without_a_namespace_link_each_process_reads_its_own_table(fake: FakeProc) -> None:
    sockets = {5: "socket:[800]"}
    fake.add(60, "a", ["a"], fds=sockets, tcp=[tcp_line(42000, 443, 1, 800)], netns=None)
    fake.add(61, "a", ["a"], fds=sockets, tcp=[tcp_line(42000, 6379, 1, 800)], netns=None)
    found = scan(fake.root, [sel("a", match_name="^a$")])
    ports = sorted(e.port for s in found["a"] for e in (s.connections or {}).values())
    assert ports == [443, 6379]


def test_a_process_that_vanishes_mid_scan_is_skipped(fake: FakeProc) -> None:
    gone = fake.add(70, "trader-api", ["trader-api"])
    shutil.rmtree(gone / "fd")
    (gone / "fd").symlink_to(fake.root / "nonexistent")  # as /proc/PID/fd after exit
    half = fake.add(71, "trader-api", ["trader-api"])
    (half / "stat").unlink()
    fake.add(72, "trader-api", ["trader-api"])
    found = scan(fake.root, [sel("api", match_name="^trader-api$")])
    assert [s.pid for s in found["api"]] == [72]


def test_a_missing_procfs_fails_the_round(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        scan(tmp_path / "nope", [sel("a", match_name="a")])


def test_the_regexes_see_the_arguments_joined_by_spaces(fake: FakeProc) -> None:
    fake.add(80, "python3", ["python3", "-m", "bot", "--config", "a b.yaml"])
    joined = re.compile(r"-m bot --config a b\.yaml$")
    found = scan(fake.root, [sel("bot", match_cmdline=joined.pattern)])
    assert [s.pid for s in found["bot"]] == [80]
