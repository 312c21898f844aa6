"""Export throughput and memory on large manifests, annotations only (no image copies).

    python bench/export.py                    # 100,000 and 1,000,000 records
    python bench/export.py --sizes 20000      # a quick look

For each size it writes a synthetic manifest (streaming) in a temporary folder, then runs each
annotation format (coco, yolo labels only, voc, groundtruth boxes), a baseline (`json.loads` of
every line) and `read` (the exporters' reader alone: every record's view,
`iter_records_mentioning` with no word; the ceiling of any export in one process) in a fresh
subprocess each, so every peak is that run's own. After yolo and after voc, `yolo-files` and
`voc-files` create as many files as that format wrote, of its mean file size, in its folder layout
(yolo: train and val folders; voc: one `Annotations` folder), with nothing else: the floor this
disk sets for a format with one file per image, reported as manifest records/s like the rest.
Exports spread their per-record work over worker processes (one per core,
`labelsift.exporters.pipeline`); the baseline and `read` run in one.
It prints records/s, the peak RSS of the main process, the largest worker's peak, the main's growth
over its RSS before the export started, the exporter/baseline speed ratio, and the
largest/smallest-size ratio of main + workers peaks (target <= 1.2). Between runs it waits for
the disk to settle (`sync`), so no run pays for the writeback of the files of the one before.
Imports happen before the clock starts. `--out-dir /dev/shm` writes the exports to memory: the
exporters' own speed, without this machine's disk (whose file creation `files` measures).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

FORMATS = ("coco", "yolo", "voc", "groundtruth")
TAXONOMY = [
    ("Bird", ["Animal"]),
    ("Dog", ["Pet", "Animal", "Mammal"]),
    ("Cat", ["Pet", "Animal", "Mammal"]),
    ("Car", ["Vehicle", "Transportation"]),
    ("Tree", ["Plant"]),
    ("Person", []),
]
PARENTS = sorted({p for _, ps in TAXONOMY for p in ps})


def _instance(rng: random.Random) -> dict[str, float]:
    left, top = rng.uniform(-0.02, 0.9), rng.uniform(-0.02, 0.9)
    return {
        "left": round(left, 4),
        "top": round(top, 4),
        "width": round(rng.uniform(0.0005, 1.0 - max(left, 0.0)), 4),
        "height": round(rng.uniform(0.01, 1.0 - max(top, 0.0)), 4),
        "confidence": round(rng.uniform(40, 99.9), 2),
    }


def generate(path: str, count: int, seed: int = 7) -> None:
    """A manifest of `count` labelled records, written line by line."""
    rng = random.Random(seed)
    detector = {"name": "bench", "model_version": "1"}
    with open(path, "w", encoding="utf-8") as stream:
        for i in range(count):
            labels: list[dict[str, Any]] = []
            for name, parents in rng.sample(TAXONOMY, rng.randint(1, 3)):
                instances = [_instance(rng) for _ in range(rng.randint(0, 3))]
                labels.append(
                    {
                        "name": name,
                        "confidence": round(rng.uniform(30, 99.9), 2),
                        "parents": parents,
                        "aliases": [],
                        "categories": [],
                        "instances": instances,
                    }
                )
            for parent in {p for label in labels for p in label["parents"]}:
                labels.append(
                    {
                        "name": parent,
                        "confidence": 99.0,
                        "parents": [],
                        "aliases": [],
                        "categories": [],
                        "instances": [],
                    }
                )
            record = {
                "source": f"s3://bench-raw/photos/{i % 997:03d}/{i:08d}.jpg",
                "etag": f"{i:032x}",
                "size": rng.randint(20_000, 4_000_000),
                "width": rng.choice((640, 1024, 1920, 4032)),
                "height": rng.choice((480, 768, 1080, 3024)),
                "format": "JPEG",
                "status": "labeled",
                "detector": detector,
                "labels": labels,
                "scanned_at": "2026-11-29T10:00:00Z",
            }
            stream.write(json.dumps(record, separators=(",", ":")) + "\n")


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def run_one(fmt: str, manifest: str, out: str) -> dict[str, Any]:
    """Runs in the child: one export (or the baseline), timed, with its peak RSS."""
    from labelsift.exporters.coco import export_coco
    from labelsift.exporters.groundtruth import export_groundtruth
    from labelsift.exporters.pipeline import Parallel
    from labelsift.exporters.voc import export_voc
    from labelsift.exporters.yolo import export_yolo
    from labelsift.manifest import iter_records_mentioning
    from labelsift.select import Selection

    selection = Selection(("Bird", "Dog", "Car"), threshold=60)  # imports above: not timed
    before = _rss_mb()
    start = time.perf_counter()
    records = 0
    files = 0
    size = 0
    if fmt.startswith("files="):  # the disk's floor for one file per image: bare create-write-close
        count, size, folders = (int(n) for n in fmt.split("=", 1)[1].split(","))
        data = b"0" * size
        splits: tuple[str, ...] = ("train", "val") if folders == 2 else ("all",)
        for split in splits:
            os.makedirs(os.path.join(out, split))
        for i in range(count):
            split = splits[1] if folders == 2 and i % 5 == 0 else splits[0]
            path = os.path.join(out, split, f"photos_{i % 997:03d}_{i:08d}-{i:012x}.txt")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.write(fd, data)
            os.close(fd)
        with open(manifest, encoding="utf-8") as stream:
            records = sum(1 for _ in stream)
    elif fmt == "baseline":
        with open(manifest, encoding="utf-8") as stream:
            for line in stream:
                json.loads(line)
                records += 1
    elif fmt == "read":
        for _ in iter_records_mentioning(manifest, []):
            records += 1
    elif fmt == "coco":
        records = export_coco(manifest, out, selection).records
    elif fmt == "yolo":
        summary = export_yolo(manifest, out, selection, copy_images=False)
        records, files = summary.records, summary.files_written - 1  # not data.yaml
    elif fmt == "voc":
        summary = export_voc(manifest, out, selection, copy_images=False)
        records, files = summary.records, summary.files_written - 3  # not the lists, labels.txt
    elif fmt == "groundtruth":
        records = export_groundtruth(manifest, os.path.join(out, "output.manifest"), selection).records
    else:
        raise SystemExit(f"unknown format {fmt}")
    seconds = time.perf_counter() - start
    if fmt in ("yolo", "voc") and files:  # the mean size of an annotation file, after the clock
        folder = os.path.join(out, "labels") if fmt == "yolo" else os.path.join(out, "Annotations")
        size = round(sum(entry.stat().st_size for entry in _walk(folder)) / files)
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0  # the largest worker
    return {
        "records": records,
        "seconds": seconds,
        "peak_mb": _rss_mb(),
        "before_mb": before,
        "worker_mb": workers,
        "files": files,
        "file_bytes": size,
        "workers": Parallel().worker_count() if fmt in FORMATS else 0,
    }


def _walk(folder: str) -> Iterator[os.DirEntry[str]]:
    for entry in os.scandir(folder):
        if entry.is_dir():
            yield from _walk(entry.path)
        else:
            yield entry


def measure(fmt: str, manifest: str, out_dir: str) -> dict[str, Any]:
    out = tempfile.mkdtemp(prefix=f"out-{fmt}-", dir=out_dir)
    try:
        done = subprocess.run(
            [sys.executable, __file__, "--child", fmt, manifest, out],
            check=True,
            capture_output=True,
            text=True,
        )
    finally:
        shutil.rmtree(out, ignore_errors=True)
        os.sync()
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _filesystem(path: str) -> str:
    """The type of the filesystem holding `path` (Linux: the longest matching mount point)."""
    best, kind = "", "unknown filesystem"
    try:
        with open("/proc/mounts", encoding="utf-8") as mounts:
            for line in mounts:
                _, point, fstype, *_ = line.split()
                inside = (os.path.realpath(path) + "/").startswith(point.rstrip("/") + "/")
                if inside and len(point) > len(best):
                    best, kind = point, fstype
    except OSError:
        pass
    return kind


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--formats", nargs="+", default=list(FORMATS))
    parser.add_argument(
        "--out-dir",
        help="where the exports write (default: beside the manifest, in the system's temporary "
        "folder); e.g. /dev/shm to take the disk out of the figures",
    )
    parser.add_argument("--child", nargs=3, metavar=("FORMAT", "MANIFEST", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_one(*args.child)))
        return
    results: dict[tuple[str, int], dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="labelsift-bench-") as tmp:
        for size in args.sizes:
            manifest = os.path.join(tmp, f"manifest-{size}.jsonl")
            start = time.perf_counter()
            generate(manifest, size)
            print(
                f"\n{size:,} records: manifest {os.path.getsize(manifest) / 1e6:.0f} MB "
                f"generated in {time.perf_counter() - start:.1f} s; exports write to "
                f"{args.out_dir or tmp} ({_filesystem(args.out_dir or tmp)})"
            )
            header = (
                "run",
                "records/s",
                "seconds",
                "workers",
                "main MB",
                "worker MB",
                "growth MB",
                "vs baseline",
            )
            print("{:<12} {:>10} {:>8} {:>8} {:>8} {:>10} {:>10} {:>12}".format(*header))
            runs = ["baseline", "read", *args.formats]
            for one_per_image in ("yolo", "voc"):
                if one_per_image in runs:
                    runs.insert(runs.index(one_per_image) + 1, f"{one_per_image}-files")
            for fmt in runs:
                name = fmt
                if fmt.endswith("-files"):  # as many files as the format wrote, of its mean size
                    made = results[(fmt.removesuffix("-files"), size)]
                    name = f"files={made['files']},{made['file_bytes']},{2 if fmt == 'yolo-files' else 1}"
                r = measure(name, manifest, args.out_dir or tmp)
                results[(fmt, size)] = r
                rate = r["records"] / r["seconds"]
                base = results[("baseline", size)]
                ratio = (base["records"] / base["seconds"]) / rate
                print(
                    f"{fmt:<12} {rate:>10,.0f} {r['seconds']:>8.1f} {r['workers']:>8} {r['peak_mb']:>8.1f} "
                    f"{r['worker_mb']:>10.1f} {r['peak_mb'] - r['before_mb']:>10.1f} {ratio:>11.1f}x"
                )
            os.remove(manifest)
    if len(args.sizes) > 1:
        small, large = min(args.sizes), max(args.sizes)
        print(f"\npeak RSS (main + each worker) ratio {large:,} / {small:,} records (target <= 1.2):")
        for fmt in ["baseline", "read", *args.formats]:
            big, little = results[(fmt, large)], results[(fmt, small)]
            total = (big["peak_mb"] + big["workers"] * big["worker_mb"]) / (
                little["peak_mb"] + little["workers"] * little["worker_mb"]
            )
            print(f"  {fmt:<12} {total:.2f}")


if __name__ == "__main__":
    main()
