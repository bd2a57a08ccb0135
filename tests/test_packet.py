"""radius.packet: unit and property tests, and cross-checks against pyrad (a real peer)."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyrad.packet import AcctPacket, AuthPacket, CoAPacket

from radius.attrs import VENDOR_CHILLI, VENDOR_WISPR, AcctStatus, Attr, Code
from radius.packet import (
    MAX_PACKET,
    PacketError,
    Request,
    _hmac_md5,
    attr,
    attr_int,
    attr_text,
    attr_text_split,
    chap_challenge,
    chap_matches,
    decode_reply,
    decode_request,
    decrypt_user_password,
    encode_reply,
    encode_request,
    encrypt_user_password,
    vsa,
)
from tests.support.pyrad_client import load_dictionary

SECRET = b"s3cret-shared"
AUTH = bytes(range(16))
REQUEST_CODES = [
    Code.ACCESS_REQUEST,
    Code.ACCOUNTING_REQUEST,
    Code.STATUS_SERVER,
    Code.DISCONNECT_REQUEST,
    Code.COA_REQUEST,
]
REPLY_FOR = {
    Code.ACCESS_REQUEST: Code.ACCESS_ACCEPT,
    Code.ACCOUNTING_REQUEST: Code.ACCOUNTING_RESPONSE,
    Code.STATUS_SERVER: Code.ACCESS_ACCEPT,
    Code.DISCONNECT_REQUEST: Code.DISCONNECT_ACK,
    Code.COA_REQUEST: Code.COA_NAK,
}

standard_types = st.integers(1, 255).filter(
    lambda t: t not in (Attr.VENDOR_SPECIFIC, Attr.MESSAGE_AUTHENTICATOR)
)
standard_attrs = st.lists(st.tuples(standard_types, st.binary(max_size=253)), max_size=14)
vendor_attrs = st.lists(
    st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 255), st.binary(max_size=247)),
    max_size=4,
)


def grouped(pairs: list[tuple[int, bytes]]) -> dict[int, list[bytes]]:
    out: dict[int, list[bytes]] = {}
    for t, v in pairs:
        out.setdefault(t, []).append(v)
    return out


def reason(data: bytes, secret: bytes = SECRET, **kwargs: bool) -> str:
    with pytest.raises(PacketError) as info:
        decode_request(data, secret, **kwargs)
    return info.value.reason


def access_request(attrs: bytes = b"", *, ma: bool = True, ident: int = 7) -> bytes:
    return encode_request(
        Code.ACCESS_REQUEST, ident, SECRET, attrs, authenticator=AUTH, message_authenticator=ma
    )


def resign_accounting(data: bytes, secret: bytes = SECRET) -> bytes:
    """Recompute an Accounting-Request's Request Authenticator (RFC 2866 §3) after editing."""
    digest = hashlib.md5(data[:4] + bytes(16) + data[20:] + secret).digest()
    return data[:4] + digest + data[20:]


def sign_reply(code: int, ident: int, request_auth: bytes, attrs: bytes, ma_vector: bytes) -> bytes:
    """A reply with Message-Authenticator first, signed independently of radius.packet."""
    body = bytes((80, 18)) + bytes(16) + attrs
    head = struct.pack(">BBH", code, ident, 20 + len(body))
    mac = hmac.new(SECRET, head + ma_vector + body, "md5").digest()
    body = bytes((80, 18)) + mac + attrs
    response = hashlib.md5(head + request_auth + body + SECRET).digest()
    return head + response + body


def decode_everything(data: bytes) -> None:
    """Run every decoder on ``data``; anything but PacketError propagates."""
    for require in (True, False):
        with contextlib.suppress(PacketError):
            decode_request(data, SECRET, require_message_authenticator=require)
    with contextlib.suppress(PacketError):
        decode_reply(data, SECRET, AUTH)


# --- round trips and fuzzing -------------------------------------------------------------


@given(
    code=st.sampled_from(REQUEST_CODES),
    ident=st.integers(0, 255),
    pairs=standard_attrs,
    vendors=vendor_attrs,
    ma=st.booleans(),
)
def test_request_round_trip(
    code: Code,
    ident: int,
    pairs: list[tuple[int, bytes]],
    vendors: list[tuple[int, int, bytes]],
    ma: bool,
) -> None:
    if code == Code.STATUS_SERVER:
        ma = True
    encoded = b"".join(attr(t, v) for t, v in pairs) + b"".join(vsa(*x) for x in vendors)
    data = encode_request(code, ident, SECRET, encoded, message_authenticator=ma)
    if code == Code.ACCESS_REQUEST and not ma and any(t == Attr.PROXY_STATE for t, _ in pairs):
        reasoned = reason(data, require_message_authenticator=False)
        assert reasoned == "proxy_state_without_message_authenticator"
        return
    req = decode_request(data, SECRET, require_message_authenticator=ma)
    assert (req.code, req.identifier, req.raw) == (code, ident, data)
    assert req.authenticator == data[4:20]
    want = grouped(pairs)
    if ma:
        assert data[20:22] == b"\x50\x12"
        want = {Attr.MESSAGE_AUTHENTICATOR: [data[22:38]], **want}
    assert req.attrs == want
    want_vsas: dict[tuple[int, int], list[bytes]] = {}
    for vendor, vtype, value in vendors:
        want_vsas.setdefault((vendor, vtype), []).append(value)
    assert req.vsas == want_vsas


@settings(max_examples=500)
@given(st.binary(max_size=300))
def test_random_bytes_only_raise_packet_error(data: bytes) -> None:
    decode_everything(data)


@settings(max_examples=500)
@given(
    code=st.sampled_from([*REQUEST_CODES, 2, 5, 41]),
    body=st.binary(max_size=300),
    extra=st.integers(-3, 3),
)
def test_random_attributes_only_raise_packet_error(code: int, body: bytes, extra: int) -> None:
    length = max(0, 20 + len(body) + extra)
    data = struct.pack(">BBH", code, 1, length) + AUTH + body
    decode_everything(data)


@given(st.binary(min_size=1, max_size=200), st.binary(max_size=600))
def test_cached_hmac_md5_is_hmac_md5(secret: bytes, message: bytes) -> None:
    assert _hmac_md5(secret, message) == hmac.digest(secret, message, "md5")


@given(st.binary(min_size=1, max_size=200))
def test_any_secret_length(secret: bytes) -> None:
    data = encode_request(Code.STATUS_SERVER, 1, secret, attr(Attr.USER_NAME, b"u"))
    req = decode_request(data, secret)
    assert AuthPacket(
        packet=data, secret=secret, dict=load_dictionary()
    ).verify_message_authenticator()
    reply = encode_reply(Code.ACCESS_ACCEPT, req, secret)
    assert decode_reply(reply, secret, req.authenticator).code == Code.ACCESS_ACCEPT


def test_padding_beyond_length_is_ignored() -> None:
    data = access_request(attr_text(Attr.USER_NAME, "alice"))
    req = decode_request(data + b"\x00trailing junk", SECRET)
    assert req.raw == data
    assert req.text(Attr.USER_NAME) == "alice"


# --- every drop reason ------------------------------------------------------------------


def test_malformed() -> None:
    good = access_request(attr_text(Attr.USER_NAME, "alice"))
    assert reason(good[:19]) == "malformed"
    assert reason(good[:-1]) == "malformed"
    assert reason(good[:2] + struct.pack(">H", 19) + good[4:]) == "malformed"
    assert reason(good[:2] + struct.pack(">H", 4097) + good[4:] + bytes(4097)) == "malformed"
    zero_len = access_request(b"\x01\x00")
    assert reason(zero_len) == "malformed"
    one_len = access_request(b"\x01\x01")
    assert reason(one_len) == "malformed"
    overflow = access_request(b"\x01\x09abc")
    assert reason(overflow) == "malformed"
    lone_octet = access_request(b"\x01")
    assert reason(lone_octet) == "malformed"


def test_length_limits() -> None:
    filler = attr(Attr.CLASS, bytes(200)) * 20
    biggest = access_request(filler + attr(Attr.STATE, bytes(16)))
    assert len(biggest) == MAX_PACKET
    assert decode_request(biggest, SECRET).code == Code.ACCESS_REQUEST
    with pytest.raises(ValueError):
        access_request(filler + attr(Attr.STATE, bytes(17)))


def test_two_message_authenticators_are_malformed() -> None:
    data = access_request(bytes((80, 18)) + bytes(16))
    assert reason(data) == "malformed"


def test_unexpected_code() -> None:
    for code in (0, 2, 3, 5, 11, 13, 41, 255):
        data = struct.pack(">BBH", code, 1, 20) + AUTH
        assert reason(data) == "unexpected_code"


def test_missing_message_authenticator() -> None:
    data = access_request(attr_text(Attr.USER_NAME, "alice"), ma=False)
    assert reason(data) == "missing_message_authenticator"
    assert decode_request(data, SECRET, require_message_authenticator=False).code == 1


def test_status_server_always_needs_message_authenticator() -> None:
    data = encode_request(Code.STATUS_SERVER, 1, SECRET, b"", message_authenticator=False)
    assert reason(data, require_message_authenticator=False) == "missing_message_authenticator"


def test_proxy_state_without_message_authenticator() -> None:
    data = access_request(attr(Attr.PROXY_STATE, b"hop"), ma=False)
    reasoned = reason(data, require_message_authenticator=False)
    assert reasoned == "proxy_state_without_message_authenticator"
    with_ma = access_request(attr(Attr.PROXY_STATE, b"hop"))
    req = decode_request(with_ma, SECRET, require_message_authenticator=False)
    assert req.all(Attr.PROXY_STATE) == [b"hop"]


def test_bad_message_authenticator() -> None:
    data = access_request(attr_text(Attr.USER_NAME, "alice"))
    assert reason(data, b"wrong secret") == "bad_message_authenticator"
    flipped = bytearray(data)
    flipped[25] ^= 1
    assert reason(bytes(flipped)) == "bad_message_authenticator"
    other_user = data[:-5] + b"mally"
    assert reason(other_user) == "bad_message_authenticator"
    short_ma = access_request(b"\x50\x0a" + bytes(8), ma=False)
    assert reason(short_ma, require_message_authenticator=False) == "bad_message_authenticator"


def test_bad_request_authenticator() -> None:
    attrs = attr_int(Attr.ACCT_STATUS_TYPE, AcctStatus.START)
    for code in (Code.ACCOUNTING_REQUEST, Code.DISCONNECT_REQUEST, Code.COA_REQUEST):
        data = encode_request(code, 3, SECRET, attrs)
        assert decode_request(data, SECRET).code == code
        assert reason(data, b"wrong secret") == "bad_request_authenticator"
        assert reason(data[:-1] + b"\x02") == "bad_request_authenticator"


def test_accounting_message_authenticator_is_checked() -> None:
    data = encode_request(Code.ACCOUNTING_REQUEST, 3, SECRET, attr_int(Attr.ACCT_STATUS_TYPE, 1))
    tampered = bytearray(data)
    tampered[22] ^= 0xFF
    assert reason(resign_accounting(bytes(tampered))) == "bad_message_authenticator"
    plain = encode_request(
        Code.ACCOUNTING_REQUEST,
        3,
        SECRET,
        attr_int(Attr.ACCT_STATUS_TYPE, 1),
        message_authenticator=False,
    )
    assert Attr.MESSAGE_AUTHENTICATOR not in decode_request(plain, SECRET).attrs


# --- attributes ---------------------------------------------------------------------------


def test_request_accessors() -> None:
    attrs = (
        attr_text(Attr.USER_NAME, "张三")
        + attr_int(Attr.SESSION_TIMEOUT, 3600)
        + attr(Attr.CLASS, b"c1")
        + attr(Attr.CLASS, b"c2")
        + attr(Attr.NAS_PORT, b"\x00\x01")
        + attr(Attr.CALLED_STATION_ID, b"\xff\xfeap")
    )
    req = decode_request(access_request(attrs), SECRET)
    assert req.text(Attr.USER_NAME) == "张三"
    assert req.get(Attr.USER_NAME) == "张三".encode()
    assert req.integer(Attr.SESSION_TIMEOUT) == 3600
    assert req.integer(Attr.NAS_PORT) is None
    assert req.integer(Attr.IDLE_TIMEOUT) is None
    assert req.get(Attr.STATE) is None
    assert req.text(Attr.STATE) is None
    assert req.all(Attr.CLASS) == [b"c1", b"c2"]
    assert req.all(Attr.STATE) == []
    assert req.text(Attr.CALLED_STATION_ID) == "\ufffd\ufffdap"


def test_vsas_and_malformed_vsa() -> None:
    wispr = vsa(VENDOR_WISPR, 1, b"isocc=cn,cc=86,ac=311,network=CityWiFi")
    chilli = (
        struct.pack(">BBI", 26, 6 + 12, VENDOR_CHILLI)
        + b"\x04\x06"
        + (1000).to_bytes(4, "big")
        + b"\x05\x06"
        + (2000).to_bytes(4, "big")
    )
    broken = struct.pack(">BBI", 26, 6 + 5, VENDOR_CHILLI) + b"\x04\x09abc"
    tiny = bytes((26, 6)) + b"\x00\x00\x36\x5f"
    req = decode_request(access_request(wispr + chilli + broken + tiny), SECRET)
    assert req.vsas == {
        (VENDOR_WISPR, 1): [b"isocc=cn,cc=86,ac=311,network=CityWiFi"],
        (VENDOR_CHILLI, 4): [(1000).to_bytes(4, "big")],
        (VENDOR_CHILLI, 5): [(2000).to_bytes(4, "big")],
    }
    assert req.all(Attr.VENDOR_SPECIFIC) == [broken[2:], tiny[2:]]


def test_encoders() -> None:
    assert attr(Attr.USER_NAME, b"bob") == b"\x01\x05bob"
    assert attr_int(Attr.SESSION_TIMEOUT, 7200) == b"\x1b\x06\x00\x00\x1c\x20"
    assert attr_text(Attr.REPLY_MESSAGE, "é") == b"\x12\x04\xc3\xa9"
    assert vsa(14122, 7, b"\x00\x00\x00\x01") == (
        b"\x1a\x0c\x00\x00\x37\x2a\x07\x06\x00\x00\x00\x01"
    )
    assert attr(Attr.CLASS, bytes(253))[1] == 255
    with pytest.raises(ValueError):
        attr(Attr.CLASS, bytes(254))
    with pytest.raises(ValueError):
        attr_text(Attr.REPLY_MESSAGE, "x" * 254)
    with pytest.raises(ValueError):
        attr_int(Attr.SESSION_TIMEOUT, -1)
    with pytest.raises(ValueError):
        attr_int(Attr.SESSION_TIMEOUT, 2**32)
    with pytest.raises(ValueError):
        vsa(VENDOR_CHILLI, 1, bytes(248))
    assert attr_text_split(Attr.REPLY_MESSAGE, "") == b""


@given(st.text(max_size=700))
def test_attr_text_split(text: str) -> None:
    data = attr_text_split(Attr.REPLY_MESSAGE, text)
    parts: list[str] = []
    pos = 0
    while pos < len(data):
        assert data[pos] == Attr.REPLY_MESSAGE
        end = pos + data[pos + 1]
        assert 3 <= data[pos + 1] <= 255
        parts.append(data[pos + 2 : end].decode("utf-8"))
        pos = end
    assert "".join(parts) == text
    assert len(parts) <= -(-len(text.encode()) // 250)


# --- passwords ----------------------------------------------------------------------------


@given(
    st.binary(max_size=128).filter(lambda p: not p.endswith(b"\x00")),
    st.binary(min_size=1, max_size=40),
    st.binary(min_size=16, max_size=16),
)
def test_pap_round_trip_and_pyrad(password: bytes, secret: bytes, authenticator: bytes) -> None:
    hidden = encrypt_user_password(password, secret, authenticator)
    assert len(hidden) == max(16, -(-len(password) // 16) * 16)
    assert decrypt_user_password(hidden, secret, authenticator) == password
    pyrad_packet = AuthPacket(secret=secret, authenticator=authenticator)
    assert pyrad_packet.PwCrypt(password) == hidden


def test_pap_lengths() -> None:
    for n in range(129):
        pw = bytes([0x41 + n % 26]) * n
        hidden = encrypt_user_password(pw, SECRET, AUTH)
        assert decrypt_user_password(hidden, SECRET, AUTH) == pw
    with pytest.raises(ValueError):
        encrypt_user_password(bytes(129), SECRET, AUTH)
    for size in (0, 1, 15, 17, 144):
        with pytest.raises(PacketError) as info:
            decrypt_user_password(bytes(size), SECRET, AUTH)
        assert info.value.reason == "malformed"


def test_chap() -> None:
    challenge = b"0123456789abcdef"
    response = hashlib.md5(b"\x2a" + b"pw" + challenge).digest()
    assert chap_matches(b"\x2a" + response, challenge, b"pw")
    assert not chap_matches(b"\x2a" + response, challenge, b"pW")
    assert not chap_matches(b"\x2b" + response, challenge, b"pw")
    assert not chap_matches(b"\x2a" + response[:-1], challenge, b"pw")
    assert not chap_matches(b"", challenge, b"pw")
    with_challenge = decode_request(access_request(attr(Attr.CHAP_CHALLENGE, challenge)), SECRET)
    assert chap_challenge(with_challenge) == challenge
    without = decode_request(access_request(), SECRET)
    assert chap_challenge(without) == AUTH


def test_chap_against_pyrad() -> None:
    d = load_dictionary()
    for use_challenge in (False, True):
        packet = AuthPacket(id=1, secret=SECRET, dict=d, User_Name="u")
        packet.add_message_authenticator()
        ident = b"\x07"
        challenge = b"C" * 16 if use_challenge else packet.authenticator
        if use_challenge:
            packet[60] = [challenge]
        packet[3] = [ident + hashlib.md5(ident + b"secret pw" + challenge).digest()]
        req = decode_request(packet.RequestPacket(), SECRET)
        chap = req.get(Attr.CHAP_PASSWORD)
        assert chap is not None
        assert chap_matches(chap, chap_challenge(req), b"secret pw")
        assert packet.VerifyChapPasswd(b"secret pw")


# --- replies --------------------------------------------------------------------------


def test_reply_layout_and_verification() -> None:
    request_attrs = attr(Attr.PROXY_STATE, b"first") + attr_text(Attr.USER_NAME, "a")
    request_attrs += attr(Attr.PROXY_STATE, b"second")
    req = decode_request(access_request(request_attrs, ident=99), SECRET)
    reply_attrs = attr_int(Attr.SESSION_TIMEOUT, 60) + attr(Attr.CLASS, b"k")
    data = encode_reply(Code.ACCESS_ACCEPT, req, SECRET, reply_attrs)
    assert data[0] == Code.ACCESS_ACCEPT and data[1] == 99
    assert struct.unpack(">H", data[2:4])[0] == len(data)
    assert data[20:22] == b"\x50\x12"
    tail = attr(Attr.PROXY_STATE, b"first") + attr(Attr.PROXY_STATE, b"second")
    assert data[38:] == reply_attrs + tail
    reply = decode_reply(data, SECRET, req.authenticator, require_message_authenticator=True)
    assert reply.code == Code.ACCESS_ACCEPT
    assert reply.integer(Attr.SESSION_TIMEOUT) == 60
    assert reply.all(Attr.PROXY_STATE) == [b"first", b"second"]
    with pytest.raises(PacketError) as info:
        decode_reply(data, b"wrong", req.authenticator)
    assert info.value.reason == "bad_response_authenticator"
    with pytest.raises(PacketError) as info:
        decode_reply(data, SECRET, bytes(16))
    assert info.value.reason == "bad_response_authenticator"


def test_reply_without_attributes_still_signed() -> None:
    req = decode_request(access_request(), SECRET)
    data = encode_reply(Code.ACCESS_REJECT, req, SECRET)
    assert len(data) == 38 and data[20:22] == b"\x50\x12"
    assert decode_reply(data, SECRET, AUTH).code == Code.ACCESS_REJECT


def test_every_reply_code_verifies() -> None:
    for code in REQUEST_CODES:
        data = encode_request(code, 5, SECRET, attr(Attr.PROXY_STATE, b"p"))
        req = decode_request(data, SECRET)
        reply_data = encode_reply(REPLY_FOR[code], req, SECRET)
        reply = decode_reply(reply_data, SECRET, req.authenticator)
        assert reply.code == REPLY_FOR[code]
        assert reply.all(Attr.PROXY_STATE) == [b"p"]


def test_reply_code_must_answer_request() -> None:
    req = decode_request(access_request(), SECRET)
    for code in (Code.ACCOUNTING_RESPONSE, Code.COA_ACK, Code.ACCESS_REQUEST):
        with pytest.raises(ValueError):
            encode_reply(code, req, SECRET)
    with pytest.raises(ValueError):
        encode_reply(Code.ACCESS_ACCEPT, req, SECRET, attr(Attr.CLASS, bytes(253)) * 17)


def test_decode_reply_message_authenticator_rules() -> None:
    attrs = attr_int(Attr.ERROR_CAUSE, 503)
    for code in (Code.ACCOUNTING_RESPONSE, Code.DISCONNECT_NAK, Code.COA_ACK):
        for vector in (AUTH, bytes(16)):
            data = sign_reply(code, 1, AUTH, attrs, vector)
            assert decode_reply(data, SECRET, AUTH).integer(Attr.ERROR_CAUSE) == 503
    zero_signed_accept = sign_reply(Code.ACCESS_ACCEPT, 1, AUTH, b"", bytes(16))
    with pytest.raises(PacketError) as info:
        decode_reply(zero_signed_accept, SECRET, AUTH)
    assert info.value.reason == "bad_message_authenticator"
    head = struct.pack(">BBH", Code.ACCESS_ACCEPT, 1, 20)
    unsigned = head + hashlib.md5(head + AUTH + SECRET).digest()
    assert decode_reply(unsigned, SECRET, AUTH).code == Code.ACCESS_ACCEPT
    with pytest.raises(PacketError) as info:
        decode_reply(unsigned, SECRET, AUTH, require_message_authenticator=True)
    assert info.value.reason == "missing_message_authenticator"
    with pytest.raises(PacketError) as info:
        decode_reply(access_request(), SECRET, AUTH)
    assert info.value.reason == "unexpected_code"


def test_encode_request_argument_checks() -> None:
    with pytest.raises(ValueError):
        encode_request(Code.ACCOUNTING_REQUEST, 1, SECRET, b"", authenticator=AUTH)
    with pytest.raises(ValueError):
        encode_request(Code.ACCESS_REQUEST, 1, SECRET, b"", authenticator=b"short")
    with pytest.raises(ValueError):
        encode_request(Code.ACCESS_ACCEPT, 1, SECRET, b"")
    with pytest.raises(ValueError):
        encode_request(Code.ACCESS_REQUEST, 256, SECRET, b"")
    a = encode_request(Code.ACCESS_REQUEST, 1, SECRET, b"")
    b = encode_request(Code.ACCESS_REQUEST, 1, SECRET, b"")
    assert a[4:20] != b[4:20]


def test_request_is_frozen() -> None:
    req = Request(1, 2, AUTH, {1: [b"x"]})
    assert req.vsas == {} and req.raw == b""
    with pytest.raises(AttributeError):
        req.code = 3  # type: ignore[misc]


# --- cross-checks with pyrad ------------------------------------------------------------


def pyrad_verifies(request: Any, data: bytes) -> bool:
    reply = request.CreateReply(packet=data)
    return bool(request.VerifyReply(reply, data, enforce_ma=True))


def test_pyrad_access_request_and_our_reply() -> None:
    d = load_dictionary()
    packet = AuthPacket(
        id=42,
        secret=SECRET,
        dict=d,
        User_Name="13800138000",
        NAS_Identifier="ap-1",
        NAS_IP_Address="192.0.2.10",
        NAS_Port_Type="Wireless-802.11",
        Called_Station_Id="00-11-22-33-44-55:i-Test",
    )
    packet.add_message_authenticator()
    packet["User-Password"] = packet.PwCrypt("otp-123456")
    packet["Proxy-State"] = [b"proxy-1", b"proxy-2"]
    raw = packet.RequestPacket()
    assert raw[20] == Attr.MESSAGE_AUTHENTICATOR
    req = decode_request(raw, SECRET)
    assert req.identifier == 42
    assert req.text(Attr.USER_NAME) == "13800138000"
    assert req.get(Attr.NAS_IP_ADDRESS) == bytes((192, 0, 2, 10))
    assert req.integer(Attr.NAS_PORT_TYPE) == 19
    hidden = req.get(Attr.USER_PASSWORD)
    assert hidden is not None
    assert decrypt_user_password(hidden, SECRET, req.authenticator) == b"otp-123456"
    reply_attrs = (
        attr_int(Attr.SESSION_TIMEOUT, 3600)
        + attr_int(Attr.ACCT_INTERIM_INTERVAL, 300)
        + vsa(VENDOR_CHILLI, 5, (2_000_000).to_bytes(4, "big"))
    )
    for code in (Code.ACCESS_ACCEPT, Code.ACCESS_REJECT, Code.ACCESS_CHALLENGE):
        data = encode_reply(code, req, SECRET, reply_attrs)
        assert pyrad_verifies(packet, data)
        assert not pyrad_verifies(packet, data[:-1] + bytes((data[-1] ^ 1,)))
    reply = packet.CreateReply(packet=encode_reply(Code.ACCESS_ACCEPT, req, SECRET, reply_attrs))
    assert reply["Session-Timeout"] == [3600]
    assert reply["ChilliSpot-Bandwidth-Max-Down"] == [2_000_000]
    assert reply["Proxy-State"] == [b"proxy-1", b"proxy-2"]


def test_pyrad_accounting_request_and_our_reply() -> None:
    d = load_dictionary()
    for with_ma in (True, False):
        packet = AcctPacket(
            id=9,
            secret=SECRET,
            dict=d,
            Acct_Status_Type="Interim-Update",
            Acct_Session_Id="s-1",
            Acct_Input_Octets=123,
            Event_Timestamp=1_700_000_000,
        )
        if with_ma:
            packet.add_message_authenticator()
        raw = packet.RequestPacket()
        req = decode_request(raw, SECRET)
        assert req.integer(Attr.ACCT_STATUS_TYPE) == AcctStatus.INTERIM_UPDATE
        assert req.integer(Attr.EVENT_TIMESTAMP) == 1_700_000_000
        assert (Attr.MESSAGE_AUTHENTICATOR in req.attrs) is with_ma
        assert pyrad_verifies(packet, encode_reply(Code.ACCOUNTING_RESPONSE, req, SECRET))
        with pytest.raises(PacketError) as info:
            decode_request(raw, b"other")
        assert info.value.reason == "bad_request_authenticator"


def test_pyrad_disconnect_and_status_server() -> None:
    d = load_dictionary()
    coa = CoAPacket(
        code=Code.DISCONNECT_REQUEST, id=3, secret=SECRET, dict=d, Acct_Session_Id="s-1"
    )
    coa.add_message_authenticator()
    req = decode_request(coa.RequestPacket(), SECRET)
    ack = encode_reply(Code.DISCONNECT_NAK, req, SECRET, attr_int(Attr.ERROR_CAUSE, 503))
    assert pyrad_verifies(coa, ack)
    for cls, reply_code in (
        (AuthPacket, Code.ACCESS_ACCEPT),
        (AcctPacket, Code.ACCOUNTING_RESPONSE),
    ):
        status = cls(code=Code.STATUS_SERVER, id=4, secret=SECRET, dict=d)
        status.add_message_authenticator()
        req = decode_request(status.RequestPacket(), SECRET)
        assert req.code == Code.STATUS_SERVER
        assert pyrad_verifies(status, encode_reply(reply_code, req, SECRET))


def test_our_requests_verify_with_pyrad() -> None:
    d = load_dictionary()
    authenticator = bytes(range(100, 116))
    hidden = encrypt_user_password(b"pw", SECRET, authenticator)
    attrs = attr_text(Attr.USER_NAME, "bob") + attr(Attr.USER_PASSWORD, hidden)
    data = encode_request(Code.ACCESS_REQUEST, 1, SECRET, attrs, authenticator=authenticator)
    parsed = AuthPacket(packet=data, secret=SECRET, dict=d)
    assert parsed.verify_message_authenticator()
    assert parsed.PwDecrypt(parsed["User-Password"][0]) == "pw"
    acct = encode_request(Code.ACCOUNTING_REQUEST, 2, SECRET, attr_int(Attr.ACCT_STATUS_TYPE, 2))
    parsed_acct = AcctPacket(packet=acct, secret=SECRET, dict=d)
    assert parsed_acct.VerifyAcctRequest()
    assert parsed_acct.verify_message_authenticator()
    dm = encode_request(Code.COA_REQUEST, 3, SECRET, attr_text(Attr.ACCT_SESSION_ID, "s"))
    parsed_dm = CoAPacket(packet=dm, secret=SECRET, dict=d)
    assert parsed_dm.VerifyCoARequest()
    assert parsed_dm.verify_message_authenticator()


def test_pyrad_replies_verify_with_us() -> None:
    d = load_dictionary()
    auth = AuthPacket(id=1, secret=SECRET, dict=d, User_Name="u")
    auth.add_message_authenticator()
    raw = auth.RequestPacket()
    server_side = AuthPacket(packet=raw, secret=SECRET, dict=d)
    accept = server_side.CreateReply(Session_Timeout=60)
    reply = decode_reply(
        accept.ReplyPacket(), SECRET, auth.authenticator, require_message_authenticator=True
    )
    assert reply.integer(Attr.SESSION_TIMEOUT) == 60

    acct = AcctPacket(id=2, secret=SECRET, dict=d, Acct_Status_Type="Start")
    raw = acct.RequestPacket()
    response = AcctPacket(packet=raw, secret=SECRET, dict=d).CreateReply()
    response.add_message_authenticator()
    assert decode_reply(response.ReplyPacket(), SECRET, acct.authenticator).code == 5

    dm = CoAPacket(code=Code.DISCONNECT_REQUEST, id=3, secret=SECRET, dict=d, User_Name="u")
    raw = dm.RequestPacket()
    dm_ack = CoAPacket(packet=raw, secret=SECRET, dict=d).CreateReply()
    dm_ack.add_message_authenticator()
    assert decode_reply(dm_ack.ReplyPacket(), SECRET, dm.authenticator).code == 41
