"""Importing people's answers from SageMaker Ground Truth output manifests as verdicts."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from labelsift.errors import CannotProceed
from labelsift.gt_import import import_review
from labelsift.manifest import ManifestWriter, iter_raw, iter_records
from labelsift.models import DetectorInfo, ImageRecord, Instance, Label, ScanStatus, VerdictEntry
from labelsift.select import Outcome, Selection
from labelsift.views import instance_view, view_of

DATE = "2026-11-29T10:00:00.000000"


def src(n: int) -> str:
    return f"s3://raw/birds/{n:04d}.jpg"


def make_manifest(tmp_path: Path, count: int = 8) -> Path:
    """Images the model is sure show a Bird (95%), with one box each."""
    manifest = tmp_path / "manifest.jsonl"
    with ManifestWriter(manifest) as writer:
        for n in range(1, count + 1):
            writer.append(
                ImageRecord(
                    source=src(n),
                    width=500,
                    height=400,
                    status=ScanStatus.LABELED,
                    detector=DetectorInfo(name="rekognition", model_version="3.0"),
                    labels=[
                        Label(
                            name="Bird",
                            confidence=95.0,
                            parents=["Animal"],
                            instances=[Instance(left=0.5, top=0.5, width=0.2, height=0.2, confidence=95.0)],
                        )
                    ],
                )
            )
    return manifest


def meta(kind: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": f"groundtruth/{kind}",
        "job-name": f"labeling-job/{kind}",
        "human-annotated": "yes",
        "creation-date": DATE,
        **extra,
    }


def classification(source: str, class_name: str, attr: str = "animal", **extra: Any) -> dict[str, Any]:
    return {
        "source-ref": source,
        attr: 0,
        f"{attr}-metadata": meta(
            "image-classification", **{"class-name": class_name, "confidence": 0.9, **extra}
        ),
    }


def multilabel(source: str, ids: list[int], class_map: dict[str, str]) -> dict[str, Any]:
    confidences = {k: 0.9 for k in class_map}
    return {
        "source-ref": source,
        "tags": ids,
        "tags-metadata": meta(
            "image-classification-multilabel", **{"class-map": class_map, "confidence-map": confidences}
        ),
    }


def boxes(source: str, annotations: list[dict[str, int]], class_map: dict[str, str]) -> dict[str, Any]:
    return {
        "source-ref": source,
        "bounding-box": {
            "image_size": [{"width": 500, "height": 400, "depth": 3}],
            "annotations": annotations,
        },
        "bounding-box-metadata": meta(
            "object-detection",
            **{"objects": [{"confidence": 0.8} for _ in annotations], "class-map": class_map},
        ),
    }


def gt_lines() -> list[str]:
    """An output manifest mixing every supported type, with bad and unknown lines among them."""
    dog_and_bird = [
        {"class_id": 0, "left": 111, "top": 134, "width": 61, "height": 128},
        {"class_id": 1, "left": 0, "top": 0, "width": 250, "height": 200},
    ]
    failed = {
        "source-ref": src(7),
        "animal-metadata": {
            "failure-reason": "ClientError: worker timed out",
            "type": "groundtruth/image-classification",
        },
    }
    machine = classification(src(8), "bird")
    machine["animal-metadata"]["human-annotated"] = "no"
    segmentation = {
        "source-ref": src(8),
        "seg": {},
        "seg-metadata": {"type": "groundtruth/semantic-segmentation"},
    }
    return [
        json.dumps(classification(src(1), "bird")),  # 1 accepted
        json.dumps(classification(src(2), "cat")),  # 2 rejected: a person says it is a cat
        json.dumps(multilabel(src(3), [1], {"0": "person", "1": "bird"})),  # 3 accepted
        json.dumps(multilabel(src(4), [0], {"0": "person"})),  # 4 rejected
        json.dumps(boxes(src(5), dog_and_bird, {"0": "bird", "1": "dog"})),  # 5 accepted with one box
        json.dumps(classification("s3://raw/elsewhere/9999.jpg", "bird")),  # 6 unknown source
        '{"source-ref": "s3://raw/birds/0001.jpg", "animal": ',  # 7 torn JSON
        "",  # 8 blank
        json.dumps(failed),  # 9 labeling failed
        json.dumps(machine),  # 10 machine label: skipped
        json.dumps(classification(src(6), "No", attr="is-bird")),  # 11 yes/no answer: rejected
        json.dumps(segmentation),  # 12 unsupported type
        json.dumps(
            boxes(src(8), [{"class_id": 5, "left": 1, "top": 1, "width": 9, "height": 9}], {"0": "bird"})
        ),
        json.dumps(
            boxes(src(8), [{"class_id": 0, "left": 400, "top": 0, "width": -90, "height": 10}], {"0": "bird"})
        ),
        "[1, 2]",  # 15 not an object
    ]


def write(path: Path, lines: list[str]) -> Path:
    text = "\n".join(lines) + "\n"
    if path.suffix == ".gz":
        with gzip.open(path, "wt", encoding="utf-8") as stream:
            stream.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def latest(manifest: Path) -> dict[str, ImageRecord]:
    return {record.source: record for record in iter_records(str(manifest))}


@pytest.mark.parametrize("name", ["output.manifest", "output.manifest.gz"])
def test_import_for_one_label(tmp_path: Path, name: str) -> None:
    manifest = make_manifest(tmp_path)
    gt = write(tmp_path / name, gt_lines())
    summary = import_review(manifest, str(gt), label="Bird", who="gt-job-7")

    assert (summary.lines, summary.verdicts, summary.accepted, summary.rejected) == (14, 6, 3, 3)
    assert summary.imported_lines == 6 and summary.machine_lines == 1 and summary.empty_lines == 0
    assert summary.unknown_sources == 1 and summary.unknown == [(6, "s3://raw/elsewhere/9999.jpg")]
    assert [n for n, _ in summary.problems] == [7, 9, 12, 13, 14, 15]
    messages = dict(summary.problems)
    assert "not JSON" in messages[7]
    assert "worker timed out" in messages[9]
    assert "semantic-segmentation" in messages[12]
    assert "class_id 5" in messages[13]
    assert "inside the image" in messages[14]
    assert summary.problem_count == 6
    assert summary.lines == (
        summary.imported_lines + summary.unknown_sources + summary.machine_lines + summary.problem_count
    )
    report = summary.report()
    assert "line 6: s3://raw/elsewhere/9999.jpg" in report and "line 7: not JSON" in report

    records = latest(manifest)
    decided = {source: [(v.label, v.accepted) for v in r.review] for source, r in records.items() if r.review}
    assert decided == {
        src(1): [("Bird", True)],
        src(2): [("Bird", False)],
        src(3): [("Bird", True)],
        src(4): [("Bird", False)],
        src(5): [("Bird", True)],
        src(6): [("Bird", False)],
    }
    verdict = records[src(5)].review[0]
    assert verdict.who == "gt-job-7"
    assert verdict.at == datetime(2026, 11, 29, 10, 0, tzinfo=UTC)
    assert verdict.instances == [
        Instance(left=111 / 500, top=134 / 400, width=61 / 500, height=128 / 400, confidence=80.0)
    ]
    assert records[src(1)].review[0].instances is None

    # a person's reject beats the model's 95%; a person's boxes replace the model's
    selection = Selection(labels=("Bird",), threshold=50.0, band=(40.0, 99.0))
    for n in (2, 4, 6):
        decision = selection.decide(view_of(records[src(n)])).labels[0]
        assert decision.outcome is Outcome.NOT_SELECTED and decision.human and decision.confidence == 95.0
    boxed = selection.decide(view_of(records[src(5)])).labels[0]
    assert boxed.outcome is Outcome.SELECTED and boxed.human
    assert boxed.instances == tuple(instance_view(box) for box in verdict.instances)
    # without a verdict the same 95% sits in the band and waits for people
    assert selection.decide(view_of(records[src(7)])).labels[0].outcome is Outcome.REVIEW


def test_import_without_a_label_takes_each_answer_as_named(tmp_path: Path) -> None:
    manifest = make_manifest(tmp_path)
    gt = write(tmp_path / "out.manifest", gt_lines())
    summary = import_review(manifest, str(gt))
    records = latest(manifest)
    decided = {
        source: sorted((v.label, v.accepted) for v in r.review) for source, r in records.items() if r.review
    }
    assert decided == {
        src(1): [("bird", True)],
        src(2): [("cat", True)],
        src(3): [("bird", True)],
        src(4): [("person", True)],
        src(5): [("bird", True), ("dog", True)],
        src(6): [("is-bird", False)],
    }
    dog = next(v for v in records[src(5)].review if v.label == "dog")
    assert dog.instances == [Instance(left=0.0, top=0.0, width=0.5, height=0.5, confidence=80.0)]
    assert summary.verdicts == 7 and summary.accepted == 6 and summary.rejected == 1
    # the lower-case "bird" from a person still counts for the query "Bird"
    assert Selection(labels=("Bird",)).decide(view_of(records[src(1)])).labels[0].human


def test_machine_labels_only_when_asked(tmp_path: Path) -> None:
    manifest = make_manifest(tmp_path)
    line = classification(src(1), "cat")
    line["animal-metadata"]["human-annotated"] = "no"
    gt = write(tmp_path / "out.manifest", [json.dumps(line)])
    assert import_review(manifest, str(gt), label="Bird").machine_lines == 1
    assert not [e for e in iter_raw(str(manifest)) if isinstance(e, VerdictEntry)]
    summary = import_review(manifest, str(gt), label="Bird", include_machine=True)
    assert summary.rejected == 1
    assert latest(manifest)[src(1)].review[0].accepted is False


def test_newest_answer_wins_and_chained_jobs(tmp_path: Path) -> None:
    manifest = make_manifest(tmp_path)
    chained = classification(src(1), "bird")
    chained.update({"verify": 1, "verify-metadata": meta("image-classification", **{"class-name": "no"})})
    gt = write(tmp_path / "out.manifest", [json.dumps(chained)])
    summary = import_review(manifest, str(gt), label="Bird")
    assert summary.verdicts == 2 and summary.imported_lines == 1
    record = latest(manifest)[src(1)]
    assert [v.accepted for v in record.review] == [True, False]
    assert Selection(labels=("bird",)).decide(view_of(record)).labels[0].outcome is Outcome.NOT_SELECTED


def test_gt_output_from_s3(tmp_path: Path, bucket: str, s3_client: Any) -> None:
    manifest = make_manifest(tmp_path)
    body = (
        "\n".join(json.dumps(classification(src(n), "bird" if n % 2 else "cat")) for n in range(1, 5)) + "\n"
    )
    s3_client.put_object(Bucket=bucket, Key="jobs/out/output.manifest", Body=body.encode())
    summary = import_review(manifest, f"s3://{bucket}/jobs/out/output.manifest", label="bird")
    assert (summary.accepted, summary.rejected, summary.problem_count, summary.unknown_sources) == (
        2,
        2,
        0,
        0,
    )
    assert [latest(manifest)[src(n)].review[0].accepted for n in range(1, 5)] == [True, False, True, False]


def test_refuses_a_missing_or_remote_manifest(tmp_path: Path) -> None:
    gt = write(tmp_path / "out.manifest", [json.dumps(classification(src(1), "bird"))])
    with pytest.raises(CannotProceed, match="no such manifest"):
        import_review(tmp_path / "nope.jsonl", str(gt))
    assert not (tmp_path / "nope.jsonl").exists()
    with pytest.raises(ValueError, match="local manifest"):
        import_review("s3://bucket/manifest.jsonl", str(gt))
