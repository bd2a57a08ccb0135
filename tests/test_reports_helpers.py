"""A small city for the archive, report and audit tests: four venues of four types run by
three operators, a venue cap and operator factors, tokens for each role; and helpers that
drive real RADIUS traffic through an in-process controller with a settable clock."""

from __future__ import annotations

import hashlib
import textwrap
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from controller.cli.serve import Controller
from controller.config import Config, load_config
from radius.attrs import Code
from tests.conftest import SECRET, service_sections
from tests.support.redis_proc import RedisProcess
from tests.test_radius_integration import acct, login

SH = ZoneInfo("Asia/Shanghai")
TOKENS = {"reports": "reports-token-123", "audit": "audit-token-456", "admin": "admin-token-789"}
AP = {
    "station": "00-11-22-33-44-01",
    "hospital": "00-11-22-33-44-02",
    "mall": "00-11-22-33-44-03",
    "park": "00-11-22-33-44-04",
}
PHONES = {"A": "+8613800138001", "B": "+8613800138002", "C": "+8613800138003"}


def sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def city_config(directory: Path, redis_url: str, extra: str = "") -> Path:
    text = service_sections(redis_url) + textwrap.dedent(
        f"""
        [reports]
        settle_hours = 6

        [audit]
        retention_days = 60

        [[operators]]
        id = "op-telecom"
        name = {{ zh = "中国电信", en = "China Telecom" }}

        [[operators]]
        id = "op-unicom"
        name = {{ zh = "中国联通", en = "China Unicom" }}

        [[operators]]
        id = "op-mobile"
        name = {{ zh = "中国移动", en = "China Mobile" }}

        [[venues]]
        id = "station"
        name = {{ zh = "石家庄站", en = "Shijiazhuang Railway Station" }}
        type = "transport_hub"
        district = "桥西区"
        operator = "op-telecom"

        [[venues]]
        id = "hospital"
        name = {{ zh = "省人民医院", en = "Provincial People's Hospital" }}
        type = "hospital"
        district = "长安区"
        operator = "op-unicom"

        [[venues]]
        id = "mall"
        name = {{ zh = "北国商城", en = "Beiguo Mall" }}
        type = "shopping_mall"
        district = "裕华区"
        operator = "op-mobile"

        [[venues]]
        id = "park"
        name = {{ zh = "世纪公园", en = "Century Park" }}
        type = "leisure_square"
        district = "长安区"
        operator = "op-telecom"

        [[clients]]
        id = "nas-local"
        address = "127.0.0.1"
        secret = "{SECRET}"
        venue = "station"

        [[access_points]]
        match = "{AP["station"]}"
        venue = "station"

        [[access_points]]
        match = "{AP["hospital"]}"
        venue = "hospital"

        [[access_points]]
        match = "{AP["mall"]}"
        venue = "mall"

        [[access_points]]
        match = "{AP["park"]}"
        venue = "park"

        [subsidy]
        venue_caps = {{ mall = 1.00 }}
        operator_factors = {{ op-unicom = 1.2, op-mobile = 0.9 }}

        [subsidy.rates]
        transport_hub = 0.50
        hospital = 0.60
        shopping_mall = 0.40
        leisure_square = 0.45

        [[api_tokens]]
        name = "it-bureau"
        sha256 = "{sha(TOKENS["reports"])}"
        roles = ["reports"]

        [[api_tokens]]
        name = "security-officer"
        sha256 = "{sha(TOKENS["audit"])}"
        roles = ["audit"]

        [[api_tokens]]
        name = "ops"
        sha256 = "{sha(TOKENS["admin"])}"
        roles = ["admin"]
        """
    )
    path = directory / "citywifi.toml"
    path.write_text(text + textwrap.dedent(extra))
    return path


class Clock:
    """The controller's clock, set by the test (crossing days without waiting)."""

    def __init__(self, moment: datetime) -> None:
        self.now = moment.timestamp()

    def set(self, moment: datetime) -> None:
        self.now = moment.timestamp()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def city(tmp_path: Path, redis_proc: RedisProcess) -> Config:
    return load_config(city_config(tmp_path, redis_proc.url))


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2025, 11, 10, 12, 0, tzinfo=SH))


@pytest.fixture
async def ctl(city: Config, clock: Clock) -> AsyncIterator[Controller]:
    controller = Controller(city, clock=clock)
    await controller.start()
    yield controller
    await controller.stop()


async def use(
    ctl: Controller,
    person: str,
    venue: str,
    seconds: int,
    sid: str,
    *,
    mac: str = "AA-BB-CC-00-00-01",
    status: str = "Stop",
    **kw: Any,
) -> str:
    """A login for the person, then accounting at the venue's AP; returns the person id."""
    issued = await login(ctl, phone=PHONES[person])
    reply = await acct(
        ctl,
        status,
        sid,
        seconds,
        user=issued.username,
        mac=mac,
        Called_Station_Id=f"{AP[venue]}:i-Test",
        **({"Acct_Terminate_Cause": "User-Request"} if status == "Stop" else {}),
        **kw,
    )
    assert reply is not None and reply.code == Code.ACCOUNTING_RESPONSE
    return issued.person


async def drain(ctl: Controller) -> int:
    assert ctl.archiver is not None
    return await ctl.archiver.drain()
