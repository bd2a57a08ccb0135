"""The HTTP side against hostile input: schemathesis (the ``st`` CLI, bounded examples,
fixed seed) from docs/openapi.yaml against a live controller, then the bytes a schema-
driven generator cannot send (headers that are not UTF-8, broken bodies) to every route.

Guarantees: no 5xx; every status, content type, header and body as documented; every
error of a JSON route is the documented ``{"error", "message"}`` body; bearer-protected
routes refuse requests without the token (schemathesis ``ignored_auth``)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web

from tests.support.portal_kit import Rig, running_portal
from tests.support.redis_proc import RedisProcess

ROOT = Path(__file__).resolve().parent.parent
OPENAPI = ROOT / "docs" / "openapi.yaml"
ST = shutil.which("st", path=str(Path(sys.executable).parent)) or shutil.which("st")
TOKEN = "schemathesis-all-roles-token"
TOKEN_TABLE = f"""
[[api_tokens]]
name = "fuzz"
sha256 = "{hashlib.sha256(TOKEN.encode()).hexdigest()}"
roles = ["reports", "audit", "admin"]
"""
SEED = 8908  # RFC 8908, the Captive Portal API
EXAMPLES = 20  # per operation and phase
CHECKS = ",".join(
    (
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
        "missing_required_header",
        "unsupported_method",
        "allow_header_conformance",
        "ignored_auth",
    )
)
JSON_PREFIXES = ("/api/", "/captive-portal/", "/reports/download")


def is_json_route(path: str) -> bool:
    return path.startswith(JSON_PREFIXES)


def assert_json_error(status: int, content_type: str, body: bytes, what: str) -> None:
    """The documented error body: ``{"error": code, "message": text, …}``."""
    assert content_type.startswith("application/json"), (what, status, content_type)
    data = json.loads(body)
    assert isinstance(data, dict), (what, body[:200])
    assert isinstance(data.get("error"), str) and data["error"], (what, body[:200])
    assert isinstance(data.get("message"), str) and data["message"], (what, body[:200])


@pytest.fixture
async def rig(tmp_path: Path, redis_proc: RedisProcess) -> AsyncIterator[Rig]:
    async with running_portal(tmp_path, redis_proc.url, clients=TOKEN_TABLE) as r:
        yield r


async def test_schemathesis_finds_nothing(rig: Rig, tmp_path: Path) -> None:
    """``st run`` with every response check; the recorded exchanges are then checked for
    the JSON error body (a check schemathesis does not have)."""
    if ST is None:
        pytest.skip("schemathesis is not installed (pip install -e '.[test]')")
    cassette = tmp_path / "schemathesis.yaml"
    proc = await asyncio.create_subprocess_exec(
        ST, "run", str(OPENAPI), "--url", rig.base,
        "--max-examples", str(EXAMPLES), "--seed", str(SEED), "--workers", "1",
        "--checks", CHECKS, "--generation-database", "none", "--no-color",
        "--header", f"Authorization: Bearer {TOKEN}",
        "--report", "vcr", "--report-vcr-path", str(cassette),
        "--request-timeout", "10",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=tmp_path,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 150)
    text = out.decode("utf-8", "replace")
    assert proc.returncode == 0, text[-12_000:]
    interactions = yaml.safe_load(cassette.read_text("utf-8"))["http_interactions"]
    operations = set()
    for it in interactions:
        request, response = it["request"], it["response"]
        if response is None:  # a transport error would have failed the run
            continue
        path = request["uri"].removeprefix(rig.base).split("?")[0]
        operations.add((request["method"], path.split("/")[1] if "/" in path else path))
        status = int(response["status"]["code"])
        assert status < 500, (request["method"], request["uri"], status)
        if status >= 400 and is_json_route(path) and status != 405:
            headers = {k.lower(): v[0] for k, v in response["headers"].items()}
            body = response["body"].get("string", "").encode("utf-8")
            assert_json_error(status, headers.get("content-type", ""), body, request["uri"])
    assert len(interactions) > 500 and len(operations) >= 10, (len(interactions), operations)


# --------------------------------------------------------------------------- raw bytes


def routes(app: web.Application) -> list[tuple[str, str]]:
    """(method, concrete path) of every route, path parameters filled in."""
    out = []
    for route in app.router.routes():
        if route.method == "HEAD" or route.resource is None:
            continue
        path = route.resource.canonical
        if isinstance(route.resource, web.StaticResource):
            path += "/portal.css"
        out.append((route.method, path.replace("{id}", "station").replace("{nas_id}", "x")))
    return sorted(set(out))


HOSTILE_HEADERS: list[bytes] = [
    b"Authorization: Bearer \xff\xfe\x80token",
    b"Authorization: Bearer caf\xc3\xa9",
    b"Authorization: \xff",
    b"Cookie: cw_dev=\xff\xfe.\xff; cw_csrf=\xff; cw_lang=\xff",
    b"Cookie: cw_reports=a~b~c~\xff\xfe; cw_reports_csrf=\xff",
    b"Cookie: cw_dev=" + b"A" * 3000 + b".x",
    b"Accept-Language: \xff\xfe;q=\xff, en;q=2, *;q=-1",
    b"X-Forwarded-For: \xff, 999.1.1.1, ::ffff:\xff",
    b"X-Forwarded-Proto: \xff",
    b"Origin: http://\xff\xfe",
]
HOSTILE_BODIES: list[tuple[bytes, bytes]] = [  # (Content-Type, body)
    (b"application/json", b"\xff\xfe{}"),
    (b"application/json", b'{"phone": "\\ud800", "code": "\\udfff", "csrf": "\\ud800"}'),
    (b"application/json", b"[" * 50_000),
    (b"application/json; charset=no-such-charset", b'{"phone": "13800138000"}'),
    (b"application/json", b'{"phone": "13800138000", "person": ["x"], "days": 1e999}'),
    (b"multipart/form-data", b"csrf=x&phone=1"),
    (b"multipart/form-data; boundary=zz", b"--zz\r\n\xff\r\n"),
    (b"application/x-www-form-urlencoded", b"csrf=\xff&phone=\xfe&token=\xff"),
    (b"application/x-www-form-urlencoded; charset=no-such-charset", b"csrf=x"),
    (b"text/plain", b"\x00" * 64),
]
HOSTILE_QUERIES = [
    b"?lang=%ff&nas_id=%ff%fe&mac=%ff&from=%ff&to=%ff&phone=%00&ctx=%ff.%ff&person=%c0%80",
    b"?from=0001-01-01&to=9999-12-31&format=xlsx&group=%ff",
    b"?" + b"&".join(b"mac=%02d" % i for i in range(200)),
]


async def raw(port: int, request: bytes) -> tuple[int, str, bytes]:
    """One HTTP/1.1 exchange on a fresh connection: (status, content type, body)."""
    async with asyncio.timeout(15):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(request)
            await writer.drain()
            data = await reader.read()
        finally:
            writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])}
    return status, headers.get("content-type", ""), body


def build(method: str, target: bytes, headers: list[bytes], body: bytes = b"") -> bytes:
    lines = [method.encode() + b" " + target + b" HTTP/1.1", b"Host: 127.0.0.1"]
    lines += [*headers, b"Content-Length: %d" % len(body), b"Connection: close"]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


async def test_bytes_a_schema_cannot_describe_never_cause_a_server_error(rig: Rig) -> None:
    """Headers with bytes that are not UTF-8 (tokens, cookies, languages, proxies),
    bodies that are not UTF-8 or nest too deep or name an unknown charset, multipart
    without a boundary, raw bytes in query strings: every route answers below 500, and a
    JSON route with the JSON error body."""
    app = rig.ctl.runner.app if rig.ctl.runner is not None else None
    assert app is not None
    port = rig.ctl.http_port
    failures: list[Any] = []
    for method, path in routes(app):
        # raw bytes in the request line never reach a handler: aiohttp's parser answers 400
        status, _, _ = await raw(port, build(method, path.encode() + b"?lang=\xff\xfe", []))
        assert status == 400, (method, path, status)
        cases = [build(method, path.encode(), [h]) for h in HOSTILE_HEADERS]
        cases += [build(method, path.encode() + q, []) for q in HOSTILE_QUERIES]
        if method == "POST":  # with CSRF cookies, so a form's body is what is looked at
            cookies = HOSTILE_HEADERS[3]
            cases += [
                build(method, path.encode(), [b"Content-Type: " + ctype, cookies], body)
                for ctype, body in HOSTILE_BODIES
            ]
        for request in cases:
            status, ctype, body = await raw(port, request)
            if status >= 500:
                failures.append((status, request[:300], body[:200]))
            elif status >= 400 and is_json_route(path):
                try:
                    assert_json_error(status, ctype, body, path)
                except (AssertionError, ValueError) as exc:
                    failures.append((status, request[:300], repr(exc)[:300]))
    assert not failures, "\n".join(map(repr, failures))
