from __future__ import annotations

import functools
import textwrap
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
import structlog

from controller.cli import logs
from controller.cli.serve import Controller
from controller.config import Config, load_config
from tests.support.clocks import local_hour_clock
from tests.support.redis_proc import RedisProcess
from tests.support.redis_topologies import Cluster
from tests.support.store_rig import StoreRig, store_rig

SECRET = "testing123"


def pytest_report_header() -> str:
    """Which RADIUS data path this run's in-process servers use (``radius.fastpath``):
    the compiled extension, or the pure-Python fallback and why."""
    from radius import fastpath

    return f"data path: {fastpath.reason()}"


@pytest.fixture(autouse=True)
def _structlog_per_test(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A command run in-process (``controller.cli.main``) configures logging: keep its
    loggers uncached and restore the configuration, so later tests can capture logs."""
    monkeypatch.setattr(
        logs, "configure_logging", functools.partial(logs.configure_logging, cache=False)
    )
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


@pytest.fixture
def redis_proc(tmp_path: Path) -> Iterator[RedisProcess]:
    proc = RedisProcess(tmp_path / "redis")
    proc.start()
    yield proc
    proc.stop()


def service_sections(
    redis_url: str,
    *,
    daily_seconds: str = "7200",
    interim_interval: str = "300",
    quota_extra: str = "",
) -> str:
    """The parts of a test config every test city shares: brand, quota, loopback
    listeners on OS-chosen ports, the Redis URL, a fixed person key, quiet logs."""
    return textwrap.dedent(
        f"""
        [brand]
        ssid = "i-Test"
        name = {{ zh = "无线测试", en = "Wireless Test" }}

        [quota]
        daily_seconds = {daily_seconds}
        timezone = "Asia/Shanghai"
        max_devices = 2
        interim_interval = {interim_interval}
        remember_device_days = 1
        {quota_extra}

        [radius]
        bind = "127.0.0.1"
        auth_port = 0
        acct_port = 0

        [http]
        bind = "127.0.0.1"
        port = 0

        [redis]
        url = "{redis_url}"
        data_dir = "var"

        [security]
        person_key = "test-person-key-0123456789"

        [log]
        level = "warning"
        """
    )


def write_config(directory: Path, redis_url: str, **overrides: str) -> Path:
    """A small test city: one operator, two venues, clients on loopback, OS-chosen ports."""
    text = service_sections(
        redis_url,
        daily_seconds=overrides.get("daily_seconds", "7200"),
        interim_interval=overrides.get("interim_interval", "300"),
        quota_extra=overrides.get("quota", ""),
    ) + textwrap.dedent(
        f"""
        [[operators]]
        id = "op-telecom"
        name = "中国电信"

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
        operator = "op-telecom"

        [[clients]]
        id = "nas-local"
        address = "127.0.0.1"
        secret = "{SECRET}"
        venue = "station"
        vendor = "generic"

        [[clients]]
        id = "nas-local-2"
        address = "127.0.0.2"
        secret = "{SECRET}-2"
        venue = "hospital"
        vendor = "chilli"

        [[access_points]]
        match = "00-11-22-33-44-55"
        venue = "hospital"

        [subsidy]
        rates = {{ transport_hub = 0.50, hospital = 0.60 }}
        """
    )
    text += textwrap.dedent(overrides.get("extra", ""))  # more tables / [[clients]] entries
    path = directory / "citywifi.toml"
    path.write_text(text)
    return path


@pytest.fixture
def config(tmp_path: Path, redis_proc: RedisProcess) -> Config:
    return load_config(write_config(tmp_path, redis_proc.url))


@pytest.fixture
async def controller(config: Config) -> AsyncIterator[Controller]:
    # at local noon, running at real speed: what a test books as "today" stays today
    # at any hour the suite runs (near midnight a session's seconds fall on two days
    # and a Session-Timeout runs on into tomorrow's allowance: tests/support/clocks.py)
    ctl = Controller(config, clock=local_hour_clock(config.quota.timezone))
    await ctl.start()
    yield ctl
    await ctl.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """One aiohttp client session for the test (the console tests' ``Browser`` wraps it)."""
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A real three-primary Redis Cluster for the module's tests."""
    c = Cluster(tmp_path_factory.mktemp("cluster"))
    try:
        c.start()
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StoreRig]:
    """A Store on its own redis-server for the module's script tests (a test module that
    defines its own ``rig``, such as the portal's, overrides this one)."""
    with store_rig(tmp_path_factory.mktemp("redis")) as rig:
        yield rig
