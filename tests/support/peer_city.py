"""A citywifi for tests whose real peers (FreeRADIUS, radsecproxy: ``tests.support.peers``)
live a whole module: its own Redis and a ``ServeThread``, the city's one operator and its
station venue (``STATION``, for the test's config), and a login for a new person each time
(each test's sessions are theirs alone)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

from controller.config import Config
from controller.services.logins import IssuedLogin, issue_login
from controller.storage import keys
from tests.support.peers import ServeThread
from tests.support.redis_proc import RedisProcess

STATION = """
[[operators]]
id = "op-telecom"
name = "中国电信"

[[venues]]
id = "station"
name = { zh = "石家庄站", en = "Shijiazhuang Railway Station" }
type = "transport_hub"
district = "桥西区"
operator = "op-telecom"
"""  # TOML: one operator, one venue; the test's [[clients]] sit at "station"


@dataclasses.dataclass
class PeerCity:
    redis: RedisProcess
    serve: ServeThread
    client: str  # the NAS client logins are issued at
    mac: str  # the device logins are issued for
    phones: str  # person N's number: phones + N in four digits
    persons: int = 0

    def login(self, mac: str | None = None, client: str | None = None) -> IssuedLogin:
        """A login for a person of its own."""
        ctl = self.serve.ctl
        assert ctl.store is not None
        self.persons += 1
        return self.serve.call(
            issue_login(
                ctl.store,
                phone_e164=f"{self.phones}{self.persons:04d}",
                mac=self.mac if mac is None else mac,
                client_id=client or self.client,
                person_key=ctl.person_key,
                ttl=300,
                now=int(time.time()),
            )
        )

    def session(self, pid: str, acct_session_id: str) -> dict[str, str]:
        store = self.serve.ctl.store
        assert store is not None
        return self.serve.call(store.session(pid, keys.session_id(self.client, acct_session_id)))

    def stop(self) -> None:
        self.serve.stop()
        self.redis.stop()


def start_served(
    directory: Path, config: Callable[[str], Config]
) -> tuple[RedisProcess, ServeThread]:
    """A Redis in ``directory`` and citywifi on it (``config``: the city for that Redis
    URL); the Redis is stopped again if citywifi does not start."""
    redis_proc = RedisProcess(directory / "redis")
    redis_proc.start()
    try:
        serve = ServeThread(config(redis_proc.url)).start()
    except BaseException:
        redis_proc.stop()
        raise
    return redis_proc, serve
