"""--web.config.file on the real daemon: TLS, mutual TLS, basic auth, headers, rate limit and
reloading, with a real TLS client, certificates made here and real bcrypt hashes."""

from __future__ import annotations

import base64
import shutil
import socket
import ssl
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bcrypt
import pytest
import yaml

from tests import certs
from tests.integration.conftest import Daemon, daemon_config
from tests.support import REPO, promtool_lint, run_cli, wait_for

pytestmark = pytest.mark.integration

PASSWORD = "s3cret-scrape-pass"
OTHER_PASSWORD = "not-the-password"


def hashed(password: str, cost: int = 4) -> str:
    # Cost 4 keeps the suite fast; test_htpasswd_style_hash checks the usual cost 10.
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(cost)).decode()


class Pki:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.ca = certs.authority()
        self.ca_file = root / "ca.crt"
        self.ca_file.write_text(self.ca.cert_pem)
        self.server = certs.server(self.ca)
        self.cert_file, self.key_file = self.server.write(root, "server")
        self.client_file = self.client("prometheus.test", "client")
        rogue_ca = certs.authority("someone else's CA")
        self.rogue_file = self._write(certs.client(rogue_ca, "prometheus.test"), "rogue")

    def _write(self, issued: certs.Issued, stem: str) -> tuple[Path, Path]:
        return issued.write(self.root, stem)

    def client(self, name: str, stem: str) -> tuple[Path, Path]:
        return self._write(certs.client(self.ca, name), stem)


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path)


def write_web(path: Path, doc: dict[str, Any]) -> Path:
    # Through a rename, as a config manager does; the watcher must see it either way.
    staging = path.with_suffix(".tmp")
    staging.write_text(yaml.safe_dump(doc, sort_keys=False))
    staging.replace(path)
    return path


def tls_section(pki: Pki, **extra: Any) -> dict[str, Any]:
    return {"cert_file": str(pki.cert_file), "key_file": str(pki.key_file), **extra}


class Client:
    """urllib with a real TLS context: verifies botwatch's certificate against the test CA."""

    def __init__(self, base: str, pki: Pki | None) -> None:
        self.base, self.pki = base, pki

    def context(self, cert: tuple[Path, Path] | None = None) -> ssl.SSLContext | None:
        if self.pki is None:
            return None
        context = ssl.create_default_context(cafile=str(self.pki.ca_file))
        if cert is not None:
            context.load_cert_chain(*map(str, cert))
        return context

    def get(
        self,
        path: str = "/metrics",
        auth: tuple[str, str] | None = None,
        cert: tuple[Path, Path] | None = None,
    ) -> tuple[int, bytes, Any]:
        headers = {}
        if auth is not None:
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        request = urllib.request.Request(self.base + path, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=10, context=self.context(cert)) as resp:
                return resp.status, resp.read(), resp.headers
        except urllib.error.HTTPError as err:
            return err.code, err.read(), err.headers

    def refused(self, cert: tuple[Path, Path] | None = None) -> str | None:
        """Why a TLS request fails (None if it succeeds)."""
        try:
            status, _, _ = self.get("/-/healthy", cert=cert)
        except (ssl.SSLError, ConnectionError, urllib.error.URLError) as exc:
            return type(exc).__name__
        return None if status == 200 else str(status)

    def peer_certificate(self) -> bytes:
        host, port = self.base.removeprefix("https://").rsplit(":", 1)
        with (
            socket.create_connection((host, int(port)), timeout=10) as raw,
            ssl.create_default_context(cafile=str(self.pki.ca_file)).wrap_socket(  # type: ignore[union-attr]
                raw, server_hostname=host
            ) as tls,
        ):
            certificate = tls.getpeercert(binary_form=True)
        assert certificate is not None
        return certificate


Start = Callable[..., tuple[Daemon, Client]]


@pytest.fixture
def start(tmp_path: Path, daemon: Callable[..., Daemon]) -> Start:
    def run(web: dict[str, Any], pki: Pki | None = None) -> tuple[Daemon, Client]:
        web_file = write_web(tmp_path / "web.yml", web)
        d = daemon(daemon_config(tmp_path), f"--web.config.file={web_file}")
        base = d.base if pki is None else d.base.replace("http://", "https://")
        address = wait_for(lambda: d.events("listening"), 5, "the listening line")[0]
        assert address["scheme"] == ("https" if pki else "http")
        return d, Client(base, pki)

    return run


def served(
    client: Client, line: str, auth: tuple[str, str] | None = None, cert: Any = None
) -> None:
    """Wait until /metrics has `line` (a body may be up to render_interval old)."""

    def has() -> bool:
        status, body, _ = client.get("/metrics", auth=auth, cert=cert)
        assert status == 200
        return line in body.decode().splitlines()

    wait_for(has, 10, line)


def test_tls_serves_metrics_and_plain_http_gets_nothing(start: Start, pki: Pki) -> None:
    d, client = start({"tls_server_config": tls_section(pki)}, pki)
    status, body, _ = client.get("/metrics")
    assert status == 200
    assert b"botwatch_web_config_last_reload_successful 1.0" in body
    assert b'botwatch_web_requests_rejected_total{reason="unauthorized"} 0.0' in body
    assert promtool_lint(body.decode()) == ""
    plain = Client(d.base, None)
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        plain.get("/metrics")


def test_basic_auth(start: Start, pki: Pki) -> None:
    users = {"prometheus": hashed(PASSWORD), "grafana": hashed("grafana-pass")}
    d, client = start({"tls_server_config": tls_section(pki), "basic_auth_users": users}, pki)
    good = ("prometheus", PASSWORD)
    for auth in (None, ("prometheus", OTHER_PASSWORD), ("nobody", PASSWORD), ("", "")):
        status, _, headers = client.get("/metrics", auth=auth)
        assert status == 401, auth
        assert headers["WWW-Authenticate"].startswith("Basic realm=")
    status, body, _ = client.get("/metrics", auth=good)
    assert status == 200 and b"botwatch_collector_up" in body
    assert client.get("/", auth=("grafana", "grafana-pass"))[0] == 200
    assert client.get("/-/ready")[0] == 401
    # Liveness needs no password: container and kubelet probes carry none.
    assert client.get("/-/healthy")[0] == 200
    served(client, 'botwatch_web_requests_rejected_total{reason="unauthorized"} 5.0', good)
    # A second wrong attempt with the same password is answered from the cache, still 401.
    assert client.get("/metrics", auth=("prometheus", OTHER_PASSWORD))[0] == 401
    logs = "".join(d.raw)
    assert PASSWORD not in logs and OTHER_PASSWORD not in logs


def test_htpasswd_style_hash(start: Start) -> None:
    """`htpasswd -nBC 10` writes $2y$ hashes at cost 10; Go's and Python's bcrypt agree on them."""
    hash_2y = "$2y$" + hashed(PASSWORD, cost=10)[4:]
    _, client = start({"basic_auth_users": {"ops": hash_2y}})
    assert client.get("/metrics", auth=("ops", PASSWORD))[0] == 200
    assert client.get("/metrics", auth=("ops", OTHER_PASSWORD))[0] == 401


def test_mutual_tls(start: Start, pki: Pki) -> None:
    web = {
        "tls_server_config": tls_section(
            pki, client_auth_type="RequireAndVerifyClientCert", client_ca_file=str(pki.ca_file)
        )
    }
    _, client = start(web, pki)
    assert client.refused(cert=pki.client_file) is None
    assert client.refused(cert=pki.rogue_file) is not None, "a certificate from another CA"
    assert client.refused() is not None, "no client certificate"


def test_client_allowed_sans(start: Start, pki: Pki) -> None:
    web = {
        "tls_server_config": tls_section(
            pki,
            client_auth_type="RequireAndVerifyClientCert",
            client_ca_file=str(pki.ca_file),
            client_allowed_sans=["prometheus.test"],
        )
    }
    _, client = start(web, pki)
    stranger = pki.client("grafana.test", "stranger")
    assert client.get("/-/healthy", cert=pki.client_file)[0] == 200
    assert client.get("/-/healthy", cert=stranger)[0] == 403
    line = 'botwatch_web_requests_rejected_total{reason="client_san"} 1.0'
    served(client, line, cert=pki.client_file)


def test_verify_client_cert_if_given(start: Start, pki: Pki) -> None:
    web = {
        "tls_server_config": tls_section(
            pki, client_auth_type="VerifyClientCertIfGiven", client_ca_file=str(pki.ca_file)
        )
    }
    _, client = start(web, pki)
    assert client.refused() is None
    assert client.refused(cert=pki.client_file) is None
    assert client.refused(cert=pki.rogue_file) is not None


def test_certificates_and_settings_reload_without_restart(
    start: Start, pki: Pki, tmp_path: Path
) -> None:
    d, client = start({"tls_server_config": tls_section(pki)}, pki)
    first = client.peer_certificate()
    renewed = certs.server(pki.ca, days=60)
    # A renewal writes the key and the certificate; the next connection gets the new one.
    renewed.write(tmp_path, "next")
    shutil.copy(tmp_path / "next.key", pki.key_file)
    shutil.copy(tmp_path / "next.crt", pki.cert_file)
    wait_for(lambda: client.peer_certificate() != first, 10, "the renewed certificate")
    assert client.peer_certificate() == renewed.cert.public_bytes(certs.serialization.Encoding.DER)

    # A broken key keeps the renewed pair serving, is reported once, and shows in the gauge.
    pki.key_file.write_text("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    for _ in range(3):
        assert client.refused() is None
    problems = d.events("web config reload failed, keeping the previous one")
    assert len(problems) == 1
    assert problems[0]["problem"].startswith(f"{tmp_path / 'web.yml'}: tls_server_config.key_file")
    assert "not a key" not in problems[0]["problem"]
    served(client, "botwatch_web_config_last_reload_successful 0.0")

    # Mutual TLS switched on in the file applies to the next connection, no restart.
    shutil.copy(tmp_path / "next.key", pki.key_file)
    web = {
        "tls_server_config": tls_section(
            pki, client_auth_type="RequireAndVerifyClientCert", client_ca_file=str(pki.ca_file)
        )
    }
    write_web(tmp_path / "web.yml", web)
    wait_for(lambda: client.refused() is not None, 10, "client certificates to be required")
    served(client, "botwatch_web_config_last_reload_successful 1.0", cert=pki.client_file)
    assert d.proc.poll() is None


def test_basic_auth_users_reload(start: Start, tmp_path: Path) -> None:
    d, client = start({"basic_auth_users": {"prometheus": hashed(PASSWORD)}})
    assert client.get("/metrics", auth=("prometheus", PASSWORD))[0] == 200
    write_web(tmp_path / "web.yml", {"basic_auth_users": {"prometheus": hashed("rotated-pass")}})
    wait_for(
        lambda: client.get("/metrics", auth=("prometheus", "rotated-pass"))[0] == 200,
        10,
        "the rotated password",
    )
    assert client.get("/metrics", auth=("prometheus", PASSWORD))[0] == 401
    # Turning TLS on needs a restart: refused at the next request, the running config stays.
    pki = Pki(tmp_path)
    write_web(tmp_path / "web.yml", {"tls_server_config": tls_section(pki)})

    def refusal() -> list[dict[str, Any]]:
        client.get("/-/healthy")
        return d.events("web config reload failed, keeping the previous one")

    problem = wait_for(refusal, 10, "the refusal")[0]["problem"]
    assert problem.endswith("turning TLS on or off needs a restart")
    assert client.get("/metrics", auth=("prometheus", "rotated-pass"))[0] == 200


def test_headers_on_every_response(start: Start) -> None:
    headers = {
        "X-Frame-Options": "deny",
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'self'",
        "X-XSS-Protection": "",  # blank: not sent, as in the toolkit
    }
    web = {"http_server_config": {"headers": headers}, "basic_auth_users": {"u": hashed("pw-pw")}}
    _, client = start(web)
    for path, auth in (("/metrics", ("u", "pw-pw")), ("/metrics", None), ("/", ("u", "pw-pw"))):
        _, _, got = client.get(path, auth=auth)
        assert got["X-Frame-Options"] == "deny"
        assert got["X-Content-Type-Options"] == "nosniff"
        assert got["Content-Security-Policy"] == "default-src 'self'"
        assert "X-XSS-Protection" not in got


def test_rate_limit(start: Start) -> None:
    d, client = start({"rate_limit": {"interval": "1h", "burst": 2}})
    assert [client.get("/-/healthy")[0] for _ in range(4)] == [200, 200, 429, 429]
    assert d.proc.poll() is None


BAD_WEB_CONFIGS = [
    ("unknown key", {"tls_server_config": {"cert_fil": "a"}}, "tls_server_config.cert_fil"),
    (
        "missing certificate",
        {"tls_server_config": {"cert_file": "missing.crt", "key_file": "missing.key"}},
        "tls_server_config.cert_file: cannot load certificate and key: file not found",
    ),
    (
        "unverified client certificates",
        {
            "tls_server_config": {
                "cert_file": "a",
                "key_file": "b",
                "client_auth_type": "RequireAnyClientCert",
            }
        },
        "tls_server_config.client_auth_type: botwatch only accepts client certificates it",
    ),
    (
        "not bcrypt",
        {"basic_auth_users": {"prometheus": "plain-text-password"}},
        "basic_auth_users.prometheus: not a bcrypt hash",
    ),
    (
        "inline key that is not a key",
        {"tls_server_config": {"cert": "x", "key": "inline-secret-key-material"}},
        "tls_server_config.cert: cannot load certificate and key",
    ),
    (
        "header not allowed",
        {"http_server_config": {"headers": {"Server": "botwatch"}}},
        "http_server_config.headers.Server: header not allowed",
    ),
    ("bad tls version", {"tls_server_config": {"min_version": "TLS9"}}, "min_version"),
]


@pytest.mark.parametrize(
    ("doc", "expected"), [c[1:] for c in BAD_WEB_CONFIGS], ids=[c[0] for c in BAD_WEB_CONFIGS]
)
def test_bad_web_config_exits_2_with_one_line(
    tmp_path: Path, doc: dict[str, Any], expected: str
) -> None:
    web_file = write_web(tmp_path / "web.yml", doc)
    result = run_cli(
        "run", f"--config.file={daemon_config(tmp_path)}", f"--web.config.file={web_file}"
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith(f"{web_file}: "), lines
    assert expected in lines[0], lines
    assert len(lines) == 1, lines
    for secret in ("plain-text-password", "inline-secret-key-material"):
        assert secret not in result.stderr
    check = run_cli("check-web-config", str(web_file))
    assert check.returncode == 2 and check.stderr == result.stderr


def test_shipped_example_passes_promtool_and_botwatch(tmp_path: Path) -> None:
    example = REPO / "deploy" / "web-config.example.yml"
    # The example names files relative to itself: give it real ones.
    (tmp_path / "made").mkdir()
    pki = Pki(tmp_path / "made")
    (tmp_path / "tls").mkdir()
    shutil.copy(pki.cert_file, tmp_path / "tls" / "botwatch.crt")
    shutil.copy(pki.key_file, tmp_path / "tls" / "botwatch.key")
    shutil.copy(pki.ca_file, tmp_path / "tls" / "prometheus-ca.crt")
    web_file = tmp_path / "web.yml"
    shutil.copy(example, web_file)
    promtool = subprocess.run(
        ["promtool", "check", "web-config", str(web_file)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert promtool.returncode == 0, promtool.stdout + promtool.stderr
    ours = run_cli("check-web-config", str(web_file))
    assert ours.returncode == 0, ours.stderr
    assert "RequireAndVerifyClientCert" in ours.stdout
    assert "basic auth users: 1" in ours.stdout
    example_hash = yaml.safe_load(example.read_text())["basic_auth_users"]["prometheus"]
    assert bcrypt.checkpw(b"change-me", example_hash.encode())
