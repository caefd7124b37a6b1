"""Read-only folders and small (full) disks for fault tests and scripts/fault_soak.py.

Tests run as root in CI, and root ignores file modes, so `chmod 555` does not make a folder read-only.
As root we use real mounts (a read-only bind mount; a size-limited tmpfs); as a normal user, modes work
and a full disk is simulated with RLIMIT_FSIZE in the child (Python ignores SIGXFSZ, so a write past
the limit fails with EFBIG, as a full disk fails with ENOSPC). GHOSTSENT_FAULT_NO_MOUNT=1 forces the
fallbacks, to test them where mounting works.
"""
from __future__ import annotations

import functools
import os
import resource
import subprocess
import tempfile
from pathlib import Path
from typing import Callable


@functools.lru_cache(maxsize=1)
def can_mount() -> bool:
    """Root with permission to mount (CAP_SYS_ADMIN): tried once with a throw-away tmpfs."""
    if os.geteuid() != 0 or os.environ.get("GHOSTSENT_FAULT_NO_MOUNT"):
        return False
    with tempfile.TemporaryDirectory() as d:
        ok = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", d], capture_output=True).returncode == 0
        if ok:
            subprocess.run(["umount", d], capture_output=True)
    return ok


def umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True)


def bind_readonly(folder: Path) -> None:
    """Mount `folder` read-only onto itself (root only)."""
    for args in (["mount", "--bind", str(folder), str(folder)], ["mount", "-o", "remount,bind,ro", str(folder)]):
        subprocess.run(args, check=True, capture_output=True)


class SmallDisk:
    """A folder that holds at most `size` bytes: a tmpfs as root, else RLIMIT_FSIZE in the child
    (pass `preexec` to the child; it is None with a real tmpfs)."""

    def __init__(self, path: Path, size: int) -> None:
        path.mkdir()
        self.path, self.size = path, size
        self.mounted = can_mount() and subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True).returncode == 0

    @property
    def preexec(self) -> Callable[[], None] | None:
        if self.mounted:
            return None
        size = self.size
        return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))

    def grow(self, size: int) -> None:
        """Free space (a bigger tmpfs; for RLIMIT_FSIZE the next child simply gets the new limit)."""
        self.size = size
        if self.mounted:
            subprocess.run(["mount", "-o", f"remount,size={size}", str(self.path)], check=True, capture_output=True)

    def close(self) -> None:
        if self.mounted:
            umount(self.path)
            self.mounted = False
