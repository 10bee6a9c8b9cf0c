"""Reading what is sent and writing what is received. Blocking code, run in worker threads.

Receiving is where a hostile sender would strike, so every write goes through directory file
descriptors opened from the output root with ``O_NOFOLLOW``: a symlink already in the output
directory (or swapped in during the transfer) is never followed. Each file is written to a
fresh ``O_EXCL`` temporary file in its directory and gets its final name only after its SHA-256
matched, by ``link`` (which never replaces anything) or, with ``--overwrite``, ``replace``.
Mode bits are limited to rwx (setuid, setgid and sticky are dropped) and the umask applies;
directories always keep the owner's rwx so that the received tree stays usable.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import io
import json
import logging
import os
import queue
import shutil
import stat
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from p2pshare import messages as m
from p2pshare.errors import (
    DeclinedError,
    DiskFullError,
    IntegrityError,
    LocalFileError,
    P2PShareError,
    ProtocolError,
)
from p2pshare.files import UnsafeNameError, printable

logger = logging.getLogger(__name__)

TEMP_PREFIX = ".p2pshare-"
TEMP_SUFFIX = ".part"
FREE_SPACE_MARGIN_BYTES = 16 * 1024 * 1024
FSYNC_MIN_BYTES = 1024 * 1024
"""Files this large are fsynced before they get their final name; for smaller ones the cost
(milliseconds each, thousands of files) outweighs the benefit."""
PREFIX_READ_BYTES = 1024 * 1024
RESUME_MIN_BYTES = 1024 * 1024
"""Files this large keep their partial data when a receive is interrupted; smaller ones are
simply sent again."""
RECORD_SUFFIX = ".json"
STDIN_NAME = "stdin"
TEXT_NAME = "message.txt"


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


# -- sending ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """Where the bytes of one offered entry come from."""

    entry: m.FileEntry
    path: Path | None = None  # a regular file
    stdin: bool = False
    text: bytes | None = None


def collect(
    paths: Sequence[str | Path],
    *,
    text: str | None = None,
    name: str | None = None,
    warn: Callable[[str], None] = lambda message: None,
) -> list[Source]:
    """The entries to offer for ``paths`` (files, directories, ``-`` for stdin) or ``text``.

    Directories keep their structure under their own name, empty ones included. Symlinks are
    not followed: they are skipped, with a warning.
    """
    if text is not None:
        data = text.encode("utf-8")
        if len(data) > m.MAX_TEXT_BYTES:
            raise LocalFileError("the text is larger than 1 MiB; send it as a file")
        return [Source(m.FileEntry(TEXT_NAME, len(data), kind="text"), text=data)]
    sources: list[Source] = []
    tops: dict[str, str] = {}
    for raw in paths:
        if str(raw) == "-":
            if len(paths) != 1:
                raise LocalFileError("'-' (standard input) must be the only thing sent")
            entry = m.FileEntry(name or STDIN_NAME, None, 0o644, None, kind="stream")
            return [Source(entry, stdin=True)]
        path = Path(raw)
        try:
            st = path.lstat()
        except OSError as exc:
            raise _describe(exc, path) from None
        top = path.resolve().name if path.name in ("", ".", "..") else path.name
        if name is not None and len(paths) == 1:
            top = name
        if not top:
            raise LocalFileError(f"{path}: cannot send the root directory")
        if top in tops:
            raise LocalFileError(f"{path} and {tops[top]} would have the same name, {top}")
        tops[top] = str(path)
        if stat.S_ISLNK(st.st_mode):
            warn(f"skipping symlink {printable(str(path))} (symlinks are not followed)")
        elif stat.S_ISDIR(st.st_mode):
            sources += _walk(path, top, warn)
        elif stat.S_ISREG(st.st_mode):
            sources.append(Source(_entry(top, st), path=path))
        else:
            raise LocalFileError(f"{path}: not a regular file or directory")
    if not sources:
        raise LocalFileError("nothing to send")
    return sources


def _entry(rel: str, st: os.stat_result, kind: str = "file") -> m.FileEntry:
    size = 0 if kind == "dir" else st.st_size
    return m.FileEntry(rel, size, stat.S_IMODE(st.st_mode) & 0o777, st.st_mtime, kind=kind)


def _walk(root: Path, top: str, warn: Callable[[str], None]) -> list[Source]:
    sources = [Source(_entry(top, root.stat(), "dir"))]
    for dirpath, dirnames, filenames in os.walk(root, onerror=_raise, followlinks=False):
        base = Path(dirpath)
        rel = top + "/" + base.relative_to(root).as_posix() if base != root else top
        for child in sorted(dirnames) + sorted(filenames):
            full = base / child
            st = full.lstat()
            if stat.S_ISLNK(st.st_mode):
                warn(f"skipping symlink {printable(str(full))} (symlinks are not followed)")
            elif stat.S_ISDIR(st.st_mode):
                sources.append(Source(_entry(f"{rel}/{child}", st, "dir")))
            elif stat.S_ISREG(st.st_mode):
                sources.append(Source(_entry(f"{rel}/{child}", st), path=full))
            else:
                warn(f"skipping {printable(str(full))} (not a regular file)")
        dirnames.sort()
    return sources


def _raise(exc: OSError) -> None:
    raise _describe(exc, exc.filename or "?")


@dataclass
class Reader:
    """Reads every source in order, ``chunk_bytes`` at a time, hashing as it goes."""

    sources: list[Source]
    chunk_bytes: int
    read_bytes: int = 0
    """Bytes read to be sent."""

    def check_prefix(self, source: Source, prefix: m.Prefix) -> hashlib._Hash | None:
        """Hash the first ``prefix.offset`` bytes of ``source``: the running hash when they
        match the receiver's (to be continued with the rest), None when they do not."""
        assert source.path is not None
        try:
            with open(source.path, "rb") as f:
                digest = _hash_prefix(f.fileno(), prefix.offset)
        except OSError as exc:
            raise _describe(exc, source.path) from None
        if digest is None:
            raise LocalFileError(f"{source.path}: the file shrank while being sent")
        return digest if digest.hexdigest() == prefix.sha256 else None

    def chunks(self, source: Source, start: int = 0) -> Iterator[bytes]:
        """The bytes of ``source`` from ``start``; a file that changes size while sent is an
        error."""
        if source.text is not None:
            yield source.text
            return
        if source.stdin:
            stream: BinaryIO = sys.stdin.buffer
            while chunk := stream.read(self.chunk_bytes):
                self.read_bytes += len(chunk)
                yield chunk
            return
        assert source.path is not None and source.entry.size is not None
        try:
            with open(source.path, "rb") as f:
                f.seek(start)
                remaining = source.entry.size - start
                while remaining:
                    chunk = f.read(min(self.chunk_bytes, remaining))
                    if not chunk:
                        raise LocalFileError(f"{source.path}: the file shrank while being sent")
                    remaining -= len(chunk)
                    self.read_bytes += len(chunk)
                    yield chunk
                if f.read(1):
                    raise LocalFileError(f"{source.path}: the file grew while being sent")
        except OSError as exc:
            raise _describe(exc, source.path) from None


# -- receiving --------------------------------------------------------------------------------


def check_free_space(directory: Path, nbytes: int) -> None:
    free = shutil.disk_usage(directory).free
    if free < nbytes + FREE_SPACE_MARGIN_BYTES:
        raise DiskFullError(
            f"not enough free space in {directory}: {nbytes:,} bytes needed, {free:,} free"
        )


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


def _lstat_at(dir_fd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


@dataclass(frozen=True)
class Found:
    """Data already on disk for an entry: ``length`` bytes of its partial file from an
    interrupted receive, or (``complete``) the whole file under its final name with the size
    and modification time the sender declares. Not trusted until the sender checked it."""

    length: int
    complete: bool


@dataclass
class Layout:
    """Where each entry of an accepted offer goes: relative parts under ``root``."""

    root: Path
    create_root: bool
    parts: list[tuple[str, ...]]
    overwrite: bool
    resume: bool = False
    """Keep the partial data of large files when interrupted, and offer what is found."""
    found: dict[int, Found] = field(default_factory=dict)

    def shown(self, index: int) -> Path:
        return self.root.joinpath(*self.parts[index])

    def resumable(self, entry: m.FileEntry) -> bool:
        return (
            self.resume
            and entry.kind == "file"
            and entry.size is not None
            and entry.size >= RESUME_MIN_BYTES
        )

    @property
    def found_bytes(self) -> int:
        return sum(f.length for f in self.found.values())


MTIME_SLACK_S = 0.001
"""A file already in place counts as possibly the same as the one offered when its size is
equal and its modification time (which we set on receiving) is this close."""


def partial_names(parts: tuple[str, ...], entry: m.FileEntry) -> tuple[str, str]:
    """The names of an entry's partial file and its record, in the entry's directory: derived
    from the entry (final path, size, mtime) so that a resend of the same file finds them."""
    key = json.dumps(["/".join(parts), entry.size, entry.mtime]).encode()
    stem = TEMP_PREFIX + hashlib.sha256(b"p2pshare partial v1\0" + key).hexdigest()[:24]
    return stem + TEMP_SUFFIX, stem + RECORD_SUFFIX


def _record(parts: tuple[str, ...], entry: m.FileEntry, synced: int) -> bytes:
    obj = {
        "v": 1,
        "path": "/".join(parts),
        "size": entry.size,
        "mtime": entry.mtime,
        "synced": synced,
    }
    return json.dumps(obj).encode()


def _find_partial(
    dir_fd: int, parts: tuple[str, ...], entry: m.FileEntry, shown: Path
) -> Found | None:
    """A partial file for ``entry`` left in ``dir_fd`` by an interrupted receive, if its
    record describes this very entry and the file is a plain file of ours."""
    part, record = partial_names(parts, entry)
    try:
        fd = os.open(record, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > 64 * 1024:
            return None
        obj = json.loads(os.read(fd, 64 * 1024))
    except (OSError, ValueError):
        return None
    finally:
        os.close(fd)
    if not isinstance(obj, dict) or obj.get("v") != 1:
        return None
    if obj.get("path") != "/".join(parts) or [obj.get("size"), obj.get("mtime")] != [
        entry.size,
        entry.mtime,
    ]:
        return None
    synced = obj.get("synced")
    st_part = _lstat_at(dir_fd, part)
    if (
        st_part is None
        or not stat.S_ISREG(st_part.st_mode)
        or st_part.st_nlink != 1
        or st_part.st_uid != os.geteuid()
        or not isinstance(synced, int)
        or entry.size is None
        or not max(1, synced) <= st_part.st_size <= entry.size
    ):
        return None
    logger.info("found %d bytes of %s from an earlier attempt", st_part.st_size, shown)
    return Found(st_part.st_size, complete=False)


def plan(
    output: Path | None,
    offer: m.Offer,
    parts: list[tuple[str, ...]],
    overwrite: bool,
    resume: bool = False,
) -> Layout:
    """Decide where everything goes and refuse, before any byte moves, what cannot be done.

    ``output`` is the user's ``--output``: an existing directory receives the entries inside
    it; for a single file any other path is the name to save as; for several entries a path
    that does not exist yet becomes the directory to create.
    """
    single = len(offer.files) == 1 and offer.files[0].kind != "dir"
    create_root = False
    if output is None:
        root = Path.cwd()
    elif output.is_dir():
        root = output
    elif single:
        root = output.parent
        parts = [(output.name,)]
    elif not output.exists() and output.parent.is_dir():
        root, create_root = output, True
    else:
        raise LocalFileError(f"{output}: not a directory (the offer has several entries)")
    if not root.is_dir() and not create_root:
        raise LocalFileError(f"{root}: no such directory")
    layout = Layout(root, create_root, parts, overwrite, resume)
    if not create_root:
        _preflight(layout, offer)
    return layout


def _preflight(layout: Layout, offer: m.Offer) -> None:
    """Walk the existing tree without following links; refuse conflicts and existing files,
    and (with ``layout.resume``) note the data already there."""
    root_fd = os.open(layout.root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for index, (entry, parts) in enumerate(zip(offer.files, layout.parts, strict=True)):
            fd, opened = root_fd, []
            try:
                for depth, part in enumerate(parts):
                    st = _lstat_at(fd, part)
                    last = depth == len(parts) - 1
                    if st is None:
                        if last and layout.resumable(entry):
                            found = _find_partial(fd, parts, entry, layout.shown(index))
                            if found is not None:
                                layout.found[index] = found
                        break
                    shown = layout.root.joinpath(*parts[: depth + 1])
                    if not last or entry.kind == "dir":
                        if not stat.S_ISDIR(st.st_mode):
                            raise UnsafeNameError(
                                f"refused: {printable(str(shown))} exists and is not a directory "
                                "(a symlink is never followed)"
                            )
                        if not last:
                            fd = os.open(part, _DIR_FLAGS, dir_fd=fd)
                            opened.append(fd)
                    elif stat.S_ISDIR(st.st_mode):
                        raise DeclinedError(
                            f"{printable(str(shown))} is a directory; not replacing it"
                        )
                    elif (
                        layout.resume
                        and entry.kind == "file"
                        and stat.S_ISREG(st.st_mode)
                        and st.st_size == entry.size
                        and entry.mtime is not None
                        and abs(st.st_mtime - entry.mtime) <= MTIME_SLACK_S
                    ):
                        # Probably received before: the sender checks it, then skips it.
                        layout.found[index] = Found(st.st_size, complete=True)
                    elif not layout.overwrite:
                        raise DeclinedError(
                            f"{printable(str(layout.shown(index)))} already "
                            "exists; pass --overwrite to replace it"
                        )
            finally:
                for f in opened:
                    os.close(f)
    finally:
        os.close(root_fd)


@dataclass
class _Open:
    """A file being received: its temporary file in its directory."""

    index: int
    dir_fd: int
    name: str
    temp: str
    fd: int
    entry: m.FileEntry
    hash: hashlib._Hash = field(default_factory=hashlib.sha256)
    written: int = 0
    record: str | None = None
    """The partial file's record (the file is kept if the receive is interrupted)."""
    complete: bool = False
    """The file is already in place: nothing is written, the hash is checked at the end."""


def _lock(fd: int, shown: Path) -> None:
    """Hold a partial file for this receive: two receives of the same file into the same
    place at once would otherwise share its name (it is derived from the entry)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise LocalFileError(
            f"{printable(str(shown))}: another p2pshare is receiving this file here right now"
        ) from None


@dataclass
class _Held:
    """Data found on disk and hashed; the sender decides whether it matches."""

    found: Found
    hash: hashlib._Hash


def _hash_at(dir_fd: int, name: str, length: int) -> hashlib._Hash | None:
    """SHA-256 state over the first ``length`` bytes of a regular file (None if it is not
    one, or shorter)."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
    except OSError:
        return None
    try:
        return _hash_prefix(fd, length) if stat.S_ISREG(os.fstat(fd).st_mode) else None
    except OSError:
        return None
    finally:
        os.close(fd)


def _hash_prefix(fd: int, length: int) -> hashlib._Hash | None:
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


class Tree:
    """Writes received entries under a layout's root. Used from one thread at a time."""

    def __init__(self, layout: Layout, offer: m.Offer) -> None:
        self.layout = layout
        self.offer = offer
        if layout.create_root:
            try:
                os.mkdir(layout.root, 0o755)
            except FileExistsError:
                raise DeclinedError(f"{layout.root} appeared while receiving") from None
        self._root_fd = os.open(layout.root, os.O_RDONLY | os.O_DIRECTORY)
        self._dirs: dict[tuple[str, ...], int] = {(): self._root_fd}
        self._current: _Open | None = None
        self._held: dict[int, _Held] = {}
        self._starts: dict[int, int] = {}

    def check_held(self) -> list[m.Prefix]:
        """Hash the data the plan found already on disk (a local read of just those bytes):
        the prefixes to offer the sender, who checks them against its own files."""
        prefixes: list[m.Prefix] = []
        for index, found in sorted(self.layout.found.items()):
            entry, parts = self.offer.files[index], self.layout.parts[index]
            dir_fd = self._dir(parts[:-1])
            name = parts[-1] if found.complete else partial_names(parts, entry)[0]
            digest = _hash_at(dir_fd, name, found.length)
            if digest is not None:
                self._held[index] = _Held(found, digest)
                prefixes.append(m.Prefix(index, found.length, digest.hexdigest()))
        return prefixes

    def _dir(self, parts: tuple[str, ...]) -> int:
        """An fd for directory ``parts`` under the root, created as needed, never via a link."""
        fd = self._dirs.get(parts)
        if fd is not None:
            return fd
        parent = self._dir(parts[:-1])
        with contextlib.suppress(FileExistsError):
            os.mkdir(parts[-1], 0o700, dir_fd=parent)
        try:
            fd = os.open(parts[-1], _DIR_FLAGS, dir_fd=parent)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise UnsafeNameError(
                    f"refused: {printable('/'.join(parts))} is not a directory (a symlink is "
                    "never followed)"
                ) from None
            raise _describe(exc, self.layout.root.joinpath(*parts)) from None
        self._dirs[parts] = fd
        return fd

    def make_dirs(self) -> None:
        for entry, parts in zip(self.offer.files, self.layout.parts, strict=True):
            if entry.kind == "dir":
                self._dir(parts)

    def begin(self, index: int) -> None:
        offset = self._starts.pop(index, None)
        # Data found on disk goes on (or restarts) in place; only a whole file in place that
        # differs (allowed by --overwrite) is received like a new one.
        if offset is not None and (offset or not self._held[index].found.complete):
            self._begin_resumed(index, offset)
            return
        parts = self.layout.parts[index]
        entry = self.offer.files[index]
        dir_fd = self._dir(parts[:-1])
        if self.layout.resumable(entry):
            # A name a resend will find again; the record goes first, so a partial file
            # never exists without one. A stale file of that name (not resumable) goes.
            part, record = partial_names(parts, entry)
            shown = self.layout.shown(index)
            try:
                self._check_unlocked(dir_fd, part, shown)
                self._write_record(dir_fd, record, parts, entry, 0)
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(part, dir_fd=dir_fd)
                fd = os.open(part, _NEW_FILE_FLAGS, 0o600, dir_fd=dir_fd)
                _lock(fd, shown)
            except OSError as exc:
                raise _describe(exc, shown.parent) from None
            self._current = _Open(index, dir_fd, parts[-1], part, fd, entry, record=record)
            return
        while True:
            temp = f"{TEMP_PREFIX}{os.urandom(6).hex()}{TEMP_SUFFIX}"
            try:
                fd = os.open(temp, _NEW_FILE_FLAGS, 0o600, dir_fd=dir_fd)
                break
            except FileExistsError:
                continue
            except OSError as exc:
                raise _describe(exc, self.layout.shown(index).parent) from None
        self._current = _Open(index, dir_fd, parts[-1], temp, fd, self.offer.files[index])

    @staticmethod
    def _check_unlocked(dir_fd: int, part: str, shown: Path) -> None:
        """Refuse to replace a partial file that another receive is writing right now."""
        try:
            fd = os.open(part, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
        except OSError:
            return  # absent, or a link: replaced without looking inside
        try:
            _lock(fd, shown)
        finally:
            os.close(fd)

    def _write_record(
        self, dir_fd: int, name: str, parts: tuple[str, ...], entry: m.FileEntry, synced: int
    ) -> None:
        temp = f"{TEMP_PREFIX}{os.urandom(6).hex()}.tmp"
        fd = os.open(temp, _NEW_FILE_FLAGS, 0o600, dir_fd=dir_fd)
        try:
            os.write(fd, _record(parts, entry, synced))
        except OSError:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(temp, dir_fd=dir_fd)
            raise
        os.close(fd)
        os.replace(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)

    def resume(self, index: int, offset: int) -> None:
        """The sender's verdict on data found for entry ``index`` (all come before any data):
        it matched its own and the entry starts at ``offset``, or (0) it did not, and the entry
        is received afresh: a mismatch is never spliced. A whole file already in place that
        differs is refused here, before anything is written, unless --overwrite."""
        held = self._held[index]
        if held.found.complete and not offset and not self.layout.overwrite:
            shown = printable(str(self.layout.shown(index)))
            raise DeclinedError(
                f"{shown} already exists and differs from the file being sent; pass "
                "--overwrite to replace it"
            )
        self._starts[index] = offset

    def _begin_resumed(self, index: int, offset: int) -> None:
        held = self._held.pop(index)
        entry, parts = self.offer.files[index], self.layout.parts[index]
        dir_fd = self._dir(parts[:-1])
        shown = printable(str(self.layout.shown(index)))
        if held.found.complete:
            self._current = _Open(
                index, dir_fd, parts[-1], "", -1, entry, held.hash, offset, complete=True
            )
            return
        part, record = partial_names(parts, entry)
        flags = os.O_WRONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(part, flags, dir_fd=dir_fd)
        except OSError as exc:
            raise _describe(exc, shown) from None
        try:
            # Ours to write only if no other receive holds it and it is still a plain file.
            _lock(fd, self.layout.shown(index))
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise LocalFileError(f"{shown}: the partial file was replaced while receiving")
        except BaseException:
            os.close(fd)
            raise
        current = _Open(index, dir_fd, parts[-1], part, fd, entry, record=record)
        self._current = current
        try:
            if offset:
                current.hash, current.written = held.hash, offset
            else:
                logger.info("the data found for %s does not match: receiving it afresh", shown)
                self._write_record(dir_fd, record, parts, entry, 0)
            os.ftruncate(fd, offset)
            os.lseek(fd, offset, os.SEEK_SET)
        except OSError as exc:
            raise _describe(exc, shown) from None

    def write(self, data: bytes) -> None:
        current = self._current
        assert current is not None
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(current.fd, view) :]
        except OSError as exc:
            raise _describe(exc, self.layout.shown(current.index)) from None
        current.hash.update(data)
        current.written += len(data)

    def finish(self, index: int, expected_sha256: str) -> str:
        """Verify the current file and move it into place; on failure it is removed."""
        current = self._current
        assert current is not None and current.index == index
        self._current = None
        shown = printable(str(self.layout.shown(index)))
        if current.complete:
            digest = current.hash.hexdigest()
            if digest != expected_sha256:
                raise IntegrityError(
                    f"integrity failure: {shown} does not match the sender's SHA-256; it was "
                    "left as it was"
                )
            return digest
        try:
            digest = current.hash.hexdigest()
            if digest != expected_sha256:
                raise IntegrityError(
                    f"integrity failure: {shown} does not match the sender's SHA-256; it was "
                    "not saved"
                )
            try:
                if current.written >= FSYNC_MIN_BYTES:
                    os.fsync(current.fd)
                mode = current.entry.mode & 0o777 & ~_UMASK
                os.fchmod(current.fd, mode)
                if current.entry.mtime is not None:
                    os.utime(current.fd, (current.entry.mtime, current.entry.mtime))
            except OSError as exc:
                raise _describe(exc, shown) from None
            self._move_into_place(current, shown)
            if current.record is not None:
                with contextlib.suppress(OSError):
                    os.unlink(current.record, dir_fd=current.dir_fd)
            elif current.written >= RESUME_MIN_BYTES:
                # --no-resume: partial data of this very file from an earlier attempt is
                # now useless.
                for stale in partial_names(self.layout.parts[index], current.entry):
                    with contextlib.suppress(OSError):
                        os.unlink(stale, dir_fd=current.dir_fd)
            return digest
        except BaseException:
            self._discard(current)
            raise
        finally:
            if current.fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(current.fd)

    def _move_into_place(self, current: _Open, shown: str) -> None:
        fds = {"src_dir_fd": current.dir_fd, "dst_dir_fd": current.dir_fd}
        if self.layout.overwrite:
            existing = _lstat_at(current.dir_fd, current.name)
            if existing is not None and stat.S_ISDIR(existing.st_mode):
                raise DeclinedError(f"{shown} is a directory; not replacing it")
            os.replace(current.temp, current.name, **fds)
            return
        try:
            os.link(current.temp, current.name, **fds, follow_symlinks=False)
        except FileExistsError:
            raise DeclinedError(f"{shown} appeared while receiving; not replacing it") from None
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK):
                raise _describe(exc, shown) from None
            # File systems without hard links: check, then rename (a small race remains).
            if _lstat_at(current.dir_fd, current.name) is not None:
                raise DeclinedError(f"{shown} appeared while receiving; not replacing it") from None
            os.rename(current.temp, current.name, **fds)
            return
        os.unlink(current.temp, dir_fd=current.dir_fd)

    def _discard(self, current: _Open) -> None:
        if current.complete:
            return
        with contextlib.suppress(OSError):
            os.unlink(current.temp, dir_fd=current.dir_fd)
        if current.record is not None:
            with contextlib.suppress(OSError):
                os.unlink(current.record, dir_fd=current.dir_fd)

    def _keep(self, current: _Open) -> None:
        """An interrupted receive: make the partial data durable and record how much."""
        with contextlib.suppress(OSError):
            os.fsync(current.fd)
            parts = self.layout.parts[current.index]
            assert current.record is not None
            self._write_record(
                current.dir_fd, current.record, parts, current.entry, current.written
            )

    def finish_dirs(self) -> None:
        """Give directories their modes and times, deepest first (writing inside changes them)."""
        entries = [
            (p, e)
            for e, p in zip(self.offer.files, self.layout.parts, strict=True)
            if e.kind == "dir"
        ]
        for parts, entry in sorted(entries, key=lambda pe: -len(pe[0])):
            parent = self._dir(parts[:-1])
            with contextlib.suppress(OSError):
                os.chmod(
                    parts[-1],
                    ((entry.mode & 0o777) | 0o700) & ~_UMASK,
                    dir_fd=parent,
                    follow_symlinks=False,
                )
                if entry.mtime is not None:
                    os.utime(
                        parts[-1], (entry.mtime, entry.mtime), dir_fd=parent, follow_symlinks=False
                    )

    def close(self) -> None:
        current = self._current
        if current is not None:
            if current.record is not None and current.written:
                self._keep(current)
            else:
                self._discard(current)
            if current.fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(current.fd)
            self._current = None
        for fd in self._dirs.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self._dirs.clear()


def decompress(frame: bytes, raw_len: int) -> bytes:
    """Decompress one zstd frame that must yield exactly ``raw_len`` bytes.

    Reads at most ``raw_len + 1`` bytes whatever size the frame claims, so a frame built to
    expand to gigabytes (a decompression bomb) costs nothing; any mismatch is an integrity
    failure.
    """
    import zstandard

    try:
        reader = zstandard.ZstdDecompressor().stream_reader(
            io.BytesIO(frame), read_across_frames=False
        )
        parts: list[bytes] = []
        got = 0
        while got <= raw_len and (part := reader.read(raw_len + 1 - got)):
            parts.append(part)
            got += len(part)
        data = b"".join(parts)
    except zstandard.ZstdError:
        raise IntegrityError("integrity failure: a compressed chunk is corrupt") from None
    if len(data) != raw_len:
        raise IntegrityError("integrity failure: a compressed chunk has the wrong size")
    return data


class StreamSink:
    """Receives one entry into memory (text) or onto a stream (``--output -``)."""

    def __init__(self, out: BinaryIO | None) -> None:
        self.out = out
        self.buffer = bytearray()
        self._hash = hashlib.sha256()

    def begin(self, index: int) -> None:
        pass

    def resume(self, index: int, offset: int) -> None:
        raise ProtocolError("nothing to resume when receiving a stream")

    def write(self, data: bytes) -> None:
        self._hash.update(data)
        if self.out is None:
            self.buffer += data
            return
        try:
            self.out.write(data)
        except OSError as exc:
            raise _describe(exc, "standard output") from None

    def finish(self, index: int, expected_sha256: str) -> str:
        if self.out is not None:
            with contextlib.suppress(OSError):
                self.out.flush()
        digest = self._hash.hexdigest()
        if digest != expected_sha256:
            raise IntegrityError("integrity failure: the data does not match the sender's SHA-256")
        return digest

    def make_dirs(self) -> None:
        pass

    def finish_dirs(self) -> None:
        pass

    def close(self) -> None:
        pass


Sink = Tree | StreamSink


class Writer(threading.Thread):
    """One thread that does every blocking write of a receive, in order.

    The event loop hands it frames' payloads with :meth:`submit`; it reports back through
    ``report(kind, value)``, which it calls from its own thread (the caller makes that
    thread-safe): ``("written", nbytes)``, ``("verified", (index, sha256))``,
    ``("failed", exception)``. Memory is bounded by the transfer's credit window.
    """

    def __init__(self, sink: Sink, report: Callable[[str, object], None]) -> None:
        super().__init__(name="p2pshare-writer", daemon=True)
        self.sink = sink
        self.report = report
        self._queue: queue.SimpleQueue[tuple[str, object] | None] = queue.SimpleQueue()

    def submit(self, op: str, value: object = None) -> None:
        self._queue.put((op, value))

    def stop(self) -> None:
        self._queue.put(None)

    def run(self) -> None:
        try:
            while (item := self._queue.get()) is not None:
                op, value = item
                if op == "data":
                    assert isinstance(value, bytes)
                    self.sink.write(value)
                    self.report("written", len(value))
                elif op == "dataz":
                    assert isinstance(value, tuple)
                    frame, raw_len = value
                    self.sink.write(decompress(frame, raw_len))
                    self.report("written", raw_len)
                elif op == "begin":
                    assert isinstance(value, int)
                    self.sink.begin(value)
                elif op == "resume":
                    assert isinstance(value, tuple)
                    self.sink.resume(*value)
                elif op == "end":
                    assert isinstance(value, tuple)
                    index, sha = value
                    self.report("verified", (index, self.sink.finish(index, sha)))
                elif op == "dirs":
                    self.sink.make_dirs()
                elif op == "finish-dirs":
                    self.sink.finish_dirs()
                    self.report("dirs-done", None)
        except P2PShareError as exc:
            self.report("failed", exc)
        except OSError as exc:
            self.report("failed", _describe(exc, "output"))
        except Exception as exc:  # a bug: still end the transfer cleanly
            logger.exception("writer failed")
            self.report("failed", ProtocolError(f"internal error while writing: {exc}"))
        finally:
            self.sink.close()
