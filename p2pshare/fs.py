"""File-system primitives shared by reading and writing: no-follow opens and stats relative to
directory descriptors, prefix hashing, and turning ``OSError`` into the user's errors."""

from __future__ import annotations

import ctypes
import errno
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from p2pshare import digests
from p2pshare.config import Tuning
from p2pshare.digests import Digest
from p2pshare.errors import DiskFullError, LocalFileError
from p2pshare.files import printable

PREFIX_READ_BYTES = 1024 * 1024

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
UNNAMED_FILE_FLAGS = os.O_WRONLY | getattr(os, "O_TMPFILE", 0) | getattr(os, "O_CLOEXEC", 0)
"""A file without a name in the directory opened (Linux's ``O_TMPFILE``): named later, once
complete, by :func:`link_unnamed`. Without ``O_EXCL``, which would forbid naming it."""


def _read_umask() -> int:
    # os.umask can only be read by setting it; do it once, before any worker thread exists.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


UMASK = _read_umask()


def describe(exc: OSError, path: Path | str) -> LocalFileError:
    """The user's error for ``exc`` while working on ``path`` (a full disk has its own)."""
    shown = printable(str(path))  # its names are the sender's: blanks and controls escaped
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskFullError(
            f"disk full while writing {shown}", peer_message="disk full on the receiving side"
        )
    reason = exc.strerror or type(exc).__name__
    return LocalFileError(f"{shown}: {reason.lower()}")


WRITEBACK_BYTES = 8 * 1024 * 1024
"""A received file's data is handed to the disk every this many bytes (see
:func:`start_writeback`)."""


def _sync_file_range() -> Callable[[int, int, int, int], int] | None:
    """Linux's ``sync_file_range`` (glibc; Python has no binding), or None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        call = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    call.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    call.restype = ctypes.c_int
    return cast("Callable[[int, int, int, int], int]", call)


_SYNC_FILE_RANGE = _sync_file_range()
_SYNC_FILE_RANGE_WAIT_BEFORE = 1
_SYNC_FILE_RANGE_WRITE = 2
_SYNC_FILE_RANGE_WAIT_AFTER = 4


@dataclass(frozen=True)
class Writeback:
    """Which of Linux's page-cache calls a received file's writer makes. Each is there only
    where the system has it; :class:`~p2pshare.config.Tuning` may turn them off. Without
    them nothing is lost: the fsync before a file gets its final name does all the work."""

    start: bool
    """``sync_file_range`` starts each range's writeback (:func:`start_writeback`)."""
    drop_behind: bool
    """Each range is then waited for and dropped from the page cache (:func:`release_written`)."""

    @classmethod
    def choose(cls, tuning: Tuning) -> Writeback:
        start = _SYNC_FILE_RANGE is not None and tuning.linux_calls
        fadvise = hasattr(os, "posix_fadvise") and hasattr(os, "POSIX_FADV_DONTNEED")
        return cls(start, start and fadvise and tuning.drop_behind)


AVAILABLE = Writeback.choose(Tuning())
"""Every call this system has."""


def start_writeback(fd: int, offset: int, length: int, using: Writeback = AVAILABLE) -> bool:
    """Start writing ``length`` bytes of ``fd`` from ``offset`` to the disk, without waiting.

    A received file is fsynced before it gets its final name; written back as it arrives,
    that fsync finds almost nothing left to do (a 256 MiB file: 4 ms instead of 60-80 ms at
    the very end of the transfer). Where it is not available this does nothing, and the
    fsync does all the work, as before; an error here is left for that fsync to report.
    Returns whether the writeback was started."""
    if _SYNC_FILE_RANGE is None or not using.start:
        return False
    return _SYNC_FILE_RANGE(fd, offset, length, _SYNC_FILE_RANGE_WRITE) == 0  # without the GIL


def release_written(fd: int, offset: int, length: int, using: Writeback = AVAILABLE) -> None:
    """Wait until ``length`` bytes of ``fd`` from ``offset`` (whose writeback was started) are
    on the disk, then drop them from the page cache: a received file streams through a few
    MiB of cache instead of filling it.

    The pages freed are the next ones written, so the kernel does not take fresh memory for
    every page of a large file. In a virtual machine that hands free memory back to its host
    (this project's machine: virtio-balloon free page reporting) a page never used before
    costs ~10x a reused one: 2.6 s of CPU per GiB received, more than the rest of the
    writer's work. It also keeps a large receive from evicting the user's cached files and
    from piling up dirty pages for the final fsync, and it throttles the writer to the disk's
    speed (the credit window then holds back the sender). The file is then read from the
    disk if it is opened at once. An error waiting for the writeback is raised here: the wait
    consumes it, so the final fsync would not see it. Does nothing where
    ``sync_file_range`` is missing or with ``P2PSHARE_DROP_BEHIND=0``, and in effect nothing
    on tmpfs (no disk) or overlayfs (whose inode has no pages to write back)."""
    if _SYNC_FILE_RANGE is None or not using.drop_behind:
        return
    flags = _SYNC_FILE_RANGE_WAIT_BEFORE | _SYNC_FILE_RANGE_WRITE | _SYNC_FILE_RANGE_WAIT_AFTER
    if _SYNC_FILE_RANGE(fd, offset, length, flags) != 0:  # without the GIL
        code = ctypes.get_errno()
        # Only these come from sync_file_range itself (with valid arguments); any other code
        # is the writeback's, already consumed by the wait: it must be raised here.
        if code in (errno.ENOSYS, errno.ESPIPE):
            return
        raise OSError(code, os.strerror(code))
    try:
        os.posix_fadvise(fd, offset, length, os.POSIX_FADV_DONTNEED)
    except OSError as exc:  # the advice is only advice; it consumes no writeback error
        if exc.errno not in (errno.EINVAL, errno.ESPIPE, errno.ENOSYS, errno.EOPNOTSUPP):
            raise


_AT_EMPTY_PATH = 0x1000
AtCall = Callable[[int, bytes, int, bytes, int], int]


def at_call(name: str, flags: type[ctypes.c_int | ctypes.c_uint] = ctypes.c_int) -> AtCall | None:
    """Linux libc's ``name`` taking (dir fd, path, dir fd, path, flags), for the calls Python
    has no binding for (``renameat2``; ``linkat`` of a descriptor); None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        call = getattr(ctypes.CDLL(None, use_errno=True), name)
    except (OSError, AttributeError):
        return None
    call.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, flags)
    call.restype = ctypes.c_int
    return cast("AtCall", call)


_LINKAT = at_call("linkat") if hasattr(os, "O_TMPFILE") else None
UNNAMED_FILES = _LINKAT is not None
"""Whether :data:`UNNAMED_FILE_FLAGS` and :func:`link_unnamed` may be tried here (each file
system and kernel may still refuse them: see :func:`link_unnamed`)."""


def link_unnamed(fd: int, dir_fd: int, name: str) -> int:
    """Give the unnamed file ``fd`` (opened with :data:`UNNAMED_FILE_FLAGS`) the name ``name``
    in ``dir_fd``; never replaces anything (EEXIST), never follows a link. 0 or the errno
    (called without the GIL).

    ENOENT from a directory that is still there means this kernel refuses ``AT_EMPTY_PATH``
    to unprivileged callers (before Linux 6.10); EPERM, a sandbox refusing the call."""
    if _LINKAT is None:
        return errno.ENOSYS
    if _LINKAT(fd, b"", dir_fd, os.fsencode(name), _AT_EMPTY_PATH) == 0:
        return 0
    return ctypes.get_errno()


def lstat_at(dir_fd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def hash_prefix(fd: int, length: int, hash: str) -> Digest | None:
    """``hash``'s state over the next ``length`` bytes of ``fd`` (None if it ends sooner)."""
    digest = digests.new(hash)
    remaining = length
    while remaining:
        chunk = os.read(fd, min(PREFIX_READ_BYTES, remaining))
        if not chunk:
            return None
        digest.update(chunk)
        remaining -= len(chunk)
    return digest
