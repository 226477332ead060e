"""A client's jwks_uri is resolved once and fetched from that address, with its own name in Host and SNI.

The resolver is the seam faked here (a DNS server cannot be run in a test): it answers as a rebinding
DNS server would, one address to the check and another to a second lookup. The JWKS is served by a
real local HTTP or TLS server, and the token endpoint is called over HTTP.
"""

from __future__ import annotations

import datetime
import http.server
import json
import socket
import ssl
import threading

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from api import pinned_fetch
from api.backend_services import JwksUnavailable, jwks_fetch
from tests.api.test_backend_services import _assertion, _key, _public_jwks, _register, _token_request

HOST = "jwks.client.test"
_real_getaddrinfo = socket.getaddrinfo


class _Published:
    """A client's web server serving its JWKS, recording each request's Host header and the TLS SNI."""

    def __init__(self, document: bytes, context: ssl.SSLContext | None = None) -> None:
        self.hosts: list[str] = []
        self.sni: list[str | None] = []
        published = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                published.hosts.append(self.headers.get("Host", ""))
                self.send_response(200)
                self.send_header("Content-Length", str(len(document)))
                self.end_headers()
                self.wfile.write(document)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if context is not None:
            context.sni_callback = lambda sock, name, ctx: self.sni.append(name)  # type: ignore[assignment]
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _RebindingResolver:
    """Answers the first lookup of HOST with `first`, every later one with `later`; counts the lookups."""

    def __init__(self, first: list[str], later: list[str]) -> None:
        self.first, self.later, self.lookups = first, later, 0

    def __call__(self, host: str, port: object, *args: object, **kwargs: object) -> list[tuple]:  # type: ignore[type-arg]
        if host != HOST:
            return _real_getaddrinfo(host, port, *args, **kwargs)  # type: ignore[arg-type]
        self.lookups += 1
        answers = self.first if self.lookups == 1 else self.later
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in answers]


@pytest.fixture
def resolver(monkeypatch) -> _RebindingResolver:  # type: ignore[no-untyped-def]
    fake = _RebindingResolver(first=["127.0.0.1"], later=["10.255.255.1"])
    monkeypatch.setattr(pinned_fetch.socket, "getaddrinfo", fake)
    return fake


@pytest.fixture
def loopback_allowed(settings) -> None:  # type: ignore[no-untyped-def]
    settings.SMART_JWKS_URI_HTTP_ALLOWED = True
    settings.SMART_JWKS_URI_PRIVATE_ALLOWED = True  # the test's server listens on loopback


@pytest.mark.django_db
def test_the_token_endpoint_fetches_the_jwks_from_the_address_resolved_once(resolver, loopback_allowed, clinician):
    key = _key("EC")
    published = _Published(json.dumps(_public_jwks(key)).encode())
    try:
        app = _register(clinician, jwks_uri=f"http://{HOST}:{published.port}/jwks.json")
        response = _token_request(_assertion(key, app.client_id, alg="ES384"))
    finally:
        published.close()

    assert response.status_code == 200, response.content
    # One lookup: the second answer (an address nothing listens on) was never asked for.
    assert resolver.lookups == 1
    assert published.hosts == [f"{HOST}:{published.port}"]


@pytest.mark.django_db
def test_a_host_resolving_to_a_private_address_is_refused_before_any_connection(settings, resolver, clinician):
    settings.SMART_JWKS_URI_HTTP_ALLOWED = True
    settings.SMART_JWKS_URI_PRIVATE_ALLOWED = False
    key = _key()
    published = _Published(json.dumps(_public_jwks(key)).encode())
    try:
        app = _register(clinician, jwks_uri=f"http://{HOST}:{published.port}/jwks.json")
        response = _token_request(_assertion(key, app.client_id))
        with pytest.raises(JwksUnavailable, match="public host"):
            jwks_fetch(f"http://{HOST}:{published.port}/jwks.json")
    finally:
        published.close()

    assert response.status_code == 401
    assert published.hosts == []


@pytest.mark.django_db
@pytest.mark.parametrize("answers", [["93.184.216.34", "127.0.0.1"], ["169.254.169.254"], ["::1"], ["10.0.0.8"]])
def test_any_private_loopback_or_link_local_answer_refuses_the_host(settings, monkeypatch, answers):  # type: ignore[no-untyped-def]
    settings.SMART_JWKS_URI_PRIVATE_ALLOWED = False
    fake = _RebindingResolver(first=answers, later=answers)
    monkeypatch.setattr(pinned_fetch.socket, "getaddrinfo", fake)

    with pytest.raises(JwksUnavailable, match="public host"):
        jwks_fetch(f"https://{HOST}/jwks.json")
    assert fake.lookups == 1


def _tls_context(tmp_path, name: str) -> tuple[ssl.SSLContext, str]:  # type: ignore[no-untyped-def]
    """A server context with a self-signed certificate for `name`, and the path of that certificate."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    return context, str(cert_path)


@pytest.mark.django_db
def test_over_https_the_name_goes_in_sni_and_the_certificate_must_be_the_names(
    settings, resolver, monkeypatch, tmp_path
):
    settings.SMART_JWKS_URI_PRIVATE_ALLOWED = True
    key = _key()
    document = json.dumps(_public_jwks(key)).encode()
    context, ca = _tls_context(tmp_path, HOST)
    monkeypatch.setattr(pinned_fetch, "ca_bundle", lambda: ca)
    published = _Published(document, context)
    try:
        fetched = jwks_fetch(f"https://{HOST}:{published.port}/jwks.json")
    finally:
        published.close()
    assert fetched == json.loads(document)
    assert published.sni == [HOST]
    assert published.hosts == [f"{HOST}:{published.port}"]

    # A server whose certificate names another host is refused, though the address is the one resolved.
    resolver.lookups = 0
    other, other_ca = _tls_context(tmp_path, "elsewhere.test")
    monkeypatch.setattr(pinned_fetch, "ca_bundle", lambda: other_ca)
    impostor = _Published(document, other)
    try:
        with pytest.raises(JwksUnavailable, match="could not be fetched"):
            jwks_fetch(f"https://{HOST}:{impostor.port}/jwks.json")
    finally:
        impostor.close()
    assert impostor.hosts == []
