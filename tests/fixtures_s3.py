"""S3 fixtures: one real SeaweedFS server per test session, fresh buckets per test."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
import pytest
from botocore.exceptions import ClientError

from labelsift.storage import Storage
from labelsift_testing.s3_server import S3Identity, SeaweedS3Server

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import ObjectIdentifierTypeDef

AWS_ENV_TO_CLEAR = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ENDPOINT_URL",
    "AWS_REGION",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
)


READ_ONLY = S3Identity("readonly", "readonly-secret", ("Read",))
READ_AND_LIST = S3Identity("lister", "lister-secret", ("Read", "List"))


@pytest.fixture(scope="session")
def s3_server() -> Iterator[SeaweedS3Server]:
    """The session's server; it also accepts READ_ONLY (GetObject only, no listing) and
    READ_AND_LIST (no writes, no deletes) credentials."""
    with SeaweedS3Server(identities=[READ_ONLY, READ_AND_LIST]) as server:
        yield server


@pytest.fixture
def aws_env(
    s3_server: SeaweedS3Server, monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    """Point the standard AWS configuration (and nothing else) at the test server."""
    empty = tmp_path_factory.mktemp("aws-config")
    config_file, credentials_file = empty / "config", empty / "credentials"
    config_file.write_text("")
    credentials_file.write_text("")
    for name in AWS_ENV_TO_CLEAR:
        monkeypatch.delenv(name, raising=False)
    env = {
        **s3_server.env(),
        "AWS_CONFIG_FILE": str(config_file),
        "AWS_SHARED_CREDENTIALS_FILE": str(credentials_file),
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def s3_client(aws_env: dict[str, str]) -> S3Client:
    return boto3.session.Session().client("s3")


def _empty_and_delete(client: S3Client, bucket: str) -> None:
    with contextlib.suppress(ClientError):
        client.delete_bucket(Bucket=bucket)  # SeaweedFS deletes non-empty buckets at once
        return
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys: list[ObjectIdentifierTypeDef] = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        if keys:
            client.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
    client.delete_bucket(Bucket=bucket)


@pytest.fixture
def make_bucket(s3_client: S3Client) -> Iterator[Callable[[], str]]:
    """A factory of fresh, uniquely named, empty buckets, all removed after the test."""
    made: list[str] = []

    def make() -> str:
        name = f"test-{uuid.uuid4().hex[:20]}"
        s3_client.create_bucket(Bucket=name)
        made.append(name)
        return name

    yield make
    for name in made:
        _empty_and_delete(s3_client, name)


@pytest.fixture
def bucket(make_bucket: Callable[[], str]) -> str:
    return make_bucket()


@pytest.fixture
def storage(aws_env: dict[str, str]) -> Storage:
    return Storage()


@pytest.fixture
def local_root(tmp_path: Path) -> Path:
    root = tmp_path / "local"
    root.mkdir()
    return root
