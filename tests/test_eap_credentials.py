"""EAP (Passpoint) credentials: the pure policy (controller/domain/eap_credentials.py)
and their Redis storage against a real redis-server (controller/storage/eap_credentials.py)."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import pytest

from controller.domain.eap_credentials import (
    ALPHABET,
    RANDOM_OCTETS,
    SECRET_CHARS,
    CredentialPolicy,
    EapCredential,
    issue_credential,
    realm_of,
    valid_realm,
    verify_credential,
)
from controller.storage import keys
from controller.storage.eap_credentials import EapCredentialStore
from controller.storage.redis_conn import RedisClient, client_from_url
from tests.support.redis_proc import RedisProcess

# Cheap argon2 parameters for the tests; the defaults are checked separately.
POLICY = CredentialPolicy("wifi.city.example", lifetime_days=30, memory_kib=256, time_cost=1)
NOW = 1_900_000_000  # 2030: Redis expires keys by its wall clock
PID = "a1b2c3d4e5f60718"


def _issue(pid: str = PID, now: int = NOW, label: str = "") -> tuple[EapCredential, str]:
    issued = issue_credential(pid, POLICY, now, secrets.token_bytes(RANDOM_OCTETS), label=label)
    return issued.credential, issued.secret


def test_issue_makes_a_random_username_in_the_realm_and_hides_the_secret() -> None:
    credential, secret = _issue()
    local, _, realm = credential.username.partition("@")
    assert realm == "wifi.city.example" == realm_of(credential.username)
    assert len(local) == 12 and set(local) <= set(ALPHABET)
    assert PID not in credential.username
    assert len(secret) == SECRET_CHARS and set(secret) <= set(ALPHABET)
    assert credential.secret_hash.startswith("$argon2id$v=19$m=256,t=1,p=1$")
    assert secret not in credential.secret_hash and secret not in repr(credential)
    assert credential.expires_at == NOW + 30 * 86400


def test_the_same_random_octets_make_the_same_credential() -> None:
    """Pure: randomness is an argument (the hash's salt too)."""
    octets = bytes(range(RANDOM_OCTETS))
    a = issue_credential(PID, POLICY, NOW, octets)
    b = issue_credential(PID, POLICY, NOW, octets)
    assert a == b
    with pytest.raises(ValueError):
        issue_credential(PID, POLICY, NOW, octets[:20])


def test_verify_checks_secret_and_expiry() -> None:
    credential, secret = _issue()
    assert verify_credential(credential, secret.encode(), NOW + 10)
    assert not verify_credential(credential, b"x" + secret.encode(), NOW + 10)
    assert not verify_credential(credential, secret.encode(), credential.expires_at)
    assert not verify_credential(credential, secret.encode(), NOW - 1)
    assert not verify_credential(None, secret.encode(), NOW)
    broken = EapCredential(credential.username, PID, "not a hash", NOW, NOW + 10)
    assert not verify_credential(broken, secret.encode(), NOW + 1)


def test_default_policy_uses_owasp_argon2id_parameters() -> None:
    policy = CredentialPolicy("wifi.city.example")
    issued = issue_credential(PID, policy, NOW, secrets.token_bytes(RANDOM_OCTETS))
    assert issued.credential.secret_hash.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert verify_credential(issued.credential, issued.secret.encode(), NOW)


@pytest.mark.parametrize(
    ("realm", "ok"),
    [
        ("wifi.city.example", True),
        ("city.example", True),
        ("City.Example", False),
        ("localhost", False),
        ("-bad.example", False),
        ("a..b.example", False),
        ("", False),
    ],
)
def test_realm_is_a_dns_name(realm: str, ok: bool) -> None:
    assert valid_realm(realm) is ok
    if not ok:
        with pytest.raises(ValueError):
            CredentialPolicy(realm)


def test_letters_are_unbiased() -> None:
    """Octets at or above 248 are skipped, so each of the 31 letters comes from exactly
    eight octet values."""
    octets = bytes(range(248)) * 2 + bytes(range(248, 256)) + bytes(RANDOM_OCTETS)
    issued = issue_credential(PID, POLICY, NOW, octets)
    assert issued.credential.username[:12] == "".join(ALPHABET[b % 31] for b in range(12))


# -- storage --------------------------------------------------------------------------


@pytest.fixture
async def store(redis_proc: RedisProcess) -> AsyncIterator[tuple[EapCredentialStore, RedisClient]]:
    client = client_from_url(redis_proc.url)
    yield EapCredentialStore(client), client
    await client.aclose()


async def test_save_lookup_and_expiry(store: tuple[EapCredentialStore, RedisClient]) -> None:
    credentials, client = store
    credential, secret = _issue(now=NOW, label="Pixel 8")
    await credentials.save(credential)
    found = await credentials.lookup(credential.username)
    assert found == credential
    assert verify_credential(found, secret.encode(), NOW + 1)
    # Redis forgets it at the expiry, and the person's set lives as long as the newest.
    # (TTL relative to the wall clock: NOW is in the future of any test run's clock)
    ttl = await client.ttl(keys.eap_credential(credential.username))
    person_ttl = await client.ttl(keys.eap_credentials(PID))
    assert abs(ttl - person_ttl) <= 1 and ttl > 30 * 86400
    newer, _ = _issue(now=NOW + 86400)
    await credentials.save(newer)
    assert await client.ttl(keys.eap_credentials(PID)) >= ttl + 86400 - 1
    older, _ = _issue(now=NOW - 86400)
    await credentials.save(older)  # an older one does not shorten the set's life
    assert await client.ttl(keys.eap_credentials(PID)) >= ttl + 86400 - 1
    assert await credentials.lookup("nobody@wifi.city.example") is None


async def test_for_person_lists_and_cleans(store: tuple[EapCredentialStore, RedisClient]) -> None:
    credentials, client = store
    first, _ = _issue(now=NOW)
    second, _ = _issue(now=NOW + 5)
    other, _ = _issue(pid="ffff0000ffff0000")
    for c in (first, second, other):
        await credentials.save(c)
    assert await credentials.for_person(PID) == [first, second]
    await client.delete(keys.eap_credential(first.username))  # as if Redis expired it
    assert await credentials.for_person(PID) == [second]
    assert await client.smembers(keys.eap_credentials(PID)) == {second.username.encode()}


async def test_revoke_only_ones_own(store: tuple[EapCredentialStore, RedisClient]) -> None:
    """A status page revokes by (person, username): another person's username is refused
    and stays valid."""
    credentials, _ = store
    mine, _ = _issue()
    theirs, their_secret = _issue(pid="ffff0000ffff0000")
    await credentials.save(mine)
    await credentials.save(theirs)
    assert not await credentials.revoke(PID, theirs.username)
    assert verify_credential(
        await credentials.lookup(theirs.username), their_secret.encode(), NOW + 1
    )
    assert await credentials.revoke(PID, mine.username)
    assert await credentials.lookup(mine.username) is None
    assert not await credentials.revoke(PID, mine.username)


async def test_revoke_person(store: tuple[EapCredentialStore, RedisClient]) -> None:
    credentials, client = store
    made = [_issue(now=NOW + i)[0] for i in range(3)]
    for c in made:
        await credentials.save(c)
    assert await credentials.revoke_person(PID) == 3
    assert await credentials.for_person(PID) == []
    for c in made:
        assert await credentials.lookup(c.username) is None
    assert not await client.exists(keys.eap_credentials(PID))
    assert await credentials.revoke_person(PID) == 0
