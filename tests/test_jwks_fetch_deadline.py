"""A JWK set server that drips its answer costs the fetch its timeout, and nothing after it.

urllib's timeout bounds each read, not the download: a server that sends a byte every half
second never trips it. The fetch gives up at its deadline; its thread must end then too, its
connection closed, instead of reading on for as long as the server cares to drip.
"""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any

import anyio
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tasktrail.api.auth import jwks_fetch
from tasktrail.api.auth.jwks import JwkSetSource
from tasktrail.api.auth.jwks_fetch import RemoteJwkSet
from tests.jwks_helpers import jwk_set, jwks_server, make_key

DRIP_SECONDS = 0.5
TIMEOUT = 1.0
HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n"


@dataclass(frozen=True)
class Certificate:
    """A self-signed certificate for 127.0.0.1, trusted by this process's default TLS context."""

    certificate: Path
    key: Path


@pytest.fixture
def trusted_certificate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    paths = Certificate(tmp_path / "certificate.pem", tmp_path / "key.pem")
    paths.certificate.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    paths.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    # OpenSSL reads it whenever a default context loads its trust store: the fetch's does.
    monkeypatch.setenv("SSL_CERT_FILE", str(paths.certificate))
    return paths


@dataclass
class DrippingServer:
    """A loopback server that answers every request one byte per DRIP_SECONDS, for a minute."""

    url: str
    connections: int = 0
    closed_at: list[float] = field(default_factory=list)  # when each client went away


@contextmanager
def dripping_server(stage: str, tls: Certificate | None = None) -> Iterator[DrippingServer]:
    """What drips, a byte at a time: the "head" (after the status line; it never ends), the
    "body" (after the whole head), or a "greeting" sent before any request, as an FTP server's
    (a line that never ends); over TLS with `tls`."""
    listener = socket.create_server(("127.0.0.1", 0))
    scheme = "https" if tls else "http"
    server = DrippingServer(f"{scheme}://127.0.0.1:{listener.getsockname()[1]}/api/auth/jwks")
    stopping = threading.Event()

    def drip(accepted: socket.socket) -> None:
        connection = accepted
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(tls.certificate, tls.key)
            connection = context.wrap_socket(accepted, server_side=True)
        with connection:
            if stage == "greeting":
                payload = b"220 " + b"a" * 10_000
            elif stage == "head":
                connection.recv(65536)  # the request
                connection.sendall(b"HTTP/1.1 200 OK\r\n")
                payload = b"X-Drip: " + b"a" * 10_000
            else:
                connection.recv(65536)
                connection.sendall(HEAD + b"\r\n")
                payload = b" " * 100_000
            try:
                for byte in payload[:120]:  # a minute of it
                    if stopping.wait(DRIP_SECONDS):
                        return
                    connection.sendall(bytes([byte]))
            except OSError:  # the client closed its end: a send fails (after its reset)
                server.closed_at.append(time.monotonic())

    def accept() -> None:
        while not stopping.is_set():
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            server.connections += 1
            threading.Thread(target=drip, args=(connection,), daemon=True).start()

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    try:
        yield server
    finally:
        stopping.set()
        with suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        acceptor.join(timeout=5)


def threads_in_the_download() -> list[str]:
    """The threads whose stack is inside jwks_fetch's download right now."""
    found = []
    for ident, frame in sys._current_frames().items():
        walking: FrameType | None = frame
        while walking is not None:
            if (
                walking.f_code.co_name == "_download"
                and walking.f_code.co_filename == jwks_fetch.__file__
            ):
                found.append(str(ident))
                break
            walking = walking.f_back
    return found


@pytest.mark.parametrize("stage", ["body", "head"])
def test_a_dripping_jwks_server_keeps_no_thread_or_connection_past_the_timeout(
    stage: str,
) -> None:
    """Over plain HTTP: the head never finishes, or the body never does."""
    with dripping_server(stage) as server:
        assert_given_up_at_the_deadline_with_nothing_left(server)


def test_a_jwks_server_dripping_over_tls_keeps_nothing_either(
    trusted_certificate: Certificate,
) -> None:
    """The TLS layer takes the connection's socket over: it is cut off all the same. (The
    handshake itself needs no test: Python bounds it whole by the socket's timeout.)"""
    with dripping_server("body", tls=trusted_certificate) as server:
        assert_given_up_at_the_deadline_with_nothing_left(server)


def assert_given_up_at_the_deadline_with_nothing_left(server: DrippingServer) -> None:
    """The fetch fails at its timeout; soon after, no thread is still in the download and the
    server has seen its connection closed."""
    remote = RemoteJwkSet(server.url, JwkSetSource(), timeout=TIMEOUT)
    started = time.monotonic()
    assert anyio.run(remote.refresh) is False
    gave_up = time.monotonic()
    assert gave_up - started < TIMEOUT + 1.0
    assert server.connections == 1
    # The server notices at its next drip (a send after the client's reset fails).
    deadline = gave_up + 3 * DRIP_SECONDS + 2.0
    while not server.closed_at or threads_in_the_download():
        assert time.monotonic() < deadline, (
            f"{len(threads_in_the_download())} thread(s) still downloading, "
            f"connection {'closed' if server.closed_at else 'still open'}, "
            f"{time.monotonic() - gave_up:.1f} s after the fetch gave up"
        )
        time.sleep(0.05)


def test_a_prompt_answer_is_read_whole() -> None:
    """The deadline changes nothing for a server that answers: the whole set is loaded."""
    key = make_key("EdDSA")
    document = jwk_set(key)
    # Big enough to take several reads, small enough for the size cap.
    document["keys"].extend({**key.jwk, "kid": f"padding-{n}"} for n in range(2000))
    with jwks_server(document) as server:
        source = JwkSetSource()
        assert anyio.run(RemoteJwkSet(server.url, source, timeout=TIMEOUT).refresh) is True
        assert len(source.kids) == 2001


@contextmanager
def redirecting_server(location: str) -> Iterator[str]:
    """A loopback HTTP server that answers every GET with a 302 to `location`; yields its URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(302)
            self.send_header("Location", location)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/api/auth/jwks"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_a_redirect_to_ftp_fails_at_once_without_connecting() -> None:
    """urllib's default opener follows a 302 to ftp:// with an FTP connection no deadline
    watches (a server that drips its greeting held its thread for as long as it dripped). The
    fetch opens http and https only: the redirect fails at once, nothing is connected to and
    no thread is left in the download."""
    with (
        dripping_server("greeting") as ftp,
        redirecting_server(ftp.url.replace("http://", "ftp://", 1)) as url,
    ):
        remote = RemoteJwkSet(url, JwkSetSource(), timeout=5.0)
        started = time.monotonic()
        assert anyio.run(remote.refresh) is False
        assert time.monotonic() - started < 1.0
        assert ftp.connections == 0
        assert threads_in_the_download() == []
