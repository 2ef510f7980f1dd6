"""The cache interface on real Redis and on the in-process fallback."""

from __future__ import annotations

import time

import pytest

from rap_assets.cache import Cache, InProcessBackend, RedisBackend


@pytest.fixture(params=["redis", "in-process"])
def cache(request: pytest.FixtureRequest) -> Cache:
    if request.param == "redis":
        namespace = request.getfixturevalue("redis_namespace")
        cache = Cache(redis_url=request.getfixturevalue("redis_url"), namespace=namespace)
        assert isinstance(cache.backend, RedisBackend)
        return cache
    cache = Cache(namespace=f"inproc-{time.monotonic_ns()}")
    assert isinstance(cache.backend, InProcessBackend)
    return cache


def test_values_expire_after_their_ttl(cache: Cache) -> None:
    key = cache.key("ttl")
    cache.set_json(key, {"a": [1, 2]}, ttl_seconds=0.3)
    assert cache.get_json(key) == {"a": [1, 2]}
    time.sleep(0.45)
    assert cache.get_json(key) is None


def test_values_without_ttl_persist_and_delete(cache: Cache) -> None:
    key = cache.key("forever")
    cache.backend.set(key, "v")
    assert cache.backend.get(key) == "v"
    cache.backend.delete(key)
    assert cache.backend.get(key) is None


def test_sets_deduplicate(cache: Cache) -> None:
    key = cache.key("seen", 42)
    assert cache.backend.sadd(key, "1", "2", "2") == 2
    assert cache.backend.sadd(key, "2", "3") == 1
    assert cache.backend.smembers(key) == {"1", "2", "3"}
    assert cache.backend.sismember(key, "3")
    assert not cache.backend.sismember(key, "4")


def test_counters(cache: Cache) -> None:
    key = cache.key("count")
    assert [cache.backend.incr(key, ttl_seconds=5) for _ in range(3)] == [1, 2, 3]


def test_backend_name_is_reported(cache: Cache) -> None:
    assert cache.backend_name in {"redis", "in-process"}


def test_in_process_fallback_announces_itself(caplog: pytest.LogCaptureFixture) -> None:
    InProcessBackend.announced = False
    with caplog.at_level("WARNING", logger="rap_assets.cache"):
        Cache(namespace="announce").backend  # noqa: B018 - the property builds the backend
    assert "in-process cache" in caplog.text
