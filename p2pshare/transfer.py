"""The transfer protocol as two sans-I/O state machines: bytes in, messages and events out.

::

    sender                                         receiver
      │── Offer(files, total) ───────────────────────>│  validate, check space, ask user
      │<─────────────────────── Accept(window) / Abort│
      │── Data ... (never more than the credit) ─────>│  write off-loop, hash
      │<────────────────────────────── Credit(bytes) ─│  as data reaches the disk
      │── FileEnd(index, sha256) ────────────────────>│  verify, rename into place
      │<──────────────────────────────── FileAck(i) ──│
      │<──────────────────────────────────── Done ────│  after the last file
      │   close                                       │
      Ping either way every few seconds; Abort either way ends the transfer.

Neither class touches a socket, file or clock. ``session.py`` feeds them frames and carries out
what they return; tests drive them directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, auto

from p2pshare import messages as m
from p2pshare.errors import IntegrityError, P2PShareError, ProtocolError, error_from_peer
from p2pshare.files import printable

DEFAULT_WINDOW_BYTES = 8 * 1024 * 1024
"""Credit the receiver grants: bounds the receiver's memory whatever its disk speed."""


# -- events -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class OfferReceived:
    offer: m.Offer


@dataclass(frozen=True)
class Accepted:
    window: int


@dataclass(frozen=True)
class ChunkReceived:
    index: int
    payload: bytes


@dataclass(frozen=True)
class FileEnded:
    index: int
    sha256: str


@dataclass(frozen=True)
class FileAcked:
    index: int


@dataclass(frozen=True)
class Finished:
    """The receiver confirmed everything: the sender may close."""


@dataclass(frozen=True)
class PeerAborted:
    error: P2PShareError


Event = OfferReceived | Accepted | ChunkReceived | FileEnded | FileAcked | Finished | PeerAborted


class _State(Enum):
    OFFERING = auto()
    TRANSFERRING = auto()
    FINISHED = auto()
    ABORTED = auto()


def _peer_abort(msg: m.Abort) -> PeerAborted:
    return PeerAborted(error_from_peer(msg.error, "the other side: " + printable(msg.message)))


class _Side:
    _state: _State

    def _common(self, msg: m.Message) -> list[Event] | None:
        """Messages either side may get at any time: pings, and the peer giving up."""
        if isinstance(msg, m.Ping):
            return []
        if isinstance(msg, m.Abort):
            self._state = _State.ABORTED
            return [_peer_abort(msg)]
        return None


class SenderProtocol(_Side):
    """The sending side: offers ``offer``, then sends files in order within the credit."""

    def __init__(self, offer: m.Offer) -> None:
        self.offer = offer
        self._state = _State.OFFERING
        self.credit = 0
        self.index = 0  # file being sent
        self.sent_in_file = 0
        self.acked = 0

    def start(self) -> bytes:
        return m.encode(self.offer)

    @property
    def current_remaining(self) -> int:
        return self.offer.files[self.index].size - self.sent_in_file

    def can_send(self, nbytes: int) -> bool:
        """Whether the receiver's credit covers ``nbytes`` more."""
        return self.credit >= nbytes

    def receive(self, frame: bytes) -> list[Event]:
        msg = m.decode(frame)
        common = self._common(msg)
        if common is not None:
            return common
        if self._state is _State.OFFERING and isinstance(msg, m.Accept):
            self._state = _State.TRANSFERRING
            self.credit = msg.window
            return [Accepted(msg.window)]
        if self._state is _State.TRANSFERRING:
            if isinstance(msg, m.Credit):
                self.credit += msg.bytes
                return []
            if isinstance(msg, m.FileAck):
                if msg.index != self.acked or msg.index >= self.index:
                    raise ProtocolError("acknowledgement for a file not yet sent")
                self.acked += 1
                return [FileAcked(msg.index)]
            if isinstance(msg, m.Done):
                if self.acked != len(self.offer.files):
                    raise ProtocolError("done before every file was acknowledged")
                self._state = _State.FINISHED
                return [Finished()]
        raise ProtocolError(f"unexpected {type(msg).__name__} message")

    def data(self, payload: bytes) -> bytes:
        """Frame the next bytes of the current file; the caller stays within the credit."""
        if self._state is not _State.TRANSFERRING or self.index >= len(self.offer.files):
            raise RuntimeError("not sending a file")
        if not 0 < len(payload) <= min(self.credit, self.current_remaining):
            raise RuntimeError("payload exceeds credit or file size")
        self.credit -= len(payload)
        self.sent_in_file += len(payload)
        return m.encode(m.Data(payload))

    def end_file(self, sha256: str) -> bytes:
        if self.current_remaining != 0:
            raise RuntimeError("file not completely sent")
        frame = m.encode(m.FileEnd(self.index, sha256))
        self.index += 1
        self.sent_in_file = 0
        return frame


class ReceiverProtocol(_Side):
    """The receiving side: enforces order, declared sizes and the credit it granted."""

    def __init__(self) -> None:
        self._state = _State.OFFERING
        self.offer: m.Offer | None = None
        self.index = 0  # file being received
        self.received_in_file = 0
        self.outstanding = 0  # credit granted and not yet used by the sender
        self.window = 0
        self._returned = 0  # consumed bytes not yet granted back
        self.verified = 0

    def receive(self, frame: bytes) -> list[Event]:
        msg = m.decode(frame)
        common = self._common(msg)
        if common is not None:
            return common
        if self._state is _State.OFFERING and self.offer is None and isinstance(msg, m.Offer):
            self.offer = msg
            return [OfferReceived(msg)]
        if self._state is _State.TRANSFERRING and self.offer is not None:
            files = self.offer.files
            if self.index >= len(files):
                raise ProtocolError("more files than offered")
            if isinstance(msg, m.Data):
                size = files[self.index].size
                if self.received_in_file + len(msg.payload) > size:
                    raise IntegrityError("the sender sent more bytes than it declared")
                if len(msg.payload) > self.outstanding:
                    raise ProtocolError("the sender ignored flow control")
                if not msg.payload:
                    raise ProtocolError("empty data message")
                self.outstanding -= len(msg.payload)
                self.received_in_file += len(msg.payload)
                return [ChunkReceived(self.index, msg.payload)]
            if isinstance(msg, m.FileEnd):
                if msg.index != self.index:
                    raise ProtocolError("file end out of order")
                if self.received_in_file != files[self.index].size:
                    raise IntegrityError("the sender sent fewer bytes than it declared")
                self.index += 1
                self.received_in_file = 0
                return [FileEnded(msg.index, msg.sha256)]
        raise ProtocolError(f"unexpected {type(msg).__name__} message")

    def accept(self, window: int = DEFAULT_WINDOW_BYTES) -> bytes:
        if self.offer is None or self._state is not _State.OFFERING:
            raise RuntimeError("nothing to accept")
        self._state = _State.TRANSFERRING
        self.window = self.outstanding = window
        return m.encode(m.Accept(window))

    def consumed(self, nbytes: int) -> bytes | None:
        """``nbytes`` reached the disk: grant them back, in batches of a quarter window."""
        self._returned += nbytes
        if self._returned < max(1, self.window // 4):
            return None
        grant, self._returned = self._returned, 0
        self.outstanding += grant
        return m.encode(m.Credit(grant))

    def file_verified(self, index: int) -> list[bytes]:
        """File ``index`` is in place: acknowledge it, and finish after the last one."""
        if self.offer is None or index != self.verified or index >= self.index:
            raise RuntimeError("file verified out of order")
        self.verified += 1
        frames = [m.encode(m.FileAck(index))]
        if self.verified == len(self.offer.files):
            self._state = _State.FINISHED
            frames.append(m.encode(m.Done()))
        return frames

    @property
    def finished(self) -> bool:
        return self._state is _State.FINISHED


def abort(error: P2PShareError) -> bytes:
    """The frame that tells the peer we stop, and why."""
    return m.encode(m.Abort(error.name, error.message))


def ping() -> bytes:
    return m.encode(m.Ping())
