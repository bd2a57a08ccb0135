"""Our dictionary files load with pyrad and agree with ``radius.attrs``."""

from __future__ import annotations

import logging

import pytest
from pyrad.dictionary import Dictionary

from radius.attrs import (
    DICTIONARY_DIR,
    VENDOR_CHILLI,
    VENDOR_WISPR,
    AcctStatus,
    Attr,
    ErrorCause,
    TerminateCause,
)


@pytest.fixture(scope="module")
def dictionary() -> Dictionary:
    return Dictionary(str(DICTIONARY_DIR / "dictionary"))


def _enum_name(dictionary_name: str) -> str:
    return dictionary_name.upper().replace("-", "_").replace(".", "_")


def test_loads_without_skipping(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="pyrad"):
        d = Dictionary(str(DICTIONARY_DIR / "dictionary"))
    assert not d.skipped_attributes
    assert not caplog.records
    assert len(d.attributes) > 80


def test_every_attr_matches_dictionary(dictionary: Dictionary) -> None:
    for member in Attr:
        assert dictionary.attrindex.HasBackward(member.value), member
        name = dictionary.attrindex.GetBackward(member.value)
        assert _enum_name(name) == member.name


@pytest.mark.parametrize(
    ("attribute", "enum"),
    [
        ("Acct-Status-Type", AcctStatus),
        ("Acct-Terminate-Cause", TerminateCause),
        ("Error-Cause", ErrorCause),
    ],
)
def test_enum_values_match_dictionary(
    dictionary: Dictionary, attribute: str, enum: type[AcctStatus | TerminateCause | ErrorCause]
) -> None:
    values = dictionary[attribute].values
    for member in enum:
        encoded = member.value.to_bytes(4, "big")
        assert values.HasBackward(encoded), member
        assert _enum_name(values.GetBackward(encoded)) == member.name


def test_required_values(dictionary: Dictionary) -> None:
    def value(attribute: str, name: str) -> int:
        return int.from_bytes(dictionary[attribute].values.GetForward(name), "big")

    assert value("Service-Type", "Login-User") == 1
    assert value("Service-Type", "Framed-User") == 2
    assert value("Service-Type", "Authorize-Only") == 17
    assert value("NAS-Port-Type", "Wireless-802.11") == 19
    assert value("NAS-Port-Type", "Ethernet") == 15
    assert value("Acct-Status-Type", "Accounting-On") == 7
    assert value("Acct-Terminate-Cause", "Host-Request") == 18
    assert value("Error-Cause", "Session-Context-Not-Found") == 503


def test_types(dictionary: Dictionary) -> None:
    assert dictionary["Message-Authenticator"].type == "octets"
    assert dictionary["Event-Timestamp"].type == "date"
    assert dictionary["User-Password"].encrypt == 1
    assert dictionary["NAS-IP-Address"].type == "ipaddr"
    assert dictionary["Chargeable-User-Identity"].code == 89


def test_vendors(dictionary: Dictionary) -> None:
    assert dictionary.vendors.GetForward("WISPr") == VENDOR_WISPR
    assert dictionary.vendors.GetForward("ChilliSpot") == VENDOR_CHILLI
    wispr = {
        1: "Location-ID",
        2: "Location-Name",
        3: "Logoff-URL",
        4: "Redirection-URL",
        5: "Bandwidth-Min-Up",
        6: "Bandwidth-Min-Down",
        7: "Bandwidth-Max-Up",
        8: "Bandwidth-Max-Down",
        9: "Session-Terminate-Time",
        10: "Session-Terminate-End-Of-Day",
        11: "Billing-Class-Of-Service",
    }
    for code, name in wispr.items():
        attribute = dictionary[f"WISPr-{name}"]
        assert (attribute.vendor, attribute.code) == ("WISPr", code)
        assert attribute.type == ("integer" if 5 <= code <= 8 else "string")
    chilli = {
        1: "Max-Input-Octets",
        2: "Max-Output-Octets",
        3: "Max-Total-Octets",
        4: "Bandwidth-Max-Up",
        5: "Bandwidth-Max-Down",
        6: "Config",
        7: "Lang",
        8: "Version",
        9: "OriginalURL",
        10: "Acct-View-Point",
        15: "Session-State",
        21: "Max-Input-Gigawords",
        22: "Max-Output-Gigawords",
        23: "Max-Total-Gigawords",
        100: "UAM-Allowed",
        101: "MAC-Allowed",
        102: "Interval",
    }
    for code, name in chilli.items():
        attribute = dictionary[f"ChilliSpot-{name}"]
        assert (attribute.vendor, attribute.code) == ("ChilliSpot", code)
    assert dictionary.attrindex.GetForward("ChilliSpot-Max-Total-Octets") == (VENDOR_CHILLI, 3)
