"""EAP codec and RADIUS carriage (RFC 3748, RFC 3579), the State table, MS-MPPE keys
(RFC 2548): pure parts, no sockets."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
from radius.mppe import (
    MS_MPPE_RECV_KEY,
    MS_MPPE_SEND_KEY,
    VENDOR_MICROSOFT,
    decrypt_mppe_key,
    encrypt_mppe_key,
    mppe_key_attrs,
)
from radius.packet import attr, decode_request, encode_request

SECRET = b"testing123"


def _access_request(attrs: bytes, *, message_authenticator: bool = True) -> bytes:
    return encode_request(
        Code.ACCESS_REQUEST, 7, SECRET, attrs, message_authenticator=message_authenticator
    )


# -- codec ----------------------------------------------------------------------------


def test_identity_response_round_trip() -> None:
    packet = EapPacket(EapCode.RESPONSE, 3, EapType.IDENTITY, b"anonymous@city.example")
    wire = packet.encode()
    assert wire[:4] == bytes((2, 3, 0, 27))
    assert decode_eap(wire) == packet


def test_success_and_failure_have_no_type() -> None:
    assert EapPacket(EapCode.SUCCESS, 9).encode() == bytes((3, 9, 0, 4))
    assert decode_eap(bytes((4, 9, 0, 4))) == EapPacket(EapCode.FAILURE, 9)
    with pytest.raises(ValueError):
        EapPacket(EapCode.SUCCESS, 1, EapType.TTLS).encode()


def test_padding_after_length_is_ignored() -> None:
    assert decode_eap(bytes((3, 1, 0, 4)) + b"pad") == EapPacket(EapCode.SUCCESS, 1)


@pytest.mark.parametrize(
    "wire",
    [
        b"",
        bytes((1, 1, 0)),
        bytes((1, 1, 0, 3)),  # Length below the header
        bytes((1, 1, 0, 9, 1)),  # Length past the data
        bytes((2, 1, 0, 4)),  # a Response without a Type
        bytes((5, 1, 0, 4)),  # no such code
    ],
)
def test_malformed_packets_are_refused(wire: bytes) -> None:
    with pytest.raises(EapError) as err:
        decode_eap(wire)
    assert err.value.reason == "malformed_eap"


# -- RADIUS carriage --------------------------------------------------------------------


@settings(max_examples=60, derandomize=True)
@given(st.binary(min_size=1, max_size=3000))
def test_eap_message_split_and_join(body: bytes) -> None:
    """Any EAP packet up to 3000 octets crosses RADIUS as EAP-Message attributes of at
    most 253 octets and comes out identical (RFC 3579 §3.1)."""
    eap = EapPacket(EapCode.RESPONSE, 1, EapType.TTLS, body).encode()
    attrs = eap_message_attrs(eap)
    request = decode_request(_access_request(attrs), SECRET)
    parts = request.all(Attr.EAP_MESSAGE)
    assert all(len(p) <= 253 for p in parts)
    assert len(parts) == -(-len(eap) // 253)
    assert eap_from_request(request) == eap


def test_eap_message_needs_message_authenticator() -> None:
    """RFC 3579 §3.3: an Access-Request with EAP-Message but no Message-Authenticator is
    discarded, even for a client that does not require one otherwise."""
    eap = EapPacket(EapCode.RESPONSE, 1, EapType.IDENTITY, b"a").encode()
    wire = _access_request(eap_message_attrs(eap), message_authenticator=False)
    request = decode_request(wire, SECRET, require_message_authenticator=False)
    with pytest.raises(EapError) as err:
        eap_from_request(request)
    assert err.value.reason == "missing_message_authenticator"


def test_joined_octets_must_be_one_packet() -> None:
    eap = EapPacket(EapCode.RESPONSE, 1, EapType.IDENTITY, b"abc").encode()
    request = decode_request(_access_request(eap_message_attrs(eap) + attr(79, b"x")), SECRET)
    with pytest.raises(EapError) as err:
        eap_from_request(request)
    assert err.value.reason == "malformed_eap"
    with pytest.raises(EapError) as err:
        eap_from_request(decode_request(_access_request(attr(1, b"u")), SECRET))
    assert err.value.reason == "missing_eap_message"


# -- State table ------------------------------------------------------------------------


def test_state_is_single_use_and_bound_to_the_client() -> None:
    table: StateTable[str] = StateTable(lifetime=60, max_entries=8)
    state = table.put("conversation", "nas-a", now=100.0)
    assert len(state) == 16
    assert table.take(state, "nas-b", now=101.0) is None  # another client: nothing
    assert table.take(state, "nas-a", now=101.0) == "conversation"
    assert table.take(state, "nas-a", now=101.0) is None  # used: a replay finds nothing


def test_state_expires() -> None:
    table: StateTable[str] = StateTable(lifetime=60, max_entries=8)
    old = table.put("old", "nas", now=0.0)
    assert table.take(old, "nas", now=60.0) is None
    table.put("a", "nas", now=0.0)
    table.put("b", "nas", now=30.0)
    assert table.expire(now=61.0) == 1
    assert len(table) == 1


def test_state_table_is_bounded() -> None:
    """A flood of EAP starts drops the oldest conversations, never grows past the bound."""
    table: StateTable[int] = StateTable(lifetime=60, max_entries=100)
    states = [table.put(i, "nas", now=float(i) / 1000) for i in range(1000)]
    assert len(table) == 100
    assert table.evicted == 900
    assert table.take(states[0], "nas", now=1.0) is None
    assert table.take(states[-1], "nas", now=1.0) == 999


# -- MS-MPPE keys -----------------------------------------------------------------------

AUTHENTICATOR = bytes(range(16))


def _reference_encrypt(key: bytes, secret: bytes, auth: bytes, salt: bytes) -> bytes:
    """RFC 2548 §2.4.2 written out for a 32-octet key: P = len ‖ key ‖ 15 zeros (48
    octets); b(1) = MD5(S + R + A), c(1) = p(1) xor b(1); b(i) = MD5(S + c(i-1))."""
    plain = bytes((len(key),)) + key + bytes(15)
    b1 = hashlib.md5(secret + auth + salt).digest()
    c1 = bytes(x ^ y for x, y in zip(plain[:16], b1, strict=True))
    b2 = hashlib.md5(secret + c1).digest()
    c2 = bytes(x ^ y for x, y in zip(plain[16:32], b2, strict=True))
    b3 = hashlib.md5(secret + c2).digest()
    c3 = bytes(x ^ y for x, y in zip(plain[32:], b3, strict=True))
    return salt + c1 + c2 + c3


def test_mppe_key_matches_the_rfc_construction() -> None:
    key = bytes(range(32, 64))
    value = encrypt_mppe_key(key, SECRET, AUTHENTICATOR, b"\x80\x01")
    assert value == _reference_encrypt(key, SECRET, AUTHENTICATOR, b"\x80\x01")
    assert len(value) == 2 + 48
    assert decrypt_mppe_key(value, SECRET, AUTHENTICATOR) == key


def test_mppe_pinned_vector() -> None:
    """A fixed vector (secret testing123, authenticator 00..0f, salt 8001, key 20..3f).
    RFC 2548 gives none; the algorithm is checked against two independent decoders in
    tests/test_eap_peers.py (FreeRADIUS's radclient and wpa_supplicant's eapol_test),
    this pins our output so a change shows."""
    value = encrypt_mppe_key(bytes(range(32, 64)), SECRET, AUTHENTICATOR, b"\x80\x01")
    assert value.hex() == PINNED


PINNED = (
    "8001"
    "1284256f293e001ee80f9941999638dd"
    "6282a8d84c9f77c0ea5227ef36ed840c"
    "f1df2a6c451199e118495daa69f34419"
)


def test_mppe_refuses_bad_salts_and_short_msk() -> None:
    with pytest.raises(ValueError):
        encrypt_mppe_key(b"k" * 32, SECRET, AUTHENTICATOR, b"\x00\x01")  # high bit clear
    with pytest.raises(ValueError):
        mppe_key_attrs(b"m" * 64, SECRET, AUTHENTICATOR, (b"\x80\x01", b"\x80\x01"))
    with pytest.raises(ValueError):
        mppe_key_attrs(b"m" * 63, SECRET, AUTHENTICATOR, (b"\x80\x01", b"\x80\x02"))


def test_mppe_attrs_carry_recv_then_send() -> None:
    """Recv-Key is MSK[0:32], Send-Key MSK[32:64] (RFC 5216 §2.3, as RFC 5281 §8)."""
    msk = bytes(range(64))
    attrs = mppe_key_attrs(msk, SECRET, AUTHENTICATOR, (b"\x80\x01", b"\x80\x02"))
    wire = _access_request(attrs)
    request = decode_request(wire, SECRET)
    recv = request.vsas[(VENDOR_MICROSOFT, MS_MPPE_RECV_KEY)][0]
    send = request.vsas[(VENDOR_MICROSOFT, MS_MPPE_SEND_KEY)][0]
    assert decrypt_mppe_key(recv, SECRET, AUTHENTICATOR) == msk[:32]
    assert decrypt_mppe_key(send, SECRET, AUTHENTICATOR) == msk[32:]


def test_dictionary_names_the_mppe_keys() -> None:
    """radius/dictionaries (FreeRADIUS format, read by pyrad here and by the peers'
    tools) knows the two vendor attributes we now send, salt-encrypted."""
    from pyrad.dictionary import Dictionary

    from radius.attrs import DICTIONARY_DIR

    d = Dictionary(str(DICTIONARY_DIR / "dictionary"))
    for name, vtype in (
        ("MS-MPPE-Send-Key", MS_MPPE_SEND_KEY),
        ("MS-MPPE-Recv-Key", MS_MPPE_RECV_KEY),
    ):
        attribute = d.attributes[name]
        assert (attribute.vendor, attribute.code, attribute.encrypt) == ("Microsoft", vtype, 2)
    assert d.vendors.GetForward("Microsoft") == VENDOR_MICROSOFT
