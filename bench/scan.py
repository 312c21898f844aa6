"""Scan throughput against the local Rekognition endpoint, with a sequential loop as baseline.

    python bench/scan.py [--images 2000] [--latency 0.1] [--quota 50] [--baseline-images 200]

One run starts a real S3 server (SeaweedFS) and the local Rekognition endpoint on 127.0.0.1, puts
the images in a bucket, then measures, all in the same run:
  1. baseline: a sequential loop, one DetectLabels call after another (by S3Object), no concurrency;
  2. labelsift scan under the endpoint's quota (requests/s), with a client-side rate just under it;
  3. labelsift scan with no quota: the ceiling, to show the client is not the bottleneck.
It prints images/s, the fraction of the quota sustained, the throttled share, and the ratio to the
baseline.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import boto3

from labelsift.detectors.rekognition import RekognitionDetector
from labelsift.scan import ScanOptions, scan
from labelsift.select import Selection
from labelsift.storage import Storage
from labelsift_testing.fake_rekognition import FakeRekognition, make_image
from labelsift_testing.s3_server import SeaweedS3Server

SCENES = ["bird", "dog", "campfire", "archery", "car"]


def _serve_fake(s3_endpoint: str, commands: Connection) -> None:
    with FakeRekognition(s3_endpoint_url=s3_endpoint) as fake:
        commands.send(fake.endpoint_url)
        while True:
            verb, name, value = commands.recv()
            if verb == "stop":
                return
            if verb == "set":
                setattr(fake, name, value)
            elif verb == "reset":
                fake.reset()
            commands.send(getattr(fake, name) if verb == "get" else None)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class RemoteFake:
    """The Rekognition endpoint in its own process, so it does not share the client's GIL."""

    def __init__(self, s3_endpoint: str) -> None:
        self._here, there = multiprocessing.Pipe()
        self._process = multiprocessing.Process(target=_serve_fake, args=(s3_endpoint, there), daemon=True)
        self._process.start()
        self.endpoint_url: str = self._here.recv()
        self.pid = self._process.pid or 0

    def ask(self, verb: str, name: str = "", value: object = None) -> Any:
        self._here.send((verb, name, value))
        return self._here.recv()

    def configure(self, *, latency: float, quota: float | None) -> None:
        self.ask("reset")
        self.ask("set", "latency_s", latency)
        self.ask("set", "tps_quota", quota)

    def close(self) -> None:
        self._here.send(("stop", "", None))
        self._process.join(10)


def put_images(bucket: str, count: int) -> None:
    client = boto3.client("s3")
    client.create_bucket(Bucket=bucket)
    bodies = [make_image(scene, confidence=90.0, seed=i) for i, scene in enumerate(SCENES * 4)]

    def put(i: int) -> None:
        # distinct bytes per object: a copy would be labelled once (dedupe), which is not throughput
        client.put_object(
            Bucket=bucket, Key=f"raw/{i:05d}.jpg", Body=bodies[i % len(bodies)] + i.to_bytes(4, "big")
        )

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(put, range(count)))


def sequential_loop(bucket: str, count: int) -> float:
    """The plain way: list, then for each key one DetectLabels call and a decision, in turn."""
    rekognition = boto3.client("rekognition")
    s3 = boto3.client("s3")
    keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="raw/")
            for o in page.get("Contents", [])][:count]  # fmt: skip
    start = time.perf_counter()
    hits = 0
    for key in keys:
        response = rekognition.detect_labels(
            Image={"S3Object": {"Bucket": bucket, "Name": key}}, MinConfidence=50
        )
        hits += any(label["Name"] == "Bird" for label in response["Labels"])
    return len(keys) / (time.perf_counter() - start)


def labelsift_scan(
    bucket: str, folder: Path, name: str, *, workers: int, rate: float | None
) -> tuple[float, int]:
    storage = Storage()
    detector = RekognitionDetector(storage=storage, rate_limit=rate, max_attempts=10)
    start = time.perf_counter()
    summary = scan(
        f"s3://{bucket}/raw/",
        str(folder / f"{name}.jsonl"),
        detector,
        storage,
        ScanOptions(Selection(labels=("Bird",)), workers=workers),
    )
    seconds = time.perf_counter() - start
    return summary.labeled / seconds, summary.errors


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--baseline-images", type=int, default=200)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--quota", type=float, default=50.0)
    parser.add_argument("--workers", type=int, default=16)
    args = parser.parse_args()
    with SeaweedS3Server() as s3, tempfile.TemporaryDirectory() as folder:
        fake = RemoteFake(s3.endpoint_url)
        os.environ.update(s3.env())
        os.environ.update(
            {"AWS_ENDPOINT_URL_REKOGNITION": fake.endpoint_url, "AWS_DEFAULT_REGION": "us-east-1"}
        )
        put_images("bench", args.images)
        fake.configure(latency=args.latency, quota=args.quota)
        baseline = sequential_loop("bench", args.baseline_images)
        fake.configure(latency=args.latency, quota=args.quota)
        quota_rate, quota_errors = labelsift_scan(
            "bench", Path(folder), "quota", workers=args.workers, rate=args.quota * 0.98
        )
        calls = fake.ask("get", "calls_total")
        rejected = fake.ask("get", "quota_rejections") + fake.ask("get", "throttled")
        fake.configure(latency=args.latency, quota=None)
        pids = {"labelsift": os.getpid(), "endpoint": fake.pid, "S3 server": s3.pid}
        before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        ceiling, ceiling_errors = labelsift_scan("bench", Path(folder), "ceiling", workers=64, rate=None)
        cpu_ms = {name: 1000 * (cpu_seconds(pid) - before[name]) / args.images for name, pid in pids.items()}
        fake.close()

    print(f"images: {args.images}, endpoint latency {args.latency * 1000:.0f} ms, quota {args.quota:g}/s")
    print(f"baseline, a sequential loop ({args.baseline_images} images): {baseline:7.1f} images/s")
    print(
        f"labelsift under the quota ({args.workers} workers, client rate {args.quota * 0.98:g}/s): "
        f"{quota_rate:7.1f} images/s = {quota_rate / args.quota:.2f} of the quota, "
        f"{quota_rate / baseline:.1f}x the baseline, throttled {rejected}/{calls} calls "
        f"({100 * rejected / max(1, calls):.1f}%), errors {quota_errors}"
    )
    print(
        f"labelsift with no quota (64 workers): {ceiling:7.1f} images/s = "
        f"{ceiling / baseline:.1f}x the baseline, errors {ceiling_errors}"
    )
    print(
        "CPU per image in that run (2 cores shared by all three): "
        + ", ".join(f"{name} {ms:.1f} ms" for name, ms in cpu_ms.items())
    )


if __name__ == "__main__":
    main()
