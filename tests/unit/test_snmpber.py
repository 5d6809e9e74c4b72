"""The SNMPv2c BER codec, checked against pysnmp's own (pyasn1) encoder and decoder, and on a
GETBULK answer captured from net-snmp's snmpd (tests/fixtures/snmp)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from exporter.collectors.snmpber import (
    GET,
    GET_BULK,
    RESPONSE,
    BerError,
    Value,
    VarBind,
    decode_message,
    encode_oid,
    encode_request,
    encode_response,
    format_oid,
    parse_oid,
)
from exporter.collectors.snmpmodules import IF_COLUMNS, IF_NAME, IF_OPER_STATUS

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "snmp"


def pysnmp_v2c() -> Any:
    from pysnmp.proto import api

    return api.PROTOCOL_MODULES[api.SNMP_VERSION_2C]


def pyasn1_decode(data: bytes) -> Any:
    from pyasn1.codec.ber import decoder

    message, rest = decoder.decode(data, asn1Spec=pysnmp_v2c().Message())
    assert rest == b""
    return message


def pysnmp_response(community: str, request_id: int, varbinds: list[tuple[str, Any]]) -> bytes:
    """A Response as pysnmp encodes it, the reference for our decoder."""
    from pyasn1.codec.ber import encoder

    p = pysnmp_v2c()
    pdu = p.ResponsePDU()
    p.apiPDU.set_defaults(pdu)
    p.apiPDU.set_request_id(pdu, request_id)
    p.apiPDU.set_varbinds(pdu, varbinds)
    message = p.Message()
    p.apiMessage.set_defaults(message)
    p.apiMessage.set_community(message, community)
    p.apiMessage.set_pdu(message, pdu)
    return bytes(encoder.encode(message))


def test_getbulk_request_reads_back_in_pysnmp() -> None:
    oids = [IF_NAME, IF_OPER_STATUS, (1, 3, 6, 1, 4, 1, 2**32 - 1, 128, 0)]
    data = encode_request(b"s3cret", GET_BULK, 0x7FFFFFFF, oids, max_repetitions=25)
    p = pysnmp_v2c()
    message = pyasn1_decode(data)
    pdu = p.apiMessage.get_pdu(message)
    assert bytes(p.apiMessage.get_community(message)) == b"s3cret"
    assert p.apiBulkPDU.get_request_id(pdu) == 0x7FFFFFFF
    assert p.apiBulkPDU.get_non_repeaters(pdu) == 0
    assert p.apiBulkPDU.get_max_repetitions(pdu) == 25
    assert [tuple(name) for name, _ in p.apiBulkPDU.get_varbinds(pdu)] == oids


def test_get_request_has_zero_error_fields() -> None:
    data = encode_request(b"public", GET, 7, [(1, 3, 6, 1, 2, 1, 1, 3, 0)], max_repetitions=9)
    p = pysnmp_v2c()
    pdu = p.apiMessage.get_pdu(pyasn1_decode(data))
    assert p.apiPDU.get_error_status(pdu) == 0
    assert p.apiPDU.get_error_index(pdu) == 0


def test_every_value_type_pysnmp_encodes_decodes_the_same() -> None:
    from pysnmp.proto import rfc1902, rfc1905

    sent = [
        ("1.3.6.1.2.1.1.5.0", rfc1902.OctetString(b"edge-router\xc3\xa9")),
        ("1.3.6.1.2.1.2.2.1.8.1", rfc1902.Integer32(-2147483648)),
        ("1.3.6.1.2.1.2.2.1.14.1", rfc1902.Counter32(4294967295)),
        ("1.3.6.1.2.1.31.1.1.1.15.1", rfc1902.Gauge32(100000)),
        ("1.3.6.1.2.1.1.3.0", rfc1902.TimeTicks(4294967295)),
        ("1.3.6.1.2.1.31.1.1.1.6.1", rfc1902.Counter64(2**64 - 1)),
        ("1.3.6.1.2.1.4.20.1.1.10", rfc1902.IpAddress("192.0.2.7")),
        ("1.3.6.1.2.1.25.2.3.1.2.1", rfc1902.ObjectName("1.3.6.1.2.1.25.2.1.4")),
        ("1.3.6.1.4.1.9.9.1", rfc1902.Opaque(b"\x9f\x78\x04\x3f\x80\x00\x00")),
        ("1.3.6.1.2.1.1.99.0", rfc1905.noSuchObject),
        ("1.3.6.1.2.1.1.98.0", rfc1905.noSuchInstance),
        ("1.3.6.1.2.1.99", rfc1905.endOfMibView),
    ]
    message = decode_message(pysnmp_response("public", 1234, sent))
    assert (message.version, message.community, message.pdu_type) == (1, b"public", RESPONSE)
    assert (message.request_id, message.error_status, message.error_index) == (1234, 0, 0)
    assert [format_oid(oid) for oid, _ in message.varbinds] == [oid for oid, _ in sent]
    assert [value for _, value in message.varbinds] == [
        Value("octets", b"edge-router\xc3\xa9"),
        Value("integer", -2147483648),
        Value("counter32", 4294967295),
        Value("gauge32", 100000),
        Value("timeticks", 4294967295),
        Value("counter64", 2**64 - 1),
        Value("ipaddress", bytes([192, 0, 2, 7])),
        Value("oid", (1, 3, 6, 1, 2, 1, 25, 2, 1, 4)),
        Value("opaque", b"\x9f\x78\x04\x3f\x80\x00\x00"),
        Value("no_such_object"),
        Value("no_such_instance"),
        Value("end_of_mib_view"),
    ]


def test_our_response_encoding_reads_back_in_pysnmp() -> None:
    varbinds: list[VarBind] = [
        ((1, 3, 6, 1, 2, 1, 1, 5, 0), Value("octets", b"vm")),
        ((1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 6, 4), Value("counter64", 2**63 + 5)),
        ((1, 3, 6, 1, 2, 1, 1, 99, 0), Value("no_such_object")),
    ]
    data = encode_response(b"public", 99, varbinds, error_status=5, error_index=2)
    p = pysnmp_v2c()
    pdu = p.apiMessage.get_pdu(pyasn1_decode(data))
    assert p.apiPDU.get_error_status(pdu) == 5
    assert p.apiPDU.get_error_index(pdu) == 2
    got = p.apiPDU.get_varbinds(pdu)
    assert bytes(got[0][1]) == b"vm"
    assert int(got[1][1]) == 2**63 + 5
    assert decode_message(data).varbinds == varbinds


def test_snmpd_getbulk_answer() -> None:
    """net-snmp 5.9's answer to the if_mib columns, 5 repetitions, on a host with 4
    interfaces: 5 rows of 12 columns, the fifth beyond each column's end."""
    data = bytes.fromhex((FIXTURES / "ifmib-getbulk-response.hex").read_text())
    message = decode_message(data)
    assert (message.community, message.request_id, message.error_status) == (b"public", 4242, 0)
    assert len(message.varbinds) == 5 * len(IF_COLUMNS)
    first_row = message.varbinds[: len(IF_COLUMNS)]
    assert [oid[:-1] for oid, _ in first_row] == list(IF_COLUMNS)
    assert first_row[0] == ((*IF_NAME, 1), Value("octets", b"lo"))
    assert first_row[3] == ((*IF_OPER_STATUS, 1), Value("integer", 1))
    # The answer agrees with pyasn1's reading of the same bytes.
    p = pysnmp_v2c()
    reference = p.apiPDU.get_varbinds(p.apiMessage.get_pdu(pyasn1_decode(data)))
    assert [tuple(oid) for oid, _ in reference] == [oid for oid, _ in message.varbinds]


def tlv(tag: int, content: bytes) -> bytes:
    assert len(content) < 0x80
    return bytes((tag, len(content))) + content


def response_with(oid: tuple[int, ...], raw_value: bytes) -> bytes:
    """A Response whose one varbind holds `raw_value` (a whole TLV) as is."""
    varbind = tlv(0x30, encode_oid(oid) + raw_value)
    pdu = tlv(0xA2, tlv(2, b"\x01") + tlv(2, b"\x00") + tlv(2, b"\x00") + tlv(0x30, varbind))
    return tlv(0x30, tlv(2, b"\x01") + tlv(4, b"p") + pdu)


def test_unsigned_types_without_their_leading_zero_read_as_unsigned() -> None:
    # Counter32 4294967295 sent as ff ff ff ff (a common agent bug) is not -1.
    data = response_with((1, 3, 6, 1, 2, 1, 2, 2, 1, 14, 1), tlv(0x41, b"\xff\xff\xff\xff"))
    assert decode_message(data).varbinds[0][1] == Value("counter32", 4294967295)
    # INTEGER is signed.
    data = response_with((1, 3, 6, 1), tlv(0x02, b"\xff"))
    assert decode_message(data).varbinds[0][1] == Value("integer", -1)


def test_unknown_value_type_is_kept_raw() -> None:
    data = response_with((1, 3, 6, 1), tlv(0x47, b"\x05"))
    assert decode_message(data).varbinds[0][1] == Value("unknown", b"\x05")


@pytest.mark.parametrize(
    ("hexdata", "why"),
    [
        ("", "truncated"),
        ("30", "truncated"),
        ("3080020101", "indefinite"),
        ("3003020101ff", "trailing bytes"),
        ("3005020101", "truncated"),
        ("300302010104", "trailing bytes"),
        ("3085ffffffffff", "bad length"),
        ("3005040170a200", "version: tag 0x04"),
        ("30050201010400", "truncated"),
        ("3007020101040070a0", "bad length"),
        ("300a020101040170a2020400", "request-id: tag 0x04"),
        ("31030201010000", "tag"),
    ],
)
def test_malformed_messages_raise(hexdata: str, why: str) -> None:
    with pytest.raises(BerError, match=why):
        decode_message(bytes.fromhex(hexdata))


def test_malformed_varbinds_raise() -> None:
    with pytest.raises(BerError, match="empty integer"):
        decode_message(response_with((1, 3, 6, 1), tlv(0x41, b"")))
    with pytest.raises(BerError, match="truncated OID"):
        decode_message(response_with((1, 3, 6, 1), tlv(0x06, b"\x2b\x86")))
    with pytest.raises(BerError, match="empty OID"):
        decode_message(response_with((1, 3, 6, 1), tlv(0x06, b"")))
    with pytest.raises(BerError, match="trailing bytes"):
        decode_message(response_with((1, 3, 6, 1), tlv(0x05, b"") + b"\x05\x00"))
    good = response_with((1, 3, 6, 1), tlv(0x02, b"\x05"))
    with pytest.raises(BerError):
        decode_message(good[:-1])


def test_oid_text() -> None:
    assert parse_oid(".1.3.6.1.2.1.2.2.1.8") == (1, 3, 6, 1, 2, 1, 2, 2, 1, 8)
    assert format_oid((1, 3, 6, 1)) == "1.3.6.1"
    for bad in ("", "1", "1.3.x", "3.1", "1.40", "1.3.-6", "1.3.4294967296", "1..3", "１.３"):
        with pytest.raises(ValueError):
            parse_oid(bad)


@pytest.mark.parametrize(
    "oid", [(0, 0), (1, 3, 6, 1, 4, 1, 2**32 - 1), (2, 999, 3), (1, 39, 127, 128, 16383, 16384)]
)
def test_oid_round_trip(oid: tuple[int, ...]) -> None:
    encoded = encode_oid(oid)
    data = encode_response(b"p", 1, [(oid, Value("null"))])
    assert encoded in data
    assert decode_message(data).varbinds == [(oid, Value("null"))]
