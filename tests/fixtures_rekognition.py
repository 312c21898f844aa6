"""Rekognition fixtures: a local DetectLabels endpoint (real HTTP) and the AWS config pointing at it.

- `fake_rekognition_server`: one endpoint per session (no S3 attached).
- `fake_rekognition`: that endpoint, reset, with the standard AWS configuration (env only) pointing
  at it: credentials testing/testing, region us-east-1, `AWS_ENDPOINT_URL_REKOGNITION`. Retries
  sleep 1/100 of botocore's normal backoff (`fast_retries`).
- `fake_rekognition_s3`: the same, attached to the session's SeaweedFS server for S3Object calls,
  on top of `aws_env` (so S3 and Rekognition share one configuration).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from botocore.retries import standard
from fixtures_s3 import AWS_ENV_TO_CLEAR

from labelsift_testing.fake_rekognition import FakeRekognition
from labelsift_testing.s3_server import SeaweedS3Server

RETRY_SPEEDUP = 0.01


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> float:
    """botocore's real retry logic, with backoff sleeps scaled down so tests stay fast."""
    original = standard.ExponentialBackoff.delay_amount

    def delay_amount(self: standard.ExponentialBackoff, context: Any) -> float:
        return float(original(self, context)) * RETRY_SPEEDUP

    monkeypatch.setattr(standard.ExponentialBackoff, "delay_amount", delay_amount)
    return RETRY_SPEEDUP


@pytest.fixture(scope="session")
def fake_rekognition_server() -> Iterator[FakeRekognition]:
    with FakeRekognition() as fake:
        yield fake


def _point_env_at(
    fake: FakeRekognition, monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    empty = tmp_path_factory.mktemp("aws-config-rekognition")
    (empty / "config").write_text("")
    (empty / "credentials").write_text("")
    for name in AWS_ENV_TO_CLEAR:
        monkeypatch.delenv(name, raising=False)
    env = {
        "AWS_ENDPOINT_URL_REKOGNITION": fake.endpoint_url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(empty / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(empty / "credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def fake_rekognition(
    fake_rekognition_server: FakeRekognition,
    fast_retries: float,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[FakeRekognition]:
    fake = fake_rekognition_server
    fake.reset()
    _point_env_at(fake, monkeypatch, tmp_path_factory)
    yield fake
    fake.reset()


@pytest.fixture
def fake_rekognition_s3(
    aws_env: dict[str, str],
    s3_server: SeaweedS3Server,
    fake_rekognition_server: FakeRekognition,
    fast_retries: float,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[FakeRekognition]:
    fake = fake_rekognition_server
    fake.reset()
    fake.s3_endpoint_url = s3_server.endpoint_url
    fake.s3_access_key = s3_server.access_key
    fake.s3_secret_key = s3_server.secret_key
    monkeypatch.setenv("AWS_ENDPOINT_URL_REKOGNITION", fake.endpoint_url)
    yield fake
    fake.reset()
