"""Parsing journalctl's JSON lines (fixtures: real journalctl output, see their README)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from exporter.logs.journald import (
    EntryError,
    command,
    message_values,
    parse_entry,
    position_cursor,
)
from exporter.logs.models import JournaldSourceConfig

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "journald"


def fixture_lines(name: str) -> list[bytes]:
    return (FIXTURES / name).read_bytes().splitlines()


def test_fixture_entries_parse_to_their_messages() -> None:
    entries = [parse_entry(line) for line in fixture_lines("entries.jsonl")]
    assert [e.messages for e in entries] == [
        [b"order accepted id=1"],
        ["주문 거부됨: 잔고 부족".encode()],
        [b"raw \xff\xfe not utf-8"],
        [b'Traceback (most recent call last):\n  File "bot.py", line 1\nValueError: boom'],
        [b"\x1b[31mERROR\x1b[0m colour"],
        [],  # no MESSAGE field: the entry moves the cursor but adds no line
        [b"first value", b"second value"],
        [b""],
        [b"x" * 5000],
    ]
    # Realtime is µs since the epoch; the fixture entries are 1 ms apart.
    assert [e.realtime for e in entries] == [1700000000 + i / 1000 for i in range(1, 10)]
    cursors = [e.cursor for e in entries]
    assert all(c.startswith("s=") for c in cursors)
    assert len(set(cursors)) == len(cursors)


def test_null_message_is_no_line() -> None:
    (line,) = fixture_lines("null-message.jsonl")
    entry = parse_entry(line)
    assert entry.messages == []
    assert entry.cursor.startswith("s=")


@pytest.mark.parametrize(
    ("line", "error"),
    [
        pytest.param(b"not json", "not JSON", id="garbage"),
        pytest.param(b'{"MESSAGE": "x"', "not JSON", id="cut-off"),
        pytest.param(b'"just a string"', "not a JSON object", id="not-object"),
        pytest.param(b'{"MESSAGE": "no cursor"}', "__CURSOR", id="no-cursor"),
        pytest.param(b'{"__CURSOR": "", "MESSAGE": "x"}', "__CURSOR", id="empty-cursor"),
        pytest.param(b'{"__CURSOR": "c", "MESSAGE": 5}', "MESSAGE is a int", id="number"),
        pytest.param(b'{"__CURSOR": "c", "MESSAGE": [300]}', "over 255", id="byte-range"),
        pytest.param(b'{"__CURSOR": "c", "MESSAGE": ["a", {}]}', "holds a dict", id="mixed"),
        pytest.param(b'{"__CURSOR": "c", "MESSAGE": "\xff"}', "not JSON", id="bad-utf8"),
    ],
)
def test_unusable_lines_are_errors(line: bytes, error: str) -> None:
    with pytest.raises(EntryError, match=error):
        parse_entry(line)


def test_realtime_missing_or_malformed_is_none() -> None:
    assert parse_entry(b'{"__CURSOR": "c"}').realtime is None
    assert parse_entry(b'{"__CURSOR": "c", "__REALTIME_TIMESTAMP": "soon"}').realtime is None


def test_message_values_shapes() -> None:
    assert message_values(None) == []
    assert message_values([]) == []
    assert message_values("é") == ["é".encode()]
    assert message_values([104, 105]) == [b"hi"]
    assert message_values([[104], "i", None]) == [b"h", b"i"]
    # A lone surrogate (valid JSON escape, invalid UTF-8) must not crash the source.
    assert message_values(json.loads('"a\\ud800b"')) == [b"a?b"]


def config(**fields: Any) -> JournaldSourceConfig:
    # model_construct: these tests are about the command line, not about config validation.
    return JournaldSourceConfig.model_construct(type="journald", name="j", **fields)


def test_command_positions() -> None:
    base = config(unit=["a.service", "b.service"], directory="/j", journalctl="/bin/jc")
    args = command(base, None, None)
    assert args[0] == "/bin/jc"
    assert {"--follow", "--merge", "--all", "--output=json"} <= set(args)
    assert "--unit=a.service" in args and "--unit=b.service" in args
    assert "--directory=/j" in args
    assert args[-1] == "--lines=0"  # start_at end: only new entries
    assert command(config(unit="a", start_at="beginning"), None, None)[-1] == "--no-tail"
    assert command(base, "s=1;i=2", None)[-2:] == ["--after-cursor=s=1;i=2", "--no-tail"]
    assert command(base, None, 1700000000.25)[-2:] == ["--since=@1700000000.250000", "--no-tail"]
    # A cursor wins over since.
    assert "--after-cursor=c" in command(base, "c", 5.0)
    assert not any(a.startswith("--directory") for a in command(config(unit="a"), None, None))


def test_position_cursor() -> None:
    assert position_cursor(None) is None
    assert position_cursor({}) is None
    assert position_cursor({"cursor": ""}) is None
    assert position_cursor({"cursor": 5}) is None
    assert position_cursor({"cursor": "s=1"}) == "s=1"
    real = "s=aac3514;i=4;b=0123abcd;m=60a24181e4003;t=60a24181e4003;x=5001e6698aa78b28"
    assert position_cursor({"cursor": real}) == real
    # journalctl exits on a cursor it cannot parse: such a position must not stick.
    assert position_cursor({"cursor": "garbage"}) is None
    assert position_cursor({"cursor": "s=1;--lines=5"}) is None
