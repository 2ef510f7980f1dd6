"""LLM lyric analysis over any OpenAI-compatible endpoint (by default Qwen3 on Novita AI).

Pure parts first (prompt, truncation, reply parsing and validation), then the async runtime:
bounded concurrency, token buckets on requests and tokens per minute, retries honouring
Retry-After, a circuit breaker shared through the cache, a result cache in front of the
warehouse, and the rule-based fallback.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import openai
from pydantic import ValidationError

from rap_assets.analysis import THEMES, Analysis, Mood, analyze_rule_based
from rap_assets.features import LyricFeatures, words
from rap_assets.lyrics import Section
from rap_assets.resilience import CircuitBreaker, CircuitOpenError, RetryPolicy, retry_after_seconds

if TYPE_CHECKING:
    from rap_assets.cache import Cache

PROMPT_VERSION = "analysis-v1"
#: Lyrics beyond this many (estimated) tokens are cut at a line boundary. See the README.
LYRICS_TOKEN_BUDGET = 1500
#: Share of the provider's request limit the limiter targets.
RATE_HEADROOM = 0.98
#: Longest run of consecutive lyric words a summary may quote.
MAX_QUOTED_WORDS = 6

SYSTEM_PROMPT = """You are a music critic who analyses rap lyrics. Reply with one JSON object and
nothing else, with exactly these keys:
- "mood": one of {moods}
- "sentiment": number from -1 (negative) to 1 (positive)
- "themes": 1 to 5 items from {themes}
- "tags": up to 10 short free-form tags
- "rhyme", "wordplay", "flow", "storytelling", "complexity": integers from 1 to 10
- "quality": overall craft from 1 to 10 (number)
- "explicitness": one of "clean", "mild", "explicit"
- "language": ISO 639-1 code of the lyrics
- "summary": one sentence in your own words; never quote more than a few words of the lyrics
Judge the writing, not the popularity of the artist. /no_think"""


def estimate_tokens(text: str) -> int:
    """~4 characters a token for English text with Qwen's and OpenAI's BPE tokenizers."""
    return max(1, (len(text) + 3) // 4)


def truncate_to_budget(text: str, budget: int = LYRICS_TOKEN_BUDGET) -> tuple[str, bool]:
    """Keep whole lines from the start until the token budget; return (text, truncated)."""
    if estimate_tokens(text) <= budget:
        return text, False
    kept: list[str] = []
    used = 0
    for line in text.split("\n"):
        cost = estimate_tokens(line + "\n")
        if used + cost > budget:
            break
        kept.append(line)
        used += cost
    return "\n".join(kept).rstrip() + "\n[…]", True


def build_messages(title: str, artist: str, lyrics: str) -> list[dict[str, str]]:
    body, truncated = truncate_to_budget(lyrics)
    note = " (truncated)" if truncated else ""
    system = SYSTEM_PROMPT.format(
        moods=", ".join(f'"{m.value}"' for m in Mood), themes=", ".join(f'"{t}"' for t in THEMES)
    )
    return [
        {"role": "system", "content": system},
        {"role": "user", "content": f"Song: {title}\nArtist: {artist}\nLyrics{note}:\n{body}"},
    ]


_THINK = re.compile(r"<think>.*?(?:</think>|$)", re.DOTALL | re.IGNORECASE)


class InvalidReply(ValueError):
    """The model's reply is not a valid analysis; the message says why (for the repair turn)."""


def first_json_object(text: str) -> dict[str, Any]:
    """The first balanced ``{...}`` in ``text`` that parses as a JSON object."""
    for start in (m.start() for m in re.finditer(r"\{", text)):
        depth, in_string, escaped = 0, False, False
        for end in range(start, len(text)):
            char = text[end]
            if in_string:
                if escaped:
                    escaped = False
                elif char == "\\":
                    escaped = True
                elif char == '"':
                    in_string = False
            elif char == '"':
                in_string = True
            elif char == "{":
                depth += 1
            elif char == "}":
                depth -= 1
                if depth == 0:
                    try:
                        value = json.loads(text[start : end + 1])
                    except json.JSONDecodeError:
                        break
                    if isinstance(value, dict):
                        return value
                    break
    raise InvalidReply("no JSON object in the reply")


def quoted_run(summary: str, lyrics: str) -> int:
    """Length of the longest run of consecutive lyric words that the summary repeats."""
    lyric_words = words(lyrics)
    summary_text = " " + " ".join(words(summary)) + " "
    longest = 0
    for i in range(len(lyric_words)):
        n = longest + 1
        while i + n <= len(lyric_words) and f" {' '.join(lyric_words[i : i + n])} " in summary_text:
            longest = n
            n += 1
    return longest


def parse_reply(text: str, lyrics: str) -> Analysis:
    """Strip Qwen3 ``<think>`` blocks, take the first JSON object, validate it."""
    cleaned = _THINK.sub("", text or "")
    data = first_json_object(cleaned)
    try:
        analysis = Analysis.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:5]
        )
        raise InvalidReply(f"schema violation: {problems}") from None
    quoted = quoted_run(analysis.summary, lyrics)
    if quoted > MAX_QUOTED_WORDS:
        raise InvalidReply(
            f"summary quotes {quoted} consecutive words of the lyrics (at most {MAX_QUOTED_WORDS})"
        )
    return analysis


# --- runtime --------------------------------------------------------------------------------


class AsyncTokenBucket:
    """``rate`` units per second, at most ``capacity`` at once; waiters are served in order."""

    def __init__(self, rate: float, capacity: float) -> None:
        self.rate = rate
        self.capacity = capacity
        self._tokens = capacity
        self._updated = time.monotonic()
        self._lock = asyncio.Lock()

    async def acquire(self, amount: float = 1.0) -> None:
        amount = min(amount, self.capacity)
        async with self._lock:
            while True:
                now = time.monotonic()
                self._tokens = min(self.capacity, self._tokens + (now - self._updated) * self.rate)
                self._updated = now
                if self._tokens >= amount:
                    self._tokens -= amount
                    return
                await asyncio.sleep((amount - self._tokens) / self.rate)


@dataclass(frozen=True)
class LLMSettings:
    base_url: str
    api_key: str
    model: str
    max_tokens: int = 600
    temperature: float = 0.0
    timeout_seconds: float = 60.0
    concurrency: int = 8
    requests_per_minute: float = 45.0
    tokens_per_minute: float = 60_000.0
    json_mode: bool = True
    retry: RetryPolicy = field(
        default_factory=lambda: RetryPolicy(max_attempts=4, base_delay=1.0, max_delay=60.0)
    )
    circuit_failure_threshold: int = 5
    circuit_reset_seconds: float = 60.0
    cache_ttl_seconds: float = 24 * 3600


@dataclass(frozen=True)
class SongForAnalysis:
    song_id: int
    title: str
    artist: str
    content_hash: str
    lyrics: str
    sections: list[Section]
    features: LyricFeatures


@dataclass
class Outcome:
    song_id: int
    analysis: Analysis
    analyzer: str  # the model id, or "rule-based (fallback: <reason>)"
    source: str  # "llm" | "cache" | "fallback"
    tokens_in: int = 0
    tokens_out: int = 0
    latency_ms: float | None = None


@dataclass
class RunStats:
    sources: Counter[str] = field(default_factory=Counter)
    fallbacks: Counter[str] = field(default_factory=Counter)
    tokens_in: int = 0
    tokens_out: int = 0
    requests: int = 0
    retries: int = 0
    repairs: int = 0
    latencies_ms: list[float] = field(default_factory=list)


class _Failed(Exception):
    """A request that retries did not fix; the message is the fallback reason."""


class LLMAnalyzerRuntime:
    def __init__(self, settings: LLMSettings, cache: Cache) -> None:
        self.settings = settings
        self.cache = cache
        self.stats = RunStats()
        self.breaker = CircuitBreaker(
            cache, "LLM", settings.circuit_failure_threshold, settings.circuit_reset_seconds
        )
        self._json_mode = settings.json_mode

    def cache_key(self, content_hash: str) -> str:
        return self.cache.key("llm", self.settings.model, PROMPT_VERSION, content_hash)

    def run(self, songs: Sequence[SongForAnalysis]) -> list[Outcome]:
        return asyncio.run(self._run(songs))

    async def _run(self, songs: Sequence[SongForAnalysis]) -> list[Outcome]:
        client = openai.AsyncOpenAI(
            base_url=self.settings.base_url,
            api_key=self.settings.api_key,
            timeout=self.settings.timeout_seconds,
            max_retries=0,  # retried here, honouring Retry-After and counting attempts
        )
        # Evenly spaced (capacity 1) at 98% of the limit: the provider counts arrivals in its own
        # window, and network jitter must not push a 46th request into a 45-per-minute window.
        self._requests = AsyncTokenBucket(
            self.settings.requests_per_minute * RATE_HEADROOM / 60.0, 1.0
        )
        self._tokens = AsyncTokenBucket(
            self.settings.tokens_per_minute / 60.0, self.settings.tokens_per_minute / 60.0 * 10
        )
        semaphore = asyncio.Semaphore(self.settings.concurrency)

        async def one(song: SongForAnalysis) -> Outcome:
            async with semaphore:
                return await self._analyze(client, song)

        try:
            return list(await asyncio.gather(*(one(s) for s in songs)))
        finally:
            await client.close()

    def _fallback(self, song: SongForAnalysis, reason: str) -> Outcome:
        self.stats.sources["fallback"] += 1
        self.stats.fallbacks[reason] += 1
        analysis = analyze_rule_based(song.title, song.sections, song.features)
        return Outcome(song.song_id, analysis, f"rule-based (fallback: {reason})", "fallback")

    async def _analyze(self, client: openai.AsyncOpenAI, song: SongForAnalysis) -> Outcome:
        cached = self.cache.get_json(self.cache_key(song.content_hash))
        if cached is not None:
            self.stats.sources["cache"] += 1
            return Outcome(
                song.song_id,
                Analysis.model_validate(cached["analysis"]),
                self.settings.model,
                "cache",
                cached.get("tokens_in", 0),
                cached.get("tokens_out", 0),
                None,
            )
        messages = build_messages(song.title, song.artist, song.lyrics)
        tokens_in = tokens_out = 0
        started = time.perf_counter()
        try:
            for turn in (1, 2):
                reply, used_in, used_out = await self._complete(client, messages)
                tokens_in += used_in
                tokens_out += used_out
                try:
                    analysis = parse_reply(reply, song.lyrics)
                    break
                except InvalidReply as exc:
                    if turn == 2:
                        return self._fallback(song, f"invalid output after repair: {exc}")
                    self.stats.repairs += 1
                    messages = [
                        *messages,
                        {"role": "assistant", "content": reply},
                        {
                            "role": "user",
                            "content": f"That reply is invalid ({exc}). Reply with the corrected JSON object only.",
                        },
                    ]
        except CircuitOpenError:
            return self._fallback(song, "circuit open")
        except _Failed as exc:
            return self._fallback(song, str(exc))
        latency = (time.perf_counter() - started) * 1000
        self.stats.sources["llm"] += 1
        self.stats.tokens_in += tokens_in
        self.stats.tokens_out += tokens_out
        self.stats.latencies_ms.append(latency)
        self.cache.set_json(
            self.cache_key(song.content_hash),
            {
                "analysis": analysis.model_dump(mode="json"),
                "tokens_in": tokens_in,
                "tokens_out": tokens_out,
            },
            self.settings.cache_ttl_seconds,
        )
        return Outcome(
            song.song_id, analysis, self.settings.model, "llm", tokens_in, tokens_out, latency
        )

    async def _complete(
        self, client: openai.AsyncOpenAI, messages: list[dict[str, str]]
    ) -> tuple[str, int, int]:
        estimate = sum(estimate_tokens(m["content"]) for m in messages) + self.settings.max_tokens
        last = "no attempt"
        for attempt in range(self.settings.retry.max_attempts):
            self.breaker.check()
            await self._requests.acquire()
            await self._tokens.acquire(estimate)
            self.stats.requests += 1
            kwargs: dict[str, Any] = {
                "model": self.settings.model,
                "messages": messages,
                "temperature": self.settings.temperature,
                "max_tokens": self.settings.max_tokens,
                # Qwen3 reasons in <think> blocks unless told not to; the parser strips any anyway
                "extra_body": {"chat_template_kwargs": {"enable_thinking": False}},
            }
            if self._json_mode:
                kwargs["response_format"] = {"type": "json_object"}
            try:
                response = await client.chat.completions.create(**kwargs)
            except openai.BadRequestError as exc:
                if self._json_mode and "response_format" in str(exc.message):
                    self._json_mode = False  # this endpoint has no JSON mode: parse the text
                    continue
                raise _Failed(f"HTTP 400: {type(exc).__name__}") from None
            except (
                openai.RateLimitError,
                openai.InternalServerError,
                openai.APIStatusError,
            ) as exc:
                status = getattr(exc, "status_code", 0)
                if status != 429 and status < 500:
                    raise _Failed(f"HTTP {status}") from None
                last = f"HTTP {status}"
                hinted = retry_after_seconds(exc.response.headers.get("retry-after"))
                wait = hinted if hinted is not None else self.settings.retry.backoff(attempt)
            except openai.APITimeoutError:
                last, wait = "timeout", self.settings.retry.backoff(attempt)
            except openai.APIConnectionError:
                last, wait = "connection error", self.settings.retry.backoff(attempt)
            else:
                self.breaker.record_success()
                usage = response.usage
                content = response.choices[0].message.content if response.choices else None
                return (
                    content or "",
                    usage.prompt_tokens if usage else 0,
                    usage.completion_tokens if usage else 0,
                )
            self.breaker.record_failure()
            if attempt + 1 < self.settings.retry.max_attempts:
                self.stats.retries += 1
                await asyncio.sleep(min(wait, self.settings.retry.max_delay))
        raise _Failed(f"{last} after {self.settings.retry.max_attempts} attempts")
