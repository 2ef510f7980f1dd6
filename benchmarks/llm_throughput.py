"""LLM analysis throughput against the local fake OpenAI-compatible server; prints JSON.

    python benchmarks/llm_throughput.py [--songs 90] [--unlimited-songs 200]

1. At the provider's limit (45 requests/minute, which the fake server also enforces with 429s):
   sustained analyses per minute as a share of the limit, and how many 429s reached a caller.
2. With no rate limit: analyses per second at concurrency 16 (a 50 ms server-side latency).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rap_assets.analysis import LyricAnalyzer
from rap_assets.cache import Cache
from rap_assets.features import compute_features
from rap_assets.llm import SongForAnalysis
from rap_assets.lyrics import lyrics_from_text
from rap_assets_tests.fakes import FakeOpenAI


def songs(n: int) -> list[SongForAnalysis]:
    from rap_assets.sample_corpus import load_sources

    sources = [
        (a.name, s) for a in load_sources() for s in a.songs if s.kind == "song" and s.lyrics
    ]
    out = []
    for i in range(n):
        artist, song = sources[i % len(sources)]
        parsed = lyrics_from_text(song.lyrics)
        out.append(
            SongForAnalysis(
                i,
                song.title,
                artist,
                uuid.uuid4().hex,
                parsed.text,
                parsed.sections,
                compute_features(parsed.sections),
            )
        )
    return out


def run(
    rpm: float, concurrency: int, n: int, server_rpm: int | None, delay: float
) -> dict[str, object]:
    with FakeOpenAI(delay=delay, rpm_limit=server_rpm).running() as fake:
        analyzer = LyricAnalyzer(
            llm_api_key="benchmark",
            llm_base_url=fake.base_url,
            requests_per_minute=rpm,
            tokens_per_minute=10_000_000,
            concurrency=concurrency,
        )
        runtime = analyzer.runtime(Cache(namespace=f"bench-{uuid.uuid4().hex[:8]}"))
        started = time.perf_counter()
        outcomes = runtime.run(songs(n))
        elapsed = time.perf_counter() - started
        stamps = [r.at for r in fake.completions()]
    span = (stamps[-1] - stamps[0]) if len(stamps) > 1 else elapsed
    return {
        "songs": n,
        "seconds": round(elapsed, 2),
        "analyzed_by_llm": sum(o.source == "llm" for o in outcomes),
        "fallbacks": sum(o.source == "fallback" for o in outcomes),
        "requests": len(stamps),
        "server_429s": fake.rejected,
        "retries": runtime.stats.retries,  # any retried request (429, 5xx, timeout, connection)
        # sustained rate between the first and last request, as the provider would count it
        "requests_per_minute": round((len(stamps) - 1) / span * 60, 2) if span else None,
        "analyses_per_second": round(n / elapsed, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--songs", type=int, default=90, help="songs at the 45 RPM limit (~2 minutes)"
    )
    parser.add_argument("--unlimited-songs", type=int, default=200)
    args = parser.parse_args()
    limited = run(rpm=45, concurrency=8, n=args.songs, server_rpm=45, delay=0.2)
    limited["share_of_limit"] = round(float(limited["requests_per_minute"] or 0) / 45, 3)  # type: ignore[arg-type]
    unlimited = run(
        rpm=1_000_000, concurrency=16, n=args.unlimited_songs, server_rpm=None, delay=0.05
    )
    print(json.dumps({"at_45_rpm": limited, "unlimited_concurrency_16": unlimited}, indent=2))


if __name__ == "__main__":
    main()
