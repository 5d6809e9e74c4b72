"""dnswire: queries as bytes, and answers read from packets built here byte by byte
(compression pointers, pointer loops, truncated and garbage packets)."""

from __future__ import annotations

import contextlib
import random
import struct

import pytest

from exporter.probes import dnswire
from exporter.probes.dnswire import (
    AAAA,
    CNAME,
    Header,
    Question,
    Record,
    WireError,
    chain,
    decode,
    decode_name,
    encode_name,
    encode_query,
)

QR, TC, RD, RA = 0x8000, 0x0200, 0x0100, 0x0080
A_TYPE = dnswire.A


# Packet building blocks, written out by hand rather than with the encoder under test.


def header(qid: int, flags: int, qd: int = 1, an: int = 0, ns: int = 0, ar: int = 0) -> bytes:
    return struct.pack("!HHHHHH", qid, flags, qd, an, ns, ar)


def wire_name(name: str) -> bytes:
    out = b"".join(bytes([len(label)]) + label.encode() for label in name.split(".") if label)
    return out + b"\x00"


def pointer(offset: int) -> bytes:
    return struct.pack("!H", 0xC000 | offset)


def question(name: str, qtype: int = A_TYPE) -> bytes:
    return wire_name(name) + struct.pack("!HH", qtype, 1)


def record(owner: bytes, rtype: int, ttl: int, rdata: bytes, rclass: int = 1) -> bytes:
    return owner + struct.pack("!HHIH", rtype, rclass, ttl, len(rdata)) + rdata


def response(
    qid: int,
    name: str,
    records: list[bytes],
    qtype: int = A_TYPE,
    rcode: int = 0,
    flags: int = QR | RD | RA,
) -> bytes:
    """A reply to `name`/`qtype` whose records may point at the question's name (offset 12)."""
    return header(qid, flags | rcode, 1, len(records)) + question(name, qtype) + b"".join(records)


QNAME_AT = pointer(12)  # the question's name: right after the 12-byte header


# Encoding ----------------------------------------------------------------------------------


def test_query_is_a_standard_recursive_query_with_one_question() -> None:
    assert encode_query(0x1234, "fapi.binance.com", A_TYPE) == (
        b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
        b"\x04fapi\x07binance\x03com\x00\x00\x01\x00\x01"
    )
    assert encode_query(7, "ex.test.", AAAA).endswith(b"\x02ex\x04test\x00\x00\x1c\x00\x01")


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("", "empty name"),
        (".", "empty name"),
        ("a..b", "empty label"),
        (".a", "empty label"),
        ("a" * 64 + ".test", "label longer than 63"),
        (".".join(["a" * 63] * 4), "longer than 255"),
        ("bücher.test", "not ASCII"),
        ("a b.test", "characters other than"),
        ("a/b", "characters other than"),
    ],
)
def test_names_that_cannot_be_sent(name: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        encode_name(name)


def test_longest_names_and_labels_fit() -> None:
    longest = ".".join(["a" * 63] * 3 + ["b" * 61])  # 255 octets on the wire
    assert len(encode_name(longest)) == 255
    assert encode_name("_dmarc.Ex-1.test") == b"\x06_dmarc\x04Ex-1\x04test\x00"


def test_tcp_frame_prefixes_the_length() -> None:
    assert dnswire.tcp_frame(b"abc") == b"\x00\x03abc"


# Names -------------------------------------------------------------------------------------


def test_name_with_a_pointer_to_a_name_and_to_a_suffix() -> None:
    packet = header(1, QR) + wire_name("api.exchange.test")  # 12: api, 16: exchange, 25: test
    packet += b"\x03www" + pointer(16)  # 31: www + exchange.test
    packet += pointer(31)  # 37: all of the previous name
    assert decode_name(packet, 12) == ("api.exchange.test", 31)
    assert decode_name(packet, 31) == ("www.exchange.test", 37)
    assert decode_name(packet, 37) == ("www.exchange.test", 39)


def test_names_are_lowercase_and_odd_bytes_escaped() -> None:
    packet = header(1, QR) + b"\x04A.b\\\x04TEST\x00"
    assert decode_name(packet, 12) == ("a\\046b\\092.test", 23)
    assert decode_name(header(1, QR) + b"\x00", 12) == (".", 13)


@pytest.mark.parametrize(
    ("tail", "problem"),
    [
        (pointer(12), "does not point backwards"),  # a pointer to itself
        (b"\x01a" + pointer(12), "does not point backwards"),  # back to the start of its name
        (pointer(14) + pointer(12), "does not point backwards"),  # two pointing at each other
        (pointer(200), "does not point backwards"),  # past the end
        (b"\x05ab", "label runs past the end"),
        (b"\x02ab", "name runs past the end"),
        (b"\xc0", "compression pointer cut off"),
        (b"\x41ab\x00", "unknown label type 0x41"),
        (b"\x81ab\x00", "unknown label type 0x81"),
    ],
)
def test_names_that_cannot_be_read(tail: bytes, problem: str) -> None:
    with pytest.raises(WireError, match=problem):
        decode_name(header(1, QR) + tail, 12)


def test_a_pointer_loop_further_in_ends() -> None:
    # "x" at 12, then at 14 "y" and a pointer back to 14: any walk would circle 14..17.
    packet = header(1, QR) + b"\x01x\x00" + b"\x01y" + pointer(15)
    with pytest.raises(WireError, match="does not point backwards"):
        decode_name(packet, 15)


def test_pointers_cannot_build_a_name_longer_than_255_octets() -> None:
    # Each run of labels adds 64 octets and points to the run before it.
    packet = bytearray(header(1, QR))
    starts = []
    for index in range(5):
        starts.append(len(packet))
        packet += b"\x3f" + b"a" * 63
        packet += pointer(starts[index - 1]) if index else b"\x00"
    with pytest.raises(WireError, match="longer than 255"):
        decode_name(bytes(packet), starts[-1])
    assert decode_name(bytes(packet), starts[2])[0].count(".") == 2


# Messages ----------------------------------------------------------------------------------


def test_answer_with_cname_chain_and_compressed_names() -> None:
    # alias.test CNAME api.exchange.test; api.exchange.test A 127.0.0.2, A 127.0.0.3
    qname = "alias.test"
    head = header(0xBEEF, QR | RD | RA, 1, 3) + question(qname)
    cname_at = len(head) + 2 + 10  # where the CNAME's rdata begins
    target = b"\x03api\x08exchange" + pointer(18)  # ...".test" of the question
    packet = head + record(QNAME_AT, CNAME, 300, target)
    packet += record(pointer(cname_at), A_TYPE, 60, bytes([127, 0, 0, 2]))
    packet += record(pointer(cname_at), A_TYPE, 0x80000001, bytes([127, 0, 0, 3]))
    message = decode(packet)
    assert message.header == Header(0xBEEF, QR | RD | RA, 1, 3, 0, 0)
    assert message.header.is_response
    assert not message.header.truncated
    assert message.header.rcode == 0
    assert message.questions == (Question("alias.test", A_TYPE),)
    assert message.answers == (
        Record("alias.test", CNAME, 1, 300, "api.exchange.test"),
        Record("api.exchange.test", A_TYPE, 1, 60, "127.0.0.2"),
        Record("api.exchange.test", A_TYPE, 1, 0, "127.0.0.3"),  # TTL top bit: read as 0
    )


def test_aaaa_and_unknown_records() -> None:
    v6 = bytes(15) + b"\x01"
    packet = response(
        9,
        "v6.test",
        [record(QNAME_AT, AAAA, 5, v6), record(QNAME_AT, 16, 5, b"\x03txt")],
        qtype=AAAA,
    )
    answers = decode(packet).answers
    assert answers == (Record("v6.test", AAAA, 1, 5, "::1"), Record("v6.test", 16, 1, 5, ""))


@pytest.mark.parametrize(
    ("bad_record", "problem"),
    [
        (record(QNAME_AT, A_TYPE, 1, b"\x7f\x00\x00"), "address record of 3 bytes"),
        (record(QNAME_AT, AAAA, 1, bytes(4)), "address record of 4 bytes"),
        (record(QNAME_AT, CNAME, 1, wire_name("a.test") + b"zz"), "does not fill its record"),
        (QNAME_AT + struct.pack("!HHIH", A_TYPE, 1, 1, 40) + bytes(4), "data runs past the end"),
        (QNAME_AT + b"\x00\x01\x00", "record cut off"),
    ],
)
def test_records_that_cannot_be_read(bad_record: bytes, problem: str) -> None:
    with pytest.raises(WireError, match=problem):
        decode(response(1, "x.test", [bad_record]))


def test_every_cut_of_a_packet_is_an_error_not_a_crash() -> None:
    packet = response(
        3,
        "multi.test",
        [record(QNAME_AT, A_TYPE, 60, bytes([127, 0, 0, n])) for n in (3, 4)],
    )
    decode(packet)
    for end in range(len(packet)):
        with pytest.raises(WireError):
            decode(packet[:end])


def test_truncated_answer_keeps_the_records_that_arrived_whole() -> None:
    packet = response(
        3,
        "big.test",
        [record(QNAME_AT, A_TYPE, 60, bytes([127, 0, 1, n])) for n in range(3)],
        flags=QR | RD | TC,
    )
    cut = decode(packet[:-6])
    assert cut.header.truncated
    assert [r.value for r in cut.answers] == ["127.0.1.0", "127.0.1.1"]


def test_garbage_is_read_or_refused_never_crashes() -> None:
    rng = random.Random(1035)
    valid = response(5, "x.test", [record(QNAME_AT, A_TYPE, 1, bytes(4))])
    for _ in range(3000):
        if rng.random() < 0.5:
            packet = bytes(rng.getrandbits(8) for _ in range(rng.randrange(64)))
        else:  # a valid answer with a few bytes flipped: gets past the header more often
            flipped = bytearray(valid)
            for _ in range(rng.randrange(1, 4)):
                flipped[rng.randrange(len(flipped))] = rng.getrandbits(8)
            packet = bytes(flipped)
        with contextlib.suppress(WireError):
            decode(packet)


def test_short_header() -> None:
    with pytest.raises(WireError, match="5 bytes, shorter than a DNS header"):
        dnswire.decode_header(b"\x00" * 5)


# Following an answer -----------------------------------------------------------------------


def rec(name: str, rtype: int, value: str, ttl: int = 60) -> Record:
    return Record(name, rtype, 1, ttl, value)


def test_chain_follows_cnames_and_keeps_the_asked_type_only() -> None:
    answers = (
        rec("www.test", CNAME, "edge.test"),
        rec("edge.test", CNAME, "host.test"),
        rec("host.test", A_TYPE, "192.0.2.1"),
        rec("host.test", AAAA, "2001:db8::1"),
        rec("other.test", A_TYPE, "192.0.2.9"),  # not on the chain
    )
    cnames, found = chain(answers, "www.test", A_TYPE)
    assert [r.value for r in cnames] == ["edge.test", "host.test"]
    assert [r.value for r in found] == ["192.0.2.1"]


def test_chain_ends_at_a_cname_loop_or_a_target_with_no_records() -> None:
    loop = (rec("a.test", CNAME, "b.test"), rec("b.test", CNAME, "a.test"))
    assert chain(loop, "a.test", A_TYPE) == ([loop[0]], [])
    dangling = (rec("a.test", CNAME, "elsewhere.test"),)
    assert chain(dangling, "a.test", A_TYPE) == ([dangling[0]], [])


def test_names_of_types_and_rcodes() -> None:
    assert [dnswire.type_name(t) for t in (A_TYPE, AAAA, CNAME, 99)] == [
        "A",
        "AAAA",
        "CNAME",
        "TYPE99",
    ]
    assert dnswire.rcode_name(3) == "NXDOMAIN"
    assert dnswire.rcode_name(9) == "RCODE9"
