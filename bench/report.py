"""Report speed and memory on large manifests, thumbnails from a local folder.

    python bench/report.py                      # 100,000 and 1,000,000 records
    python bench/report.py --sizes 20000        # a quick look

For each size it writes a synthetic manifest (streaming) whose sources are hard links to 16 small
JPEGs in a temporary folder (every source exists, so every sampled thumbnail is really read,
decoded and drawn), then runs, each in a fresh subprocess so every peak is that run's own:
`baseline` (`json.loads` of every line: the floor of any reader) and `report`
(`labelsift.report.make_report` with two labels, 8 thumbnails per band). It prints seconds,
records/s, the peak RSS, the report/baseline time ratio, and the largest/smallest-size ratio of the
report's peak RSS (target <= 1.2: memory flat in the manifest's size).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from PIL import Image

CODES = ("CorruptImage", "UnsupportedFormat", "Vanished")


def _record(rng: random.Random, source: str) -> dict[str, Any]:
    if rng.random() < 0.03:
        code = rng.choice(CODES)
        return {
            "source": source,
            "status": "skipped",
            "error": {"code": code, "message": f"{source}: {code}"},
        }
    labels = []
    for name in ("Dog", "Cat", "Person"):
        if rng.random() < 0.5:
            confidence = round(rng.uniform(40, 100), 3)
            boxes = [
                {"left": 0.1 * k, "top": 0.1, "width": 0.3, "height": 0.4, "confidence": confidence}
                for k in range(rng.randrange(3))
            ]
            labels.append({"name": name, "confidence": confidence, "parents": ["Animal"], "instances": boxes})
    labels.append({"name": "Outdoors", "confidence": 77.0})
    return {
        "source": source, "etag": "e", "width": 320, "height": 240, "format": "JPEG", "status": "labeled",
        "detector": {"name": "rekognition", "model_version": "3.0"}, "labels": labels,
    }  # fmt: skip


def generate(folder: Path, count: int) -> Path:
    images = folder / "images"
    images.mkdir()
    bases = []
    for k in range(16):
        base = folder / f"base-{k}.jpg"
        Image.new("RGB", (320, 240), (16 * k, 100, 200 - 8 * k)).save(base, "JPEG")
        bases.append(base)
    rng = random.Random(7)
    manifest = folder / "manifest.jsonl"
    with manifest.open("w") as out:
        for i in range(count):
            path = images / f"{i:08d}.jpg"
            os.link(bases[i % 16], path)
            out.write(json.dumps(_record(rng, str(path))) + "\n")
    return manifest


def run_one(kind: str, manifest: str, output: str) -> dict[str, Any]:
    if kind == "report":
        from labelsift.report import make_report
        from labelsift.storage import Storage

        start = time.perf_counter()
        made = make_report(manifest, output, ["Dog", "Cat"], storage=Storage())
        records = made.tally.records
    else:
        start = time.perf_counter()
        records = 0
        with open(manifest) as lines:
            for line in lines:
                json.loads(line)
                records += 1
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return {"kind": kind, "records": records, "seconds": seconds, "peak_mb": peak}


def measure(kind: str, manifest: Path, output: Path) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, "--one", kind, str(manifest), str(output)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--one", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(*args.one)))
        return
    peaks: list[float] = []
    print(f"{'records':>10} {'run':>9} {'seconds':>8} {'records/s':>10} {'peak MB':>8} {'vs baseline':>11}")
    for size in args.sizes:
        with tempfile.TemporaryDirectory(prefix="labelsift-bench-report-") as scratch:
            manifest = generate(Path(scratch), size)
            base = measure("baseline", manifest, Path(scratch) / "unused")
            made = measure("report", manifest, Path(scratch) / "report.html")
            for row in (base, made):
                ratio, rate = row["seconds"] / base["seconds"], row["records"] / row["seconds"]
                print(
                    f"{size:>10,} {row['kind']:>9} {row['seconds']:>8.1f} {rate:>10,.0f}"
                    f" {row['peak_mb']:>8.0f} {ratio:>10.1f}x"
                )
            peaks.append(made["peak_mb"])
    if len(peaks) > 1:
        print(f"report peak RSS, largest / smallest size: {peaks[-1] / peaks[0]:.2f} (target <= 1.2)")


if __name__ == "__main__":
    main()
