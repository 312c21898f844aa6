"""S3 fixtures (owned by the storage work)."""
