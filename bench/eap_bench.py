"""EAP-TTLS/PAP login cost: full handshakes, resumptions, and the argon2id check.

    .venv/bin/python -m bench.eap_bench --logins 200
    .venv/bin/python -m bench.eap_bench --logins 50 --eapol-test 20

In process (``radius.eap_ttls.TtlsServer`` against the pyOpenSSL peer of the tests), the
server's own CPU time is measured around each ``step`` call, the peer's is not counted:

- ``full``: a new TLS session each login (EC P-256 certificate, ECDHE), phase 2 PAP
  with the argon2id verify of ``CredentialPolicy`` defaults (19 MiB, t=2);
- ``full, cheap verify``: the same with a constant-time compare, to show the TLS share;
- ``resumed``: the peer offers its previous session; no phase 2, no argon2.

With ``--eapol-test N``, also N logins of wpa_supplicant's eapol_test over UDP (a process
per login, so the figure includes its start-up: a ceiling on the server, not a rate).
Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import hmac
import secrets
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from controller.domain.eap_credentials import (
    RANDOM_OCTETS,
    CredentialPolicy,
    issue_credential,
    verify_credential,
)
from radius.eap_ttls import Challenge, PapCredentials, Success, TtlsServer
from tests.support.eap_kit import EapResponder, TtlsPeer, make_pki, run_eapol_test


def _login(
    server: TtlsServer,
    peer: TtlsPeer,
    verifier: Callable[[PapCredentials], bool],
) -> tuple[float, int, bool]:
    """One conversation; returns the server's CPU seconds, the rounds and resumed."""
    session = server.session(verifier)
    spent = 0.0
    rounds = 1
    t = time.process_time()
    step = session.step(peer.identity_response(), 0.0)
    spent += time.process_time() - t
    while isinstance(step, Challenge):
        answer = peer.respond(step.eap)
        t = time.process_time()
        step = session.step(answer, 0.0)
        spent += time.process_time() - t
        rounds += 1
    if not isinstance(step, Success):
        raise SystemExit(f"login failed: {step}")
    peer.finish()
    return spent, rounds, step.resumed


def _report(name: str, samples: list[float], rounds: int) -> None:
    ms = sorted(s * 1000 for s in samples)
    p95 = ms[min(len(ms) - 1, int(len(ms) * 0.95))]
    per_core = 1000 / statistics.mean(ms)
    print(
        f"{name:<22} n={len(ms):<5} rounds={rounds:<3} server CPU ms: "
        f"median {statistics.median(ms):6.2f}  p95 {p95:6.2f}  -> {per_core:6.0f} logins/s/core"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--logins", type=int, default=200)
    parser.add_argument("--eapol-test", type=int, default=0, metavar="N")
    args = parser.parse_args()

    pki = make_pki()
    server = TtlsServer(pki.server_chain_pem, pki.server_key_pem)
    policy = CredentialPolicy("city.example")
    issued = issue_credential("bench", policy, 0, secrets.token_bytes(RANDOM_OCTETS))
    user, password = issued.credential.username, issued.secret.encode()

    def argon2(c: PapCredentials) -> bool:
        return verify_credential(issued.credential, c.password, 1.0)

    def cheap(c: PapCredentials) -> bool:
        return hmac.compare_digest(c.password, password)

    for name, verifier in (("full, argon2id", argon2), ("full, cheap verify", cheap)):
        samples, rounds = [], 0
        for _ in range(args.logins):
            spent, rounds, _resumed = _login(server, TtlsPeer(pki.ca_pem, user, password), verifier)
            samples.append(spent)
        _report(name, samples, rounds)

    first = TtlsPeer(pki.ca_pem, user, password)
    _login(server, first, argon2)
    samples, rounds = [], 0
    for _ in range(args.logins):
        peer = TtlsPeer(pki.ca_pem, user, password, resume_from=first)
        spent, rounds, resumed = _login(server, peer, argon2)
        if not resumed:
            raise SystemExit("the session did not resume")
        samples.append(spent)
        first = peer
    _report("resumed", samples, rounds)

    samples_n = max(3, min(20, args.logins))
    t = time.process_time()
    for _ in range(samples_n):
        verify_credential(issued.credential, password, 1.0)
    alone = (time.process_time() - t) / samples_n * 1000
    print(f"argon2id verify alone: {alone:.1f} ms CPU")

    if args.eapol_test:
        with tempfile.TemporaryDirectory() as tmp, EapResponder(server, cheap) as responder:
            for reauth, name in ((0, "eapol_test full"), (4, "eapol_test 1 full + 4 resumed")):
                start = time.perf_counter()
                for _ in range(args.eapol_test):
                    result = run_eapol_test(
                        Path(tmp),
                        responder.port,
                        ca_pem=pki.ca_pem,
                        identity=user,
                        password=issued.secret,
                        reauth=reauth,
                    )
                    if not result.ok:
                        raise SystemExit(result.output[-2000:])
                wall = (time.perf_counter() - start) / args.eapol_test / (1 + reauth)
                print(f"{name:<30} wall ms per login (incl. process start): {wall * 1000:6.1f}")


if __name__ == "__main__":
    main()
