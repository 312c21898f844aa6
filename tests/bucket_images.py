"""Test images in an S3 bucket: a row of scenes (one in five a bird, and `BIRDS`, the selection
that picks them), or one image per scene under several keys (server-side copies)."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from labelsift.select import Selection
from labelsift_testing.fake_rekognition import make_image

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

OTHER_SCENES = ["dog", "campfire", "archery", "car"]


def upload(client: S3Client, bucket: str, scenes: Sequence[str], prefix: str = "raw/") -> list[str]:
    """Put one image per scene at raw/0000.jpg, raw/0001.jpg, ...; returns their URIs in order."""

    def put(item: tuple[int, str]) -> str:
        i, scene = item
        key = f"{prefix}{i:04d}.jpg"
        client.put_object(Bucket=bucket, Key=key, Body=make_image(scene, confidence=90.0, seed=i))
        return f"s3://{bucket}/{key}"

    with ThreadPoolExecutor(16) as pool:
        return list(pool.map(put, enumerate(scenes)))


def every_fifth_is_a_bird(count: int) -> list[str]:
    return ["bird" if i % 5 == 0 else OTHER_SCENES[i % 4] for i in range(count)]


BIRDS = Selection(labels=("Bird",), threshold=60.0)

SCENES = ["bird", "dog", "car", "campfire", "archery"]


def bucket_with_copies(client: S3Client, bucket: str, copies: int = 3) -> dict[str, str]:
    """One image per scene, each also under `copies - 1` other keys (server-side copies keep the
    ETag); returns key -> the scene it shows. Keys sort so that copies are spread among others."""
    keys: dict[str, str] = {}
    for i, scene in enumerate(SCENES):
        body = make_image(scene, confidence=90.0, seed=i)
        for c in range(copies):
            key = f"pile/{c}-{i:02d}-{scene}.jpg"
            client.put_object(Bucket=bucket, Key=key, Body=body)
            keys[key] = scene
    return keys
