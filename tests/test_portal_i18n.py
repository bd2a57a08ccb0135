"""Language choice and formatting of the portal (controller.services.portal.i18n), and the pure
helpers next to it (client address behind proxies, phone masking, RFC 8908 object)."""

from __future__ import annotations

import ipaddress
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from controller.services.portal.i18n import choose_language, format_duration, parse_accept_language
from controller.services.signing import Signer
from controller.web.portal.captive_api import captive_answer
from controller.web.portal.clientaddr import client_address, client_scheme
from controller.web.portal.pages import mask_phone, moment


@pytest.mark.parametrize(
    ("explicit", "cookie", "header", "lang"),
    [
        (None, None, None, "zh"),  # default zh-CN
        (None, None, "en-US,en;q=0.9", "en"),
        (None, None, "zh-CN,zh;q=0.9,en;q=0.8", "zh"),
        (None, None, "fr-FR,fr;q=0.9,en;q=0.5,zh;q=0.4", "en"),  # first supported by q
        (None, None, "zh;q=0.3,en;q=0.7", "en"),
        (None, None, "en;q=0,zh-TW", "zh"),  # q=0: not acceptable
        (None, None, "de, *;q=0.1", "zh"),
        (None, None, "garbage;;q=x,EN_gb", "en"),
        (None, "en", "zh-CN", "en"),  # the switch's cookie beats the header
        ("zh-CN", "en", "en", "zh"),  # an explicit choice beats both
        ("xx", None, "en", "en"),  # unsupported explicit value: ignored
    ],
)
def test_choose_language(explicit: str, cookie: str, header: str, lang: str) -> None:
    assert choose_language(explicit, cookie, header) == lang


def test_parse_accept_language_keeps_order_among_equals() -> None:
    assert parse_accept_language("a;q=0.5, b, c;q=0.5, d;q=1") == ["b", "d", "a", "c"]


def test_format_duration() -> None:
    assert format_duration(7200, "zh") == "2小时"
    assert format_duration(7200, "en") == "2 h"
    assert format_duration(3660, "zh") == "1小时1分钟"
    assert format_duration(7199, "en") == "1 h 59 min"
    assert format_duration(59, "en") == "0 min"
    assert format_duration(-5, "zh") == "0分钟"


def test_moment_and_mask() -> None:
    when = datetime(2026, 11, 26, tzinfo=ZoneInfo("Asia/Shanghai"))
    assert moment(when) == "2026-11-26 00:00 (Asia/Shanghai)"
    assert mask_phone("+8613800138000") == "138****8000"
    assert mask_phone("+447911123456") == "+44****3456"


def test_client_address_trusts_only_configured_proxies() -> None:
    proxies = [ipaddress.ip_network("10.0.0.0/8")]
    assert client_address("192.0.2.1", "6.6.6.6", proxies) == "192.0.2.1"  # not a proxy
    assert client_address("10.0.0.2", "172.16.5.9", proxies) == "172.16.5.9"
    assert client_address("10.0.0.2", "6.6.6.6, 172.16.5.9, 10.0.0.3", proxies) == "172.16.5.9"
    assert client_address("10.0.0.2", None, proxies) == "10.0.0.2"
    assert client_address("10.0.0.2", "172.16.5.9", []) == "10.0.0.2"
    assert client_scheme("10.0.0.2", "http", "https", proxies) == "https"
    assert client_scheme("192.0.2.1", "http", "https", proxies) == "http"


def test_captive_answer_keys() -> None:
    assert captive_answer(captive=True, user_portal_url="https://p/portal") == {
        "captive": True,
        "user-portal-url": "https://p/portal",
        "can-extend-session": False,
    }
    online = captive_answer(
        captive=False, user_portal_url="u", venue_info_url="v", seconds_remaining=-3
    )
    assert online["seconds-remaining"] == 0 and online["venue-info-url"] == "v"


def test_signer_purposes_do_not_mix() -> None:
    signer = Signer(b"k" * 32)
    token = signer.sign("device", b"pid|1")
    assert signer.unsign("device", token) == b"pid|1"
    assert signer.unsign("ctx", token) is None
    assert signer.unsign("device", token[:-2] + "AA") is None
    assert signer.unsign("device", "no-dot") is None
    assert Signer(b"x" * 32).unsign("device", token) is None
