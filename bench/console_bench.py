"""What the console and the trace cost: argon2id hashing and verifying (a sign-in),
a TOTP check, decoding one packet for the trace, and the check the RADIUS hook makes for
an untraced client. Prints figures; asserts nothing. ``python -m bench.console_bench``."""

from __future__ import annotations

import time
import timeit

import pyotp
from argon2 import PasswordHasher
from pyrad.packet import AuthPacket

from controller.domain.accounts import totp_step
from radius.trace import trace
from tests.support.pyrad_client import load_dictionary, set_pap


def main() -> None:
    ph = PasswordHasher()
    h = ph.hash("correct horse battery")
    n = 10
    t = timeit.timeit(lambda: ph.hash("correct horse battery"), number=n) / n
    v = timeit.timeit(lambda: ph.verify(h, "correct horse battery"), number=n) / n
    print(f"argon2id hash {t * 1000:.1f} ms, verify {v * 1000:.1f} ms (64 MiB, t=3, p=4)")
    p = AuthPacket(secret=b"testing123", dict=load_dictionary(), id=1)
    p["User-Name"] = "f83e7234624de7d41f65.2fbsdhhx"
    p["NAS-IP-Address"] = "192.0.2.1"
    p["Called-Station-Id"] = "00-11-22-33-44-01:i-Test"
    p["Calling-Station-Id"] = "AA-BB-CC-00-00-01"
    p["WISPr-Location-Name"] = "Station"
    set_pap(p, "pw")
    p.add_message_authenticator()
    raw = p.RequestPacket()
    trace(raw)
    m = 20000
    d = timeit.timeit(lambda: trace(raw).lines(), number=m) / m
    print(f"radius.trace decode+format of a {len(raw)}-octet Access-Request: {d * 1e6:.1f} µs")
    traced = frozenset({"nas-a"})
    u = timeit.timeit(lambda: "nas-b" in traced, number=1_000_000) / 1_000_000
    print(f"untraced client check (set lookup): {u * 1e9:.0f} ns")
    s = pyotp.random_base32(32)
    now = time.time()
    c = pyotp.TOTP(s).now()
    k = timeit.timeit(lambda: totp_step(s, c, now), number=5000) / 5000
    print(f"totp_step (3 candidate steps): {k * 1e6:.1f} µs")


if __name__ == "__main__":
    main()
