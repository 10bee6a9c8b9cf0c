"""Writing a received tree: every write stays under the output directory, and a file gets
its final name only once its hash matched.

Receiving is where a hostile sender would strike, so every write goes through directory file
descriptors opened from the output root with ``O_NOFOLLOW``: a symlink already in the output
directory (or swapped in during the transfer) is never followed. Each file is written to a
fresh ``O_EXCL`` temporary file in its directory and gets its final name only after its hash
matched, by ``link`` (which never replaces anything) or, with ``--overwrite``, ``replace``
(a whole small file of a DataBatch: hashed, written unnamed, then linked: :meth:`write_whole`).
Mode bits are limited to rwx (setuid, setgid and sticky are dropped) and the umask applies;
directories always keep the owner's rwx so that the received tree stays usable. Blocking code:
it runs in the receiver's worker thread.

Costs stay bounded whatever the tree's shape: at most :data:`DIR_FD_CACHE` directory
descriptors are open at a time (the least recently used is closed and reopened, from the
root and without following links, when needed again), and a small file costs five system
calls (create, write, set times, rename without replacing or link, close). A receive that fails
removes the directories it created that hold nothing (partial data kept for a resume keeps
its directory).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import itertools
import logging
import os
import stat
from collections import OrderedDict
from dataclasses import dataclass

from p2pshare import digests
from p2pshare import messages as m
from p2pshare.digests import SHA256, Digest
from p2pshare.errors import DeclinedError, IntegrityError, LocalFileError, P2PShareError
from p2pshare.files import UnsafeNameError, printable
from p2pshare.fs import (
    AVAILABLE,
    DIR_FLAGS,
    NEW_FILE_FLAGS,
    UMASK,
    UNNAMED_FILE_FLAGS,
    UNNAMED_FILES,
    WRITEBACK_BYTES,
    Writeback,
    at_call,
    describe,
    link_unnamed,
    lstat_at,
    release_written,
    start_writeback,
)
from p2pshare.layout import Found, Layout
from p2pshare.partials import (
    RESUME_MIN_BYTES,
    TEMP_PREFIX,
    TEMP_SUFFIX,
    check_unlocked,
    hash_at,
    lock,
    partial_names,
    write_record,
)

logger = logging.getLogger(__name__)

FSYNC_MIN_BYTES = 1024 * 1024
"""Files this large are fsynced before they get their final name; for smaller ones the cost
(milliseconds each, thousands of files) outweighs the benefit."""
DIR_FD_CACHE = 64
"""Directory descriptors held open at most, besides the root's: a tree of any number of
directories must go through under the common limit of 1,024 descriptors (issue 27)."""
_RENAME_NOREPLACE = 1


_RENAMEAT2 = at_call("renameat2", ctypes.c_uint)


@dataclass
class _Open:
    """A file being received: its temporary file in its directory."""

    index: int
    dir_fd: int
    name: str
    temp: str
    fd: int
    entry: m.FileEntry
    hash: Digest
    written: int = 0
    handed_to_disk: int = 0
    """Bytes whose writeback was started (:func:`start_writeback`)."""
    released: int = 0
    """Bytes on the disk and out of the page cache (:func:`release_written`)."""
    record: str | None = None
    """The partial file's record (the file is kept if the receive is interrupted)."""
    complete: bool = False
    """The file is already in place: nothing is written, the hash is checked at the end."""


@dataclass
class _Held:
    """Data found on disk and hashed; the sender decides whether it matches."""

    found: Found
    hash: Digest


class _ShownName:
    """A file's name as printed, made only if an error needs it (a small file's whole
    receive costs less than making it)."""

    def __init__(self, layout: Layout, index: int) -> None:
        self.layout, self.index = layout, index

    def __str__(self) -> str:
        return printable(str(self.layout.shown(self.index)))


class Tree:
    """Writes received entries under a layout's root. Used from one thread at a time."""

    def __init__(
        self, layout: Layout, offer: m.Offer, hash: str = SHA256, writeback: Writeback = AVAILABLE
    ) -> None:
        self.layout = layout
        self.writeback = writeback
        self.offer = offer
        self.hash = hash
        """The hash agreed with the sender (:mod:`p2pshare.digests`)."""
        self.keep_partial = True
        """Whether :meth:`close` keeps an unfinished file's data to resume from: not when
        the sender broke the protocol (:func:`p2pshare.partials.worth_keeping`)."""
        if layout.create_root:
            try:
                os.mkdir(layout.root, 0o755)
            except FileExistsError:
                raise DeclinedError(f"{layout.root} appeared while receiving") from None
        self._root_fd = os.open(layout.root, os.O_RDONLY | os.O_DIRECTORY)
        self._dirs: OrderedDict[tuple[str, ...], int] = OrderedDict()
        """Open directory descriptors, least recently used first (the root's is apart)."""
        self._created: set[tuple[str, ...]] = set()
        """Directories this transfer made: the only ones whose mode and times it may set,
        and the ones it removes again (when empty) if it fails."""
        self._current: _Open | None = None
        self._held: dict[int, _Held] = {}
        self._starts: dict[int, int] = {}
        self._temp_stem = f"{TEMP_PREFIX}{os.urandom(6).hex()}-"
        self._temp_serial = itertools.count()
        self._noreplace = _RENAMEAT2 is not None
        self._unnamed = UNNAMED_FILES
        """Whole small files are written unnamed and linked (:meth:`write_whole`); turned off
        for good at the first sign that this file system or kernel cannot."""
        self._finished = False

    def check_held(self) -> list[m.Prefix]:
        """Hash the data the plan found already on disk (a local read of just those bytes):
        the prefixes to offer the sender, who checks them against its own files."""
        prefixes: list[m.Prefix] = []
        for index, found in sorted(self.layout.found.items()):
            entry, parts = self.offer.files[index], self.layout.parts[index]
            dir_fd = self._dir(parts[:-1])
            name = parts[-1] if found.complete else partial_names(parts, entry)[0]
            digest = hash_at(dir_fd, name, found.length, self.hash)
            if digest is not None:
                self._held[index] = _Held(found, digest)
                prefixes.append(m.Prefix(index, found.length, digest.hexdigest()))
        return prefixes

    def _dir(self, parts: tuple[str, ...], create: bool = True) -> int:
        """An fd for directory ``parts`` under the root, created as needed, never via a link.
        It stays valid until the next call (which may close the least recently used)."""
        if not parts:
            return self._root_fd
        fd = self._dirs.get(parts)
        if fd is not None:
            self._dirs.move_to_end(parts)
            return fd
        parent = self._dir(parts[:-1], create)
        if create:
            try:
                os.mkdir(parts[-1], 0o700, dir_fd=parent)
                self._created.add(parts)
            except FileExistsError:
                pass  # used as it is: never chmod'ed or utime'd (it may be ~/.ssh)
            except OSError as exc:
                raise describe(exc, self.layout.root.joinpath(*parts)) from None
        try:
            fd = os.open(parts[-1], DIR_FLAGS, dir_fd=parent)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise UnsafeNameError(
                    f"refused: {printable('/'.join(parts))} is not a directory (a symlink is "
                    "never followed)",
                    peer_message=f"refused: '{printable('/'.join(parts))}' is not a directory "
                    "on the receiving side",
                ) from None
            raise describe(exc, self.layout.root.joinpath(*parts)) from None
        self._dirs[parts] = fd
        pinned = self._current.dir_fd if self._current is not None else -1
        while len(self._dirs) > DIR_FD_CACHE:
            oldest, old_fd = next(iter(self._dirs.items()))
            if old_fd in (pinned, fd):  # in use: keep it, close the next one
                self._dirs.move_to_end(oldest)
                continue
            del self._dirs[oldest]
            os.close(old_fd)
        return fd

    def make_dirs(self) -> None:
        for index in self.offer.files.dir_indexes():  # not a FileEntry for each file
            self._dir(self.layout.parts[index])

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
                check_unlocked(dir_fd, part, shown)
                write_record(dir_fd, record, parts, entry, 0)
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(part, dir_fd=dir_fd)
                fd = os.open(part, NEW_FILE_FLAGS, 0o600, dir_fd=dir_fd)
                lock(fd, shown)
            except OSError as exc:
                raise describe(exc, shown.parent) from None
            self._current = _Open(
                index, dir_fd, parts[-1], part, fd, entry, self._digest(), record=record
            )
            return
        # Created with its final mode (the umask applies), less any write bit for group or
        # others: nobody else may change the bytes between the hash and the rename (with
        # umask 002 a group member could). Such bits, rare, are set at finish. Not readable
        # under its final name before the hash matched, whatever the mode.
        mode = entry.mode & 0o777 & ~0o022
        while True:
            temp = f"{self._temp_stem}{next(self._temp_serial)}{TEMP_SUFFIX}"
            try:
                fd = os.open(temp, NEW_FILE_FLAGS, mode, dir_fd=dir_fd)
                break
            except FileExistsError:
                continue
            except OSError as exc:
                raise describe(exc, self.layout.shown(index).parent) from None
        self._current = _Open(index, dir_fd, parts[-1], temp, fd, entry, self._digest())

    def write_whole(self, index: int, payload: bytes, expected: str) -> str | None:
        """Entry ``index`` whole (from a DataBatch): hashed before anything touches the disk,
        written unnamed (``O_TMPFILE``) and linked under its final name (never replacing):
        still five system calls, but one directory entry made instead of a temporary one
        made, looked up and removed (~20% less writer CPU). Its digest, or None if it needs
        begin/write/finish (data found on disk, ``--overwrite``, a file large enough to
        fsync or resume, a file system or kernel without unnamed files)."""
        entry = self.offer.files[index]
        if (
            not self._unnamed
            or entry.kind != "file"
            or self.layout.overwrite
            or index in self._starts
            or len(payload) >= min(FSYNC_MIN_BYTES, RESUME_MIN_BYTES)
            or self.layout.resumable(entry)
        ):
            return None
        shown = _ShownName(self.layout, index)
        hashed = self._digest()
        hashed.update(payload)
        digest = hashed.hexdigest()
        if digest != expected:
            raise IntegrityError(
                f"integrity failure: {shown} does not match the sender's "
                f"{digests.label(self.hash)}; it was not saved"
            )
        parts = self.layout.parts[index]
        dir_fd = self._dir(parts[:-1])
        try:
            # Its final mode less group/other write bits, as in begin(); those come below.
            fd = os.open(".", UNNAMED_FILE_FLAGS, entry.mode & 0o777 & ~0o022, dir_fd=dir_fd)
        except OSError as exc:
            if exc.errno in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
                self._unnamed = False  # this file system (or kernel) has no unnamed files
                return None
            raise describe(exc, self.layout.shown(index).parent) from None
        try:
            try:
                view = memoryview(payload)
                while view:
                    view = view[os.write(fd, view) :]
                if entry.mode & 0o022 & ~UMASK:
                    os.fchmod(fd, entry.mode & 0o777 & ~UMASK)
                if entry.mtime is not None:
                    os.utime(fd, (entry.mtime, entry.mtime))
            except OSError as exc:
                raise describe(exc, str(shown)) from None
            code = link_unnamed(fd, dir_fd, parts[-1])
        finally:
            os.close(fd)  # an unnamed file not linked is gone with its descriptor
        if code == errno.EEXIST:
            raise DeclinedError(f"{shown} appeared while receiving; not replacing it")
        if code in (errno.ENOENT, errno.EPERM, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
            # A kernel that will not name a descriptor (ENOENT before Linux 6.10, unprivileged)
            # or a sandbox: the general path, which also reports a directory really gone.
            self._unnamed = False
            return None
        if code:
            raise describe(OSError(code, os.strerror(code)), str(shown))
        return digest

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
                "--overwrite to replace it",
                peer_message=f"declined: '{printable(self.offer.files[index].path)}' already "
                "exists on the receiving side and differs",
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
            raise describe(exc, shown) from None
        try:
            # Ours to write only if no other receive holds it and it is still a plain file.
            lock(fd, self.layout.shown(index))
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise LocalFileError(f"{shown}: the partial file was replaced while receiving")
        except BaseException:
            os.close(fd)
            raise
        current = _Open(index, dir_fd, parts[-1], part, fd, entry, self._digest(), record=record)
        self._current = current
        try:
            if offset:
                current.hash, current.written = held.hash, offset
                current.handed_to_disk = current.released = offset
            else:
                logger.info("the data found for %s does not match: receiving it afresh", shown)
                write_record(dir_fd, record, parts, entry, 0)
            os.ftruncate(fd, offset)
            os.lseek(fd, offset, os.SEEK_SET)
        except OSError as exc:
            raise describe(exc, shown) from None

    def write(self, data: bytes) -> None:
        current = self._current
        assert current is not None
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(current.fd, view) :]
        except OSError as exc:
            raise describe(exc, self.layout.shown(current.index)) from None
        current.hash.update(data)
        current.written += len(data)
        if current.written - current.handed_to_disk >= WRITEBACK_BYTES:
            started = current.handed_to_disk
            start_writeback(current.fd, started, current.written - started, self.writeback)
            current.handed_to_disk = current.written
            # The range started last time has had a while to reach the disk.
            if started > current.released:
                try:
                    release_written(
                        current.fd, current.released, started - current.released, self.writeback
                    )
                except OSError as exc:
                    self._keep_only_released(current)
                    raise describe(exc, self.layout.shown(current.index)) from None
                current.released = started

    @staticmethod
    def _keep_only_released(current: _Open) -> None:
        """After a failed writeback: what the wait covered may be wrong on the disk while
        the page cache still holds the right bytes, and no later fsync would say so (the wait
        consumed the error). A resume must not trust it: the partial file keeps only what
        earlier waits confirmed, or nothing."""
        try:
            os.ftruncate(current.fd, current.released)
            current.written = current.released
        except OSError:
            current.written = 0  # close() then discards the partial file

    def _digest(self) -> Digest:
        return digests.new(self.hash)

    def finish(self, index: int, expected: str) -> str:
        """Verify the current file and move it into place; on failure it is removed."""
        current = self._current
        assert current is not None and current.index == index
        self._current = None
        shown = _ShownName(self.layout, index)
        if current.complete:
            digest = current.hash.hexdigest()
            if digest != expected:
                raise IntegrityError(
                    f"integrity failure: {shown} does not match the sender's "
                    f"{digests.label(self.hash)}; it was left as it was"
                )
            return digest
        try:
            digest = current.hash.hexdigest()
            if digest != expected:
                raise IntegrityError(
                    f"integrity failure: {shown} does not match the sender's "
                    f"{digests.label(self.hash)}; it was not saved"
                )
            try:
                if current.written >= FSYNC_MIN_BYTES:
                    os.fsync(current.fd)
                if current.record is not None or current.entry.mode & 0o022 & ~UMASK:
                    # A partial file, made owner-only, or write bits held back above.
                    os.fchmod(current.fd, current.entry.mode & 0o777 & ~UMASK)
                if current.entry.mtime is not None:
                    os.utime(current.fd, (current.entry.mtime, current.entry.mtime))
            except OSError as exc:
                raise describe(exc, str(shown)) from None
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

    def _move_into_place(self, current: _Open, shown: _ShownName) -> None:
        fds = {"src_dir_fd": current.dir_fd, "dst_dir_fd": current.dir_fd}
        if self.layout.overwrite:
            existing = lstat_at(current.dir_fd, current.name)
            if existing is not None and stat.S_ISDIR(existing.st_mode):
                raise DeclinedError(f"{shown} is a directory; not replacing it")
            os.replace(current.temp, current.name, **fds)
            return
        if self._noreplace and _RENAMEAT2 is not None:
            # One atomic call instead of link + unlink; never replaces anything.
            src, dst = os.fsencode(current.temp), os.fsencode(current.name)
            if _RENAMEAT2(current.dir_fd, src, current.dir_fd, dst, _RENAME_NOREPLACE) == 0:
                return
            code = ctypes.get_errno()
            if code == errno.EEXIST:
                raise DeclinedError(f"{shown} appeared while receiving; not replacing it")
            # EPERM: seccomp sandboxes (some container runtimes) refuse the call itself.
            if code not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EPERM):
                raise describe(OSError(code, os.strerror(code)), str(shown))
            self._noreplace = False  # this file system cannot: link and unlink instead
        try:
            os.link(current.temp, current.name, **fds, follow_symlinks=False)
        except FileExistsError:
            raise DeclinedError(f"{shown} appeared while receiving; not replacing it") from None
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK):
                raise describe(exc, str(shown)) from None
            # File systems without hard links: check, then rename (a small race remains).
            if lstat_at(current.dir_fd, current.name) is not None:
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
        """An interrupted receive: make the partial data durable and record how much; if it
        cannot be made durable, nothing of it is kept to resume from."""
        try:
            os.fsync(current.fd)
        except OSError:
            self._discard(current)
            return
        with contextlib.suppress(OSError):
            parts = self.layout.parts[current.index]
            assert current.record is not None
            write_record(current.dir_fd, current.record, parts, current.entry, current.written)

    def finish_dirs(self) -> None:
        """Give the directories this transfer created their modes and times, deepest first
        (writing inside changes them). A directory that existed before is left exactly as
        it was: a sender must not open (or close) the receiver's own directories."""
        files, layout = self.offer.files, self.layout
        entries = [(layout.parts[i], files[i]) for i in files.dir_indexes()]
        entries = [(p, e) for p, e in entries if p in self._created]
        self._finished = True
        for parts, entry in sorted(entries, key=lambda pe: -len(pe[0])):
            parent = self._dir(parts[:-1])
            with contextlib.suppress(OSError):
                os.chmod(
                    parts[-1],
                    ((entry.mode & 0o777) | 0o700) & ~UMASK,
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
            if self.keep_partial and current.record is not None and current.written:
                self._keep(current)
            else:
                self._discard(current)
            if current.fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(current.fd)
            self._current = None
        if not self._finished and self._root_fd >= 0:
            self._remove_created()
        for fd in self._dirs.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self._dirs.clear()
        if self._root_fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._root_fd)
            self._root_fd = -1
        if not self._finished and self.layout.create_root:
            with contextlib.suppress(OSError):
                os.rmdir(self.layout.root)  # only if empty, as below

    def _remove_created(self) -> None:
        """A receive that did not finish: the directories it created go again, deepest
        first, unless something is in them (a partial file kept to resume, a file received
        and verified before the failure, or anything another program put there)."""
        for parts in sorted(self._created, key=len, reverse=True):
            try:
                parent = self._dir(parts[:-1], create=False)
            except (OSError, P2PShareError):
                continue  # gone already, or not a directory any more: not ours to touch
            fd = self._dirs.pop(parts, None)
            if fd is not None:
                os.close(fd)
            with contextlib.suppress(OSError):
                os.rmdir(parts[-1], dir_fd=parent)
