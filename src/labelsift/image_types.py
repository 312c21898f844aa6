"""The file extensions labelsift treats as images (lower case, with the dot)."""

from __future__ import annotations

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".webp", ".gif", ".tif", ".tiff", ".bmp"}
)
