"""Reading files to send and writing files received. Blocking: call from a worker thread.

A received file is written to a fresh temporary file in its target directory (created with
O_EXCL, so an existing file or symlink there is never followed) and reaches its final name only
after its SHA-256 matched, by ``link`` (which refuses to replace anything) or, with
``--overwrite``, ``replace``. Mode bits are limited to rwx; setuid and friends are dropped.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

from p2pshare import messages as m
from p2pshare.errors import DeclinedError, DiskFullError, IntegrityError, LocalFileError

TEMP_PREFIX = ".p2pshare-"
TEMP_SUFFIX = ".part"
FREE_SPACE_MARGIN_BYTES = 16 * 1024 * 1024


def _read_umask() -> int:
    # os.umask can only be read by setting it; do it once, before any worker thread exists.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def _describe(exc: OSError, path: Path | str) -> LocalFileError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskFullError(f"disk full while writing {path}")
    reason = exc.strerror or type(exc).__name__
    return LocalFileError(f"{path}: {reason.lower()}")


class FileSource:
    """A regular file opened for sending; hashes what it reads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._file = open(path, "rb")  # noqa: SIM115 - closed by close()
            st = os.fstat(self._file.fileno())
        except OSError as exc:
            raise _describe(exc, path) from None
        if not stat.S_ISREG(st.st_mode):
            self._file.close()
            raise LocalFileError(f"{path}: not a regular file")
        self.size = st.st_size
        self.entry = m.FileEntry(
            path.name, st.st_size, stat.S_IMODE(st.st_mode) & 0o777, st.st_mtime
        )
        self._hash = hashlib.sha256()
        self.read_bytes = 0

    def read(self, nbytes: int) -> bytes:
        try:
            data = self._file.read(nbytes)
        except OSError as exc:
            raise _describe(exc, self.path) from None
        if len(data) != nbytes:
            raise LocalFileError(f"{self.path}: the file changed while it was being sent")
        self._hash.update(data)
        self.read_bytes += len(data)
        return data

    def hexdigest(self) -> str:
        if self._file.read(1):
            raise LocalFileError(f"{self.path}: the file grew while it was being sent")
        return self._hash.hexdigest()

    def close(self) -> None:
        self._file.close()


@dataclass(frozen=True)
class Target:
    """Where one received file goes."""

    final: Path
    overwrite: bool

    @property
    def directory(self) -> Path:
        return self.final.parent


def resolve_target(output: Path | None, name: str, overwrite: bool) -> Target:
    """The final path for a file the sender calls ``name`` (already checked by files.py).

    ``output`` is the user's ``--output``: an existing directory receives ``name`` inside it;
    anything else is the file name to use. An existing file is refused without ``overwrite``,
    before a single byte is transferred.
    """
    if output is None:
        final = Path.cwd() / name
    elif output.is_dir():
        final = output / name
    else:
        final = output
        if not final.parent.is_dir():
            raise LocalFileError(f"{final.parent}: no such directory")
    if final.is_dir():
        raise DeclinedError(f"{final} is a directory; not replacing it")
    if os.path.lexists(final) and not overwrite:
        raise DeclinedError(f"{final} already exists; pass --overwrite to replace it")
    return Target(final, overwrite)


def check_free_space(directory: Path, nbytes: int) -> None:
    free = shutil.disk_usage(directory).free
    if free < nbytes + FREE_SPACE_MARGIN_BYTES:
        raise DiskFullError(
            f"not enough free space in {directory}: {nbytes:,} bytes needed, {free:,} free"
        )


class FileSink:
    """A temporary file next to the target that becomes the target once verified."""

    def __init__(self, target: Target, entry: m.FileEntry) -> None:
        self.target = target
        self.entry = entry
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        for attempt in range(100):
            suffix = os.urandom(6).hex()
            self.temp = target.directory / f"{TEMP_PREFIX}{suffix}{TEMP_SUFFIX}"
            try:
                fd = os.open(self.temp, flags, 0o600)
                break
            except FileExistsError:
                if attempt == 99:
                    raise
            except OSError as exc:
                raise _describe(exc, target.directory) from None
        self._file = os.fdopen(fd, "wb")
        self._hash = hashlib.sha256()
        self.written = 0

    def write(self, data: bytes) -> None:
        try:
            self._file.write(data)
        except OSError as exc:
            raise _describe(exc, self.target.final) from None
        self._hash.update(data)
        self.written += len(data)

    def finish(self, expected_sha256: str) -> str:
        """Verify and move into place; on any failure the temporary file is removed."""
        try:
            try:
                self._file.flush()
                os.fsync(self._file.fileno())
                os.fchmod(self._file.fileno(), ((self.entry.mode & 0o777) | 0o600) & ~_UMASK)
            except OSError as exc:
                raise _describe(exc, self.target.final) from None
            finally:
                self._file.close()
            digest = self._hash.hexdigest()
            if digest != expected_sha256:
                raise IntegrityError(
                    f"integrity failure: {self.target.final.name} does not "
                    "match the sender's SHA-256; it was not saved"
                )
            if self.entry.mtime is not None:
                os.utime(self.temp, (self.entry.mtime, self.entry.mtime))
            self._move_into_place()
            return digest
        except BaseException:
            self.discard()
            raise

    def _move_into_place(self) -> None:
        final = self.target.final
        if self.target.overwrite:
            os.replace(self.temp, final)
            return
        try:
            os.link(self.temp, final, follow_symlinks=False)
        except FileExistsError:
            raise DeclinedError(f"{final} appeared while receiving; not replacing it") from None
        except OSError:
            # File systems without hard links: check, then rename (a small race remains).
            if os.path.lexists(final):
                raise DeclinedError(f"{final} appeared while receiving; not replacing it") from None
            os.rename(self.temp, final)
            return
        os.unlink(self.temp)

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            self._file.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.temp)
