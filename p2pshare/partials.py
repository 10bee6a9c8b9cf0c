"""Partial files: what an interrupted receive leaves behind so that a resend can continue.

A large file being received lives under a name derived from the entry (its final path, size
and modification time), next to a small JSON record of how much of it is known to be on disk.
A resend of the same file finds both again; a lock says that a receive is writing it right now.
Nothing found here is trusted: the sender checks the data's hash before it is used.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import stat
from pathlib import Path

from p2pshare import messages as m
from p2pshare.digests import Digest
from p2pshare.errors import IntegrityError, LocalFileError
from p2pshare.files import printable
from p2pshare.fs import NEW_FILE_FLAGS, hash_prefix, lstat_at

logger = logging.getLogger(__name__)

TEMP_PREFIX = ".p2pshare-"
TEMP_SUFFIX = ".part"
RECORD_SUFFIX = ".json"
RESUME_MIN_BYTES = 1024 * 1024
"""Files this large keep their partial data when a receive is interrupted; smaller ones are
simply sent again."""


def worth_keeping(error: BaseException) -> bool:
    """Whether the data of a receive that ended with ``error`` may be kept to resume from.

    Yes when the sender is not suspect: the network or the peer went away, either side
    stopped (Ctrl-C, an Abort with its reason), the disk here failed (full, unwritable).
    No when this receiver caught the sender breaking the protocol (sizes, hashes, credit,
    malformed or unexpected messages, names): its data is not worth a resend's trust, even
    though a resend checks it again. docs/resume.md says the same."""
    return not (isinstance(error, IntegrityError) and not error.remote)


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


def write_record(
    dir_fd: int, name: str, parts: tuple[str, ...], entry: m.FileEntry, synced: int
) -> None:
    """Replace record ``name`` in ``dir_fd`` atomically: ``synced`` bytes are on disk."""
    temp = f"{TEMP_PREFIX}{os.urandom(6).hex()}.tmp"
    fd = os.open(temp, NEW_FILE_FLAGS, 0o600, dir_fd=dir_fd)
    try:
        os.write(fd, _record(parts, entry, synced))
    except OSError:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(temp, dir_fd=dir_fd)
        raise
    os.close(fd)
    os.replace(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)


def find_partial(
    dir_fd: int, parts: tuple[str, ...], entry: m.FileEntry, shown: Path
) -> int | None:
    """The length of a partial file for ``entry`` left in ``dir_fd`` by an interrupted
    receive, if its record describes this very entry and the file is a plain file of ours."""
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
    st_part = lstat_at(dir_fd, part)
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
    return st_part.st_size


def lock(fd: int, shown: Path) -> None:
    """Hold a partial file for this receive: two receives of the same file into the same
    place at once would otherwise share its name (it is derived from the entry)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise LocalFileError(
            f"{printable(str(shown))}: another p2pshare is receiving this file here right now"
        ) from None


def check_unlocked(dir_fd: int, part: str, shown: Path) -> None:
    """Refuse to replace a partial file that another receive is writing right now."""
    try:
        fd = os.open(part, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
    except OSError:
        return  # absent, or a link: replaced without looking inside
    try:
        lock(fd, shown)
    finally:
        os.close(fd)


def hash_at(dir_fd: int, name: str, length: int, hash: str) -> Digest | None:
    """``hash``'s state over the first ``length`` bytes of a regular file (None if it is not
    one, or shorter)."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
    except OSError:
        return None
    try:
        return hash_prefix(fd, length, hash) if stat.S_ISREG(os.fstat(fd).st_mode) else None
    except OSError:
        return None
    finally:
        os.close(fd)
