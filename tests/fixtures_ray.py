"""Ray fixtures: ONE local Ray cluster per test session (`ray.init(num_cpus=2)`), started only when
a test asks for it.

Its processes are started from an environment pointing the standard AWS configuration at the
session's SeaweedFS server and local Rekognition endpoint, with token auth off
(`RAY_AUTH_MODE=disabled`), its own temporary folder, and `tests/` on PYTHONPATH so actors can
import test helpers; labelsift itself is installed (editable) in the venv the workers run.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from labelsift_testing.fake_rekognition import FakeRekognition
from labelsift_testing.s3_server import SeaweedS3Server

TESTS = Path(__file__).resolve().parent


def ray_environment(s3_server: SeaweedS3Server, rekognition: FakeRekognition, config: Path) -> dict[str, str]:
    (config / "config").write_text("")
    (config / "credentials").write_text("")
    return {
        **s3_server.env(),
        "AWS_ENDPOINT_URL_REKOGNITION": rekognition.endpoint_url,
        "AWS_CONFIG_FILE": str(config / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(config / "credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "RAY_AUTH_MODE": "disabled",
        "RAY_USAGE_STATS_ENABLED": "0",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])),
    }


@pytest.fixture(scope="session")
def ray_cluster(
    s3_server: SeaweedS3Server,
    fake_rekognition_server: FakeRekognition,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    """The session's Ray cluster; yields its address (for `--ray-address` in CLI tests)."""
    ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install -e '.[ray]')")
    temp = tempfile.mkdtemp(prefix="lsray-")  # short: Ray's socket paths must fit in 107 bytes
    env = ray_environment(s3_server, fake_rekognition_server, tmp_path_factory.mktemp("ray-aws"))
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        context = ray.init(num_cpus=2, include_dashboard=False, _temp_dir=temp, log_to_driver=False)
    try:
        yield str(context.address_info["address"])
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)
