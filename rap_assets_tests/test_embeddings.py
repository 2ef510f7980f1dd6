"""Embedding backends: the static model asset, MiniLM, and the OpenAI-compatible client over
real HTTP against a local fake, with faults injected."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import numpy as np
import pytest

from rap_assets.assets import static_embedding_model
from rap_assets.embeddings import (
    STATIC_MODEL_NAME,
    EmbeddingError,
    EmbeddingSpec,
    OpenAIEmbedder,
    StaticEmbedder,
    TextEmbedder,
    distill_static_model,
    get_embedder,
    static_model_dir,
    static_model_ready,
)
from rap_assets_tests.conftest import asset_metadata
from rap_assets_tests.fakes import FakeOpenAI, Scripted

TEXTS = ["money on my mind and diamonds on my wrist", "therapy taught me how to breathe"]


def test_static_model_asset_builds_once_and_reports_itself(instance: dg.DagsterInstance) -> None:
    resources = {"embedder": TextEmbedder()}
    first = dg.materialize([static_embedding_model], instance=instance, resources=resources)
    meta = asset_metadata(first, "static_embedding_model")
    assert meta["model"] == STATIC_MODEL_NAME and meta["dimension"] == 256
    assert meta["vocabulary_size"] > 20_000
    assert (static_model_dir() / "model.safetensors").is_file()
    again = dg.materialize([static_embedding_model], instance=instance, resources=resources)
    assert asset_metadata(again, "static_embedding_model")["rebuilt"] is False


def test_a_full_refresh_swaps_the_static_model_in_whole(tmp_path: Path) -> None:
    target = static_model_dir(tmp_path)
    distill_static_model(target)
    marker = target / "left-by-the-old-build"
    marker.write_text("")
    assert distill_static_model(target) == target and marker.exists()  # kept without replace
    distill_static_model(target, replace=True)
    assert not marker.exists() and static_model_ready(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]  # no staging left
    assert StaticEmbedder(target).embed(TEXTS).shape == (2, 256)


def test_static_model_asset_is_a_no_op_for_other_backends(instance: dg.DagsterInstance) -> None:
    result = dg.materialize(
        [static_embedding_model],
        instance=instance,
        resources={"embedder": TextEmbedder(backend="hashing")},
    )
    assert "not used" in asset_metadata(result, "static_embedding_model")["status"]


@pytest.mark.parametrize(("backend", "dim"), [("model2vec", 256), ("minilm", 384)])
def test_local_backends_give_unit_vectors_that_rank_by_meaning(backend: str, dim: int) -> None:
    embedder = get_embedder(backend)
    vectors = embedder.embed([*TEXTS, "rich with jewelry and cash"])
    assert vectors.shape == (3, dim) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # no word in common with the first text, but the same meaning
    assert vectors[2] @ vectors[0] > vectors[2] @ vectors[1]
    assert embedder.embed([]).shape == (0, dim)


def test_unknown_backend_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown embedding backend 'bert'"):
        get_embedder("bert")
    with pytest.raises(ValueError, match="EMBEDDING_BASE_URL, EMBEDDING_API_KEY"):
        get_embedder(EmbeddingSpec("openai", model="m", dim=64))


def _client(fake: FakeOpenAI, **kwargs: object) -> OpenAIEmbedder:
    return OpenAIEmbedder(
        fake.base_url,
        "sk-test-secret",
        "qwen3-embedding",
        64,
        **kwargs,  # type: ignore[arg-type]
    )


def test_openai_backend_batches_and_normalises() -> None:
    with FakeOpenAI(embedding_dim=64).running() as fake:
        vectors = _client(fake, batch_size=2).embed([*TEXTS, "diamond chains"])
        bodies = fake.bodies
    assert vectors.shape == (3, 64)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert [b["input"] for b in bodies] == [TEXTS, ["diamond chains"]]
    assert bodies[0]["model"] == "qwen3-embedding"


def test_openai_backend_retries_429_with_retry_after_and_5xx() -> None:
    with FakeOpenAI().running() as fake:
        fake.then(Scripted(status=429, headers={"Retry-After": "1"}), Scripted(status=503))
        vectors = _client(fake).embed(TEXTS)
        assert len(fake.log) == 3
        gap = fake.log[1].at - fake.log[0].at
    assert vectors.shape == (2, 64)
    assert gap >= 0.9  # Retry-After: 1 was honoured


def test_openai_backend_survives_a_dropped_connection() -> None:
    with FakeOpenAI().running() as fake:
        fake.then(Scripted(drop=True))
        assert _client(fake).embed(TEXTS).shape == (2, 64)
        assert len(fake.log) == 2


def test_openai_backend_gives_up_with_a_clear_error_that_hides_the_key() -> None:
    with FakeOpenAI().running() as fake:
        fake.then(*[Scripted(status=500)] * 3)
        with pytest.raises(EmbeddingError, match="answered HTTP 500 after retries") as raised:
            _client(fake, max_retries=2).embed(TEXTS)
    assert "sk-test-secret" not in str(raised.value)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json at all", "failed"),
        (
            json.dumps(
                {"object": "list", "data": [{"index": i, "embedding": [0.1] * 8} for i in (0, 1)]}
            ),
            "8-dim",
        ),
        (
            json.dumps({"object": "list", "data": [{"index": 0, "embedding": [0.1] * 64}]}),
            "returned 1 vectors for 2 texts",
        ),
    ],
)
def test_openai_backend_rejects_malformed_replies(content: str, message: str) -> None:
    with FakeOpenAI().running() as fake:
        fake.then(Scripted(content=content))
        with pytest.raises(EmbeddingError, match=message):
            _client(fake, max_retries=0).embed(TEXTS)


def test_openai_backend_times_out(tmp_path: Path) -> None:
    with FakeOpenAI().running() as fake:
        fake.then(Scripted(delay=2.0))
        with pytest.raises(EmbeddingError, match="APITimeoutError"):
            _client(fake, timeout=0.3, max_retries=0).embed(TEXTS)
