"""Named console accounts: the pure rules, the service on a real Redis (argon2id hashes,
TOTP once per step, lock-out, sessions bound to the network, audit entries on the outbox)
and ``citywifi user add|passwd|disable|list`` run in-process with the password on stdin."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pyotp
import pytest
import redis.asyncio as aioredis

from controller.cli import users
from controller.cli.main import main as cli
from controller.domain import accounts as acc
from controller.services.accounts import Accounts
from controller.storage.accounts import AccountStore
from controller.storage.store import Store
from tests.support.redis_proc import RedisProcess
from tests.test_reports_helpers import city_config

PASSWORD = "correct horse battery"


# --------------------------------------------------------------------------- pure rules


def test_roles_parse_and_operator_scope() -> None:
    assert acc.parse_role("admin") == acc.Role("admin")
    assert acc.parse_role("operator:op-telecom", frozenset({"op-telecom"})) == acc.Role(
        "operator", "op-telecom"
    )
    assert str(acc.Role("operator", "op-x")) == "operator:op-x"
    for bad in ("root", "operator:", "operator:a b", "Admin"):
        with pytest.raises(acc.AccountError):
            acc.parse_role(bad)
    with pytest.raises(acc.AccountError, match="no operator"):
        acc.parse_role("operator:op-nope", frozenset({"op-telecom"}))


def test_usernames_and_passwords() -> None:
    assert acc.check_username("ops.li") == "ops.li"
    for bad in ("a", "Ops", "1ops", "ops li", "оps", "x" * 33):
        with pytest.raises(acc.AccountError):
            acc.check_username(bad)
    with pytest.raises(acc.AccountError, match="at least"):
        acc.check_password("short", "ops")
    with pytest.raises(acc.AccountError, match="username"):
        acc.check_password("operations.lead", "operations.lead")
    assert acc.check_password(PASSWORD, "ops") == PASSWORD


def test_totp_steps_drift_and_format() -> None:
    secret = pyotp.random_base32(32)
    now = 1_764_650_000.0
    totp = pyotp.TOTP(secret)
    step = int(now) // 30
    assert acc.totp_step(secret, totp.at(now), now) == step
    assert acc.totp_step(secret, totp.at(now - 30), now) == step - 1  # one step of drift
    assert acc.totp_step(secret, totp.at(now - 90), now) is None
    assert acc.totp_step(secret, "12345", now) is None
    assert acc.totp_step(secret, "abcdef", now) is None
    uri = acc.provisioning_uri(secret, "ops", "Wireless Test")
    assert uri.startswith("otpauth://totp/") and f"secret={secret}" in uri


def test_sessions_hold_until_expiry_from_the_same_network() -> None:
    s = acc.ConsoleSession("ab" * 32, "ops", 100, 200, "10.1.2.0/24")
    assert acc.session_holds(s, now=150, network="10.1.2.0/24")
    assert not acc.session_holds(s, now=200, network="10.1.2.0/24")
    assert not acc.session_holds(s, now=150, network="10.9.9.0/24")
    with pytest.raises(acc.AccountError):
        acc.new_session_id(b"short")


def test_refusals_that_count_toward_lockout() -> None:
    assert acc.Refusal("bad_totp").counts and acc.Refusal("unknown_or_bad_password").counts
    assert not acc.Refusal("locked", 60).counts and not acc.Refusal("disabled").counts
    assert acc.locks_now(5, acc.LockoutPolicy(max_failures=5))
    assert not acc.locks_now(4, acc.LockoutPolicy(max_failures=5))


# --------------------------------------------------------------------------- on Redis


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def store(redis_proc: RedisProcess) -> Store:
    s = Store(aioredis.Redis.from_url(redis_proc.url))
    await s.load_scripts()
    yield s  # type: ignore[misc]
    await s.close()


async def _outbox(store: Store) -> list[dict[str, str]]:
    entries = await store.redis.xrange("cw:outbox")
    return [{k.decode(): v.decode() for k, v in f.items()} for _, f in entries]


async def test_add_sign_in_with_totp_once_and_audit(store: Store) -> None:
    clock = Clock(1_764_650_000.0)
    accounts = Accounts(store, clock=clock)
    added = await accounts.add("ops", PASSWORD, ["operations"], totp=True, by="cli:root")
    assert added.totp_uri.startswith("otpauth://totp/")
    secret = added.account.totp_secret
    raw = await store.redis.hgetall("cw:acct:user:ops")
    assert raw[b"hash"].startswith(b"$argon2id$") and PASSWORD.encode() not in raw[b"hash"]
    with pytest.raises(acc.AccountError, match="exists"):
        await accounts.add("ops", PASSWORD, ["admin"], totp=False, by="cli:root")

    code = pyotp.TOTP(secret).at(clock.now)
    assert await accounts.sign_in("ops", PASSWORD, "", "10.1.2.3") == acc.Refusal("totp_required")
    session = await accounts.sign_in("ops", PASSWORD, code, "10.1.2.3")
    assert isinstance(session, acc.ConsoleSession) and len(session.id) == 64
    # the same code again, within its step: refused (RFC 6238 §5.2)
    assert await accounts.sign_in("ops", PASSWORD, code, "10.1.2.3") == acc.Refusal("totp_replayed")
    found = await accounts.session(session.id, "10.1.2.77")  # same /24
    assert found is not None and found.name == "ops"
    assert await accounts.session(session.id, "10.1.3.3") is None  # another network
    assert await accounts.session(session.id, "2001:db8::1") is None
    clock.now += 8 * 3600
    assert await accounts.session(session.id, "10.1.2.3") is None  # expired

    audit = await _outbox(store)
    assert all(e["k"] == "console" for e in audit)
    assert [(e["user"], e["action"], e["result"]) for e in audit] == [
        ("cli:root", "user.add", "operations"),
        ("ops", "login", "totp_required"),
        ("ops", "login", "ok"),
        ("ops", "login", "totp_replayed"),
    ]
    assert all(PASSWORD not in json.dumps(e) and code not in json.dumps(e) for e in audit)


async def test_lockout_after_failures_then_passwd_clears(store: Store) -> None:
    clock = Clock(1_764_650_000.0)
    policy = acc.LockoutPolicy(max_failures=3, window=600, lock_seconds=900)
    accounts = Accounts(store, clock=clock, lockout=policy)
    await accounts.add("ops", PASSWORD, ["operations"], totp=False, by="t")
    for _ in range(3):
        assert await accounts.sign_in("ops", "wrong password!", "", "10.0.0.1") == acc.Refusal(
            "unknown_or_bad_password"
        )
    refused = await accounts.sign_in("ops", PASSWORD, "", "10.0.0.1")  # right, but locked
    assert isinstance(refused, acc.Refusal) and refused.reason == "locked"
    assert 890 <= refused.retry_after <= 900
    assert await accounts.passwd("ops", PASSWORD + "!", by="t") == 0  # lifts the lock
    assert isinstance(
        await accounts.sign_in("ops", PASSWORD + "!", "", "10.0.0.1"), acc.ConsoleSession
    )
    # an unknown name is refused like a wrong password
    assert await accounts.sign_in("nobody", PASSWORD, "", "10.0.0.1") == acc.Refusal(
        "unknown_or_bad_password"
    )


async def test_disable_ends_sessions(store: Store) -> None:
    accounts = Accounts(store, clock=Clock(1_764_650_000.0))
    await accounts.add("rep", PASSWORD, ["reports", "audit"], totp=False, by="t")
    session = await accounts.sign_in("rep", PASSWORD, "", "192.0.2.9")
    assert isinstance(session, acc.ConsoleSession)
    assert await accounts.disable("rep", by="t") == 1
    assert await accounts.session(session.id, "192.0.2.9") is None
    assert await accounts.sign_in("rep", PASSWORD, "", "192.0.2.9") == acc.Refusal("disabled")
    assert await AccountStore(store).get_session(session.id) is None


# --------------------------------------------------------------------------- the command


def test_user_commands_read_the_password_from_stdin(
    tmp_path: Path,
    redis_proc: RedisProcess,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = city_config(tmp_path, redis_proc.url)
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    rc = cli(
        [
            "user",
            "add",
            "ops",
            "--role",
            "admin",
            "--role",
            "operator:op-telecom",
            "--totp",
            "--password-stdin",
            "--config",
            str(config),
        ]
    )
    out = capsys.readouterr()
    assert rc == 0, out.err
    added = json.loads(out.out)
    assert added["roles"] == ["admin", "operator:op-telecom"]
    assert added["totp_uri"].startswith("otpauth://totp/")
    assert PASSWORD not in out.out + out.err

    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    rc = cli(["user", "passwd", "ops", "--password-stdin", "--config", str(config)])
    assert rc == 2 and "at least" in capsys.readouterr().err

    assert cli(["user", "disable", "ops", "--config", str(config)]) == 0
    capsys.readouterr()
    assert cli(["user", "list", "--config", str(config)]) == 0
    listed = json.loads(capsys.readouterr().out)["users"]
    assert listed == [
        {
            "user": "ops",
            "roles": ["admin", "operator:op-telecom"],
            "totp": True,
            "disabled": True,
            "locked_for": 0,
        }
    ]
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    rc = cli(
        [
            "user",
            "add",
            "x2",
            "--role",
            "operator:op-nope",
            "--password-stdin",
            "--config",
            str(config),
        ]
    )
    assert rc == 2 and "no operator" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # no password option exists to put one in argv
        cli(["user", "add", "x3", "--role", "admin", "--password", PASSWORD])


def test_prompt_asks_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = iter(["one password!!", "another one!!"])
    monkeypatch.setattr("getpass.getpass", lambda prompt: next(answers))
    with pytest.raises(acc.AccountError, match="differ"):
        users.read_password(False, io.StringIO(), "ops")


async def test_account_actions_reach_the_audit_log(
    tmp_path: Path, redis_proc: RedisProcess, store: Store
) -> None:
    from controller.config import load_config
    from controller.services.archiver import Archiver
    from controller.services.audit import AuditQuery, query_records
    from controller.storage.archive import Archive, archive_root

    config = load_config(city_config(tmp_path, redis_proc.url))
    now = 1_764_650_000.0
    accounts = Accounts(store, clock=Clock(now))
    await accounts.add("ops", PASSWORD, ["admin"], totp=False, by="cli:root")
    await accounts.sign_in("ops", "not the password", "", "198.51.100.7")
    archive = Archive(archive_root(config))
    archiver = Archiver(store, archive, lambda: config, clock=lambda: now)
    await archiver.flush()
    rows = query_records(archive, config, AuditQuery(int(now) - 60, int(now) + 60), now)
    assert [(r.kind, r.result, r.cause, r.ip) for r in rows] == [
        ("console", "user.add admin", "by cli:root on ops", ""),
        ("console", "login unknown_or_bad_password", "by ops on ops", "198.51.100.7"),
    ]


# --------------------------------------------------------------------------- machine tokens


def test_api_tokens_stop_at_their_expiry(tmp_path: Path, redis_proc: RedisProcess) -> None:
    import hashlib
    import time

    from controller.config import check_config, load_config
    from controller.web.auth import token_for

    def token(name: str, expires: str) -> str:
        digest = hashlib.sha256(name.encode()).hexdigest()
        return (
            f'\n[[api_tokens]]\nname = "{name}"\nsha256 = "{digest}"\nroles = ["reports"]\n'
            f"{expires}\n"
        )

    extra = token("old-machine-token", "expires = 2001-01-01T00:00:00+08:00") + token(
        "new-machine-token", "expires = 2999-01-01T00:00:00+08:00"
    )
    config = load_config(city_config(tmp_path, redis_proc.url, extra))
    assert token_for("old-machine-token", config) is None  # expired: as if unknown
    found = token_for("new-machine-token", config)
    assert found is not None and found.expires == 32472115200  # 2999-01-01T00:00+08:00
    assert found.expires > time.time()
    assert token_for("reports-token-123", config) is not None  # no expiry: for ever
    bad = city_config(tmp_path, redis_proc.url, token("x-machine-token", 'expires = "soon"'))
    assert any("date-time with offset" in str(p) for p in check_config(bad))
