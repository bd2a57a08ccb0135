"""Seeds, mutations and an independent re-signer for the RADIUS fuzz tests.

Used by ``tests/test_fuzz_packet.py`` (decoder properties, corpus replay),
``tests/test_fuzz_server.py`` (mutated datagrams against a live controller) and
``tests/fuzz_atheris.py`` (optional coverage-guided run). Everything is deterministic:
mutations draw from a ``random.Random`` the caller seeds, seeds use fixed authenticators.

The corpus (``tests/fuzz_corpus/``) holds one datagram per file: ``seeds/`` are valid
requests of the test city's ``nas-local`` client (secret ``testing123``), ``crashers/``
every datagram that ever made a decoder or handler fail (replayed by CI), ``pending/``
those whose bug is not fixed yet (replayed by xfail tests). File names start with the
port they go to (``auth-`` / ``acct-``). ``python -m tests.support.fuzz_kit`` rewrites ``seeds/``
and ``pending/`` from ``seed_packets()`` and ``pending_packets()``.

The re-signer is written from the RFCs, not with ``radius.packet``, so that mutated
packets which still carry valid authenticators reach the request handlers: a hostile but
authenticated NAS is part of the threat model (a stolen secret, broken firmware).
"""

from __future__ import annotations

import hashlib
import hmac
import random
import struct
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

CORPUS = Path(__file__).resolve().parent.parent / "fuzz_corpus"
SEEDS = CORPUS / "seeds"
CRASHERS = CORPUS / "crashers"
PENDING = CORPUS / "pending"  # found, not fixed yet: replayed by xfail tests only
SECRET = b"testing123"  # tests/conftest.py: nas-local on 127.0.0.1

MA = 80
PROXY_STATE = 33
VSA = 26
SIGNED_CODES = frozenset((4, 40, 43))  # Request Authenticator = MD5 (RFC 2866 §3, RFC 5176)
MA_VECTOR_IS_AUTH = frozenset((1, 12))  # Access-Request, Status-Server: HMAC over the RA
INTERESTING_CODES = (0, 1, 2, 3, 4, 5, 11, 12, 13, 40, 41, 43, 44, 255)
INTERESTING_LENGTHS = (0, 1, 2, 3, 19, 20, 21, 38, 253, 254, 255, 4095, 4096, 4097, 0xFFFF)

AUTH = bytes(range(0x10, 0x20))  # fixed Request Authenticator of the seeds


# --------------------------------------------------------------------------- encoding


def tlv(atype: int, value: bytes) -> bytes:
    """One attribute; ``value`` may be up to 253 octets."""
    return bytes((atype, len(value) + 2)) + value


def vsa(vendor: int, sub: bytes) -> bytes:
    """A Vendor-Specific attribute wrapping ``sub`` verbatim (well-formed or not)."""
    return tlv(VSA, vendor.to_bytes(4, "big") + sub)


def walk(data: bytes, length: int) -> list[tuple[int, int, int]] | None:
    """(offset, type, length) of each attribute within ``length``; None if they do not
    tile the packet exactly (a malformed packet)."""
    out: list[tuple[int, int, int]] = []
    pos = 20
    while pos < length:
        if pos + 2 > length:
            return None
        alen = data[pos + 1]
        if alen < 2 or pos + alen > length:
            return None
        out.append((pos, data[pos], alen))
        pos += alen
    return out


def fix_length(data: bytes) -> bytes:
    """Set the Length field to the datagram size (if it fits)."""
    if len(data) < 4 or len(data) > 0xFFFF:
        return data
    return data[:2] + struct.pack(">H", len(data)) + data[4:]


def resign(data: bytes, secret: bytes = SECRET) -> bytes:
    """Recompute the Message-Authenticator (RFC 3579 §3.2, RFC 5176 §3.4) and, for
    Accounting/Disconnect/CoA-Request, the Request Authenticator (RFC 2866 §3), so the
    packet authenticates with ``secret``. Left alone when the Length is out of range or
    the attributes do not tile the packet (the decoder refuses those anyway)."""
    if len(data) < 20:
        return data
    length = (data[2] << 8) | data[3]
    if not 20 <= length <= len(data):
        return data
    body, tail = bytearray(data[:length]), data[length:]
    attrs = walk(bytes(body), length)
    if attrs is None:
        return data
    code = body[0]
    signed = code in SIGNED_CODES
    if signed:
        body[4:20] = bytes(16)
    ma_at = next((pos for pos, t, n in attrs if t == MA and n == 18), -1)
    if ma_at >= 0 and (signed or code in MA_VECTOR_IS_AUTH):
        body[ma_at + 2 : ma_at + 18] = bytes(16)
        body[ma_at + 2 : ma_at + 18] = hmac.digest(secret, bytes(body), "md5")
    if signed:
        body[4:20] = hashlib.md5(bytes(body) + secret).digest()
    return bytes(body) + tail


def request(code: int, ident: int, attrs: bytes, *, ma: bool = True) -> bytes:
    """A request with the Message-Authenticator first, signed with ``SECRET``."""
    body = (tlv(MA, bytes(16)) if ma else b"") + attrs
    head = struct.pack(">BBH", code, ident, 20 + len(body))
    return resign(head + AUTH + body)


def pap(password: bytes, secret: bytes = SECRET, authenticator: bytes = AUTH) -> bytes:
    """User-Password hiding (RFC 2865 §5.2)."""
    padded = password.ljust(max(16, -(-len(password) // 16) * 16), b"\x00")
    out, last = b"", authenticator
    for i in range(0, len(padded), 16):
        key = hashlib.md5(secret + last).digest()
        last = bytes(a ^ b for a, b in zip(key, padded[i : i + 16], strict=True))
        out += last
    return out


def u32(atype: int, n: int) -> bytes:
    return tlv(atype, n.to_bytes(4, "big"))


def seed_packets() -> dict[str, bytes]:
    """Valid requests of every kind the server takes, named ``<port>-<what>``."""
    user = b"0123456789abcdef0123.abcdefgh"
    mac = b"AA-BB-CC-DD-EE-01"
    common = (
        tlv(31, mac)  # Calling-Station-Id
        + tlv(30, b"00-11-22-33-44-55:i-Test")  # Called-Station-Id
        + tlv(32, b"nas-1")  # NAS-Identifier
        + tlv(4, bytes((192, 0, 2, 10)))  # NAS-IP-Address
        + u32(61, 19)  # NAS-Port-Type = Wireless-802.11
    )
    challenge = bytes(range(0x40, 0x50))
    chap = b"\x07" + hashlib.md5(b"\x07" + b"password" + challenge).digest()
    klass = tlv(25, b"cw1:0123456789abcdef0123:c")
    tunnel = (
        tlv(64, b"\x01\x00\x00\x0d")  # Tunnel-Type, tag 1 = VLAN
        + tlv(65, b"\x01\x00\x00\x06")  # Tunnel-Medium-Type, tag 1 = 802
        + tlv(81, b"\x0142")  # Tunnel-Private-Group-Id, tag 1
        + tlv(69, b"\x01\x80\x01" + bytes(16))  # Tunnel-Password: tag, salt, string
    )
    acct = tlv(1, user) + tlv(44, b"sess-0001") + common + tlv(8, bytes((10, 0, 0, 7)))
    return {
        "auth-pap": request(1, 1, tlv(1, user) + tlv(2, pap(b"password")) + common),
        "auth-chap": request(1, 2, tlv(1, user) + tlv(3, chap) + tlv(60, challenge) + common),
        "auth-mac": request(1, 3, tlv(1, mac) + tlv(2, pap(mac)) + common),
        "auth-proxy-state": request(
            1, 4, tlv(1, user) + tlv(2, pap(b"pw")) + tlv(PROXY_STATE, b"hop1") + tlv(33, b"h2")
        ),
        "auth-vsa-tunnel": request(
            1,
            5,
            tlv(1, user)
            + tlv(2, pap(b"pw"))
            + vsa(14122, tlv(1, b"isocc=cn,cc=86,ac=311,network=CityWiFi"))
            + vsa(14559, u32(4, 1000) + u32(5, 2000))
            + tunnel,
        ),
        "auth-status": request(12, 6, b""),
        "acct-start": request(4, 7, u32(40, 1) + acct, ma=False),
        "acct-interim": request(
            4,
            8,
            u32(40, 3)
            + acct
            + klass
            + u32(46, 600)
            + u32(42, 12345)
            + u32(43, 67890)
            + u32(52, 1)
            + u32(53, 2)
            + u32(41, 5),
            ma=False,
        ),
        "acct-stop": request(4, 9, u32(40, 2) + acct + klass + u32(46, 900) + u32(49, 1)),
        "acct-on": request(4, 10, u32(40, 7) + tlv(32, b"nas-1"), ma=False),
        "acct-status": request(12, 11, b""),
    }


def pending_packets() -> dict[str, bytes]:
    """Datagrams that found a bug not fixed yet (tests/test_fuzz_server.py, xfail). With
    the fix, move the file to ``crashers/`` so the fuzz pass replays it."""
    ones = u32(42, 0xFFFFFFFF) + u32(52, 0xFFFFFFFF) + u32(43, 0xFFFFFFFF) + u32(53, 0xFFFFFFFF)
    overflow = tlv(44, b"poison") + tlv(1, b"poison") + ones
    return {
        # its Access-Reject cannot hold the Reply-Message and the echoed Proxy-States
        "auth-proxy-state-fills-reply": request(
            1, 61, tlv(1, b"x") + tlv(PROXY_STATE, bytes(253)) * 15 + tlv(PROXY_STATE, bytes(180))
        ),
        # no Acct-Status-Type (RFC 2866 §5.1: required; docs/radius.md: no answer)
        "acct-no-status-type": request(4, 51, tlv(44, b"no-status") + u32(46, 60), ma=False),
        # a Class whose person id has the '|' that splits open-session index members
        "acct-class-pid-separator": request(
            4,
            71,
            u32(40, 1) + tlv(44, b"forged-1") + tlv(25, b"cw1:aaaaaaaaaa|bbbbbbbbb:c"),
            ma=False,
        ),
        # (2^32 - 1) * 2^32 + 2^32 - 1 octets: more than the archive's BIGINT holds
        "acct-octets-overflow-start": request(4, 81, u32(40, 1) + u32(46, 0) + overflow, ma=False),
        "acct-octets-overflow-stop": request(4, 82, u32(40, 2) + u32(46, 60) + overflow, ma=False),
    }


def pending(name: str) -> bytes:
    """A finding by name, from ``pending/`` or, once fixed and moved, ``crashers/``."""
    path = PENDING / f"{name}.bin"
    return (path if path.exists() else CRASHERS / f"{name}.bin").read_bytes()


def corpus() -> Iterator[tuple[str, bytes]]:
    """Every datagram kept in ``tests/fuzz_corpus`` (seeds first), by file name."""
    for folder in (SEEDS, CRASHERS):
        for path in sorted(folder.glob("*.bin")):
            yield f"{folder.name}/{path.name}", path.read_bytes()


# --------------------------------------------------------------------------- mutations


def _attr_offsets(data: bytes) -> list[tuple[int, int, int]]:
    length = (data[2] << 8) | data[3] if len(data) >= 4 else 0
    return walk(data, min(length, len(data))) or []


def _boundary(data: bytes, rng: random.Random) -> int:
    """A position between attributes (or the end of the header)."""
    spots = [20] + [pos + n for pos, _, n in _attr_offsets(data)]
    return min(rng.choice(spots), len(data))


def hostile_attribute(rng: random.Random) -> bytes:
    """One attribute an attacker or a broken NAS might send (well-formed TLV)."""
    kind = rng.randrange(12)
    if kind == 0:  # Message-Authenticator of the wrong length
        return tlv(MA, rng.randbytes(rng.choice((0, 1, 8, 15, 17, 32, 253))))
    if kind == 1:  # another Message-Authenticator (duplicate)
        return tlv(MA, rng.randbytes(16))
    if kind == 2:  # Proxy-State
        return tlv(PROXY_STATE, rng.randbytes(rng.randrange(0, 254)))
    if kind == 3:  # VSA of an unknown vendor, sub-attributes of any length
        inner = rng.randbytes(rng.randrange(0, 60))
        return vsa(rng.randrange(2**32), inner)
    if kind == 4:  # a known vendor's VSA with a sub-attribute length that lies
        vtype, value = rng.randrange(256), rng.randbytes(rng.randrange(0, 20))
        sub = bytes((vtype, rng.choice((0, 1, len(value) + 3, 255)))) + value
        return vsa(rng.choice((14122, 14559, 9, 311)), sub)
    if kind == 5:  # Tunnel-Password: tag (0..0xff), salt (high bit or not), any string
        salt = bytes((rng.choice((0x00, 0x7F, 0x80, 0xFF)), rng.randrange(256)))
        return tlv(69, bytes((rng.randrange(256),)) + salt + rng.randbytes(rng.randrange(0, 40)))
    if kind == 6:  # tagged Tunnel attributes with odd tags and lengths
        atype = rng.choice((64, 65, 66, 67, 81, 82, 83, 90, 91))
        return tlv(atype, bytes((rng.choice((0, 1, 0x1F, 0x20, 0xFF)),)) + rng.randbytes(3))
    if kind == 7:  # User-Password of a length that is not a multiple of 16
        return tlv(2, rng.randbytes(rng.choice((0, 1, 15, 17, 33, 144, 253))))
    if kind == 8:  # CHAP-Password of the wrong length, CHAP-Challenge of any length
        return tlv(rng.choice((3, 60)), rng.randbytes(rng.choice((0, 1, 16, 17, 18, 253))))
    if kind == 9:  # integers of the wrong size / extreme values
        atype = rng.choice((40, 41, 42, 43, 46, 49, 52, 53, 55, 61, 85))
        value = rng.choice((b"", b"\x00", b"\xff" * 4, b"\x00" * 8, rng.randbytes(4)))
        return tlv(atype, value)
    if kind == 10:  # text with invalid UTF-8, NULs, huge or MAC-like content
        atype = rng.choice((1, 25, 30, 31, 32, 44, 87))
        value = rng.choice(
            (
                b"\xff\xfe\x00\x80",
                b"cw1:" + rng.randbytes(20) + b":c",
                b"cw1:{}|:{}|:{}|:{}|:{}|:c",
                b"aa:bb:cc:dd:ee:ff\n",
                b"%s%n{}" * 10,
                rng.randbytes(253),
            )
        )
        return tlv(atype, value[:253])
    return tlv(rng.randrange(256), rng.randbytes(rng.randrange(0, 254)))


def _flip(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        if out:
            i = rng.randrange(len(out))
            out[i] ^= 1 << rng.randrange(8)
    return bytes(out)


def _set_byte(data: bytes, rng: random.Random) -> bytes:
    if not data:
        return data
    out = bytearray(data)
    out[rng.randrange(len(out))] = rng.choice((0, 1, 2, 0x7F, 0x80, 0xFE, 0xFF))
    return bytes(out)


def _truncate(data: bytes, rng: random.Random) -> bytes:
    return data[: rng.randrange(len(data) + 1)]


def _extend(data: bytes, rng: random.Random) -> bytes:
    size = rng.choice((1, 2, 16, 64, 4096, 5000 - len(data)))
    return data + rng.randbytes(max(1, size))


def _length_field(data: bytes, rng: random.Random) -> bytes:
    if len(data) < 4:
        return data
    value = rng.choice((*INTERESTING_LENGTHS, len(data) - 1, len(data) + 1, rng.randrange(0x10000)))
    return data[:2] + struct.pack(">H", max(0, min(value, 0xFFFF))) + data[4:]


def _attr_length(data: bytes, rng: random.Random) -> bytes:
    attrs = _attr_offsets(data)
    if not attrs:
        return data
    pos, _, n = rng.choice(attrs)
    out = bytearray(data)
    out[pos + 1] = rng.choice((0, 1, 2, n - 1, n + 1, 255, rng.randrange(256))) & 0xFF
    return bytes(out)


def _insert(data: bytes, rng: random.Random) -> bytes:
    at = _boundary(data, rng)
    return data[:at] + hostile_attribute(rng) + data[at:]


def _delete(data: bytes, rng: random.Random) -> bytes:
    attrs = _attr_offsets(data)
    if not attrs:
        return data
    pos, _, n = rng.choice(attrs)
    return data[:pos] + data[pos + n :]


def _duplicate(data: bytes, rng: random.Random) -> bytes:
    attrs = _attr_offsets(data)
    if not attrs:
        return data
    pos, _, n = rng.choice(attrs)
    at = _boundary(data, rng)
    return data[:at] + data[pos : pos + n] + data[at:]


def _replace(data: bytes, rng: random.Random) -> bytes:
    """An attribute replaced by a hostile one, half the time keeping its type."""
    attrs = _attr_offsets(data)
    if not attrs:
        return data
    pos, atype, n = rng.choice(attrs)
    new = hostile_attribute(rng)
    if rng.random() < 0.5:
        new = bytes((atype,)) + new[1:]
    return data[:pos] + new + data[pos + n :]


def _bad_tail(data: bytes, rng: random.Random) -> bytes:
    """An attribute header of length 0 or 1, or one running past the end."""
    bad = rng.choice((b"\x01\x00", b"\x01\x01", b"\x01", b"\x1a\x09abc", b"\x50\x12" + bytes(3)))
    return data + bad


def _code(data: bytes, rng: random.Random) -> bytes:
    if not data:
        return data
    return bytes((rng.choice(INTERESTING_CODES),)) + data[1:]


MUTATORS: tuple[Callable[[bytes, random.Random], bytes], ...] = (
    _flip,
    _set_byte,
    _truncate,
    _extend,
    _length_field,
    _attr_length,
    _insert,
    _insert,
    _delete,
    _duplicate,
    _replace,
    _bad_tail,
    _code,
)


SEMANTIC: tuple[Callable[[bytes, random.Random], bytes], ...] = (
    _insert,
    _delete,
    _duplicate,
    _replace,
    _replace,
)


def mutate(data: bytes, rng: random.Random, secret: bytes = SECRET) -> bytes:
    """A third of the time: attributes inserted, deleted, duplicated or replaced, the
    Length made to fit and the packet re-signed, so the request reaches the handlers.
    Otherwise one to three mutations of any kind; then, half the time, the Length is
    made to fit and the packet re-signed, so it gets past the authenticators."""
    if rng.random() < 1 / 3:
        for _ in range(rng.randint(1, 3)):
            data = rng.choice(SEMANTIC)(data, rng)
        return resign(fix_length(data), secret)
    for _ in range(rng.randint(1, 3)):
        data = rng.choice(MUTATORS)(data, rng)
    if rng.random() < 0.5:
        if rng.random() < 0.8:
            data = fix_length(data)
        data = resign(data, secret)
    return data[:65507]  # the largest UDP payload over IPv4


def mutations(seeds: list[bytes], count: int, seed: int, secret: bytes = SECRET) -> Iterator[bytes]:
    """``count`` mutated datagrams from ``seeds``, the same ones for the same ``seed``."""
    rng = random.Random(seed)
    for _ in range(count):
        yield mutate(rng.choice(seeds), rng, secret)


def write_seeds() -> None:
    """Rewrite ``tests/fuzz_corpus/seeds`` (and ``pending``) from the builders here."""
    for folder, packets in ((SEEDS, seed_packets()), (PENDING, pending_packets())):
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in packets.items():
            if not (CRASHERS / f"{name}.bin").exists():  # a fixed finding stays where it is
                (folder / f"{name}.bin").write_bytes(data)


if __name__ == "__main__":
    write_seeds()
    print(f"wrote the seeds to {SEEDS} and open findings to {PENDING}", file=sys.stderr)
