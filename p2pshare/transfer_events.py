"""What :class:`~p2pshare.transfer.SenderProtocol` and
:class:`~p2pshare.transfer.ReceiverProtocol` hand back to the code that drives them (sender.py,
receiver.py, the tests' transcripts): one event per thing the peer said that needs doing."""

from __future__ import annotations

from dataclasses import dataclass, field

from p2pshare import messages as m
from p2pshare.errors import P2PShareError


@dataclass(frozen=True)
class OfferReceived:
    offer: m.Offer


@dataclass(frozen=True)
class Accepted:
    window: int
    have: dict[int, m.Prefix] = field(default_factory=dict)
    """What the receiver already holds, by entry index (the sender checks each prefix)."""


@dataclass(frozen=True)
class Resumed:
    """The entry's data starts at ``offset`` (0: the receiver's prefix did not match)."""

    index: int
    offset: int


@dataclass(frozen=True)
class ChunkReceived:
    index: int
    payload: bytes
    raw_len: int | None = None
    """Set when ``payload`` is a zstd frame of that many bytes (decompressed off the loop)."""


@dataclass(frozen=True)
class FileEnded:
    index: int
    digest: str


@dataclass(frozen=True)
class BatchReceived:
    """Whole entries from one DataBatch, in order, each checked as a DataEnd would be:
    ``(index, payload, digest)``; written by the receiver's writer as one job."""

    files: tuple[tuple[int, bytes, str], ...]


@dataclass(frozen=True)
class FileAcked:
    index: int


@dataclass(frozen=True)
class Finished:
    """The receiver confirmed everything: the sender may close."""


@dataclass(frozen=True)
class PeerAborted:
    error: P2PShareError


Event = (
    OfferReceived
    | Accepted
    | Resumed
    | ChunkReceived
    | FileEnded
    | BatchReceived
    | FileAcked
    | Finished
    | PeerAborted
)


class Digests:
    """The digests of the files verified: only the one of a single file is reported, so a
    count and the first are all that is kept (not 113 bytes a file for a million files)."""

    __slots__ = ("count", "first")

    def __init__(self) -> None:
        self.count = 0
        self.first: str | None = None

    def add(self, digest: str) -> None:
        if self.first is None:
            self.first = digest
        self.count += 1

    @property
    def only(self) -> str | None:
        """The digest of the only file, or None when there were none or several."""
        return self.first if self.count == 1 else None
