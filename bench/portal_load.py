"""Captive-portal load: complete SMS-code logins through the JSON API, as fast as allowed.

One login = ``POST /api/v1/otp`` (202), the code read from the server's SMS ``file``
backend, ``POST /api/v1/login`` (200 with a credential): what a phone does in the portal,
minus the page loads and the person's typing. Each login uses a fresh phone number and
device MAC, so the per-phone and per-device limits never trigger (the bench config
raises the per-address and per-NAS ones). Codes are matched by phone number in memory
and never printed.

    .venv/bin/python -m bench.portal_load --base http://127.0.0.1:8080 \\
        --sms var/sms.jsonl --nas-id bench-nas -c 64 -d 15 -u 2 [--procs 2] [-r 20]

``-r`` paces logins (open loop, for the soak test); without it each of ``-c`` concurrent
clients starts the next login when its last one finished (closed loop). The SMS file is
polled every 2 ms, which adds up to that much to every login's latency.

The client is kept light, since it shares the box with the server it measures: plain
HTTP/1.1 keep-alive connections of its own (``HttpConnection``: a request written in one
piece, the answer read by ``Content-Length``), one per concurrent client, on uvloop; the
SMS file is kept open. (Before 2026-12-02 it was an ``aiohttp.ClientSession``, ~2-3x the
CPU per login.)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import re
import resource
import sys
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

try:
    import uvloop
except ImportError:  # pragma: no cover - the bench venv has it (the server's loop)
    uvloop = None  # type: ignore[assignment]

DEFAULT_PHONE_BASE = 13_700_000_000  # +86 137 …: valid CN mobile numbers, not the seeded 139 …
_CODE = re.compile(r"(?<!\d)\d{6}(?!\d)")


@dataclass(frozen=True, slots=True)
class PortalSettings:
    base: str
    sms_path: Path
    nas_id: str
    concurrency: int
    duration: float
    warmup: float
    rate: float  # logins/s over all processes; 0: closed loop
    procs: int
    phone_base: int
    timeout: float


class SmsInbox:
    """Follows the SMS file and hands each phone its code (by E.164 number)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = path.stat().st_size if path.exists() else 0
        self.codes: dict[str, str] = {}
        self.waiting: dict[str, asyncio.Future[str]] = {}
        self._partial = b""
        self._file: Any = None  # kept open: the server only appends

    def _poll(self) -> None:
        if self._file is None:
            try:
                self._file = self.path.open("rb")
            except FileNotFoundError:
                return
            self._file.seek(self.offset)
        chunk = self._file.read()
        if not chunk:
            return
        self.offset += len(chunk)
        data = self._partial + chunk
        lines = data.split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            with contextlib.suppress(ValueError, KeyError, AttributeError):
                msg = json.loads(line)
                found = _CODE.search(msg["text"])
                if found is None:
                    continue
                to = msg["to"]
                waiter = self.waiting.pop(to, None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(found.group())
                else:
                    self.codes[to] = found.group()

    async def follow(self) -> None:
        try:
            while True:
                self._poll()
                await asyncio.sleep(0.002)
        finally:
            if self._file is not None:
                self._file.close()

    async def code_for(self, phone: str, timeout: float) -> str:
        code = self.codes.pop(phone, None)
        if code is not None:
            return code
        waiter: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.waiting[phone] = waiter
        try:
            return await asyncio.wait_for(waiter, timeout)
        finally:
            self.waiting.pop(phone, None)


class HttpError(Exception):
    """The connection broke or answered something this client does not read."""


class HttpConnection:
    """One HTTP/1.1 keep-alive connection: JSON POSTs, answers read by Content-Length
    (what the portal's JSON API sends); reopened when the server closes it."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._head = f"Host: {host}:{port}\r\nContent-Type: application/json\r\n"
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post_json(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        data = json.dumps(body, separators=(",", ":")).encode()
        request = f"POST {path} HTTP/1.1\r\n{self._head}Content-Length: {len(data)}\r\n\r\n"
        if self.writer is None or self.reader is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        reader, writer = self.reader, self.writer
        try:
            writer.write(request.encode() + data)
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            status = int(lines[0].split(b" ", 2)[1])
            length, close = 0, False
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"connection":
                    close = value.strip().lower() == b"close"
                elif name == b"transfer-encoding":
                    raise HttpError("chunked answer")
            raw = await reader.readexactly(length) if length else b""
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as e:
            self.close()
            raise HttpError(type(e).__name__) from e
        except BaseException:
            self.close()
            raise
        if close:
            self.close()
        try:
            answer = json.loads(raw) if raw else {}
        except ValueError:
            answer = {}
        return status, answer if isinstance(answer, dict) else {}

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


def _mac(n: int) -> str:
    v = (0x02B0 << 32) | (n & 0xFFFFFFFF)
    return "-".join(f"{(v >> s) & 0xFF:02X}" for s in range(40, -8, -8))


async def _run_async(p: int, s: PortalSettings, t_start: float) -> dict[str, Any]:
    inbox = SmsInbox(s.sms_path)
    follower = asyncio.ensure_future(inbox.follow())
    t_warm = t_start + s.warmup
    t_end = t_warm + s.duration
    counter = 0
    stride = s.procs
    latencies: list[float] = []
    otp_lat: list[float] = []
    login_lat: list[float] = []
    errors: dict[str, int] = {}
    completed = 0
    started = 0
    warmup_completed = 0
    rate = s.rate / s.procs if s.rate > 0 else 0.0
    url = urlsplit(s.base)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    idle: list[HttpConnection] = [HttpConnection(host, port) for _ in range(s.concurrency)]

    def fail(kind: str) -> None:
        errors[kind] = errors.get(kind, 0) + 1

    async def one_login(http: HttpConnection) -> None:
        nonlocal counter, completed, started, warmup_completed
        n = counter * stride + p
        counter += 1
        started += 1
        phone = f"+86{s.phone_base + n}"
        body = {"phone": phone, "nas_id": s.nas_id, "mac": _mac(n)}
        t0 = time.monotonic()
        try:
            async with asyncio.timeout(s.timeout):
                status, _ = await http.post_json("/api/v1/otp", body)
            if status != 202:
                fail(f"otp_{status}")
                return
            t1 = time.monotonic()
            code = await inbox.code_for(phone, s.timeout)
            t2 = time.monotonic()
            async with asyncio.timeout(s.timeout):
                status, answer = await http.post_json("/api/v1/login", {**body, "code": code})
            if status != 200 or not answer.get("username"):
                fail(f"login_{status}_{answer.get('error', '')}")
                return
            t3 = time.monotonic()
        except TimeoutError:
            fail("timeout")
            return
        except HttpError as exc:
            fail(str(exc))
            return
        if t0 < t_warm:
            warmup_completed += 1
            return
        if t3 <= t_end:
            completed += 1
        latencies.append(t3 - t0)
        otp_lat.append(t1 - t0)
        login_lat.append(t3 - t2)

    async def closed_loop(http: HttpConnection) -> None:
        while time.monotonic() < t_end:
            await one_login(http)

    async def paced_login() -> None:
        http = idle.pop()  # at most ``concurrency`` logins at once: one is always free
        try:
            await one_login(http)
        finally:
            idle.append(http)

    now = time.monotonic()
    if now < t_start:
        await asyncio.sleep(t_start - now)
    if rate:
        tasks: set[asyncio.Task[None]] = set()
        sent = 0
        while True:
            now = time.monotonic()
            if now >= t_end:
                break
            due = int((now - t_start) * rate) + 1
            while sent < due and len(tasks) < s.concurrency:
                task = asyncio.ensure_future(paced_login())
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                sent += 1
            await asyncio.sleep(min(0.01, max(0.0, t_start + sent / rate - now)))
        if tasks:
            await asyncio.wait(tasks, timeout=s.timeout + 1)
    else:
        await asyncio.gather(*(closed_loop(http) for http in list(idle)))
    for http in idle:
        http.close()
    follower.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await follower
    return {
        "completed": completed,
        "warmup_completed": warmup_completed,
        "started": started,
        "errors": errors,
        "lat": latencies,
        "otp_lat": otp_lat,
        "login_lat": login_lat,
    }


def _run_loop(main: Any) -> dict[str, Any]:
    """Run the client on uvloop when it is there (as the server does), else asyncio's."""
    if uvloop is not None:
        result: dict[str, Any] = uvloop.run(main)
        return result
    return asyncio.run(main)


def _child(conn: Connection, p: int, s: PortalSettings, t_start: float) -> None:
    try:
        conn.send(("ok", _run_loop(_run_async(p, s, t_start))))
    except Exception as exc:
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


def _pct(values: list[float], pct: float) -> float:
    if not values:
        return 0.0
    return round(values[min(len(values) - 1, round(pct / 100 * (len(values) - 1)))] * 1000, 3)


def _lat(values: list[float]) -> dict[str, float]:
    values.sort()
    return {
        "p50": _pct(values, 50),
        "p90": _pct(values, 90),
        "p99": _pct(values, 99),
        "max": _pct(values, 100),
    }


def run(s: PortalSettings) -> dict[str, Any]:
    """Run the load (over ``s.procs`` processes) and summarise it."""
    t_start = time.monotonic() + 0.5
    cpu0 = _cpu()
    parts: list[dict[str, Any]] = []
    errors: list[str] = []
    if s.procs == 1:
        parts.append(_run_loop(_run_async(0, s, t_start)))
    else:
        ctx = multiprocessing.get_context("fork")
        workers = []
        for p in range(s.procs):
            recv_end, send_end = ctx.Pipe(duplex=False)
            proc = ctx.Process(target=_child, args=(send_end, p, s, t_start), daemon=True)
            proc.start()
            send_end.close()
            workers.append((proc, recv_end))
        try:
            for proc, conn in workers:
                try:
                    status, value = conn.recv()
                except EOFError:
                    status, value = "error", f"worker exited with {proc.exitcode}"
                (parts if status == "ok" else errors).append(value)
        finally:
            for proc, conn in workers:
                proc.join(10)
                if proc.is_alive():
                    proc.terminate()
                    proc.join(5)
                conn.close()
    if errors:
        raise RuntimeError("; ".join(errors))
    err: dict[str, int] = {}
    for x in parts:
        for k, v in x["errors"].items():
            err[k] = err.get(k, 0) + v
    completed = sum(x["completed"] for x in parts)
    wall = time.monotonic() - t_start
    return {
        "base": s.base,
        "concurrency": s.concurrency,
        "procs": s.procs,
        "rate_target": s.rate,
        "measured_s": s.duration,
        "completed": completed,
        "logins_per_s": round(completed / s.duration, 1) if s.duration else 0.0,
        "started": sum(x["started"] for x in parts),
        "errors": err,
        "error_total": sum(err.values()),
        "lat_ms": _lat([v for x in parts for v in x["lat"]]),
        "otp_lat_ms": _lat([v for x in parts for v in x["otp_lat"]]),
        "login_lat_ms": _lat([v for x in parts for v in x["login_lat"]]),
        "cpu_cores": round((_cpu() - cpu0) / wall, 3) if wall > 0 else 0.0,
    }


def _cpu() -> float:
    """CPU seconds of this process and its waited-for children (the client's own cost)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def format_summary(r: dict[str, Any]) -> str:
    lat, otp, login = r["lat_ms"], r["otp_lat_ms"], r["login_lat_ms"]
    mode = f"paced at {r['rate_target']:.0f}/s" if r["rate_target"] else "closed loop"
    return "\n".join(
        (
            f"portal: {r['base']} concurrency={r['concurrency']} procs={r['procs']} {mode}, "
            f"measured {r['measured_s']:.1f}s",
            f"  completed logins={r['completed']} ({r['logins_per_s']:.1f}/s) "
            f"errors={r['error_total']} {r['errors'] or ''}".rstrip(),
            f"  login (otp + code + login) ms: p50={lat['p50']:.1f} p90={lat['p90']:.1f} "
            f"p99={lat['p99']:.1f} max={lat['max']:.1f}",
            f"  POST /api/v1/otp p99={otp['p99']:.1f} ms   POST /api/v1/login p99="
            f"{login['p99']:.1f} ms",
            f"  client cpu={100 * r['cpu_cores']:.0f}% of one core",
        )
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench.portal_load", description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True, help="portal base URL, e.g. http://127.0.0.1:8080")
    ap.add_argument("--sms", type=Path, required=True, help="the [sms] file backend's path")
    ap.add_argument("--nas-id", default="bench-nas")
    ap.add_argument("-c", "--concurrency", type=int, default=64)
    ap.add_argument("-d", "--duration", type=float, default=15.0)
    ap.add_argument("-u", "--warmup", type=float, default=2.0)
    ap.add_argument("-r", "--rate", type=float, default=0.0, help="logins/s (0: closed loop)")
    ap.add_argument("--procs", type=int, default=1)
    ap.add_argument("--phone-base", type=int, default=DEFAULT_PHONE_BASE)
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds per request")
    ap.add_argument("-j", "--json", help="write the JSON summary here ('-': stdout)")
    args = ap.parse_args(argv)
    s = PortalSettings(
        args.base.rstrip("/"),
        args.sms,
        args.nas_id,
        args.concurrency,
        args.duration,
        args.warmup,
        args.rate,
        args.procs,
        args.phone_base,
        args.timeout,
    )
    result = run(s)
    print(format_summary(result), file=sys.stderr if args.json == "-" else sys.stdout)
    if args.json == "-":
        print(json.dumps(result))
    elif args.json:
        Path(args.json).write_text(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
