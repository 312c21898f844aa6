"""The review server over real HTTP: what it serves, what it refuses, and verdicts written as made."""

from __future__ import annotations

import http.client
import io
import json
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from labelsift.errors import CannotProceed
from labelsift.manifest import ManifestWriter, iter_raw, iter_records
from labelsift.models import DetectorInfo, ImageRecord, Instance, Label, ScanStatus, VerdictEntry
from labelsift.review import ReviewServer, serve_review
from labelsift.storage import Storage

BAND = (30.0, 80.0)


def make_manifest(tmp_path: Path, confidences: list[float], *, orientation_first: bool = False) -> Path:
    """One generated PNG per confidence, labeled Bird (parent Animal) with one box; one error record."""
    images = tmp_path / "images"
    images.mkdir()
    manifest = tmp_path / "manifest.jsonl"
    with ManifestWriter(manifest) as writer:
        for i, confidence in enumerate(confidences):
            path = images / f"img{i:03d}.png"
            Image.new("RGB", (320, 240), (40 + i * 3 % 200, 90, 160)).save(path)
            writer.append(
                ImageRecord(
                    source=str(path),
                    width=320,
                    height=240,
                    format="PNG",
                    status=ScanStatus.LABELED,
                    detector=DetectorInfo(name="test"),
                    labels=[
                        Label(
                            name="Bird",
                            confidence=confidence,
                            parents=["Animal"],
                            instances=[
                                Instance(left=0.1, top=0.2, width=0.5, height=0.4, confidence=confidence)
                            ],
                        ),
                        Label(name="Sky", confidence=99.0),
                    ],
                )
            )
        writer.append(
            ImageRecord.model_validate(
                {
                    "source": str(images / "broken.png"),
                    "status": "error",
                    "error": {"code": "X", "message": "x"},
                }
            )
        )
    return manifest


class Client:
    def __init__(self, server: ReviewServer) -> None:
        self.host, self.port = server.address

    def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, bytes, str]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
        try:
            data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
            all_headers = {"Content-Type": "application/json"} if body is not None else {}
            all_headers.update(headers or {})
            conn.request(method, path, body=data, headers=all_headers)
            response = conn.getresponse()
            return response.status, response.read(), response.getheader("Content-Type", "")
        finally:
            conn.close()

    def get_json(self, path: str) -> Any:
        status, body, _ = self.request("GET", path)
        assert status == 200, body
        return json.loads(body)

    def post_json(self, path: str, value: Any) -> tuple[int, Any]:
        status, body, _ = self.request("POST", path, value)
        return status, json.loads(body)


@pytest.fixture
def confidences() -> list[float]:
    return [float(c) for c in range(2, 100, 3)]  # 33 images, 2..98


@pytest.fixture
def server(tmp_path: Path, confidences: list[float]) -> Iterator[ReviewServer]:
    manifest = make_manifest(tmp_path, confidences)
    with serve_review(manifest, "animal", BAND, storage=Storage(), page_size=5) as running:
        yield running


def test_band_items_sorted_and_paged(server: ReviewServer, confidences: list[float]) -> None:
    client = Client(server)
    expected = sorted((c for c in confidences if BAND[0] <= c <= BAND[1]), reverse=True)
    first = client.get_json("/api/items?page=1")
    assert first["progress"] == {
        "total": len(expected),
        "done": 0,
        "left": len(expected),
        "accepted": 0,
        "rejected": 0,
        "skipped": 0,
    }
    assert first["pages"] == -(-len(expected) // 5)
    assert first["outside_band"] == len(confidences) - len(expected)
    seen: list[float] = []
    ids: list[int] = []
    for page in range(1, first["pages"] + 1):
        data = client.get_json(f"/api/items?page={page}")
        assert data["page"] == page
        assert len(data["items"]) == min(5, len(expected) - 5 * (page - 1))
        for item in data["items"]:
            assert item["boxes"] == [
                {"left": 0.1, "top": 0.2, "width": 0.5, "height": 0.4, "confidence": item["confidence"]}
            ]
            assert item["state"] == "open"
            assert (item["width"], item["height"]) == (320, 240)
        seen += [item["confidence"] for item in data["items"]]
        ids += [item["id"] for item in data["items"]]
    assert seen == expected
    assert len(set(ids)) == len(ids)
    for bad in ("/api/items?page=0", f"/api/items?page={first['pages'] + 1}"):
        assert client.request("GET", bad)[0] == 404
    assert client.request("GET", "/api/items?page=x")[0] == 400


def test_serves_page_and_static_files(server: ReviewServer) -> None:
    client = Client(server)
    status, body, content_type = client.request("GET", "/")
    assert status == 200 and content_type.startswith("text/html")
    assert b"/static/app.js" in body and b"/static/style.css" in body
    for path, kind in (("/static/app.js", "text/javascript"), ("/static/style.css", "text/css")):
        status, body, content_type = client.request("GET", path)
        assert status == 200 and content_type.startswith(kind) and len(body) > 500


def test_image_is_a_scaled_jpeg_of_a_band_item(server: ReviewServer) -> None:
    status, body, content_type = Client(server).request("GET", "/img/0")
    assert status == 200 and content_type == "image/jpeg"
    with Image.open(io.BytesIO(body)) as image:
        assert image.format == "JPEG" and image.size == (320, 240)


@pytest.mark.parametrize(
    "path",
    [
        "/img/../../etc/passwd",
        "/img/%2e%2e/%2e%2e/etc/passwd",
        "/img/..%2f..%2fetc%2fpasswd",
        "/etc/passwd",
        "/img/999",
        "/img/-1",
        "/img/1.0",
        "/img/0/",
        "/img/0%00",
        "/img/",
        "/static/../server.py",
        "/static/app.js/../../server.py",
        "/static/index.html.bak",
        "/review/server.py",
    ],
)
def test_refuses_anything_not_in_the_band_list(server: ReviewServer, path: str) -> None:
    status, body, _ = Client(server).request("GET", path)
    assert status == 404
    assert b"root:" not in body


def test_refuses_source_paths_and_out_of_band_images(server: ReviewServer, tmp_path: Path) -> None:
    client = Client(server)
    band_sources = {item.source for item in server.state.items}
    outside = next(
        r.source for r in iter_records(str(tmp_path / "manifest.jsonl")) if r.source not in band_sources
    )
    for source in (outside, next(iter(band_sources))):
        assert client.request("GET", "/img/" + source)[0] == 404
        assert client.request("GET", "/img" + source)[0] == 404
        assert client.request("GET", source)[0] == 404
    # every id the server hands out maps to a band item, and the next one does not exist
    total = server.state.progress()["total"]
    assert client.request("GET", f"/img/{total - 1}")[0] == 200
    assert client.request("GET", f"/img/{total}")[0] == 404


def test_refuses_other_host_names_and_origins(server: ReviewServer) -> None:
    client = Client(server)
    assert client.request("GET", "/api/items", headers={"Host": "evil.example"})[0] == 403
    status, _, _ = client.request(
        "POST", "/api/verdict", {"id": 0, "accepted": True}, headers={"Origin": "http://evil.example"}
    )
    assert status == 403
    assert server.state.progress()["done"] == 0


def test_binds_only_to_loopback(tmp_path: Path) -> None:
    manifest = make_manifest(tmp_path, [50.0])
    for host in ("0.0.0.0", "::", "", "192.168.1.10", "example.com"):
        with pytest.raises(ValueError, match=r"127\.0\.0\.1"):
            serve_review(manifest, "Bird", BAND, storage=Storage(), host=host)
    with serve_review(manifest, "Bird", BAND, storage=Storage(), host="localhost") as running:
        sock = running._httpd.socket
        assert sock.family == socket.AF_INET
        assert sock.getsockname()[0] == "127.0.0.1"
        assert running.url == f"http://127.0.0.1:{sock.getsockname()[1]}/"


def test_empty_band_says_so(tmp_path: Path) -> None:
    manifest = make_manifest(tmp_path, [10.0, 95.0])
    with serve_review(manifest, "bird", BAND, storage=Storage()) as running:
        data = Client(running).get_json("/api/items?page=1")
        assert data["items"] == [] and data["pages"] == 1 and data["outside_band"] == 2
        assert data["progress"]["total"] == 0
        assert Client(running).request("GET", "/img/0")[0] == 404


def test_verdicts_are_written_as_made_and_read_back(tmp_path: Path, confidences: list[float]) -> None:
    manifest = make_manifest(tmp_path, confidences)
    with serve_review(manifest, "Animal", BAND, storage=Storage(), page_size=5, who="ana") as running:
        client = Client(running)
        sources = [item.source for item in running.state.items]
        assert client.post_json("/api/verdict", {"id": 0, "accepted": True})[1]["state"] == "accepted"
        # durable before the answer: the line is on disk while the server still runs
        written = [e for e in iter_raw(str(manifest)) if isinstance(e, VerdictEntry)]
        assert [(e.source, e.verdict.label, e.verdict.accepted, e.verdict.who) for e in written] == [
            (sources[0], "Animal", True, "ana")
        ]
        assert client.post_json("/api/verdict", {"id": 1, "accepted": True})[1]["state"] == "accepted"
        assert client.post_json("/api/verdict", {"id": 1, "accepted": False})[1]["state"] == "rejected"
        status, skipped = client.post_json("/api/verdict", {"id": 2, "accepted": None})
        assert status == 200 and skipped["state"] == "skipped"
        assert skipped["progress"]["done"] == 2 and skipped["progress"]["skipped"] == 1
        status, result = client.post_json("/api/accept-page", {"page": 1})
        assert status == 200 and result["accepted"] == [2, 3, 4]  # undecided only; the reject stays
        # bad requests are refused and write nothing
        assert client.post_json("/api/verdict", {"id": 999, "accepted": True})[0] == 404
        assert client.post_json("/api/verdict", {"id": "0", "accepted": True})[0] == 400
        assert client.post_json("/api/verdict", {"id": 0, "accepted": "yes"})[0] == 400
        assert client.post_json("/api/verdict", {"id": 0})[0] == 400
        assert (
            client.request(
                "POST", "/api/verdict", b'{"id":0,"accepted":true}', {"Content-Type": "text/plain"}
            )[0]
            == 400
        )
        assert client.request("GET", "/api/verdict")[0] == 404

    verdicts = [e for e in iter_raw(str(manifest)) if isinstance(e, VerdictEntry)]
    assert len(verdicts) == 6  # accept, accept, reject, and three from accept-page; the skip is not a verdict
    by_source = {r.source: r for r in iter_records(str(manifest))}
    assert [v.accepted for v in by_source[sources[1]].review] == [True, False]

    # a new server (the page reloaded after a restart) shows the state read back from the manifest
    with serve_review(manifest, "animal", BAND, storage=Storage(), page_size=5) as again:
        states = [item["state"] for item in Client(again).get_json("/api/items?page=1")["items"]]
        assert states == ["accepted", "rejected", "accepted", "accepted", "accepted"]
        assert Client(again).get_json("/api/items?page=2")["progress"]["done"] == 5
    # a verdict for another label does not count for this one
    with serve_review(manifest, "Sky", (0.0, 100.0), storage=Storage()) as other:
        assert Client(other).get_json("/api/items?page=1")["progress"]["done"] == 0


def test_images_come_exif_transposed_and_scaled(tmp_path: Path) -> None:
    path = tmp_path / "phone.jpg"
    stored = Image.new("RGB", (1200, 600), (200, 30, 30))
    stored.paste((30, 30, 200), (0, 0, 600, 600))  # left half blue as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    stored.save(path, "JPEG", exif=exif.tobytes())
    manifest = tmp_path / "m.jsonl"
    with ManifestWriter(manifest) as writer:
        writer.append(
            ImageRecord(
                source=str(path),
                width=600,
                height=1200,
                orientation=6,
                status=ScanStatus.LABELED,
                detector=DetectorInfo(name="test"),
                labels=[Label(name="Bird", confidence=50.0)],
            )
        )
    with serve_review(manifest, "Bird", BAND, storage=Storage()) as running:
        status, body, _ = Client(running).request("GET", "/img/0")
    assert status == 200
    with Image.open(io.BytesIO(body)) as image:
        assert image.size == (256, 512)
        top = image.convert("RGB").getpixel((128, 64))
        assert isinstance(top, tuple) and top[2] > 150 and top[0] < 100  # stored left is displayed top


def test_unreadable_image_is_an_error_not_a_crash(tmp_path: Path) -> None:
    manifest = make_manifest(tmp_path, [50.0, 60.0])
    (tmp_path / "images" / "img000.png").write_bytes(b"not an image")
    with serve_review(manifest, "Bird", BAND, storage=Storage()) as running:
        client = Client(running)
        ids = {item.source.rsplit("/", 1)[-1]: i for i, item in enumerate(running.state.items)}
        assert client.request("GET", f"/img/{ids['img000.png']}")[0] == 502
        assert client.request("GET", f"/img/{ids['img001.png']}")[0] == 200


def test_images_from_s3(tmp_path: Path, storage: Storage, bucket: str, s3_client: Any) -> None:
    data = io.BytesIO()
    Image.new("RGB", (800, 400), (10, 200, 10)).save(data, "PNG")
    s3_client.put_object(Bucket=bucket, Key="birds/one.png", Body=data.getvalue())
    manifest = tmp_path / "m.jsonl"
    with ManifestWriter(manifest) as writer:
        writer.append(
            ImageRecord(
                source=f"s3://{bucket}/birds/one.png",
                width=800,
                height=400,
                status=ScanStatus.LABELED,
                detector=DetectorInfo(name="test"),
                labels=[Label(name="Bird", confidence=55.0)],
            )
        )
    with serve_review(manifest, "Bird", BAND, storage=storage) as running:
        status, body, _ = Client(running).request("GET", "/img/0")
    assert status == 200
    with Image.open(io.BytesIO(body)) as image:
        assert image.size == (512, 256)


def test_refuses_bad_arguments(tmp_path: Path) -> None:
    manifest = make_manifest(tmp_path, [50.0])
    with pytest.raises(ValueError, match="band"):
        serve_review(manifest, "Bird", (80.0, 30.0), storage=Storage())
    with pytest.raises(ValueError, match="local manifest"):
        serve_review("s3://bucket/m.jsonl", "Bird", BAND, storage=Storage())
    with pytest.raises(CannotProceed, match="no such manifest"):
        serve_review(tmp_path / "missing.jsonl", "Bird", BAND, storage=Storage())


def test_killed_server_loses_no_verdict(tmp_path: Path) -> None:
    manifest = make_manifest(tmp_path, [40.0, 50.0, 60.0])
    script = (
        "import sys\n"
        "from labelsift.review import run_review\n"
        "from labelsift.storage import Storage\n"
        "run_review(sys.argv[1], 'Bird', (30.0, 80.0), storage=Storage())\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script, str(manifest)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert "Reviewing 3 image(s)" in line, line
        url = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        assert url is not None
        conn = http.client.HTTPConnection("127.0.0.1", int(url.group(1)), timeout=10)
        conn.request(
            "POST",
            "/api/verdict",
            json.dumps({"id": 1, "accepted": False}),
            {"Content-Type": "application/json"},
        )
        assert conn.getresponse().status == 200
        conn.close()
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    records = {r.source: r for r in iter_records(str(manifest))}
    rejected = [s for s, r in records.items() if [v.accepted for v in r.review] == [False]]
    assert rejected == [str(tmp_path / "images" / "img001.png")]
