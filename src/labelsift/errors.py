"""One error taxonomy: every error labelsift means to raise says what happened, to which object,
and what to do, and carries the exit code the command line ends with.

- `UsageError` (exit 2): the call itself is wrong (an option, an argument, a refused URI).
- `CannotProceed` (exit 3): the call is right but the world is in the way (credentials, a missing
  bucket or file, a destination in use or not ours, a full or read-only disk).
- `BadManifest` (exit 4): a manifest that cannot be read as one (a bad line, a truncated `.gz`).

Anything else that escapes a command is a bug (exit 1). Subclasses keep their own fields (a
storage code, a manifest line number); the exit code comes from the class, never from the caller.
"""

from __future__ import annotations

from typing import ClassVar


class LabelsiftError(Exception):
    """An error the user can act on; `exit_code` is what the command line exits with."""

    exit_code: ClassVar[int] = 3


class UsageError(LabelsiftError, ValueError):
    exit_code: ClassVar[int] = 2


class CannotProceed(LabelsiftError):
    exit_code: ClassVar[int] = 3


class BadManifest(LabelsiftError):
    exit_code: ClassVar[int] = 4
