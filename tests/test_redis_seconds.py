"""``controller.storage.metered.RedisSeconds``: the store's Redis timings counted in lists
and folded into ``citywifi_redis_seconds`` (issue 16) give the same samples as
``Histogram.observe`` per round trip, at a scrape of the registry and at a tally take."""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from controller.storage.metered import REDIS_SECONDS, REDIS_TIMES, RedisSeconds
from radius.tally import TALLY

BUCKETS = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
# on a bound (le is inclusive), between bounds, below the first, above the last
VALUES = (0.0, 0.0001, 0.0002, 0.00020001, 0.003, 0.01, 0.7, 1.0, 1.5, 42.0, 0.0002)


def _samples(registry: CollectorRegistry, name: str) -> dict[tuple[str, str, str], float]:
    text = generate_latest(registry).decode()
    return {
        (s.name, s.labels.get("op", ""), s.labels.get("le", "")): s.value
        for family in text_string_to_metric_families(text)
        if family.name == name
        for s in family.samples
        if not s.name.endswith("_created")
    }


def _pair() -> tuple[CollectorRegistry, CollectorRegistry, RedisSeconds, Histogram]:
    folded_reg, direct_reg = CollectorRegistry(), CollectorRegistry()
    folded = Histogram("t_seconds", "t", ["op"], buckets=BUCKETS, registry=None)
    times = RedisSeconds(folded)
    folded_reg.register(times)
    direct = Histogram("t_seconds", "t", ["op"], buckets=BUCKETS, registry=direct_reg)
    return folded_reg, direct_reg, times, direct


def test_folded_timings_are_the_samples_observe_gives() -> None:
    folded_reg, direct_reg, times, direct = _pair()
    for op in ("account", "auth_state"):
        timer = times.timer(op)
        direct.labels(op)
        assert type(timer) is list  # this prometheus_client can be folded into
        for v in VALUES[: 7 if op == "account" else None]:
            times.observe(timer, v)
            direct.labels(op).observe(v)
    want = _samples(direct_reg, "t_seconds")
    assert want[("t_seconds_count", "account", "")] == 7
    assert _samples(folded_reg, "t_seconds") == want  # the scrape folded first
    assert _samples(folded_reg, "t_seconds") == want  # and a second fold adds nothing
    times.observe(times.timer("account"), 0.004)
    direct.labels("account").observe(0.004)
    times.fold()
    assert _samples(folded_reg, "t_seconds") == _samples(direct_reg, "t_seconds")


def test_an_op_is_listed_from_its_first_use() -> None:
    folded_reg, _, times, _ = _pair()
    times.timer("outbox_read")
    assert _samples(folded_reg, "t_seconds")[("t_seconds_count", "outbox_read", "")] == 0


def test_the_process_registry_and_the_tally_fold_the_stores_timings() -> None:
    def count() -> float:
        return REDIS_SECONDS.labels("test_fold")._sum.get()

    timer = REDIS_TIMES.timer("test_fold")
    before = count()
    REDIS_TIMES.observe(timer, 0.5)
    assert count() == before  # counted in the list only
    TALLY.take()  # once a second (NasStats): a multi-process worker's files get it
    assert count() == before + 0.5
    REDIS_TIMES.observe(timer, 0.25)
    text = generate_latest(REGISTRY).decode()  # a single-process scrape folds first
    assert f'citywifi_redis_seconds_sum{{op="test_fold"}} {before + 0.75}' in text
