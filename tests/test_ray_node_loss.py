"""A worker node lost mid-job is survived: every image ends up with exactly one record, the plain
scan's. The cluster is `ray.cluster_utils.Cluster` in a child process (`ray_node_loss.py`): the
session's own Ray cluster is already joined by this process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from ray_records import comparable, plain, shard_records

from labelsift.manifest import iter_records
from labelsift.scan import ScanOptions
from labelsift.storage import Storage

pytest.importorskip("ray", reason="the ray extra is not installed (pip install -e '.[ray]')")

IMAGES = 160  # 80 batches of 2: the node goes after 4 shards, with most of the job still to do


def test_a_worker_node_lost_mid_job_is_survived_with_one_record_per_image(tmp_path: Path) -> None:
    script = Path(__file__).with_name("ray_node_loss.py")
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path), str(IMAGES)], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["finished"] and result["shards_when_killed"] < IMAGES // 2 - 10, result
    summary = result["summary"]
    assert (summary["scanned"], summary["errors"], summary["stopped"]) == (IMAGES, 0, "exhausted")
    expected = plain(str(tmp_path / "images"), tmp_path / "plain.jsonl", "local", ScanOptions())
    assert expected.scanned == IMAGES
    records = shard_records(Storage(), str(tmp_path / "shards"))
    assert comparable(records) == comparable(list(iter_records(str(tmp_path / "plain.jsonl"))))
