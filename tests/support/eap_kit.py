"""Test kit for EAP: certificates made at test time, and a tiny RADIUS responder.

- ``make_pki``: a CA and a server certificate for ``radius.<realm>`` (and the CA's
  certificate in PEM and DER), generated with ``cryptography``; nothing is shipped.
- ``EapResponder``: a UDP RADIUS server on loopback, built only from
  ``radius.packet``, ``radius.eap``, ``radius.eap_state``, ``radius.eap_ttls`` and
  ``radius.mppe``, so that a real peer (``eapol_test``, wpa_supplicant's EAP code acting
  as NAS and phone) proves the EAP-TTLS state machine before it is wired into
  ``citywifi serve``. Access-Challenge with State, Access-Accept with the MS-MPPE keys,
  Access-Reject with EAP-Failure; every reply with Message-Authenticator first.
- ``run_eapol_test``: writes an eapol_test network block and runs it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import secrets
import shutil
import socket
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from OpenSSL import SSL, crypto

from radius.attrs import Attr, Code
from radius.eap import (
    EapCode,
    EapError,
    EapPacket,
    EapType,
    decode_eap,
    eap_from_request,
    eap_message_attrs,
)
from radius.eap_state import StateTable
from radius.eap_ttls import (
    AVP_USER_NAME,
    AVP_USER_PASSWORD,
    KEYING_LABEL,
    Avp,
    Challenge,
    PapCredentials,
    Success,
    TtlsServer,
    TtlsSession,
    encode_avp,
)
from radius.mppe import mppe_key_attrs
from radius.packet import PacketError, attr, decode_request, encode_reply

EAPOL_TEST = shutil.which("eapol_test") or "/usr/bin/eapol_test"


@dataclass(frozen=True)
class Pki:
    ca_pem: bytes
    ca_der: bytes
    server_chain_pem: bytes
    server_key_pem: bytes = field(repr=False)
    server_name: str = ""


def make_pki(realm: str = "city.example", now: dt.datetime | None = None) -> Pki:
    """A CA and a server certificate (EC P-256) for ``radius.<realm>``, valid a day
    either side of ``now``; the server certificate has serverAuth (wpa_supplicant checks
    the extended key usage when present)."""
    now = now or dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{realm} test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    name = f"radius.{realm}"
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    return Pki(
        ca_pem=ca.public_bytes(pem),
        ca_der=ca.public_bytes(serialization.Encoding.DER),
        server_chain_pem=cert.public_bytes(pem),
        server_key_pem=key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
        server_name=name,
    )


@dataclass
class Outcome:
    """What the responder answered, for the test to check."""

    code: int
    inner_identity: str | None = None
    outer_identity: str | None = None
    resumed: bool = False
    reason: str | None = None
    msk: bytes = b""


class EapResponder:
    """A UDP RADIUS authentication server that speaks EAP-TTLS/PAP and nothing else."""

    def __init__(
        self,
        ttls: TtlsServer,
        verifier: Callable[[PapCredentials], bool],
        secret: bytes = b"testing123",
    ) -> None:
        self.ttls = ttls
        self.verifier = verifier
        self.secret = secret
        self.states: StateTable[TtlsSession] = StateTable(lifetime=30.0, max_entries=64)
        self.outcomes: list[Outcome] = []
        self.challenges = 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port: int = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> EapResponder:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()

    def _serve(self) -> None:
        import time

        while not self._stop.is_set():
            try:
                data, addr = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            reply = self.answer(data, time.monotonic())
            if reply is not None:
                self.sock.sendto(reply, addr)

    def answer(self, data: bytes, now: float) -> bytes | None:
        try:
            request = decode_request(data, self.secret)
            eap = eap_from_request(request)
        except (PacketError, EapError):
            return None
        if request.code != Code.ACCESS_REQUEST:
            return None
        state = request.get(Attr.STATE)
        session = None
        if state is not None:
            session = self.states.take(state, "test-nas", now)
            if session is None:
                return None  # an unknown or expired State: drop, as the server core will
        if session is None:
            session = self.ttls.session(self.verifier)
        step = session.step(eap, now)
        if isinstance(step, Challenge):
            self.challenges += 1
            new_state = self.states.put(session, "test-nas", now)
            attrs = eap_message_attrs(step.eap) + attr(Attr.STATE, new_state)
            return encode_reply(Code.ACCESS_CHALLENGE, request, self.secret, attrs)
        if isinstance(step, Success):
            salt = secrets.token_bytes(2)
            salts = (bytes((salt[0] | 0x80, salt[1])), bytes((salt[0] | 0x80, salt[1] ^ 1)))
            attrs = (
                eap_message_attrs(step.eap)
                + attr(Attr.USER_NAME, step.inner_identity.encode())
                + mppe_key_attrs(step.keys.msk, self.secret, request.authenticator, salts)
            )
            self.outcomes.append(
                Outcome(
                    Code.ACCESS_ACCEPT,
                    step.inner_identity,
                    step.outer_identity,
                    step.resumed,
                    msk=step.keys.msk,
                )
            )
            return encode_reply(Code.ACCESS_ACCEPT, request, self.secret, attrs)
        self.outcomes.append(
            Outcome(
                Code.ACCESS_REJECT, step.inner_identity, step.outer_identity, reason=step.reason
            )
        )
        return encode_reply(Code.ACCESS_REJECT, request, self.secret, eap_message_attrs(step.eap))


@dataclass(frozen=True)
class EapolResult:
    returncode: int
    output: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and "SUCCESS" in self.output


def run_eapol_test(
    directory: Path,
    port: int,
    *,
    ca_pem: bytes,
    identity: str,
    password: str,
    anonymous_identity: str = "anonymous@city.example",
    domain_suffix: str = "city.example",
    reauth: int = 0,
    fragment_size: int = 1398,
    secret: str = "testing123",
    timeout: int = 10,
) -> EapolResult:
    """Run eapol_test against ``127.0.0.1:port``: EAP-TTLS with PAP inside, the server
    certificate checked against ``ca_pem`` and ``domain_suffix`` (as a phone with a
    Passpoint profile does). ``reauth`` > 0 re-authenticates that many times, resuming
    the TLS session. eapol_test checks the MS-MPPE keys against its own MSK and exits 0
    only when they match (it fails on a missing key unless -n)."""
    ca = directory / "ca.pem"
    ca.write_bytes(ca_pem)
    conf = directory / "eapol_test.conf"
    conf.write_text(
        "network={\n"
        '  ssid="citywifi"\n'
        "  key_mgmt=WPA-EAP\n"
        "  eap=TTLS\n"
        f'  identity="{identity}"\n'
        f'  anonymous_identity="{anonymous_identity}"\n'
        f'  password="{password}"\n'
        f'  ca_cert="{ca}"\n'
        f'  domain_suffix_match="{domain_suffix}"\n'
        '  phase2="auth=PAP"\n'
        f"  fragment_size={fragment_size}\n"
        "}\n"
    )
    args = [EAPOL_TEST, "-c", str(conf), "-a", "127.0.0.1", "-p", str(port), "-s", secret]
    args += ["-t", str(timeout)]
    if reauth:
        args.append(f"-r{reauth}")
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout + 10)
    return EapolResult(proc.returncode, proc.stdout + proc.stderr)


class TtlsPeer:
    """A minimal EAP-TTLS/PAP peer on pyOpenSSL memory BIOs, for fast in-process tests of
    the server state machine (the real peer is eapol_test, above). ``respond`` turns
    each EAP-Request into the EAP-Response; fragments both ways like RFC 5281 §9.2.2.
    ``session`` resumes an earlier TLS session (``TtlsPeer.tls_session`` after success)."""

    def __init__(
        self,
        ca_pem: bytes,
        username: str,
        password: bytes,
        *,
        identity: str = "anonymous@city.example",
        fragment_size: int = 1398,
        resume_from: TtlsPeer | None = None,
        tickets: bool = False,
        avps: bytes | None = None,
    ) -> None:
        if resume_from is None:
            ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
            ctx.set_max_proto_version(SSL.TLS1_2_VERSION)
            if not tickets:  # wpa_supplicant's default: session ids, no tickets
                ctx.set_options(SSL.OP_NO_TICKET)
            ctx.set_verify(SSL.VERIFY_PEER, lambda _c, _x, _e, _d, ok: bool(ok))
            store = ctx.get_cert_store()
            assert store is not None
            store.add_cert(crypto.X509.from_cryptography(x509.load_pem_x509_certificate(ca_pem)))
        else:
            ctx = resume_from.ctx
        self.ctx = ctx
        self.conn = SSL.Connection(ctx, None)
        self.conn.set_connect_state()
        if resume_from is not None:
            self.conn.set_session(resume_from.conn.get_session())
        self.identity = identity
        self.fragment_size = fragment_size
        padded = password.ljust(max(16, -(-len(password) // 16) * 16), b"\x00")
        self.avps = (
            avps
            if avps is not None
            else (
                encode_avp(Avp(AVP_USER_NAME, username.encode(), mandatory=True))
                + encode_avp(Avp(AVP_USER_PASSWORD, padded, mandatory=True))
            )
        )
        self.sent_avps = False
        self._incoming = bytearray()
        self._outgoing = b""

    def identity_response(self, identifier: int = 0) -> bytes:
        return EapPacket(
            EapCode.RESPONSE, identifier, EapType.IDENTITY, self.identity.encode()
        ).encode()

    def _response(self, identifier: int, body: bytes) -> bytes:
        return EapPacket(EapCode.RESPONSE, identifier, EapType.TTLS, body).encode()

    def _send(self, identifier: int, message: bytes) -> bytes:
        room = self.fragment_size - 6
        if len(message) <= room:
            return self._response(identifier, b"\x00" + message)
        first = room - 4
        self._outgoing = message[first:]
        head = bytes((0xC0,)) + len(message).to_bytes(4, "big")
        return self._response(identifier, head + message[:first])

    def respond(self, request: bytes) -> bytes:
        packet = decode_eap(request)
        flags, data = packet.data[0], packet.data[1:]
        if flags & 0x80:
            data = data[4:]
        if self._outgoing:  # the server acknowledged our fragment
            room = self.fragment_size - 6
            chunk, self._outgoing = self._outgoing[:room], self._outgoing[room:]
            return self._response(
                packet.identifier, bytes((0x40 if self._outgoing else 0,)) + chunk
            )
        self._incoming += data
        if flags & 0x40:
            return self._response(packet.identifier, b"\x00")  # acknowledge
        message, self._incoming = bytes(self._incoming), bytearray()
        if message:
            self.conn.bio_write(message)
        try:
            self.conn.do_handshake()
            done = True
        except SSL.WantReadError:
            done = False
        out = b""
        with contextlib.suppress(SSL.WantReadError):
            out = self.conn.bio_read(65536)
        if done and not out and not self.sent_avps:
            self.sent_avps = True
            self.conn.send(self.avps)
            out = self.conn.bio_read(65536)
        return self._send(packet.identifier, out)

    def finish(self) -> None:
        """Mark the TLS session closed cleanly (as the server does): OpenSSL makes a
        session unresumable when its connection is freed without a shutdown, and a
        resumed connection shares the session of the one it resumed."""
        self.conn.set_shutdown(SSL.SENT_SHUTDOWN | SSL.RECEIVED_SHUTDOWN)

    def msk(self) -> bytes:
        return self.conn.export_keying_material(KEYING_LABEL, 128)[:64]


def passpoint_section(directory: Path, pki: Pki, realm: str) -> str:
    """The ``[passpoint]`` TOML of a city in ``realm`` on ``pki``: its CA, the server
    chain and key written into ``directory`` (the key 0600, as the loader wants)."""
    (directory / "ca.pem").write_bytes(pki.ca_pem)
    (directory / "server.pem").write_bytes(pki.server_chain_pem)
    key = directory / "server.key"
    key.write_bytes(pki.server_key_pem)
    key.chmod(0o600)
    return f"""
[passpoint]
enabled = true
realm = "{realm}"
ca_cert = "{directory / "ca.pem"}"
server_cert = "{directory / "server.pem"}"
server_key = "{key}"
"""
