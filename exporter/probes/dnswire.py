"""DNS messages on the wire (RFC 1035): a query to send, and the parts of an answer the `dns`
probe reads. Pure functions only; the probe does the I/O.

Names come back in lower case without the trailing dot ("." for the root), with bytes other
than letters, digits, '-' and '_' written as \\DDD, so two names compare with `==`.
"""

from __future__ import annotations

import ipaddress
import re
import struct
from dataclasses import dataclass

A = 1
CNAME = 5
AAAA = 28
CLASS_IN = 1
RECORD_TYPES = {"A": A, "AAAA": AAAA}
_TYPE_NAMES = {A: "A", CNAME: "CNAME", AAAA: "AAAA"}

NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED = range(6)
_RCODE_NAMES = ("NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED")

_QR = 0x8000
_TC = 0x0200
_RD = 0x0100
_HEADER = struct.Struct("!HHHHHH")
_QUESTION = struct.Struct("!HH")
_RECORD = struct.Struct("!HHIH")  # type, class, ttl, rdlength
_MAX_NAME = 255  # octets on the wire, length bytes and the root's 0 included
_MAX_LABEL = 63
_POINTER = 0xC0
_LABEL_CHARS = re.compile(rb"[A-Za-z0-9_-]+")
_PLAIN_BYTES = frozenset(b"abcdefghijklmnopqrstuvwxyz0123456789_-")
_ADDRESS_LENGTH = {A: 4, AAAA: 16}


class WireError(ValueError):
    """A message that is not a DNS message we can read (one line, for the probe's error)."""


@dataclass(frozen=True)
class Header:
    id: int
    flags: int
    qdcount: int
    ancount: int
    nscount: int
    arcount: int

    @property
    def is_response(self) -> bool:
        return bool(self.flags & _QR)

    @property
    def opcode(self) -> int:
        return (self.flags >> 11) & 0xF

    @property
    def truncated(self) -> bool:
        return bool(self.flags & _TC)

    @property
    def rcode(self) -> int:
        return self.flags & 0xF


@dataclass(frozen=True)
class Question:
    name: str
    qtype: int
    qclass: int = CLASS_IN


@dataclass(frozen=True)
class Record:
    """An answer record: `value` is the address for A/AAAA, the target for CNAME, else ""."""

    name: str
    rtype: int
    rclass: int
    ttl: int
    value: str


@dataclass(frozen=True)
class Message:
    header: Header
    questions: tuple[Question, ...]
    answers: tuple[Record, ...]


# Encoding ----------------------------------------------------------------------------------


def encode_name(name: str) -> bytes:
    """A host name in wire form; ValueError (one line) if it cannot be one."""
    text = name[:-1] if name.endswith(".") else name
    if not text:
        raise ValueError("empty name")
    try:
        raw = text.encode("ascii")
    except UnicodeEncodeError:
        raise ValueError("not ASCII (write an internationalised name in its xn-- form)") from None
    out = bytearray()
    for label in raw.split(b"."):
        if not label:
            raise ValueError("empty label (two dots in a row, or a leading dot)")
        if len(label) > _MAX_LABEL:
            raise ValueError(f"label longer than {_MAX_LABEL} characters")
        if not _LABEL_CHARS.fullmatch(label):
            raise ValueError(f"label {label.decode()!r} has characters other than A-Z 0-9 - _")
        out += bytes([len(label)]) + label
    out.append(0)
    if len(out) > _MAX_NAME:
        raise ValueError(f"longer than {_MAX_NAME} octets on the wire")
    return bytes(out)


def normal_name(name: str) -> str:
    """`name` as decode_name would give it back (the name must pass encode_name)."""
    return name.removesuffix(".").lower()


def encode_query(qid: int, name: str, qtype: int) -> bytes:
    """A standard query (opcode 0) with recursion desired, one question of class IN."""
    header = _HEADER.pack(qid, _RD, 1, 0, 0, 0)
    return header + encode_name(name) + _QUESTION.pack(qtype, CLASS_IN)


def tcp_frame(message: bytes) -> bytes:
    """A message as sent over TCP: behind its length in two bytes (RFC 1035 4.2.2)."""
    return len(message).to_bytes(2, "big") + message


def type_name(rtype: int) -> str:
    return _TYPE_NAMES.get(rtype, f"TYPE{rtype}")


def rcode_name(rcode: int) -> str:
    return _RCODE_NAMES[rcode] if rcode < len(_RCODE_NAMES) else f"RCODE{rcode}"


# Decoding ----------------------------------------------------------------------------------


def decode_header(packet: bytes) -> Header:
    if len(packet) < _HEADER.size:
        raise WireError(f"{len(packet)} bytes, shorter than a DNS header")
    return Header(*_HEADER.unpack_from(packet))


def decode_name(packet: bytes, offset: int) -> tuple[str, int]:
    """The name at `offset`, following compression pointers, and the offset after it.

    Every pointer must lead to before the run of labels it ends: the offsets then only
    fall, so a pointer loop is an error, not a hang.
    """
    labels: list[str] = []
    wire_length = 1  # the root's 0
    after: int | None = None  # where the name ends in the packet: after its first pointer
    start = pos = offset
    while True:
        if pos >= len(packet):
            raise WireError("name runs past the end of the message")
        length = packet[pos]
        kind = length & _POINTER
        if kind == _POINTER:
            if pos + 1 >= len(packet):
                raise WireError("compression pointer cut off")
            target = ((length & 0x3F) << 8) | packet[pos + 1]
            if target >= start:
                raise WireError(f"compression pointer at {pos} does not point backwards")
            if after is None:
                after = pos + 2
            start = pos = target
            continue
        if kind:
            raise WireError(f"unknown label type 0x{length:02x} at {pos}")
        if length == 0:
            return _name_text(labels), (pos + 1 if after is None else after)
        label = packet[pos + 1 : pos + 1 + length]
        if len(label) < length:
            raise WireError("label runs past the end of the message")
        wire_length += 1 + length
        if wire_length > _MAX_NAME:
            raise WireError(f"name longer than {_MAX_NAME} octets")
        labels.append(_label_text(label))
        pos += 1 + length


def _label_text(label: bytes) -> str:
    return "".join(chr(b) if b in _PLAIN_BYTES else f"\\{b:03d}" for b in label.lower())


def _name_text(labels: list[str]) -> str:
    return ".".join(labels) if labels else "."


def decode(packet: bytes) -> Message:
    """Header, questions and answers (authority and additional are not read).

    In a truncated message (TC) the answers end where the first incomplete record starts.
    """
    header = decode_header(packet)
    pos = _HEADER.size
    questions = []
    for _ in range(header.qdcount):
        name, pos = decode_name(packet, pos)
        if pos + _QUESTION.size > len(packet):
            raise WireError("question cut off")
        questions.append(Question(name, *_QUESTION.unpack_from(packet, pos)))
        pos += _QUESTION.size
    answers = []
    for _ in range(header.ancount):
        try:
            record, pos = _decode_record(packet, pos)
        except WireError:
            if header.truncated:
                break
            raise
        answers.append(record)
    return Message(header, tuple(questions), tuple(answers))


def _decode_record(packet: bytes, pos: int) -> tuple[Record, int]:
    name, pos = decode_name(packet, pos)
    if pos + _RECORD.size > len(packet):
        raise WireError("record cut off")
    rtype, rclass, ttl, rdlength = _RECORD.unpack_from(packet, pos)
    pos += _RECORD.size
    end = pos + rdlength
    if end > len(packet):
        raise WireError("record data runs past the end of the message")
    # RFC 2181 8: a TTL with the top bit set is to be read as 0.
    ttl = 0 if ttl & 0x80000000 else ttl
    value = ""
    if rclass == CLASS_IN and rtype in _ADDRESS_LENGTH:
        if rdlength != _ADDRESS_LENGTH[rtype]:
            raise WireError(f"address record of {rdlength} bytes")
        value = str(ipaddress.ip_address(packet[pos:end]))
    elif rtype == CNAME:
        value, name_end = decode_name(packet, pos)
        if name_end != end:
            raise WireError("CNAME target does not fill its record")
    return Record(name, rtype, rclass, ttl, value), end


# Reading an answer -------------------------------------------------------------------------


def chain(answers: tuple[Record, ...], name: str, qtype: int) -> tuple[list[Record], list[Record]]:
    """The records that answer `name`/`qtype`: those of the CNAME chain from `name` (each
    CNAME once, so a CNAME loop ends), and those of type `qtype` owned by its names."""
    cnames: list[Record] = []
    seen = {name}
    owner = name
    while True:
        step = next((r for r in answers if r.rtype == CNAME and r.name == owner), None)
        if step is None or step.value in seen:
            break
        cnames.append(step)
        seen.add(step.value)
        owner = step.value
    found = [r for r in answers if r.rtype == qtype and r.rclass == CLASS_IN and r.name in seen]
    return cnames, found
