"""radbench: replay a radload corpus against any RADIUS server and check every answer.

    .venv/bin/python -m bench.radbench -p 1812 -a 1813 -k testing123 -w 64 -d 15 -u 2 -l \\
        [--procs 2] [-r 5000] [--json out.json] CORPUS

Why our own load generator: a Python NAS (pyrad, asyncio) is slower than the server it
measures. Here every packet is pre-encoded (``bench.corpus`` or the reference
``mkcorpus.py`` write the corpus), and the per-packet work is what the protocol forces:
re-signing and verifying. Each of ``--procs`` worker processes replays every
``procs``-th record (so a session's packets stay in order in one process) over its own
non-blocking UDP sockets with a plain epoll loop, which costs far less per packet than
asyncio.

Per send, a fresh Identifier is taken from the socket's free list and the packet is
re-signed: the Message-Authenticator of an Access-Request is recomputed (RFC 3579 §3.2),
the Request Authenticator of an Accounting-Request is recomputed (RFC 2866 §3). With
``--loop`` pass k > 0 XORs k into the Access-Request's Request Authenticator (so it is
not a protocol duplicate, RFC 5080 §2.2.2) and therefore re-encrypts User-Password
(RFC 2865 §5.2); an Accounting-Request gets Acct-Delay-Time = k. Every answer is checked:
Response Authenticator (RFC 2865 §3), Message-Authenticator when present (required with
``--require-ma``), and the code the corpus expects (Access-Accept / Accounting-Response
unless the record says otherwise). Answers failing the Response Authenticator check do
not complete their request (they may be forged or signed with another secret); a stale
answer to an earlier use of the Identifier is counted as late, not wrong.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import multiprocessing
import os
import selectors
import socket
import sys
import time
from array import array
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from bench.radload import KIND_AUTH, CorpusError, read_corpus

ACCESS_REQUEST, ACCESS_ACCEPT, ACCOUNTING_REQUEST, ACCOUNTING_RESPONSE = 1, 2, 4, 5
STATUS_SERVER = 12
CODE_NAMES = {
    2: "Access-Accept",
    3: "Access-Reject",
    5: "Accounting-Response",
    11: "Access-Challenge",
}
MA, USER_PASSWORD, ACCT_DELAY_TIME = 80, 2, 41
ZERO16 = bytes(16)
KIND_NAMES = ("auth", "acct")  # indexed by the record kind (radload KIND_AUTH, KIND_ACCT)
WRONG_KINDS = (
    "bad_authenticator",
    "bad_message_authenticator",
    "missing_message_authenticator",
    "unexpected_code",
    "malformed",
)


class BenchError(Exception):
    """A setting or corpus radbench cannot run with; the message says which."""


# --------------------------------------------------------------------------- crypto


class Signer:
    """The shared-secret operations, with the keyed MD5 states prepared once."""

    def __init__(self, secret: bytes) -> None:
        self.secret = secret
        key = secret if len(secret) <= 64 else hashlib.md5(secret).digest()
        key = key.ljust(64, b"\x00")
        self._ipad = hashlib.md5(bytes(b ^ 0x36 for b in key))
        self._opad = hashlib.md5(bytes(b ^ 0x5C for b in key))
        self._keyed = hashlib.md5(secret)

    def hmac(self, data: bytes | bytearray) -> bytes:
        """HMAC-MD5 (RFC 2104) over ``data``."""
        inner = self._ipad.copy()
        inner.update(data)
        outer = self._opad.copy()
        outer.update(inner.digest())
        return outer.digest()

    def hide(self, plain: bytes, authenticator: bytes) -> bytes:
        """RFC 2865 §5.2: XOR 16-octet blocks with MD5(secret + previous block)."""
        out = []
        last = authenticator
        for i in range(0, len(plain), 16):
            h = self._keyed.copy()
            h.update(last)
            x = int.from_bytes(h.digest(), "big") ^ int.from_bytes(plain[i : i + 16], "big")
            last = x.to_bytes(16, "big")
            out.append(last)
        return b"".join(out)

    def reveal(self, hidden: bytes, authenticator: bytes) -> bytes:
        """The inverse of ``hide`` (the NUL padding is kept: the length must not change)."""
        out = []
        last = authenticator
        for i in range(0, len(hidden), 16):
            h = self._keyed.copy()
            h.update(last)
            block = hidden[i : i + 16]
            x = int.from_bytes(h.digest(), "big") ^ int.from_bytes(block, "big")
            out.append(x.to_bytes(16, "big"))
            last = block
        return b"".join(out)


# --------------------------------------------------------------------------- templates


@dataclass(frozen=True, slots=True)
class Template:
    """One corpus packet ready to re-sign: signatures zeroed, offsets found once."""

    kind: int
    expect: int
    code: int
    body: bytes  # identifier 0; MA value zeroed; Accounting-Request: authenticator zeroed
    authenticator: bytes  # Access-Request / Status-Server: the corpus Request Authenticator
    ma_at: int  # offset of the Message-Authenticator value, -1 when absent
    pw_at: int  # offset of the User-Password value, -1 when absent
    password: bytes  # User-Password revealed with the corpus authenticator (padded)
    delay_at: int  # offset of the Acct-Delay-Time value, -1 when absent


def make_template(kind: int, expect: int, packet: bytes, signer: Signer) -> Template:
    code = packet[0]
    if code not in (ACCESS_REQUEST, ACCOUNTING_REQUEST, STATUS_SERVER):
        raise BenchError(f"corpus packet of code {code}: only Access-, Accounting-Request")
    length = (packet[2] << 8) | packet[3]
    if length < 20 or length > len(packet):
        raise BenchError("corpus packet with a bad Length field")
    body = bytearray(packet[:length])
    body[1] = 0
    ma_at = pw_at = delay_at = -1
    pw_len = 0
    pos = 20
    while pos + 2 <= length:
        atype, alen = body[pos], body[pos + 1]
        if alen < 2 or pos + alen > length:
            raise BenchError("corpus packet with a bad attribute length")
        if atype == MA and alen == 18:
            ma_at = pos + 2
        elif atype == USER_PASSWORD and pw_at < 0:
            pw_at, pw_len = pos + 2, alen - 2
        elif atype == ACCT_DELAY_TIME and alen == 6:
            delay_at = pos + 2
        pos += alen
    if ma_at >= 0:
        body[ma_at : ma_at + 16] = ZERO16
    authenticator = bytes(body[4:20])
    password = b""
    if code == ACCOUNTING_REQUEST:
        body[4:20] = ZERO16
        authenticator = b""
        pw_at = -1
    elif pw_at >= 0:
        if pw_len % 16 or not 16 <= pw_len <= 128:
            pw_at = -1  # not a hidden password we could re-encrypt: sent as it is
        else:
            password = signer.reveal(bytes(body[pw_at : pw_at + pw_len]), authenticator)
    if not expect:
        expect = ACCESS_ACCEPT if kind == KIND_AUTH else ACCOUNTING_RESPONSE
    return Template(
        kind, expect, code, bytes(body), authenticator, ma_at, pw_at, password, delay_at
    )


def sign(t: Template, ident: int, pass_no: int, signer: Signer) -> tuple[bytearray, bytes]:
    """The packet to send for template ``t`` with Identifier ``ident`` in pass ``pass_no``;
    returns it and its Request Authenticator (what the answer is checked against)."""
    b = bytearray(t.body)
    b[1] = ident
    if t.code == ACCOUNTING_REQUEST:
        if pass_no and t.delay_at >= 0:
            b[t.delay_at : t.delay_at + 4] = (pass_no & 0xFFFFFFFF).to_bytes(4, "big")
        if t.ma_at >= 0:  # over 16 zero octets, before the Request Authenticator (RFC 5176 §3.4)
            b[t.ma_at : t.ma_at + 16] = signer.hmac(b)
        h = hashlib.md5(b)
        h.update(signer.secret)
        ra = h.digest()
        b[4:20] = ra
        return b, ra
    ra = t.authenticator
    if pass_no:
        ra = ra[:8] + (int.from_bytes(ra[8:], "big") ^ pass_no).to_bytes(8, "big")
        b[4:20] = ra
        if t.pw_at >= 0:
            b[t.pw_at : t.pw_at + len(t.password)] = signer.hide(t.password, ra)
    if t.ma_at >= 0:
        b[t.ma_at : t.ma_at + 16] = signer.hmac(b)
    return b, ra


def check_answer(
    data: bytes, ra: bytes, signer: Signer, require_ma: bool
) -> tuple[str | None, int]:
    """Verify an answer to a request with Request Authenticator ``ra``: returns the wrong
    kind (None when it verifies) and the packet's Length.

    "bad_authenticator" means the answer does not belong to this request under our secret.
    The Message-Authenticator is checked over the Request Authenticator; for an
    Accounting-Response 16 zero octets are accepted too (FreeRADIUS before 3.2.9), and
    ``require_ma`` does not apply to it (citywifi and FreeRADIUS send none there)."""
    size = len(data)
    if size < 20:
        return "malformed", 0
    plen = (data[2] << 8) | data[3]
    if plen < 20 or plen > size:
        return "malformed", 0
    h = hashlib.md5(data[:4])
    h.update(ra)
    h.update(data[20:plen])
    h.update(signer.secret)
    if h.digest() != data[4:20]:
        return "bad_authenticator", plen
    pos = 20
    while pos + 2 <= plen:
        alen = data[pos + 1]
        if alen < 2 or pos + alen > plen:
            return "malformed", plen
        if data[pos] == MA:
            if alen != 18:
                return "bad_message_authenticator", plen
            head, tail = data[:4], data[pos + 18 : plen]
            middle = data[20:pos] + b"\x50\x12" + ZERO16
            mac = data[pos + 2 : pos + 18]
            if signer.hmac(b"".join((head, ra, middle, tail))) == mac:
                return None, plen
            if data[0] == ACCOUNTING_RESPONSE and (
                signer.hmac(b"".join((head, ZERO16, middle, tail))) == mac
            ):
                return None, plen
            return "bad_message_authenticator", plen
        pos += alen
    required = require_ma and data[0] != ACCOUNTING_RESPONSE
    return ("missing_message_authenticator" if required else None), plen


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True, slots=True)
class Settings:
    host: str
    auth_port: int
    acct_port: int
    secret: bytes
    window: int
    procs: int
    sockets: int  # per process
    duration: float  # 0: no limit
    warmup: float
    count: int  # 0: no limit
    rate: float  # 0: closed loop
    timeout: float  # seconds
    retransmits: int
    loop: bool
    bind: str
    require_ma: bool
    interval: float  # seconds per reported interval

    def share(self, total: float, p: int) -> int:
        """Process ``p``'s share of an integer total (window, count), spread evenly."""
        base, extra = divmod(int(total), self.procs)
        return base + (1 if p < extra else 0)


def default_sockets(window: int, procs: int) -> int:
    """Source sockets per process: at least 16 in all (the kernel spreads UDP over
    SO_REUSEPORT workers by source port), enough that no socket needs over 256 IDs."""
    per = math.ceil(window / procs)
    return max(4, math.ceil(16 / procs), math.ceil(per / 256))


# --------------------------------------------------------------------------- one process


class Buckets:
    """Per-interval counters and latency samples (microseconds), per kind."""

    def __init__(self) -> None:
        self.sent: list[int] = []
        self.answered: list[int] = []
        self.unanswered: list[int] = []
        self.wrong: list[int] = []
        self.lat: tuple[list[array[int]], list[array[int]]] = ([], [])

    def grow(self, b: int) -> None:
        while len(self.sent) <= b:
            self.sent.append(0)
            self.answered.append(0)
            self.unanswered.append(0)
            self.wrong.append(0)
            self.lat[0].append(array("I"))
            self.lat[1].append(array("I"))


def run_process(
    p: int,
    s: Settings,
    templates: Sequence[Template],
    t_start: float,
    progress: Any | None,
) -> dict[str, Any]:
    """Replay ``templates`` (this process's share) and return its counters and samples."""
    signer = Signer(s.secret)
    window = max(1, s.share(s.window, p))
    n_socks = max(1, min(s.sockets, window))
    cap = min(256, math.ceil(window / n_socks))
    if cap * n_socks < window:
        raise BenchError(f"{n_socks} sockets cannot carry a window of {window}")
    max_sends = s.share(s.count, p) if s.count else 0
    rate = s.rate / s.procs if s.rate > 0 else 0.0
    n_tpl = len(templates)
    dests = ((s.host, s.auth_port), (s.host, s.acct_port))
    timeout = s.timeout
    inv_interval = 1.0 / s.interval
    t_warm = t_start + s.warmup
    t_end = t_warm + s.duration if s.duration > 0 else math.inf

    sel = selectors.EpollSelector()
    socks: list[socket.socket] = []
    for i in range(n_socks):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setblocking(False)
        for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, opt, 4 << 20)
        sock.bind((s.bind, 0))
        socks.append(sock)
        sel.register(sock, selectors.EVENT_READ, i)
    free_ids = [deque(range(256)) for _ in range(n_socks)]
    slots: list[list[list[Any] | None]] = [[None] * 256 for _ in range(n_socks)]
    prev_ra: list[list[bytes | None]] = [[None] * 256 for _ in range(n_socks)]
    outstanding = [0] * n_socks
    deadlines: deque[tuple[float, int, int, int]] = deque()  # (deadline, sock, id, seq)

    k = Buckets()
    kinds_sent = [0, 0]
    kinds_answered = [0, 0]
    kinds_unanswered = [0, 0]
    codes: dict[int, int] = {}
    wrong = dict.fromkeys(WRONG_KINDS, 0)
    counters = {
        "sent": 0,
        "answered": 0,
        "answered_wrong": 0,
        "unanswered": 0,
        "late": 0,
        "send_errors": 0,
        "retransmits": 0,
        "warmup_sent": 0,
        "warmup_answered": 0,
        "warmup_unanswered": 0,
    }
    seq = 0
    next_tpl = 0  # absolute index over passes
    sent_total = 0
    inflight = 0
    answers_in_period = 0
    stopping = False
    t_stopsend = 0.0
    rr = 0
    cpu0 = os.times()
    now = time.monotonic()
    while now < t_start:  # all processes start together (one monotonic clock)
        time.sleep(min(0.05, t_start - now))
        now = time.monotonic()
    next_progress = now

    def release(si: int, ident: int, ra: bytes) -> None:
        nonlocal inflight
        slots[si][ident] = None
        prev_ra[si][ident] = ra
        free_ids[si].append(ident)
        outstanding[si] -= 1
        inflight -= 1

    def fill(now: float, budget: int) -> None:
        """Send up to ``budget`` requests, spreading them over the sockets."""
        nonlocal seq, next_tpl, sent_total, inflight, rr
        measured = now >= t_warm
        b = int((now - t_start) * inv_interval)
        if b >= len(k.sent):
            k.grow(b)
        tries = 0
        while budget > 0 and tries < n_socks:
            si = rr
            rr = (rr + 1) % n_socks
            tries += 1
            sock = socks[si]
            dest_free = free_ids[si]
            while budget > 0 and outstanding[si] < cap:
                ident = dest_free.popleft()
                t = templates[next_tpl % n_tpl]
                pkt, ra = sign(t, ident, next_tpl // n_tpl, signer)
                next_tpl += 1
                seq += 1
                slots[si][ident] = [seq, ra, now, t.kind, t.expect, measured, pkt, 0]
                outstanding[si] += 1
                inflight += 1
                sent_total += 1
                budget -= 1
                deadlines.append((now + timeout, si, ident, seq))
                try:
                    sock.sendto(pkt, dests[t.kind])
                except OSError:
                    counters["send_errors"] += 1  # it will time out
                if measured:
                    counters["sent"] += 1
                    kinds_sent[t.kind] += 1
                else:
                    counters["warmup_sent"] += 1
                k.sent[b] += 1
                tries = 0

    while True:
        now = time.monotonic()
        if not stopping and (
            now >= t_end
            or (max_sends and sent_total >= max_sends)
            or (not s.loop and next_tpl >= n_tpl)
        ):
            stopping = True
            t_stopsend = now
        # timeouts, oldest first (retransmitted requests re-enter at the back)
        while deadlines and deadlines[0][0] <= now:
            _, si, ident, sq = deadlines.popleft()
            slot = slots[si][ident]
            if slot is None or slot[0] != sq:
                continue  # answered meanwhile
            if slot[7] < s.retransmits:
                slot[7] += 1
                counters["retransmits"] += 1
                deadlines.append((now + timeout, si, ident, sq))
                with contextlib.suppress(OSError):
                    socks[si].sendto(slot[6], dests[slot[3]])
                continue
            if slot[5]:
                counters["unanswered"] += 1
                kinds_unanswered[slot[3]] += 1
            else:
                counters["warmup_unanswered"] += 1
            b = int((now - t_start) * inv_interval)
            if b >= len(k.sent):
                k.grow(b)
            k.unanswered[b] += 1
            release(si, ident, slot[1])
        if not stopping:
            budget = window - inflight
            if rate:
                budget = min(budget, int((now - t_start) * rate) + 1 - sent_total)
            if max_sends:
                budget = min(budget, max_sends - sent_total)
            if not s.loop:
                budget = min(budget, n_tpl - next_tpl)
            if budget > 0:
                fill(now, budget)
        if stopping and inflight == 0:
            break
        if progress is not None and now >= next_progress:
            base = p * 4
            progress[base] = counters["sent"] + counters["warmup_sent"]
            progress[base + 1] = counters["answered"] + counters["warmup_answered"]
            progress[base + 2] = counters["unanswered"] + counters["warmup_unanswered"]
            progress[base + 3] = inflight
            next_progress = now + 0.25
        # wait for answers
        if not stopping and inflight < window and not rate:
            wait = 0.0
        else:
            wake = deadlines[0][0] if deadlines else now + 0.1
            if not stopping:
                if rate:
                    wake = min(wake, t_start + sent_total / rate)
                wake = min(wake, t_end)
            wait = min(max(wake - now, 0.0), 0.1)
        for key, _ in sel.select(wait):
            si = key.data
            sock = socks[si]
            sslots = slots[si]
            while True:
                try:
                    data, addr = sock.recvfrom(4096)
                except BlockingIOError:
                    break
                except OSError:
                    break  # ICMP port unreachable surfaced as ECONNREFUSED: a timeout follows
                now = time.monotonic()
                if len(data) < 20:
                    wrong["malformed"] += 1
                    continue
                ident = data[1]
                slot = sslots[ident]
                if slot is None:
                    counters["late"] += 1
                    continue
                kind = slot[3]
                if addr != dests[kind]:
                    wrong["malformed"] += 1
                    continue
                problem, _ = check_answer(data, slot[1], signer, s.require_ma)
                b = int((now - t_start) * inv_interval)
                if b >= len(k.sent):
                    k.grow(b)
                if problem == "bad_authenticator":
                    old = prev_ra[si][ident]
                    if old is not None and check_answer(data, old, signer, False)[0] is None:
                        counters["late"] += 1  # a late answer to the ID's previous use
                    else:
                        wrong["bad_authenticator"] += 1
                        k.wrong[b] += 1
                    continue
                code = data[0]
                if problem is None and code != slot[4]:
                    problem = "unexpected_code"
                if slot[5]:
                    counters["answered"] += 1
                    kinds_answered[kind] += 1
                    codes[code] = codes.get(code, 0) + 1
                    k.lat[kind][b].append(min(int((now - slot[2]) * 1e6), 0xFFFFFFFF))
                    if problem is not None:
                        wrong[problem] += 1
                        counters["answered_wrong"] += 1
                        k.wrong[b] += 1
                else:
                    counters["warmup_answered"] += 1
                k.answered[b] += 1
                if now >= t_warm and (not stopping or now <= t_stopsend):
                    answers_in_period += 1
                release(si, ident, slot[1])
    cpu1 = os.times()
    sel.close()
    for sock in socks:
        sock.close()
    period = max((t_stopsend or now) - t_warm, 1e-9)
    return {
        "counters": counters,
        "wrong": wrong,
        "codes": codes,
        "kinds_sent": kinds_sent,
        "kinds_answered": kinds_answered,
        "kinds_unanswered": kinds_unanswered,
        "rps": answers_in_period / period,
        "period": period,
        "sent_rate": sent_total / max((t_stopsend or now) - t_start, 1e-9),
        "cpu_s": (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system),
        "wall_s": now - t_start,
        "sockets": n_socks,
        "buckets": {
            "sent": k.sent,
            "answered": k.answered,
            "unanswered": k.unanswered,
            "wrong": k.wrong,
            "lat": [[a.tobytes() for a in per_kind] for per_kind in k.lat],
        },
    }


# --------------------------------------------------------------------------- many processes


def _child(
    conn: Connection,
    p: int,
    s: Settings,
    templates: Sequence[Template],
    t_start: float,
    progress: Any,
) -> None:
    try:
        conn.send(("ok", run_process(p, s, templates, t_start, progress)))
    except Exception as exc:  # reported by the parent, which exits non-zero
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


def percentile(sorted_values: Sequence[int], pct: float) -> float:
    """Nearest-rank percentile in milliseconds of microsecond samples (0 when empty)."""
    n = len(sorted_values)
    if not n:
        return 0.0
    i = min(n - 1, round(pct / 100.0 * (n - 1)))
    return sorted_values[i] / 1000.0


def _lat_summary(values: list[int]) -> dict[str, float]:
    values.sort()
    n = len(values)
    return {
        "mean": round(sum(values) / n / 1000.0, 4) if n else 0.0,
        "p50": round(percentile(values, 50), 4),
        "p90": round(percentile(values, 90), 4),
        "p99": round(percentile(values, 99), 4),
        "max": round(values[-1] / 1000.0, 4) if n else 0.0,
    }


def _samples(raw: bytes) -> array[int]:
    a = array("I")
    a.frombytes(raw)
    return a


def merge(s: Settings, parts: list[dict[str, Any]], label: str) -> dict[str, Any]:
    """One summary from the processes' results (exact percentiles over every sample)."""
    c: dict[str, int] = {}
    wrong = dict.fromkeys(WRONG_KINDS, 0)
    codes: dict[int, int] = {}
    kind_counts = {name: {"sent": 0, "answered": 0, "unanswered": 0} for name in KIND_NAMES}
    kind_lat: dict[str, list[int]] = {name: [] for name in KIND_NAMES}
    n_buckets = max(len(x["buckets"]["sent"]) for x in parts)
    per_bucket: list[dict[str, Any]] = [
        {"sent": 0, "answered": 0, "unanswered": 0, "wrong": 0, "lat": []} for _ in range(n_buckets)
    ]
    for x in parts:
        for key, v in x["counters"].items():
            c[key] = c.get(key, 0) + v
        for key, v in x["wrong"].items():
            wrong[key] += v
        for code, v in x["codes"].items():
            codes[code] = codes.get(code, 0) + v
        for i, name in enumerate(KIND_NAMES):
            kind_counts[name]["sent"] += x["kinds_sent"][i]
            kind_counts[name]["answered"] += x["kinds_answered"][i]
            kind_counts[name]["unanswered"] += x["kinds_unanswered"][i]
        bk = x["buckets"]
        for b in range(len(bk["sent"])):
            for field in ("sent", "answered", "unanswered", "wrong"):
                per_bucket[b][field] += bk[field][b]
            for i, name in enumerate(KIND_NAMES):
                samples = _samples(bk["lat"][i][b])
                kind_lat[name].extend(samples)
                per_bucket[b]["lat"].extend(samples)
    all_lat = kind_lat["auth"] + kind_lat["acct"]
    kind_out: dict[str, Any] = {}
    for name in KIND_NAMES:
        counts = kind_counts[name]
        if counts["sent"]:
            kind_out[name] = {**counts, "lat_ms": _lat_summary(kind_lat[name])}
    intervals = []
    for b, row in enumerate(per_bucket):
        lat = sorted(row.pop("lat"))
        row.update(
            t=round(b * s.interval, 3),
            warmup=b * s.interval < s.warmup,
            p99_ms=round(percentile(lat, 99), 4),
        )
        intervals.append(row)
    wall = max(x["wall_s"] for x in parts)
    cpu = sum(x["cpu_s"] for x in parts)
    return {
        "label": label,
        "server": f"{s.host}:{s.auth_port}/{s.acct_port}",
        "window": s.window,
        "procs": s.procs,
        "sockets": sum(x["sockets"] for x in parts),
        "rate_target": s.rate,
        "sent_rate": round(sum(x["sent_rate"] for x in parts), 1),
        "timeout_ms": round(s.timeout * 1000),
        "retransmit": s.retransmits,
        "warmup_s": s.warmup,
        "measured_s": round(max(x["period"] for x in parts), 3),
        "sent": c["sent"],
        "answered": c["answered"],
        "ok": c["answered"] - c["answered_wrong"],
        "unanswered": c["unanswered"],
        "wrong": {"total": sum(wrong.values()), **wrong},
        "late": c["late"],
        "send_errors": c["send_errors"],
        "retransmits": c["retransmits"],
        "warmup": {
            "sent": c["warmup_sent"],
            "answered": c["warmup_answered"],
            "unanswered": c["warmup_unanswered"],
        },
        "rps": round(sum(x["rps"] for x in parts), 1),
        "lat_ms": _lat_summary(all_lat),
        "kinds": kind_out,
        "codes": {str(code): n for code, n in sorted(codes.items())},
        "cpu_s": round(cpu, 3),
        "cpu_cores": round(cpu / wall, 3) if wall > 0 else 0.0,
        "wall_s": round(wall, 3),
        "interval_s": s.interval,
        "intervals": intervals,
    }


def run(
    s: Settings,
    templates: Sequence[Template],
    *,
    label: str = "",
    on_progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the load over ``s.procs`` processes (in this one when 1) and summarise it."""
    t_start = time.monotonic() + 0.3  # time for the workers to set up their sockets
    if s.procs == 1 and on_progress is None:
        return merge(s, [run_process(0, s, templates, t_start, None)], label)
    ctx = multiprocessing.get_context("fork")  # the parsed corpus is shared copy-on-write
    progress = ctx.Array("q", 4 * s.procs, lock=False)
    workers = []
    for p in range(s.procs):
        recv_end, send_end = ctx.Pipe(duplex=False)
        share = templates[p :: s.procs] if s.procs > 1 else templates
        proc = ctx.Process(
            target=_child, args=(send_end, p, s, share, t_start, progress), daemon=True
        )
        proc.start()
        send_end.close()
        workers.append((proc, recv_end))
    parts: list[dict[str, Any]] = []
    errors: list[str] = []
    try:
        pending = dict(enumerate(workers))
        next_line = time.monotonic() + 1.0
        last_answered = 0
        while pending:
            for i, (proc, conn) in list(pending.items()):
                if conn.poll(0.05):
                    try:
                        status, value = conn.recv()
                    except EOFError:
                        status, value = "error", f"worker {i} exited with {proc.exitcode}"
                    (parts if status == "ok" else errors).append(value)
                    del pending[i]
                elif not proc.is_alive() and not conn.poll(0):
                    errors.append(f"worker {i} died with exit code {proc.exitcode}")
                    del pending[i]
            now = time.monotonic()
            if on_progress is not None and now >= next_line:
                sent = sum(progress[4 * p] for p in range(s.procs))
                answered = sum(progress[4 * p + 1] for p in range(s.procs))
                unanswered = sum(progress[4 * p + 2] for p in range(s.procs))
                inflight = sum(progress[4 * p + 3] for p in range(s.procs))
                on_progress(
                    f"[{now - t_start:6.1f}s] sent={sent} answered={answered} "
                    f"unanswered={unanswered} inflight={inflight} "
                    f"rate={answered - last_answered:.0f}/s"
                )
                last_answered = answered
                next_line = now + 1.0
    finally:
        for proc, conn in workers:
            proc.join(5)
            if proc.is_alive():
                proc.terminate()
                proc.join(5)
            conn.close()
    if errors:
        raise BenchError("; ".join(errors))
    return merge(s, parts, label)


# --------------------------------------------------------------------------- command line


def format_summary(r: dict[str, Any]) -> str:
    """The human-readable report (the JSON has the same figures and more)."""
    lat = r["lat_ms"]
    w = r["wrong"]
    mode = f"paced at {r['rate_target']:.0f}/s" if r["rate_target"] else "closed loop"
    lines = [
        f"radbench {r['label'] or ''}".rstrip()
        + f": {r['server']} window={r['window']} procs={r['procs']} sockets={r['sockets']} "
        f"{mode}, measured {r['measured_s']:.2f}s after {r['warmup_s']:.1f}s warm-up",
        f"  sent={r['sent']} answered={r['answered']} ok={r['ok']} "
        f"unanswered={r['unanswered']} late={r['late']} send_errors={r['send_errors']} "
        f"retransmits={r['retransmits']}",
        f"  wrong={w['total']} (bad authenticator {w['bad_authenticator']}, "
        f"bad Message-Authenticator {w['bad_message_authenticator']}, "
        f"missing Message-Authenticator {w['missing_message_authenticator']}, "
        f"unexpected code {w['unexpected_code']}, malformed {w['malformed']})",
        f"  throughput={r['rps']:.0f} answers/s   latency ms: mean={lat['mean']:.3f} "
        f"p50={lat['p50']:.3f} p90={lat['p90']:.3f} p99={lat['p99']:.3f} max={lat['max']:.3f}",
    ]
    for name, k in r["kinds"].items():
        lines.append(
            f"  {name}: sent={k['sent']} answered={k['answered']} unanswered={k['unanswered']} "
            f"p50={k['lat_ms']['p50']:.3f} p99={k['lat_ms']['p99']:.3f}"
        )
    codes = " ".join(f"{CODE_NAMES.get(int(c), 'code')}({c})={n}" for c, n in r["codes"].items())
    lines.append(f"  codes: {codes or '-'}")
    lines.append(
        f"  radbench cpu={r['cpu_s']:.2f}s ({100 * r['cpu_cores']:.0f}% of one core) "
        f"wall={r['wall_s']:.2f}s"
    )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="radbench",
        description="Replay a radload corpus against a RADIUS server; check every answer.",
    )
    ap.add_argument("corpus", type=Path, help="radload corpus (bench.corpus or mkcorpus.py)")
    ap.add_argument("-s", "--server", default="127.0.0.1", help="server IPv4 address")
    ap.add_argument("-p", "--auth-port", type=int, default=1812)
    ap.add_argument("-a", "--acct-port", type=int, default=1813)
    ap.add_argument("-k", "--secret", default="testing123")
    ap.add_argument("-w", "--window", type=int, default=64, help="requests outstanding at once")
    ap.add_argument("--procs", type=int, default=1, help="worker processes (own sockets each)")
    ap.add_argument("-S", "--sockets", type=int, default=0, help="source sockets per process")
    ap.add_argument("-d", "--duration", type=float, default=10.0, help="seconds (0: no limit)")
    ap.add_argument("-u", "--warmup", type=float, default=0.0, help="seconds not measured")
    ap.add_argument("-n", "--count", type=int, default=0, help="stop after N requests")
    ap.add_argument("-r", "--rate", type=float, default=0.0, help="open loop: requests/s")
    ap.add_argument("-t", "--timeout-ms", type=int, default=2000, help="per-request timeout")
    ap.add_argument("--retransmit", type=int, default=0, help="retransmissions per request")
    ap.add_argument("-l", "--loop", action="store_true", help="replay the corpus in passes")
    ap.add_argument("-b", "--bind", default="127.0.0.1", help="local address to send from")
    ap.add_argument(
        "--require-ma", action="store_true", help="count answers without Message-Authenticator"
    )
    ap.add_argument("--interval", type=float, default=1.0, help="seconds per JSON interval")
    ap.add_argument("-F", "--force", action="store_true", help="secret differs from the corpus")
    ap.add_argument("-j", "--json", help="write the JSON summary here ('-': stdout)")
    ap.add_argument("-L", "--label", default="")
    ap.add_argument("-i", "--progress", action="store_true", help="a progress line per second")
    return ap


def settings_from(args: argparse.Namespace) -> Settings:
    if args.window < 1 or args.procs < 1 or args.interval <= 0 or args.timeout_ms < 1:
        raise BenchError("--window, --procs, --interval and --timeout-ms must be positive")
    if args.procs > args.window:
        raise BenchError("--procs above --window would leave processes idle")
    sockets = args.sockets or default_sockets(args.window, args.procs)
    if sockets * 256 < math.ceil(args.window / args.procs):
        raise BenchError("-S too small: a socket carries at most 256 outstanding requests")
    return Settings(
        host=args.server,
        auth_port=args.auth_port,
        acct_port=args.acct_port,
        secret=args.secret.encode(),
        window=args.window,
        procs=args.procs,
        sockets=sockets,
        duration=args.duration,
        warmup=args.warmup,
        count=args.count,
        rate=args.rate,
        timeout=args.timeout_ms / 1000.0,
        retransmits=args.retransmit,
        loop=args.loop,
        bind=args.bind,
        require_ma=args.require_ma,
        interval=args.interval,
    )


def load_templates(path: Path, secret: bytes, force: bool) -> list[Template]:
    corpus = read_corpus(path)
    if not corpus.records:
        raise BenchError(f"{path}: empty corpus")
    if not corpus.matches(secret) and not force:
        raise BenchError("the secret does not match the one the corpus was made with (-F)")
    signer = Signer(secret)
    return [make_template(r.kind, r.expect, r.packet, signer) for r in corpus.records]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        s = settings_from(args)
        templates = load_templates(args.corpus, s.secret, args.force)
        if s.procs > len(templates):
            raise BenchError(f"corpus of {len(templates)} packets for {s.procs} processes")
        progress = (lambda line: print(line, file=sys.stderr)) if args.progress else None
        result = run(s, templates, label=args.label, on_progress=progress)
    except (BenchError, CorpusError, OSError) as exc:
        print(f"radbench: {exc}", file=sys.stderr)
        return 2
    result["corpus"] = str(args.corpus)
    text = format_summary(result)
    print(text, file=sys.stderr if args.json == "-" else sys.stdout)
    if args.json:
        out = json.dumps(result)
        if args.json == "-":
            print(out)
        else:
            Path(args.json).write_text(out + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
