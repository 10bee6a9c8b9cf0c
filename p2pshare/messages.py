"""Wire format of the peer protocol on the data channel: one binary message per frame.

The first byte is the message type. ``Data`` carries raw file bytes after it; every other
message carries one UTF-8 JSON object. :func:`decode` validates types and ranges of every field
and raises :class:`~p2pshare.errors.ProtocolError` on anything else; what the values *mean*
(paths, sizes against free space, order) is checked by ``transfer.py`` and ``files.py``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, ClassVar

from p2pshare.errors import ProtocolError

PROTOCOL_VERSION = 1
MAX_FILE_BYTES = 2**62
MAX_ENTRIES = 1_000_000
MAX_TEXT_CHARS = 1024
_HEX64 = re.compile(r"[0-9a-f]{64}")


def _int(obj: dict[str, Any], key: str, lo: int = 0, hi: int = MAX_FILE_BYTES) -> int:
    value = obj.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise ProtocolError(f"field {key!r} must be an integer from {lo} to {hi}")
    return value


def _str(obj: dict[str, Any], key: str, max_chars: int = MAX_TEXT_CHARS) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or len(value) > max_chars:
        raise ProtocolError(f"field {key!r} must be a string of at most {max_chars} characters")
    return value


@dataclass(frozen=True)
class FileEntry:
    """One file of an offer, as the sender declares it (untrusted until ``files.py`` says so)."""

    path: str
    size: int
    mode: int = 0o644
    mtime: float | None = None

    def to_json(self) -> dict[str, Any]:
        obj: dict[str, Any] = {"path": self.path, "size": self.size, "mode": self.mode}
        if self.mtime is not None:
            obj["mtime"] = self.mtime
        return obj

    @classmethod
    def from_json(cls, obj: Any) -> FileEntry:
        if not isinstance(obj, dict):
            raise ProtocolError("a file entry must be an object")
        mtime = obj.get("mtime")
        if mtime is not None and (
            not isinstance(mtime, int | float) or isinstance(mtime, bool) or not 0 <= mtime < 2**40
        ):
            raise ProtocolError("field 'mtime' must be a timestamp")
        return cls(
            path=_str(obj, "path", 4096),
            size=_int(obj, "size"),
            mode=_int(obj, "mode", 0, 0o7777),
            mtime=float(mtime) if mtime is not None else None,
        )


@dataclass(frozen=True)
class Offer:
    """Sender → receiver: what it wants to send."""

    TYPE: ClassVar[int] = 0x01
    files: tuple[FileEntry, ...]
    version: int = PROTOCOL_VERSION

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    def to_json(self) -> dict[str, Any]:
        return {
            "v": self.version,
            "files": [f.to_json() for f in self.files],
            "total": self.total_bytes,
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Offer:
        version = _int(obj, "v", 1, 1_000)
        if version != PROTOCOL_VERSION:
            raise ProtocolError(
                f"the sender speaks protocol version {version}, we speak "
                f"{PROTOCOL_VERSION}: upgrade p2pshare on both sides"
            )
        raw = obj.get("files")
        if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_ENTRIES:
            raise ProtocolError("an offer must list between 1 and 1,000,000 files")
        offer = cls(tuple(FileEntry.from_json(f) for f in raw))
        if _int(obj, "total", 0, MAX_FILE_BYTES * 4) != offer.total_bytes:
            raise ProtocolError("the offer's total does not match its files")
        return offer


@dataclass(frozen=True)
class Accept:
    """Receiver → sender: go ahead; ``window`` bytes of credit to start with."""

    TYPE: ClassVar[int] = 0x02
    window: int

    def to_json(self) -> dict[str, Any]:
        return {"window": self.window}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Accept:
        return cls(_int(obj, "window", 1, 2**31))


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
        return cls(_str(obj, "error", 64), _str(obj, "message"))


@dataclass(frozen=True)
class Credit:
    """Receiver → sender: ``bytes`` more may be sent (the receiver has written them out)."""

    TYPE: ClassVar[int] = 0x04
    bytes: int

    def to_json(self) -> dict[str, Any]:
        return {"bytes": self.bytes}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Credit:
        return cls(_int(obj, "bytes", 1, 2**31))


@dataclass(frozen=True)
class FileEnd:
    """Sender → receiver: all bytes of file ``index`` were sent; their SHA-256."""

    TYPE: ClassVar[int] = 0x05
    index: int
    sha256: str

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "sha256": self.sha256}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> FileEnd:
        digest = _str(obj, "sha256", 64)
        if not _HEX64.fullmatch(digest):
            raise ProtocolError("field 'sha256' must be 64 lowercase hex digits")
        return cls(_int(obj, "index", 0, MAX_ENTRIES), digest)


@dataclass(frozen=True)
class FileAck:
    """Receiver → sender: file ``index`` verified and stored under its final name."""

    TYPE: ClassVar[int] = 0x06
    index: int

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> FileAck:
        return cls(_int(obj, "index", 0, MAX_ENTRIES))


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


Control = Offer | Accept | Abort | Credit | FileEnd | FileAck | Done | Ping
Message = Control | Data

_CONTROL_TYPES: dict[int, type[Control]] = {
    cls.TYPE: cls for cls in (Offer, Accept, Abort, Credit, FileEnd, FileAck, Done, Ping)
}
DATA_HEADER = bytes([Data.TYPE])


def encode(message: Message) -> bytes:
    if isinstance(message, Data):
        return DATA_HEADER + message.payload
    body = json.dumps(message.to_json(), separators=(",", ":"), ensure_ascii=False)
    return bytes([message.TYPE]) + body.encode("utf-8")


def decode(frame: bytes | str) -> Message:
    """Parse one data-channel frame; anything malformed raises :class:`ProtocolError`."""
    if not isinstance(frame, bytes) or not frame:
        raise ProtocolError("expected a non-empty binary message")
    kind = frame[0]
    if kind == Data.TYPE:
        return Data(frame[1:])
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
