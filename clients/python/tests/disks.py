"""Real storage faults for the server's data directory, as the Rust
storage-fault tests make them: a tiny tmpfs that fills up (a full disk), and
an ext4 on a loop device whose backing tmpfs fills up (an I/O error on
commit). Mounting needs root; where it is refused the test is skipped,
saying why."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


def _run(*cmd: str | Path) -> bool:
    try:
        return subprocess.run([str(c) for c in cmd], capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted on ``path``."""
    path.mkdir(parents=True, exist_ok=True)
    if not _run("mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", path):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield path
    finally:
        _run("umount", "-l", path)


@contextlib.contextmanager
def failing_disk(base: Path) -> Iterator[tuple[Path, Path]]:
    """(an ext4 mount point, the tmpfs under its loop device's image):
    filling the tmpfs makes the device's writes fail."""
    with tmpfs(base / "backing", "48m") as backing:
        img, fs = backing / "fs.img", base / "fs"
        fs.mkdir(parents=True, exist_ok=True)
        ok = _run("truncate", "-s", "64M", img) and _run("mkfs.ext4", "-q", img)
        if not (ok and _run("mount", "-o", "loop", img, fs)):
            pytest.skip("cannot set up a loop-mounted ext4 on tmpfs here (needs root, losetup, mkfs.ext4)")
        try:
            yield fs, backing
        finally:
            _run("umount", "-l", fs)
            _run("losetup", "-d", img)
