"""`dns`: resolve a name: success, time, number of addresses.

Without `server` the name goes through the system resolver (getaddrinfo: /etc/hosts, then
the servers of /etc/resolv.conf), which is what the bots themselves use. With `server` the
probe asks that one server itself, over UDP (and TCP when the answer was truncated), so it
can tell NXDOMAIN from SERVFAIL from REFUSED and see the answer's TTL.
"""

from __future__ import annotations

import asyncio
import ipaddress
import secrets
import socket
from collections.abc import Callable, Sequence
from typing import Any, Literal

from pydantic import field_validator
from pydantic_core import PydanticCustomError

from exporter.probes import dnswire
from exporter.probes.api import FamilySpec, ProbeConfig, Result, Sample
from exporter.threads import BlockingCalls, StillBlocked

TYPE = "dns"
REASONS = ("timeout", "nxdomain", "servfail", "refused", "empty", "error")
ADDRESSES = FamilySpec(
    "botwatch_probe_dns_addresses",
    "Distinct addresses the probe's last lookup returned (0 for NXDOMAIN or no records).",
)
ANSWER_TTL = FamilySpec(
    "botwatch_probe_dns_answer_ttl_seconds",
    "Smallest TTL among the records of the last answer (probes with a server).",
)
FAMILIES = (ADDRESSES, ANSWER_TTL)

DEFAULT_PORT = 53
# UDP may lose a query or its answer: ask again after this, then after twice as long, and
# so on until the probe's timeout, as stub resolvers do.
RETRANSMIT = 1.0
_FAMILIES = {"A": socket.AF_INET, "AAAA": socket.AF_INET6}
_RCODE_REASONS = {
    dnswire.NXDOMAIN: "nxdomain",
    dnswire.SERVFAIL: "servfail",
    dnswire.REFUSED: "refused",
}
# getaddrinfo cannot tell a dead resolver from SERVFAIL: glibc gives EAI_AGAIN for both.
_GAI_REASONS = {
    socket.EAI_NONAME: "nxdomain",
    socket.EAI_AGAIN: "timeout",
    socket.EAI_NODATA: "empty",  # the name exists, without an address of this family
    socket.EAI_ADDRFAMILY: "empty",
}

Lookup = Callable[..., Sequence[tuple[Any, ...]]]
Server = tuple[str, int]


class DnsProbeConfig(ProbeConfig):
    type: Literal["dns"]
    host: str  # the name to resolve, e.g. fapi.binance.com
    # "ip", "ip:port" or "[ipv6]:port" of a DNS server to ask; None: the system resolver.
    server: str | None = None
    record: Literal["A", "AAAA"] = "A"

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        try:
            dnswire.encode_name(value)
        except ValueError as exc:
            raise PydanticCustomError("host", "not a host name: {why}", {"why": str(exc)}) from None
        return value

    @field_validator("server")
    @classmethod
    def _server(cls, value: str | None) -> str | None:
        return None if value is None else format_server(parse_server(value))


def parse_server(value: str) -> Server:
    """'192.0.2.1', '192.0.2.1:5353', '2001:db8::1' or '[2001:db8::1]:5353': an IP address
    (a name would need DNS to find the DNS server) and a port, 53 if none is given."""
    text = value.strip()
    host, port = text, str(DEFAULT_PORT)
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise _bad_server()
        port = rest[1:] if rest else port
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise _bad_server() from None
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise _bad_server()
    return str(address), int(port)


def _bad_server() -> PydanticCustomError:
    return PydanticCustomError(
        "server", "not an IP address with an optional port (e.g. '127.0.0.53:53', '[::1]:53')"
    )


def format_server(server: Server) -> str:
    host, port = server
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# What an answer means (pure) ---------------------------------------------------------------


def read_answer(packet: bytes, qid: int, question: dnswire.Question) -> dnswire.Message:
    """The answer to our query, or WireError when the packet is not one."""
    header = dnswire.decode_header(packet)
    if not header.is_response:
        raise dnswire.WireError("not a response (QR bit clear)")
    if header.id != qid:
        raise dnswire.WireError(f"answer has ID {header.id}, the query had {qid}")
    if header.opcode != 0:
        raise dnswire.WireError(f"answer has opcode {header.opcode}, the query had 0")
    message = dnswire.decode(packet)
    # Some servers leave the question out of an error reply; a reply with one must echo ours.
    if message.questions != (question,) and (message.questions or header.rcode == 0):
        asked = ", ".join(f"{q.name} {dnswire.type_name(q.qtype)}" for q in message.questions)
        raise dnswire.WireError(f"answer is for {asked or 'no question'}")
    return message


def outcome(message: dnswire.Message, question: dnswire.Question, probe: str, where: str) -> Result:
    rcode = message.header.rcode
    labels = {"probe": probe}
    if rcode != dnswire.NOERROR:
        reason = _RCODE_REASONS.get(rcode, "error")
        samples = [Sample(ADDRESSES, labels, 0)] if rcode == dnswire.NXDOMAIN else []
        return Result(False, reason, f"{where}: {dnswire.rcode_name(rcode)}", samples)
    cnames, found = dnswire.chain(message.answers, question.name, question.qtype)
    addresses = {r.value for r in found}
    if not addresses:
        record = dnswire.type_name(question.qtype)
        error = f"{where}: no {record} record in the answer"
        return Result(False, "empty", error, [Sample(ADDRESSES, labels, 0)])
    ttl = min(r.ttl for r in (*cnames, *found))
    return Result(
        True, samples=[Sample(ADDRESSES, labels, len(addresses)), Sample(ANSWER_TTL, labels, ttl)]
    )


def looked_up(infos: Sequence[tuple[Any, ...]], probe: str, where: str) -> Result:
    """getaddrinfo's answer: the distinct addresses of its socket addresses."""
    addresses = {str(info[4][0]) for info in infos}
    labels = {"probe": probe}
    if not addresses:
        return Result(False, "empty", f"{where}: no addresses", [Sample(ADDRESSES, labels, 0)])
    return Result(True, samples=[Sample(ADDRESSES, labels, len(addresses))])


def lookup_failed(exc: socket.gaierror, probe: str, where: str) -> Result:
    reason = _GAI_REASONS.get(exc.errno or 0, "error")
    samples = [Sample(ADDRESSES, {"probe": probe}, 0)] if reason in ("nxdomain", "empty") else []
    return Result(False, reason, f"{where}: {exc.strerror or exc}", samples)


# Talking to a server -----------------------------------------------------------------------


class _FirstDatagram(asyncio.DatagramProtocol):
    """The first datagram or socket error of a connected UDP socket decides the query: the
    socket is new, so nothing else can be the answer to an older one."""

    def __init__(self) -> None:
        self.first: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if not self.first.done():
            self.first.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self.first.done():
            self.first.set_exception(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.first.done():
            self.first.set_exception(exc or ConnectionError("socket closed"))
            # After our own close() nobody awaits it any more: no "never retrieved" warning.
            self.first.exception()


async def query_udp(server: Server, query: bytes, retransmit: float) -> bytes:
    """Send until something comes back (cancel to give up); OSError when the network says
    nobody is there (an ICMP port unreachable is ConnectionRefusedError)."""
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(_FirstDatagram, remote_addr=server)
    try:
        delay = retransmit
        while True:
            transport.sendto(query)
            done, _ = await asyncio.wait({protocol.first}, timeout=delay)
            if done:
                return protocol.first.result()
            delay *= 2
    finally:
        transport.close()
        if protocol.first.done() and not protocol.first.cancelled():
            protocol.first.exception()  # retrieved: no "never retrieved" warning later


async def query_tcp(server: Server, query: bytes) -> bytes:
    reader, writer = await asyncio.open_connection(*server)
    try:
        writer.write(dnswire.tcp_frame(query))
        await writer.drain()
        length = int.from_bytes(await reader.readexactly(2), "big")
        return await reader.readexactly(length)
    finally:
        writer.close()
        await asyncio.gather(writer.wait_closed(), return_exceptions=True)


class DnsCheck:
    def __init__(
        self,
        config: DnsProbeConfig,
        blocking: BlockingCalls,
        lookup: Lookup = socket.getaddrinfo,
        retransmit: float = RETRANSMIT,
    ) -> None:
        self.config = config
        self.blocking = blocking
        self.lookup = lookup
        self.retransmit = retransmit
        self.server = parse_server(config.server) if config.server is not None else None
        self.question = dnswire.Question(
            dnswire.normal_name(config.host), dnswire.RECORD_TYPES[config.record]
        )

    async def check(self) -> Result:
        if self.server is None:
            return await self._system()
        return await self._ask(self.server)

    async def _system(self) -> Result:
        config = self.config
        where = f"{config.host} {config.record} (system resolver)"
        try:
            # One lookup per probe at a time: getaddrinfo cannot be cancelled, so a resolver
            # that hangs past every timeout holds one thread, not one more per check.
            infos = await self.blocking.run(
                f"dns {config.name}",
                self.lookup,
                config.host,
                None,
                _FAMILIES[config.record],
                socket.SOCK_STREAM,
            )
        except StillBlocked as exc:
            return Result(False, "timeout", f"{where}: {exc}")
        except socket.gaierror as exc:
            return lookup_failed(exc, config.name, where)
        except OSError as exc:
            return Result(False, "error", f"{where}: {exc.strerror or exc}")
        return looked_up(infos, config.name, where)

    async def _ask(self, server: Server) -> Result:
        config = self.config
        where = f"{config.host} {config.record} @{format_server(server)}"
        qid = secrets.randbits(16)
        query = dnswire.encode_query(qid, config.host, self.question.qtype)
        try:
            packet = await query_udp(server, query, self.retransmit)
        except OSError as exc:
            return Result(False, "timeout", f"{where}: no answer: {_os_error(exc)}")
        try:
            message = read_answer(packet, qid, self.question)
        except dnswire.WireError as exc:
            return Result(False, "error", f"{where}: {exc}")
        if message.header.truncated:
            return await self._ask_tcp(server, query, qid, where + " (TCP)")
        return outcome(message, self.question, config.name, where)

    async def _ask_tcp(self, server: Server, query: bytes, qid: int, where: str) -> Result:
        """The UDP answer did not fit: ask again over TCP, as resolvers do."""
        try:
            packet = await query_tcp(server, query)
        except asyncio.IncompleteReadError:
            return Result(False, "error", f"{where}: connection closed before the whole answer")
        except OSError as exc:
            return Result(False, "error", f"{where}: answer truncated over UDP: {_os_error(exc)}")
        try:
            message = read_answer(packet, qid, self.question)
        except dnswire.WireError as exc:
            return Result(False, "error", f"{where}: {exc}")
        if message.header.truncated:
            return Result(False, "error", f"{where}: answer truncated even over TCP")
        return outcome(message, self.question, self.config.name, where)


def _os_error(exc: OSError) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (nothing listens there)"
    return exc.strerror or str(exc) or type(exc).__name__


def build(config: DnsProbeConfig, blocking: BlockingCalls) -> DnsCheck:
    return DnsCheck(config, blocking)
