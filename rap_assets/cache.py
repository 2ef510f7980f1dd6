"""The shared cache: Redis when ``REDIS_URL`` is set, an in-process cache with the same interface
otherwise. It holds TTL'd values (API listings, matches) and sets (seen ids for dedup)."""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any, ClassVar, Protocol

import dagster as dg
import redis
from pydantic import Field, PrivateAttr

from rap_assets.warehouse import redact_url

log = logging.getLogger(__name__)

#: ``set`` is also a method name below, where the builtin would be shadowed in annotations.
StrSet = set[str]


class CacheBackend(Protocol):
    name: str

    def get(self, key: str) -> str | None: ...
    def set(self, key: str, value: str, ttl_seconds: float | None = None) -> None: ...
    def delete(self, *keys: str) -> None: ...
    def incr(self, key: str, ttl_seconds: float | None = None) -> int: ...
    def sadd(self, key: str, *members: str) -> int: ...
    def smembers(self, key: str) -> StrSet: ...
    def sismember(self, key: str, member: str) -> bool: ...


class RedisBackend:
    name = "redis"

    def __init__(self, url: str) -> None:
        self._client = redis.Redis.from_url(url, decode_responses=True, socket_timeout=5)
        self._client.ping()

    def get(self, key: str) -> str | None:
        value = self._client.get(key)
        return None if value is None else str(value)

    def set(self, key: str, value: str, ttl_seconds: float | None = None) -> None:
        px = int(ttl_seconds * 1000) if ttl_seconds else None
        self._client.set(key, value, px=px)

    def delete(self, *keys: str) -> None:
        if keys:
            self._client.delete(*keys)

    def incr(self, key: str, ttl_seconds: float | None = None) -> int:
        with self._client.pipeline() as pipe:
            pipe.incr(key)
            if ttl_seconds:
                pipe.pexpire(key, int(ttl_seconds * 1000))
            value = pipe.execute()[0]
        return int(value)

    def sadd(self, key: str, *members: str) -> int:
        return int(self._client.sadd(key, *members)) if members else 0

    def smembers(self, key: str) -> StrSet:
        return {str(m) for m in self._client.smembers(key)}

    def sismember(self, key: str, member: str) -> bool:
        return bool(self._client.sismember(key, member))


class InProcessBackend:
    """A dict with expiry. Shared by every resource instance in the process (like Redis would be),
    never across processes: each Dagster step process starts cold, and the warehouse stays the
    system of record."""

    name = "in-process"
    announced = False
    _data: ClassVar[dict[str, tuple[Any, float | None]]] = {}
    _lock = threading.Lock()

    def _live(self, key: str) -> Any:
        item = self._data.get(key)
        if item is None:
            return None
        value, expires = item
        if expires is not None and expires <= time.monotonic():
            del self._data[key]
            return None
        return value

    @staticmethod
    def _expiry(ttl_seconds: float | None) -> float | None:
        return time.monotonic() + ttl_seconds if ttl_seconds else None

    def get(self, key: str) -> str | None:
        with self._lock:
            value = self._live(key)
            if value is not None and not isinstance(value, str):
                raise TypeError(f"cache key {key!r} holds a set, not a value")
            return value

    def set(self, key: str, value: str, ttl_seconds: float | None = None) -> None:
        with self._lock:
            self._data[key] = (value, self._expiry(ttl_seconds))

    def delete(self, *keys: str) -> None:
        with self._lock:
            for key in keys:
                self._data.pop(key, None)

    def incr(self, key: str, ttl_seconds: float | None = None) -> int:
        with self._lock:
            value = int(self._live(key) or 0) + 1
            self._data[key] = (str(value), self._expiry(ttl_seconds))
            return value

    def sadd(self, key: str, *members: str) -> int:
        with self._lock:
            current = self._live(key)
            members_set: StrSet = set(current) if current is not None else set()
            before = len(members_set)
            members_set.update(members)
            expires = self._data[key][1] if key in self._data else None
            self._data[key] = (members_set, expires)
            return len(members_set) - before

    def smembers(self, key: str) -> StrSet:
        with self._lock:
            return set(self._live(key) or ())

    def sismember(self, key: str, member: str) -> bool:
        with self._lock:
            return member in (self._live(key) or ())


class Cache(dg.ConfigurableResource):
    """Shared cache for API listings, match results and seen-id sets.

    Redis when ``redis_url`` is set; otherwise an in-process cache, which is announced in the
    logs and in each asset's metadata (``cache_backend``).
    """

    redis_url: str | None = Field(default=None, description="Redis URL; unset: in-process cache.")
    namespace: str = Field(default="rap-assets", description="Prefix of every key.")

    _backend: CacheBackend | None = PrivateAttr(default=None)

    @property
    def backend(self) -> CacheBackend:
        if self._backend is None:
            if self.redis_url:
                self._backend = RedisBackend(self.redis_url)
                log.info("cache: Redis at %s", redact_url(self.redis_url))
            else:
                self._backend = InProcessBackend()
                if not InProcessBackend.announced:
                    InProcessBackend.announced = True
                    log.warning(
                        "cache: REDIS_URL is unset, using an in-process cache; it is not shared "
                        "between processes (the warehouse remains the system of record)"
                    )
        return self._backend

    @property
    def backend_name(self) -> str:
        return self.backend.name

    def key(self, *parts: object) -> str:
        return ":".join([self.namespace, *map(str, parts)])

    def get_json(self, key: str) -> Any:
        raw = self.backend.get(key)
        return None if raw is None else json.loads(raw)

    def set_json(self, key: str, value: Any, ttl_seconds: float | None = None) -> None:
        self.backend.set(key, json.dumps(value, sort_keys=True, default=str), ttl_seconds)
