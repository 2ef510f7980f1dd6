"""Text embeddings behind one interface, and how lyrics are cut into embeddable chunks."""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import dagster as dg
import numpy as np
from pydantic import Field

from rap_assets.lyrics import Section


class Embedder(Protocol):
    name: str
    dim: int

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """One L2-normalised row per text, float32."""
        ...


_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_SUFFIXES = ("'s", "in'", "ingly", "edly", "ings", "ing", "ers", "ed", "es", "er", "s", "ly")


def stem(word: str) -> str:
    """Strip inflections until none is left, keeping at least three letters: "gerrymandering"
    and "gerrymander" both become "gerrymand", "ballots" becomes "ballot"."""
    changed = True
    while changed:
        changed = False
        for suffix in _SUFFIXES:
            if word.endswith(suffix) and len(word) - len(suffix) >= 3:
                word = word[: -len(suffix)]
                changed = True
                break
    return word


def analyze_words(text: str) -> list[str]:
    """Stemmed content words. Bigrams were tried and dropped: they rarely match between a short
    query and a verse, and every unmatched feature adds projection noise to the cosine."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return [
        stem(t)
        for t in _TOKEN.findall(text.lower().replace("’", "'"))
        if t not in ENGLISH_STOP_WORDS
    ]


class HashingEmbedder:
    """Feature-hashed stemmed words with sublinear TF, projected to ``dim``
    dimensions by a fixed seeded sparse random projection, then L2-normalised.

    It needs no model download and no corpus statistics, so every process produces identical
    vectors for identical text. Random projection preserves the cosine similarity of the hashed
    TF vectors (Johnson–Lindenstrauss): this is lexical similarity, not semantic, which is why
    the search issue measures transformer backends against it.
    """

    def __init__(self, dim: int = 384, n_features: int = 2**17, seed: int = 20240601) -> None:
        from sklearn.feature_extraction.text import HashingVectorizer
        from sklearn.random_projection import SparseRandomProjection

        self.dim = dim
        self.name = f"hashing-{dim}-v4"
        self._vectorizer = HashingVectorizer(
            analyzer=analyze_words, n_features=n_features, alternate_sign=False, norm=None
        )
        # ~16 non-zeros per hashed feature: sklearn's default density (1/sqrt(n_features)) would
        # leave most features with no non-zero at all at this width, and their words invisible
        projection = SparseRandomProjection(
            n_components=dim, density=16 / dim, random_state=seed, dense_output=True
        )
        projection.fit(np.zeros((1, n_features), dtype=np.float64))
        self._projection = projection
        self._lock = threading.Lock()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        counts = self._vectorizer.transform(texts)
        counts.data = 1.0 + np.log(
            counts.data
        )  # sublinear TF: a chorus repeated 8 times is not 8x the topic
        with self._lock:
            dense = np.asarray(self._projection.transform(counts), dtype=np.float32)
        norms = np.linalg.norm(dense, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        return dense / norms


_embedders: dict[tuple[str, int], Embedder] = {}
_embedders_lock = threading.Lock()


def get_embedder(backend: str, dim: int = 384) -> Embedder:
    with _embedders_lock:
        key = (backend, dim)
        if key not in _embedders:
            if backend == "hashing":
                _embedders[key] = HashingEmbedder(dim)
            else:
                raise ValueError(f"unknown embedding backend {backend!r}; choose from: hashing")
        return _embedders[key]


@dataclass(frozen=True)
class Chunk:
    ordinal: int
    header: str | None
    text: str


def chunk_sections(title: str, sections: Sequence[Section], max_lines: int = 12) -> list[Chunk]:
    """One chunk per section (long sections split every ``max_lines`` lines), so a search hit
    can name the verse that matched. The title leads each chunk: it is the song's topic."""
    chunks: list[Chunk] = []
    for section in sections:
        for start in range(0, max(1, len(section.lines)), max_lines):
            lines = section.lines[start : start + max_lines]
            if lines:
                chunks.append(Chunk(len(chunks), section.header, f"{title}\n" + "\n".join(lines)))
    return chunks


def pool(vectors: np.ndarray) -> np.ndarray:
    """Mean of the chunk vectors, re-normalised: the song's own vector."""
    mean = vectors.mean(axis=0)
    norm = float(np.linalg.norm(mean))
    return (mean / norm if norm else mean).astype(np.float32)


class TextEmbedder(dg.ConfigurableResource):
    """Embeds lyrics chunks and search queries with the configured backend."""

    backend: str = Field(default="hashing", description="Embedding backend: hashing.")
    dim: int = Field(default=384, description="Vector dimension.")

    @property
    def embedder(self) -> Embedder:
        return get_embedder(self.backend, self.dim)

    @property
    def model_name(self) -> str:
        return self.embedder.name
