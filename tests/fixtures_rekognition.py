"""Rekognition fixtures (owned by the Rekognition work)."""
