"""Reading and merging big manifests: records/s and peak memory at 100,000 and 1,000,000 records.

    python bench/manifest.py [--sizes 100000 1000000]

Each measurement runs in a fresh subprocess so peak memory (ru_maxrss) belongs to it alone.
Baseline, measured in the same run: `json.loads` of every line with nothing kept. Printed ratios:
labelsift's rate against that baseline, and each size's peak memory against the smallest size's
(flat memory means a ratio near 1.0).
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LABELS = ["Bird", "Animal", "Dog", "Cat", "Person", "Car", "Tree", "Plant", "Food", "Building"]


def generate(path: Path, count: int, seed: int) -> None:
    rng = random.Random(seed)
    with path.open("w") as stream:
        for i in range(count):
            labels = [
                {
                    "name": name,
                    "confidence": round(rng.uniform(50, 99.9), 3),
                    "parents": ["Animal"] if name in ("Bird", "Dog", "Cat") else [],
                    "aliases": [],
                    "categories": ["Animals and Pets"],
                    "instances": [{"left": 0.1, "top": 0.2, "width": 0.3, "height": 0.4, "confidence": 88.0}]
                    if name != "Animal"
                    else [],
                }
                for name in rng.sample(LABELS, 3)
            ]
            record = {
                "source": f"s3://raw/images/{i:09d}.jpg",
                "etag": f"{rng.getrandbits(64):016x}",
                "version_id": None,
                "size": rng.randint(10_000, 900_000),
                "width": 1024,
                "height": 768,
                "format": "JPEG",
                "orientation": 1,
                "status": "labeled",
                "error": None,
                "detector": {"name": "rekognition", "model_version": "3.0"},
                "labels": labels,
                "review": [],
                "scanned_at": f"2026-11-{1 + seed:02d}T10:00:00Z",
            }
            stream.write(json.dumps(record, separators=(",", ":")) + "\n")


def child(task: str, paths: list[str]) -> None:
    start = time.perf_counter()
    count = 0
    if task == "baseline":
        for path in paths:
            with open(path) as stream:
                for line in stream:
                    json.loads(line)
                    count += 1
    elif task == "read":
        from labelsift.manifest import iter_records

        for path in paths:
            for _ in iter_records(path):
                count += 1
    elif task == "merge":
        from labelsift.manifest import merge

        with tempfile.TemporaryDirectory() as folder:
            count = merge(paths, str(Path(folder) / "merged.jsonl")).records
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"count": count, "seconds": seconds, "peak_mb": peak_mb}))


def measure(task: str, paths: list[Path]) -> dict[str, float]:
    output = subprocess.run(
        [sys.executable, __file__, "--child", task, *map(str, paths)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result: dict[str, float] = json.loads(output.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--child", nargs="+")
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1:])
        return
    with tempfile.TemporaryDirectory() as folder:
        rows = []
        for size in args.sizes:
            shard_a, shard_b = Path(folder) / f"a{size}.jsonl", Path(folder) / f"b{size}.jsonl"
            generate(shard_a, size, seed=1)
            generate(shard_b, size // 10, seed=2)
            base = measure("baseline", [shard_a])
            read = measure("read", [shard_a])
            merged = measure("merge", [shard_a, shard_b])
            rows.append((size, base, read, merged))
            shard_a.unlink()
            shard_b.unlink()
        smallest = rows[0]
        print(
            f"{'records':>10} {'task':>8} {'records/s':>11} {'vs json.loads':>14} "
            f"{'peak MB':>8} {'peak vs first':>14}"
        )
        for size, base, read, merged in rows:
            base_rate = base["count"] / base["seconds"]
            for name, result, first in (
                ("baseline", base, smallest[1]),
                ("read", read, smallest[2]),
                ("merge", merged, smallest[3]),
            ):
                rate = result["count"] / result["seconds"]
                print(
                    f"{size:>10} {name:>8} {rate:>11,.0f} {rate / base_rate:>14.2f} "
                    f"{result['peak_mb']:>8.1f} {result['peak_mb'] / first['peak_mb']:>14.2f}"
                )


if __name__ == "__main__":
    main()
