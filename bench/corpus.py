"""Corpora for citywifi load tests, and the Redis state that makes them valid.

    .venv/bin/python -m bench.corpus seed --config bench.toml --persons 5000
    .venv/bin/python -m bench.corpus auth --config bench.toml --persons 5000 --out auth.bin
    .venv/bin/python -m bench.corpus acct --config bench.toml --count 400000 --out acct.bin
    .venv/bin/python -m bench.corpus mix  --config bench.toml --count 200000 --out mix.bin
    .venv/bin/python -m bench.corpus dump auth.bin --secret testing123 --n 3

A replayed request only measures the server if the server can do its real work on it:
an Access-Request for an unknown device is rejected after one lookup, an accounting
packet without a known person takes the anonymous path. So the corpus and the seed share
one deterministic ``Population``: person i has the phone ``+86139<base+i>``, the person id
the server derives from it with the configured ``security.person_key``, and ``devices``
locally administered MACs. ``seed`` puts those persons in Redis through the project's
own code, the way production gets there: a one-time credential from ``issue_login`` (the
portal's and ``citywifi issue-login``'s entry), an Access-Request with it handled by the
RADIUS service (which consumes it and remembers the device's MAC), and an accounting Stop
of an earlier session so every person has usage today.

- ``auth``: MAC re-authentication of remembered devices (User-Name, PAP password and
  Calling-Station-Id = the MAC, Message-Authenticator first). Nothing is consumed, so the
  corpus can loop.
- ``acct``: sessions in batches of ``--batch``: Start of all, then Interim 1 of all, ...,
  then Stop of all, so a session's Start is ``batch`` packets ahead of its first Interim
  (far more than any window). A Class signed for the site's client (``cw2:<pid>:m:…``,
  controller.domain.identity) ties them to the person without a lookup, as the NAS echoes it
  from the Access-Accept; Acct-Session-Time is cumulative.
- ``mix``: per session the MAC login, then its Start, Interims and Stop (same batching).

Files are radload corpora (``bench.radload``): ``bench.radbench`` and the reference
``radblast`` replay them alike.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import struct
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.radload import KIND_ACCT, KIND_AUTH, CorpusWriter, read_corpus
from controller.config import Config, load_config
from controller.domain.identity import class_key, person_id, sign_class
from controller.domain.registry import Registry
from controller.services.logins import issue_login
from controller.services.radius_service import RadiusService
from controller.storage.keyfiles import load_person_key
from controller.storage.store import Store
from radius.attrs import AcctStatus, Attr, Code, TerminateCause
from radius.events import AccessAccept, Source, access_request, accounting_request
from radius.packet import (
    attr,
    attr_int,
    attr_text,
    decode_request,
    encode_request,
    encrypt_user_password,
)

SERVICE_CALL_CHECK = 10  # Service-Type of a MAC authentication (RFC 2865 §5.6)
PORT_TYPE_WIRELESS = 19  # NAS-Port-Type Wireless-802.11
DEFAULT_PHONE_BASE = 13_900_000_000  # +86 139 0000 0000: valid CN mobile numbers


@dataclass(frozen=True, slots=True)
class Population:
    """Who the load is about: person i, their phone, person id and devices."""

    person_key: bytes
    persons: int
    devices: int = 2
    phone_base: int = DEFAULT_PHONE_BASE

    def phone(self, i: int) -> str:
        return f"+86{self.phone_base + i}"

    def pid(self, i: int) -> str:
        return person_id(self.phone(i), self.person_key)

    @staticmethod
    def mac(i: int, device: int) -> str:
        """Locally administered (02-…), unique per person and device."""
        v = (0x02 << 40) | ((i & 0xFFFFFFFF) << 8) | (device & 0xFF)
        return "-".join(f"{(v >> s) & 0xFF:02X}" for s in range(40, -8, -8))


@dataclass(frozen=True, slots=True)
class Site:
    """The NAS the packets claim to come from (attribute data only)."""

    secret: bytes
    nas_identifier: str = "bench-nas"
    client_id: str = "bench-nas"  # the [[clients]] id its Class is signed for
    ap_mac: str = "02-AA-BB-00-00-01"  # Called-Station-Id MAC, matched by [[access_points]]
    ssid: str = "i-Bench"
    nas_ip: bytes = bytes((192, 0, 2, 1))  # TEST-NET-1: data only
    message_authenticator: bool = True


@dataclass(frozen=True, slots=True)
class Sessions:
    """How accounting sessions are laid out in ``acct`` and ``mix`` corpora."""

    batch: int = 10_000
    interims: int = 4
    interval: int = 300
    tag: str = ""  # Acct-Session-Id prefix; "" draws a random one


def _common(site: Site, mac: str, k: int) -> bytes:
    return b"".join(
        (
            attr(Attr.NAS_IP_ADDRESS, site.nas_ip),
            attr_text(Attr.NAS_IDENTIFIER, site.nas_identifier),
            attr_int(Attr.NAS_PORT, k & 0xFFFF),
            attr_int(Attr.NAS_PORT_TYPE, PORT_TYPE_WIRELESS),
            attr_text(Attr.CALLED_STATION_ID, f"{site.ap_mac}:{site.ssid}"),
            attr_text(Attr.CALLING_STATION_ID, mac),
            attr(Attr.FRAMED_IP_ADDRESS, bytes((198, 18, (k >> 8) & 0xFF, k & 0xFF))),
        )
    )


def mac_login(site: Site, mac: str, k: int, rng: random.Random) -> bytes:
    """A MAC re-authentication Access-Request (the NAS knows the device, no portal)."""
    authenticator = rng.randbytes(16)
    attrs = b"".join(
        (
            attr_text(Attr.USER_NAME, mac),
            attr(
                Attr.USER_PASSWORD,
                encrypt_user_password(mac.encode(), site.secret, authenticator),
            ),
            attr_int(Attr.SERVICE_TYPE, SERVICE_CALL_CHECK),
            _common(site, mac, k),
        )
    )
    return encode_request(
        Code.ACCESS_REQUEST,
        k & 0xFF,
        site.secret,
        attrs,
        authenticator=authenticator,
        message_authenticator=site.message_authenticator,
    )


def accounting(
    site: Site,
    *,
    status: int,
    klass: bytes,
    mac: str,
    session_id: str,
    session_time: int,
    k: int,
    event_time: int,
    octet_rate: tuple[int, int],
) -> bytes:
    """An Accounting-Request of a MAC-authenticated session (Class as the Accept gave it)."""
    parts = [
        attr_int(Attr.ACCT_STATUS_TYPE, status),
        attr_text(Attr.USER_NAME, mac),
        attr_text(Attr.ACCT_SESSION_ID, session_id),
        attr(Attr.CLASS, klass),
        _common(site, mac, k),
        attr_int(Attr.ACCT_DELAY_TIME, 0),  # a blaster's pass k sets it to k
        attr_int(Attr.EVENT_TIMESTAMP, event_time & 0xFFFFFFFF),
    ]
    if status != AcctStatus.START:
        octets_in, octets_out = (session_time * r for r in octet_rate)
        parts += [
            attr_int(Attr.ACCT_SESSION_TIME, session_time),
            attr_int(Attr.ACCT_INPUT_OCTETS, octets_in & 0xFFFFFFFF),
            attr_int(Attr.ACCT_OUTPUT_OCTETS, octets_out & 0xFFFFFFFF),
            attr_int(Attr.ACCT_INPUT_GIGAWORDS, octets_in >> 32),
            attr_int(Attr.ACCT_OUTPUT_GIGAWORDS, octets_out >> 32),
            attr_int(Attr.ACCT_INPUT_PACKETS, (octets_in // 900) & 0xFFFFFFFF),
            attr_int(Attr.ACCT_OUTPUT_PACKETS, (octets_out // 300) & 0xFFFFFFFF),
        ]
    if status == AcctStatus.STOP:
        parts.append(attr_int(Attr.ACCT_TERMINATE_CAUSE, TerminateCause.USER_REQUEST))
    return encode_request(
        Code.ACCOUNTING_REQUEST, k & 0xFF, site.secret, b"".join(parts), message_authenticator=False
    )


def write_auth(path: Path, pop: Population, site: Site, count: int, seed: int = 1) -> int:
    """``count`` MAC re-authentications over every remembered device, in shuffled rounds."""
    rng = random.Random(seed)
    devices = [(i, d) for i in range(pop.persons) for d in range(pop.devices)]
    with CorpusWriter(path, site.secret) as w:
        k = 0
        while k < count:
            rng.shuffle(devices)
            for i, d in devices[: count - k]:
                w.add(KIND_AUTH, mac_login(site, pop.mac(i, d), k, rng))
                k += 1
        return w.count


@dataclass(frozen=True, slots=True)
class _Planned:
    person: int
    device: int
    session_id: str
    final: int  # Acct-Session-Time of the Stop
    octet_rate: tuple[int, int]


def _batches(pop: Population, plan: Sessions, rng: random.Random) -> Iterator[list[_Planned]]:
    """Endless batches of concurrent sessions; persons and devices round-robin."""
    tag = plan.tag or os.urandom(4).hex()
    n = 0
    b = 0
    while True:
        rows = []
        for j in range(plan.batch):
            person = (n + j) % pop.persons
            device = ((n + j) // pop.persons) % pop.devices
            final = plan.interims * plan.interval + rng.randrange(plan.interval)
            rate = (rng.randint(2000, 20000), rng.randint(200, 4000))
            rows.append(_Planned(person, device, f"{tag}-{b:05d}-{j:06d}", final, rate))
        yield rows
        n += plan.batch
        b += 1


def _write_sessions(
    path: Path,
    pop: Population,
    site: Site,
    count: int,
    plan: Sessions,
    *,
    with_login: bool,
    seed: int,
    now: int | None,
) -> int:
    rng = random.Random(seed)
    now = int(time.time()) if now is None else now
    key = class_key(pop.person_key)
    # one login per person, as if each had logged in once (nonce: the person's index)
    classes = [
        sign_class(key, pop.pid(i), "m", site.client_id, f"{i:016x}") for i in range(pop.persons)
    ]
    phases = plan.interims + 2  # Start, Interims, Stop
    with CorpusWriter(path, site.secret) as w:
        k = 0
        for rows in _batches(pop, plan, rng):
            for phase in range(-1 if with_login else 0, phases):
                for s in rows:
                    if w.count >= count:
                        return w.count
                    mac = pop.mac(s.person, s.device)
                    if phase < 0:
                        w.add(KIND_AUTH, mac_login(site, mac, k, rng))
                    else:
                        if phase == 0:
                            status, t = AcctStatus.START, 0
                        elif phase <= plan.interims:
                            status, t = AcctStatus.INTERIM_UPDATE, phase * plan.interval
                        else:
                            status, t = AcctStatus.STOP, s.final
                        packet = accounting(
                            site,
                            status=status,
                            klass=classes[s.person],
                            mac=mac,
                            session_id=s.session_id,
                            session_time=t,
                            k=k,
                            event_time=now - (s.final - t),
                            octet_rate=s.octet_rate,
                        )
                        w.add(KIND_ACCT, packet)
                    k += 1
    return w.count  # not reached: the batches never end


def write_acct(
    path: Path,
    pop: Population,
    site: Site,
    count: int,
    plan: Sessions = Sessions(),
    *,
    seed: int = 1,
    now: int | None = None,
) -> int:
    return _write_sessions(path, pop, site, count, plan, with_login=False, seed=seed, now=now)


def write_mix(
    path: Path,
    pop: Population,
    site: Site,
    count: int,
    plan: Sessions = Sessions(),
    *,
    seed: int = 1,
    now: int | None = None,
) -> int:
    return _write_sessions(path, pop, site, count, plan, with_login=True, seed=seed, now=now)


# --------------------------------------------------------------------------- seeding


class SeedError(Exception):
    """The server refused a seeding step: the corpora would not be valid."""


async def seed(
    config: Config,
    store: Store,
    pop: Population,
    *,
    client_id: str,
    used: int = 1800,
    concurrency: int = 64,
    now: int | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> int:
    """Make every person of ``pop`` known, their devices remembered and ``used`` seconds
    used today, through ``issue_login`` and the RADIUS service itself. Returns persons."""
    client = next((c for c in config.clients if c.id == client_id), None)
    if client is None:
        raise SeedError(f"no [[clients]] entry with id {client_id!r}")
    service = RadiusService(config, store, person_key=pop.person_key)
    site = Site(client.secret, client_id=client.id)
    t0 = int(time.time()) if now is None else now
    key = class_key(pop.person_key)

    async def one(i: int) -> None:
        pid = pop.pid(i)
        rng = random.Random(i)
        username = ""
        for d in range(pop.devices):
            mac = pop.mac(i, d)
            issued = await issue_login(
                store,
                phone_e164=pop.phone(i),
                mac=mac,
                client_id=client.id,
                person_key=pop.person_key,
                ttl=config.quota.login_ttl,
                now=t0,
            )
            username = username or issued.username
            authenticator = rng.randbytes(16)
            attrs = b"".join(
                (
                    attr_text(Attr.USER_NAME, issued.username),
                    attr(
                        Attr.USER_PASSWORD,
                        encrypt_user_password(
                            issued.password.encode(), client.secret, authenticator
                        ),
                    ),
                    _common(site, mac, i),
                )
            )
            packet = encode_request(
                Code.ACCESS_REQUEST, d, client.secret, attrs, authenticator=authenticator
            )
            request = decode_request(packet, client.secret)
            reply = await service.access(
                access_request(request, client.id, client.secret, Source("", 0))
            )
            if not isinstance(reply, AccessAccept):
                raise SeedError(f"person {i} device {d}: the login was not accepted: {reply}")
        if used > 0:
            stop = b"".join(
                (
                    attr_int(Attr.ACCT_STATUS_TYPE, AcctStatus.STOP),
                    attr_text(Attr.USER_NAME, username),
                    attr_text(Attr.ACCT_SESSION_ID, f"seed-{i}"),
                    attr(Attr.CLASS, sign_class(key, pid, "c", client.id, f"{i:016x}")),
                    _common(site, pop.mac(i, 0), i),
                    attr_int(Attr.ACCT_SESSION_TIME, used),
                    attr_int(Attr.ACCT_TERMINATE_CAUSE, TerminateCause.USER_REQUEST),
                )
            )
            packet = encode_request(
                Code.ACCOUNTING_REQUEST, 0, client.secret, stop, message_authenticator=False
            )
            request = decode_request(packet, client.secret)
            reply = await service.accounting(accounting_request(request, client.id, Source("", 0)))
            if reply is None:
                raise SeedError(f"person {i}: the seed accounting was not recorded")

    await _bounded(one, pop.persons, concurrency, on_progress)
    return pop.persons


async def _bounded(
    job: Callable[[int], Awaitable[None]],
    n: int,
    concurrency: int,
    on_progress: Callable[[int], None] | None,
) -> None:
    """Run ``job(0..n-1)`` with at most ``concurrency`` at a time; the first error wins."""
    items = iter(range(n))
    done = 0

    async def worker() -> None:
        nonlocal done
        for i in items:
            await job(i)
            done += 1
            if on_progress is not None and done % 1000 == 0:
                on_progress(done)

    tasks = [asyncio.ensure_future(worker()) for _ in range(max(1, min(concurrency, n)))]
    try:
        await asyncio.gather(*tasks)
    finally:
        for t in tasks:
            t.cancel()


# --------------------------------------------------------------------------- command line


def _site_from(args: argparse.Namespace) -> tuple[Population, Site, Config | None, str]:
    """Population and site from ``--config`` (person key, client secret, AP) or options."""
    config = None
    client_id = args.client or ""
    secret = args.secret.encode() if args.secret else b""
    person_key = args.person_key.encode() if args.person_key else b""
    nas_id, ap_mac, ssid = args.nas_id, args.ap_mac, args.ssid
    if args.config:
        config = load_config(args.config)
        registry = Registry(config)
        client = (
            registry.clients_by_id.get(client_id) if client_id else registry.client_for(args.source)
        )
        if client is None:
            raise SystemExit(f"bench.corpus: no client {client_id or 'for ' + args.source}")
        client_id = client.id
        secret = secret or client.secret
        person_key = person_key or load_person_key(
            config.security.person_key, config.redis.data_dir
        )
        nas_id = nas_id or client.nas_identifier or client.id
        macs = [m for m in config.access_points if len(m) == 17 and m.count("-") == 5]
        ap_mac = ap_mac or (macs[0] if macs else "")
        ssid = ssid or config.brand.ssid
    if not secret or not person_key:
        raise SystemExit("bench.corpus: give --config, or --secret and --person-key")
    pop = Population(person_key, args.persons, args.devices, args.phone_base)
    site = Site(
        secret,
        nas_identifier=nas_id or "bench-nas",
        client_id=client_id or nas_id or "bench-nas",
        ap_mac=ap_mac or "02-AA-BB-00-00-01",
        ssid=ssid or "i-Bench",
        message_authenticator=not args.no_message_authenticator,
    )
    return pop, site, config, client_id


async def _seed_cli(config: Config, pop: Population, client_id: str, used: int) -> int:
    from controller.storage.redis_conn import (
        connect_store,  # the server's wiring: only the CLI needs it
        embedded_for,
    )

    embedded = embedded_for(config.redis)
    store = await connect_store(config, embedded)
    try:
        return await seed(
            config,
            store,
            pop,
            client_id=client_id,
            used=used,
            on_progress=lambda n: print(f"  seeded {n} persons", file=sys.stderr),
        )
    finally:
        await store.close()
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)  # only stops a server this command started


def dump(path: Path, secret: bytes, n: int) -> None:
    """Decode the first ``n`` records with the project's codec (verifying them)."""
    corpus = read_corpus(path)
    upper = {"NAS", "IP", "CHAP", "EAP", "IPV6"}
    names = {
        int(a): "-".join(w if w in upper else w.capitalize() for w in a.name.split("_"))
        for a in Attr
    }
    print(f"{path}: {len(corpus.records)} records, secret matches: {corpus.matches(secret)}")
    for i, r in enumerate(corpus.records[:n]):
        req = decode_request(r.packet, secret)
        print(f"#{i} {'acct' if r.kind else 'auth'} code={req.code} expect={r.expect or '-'}")
        for atype, values in req.attrs.items():
            for v in values:
                if atype in (Attr.USER_PASSWORD, Attr.MESSAGE_AUTHENTICATOR):
                    shown = "0x" + v.hex()
                elif len(v) == 4 and atype not in (Attr.NAS_IP_ADDRESS, Attr.FRAMED_IP_ADDRESS):
                    shown = str(struct.unpack("!I", v)[0])
                elif atype in (Attr.NAS_IP_ADDRESS, Attr.FRAMED_IP_ADDRESS):
                    shown = ".".join(map(str, v))
                else:
                    shown = v.decode("utf-8", "replace")
                print(f"    {names.get(atype, str(atype))} = {shown}")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="bench.corpus", description=__doc__.splitlines()[0] if __doc__ else None
    )
    ap.add_argument("what", choices=["auth", "acct", "mix", "seed", "dump"])
    ap.add_argument("file", nargs="?", type=Path, help="dump: the corpus")
    ap.add_argument("--config", type=Path, help="citywifi config: secret, person key, AP")
    ap.add_argument("--client", help="[[clients]] id (default: the one for --source)")
    ap.add_argument("--source", default="127.0.0.1", help="address the load is sent from")
    ap.add_argument("--secret", default="", help="without --config (dump: to verify)")
    ap.add_argument("--person-key", default="", help="without --config: security.person_key")
    ap.add_argument("--nas-id", default="")
    ap.add_argument("--ap-mac", default="")
    ap.add_argument("--ssid", default="")
    ap.add_argument("--persons", type=int, default=5000)
    ap.add_argument("--devices", type=int, default=2, help="remembered devices per person")
    ap.add_argument("--phone-base", type=int, default=DEFAULT_PHONE_BASE)
    ap.add_argument("--count", type=int, default=100_000, help="packets")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--batch", type=int, default=10_000, help="concurrent sessions per batch")
    ap.add_argument("--interims", type=int, default=4)
    ap.add_argument("--interval", type=int, default=300, help="session seconds per interim")
    ap.add_argument("--tag", default="", help="Acct-Session-Id prefix (default random)")
    ap.add_argument("--used", type=int, default=1800, help="seed: seconds used today")
    ap.add_argument("--no-message-authenticator", action="store_true")
    ap.add_argument("--seed", type=int, default=1, help="random seed of the corpus")
    ap.add_argument("--n", type=int, default=5, help="dump: records to show")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.what == "dump":
        if args.file is None:
            raise SystemExit("bench.corpus dump FILE --secret S")
        dump(args.file, args.secret.encode(), args.n)
        return 0
    pop, site, config, client_id = _site_from(args)
    t = time.monotonic()
    if args.what == "seed":
        if config is None:
            raise SystemExit("bench.corpus seed needs --config")
        n = asyncio.run(_seed_cli(config, pop, client_id, args.used))
        print(f"seeded {n} persons in {time.monotonic() - t:.1f}s", file=sys.stderr)
        return 0
    if args.out is None:
        raise SystemExit("bench.corpus: --out is required")
    plan = Sessions(args.batch, args.interims, args.interval, args.tag)
    if args.what == "auth":
        n = write_auth(args.out, pop, site, args.count, args.seed)
    elif args.what == "acct":
        n = write_acct(args.out, pop, site, args.count, plan, seed=args.seed)
    else:
        n = write_mix(args.out, pop, site, args.count, plan, seed=args.seed)
    size = args.out.stat().st_size / 1e6
    print(
        f"wrote {n} packets to {args.out} ({size:.1f} MB) in {time.monotonic() - t:.1f}s",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
