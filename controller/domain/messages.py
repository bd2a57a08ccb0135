"""User-facing RADIUS Reply-Message texts, Chinese first then English (one message, both)."""

from __future__ import annotations

from datetime import datetime
from typing import Final

_TEXTS: Final = {
    "exhausted": (
        "今日免费上网时长已用完，将于{reset}重置。",
        "Today's free WiFi time is used up; it resets at {reset}.",
    ),
    "device_limit": (
        "已有{limit}台设备在线，请先断开其中一台。",
        "{limit} devices are already online; disconnect one first.",
    ),
    "blocked": (
        "该号码已被暂停使用{until}。",
        "This number is suspended{until_en}.",
    ),
    "unknown_credential": (
        "登录凭证无效或已过期，请重新获取验证码。",
        "Login credential unknown or expired; please request a new code.",
    ),
    "credential_used": (
        "登录凭证已被使用，请重新登录。",
        "Login credential already used; please log in again.",
    ),
    "wrong_client": (
        "该登录凭证不是为此网络设备签发的，请在本场所的认证页面重新登录。",
        "This login credential was issued for another network; "
        "please log in on this venue's portal.",
    ),
    "missing_device": (
        "该登录凭证绑定了设备，但请求未携带设备地址（Calling-Station-Id）。",
        "This login credential is bound to a device, "
        "but the request does not name it (Calling-Station-Id).",
    ),
    "wrong_device": (
        "登录凭证属于另一台设备。",
        "This login credential belongs to another device.",
    ),
    "bad_password": (
        "登录凭证无效，请重新登录。",
        "Login credential invalid; please log in again.",
    ),
    "unknown_device": (
        "请在认证页面登录。",
        "Please log in on the portal page.",
    ),
    "bad_request": (
        "请求缺少用户名或密码。",
        "The request lacks a user name or password.",
    ),
}


def _when(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M} ({moment.tzinfo})"


def reply_message(reason: str, **values: object) -> str:
    zh, en = _TEXTS[reason]
    if "reset" in values and isinstance(values["reset"], datetime):
        values["reset"] = _when(values["reset"])
    until = values.pop("until", None)
    values["until"] = f"至{_when(until)}" if isinstance(until, datetime) else ""
    values["until_en"] = f" until {_when(until)}" if isinstance(until, datetime) else ""
    return f"{zh.format(**values)} {en.format(**values)}"
