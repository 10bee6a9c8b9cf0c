"""Where received bytes go, and the worker thread that puts them there.

A :class:`Sink` is written by one thread, entry by entry: :class:`p2pshare.tree.Tree` for files
and directories under an output directory, :class:`StreamSink` for a text message or
``--output -``. :func:`write_worker` runs a sink in the receiver's worker thread: the event loop
submits :data:`WriteJob` messages in order and reads :data:`WriteReport` messages back.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from dataclasses import dataclass
from typing import BinaryIO, Protocol

from p2pshare import digests, partials
from p2pshare.codec import decompress
from p2pshare.digests import SHA256
from p2pshare.errors import IntegrityError, P2PShareError, ProtocolError
from p2pshare.fs import describe
from p2pshare.worker import Worker

logger = logging.getLogger(__name__)


class Sink(Protocol):
    """Receives the entries of an accepted offer, in order, from one thread at a time."""

    keep_partial: bool
    """Whether :meth:`close` may keep an unfinished entry to resume from."""

    def make_dirs(self) -> None:
        """Create the offer's directories (before any file)."""

    def resume(self, index: int, offset: int) -> None:
        """The sender's verdict on data found for entry ``index``: go on from ``offset``, or
        (0) receive it afresh. Comes for every such entry before any data."""

    def begin(self, index: int) -> None:
        """Entry ``index``'s data follows."""

    def write(self, data: bytes) -> None:
        """The next bytes of the current entry."""

    def finish(self, index: int, expected: str) -> str:
        """Verify the current entry and put it in place; its digest."""

    def write_whole(self, index: int, payload: bytes, expected: str) -> str | None:
        """Entry ``index`` whole: verify it and put it in place in one go; its digest, or
        None if it must go through :meth:`begin`, :meth:`write` and :meth:`finish`."""

    def finish_dirs(self) -> None:
        """Every file is in place: give the directories their modes and times."""

    def close(self) -> None:
        """Release everything; an unfinished entry is kept (resumable) or removed."""


class StreamSink:
    """Receives one entry into memory (text) or onto a stream (``--output -``)."""

    def __init__(self, out: BinaryIO | None, hash: str = SHA256) -> None:
        self.out = out
        self.buffer = bytearray()
        self.hash = hash
        self._hash = digests.new(hash)
        self.keep_partial = True  # nothing to keep: a stream is never resumed

    def begin(self, index: int) -> None:
        pass

    def resume(self, index: int, offset: int) -> None:
        raise ProtocolError("nothing to resume when receiving a stream")

    def write(self, data: bytes) -> None:
        self._hash.update(data)
        if self.out is None:
            self.buffer += data
            return
        try:
            self.out.write(data)
        except OSError as exc:
            raise describe(exc, "standard output") from None

    def finish(self, index: int, expected: str) -> str:
        if self.out is not None:
            with contextlib.suppress(OSError):
                self.out.flush()
        digest = self._hash.hexdigest()
        if digest != expected:
            raise IntegrityError(
                f"integrity failure: the data does not match the sender's "
                f"{digests.label(self.hash)}"
            )
        return digest

    def write_whole(self, index: int, payload: bytes, expected: str) -> str | None:
        return None

    def make_dirs(self) -> None:
        pass

    def finish_dirs(self) -> None:
        pass

    def close(self) -> None:
        pass


# -- the worker thread's messages


@dataclass(frozen=True)
class MakeDirs:
    pass


@dataclass(frozen=True)
class Resume:
    index: int
    offset: int


@dataclass(frozen=True)
class Begin:
    index: int


@dataclass(frozen=True)
class Write:
    data: bytes


@dataclass(frozen=True)
class WriteCompressed:
    """A zstd frame that must decompress to exactly ``raw_len`` bytes (checked here, off the
    event loop)."""

    frame: bytes
    raw_len: int


@dataclass(frozen=True)
class End:
    index: int
    digest: str


@dataclass(frozen=True)
class WriteBatch:
    """Whole entries of one DataBatch, ``(index, payload, digest)`` each, in order: one job
    and one report for all of them. ``first_begun``: the first one's data began before."""

    files: tuple[tuple[int, bytes, str], ...]
    first_begun: bool = False


@dataclass(frozen=True)
class FinishDirs:
    pass


WriteJob = MakeDirs | Resume | Begin | Write | WriteCompressed | End | WriteBatch | FinishDirs


@dataclass(frozen=True)
class Written:
    """``nbytes`` (uncompressed) reached the sink: the receiver may grant them back."""

    nbytes: int


@dataclass(frozen=True)
class Verified:
    index: int
    digest: str


@dataclass(frozen=True)
class BatchVerified:
    """Every entry of a :class:`WriteBatch` is in place: ``nbytes`` written in all, and each
    one's ``(index, digest)``."""

    nbytes: int
    verified: tuple[tuple[int, str], ...]


@dataclass(frozen=True)
class DirsFinished:
    pass


WriteReport = Written | Verified | BatchVerified | DirsFinished


def write_worker(sink: Sink) -> Worker[WriteJob, WriteReport]:
    """A worker (not yet started) that does every blocking write of a receive, in order.

    Memory is bounded by the transfer's credit window. Jobs submitted before ``stop()`` are
    still carried out, so that the data that arrived reaches the disk (and a partial file's
    record) before the sink is closed. Any failure ends the work as a P2PShareError.
    """
    return Worker("p2pshare-writer", functools.partial(_write, sink))


def _write(sink: Sink, worker: Worker[WriteJob, WriteReport]) -> None:
    try:
        while (job := worker.get()) is not None:
            match job:
                case Write(data):
                    sink.write(data)
                    worker.put(Written(len(data)))
                case WriteCompressed(frame, raw_len):
                    sink.write(decompress(frame, raw_len))
                    worker.put(Written(raw_len))
                case Begin(index):
                    sink.begin(index)
                case Resume(index, offset):
                    sink.resume(index, offset)
                case End(index, digest):
                    worker.put(Verified(index, sink.finish(index, digest)))
                case WriteBatch(files, first_begun):
                    worker.put(_write_batch(sink, files, first_begun))
                case MakeDirs():
                    sink.make_dirs()
                case FinishDirs():
                    sink.finish_dirs()
                    worker.put(DirsFinished())
    except P2PShareError as exc:
        if not partials.worth_keeping(exc):
            sink.keep_partial = False
        raise
    except OSError as exc:
        raise describe(exc, "output") from None
    except Exception as exc:  # a bug: still end the transfer cleanly
        logger.exception("writer failed")
        # Our own fault, not the sender's: the root error (exit 1, "a bug"), so that the
        # partial data stays to resume from (worth_keeping drops it after an IntegrityError).
        raise P2PShareError(f"internal error while writing: {exc}") from None
    finally:
        sink.close()


def _write_batch(
    sink: Sink, files: tuple[tuple[int, bytes, str], ...], first_begun: bool
) -> BatchVerified:
    verified = []
    nbytes = 0
    for n, (index, payload, digest) in enumerate(files):
        nbytes += len(payload)
        if n or not first_begun:
            whole = sink.write_whole(index, payload, digest)
            if whole is not None:
                verified.append((index, whole))
                continue
            sink.begin(index)
        if payload:
            sink.write(payload)
        verified.append((index, sink.finish(index, digest)))
    return BatchVerified(nbytes, tuple(verified))
