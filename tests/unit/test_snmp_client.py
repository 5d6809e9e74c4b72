"""What the pysnmp client makes of pysnmp's values and error indications (no network)."""

from __future__ import annotations

import pytest
from pysnmp.proto import errind, rfc1902, rfc1905

from exporter.collectors.snmpber import Value
from exporter.collectors.snmpclient import pysnmp_failure, pysnmp_value


@pytest.mark.parametrize(
    ("indication", "reason"),
    [
        (errind.requestTimedOut, "timeout"),
        (errind.wrongDigest, "auth"),
        (errind.unknownUserName, "auth"),
        (errind.decryptionError, "auth"),
        (errind.unsupportedSecurityLevel, "auth"),
        (errind.encryptionError, "other"),
        (errind.oidNotIncreasing, "other"),
    ],
)
def test_error_indications(indication: object, reason: str) -> None:
    failure = pysnmp_failure(indication, 0.5, 2)
    assert failure.reason == reason
    if reason == "timeout":
        assert str(failure).startswith("no answer to 3 tries of 500ms")


def test_values() -> None:
    assert pysnmp_value(rfc1902.Integer32(-3)) == Value("integer", -3)
    assert pysnmp_value(rfc1902.OctetString(b"lo")) == Value("octets", b"lo")
    assert pysnmp_value(rfc1902.Counter64(2**64 - 1)) == Value("counter64", 2**64 - 1)
    assert pysnmp_value(rfc1902.Gauge32(7)) == Value("gauge32", 7)
    assert pysnmp_value(rfc1902.Unsigned32(7)) == Value("gauge32", 7)
    assert pysnmp_value(rfc1902.TimeTicks(100)) == Value("timeticks", 100)
    assert pysnmp_value(rfc1902.Counter32(1)) == Value("counter32", 1)
    assert pysnmp_value(rfc1902.IpAddress("10.0.0.1")) == Value("ipaddress", b"\n\x00\x00\x01")
    assert pysnmp_value(rfc1902.ObjectName("1.3.6.1")) == Value("oid", (1, 3, 6, 1))
    assert pysnmp_value(rfc1905.noSuchObject) == Value("no_such_object")
    assert pysnmp_value(rfc1905.noSuchInstance) == Value("no_such_instance")
    assert pysnmp_value(rfc1905.endOfMibView) == Value("end_of_mib_view")
    assert pysnmp_value(rfc1902.Bits(b"\x80")) == Value("octets", b"\x80")
