"""The compiled ``accounting_values`` (``radius._speedups``, issue 16) against its
reference model ``radius.events._accounting_values``, and ``accounting_request`` on
either.

Differential: on random attribute dicts (random subsets of the attributes an
Accounting-Request's event reads and a few it does not, values of 0..20 octets with 4
and 16 often, invalid UTF-8, several values per attribute, empty lists, Acct-Status-Types
known and unknown, Gigawords up to 2**32-1; RFC 2866 §5, RFC 2869 §5.1-5.2), the two must
give the same tuple, element by element and of the same types. An encoded
Accounting-Request gives the same event through either. Which one runs is chosen when
``radius.events`` is imported: the compiled one when built, not with
``CITYWIFI_PURE_PYTHON=1`` nor without the extension (probed in a subprocess).

Without the extension (not built, or ``CITYWIFI_PURE_PYTHON=1``) the compiled tests are
skipped with the reason ``radius.fastpath`` gives; the reference still runs.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import sys
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from radius import events, fastpath, packet
from radius.addresses import FRAMED_IPV6_PREFIX
from radius.attrs import AcctStatus, Attr, Code, TerminateCause
from radius.packet import attr, attr_int, attr_text, decode_request, encode_request
from tests.support.compiled import BLOCK_EXTENSION, C, needs_c, run_python

SECRET = b"testing123"
DETERMINISTIC = settings(derandomize=True, database=None, deadline=None, max_examples=600)
READ = events._ACCOUNTING_ATTRS  # what the event reads
OTHERS = (1, 5, 8, 30, 61, 87, 97, 123, 241)  # near or among them, not read as fields
STATUS_TYPES = (*(int(s) for s in AcctStatus), 0, 4, 5, 6, 9, 10, 15, 2**32 - 1)


def same_values(attrs: dict[int, list[bytes]]) -> tuple[Any, ...]:
    """Assert both give the same tuple, item by item, types included; the tuple."""
    assert C is not None
    want = events._accounting_values(attrs)
    got = C.accounting_values(attrs)
    assert type(got) is tuple and len(got) == len(want) == 20
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        assert type(g) is type(w), (i, g, w, attrs)
        assert g == w, (i, g, w, attrs)
    assert got[1] is want[1]  # the same AcctStatus member, or None
    return got


# --------------------------------------------------------------------------- strategies

value = st.one_of(
    st.binary(max_size=20),
    st.binary(min_size=4, max_size=4),
    st.binary(min_size=16, max_size=16),
    st.sampled_from((b"", b"\xff", b"\xc3", b"\xed\xa0\x80", b"a\x00b", "街道".encode())),
    st.integers(0, 2**32 - 1).map(lambda n: n.to_bytes(4, "big")),
)
status_value = st.one_of(
    st.sampled_from(STATUS_TYPES).map(lambda n: n.to_bytes(4, "big")),
    st.integers(0, 2**32 - 1).map(lambda n: n.to_bytes(4, "big")),
    st.binary(max_size=6),
)


@st.composite
def attribute_dicts(draw: st.DrawFn) -> dict[int, list[bytes]]:
    keys = draw(st.lists(st.sampled_from(READ + OTHERS), unique=True, max_size=len(READ) + 3))
    attrs: dict[int, list[bytes]] = {}
    for key in keys:
        first = status_value if key == int(Attr.ACCT_STATUS_TYPE) else value
        values = draw(st.lists(value, max_size=3))
        attrs[key] = [draw(first), *values] if draw(st.integers(0, 9)) else []
    return attrs


# --------------------------------------------------------------------------- differential


@needs_c
@DETERMINISTIC
@given(attribute_dicts())
def test_random_attribute_dicts_give_the_same_values(attrs: dict[int, list[bytes]]) -> None:
    same_values(attrs)


@needs_c
def test_edges_give_the_same_values() -> None:
    same_values({})
    same_values({key: [] for key in READ})  # an empty list is absent
    for size in range(21):
        same_values({key: [bytes(range(size))] for key in READ})
        same_values({key: [b"\xff" * size, b"x"] for key in READ})
    for n in STATUS_TYPES:
        same_values({int(Attr.ACCT_STATUS_TYPE): [n.to_bytes(4, "big")]})
    top = (2**32 - 1).to_bytes(4, "big")
    got = same_values({key: [top] for key in READ})
    assert got[12] == got[13] == 2**64 - 1  # Octets + Gigawords * 2**32 (RFC 2869 §5.1-5.2)
    for octet in range(256):  # every octet at every place of the dotted quad
        quad = bytes((octet, 255 - octet, octet // 10, octet))
        got = same_values({int(Attr.NAS_IP_ADDRESS): [quad], int(Attr.FRAMED_IP_ADDRESS): [quad]})
        assert got[7] == got[9] == ".".join(map(str, quad))
    for v6 in ("::", "::1", "2001:db8::9", "::ffff:192.0.2.1", "::192.0.2.1", "fe80::1:0:0:1"):
        raw = packet_ipv6(v6)
        got = same_values({int(Attr.FRAMED_IPV6_ADDRESS): [raw], int(Attr.NAS_IPV6_ADDRESS): [raw]})
        assert got[8] == got[10] == events._ipv6_text(raw)


def packet_ipv6(text: str) -> bytes:
    return ipaddress.IPv6Address(text).packed


@needs_c
def test_values_of_another_shape_are_refused() -> None:
    """Decoded attributes are a dict of lists of bytes; the compiled one says so when not
    (the reference is not asked to agree on such input)."""
    assert C is not None
    session = int(Attr.ACCT_SESSION_ID)
    with pytest.raises(TypeError):
        C.accounting_values([])  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        C.accounting_values({session: (b"s",)})  # type: ignore[dict-item]
    with pytest.raises(TypeError):
        C.accounting_values({session: ["s"]})  # type: ignore[list-item]
    # Class is taken as it is, as klass[0]
    klass = object()
    got = C.accounting_values({int(Attr.CLASS): [klass]})  # type: ignore[list-item]
    assert got[17] is klass


@needs_c
def test_no_reference_is_leaked_or_lost() -> None:
    """Every object the compiled call reads or returns has the same reference count
    after many calls as before (the results dropped), on success and on a refusal."""
    assert C is not None
    attrs = {
        int(Attr.ACCT_STATUS_TYPE): [int(AcctStatus.STOP).to_bytes(4, "big")],
        int(Attr.ACCT_SESSION_ID): [b"s-1\xff"],
        int(Attr.NAS_IP_ADDRESS): [bytes((192, 0, 2, 1))],
        int(Attr.NAS_IPV6_ADDRESS): [packet_ipv6("2001:db8::1")],
        int(Attr.ACCT_INPUT_OCTETS): [b"\x00\x00\x01\x00"],
        int(Attr.ACCT_INPUT_GIGAWORDS): [b"\x00\x00\x00\x02"],
        int(Attr.CLASS): [b"cw2:klass"],
        int(Attr.OPERATOR_NAME): [b"1city.example"],
        int(Attr.PROXY_STATE): [b"p1", b"p2"],
    }
    watched: list[object] = [AcctStatus.STOP, C.accounting_values, attrs]
    for values in attrs.values():
        watched += [values, *values]
    # what absent fields are: shared with every other thread of the process (a test
    # before this one may leave some running), so held to less than one per call
    shared: list[object] = [None, "", ()]
    before = [sys.getrefcount(o) for o in watched]
    before_shared = [sys.getrefcount(o) for o in shared]
    for _ in range(1000):
        C.accounting_values(attrs)
    assert [sys.getrefcount(o) for o in watched] == before
    moved = [sys.getrefcount(o) - n for o, n in zip(shared, before_shared, strict=True)]
    assert all(abs(m) < 1000 for m in moved), moved
    bad = {**attrs, int(Attr.ACCT_TERMINATE_CAUSE): ["not bytes"]}  # read after the others
    before = [sys.getrefcount(o) for o in watched]
    refused = 0
    for _ in range(1000):
        try:
            C.accounting_values(bad)  # type: ignore[arg-type]
        except TypeError:
            refused += 1
    assert refused == 1000
    assert [sys.getrefcount(o) for o in watched] == before


# --------------------------------------------------------------------------- the event


def interim(*extra: bytes) -> packet.Request:
    """An Interim-Update as bench/corpus.py's NAS sends one, and then some."""
    attrs = b"".join(
        (
            attr_int(Attr.ACCT_STATUS_TYPE, AcctStatus.INTERIM_UPDATE),
            attr(Attr.USER_NAME, b"02-00-00-00-00-01\xff"),  # invalid UTF-8: replaced
            attr_text(Attr.ACCT_SESSION_ID, "bench-00000-000001"),
            attr(Attr.CLASS, b"cw2:pid:m:bench-nas:0000000000000001"),
            attr(Attr.NAS_IP_ADDRESS, bytes((192, 0, 2, 1))),
            attr_text(Attr.NAS_IDENTIFIER, "bench-nas"),
            attr_int(Attr.NAS_PORT, 1),
            attr_int(Attr.NAS_PORT_TYPE, 19),
            attr_text(Attr.CALLED_STATION_ID, "02-AA-BB-00-00-01:i-Bench"),
            attr_text(Attr.CALLING_STATION_ID, "02-00-00-00-00-01"),
            attr(Attr.FRAMED_IP_ADDRESS, bytes((198, 18, 0, 1))),
            attr_int(Attr.ACCT_DELAY_TIME, 2),
            attr_int(Attr.EVENT_TIMESTAMP, 1_700_000_000),
            attr_int(Attr.ACCT_SESSION_TIME, 600),
            attr_int(Attr.ACCT_INPUT_OCTETS, 12_000_000),
            attr_int(Attr.ACCT_OUTPUT_OCTETS, 1_200_000),
            attr_int(Attr.ACCT_INPUT_GIGAWORDS, 3),
            attr_int(Attr.ACCT_OUTPUT_GIGAWORDS, 0),
            attr_int(Attr.ACCT_INPUT_PACKETS, 13_333),
            attr_int(Attr.ACCT_OUTPUT_PACKETS, 4_000),
            *extra,
        )
    )
    data = encode_request(Code.ACCOUNTING_REQUEST, 7, SECRET, attrs, message_authenticator=False)
    return decode_request(data, SECRET)


REQUESTS = {
    "interim": interim(),
    "stop, IPv6, Proxy-State, Operator-Name": interim(
        attr_int(Attr.ACCT_TERMINATE_CAUSE, TerminateCause.IDLE_TIMEOUT),
        attr(Attr.NAS_IPV6_ADDRESS, packet_ipv6("2001:db8::1")),
        attr(Attr.FRAMED_IPV6_ADDRESS, packet_ipv6("2001:db8:0:0:1::9")),
        attr(FRAMED_IPV6_PREFIX, bytes((0, 64)) + packet_ipv6("2001:db8:1::")[:8]),
        attr_text(Attr.OPERATOR_NAME, "1city.example"),
        attr(Attr.PROXY_STATE, b"hop-1"),
        attr(Attr.PROXY_STATE, b"hop-2"),
    ),
    "short integers and addresses": interim(
        attr(Attr.ACCT_TERMINATE_CAUSE, b"\x01"),
        attr(Attr.NAS_IPV6_ADDRESS, bytes(15)),
    ),
}


@needs_c
@pytest.mark.parametrize("name", list(REQUESTS))
def test_accounting_request_is_the_same_on_either_path(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert C is not None
    request = REQUESTS[name]
    source = events.Source("192.0.2.1", 3799)
    assert events._values is C.accounting_values  # the compiled one is in use here
    compiled = events.accounting_request(request, "bench-nas", source)
    monkeypatch.setattr(events, "_values", events._accounting_values)
    fallback = events.accounting_request(request, "bench-nas", source)
    assert compiled == fallback
    for f in dataclasses.fields(fallback):
        assert type(getattr(compiled, f.name)) is type(getattr(fallback, f.name)), f.name


def test_accounting_request_of_an_interim_and_of_a_stop() -> None:
    """Whichever path this process runs (the reference under CITYWIFI_PURE_PYTHON=1)."""
    event = events.accounting_request(REQUESTS["interim"], "nas", events.Source("", 0))
    assert (event.status, event.status_type) == (AcctStatus.INTERIM_UPDATE, 3)
    assert event.user_name == "02-00-00-00-00-01\ufffd"
    assert (event.input_octets, event.output_octets) == ((3 << 32) + 12_000_000, 1_200_000)
    assert (event.session_time, event.delay, event.event_timestamp) == (600, 2, 1_700_000_000)
    assert (event.nas_ip_address, event.framed_ip_address) == ("192.0.2.1", "198.18.0.1")
    assert (event.terminate_cause, event.operator_name, event.proxy_state) == (None, None, ())
    stop = events.accounting_request(
        REQUESTS["stop, IPv6, Proxy-State, Operator-Name"], "nas", events.Source("", 0)
    )
    assert (stop.nas_ipv6_address, stop.framed_ipv6_address) == ("2001:db8::1", "2001:db8::1:0:0:9")
    assert stop.framed_ipv6_prefix == "2001:db8:1::/64"
    assert (stop.terminate_cause, stop.operator_name) == (
        TerminateCause.IDLE_TIMEOUT,
        "1city.example",
    )
    assert stop.proxy_state == (b"hop-1", b"hop-2")
    odd = events.accounting_request(
        REQUESTS["short integers and addresses"], "nas", events.Source("", 0)
    )
    assert (odd.terminate_cause, odd.nas_ipv6_address) == (None, "")


# --------------------------------------------------------------------------- which one


def _which(env: dict[str, str], prelude: str = "") -> str:
    code = (
        prelude + "from radius import events\n"
        "print('python' if events._values is events._accounting_values else 'compiled')\n"
    )
    return run_python(code, env).strip()


def test_environment_forces_the_reference() -> None:
    assert _which({fastpath.ENV_PURE_PYTHON: "1"}) == "python"


def test_missing_extension_falls_back_to_the_reference() -> None:
    assert _which({fastpath.ENV_PURE_PYTHON: ""}, BLOCK_EXTENSION) == "python"


@needs_c
def test_the_compiled_one_runs_when_built() -> None:
    assert _which({fastpath.ENV_PURE_PYTHON: ""}) == "compiled"
