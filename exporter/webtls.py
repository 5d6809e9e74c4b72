"""TLS for the web server: an SSLContext from `tls_server_config`, swappable while serving."""

from __future__ import annotations

import contextlib
import os
import ssl
from collections.abc import Callable, Iterator
from typing import Any

from exporter.webconfig import CIPHER_SUITES, CURVES, TlsServerConfig

VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
VERIFY_MODES = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}


class TlsError(Exception):
    """A certificate, key or CA that cannot be used: `key` names the setting."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"tls_server_config.{key}: {reason}")
        self.key = key


def _reason(exc: Exception) -> str:
    if isinstance(exc, FileNotFoundError):
        return "file not found"
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, IsADirectoryError):
        return "is a directory"
    if isinstance(exc, ssl.SSLError):
        # OpenSSL's reason ("PEM lib", "KEY_VALUES_MISMATCH"), never the file's bytes.
        return str(exc.reason or exc.library or "not PEM").lower().replace("_", " ")
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    return type(exc).__name__


@contextlib.contextmanager
def _pem_path(inline: str | None, path: Any) -> Iterator[str]:
    """A path ssl can open: the file itself, or an in-memory file holding the inline PEM."""
    if inline is None:
        yield str(path)
        return
    fd = os.memfd_create("botwatch-pem", os.MFD_CLOEXEC)
    try:
        os.write(fd, inline.encode())
        yield f"/proc/self/fd/{fd}"
    finally:
        os.close(fd)


def _load_chain(context: ssl.SSLContext, tls: TlsServerConfig) -> None:
    key = tls.key.get_secret_value() if tls.key is not None else None
    with _pem_path(tls.cert, tls.cert_file) as cert, _pem_path(key, tls.key_file) as keyfile:
        try:
            context.load_cert_chain(cert, keyfile)
        except (OSError, ssl.SSLError) as exc:
            # Which of the two failed is not reported by OpenSSL; check the certificate alone.
            where = "cert_file" if tls.cert is None else "cert"
            with contextlib.suppress(OSError, ValueError):
                ssl.PEM_cert_to_DER_cert(_read_text(cert))
                where = "key_file" if tls.key is None else "key"
            raise TlsError(where, f"cannot load certificate and key: {_reason(exc)}") from None


def _read_text(path: str) -> str:
    with open(path, encoding="ascii", errors="replace") as handle:
        return handle.read()


def _load_client_ca(context: ssl.SSLContext, tls: TlsServerConfig) -> None:
    try:
        if tls.client_ca is not None:
            context.load_verify_locations(cadata=tls.client_ca)
        elif tls.client_ca_file is not None:
            context.load_verify_locations(cafile=str(tls.client_ca_file))
    except (OSError, ssl.SSLError) as exc:
        where = "client_ca" if tls.client_ca is not None else "client_ca_file"
        raise TlsError(where, f"cannot load CA certificates: {_reason(exc)}") from None


def build_context(tls: TlsServerConfig) -> ssl.SSLContext:
    """The server-side context the settings describe; raises TlsError naming the setting."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = VERSIONS[tls.min_version]
    context.maximum_version = VERSIONS[tls.max_version]
    _load_chain(context, tls)
    suites = [CIPHER_SUITES[s] for s in tls.cipher_suites if s in CIPHER_SUITES]
    if suites:
        try:
            context.set_ciphers(":".join(suites))
        except ssl.SSLError:
            raise TlsError("cipher_suites", "OpenSSL offers none of these suites") from None
    if tls.prefer_server_cipher_suites:
        context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    else:
        context.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    if tls.curve_preferences:
        context.set_ecdh_curve(CURVES[tls.curve_preferences[0]])
    context.verify_mode = VERIFY_MODES[tls.client_auth_type]
    _load_client_ca(context, tls)
    return context


class SwitchingContext(ssl.SSLContext):
    """Hands every new connection the newest good context, so certificates and client-auth
    settings change without a restart. asyncio calls `wrap_bio` once per connection; the
    listening socket never changes."""

    _current: Callable[[], ssl.SSLContext]

    def __new__(cls, current: Callable[[], ssl.SSLContext]) -> SwitchingContext:
        self = super().__new__(cls, ssl.PROTOCOL_TLS_SERVER)
        self._current = current
        return self

    def __init__(self, current: Callable[[], ssl.SSLContext]) -> None:
        pass  # SSLContext.__init__ takes a protocol; all state is set in __new__

    def wrap_bio(
        self,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
        server_side: bool = False,
        server_hostname: str | bytes | None = None,
        session: ssl.SSLSession | None = None,
    ) -> ssl.SSLObject:
        return self._current().wrap_bio(
            incoming,
            outgoing,
            server_side=server_side,
            server_hostname=server_hostname,
            session=session,
        )
