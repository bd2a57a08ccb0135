"""The benchmark tools: corpus maker, radbench's re-signing, radbench against citywifi.

The corpora are decoded with the project's own codec (every signature verified). radbench
runs as a subprocess against a real controller (real redis-server, real UDP on loopback)
for about a second: every answer must verify and none may be missing. With a wrong secret
nothing may count as accepted: the server drops what it cannot verify, and an answer the
server signs with its own secret fails radbench's Response Authenticator check.
No figure is asserted: these tests say the tools are right, not how fast anything is.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bench.corpus import Population, Sessions, Site, seed, write_acct, write_auth, write_mix
from bench.radbench import Signer, make_template, sign
from bench.radload import KIND_ACCT, KIND_AUTH, read_corpus
from controller.cli.serve import Controller
from controller.config import load_config
from controller.domain import quota
from controller.domain.identity import class_key, verify_class
from radius.attrs import AcctStatus, Attr, Code
from radius.packet import decode_request, decrypt_user_password
from tests.conftest import SECRET, write_config
from tests.support.redis_proc import RedisProcess

ROOT = Path(__file__).resolve().parent.parent
PERSON_KEY = b"test-person-key-0123456789"  # tests.conftest.service_sections
AP = "00-11-22-33-44-55"
NO_MA_SECRET = "testing123-6"
NO_MA_CLIENT = f"""
[[clients]]
id = "nas-old"
address = "127.0.0.6"
secret = "{NO_MA_SECRET}"
venue = "station"
vendor = "generic"
require_message_authenticator = false
"""


def site(secret: str = SECRET, *, ma: bool = True) -> Site:
    return Site(
        secret.encode(),
        nas_identifier="nas-local",
        client_id="nas-local",
        ap_mac=AP,
        message_authenticator=ma,
    )


# --------------------------------------------------------------------------- corpora


def test_auth_corpus_decodes_as_mac_logins_of_remembered_devices(tmp_path: Path) -> None:
    pop = Population(PERSON_KEY, persons=3, devices=2)
    path = tmp_path / "auth.bin"
    assert write_auth(path, pop, site(), 10) == 10
    corpus = read_corpus(path)
    assert corpus.matches(SECRET.encode()) and not corpus.matches(b"other")
    macs = {pop.mac(i, d) for i in range(3) for d in range(2)}
    seen = set()
    for r in corpus.records:
        assert (r.kind, r.expect) == (KIND_AUTH, 0)
        req = decode_request(r.packet, SECRET.encode())  # Message-Authenticator verified
        assert req.code == Code.ACCESS_REQUEST and r.packet[20] == Attr.MESSAGE_AUTHENTICATOR
        mac = req.text(Attr.USER_NAME)
        assert mac in macs and req.text(Attr.CALLING_STATION_ID) == mac
        hidden = req.get(Attr.USER_PASSWORD)
        assert hidden is not None
        assert decrypt_user_password(hidden, SECRET.encode(), req.authenticator) == mac.encode()
        assert req.text(Attr.CALLED_STATION_ID) == f"{AP}:i-Bench"
        seen.add(mac)
    assert seen == macs  # every device of every person, shuffled rounds


def _sessions(path: Path, secret: bytes) -> tuple[list[Any], dict[str, list[tuple[int, int]]]]:
    """Decoded records, and per Acct-Session-Id its (record index, status) in order."""
    records = []
    by_session: dict[str, list[tuple[int, int]]] = {}
    for i, r in enumerate(read_corpus(path).records):
        req = decode_request(r.packet, secret)  # Request Authenticator verified
        records.append((r, req))
        if r.kind == KIND_ACCT:
            sid = req.text(Attr.ACCT_SESSION_ID)
            assert sid is not None
            by_session.setdefault(sid, []).append((i, req.integer(Attr.ACCT_STATUS_TYPE) or 0))
    return records, by_session


def test_acct_corpus_batches_sessions_with_class_and_cumulative_time(tmp_path: Path) -> None:
    pop = Population(PERSON_KEY, persons=4, devices=2)
    path = tmp_path / "acct.bin"
    plan = Sessions(batch=5, interims=2, interval=300, tag="t")
    assert write_acct(path, pop, site(), 2 * 5 * 4, plan) == 40  # two whole batches
    records, by_session = _sessions(path, SECRET.encode())
    pids = {pop.mac(i, d): pop.pid(i) for i in range(4) for d in range(2)}
    assert len(by_session) == 10
    for sid, packets in by_session.items():
        statuses = [s for _, s in packets]
        assert statuses == [
            AcctStatus.START,
            AcctStatus.INTERIM_UPDATE,
            AcctStatus.INTERIM_UPDATE,
            AcctStatus.STOP,
        ], sid
        indexes = [i for i, _ in packets]
        assert all(b - a == plan.batch for a, b in itertools.pairwise(indexes))
        times = [records[i][1].integer(Attr.ACCT_SESSION_TIME) or 0 for i in indexes]
        assert times[:3] == [0, 300, 600] and 600 <= times[3] < 900
        for i in indexes:
            req = records[i][1]
            mac = req.text(Attr.USER_NAME)
            claim = verify_class(class_key(PERSON_KEY), req.get(Attr.CLASS), "nas-local")
            assert claim is not None and (claim.person, claim.kind) == (pids[mac], "m")
            assert req.integer(Attr.ACCT_DELAY_TIME) == 0


def test_mix_corpus_logs_in_before_each_session(tmp_path: Path) -> None:
    pop = Population(PERSON_KEY, persons=3, devices=1)
    path = tmp_path / "mix.bin"
    write_mix(path, pop, site(), 3 * 5, Sessions(batch=3, interims=2, tag="m"))
    records, by_session = _sessions(path, SECRET.encode())
    logins = {
        req.text(Attr.USER_NAME): i for i, (r, req) in enumerate(records) if r.kind == KIND_AUTH
    }
    assert len(logins) == 3 and len(by_session) == 3
    for packets in by_session.values():
        first = records[packets[0][0]][1]
        assert logins[first.text(Attr.USER_NAME)] < packets[0][0]


@pytest.mark.parametrize("pass_no", [0, 3])
def test_radbench_resigns_access_requests_and_reencrypts_the_password(
    tmp_path: Path, pass_no: int
) -> None:
    pop = Population(PERSON_KEY, persons=1, devices=1)
    write_auth(tmp_path / "a.bin", pop, site(), 1)
    (record,) = read_corpus(tmp_path / "a.bin").records
    signer = Signer(SECRET.encode())
    packet, ra = sign(
        make_template(record.kind, record.expect, record.packet, signer), 77, pass_no, signer
    )
    req = decode_request(bytes(packet), SECRET.encode())
    assert req.identifier == 77 and req.authenticator == ra
    assert (ra == record.packet[4:20]) == (pass_no == 0)
    hidden = req.get(Attr.USER_PASSWORD)
    assert hidden is not None
    assert decrypt_user_password(hidden, SECRET.encode(), ra) == pop.mac(0, 0).encode()


def test_radbench_resigns_accounting_requests(tmp_path: Path) -> None:
    pop = Population(PERSON_KEY, persons=1, devices=1)
    write_acct(tmp_path / "c.bin", pop, site(), 1, Sessions(batch=1))
    (record,) = read_corpus(tmp_path / "c.bin").records
    signer = Signer(SECRET.encode())
    template = make_template(record.kind, record.expect, record.packet, signer)
    packet, ra = sign(template, 200, 2, signer)
    req = decode_request(bytes(packet), SECRET.encode())  # Request Authenticator recomputed
    assert (req.identifier, req.authenticator) == (200, ra)
    assert req.integer(Attr.ACCT_DELAY_TIME) == 2  # pass 2 is not a protocol duplicate


# --------------------------------------------------------------------------- against citywifi


@pytest.fixture
async def served(
    tmp_path: Path, redis_proc: RedisProcess
) -> AsyncIterator[tuple[Controller, Population]]:
    """A controller with 12 persons seeded (devices remembered, 600 s used today)."""
    config = load_config(
        write_config(tmp_path, redis_proc.url, extra=textwrap.dedent(NO_MA_CLIENT))
    )
    ctl = Controller(config)
    await ctl.start()
    try:
        assert ctl.store is not None
        pop = Population(PERSON_KEY, persons=12, devices=2)
        assert await seed(config, ctl.store, pop, client_id="nas-local", used=600) == 12
        yield ctl, pop
    finally:
        await ctl.stop()


async def radbench(ctl: Controller, corpus: Path, *args: str) -> dict[str, Any]:
    """Run ``bench.radbench`` against the controller; its JSON summary."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.radbench",
        "-p",
        str(ctl.auth_port),
        "-a",
        str(ctl.acct_port),
        "--json",
        "-",
        *args,
        str(corpus),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    result: dict[str, Any] = json.loads(out)
    return result


async def test_radbench_against_citywifi_every_answer_verifies(
    tmp_path: Path, served: tuple[Controller, Population]
) -> None:
    ctl, pop = served
    write_auth(tmp_path / "auth.bin", pop, site(), 24)
    r = await radbench(
        ctl, tmp_path / "auth.bin", "-k", SECRET, "-w", "8", "-d", "1", "-l", "--require-ma"
    )
    for key in ("rps", "lat_ms", "sent", "answered", "unanswered", "wrong", "codes", "kinds"):
        assert key in r, key
    assert set(r["lat_ms"]) == {"mean", "p50", "p90", "p99", "max"}
    assert r["sent"] > 24  # looped: passes after the first re-sign the same packets
    assert r["answered"] == r["ok"] == r["sent"] and r["unanswered"] == 0
    assert r["wrong"]["total"] == 0 and r["late"] == 0
    assert r["codes"] == {str(int(Code.ACCESS_ACCEPT)): r["sent"]}

    # logins and sessions, two processes, each packet once: the usage reaches the persons
    plan = Sessions(batch=12, interims=2, interval=300, tag="bench")
    n = write_mix(tmp_path / "mix.bin", pop, site(), 12 * 5, plan)
    r = await radbench(
        ctl, tmp_path / "mix.bin", "-k", SECRET, "-w", "6", "--procs", "2", "--require-ma"
    )
    assert r["sent"] == r["answered"] == r["ok"] == n and r["unanswered"] == 0
    assert r["wrong"]["total"] == 0
    assert r["codes"] == {"2": 12, "5": 48} and set(r["kinds"]) == {"auth", "acct"}
    assert ctl.store is not None
    # the sessions' 600+ s may begin before local midnight (a run at 16:0x UTC is just
    # after midnight in Asia/Shanghai): count the usage of the day before too
    now = int(ctl.clock())
    days = {quota.day_key(quota.local_day(t, ctl.config.quota.timezone)) for t in (now, now - 3600)}
    used = [sum([await ctl.store.used_on(pop.pid(i), day) for day in days]) for i in range(12)]
    assert all(u >= 600 + 600 for u in used), used  # seed + at least two interims each


async def test_radbench_with_a_wrong_secret_counts_nothing_as_accepted(
    tmp_path: Path, served: tuple[Controller, Population]
) -> None:
    ctl, pop = served
    write_auth(tmp_path / "auth.bin", pop, site(), 24)
    quick = ("-w", "4", "-d", "0.5", "-t", "300", "-l", "-F")
    # the server verifies the Message-Authenticator and drops every request
    r = await radbench(ctl, tmp_path / "auth.bin", "-k", "wrong-secret", *quick)
    assert r["sent"] > 0 and r["answered"] == r["ok"] == 0 and r["unanswered"] == r["sent"]
    assert r["codes"] == {}

    # a client exempt from Message-Authenticator: the server answers (MAC logins check no
    # password), signed with its secret, and radbench refuses every answer
    write_auth(tmp_path / "old.bin", pop, site(NO_MA_SECRET, ma=False), 24)
    r = await radbench(ctl, tmp_path / "old.bin", "-k", "wrong-secret", "-b", "127.0.0.6", *quick)
    assert r["sent"] > 0 and r["answered"] == r["ok"] == 0 and r["codes"] == {}
    assert r["wrong"]["bad_authenticator"] > 0 and r["unanswered"] == r["sent"]

    # the same corpus with the right secret: accepted (the exemption is what let it through)
    r = await radbench(ctl, tmp_path / "old.bin", "-k", NO_MA_SECRET, "-b", "127.0.0.6", *quick)
    assert r["sent"] > 0 and r["ok"] == r["sent"] and r["wrong"]["total"] == 0
