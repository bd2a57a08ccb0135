"""EAP-TTLS/PAP logins through a live ``citywifi serve`` (Controller in process, real
Redis started here, UDP on loopback), driven by the tests' pyOpenSSL peer.

Prints the wall time per login (every Access-Request/Access-Challenge round over UDP,
argon2id in the executor, the allowance decision, the Accept) sequentially, and the
throughput of ``--concurrency`` logins in flight. Each login uses its own
Calling-Station-Id and person (max_devices is per person). Figures, no assertions.

``--resume``: each full login is followed by a second one of the same phone that resumes
the TLS session (RFC 5281 §7.3, the session id kept by the peer; wpa_supplicant's way):
its peer sends a wrong password, so it is only accepted if the server skipped phase 2
(and argon2id) as it should. Both are timed, sequentially and ``--concurrency`` in flight.

    .venv/bin/python -m bench.eap_serve_bench --logins 40 --concurrency 4 [--resume]
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from controller.cli.serve import Controller
from controller.config import load_config
from controller.domain.eap_credentials import RANDOM_OCTETS, CredentialPolicy, IssuedCredential
from controller.services.logins import issue_login
from controller.services.passpoint import issue_for
from controller.storage.eap_credentials import EapCredentialStore
from radius.attrs import Attr, Code
from radius.eap import eap_message_attrs
from radius.packet import attr, attr_text, decode_reply, encode_request
from tests.conftest import SECRET, write_config
from tests.support.eap_kit import Pki, TtlsPeer, make_pki, passpoint_section
from tests.support.pyrad_client import RadiusClient
from tests.support.redis_proc import free_port

REALM = "city.example"


def _full_peer(pki: Pki, issued: IssuedCredential) -> TtlsPeer:
    return TtlsPeer(pki.ca_pem, issued.credential.username, issued.secret.encode())


def _resuming_peer(pki: Pki, issued: IssuedCredential, first: TtlsPeer) -> TtlsPeer:
    """A peer resuming ``first``'s TLS session, with a password that would fail phase 2."""
    return TtlsPeer(pki.ca_pem, issued.credential.username, b"not asked", resume_from=first)


async def _login(ctl: Controller, peer: TtlsPeer, mac: str) -> float:
    secret = SECRET.encode()
    started = time.perf_counter()
    eap, state = peer.identity_response(), None
    async with RadiusClient(
        ("127.0.0.1", ctl.auth_port), secret, local_addr=("127.0.0.1", 0)
    ) as nas:
        for ident in range(64):
            attrs = eap_message_attrs(eap) + attr_text(Attr.CALLING_STATION_ID, mac)
            if state is not None:
                attrs += attr(Attr.STATE, state)
            data = encode_request(
                Code.ACCESS_REQUEST,
                ident,
                secret,
                attrs,
                authenticator=secrets.token_bytes(16),
                message_authenticator=True,
            )
            raw = await nas.request_raw(data, timeout=5.0)
            assert raw is not None, "no answer"
            reply = decode_reply(raw, secret, data[4:20], require_message_authenticator=True)
            if reply.code == Code.ACCESS_ACCEPT:
                return time.perf_counter() - started
            assert reply.code == Code.ACCESS_CHALLENGE, reply.code
            state = reply.attrs[int(Attr.STATE)][0]
            eap = peer.respond(b"".join(reply.attrs[int(Attr.EAP_MESSAGE)]))
    raise AssertionError("too many rounds")


async def _run(args: argparse.Namespace, work: Path) -> None:
    port = free_port()
    redis = subprocess.Popen(
        ["redis-server", "--port", str(port), "--save", "", "--dir", str(work)],
        stdout=subprocess.DEVNULL,
    )
    try:
        pki = make_pki(REALM)
        extra = passpoint_section(work, pki, REALM)
        config = load_config(write_config(work, f"redis://127.0.0.1:{port}/0", extra=extra))
        for _ in range(100):
            try:
                ctl = Controller(config)
                await ctl.start()
                break
            except Exception:  # redis-server still coming up
                await asyncio.sleep(0.05)
        assert ctl.store is not None
        store = EapCredentialStore(ctl.store.redis)
        policy = CredentialPolicy(REALM)  # the production argon2id cost (19 MiB, t=2)
        now = int(time.time())
        creds = []
        for i in range(args.logins * 2):
            person = await issue_login(
                ctl.store,
                phone_e164=f"+86138{i:08d}",
                mac="",
                client_id="nas-local",
                person_key=ctl.person_key,
                ttl=300,
                now=now,
            )
            creds.append(
                await issue_for(
                    store, policy, person.person, now, secrets.token_bytes(RANDOM_OCTETS)
                )
            )

        def mac(i: int, group: int) -> str:
            return f"02-00-00-{group:02X}-{i // 256:02X}-{i % 256:02X}"

        sequential, resumed = [], []
        firsts: dict[int, TtlsPeer] = {}
        for i in range(args.logins):
            peer = firsts[i] = _full_peer(pki, creds[i])
            sequential.append(await _login(ctl, peer, mac(i, 0)))
            if args.resume:
                again = _resuming_peer(pki, creds[i], peer)
                resumed.append(await _login(ctl, again, mac(i, 0)))
        gate = asyncio.Semaphore(args.concurrency)

        async def one(i: int) -> float:
            async with gate:
                peer = firsts[i] = _full_peer(pki, creds[i])
                return await _login(ctl, peer, mac(i, 1))

        async def one_resumed(i: int) -> float:
            async with gate:
                return await _login(ctl, _resuming_peer(pki, creds[i], firsts[i]), mac(i, 1))

        batch = range(args.logins, 2 * args.logins)
        t0 = time.perf_counter()
        await asyncio.gather(*(one(i) for i in batch))
        elapsed = time.perf_counter() - t0
        print(
            f"full EAP-TTLS/PAP login through serve (argon2id 19 MiB t=2), {args.logins} logins:\n"
            f"  sequential wall time per login: {_figures(sequential)}\n"
            f"  {args.concurrency} in flight: {args.logins / elapsed:.1f} logins/s"
        )
        if args.resume:
            t0 = time.perf_counter()
            await asyncio.gather(*(one_resumed(i) for i in batch))
            elapsed = time.perf_counter() - t0
            print(
                f"resumed login (TLS session id, no phase 2, no argon2id), {args.logins}:\n"
                f"  sequential wall time per login: {_figures(resumed)}\n"
                f"  {args.concurrency} in flight: {args.logins / elapsed:.1f} logins/s"
            )
        await ctl.stop()
    finally:
        redis.terminate()
        redis.wait()


def _figures(seconds: list[float]) -> str:
    ms = sorted(x * 1000 for x in seconds)
    p95 = ms[min(len(ms) - 1, int(len(ms) * 0.95))]
    return f"median {statistics.median(ms):.1f} ms, p95 {p95:.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--logins", type=int, default=40)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument(
        "--resume", action="store_true", help="also time a second login resuming the TLS session"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        asyncio.run(_run(args, Path(work)))


if __name__ == "__main__":
    main()
