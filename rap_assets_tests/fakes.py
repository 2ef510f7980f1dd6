"""Local HTTP servers that tests start: a fake Genius (API and pages) with scripted faults.

Faults are real at the socket level: a 429 with Retry-After, 5xx, a response delayed past the
client's timeout, a connection closed without a response, a malformed body.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

from rap_assets.sample_corpus.replay import GeniusReplayTransport


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


class FakeGenius:
    """Serves the sample corpus over real HTTP: ``/api/...`` is the API, anything else a page."""

    def __init__(self, page_delay: float = 0.0) -> None:
        self.transport = GeniusReplayTransport()
        self.faults: deque[Fault] = deque()
        self.log: list[RequestRecord] = []
        self.page_delay = page_delay
        #: while set, every song page after this many served pages answers 500 (an outage)
        self.pages_fail_after: int | None = None
        self.pages_served = 0
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def api_base(self) -> str:
        return f"{self.base}/api"

    def fail_next(self, *faults: Fault) -> None:
        with self._lock:
            self.faults.extend(faults)

    def _take_fault(self, path: str) -> Fault | None:
        with self._lock:
            for fault in list(self.faults):
                if path.startswith(fault.path_prefix):
                    self.faults.remove(fault)
                    return fault
        return None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                fake.log.append(
                    RequestRecord("GET", self.path, dict(self.headers), time.monotonic())
                )
                fault = fake._take_fault(self.path)
                if fault and fault.kind == "drop":
                    self.connection.close()
                    return
                if fault and fault.kind == "delay":
                    time.sleep(fault.seconds)
                if fault and fault.kind == "status":
                    body = b'{"meta": {"status": %d}}' % fault.status
                    self._send(
                        fault.status, body, {"Content-Type": "application/json", **fault.headers}
                    )
                    return
                if fault and fault.kind == "malformed":
                    self._send(
                        200,
                        b'{"meta": {"status": 200}, "response": {"so',
                        {"Content-Type": "application/json"},
                    )
                    return
                api = self.path.startswith("/api/")
                target = self.path.removeprefix("/api") if api else self.path
                host = "api.genius.com" if api else "genius.com"
                if not api and fake.page_delay:
                    time.sleep(fake.page_delay)
                if not api and fake.pages_fail_after is not None:
                    with fake._lock:
                        outage = fake.pages_served >= fake.pages_fail_after
                        fake.pages_served += not outage
                    if outage:
                        self._send(
                            500,
                            b"<html><body>Internal Server Error</body></html>",
                            {"Content-Type": "text/html"},
                        )
                        return
                response = fake.transport.handle_request(
                    httpx.Request("GET", f"https://{host}{target}")
                )
                response.read()
                self._send(
                    response.status_code,
                    response.content,
                    {"Content-Type": response.headers.get("content-type", "text/html")},
                )

            def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler

    @contextmanager
    def running(self) -> Iterator[FakeGenius]:
        self.thread.start()
        try:
            yield self
        finally:
            self.server.shutdown()
            self.server.server_close()


class FakeSpotify:
    """The Spotify token endpoint and Web API over real HTTP: the sample catalog, plus the
    recorded responses in ../shared/fixtures/spotify-api for the queries and ids they cover.

    Knobs: ``token_seconds`` (expires_in of issued tokens), ``revoke_tokens`` (answer 401 to every
    token issued so far, as when a token expires server-side), ``forbidden`` (path prefixes that
    answer 403), ``strip_artist_fields`` (omit followers/popularity), and scripted ``Fault``s.
    """

    def __init__(self, fixtures: Path | None = None) -> None:
        from rap_assets.sample_corpus.replay import SpotifyReplayAdapter

        self.adapter = SpotifyReplayAdapter()
        self.fixtures = fixtures
        self.faults: deque[Fault] = deque()
        self.log: list[RequestRecord] = []
        self.token_seconds = 3600
        self.tokens: list[str] = []
        self.revoked: set[str] = set()
        self.forbidden: set[str] = set()
        self.strip_artist_fields = False
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def revoke_tokens(self) -> None:
        with self._lock:
            self.revoked.update(self.tokens)

    def fail_next(self, *faults: Fault) -> None:
        with self._lock:
            self.faults.extend(faults)

    def _take_fault(self, path: str) -> Fault | None:
        with self._lock:
            for fault in list(self.faults):
                if path.startswith(fault.path_prefix):
                    self.faults.remove(fault)
                    return fault
        return None

    def _fixture(self, path: str, query: dict[str, str]) -> bytes | None:
        if self.fixtures is None:
            return None
        if path == "/v1/search" and "muse" in query.get("q", "").lower():
            return (self.fixtures / "search-tracks.json").read_bytes()
        return None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        import json
        from urllib.parse import parse_qsl, urlsplit

        import requests

        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _send(
                self, status: int, body: bytes, headers: dict[str, str] | None = None
            ) -> None:
                self.send_response(status)
                for key, value in {"Content-Type": "application/json", **(headers or {})}.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                self.rfile.read(length)
                fake.log.append(
                    RequestRecord("POST", self.path, dict(self.headers), time.monotonic())
                )
                if not self.headers.get("Authorization", "").startswith("Basic "):
                    self._send(400, b'{"error": "invalid_client"}')
                    return
                with fake._lock:
                    token = f"token-{len(fake.tokens) + 1}"
                    fake.tokens.append(token)
                body = {
                    "access_token": token,
                    "token_type": "Bearer",
                    "expires_in": fake.token_seconds,
                }
                self._send(200, json.dumps(body).encode())

            def do_GET(self) -> None:
                fake.log.append(
                    RequestRecord("GET", self.path, dict(self.headers), time.monotonic())
                )
                url = urlsplit(self.path)
                path = url.path.rstrip("/")
                token = self.headers.get("Authorization", "").removeprefix("Bearer ")
                if token not in fake.tokens or token in fake.revoked:
                    self._send(
                        401, b'{"error": {"status": 401, "message": "The access token expired"}}'
                    )
                    return
                fault = fake._take_fault(path)
                if fault and fault.kind == "status":
                    self._send(
                        fault.status, b'{"error": {"status": %d}}' % fault.status, fault.headers
                    )
                    return
                if any(path.startswith(prefix) for prefix in fake.forbidden):
                    self._send(403, b'{"error": {"status": 403, "message": "Forbidden"}}')
                    return
                fixture = fake._fixture(path, dict(parse_qsl(url.query)))
                if fixture is not None:
                    self._send(200, fixture)
                    return
                prepared = requests.Request("GET", f"https://api.spotify.com{self.path}").prepare()
                response = fake.adapter.send(prepared)
                body = response.content
                if fake.strip_artist_fields and path == "/v1/artists":
                    data = json.loads(body)
                    for artist in data["artists"]:
                        if artist:
                            artist.pop("followers", None)
                            artist.pop("popularity", None)
                    body = json.dumps(data).encode()
                self._send(response.status_code, body)

        return Handler

    def api_requests(self) -> list[RequestRecord]:
        return [r for r in self.log if r.path.startswith("/v1/")]

    @contextmanager
    def running(self) -> Iterator[FakeSpotify]:
        self.thread.start()
        try:
            yield self
        finally:
            self.server.shutdown()
            self.server.server_close()


@dataclass
class Scripted:
    """One scripted answer of the fake LLM: a reply text, an HTTP error, a delay, a drop."""

    content: str | None = None
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    drop: bool = False


class FakeOpenAI:
    """An OpenAI-compatible ``/v1/chat/completions`` with usage counts, an optional delay, an
    optional requests-per-minute limit it enforces with 429s, and scripted answers.

    Unscripted requests get a valid analysis computed from the lyrics in the prompt: the
    rule-based analysis with a quality judged a little differently, as a second opinion would be.
    """

    def __init__(self, delay: float = 0.0, rpm_limit: int | None = None) -> None:
        self.delay = delay
        self.rpm_limit = rpm_limit
        self.script: deque[Scripted] = deque()
        self.log: list[RequestRecord] = []
        self.bodies: list[dict[str, object]] = []
        self.rejected = 0
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.server.request_queue_size = 64
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def then(self, *answers: Scripted) -> None:
        with self._lock:
            self.script.extend(answers)

    def completions(self) -> list[RequestRecord]:
        return [r for r in self.log if r.path.endswith("/chat/completions")]

    @staticmethod
    def default_reply(user_message: str) -> str:
        import json

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

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        import json

        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _send(
                self, status: int, body: dict[str, object], headers: dict[str, str] | None = None
            ) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                body = json.loads(
                    self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}"
                )
                now = time.monotonic()
                with fake._lock:
                    fake.log.append(RequestRecord("POST", self.path, dict(self.headers), now))
                    fake.bodies.append(body)
                    answer = fake.script.popleft() if fake.script else Scripted()
                    if fake.rpm_limit is not None:
                        recent = [r for r in fake.completions() if now - r.at < 60.0]
                        if len(recent) > fake.rpm_limit:
                            fake.rejected += 1
                            answer = Scripted(status=429, headers={"Retry-After": "1"})
                if answer.drop:
                    self.connection.close()
                    return
                time.sleep(answer.delay or fake.delay)
                if answer.status is not None:
                    self._send(
                        answer.status,
                        {"error": {"message": f"scripted {answer.status}", "type": "error"}},
                        answer.headers,
                    )
                    return
                messages = body.get("messages", [])
                user = next((m["content"] for m in messages if m.get("role") == "user"), "")
                content = answer.content if answer.content is not None else fake.default_reply(user)
                prompt_tokens = sum(len(str(m.get("content", ""))) for m in messages) // 4
                self._send(
                    200,
                    {
                        "id": f"chatcmpl-{len(fake.log)}",
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
                    },
                )

        return Handler

    @contextmanager
    def running(self) -> Iterator[FakeOpenAI]:
        self.thread.start()
        try:
            yield self
        finally:
            self.server.shutdown()
            self.server.server_close()
