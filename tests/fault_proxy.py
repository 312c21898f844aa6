"""A tiny fault-injecting HTTP proxy in front of the S3 server: a real HTTP hop, not a boto3 patch.

SeaweedFS cannot be told to answer `SlowDown`, 5xx or `InvalidObjectState`, so tests point
`AWS_ENDPOINT_URL_S3` at this proxy. It forwards every request unchanged (the Host header too, so
SigV4 signatures still verify upstream) and, for requests matching a rule, instead:

- answers an S3 error (`status`, `<Error><Code>…`), as S3 itself would, so botocore's retry logic
  and error parsing run for real;
- drops the connection without an answer (`reset=True`), like a connection reset;
- runs `before()` and then forwards (to delete or change an object between listing and reading).

Rules match on method, the (decoded) key by regular expression and a query substring; `times`
limits how often a rule fires (None: always).
"""

from __future__ import annotations

import http.client
import re
import socket
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import ClassVar, Self

_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade", "te"}
)


@dataclass
class Rule:
    method: str | None = None
    key: str | None = None  # regular expression searched in "bucket/key"
    query: str | None = None  # substring of the raw query string
    status: int = 503
    code: str = "SlowDown"
    message: str = "Please reduce your request rate."
    reset: bool = False
    before: Callable[[], None] | None = None
    times: int | None = None
    fired: int = 0

    def matches(self, method: str, path: str, query: str) -> bool:
        if self.times is not None and self.fired >= self.times:
            return False
        if self.method is not None and self.method != method:
            return False
        if self.key is not None and re.search(self.key, path) is None:
            return False
        return self.query is None or self.query in query


@dataclass
class Seen:
    method: str
    path: str
    query: str
    answered: str  # "forwarded" | an error code | "reset"


@dataclass
class _Log:
    seen: list[Seen] = field(default_factory=list)


class FaultProxy:
    def __init__(self, upstream: str) -> None:
        parsed = urllib.parse.urlsplit(upstream)
        self.upstream_host = parsed.hostname or "127.0.0.1"
        self.upstream_port = parsed.port or 80
        self.rules: list[Rule] = []
        self._lock = threading.Lock()
        self._log = _Log()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def endpoint_url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def add(self, **options: object) -> Rule:
        rule = Rule(**options)  # type: ignore[arg-type]
        with self._lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()
            self._log = _Log()

    def seen(self) -> list[Seen]:
        with self._lock:
            return list(self._log.seen)

    def _decide(self, method: str, path: str, query: str) -> Rule | None:
        with self._lock:
            for rule in self.rules:
                if rule.matches(method, path, query):
                    rule.fired += 1
                    return rule
        return None

    def _note(self, seen: Seen) -> None:
        with self._lock:
            self._log.seen.append(seen)

    def __enter__(self) -> Self:
        handler = type("_Bound", (_Handler,), {"proxy": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1})
        self._thread.daemon = True
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)


def _error_body(code: str, message: str, resource: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message>"
        f"<Resource>{resource}</Resource><RequestId>fault-proxy</RequestId></Error>"
    ).encode()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    proxy: ClassVar[FaultProxy]
    _upstream = threading.local()

    def log_message(self, format: str, *args: object) -> None:
        return

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _serve(self) -> None:
        body = self._body()
        split = urllib.parse.urlsplit(self.path)
        path = urllib.parse.unquote(split.path.lstrip("/"))
        rule = self.proxy._decide(self.command, path, split.query)
        if rule is not None and rule.reset:
            self.proxy._note(Seen(self.command, path, split.query, "reset"))
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        if rule is not None and rule.before is not None:
            rule.before()
        elif rule is not None:
            self.proxy._note(Seen(self.command, path, split.query, rule.code))
            data = _error_body(rule.code, rule.message, "/" + path)
            self.send_response(rule.status)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("x-amz-request-id", "fault-proxy")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
            return
        self.proxy._note(Seen(self.command, path, split.query, "forwarded"))
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        if body or self.headers.get("Transfer-Encoding"):
            headers["Content-Length"] = str(len(body))
        response = self._forward(headers, body)
        data = response.read()
        self.send_response(response.status, response.reason)
        head = self.command == "HEAD"  # a HEAD answer keeps the object's Content-Length
        for name, value in response.getheaders():
            if name.lower() not in _HOP_BY_HOP and (head or name.lower() != "content-length"):
                self.send_header(name, value)
        if not head:
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _forward(self, headers: dict[str, str], body: bytes) -> http.client.HTTPResponse:
        for attempt in range(2):
            connection: http.client.HTTPConnection | None = getattr(self._upstream, "connection", None)
            if connection is None:
                connection = http.client.HTTPConnection(
                    self.proxy.upstream_host, self.proxy.upstream_port, timeout=60
                )
                self._upstream.connection = connection
            try:
                connection.request(self.command, self.path, body=body or None, headers=headers)
                return connection.getresponse()
            except (OSError, http.client.HTTPException):
                connection.close()
                self._upstream.connection = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _serve
