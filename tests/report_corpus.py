"""A manifest of known make-up for the report tests: real images, failures, verdicts, an EXIF turn."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from labelsift.manifest import ManifestWriter, append_verdict
from labelsift.models import DetectorInfo, ImageRecord, Instance, Label, Reason, ScanStatus, Verdict

GREY = (128, 128, 128)
# the probe image: 400x300 as shown, one Dog box at these ratios
PROBE_BOX = (0.25, 0.2, 0.5, 0.5)


@dataclass
class Corpus:
    manifest: Path
    probe: Path  # the image of known geometry
    broken: Path  # a labelled record whose file is no image


def dog_confidence(i: int) -> float:
    return round(30 + (i * 37) % 70 + 0.25, 2)  # spread over 30..99.25


def make_corpus(tmp: Path, count: int = 40) -> Corpus:
    images = tmp / "images"
    images.mkdir()
    manifest = tmp / "manifest.jsonl"
    probe = images / "probe.jpg"
    # stored sideways (300x400) with EXIF orientation 6: shown as 400x300
    stored = Image.new("RGB", (300, 400), GREY)
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(probe, "JPEG", quality=95, exif=exif)
    broken = images / "broken.jpg"
    broken.write_bytes(b"this is not a jpeg")
    with ManifestWriter(manifest) as writer:
        left, top, width, height = PROBE_BOX
        writer.append(_labeled(probe, 400, 300, [_dog(99.5, [(left, top, width, height, 99.5)])], 6))
        writer.append(_labeled(broken, 400, 300, [_dog(97.0, [(0.1, 0.1, 0.2, 0.2, 97.0)])]))
        for i in range(count):
            path = images / f"photo-{i:02d}.jpg"
            Image.new("RGB", (320, 240), (40 + i * 4, 90, 160)).save(path, "JPEG")
            confidence = dog_confidence(i)
            labels = [
                _dog(confidence, [(0.1, 0.1, 0.3, 0.3, confidence), (0.5, 0.5, 0.2, 0.2, confidence - 20)])
            ]
            if i % 3 == 0:
                labels.append(Label(name="Grass", confidence=80.0, categories=["Nature"]))
            writer.append(_labeled(path, 320, 240, labels))
        for i, code in enumerate(["CorruptImage", "CorruptImage", "UnsupportedFormat"]):
            writer.append(_failed(images / f"bad-{i}.heic", ScanStatus.SKIPPED, code))
        writer.append(_failed(images / "denied.jpg", ScanStatus.ERROR, "AccessDenied"))
    append_verdict(manifest, str(images / "photo-01.jpg"), Verdict(label="Dog", accepted=True, who="ann"))
    append_verdict(manifest, str(images / "photo-02.jpg"), Verdict(label="dog", accepted=False, who="bob"))
    return Corpus(manifest, probe, broken)


def _dog(confidence: float, boxes: list[tuple[float, float, float, float, float]]) -> Label:
    instances = [Instance(left=a, top=b, width=c, height=d, confidence=e) for a, b, c, d, e in boxes]
    return Label(name="Dog", confidence=confidence, parents=["Animal", "Pet"], instances=instances)


def _labeled(path: Path, width: int, height: int, labels: list[Label], orientation: int = 1) -> ImageRecord:
    animal = Label(name="Animal", confidence=max(label.confidence for label in labels))
    return ImageRecord(
        source=str(path), width=width, height=height, format="JPEG", orientation=orientation,
        status=ScanStatus.LABELED, detector=DetectorInfo(name="rekognition", model_version="3.0"),
        labels=[*labels, animal],
    )  # fmt: skip


def _failed(path: Path, status: ScanStatus, code: str) -> ImageRecord:
    return ImageRecord(source=str(path), status=status, error=Reason(code=code, message=f"{path}: {code}"))


def expected_counts(manifest: Path, label: str, threshold: float) -> dict[str, object]:
    """Counted straight from the manifest's JSON, independently of labelsift's reader."""
    statuses: Counter[str] = Counter()
    images = kept_images = kept_boxes = 0
    reasons: Counter[str] = Counter()
    verdicts: dict[str, bool] = {}
    records: dict[str, dict[str, object]] = {}
    for line in manifest.read_text().splitlines():
        entry = json.loads(line)
        if entry.get("kind") == "verdict":
            if entry["verdict"]["label"].lower() == label.lower():
                verdicts[entry["source"]] = entry["verdict"]["accepted"]
            continue
        records[entry["source"]] = entry
    for entry in records.values():
        statuses[str(entry["status"])] += 1
        if entry["error"]:
            reasons[entry["error"]["code"]] += 1  # type: ignore[index]
        for found in entry["labels"]:  # type: ignore[attr-defined]
            if found["name"] == label:
                images += 1
                kept_images += found["confidence"] >= threshold
                kept_boxes += sum(box["confidence"] >= threshold for box in found["instances"])
    return {
        "records": len(records),
        "statuses": statuses,
        "reasons": reasons,
        "images": images,
        "kept_images": kept_images,
        "kept_boxes": kept_boxes,
        "accepted": sum(verdicts.values()),
        "rejected": sum(not v for v in verdicts.values()),
        "billed": statuses["labeled"],
    }
