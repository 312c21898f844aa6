"""An export's receipt: which files it wrote in its destination, so that only those are ever
replaced or deleted by a later export.

The receipt is JSON Lines (one line per file keeps a receipt of a million images streamable):
the first line is a `ReceiptHeader`, each following line a `ReceiptFile`. A folder export keeps it
at `DEST/.labelsift-receipt.jsonl`; a single-file export (Ground Truth, review queue) beside its
output, as `OUTPUT.labelsift-receipt.jsonl`. It is written whole or not at all (temporary name,
then rename; one PUT on S3).

A receipt is trusted only as far as it checks out: every path must be a plain relative path (no
`..`, no `.`, no leading `/`, no backslash, no NUL) under the destination; a line that is not is
ignored (its file is then not labelsift's). A header that is not a labelsift receipt stops the
export (`UntrustedReceipt`, exit 3): labelsift deletes nothing on the word of a file it cannot read.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Annotated, Literal, NamedTuple

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from labelsift.errors import CannotProceed
from labelsift.models import ByteCount, utc_now

from .common import check_relative, dump_json

RECEIPT_SUFFIX = ".labelsift-receipt.jsonl"
FOLDER_RECEIPT = RECEIPT_SUFFIX  # DEST/.labelsift-receipt.jsonl
PENDING_SUFFIX = ".labelsift-pending.jsonl"  # what an interrupted export had written (S3)
KIND = "labelsift-export-receipt"


def _safe_relative(path: str) -> str:
    if "\0" in path:
        raise ValueError("a path with a NUL byte")
    return check_relative(path)


RelativePath = Annotated[str, AfterValidator(_safe_relative)]


class ReceiptHeader(BaseModel):
    """The first line: what wrote the files listed after it."""

    model_config = ConfigDict(extra="ignore")

    kind: Literal["labelsift-export-receipt"] = "labelsift-export-receipt"
    version: Literal[1] = 1
    format: str = Field(description="The export's format: custom-labels, coco, yolo, voc, groundtruth-…")
    manifest: str = Field(description="The manifest the export read.")
    destination: str = Field(description="The destination as given.")
    created_at: datetime = Field(default_factory=utc_now)
    complete: bool = Field(default=True, description="False for a pending receipt of an interrupted export.")
    sources: dict[str, int] = Field(
        default_factory=dict, description="Source roots the copied images came from, and how many."
    )


class ReceiptFile(BaseModel):
    """One file the export wrote, relative to the destination ('/'-separated)."""

    model_config = ConfigDict(extra="ignore")

    path: RelativePath = Field(
        description="Relative to the destination, '/'-separated; no '..', '.', empty segment or leading '/'."
    )
    size: ByteCount = Field(description="Bytes, as written; a file of another size is no longer labelsift's.")
    sha256: str | None = Field(
        default=None, pattern=r"^[0-9a-f]{64}$", description="Of the bytes written; None for a copied image."
    )
    source: str | None = Field(default=None, description="The image a copy was made from.")
    source_etag: str | None = Field(
        default=None, description="The source's etag as the manifest recorded it."
    )

    @model_validator(mode="after")
    def _written_or_copied(self) -> ReceiptFile:
        # labelsift lists a file it wrote with its SHA-256 and a copy with its source: a line with
        # neither (`{"path": "notes/todo.txt", "size": 7}`, typed in by hand) lists nothing of ours
        if self.sha256 is None and self.source is None:
            raise ValueError("neither sha256 nor source: not a file labelsift wrote")
        return self


class Entry(NamedTuple):
    """A `ReceiptFile` once checked, as the exporters keep it (a million of them fit in memory)."""

    path: str
    size: int
    sha256: str | None = None
    source: str | None = None
    source_etag: str | None = None

    def line(self) -> str:
        return dump_json({k: v for k, v in self._asdict().items() if v is not None}) + "\n"


class UntrustedReceipt(CannotProceed):
    """A receipt labelsift cannot read as its own."""


def render(header: ReceiptHeader, files: Iterable[Entry]) -> Iterator[str]:
    """The receipt's lines, each with its newline."""
    yield dump_json(header.model_dump(mode="json")) + "\n"
    for entry in files:
        yield entry.line()


def parse(where: str, lines: Iterable[str]) -> tuple[ReceiptHeader, dict[str, Entry]]:
    """The header and the trusted entries (by path) of a receipt's lines."""
    it = iter(lines)
    first = next(it, "")
    try:
        header = ReceiptHeader.model_validate(json.loads(first))
    except (ValueError, ValidationError) as error:
        raise UntrustedReceipt(
            f"{where} is not a labelsift export receipt ({_why(error)}). labelsift replaces and deletes "
            "only the files a receipt of its own lists: move that file away (or choose another "
            "destination) and run again."
        ) from error
    files: dict[str, Entry] = {}
    for text in it:
        try:
            checked = ReceiptFile.model_validate(json.loads(text))
        except (ValueError, ValidationError):
            continue  # not trusted: the file it names is treated as someone else's
        files[checked.path] = Entry(
            checked.path, checked.size, checked.sha256, checked.source, checked.source_etag
        )
    return header, files


def _why(error: Exception) -> str:
    if isinstance(error, ValidationError):
        first = error.errors()[0]
        return f"{'.'.join(str(p) for p in first['loc']) or 'header'}: {first['msg']}"
    return "its first line is not JSON"
