"""notAfter of a DER X.509 certificate, read without verifying it.

The stdlib decodes a peer certificate only after verifying it; an expiry must be reported
also with `tls_verify: false` and when verification failed (an expired certificate is when
it matters most), so the few DER elements up to `validity` are walked here.
"""

from __future__ import annotations

import calendar
from datetime import datetime


def _der_element(der: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, start, end) of the DER element at `pos`: its value is der[start:end]."""
    try:
        tag, length = der[pos], der[pos + 1]
    except IndexError:
        raise ValueError("truncated DER") from None
    pos += 2
    if length & 0x80:
        size = length & 0x7F
        if not 0 < size <= 4 or pos + size > len(der):
            raise ValueError("bad DER length")
        length = int.from_bytes(der[pos : pos + size], "big")
        pos += size
    if pos + length > len(der):
        raise ValueError("truncated DER")
    return tag, pos, pos + length


_SEQUENCE, _VERSION, _UTC_TIME, _GENERALIZED_TIME = 0x30, 0xA0, 0x17, 0x18


def cert_not_after(der: bytes) -> float:
    """notAfter of a DER X.509 certificate, Unix time. The stdlib decodes a certificate only
    after verifying it; this reads one that was not (tls_verify: false, or a failed check)."""
    tag, pos, _ = _der_element(der, 0)  # Certificate
    if tag != _SEQUENCE:
        raise ValueError("not a certificate")
    tag, pos, _ = _der_element(der, pos)  # tbsCertificate
    if tag != _SEQUENCE:
        raise ValueError("not a certificate")
    tag, _, end = _der_element(der, pos)
    if tag == _VERSION:
        pos = end
    for _field in ("serialNumber", "signature", "issuer"):
        _, _, pos = _der_element(der, pos)
    tag, pos, _ = _der_element(der, pos)  # validity
    if tag != _SEQUENCE:
        raise ValueError("no validity in certificate")
    _, _, pos = _der_element(der, pos)  # notBefore
    tag, start, end = _der_element(der, pos)
    return asn1_time(tag, der[start:end].decode("ascii"))


def asn1_time(tag: int, text: str) -> float:
    """RFC 5280 times: UTCTime YYMMDDHHMMSSZ (years 1950-2049) or GeneralizedTime."""
    if tag == _UTC_TIME and len(text) == 13:
        century = "19" if int(text[:2]) >= 50 else "20"
        text = century + text
    elif tag != _GENERALIZED_TIME or len(text) != 15:
        raise ValueError("not an RFC 5280 time")
    parsed = datetime.strptime(text, "%Y%m%d%H%M%SZ")
    return float(calendar.timegm(parsed.timetuple()))
