"""Checks made before a code is printed or an offer accepted, so that a transfer does not
start only to fail halfway (a partial directory on the receiver, a code read out for nothing).

Local file system only, no network: the sender checks it can read everything it offers, the
receiver that it can write where the offer goes.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Sequence
from pathlib import Path

from p2pshare.errors import LocalFileError
from p2pshare.files import printable

MAX_LISTED = 3
"""Unreadable paths named in the error; the rest are counted."""


def _unreadable_in(top: Path, found: list[Path]) -> None:
    """Append to ``found`` every file or directory under ``top`` that cannot be read,
    without following symlinks (they are skipped when sending anyway), depth first in name
    order. Iterative: a deep tree must not exhaust Python's recursion limit. A child's type
    comes from its directory listing (no ``lstat`` each, no ``Path`` each: a million files
    are walked here before the sender's own walk)."""
    try:
        st = top.lstat()
    except FileNotFoundError:
        return  # reported by the sender's own collection, with its usual message
    except OSError:
        found.append(top)
        return
    pending = [(os.fspath(top), stat.S_ISDIR(st.st_mode), stat.S_ISREG(st.st_mode))]
    while pending:
        path, is_dir, is_file = pending.pop()
        if is_file:
            try:
                # A real open, not os.access: access() answers for the real uid, and says yes
                # to root for files that a mandatory access control layer would still refuse.
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY)
            except OSError as exc:
                if exc.errno in (errno.EACCES, errno.EPERM):
                    found.append(Path(path))
                continue
            os.close(fd)
        elif is_dir:
            try:
                with os.scandir(path) as listing:
                    children = sorted(
                        (e.name, e.is_dir(follow_symlinks=False), e.is_file(follow_symlinks=False))
                        for e in listing
                    )
            except FileNotFoundError:
                continue
            except PermissionError:
                found.append(Path(path))
                continue
            pending.extend(
                (os.path.join(path, name), sub, reg) for name, sub, reg in reversed(children)
            )


def unreadable(paths: Sequence[Path]) -> list[Path]:
    """Every file or directory under ``paths`` this process cannot read. The root
    directory is left to the sender's collection, which refuses to send it."""
    found: list[Path] = []
    for path in paths:
        if str(path) != "-" and path.resolve() != Path(path.anchor or "/"):
            _unreadable_in(path, found)
    return found


def check_readable(
    paths: Sequence[Path], *, skip: bool = False, warn: Callable[[str], None] = lambda m: None
) -> tuple[list[Path], list[Path]]:
    """Refuse to start when something offered cannot be read (exit 11), or, with ``skip``,
    warn about each unreadable path and return ``paths`` without the unreadable top-level
    ones, and every unreadable path (for the sender's collection to leave out)."""
    found = unreadable(paths)
    if not found:
        return list(paths), []
    if skip:
        for path in found:
            warn(f"skipping {printable(str(path))} (not readable)")
        bad = set(found)
        return [p for p in paths if p not in bad], found
    names = ", ".join(printable(str(p)) for p in found[:MAX_LISTED])
    more = f" and {len(found) - MAX_LISTED} more" if len(found) > MAX_LISTED else ""
    raise LocalFileError(
        f"cannot read {names}{more}: permission denied (fix the permissions, or pass "
        "--skip-unreadable to send the rest)"
    )


def output_directory(output: str) -> Path:
    """``--output`` as a path. A trailing slash says "a directory": it is created (its parent
    must exist) so that a single file is saved inside it, not under its name."""
    path = Path(output)
    if output.endswith(("/", os.sep)) and not path.exists():
        try:
            path.mkdir()
        except FileNotFoundError:
            raise LocalFileError(f"{printable(str(path.parent))}: no such directory") from None
        except OSError as exc:
            reason = (exc.strerror or type(exc).__name__).lower()
            raise LocalFileError(f"cannot create {printable(output)}: {reason}") from None
    return path


def _nearest_directory(destination: Path) -> Path:
    """``destination`` if it is a directory, else the nearest existing directory above it.

    A path the system cannot take whole (ENAMETOOLONG: longer than PATH_MAX) counts as not
    there: the receiver writes below its output directory through directory descriptors,
    one component at a time, so such a destination is received like any other (one entry or
    many), and what must be writable is the deepest directory a path still reaches."""
    for path in (destination, *destination.parents):
        try:
            if path.is_dir():
                return path
        except OSError:
            continue
    return Path(destination.anchor or ".")


def check_writable(destination: Path) -> None:
    """Refuse an offer whose destination cannot be written, before accepting it.

    ``destination`` is a file to create (its directory must be writable) or a directory to
    create or fill (the nearest existing one must be writable).
    """
    directory = _nearest_directory(destination)
    if not os.access(directory, os.W_OK | os.X_OK):
        raise LocalFileError(f"cannot write into {printable(str(directory))}: permission denied")
