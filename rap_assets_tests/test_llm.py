"""LLM analysis: reply parsing, and the runtime over real HTTP against a fake OpenAI-compatible
server with scripted failures."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterator

import dagster as dg
import pytest

from rap_assets.analysis import LyricAnalyzer
from rap_assets.assets import ARTIST_ASSETS, CORPUS_ASSETS
from rap_assets.cache import Cache
from rap_assets.features import compute_features
from rap_assets.llm import (
    InvalidReply,
    LLMAnalyzerRuntime,
    SongForAnalysis,
    parse_reply,
    quoted_run,
    truncate_to_budget,
)
from rap_assets.lyrics import lyrics_from_text
from rap_assets.warehouse import Warehouse

from .conftest import asset_metadata, sample_resources
from .fakes import FakeOpenAI, Scripted

KEY = "sk-test-llm-key-0123456789abcdef"
LYRICS = "[Verse 1: A]\nI write with a razor, your bars come in crayon\nYou borrowed a cadence, I'm the bank that you're payin'\n\n[Chorus: A]\nPaper cuts, paper cuts"
VALID = {
    "mood": "aggressive",
    "sentiment": -0.2,
    "themes": ["battle", "wordplay"],
    "tags": ["diss"],
    "rhyme": 8,
    "wordplay": 9,
    "flow": 7,
    "storytelling": 3,
    "complexity": 8,
    "quality": 7.5,
    "explicitness": "clean",
    "language": "en",
    "summary": "A cutting battle verse built on banking metaphors.",
}


def test_parse_valid_json_and_json_after_think() -> None:
    assert parse_reply(json.dumps(VALID), LYRICS).quality == 7.5
    reply = (
        "<think>\nThe user wants {json}... let me think about rhymes.\n</think>\n\nHere you go: "
        + json.dumps(VALID)
        + " Hope it helps!"
    )
    assert parse_reply(reply, LYRICS).mood.value == "aggressive"


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        ("Sorry, I can't help with that.", "no JSON object"),
        ('{"mood": "aggressive", ', "no JSON object"),
        (json.dumps({**VALID, "quality": 11}), "quality"),
        (json.dumps({**VALID, "themes": ["cooking"]}), "controlled vocabulary"),
        (json.dumps({**VALID, "mood": "sleepy"}), "mood"),
        (
            json.dumps(
                {**VALID, "summary": "It says i write with a razor your bars come in crayon."}
            ),
            "quotes",
        ),
        (json.dumps({**VALID, "summary": "One. Two."}), "one sentence"),
    ],
)
def test_invalid_replies_are_rejected_with_a_reason(reply: str, message: str) -> None:
    with pytest.raises(InvalidReply, match=message):
        parse_reply(reply, LYRICS)


def test_quoting_a_short_phrase_is_allowed() -> None:
    assert quoted_run("The hook repeats paper cuts over and over.", LYRICS) == 2


def test_truncation_keeps_whole_lines_within_budget() -> None:
    text = "\n".join(f"line number {i} of a very long song" for i in range(2000))
    cut, truncated = truncate_to_budget(text, budget=100)
    assert truncated and len(cut) <= 100 * 4 + 10 and cut.endswith("[…]")
    assert cut.split("\n")[-2] in text.split("\n")
    assert truncate_to_budget("short", 100) == ("short", False)


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI().running() as server:
        yield server


def _song(i: int = 0) -> SongForAnalysis:
    parsed = lyrics_from_text(LYRICS + f"\nvariation {i}")
    return SongForAnalysis(
        i,
        f"Song {i}",
        "Kilo Vance",
        f"hash-{i}-{uuid.uuid4().hex}",
        parsed.text,
        parsed.sections,
        compute_features(parsed.sections),
    )


def _runtime(
    fake: FakeOpenAI, cache: Cache | None = None, **overrides: object
) -> LLMAnalyzerRuntime:
    settings: dict[str, object] = {
        "llm_api_key": KEY,
        "llm_base_url": fake.base_url,
        "requests_per_minute": 6000.0,
        "timeout_seconds": 5.0,
        "backoff_base_seconds": 0.05,
        **overrides,
    }
    return LyricAnalyzer(**settings).runtime(
        cache or Cache(namespace=f"llm-{uuid.uuid4().hex[:8]}")
    )  # type: ignore[arg-type]


def test_valid_reply_is_stored_with_usage(fake: FakeOpenAI) -> None:
    runtime = _runtime(fake)
    (outcome,) = runtime.run([_song()])
    assert outcome.source == "llm" and outcome.analyzer == "qwen/qwen3-4b-fp8"
    assert outcome.tokens_in > 0 and outcome.tokens_out > 0
    body = fake.bodies[0]
    assert body["temperature"] == 0 and body["max_tokens"] == 600
    assert body["response_format"] == {"type": "json_object"}
    assert {k.lower(): v for k, v in fake.log[0].headers.items()}[
        "authorization"
    ] == f"Bearer {KEY}"


def test_think_preamble_then_json(fake: FakeOpenAI) -> None:
    fake.then(Scripted(content="<think>hmm</think>" + json.dumps(VALID)))
    (outcome,) = _runtime(fake).run([_song()])
    assert outcome.source == "llm" and outcome.analysis.quality == 7.5


def test_invalid_json_gets_one_repair(fake: FakeOpenAI) -> None:
    fake.then(
        Scripted(content="here is my analysis: mood aggressive"),
        Scripted(content=json.dumps(VALID)),
    )
    runtime = _runtime(fake)
    (outcome,) = runtime.run([_song()])
    assert outcome.source == "llm" and runtime.stats.repairs == 1
    repair_turn = fake.bodies[1]["messages"][-1]["content"]  # type: ignore[index]
    assert "invalid" in repair_turn and "no JSON object" in repair_turn


def test_schema_violation_twice_falls_back_to_rules(fake: FakeOpenAI) -> None:
    fake.then(
        Scripted(content=json.dumps({**VALID, "quality": 42})),
        Scripted(content=json.dumps({**VALID, "rhyme": 0})),
    )
    runtime = _runtime(fake)
    (outcome,) = runtime.run([_song()])
    assert outcome.source == "fallback"
    assert outcome.analyzer.startswith(
        "rule-based (fallback: invalid output after repair: schema violation: rhyme"
    )
    assert len(fake.completions()) == 2


def test_429_retry_after_is_honoured(fake: FakeOpenAI) -> None:
    fake.then(Scripted(status=429, headers={"Retry-After": "1"}))
    runtime = _runtime(fake)
    started = time.monotonic()
    (outcome,) = runtime.run([_song()])
    assert outcome.source == "llm" and runtime.stats.retries == 1
    assert time.monotonic() - started >= 1.0
    first, second = (r.at for r in fake.completions())
    assert second - first >= 1.0


def test_500s_then_success(fake: FakeOpenAI) -> None:
    fake.then(Scripted(status=500), Scripted(status=503))
    runtime = _runtime(fake)
    (outcome,) = runtime.run([_song()])
    assert outcome.source == "llm" and runtime.stats.retries == 2


def test_timeout_is_retried(fake: FakeOpenAI) -> None:
    fake.then(Scripted(delay=1.5))
    runtime = _runtime(fake, timeout_seconds=0.5)
    (outcome,) = runtime.run([_song()])
    assert outcome.source == "llm" and runtime.stats.retries == 1


def test_circuit_opens_and_the_rest_fall_back(fake: FakeOpenAI) -> None:
    fake.then(*[Scripted(status=500) for _ in range(50)])
    runtime = _runtime(
        fake, circuit_failure_threshold=3, max_attempts=2, concurrency=1, circuit_reset_seconds=30
    )
    outcomes = runtime.run([_song(i) for i in range(5)])
    assert all(o.source == "fallback" for o in outcomes)
    assert runtime.stats.fallbacks["circuit open"] >= 3
    assert len(fake.completions()) <= 4  # the open circuit stops the calls


def test_rate_limit_is_respected(fake: FakeOpenAI) -> None:
    runtime = _runtime(fake, requests_per_minute=120.0, concurrency=8)  # 2 per second
    started = time.monotonic()
    outcomes = runtime.run([_song(i) for i in range(9)])
    assert all(o.source == "llm" for o in outcomes)
    assert time.monotonic() - started >= 8 * 0.5 - 0.05
    stamps = [r.at for r in fake.completions()]
    worst = max(sum(1 for t in stamps if start <= t < start + 1.0) for start in stamps)
    assert worst <= 2


def test_cache_hit_makes_no_http_call(fake: FakeOpenAI) -> None:
    cache = Cache(namespace=f"llm-{uuid.uuid4().hex[:8]}")
    song = _song()
    _runtime(fake, cache).run([song])
    calls = len(fake.log)
    runtime = _runtime(fake, cache)
    (outcome,) = runtime.run([song])
    assert outcome.source == "cache" and len(fake.log) == calls


def test_the_key_never_appears_in_logs_or_errors(
    fake: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    fake.then(Scripted(status=401), Scripted(status=500), Scripted(status=500))
    with caplog.at_level(logging.DEBUG):
        runtime = _runtime(fake, max_attempts=2)
        outcomes = runtime.run([_song(1), _song(2)])
    reasons = " ".join(o.analyzer for o in outcomes) + " ".join(runtime.stats.fallbacks)
    assert "fallback" in reasons
    assert KEY not in caplog.text and KEY not in reasons


def test_llm_analyses_asset_and_evaluation_on_llm_labels(
    database_url: str, fake: FakeOpenAI
) -> None:
    from rap_assets.automation import load_watchlist

    analyzer = LyricAnalyzer(
        llm_api_key=KEY, llm_base_url=fake.base_url, requests_per_minute=6000.0
    )
    resources = {**sample_resources(database_url), "analyzer": analyzer}
    with dg.instance_for_test() as instance:
        keys = [a.partition_key for a in load_watchlist()]
        instance.add_dynamic_partitions("artists", keys)
        for key in keys:
            result = dg.materialize(
                ARTIST_ASSETS, partition_key=key, instance=instance, resources=resources
            )
            assert result.success
        meta = asset_metadata(result, "lyric_analyses")
        assert meta["analyzed"] == 10 and meta["fallback"] == 0
        assert int(meta["tokens_in"]) > 0 and float(meta["estimated_cost_usd"]) > 0  # type: ignore[arg-type]
        calls = len(fake.log)
        # the warehouse is the system of record: a fresh cache still sends nothing
        again = dg.materialize(
            ARTIST_ASSETS,
            partition_key=keys[-1],
            instance=instance,
            resources={**resources, "cache": Cache(namespace=f"fresh-{uuid.uuid4().hex[:6]}")},
        )
        assert (
            asset_metadata(again, "lyric_analyses")["from_warehouse"] == 10
            and len(fake.log) == calls
        )

        evaluation = dg.materialize(CORPUS_ASSETS, instance=instance, resources=resources)
        metrics = asset_metadata(evaluation, "evaluation_metrics")
    assert metrics["status"] == "evaluated" and metrics["label_source"] == "qwen/qwen3-4b-fp8"
    assert {
        "ridge_mae",
        "gradient-boosting_mae",
        "rule-based_mae",
        "random_mae",
        "mean_mae",
    } <= set(metrics)
    stored = Warehouse(database_url=database_url).fetch_all(
        "SELECT DISTINCT model, prompt_version FROM analyses ORDER BY 1"
    )
    assert stored == [("qwen/qwen3-4b-fp8", "analysis-v1")]
