"""The two SNMP clients the collector walks with.

- `NativeClient` (SNMPv2c): one connected UDP socket per target, opened once and reused,
  messages encoded and decoded by snmpber.py. Retries resend the same request-id, so a late
  answer to an earlier try still counts. An ICMP "port unreachable" is ignored like a lost
  datagram: a dead port is a timeout, as it is for snmpbulkwalk and pysnmp.
- `PysnmpClient` (SNMPv3 with USM, or v2c on request): pysnmp 7's asyncio API on an
  `SnmpEngine` the collector shares between targets and rounds (`Engines`), with
  `lookupMib=False` (no MIB resolution of answers) and a transport target per target.

Neither ever puts a community or a key in an error.
"""

from __future__ import annotations

import asyncio
import importlib
import random
import socket
from collections.abc import Sequence
from typing import Any

from exporter.collectors.snmpber import (
    GET,
    GET_BULK,
    RESPONSE,
    VERSION_2C,
    BerError,
    Kind,
    Oid,
    Value,
    decode_message,
    encode_request,
)
from exporter.collectors.snmpconfig import TargetConfig
from exporter.collectors.snmpwalk import Response, SnmpFailure
from exporter.fields import format_duration

_MAX_REQUEST_ID = 0x7FFFFFFF


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, client: NativeClient) -> None:
        self.client = client

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.client.received(data)

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP errors (port unreachable): the request times out like a lost datagram


class NativeClient:
    def __init__(
        self, host: str, port: int, community: bytes, per_try: float, retries: int
    ) -> None:
        self.host = host
        self.port = port
        self._community = community
        self._per_try = per_try
        self._tries = retries + 1
        self._transport: asyncio.DatagramTransport | None = None
        self._pending: dict[int, asyncio.Future[Response]] = {}
        self._request_id = random.randrange(1, _MAX_REQUEST_ID)
        self.malformed = 0  # undecodable or foreign datagrams since the last take_malformed()

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(
                self.host, self.port, type=socket.SOCK_DGRAM, proto=socket.IPPROTO_UDP
            )
        except socket.gaierror as exc:
            raise SnmpFailure("other", f"cannot resolve {self.host}: {exc.strerror}") from None
        family, _, _, _, address = infos[0]
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Datagrams(self), remote_addr=(str(address[0]), int(address[1])), family=family
        )
        self._transport = transport

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        for future in self._pending.values():
            future.cancel()
        self._pending.clear()

    def take_malformed(self) -> int:
        count, self.malformed = self.malformed, 0
        return count

    async def get(self, oids: Sequence[Oid]) -> Response:
        return await self._request(GET, oids, 0)

    async def bulk(self, oids: Sequence[Oid], max_repetitions: int) -> Response:
        return await self._request(GET_BULK, oids, max_repetitions)

    async def _request(self, pdu_type: int, oids: Sequence[Oid], repetitions: int) -> Response:
        transport = self._transport
        if transport is None:
            raise SnmpFailure("other", "the client is closed")
        self._request_id = self._request_id % _MAX_REQUEST_ID + 1
        request_id = self._request_id
        packet = encode_request(
            self._community, pdu_type, request_id, oids, max_repetitions=repetitions
        )
        future: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            for _ in range(self._tries):
                transport.sendto(packet)
                done, _ = await asyncio.wait((future,), timeout=self._per_try)
                if done:
                    return future.result()
        finally:
            self._pending.pop(request_id, None)
            future.cancel()
        raise SnmpFailure(
            "timeout",
            f"no answer to {self._tries} tries of {format_duration(self._per_try)} "
            "(v2c: a wrong community is not answered either)",
        )

    def received(self, data: bytes) -> None:
        try:
            message = decode_message(data)
        except BerError:
            self.malformed += 1
            return
        if (
            message.version != VERSION_2C
            or message.pdu_type != RESPONSE
            or message.community != self._community
        ):
            self.malformed += 1
            return
        future = self._pending.get(message.request_id)
        if future is not None and not future.done():
            future.set_result(Response(message.error_status, message.error_index, message.varbinds))


# --- pysnmp -------------------------------------------------------------------------------


def _pysnmp(module: str = "hlapi.v3arch.asyncio") -> Any:
    """A pysnmp module, imported on first use (pysnmp has no type information)."""
    return importlib.import_module(f"pysnmp.{module}")


_AUTH_PROTOCOLS = {
    "MD5": "USM_AUTH_HMAC96_MD5",
    "SHA": "USM_AUTH_HMAC96_SHA",
    "SHA224": "USM_AUTH_HMAC128_SHA224",
    "SHA256": "USM_AUTH_HMAC192_SHA256",
    "SHA384": "USM_AUTH_HMAC256_SHA384",
    "SHA512": "USM_AUTH_HMAC384_SHA512",
}
_PRIV_PROTOCOLS = {
    "DES": "USM_PRIV_CBC56_DES",
    "3DES": "USM_PRIV_CBC168_3DES",
    "AES": "USM_PRIV_CFB128_AES",
    "AES192": "USM_PRIV_CFB192_AES_BLUMENTHAL",
    "AES256": "USM_PRIV_CFB256_AES_BLUMENTHAL",
    "AES192C": "USM_PRIV_CFB192_AES",
    "AES256C": "USM_PRIV_CFB256_AES",
}
# pysnmp's error indications that mean the agent refused who we are.
_AUTH_INDICATIONS = frozenset(
    {
        "UnknownUserName",
        "UnknownSecurityName",
        "WrongDigest",
        "DecryptionError",
        "AuthenticationError",
        "AuthenticationFailure",
        "UnsupportedSecurityLevel",
        "NotInTimeWindow",
        "UnknownEngineID",
    }
)


class Engines:
    """The collector's pysnmp engines, made once and reused by every round.

    One engine serves every target, except that pysnmp keys a USM user by name alone until
    it has discovered the agent's engine ID: two targets with the same user name and
    different keys would overwrite each other's keys mid-walk (seen: the good one then
    times out), so such a target gets an engine of its own, one per distinct set of keys
    for a name.
    """

    def __init__(self) -> None:
        self._engines: list[tuple[Any, dict[str, tuple[str, ...]]]] = []
        self._communities: dict[str, str] = {}

    def for_target(self, target: TargetConfig) -> tuple[Any, Any]:
        """(engine, auth data) for a target."""
        hlapi = _pysnmp()
        if target.version == "2c":
            community = target.community.get_secret_value() if target.community else ""
            # pysnmp's own default index would be a hash of the community.
            index = self._communities.setdefault(community, f"c{len(self._communities)}")
            return self._engine_for(None, ()), hlapi.CommunityData(index, community, mpModel=1)
        user = target.user or ""
        keys = (
            target.auth_protocol or "",
            target.auth_key.get_secret_value() if target.auth_key else "",
            target.priv_protocol or "",
            target.priv_key.get_secret_value() if target.priv_key else "",
        )
        options: dict[str, Any] = {}
        if target.auth_protocol is not None and target.auth_key is not None:
            options["authKey"] = target.auth_key.get_secret_value()
            options["authProtocol"] = getattr(hlapi, _AUTH_PROTOCOLS[target.auth_protocol])
        if target.priv_protocol is not None and target.priv_key is not None:
            options["privKey"] = target.priv_key.get_secret_value()
            options["privProtocol"] = getattr(hlapi, _PRIV_PROTOCOLS[target.priv_protocol])
        return self._engine_for(user, keys), hlapi.UsmUserData(user, **options)

    def _engine_for(self, user: str | None, keys: tuple[str, ...]) -> Any:
        for engine, users in self._engines:
            if user is None:
                return engine
            if users.setdefault(user, keys) == keys:
                return engine
        engine = _pysnmp().SnmpEngine()
        self._engines.append((engine, {} if user is None else {user: keys}))
        return engine

    def close(self) -> None:
        for engine, _ in self._engines:
            engine.close_dispatcher()
        self._engines.clear()


class PysnmpClient:
    def __init__(
        self, engines: Engines, target: TargetConfig, per_try: float, retries: int
    ) -> None:
        self.target = target
        self._engines = engines
        self._per_try = per_try
        self._retries = retries
        self._hlapi: Any = None
        self._engine: Any = None
        self._auth: Any = None
        self._transport: Any = None
        self._context: Any = None
        self.malformed = 0

    async def open(self) -> None:
        hlapi = self._hlapi = _pysnmp()
        self._engine, self._auth = self._engines.for_target(self.target)
        self._context = hlapi.ContextData()
        host = self.target.host
        kind = hlapi.Udp6TransportTarget if ":" in host else hlapi.UdpTransportTarget
        try:
            self._transport = await kind.create(
                (host, self.target.port), timeout=self._per_try, retries=self._retries
            )
        except _pysnmp("error").PySnmpError:
            raise SnmpFailure("other", f"cannot resolve {host}") from None

    def close(self) -> None:
        self._transport = None  # the engine's socket is shared, closed with Engines

    def take_malformed(self) -> int:
        count, self.malformed = self.malformed, 0
        return count

    async def get(self, oids: Sequence[Oid]) -> Response:
        result = await self._hlapi.get_cmd(
            self._engine,
            self._auth,
            self._transport,
            self._context,
            *self._objects(oids),
            lookupMib=False,
        )
        return self._response(*result)

    async def bulk(self, oids: Sequence[Oid], max_repetitions: int) -> Response:
        result = await self._hlapi.bulk_cmd(
            self._engine,
            self._auth,
            self._transport,
            self._context,
            0,
            max_repetitions,
            *self._objects(oids),
            lookupMib=False,
        )
        return self._response(*result)

    def _objects(self, oids: Sequence[Oid]) -> list[Any]:
        hlapi, name = self._hlapi, _pysnmp("proto.rfc1902").ObjectName
        return [hlapi.ObjectType(hlapi.ObjectIdentity(name(oid))) for oid in oids]

    def _response(self, indication: Any, status: Any, index: Any, varbinds: Any) -> Response:
        if indication:
            raise pysnmp_failure(indication, self._per_try, self._retries)
        return Response(int(status), int(index), [_varbind(vb) for vb in varbinds])


def pysnmp_failure(indication: Any, per_try: float, retries: int) -> SnmpFailure:
    """A pysnmp error indication as a failure with its reason."""
    kind = type(indication).__name__
    if kind == "RequestTimedOut":
        return SnmpFailure(
            "timeout",
            f"no answer to {retries + 1} tries of {format_duration(per_try)} "
            "(v3: a wrong priv_key is not answered either)",
        )
    if kind in _AUTH_INDICATIONS:
        return SnmpFailure("auth", f"{kind}: {indication}")
    if kind == "EncryptionError":
        return SnmpFailure("other", "privacy unavailable: is the 'cryptography' package installed?")
    return SnmpFailure("other", f"{kind}: {indication}")


_KINDS: dict[Any, Kind] = {}
_INTEGERS: frozenset[Kind] = frozenset(
    {"integer", "counter32", "gauge32", "timeticks", "counter64"}
)
_OCTETS: frozenset[Kind] = frozenset({"octets", "ipaddress", "opaque"})


def _kinds() -> dict[Any, Kind]:
    if not _KINDS:
        rfc1902, rfc1905 = _pysnmp("proto.rfc1902"), _pysnmp("proto.rfc1905")
        null = importlib.import_module("pyasn1.type.univ").Null
        _KINDS.update(
            {
                rfc1902.Integer32.tagSet: "integer",
                rfc1902.OctetString.tagSet: "octets",
                rfc1902.ObjectName.tagSet: "oid",
                rfc1902.IpAddress.tagSet: "ipaddress",
                rfc1902.Counter32.tagSet: "counter32",
                rfc1902.Gauge32.tagSet: "gauge32",
                rfc1902.TimeTicks.tagSet: "timeticks",
                rfc1902.Opaque.tagSet: "opaque",
                rfc1902.Counter64.tagSet: "counter64",
                null.tagSet: "null",
                rfc1905.NoSuchObject.tagSet: "no_such_object",
                rfc1905.NoSuchInstance.tagSet: "no_such_instance",
                rfc1905.EndOfMibView.tagSet: "end_of_mib_view",
            }
        )
    return _KINDS


def pysnmp_value(value: Any) -> Value:
    """A pyasn1 value as the collector's Value."""
    kind = _kinds().get(value.tagSet, "unknown")
    if kind in _INTEGERS:
        return Value(kind, int(value))
    if kind in _OCTETS:
        return Value(kind, bytes(value.asOctets()))
    if kind == "oid":
        return Value("oid", tuple(value.asTuple()))
    if kind == "unknown":
        return Value("unknown", bytes(value.asOctets()) if hasattr(value, "asOctets") else b"")
    return Value(kind)


def _varbind(varbind: Any) -> tuple[Oid, Value]:
    name, value = varbind[0], varbind[1]
    return tuple(name.asTuple()), pysnmp_value(value)
