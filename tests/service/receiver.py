"""A callback receiver for tests: a real HTTP server on a loopback address that records
what reaches it and answers per path (``/ok`` 200, ``/flaky`` 500 then 200, ``/down``
always 503, ``/redirect`` a 302 to ``redirect_to``)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class Receiver:
    host: str
    redirect_to: str = ""
    received: list[Received] = field(default_factory=list)
    _seen: dict[str, int] = field(default_factory=dict)
    _server: ThreadingHTTPServer | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}{path}"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                path = self.path.split("?", 1)[0]
                receiver.received.append(Received(self.command, self.path,
                                                  dict(self.headers), body, time.time()))
                seen = receiver._seen[path] = receiver._seen.get(path, 0) + 1
                if path == "/redirect":
                    self.send_response(302)
                    self.send_header("Location", receiver.redirect_to)
                elif path == "/down" or (path == "/flaky" and seen == 1):
                    self.send_response(503)
                else:
                    self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_POST = do_PUT = do_GET = _answer  # noqa: N815

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer((self.host, 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def wait_for(self, count: int, path: str | None = None, timeout_s: float = 20
                 ) -> list[Received]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            got = [r for r in self.received if path is None or r.path == path]
            if len(got) >= count:
                return got
            time.sleep(0.05)
        raise AssertionError(f"{count} callbacks to {path} did not arrive: {self.received}")

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
