"""Small file systems and mount namespaces for tests of full and read-only disks (run as root)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

import pytest


@cache
def can_unshare(script: str) -> bool:
    """Whether `unshare -rm sh -c SCRIPT` (a private mount namespace) succeeds here."""
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, timeout=30)
    return probe.returncode == 0


def can_mount_tmpfs() -> bool:
    return can_unshare("mount -t tmpfs -o size=4k tmpfs /mnt")


def can_bind_read_only() -> bool:
    return can_unshare("mount --bind /tmp /mnt && mount -o remount,bind,ro /mnt")


@contextmanager
def tiny_disk(mount: Path, size: str = "64k") -> Iterator[Path]:
    """A tmpfs of `size` mounted at `mount` for the block; the test is skipped where that is refused."""
    mount.mkdir(parents=True, exist_ok=True)
    if subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)], capture_output=True
    ).returncode:
        pytest.skip("cannot mount a small file system here")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)
