"""Local HTTP servers that tests start in place of Genius, Spotify and an LLM provider.

Faults are real at the socket level: a 429 with Retry-After, 5xx, a response delayed past the
client's timeout, a connection closed without a response, a malformed body.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self
from urllib.parse import parse_qsl, urlsplit

import httpx
import requests

from rap_assets.genius import GeniusSource
from rap_assets.sample_corpus.replay import GeniusReplayTransport, SpotifyReplayAdapter


@dataclass
class Fault:
    kind: str  # "status" | "delay" | "drop" | "malformed"
    status: int = 500
    headers: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    path_prefix: str = ""  # only requests whose path starts with this


@dataclass
class RequestRecord:
    method: str
    path: str
    headers: dict[str, str]
    at: float


class QuietHandler(BaseHTTPRequestHandler):
    """Keep-alive HTTP/1.1, no request logging on stderr, and one way to answer."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def send_body(
        self,
        status: int,
        body: bytes,
        headers: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> None:
        self.send_response(status)
        for key, value in {"Content-Type": content_type, **(headers or {})}.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def read_body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length", 0)))


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # a client that timed out or dropped the connection on purpose (the fault tests) is
        # not a server error; anything else still prints its traceback
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class LocalServer:
    """A threaded HTTP server on an ephemeral loopback port, with a request log and a queue of
    scripted faults. Subclasses set their own state, then call ``super().__init__()``."""

    def __init__(self) -> None:
        self.log: list[RequestRecord] = []
        self.faults: deque[Fault] = deque()
        self._lock = threading.Lock()
        self.server = _Server(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.server.request_queue_size = 64
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        raise NotImplementedError

    @property
    def base(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def record(self, handler: BaseHTTPRequestHandler) -> float:
        now = time.monotonic()
        with self._lock:
            self.log.append(
                RequestRecord(handler.command, handler.path, dict(handler.headers), now)
            )
        return now

    def fail_next(self, *faults: Fault) -> None:
        with self._lock:
            self.faults.extend(faults)

    def take_fault(self, path: str) -> Fault | None:
        with self._lock:
            for fault in list(self.faults):
                if path.startswith(fault.path_prefix):
                    self.faults.remove(fault)
                    return fault
        return None

    @contextmanager
    def running(self) -> Iterator[Self]:
        self.thread.start()
        try:
            yield self
        finally:
            self.server.shutdown()
            self.server.server_close()


class FakeGenius(LocalServer):
    """The sample corpus over real HTTP: ``/api/...`` is the API, anything else a song page."""

    def __init__(self, page_delay: float = 0.0) -> None:
        self.transport = GeniusReplayTransport()
        self.page_delay = page_delay
        #: while set, every song page after this many served pages answers 500 (an outage)
        self.pages_fail_after: int | None = None
        self.pages_served = 0
        super().__init__()

    @property
    def api_base(self) -> str:
        return f"{self.base}/api"

    def source(self, token: str, **settings: Any) -> GeniusSource:
        """A GeniusSource with this token, pointed at this server (fast rate unless overridden)."""
        return GeniusSource(
            **{
                "access_token": token,
                "api_base_url": self.api_base,
                "web_base_url": self.base,
                "requests_per_second": 100.0,
                **settings,
            }
        )

    def _outage(self) -> bool:
        if self.pages_fail_after is None:
            return False
        with self._lock:
            down = self.pages_served >= self.pages_fail_after
            self.pages_served += not down
        return down

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                fake.record(self)
                fault = fake.take_fault(self.path)
                if fault and fault.kind == "drop":
                    self.connection.close()
                    return
                if fault and fault.kind == "delay":
                    time.sleep(fault.seconds)
                if fault and fault.kind == "status":
                    self.send_body(
                        fault.status, b'{"meta": {"status": %d}}' % fault.status, fault.headers
                    )
                    return
                if fault and fault.kind == "malformed":
                    self.send_body(200, b'{"meta": {"status": 200}, "response": {"so')
                    return
                api = self.path.startswith("/api/")
                if not api and fake.page_delay:
                    time.sleep(fake.page_delay)
                if not api and fake._outage():
                    self.send_body(
                        500,
                        b"<html><body>Internal Server Error</body></html>",
                        content_type="text/html",
                    )
                    return
                target = self.path.removeprefix("/api") if api else self.path
                host = "api.genius.com" if api else "genius.com"
                response = fake.transport.handle_request(
                    httpx.Request("GET", f"https://{host}{target}")
                )
                response.read()
                self.send_body(
                    response.status_code,
                    response.content,
                    content_type=response.headers.get("content-type", "text/html"),
                )

        return Handler


class FakeSpotify(LocalServer):
    """The Spotify token endpoint and Web API over real HTTP: the sample catalog, plus the
    recorded responses in ../shared/fixtures/spotify-api for the queries they cover.

    Knobs: ``token_seconds`` (expires_in of issued tokens), ``revoke_tokens`` (401 for every token
    issued so far, as when a token expires server-side), ``forbidden`` (path prefixes that answer
    403), ``strip_artist_fields`` (omit followers/popularity), and scripted ``Fault``s.
    """

    def __init__(self, fixtures: Path | None = None) -> None:
        self.adapter = SpotifyReplayAdapter()
        self.fixtures = fixtures
        self.token_seconds = 3600
        self.tokens: list[str] = []
        self.revoked: set[str] = set()
        self.forbidden: set[str] = set()
        self.strip_artist_fields = False
        super().__init__()

    def revoke_tokens(self) -> None:
        with self._lock:
            self.revoked.update(self.tokens)

    def api_requests(self) -> list[RequestRecord]:
        return [r for r in self.log if r.path.startswith("/v1/")]

    def _fixture(self, path: str, query: dict[str, str]) -> bytes | None:
        if (
            self.fixtures is not None
            and path == "/v1/search"
            and "muse" in query.get("q", "").lower()
        ):
            return (self.fixtures / "search-tracks.json").read_bytes()
        return None

    def _issue_token(self) -> str:
        with self._lock:
            token = f"token-{len(self.tokens) + 1}"
            self.tokens.append(token)
        return token

    def _catalog(self, path_and_query: str, path: str) -> tuple[int, bytes]:
        prepared = requests.Request("GET", f"https://api.spotify.com{path_and_query}").prepare()
        response = self.adapter.send(prepared)
        body = response.content
        if self.strip_artist_fields and path == "/v1/artists":
            data = json.loads(body)
            for artist in data["artists"]:
                if artist:
                    artist.pop("followers", None)
                    artist.pop("popularity", None)
            body = json.dumps(data).encode()
        return response.status_code, body

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:
                self.read_body()
                fake.record(self)
                if not self.headers.get("Authorization", "").startswith("Basic "):
                    self.send_body(400, b'{"error": "invalid_client"}')
                    return
                body = {
                    "access_token": fake._issue_token(),
                    "token_type": "Bearer",
                    "expires_in": fake.token_seconds,
                }
                self.send_body(200, json.dumps(body).encode())

            def do_GET(self) -> None:
                fake.record(self)
                url = urlsplit(self.path)
                path = url.path.rstrip("/")
                token = self.headers.get("Authorization", "").removeprefix("Bearer ")
                if token not in fake.tokens or token in fake.revoked:
                    self.send_body(
                        401, b'{"error": {"status": 401, "message": "The access token expired"}}'
                    )
                    return
                fault = fake.take_fault(path)
                if fault and fault.kind == "status":
                    self.send_body(
                        fault.status, b'{"error": {"status": %d}}' % fault.status, fault.headers
                    )
                    return
                if any(path.startswith(prefix) for prefix in fake.forbidden):
                    self.send_body(403, b'{"error": {"status": 403, "message": "Forbidden"}}')
                    return
                fixture = fake._fixture(path, dict(parse_qsl(url.query)))
                if fixture is not None:
                    self.send_body(200, fixture)
                    return
                self.send_body(*fake._catalog(self.path, path))

        return Handler


@dataclass
class Scripted:
    """One scripted answer of the fake LLM: a reply text, an HTTP error, a delay, a drop."""

    content: str | None = None
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    drop: bool = False


class FakeOpenAI(LocalServer):
    """An OpenAI-compatible ``/v1/chat/completions`` with usage counts, an optional delay, an
    optional requests-per-minute limit it enforces with 429s, and scripted answers.

    Unscripted requests get a valid analysis computed from the lyrics in the prompt: the
    rule-based analysis with a quality judged a little differently, as a second opinion would be.
    """

    def __init__(
        self, delay: float = 0.0, rpm_limit: int | None = None, embedding_dim: int = 64
    ) -> None:
        self.delay = delay
        self.rpm_limit = rpm_limit
        self.embedding_dim = embedding_dim
        self.script: deque[Scripted] = deque()
        self.bodies: list[dict[str, object]] = []
        self.rejected = 0
        super().__init__()

    @property
    def base_url(self) -> str:
        return f"{self.base}/v1"

    def then(self, *answers: Scripted) -> None:
        with self._lock:
            self.script.extend(answers)

    def completions(self) -> list[RequestRecord]:
        return [r for r in self.log if r.path.endswith("/chat/completions")]

    @staticmethod
    def default_reply(user_message: str) -> str:
        from rap_assets.analysis import analyze_rule_based
        from rap_assets.features import compute_features
        from rap_assets.lyrics import lyrics_from_text

        title = user_message.split("\n", 1)[0].removeprefix("Song: ")
        lyrics = (
            user_message.split("Lyrics", 1)[1].split(":\n", 1)[1]
            if "Lyrics" in user_message
            else ""
        )
        parsed = lyrics_from_text(lyrics)
        features = compute_features(parsed.sections)
        analysis = analyze_rule_based(title, parsed.sections, features).model_dump(mode="json")
        # a second opinion: rewards lexical variety and storytelling more than the rules do
        opinion = 2 + 8 * features.unique_word_ratio * 0.8 + analysis["storytelling"] * 0.25
        analysis["quality"] = round(max(1.0, min(10.0, opinion)), 2)
        analysis["summary"] = f"A {analysis['mood']} song about {analysis['themes'][0]}."
        return json.dumps(analysis)

    def _next_answer(self, now: float) -> Scripted:
        with self._lock:
            answer = self.script.popleft() if self.script else Scripted()
            if self.rpm_limit is not None:
                recent = [r for r in self.completions() if now - r.at < 60.0]
                if len(recent) > self.rpm_limit:
                    self.rejected += 1
                    answer = Scripted(status=429, headers={"Retry-After": "1"})
        return answer

    @staticmethod
    def completion(body: dict[str, object], content: str, request_id: int) -> dict[str, object]:
        messages = body.get("messages", [])
        assert isinstance(messages, list)
        prompt_tokens = sum(len(str(m.get("content", ""))) for m in messages) // 4
        return {
            "id": f"chatcmpl-{request_id}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", ""),
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": content},
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": len(content) // 4,
                "total_tokens": prompt_tokens + len(content) // 4,
            },
        }

    def embeddings(self, body: dict[str, object], answer: Scripted) -> bytes:
        """``/v1/embeddings``: lexical vectors from the project's hashing embedder (a stand-in
        for a real model's), or the scripted content verbatim (malformed bodies, wrong sizes)."""
        if answer.content is not None:
            return answer.content.encode()
        from rap_assets.embeddings import EmbeddingSpec, get_embedder

        texts = body.get("input", [])
        texts = [texts] if isinstance(texts, str) else texts
        assert isinstance(texts, list)
        vectors = get_embedder(EmbeddingSpec("hashing", self.embedding_dim)).embed(
            [str(t) for t in texts]
        )
        return json.dumps(
            {
                "object": "list",
                "model": body.get("model", ""),
                "data": [
                    {"object": "embedding", "index": i, "embedding": v.tolist()}
                    for i, v in enumerate(vectors)
                ],
                "usage": {"prompt_tokens": len(texts), "total_tokens": len(texts)},
            }
        ).encode()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:
                body = json.loads(self.read_body() or b"{}")
                now = fake.record(self)
                with fake._lock:
                    fake.bodies.append(body)
                answer = fake._next_answer(now)
                if answer.drop:
                    self.connection.close()
                    return
                time.sleep(answer.delay or fake.delay)
                if answer.status is not None:
                    error = {"error": {"message": f"scripted {answer.status}", "type": "error"}}
                    self.send_body(answer.status, json.dumps(error).encode(), answer.headers)
                    return
                if self.path.endswith("/embeddings"):
                    self.send_body(200, fake.embeddings(body, answer))
                    return
                messages = body.get("messages", [])
                user = next((m["content"] for m in messages if m.get("role") == "user"), "")
                content = answer.content if answer.content is not None else fake.default_reply(user)
                self.send_body(
                    200, json.dumps(fake.completion(body, content, len(fake.log))).encode()
                )

        return Handler
