"""RekognitionDetector over real HTTP against the local endpoint (and the local S3 server)."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from PIL import Image

from labelsift.detectors.base import Detection, Detector, DetectorError, ImageInput
from labelsift.detectors.rekognition import RateLimiter, RekognitionDetector
from labelsift.storage import Storage
from labelsift_testing.fake_rekognition import (
    FakeRekognition,
    expected_labels,
    image_key_for_bytes,
    make_image,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

pytestmark = pytest.mark.timeout(60)
SECRET = "s3cr3t-never-printed"


def expected_names(image: bytes, min_confidence: float = 50.0) -> list[str]:
    return [label["Name"] for label in expected_labels(image) if label["Confidence"] >= min_confidence]


def never_read() -> bytes:
    raise AssertionError("the detector read the bytes of an S3Object image")


def s3_input(bucket: str, key: str, data: bytes, fmt: str = "JPEG", **extra: Any) -> ImageInput:
    return ImageInput(uri=f"s3://{bucket}/{key}", read=never_read, format=fmt, size=len(data), **extra)


def local_input(path: Path, counter: list[int] | None = None) -> ImageInput:
    def read() -> bytes:
        if counter is not None:
            counter.append(1)
        return path.read_bytes()

    return ImageInput(uri=str(path), read=read)


def encode(image: Image.Image, fmt: str, **options: Any) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **options)
    return out.getvalue()


class RegionStorage(Storage):
    """A Storage whose buckets live in a chosen region (the local S3 server has only one)."""

    def __init__(self, region: str) -> None:
        super().__init__()
        self.region = region

    def bucket_region(self, bucket: str) -> str:
        return self.region


# ---- happy paths -------------------------------------------------------------------------------


def test_s3_object_path_reads_no_bytes(
    fake_rekognition_s3: FakeRekognition, s3_client: S3Client, bucket: str, storage: Storage
) -> None:
    image = make_image("robin", seed=11)
    s3_client.put_object(Bucket=bucket, Key="birds/0001.jpg", Body=image)
    detector = RekognitionDetector(storage)
    protocol: Detector = detector  # the Detector protocol, checked by mypy
    assert protocol.billable is True and detector.info.model_version is None

    detection = detector.detect(s3_input(bucket, "birds/0001.jpg", image))

    assert isinstance(detection, Detection)
    assert [label.name for label in detection.labels] == expected_names(image)
    assert detection.model_version == "3.0" and detector.info.model_version == "3.0"
    bird = next(label for label in detection.labels if label.name == "Bird")
    assert bird.parents == ["Animal"] and bird.categories == ["Animals and Pets"] and bird.instances
    robin = next(label for label in detection.labels if label.name == "Robin")
    assert robin.parents == ["Bird", "Animal"]
    assert fake_rekognition_s3.calls_by_image(billed_only=True) == {f"s3://{bucket}/birds/0001.jpg": 1}
    assert fake_rekognition_s3.s3_reads == 1
    assert fake_rekognition_s3.bytes_received < 1000 < len(image)


def test_s3_object_version_is_sent(
    fake_rekognition_s3: FakeRekognition, s3_client: S3Client, bucket: str, storage: Storage
) -> None:
    s3_client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    old, new = make_image("dog", seed=1), make_image("laptop", seed=2)
    first = s3_client.put_object(Bucket=bucket, Key="x.jpg", Body=old)["VersionId"]
    s3_client.put_object(Bucket=bucket, Key="x.jpg", Body=new)
    detection = RekognitionDetector(storage).detect(s3_input(bucket, "x.jpg", old, version_id=first))
    assert [label.name for label in detection.labels] == expected_names(old)
    assert fake_rekognition_s3.calls_by_image() == {f"s3://{bucket}/x.jpg?versionId={first}": 1}


def test_local_files_are_sent_as_bytes(fake_rekognition: FakeRekognition, tmp_path: Path) -> None:
    image = make_image("campfire", seed=3, image_format="PNG")
    path = tmp_path / "fire.png"
    path.write_bytes(image)
    reads: list[int] = []
    detection = RekognitionDetector().detect(local_input(path, reads))
    assert reads == [1]
    assert [label.name for label in detection.labels] == expected_names(image)
    assert fake_rekognition.calls_by_image(billed_only=True) == {image_key_for_bytes(image): 1}


def test_min_confidence_and_max_labels(fake_rekognition: FakeRekognition, tmp_path: Path) -> None:
    image = make_image(["person", "bicycle"], confidence=75.0)
    path = tmp_path / "ride.jpg"
    path.write_bytes(image)
    detection = RekognitionDetector(min_confidence=70.0, max_labels=3).detect(local_input(path))
    assert [label.name for label in detection.labels] == expected_names(image, 70.0)[:3]
    assert len(expected_names(image, 70.0)) > 3
    low = RekognitionDetector(min_confidence=0.0).detect(local_input(path))
    assert [label.name for label in low.labels] == expected_names(image, 0.0)
    assert any(label.confidence < 55.0 for label in low.labels)  # all labels kept, no filter


def test_formats_rekognition_refuses_are_transcoded_before_the_call(
    fake_rekognition_s3: FakeRekognition, s3_client: S3Client, bucket: str, storage: Storage, tmp_path: Path
) -> None:
    webp = encode(Image.new("RGB", (300, 200), "green"), "WEBP")
    s3_client.put_object(Bucket=bucket, Key="a.webp", Body=webp)
    item = ImageInput(
        uri=f"s3://{bucket}/a.webp",
        read=lambda: s3_client.get_object(Bucket=bucket, Key="a.webp")["Body"].read(),
        format="WEBP",
        size=len(webp),
    )
    detection = RekognitionDetector(storage).detect(item)
    assert detection.labels
    assert fake_rekognition_s3.s3_reads == 0  # sent as bytes
    (record,) = fake_rekognition_s3.records()
    assert record.status == 200 and record.image is not None and record.image.startswith("bytes:")


def test_image_rejected_from_s3_is_retried_as_prepared_bytes(
    fake_rekognition_s3: FakeRekognition, s3_client: S3Client, bucket: str, storage: Storage
) -> None:
    # Named .jpg but really a GIF: the service refuses the S3Object; the detector transcodes.
    gif = encode(Image.new("RGB", (200, 200), "blue"), "GIF")
    s3_client.put_object(Bucket=bucket, Key="liar.jpg", Body=gif)
    item = ImageInput(
        uri=f"s3://{bucket}/liar.jpg",
        read=lambda: s3_client.get_object(Bucket=bucket, Key="liar.jpg")["Body"].read(),
        size=len(gif),
    )
    detection = RekognitionDetector(storage).detect(item)
    assert detection.labels
    assert [r.error for r in fake_rekognition_s3.records()] == ["InvalidImageFormatException", None]


def test_oversize_or_out_of_range_s3_objects_go_as_bytes(
    fake_rekognition_s3: FakeRekognition, s3_client: S3Client, bucket: str, storage: Storage
) -> None:
    image = make_image("boat")
    s3_client.put_object(Bucket=bucket, Key="boat.jpg", Body=image)
    detector = RekognitionDetector(storage)
    uri = f"s3://{bucket}/boat.jpg"
    for item in (
        ImageInput(uri=uri, read=lambda: image, format="JPEG", size=16 * 1024 * 1024),
        ImageInput(uri=uri, read=lambda: image, format="JPEG", size=len(image), width=12000, height=9000),
    ):
        assert detector.detect(item).labels
    assert fake_rekognition_s3.s3_reads == 0
    assert fake_rekognition_s3.calls_by_image() == {image_key_for_bytes(image): 2}


def test_bucket_in_another_region_gets_a_client_there(
    fake_rekognition_s3: FakeRekognition, s3_client: S3Client, bucket: str
) -> None:
    image = make_image("horse")
    s3_client.put_object(Bucket=bucket, Key="h.jpg", Body=image)
    detector = RekognitionDetector(RegionStorage("eu-west-1"))
    assert detector.detect(s3_input(bucket, "h.jpg", image)).labels
    assert fake_rekognition_s3.records()[-1].region == "eu-west-1"
    assert fake_rekognition_s3.s3_reads == 1
    clients = []
    threads = [
        threading.Thread(target=lambda: clients.append(detector.client("eu-west-1"))) for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(client) for client in clients}) == 1

    # A region without Rekognition: the bytes travel to the configured region instead.
    elsewhere = RekognitionDetector(RegionStorage("af-south-1"))
    item = ImageInput(uri=f"s3://{bucket}/h.jpg", read=lambda: image, format="JPEG", size=len(image))
    assert elsewhere.detect(item).labels
    last = fake_rekognition_s3.records()[-1]
    assert last.region == "us-east-1" and last.image == image_key_for_bytes(image)


# ---- errors --------------------------------------------------------------------------------------


@pytest.fixture
def photo(tmp_path: Path) -> ImageInput:
    path = tmp_path / "photo.jpg"
    path.write_bytes(make_image("cat"))
    return local_input(path)


def detector_error(detector: RekognitionDetector, item: ImageInput) -> DetectorError:
    with pytest.raises(DetectorError) as caught:
        detector.detect(item)
    return caught.value


@pytest.mark.parametrize(
    ("code", "fatal"),
    [
        ("InvalidS3ObjectException", False),
        ("InvalidParameterException", False),
        ("ImageTooLargeException", False),
        ("InvalidImageFormatException", False),
        ("AccessDeniedException", True),
        ("InternalServerError", False),
        ("ThrottlingException", False),
        ("ProvisionedThroughputExceededException", False),
    ],
)
def test_service_errors_map_to_detector_errors(
    fake_rekognition: FakeRekognition, photo: ImageInput, code: str, fatal: bool
) -> None:
    fake_rekognition.inject(*[code] * 3)
    error = detector_error(RekognitionDetector(max_attempts=3), photo)
    assert (error.code, error.fatal, error.billable) == (code, fatal, False)
    assert photo.uri in error.message
    retried = code in ("InternalServerError", "ThrottlingException", "ProvisionedThroughputExceededException")
    assert fake_rekognition.calls_total == (3 if retried else 1)
    assert fake_rekognition.billed == 0


def test_missing_s3_object(
    fake_rekognition_s3: FakeRekognition, bucket: str, storage: Storage, s3_client: S3Client
) -> None:
    error = detector_error(RekognitionDetector(storage), s3_input(bucket, "gone.jpg", b"x" * 100))
    assert (error.code, error.fatal, error.billable) == ("InvalidS3ObjectException", False, False)
    assert f"s3://{bucket}/gone.jpg" in error.message and "region" in error.message


@pytest.mark.parametrize(
    ("key", "secret", "expire", "code"),
    [
        ("AKIDUNKNOWN", SECRET, False, "UnrecognizedClientException"),
        ("AKIDLABELSIFT", "wrong-" + SECRET, False, "InvalidSignatureException"),
        ("AKIDLABELSIFT", SECRET, True, "ExpiredTokenException"),
    ],
)
def test_bad_credentials_are_fatal_and_never_printed(
    fake_rekognition: FakeRekognition, photo: ImageInput, key: str, secret: str, expire: bool, code: str
) -> None:
    fake_rekognition.add_credentials("AKIDLABELSIFT", SECRET)
    if expire:
        fake_rekognition.expire_credentials("AKIDLABELSIFT")
    session = boto3.session.Session(aws_access_key_id=key, aws_secret_access_key=secret)
    error = detector_error(RekognitionDetector(session=session), photo)
    assert (error.code, error.fatal) == (code, True)
    assert SECRET not in str(error) and SECRET not in error.message


def test_no_credentials_and_no_region_are_fatal(
    fake_rekognition: FakeRekognition, photo: ImageInput, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    error = detector_error(RekognitionDetector(), photo)
    assert (error.code, error.fatal) == ("NoRegion", True)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    error = detector_error(RekognitionDetector(), photo)
    assert (error.code, error.fatal) == ("NoCredentials", True)
    assert fake_rekognition.calls_total == 0


def test_unreachable_endpoint_and_timeouts(
    fake_rekognition: FakeRekognition, photo: ImageInput, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_rekognition.latency_s = 1.0
    error = detector_error(RekognitionDetector(read_timeout=0.2, max_attempts=1), photo)
    assert (error.code, error.fatal, error.billable) == ("Timeout", False, True)
    fake_rekognition.latency_s = 0.0
    monkeypatch.setenv("AWS_ENDPOINT_URL_REKOGNITION", "http://127.0.0.1:9")  # discard port: closed
    error = detector_error(RekognitionDetector(connect_timeout=0.5, max_attempts=1), photo)
    assert (error.code, error.fatal, error.billable) == ("EndpointConnectionError", False, False)
    assert "AWS_ENDPOINT_URL_REKOGNITION" in error.message


def test_too_small_and_corrupt_images_fail_before_any_call(
    fake_rekognition: FakeRekognition, tmp_path: Path
) -> None:
    tiny = tmp_path / "tiny.png"
    tiny.write_bytes(encode(Image.new("RGB", (60, 200)), "PNG"))
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    detector = RekognitionDetector()
    assert (detector_error(detector, local_input(tiny)).code, detector.billable) == ("ImageTooSmall", True)
    error = detector_error(detector, local_input(broken))
    assert (error.code, error.billable, error.fatal) == ("CorruptImage", False, False)
    missing = ImageInput(
        uri=str(tmp_path / "missing.jpg"), read=lambda: (tmp_path / "missing.jpg").read_bytes()
    )
    assert detector_error(detector, missing).code == "ReadFailed"
    assert fake_rekognition.calls_total == 0


# ---- throughput --------------------------------------------------------------------------------


def run_parallel(detector: RekognitionDetector, items: list[ImageInput], workers: int) -> list[Detection]:
    results: list[Detection | None] = [None] * len(items)
    errors: list[BaseException] = []
    lock = threading.Lock()
    queue = list(enumerate(items))

    def work() -> None:
        while True:
            with lock:
                if not queue:
                    return
                index, item = queue.pop()
            try:
                results[index] = detector.detect(item)
            except BaseException as error:
                errors.append(error)

    threads = [threading.Thread(target=work) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    return [result for result in results if result is not None]


def reader(data: bytes) -> Callable[[], bytes]:
    return lambda: data


def make_items(count: int) -> list[ImageInput]:
    images = [make_image(seed=seed) for seed in range(count)]
    return [ImageInput(uri=f"/photos/{index}.jpg", read=reader(data)) for index, data in enumerate(images)]


def test_throttling_is_retried_until_every_call_succeeds(fake_rekognition: FakeRekognition) -> None:
    fake_rekognition.throttle_rate = 0.2
    items = make_items(40)
    results = run_parallel(RekognitionDetector(max_attempts=5), items, workers=8)
    assert len(results) == 40
    assert fake_rekognition.throttled > 0
    assert fake_rekognition.billed == 40
    assert set(fake_rekognition.calls_by_image(billed_only=True).values()) == {1}  # nothing paid twice


def test_adaptive_retry_mode_also_recovers(fake_rekognition: FakeRekognition) -> None:
    fake_rekognition.inject("ThrottlingException")
    results = run_parallel(
        RekognitionDetector(retry_mode="adaptive", max_attempts=3), make_items(2), workers=1
    )
    assert len(results) == 2 and fake_rekognition.throttled == 1 and fake_rekognition.billed == 2


def test_rate_limit_keeps_under_the_quota(fake_rekognition: FakeRekognition) -> None:
    fake_rekognition.tps_quota = 12.0
    limit = 10.0
    items = make_items(16)
    started = time.monotonic()
    run_parallel(RekognitionDetector(rate_limit=limit), items, workers=6)
    elapsed = time.monotonic() - started
    times = sorted(record.at for record in fake_rekognition.records())
    assert len(times) == 16
    assert fake_rekognition.quota_rejections == 0
    assert elapsed >= (len(times) - 1) / limit * 0.95
    # Server-side arrival times carry scheduling jitter on a busy machine: allow a little slack.
    measured = (len(times) - 1) / (times[-1] - times[0])
    assert measured <= limit * 1.15


def test_without_rate_limit_the_quota_bites_but_retries_recover(fake_rekognition: FakeRekognition) -> None:
    # Six workers contend for 20 tokens a second; an image fails only if every one of its attempts
    # meets an empty bucket, which 8 attempts made rare but not impossible on a loaded machine.
    fake_rekognition.tps_quota = 20.0
    run_parallel(RekognitionDetector(max_attempts=20), make_items(30), workers=6)
    assert fake_rekognition.quota_rejections > 0
    assert fake_rekognition.billed == 30


def test_rate_limiter_spacing() -> None:
    limiter = RateLimiter(50.0)
    stamps: list[float] = []
    lock = threading.Lock()

    def take() -> None:
        for _ in range(5):
            limiter.acquire()
            with lock:
                stamps.append(time.monotonic())

    threads = [threading.Thread(target=take) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stamps.sort()
    assert stamps[-1] - stamps[0] >= 19 * 0.02 * 0.95  # 20 grants, at most 50 a second
    with pytest.raises(ValueError):
        RateLimiter(0)


def test_constructor_validates(fake_rekognition: FakeRekognition) -> None:
    bad: list[Callable[[], object]] = [
        lambda: RekognitionDetector(min_confidence=101),
        lambda: RekognitionDetector(max_labels=0),
        lambda: RekognitionDetector(max_attempts=0),
        lambda: RekognitionDetector(retry_mode="legacy"),  # type: ignore[arg-type]
    ]
    for make in bad:
        with pytest.raises(ValueError):
            make()
