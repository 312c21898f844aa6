"""StorageError: a storage failure with a stable code, the object it concerns and what to do."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from labelsift import imagelimits
from labelsift.errors import CannotProceed

if TYPE_CHECKING:
    pass


class StorageError(CannotProceed):
    """A storage operation failed. `code` is stable; `fatal` means no further operation can succeed."""

    def __init__(self, code: str, uri: str, message: str, *, fatal: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.uri = uri
        self.message = message
        self.fatal = fatal

    def __reduce__(self) -> tuple[Any, ...]:
        return (self.__class__, (self.code, self.uri, self.message), {"fatal": self.fatal})


def changed_error(uri: str, action: str) -> StorageError:
    return StorageError(
        "Changed",
        uri,
        f"Could not {action} {uri}: the object changed after it was listed (its etag differs). "
        "List the source again to pick up the new version.",
    )


def too_large_error(uri: str, size: int, limit: int) -> StorageError:
    return StorageError("TooLarge", uri, imagelimits.too_large_message(uri, size, limit))
