"""Hostile datagrams against radius.packet.decode_request: property tests (hypothesis,
derandomised), every single-bit flip of every seed, the kept corpus and a bounded,
seeded mutation pass. The decoder must return a ``Request`` or raise ``PacketError``
with a drop reason; nothing else, whatever the bytes (docs/radius.md, "Packet checks")."""

from __future__ import annotations

import struct
from typing import get_args

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from radius.packet import MAX_PACKET, PacketError, Reason, Request, decode_request, encode_reply
from tests.support.fuzz_kit import (
    MA,
    PROXY_STATE,
    SECRET,
    corpus,
    fix_length,
    mutations,
    pending,
    pending_packets,
    request,
    resign,
    seed_packets,
    tlv,
    vsa,
    walk,
)

REASONS = frozenset(get_args(Reason))
SEEDS = seed_packets()
SEED_NAMES = sorted(SEEDS)
REQUEST_CODES = (1, 4, 12, 40, 43)
REPLY_FOR = {1: 2, 4: 5, 12: 2, 40: 41, 43: 44}
DETERMINISTIC = settings(derandomize=True, database=None, deadline=None)
MUTATION_SEED = 20240709  # the BlastRADIUS disclosure date; any fixed number will do
MUTATIONS = 5000

seed_names = st.sampled_from(SEED_NAMES)


def outcome(data: bytes, *, require: bool = True) -> Request | PacketError:
    """What the decoder makes of ``data``; anything but PacketError propagates."""
    try:
        return decode_request(data, SECRET, require_message_authenticator=require)
    except PacketError as exc:
        assert exc.reason in REASONS, exc.reason
        assert str(exc), "a drop names its cause"
        return exc


def reason(data: bytes, *, require: bool = True) -> str:
    result = outcome(data, require=require)
    assert isinstance(result, PacketError), f"decoded: {result}"
    return result.reason


def boundaries(data: bytes) -> list[int]:
    """Offsets between attributes of a well-formed packet (insertion points)."""
    attrs = walk(data, len(data))
    assert attrs is not None
    return [20] + [pos + n for pos, _, n in attrs]


def insert(data: bytes, index: int, extra: bytes) -> bytes:
    """``extra`` inserted at the ``index``-th attribute boundary, Length fixed, re-signed."""
    spots = boundaries(data)
    at = spots[index % len(spots)]
    return resign(fix_length(data[:at] + extra + data[at:]))


def test_seeds_are_valid_and_the_corpus_matches_them() -> None:
    """The seeds decode (so mutations start from packets the server takes), and the files
    in tests/fuzz_corpus/seeds are exactly ``seed_packets()``."""
    for name, data in SEEDS.items():
        req = outcome(data)
        assert isinstance(req, Request) and req.raw == data, name
    kept = {name.removeprefix("seeds/").removesuffix(".bin"): d for name, d in corpus()}
    assert {k: v for k, v in kept.items() if k in SEEDS} == SEEDS
    for name, data in pending_packets().items():  # findings: valid, authentic requests
        assert pending(name) == data
        assert isinstance(outcome(data), Request), name


# --------------------------------------------------------------------------- lengths


@DETERMINISTIC
@given(name=seed_names, data=st.data())
def test_truncated_datagrams_are_malformed(name: str, data: st.DataObject) -> None:
    seed = SEEDS[name]
    cut = data.draw(st.integers(0, len(seed) - 1))
    assert reason(seed[:cut]) == "malformed"


@DETERMINISTIC
@given(name=seed_names, length=st.integers(0, 0xFFFF))
def test_a_wrong_length_field_never_decodes(name: str, length: int) -> None:
    """Short or long: the packet is refused. Out of 20..4096 or beyond the datagram it is
    malformed; a shorter Length cuts authenticated bytes, so the authenticator fails."""
    seed = SEEDS[name]
    if length == len(seed):
        return
    data = seed[:2] + struct.pack(">H", length) + seed[4:]
    padded = data + bytes(max(0, min(length, 0xFFFF) - len(data)))  # Length within datagram
    for datagram in (data, padded):
        got = reason(datagram)
        if length < 20 or length > MAX_PACKET or length > len(datagram):
            assert got == "malformed"


@DETERMINISTIC
@given(name=seed_names, junk=st.binary(max_size=64), size=st.integers(0, 65507))
def test_octets_beyond_length_are_ignored_even_in_huge_datagrams(
    name: str, junk: bytes, size: int
) -> None:
    """RFC 2865 §3: padding after Length is ignored, also past 4096 octets of datagram."""
    seed = SEEDS[name]
    tail = (junk or b"\x00") * (max(0, size - len(seed)) // max(1, len(junk)) + 1)
    datagram = (seed + tail)[: max(len(seed), size)]
    req = outcome(datagram)
    assert isinstance(req, Request) and req.raw == seed
    assert req.attrs == outcome(seed).attrs  # type: ignore[union-attr]


@DETERMINISTIC
@given(name=seed_names, length=st.integers(MAX_PACKET + 1, 0xFFFF))
def test_a_length_beyond_4096_is_malformed(name: str, length: int) -> None:
    seed = SEEDS[name]
    data = seed[:2] + struct.pack(">H", length) + seed[4:]
    assert reason(data + bytes(length - len(data))) == "malformed"


# --------------------------------------------------------------------------- attributes


@DETERMINISTIC
@given(
    name=seed_names,
    where=st.integers(0, 64),
    atype=st.integers(1, 255),  # type 0 is refused before its length is read (below)
    bad=st.sampled_from([b"\x00", b"\x01"]),
)
def test_attribute_length_0_or_1_is_malformed(
    name: str, where: int, atype: int, bad: bytes
) -> None:
    data = insert(SEEDS[name], where, bytes((atype,)) + bad)
    assert reason(data) == "malformed"
    assert reason(data, require=False) == "malformed"


@DETERMINISTIC
@given(name=seed_names, atype=st.integers(1, 255), over=st.integers(1, 253), body=st.binary())
def test_attribute_running_past_the_packet_is_malformed(
    name: str, atype: int, over: int, body: bytes
) -> None:
    """The last attribute claims more octets than the packet has (Length fixed to the
    datagram, so the overflow is the attribute's own), or only its header is there."""
    body = body[:200]
    claimed = min(255, len(body) + 2 + over)
    overflowing = fix_length(SEEDS[name] + bytes((atype, claimed)) + body)
    assert reason(overflowing) == "malformed"
    assert reason(fix_length(SEEDS[name] + bytes((atype,)))) == "malformed"


@DETERMINISTIC
@given(name=seed_names, where=st.integers(0, 64), value=st.binary(max_size=253))
def test_attribute_type_0_is_refused(name: str, where: int, value: bytes) -> None:
    """RFC 2865 §5 defines no attribute 0; FreeRADIUS drops a packet carrying one
    (``rad_packet_ok``: "Invalid attribute 0"), whatever its length, and so do we."""
    data = insert(SEEDS[name], where, bytes((0, len(value) + 2)) + value)
    assert reason(data) == "invalid_attribute"
    assert reason(data, require=False) == "invalid_attribute"
    assert reason(fix_length(SEEDS[name] + bytes((0, 1)))) == "invalid_attribute"  # bad length too


def sub_attributes(value: bytes) -> list[tuple[int, bytes]] | None:
    """RFC 2865 §5.26 sub-attributes of a VSA value, or None if not in that form."""
    if len(value) < 6:
        return None
    out, pos = [], 4
    while pos < len(value):
        if pos + 2 > len(value) or value[pos + 1] < 2 or pos + value[pos + 1] > len(value):
            return None
        out.append((value[pos], value[pos + 2 : pos + value[pos + 1]]))
        pos += value[pos + 1]
    return out


@DETERMINISTIC
@given(
    name=seed_names,
    where=st.integers(0, 64),
    vendor=st.one_of(st.sampled_from([0, 9, 311, 14122, 14559]), st.integers(0, 2**32 - 1)),
    inner=st.one_of(
        st.binary(max_size=247),
        st.lists(st.tuples(st.integers(0, 255), st.binary(max_size=30)), max_size=6).map(
            lambda subs: b"".join(bytes((t, len(v) + 2)) + v for t, v in subs)
        ),
    ),
)
def test_vendor_specific_of_any_vendor_and_shape(
    name: str, where: int, vendor: int, inner: bytes
) -> None:
    """Unknown vendors and sub-attributes of bad length never break decoding: a VSA in
    the RFC form is split into ``vsas``, any other stays raw in ``attrs[26]``."""
    value = vendor.to_bytes(4, "big") + inner
    data = insert(SEEDS[name], where, vsa(vendor, inner))
    req = outcome(data)
    assert isinstance(req, Request)
    subs = sub_attributes(value)
    if subs is None:
        assert value in req.all(26)
    else:
        for vtype, sub in subs:
            assert sub in req.vsas[(vendor, vtype)]
    truncated_vsa = insert(SEEDS[name], where, tlv(26, value[: where % 4]))  # < Vendor-Id
    assert isinstance(outcome(truncated_vsa), Request)


@DETERMINISTIC
@given(
    name=seed_names,
    where=st.integers(0, 64),
    atype=st.sampled_from([64, 65, 66, 67, 69, 81, 82, 83, 90, 91]),
    tag=st.sampled_from([0x00, 0x01, 0x1F, 0x20, 0x80, 0xFF]),
    salt=st.binary(min_size=0, max_size=2),
    rest=st.binary(max_size=200),
)
def test_tunnel_tags_and_salts_are_kept_verbatim(
    name: str, where: int, atype: int, tag: int, salt: bytes, rest: bytes
) -> None:
    """RFC 2868 tagged attributes (and the salt-encrypted Tunnel-Password, 69) are not
    interpreted by the decoder: whatever the tag, salt or length, the value is kept as
    the octets that came, and nothing is decrypted. (No salt-encrypted attribute is ever
    decoded by citywifi.)"""
    value = (bytes((tag,)) + salt + rest)[:253]
    data = insert(SEEDS[name], where, tlv(atype, value))
    req = outcome(data)
    assert isinstance(req, Request) and value in req.all(atype)


# --------------------------------------------------------------------------- Message-Authenticator


@DETERMINISTIC
@given(
    code=st.sampled_from(REQUEST_CODES),
    size=st.integers(0, 253).filter(lambda n: n != 16),
    where=st.integers(0, 8),
    user=st.binary(max_size=40),
)
def test_message_authenticator_of_the_wrong_length_is_refused(
    code: int, size: int, where: int, user: bytes
) -> None:
    """A Message-Authenticator that is not 16 octets can never be valid (RFC 3579
    §3.2): refused whether or not the client must send one, in every request type."""
    base = request(code, 1, tlv(1, user) + tlv(32, b"nas"), ma=False)
    data = insert(base, where, tlv(MA, bytes(size)))
    for require in (True, False):
        assert reason(data, require=require) == "bad_message_authenticator"


@DETERMINISTIC
@given(
    code=st.sampled_from(REQUEST_CODES),
    first=st.integers(0, 8),
    second=st.integers(0, 8),
    sizes=st.tuples(st.sampled_from([0, 16, 16, 17]), st.sampled_from([0, 16, 16, 17])),
)
def test_a_duplicated_message_authenticator_is_malformed(
    code: int, first: int, second: int, sizes: tuple[int, int]
) -> None:
    base = request(code, 2, tlv(1, b"user") + tlv(31, b"AA-BB-CC-DD-EE-FF"))
    data = insert(base, first, tlv(MA, bytes(sizes[0])))
    data = insert(data, second, tlv(MA, bytes(sizes[1])))
    for require in (True, False):
        assert reason(data, require=require) == "malformed"


@DETERMINISTIC
@given(
    pairs=st.lists(
        st.tuples(st.sampled_from([1, 2, 31, 32, PROXY_STATE, 79]), st.binary(max_size=40)),
        max_size=8,
    ),
    proxy=st.binary(max_size=253),
    where=st.integers(0, 8),
)
def test_proxy_state_without_message_authenticator_is_refused(
    pairs: list[tuple[int, bytes]], proxy: bytes, where: int
) -> None:
    """BlastRADIUS (CVE-2024-3596): an Access-Request with any Proxy-State and no
    Message-Authenticator is refused even for a client exempt from sending one."""
    base = request(1, 3, b"".join(tlv(t, v) for t, v in pairs), ma=False)
    data = insert(base, where, tlv(PROXY_STATE, proxy))
    assert reason(data, require=False) == "proxy_state_without_message_authenticator"
    assert reason(data) == "missing_message_authenticator"


def test_every_single_bit_flip_of_a_signed_request_is_refused() -> None:
    """Integrity: every seed is signed (Message-Authenticator or Request Authenticator),
    so flipping any one bit up to Length makes the decoder refuse it."""
    for name, seed in SEEDS.items():
        for i in range(len(seed) * 8):
            flipped = bytearray(seed)
            flipped[i // 8] ^= 1 << (i % 8)
            assert isinstance(outcome(bytes(flipped)), PacketError), (name, i)


# --------------------------------------------------------------------------- corpus and mutations


@pytest.mark.parametrize(("name", "data"), list(corpus()))
def test_corpus_replays(name: str, data: bytes) -> None:
    """Every kept datagram (seeds and past crashers) decodes or is refused with a reason."""
    for require in (True, False):
        result = outcome(data, require=require)
        if isinstance(result, Request):  # and it can be answered
            assert encode_reply(REPLY_FOR[result.code], result, SECRET)[0] == REPLY_FOR[result.code]


def test_seeded_mutations_only_raise_packet_error() -> None:
    """The CI fuzz pass: MUTATIONS mutated datagrams from the corpus (fixed seed). Every
    one decodes or is refused with a stable reason; a decoded one is consistent with its
    bytes. A datagram that breaks this belongs in tests/fuzz_corpus/crashers/."""
    seeds = [data for _, data in corpus()]
    seen: set[str] = set()
    for data in mutations(seeds, MUTATIONS, MUTATION_SEED):
        for require in (True, False):
            try:
                result = outcome(data, require=require)
            except Exception as exc:  # pragma: no cover - a finding
                raise AssertionError(f"crasher {data.hex()}") from exc
            if isinstance(result, PacketError):
                seen.add(result.reason)
                continue
            length = (data[2] << 8) | data[3]
            assert result.raw == data[:length] and result.code == data[0]
            assert result.identifier == data[1] and result.authenticator == data[4:20]
            seen.add("decoded")
    # the mutations reach every stage of the decoder, not only the header check
    assert seen >= {
        "decoded",
        "malformed",
        "unexpected_code",
        "bad_message_authenticator",
        "bad_request_authenticator",
        "missing_message_authenticator",
    }
