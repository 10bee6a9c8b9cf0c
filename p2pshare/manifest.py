"""An offer's entries, held in columns: a few dozen bytes an entry instead of ~600.

A tree of a million files is a million entries on both sides for the whole transfer. As
:class:`~p2pshare.messages.FileEntry` objects (each with its own path string, float and
ints) they took 575-900 bytes each, so a million needed most of a gigabyte before anything
moved (issue 31). A :class:`Manifest` keeps every path's UTF-8 bytes back to back in one
buffer and each number in a typed array, and makes the ``FileEntry`` of an index when it is
asked for one (about a microsecond): the sender's protocol and the receiver's writer ask for
one entry at a time, and nothing holds on to them.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, overload

from p2pshare.errors import ProtocolError

MAX_FILE_BYTES = 2**62
MAX_TEXT_CHARS = 1024
MAX_TEXT_BYTES = 1024 * 1024


def int_field(obj: dict[str, Any], key: str, lo: int = 0, hi: int = MAX_FILE_BYTES) -> int:
    value = obj.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise ProtocolError(f"field {key!r} must be an integer from {lo} to {hi}")
    return value


def str_field(obj: dict[str, Any], key: str, max_chars: int = MAX_TEXT_CHARS) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or len(value) > max_chars:
        raise ProtocolError(f"field {key!r} must be a string of at most {max_chars} characters")
    return value


KINDS = ("file", "dir", "stream", "text")
MAX_TEXT_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class FileEntry:
    """One entry of an offer, as the sender declares it (untrusted until ``files.py`` says so).

    ``kind``: ``file`` (``size`` bytes follow), ``dir`` (nothing follows), ``stream`` (size
    unknown: ``size`` is None, e.g. stdin), ``text`` (a message to print, at most 1 MiB).
    """

    path: str
    size: int | None
    mode: int = 0o644
    mtime: float | None = None
    kind: str = "file"

    @property
    def carries_data(self) -> bool:
        return self.kind != "dir"

    def to_json(self) -> dict[str, Any]:
        obj: dict[str, Any] = {"path": self.path, "size": self.size, "mode": self.mode}
        if self.kind != "file":
            obj["kind"] = self.kind
        if self.mtime is not None:
            obj["mtime"] = self.mtime
        return obj

    @classmethod
    def from_json(cls, obj: Any) -> FileEntry:
        if not isinstance(obj, dict):
            raise ProtocolError("a file entry must be an object")
        kind = obj.get("kind", "file")
        if kind not in KINDS:
            raise ProtocolError("unknown entry kind")
        mtime = obj.get("mtime")
        if mtime is not None and (
            not isinstance(mtime, int | float) or isinstance(mtime, bool) or not 0 <= mtime < 2**40
        ):
            raise ProtocolError("field 'mtime' must be a timestamp")
        if kind == "stream":
            if obj.get("size") is not None:
                raise ProtocolError("a stream has no declared size")
            size = None
        else:
            size = int_field(obj, "size", 0, MAX_TEXT_BYTES if kind == "text" else MAX_FILE_BYTES)
            if kind == "dir" and size != 0:
                raise ProtocolError("a directory has size 0")
        return cls(
            path=str_field(obj, "path", 4096),
            size=size,
            mode=int_field(obj, "mode", 0, 0o7777),
            mtime=float(mtime) if mtime is not None else None,
            kind=kind,
        )


_KIND_CODES = {kind: code for code, kind in enumerate(KINDS)}
_NO_SIZE = -1  # a stream's unknown size
_NO_MTIME = math.nan


class Manifest(Sequence[FileEntry]):
    """The entries of one offer, in order; appended to while it is built, then only read.

    ``total_bytes`` (the sum of declared sizes, None once a stream's unknown size is among
    them) is kept as entries are added: progress reads it after every chunk."""

    __slots__ = ("_ends", "_kinds", "_modes", "_mtimes", "_paths", "_sizes", "_total", "dirs")

    def __init__(self, entries: Iterable[FileEntry] = ()) -> None:
        self._paths = bytearray()
        self._ends = array("Q")
        self._sizes = array("q")
        self._modes = array("H")
        self._mtimes = array("d")
        self._kinds = bytearray()
        self._total: int | None = 0
        self.dirs = 0
        """How many entries are directories."""
        for entry in entries:
            self.append(entry)

    def append(self, entry: FileEntry) -> None:
        self.add(entry.path, entry.size, entry.mode, entry.mtime, entry.kind)

    def add(
        self, path: str, size: int | None, mode: int, mtime: float | None, kind: str = "file"
    ) -> None:
        """One entry, from its fields (no ``FileEntry`` made on the way)."""
        self._paths += path.encode("utf-8", "surrogatepass")
        self._ends.append(len(self._paths))
        self._sizes.append(_NO_SIZE if size is None else size)
        self._modes.append(mode)
        self._mtimes.append(_NO_MTIME if mtime is None else mtime)
        self._kinds.append(_KIND_CODES[kind])
        if size is None:
            self._total = None
        elif self._total is not None:
            self._total += size
        if kind == "dir":
            self.dirs += 1

    @property
    def total_bytes(self) -> int | None:
        return self._total

    def __len__(self) -> int:
        return len(self._ends)

    def path(self, index: int) -> str:
        start = self._ends[index - 1] if index else 0
        return self._paths[start : self._ends[index]].decode("utf-8", "surrogatepass")

    def size(self, index: int) -> int | None:
        size = self._sizes[index]
        return None if size == _NO_SIZE else size

    def kind(self, index: int) -> str:
        return KINDS[self._kinds[index]]

    def data_indexes(self) -> array[int]:
        """The entries that carry bytes (all but directories), in order: 8 bytes each."""
        if not self.dirs:
            return array("q", range(len(self)))
        return self._indexes(directories=False)

    def dir_indexes(self) -> array[int]:
        """The directory entries, in order."""
        return self._indexes(directories=True) if self.dirs else array("q")

    def _indexes(self, directories: bool) -> array[int]:
        """A pass over the kinds (one byte an entry), no ``FileEntry`` made."""
        dir_code = _KIND_CODES["dir"]
        return array("q", (i for i, k in enumerate(self._kinds) if (k == dir_code) == directories))

    def _entry(self, index: int) -> FileEntry:
        mtime = self._mtimes[index]
        return FileEntry(
            self.path(index),
            self.size(index),
            self._modes[index],
            None if math.isnan(mtime) else mtime,
            KINDS[self._kinds[index]],
        )

    @overload
    def __getitem__(self, index: int) -> FileEntry: ...
    @overload
    def __getitem__(self, index: slice) -> Manifest: ...
    def __getitem__(self, index: int | slice) -> FileEntry | Manifest:
        if isinstance(index, slice):
            return Manifest(self._entry(i) for i in range(*index.indices(len(self))))
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError("entry index out of range")
        return self._entry(index)

    def __iter__(self) -> Iterator[FileEntry]:
        for index in range(len(self)):
            yield self._entry(index)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Manifest):
            return (
                self._paths == other._paths
                and self._ends == other._ends
                and self._sizes == other._sizes
                and self._modes == other._modes
                and self._kinds == other._kinds
                and [x if x == x else None for x in self._mtimes]
                == [x if x == x else None for x in other._mtimes]
            )
        if isinstance(other, tuple | list):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # built by appending: not a key

    def __repr__(self) -> str:
        return f"Manifest({len(self)} entries)"

    def nbytes(self) -> int:
        """The memory the columns hold (what a test of the bound checks)."""
        return sum(
            col.buffer_info()[1] * col.itemsize for col in (self._ends, self._sizes, self._modes)
        ) + (len(self._mtimes) * 8 + len(self._paths) + len(self._kinds))


def as_manifest(entries: Manifest | Iterable[FileEntry]) -> Manifest:
    """``entries`` as a Manifest (the same object when it is one already)."""
    return entries if isinstance(entries, Manifest) else Manifest(entries)
