"""The Label Studio loop against a real Label Studio server on 127.0.0.1.

The server is the `label-studio` package (pinned in scripts/test.sh, in `.venv-labelstudio`),
started once for this module with a temporary data folder, SQLite, a user and an API token made
from its own start options, and local files served from a temporary document root. Everything goes
through its HTTP API: create a project with the exported labeling config, import the exported
tasks, read the predictions back, serve an image, post annotations (one moves a box and removes
another, one is cancelled, one is superseded by a newer one), export the project as JSON, import
that with `import-review --from label-studio`, and read the next YOLO export's label file.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from typer.testing import CliRunner

from labelsift.cli import app
from labelsift.manifest import ManifestWriter
from labelsift.models import DetectorInfo, ImageRecord, Instance, Label, ScanStatus
from labelsift_testing.s3_server import SeaweedS3Server

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "labelsift-test-token-0123456789"
runner = CliRunner()


@dataclass
class LabelStudio:
    url: str
    files: Path  # LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT

    def call(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode("utf-8") if body is not None else None
        request = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={"Authorization": f"Token {TOKEN}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                raw = response.read()
        except urllib.error.HTTPError as error:
            raise AssertionError(f"{method} {path}: HTTP {error.code}: {error.read()[:2000]!r}") from None
        return json.loads(raw) if raw else None

    def get_bytes(self, path: str) -> bytes:
        request = urllib.request.Request(self.url + path, headers={"Authorization": f"Token {TOKEN}"})
        with urllib.request.urlopen(request, timeout=60) as response:
            data: bytes = response.read()
        return data


def _binary() -> Path:
    given = os.environ.get("LABELSIFT_LABEL_STUDIO")
    path = Path(given) if given else ROOT / ".venv-labelstudio" / "bin" / "label-studio"
    if not path.exists():
        pytest.fail(
            f"{path} is missing: `bash scripts/test.sh` installs Label Studio there (or point "
            "LABELSIFT_LABEL_STUDIO at a label-studio executable)."
        )
    return path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _environment(data: Path, files: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LABEL_STUDIO_", "AWS_"))}
    env.update(
        LABEL_STUDIO_BASE_DATA_DIR=str(data),
        LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED="true",
        LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT=str(files),
        LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK="true",
        # nothing leaves the machine: no error reports, no usage analytics, no version check
        # (Label Studio asks PyPI for its newest version unless it believes it runs under uwsgi)
        SENTRY_DSN="",
        FRONTEND_SENTRY_DSN="",
        COLLECT_ANALYTICS="false",
        LABEL_STUDIO_APP_WEBSERVER="uwsgi",
        HTTP_PROXY="http://127.0.0.1:9",
        HTTPS_PROXY="http://127.0.0.1:9",
        NO_PROXY="127.0.0.1,localhost",
        HOME=str(data),
        # its S3 storage refuses loopback endpoints (SSRF protection); this one is SeaweedFS here
        SSRF_PROTECTION_ENABLED="false",
    )
    return env


def _wait(url: str, process: subprocess.Popen[bytes], log: Path, seconds: float = 180.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"Label Studio exited with {process.returncode}:\n{log.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    pytest.fail(f"Label Studio did not answer /health within {seconds:.0f} s:\n{log.read_text()[-4000:]}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=20)


@pytest.fixture(scope="module")
def label_studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabelStudio]:
    base = tmp_path_factory.mktemp("label-studio")
    data, files = base / "data", base / "files"
    data.mkdir()
    files.mkdir()
    port = _free_port()
    log = base / "server.log"
    command = [
        str(_binary()), "start", "--no-browser", "--internal-host", "127.0.0.1", "--port", str(port),
        "--data-dir", str(data), "--username", "reviewer@example.com", "--password", "labelsift-pw",
        "--user-token", TOKEN, "--enable-legacy-api-token",
    ]  # fmt: skip
    with open(log, "wb") as out:
        process = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=_environment(data, files),
            cwd=base,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(url, process, log)
        yield LabelStudio(url, files)
    finally:
        _stop(process)


def _photos(folder: Path) -> list[Path]:
    """Three real JPEGs (640x480) under the document root, one with a space in its name."""
    folder.mkdir(parents=True)
    paths = []
    for n, colour in enumerate(("red", "green", "blue")):
        path = folder / f"dog {n}.jpg"
        Image.new("RGB", (640, 480), colour).save(path, "JPEG")
        paths.append(path)
    return paths


def _manifest(tmp_path: Path, photos: list[Path]) -> Path:
    """The detector saw a Dog (box 0.1, 0.2, 0.3 x 0.4) and a Bird in every photo."""
    manifest = tmp_path / "photos.jsonl"
    with ManifestWriter(manifest) as writer:
        for path in photos:
            writer.append(
                ImageRecord(
                    source=str(path),
                    width=640,
                    height=480,
                    format="JPEG",
                    status=ScanStatus.LABELED,
                    detector=DetectorInfo(name="local", model_version="nanodet-m"),
                    labels=[
                        Label(
                            name="Dog",
                            confidence=91.0,
                            parents=["Animal"],
                            instances=[Instance(left=0.1, top=0.2, width=0.3, height=0.4, confidence=91.0)],
                        ),
                        Label(
                            name="Bird",
                            confidence=77.0,
                            instances=[Instance(left=0.6, top=0.1, width=0.2, height=0.2, confidence=77.0)],
                        ),
                    ],
                )
            )
    return manifest


def _box(x: float, y: float, w: float, h: float, name: str, result_id: str) -> dict[str, Any]:
    return {
        "id": result_id,
        "from_name": "label",
        "to_name": "image",
        "type": "rectanglelabels",
        "original_width": 640,
        "original_height": 480,
        "image_rotation": 0,
        "value": {"x": x, "y": y, "width": w, "height": h, "rotation": 0, "rectanglelabels": [name]},
    }


def _invoke(args: list[str]) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return result.output


def _yolo_lines(folder: Path, photo: Path) -> list[list[float]]:
    labels = [p for p in folder.glob("labels/*/*.txt") if f"photos_{photo.stem.replace(' ', '_')}-" in p.name]
    assert len(labels) == 1, sorted(folder.glob("labels/*/*"))
    return [[float(v) for v in line.split()] for line in labels[0].read_text().splitlines()]


def test_label_studio_round_trip(label_studio: LabelStudio, tmp_path: Path) -> None:
    photos = _photos(label_studio.files / "photos")
    manifest = _manifest(tmp_path, photos)
    tasks_file = tmp_path / "ls" / "tasks.json"
    _invoke([
        "export", "label-studio", str(manifest), str(tasks_file), "--label", "Dog", "--label", "Bird",
        "--local-files-root", str(label_studio.files),
    ])  # fmt: skip

    # a project with the exported labeling config, the tasks imported as they are
    config = tasks_file.with_suffix(".xml").read_text(encoding="utf-8")
    project = label_studio.call("POST", "/api/projects", {"title": "labelsift dogs", "label_config": config})
    assert project["parsed_label_config"]["label"]["labels"] == ["Dog", "Bird"]
    label_studio.call(
        "POST",
        "/api/storages/localfiles",
        {"project": project["id"], "path": str(label_studio.files / "photos"), "use_blob_urls": True},
    )
    tasks = json.loads(tasks_file.read_text(encoding="utf-8"))
    imported = label_studio.call("POST", f"/api/projects/{project['id']}/import", tasks)
    assert (imported["task_count"], imported["prediction_count"]) == (3, 3)

    # the predictions are there as written: detector, score, boxes in percent of the image
    listed = label_studio.call("GET", f"/api/tasks?project={project['id']}&page_size=100")["tasks"]
    ids = {task["data"]["labelsift_source"]: task["id"] for task in listed}
    by_source = {source: label_studio.call("GET", f"/api/tasks/{n}") for source, n in ids.items()}
    assert set(by_source) == {str(p) for p in photos}
    first = by_source[str(photos[0])]
    (prediction,) = first["predictions"]
    assert prediction["model_version"] == "local nanodet-m"
    assert prediction["score"] == pytest.approx(0.91)
    dog, bird = prediction["result"]
    assert dog["value"]["rectanglelabels"] == ["Dog"] and bird["value"]["rectanglelabels"] == ["Bird"]
    assert [dog["value"][k] for k in ("x", "y", "width", "height")] == pytest.approx([10, 20, 30, 40])
    assert (dog["original_width"], dog["original_height"]) == (640, 480)
    # the image itself is served where the task says
    assert label_studio.get_bytes(first["data"]["image"]) == photos[0].read_bytes()

    # people: photo 0's dog box moved and its bird removed; photo 1 skipped (cancelled);
    # photo 2 annotated twice, the newer one keeping both boxes as predicted
    label_studio.call(
        "POST", f"/api/tasks/{first['id']}/annotations",
        {"result": [_box(25, 30, 30, 40, "Dog", "moved")], "was_cancelled": False},
    )  # fmt: skip
    second = by_source[str(photos[1])]
    label_studio.call(
        "POST", f"/api/tasks/{second['id']}/annotations", {"result": [], "was_cancelled": True}
    )  # fmt: skip
    third = by_source[str(photos[2])]
    label_studio.call(
        "POST", f"/api/tasks/{third['id']}/annotations",
        {"result": [_box(0, 0, 5, 5, "Bird", "old")], "was_cancelled": False},
    )  # fmt: skip
    time.sleep(0.01)
    kept = [{k: v for k, v in r.items() if k != "score"} for r in third["predictions"][0]["result"]]
    label_studio.call(
        "POST", f"/api/tasks/{third['id']}/annotations", {"result": kept, "was_cancelled": False}
    )  # fmt: skip

    exported = label_studio.call("GET", f"/api/projects/{project['id']}/export?exportType=JSON")
    export_file = tmp_path / "ls-export.json"
    export_file.write_text(json.dumps(exported), encoding="utf-8")

    report = " ".join(
        _invoke(["import-review", str(manifest), str(export_file), "--from", "label-studio"]).split()
    )
    assert "3 task(s) read; 4 verdict(s)" in report, report
    assert "1 task(s) were only skipped" in report, report

    yolo = tmp_path / "yolo"
    _invoke([
        "export", "yolo", str(manifest), str(yolo), "--label", "Dog", "--label", "Bird", "--no-copy-images",
    ])  # fmt: skip
    # photo 0: the moved dog box (x 25-55 %, y 30-70 % -> centre 0.40, 0.50), and no bird
    assert _yolo_lines(yolo, photos[0]) == [pytest.approx([0, 0.40, 0.50, 0.30, 0.40], abs=1e-6)]
    # photo 1: skipped by people, so the detector's boxes stand
    assert _yolo_lines(yolo, photos[1]) == [
        pytest.approx([0, 0.25, 0.40, 0.30, 0.40], abs=1e-6),
        pytest.approx([1, 0.70, 0.20, 0.20, 0.20], abs=1e-6),
    ]
    # photo 2: the newer annotation kept the predicted boxes (the older one's tiny bird is gone)
    assert _yolo_lines(yolo, photos[2]) == [
        pytest.approx([0, 0.25, 0.40, 0.30, 0.40], abs=1e-6),
        pytest.approx([1, 0.70, 0.20, 0.20, 0.20], abs=1e-6),
    ]


def test_s3_sources_through_label_studio_s3_storage(
    label_studio: LabelStudio, s3_server: SeaweedS3Server, bucket: str, s3_client: Any, tmp_path: Path
) -> None:
    """`s3://` sources stay as they are; Label Studio's S3 storage (here pointed at SeaweedFS)
    resolves them to the image."""
    photo = tmp_path / "dog.jpg"
    Image.new("RGB", (640, 480), "orange").save(photo, "JPEG")
    s3_client.put_object(Bucket=bucket, Key="pets/dog.jpg", Body=photo.read_bytes())
    source = f"s3://{bucket}/pets/dog.jpg"
    manifest = tmp_path / "s3.jsonl"
    with ManifestWriter(manifest) as writer:
        writer.append(
            ImageRecord(
                source=source,
                width=640,
                height=480,
                status=ScanStatus.LABELED,
                detector=DetectorInfo(name="rekognition", model_version="3.0"),
                labels=[Label(name="Dog", confidence=88.0, instances=[
                    Instance(left=0.1, top=0.2, width=0.3, height=0.4, confidence=88.0)
                ])],
            )
        )  # fmt: skip
    tasks_file = tmp_path / "tasks.json"
    _invoke(["export", "label-studio", str(manifest), str(tasks_file), "--label", "Dog"])
    config = tasks_file.with_suffix(".xml").read_text(encoding="utf-8")
    project = label_studio.call("POST", "/api/projects", {"title": "labelsift s3", "label_config": config})
    label_studio.call(
        "POST", "/api/storages/s3",
        {
            "project": project["id"], "bucket": bucket, "prefix": "pets", "presign": True,
            "aws_access_key_id": s3_server.access_key, "aws_secret_access_key": s3_server.secret_key,
            "s3_endpoint": s3_server.endpoint_url, "region_name": "us-east-1",
        },
    )  # fmt: skip
    tasks = json.loads(tasks_file.read_text(encoding="utf-8"))
    assert tasks[0]["data"]["image"] == source
    label_studio.call("POST", f"/api/projects/{project['id']}/import", tasks)
    (listed,) = label_studio.call("GET", f"/api/tasks?project={project['id']}")["tasks"]
    shown = label_studio.call("GET", f"/api/tasks/{listed['id']}")["data"]["image"]
    assert shown.startswith(f"/tasks/{listed['id']}/resolve/"), shown  # through the storage
    assert label_studio.get_bytes(shown) == photo.read_bytes()
