"""MS-MPPE-Send-Key and MS-MPPE-Recv-Key (RFC 2548 §2.4.2, §2.4.3): the EAP keys to the NAS.

After a successful EAP method the access point needs the MSK to run the 802.11 4-way
handshake (IEEE 802.11 §12.7.1.3: the PMK is the first 256 bits of the MSK). RADIUS hands
it over in two Microsoft vendor attributes (vendor 311): MS-MPPE-Recv-Key carries the
first 32 octets of the MSK and MS-MPPE-Send-Key the next 32 (RFC 5216 §2.3, which
RFC 5281 §8 follows for TTLS; "receive" is the NAS's direction from the peer).

Each value is ``Salt (2 octets, high bit set, unique per packet) ‖ ciphertext`` where the
plaintext ``Key-Length (1) ‖ key ‖ zero padding`` is a multiple of 16 octets and is
hidden like a User-Password, chained from MD5(secret ‖ Request-Authenticator ‖ Salt)
(RFC 2548 §2.4.2). Pure: the salts are arguments.
"""

from __future__ import annotations

import hashlib
from typing import Final

from radius.packet import vsa

__all__ = [
    "MS_MPPE_RECV_KEY",
    "MS_MPPE_SEND_KEY",
    "VENDOR_MICROSOFT",
    "decrypt_mppe_key",
    "encrypt_mppe_key",
    "mppe_key_attrs",
]

VENDOR_MICROSOFT: Final = 311
MS_MPPE_SEND_KEY: Final = 16
MS_MPPE_RECV_KEY: Final = 17


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def encrypt_mppe_key(key: bytes, secret: bytes, request_authenticator: bytes, salt: bytes) -> bytes:
    """The attribute value for ``key`` (RFC 2548 §2.4.2): ``salt`` then the encrypted
    ``len(key) ‖ key ‖ padding``. ``salt`` is two octets with the high bit of the first
    set; RFC 2548 asks that the salts of one packet differ."""
    if len(salt) != 2 or not salt[0] & 0x80:
        raise ValueError("the salt is two octets with the most significant bit set")
    if len(request_authenticator) != 16:
        raise ValueError("the Request Authenticator is 16 octets")
    if not 1 <= len(key) <= 239:
        raise ValueError(f"key of {len(key)} octets")
    plain = bytes((len(key),)) + key
    plain += bytes(-len(plain) % 16)
    out: list[bytes] = []
    chain = request_authenticator + salt
    for pos in range(0, len(plain), 16):
        block = _xor(plain[pos : pos + 16], hashlib.md5(secret + chain).digest())
        out.append(block)
        chain = block
    return salt + b"".join(out)


def decrypt_mppe_key(value: bytes, secret: bytes, request_authenticator: bytes) -> bytes:
    """The key inside an MS-MPPE-*-Key value (the NAS's side of RFC 2548 §2.4.2; used by
    tests and simulators). Raises ValueError for a malformed value."""
    body = value[2:]
    if len(value) < 18 or len(body) % 16:
        raise ValueError(f"MS-MPPE key value of {len(value)} octets")
    plain: list[bytes] = []
    chain = request_authenticator + value[:2]
    for pos in range(0, len(body), 16):
        block = body[pos : pos + 16]
        plain.append(_xor(block, hashlib.md5(secret + chain).digest()))
        chain = block
    joined = b"".join(plain)
    if joined[0] > len(joined) - 1:
        raise ValueError("MS-MPPE key length beyond the value")
    return joined[1 : 1 + joined[0]]


def mppe_key_attrs(
    msk: bytes, secret: bytes, request_authenticator: bytes, salts: tuple[bytes, bytes]
) -> bytes:
    """MS-MPPE-Recv-Key (MSK octets 0–31) and MS-MPPE-Send-Key (octets 32–63) as two
    Vendor-Specific attributes for an Access-Accept answering the request whose
    authenticator is given. ``salts`` (recv, send) must differ (RFC 2548 §2.4.2)."""
    if len(msk) < 64:
        raise ValueError(f"MSK of {len(msk)} octets (at least 64)")
    recv_salt, send_salt = salts
    if recv_salt == send_salt:
        raise ValueError("the two salts of one packet differ")
    recv = encrypt_mppe_key(msk[:32], secret, request_authenticator, recv_salt)
    send = encrypt_mppe_key(msk[32:64], secret, request_authenticator, send_salt)
    return vsa(VENDOR_MICROSOFT, MS_MPPE_RECV_KEY, recv) + vsa(
        VENDOR_MICROSOFT, MS_MPPE_SEND_KEY, send
    )
