"""The transfer protocol as two sans-I/O state machines: bytes in, messages and events out.

::

    sender                                         receiver
      │── Offer(files, total) ───────────────────────>│  validate, check space, ask user
      │<─────────────────────── Accept(window) / Abort│
      │<────────────── Have(prefixes it already holds)│  only after an interrupted try
      │── Resume(index, offset) for each, first ─────>│  checked: continue, or 0: afresh
      │── Data ... (never more than the credit) ─────>│  write off-loop, hash
      │<────────────────────────────── Credit(bytes) ─│  as data reaches the disk
      │── FileEnd(index, digest) ────────────────────>│  verify, rename into place
      │<──────────────────────────────── FileAck(i) ──│
      │<──────────────────────────────────── Done ────│  after the last file
      │   close                                       │
      Ping either way every few seconds; Abort either way ends the transfer.

Neither class touches a socket, file or clock. ``sender.py`` and ``receiver.py`` feed them
frames and carry out what they return; tests drive them directly. The decisions about what goes
on the wire live here: which message carries a chunk (:meth:`SenderProtocol.chunk`, with
:class:`~p2pshare.trial.CompressionTrial`), when files are acknowledged and when Done may be sent
(:meth:`ReceiverProtocol.finish`).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence
from enum import Enum, auto

from p2pshare import messages as m
from p2pshare.digests import SHA256
from p2pshare.errors import (
    DeclinedError,
    IntegrityError,
    P2PShareError,
    ProtocolError,
    error_from_peer,
)
from p2pshare.files import OfferCheck, printable
from p2pshare.manifest import Manifest
from p2pshare.transfer_events import (
    Accepted,
    BatchReceived,
    ChunkReceived,
    Event,
    FileAcked,
    FileEnded,
    Finished,
    OfferReceived,
    PeerAborted,
    Resumed,
)

DEFAULT_WINDOW_BYTES = 16 * 1024 * 1024
"""Credit the receiver grants: bounds the receiver's memory whatever its disk speed. 8 MiB
held 1 GiB back by ~5% on the veth (docs/performance.md, levers): the credit's round trip
includes the writer thread and both event loops."""
FILES_IN_FLIGHT = 4096
"""An offer of more files than this gets a window of about this many files of its average
size (at least :data:`MIN_FILES_WINDOW_BYTES`): credit counts bytes, and 16 MiB of 100-byte
files would let 167,000 files (and their write jobs) be in flight at once."""
MIN_FILES_WINDOW_BYTES = 1024 * 1024
ACK_EVERY_FILES = 256
"""The receiver acknowledges verified files cumulatively, at most this many at a time (and
after any large file, and after the last), so small files cost no message of their own."""


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


def check_prefixes(offer: m.Offer, prefixes: list[m.Prefix]) -> None:
    """Prefixes must name regular file entries, in increasing order, within their size."""
    last = -1
    for prefix in prefixes:
        if not last < prefix.index < len(offer.files):
            raise ProtocolError("prefixes out of order or past the offer")
        entry = offer.files[prefix.index]
        if entry.kind != "file" or entry.size is None or not 0 < prefix.offset <= entry.size:
            raise ProtocolError("a prefix that does not fit its entry")
        last = prefix.index


class SenderProtocol(_Side):
    """The sending side: offers ``offer``, then sends its entries in order within the credit."""

    def __init__(self, offer: m.Offer) -> None:
        self.offer = offer
        self._state = _State.OFFERING
        self.credit = 0
        self._order = offer.files.data_indexes()
        self._position = 0  # into _order: the entry being sent
        self.sent_in_file = 0
        self.acked = 0
        self.compression: str | None = None
        self.hash = SHA256
        """The hash of FileEnd and Have: SHA-256 unless the receiver chose one offered."""
        self.batch = False
        """The receiver takes DataBatch messages (it said so in Accept)."""
        self._window = 0
        self._have_count = 0
        self._have: list[m.Prefix] = []
        self.have: dict[int, m.Prefix] = {}
        self._starts: dict[int, int] = {}

    def start(self) -> Iterator[bytes]:
        """The offer's messages, one at a time (see :meth:`~p2pshare.messages.Offer.frames`)."""
        return self.offer.frames()

    @property
    def window(self) -> int:
        """The receiver's window: the most credit it ever grants (0 before it accepted)."""
        return self._window

    @property
    def current(self) -> int | None:
        """Index of the entry being sent, or None when all were sent."""
        return self._order[self._position] if self._position < len(self._order) else None

    @property
    def current_remaining(self) -> int | None:
        """Bytes still to send of the current entry (None: a stream, size unknown)."""
        index = self.current
        if index is None:
            return 0
        size = self.offer.files.size(index)
        return None if size is None else size - self.sent_in_file

    @property
    def held_prefixes(self) -> list[m.Prefix | None]:
        """What the receiver holds of each entry that carries data, in sending order (empty
        when it holds nothing: no list of a million Nones)."""
        return [self.have.get(i) for i in self._order] if self.have else []

    def can_send(self, nbytes: int) -> bool:
        """Whether the receiver's credit covers ``nbytes`` more."""
        return self.credit >= nbytes

    def receive(self, frame: bytes) -> list[Event]:
        msg = m.decode(frame)
        common = self._common(msg)
        if common is not None:
            return common
        if self._state is _State.OFFERING and isinstance(msg, m.Accept) and not self._window:
            if msg.compression is not None and msg.compression not in self.offer.compression:
                raise ProtocolError("the receiver chose a compression we did not offer")
            if msg.hash is not None and msg.hash not in self.offer.hashes:
                raise ProtocolError("the receiver chose a hash we did not offer")
            self.compression = msg.compression
            self.hash = msg.hash or SHA256
            self.batch = msg.batch
            self._window = msg.window
            self._have_count = msg.have
            return self._accepted()
        if self._state is _State.OFFERING and isinstance(msg, m.Have) and self._window:
            self._have.extend(msg.prefixes)
            return self._accepted()
        if self._state is _State.TRANSFERRING:
            if isinstance(msg, m.Credit):
                self.credit += msg.bytes
                return []
            if isinstance(msg, m.FileAck):
                upto = bisect.bisect_left(self._order, msg.index)
                if upto >= self._position or self._order[upto] != msg.index or upto < self.acked:
                    raise ProtocolError("acknowledgement for a file not yet sent")
                self.acked = upto + 1
                return [FileAcked(msg.index)]
            if isinstance(msg, m.Done):
                if self.acked != len(self._order):
                    raise ProtocolError("done before every file was acknowledged")
                self._state = _State.FINISHED
                return [Finished()]
        raise ProtocolError(f"unexpected {type(msg).__name__} message")

    def _accepted(self) -> list[Event]:
        if len(self._have) > self._have_count:
            raise ProtocolError("the receiver listed more prefixes than it declared")
        if len(self._have) < self._have_count:
            return []
        check_prefixes(self.offer, self._have)
        self.have = {p.index: p for p in self._have}
        self._state = _State.TRANSFERRING
        self.credit = self._window
        return [Accepted(self._window, dict(self.have))]

    @property
    def _resuming(self) -> bool:
        """Some entry the receiver listed still needs its Resume (all come before data)."""
        return len(self._starts) < len(self._have)

    def resume(self, index: int, offset: int) -> bytes:
        """Entry ``index`` starts at ``offset``: the receiver's prefix of that length matched
        ours, or 0 when it did not. For every entry the receiver listed, in order, before any
        data (so that the receiver can refuse what it cannot do before it writes a byte)."""
        due = self._have[len(self._starts)] if self._resuming else None
        if due is None or index != due.index or offset not in (0, due.offset):
            raise RuntimeError("no such prefix to resume from")
        self._starts[index] = offset
        if index == self.current:
            self.sent_in_file = offset
        return m.encode(m.Resume(index, offset))

    def _next_entry(self) -> None:
        self._position += 1
        current = self.current
        self.sent_in_file = 0 if current is None else self._starts.get(current, 0)

    def chunk(
        self, payload: bytes, *, raw_len: int | None = None, digest: str | None = None
    ) -> list[bytes]:
        """The frames for the next chunk of the current entry: the choice of message is made
        here. ``raw_len`` set: ``payload`` is a zstd frame of that many bytes, sent as DataZ.
        ``digest`` set: the chunk (maybe empty) is the entry's last, so the entry ends too, in
        the same DataEnd when raw, or with a FileEnd after a DataZ (DataEnd has no compressed
        form). The caller stays within the credit."""
        if raw_len is not None:
            frames = [self.data_z(raw_len, payload)]
            return frames if digest is None else [*frames, self.end_file(digest)]
        if digest is not None:
            return [self.data_end(payload, digest)]
        return [self.data(payload)]

    def data_batch(self, files: list[tuple[bytes, str]]) -> bytes:
        """The next entries, each whole (``(payload, digest)``, in order), in one DataBatch:
        only to a receiver that asked for batches. The caller stays within the credit and the
        message size (:data:`p2pshare.messages.BATCH_RECORD_OVERHEAD` per record)."""
        if not self.batch or self._state is not _State.TRANSFERRING or self._resuming:
            raise RuntimeError("the receiver takes no batches")
        position, records = self._position, []
        for payload, digest in files:
            index = self._order[position] if position < len(self._order) else None
            size = None if index is None else self.offer.files.size(index)
            starts = index is not None and self._starts.get(index, 0) == 0
            if (
                not starts
                or size != len(payload)
                or (position == self._position and self.sent_in_file)
            ):
                raise RuntimeError("a batch takes whole entries only")
            assert index is not None
            records.append(m.BatchRecord(index, len(payload), digest, payload))
            position += 1
        nbytes = sum(len(r.payload) for r in records)
        if not records or nbytes > self.credit:
            raise RuntimeError("an empty batch, or one beyond the credit")
        self.credit -= nbytes
        self._position = position - 1
        self._next_entry()
        return m.encode(m.DataBatch(tuple(records)))

    def data(self, payload: bytes) -> bytes:
        """Frame the next bytes of the current entry; the caller stays within the credit."""
        self._count(len(payload))
        return m.encode(m.Data(payload))

    def data_z(self, raw_len: int, frame: bytes) -> bytes:
        """Frame the next ``raw_len`` bytes of the current entry, compressed as ``frame``."""
        if self.compression != "zstd":
            raise RuntimeError("compression was not accepted")
        self._count(raw_len)
        return m.encode(m.DataZ(raw_len, frame))

    def _count(self, nbytes: int) -> None:
        if self._state is not _State.TRANSFERRING or self.current is None or self._resuming:
            raise RuntimeError("not sending a file")
        remaining = self.current_remaining
        if not nbytes or nbytes > self.credit or (remaining is not None and nbytes > remaining):
            raise RuntimeError("payload exceeds credit or file size")
        self.credit -= nbytes
        self.sent_in_file += nbytes

    def end_file(self, digest: str) -> bytes:
        index = self.current
        if index is None or self.current_remaining not in (0, None):
            raise RuntimeError("file not completely sent")
        frame = m.encode(m.FileEnd(index, self.sent_in_file, digest))
        self._next_entry()
        return frame

    def data_end(self, payload: bytes, digest: str) -> bytes:
        """The last bytes of the current entry and its end in one frame (payload may be
        empty); the caller stays within the credit."""
        index, remaining = self.current, self.current_remaining
        if self._state is not _State.TRANSFERRING or index is None or self._resuming:
            raise RuntimeError("not sending a file")
        if len(payload) > self.credit or (remaining is not None and len(payload) != remaining):
            raise RuntimeError("payload exceeds credit or does not end the file")
        self.credit -= len(payload)
        size = self.sent_in_file + len(payload)
        self._next_entry()
        return m.encode(m.DataEnd(index, size, digest, payload))


DEFAULT_MAX_OFFER_ENTRIES = 2_000_000
"""Entries a receiver takes in one offer unless told otherwise: every entry costs memory
before anything is shown and while the transfer runs (the manifest's columns and the name
check's hashes, ~100 bytes an entry plus its path; docs/performance.md, "Scale"), and the
sender chooses how many there are. Two million takes a tree of a million files with room to
spare (issue 31)."""
DEFAULT_MAX_OFFER_BYTES = 192 * 1024 * 1024
"""Encoded size of the whole offer (all its messages) a receiver takes unless told otherwise:
the messages are not kept (each is parsed into the manifest as it comes), but the paths in
them are, so this bounds what a sender's long names can make the receiver hold (a million
entries of a typical tree are ~100 MB of messages)."""


class ReceiverProtocol(_Side):
    """The receiving side: enforces order, declared counts and sizes, and its credit.

    The offer is bounded before it is collected: a declared count over ``max_entries`` is
    declined on the first message, and the messages are counted as they come, so a sender
    cannot make the receiver hold more than ``max_offer_bytes`` of offer, whatever it claims.
    """

    def __init__(
        self,
        max_entries: int = DEFAULT_MAX_OFFER_ENTRIES,
        max_offer_bytes: int = DEFAULT_MAX_OFFER_BYTES,
        check_names: bool = False,
    ) -> None:
        self.max_entries = max_entries
        self.max_offer_bytes = max_offer_bytes
        self.check_names = check_names
        """Check each entry's name as it arrives (:class:`~p2pshare.files.OfferCheck`): the
        first bad one refuses the offer before the rest is held. The receiver does; the
        protocol's own tests and vectors see the offer whole, as the page's does."""
        self._offer_bytes = 0
        self._state = _State.OFFERING
        self.offer: m.Offer | None = None
        self._head: m.OfferHead | None = None
        self._entries = Manifest()
        self._check: OfferCheck | None = None
        self._order: Sequence[int] = ()
        self._position = 0  # into _order: the entry being received
        self.received_in_file = 0
        self.outstanding = 0  # credit granted and not yet used by the sender
        self.window = 0
        self._returned = 0  # consumed bytes not yet granted back
        self.verified = 0
        self._unacked = 0
        self.compression: str | None = None
        self.hash = SHA256
        self.batch = False
        self._have: list[m.Prefix] = []
        self._starts: dict[int, int] = {}

    def receive(self, frame: bytes) -> list[Event]:
        msg = m.decode(frame)
        common = self._common(msg)
        if common is not None:
            return common
        if self._state is _State.OFFERING and self.offer is None:
            if isinstance(msg, m.OfferHead | m.OfferMore):
                self._offer_bytes += len(frame)
                if self._offer_bytes > self.max_offer_bytes:
                    raise DeclinedError(
                        f"not accepted: the offer is larger than {self.max_offer_bytes:,} bytes "
                        "of names (the receiver can raise this with --max-offer-bytes)"
                    )
            if isinstance(msg, m.OfferHead) and self._head is None:
                if msg.count > self.max_entries:
                    raise DeclinedError(
                        f"not accepted: the offer has {msg.count:,} entries, more than "
                        f"{self.max_entries:,} (the receiver can raise this with "
                        "--max-entries)"
                    )
                self._head = msg
                return self._collect(msg.files)
            if isinstance(msg, m.OfferMore) and self._head is not None:
                return self._collect(msg.files)
        if self._state is _State.TRANSFERRING and self.offer is not None:
            if self._position >= len(self._order):
                raise ProtocolError("more files than offered")
            index = self._order[self._position]
            size = self.offer.files.size(index)
            if len(self._starts) < len(self._have):
                # First the sender says where each entry we hold a prefix of starts.
                due = self._have[len(self._starts)]
                if not isinstance(msg, m.Resume) or msg.index != due.index:
                    raise ProtocolError("data before the resume messages")
                if msg.offset not in (0, due.offset):
                    raise ProtocolError("resuming at an offset we did not offer")
                self._starts[due.index] = msg.offset
                if due.index == index:
                    self.received_in_file = msg.offset
                return [Resumed(due.index, msg.offset)]
            if isinstance(msg, m.Data):
                if not msg.payload:
                    raise ProtocolError("empty data message")
                return [self._take(index, size, msg.payload)]
            if isinstance(msg, m.DataZ):
                if self.compression != "zstd":
                    raise ProtocolError("compressed data without agreeing on compression")
                return [self._take(index, size, msg.payload, msg.raw_len)]
            if isinstance(msg, m.DataEnd):
                events: list[Event] = [self._take(index, size, msg.payload)] if msg.payload else []
                return [*events, self._end(index, size, msg.index, msg.size, msg.sha256)]
            if isinstance(msg, m.FileEnd):
                return [self._end(index, size, msg.index, msg.size, msg.sha256)]
            if isinstance(msg, m.DataBatch):
                return [self._batch(msg.records)]
        raise ProtocolError(f"unexpected {type(msg).__name__} message")

    def _take(
        self, index: int, size: int | None, payload: bytes, raw_len: int | None = None
    ) -> ChunkReceived:
        nbytes = len(payload) if raw_len is None else raw_len
        if size is not None and self.received_in_file + nbytes > size:
            raise IntegrityError("the sender sent more bytes than it declared")
        if nbytes > self.outstanding:
            raise ProtocolError("the sender ignored flow control")
        self.outstanding -= nbytes
        self.received_in_file += nbytes
        return ChunkReceived(index, payload, raw_len)

    def _batch(self, records: tuple[m.BatchRecord, ...]) -> BatchReceived:
        """Each record exactly as a DataEnd of its own, in order."""
        if not self.batch:
            raise ProtocolError("a batch of files, which the receiver did not ask for")
        assert self.offer is not None
        files = []
        for record in records:
            if self._position >= len(self._order):
                raise ProtocolError("more files than offered")
            index = self._order[self._position]
            size = self.offer.files.size(index)
            if record.payload:
                self._take(index, size, record.payload)
            self._end(index, size, record.index, record.size, record.sha256)
            files.append((index, record.payload, record.sha256))
        return BatchReceived(tuple(files))

    def _end(
        self, index: int, size: int | None, claimed_index: int, claimed_size: int, digest: str
    ) -> FileEnded:
        if claimed_index != index:
            raise ProtocolError("file end out of order")
        if claimed_size != self.received_in_file or (
            size is not None and self.received_in_file != size
        ):
            raise IntegrityError("the sender sent fewer bytes than it declared")
        self._position += 1
        following = self._order[self._position] if self._position < len(self._order) else -1
        self.received_in_file = self._starts.get(following, 0)
        return FileEnded(index, digest)

    def _collect(self, entries: tuple[m.FileEntry, ...]) -> list[Event]:
        head = self._head
        assert head is not None
        collected = self._entries
        if len(collected) + len(entries) > head.count:
            raise ProtocolError("the sender offered more entries than it declared")
        if self.check_names and self._check is None:
            self._check = OfferCheck(collected, head.count)
        check = self._check
        for entry in entries:
            if check is not None:
                check.add(entry)
            collected.append(entry)
        if len(collected) < head.count:
            return []
        offer = m.Offer(collected, compression=head.compression, hashes=head.hashes)
        if offer.total_bytes != head.total:
            raise ProtocolError("the offer's total does not match its entries")
        self.offer = offer
        self._order = offer.files.data_indexes()
        self._check = None
        return [OfferReceived(offer)]

    def accept(
        self,
        window: int = DEFAULT_WINDOW_BYTES,
        compression: str | None = None,
        have: list[m.Prefix] | None = None,
        hash: str = SHA256,
        batch: bool = False,
    ) -> list[bytes]:
        """Accept the offer with ``window`` bytes of credit (less for an offer of very many
        small files: :data:`FILES_IN_FLIGHT`); ``compression`` picks one of the
        codecs the sender offered (ignored if it offered none), ``hash`` one of its hashes
        (SHA-256 if it offered none); ``have`` lists the prefixes already on disk, hashed
        with that hash, which the sender checks before it resumes them; ``batch``: several
        small files may come in one DataBatch."""
        if self.offer is None or self._state is not _State.OFFERING:
            raise RuntimeError("nothing to accept")
        have = have or []
        check_prefixes(self.offer, have)
        total = self.offer.total_bytes
        if len(self._order) > FILES_IN_FLIGHT and total is not None:
            per_file = total * FILES_IN_FLIGHT // len(self._order)
            window = min(window, max(MIN_FILES_WINDOW_BYTES, per_file))
        self._state = _State.TRANSFERRING
        self.window = self.outstanding = window
        self.compression = compression if compression in self.offer.compression else None
        self.hash = hash if hash in self.offer.hashes else SHA256
        self._have = list(have)
        self.batch = batch
        chosen = None if self.hash == SHA256 else self.hash
        frames = [m.encode(m.Accept(window, self.compression, len(have), chosen, batch))]
        for start in range(0, len(have), m.HAVE_BATCH):
            frames.append(m.encode(m.Have(tuple(have[start : start + m.HAVE_BATCH]))))
        return frames

    def consumed(self, nbytes: int) -> bytes | None:
        """``nbytes`` reached the disk: grant them back, in batches of a quarter window."""
        self._returned += nbytes
        if self._returned < max(1, self.window // 4):
            return None
        grant, self._returned = self._returned, 0
        self.outstanding += grant
        return m.encode(m.Credit(grant))

    def file_verified(self, index: int) -> list[bytes]:
        """Entry ``index`` is in place. Acknowledges cumulatively (every ACK_EVERY_FILES files,
        after a large file); the last file's acknowledgement waits for :meth:`finish`."""
        if (
            self.offer is None
            or self.verified >= self._position
            or index != self._order[self.verified]
        ):
            raise RuntimeError("file verified out of order")
        self.verified += 1
        self._unacked += 1
        if self.received_all:
            return []
        size = self.offer.files.size(index)
        if not (self._unacked >= ACK_EVERY_FILES or size is None or size >= self.window // 4):
            return []
        self._unacked = 0
        return [m.encode(m.FileAck(index))]

    @property
    def received_all(self) -> bool:
        """Every file of the accepted offer is verified (at once for an offer of directories
        only): time to finish the directories, then to :meth:`finish`."""
        return self._state is _State.TRANSFERRING and self.verified == len(self._order)

    def finish(self) -> list[bytes]:
        """Everything is in place, directories included: the last acknowledgement and Done,
        which lets the sender close. Done is never sent before every file was verified."""
        if not self.received_all:
            raise RuntimeError("files are still outstanding")
        self._state = _State.FINISHED
        frames = [m.encode(m.FileAck(self._order[-1]))] if self._order else []
        return [*frames, m.encode(m.Done())]

    @property
    def finished(self) -> bool:
        return self._state is _State.FINISHED


def abort(error: P2PShareError) -> bytes:
    """The frame that tells the peer we stop, and why."""
    return m.encode(m.Abort(error.name, error.for_peer()))


def ping() -> bytes:
    return m.encode(m.Ping())
