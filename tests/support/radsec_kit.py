"""RadSec test kit: a throw-away PKI made with ``cryptography`` and a TLS RADIUS client.

``make_pki(directory)`` writes a CA, a server certificate for 127.0.0.1/localhost, a
client certificate of that CA, and a client certificate of an unrelated CA (the one
that must be refused); ``client_context`` is the client side of mutual TLS;
``RadsecClient`` is a blocking RadSec client over a real socket: it writes what it is
given (whole packets, several in one write, or pieces) and reads framed answers.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import ipaddress
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True, slots=True)
class Identity:
    cert: Path
    key: Path
    fingerprint: str  # sha256 of the DER, hex


@dataclass(frozen=True, slots=True)
class Pki:
    ca: Path  # the CA citywifi trusts for clients (and radsecproxy for the server)
    server: Identity
    client: Identity  # signed by ca, subject CN "nas-radsec.example"
    other_client: Identity  # same CA, another name (valid, but configured for no client)
    stranger: Identity  # signed by an unrelated CA
    stranger_ca: Path


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def make_ca(
    directory: Path, name: str
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey, Path]:
    key = _key()
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(_name(name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    path = directory / f"{name.replace(' ', '-')}.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert, key, path


def issue(
    directory: Path,
    stem: str,
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
    cn: str,
    *,
    server: bool = False,
    days: int = 30,
    not_before: dt.datetime | None = None,
) -> Identity:
    key = _key()
    now = dt.datetime.now(dt.UTC)
    start = not_before or now - dt.timedelta(hours=1)
    names: list[x509.GeneralName] = [x509.DNSName(cn)]
    if server:
        names += [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(ca[0].subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .sign(ca[1], hashes.SHA256())
    )
    cert_path, key_path = directory / f"{stem}.pem", directory / f"{stem}.key"
    der = cert.public_bytes(serialization.Encoding.DER)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key_path, key)
    return Identity(cert_path, key_path, hashlib.sha256(der).hexdigest())


def make_pki(directory: Path) -> Pki:
    directory.mkdir(parents=True, exist_ok=True)
    ca_cert, ca_key, ca_path = make_ca(directory, "city CA")
    other_cert, other_key, other_path = make_ca(directory, "stranger CA")
    ca = (ca_cert, ca_key)
    return Pki(
        ca=ca_path,
        server=issue(directory, "server", ca, "radsec.city.example", server=True),
        client=issue(directory, "client", ca, "nas-radsec.example"),
        other_client=issue(directory, "other-client", ca, "someone-else.example"),
        stranger=issue(directory, "stranger", (other_cert, other_key), "nas-radsec.example"),
        stranger_ca=other_path,
    )


def client_context(pki: Pki, identity: Identity | None) -> ssl.SSLContext:
    """The NAS side: trusts the city CA for the server, presents ``identity``."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(pki.ca))
    context.check_hostname = False  # connecting to 127.0.0.1 by address
    if identity is not None:
        context.load_cert_chain(str(identity.cert), str(identity.key))
    return context


class RadsecClient:
    """A blocking RadSec client: ``send`` writes bytes as given, ``read`` one answer."""

    def __init__(self, port: int, context: ssl.SSLContext, timeout: float = 5.0) -> None:
        raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock = context.wrap_socket(raw)
        self._buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read(self) -> bytes | None:
        """One framed packet, or None when the server closed the connection."""
        while True:
            if len(self._buffer) >= 4:
                length = int.from_bytes(self._buffer[2:4], "big")
                if len(self._buffer) >= length:
                    packet, self._buffer = self._buffer[:length], self._buffer[length:]
                    return packet
            try:
                chunk = self.sock.recv(65536)
            except (ConnectionError, ssl.SSLError):
                return None
            if not chunk:
                return None
            self._buffer += chunk

    def closed_by_server(self) -> bool:
        """Whether the server has closed (reads to the end of the stream)."""
        return self.read() is None

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def __enter__(self) -> RadsecClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
