"""Errors about one manifest: a line that cannot be read, compressed data cut short, a file that may
not be read, no room for the index.
"""

from __future__ import annotations

from labelsift.errors import BadManifest, CannotProceed


class ManifestError(BadManifest):
    """A manifest line that cannot be read, with where it is."""

    def __init__(self, uri: str, line_no: int, message: str) -> None:
        super().__init__(
            f"{uri}, line {line_no}: {message}. Fix or delete that line; every other line is intact."
        )
        self.uri = uri
        self.line_no = line_no
        self.reason = message

    def __reduce__(self) -> tuple[type[ManifestError], tuple[str, int, str]]:
        return (type(self), (self.uri, self.line_no, self.reason))


class TruncatedManifest(BadManifest):
    """A compressed manifest whose data stops early or is damaged."""


class ManifestUnreadable(CannotProceed):
    """A manifest that is a folder, or a file that may not be read."""


class IndexSpace(CannotProceed):
    """The temporary folder that holds a manifest's per-source index is full or failing."""

    def __init__(self, folder: str, why: str) -> None:
        super().__init__(
            f"cannot keep the per-source index of the manifest in {folder}: {why}. labelsift keeps it "
            "on disk there while it reads a manifest (a few hundred bytes per image). Free space "
            "there, or point TMPDIR at a folder with room, then run again; nothing was lost."
        )
