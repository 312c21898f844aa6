"""Shared fixtures live in one module per service; this file only registers them (and the helper
modules whose own asserts pytest should explain like a test's)."""

import pytest

pytest_plugins = ["fixtures_s3", "fixtures_rekognition", "fixtures_ray"]

pytest.register_assert_rewrite("ray_records")
