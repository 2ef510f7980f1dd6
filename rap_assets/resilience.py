"""Politeness and fault tolerance shared by the HTTP clients: a token bucket, retries with
exponential backoff and full jitter that honour Retry-After, a circuit breaker whose state lives
in the shared cache, and request statistics for asset metadata."""

from __future__ import annotations

import email.utils
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from rap_assets.metadata import percentile

if TYPE_CHECKING:
    from rap_assets.cache import Cache


class UpstreamError(RuntimeError):
    """A remote service failed in a way retries did not fix. The message names the service and
    never carries credentials."""

    def __init__(self, service: str, message: str) -> None:
        super().__init__(f"{service}: {message}")
        self.service = service


class CircuitOpenError(UpstreamError):
    pass


class TokenBucket:
    """Allows ``rate`` acquisitions per second on average, bursts of up to ``capacity``."""

    def __init__(self, rate: float, capacity: float | None = None) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.capacity = capacity if capacity is not None else max(1.0, rate)
        self._tokens = self.capacity
        self._updated = time.monotonic()
        self._lock = threading.Lock()

    def acquire(self, tokens: float = 1.0) -> float:
        """Block until ``tokens`` are available; return the seconds waited."""
        waited = 0.0
        while True:
            with self._lock:
                now = time.monotonic()
                self._tokens = min(self.capacity, self._tokens + (now - self._updated) * self.rate)
                self._updated = now
                if self._tokens >= tokens:
                    self._tokens -= tokens
                    return waited
                delay = (tokens - self._tokens) / self.rate
            time.sleep(delay)
            waited += delay


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Parse a Retry-After header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, parsed.timestamp() - (now if now is not None else time.time()))


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 30.0

    def backoff(self, attempt: int, rng: Callable[[], float] = random.random) -> float:
        """Full jitter: uniform in [0, min(max_delay, base * 2**attempt))."""
        return rng() * min(self.max_delay, self.base_delay * 2**attempt)


class CircuitBreaker:
    """Opens after ``failure_threshold`` consecutive failures; after ``reset_seconds`` it lets
    calls through again (half-open) and closes on the first success.

    State lives in the shared cache so that parallel runs and step processes hitting the same
    service back off together.
    """

    def __init__(
        self, cache: Cache, service: str, failure_threshold: int = 5, reset_seconds: float = 60.0
    ) -> None:
        self.cache = cache
        self.service = service
        self.failure_threshold = failure_threshold
        self.reset_seconds = reset_seconds
        self._failures_key = cache.key("circuit", service.lower(), "failures")
        self._open_key = cache.key("circuit", service.lower(), "open_until")

    def check(self) -> None:
        open_until = self.cache.backend.get(self._open_key)
        if open_until and float(open_until) > time.time():
            remaining = float(open_until) - time.time()
            raise CircuitOpenError(
                self.service,
                f"circuit open after {self.failure_threshold} consecutive failures; "
                f"retrying in {remaining:.0f}s",
            )

    def record_success(self) -> None:
        self.cache.backend.delete(self._failures_key, self._open_key)

    def record_failure(self) -> None:
        failures = self.cache.backend.incr(self._failures_key, ttl_seconds=self.reset_seconds * 10)
        if failures >= self.failure_threshold:
            self.cache.backend.set(
                self._open_key, str(time.time() + self.reset_seconds), self.reset_seconds
            )

    @property
    def is_open(self) -> bool:
        try:
            self.check()
        except CircuitOpenError:
            return True
        return False


@dataclass
class RequestStats:
    requests: int = 0
    retries: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, status: str, latency_ms: float) -> None:
        with self._lock:
            self.requests += 1
            self.latencies_ms.append(latency_ms)
            self.statuses[status] += 1

    def record_retry(self) -> None:
        with self._lock:
            self.retries += 1

    def percentile(self, q: float) -> float | None:
        value = percentile(self.latencies_ms, q)
        return None if value is None else round(value, 2)

    def as_metadata(self) -> dict[str, float | int | None]:
        return {
            "requests": self.requests,
            "retries": self.retries,
            "latency_p50_ms": self.percentile(50),
            "latency_p95_ms": self.percentile(95),
        }
