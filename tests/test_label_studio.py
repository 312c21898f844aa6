"""`export label-studio` and `import-review --from label-studio` against Label Studio's documented
formats (the real server is in test_label_studio_server.py)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest
from typer.testing import CliRunner

from labelsift.cli import app
from labelsift.errors import BadManifest, CannotProceed, UsageError
from labelsift.exporters.label_studio import export_label_studio, label_config, model_version
from labelsift.exporters.owned import NameClash
from labelsift.exporters.pipeline import Parallel
from labelsift.ls_import import (
    LabelStudioExportError,
    import_label_studio,
    iter_json_list,
)
from labelsift.manifest import ManifestWriter, iter_raw, iter_records
from labelsift.models import DetectorInfo, ImageRecord, Instance, Label, ScanStatus, Verdict, VerdictEntry
from labelsift.select import Selection
from labelsift.storage import Storage
from labelsift.views import RecordView, view_of

runner = CliRunner()
WHEN = "2026-12-01T10:00:00Z"


def record(source: str, dog: float = 91.0, bird: float | None = 77.0, **extra: Any) -> ImageRecord:
    labels = [
        Label(
            name="Dog",
            confidence=dog,
            parents=["Animal"],
            instances=[Instance(left=0.1, top=0.2, width=0.3, height=0.4, confidence=dog)],
        )
    ]
    if bird is not None:
        labels.append(
            Label(
                name="Bird",
                confidence=bird,
                instances=[Instance(left=0.6, top=0.1, width=0.2, height=0.2, confidence=bird)],
            )
        )
    fields: dict[str, Any] = {
        "width": 640,
        "height": 480,
        "status": ScanStatus.LABELED,
        "detector": DetectorInfo(name="rekognition", model_version="3.0"),
        "labels": labels,
    }
    fields.update(extra)
    return ImageRecord(source=source, **fields)


def write_manifest(path: Path, records: list[ImageRecord]) -> Path:
    with ManifestWriter(path) as writer:
        for item in records:
            writer.append(item)
    return path


def selection(*labels: str, threshold: float = 50.0, band: tuple[float, float] | None = None) -> Selection:
    return Selection(labels=labels or ("Dog", "Bird"), threshold=threshold, band=band)


# -- export ------------------------------------------------------------------------------------------


def test_tasks_and_config_as_label_studio_documents_them(tmp_path: Path) -> None:
    manifest = write_manifest(
        tmp_path / "m.jsonl",
        [
            record("s3://raw/pets/a.jpg"),
            record("s3://raw/pets/b.jpg", bird=None),
            record("s3://raw/pets/none.jpg", dog=20.0, bird=None),  # selects nothing
        ],
    )
    out = tmp_path / "ls" / "tasks.json"
    summary = export_label_studio(str(manifest), str(out), selection())
    tasks = json.loads(out.read_text(encoding="utf-8"))
    assert [t["data"]["labelsift_source"] for t in tasks] == ["s3://raw/pets/a.jpg", "s3://raw/pets/b.jpg"]
    first = tasks[0]
    assert first["data"]["image"] == "s3://raw/pets/a.jpg"  # for Label Studio's S3 storage
    assert first["data"]["labelsift_predicted"] == ["Dog", "Bird"]
    (prediction,) = first["predictions"]
    assert prediction["model_version"] == "rekognition 3.0"
    assert prediction["score"] == pytest.approx(0.91)
    dog, bird = prediction["result"]
    assert dog["id"] != bird["id"]
    for result in (dog, bird):
        assert result["from_name"] == "label" and result["to_name"] == "image"
        assert result["type"] == "rectanglelabels"
        assert (result["original_width"], result["original_height"], result["image_rotation"]) == (
            640,
            480,
            0,
        )
        assert result["value"]["rotation"] == 0
    assert [dog["value"][k] for k in ("x", "y", "width", "height")] == pytest.approx([10, 20, 30, 40])
    assert dog["value"]["rectanglelabels"] == ["Dog"] and dog["score"] == pytest.approx(0.91)
    assert [bird["value"][k] for k in ("x", "y", "width", "height")] == pytest.approx([60, 10, 20, 20])
    assert tasks[1]["data"]["labelsift_predicted"] == ["Dog"]
    assert summary.lines_written == 2 and summary.files_written == 2
    assert summary.per_label["Dog"].images == {"all": 2} and summary.per_label["Bird"].boxes == {"all": 1}

    config = ElementTree.fromstring((tmp_path / "ls" / "tasks.xml").read_text(encoding="utf-8"))
    image = config.find("Image")
    labels = config.find("RectangleLabels")
    assert image is not None and labels is not None
    assert (image.get("name"), image.get("value")) == ("image", "$image")
    assert (labels.get("name"), labels.get("toName"), labels.get("canRotate")) == ("label", "image", "false")
    assert [label.get("value") for label in labels.findall("Label")] == ["Dog", "Bird"]  # --label order


def test_config_escapes_class_names() -> None:
    config = ElementTree.fromstring(label_config(['Cat & "Dog"', "<Bird>"]))
    assert [label.get("value") for label in config.iter("Label")] == ['Cat & "Dog"', "<Bird>"]


def test_local_files_become_local_files_urls(tmp_path: Path) -> None:
    root = tmp_path / "served"
    inside = root / "photos" / "a dog #1.jpg"
    outside = tmp_path / "elsewhere" / "b.jpg"
    manifest = write_manifest(tmp_path / "m.jsonl", [record(str(inside)), record(str(outside))])
    out = tmp_path / "tasks.json"
    summary = export_label_studio(str(manifest), str(out), selection("Dog"), local_files_root=str(root))
    (task,) = json.loads(out.read_text(encoding="utf-8"))
    assert task["data"]["image"] == "/data/local-files/?d=photos/a%20dog%20%231.jpg"
    assert task["data"]["labelsift_source"] == str(inside)
    assert summary.skipped == {"not_served": 1}
    assert "not under --local-files-root" in summary.skipped_images[0].message

    with pytest.raises(CannotProceed, match="local-files-root"):  # no root: nothing can be served
        export_label_studio(str(manifest), str(tmp_path / "other.json"), selection("Dog"))
    assert not (tmp_path / "other.json").exists() and not (tmp_path / "other.xml").exists()


def test_band_images_go_to_people_with_their_boxes(tmp_path: Path) -> None:
    manifest = write_manifest(
        tmp_path / "m.jsonl",
        [record("s3://raw/a.jpg", dog=95.0, bird=None), record("s3://raw/b.jpg", dog=65.0, bird=None)],
    )
    out = tmp_path / "tasks.json"
    summary = export_label_studio(str(manifest), str(out), selection("Dog", threshold=90, band=(60, 80)))
    tasks = json.loads(out.read_text(encoding="utf-8"))
    assert [t["predictions"][0]["score"] for t in tasks] == [0.95, 0.65]
    assert all(len(t["predictions"][0]["result"]) == 1 for t in tasks)
    assert summary.per_label["Dog"].held_out == 0


def test_people_accepts_are_certain_and_size_less_records_keep_no_box(tmp_path: Path) -> None:
    manifest = tmp_path / "m.jsonl"
    write_manifest(
        manifest, [record("s3://raw/a.jpg", dog=30.0, bird=None), record("s3://raw/s.jpg", width=None)]
    )
    with ManifestWriter(manifest) as writer:
        box = Instance(left=0.0, top=0.0, width=0.5, height=0.5, confidence=100.0)
        writer.append(
            VerdictEntry(
                source="s3://raw/a.jpg", verdict=Verdict(label="Dog", accepted=True, instances=[box])
            )
        )
    out = tmp_path / "tasks.json"
    summary = export_label_studio(str(manifest), str(out), selection("Dog"))
    first, no_size = json.loads(out.read_text(encoding="utf-8"))
    assert first["predictions"][0]["score"] == 1.0
    (result,) = first["predictions"][0]["result"]
    assert result["score"] == 1.0 and result["value"]["width"] == pytest.approx(50)
    assert no_size["predictions"][0]["result"] == []  # a person draws the boxes
    assert summary.dropped_boxes == {"no_image_size": 1}


def test_rerun_needs_overwrite_and_leaves_strangers_alone(tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "m.jsonl", [record("s3://raw/a.jpg")])
    out = tmp_path / "tasks.json"
    export_label_studio(str(manifest), str(out), selection())
    with pytest.raises(CannotProceed):
        export_label_studio(str(manifest), str(out), selection("Dog"))
    export_label_studio(str(manifest), str(out), selection("Dog"), overwrite=True)
    assert "Bird" not in (tmp_path / "tasks.xml").read_text(encoding="utf-8")

    mine = tmp_path / "mine.xml"
    mine.write_text("<View/>", encoding="utf-8")
    with pytest.raises(NameClash):
        export_label_studio(str(manifest), str(tmp_path / "mine.json"), selection(), overwrite=True)
    assert mine.read_text(encoding="utf-8") == "<View/>" and not (tmp_path / "mine.json").exists()
    with pytest.raises(UsageError):
        export_label_studio(str(manifest), str(tmp_path / "tasks.xml"), selection())


# -- import ------------------------------------------------------------------------------------------


def box(x: float, y: float, w: float, h: float, name: str, **extra: Any) -> dict[str, Any]:
    value = {"x": x, "y": y, "width": w, "height": h, "rotation": 0, "rectanglelabels": [name]}
    value.update(extra.pop("value", {}))
    return {
        "id": f"{name}{x}",
        "from_name": "label",
        "to_name": "image",
        "type": "rectanglelabels",
        "original_width": 640,
        "original_height": 480,
        "image_rotation": 0,
        "value": value,
        **extra,
    }


def annotation(
    ident: int, results: list[dict[str, Any]], when: str, cancelled: bool = False
) -> dict[str, Any]:
    return {
        "id": ident,
        "completed_by": 1,
        "result": results,
        "was_cancelled": cancelled,
        "created_at": when,
        "updated_at": when,
    }


def task(ident: int, source: str | None, annotations: list[dict[str, Any]], **data: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {"image": "/data/local-files/?d=x.jpg", **data}
    if source is not None:
        fields["labelsift_source"] = source
        fields.setdefault("labelsift_predicted", ["Dog", "Bird"])
    return {"id": ident, "data": fields, "annotations": annotations, "predictions": [ident]}


def verdicts(manifest: Path) -> list[VerdictEntry]:
    return [line for line in iter_raw(str(manifest)) if isinstance(line, VerdictEntry)]


def sources(n: int) -> list[str]:
    return [f"s3://raw/pets/{i}.jpg" for i in range(n)]


def test_newest_annotation_decides_each_class(tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "m.jsonl", [record(s) for s in sources(6)])
    s = sources(6)
    export = [
        # moved dog, bird removed -> Dog accepted with the moved box, Bird rejected
        task(1, s[0], [annotation(1, [box(25, 30, 30, 40, "Dog")], "2026-12-01T10:00:00Z")]),
        # the older annotation drew a bird; the newer one (by updated_at, listed first) drew nothing
        task(
            2,
            s[1],
            [
                annotation(3, [], "2026-12-02T10:00:00.5Z"),
                annotation(2, [box(1, 1, 5, 5, "Bird")], "2026-12-02T10:00:00Z"),
            ],
        ),
        # cancelled only: nothing
        task(3, s[2], [annotation(4, [], "2026-12-01T10:00:00Z", cancelled=True)]),
        # a newer cancelled one does not hide the older real annotation
        task(
            4,
            s[3],
            [
                annotation(5, [box(60, 10, 20, 20, "Bird")], "2026-12-01T10:00:00Z"),
                annotation(6, [], "2026-12-03T10:00:00Z", cancelled=True),
            ],
        ),
        task(5, s[4], []),  # not annotated yet
        task(6, "s3://raw/pets/not-in-manifest.jpg", [annotation(7, [], "2026-12-01T10:00:00Z")]),
    ]
    path = tmp_path / "export.json"
    path.write_text(json.dumps(export, indent=2), encoding="utf-8")
    summary = import_label_studio(manifest, str(path))
    assert (summary.tasks, summary.imported_tasks, summary.verdicts) == (6, 3, 6)
    assert (summary.accepted, summary.rejected, summary.corrected_boxes) == (2, 4, 2)
    assert (summary.cancelled, summary.unannotated, summary.unknown_sources) == (1, 1, 1)
    assert summary.unknown == [("task 6 (id 6)", "s3://raw/pets/not-in-manifest.jpg")]

    found = {(v.source, v.verdict.label): v.verdict for v in verdicts(manifest)}
    dog = found[(s[0], "Dog")]
    assert dog.accepted and dog.who == "label-studio"
    assert dog.at.isoformat() == "2026-12-01T10:00:00+00:00"
    (moved,) = dog.instances or []
    assert (moved.left, moved.top, moved.width, moved.height) == pytest.approx((0.25, 0.30, 0.30, 0.40))
    assert moved.confidence == 100.0
    assert not found[(s[0], "Bird")].accepted
    assert not found[(s[1], "Dog")].accepted and not found[(s[1], "Bird")].accepted
    assert not found[(s[3], "Dog")].accepted and found[(s[3], "Bird")].accepted

    # every later export uses people's decisions and boxes
    chosen = {r.source: Selection(("Dog", "Bird")).decide(_view(r)) for r in iter_records(str(manifest))}
    assert [d.outcome.value for d in chosen[s[0]].labels] == ["selected", "not_selected"]
    assert chosen[s[0]].labels[0].instances[0]["left"] == pytest.approx(0.25)
    assert [d.outcome.value for d in chosen[s[2]].labels] == ["selected", "selected"]  # untouched


def _view(item: ImageRecord) -> RecordView:
    return view_of(item)


def test_only_the_labels_asked_and_a_person_s_new_class(tmp_path: Path) -> None:
    s = sources(2)
    manifest = write_manifest(tmp_path / "m.jsonl", [record(x) for x in s])
    export = [
        task(
            1,
            s[0],
            [annotation(1, [box(1, 2, 3, 4, "Cat"), box(10, 20, 30, 40, "Dog")], "2026-12-01T10:00:00Z")],
        ),
        task(2, s[1], [annotation(2, [box(1, 2, 3, 4, "Cat")], "2026-12-01T10:00:00Z")]),
    ]
    path = tmp_path / "export.json"
    path.write_text(json.dumps(export), encoding="utf-8")
    import_label_studio(manifest, str(path), labels=["dog"])
    assert {(v.source, v.verdict.label, v.verdict.accepted) for v in verdicts(manifest)} == {
        (s[0], "dog", True),
        (s[1], "dog", False),
    }

    again = write_manifest(tmp_path / "n.jsonl", [record(x) for x in s])
    import_label_studio(again, str(path))  # without labels: predicted classes and people's new ones
    assert {(v.source, v.verdict.label, v.verdict.accepted) for v in verdicts(again)} == {
        (s[0], "Dog", True),
        (s[0], "Bird", False),
        (s[0], "Cat", True),
        (s[1], "Dog", False),
        (s[1], "Bird", False),
        (s[1], "Cat", True),
    }


def test_rotated_boxes_become_upright_and_bad_tasks_write_nothing(tmp_path: Path) -> None:
    s = sources(5)
    manifest = write_manifest(tmp_path / "m.jsonl", [record(x) for x in s])
    when = "2026-12-01T10:00:00Z"
    export = [
        task(1, s[0], [annotation(1, [box(50, 10, 20, 10, "Dog", value={"rotation": 90})], when)]),
        task(2, s[1], [annotation(2, [box(10, 10, 20, 20, "Dog", image_rotation=90)], when)]),
        task(3, None, [annotation(3, [box(10, 10, 20, 20, "Dog")], when)]),
        task(4, s[3], [annotation(4, [box(10, 10, 20, 20, "Dog"), box(10, "a", 20, 20, "Bird")], when)]),
        task(5, s[4], [annotation(5, [box(120, 10, 20, 20, "Dog")], when)]),
    ]
    path = tmp_path / "export.json"
    path.write_text(json.dumps(export), encoding="utf-8")
    summary = import_label_studio(manifest, str(path))
    assert summary.imported_tasks == 1 and summary.rotated_boxes == 1
    assert summary.problem_count == 4
    problems = dict(summary.problems)
    assert "turned by 90 degrees" in problems["task 2 (id 2)"]
    assert "labelsift_source" in problems["task 3 (id 3)"]
    assert "value.y must be a number" in problems["task 4 (id 4)"]
    assert "no area inside the image" in problems["task 5 (id 5)"]
    assert {v.source for v in verdicts(manifest)} == {s[0]}  # nothing of a bad task
    (dog,) = [v.verdict for v in verdicts(manifest) if v.verdict.label == "Dog"]
    (upright,) = dog.instances or []
    # 128 x 48 px at (320, 48) turned 90 degrees clockwise about its corner: x 272-320, y 48-176 px
    expected = (272 / 640, 48 / 480, 48 / 640, 128 / 480)
    assert (upright.left, upright.top, upright.width, upright.height) == pytest.approx(expected)


def test_a_broken_export_stops_before_any_verdict(tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "m.jsonl", [record(x) for x in sources(2)])
    good = json.dumps(task(1, sources(1)[0], [annotation(1, [], "2026-12-01T10:00:00Z")]))
    cases = {
        "cut.json": f"[{good}, {good[:40]}",
        "min.json": json.dumps({"image": "x.jpg", "label": []}),
        "tail.json": f"[{good}] garbage",
        "comma.json": f"[{good} {good}]",
    }
    for name, text in cases.items():
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        with pytest.raises(LabelStudioExportError) as caught:
            import_label_studio(manifest, str(path))
        assert isinstance(caught.value, BadManifest), name
        assert name in str(caught.value)
    assert verdicts(manifest) == []
    minimal = tmp_path / "json-min.json"
    minimal.write_text(json.dumps([{"image": "x.jpg", "labelsift_source": sources(1)[0]}]), encoding="utf-8")
    summary = import_label_studio(manifest, str(minimal))
    assert "export the project as JSON" in summary.problems[0][1]


def test_the_list_is_read_a_piece_at_a_time() -> None:
    items = [{"n": i, "text": "x" * (i * 37 % 500), "nested": {"a": [1, 2, {"b": "]"}]}} for i in range(300)]
    text = json.dumps(items, indent=1)

    class Trickle(io.StringIO):
        reads = 0

        def read(self, size: int | None = -1) -> str:
            Trickle.reads += 1
            return super().read(min(size or 7, 7) if size and size > 0 else 7)

    assert list(iter_json_list(Trickle(text), "x")) == items
    assert Trickle.reads > 1000  # never the whole text at once
    assert list(iter_json_list(io.StringIO("  [ ]  "), "x")) == []


def test_workers_write_what_one_process_writes(tmp_path: Path) -> None:
    records = [record(f"s3://raw/pets/{n:03d}.jpg", dog=40.0 + n % 60) for n in range(60)]
    manifest = write_manifest(tmp_path / "m.jsonl", records)
    one, two = tmp_path / "one.json", tmp_path / "two.json"
    export_label_studio(str(manifest), str(one), selection(), parallel=Parallel(workers=1))
    summary = export_label_studio(
        str(manifest), str(two), selection(), parallel=Parallel(workers=2, inline_first=5, batch=7)
    )
    assert summary.workers == 2
    assert one.read_bytes() == two.read_bytes()
    assert len(json.loads(one.read_text(encoding="utf-8"))) == summary.lines_written > 0


def test_to_s3_and_from_s3(tmp_path: Path, bucket: str, s3_client: Any, storage: Storage) -> None:
    manifest = write_manifest(tmp_path / "m.jsonl", [record(x) for x in sources(2)])
    export_label_studio(str(manifest), f"s3://{bucket}/ls/tasks.json", selection(), storage=storage)
    tasks = json.loads(s3_client.get_object(Bucket=bucket, Key="ls/tasks.json")["Body"].read())
    config = s3_client.get_object(Bucket=bucket, Key="ls/tasks.xml")["Body"].read().decode()
    assert [t["data"]["image"] for t in tasks] == sources(2) and "<RectangleLabels" in config

    for item in tasks:  # people keep every box as predicted
        item["annotations"] = [annotation(1, item["predictions"][0]["result"], WHEN)]
    s3_client.put_object(Bucket=bucket, Key="ls/export.json", Body=json.dumps(tasks).encode())
    summary = import_label_studio(manifest, f"s3://{bucket}/ls/export.json")
    assert (summary.accepted, summary.rejected, summary.corrected_boxes) == (4, 0, 4)


def test_command_line(tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "m.jsonl", [record(x) for x in sources(1)])
    out = tmp_path / "tasks.json"
    result = runner.invoke(app, ["export", "label-studio", str(manifest), str(out), "--label", "Dog"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "tasks.xml").exists()
    exported = json.loads(out.read_text(encoding="utf-8"))
    exported[0]["annotations"] = [annotation(1, [], WHEN)]
    out.write_text(json.dumps(exported), encoding="utf-8")
    result = runner.invoke(app, ["import-review", str(manifest), str(out), "--from", "label-studio"])
    assert result.exit_code == 0, result.output
    assert "1 rejected" in " ".join(result.output.split())
    result = runner.invoke(app, ["import-review", str(manifest), str(out), "--from", "labelbox"])
    assert result.exit_code == 2 and "groundtruth or label-studio" in result.output
    (tmp_path / "cut.json").write_text(out.read_text(encoding="utf-8")[:-3], encoding="utf-8")
    result = runner.invoke(
        app, ["import-review", str(manifest), str(tmp_path / "cut.json"), "--from", "label-studio"]
    )
    assert result.exit_code == 4 and "No verdict was written" in " ".join(result.output.split())


def test_model_version_names_the_detector() -> None:
    assert model_version({"name": "local", "model_version": "nanodet-m"}) == "local nanodet-m"
    assert model_version({"name": "onnx:yolo11n.onnx", "model_version": None}) == "onnx:yolo11n.onnx"
    assert model_version(7) == model_version(None) == model_version({"name": ""}) == "labelsift"
