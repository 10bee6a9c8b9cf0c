"""What is sent: collecting the sources to offer, and reading them ahead of the data channel.

:func:`collect` turns the user's paths (files, directories, ``-`` for stdin) or text into
:class:`Source` entries; a :class:`Reader` reads them in order; :func:`read_ahead` runs the
reader, hashing and (when agreed) compressing, in the sender's worker thread.
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
import os
import stat
import sys
from array import array
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, overload

from p2pshare import digests
from p2pshare import messages as m
from p2pshare.codec import Compressor
from p2pshare.digests import SHA256, Digest
from p2pshare.errors import LocalFileError
from p2pshare.files import UnsafeNameError, check_offer, printable
from p2pshare.fs import describe, hash_prefix
from p2pshare.manifest import Manifest
from p2pshare.trial import COMPRESS_MIN_BYTES, COMPRESS_WHEN_AHEAD, CompressionTrial
from p2pshare.worker import Worker

STDIN_NAME = "stdin"
TEXT_NAME = "message.txt"
READ_AHEAD_PIECES = 16
MAX_GROUP_READS = 4
"""At most this many reads are compressed together: with 64 KiB messages (a browser, or small
packets) 1 MiB would have to shrink 16-fold to fit one message."""


@dataclass(frozen=True, slots=True)
class Source:
    """Where the bytes of one offered entry come from. Made when asked for (by
    :class:`Sources`): a sender does not hold one per entry."""

    entry: m.FileEntry
    path: Path | None = None  # a regular file
    stdin: bool = False
    text: bytes | None = None


class _SourceList(Sequence[Source]):
    """A sequence of sources made when asked for: subclasses say how many and which."""

    def _at(self, index: int) -> Source:
        raise NotImplementedError

    @overload
    def __getitem__(self, index: int) -> Source: ...
    @overload
    def __getitem__(self, index: slice) -> list[Source]: ...
    def __getitem__(self, index: int | slice) -> Source | list[Source]:
        if isinstance(index, slice):
            return [self._at(i) for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError("source index out of range")
        return self._at(index)

    def __iter__(self) -> Iterator[Source]:
        for index in range(len(self)):
            yield self._at(index)


class Sources(_SourceList):
    """Every entry to offer and where its bytes come from, in offer order.

    The entries are held in a :class:`~p2pshare.manifest.Manifest`; a file found by walking a
    directory is located by its entry (the walked directory plus the entry's path below the
    top name), so nothing else is held per file: a million files cost the sender tens of
    megabytes, not the ~1 KiB each that a :class:`Source` with its ``Path`` and entry took
    (issue 31). Other sources (a single file, stdin, a text) are kept as they are.
    """

    def __init__(self, given: Iterable[Source] = ()) -> None:
        self.entries = Manifest()
        self._given: dict[int, Source] = {}
        self._starts: list[int] = []  # the first index of each walked directory
        self._roots: list[tuple[str, int]] = []  # that directory, the length of its top name
        self._data: array[int] | None = None
        for source in given:
            self.add(source)

    def add(self, source: Source) -> None:
        self._given[len(self.entries)] = source
        self.entries.append(source.entry)
        self._data = None

    def add_walked(self, root: Path, top: str) -> None:
        """The entries added next (by :meth:`add_entry`) are ``top`` and what is under it,
        which is ``root`` on this machine."""
        self._starts.append(len(self.entries))
        self._roots.append((os.fspath(root), len(top)))

    def add_entry(self, rel: str, st: os.stat_result, kind: str = "file") -> None:
        self.entries.add(rel, *_stat_fields(st, kind), kind)
        self._data = None

    @property
    def streamed(self) -> bool:
        """Standard input is among them (it can be read only once)."""
        return any(source.stdin for source in self._given.values())

    def __len__(self) -> int:
        return len(self.entries)

    def _at(self, index: int) -> Source:
        given = self._given.get(index)
        if given is not None:
            return given
        entry = self.entries[index]
        if not entry.carries_data:
            return Source(entry)
        root, cut = self._roots[bisect.bisect_right(self._starts, index) - 1]
        return Source(entry, path=Path(root + entry.path[cut:]))

    def carrying_data(self) -> Sequence[Source]:
        """The sources that have bytes to send (all but directories), in order."""
        if self._data is None:
            self._data = self.entries.data_indexes()
        return _Picked(self, self._data)


class _Picked(_SourceList):
    """Some of a :class:`Sources`, by index."""

    def __init__(self, sources: Sources, indexes: array[int]) -> None:
        self._sources = sources
        self._indexes = indexes

    def __len__(self) -> int:
        return len(self._indexes)

    def _at(self, index: int) -> Source:
        return self._sources._at(self._indexes[index])


def as_sources(sources: Sources | Iterable[Source]) -> Sources:
    """``sources`` as :class:`Sources` (the same object when it is one already)."""
    return sources if isinstance(sources, Sources) else Sources(sources)


def collect(
    paths: Sequence[str | Path],
    *,
    text: str | None = None,
    name: str | None = None,
    warn: Callable[[str], None] = lambda message: None,
    exclude: Collection[Path] = (),
) -> Sources:
    """The entries to offer for ``paths`` (files, directories, ``-`` for stdin) or ``text``.

    Directories keep their structure under their own name, empty ones included. Symlinks are
    not followed: they are skipped, with a warning. Paths in ``exclude`` (found unreadable
    beforehand, ``--skip-unreadable``) are left out, with what is inside them.
    """
    if text is not None:
        data = text.encode("utf-8")
        if len(data) > m.MAX_TEXT_BYTES:
            raise LocalFileError("the text is larger than 1 MiB; send it as a file")
        return Sources([Source(m.FileEntry(TEXT_NAME, len(data), kind="text"), text=data)])
    sources = Sources()
    tops: dict[str, str] = {}
    for raw in paths:
        if str(raw) == "-":
            if len(paths) != 1:
                raise LocalFileError("'-' (standard input) must be the only thing sent")
            entry = m.FileEntry(name or STDIN_NAME, None, 0o644, None, kind="stream")
            return Sources([Source(entry, stdin=True)])
        path = Path(raw)
        try:
            st = path.lstat()
        except OSError as exc:
            raise describe(exc, path) from None
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
            _walk(sources, path, top, warn, frozenset(exclude))
        elif stat.S_ISREG(st.st_mode):
            sources.add(Source(m.FileEntry(top, *_stat_fields(st, "file")), path=path))
        else:
            raise LocalFileError(f"{path}: not a regular file or directory")
    if not sources:
        raise LocalFileError("nothing to send")
    _check_names(sources)
    return sources


def _check_names(sources: Sources) -> None:
    """Refuse, before a code is printed, what every receiver would refuse (the same rules)."""
    try:
        check_offer(m.Offer(sources.entries))
    except UnsafeNameError as exc:
        reason = exc.message.removeprefix("refused ").removeprefix("offer: ")
        raise UnsafeNameError(
            f"cannot send: {reason}; a receiver would refuse it (rename it and send again)"
        ) from None


def _stat_fields(st: os.stat_result, kind: str) -> tuple[int, int, float]:
    """An entry's size, mode and mtime from its ``lstat``."""
    return (0 if kind == "dir" else st.st_size, stat.S_IMODE(st.st_mode) & 0o777, st.st_mtime)


def _walk(
    sources: Sources,
    root: Path,
    top: str,
    warn: Callable[[str], None],
    exclude: frozenset[Path] = frozenset(),
) -> None:
    sources.add_walked(root, top)
    sources.add_entry(top, root.stat(), "dir")
    for dirpath, dirnames, filenames in os.walk(root, onerror=_raise, followlinks=False):
        base = Path(dirpath)
        rel = top + "/" + base.relative_to(root).as_posix() if base != root else top
        dirnames[:] = [d for d in dirnames if base / d not in exclude]
        for child in sorted(dirnames) + sorted(filenames):
            full = os.path.join(dirpath, child)
            if exclude and Path(full) in exclude:
                continue
            st = os.lstat(full)
            if stat.S_ISLNK(st.st_mode):
                warn(f"skipping symlink {printable(full)} (symlinks are not followed)")
            elif stat.S_ISDIR(st.st_mode):
                sources.add_entry(f"{rel}/{child}", st, "dir")
            elif stat.S_ISREG(st.st_mode):
                sources.add_entry(f"{rel}/{child}", st)
            else:
                warn(f"skipping {printable(full)} (not a regular file)")
        dirnames.sort()


def _raise(exc: OSError) -> None:
    raise describe(exc, exc.filename or "?")


@dataclass
class Reader:
    """Reads every source in order, ``chunk_bytes`` at a time, hashing as it goes."""

    sources: Sequence[Source]
    chunk_bytes: int
    read_bytes: int = 0
    """Bytes read to be sent."""

    def check_prefix(self, source: Source, prefix: m.Prefix, hash: str) -> Digest | None:
        """Hash the first ``prefix.offset`` bytes of ``source`` with ``hash``: the running hash
        when they match the receiver's (to be continued with the rest), None when not."""
        assert source.path is not None
        try:
            with open(source.path, "rb") as f:
                digest = hash_prefix(f.fileno(), prefix.offset, hash)
        except OSError as exc:
            raise describe(exc, source.path) from None
        if digest is None:
            raise LocalFileError(f"{source.path}: the file shrank while being sent")
        return digest if digest.hexdigest() == prefix.sha256 else None

    def whole(self, source: Source) -> bytes:
        """A small regular file's bytes, read at once: open, read, close (a buffered file
        object costs four more system calls, which for 100-byte files is most of the work)."""
        assert source.path is not None and source.entry.size is not None
        want = source.entry.size + 1  # one more, to see a file that grew
        try:
            fd = os.open(source.path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                data = os.read(fd, want)
                while len(data) < want and (more := os.read(fd, want - len(data))):
                    data += more
            finally:
                os.close(fd)
        except OSError as exc:
            raise describe(exc, source.path) from None
        if len(data) < want - 1:
            raise LocalFileError(f"{source.path}: the file shrank while being sent")
        if len(data) == want:
            raise LocalFileError(f"{source.path}: the file grew while being sent")
        self.read_bytes += len(data)
        return data

    def chunks(self, source: Source, start: int = 0) -> Iterator[bytes]:
        """The bytes of ``source`` from ``start``; a file that changes size while sent is an
        error."""
        if source.text is not None:
            self.read_bytes += len(source.text)
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
            raise describe(exc, source.path) from None


# -- reading ahead, in the sender's worker thread


@dataclass(frozen=True)
class ResumeAt:
    """Entry ``index``'s data starts at ``offset``: the receiver's prefix of that length
    matched ours, or (0) it did not."""

    index: int
    offset: int


@dataclass(frozen=True)
class Chunk:
    """The next bytes of the current source. ``payload`` is a zstd frame of ``raw_len`` bytes
    when ``raw_len`` is set; ``digest`` (the source's hash) is set on its last chunk (which
    may be empty)."""

    payload: bytes
    raw_len: int | None = None
    digest: str | None = None

    @property
    def size(self) -> int:
        """The bytes of the file this chunk carries (what the credit counts)."""
        return len(self.payload) if self.raw_len is None else self.raw_len


@dataclass(frozen=True)
class Batch:
    """Several small sources, each whole, read and hashed: ``(payload, digest)`` each, for
    one DataBatch message."""

    files: tuple[tuple[bytes, str], ...]

    @property
    def size(self) -> int:
        """The bytes of the files (what the credit counts)."""
        return sum(len(payload) for payload, _ in self.files)


BATCH_FILE_BYTES = 16 * 1024
"""Files of at most this size go in batches, when the receiver takes them (and, when
compression was agreed, only those too small to be tried: :data:`COMPRESS_MIN_BYTES`)."""

Piece = ResumeAt | Chunk | Batch


def read_ahead(
    reader: Reader,
    prefixes: Sequence[m.Prefix | None] = (),
    compress: bool = False,
    depth: int = READ_AHEAD_PIECES,
    group_bytes: int = m.MAX_DATAZ_RAW_BYTES,
    hash: str = SHA256,
    *,
    when_ahead: int = COMPRESS_WHEN_AHEAD,
    grouping: bool = True,
    batch_bytes: int = 0,
) -> Worker[None, Piece]:
    """A started worker whose results are every source's chunks in order, read and hashed
    (with ``hash``) at most ``depth`` pieces ahead of the data channel; with ``compress``, a
    chunk is compressed when the channel lags (``when_ahead`` pieces waiting,
    ``Tuning.compress_when_ahead``), several reads together up to ``group_bytes`` (the sender
    passes half the receiver's window: a piece must never need more credit than the receiver
    can have returned) unless ``grouping`` is off (``Tuning.compress_groups``).

    ``prefixes`` (one per source, or none) are what the receiver already holds: each is hashed
    here first and answered with a :class:`ResumeAt`; the hash state is kept, so that the
    prefix is read once and its data never sent again. ``stop()`` the worker when done.

    ``batch_bytes`` (0: none) lets consecutive small files that are read while the channel is
    still busy with earlier pieces go together as one :class:`Batch` of at most that many
    bytes, headers included: a batch is handed over as soon as the channel is idle, so it
    never waits for more files.
    """
    compressor = Compressor() if compress else None
    reads = min(group_bytes, m.MAX_DATAZ_RAW_BYTES) // reader.chunk_bytes
    group_reads = max(1, min(reads, MAX_GROUP_READS)) if grouping else 1
    limit = min(batch_bytes, group_bytes + m.BATCH_RECORD_OVERHEAD)
    work = functools.partial(
        _produce, reader, prefixes, hash, compressor, group_reads, when_ahead, limit
    )
    worker: Worker[None, Piece] = Worker("p2pshare-reader", work, depth=depth)
    worker.start()
    return worker


def _produce(
    reader: Reader,
    prefixes: Sequence[m.Prefix | None],
    hash: str,
    compressor: Compressor | None,
    group_reads: int,
    when_ahead: int,
    batch_bytes: int,
    worker: Worker[None, Piece],
) -> None:
    kept: dict[int, tuple[Digest, int]] = {}
    for k, prefix in enumerate(prefixes):
        if prefix is None:
            continue
        if worker.stopping:
            return
        matched = reader.check_prefix(reader.sources[k], prefix, hash)
        if matched is not None:
            kept[k] = (matched, prefix.offset)
        start = 0 if matched is None else prefix.offset
        if not worker.put(ResumeAt(prefix.index, start)):
            return
    largest = reader.chunk_bytes if compressor is None else COMPRESS_MIN_BYTES - 1
    batch = _Gathering(worker, batch_bytes, min(BATCH_FILE_BYTES, largest))
    for k, source in enumerate(reader.sources):
        if k not in kept and batch.takes(source):
            data = reader.whole(source)
            running = digests.new(hash)
            running.update(data)
            if not batch.add(data, running.hexdigest()):
                return
            continue
        if not batch.flush():
            return
        running, start = kept.pop(k) if k in kept else (digests.new(hash), 0)
        trial = CompressionTrial()
        group: list[bytes] = []  # reads gathered to be compressed together
        for data, last in _last_marked(reader.chunks(source, start)):
            if worker.stopping:
                return
            running.update(data)
            digest = running.hexdigest() if last else None
            # A stream is not held back for more reads: its data may be trickling in.
            alone = compressor is None or group_reads == 1 or source.stdin
            if not group and (alone or not _compressing(data, trial, worker, when_ahead)):
                if not worker.put(_chunk(data, trial, compressor, worker, when_ahead, digest)):
                    return
                continue
            group.append(data)
            if len(group) == group_reads or last:
                assert compressor is not None
                chunks, fits = _group(group, trial, compressor, reader.chunk_bytes, digest)
                for chunk in chunks:
                    if not worker.put(chunk):
                        return
                group = []
                if not fits:  # no more tries this transfer
                    group_reads = 1
    batch.flush()


class _Gathering:
    """Small whole files read ahead, gathered into a :class:`Batch` while the channel is busy
    with earlier pieces (``worker.backlog``), handed over once it is idle or the batch full."""

    def __init__(self, worker: Worker[None, Piece], limit: int, largest: int) -> None:
        self.worker = worker
        self.limit = limit
        self.largest = largest
        self.files: list[tuple[bytes, str]] = []
        self.used = 1  # the type byte

    def takes(self, source: Source) -> bool:
        size = source.entry.size
        return (
            self.limit > 0
            and source.path is not None
            and size is not None
            and size <= self.largest
            and 1 + m.BATCH_RECORD_OVERHEAD + size <= self.limit
        )

    def add(self, data: bytes, digest: str) -> bool:
        """Gather one file; False once the worker stopped."""
        if self.used + m.BATCH_RECORD_OVERHEAD + len(data) > self.limit and not self.flush():
            return False
        self.files.append((data, digest))
        self.used += m.BATCH_RECORD_OVERHEAD + len(data)
        return self.worker.backlog > 0 or self.flush()

    def flush(self) -> bool:
        """Hand over what was gathered (one file goes as a plain chunk); False once the
        worker stopped."""
        files, self.files, self.used = self.files, [], 1
        if not files:
            return not self.worker.stopping
        if len(files) == 1:
            return self.worker.put(Chunk(files[0][0], None, files[0][1]))
        return self.worker.put(Batch(tuple(files)))


def _last_marked(chunks: Iterator[bytes]) -> Iterator[tuple[bytes, bool]]:
    """Each chunk with whether it is the last (an empty source yields one empty chunk)."""
    held: bytes | None = None  # one chunk of look-ahead finds the last one
    for data in chunks:
        if held is not None:
            yield held, False
        held = data
    yield held or b"", True


def _compressing(
    data: bytes, trial: CompressionTrial, worker: Worker[None, Piece], when_ahead: int
) -> bool:
    return trial.worth_trying(len(data), worker.backlog, when_ahead)


def _chunk(
    data: bytes,
    trial: CompressionTrial,
    compressor: Compressor | None,
    worker: Worker[None, Piece],
    when_ahead: int,
    digest: str | None = None,
) -> Chunk:
    if compressor is not None and _compressing(data, trial, worker, when_ahead):
        return _compressed_or_raw(data, trial, compressor, digest)
    return Chunk(data, None, digest)


def _compressed_or_raw(
    data: bytes, trial: CompressionTrial, compressor: Compressor, digest: str | None = None
) -> Chunk:
    frame = compressor.compress(data)
    if trial.use_compressed(len(data), len(frame)):
        return Chunk(frame, len(data), digest)
    return Chunk(data, None, digest)


def _group(
    group: list[bytes],
    trial: CompressionTrial,
    compressor: Compressor,
    max_frame: int,
    digest: str | None,
) -> tuple[list[Chunk], bool]:
    """Reads gathered while the channel lagged, compressed as one frame when it fits in one
    message: a quarter of the messages and packets, and zstd a little faster and tighter,
    than frame by frame. Data that does not shrink enough goes as it was read; data that
    shrinks, but not to one message, is compressed read by read, and the second value, False,
    says that the next reads should not be gathered either."""
    data = b"".join(group)
    frame = compressor.compress(data)
    fits = True
    if not trial.use_compressed(len(data), len(frame)):
        chunks = [Chunk(part) for part in group]
    elif len(frame) <= max_frame:
        chunks = [Chunk(frame, len(data))]
    else:
        fits = False
        chunks = [
            _compressed_or_raw(part, trial, compressor)
            if len(part) >= COMPRESS_MIN_BYTES
            else Chunk(part)
            for part in group
        ]
    return [*chunks[:-1], dataclasses.replace(chunks[-1], digest=digest)], fits
