"""Ground Truth bounding-box jobs read back: people's boxes (drawn, adjusted, left out) become
verdicts, and the next export uses them.

The input of the adjustment job is labelsift's own `export groundtruth --task boxes` (machine
boxes, `human-annotated: no`); Ground Truth's output line keeps that attribute and adds the
adjustment job's own attribute beside it (sms-data-verify-manifest: same shape as the original
task, plus `adjustment-status`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from labelsift.exporters.groundtruth import export_groundtruth
from labelsift.exporters.yolo import export_yolo
from labelsift.gt_import import import_review
from labelsift.manifest import ManifestWriter, iter_raw
from labelsift.models import DetectorInfo, ImageRecord, Instance, Label, ScanStatus, VerdictEntry
from labelsift.select import Selection

SOURCES = [f"s3://raw/pets/{n}.jpg" for n in range(4)]
CLASSES = ("Dog", "Bird")


def make_manifest(path: Path) -> Path:
    """A Dog (0.1, 0.2, 0.3 x 0.4) and a Bird (0.6, 0.1, 0.2 x 0.2) on every 500 x 400 image."""
    with ManifestWriter(path) as writer:
        for source in SOURCES:
            writer.append(
                ImageRecord(
                    source=source,
                    width=500,
                    height=400,
                    status=ScanStatus.LABELED,
                    detector=DetectorInfo(name="rekognition", model_version="3.0"),
                    labels=[
                        Label(
                            name="Dog",
                            confidence=92.0,
                            instances=[Instance(left=0.1, top=0.2, width=0.3, height=0.4, confidence=92.0)],
                        ),
                        Label(
                            name="Bird",
                            confidence=81.0,
                            instances=[Instance(left=0.6, top=0.1, width=0.2, height=0.2, confidence=81.0)],
                        ),
                    ],
                )
            )
    return path


def adjusted(line: dict[str, Any], annotations: list[dict[str, int]], status: str = "adjusted") -> str:
    """The output line of an adjustment job over one of labelsift's export lines."""
    out = dict(line)
    out["adjusted-box"] = {"image_size": line["bounding-box"]["image_size"], "annotations": annotations}
    out["adjusted-box-metadata"] = {
        "objects": [{"confidence": 0.9} for _ in annotations],
        "class-map": {"0": "Dog", "1": "Bird"},
        "type": "groundtruth/object-detection",
        "human-annotated": "yes",
        "creation-date": "2026-12-02T09:30:00.000000",
        "job-name": "labeling-job/adjusted-box",
        "adjustment-status": status,
    }
    return json.dumps(out)


def gt_input(tmp_path: Path, manifest: Path) -> list[dict[str, Any]]:
    dest = tmp_path / "job-input.manifest"
    export_groundtruth(str(manifest), str(dest), Selection(CLASSES), task="boxes")
    lines = [json.loads(text) for text in dest.read_text(encoding="utf-8").splitlines()]
    assert [line["source-ref"] for line in lines] == SOURCES
    assert lines[0]["bounding-box"]["annotations"] == [
        {"class_id": 0, "left": 50, "top": 80, "width": 150, "height": 160},
        {"class_id": 1, "left": 300, "top": 40, "width": 100, "height": 80},
    ]
    return lines


def verdicts(manifest: Path) -> dict[tuple[str, str], Any]:
    return {
        (line.source, line.verdict.label): line.verdict
        for line in iter_raw(str(manifest))
        if isinstance(line, VerdictEntry)
    }


def test_adjusted_boxes_replace_the_detector_s_and_left_out_classes_are_rejected(tmp_path: Path) -> None:
    manifest = make_manifest(tmp_path / "m.jsonl")
    lines = gt_input(tmp_path, manifest)
    moved_dog = {"class_id": 0, "left": 100, "top": 100, "width": 150, "height": 160}
    bird = lines[0]["bounding-box"]["annotations"][1]
    output = tmp_path / "output.manifest"
    output.write_text(
        "\n".join(
            [
                adjusted(lines[0], [moved_dog]),  # dog moved, bird removed
                adjusted(lines[1], [], status="adjusted"),  # neither is there
                adjusted(lines[2], lines[2]["bounding-box"]["annotations"], status="unadjusted"),
                json.dumps(lines[3]),  # no person saw it: machine boxes only
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    summary = import_review(manifest, str(output))
    assert (summary.lines, summary.imported_lines, summary.machine_lines) == (4, 3, 1)
    assert (summary.accepted, summary.rejected) == (3, 3)

    found = verdicts(manifest)
    dog = found[(SOURCES[0], "Dog")]
    assert dog.accepted and dog.who == "groundtruth"
    assert dog.at.isoformat() == "2026-12-02T09:30:00+00:00"
    (box,) = dog.instances
    assert (box.left, box.top, box.width, box.height) == pytest.approx((0.2, 0.25, 0.3, 0.4))
    assert box.confidence == pytest.approx(90.0)
    assert not found[(SOURCES[0], "Bird")].accepted
    assert found[(SOURCES[0], "Bird")].at == dog.at
    assert not found[(SOURCES[1], "Dog")].accepted and not found[(SOURCES[1], "Bird")].accepted
    assert found[(SOURCES[2], "Dog")].accepted and found[(SOURCES[2], "Bird")].accepted
    assert (SOURCES[3], "Dog") not in found
    assert bird == {"class_id": 1, "left": 300, "top": 40, "width": 100, "height": 80}

    yolo = tmp_path / "yolo"
    export_yolo(str(manifest), str(yolo), Selection(CLASSES), val_fraction=0.0, copy_images=False)
    labels = {p.name.split("-")[0]: p.read_text().splitlines() for p in (yolo / "labels" / "train").iterdir()}
    # the moved dog: x 100-250 of 500, y 100-260 of 400 -> centre 0.35, 0.45; no bird
    assert labels["pets_0"] == ["0 0.350000 0.450000 0.300000 0.400000"]
    assert "pets_1" not in labels  # people said neither class is there
    assert (
        labels["pets_2"]
        == labels["pets_3"]
        == [
            "0 0.250000 0.400000 0.300000 0.400000",
            "1 0.700000 0.200000 0.200000 0.200000",
        ]
    )


def test_a_plain_box_job_rejects_nothing_it_was_not_asked(tmp_path: Path) -> None:
    """Without machine boxes on the line, only what a person drew is known: accepted, nothing rejected."""
    manifest = make_manifest(tmp_path / "m.jsonl")
    line = {
        "source-ref": SOURCES[0],
        "box": {
            "image_size": [{"width": 500, "height": 400, "depth": 3}],
            "annotations": [{"class_id": 3, "left": 0, "top": 0, "width": 250, "height": 200}],
        },
        "box-metadata": {
            "objects": [{"confidence": 0.7}],
            "class-map": {"3": "Cat"},
            "type": "groundtruth/object-detection",
            "human-annotated": "yes",
            "creation-date": "2026-12-02T09:30:00.000000",
        },
    }
    output = tmp_path / "output.manifest"
    output.write_text(json.dumps(line) + "\n", encoding="utf-8")
    summary = import_review(manifest, str(output))
    assert (summary.accepted, summary.rejected) == (1, 0)
    (cat,) = verdicts(manifest).values()
    assert cat.label == "Cat" and cat.instances[0].width == pytest.approx(0.5)


def test_with_a_label_only_that_label_is_decided(tmp_path: Path) -> None:
    manifest = make_manifest(tmp_path / "m.jsonl")
    lines = gt_input(tmp_path, manifest)
    output = tmp_path / "output.manifest"
    output.write_text(adjusted(lines[0], []) + "\n", encoding="utf-8")
    import_review(manifest, str(output), label="Bird")
    assert {(s, label, v.accepted) for (s, label), v in verdicts(manifest).items()} == {
        (SOURCES[0], "Bird", False)
    }


def test_a_bad_line_writes_none_of_its_verdicts(tmp_path: Path) -> None:
    manifest = make_manifest(tmp_path / "m.jsonl")
    lines = gt_input(tmp_path, manifest)
    broken_machine = json.loads(adjusted(lines[0], []))
    broken_machine["bounding-box"]["annotations"][0]["class_id"] = 7  # not in the machine class-map
    outside = {"class_id": 0, "left": 400, "top": 0, "width": -90, "height": 10}
    output = tmp_path / "output.manifest"
    output.write_text(
        "\n".join([json.dumps(broken_machine), adjusted(lines[1], [outside]), adjusted(lines[2], [])]) + "\n",
        encoding="utf-8",
    )
    summary = import_review(manifest, str(output))
    assert summary.problem_count == 2
    problems = dict(summary.problems)
    assert "bounding-box.annotations[0]: class_id 7 missing from 'class-map'" in problems[1]
    assert "adjusted-box.annotations[0]: not a box inside the image" in problems[2]
    assert {source for source, _ in verdicts(manifest)} == {SOURCES[2]}
