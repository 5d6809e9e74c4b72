"""The per-process /proc parsers of the process collector, on literal file contents."""

from __future__ import annotations

import pytest

from exporter.collectors.processfs import (
    Endpoint,
    TcpSocket,
    established_endpoints,
    parse_btime,
    parse_nofile_limit,
    parse_stat,
    parse_tcp_table,
    process_name,
    socket_inode,
    split_cmdline,
)

# A real line's shape: 52 fields; the values the collector uses are distinct on purpose.
STAT = (
    b"4242 (trader-api) S 1 4242 4242 0 -1 4194560 1500 0 3 0 "
    b"731 229 0 0 20 0 7 0 912345 1234567890 5120 18446744073709551615 "
    b"1 1 0 0 0 0 0 4096 17642 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n"
)


def test_stat_fields() -> None:
    stat = parse_stat(STAT)
    assert (stat.comm, stat.state, stat.ppid) == ("trader-api", "S", 1)
    assert (stat.utime, stat.stime) == (731, 229)
    assert (stat.num_threads, stat.starttime, stat.rss_pages) == (7, 912345, 5120)
    assert not stat.defunct


def test_a_comm_with_spaces_and_parentheses_does_not_shift_the_fields() -> None:
    stat = parse_stat(STAT.replace(b"(trader-api)", b"(x) S (1 2) y)"))
    assert stat.comm == "x) S (1 2) y"
    assert (stat.utime, stat.num_threads, stat.starttime) == (731, 7, 912345)


@pytest.mark.parametrize("state", ["Z", "X"])
def test_zombies_and_dead_processes_are_defunct(state: str) -> None:
    assert parse_stat(STAT.replace(b") S ", f") {state} ".encode())).defunct


def test_cmdline_arguments() -> None:
    data = b"/opt/alphaengine/venv/bin/python\0-m\0bot\0"
    assert split_cmdline(data) == ["/opt/alphaengine/venv/bin/python", "-m", "bot"]
    assert split_cmdline(b"") == []  # a kernel thread
    # setproctitle may overwrite argv with one string and trailing NULs.
    assert split_cmdline(b"gunicorn: worker [app]\0\0\0") == ["gunicorn: worker [app]"]


def test_name_is_the_program_when_the_comm_was_cut_at_15_bytes() -> None:
    argv = ["/usr/local/bin/alphaengine-worker", "--queue", "x"]
    assert process_name("alphaengine-wor", argv) == "alphaengine-worker"
    # A comm set by the program itself (prctl) is not replaced by an unrelated argv[0].
    assert process_name("tokio-runtime-w", ["/app/trader-api"]) == "tokio-runtime-w"
    assert process_name("trader-api", ["/app/trader-api"]) == "trader-api"
    assert process_name("alphaengine-wor", []) == "alphaengine-wor"


def test_btime() -> None:
    assert parse_btime("cpu  1 2 3\nintr 5\nbtime 1700000000\nprocesses 9\n") == 1700000000.0
    with pytest.raises(ValueError, match="btime"):
        parse_btime("cpu  1 2 3\n")


LIMITS = """\
Limit                     Soft Limit           Hard Limit           Units
Max cpu time              unlimited            unlimited            seconds
Max open files            1024                 524288               files
Max locked memory         8388608              8388608              bytes
"""


def test_soft_open_files_limit() -> None:
    assert parse_nofile_limit(LIMITS) == 1024
    unlimited = LIMITS.replace("1024                 524288", "unlimited            unlimited")
    assert parse_nofile_limit(unlimited) is None
    assert parse_nofile_limit("Limit  Soft Limit\n") is None


def test_socket_links() -> None:
    assert socket_inode("socket:[123456]") == 123456
    assert socket_inode("/dev/null") is None
    assert socket_inode("pipe:[99]") is None
    assert socket_inode("anon_inode:[eventpoll]") is None


TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F40 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 5001 1 0
   1: 0100007F:1F40 0100007F:D431 01 00000000:00000000 00:00000000 00000000  1000        0 5002 1 0
   2: 0A000002:A1B2 0D2A3B4C:01BB 01 00000000:00000000 02:000001F4 00000000  1000        0 5003 2 0
   3: 0A000002:A1B4 0D2A3B4C:01BB 08 00000000:00000000 00:00000000 00000000  1000        0 5004 1 0
   4: 0100007F:1F40 0100007F:D433 01 00000000:00000000 00:00000000 00000000  1000        0 0 1 0
"""
TCP6 = """\
  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0000000000000000FFFF00000200000A:C350 0000000000000000FFFF00000A00000A:1538 01 00000000:00000000 00:00000000 00000000  1000        0 6001 1 0
"""  # noqa: E501


def test_tcp_tables_v4_and_v6() -> None:
    sockets = parse_tcp_table(TCP) + parse_tcp_table(TCP6)
    assert sockets[0] == TcpSocket(local_port=8000, remote_port=0, state=0x0A, inode=5001)
    assert sockets[2] == TcpSocket(local_port=41394, remote_port=443, state=0x01, inode=5003)
    assert sockets[-1] == TcpSocket(local_port=50000, remote_port=5432, state=0x01, inode=6001)
    assert parse_tcp_table(TCP.splitlines()[0] + "\n   9: garbage\n") == []


def test_established_sockets_are_inbound_on_a_listening_port_else_outbound() -> None:
    endpoints = established_endpoints(parse_tcp_table(TCP) + parse_tcp_table(TCP6))
    assert endpoints == {
        5002: Endpoint("inbound", 8000),  # nginx -> the web API on :8000
        5003: Endpoint("outbound", 443),  # to the exchange
        6001: Endpoint("outbound", 5432),  # IPv6 table, v4-mapped
        # 5004 is CLOSE_WAIT; the inode-0 one waits in the accept queue: not counted.
    }
