"""The export's view of a record reads the same values as the model, under the same rules."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from manifest_builders import box, failed, label, record
from pydantic import ValidationError

from labelsift.exporters.coco import export_coco
from labelsift.manifest import ManifestError, to_line, write_records
from labelsift.models import ImageRecord, Verdict
from labelsift.select import Selection
from labelsift.views import RECORD_VIEW, view_of

T0 = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)
RECORDS = [
    record(
        "s3://b/1.jpg",
        label("Bird", 90, box(0.1, 0.2, 0.3, 0.4, 88), box(-0.01, 0.5, 1.02, 0.5, 51), parents=("Animal",)),
        label("Animal", 90, box(0.1, 0.2, 0.3, 0.4, 88), aliases=("Fauna",)),
    ),
    record("s3://b/2.png", label("Dog", 45), width=None, height=None, fmt="PNG"),
    record(
        "local/3.jpg",
        label("Bird", 30),
        review=(Verdict(label="bird", accepted=True, at=T0, instances=[box(0, 0, 0.5, 0.5, 100)]),),
    ),
    failed("s3://b/4.jpg"),
]


@pytest.mark.parametrize("rec", RECORDS, ids=lambda r: r.source)
def test_a_line_reads_as_the_view_of_its_model(rec: ImageRecord) -> None:
    from_line = RECORD_VIEW.validate_json(to_line(rec))
    assert from_line == view_of(rec)
    selection = Selection(("Bird", "Dog", "Fauna"), threshold=40, band=(44, 46))
    assert selection.decide(from_line) == selection.decide(view_of(rec))


GOOD = json.loads(to_line(RECORDS[0]))


def _with(path: str, value: object) -> str:
    line = json.loads(json.dumps(GOOD))
    *parents, last = path.split(".")
    target = line
    for key in parents:
        target = target[int(key)] if key.isdigit() else target[key]
    target[last] = value
    return json.dumps(line)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("source", ""),
        ("status", "maybe"),
        ("width", 0),
        ("height", -3),
        ("size", -1),
        ("format", 5),
        ("scanned_at", "yesterday"),
        ("labels.0.name", ""),
        ("labels.0.confidence", 100.5),
        ("labels.0.parents", "Animal"),
        ("labels.1.aliases", [1]),
        ("labels.0.instances.0.left", 1.6),
        ("labels.0.instances.0.width", -0.1),
        ("labels.0.instances.0.height", "tall"),
        ("labels.0.instances.0.confidence", -1),
        ("review", [{"label": "", "accepted": True}]),
    ],
)
def test_the_view_rejects_what_the_model_rejects_in_the_fields_read(path: str, value: object) -> None:
    bad = _with(path, value)
    with pytest.raises(ValidationError):
        ImageRecord.model_validate_json(bad)
    with pytest.raises(ValidationError) as caught:
        RECORD_VIEW.validate_json(bad)
    assert caught.value.errors()[0]["loc"][0] == path.split(".")[0]


def test_an_export_reads_only_its_fields(tmp_path: Path) -> None:
    """What no export reads is not checked on export (the scan wrote it through the model); what
    it reads stops the export at the line, with the field named."""
    manifest = tmp_path / "m.jsonl"
    write_records(str(manifest), RECORDS[:1])
    with manifest.open("a", encoding="utf-8") as stream:
        stream.write(_with("detector", 7).replace("1.jpg", "5.jpg") + "\n")  # etag is read: receipts
    summary = export_coco(str(manifest), str(tmp_path / "coco"), Selection(("Bird",)), copy_images=False)
    assert sum(summary.images.values()) == 2
    with manifest.open("a", encoding="utf-8") as stream:
        stream.write(_with("labels.0.instances.0.left", 9).replace("1.jpg", "6.jpg") + "\n")
    with pytest.raises(ManifestError, match=r"line 3: .*labels\.0\.instances\.0\.left"):
        export_coco(str(manifest), str(tmp_path / "again"), Selection(("Bird",)), copy_images=False)
