"""Fixtures for the fault-injection suite: read-only folders and small (full) disks (see mounts.py)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # harness, mounts, scenarios

from mounts import SmallDisk, bind_readonly, can_mount, umount  # noqa: E402


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
            bind_readonly(folder)
            mounted.append(folder)
        else:
            pytest.skip("running as root without permission to mount: root ignores file modes, so no read-only "
                        "folder can be made here")

    yield make
    for folder in reversed(mounted):
        umount(folder)
    for folder in moded:
        folder.chmod(0o755)


@pytest.fixture
def small_disk(tmp_path):
    """make(size) -> SmallDisk under tmp_path; unmounted after the test."""
    disks: list[SmallDisk] = []

    def make(size: int) -> SmallDisk:
        disks.append(SmallDisk(tmp_path / f"disk{len(disks)}", size))
        return disks[-1]

    yield make
    for disk in disks:
        disk.close()
