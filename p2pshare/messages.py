"""Wire format of the peer protocol on the data channel: one binary message per frame.

The first byte is the message type. ``Data`` carries raw file bytes after it; every other
message carries one UTF-8 JSON object. :func:`decode` validates types and ranges of every field
and raises :class:`~p2pshare.errors.ProtocolError` on anything else; what the values *mean*
(paths, sizes against free space, order) is checked by ``transfer.py`` and ``files.py``.
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, get_args

from p2pshare.errors import ProtocolError

# An entry's wire form lives with the columns that hold many (manifest.py); it is part of
# this format, so it is named here too (``m.FileEntry``), as are the limits of its fields.
from p2pshare.manifest import MAX_FILE_BYTES as MAX_FILE_BYTES
from p2pshare.manifest import MAX_TEXT_BYTES as MAX_TEXT_BYTES
from p2pshare.manifest import MAX_TEXT_CHARS as MAX_TEXT_CHARS
from p2pshare.manifest import FileEntry as FileEntry
from p2pshare.manifest import Manifest, as_manifest, int_field, str_field

PROTOCOL_VERSION = 1
MAX_ENTRIES = 10_000_000
"""The most entries one offer may have (a receiver's own limit, ``--max-entries``, is lower)."""
OFFER_BATCH_BYTES = 48 * 1024
"""Entries are sent in batches that keep each Offer/OfferMore message under this size."""
MAX_DATAZ_RAW_BYTES = 1024 * 1024
CODECS = ("zstd",)
HASHES = ("blake3",)
"""Hashes a sender may offer besides SHA-256, which every peer speaks (p2pshare.digests)."""
_HEX64 = re.compile(r"[0-9a-f]{64}")


def entry_cost(obj: dict[str, Any]) -> int:
    """What an entry counts against :data:`OFFER_BATCH_BYTES`: its JSON's length in UTF-8
    with ``json.dumps``'s default separators, plus one (the page splits by the same rule).
    Worked out without encoding the entry (a million entries took seconds to encode twice)."""
    path = obj["path"]
    if path.isascii() and path.isprintable() and '"' not in path and "\\" not in path:
        cost = len(path) + 2
    else:
        cost = len(json.dumps(path, ensure_ascii=False).encode())
    size = obj["size"]
    # {"path": P, "size": S, "mode": M}, then , "kind": "K" and , "mtime": T when present
    cost += 30 + (4 if size is None else len(str(size))) + len(str(obj["mode"]))
    if "kind" in obj:
        cost += 12 + len(obj["kind"])
    if "mtime" in obj:
        cost += 11 + len(repr(obj["mtime"]))
    return cost + 1


def _batches(entries: Manifest) -> Iterator[list[dict[str, Any]]]:
    """The entries as JSON objects, one batch at a time (at least one, maybe empty): only
    one batch of objects is held at a time (~300 bytes an entry for a whole tree, issue 31)."""
    batch: list[dict[str, Any]] = []
    used = 0
    for entry in entries:
        obj = entry.to_json()
        cost = entry_cost(obj)
        if batch and used + cost > OFFER_BATCH_BYTES:
            yield batch
            batch, used = [], 0
        batch.append(obj)
        used += cost
    yield batch


class Offer:
    """Sender → receiver: what it wants to send. On the wire: this message with the first
    batch of entries, then :class:`OfferMore` messages until ``count`` entries were sent.

    ``files``: the entries, held as a :class:`~p2pshare.manifest.Manifest` (given as one, it is
    shared, not copied: ``send --many`` offers the same entries to every receiver)."""

    TYPE: ClassVar[int] = 0x01
    __slots__ = ("compression", "files", "hashes", "version")

    def __init__(
        self,
        files: Manifest | Iterable[FileEntry],
        version: int = PROTOCOL_VERSION,
        compression: tuple[str, ...] = (),
        hashes: tuple[str, ...] = (),
    ) -> None:
        self.files = as_manifest(files)
        self.version = version
        self.compression = compression
        """Codecs the sender can use for Data (``zstd``); the receiver picks one in Accept."""
        self.hashes = hashes
        """Hashes the sender can use besides SHA-256 (``blake3``); the receiver may pick one."""

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Offer):
            return NotImplemented
        return (self.files, self.version, self.compression, self.hashes) == (
            other.files,
            other.version,
            other.compression,
            other.hashes,
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Offer({self.files!r}, compression={self.compression}, hashes={self.hashes})"

    @property
    def total_bytes(self) -> int | None:
        """The sum of declared sizes, or None when a stream's size is unknown. Kept by the
        manifest as it is built: progress reads it after every chunk, and summing a large
        tree's entries each time made sending quadratic in the number of files (issue 31)."""
        return self.files.total_bytes

    def frames(self) -> Iterator[bytes]:
        """The offer's messages, made as they are taken: a large tree's (~100 bytes an
        entry) are never all held at once."""
        batches = _batches(self.files)
        first = next(batches)
        head: dict[str, Any] = {
            "v": self.version,
            "count": len(self.files),
            "total": self.total_bytes,
            "files": first,
        }
        if self.compression:
            head["compression"] = list(self.compression)
        if self.hashes:
            head["hash"] = list(self.hashes)
        yield _frame(self.TYPE, head)
        for batch in batches:
            yield _frame(OfferMore.TYPE, {"files": batch})


@dataclass(frozen=True)
class OfferHead:
    """The first message of an offer: counts, and the first entries."""

    TYPE: ClassVar[int] = Offer.TYPE
    count: int
    total: int | None
    files: tuple[FileEntry, ...]
    compression: tuple[str, ...] = ()
    hashes: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> OfferHead:
        version = int_field(obj, "v", 1, 1_000)
        if version != PROTOCOL_VERSION:
            raise ProtocolError(
                f"the sender speaks protocol version {version}, we speak "
                f"{PROTOCOL_VERSION}: upgrade p2pshare on both sides"
            )
        count = int_field(obj, "count", 1, MAX_ENTRIES)
        total = None if obj.get("total") is None else int_field(obj, "total", 0, MAX_FILE_BYTES * 4)
        codecs = _names(obj, "compression")
        return cls(count, total, _entries(obj), codecs, _names(obj, "hash"))


def _names(obj: dict[str, Any], key: str) -> tuple[str, ...]:
    """An optional short list of short names (codecs, hashes); unknown ones are kept, the
    receiver picks among those it knows."""
    names = obj.get(key, [])
    if (
        not isinstance(names, list)
        or len(names) > 8
        or not all(isinstance(c, str) and len(c) <= 16 for c in names)
    ):
        raise ProtocolError(f"field '{key}' must be a short list of names")
    return tuple(names)


@dataclass(frozen=True)
class OfferMore:
    """More entries of the offer in progress."""

    TYPE: ClassVar[int] = 0x09
    files: tuple[FileEntry, ...]

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> OfferMore:
        return cls(_entries(obj))


def _entries(obj: dict[str, Any]) -> tuple[FileEntry, ...]:
    raw = obj.get("files")
    if not isinstance(raw, list) or len(raw) > MAX_ENTRIES:
        raise ProtocolError("'files' must be a list of entries")
    return tuple(FileEntry.from_json(f) for f in raw)


@dataclass(frozen=True)
class Accept:
    """Receiver → sender: go ahead; ``window`` bytes of credit to start with.

    ``have`` counts the entries the receiver already holds a prefix of (an interrupted
    earlier attempt, or the whole file); they follow in :class:`Have` messages, and the sender
    sends nothing before it has them all."""

    TYPE: ClassVar[int] = 0x02
    window: int
    compression: str | None = None
    """The codec the sender may use (one it offered), or None."""
    have: int = 0
    hash: str | None = None
    """The hash both sides use (one the sender offered), or None for SHA-256."""
    batch: bool = False
    """The receiver takes :class:`DataBatch` messages (several small files in one); a
    receiver that does not say so (the page) never gets one."""

    def to_json(self) -> dict[str, Any]:
        obj: dict[str, Any] = {"window": self.window}
        if self.compression:
            obj["compression"] = self.compression
        if self.hash:
            obj["hash"] = self.hash
        if self.have:
            obj["have"] = self.have
        if self.batch:
            obj["batch"] = True
        return obj

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Accept:
        codec = obj.get("compression")
        if codec is not None and codec not in CODECS:
            raise ProtocolError("unknown compression")
        have = int_field(obj, "have", 0, MAX_ENTRIES) if "have" in obj else 0
        digest = obj.get("hash")
        if digest is not None and digest not in HASHES:
            raise ProtocolError("unknown hash")
        batch = obj.get("batch", False)
        if not isinstance(batch, bool):
            raise ProtocolError("field 'batch' must be true or false")
        return cls(int_field(obj, "window", 1, 2**31), codec, have, digest, batch)


@dataclass(frozen=True)
class Prefix:
    """One entry the receiver already has the first ``offset`` bytes of, and their digest.

    Message fields are named as on the wire: ``sha256`` holds the digest of the hash agreed
    in Accept, SHA-256 unless both chose BLAKE3 (the name predates the choice)."""

    index: int
    offset: int
    sha256: str


HAVE_BATCH = 512
"""Prefixes per :class:`Have` message (about 50 KiB of JSON at most)."""


@dataclass(frozen=True)
class Have:
    """Receiver → sender, after Accept: prefixes it already holds, in entry order."""

    TYPE: ClassVar[int] = 0x0A
    prefixes: tuple[Prefix, ...]

    def to_json(self) -> dict[str, Any]:
        return {"entries": [[p.index, p.offset, p.sha256] for p in self.prefixes]}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Have:
        raw = obj.get("entries")
        if not isinstance(raw, list) or not 0 < len(raw) <= HAVE_BATCH:
            raise ProtocolError(f"'entries' must be a list of 1 to {HAVE_BATCH} prefixes")
        prefixes = []
        for item in raw:
            if not isinstance(item, list) or len(item) != 3:
                raise ProtocolError("a prefix must be [index, offset, sha256]")
            fields = dict(zip(("index", "offset", "sha256"), item, strict=True))
            digest = str_field(fields, "sha256", 64)
            if not _HEX64.fullmatch(digest):
                raise ProtocolError("field 'sha256' must be 64 lowercase hex digits")
            offset = int_field(fields, "offset", 1)
            prefixes.append(Prefix(int_field(fields, "index", 0, MAX_ENTRIES), offset, digest))
        return cls(tuple(prefixes))


@dataclass(frozen=True)
class Resume:
    """Sender → receiver, just before the data of an entry the receiver listed in Have:
    ``offset`` is where the data starts. The sender hashed its own first ``offset`` bytes and
    they matched; 0 means they did not (the receiver starts that entry afresh). The final
    digest in FileEnd still covers the whole file, prefix included."""

    TYPE: ClassVar[int] = 0x0B
    index: int
    offset: int

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "offset": self.offset}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Resume:
        return cls(int_field(obj, "index", 0, MAX_ENTRIES), int_field(obj, "offset"))


@dataclass(frozen=True)
class Abort:
    """Either side: the transfer stops; ``error`` is a stable error name (errors.py)."""

    TYPE: ClassVar[int] = 0x03
    error: str
    message: str

    def to_json(self) -> dict[str, Any]:
        return {"error": self.error, "message": self.message[:MAX_TEXT_CHARS]}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Abort:
        return cls(str_field(obj, "error", 64), str_field(obj, "message"))


@dataclass(frozen=True)
class Credit:
    """Receiver → sender: ``bytes`` more may be sent (the receiver has written them out)."""

    TYPE: ClassVar[int] = 0x04
    bytes: int

    def to_json(self) -> dict[str, Any]:
        return {"bytes": self.bytes}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Credit:
        return cls(int_field(obj, "bytes", 1, 2**31))


@dataclass(frozen=True)
class FileEnd:
    """Sender → receiver: all ``size`` bytes of entry ``index`` were sent; their digest (of the
    hash agreed in Accept, whatever it is, in the field named ``sha256`` as on the wire)."""

    TYPE: ClassVar[int] = 0x05
    index: int
    size: int
    sha256: str

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "size": self.size, "sha256": self.sha256}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> FileEnd:
        digest = str_field(obj, "sha256", 64)
        if not _HEX64.fullmatch(digest):
            raise ProtocolError("field 'sha256' must be 64 lowercase hex digits")
        return cls(int_field(obj, "index", 0, MAX_ENTRIES), int_field(obj, "size"), digest)


@dataclass(frozen=True)
class FileAck:
    """Receiver → sender: every entry up to and including ``index`` is verified and stored
    under its final name (cumulative: the receiver need not acknowledge each file)."""

    TYPE: ClassVar[int] = 0x06
    index: int

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> FileAck:
        return cls(int_field(obj, "index", 0, MAX_ENTRIES))


@dataclass(frozen=True)
class Done:
    """Receiver → sender: everything is verified; the sender may close."""

    TYPE: ClassVar[int] = 0x07

    def to_json(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Done:
        return cls()


@dataclass(frozen=True)
class Ping:
    """Either side, every few seconds: I am alive (the transfer may be waiting on a disk)."""

    TYPE: ClassVar[int] = 0x08

    def to_json(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Ping:
        return cls()


@dataclass(frozen=True)
class Data:
    """Sender → receiver: the next bytes of the current file."""

    TYPE: ClassVar[int] = 0x10
    payload: bytes


@dataclass(frozen=True)
class DataZ:
    """Sender → receiver: the next ``raw_len`` bytes of the current entry, as one zstd frame
    (only after the receiver accepted ``zstd``). Header after the type byte: ``raw_len`` (u32,
    big-endian). Sizes and credit count ``raw_len``, never the compressed size."""

    TYPE: ClassVar[int] = 0x12
    HEADER: ClassVar[struct.Struct] = struct.Struct(">I")
    raw_len: int
    payload: bytes


@dataclass(frozen=True)
class DataEnd:
    """Sender → receiver: the last bytes of entry ``index`` and its end, in one message (a
    small file costs one message instead of two). Binary header after the type byte:
    index (u32), size (u64), digest (32 bytes, of the agreed hash), all big-endian; then the
    payload."""

    TYPE: ClassVar[int] = 0x11
    HEADER: ClassVar[struct.Struct] = struct.Struct(">IQ32s")
    index: int
    size: int
    sha256: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class BatchRecord:
    """One whole entry inside a :class:`DataBatch`: as a DataEnd's fields and payload."""

    index: int
    size: int
    sha256: str
    payload: bytes


@dataclass(frozen=True)
class DataBatch:
    """Sender → receiver, only to a receiver that asked for it in Accept (``batch``): several
    entries in one message, each whole, in order. After the type byte, records of: index
    (u32), size (u64), digest (32 bytes, of the agreed hash), payload length (u32), all
    big-endian, then the payload. Each record is checked exactly as a DataEnd would be (order,
    sizes, credit), one after the other: a small file costs a record, not a message."""

    TYPE: ClassVar[int] = 0x13
    RECORD: ClassVar[struct.Struct] = struct.Struct(">IQ32sI")
    records: tuple[BatchRecord, ...]


BATCH_RECORD_OVERHEAD = DataBatch.RECORD.size


Encodable = Accept | Have | Resume | Abort | Credit | FileEnd | FileAck | Done | Ping
"""Control messages of one frame each (an offer takes several: ``Offer.frames()``)."""
Control = OfferHead | OfferMore | Encodable
Message = Control | Data | DataEnd | DataZ | DataBatch

_CONTROL_TYPES: dict[int, type[Control]] = {cls.TYPE: cls for cls in get_args(Control)}


def _frame(kind: int, obj: dict[str, Any]) -> bytes:
    body = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    return bytes([kind]) + body.encode("utf-8")


frame = _frame
"""``frame(kind, obj)``: one control frame of type ``kind`` with JSON body ``obj``, unchecked
(tests use it to build what a well-behaved peer never sends)."""

DATA_HEADER = bytes([Data.TYPE])
DATA_END_OVERHEAD = 1 + DataEnd.HEADER.size


def encode(message: Encodable | Data | DataEnd | DataZ | DataBatch) -> bytes:
    """One frame for ``message`` (an :class:`Offer` takes several: ``Offer.frames()``)."""
    if isinstance(message, Data):
        return DATA_HEADER + message.payload
    if isinstance(message, DataZ):
        return bytes([DataZ.TYPE]) + DataZ.HEADER.pack(message.raw_len) + message.payload
    if isinstance(message, DataEnd):
        header = DataEnd.HEADER.pack(message.index, message.size, bytes.fromhex(message.sha256))
        return bytes([DataEnd.TYPE]) + header + message.payload
    if isinstance(message, DataBatch):
        pack = DataBatch.RECORD.pack
        parts = [bytes([DataBatch.TYPE])]
        for r in message.records:
            parts += (pack(r.index, r.size, bytes.fromhex(r.sha256), len(r.payload)), r.payload)
        return b"".join(parts)
    return _frame(message.TYPE, message.to_json())


def decode(frame: bytes | str) -> Message:
    """Parse one data-channel frame; anything malformed raises :class:`ProtocolError`."""
    if not isinstance(frame, bytes) or not frame:
        raise ProtocolError("expected a non-empty binary message")
    kind = frame[0]
    if kind == Data.TYPE:
        return Data(frame[1:])
    if kind == DataZ.TYPE:
        if len(frame) < 1 + DataZ.HEADER.size:
            raise ProtocolError("truncated compressed data message")
        (raw_len,) = DataZ.HEADER.unpack_from(frame, 1)
        if not 0 < raw_len <= MAX_DATAZ_RAW_BYTES:
            raise ProtocolError("compressed data message of impossible size")
        return DataZ(raw_len, frame[1 + DataZ.HEADER.size :])
    if kind == DataEnd.TYPE:
        end = 1 + DataEnd.HEADER.size
        if len(frame) < end:
            raise ProtocolError("truncated data-end message")
        index, size, digest = DataEnd.HEADER.unpack_from(frame, 1)
        if index > MAX_ENTRIES or size > MAX_FILE_BYTES:
            raise ProtocolError("data-end fields out of range")
        return DataEnd(index, size, digest.hex(), frame[end:])
    if kind == DataBatch.TYPE:
        return _decode_batch(frame)
    cls = _CONTROL_TYPES.get(kind)
    if cls is None:
        raise ProtocolError(f"unknown message type {kind}")
    try:
        obj = json.loads(frame[1:].decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ProtocolError("malformed control message") from None
    if not isinstance(obj, dict):
        raise ProtocolError("a control message must be a JSON object")
    return cls.from_json(obj)


def _decode_batch(frame: bytes) -> DataBatch:
    records: list[BatchRecord] = []
    unpack, header = DataBatch.RECORD.unpack_from, DataBatch.RECORD.size
    at = 1
    while at < len(frame):
        if len(frame) - at < header:
            raise ProtocolError("truncated data-batch record")
        index, size, digest, length = unpack(frame, at)
        at += header
        if index > MAX_ENTRIES or size > MAX_FILE_BYTES or length > len(frame) - at:
            raise ProtocolError("data-batch record fields out of range")
        records.append(BatchRecord(index, size, digest.hex(), frame[at : at + length]))
        at += length
    if not records:
        raise ProtocolError("empty data-batch message")
    return DataBatch(tuple(records))
