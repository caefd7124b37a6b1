"""Fixtures for the fault-injection suite: read-only folders and small (full) disks.

Tests run as root in CI, and root ignores file modes, so `chmod 555` does not make a folder read-only.
As root we use real mounts (a read-only bind mount; a size-limited tmpfs); as a normal user, modes work
and a full disk is simulated with RLIMIT_FSIZE in the child (Python ignores SIGXFSZ, so a write past
the limit fails with EFBIG, as a full disk fails with ENOSPC). Only root without mount permission
skips, saying why.
"""
from __future__ import annotations

import functools
import os
import resource
import subprocess
import tempfile
from pathlib import Path
from typing import Callable

import pytest


@functools.lru_cache(maxsize=1)
def can_mount() -> bool:
    """Root with permission to mount (CAP_SYS_ADMIN): tried once with a throw-away tmpfs.
    GHOSTSENT_FAULT_NO_MOUNT=1 forces the fallbacks (to test them where mounting works)."""
    if os.geteuid() != 0 or os.environ.get("GHOSTSENT_FAULT_NO_MOUNT"):
        return False
    with tempfile.TemporaryDirectory() as d:
        ok = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", d], capture_output=True).returncode == 0
        if ok:
            subprocess.run(["umount", d], capture_output=True)
    return ok


def _umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True)


@pytest.fixture
def readonly():
    """make(folder): the existing `folder` becomes read-only for this process and its children
    (contents stay readable). Undone after the test."""
    mounted: list[Path] = []
    moded: list[Path] = []

    def make(folder: Path) -> None:
        if os.geteuid() != 0:
            folder.chmod(0o555)
            moded.append(folder)
        elif can_mount():
            for args in (["mount", "--bind", str(folder), str(folder)],
                         ["mount", "-o", "remount,bind,ro", str(folder)]):
                subprocess.run(args, check=True, capture_output=True)
            mounted.append(folder)
        else:
            pytest.skip("running as root without permission to mount: root ignores file modes, so no read-only "
                        "folder can be made here")

    yield make
    for folder in reversed(mounted):
        _umount(folder)
    for folder in moded:
        folder.chmod(0o755)


class SmallDisk:
    """A folder that holds at most `size` bytes: a tmpfs as root, else RLIMIT_FSIZE in the child
    (pass `preexec` to the child; it is None with a real tmpfs)."""

    def __init__(self, path: Path, size: int, mounted: bool) -> None:
        self.path, self.size, self.mounted = path, size, mounted

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


@pytest.fixture
def small_disk(tmp_path):
    """make(size) -> SmallDisk. Unmounted after the test."""
    disks: list[SmallDisk] = []

    def make(size: int) -> SmallDisk:
        path = tmp_path / f"disk{len(disks)}"
        path.mkdir()
        mounted = can_mount() and subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True).returncode == 0
        disk = SmallDisk(path, size, mounted)
        disks.append(disk)
        return disk

    yield make
    for disk in disks:
        if disk.mounted:
            _umount(disk.path)
