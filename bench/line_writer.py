"""Whether the `jsonlines` library should write or read the manifest's lines: measured, not assumed.

    python bench/line_writer.py [--records 20000]

Baseline, measured in the same run: labelsift's own line (`model_dump_json()` of the pydantic
record, one `os.write` per line, as `manifest.writer.ManifestWriter.append` does) and its reader
(`model_validate_json` per line, as `manifest.parsing.parse_line` does). Against it: the same records
through `jsonlines.Writer` (it serialises a dict, so the record is dumped to one first) and read
back with `jsonlines.Reader` then validated. Printed: records/s and each rate against the baseline.
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import jsonlines

from labelsift.models import DetectorInfo, ImageRecord, Instance, Label, ScanStatus


def records(count: int) -> list[ImageRecord]:
    detector = DetectorInfo(name="rekognition", model_version="3.0")
    when = datetime(2026, 12, 1, tzinfo=UTC)
    labels = [
        Label(
            name=name,
            confidence=90.0 - i,
            parents=["Animal"],
            instances=[Instance(left=0.1, top=0.2, width=0.3, height=0.4, confidence=88.0)],
        )
        for i, name in enumerate(["Bird", "Animal", "Dog", "Tree", "Plant"])
    ]
    return [
        ImageRecord(
            source=f"s3://bucket/images/{i:07d}.jpg",
            status=ScanStatus.LABELED,
            labels=labels,
            detector=detector,
            scanned_at=when,
            width=640,
            height=480,
        )
        for i in range(count)
    ]


def write_own(path: Path, entries: list[ImageRecord]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
    try:
        for entry in entries:
            os.write(fd, (entry.model_dump_json() + "\n").encode("utf-8"))
    finally:
        os.close(fd)


def write_jsonlines(path: Path, entries: list[ImageRecord]) -> None:
    with path.open("w", encoding="utf-8") as stream, jsonlines.Writer(stream, flush=True) as writer:
        for entry in entries:
            writer.write(entry.model_dump(mode="json"))  # flush: a killed run leaves whole lines


def read_own(path: Path) -> int:
    with path.open(encoding="utf-8") as stream:
        return sum(1 for line in stream if ImageRecord.model_validate_json(line))


def read_jsonlines(path: Path) -> int:
    with path.open(encoding="utf-8") as stream, jsonlines.Reader(stream) as reader:
        return sum(1 for value in reader if ImageRecord.model_validate(value))


def rate(count: int, run: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return count / best


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=20_000)
    count = parser.parse_args().records
    entries = records(count)
    with tempfile.TemporaryDirectory() as scratch:
        own, other = Path(scratch) / "own.jsonl", Path(scratch) / "jsonlines.jsonl"
        rows = [
            ("write", "labelsift (baseline)", rate(count, lambda: write_own(own, entries))),
            ("write", "jsonlines.Writer", rate(count, lambda: write_jsonlines(other, entries))),
            ("read", "labelsift (baseline)", rate(count, lambda: read_own(own))),
            ("read", "jsonlines.Reader", rate(count, lambda: read_jsonlines(other))),
        ]
        same = [ImageRecord.model_validate_json(line) for line in io.StringIO(own.read_text())] == [
            ImageRecord.model_validate_json(line) for line in io.StringIO(other.read_text())
        ]
    print(f"{count} records; the two files hold the same records: {same}")
    print(f"{'task':>6} {'how':>22} {'records/s':>11} {'vs baseline':>12}")
    for task, how, value in rows:
        base = next(r for t, h, r in rows if t == task and h.endswith("(baseline)"))
        print(f"{task:>6} {how:>22} {value:>11,.0f} {value / base:>12.2f}")


if __name__ == "__main__":
    main()
