"""How much of a file sits in the page cache (Linux's ``mincore``), for the tests of the
receiver's drop-behind; and a scratch directory on a file system that has a page cache to
drop (tmpfs keeps its pages whatever ``posix_fadvise`` says)."""

from __future__ import annotations

import ctypes
import mmap
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = (
    ctypes.c_void_p,
    ctypes.c_size_t,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_long,
)
_libc.munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
_libc.mincore.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p)


def resident_bytes(path: Path, start: int = 0, end: int | None = None) -> int:
    """Bytes of ``path`` (from ``start`` to ``end``, page-aligned) in the page cache now."""
    size = path.stat().st_size
    if not size:
        return 0
    fd = os.open(path, os.O_RDONLY)
    try:
        addr = _libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        if addr in (None, ctypes.c_void_p(-1).value):
            raise OSError(ctypes.get_errno(), "mmap failed")
        try:
            pages = (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE
            vec = ctypes.create_string_buffer(pages)
            if _libc.mincore(addr, size, vec) != 0:
                raise OSError(ctypes.get_errno(), "mincore failed")
            first = start // mmap.PAGESIZE
            last = pages if end is None else -(-end // mmap.PAGESIZE)
            return sum(b & 1 for b in vec.raw[first:last]) * mmap.PAGESIZE
        finally:
            _libc.munmap(addr, size)
    finally:
        os.close(fd)


def _fs_type(path: Path) -> str:
    """The type of the file system that holds ``path``, from /proc/self/mountinfo."""
    best, kind = "", ""
    target = str(path.resolve())
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        mount_point = fields[4].replace("\\040", " ")
        fs_type = fields[fields.index("-") + 1]
        inside = target == mount_point or target.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) >= len(best):
            best, kind = mount_point, fs_type
    return kind


DROPS_PAGES = ("ext4", "xfs", "btrfs")
"""File systems where a range written back and advised away leaves the page cache. Not
tmpfs (no disk behind), not overlayfs (Docker's usual root: its inode has no pages to write
back, so the advice finds them still dirty), not ZFS (its own cache)."""


@contextmanager
def disk_directory() -> Iterator[Path]:
    """A fresh directory on a file system that drops pages (:data:`DROPS_PAGES`): /tmp, or
    /var/tmp, which is on the disk by convention (it outlives reboots) where /tmp is often a
    tmpfs (Debian's default since trixie)."""
    for base in (tempfile.gettempdir(), "/var/tmp"):
        writable = os.path.isdir(base) and os.access(base, os.W_OK)
        if writable and _fs_type(Path(base)) in DROPS_PAGES:
            break
    else:
        pytest.skip(
            "no scratch directory on ext4, xfs or btrfs: the drop-behind does nothing on "
            "tmpfs or overlayfs, by design"
        )
    path = Path(tempfile.mkdtemp(prefix="p2pshare-test-", dir=base))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
