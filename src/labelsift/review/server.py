"""A local review page: people accept or reject the images whose confidence lies in a band.

The server binds to 127.0.0.1 only and serves a fixed set of things: the page and its three
static files, a JSON API over the band's items, and scaled-down copies of exactly the images in
the band, addressed by their position in the band's list (never by path). Each verdict is appended
to the manifest (fsynced) the moment it is made, so killing the server loses nothing; on start the
state is read back from the manifest, the newest verdict for the label winning.

API (all JSON, pages are 1-based):
- `GET /api/items?page=N` -> the page's items with their boxes, confidence and verdict, plus totals.
- `GET /img/<id>` -> the image as JPEG, EXIF orientation applied, at most `THUMB_PX` on a side;
  422 with the reason for an image over the pixel budget or the byte cap (never decoded).
- `POST /api/verdict {"id": 3, "accepted": true | false | null}` -> null is a skip (not written).
- `POST /api/accept-page {"page": N}` -> accepts every item on the page that has no verdict yet.
"""

from __future__ import annotations

import errno
import json
import logging
import posixpath
import re
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Protocol
from urllib.parse import parse_qs, urlsplit

from labelsift.errors import CannotProceed, UsageError
from labelsift.imagelimits import MAX_OBJECT_BYTES, ImageLimitError
from labelsift.manifest import ManifestWriter, append_verdict, iter_records, local_manifest, require_existing
from labelsift.models import ScanStatus, Verdict, VerdictEntry
from labelsift.select import Selection, accepted, unmatched_in_manifest
from labelsift.storage import StorageError
from labelsift.thumbnails import thumbnail
from labelsift.views import InstanceView, label_views

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
MAX_PORT = 65535
THUMB_PX = 512
MAX_BODY = 64 * 1024
_IMG_PATH = re.compile(r"/img/([0-9]{1,9})")
_STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/static/style.css": ("style.css", "text/css; charset=utf-8"),
}


class ImageReader(Protocol):
    """What the server needs from `labelsift.storage.Storage`."""

    def open_read(self, uri: str, *, limit: int | None) -> IO[bytes]: ...


@dataclass(frozen=True, slots=True)
class BandItem:
    """One image to review: where it is, how sure the model was, and the label's boxes."""

    source: str
    confidence: float
    boxes: tuple[InstanceView, ...]
    width: int | None
    height: int | None


def collect_band(
    manifest_path: str, label: str, band: tuple[float, float]
) -> tuple[list[BandItem], list[bool | None], int]:
    """Stream the manifest; return the band's items (highest confidence first), their verdicts,
    and how many other labeled images matched the label outside the band."""
    low, high = band
    selection = Selection(labels=(label,), threshold=0.0, include_parents=True, band=band)
    found: list[tuple[BandItem, bool | None]] = []
    outside = 0
    for record in iter_records(manifest_path):
        if record.status is not ScanStatus.LABELED:
            continue
        hits = selection.hits(label_views(record.labels))
        if not hits:
            continue
        best = hits[0]
        if not low <= best.confidence <= high:
            outside += 1
            continue
        item = BandItem(
            record.source,
            best.confidence,
            tuple(best.label["instances"]),
            record.width,
            record.height,
        )
        found.append((item, accepted(record.review, label)))
    found.sort(key=lambda pair: (-pair[0].confidence, pair[0].source))
    return [item for item, _ in found], [verdict for _, verdict in found], outside


class ReviewState:
    """The band's items and the verdicts made on them; every verdict is written as it is made."""

    def __init__(
        self,
        manifest_path: str,
        label: str,
        band: tuple[float, float],
        *,
        storage: ImageReader,
        page_size: int,
        who: str,
        writer: ManifestWriter | None = None,
    ) -> None:
        """`writer`, when given, appends the verdicts (and is closed by `close`); otherwise each
        verdict opens the manifest (and its lock) for its own write."""
        self.manifest_path = manifest_path
        self._writer = writer
        self.label = label
        self.band = band
        self.storage = storage
        self.page_size = page_size
        self.who = who
        self.items, self._verdicts, self.outside = collect_band(manifest_path, label, band)
        self._skipped: set[int] = set()
        self._lock = threading.Lock()
        self.port = 0  # set once the server is bound

    @property
    def pages(self) -> int:
        return max(1, -(-len(self.items) // self.page_size))

    def verdict(self, item_id: int) -> bool | None:
        with self._lock:
            return self._verdicts[item_id]

    def _state(self, item_id: int) -> str:
        verdict = self._verdicts[item_id]
        if verdict is True:
            return "accepted"
        if verdict is False:
            return "rejected"
        return "skipped" if item_id in self._skipped else "open"

    def progress(self) -> dict[str, int]:
        with self._lock:
            accepted = sum(1 for v in self._verdicts if v is True)
            rejected = sum(1 for v in self._verdicts if v is False)
            skipped = sum(1 for i in self._skipped if self._verdicts[i] is None)
        done = accepted + rejected
        return {
            "total": len(self.items),
            "done": done,
            "left": len(self.items) - done,
            "accepted": accepted,
            "rejected": rejected,
            "skipped": skipped,
        }

    def page(self, number: int) -> dict[str, Any]:
        start = (number - 1) * self.page_size
        with self._lock:
            entries = [
                {
                    "id": i,
                    "name": posixpath.basename(item.source.rstrip("/")) or item.source,
                    "source": item.source,
                    "confidence": round(item.confidence, 2),
                    "width": item.width,
                    "height": item.height,
                    "boxes": [
                        {
                            "left": b["left"],
                            "top": b["top"],
                            "width": b["width"],
                            "height": b["height"],
                            "confidence": round(b["confidence"], 2),
                        }
                        for b in item.boxes
                    ],
                    "state": self._state(i),
                }
                for i, item in enumerate(self.items[start : start + self.page_size], start=start)
            ]
        return {
            "label": self.label,
            "band": list(self.band),
            "page": number,
            "pages": self.pages,
            "page_size": self.page_size,
            "outside_band": self.outside,
            "progress": self.progress(),
            "items": entries,
        }

    def decide(self, item_id: int, accepted: bool | None) -> str:
        """Record a verdict (appended to the manifest before returning) or a skip (kept in memory)."""
        with self._lock:
            if accepted is None:
                if self._verdicts[item_id] is None:
                    self._skipped.add(item_id)
                return self._state(item_id)
            verdict = Verdict(label=self.label, accepted=accepted, who=self.who)
            source = self.items[item_id].source
            if self._writer is not None:
                self._writer.append(VerdictEntry(source=source, verdict=verdict))
            else:
                append_verdict(self.manifest_path, source, verdict)
            self._verdicts[item_id] = accepted
            self._skipped.discard(item_id)
            return self._state(item_id)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()

    def accept_page(self, number: int) -> list[int]:
        start = (number - 1) * self.page_size
        ids = range(start, min(start + self.page_size, len(self.items)))
        done = [i for i in ids if self.verdict(i) is None]
        for i in done:
            self.decide(i, True)
        return done


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = False

    def __init__(self, address: tuple[str, int], state: ReviewState) -> None:
        self.state = state
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A browser that drops a connection (a reload cancels image loads) is not an error."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            log.debug("review: %s closed the connection early", client_address)
            return
        log.exception("review: request from %s failed", client_address)


class _BadRequest(Exception):
    pass


class _Handler(BaseHTTPRequestHandler):
    server_version = "labelsift-review"
    sys_version = ""
    protocol_version = "HTTP/1.1"

    @property
    def state(self) -> ReviewState:
        server = self.server
        assert isinstance(server, _Server)
        return server.state

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("review %s - %s", self.address_string(), format % args)

    # ---- responses ----------------------------------------------------------------------------
    def _send(self, status: HTTPStatus, body: bytes, content_type: str, *, cache: str = "no-store") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", cache)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self'; style-src 'self'; script-src 'self'; frame-ancestors 'none'",
        )
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: HTTPStatus, value: Any) -> None:
        self._send(status, json.dumps(value).encode("utf-8"), "application/json")

    def _error(self, status: HTTPStatus, message: str) -> None:
        self._json(status, {"error": message})

    def _host_ok(self) -> bool:
        """Refuse requests for another host name (DNS rebinding) or from another origin (CSRF)."""
        port = self.state.port
        allowed = {f"{LOOPBACK}:{port}", f"localhost:{port}"}
        if self.headers.get("Host", "") not in allowed:
            return False
        origin = self.headers.get("Origin")
        return origin is None or origin in {f"http://{host}" for host in allowed}

    # ---- GET ----------------------------------------------------------------------------------
    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        if not self._host_ok():
            self._error(HTTPStatus.FORBIDDEN, "this page answers only at 127.0.0.1")
            return
        parts = urlsplit(self.path)
        path = parts.path
        if path in _STATIC:
            name, content_type = _STATIC[path]
            body = resources.files("labelsift.review").joinpath("static", name).read_bytes()
            self._send(HTTPStatus.OK, body, content_type)
            return
        if path == "/favicon.ico":
            self._send(HTTPStatus.NO_CONTENT, b"", "image/x-icon")
            return
        if path == "/api/items":
            self._items(parts.query)
            return
        match = _IMG_PATH.fullmatch(path)
        if match is not None:
            self._image(int(match.group(1)))
            return
        self._error(HTTPStatus.NOT_FOUND, "not found")

    def _items(self, query: str) -> None:
        values = parse_qs(query).get("page", ["1"])
        try:
            number = int(values[-1])
        except ValueError:
            self._error(HTTPStatus.BAD_REQUEST, "page must be a whole number")
            return
        if not 1 <= number <= self.state.pages:
            self._error(HTTPStatus.NOT_FOUND, f"no page {number}; there are {self.state.pages}")
            return
        self._json(HTTPStatus.OK, self.state.page(number))

    def _image(self, item_id: int) -> None:
        state = self.state
        if not 0 <= item_id < len(state.items):
            self._error(HTTPStatus.NOT_FOUND, "not found")
            return
        source = state.items[item_id].source
        try:
            with state.storage.open_read(source, limit=MAX_OBJECT_BYTES) as handle:
                body, _, _ = thumbnail(handle, uri=source)
        except ImageLimitError as exc:
            log.warning("review: not showing %s: %s", source, exc.message)
            self._error(HTTPStatus.UNPROCESSABLE_ENTITY, exc.message)
            return
        except StorageError as exc:
            if exc.code != "TooLarge":
                log.warning("review: cannot read %s: %s", source, exc)
                self._error(HTTPStatus.BAD_GATEWAY, f"cannot read the image: {exc}")
                return
            self._error(HTTPStatus.UNPROCESSABLE_ENTITY, exc.message)
            return
        except Exception as exc:  # one unreadable image must not take the page down
            log.warning("review: cannot show %s: %s", source, exc)
            self._error(HTTPStatus.BAD_GATEWAY, f"cannot read or decode the image: {exc}")
            return
        self._send(HTTPStatus.OK, body, "image/jpeg", cache="private, max-age=3600")

    # ---- POST ---------------------------------------------------------------------------------
    def _body(self) -> dict[str, Any]:
        if self.headers.get_content_type() != "application/json":
            raise _BadRequest("send application/json")
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            raise _BadRequest("bad Content-Length") from None
        if not 0 < length <= MAX_BODY:
            raise _BadRequest("empty or too large body")
        try:
            value = json.loads(self.rfile.read(length))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise _BadRequest("body is not JSON") from None
        if not isinstance(value, dict):
            raise _BadRequest("body must be a JSON object")
        return value

    def do_POST(self) -> None:
        if not self._host_ok():
            self._error(HTTPStatus.FORBIDDEN, "this page answers only at 127.0.0.1")
            return
        path = urlsplit(self.path).path
        handlers: dict[str, Callable[[dict[str, Any]], None]] = {
            "/api/verdict": self._post_verdict,
            "/api/accept-page": self._post_accept_page,
        }
        handler = handlers.get(path)
        if handler is None:
            self._error(HTTPStatus.NOT_FOUND, "not found")
            return
        try:
            handler(self._body())
        except _BadRequest as exc:
            self.close_connection = True
            self._error(HTTPStatus.BAD_REQUEST, str(exc))

    def _post_verdict(self, body: dict[str, Any]) -> None:
        item_id = body.get("id")
        accepted = body.get("accepted", "missing")
        if not isinstance(item_id, int) or isinstance(item_id, bool):
            raise _BadRequest("id must be an item id")
        if accepted is not None and not isinstance(accepted, bool):
            raise _BadRequest("accepted must be true, false or null (skip)")
        if not 0 <= item_id < len(self.state.items):
            self._error(HTTPStatus.NOT_FOUND, "no such item")
            return
        state = self.state.decide(item_id, accepted)
        self._json(HTTPStatus.OK, {"id": item_id, "state": state, "progress": self.state.progress()})

    def _post_accept_page(self, body: dict[str, Any]) -> None:
        number = body.get("page")
        if not isinstance(number, int) or isinstance(number, bool):
            raise _BadRequest("page must be a page number")
        if not 1 <= number <= self.state.pages:
            self._error(HTTPStatus.NOT_FOUND, "no such page")
            return
        ids = self.state.accept_page(number)
        self._json(HTTPStatus.OK, {"accepted": ids, "progress": self.state.progress()})


def _bind(host: str, port: int, state: ReviewState) -> _Server:
    """The server bound to (host, port); a port that cannot be had is a CannotProceed naming it."""
    try:
        return _Server((host, port), state)
    except OSError as exc:
        why = {
            errno.EADDRINUSE: "is in use (another review page, or another program)",
            errno.EACCES: "needs privileges (ports below 1024 are reserved)",
        }.get(exc.errno or 0, f"cannot be listened on ({exc.strerror})")
        raise CannotProceed(
            f"port {port} on {host} {why}: pick another with --port N, or --port 0 for any free port."
        ) from None


class ReviewServer:
    """A bound review server. `serve_forever()` blocks; as a context manager it runs in a thread."""

    def __init__(self, state: ReviewState, host: str, port: int) -> None:
        self.state = state
        self._httpd = _bind(host, port, state)
        state.port = self.address[1]
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._httpd.socket.getsockname()[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://{host}:{port}/"

    def serve_forever(self) -> None:
        try:
            self._httpd.serve_forever(poll_interval=0.2)
        finally:
            self._httpd.server_close()

    def start(self) -> ReviewServer:
        """Serve in a background thread (for tests and embedding)."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
            )
            self._thread.start()
        return self

    def shutdown(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._httpd.server_close()
        self.state.close()

    def __enter__(self) -> ReviewServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.shutdown()


def serve_review(
    manifest_path: str | Path,
    label: str,
    band: tuple[float, float],
    *,
    storage: ImageReader,
    host: str = LOOPBACK,
    port: int = 0,
    page_size: int = 48,
    who: str = "reviewer",
) -> ReviewServer:
    """Build the band's list from the manifest and bind a review server on 127.0.0.1 (not started).

    `port=0` picks a free port; the address is `ReviewServer.url`. Any host but 127.0.0.1 (or
    `localhost`, which means it) is refused: the page writes to the manifest and has no login.
    """
    if not 0 <= port <= MAX_PORT:
        raise UsageError(f"--port {port}: give a port from 1 to {MAX_PORT}, or 0 for any free port.")
    if host not in (LOOPBACK, "localhost"):
        raise ValueError(
            f"host {host!r} refused: the review page has no login and writes to the manifest, so it "
            f"listens on {LOOPBACK} only. Reach it from elsewhere through an SSH tunnel."
        )
    local = local_manifest(manifest_path, purpose="review")
    require_existing(local)
    path = str(manifest_path)
    low, high = band
    if not 0.0 <= low <= high <= 100.0:
        raise ValueError(f"band {low}:{high}: give LOW:HIGH with 0 <= LOW <= HIGH <= 100 (percent)")
    if not label.strip():
        raise UsageError(f"--label {label!r}: a label name is empty; give the label to review.")
    if page_size < 1:
        raise ValueError("page_size must be at least 1")
    # held until the server shuts down: the lock (one writer per manifest), then the manifest read
    writer = ManifestWriter(local, fsync_every=1, purpose="review")
    try:
        state = ReviewState(
            path, label, (low, high), storage=storage, page_size=page_size, who=who, writer=writer
        )
        if not state.items and not state.outside:  # nothing matched the label at all: a typo?
            selection = Selection(labels=(label,), threshold=0.0)
            for missing in unmatched_in_manifest(path, selection):
                raise UsageError(f"{missing.message(path)} Nothing to review; check --label.")
        return ReviewServer(state, LOOPBACK, port)
    except BaseException:
        writer.close()
        raise


def run_review(
    manifest_path: str | Path,
    label: str,
    band: tuple[float, float],
    *,
    storage: ImageReader,
    port: int = 0,
    page_size: int = 48,
    who: str = "reviewer",
    echo: Callable[[str], None] | None = None,
) -> None:
    """What `labelsift review` does: bind, say where, serve until interrupted (Ctrl-C)."""
    server = serve_review(
        manifest_path, label, band, storage=storage, port=port, page_size=page_size, who=who
    )
    progress = server.state.progress()
    say = echo if echo is not None else (lambda text: print(text, flush=True))
    say(
        f"Reviewing {progress['total']} image(s) with {label!r} between {band[0]:g} and {band[1]:g} "
        f"({progress['done']} already decided). Open {server.url} - press Ctrl-C to stop."
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
