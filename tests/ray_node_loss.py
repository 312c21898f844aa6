"""A Ray scan that loses a worker node mid-job: run as a script by test_ray_node_loss.py.

It starts its own `ray.cluster_utils.Cluster` (a head node that holds the driver and no CPU, two
worker nodes of one CPU, each able to host one labelling actor), scans a local folder with the
offline model, removes one worker node once a few shards are written, and prints what happened as
one JSON line. A separate process because the test session's own Ray cluster is already joined.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

SCENES = ["bird", "dog", "car", "campfire", "archery"]


def make_folder(folder: Path, count: int) -> None:
    from labelsift_testing.fake_rekognition import make_image

    folder.mkdir(parents=True)
    for i in range(count):
        (folder / f"{i:04d}.jpg").write_bytes(make_image(SCENES[i % 5], confidence=90.0, seed=i))


def main(work: Path, count: int) -> dict[str, object]:
    import ray
    from ray.cluster_utils import Cluster

    from labelsift.detectors.factory import DetectorSettings
    from labelsift.distributed.driver import RayOptions, RayRun, ray_scan
    from labelsift.scan import ScanOptions

    images, dest = work / "images", work / "shards"
    make_folder(images, count)
    temp = tempfile.mkdtemp(prefix="lsnode-")  # short: Ray's socket paths must fit in 107 bytes
    os.environ["RAY_TMPDIR"] = temp  # the cluster's address file goes there too, not /tmp/ray
    os.makedirs(os.path.join(temp, "ray"))
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 0, "temp_dir": os.path.join(temp, "ray"), "include_dashboard": False},
    )
    workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
    ray.init(address=cluster.address, log_to_driver=False)
    options = ScanOptions(workers=1)
    ray_options = RayOptions(actors=2, batch_size=2, cpus_per_actor=0.6)
    run = RayRun.for_detector(str(images), str(dest), "local", DetectorSettings(), options, ray_options)
    result: dict[str, object] = {}

    def scan() -> None:
        summary = ray_scan(run)
        result["summary"] = summary.model_dump(mode="json")

    thread = threading.Thread(target=scan)
    thread.start()
    deadline = time.monotonic() + 300
    while thread.is_alive() and time.monotonic() < deadline:
        written = len(list(dest.glob("shard-*.jsonl"))) if dest.exists() else 0
        if written >= 4:
            cluster.remove_node(workers[0], allow_graceful=False)
            result["shards_when_killed"] = written
            break
        time.sleep(0.05)
    thread.join(timeout=600)
    result["finished"] = not thread.is_alive()
    ray.shutdown()
    cluster.shutdown()
    shutil.rmtree(temp, ignore_errors=True)
    return result


if __name__ == "__main__":
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    print(json.dumps(main(Path(sys.argv[1]), int(sys.argv[2]))))
