"""The Ray scan against the plain scan on the same images, the same cores, in the same run.

    python bench/ray_scan.py [--images 360] [--workers 2]

A local folder of `--images` copies of the demo photos (duplicates are not folded: `dedupe=False`
in every run, so each image is labelled), the offline model. Measured in the same run:
- `labelsift scan` with `--workers` threads (the baseline), images/s;
- `ray.init(num_cpus=2)`, the local cluster's start-up, seconds (reported apart);
- `--engine ray` with 1 and 2 actors (`--actor-threads` labelling threads each), images/s over
  the whole `ray_scan` call (actors' start and model load included) and in steady state (from the
  first 16 images done to the end, for both engines); the ratios to the baseline.
Target: 2 actors >= 0.85 of the plain scan.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from importlib import resources
from pathlib import Path

from labelsift.detectors.factory import DetectorSettings, build_detector
from labelsift.distributed.driver import RayOptions, RayRun, ray_scan
from labelsift.scan import ScanOptions, ScanProgress, scan
from labelsift.storage import Storage


def make_folder(folder: Path, count: int) -> None:
    photos = sorted(Path(str(resources.files("labelsift") / "demo" / "photos")).glob("*.jpg"))
    folder.mkdir(parents=True)
    for index in range(count):
        shutil.copyfile(photos[index % len(photos)], folder / f"{index:05d}.jpg")


class Clock:
    """Images/s over the whole call, and in steady state: from the first 16 images done on."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.first: tuple[float, int] | None = None

    def progress(self, progress: ScanProgress) -> None:
        if self.first is None and progress.scanned >= 16:
            self.first = (time.perf_counter(), progress.scanned)

    def rates(self, scanned: int) -> tuple[float, float]:
        end = time.perf_counter()
        at, done = self.first or (self.start, 0)
        return scanned / (end - self.start), (scanned - done) / (end - at)


def plain_rate(folder: Path, work: Path, workers: int) -> tuple[float, float]:
    storage = Storage()
    detector = build_detector("local", storage, DetectorSettings())
    options = ScanOptions(workers=workers, dedupe=False)
    clock = Clock()
    summary = scan(
        str(folder), str(work / "plain.jsonl"), detector, storage, options, on_progress=clock.progress
    )
    return clock.rates(summary.scanned)


def ray_rate(folder: Path, dest: Path, actors: int, threads: int) -> tuple[float, float]:
    options = ScanOptions(workers=threads, dedupe=False)
    ray_options = RayOptions(actors=actors, batch_size=16)
    run = RayRun.for_detector(str(folder), str(dest), "local", DetectorSettings(), options, ray_options)
    clock = Clock()
    summary = ray_scan(run, on_progress=clock.progress)
    return clock.rates(summary.scanned)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=360)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--actor-threads", type=int, default=1)
    args = parser.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    work = Path(tempfile.mkdtemp(prefix="lsbray-"))
    try:
        folder = work / "images"
        make_folder(folder, args.images)
        whole, steady = plain_rate(folder, work, args.workers)
        print(
            f"plain scan, {args.workers} workers: {whole:.1f} images/s, {steady:.1f} in steady state "
            f"({args.images} images)"
        )
        start = time.perf_counter()
        ray.init(num_cpus=2, include_dashboard=False, _temp_dir=str(work / "ray"), log_to_driver=False)
        print(f"ray.init(num_cpus=2): {time.perf_counter() - start:.1f} s (start-up, not in the rates)")
        for actors in (1, 2):
            ray_whole, ray_steady = ray_rate(folder, work / f"shards-{actors}", actors, args.actor_threads)
            print(
                f"ray, {actors} actor(s): {ray_whole:.1f} images/s = {ray_whole / whole:.2f} of the plain "
                f"scan; steady state {ray_steady:.1f} = {ray_steady / steady:.2f}"
            )
        ray.shutdown()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
