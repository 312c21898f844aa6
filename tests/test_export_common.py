"""Tests of the pieces the exporters share (names, splits, summaries, the review queue)."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import pytest
from manifest_builders import box, label, record, write_manifest

from labelsift.exporters.common import check_relative
from labelsift.exporters.naming import class_names, file_name_parts, split_for
from labelsift.exporters.summary import ExportSummary
from labelsift.models import Verdict
from labelsift.select import Selection


def detector_modules() -> list[str]:
    return [m for m in sys.modules if m.startswith("labelsift.detectors.") and not m.endswith(".base")]


# -- tests of the shared pieces ------------------------------------------------------------------


def safe_stem(source: str) -> str:
    """The stem of the file an image of `source` is exported as."""
    return file_name_parts(source, None)[0]


def test_split_is_a_function_of_the_source_alone() -> None:
    sources = [f"s3://b/k/{i}.jpg" for i in range(2000)]
    first = {s: split_for(s, 0.2) for s in sources}
    more = [f"s3://b/new/{i}.jpg" for i in range(500)]
    again = {s: split_for(s, 0.2) for s in [*more, *sources]}
    assert all(again[s] == first[s] for s in sources)
    share = Counter(first.values())["val"] / len(sources)
    assert 0.15 < share < 0.25
    assert {split_for(s, 0.0) for s in sources} == {"train"}
    assert {split_for(s, 1.0) for s in sources} == {"val"}


def test_safe_names_are_unique_single_segments() -> None:
    a = safe_stem("s3://b/cats/img.jpg")
    b = safe_stem("s3://b/dogs/img.jpg")
    c = safe_stem("s3://other/cats/img.jpg")
    d = safe_stem("/data/../etc/passwd")
    assert len({a, b, c}) == 3
    for stem in (a, b, c, d, safe_stem("s3://b/" + "x" * 500 + ".jpg"), safe_stem("s3://b/..")):
        assert "/" not in stem and stem not in (".", "..") and not stem.startswith(".")
        assert len(stem) <= 113
    assert a.startswith("cats_img-")


def test_relative_paths_never_climb_out() -> None:
    assert check_relative("Bird/a/b.jpg") == "Bird/a/b.jpg"
    for bad in ("../x", "a/../../x", "/abs", "a//b", "a/./b", "a\\b", ""):
        with pytest.raises(ValueError):
            check_relative(bad)


def test_class_names_follow_the_selection_order_and_renames() -> None:
    selection = Selection(("Dog", "bird"))
    assert class_names(selection, None) == ["Dog", "bird"]
    assert class_names(selection, {"BIRD": "aves"}) == ["Dog", "aves"]
    with pytest.raises(ValueError):
        class_names(selection, {"cat": "x"})
    with pytest.raises(ValueError):
        class_names(selection, {"bird": "dog"})


def test_summary_keeps_counts_complete_when_details_are_capped() -> None:
    summary = ExportSummary.start("x", "m", "d", ["a"], detail_limit=3)
    for i in range(10):
        summary.skip(f"s{i}", "bad", "why")
        summary.violate(i + 1, "rule", "why")
    assert summary.skipped == {"bad": 10} and len(summary.skipped_images) == 3
    assert summary.violations == {"rule": 10} and len(summary.violation_lines) == 3
    assert summary.details_truncated


def test_exporting_never_loads_a_detector(tmp_path: Path) -> None:
    """Run every exporter in a fresh interpreter and list what it imported."""
    import subprocess

    manifest = write_manifest(
        tmp_path / "m.jsonl", [record("s3://b/a.jpg", label("Bird", 90, box(0, 0, 1, 1)))]
    )
    code = f"""
import sys
from labelsift.select import Selection
from labelsift.exporters.coco import export_coco
from labelsift.exporters.groundtruth import export_groundtruth
from labelsift.exporters.yolo import export_yolo
from labelsift.exporters.voc import export_voc
from labelsift.exporters.review_queue import export_review_queue
from labelsift.exporters.custom_labels import export_custom_labels
m, out, s = {str(manifest)!r}, {str(tmp_path / "out")!r}, Selection(("Bird",), band=(0, 50))
export_coco(m, out + "/coco", s, copy_images=False)
export_groundtruth(m, out + "/gt.manifest", s)
export_yolo(m, out + "/yolo", s, copy_images=False)
export_voc(m, out + "/voc", s, copy_images=False)
export_review_queue(m, out + "/queue.manifest", s)
export_custom_labels(m, out + "/cl", s, dry_run=True)
print("\\n".join(sorted(sys.modules)))
"""
    loaded = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout.split()
    assert "labelsift.exporters.coco" in loaded
    assert [m for m in loaded if m.startswith(("labelsift.detectors", "labelsift.scan", "onnxruntime"))] == []
    assert not any("rekognition" in m for m in loaded)


def test_review_queue_lists_band_images_by_confidence(tmp_path: Path) -> None:
    import json

    from labelsift.exporters.review_queue import export_review_queue

    records = [
        record("s3://b/60.jpg", label("Bird", 60)),
        record("s3://b/45.jpg", label("Bird", 45), label("Dog", 55)),
        record("s3://b/90.jpg", label("Bird", 90)),
        record("s3://b/55.jpg", label("Dog", 55), review=(Verdict(label="dog", accepted=True),)),
        record("/local/50.jpg", label("Bird", 50)),
        record("s3://b/52.jpg", label("Dog", 52)),
    ]
    manifest = write_manifest(tmp_path / "m.jsonl", records)
    out = tmp_path / "queue.manifest"
    summary = export_review_queue(manifest, str(out), Selection(("Bird", "Dog"), band=(40, 70)))
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert lines == [{"source-ref": f"s3://b/{n}.jpg"} for n in (45, 52, 60)]
    assert summary.skipped == {"not_s3": 1}
    assert summary.per_label["Bird"].held_out == 3 and summary.per_label["Dog"].held_out == 2
    with pytest.raises(ValueError, match="band"):
        export_review_queue(manifest, str(out), Selection(("Bird",)))


def test_review_queue_offers_the_images_detection_exports_hold_out_for_missing_boxes(tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from labelsift.cli import app
    from labelsift.exporters.yolo import export_yolo

    records = [
        record("s3://b/boxed.jpg", label("Dog", 90, box(0.1, 0.1, 0.5, 0.5, 90))),
        record("s3://b/weak-box.jpg", label("Dog", 90, box(0.1, 0.1, 0.5, 0.5, 40))),
        record("s3://b/no-box.jpg", label("Bird", 80)),
        record("s3://b/half.jpg", label("Dog", 95, box(0.2, 0.2, 0.3, 0.3, 95)), label("Bird", 70)),
        record("s3://b/unsure.jpg", label("Dog", 30)),
    ]
    manifest = write_manifest(tmp_path / "m.jsonl", records)
    held = export_yolo(
        manifest, str(tmp_path / "yolo"), Selection(("Dog", "Bird"), threshold=60.0), copy_images=False
    )
    assert held.skipped == {"label_without_boxes": 1, "no_boxes": 2}
    queue = tmp_path / "boxes.manifest"
    command = ["export", "review", manifest, str(queue), "--label", "Dog", "--label", "Bird"]
    result = CliRunner().invoke(app, [*command, "--missing-boxes", "--threshold", "60", "--band", "20:25"])
    assert result.exit_code == 0, result.output
    queued = {json.loads(line)["source-ref"] for line in queue.read_text().splitlines()}
    assert queued == {"s3://b/weak-box.jpg", "s3://b/no-box.jpg", "s3://b/half.jpg"}
