"""The local Rekognition endpoint: wire protocol, shapes, behaviour and controls, over real HTTP."""

from __future__ import annotations

import base64
import http.client
import io
import json
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from PIL import Image

from labelsift_testing.fake_rekognition import (
    HASHED_SCENES,
    SCENES,
    TAXONOMY,
    FakeRekognition,
    ancestors,
    expected_labels,
    image_key_for_bytes,
    image_scenes,
    make_image,
    scene_comment,
)

if TYPE_CHECKING:
    from mypy_boto3_rekognition import RekognitionClient
    from mypy_boto3_s3 import S3Client

pytestmark = pytest.mark.timeout(60)


def client_for(
    fake: FakeRekognition, *, key: str = "testing", secret: str = "testing", attempts: int = 1
) -> RekognitionClient:
    return boto3.session.Session(
        aws_access_key_id=key, aws_secret_access_key=secret, region_name="us-east-1"
    ).client(
        "rekognition",
        endpoint_url=fake.endpoint_url,
        config=Config(retries={"mode": "standard", "total_max_attempts": attempts}, max_pool_connections=150),
    )


def error_code(call: Callable[[], Any]) -> str:
    with pytest.raises(ClientError) as caught:
        call()
    return str(caught.value.response["Error"]["Code"])


def raw_post(
    fake: FakeRekognition, body: dict[str, Any], *, sign_as: str | None = "rekognition"
) -> tuple[int, Any]:
    data = json.dumps(body).encode()
    host = fake.endpoint_url.removeprefix("http://")
    headers = {
        "Content-Type": "application/x-amz-json-1.1",
        "X-Amz-Target": "RekognitionService.DetectLabels",
        "Host": host,
    }
    if sign_as is not None:
        request = AWSRequest(method="POST", url=f"{fake.endpoint_url}/", data=data, headers=headers)
        SigV4Auth(Credentials("testing", "testing"), sign_as, "us-east-1").add_auth(request)
        headers = dict(request.headers.items())
    connection = http.client.HTTPConnection(host, timeout=10)
    try:
        connection.request("POST", "/", body=data, headers=headers)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


# ---- shapes ------------------------------------------------------------------------------


def test_responses_match_the_botocore_service_model(fake_rekognition: FakeRekognition) -> None:
    client = client_for(fake_rekognition)
    responses: list[dict[str, Any]] = []
    for index, scene in enumerate(SCENES):
        image = make_image(scene, seed=index, image_format="PNG" if index % 2 else "JPEG")
        features: list[Any] = ["GENERAL_LABELS", "IMAGE_PROPERTIES"] if index % 3 == 0 else ["GENERAL_LABELS"]
        response = dict(client.detect_labels(Image={"Bytes": image}, MinConfidence=0, Features=features))
        response.pop("ResponseMetadata")
        assert response["LabelModelVersion"] == "3.0"
        assert ("ImageProperties" in response) == ("IMAGE_PROPERTIES" in features)
        responses.append(response)
    assert any(label["Instances"] for response in responses for label in response["Labels"])
    assert any(
        "DominantColors" in instance
        for response in responses
        for label in response["Labels"]
        for instance in label["Instances"]
    )

    # Stubber validates each canned response against the service model (names, types, ranges).
    stubbed = client_for(fake_rekognition)
    with Stubber(stubbed) as stubber:
        for response in responses:
            stubber.add_response("detect_labels", response, {"Image": {"Bytes": b"x"}})
            assert stubbed.detect_labels(Image={"Bytes": b"x"})["Labels"] == response["Labels"]
        stubber.assert_no_pending_responses()


def test_labels_are_deterministic_and_match_expected_labels(fake_rekognition: FakeRekognition) -> None:
    client = client_for(fake_rekognition)
    for seed in range(6):
        image = make_image(seed=seed)  # no marker: scene chosen by hash
        first = client.detect_labels(Image={"Bytes": image}, MinConfidence=0)["Labels"]
        again = client.detect_labels(Image={"Bytes": image}, MinConfidence=0)["Labels"]
        assert first == again == expected_labels(image)
        assert image_scenes(image)[0] in HASHED_SCENES


def test_every_ancestor_of_a_returned_label_is_returned(fake_rekognition: FakeRekognition) -> None:
    client = client_for(fake_rekognition)
    image = make_image(["robin", "archery", "laptop"], seed=3)
    for max_labels in (1, 2, 3, 5, 8, 1000):
        for min_confidence in (0.0, 55.0, 80.0):
            labels = client.detect_labels(
                Image={"Bytes": image}, MaxLabels=max_labels, MinConfidence=min_confidence
            )["Labels"]
            names = {label["Name"] for label in labels}
            for label in labels:
                assert [p["Name"] for p in label["Parents"]] == ancestors(label["Name"])
                assert {p["Name"] for p in label["Parents"]} <= names


def test_taxonomy_shapes_like_rekognition() -> None:
    assert ancestors("Robin") == ["Bird", "Animal"]
    assert ancestors("Bird") == ["Animal"]
    assert TAXONOMY["Person"].aliases == ("Human",)
    labels = {label["Name"]: label for label in expected_labels(make_image("robin"))}
    assert labels["Bird"]["Categories"] == [{"Name": "Animals and Pets"}]
    assert labels["Bird"]["Instances"], "object labels carry boxes"
    for scene in SCENES:
        for seen in SCENES[scene]:
            assert seen.name in TAXONOMY
    assert len(HASHED_SCENES) >= 15


def test_min_confidence_default_and_max_labels(fake_rekognition: FakeRekognition) -> None:
    client = client_for(fake_rekognition)
    image = make_image(["campfire", "person"], seed=5, confidence=75.0)
    everything = expected_labels(image)
    default = client.detect_labels(Image={"Bytes": image})["Labels"]
    assert default == [label for label in everything if label["Confidence"] >= 55.0]
    high = client.detect_labels(Image={"Bytes": image}, MinConfidence=70.0)["Labels"]
    assert high == [label for label in everything if label["Confidence"] >= 70.0]
    assert 0 < len(high) < len(default)
    assert (
        client.detect_labels(Image={"Bytes": image}, MaxLabels=2, MinConfidence=0)["Labels"] == everything[:2]
    )
    assert client.detect_labels(Image={"Bytes": image}, MaxLabels=0)["Labels"] == []
    assert any(label["Confidence"] < 55.0 for label in everything), "some labels sit under the default"


def test_scene_markers_in_jpeg_and_png_and_fixed_confidence() -> None:
    for fmt in ("JPEG", "PNG"):
        image = make_image(["dog", "car"], image_format=fmt)
        assert image_scenes(image) == ["dog", "car"]
        names = {label["Name"] for label in expected_labels(image)}
        assert {"Dog", "Canine", "Mammal", "Pet", "Animal", "Car", "Vehicle", "Transportation"} <= names
    fixed = {
        label["Name"]: label["Confidence"] for label in expected_labels(make_image("bird", confidence=72.5))
    }
    assert fixed["Bird"] == 72.5
    assert scene_comment(["bird", "dog"]) == "labelsift-scene=bird,dog"
    with pytest.raises(ValueError):
        scene_comment("unicorn")
    # Without markers, a realistic spread: a share of images land in the 55-80 review band.
    tops = [expected_labels(make_image(seed=seed))[0]["Confidence"] for seed in range(120)]
    review = [conf for conf in tops if 55.0 <= conf < 80.0]
    assert 5 <= len(review) <= 60
    assert sum(conf >= 88.0 for conf in tops) > 50
    assert expected_labels(make_image("empty")) == []


# ---- validation errors ---------------------------------------------------------------------


def _encode(image: Image.Image, fmt: str) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()


def test_image_validation_errors(fake_rekognition: FakeRekognition) -> None:
    client = client_for(fake_rekognition)
    gif = _encode(Image.new("RGB", (200, 200), "red"), "GIF")
    webp = _encode(Image.new("RGB", (200, 200), "red"), "WEBP")
    tiny = _encode(Image.new("RGB", (79, 200), "red"), "PNG")
    wide = _encode(Image.new("L", (10001, 80)), "PNG")
    big = make_image("dog", size=(100, 100)) + b"\0" * (5 * 1024 * 1024)
    assert error_code(lambda: client.detect_labels(Image={"Bytes": gif})) == "InvalidImageFormatException"
    assert error_code(lambda: client.detect_labels(Image={"Bytes": webp})) == "InvalidImageFormatException"
    assert (
        error_code(lambda: client.detect_labels(Image={"Bytes": b"not an image"}))
        == "InvalidImageFormatException"
    )
    assert error_code(lambda: client.detect_labels(Image={"Bytes": tiny})) == "InvalidParameterException"
    assert error_code(lambda: client.detect_labels(Image={"Bytes": wide})) == "InvalidImageFormatException"
    assert error_code(lambda: client.detect_labels(Image={"Bytes": big})) == "ImageTooLargeException"
    ok = _encode(Image.new("RGB", (80, 10000), "red"), "PNG")
    assert client.detect_labels(Image={"Bytes": ok})["LabelModelVersion"] == "3.0"
    assert fake_rekognition.billed == 1
    assert fake_rekognition.calls_total == 7


# ---- authentication ------------------------------------------------------------------------


def test_authentication(fake_rekognition: FakeRekognition) -> None:
    image = make_image("cat")

    def call(client: RekognitionClient) -> Callable[[], Any]:
        return lambda: client.detect_labels(Image={"Bytes": image})

    assert error_code(call(client_for(fake_rekognition, key="AKIDUNKNOWN"))) == "UnrecognizedClientException"
    assert error_code(call(client_for(fake_rekognition, secret="wrong"))) == "InvalidSignatureException"
    fake_rekognition.add_credentials("AKIDOTHER", "other-secret")
    assert client_for(fake_rekognition, key="AKIDOTHER", secret="other-secret").detect_labels(
        Image={"Bytes": image}
    )
    fake_rekognition.expire_credentials("AKIDOTHER")
    expired = client_for(fake_rekognition, key="AKIDOTHER", secret="other-secret")
    assert error_code(call(expired)) == "ExpiredTokenException"

    body = {"Image": {"Bytes": base64.b64encode(image).decode()}}
    status, payload = raw_post(fake_rekognition, body, sign_as=None)
    assert (status, payload["__type"]) == (400, "UnrecognizedClientException")
    status, payload = raw_post(fake_rekognition, body, sign_as="s3")
    assert (status, payload["__type"]) == (400, "InvalidSignatureException")
    status, payload = raw_post(fake_rekognition, body)
    assert status == 200 and payload["LabelModelVersion"] == "3.0"
    assert fake_rekognition.billed == 2


# ---- faults, quota, counters ----------------------------------------------------------------


def test_one_shot_faults_and_error_statuses(fake_rekognition: FakeRekognition) -> None:
    fake_rekognition.inject("ThrottlingException", "InternalServerError", "AccessDeniedException")
    body = {"Image": {"Bytes": base64.b64encode(make_image("boat")).decode()}}
    answers = [raw_post(fake_rekognition, body) for _ in range(4)]
    assert [(s, p.get("__type")) for s, p in answers] == [
        (400, "ThrottlingException"),
        (500, "InternalServerError"),
        (400, "AccessDeniedException"),
        (200, None),
    ]
    assert all("Message" in p for s, p in answers if s != 200)
    assert fake_rekognition.throttled == 1
    assert fake_rekognition.injected_errors == 2


def test_throttle_every_nth_and_rates(fake_rekognition: FakeRekognition) -> None:
    client = client_for(fake_rekognition)
    image = make_image("horse")
    fake_rekognition.throttle_every = 3
    codes = []
    for _ in range(9):
        try:
            client.detect_labels(Image={"Bytes": image})
            codes.append("ok")
        except ClientError as error:
            codes.append(error.response["Error"]["Code"])
    assert codes == ["ok", "ok", "ThrottlingException"] * 3
    fake_rekognition.reset()
    fake_rekognition.throttle_rate = 0.5
    fake_rekognition.error_rate = 0.5
    outcomes = []
    for _ in range(40):
        try:
            client.detect_labels(Image={"Bytes": image})
            outcomes.append("ok")
        except ClientError as error:
            outcomes.append(error.response["Error"]["Code"])
    assert fake_rekognition.throttled == outcomes.count("ThrottlingException") > 5
    assert fake_rekognition.injected_errors == outcomes.count("InternalServerError") > 3
    assert fake_rekognition.billed == outcomes.count("ok") > 3


def test_tps_quota_is_enforced_and_counted_separately(fake_rekognition: FakeRekognition) -> None:
    client = client_for(fake_rekognition)
    image = make_image("tree")
    fake_rekognition.tps_quota = 5
    outcomes = []
    for _ in range(12):  # far faster than 5/s
        try:
            client.detect_labels(Image={"Bytes": image})
            outcomes.append("ok")
        except ClientError as error:
            outcomes.append(error.response["Error"]["Code"])
    assert outcomes[:5] == ["ok"] * 5  # the burst
    assert outcomes.count("ProvisionedThroughputExceededException") == fake_rekognition.quota_rejections >= 5
    assert fake_rekognition.throttled == 0
    fake_rekognition.quota_error = "ThrottlingException"
    assert error_code(lambda: client.detect_labels(Image={"Bytes": image})) == "ThrottlingException"


def test_counters_and_reset(fake_rekognition: FakeRekognition) -> None:
    client = client_for(fake_rekognition)
    first, second = make_image("cat", seed=1), make_image("dog", seed=2)
    for image in (first, first, second):
        client.detect_labels(Image={"Bytes": image})
    assert fake_rekognition.calls_total == 3
    assert fake_rekognition.calls_by_target() == {"RekognitionService.DetectLabels": 3}
    assert fake_rekognition.calls_by_image(billed_only=True) == {
        image_key_for_bytes(first): 2,
        image_key_for_bytes(second): 1,
    }
    assert all(
        record.region == "us-east-1" and record.access_key == "testing"
        for record in fake_rekognition.records()
    )
    fake_rekognition.latency_s = 0.05
    fake_rekognition.reset()
    assert fake_rekognition.calls_total == 0 and fake_rekognition.latency_s == 0.0


def test_handles_over_100_concurrent_keep_alive_connections(fake_rekognition: FakeRekognition) -> None:
    fake_rekognition.latency_s = 0.3  # keeps all connections open at the same time
    client = client_for(fake_rekognition)
    image = make_image("bicycle")
    errors: list[BaseException] = []
    barrier = threading.Barrier(120)

    def work() -> None:
        try:
            barrier.wait()
            for _ in range(2):
                client.detect_labels(Image={"Bytes": image})
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=work) for _ in range(120)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert fake_rekognition.billed == 240


# ---- S3Object ----------------------------------------------------------------------------------


def test_s3_object_reads_the_local_s3_server(
    fake_rekognition_s3: FakeRekognition, s3_client: S3Client, bucket: str
) -> None:
    client = client_for(fake_rekognition_s3)
    image = make_image("archery", seed=7)
    s3_client.put_object(Bucket=bucket, Key="photos/a b+c.jpg", Body=image)
    labels = client.detect_labels(Image={"S3Object": {"Bucket": bucket, "Name": "photos/a b+c.jpg"}})[
        "Labels"
    ]
    assert labels == [label for label in expected_labels(image) if label["Confidence"] >= 55.0]
    assert fake_rekognition_s3.s3_reads == 1
    assert fake_rekognition_s3.calls_by_image() == {f"s3://{bucket}/photos/a b+c.jpg": 1}

    missing = {"S3Object": {"Bucket": bucket, "Name": "nope.jpg"}}
    assert error_code(lambda: client.detect_labels(Image=missing)) == "InvalidS3ObjectException"  # type: ignore[arg-type]
    s3_client.put_object(Bucket=bucket, Key="notes.txt", Body=b"hello world")
    text = {"S3Object": {"Bucket": bucket, "Name": "notes.txt"}}
    assert error_code(lambda: client.detect_labels(Image=text)) == "InvalidImageFormatException"  # type: ignore[arg-type]
    s3_client.put_object(Bucket=bucket, Key="huge.jpg", Body=image + b"\0" * (15 * 1024 * 1024))
    huge = {"S3Object": {"Bucket": bucket, "Name": "huge.jpg"}}
    assert error_code(lambda: client.detect_labels(Image=huge)) == "ImageTooLargeException"  # type: ignore[arg-type]


def test_runs_as_a_module() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "labelsift_testing.fake_rekognition", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("export AWS_ENDPOINT_URL_REKOGNITION=http://127.0.0.1:")
        url = line.strip().split("=", 1)[1]
        client = boto3.session.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
        ).client("rekognition", endpoint_url=url)
        assert client.detect_labels(Image={"Bytes": make_image("food")})["LabelModelVersion"] == "3.0"
    finally:
        process.terminate()
        process.wait(10)
