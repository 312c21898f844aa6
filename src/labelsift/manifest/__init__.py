"""The manifest: JSON Lines, one self-contained record per image, append-only.

Readers stream through smart-open (local path, `.gz`, `s3://`) and keep memory flat whatever the
length: the per-source bookkeeping that resuming, de-duplicating and merging need lives in a
temporary SQLite file (`index`), not in Python dictionaries. Writers (`writer`) append one whole
line at a time and flush it, so a killed process leaves at most one torn last line, which the next
writer repairs (`repairing`).

One module per concern: `files` (where a manifest is, what may be read or appended), `lines`
(reading lines), `parsing` (a line as a record or verdict, its source key), `index`, `repeats`
and `survey` (the first pass: what must be known before the effective records are read),
`records` (the effective records), `repairing`, `writer`, `merging`, `lock` (one writer per
manifest) and `inputs` (a folder or prefix of shards read as one manifest). No module shares a
name with a function the package exports (`labelsift.manifest.merge` is the function).
"""

from labelsift.manifest.errors import IndexSpace as IndexSpace
from labelsift.manifest.errors import ManifestError as ManifestError
from labelsift.manifest.errors import ManifestUnreadable as ManifestUnreadable
from labelsift.manifest.errors import TruncatedManifest as TruncatedManifest
from labelsift.manifest.files import exists as exists
from labelsift.manifest.files import is_local as is_local
from labelsift.manifest.files import local_manifest as local_manifest
from labelsift.manifest.files import refuse_special_file as refuse_special_file
from labelsift.manifest.files import require_existing as require_existing
from labelsift.manifest.index import IndexEntry as IndexEntry
from labelsift.manifest.index import SourceIndex as SourceIndex
from labelsift.manifest.index import build_index as build_index
from labelsift.manifest.lines import iter_lines as iter_lines
from labelsift.manifest.lock import ManifestInUse as ManifestInUse
from labelsift.manifest.lock import ManifestLock as ManifestLock
from labelsift.manifest.merging import MergeResult as MergeResult
from labelsift.manifest.merging import merge as merge
from labelsift.manifest.parsing import iter_raw as iter_raw
from labelsift.manifest.parsing import iter_sources as iter_sources
from labelsift.manifest.parsing import parse_line as parse_line
from labelsift.manifest.parsing import to_line as to_line
from labelsift.manifest.records import effective_lines as effective_lines
from labelsift.manifest.records import iter_records as iter_records
from labelsift.manifest.records import iter_records_mentioning as iter_records_mentioning
from labelsift.manifest.records import records_from as records_from
from labelsift.manifest.repairing import repair as repair
from labelsift.manifest.survey import FirstPass as FirstPass
from labelsift.manifest.survey import Line as Line
from labelsift.manifest.survey import Span as Span
from labelsift.manifest.survey import first_pass as first_pass
from labelsift.manifest.survey import span_lines as span_lines
from labelsift.manifest.writer import ManifestWriter as ManifestWriter
from labelsift.manifest.writer import append_verdict as append_verdict
from labelsift.manifest.writer import write_records as write_records
