"""A real local HTTP receiver that records every request it gets, for tests to assert on."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.time()

    @property
    def message_id(self) -> str:
        return self.headers.get("Upstash-Message-Id", "")


@dataclass
class Reply:
    status: int = 200
    body: bytes = b"ok"
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


class Concurrency:
    """A receiver rule that records each request as it STARTS (the request in `started`, its
    `time.monotonic()` in `starts`), answers after `hold_s` (or when `release` is set, if
    given), and tracks how many requests overlapped (`current`, `peak`).

    (The receiver records a request only after its rule returns, so a rule that blocks keeps
    its own record of what has started.)"""

    def __init__(
        self,
        hold_s: float = 0.0,
        reply: Callable[[Received], Reply] | None = None,
        release: threading.Event | None = None,
    ) -> None:
        self.hold_s = hold_s
        self.reply = reply or (lambda _: Reply(200, b""))
        self.release = release
        self.started: list[Received] = []
        self.starts: list[float] = []
        self.current = 0
        self.peak = 0
        self._changed = threading.Condition()

    def __call__(self, req: Received) -> Reply:
        with self._changed:
            self.started.append(req)
            self.starts.append(time.monotonic())
            self.current += 1
            self.peak = max(self.peak, self.current)
            self._changed.notify_all()
        try:
            if self.release is not None:
                self.release.wait(10)
            elif self.hold_s:
                time.sleep(self.hold_s)
            return self.reply(req)
        finally:
            with self._changed:
                self.current -= 1

    def wait_started(self, count: int, timeout: float = 10.0) -> list[Received]:
        with self._changed:
            if not self._changed.wait_for(lambda: len(self.started) >= count, timeout):
                raise AssertionError(f"expected {count} requests to start, got {len(self.started)}")
            return list(self.started)


class Receiver:
    """Answers 200 unless a path has a rule: `receiver.on("/fail", lambda req: Reply(500))`."""

    def __init__(self, port: int = 0) -> None:
        """`port`: 0 for any free port; a fixed one only for destinations stored beforehand
        (the upgrade fixtures)."""
        self.requests: list[Received] = []
        self._rules: dict[str, Callable[[Received], Reply]] = {}
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                path = self.path
                req = Received(self.command, path, dict(self.headers.items()), body, time.time())
                rule = outer._rules.get(path.split("?")[0])
                reply = rule(req) if rule else Reply()
                with outer._changed:
                    outer.requests.append(req)
                    outer._changed.notify_all()
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                self.send_response(reply.status)
                for k, v in reply.headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

            def log_message(self, *args: object) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def on(self, path: str, rule: Callable[[Received], Reply]) -> None:
        self._rules[path] = rule

    def to(self, path: str) -> list[Received]:
        with self._lock:
            return [r for r in self.requests if r.path.split("?")[0] == path]

    def wait_for(
        self, count: int, path: str | None = None, timeout: float = 10.0
    ) -> list[Received]:
        """Block until `count` requests (to `path`, if given) arrived; return them."""
        deadline = time.time() + timeout
        with self._changed:
            while True:
                got = [r for r in self.requests if path is None or r.path.split("?")[0] == path]
                if len(got) >= count:
                    return got
                left = deadline - time.time()
                if left <= 0:
                    raise AssertionError(f"expected {count} requests to {path}, got {len(got)}")
                self._changed.wait(left)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
