"""Where a received offer goes, decided before any byte moves.

:func:`plan` maps the offer's entries under the output directory, walks what already exists
there without following links, refuses conflicts and existing files (unless ``--overwrite``)
and, when resuming, notes the data already on disk; :func:`check_free_space` refuses an offer
the disk cannot hold; :func:`existing_files` and :func:`free_name` say what a person at a
terminal is asked about when files are already there. Nothing here writes.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from p2pshare import messages as m
from p2pshare.errors import DeclinedError, DiskFullError, LocalFileError
from p2pshare.files import UnsafeNameError, hidden_in_home, printable
from p2pshare.fs import DIR_FLAGS, lstat_at
from p2pshare.partials import RESUME_MIN_BYTES, find_partial

FREE_SPACE_MARGIN_BYTES = 16 * 1024 * 1024


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
    parts: Sequence[tuple[str, ...]]
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

    def destination(self, entries: int) -> Path:
        """What the user is told the offer goes to: the file itself for a single entry, else
        the directory."""
        return self.shown(0) if entries == 1 else self.root

    def space_needed_in(self) -> Path:
        """The existing directory whose file system must hold the data."""
        return self.root.parent if self.create_root else self.root


MTIME_SLACK_S = 0.001
"""A file already in place counts as possibly the same as the one offered when its size is
equal and its modification time (which we set on receiving) is this close."""


def plan(
    output: Path | None,
    offer: m.Offer,
    parts: Sequence[tuple[str, ...]],
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
    hidden = hidden_in_home(parts, _is_home(root))
    if hidden is not None:
        raise DeclinedError(
            f"not accepted: {printable(hidden)} would go among the hidden files of your home "
            "directory (keys, shell start-up files); receive into another directory (-o DIR)"
        )
    layout = Layout(root, create_root, parts, overwrite, resume)
    if not create_root:
        _preflight(layout, offer)
    return layout


def _is_home(root: Path) -> bool:
    try:
        return root.resolve() == Path.home().resolve()
    except (OSError, RuntimeError):  # no home directory known
        return False


def _preflight(layout: Layout, offer: m.Offer) -> None:
    """Walk the existing tree without following links; refuse conflicts and existing files,
    and (with ``layout.resume``) note the data already there.

    The entries of a tree come directory by directory: the directories of the previous
    entry's path stay open for the next, and once a directory is found missing nothing under
    it is looked up (a new tree of a million files costs one lookup, not a million)."""
    root_fd = os.open(layout.root, os.O_RDONLY | os.O_DIRECTORY)
    chain: list[tuple[str, int]] = []  # the directories open below the root, in order
    missing: tuple[str, ...] = ()  # the directory found not to exist, last
    try:
        for index, parts in enumerate(layout.parts):
            if missing and parts[: len(missing)] == missing:
                continue
            entry = offer.files[index]
            keep = 0
            while keep < min(len(chain), len(parts) - 1) and chain[keep][0] == parts[keep]:
                keep += 1
            for _, fd in chain[keep:]:
                os.close(fd)
            del chain[keep:]
            fd = chain[-1][1] if chain else root_fd
            for depth in range(keep, len(parts)):
                part = parts[depth]
                st = lstat_at(fd, part)
                last = depth == len(parts) - 1
                if st is None:
                    if not last:
                        missing = parts[: depth + 1]
                    elif layout.resumable(entry):
                        length = find_partial(fd, parts, entry, layout.shown(index))
                        if length is not None:
                            layout.found[index] = Found(length, complete=False)
                    break
                _check_existing(layout, index, entry, parts, depth, st)
                if not last:
                    fd = os.open(part, DIR_FLAGS, dir_fd=fd)
                    chain.append((part, fd))
    finally:
        for _, fd in chain:
            os.close(fd)
        os.close(root_fd)


def _check_existing(
    layout: Layout,
    index: int,
    entry: m.FileEntry,
    parts: tuple[str, ...],
    depth: int,
    st: os.stat_result,
) -> None:
    """``parts[: depth + 1]`` exists (``st``, not followed): a directory where one is
    needed, and a file in place only if it may be replaced or looks received before."""
    last = depth == len(parts) - 1
    shown = layout.root.joinpath(*parts[: depth + 1])
    if not last or entry.kind == "dir":
        if not stat.S_ISDIR(st.st_mode):
            raise UnsafeNameError(
                f"refused: {printable(str(shown))} exists and is not a directory "
                "(a symlink is never followed)",
                peer_message=f"refused: '{printable(entry.path)}' needs a "
                "directory where the receiving side has something else",
            )
    elif stat.S_ISDIR(st.st_mode):
        raise DeclinedError(
            f"{printable(str(shown))} is a directory; not replacing it",
            peer_message=f"declined: '{printable(entry.path)}' is a directory "
            "on the receiving side",
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
            f"{printable(str(layout.shown(index)))} already exists; pass --overwrite to replace it",
            peer_message=f"declined: '{printable(entry.path)}' already exists "
            "on the receiving side",
        )


def check_free_space(directory: Path, nbytes: int) -> None:
    """Refuse to start a receive of ``nbytes`` that would (nearly) fill ``directory``'s disk."""
    free = shutil.disk_usage(directory).free
    if free < nbytes + FREE_SPACE_MARGIN_BYTES:
        raise DiskFullError(
            f"not enough free space in {directory}: {nbytes:,} bytes needed, {free:,} free",
            peer_message=f"disk full: the receiving side has {free:,} bytes free, "
            f"{nbytes:,} needed",
        )


def existing_files(layout: Layout, offer: m.Offer) -> tuple[Path, ...]:
    """The files of the offer that exist where they would go, except those that look
    received before (the sender checks those and skips them)."""
    found = []
    for index, entry in enumerate(offer.files):
        if entry.kind == "dir":
            continue
        held = layout.found.get(index)
        if held is not None and held.complete:
            continue
        shown = layout.shown(index)
        if os.path.lexists(shown):
            found.append(shown)
    return tuple(found)


def free_name(path: Path) -> Path:
    """``report (1).txt``, ``report (2).txt``...: the first that does not exist."""
    stem, suffix = path.stem, path.suffix
    for n in range(1, 10_000):
        candidate = path.with_name(f"{stem} ({n}){suffix}")
        if not os.path.lexists(candidate):
            return candidate
    raise DeclinedError(f"{printable(path.name)} exists, and so do 9,999 renamed copies")
