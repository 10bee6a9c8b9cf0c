"""File-system primitives shared by reading and writing: no-follow opens and stats relative to
directory descriptors, prefix hashing, and turning ``OSError`` into the user's errors."""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path

from p2pshare.errors import DiskFullError, LocalFileError

PREFIX_READ_BYTES = 1024 * 1024

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


def _read_umask() -> int:
    # os.umask can only be read by setting it; do it once, before any worker thread exists.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


UMASK = _read_umask()


def describe(exc: OSError, path: Path | str) -> LocalFileError:
    """The user's error for ``exc`` while working on ``path`` (a full disk has its own)."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskFullError(
            f"disk full while writing {path}", peer_message="disk full on the receiving side"
        )
    reason = exc.strerror or type(exc).__name__
    return LocalFileError(f"{path}: {reason.lower()}")


def lstat_at(dir_fd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def hash_prefix(fd: int, length: int) -> hashlib._Hash | None:
    """SHA-256 state over the next ``length`` bytes of ``fd`` (None if it ends sooner)."""
    digest = hashlib.sha256()
    remaining = length
    while remaining:
        chunk = os.read(fd, min(PREFIX_READ_BYTES, remaining))
        if not chunk:
            return None
        digest.update(chunk)
        remaining -= len(chunk)
    return digest
