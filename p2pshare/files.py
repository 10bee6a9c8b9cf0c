"""What the receiver accepts as a file name, and how it prints what the sender said. Pure.

The sender is hostile: every path in an offer is checked here before any byte is written, and
the whole offer is refused when one entry is bad (croc CVE-2023-43616/-43619/-43620 and
magic-wormhole CVE-2026-42448 were path and escape-sequence bugs). Nothing is "cleaned up"
into something the sender did not say: a bad name is refused, with the reason.
"""

from __future__ import annotations

import sys
import unicodedata
from array import array
from collections.abc import Iterable, Iterator, Sequence
from typing import overload

from p2pshare import messages as m
from p2pshare.errors import UnsafeNameError
from p2pshare.manifest import Manifest

__all__ = [
    "OfferCheck",
    "PathParts",
    "UnsafeNameError",
    "check_component",
    "check_offer",
    "check_path",
    "printable",
    "terminal_safe",
]

MAX_COMPONENT_BYTES = 255
MAX_PATH_BYTES = 4096
MAX_DEPTH = 64
MAX_PRINT_CHARS = 200

_WINDOWS_DEVICES = {
    "CON",
    "PRN",
    "AUX",
    "NUL",
    "CONIN$",
    "CONOUT$",
    *(f"COM{i}" for i in range(10)),
    *(f"LPT{i}" for i in range(10)),
    *(f"COM{c}" for c in "¹²³"),
    *(f"LPT{c}" for c in "¹²³"),
    "CLOCK$",  # DOS's clock device: still refused by Windows APIs, as croc refuses it
}
RESERVED_PREFIX = ".p2pshare-"
"""The receiver's own bookkeeping (partial files and their records) is named so: an offered
name in that namespace could collide with it, so none is accepted."""
# Characters that are legal in POSIX names but mean something elsewhere (Windows paths,
# drive letters, alternate data streams) or are a classic source of confusion.
_FORBIDDEN_CHARS = set('\\/:*?"<>|')


# Letters and symbols that draw nothing: a name made of them looks empty or like another
# name (U+3164 HANGUL FILLER, U+2800 BRAILLE PATTERN BLANK, variation selectors...).
_INVISIBLE = frozenset(
    (
        *(0x034F, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x2800, 0x3164, 0xFFA0),
        *range(0x180B, 0x1810),
        *range(0xFE00, 0xFE10),
        *range(0xE0100, 0xE01F0),
    )
)


def _escape(ch: str) -> str:
    code = ord(ch)
    return (
        f"\\x{code:02x}"
        if code < 0x100
        else f"\\u{code:04x}"
        if code < 0x10000
        else (f"\\U{code:08x}")
    )


def _hidden(ch: str) -> bool:
    """Control, format (bidi, zero-width), line/paragraph separator or invisible."""
    category = unicodedata.category(ch)
    return category[0] == "C" or category in ("Zl", "Zp") or ord(ch) in _INVISIBLE


def printable(text: str, limit: int = MAX_PRINT_CHARS) -> str:
    """``text`` with every control, format (bidi, zero-width), separator other than the space
    (no-break and ideographic spaces included) and invisible character escaped, cut to
    ``limit`` characters: safe to show in a terminal, and what is shown is what is there."""
    out = []
    for ch in text[:limit]:
        out.append(_escape(ch) if _hidden(ch) or (ch != " " and ch.isspace()) else ch)
    return "".join(out) + ("…" if len(text) > limit else "")


def terminal_safe(text: str) -> str:
    """A received text message made safe for any terminal or pager, whether printed to one or
    saved and ``cat`` later: newlines and tabs stay, every other control, format (escape
    sequences, bidi overrides) or invisible character is escaped."""
    return "".join(ch if ch in "\n\t" or not _hidden(ch) else _escape(ch) for ch in text)


def check_component(part: str) -> None:
    """Refuse one path component that could escape, mislead or fail on some system."""
    reason = _component_problem(part)
    if reason is not None:
        raise UnsafeNameError(f"refused unsafe name '{printable(part)}': {reason}")


def _component_problem(part: str) -> str | None:
    if part in ("", ".", ".."):
        return "empty, '.' or '..' component"
    if len(part.encode("utf-8", "surrogatepass")) > MAX_COMPONENT_BYTES:
        return "longer than 255 bytes"
    # Printable ASCII (most names) has no control, invisible or separator character: only
    # the forbidden ones need looking for, without a Python loop over every character.
    plain = part.isascii() and part.isprintable()
    for ch in part if not plain or not _FORBIDDEN_CHARS.isdisjoint(part) else ():
        if ch in _FORBIDDEN_CHARS:
            return f"contains {ch!r}"
        category = unicodedata.category(ch)
        # Cc control (NUL, ESC...), Cf format (bidi overrides, zero-width), Cs surrogates,
        # Co private use, Cn unassigned, Zl/Zp line and paragraph separators.
        if category[0] == "C" or category in ("Zl", "Zp"):
            return "contains control or invisible character"
    if part[-1] == "." or part[-1].isspace() or part[0].isspace():
        return "leading space or trailing dot or space"
    if not plain and any(ord(ch) in _INVISIBLE for ch in part):
        return "contains a character that draws nothing"
    if part.casefold().startswith(RESERVED_PREFIX):
        return f"names starting with {RESERVED_PREFIX} are p2pshare's own"
    stem = part.split(".", 1)[0].rstrip(" ").upper()
    if stem in _WINDOWS_DEVICES:
        return "reserved device name on Windows"
    return None


def check_path(path: str, checked_dirs: set[str] | None = None) -> tuple[str, ...]:
    """Split a relative POSIX path from an offer into checked components, or refuse it.
    ``checked_dirs``: directory names already checked (they repeat across an offer's
    entries), added to as this path's pass."""
    if not path or path.startswith("/"):
        raise UnsafeNameError(f"refused unsafe path '{printable(path)}': empty or absolute")
    if len(path.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        raise UnsafeNameError(f"refused unsafe path '{printable(path)}': longer than 4096 bytes")
    *dirs, name = path.split("/")
    if len(dirs) >= MAX_DEPTH:
        raise UnsafeNameError(f"refused unsafe path '{printable(path)}': nested too deep")
    for part in dirs:
        if checked_dirs is None or part not in checked_dirs:
            check_component(part)
    check_component(name)
    if checked_dirs is not None:
        checked_dirs.update(dirs)
    # Directory names repeat across entries: one copy of each (offers can be large).
    return (*map(sys.intern, dirs), name) if dirs else (path,)


def hidden_in_home(checked: Iterable[tuple[str, ...]], destination_is_home: bool) -> str | None:
    """The first entry that would create or enter a hidden (dot) directory or file at the top
    of the receiver's home (``.ssh/authorized_keys``, ``.bashrc``, ``.config/...``), when the
    destination is the home directory itself; None otherwise. Such offers are refused: a
    sender must not be able to plant start-up files or keys by default."""
    if not destination_is_home:
        return None
    for parts in checked:
        if parts[0].startswith("."):
            return "/".join(parts)
    return None


def collision_key(path: str) -> str:
    """Two paths with the same key would be the same file on some file system."""
    return unicodedata.normalize("NFC", path).casefold()


class PathParts(Sequence[tuple[str, ...]]):
    """The components of each entry's path, made when asked for (nothing held per entry):
    what :func:`check_offer` returns once every path passed :func:`check_path`."""

    __slots__ = ("_files",)

    def __init__(self, files: Manifest) -> None:
        self._files = files

    def __len__(self) -> int:
        return len(self._files)

    @overload
    def __getitem__(self, index: int) -> tuple[str, ...]: ...
    @overload
    def __getitem__(self, index: slice) -> list[tuple[str, ...]]: ...
    def __getitem__(self, index: int | slice) -> tuple[str, ...] | list[tuple[str, ...]]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError("entry index out of range")
        return tuple(self._files.path(index).split("/"))

    def __iter__(self) -> Iterator[tuple[str, ...]]:
        files = self._files
        for index in range(len(files)):
            yield tuple(files.path(index).split("/"))


_ABSENT, _FILE, _DIR = 0, 1, 2


class _KeySet:
    """The hashes of collision keys seen, each with whether it is a directory: 62 bits of
    the hash and 2 of kind in one 8-byte slot of an open-addressed table kept at most half
    full, so 16-32 bytes a key (a Python set of ints took ~70, a dictionary of the keys
    themselves ~200: a million entries, issue 31). ``hash`` of a string is keyed per process
    (SipHash), so a sender cannot choose names whose hashes meet."""

    _HASH_BITS = (1 << 62) - 1

    def __init__(self) -> None:
        self._slots = array("Q", bytes(8 * 1024))
        self._used = 0

    def _find(self, h: int) -> int:
        slots, mask = self._slots, len(self._slots) - 1
        i = h & mask
        while (v := slots[i]) and v >> 2 != h:
            i = (i + 1) & mask
        return i

    def get(self, key: str) -> int:
        """``_FILE`` or ``_DIR`` if a key with ``key``'s hash was put, else ``_ABSENT``."""
        h = hash(key) & self._HASH_BITS
        return self._slots[self._find(h)] & 3

    def put(self, key: str, kind: int) -> None:
        """Note ``key`` as ``kind`` (a key already there keeps the kind it has)."""
        h = hash(key) & self._HASH_BITS
        i = self._find(h)
        if self._slots[i]:
            return
        self._slots[i] = h << 2 | kind
        self._used += 1
        if self._used * 2 > len(self._slots):
            old, self._slots = self._slots, array("Q", bytes(16 * len(self._slots)))
            for v in old:
                if v:
                    self._slots[self._find(v >> 2)] = v


class OfferCheck:
    """Checks an offer's entries as they arrive (:meth:`add`), so that the first bad one
    refuses the whole offer before the rest is held; :func:`check_offer` runs it on a
    whole offer.

    Besides each path, the manifest as a whole must make sense: no two entries that are the
    same file after case folding and Unicode normalisation, no file where another entry needs
    a directory (``a`` and ``a/b``), and text only as the sole entry. What is kept per entry
    is the hash of its collision key (:class:`_KeySet`), not the key and the name; a hash
    found again is confirmed against the entries themselves (a scan, only on the way to a
    refusal), so a chance equality of hashes refuses nothing.
    """

    def __init__(self, files: Manifest, count: int) -> None:
        self.files = files
        """The offer's entries: those checked so far come first (the receiver appends each
        once :meth:`add` passed it; :func:`check_offer` has them all already)."""
        self.count = count
        self.checked = 0
        self._keys = _KeySet()
        self._checked_dirs: set[str] = set()  # directory names already checked
        self._last_dirs: tuple[str, ...] = ()

    def add(self, entry: m.FileEntry) -> None:
        """Check one more entry against the rules and against those before it."""
        if entry.kind == "text" and self.count != 1:
            raise UnsafeNameError("refused offer: a text message must come alone")
        parts = check_path(entry.path, self._checked_dirs)
        dirs = parts[:-1]
        if dirs != self._last_dirs:
            self._add_parents(entry, dirs)
            self._last_dirs = dirs
        key = collision_key(entry.path)
        seen = self._keys.get(key)
        is_dir = entry.kind == "dir"
        if (seen == _FILE or (seen == _DIR and not is_dir)) and (
            other := self._earlier(key)
        ) is not None:
            raise UnsafeNameError(
                f"refused offer: '{printable(entry.path)}' and '{printable(other)}' name "
                "the same file (or a file and a directory)"
            )
        self._keys.put(key, _DIR if is_dir else _FILE)
        self.checked += 1

    def _add_parents(self, entry: m.FileEntry, dirs: tuple[str, ...]) -> None:
        """Each directory ``dirs`` needs must not be a file of the offer. Deepest first: a
        directory known already had its own parents checked when it became known."""
        for depth in range(len(dirs), 0, -1):
            parent = "/".join(dirs[:depth])
            key = collision_key(parent)
            seen = self._keys.get(key)
            if seen == _DIR:
                break
            if seen == _FILE and self._earlier(key, files_only=True) is not None:
                raise UnsafeNameError(
                    f"refused offer: '{printable(entry.path)}' needs '{printable(parent)}' to "
                    "be a directory, but the offer also sends it as a file"
                )
            self._keys.put(key, _DIR)

    def _earlier(self, key: str, files_only: bool = False) -> str | None:
        """The name of an entry checked before (or, unless ``files_only``, of a directory
        its path implies) whose collision key is ``key``; None when only hashes were equal."""
        files = self.files
        for index in range(self.checked):
            path = files.path(index)
            if collision_key(path) == key:
                if not (files_only and files.kind(index) == "dir"):
                    return path
            elif not files_only:
                parts = path.split("/")
                for depth in range(1, len(parts)):
                    parent = "/".join(parts[:depth])
                    if collision_key(parent) == key:
                        return parent
        return None


def check_offer(offer: m.Offer) -> PathParts:
    """Check every entry of ``offer`` (:class:`OfferCheck`); return their components, or
    refuse the whole offer."""
    check = OfferCheck(offer.files, len(offer.files))
    for entry in offer.files:
        check.add(entry)
    return PathParts(offer.files)
