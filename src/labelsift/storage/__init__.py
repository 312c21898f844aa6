"""One interface over `s3://bucket/prefix` and local folders: list, stat, read, write, copy.

Endpoints, credentials and regions come only from the standard AWS configuration (environment,
profiles, `AWS_ENDPOINT_URL_S3`). Every failure surfaces as a `StorageError` with a stable code.

One module per concern: `store` (the `Storage` interface), `paths` (S3 URIs and local paths),
`local` (local files: checked sources, etags, bounded reads, whole writes), `s3_reads` (GETs
pinned to an etag, streamed within a limit) and `errors` (every failure mapped to a StorageError).
"""

from labelsift.image_types import IMAGE_EXTENSIONS as IMAGE_EXTENSIONS
from labelsift.storage.errors import StorageError as StorageError
from labelsift.storage.faults import storage_error as storage_error
from labelsift.storage.paths import is_s3 as is_s3
from labelsift.storage.paths import join as join
from labelsift.storage.paths import relative_key as relative_key
from labelsift.storage.paths import split_s3 as split_s3
from labelsift.storage.store import ObjectInfo as ObjectInfo
from labelsift.storage.store import Storage as Storage
