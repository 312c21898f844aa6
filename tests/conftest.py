"""Shared fixtures live in one module per service; this file only registers them."""

pytest_plugins = ["fixtures_s3", "fixtures_rekognition", "fixtures_ray"]
