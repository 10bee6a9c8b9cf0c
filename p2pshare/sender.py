"""The sending side of an open data channel: offer the sources, send their data within the
receiver's credit, and return once the receiver confirmed everything.

:class:`p2pshare.transfer.SenderProtocol` decides what goes on the wire; this class feeds it the
peer's frames and the read-ahead worker's pieces (:func:`p2pshare.sources.read_ahead`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

from p2pshare import codec, digests, transfer, transfer_events
from p2pshare import messages as m
from p2pshare.config import Settings
from p2pshare.errors import DeclinedError, PeerLostError
from p2pshare.events import EventSink, Progress, TransferResult
from p2pshare.sources import Batch, Reader, ResumeAt, Source, Sources, as_sources, read_ahead
from p2pshare.wire import Wire

if TYPE_CHECKING:  # a Protocol, for type checking only: nothing to load at run time
    from p2pshare.channel import Channel

logger = logging.getLogger(__name__)


class Sender:
    """Sends ``sources`` over ``link``; :meth:`run` once."""

    def __init__(
        self,
        link: Channel,
        sources: Sources | Sequence[Source],
        settings: Settings,
        on_event: EventSink,
        words_confirmed: Callable[[], Awaitable[bool]] | None = None,
    ) -> None:
        self.link = link
        self.words_confirmed = words_confirmed
        """``--verify``: awaited before the offer leaves (the keepalives run meanwhile)."""
        self.on_event = on_event
        sources = as_sources(sources)
        self.tuning = settings.tuning
        hashes = digests.supported(self.tuning.hash)
        self.offer = m.Offer(sources.entries, compression=codec.supported(), hashes=hashes)
        self.proto = transfer.SenderProtocol(self.offer)
        self.data_sources = sources.carrying_data()
        self.reader = Reader(self.data_sources, link.max_message_bytes - m.DATA_END_OVERHEAD)
        self.wire = Wire(link, settings, self._handle)
        self.accepted = False
        self.finished = False
        self.resumed = 0
        """Bytes the receiver already had (checked here, not sent again)."""
        self.sent = 0
        """Bytes handed to the channel so far (before compression); counted also when the
        run fails, for a transfer that reconnects (reconnect.py)."""
        self.digests = transfer_events.Digests()

    async def run(self) -> TransferResult:
        """Send everything; returns once the receiver verified it all (its Done)."""
        return await self.wire.run(self._main())

    def _handle(self, frame: bytes) -> None:
        for event in self.proto.receive(frame):
            if isinstance(event, transfer_events.PeerAborted):
                raise event.error
            if isinstance(event, transfer_events.Accepted):
                self.accepted = True
            elif isinstance(event, transfer_events.Finished):
                self.finished = True

    def _progress(self) -> None:
        self.on_event(Progress(self.reader.read_bytes + self.resumed, self.offer.total_bytes))

    async def _main(self) -> TransferResult:
        link, proto = self.link, self.proto
        if self.words_confirmed is not None and not await self.words_confirmed():
            raise DeclinedError("the security words were not confirmed: nothing was sent")
        for frame in proto.start():
            link.send(frame)
            await link.drain()
        await self.wire.until(lambda: self.accepted)
        started = time.monotonic()
        self.on_event(Progress(0, self.offer.total_bytes))
        pieces = read_ahead(
            self.reader,
            proto.held_prefixes,
            compress=proto.compression == "zstd",
            group_bytes=proto.window // 2,  # credit comes back in quarter windows
            hash=proto.hash,
            when_ahead=self.tuning.compress_when_ahead,
            grouping=self.tuning.compress_groups,
            batch_bytes=link.max_message_bytes if proto.batch else 0,
        )
        # A receiver that keeps answering pings but grants no credit for this long is stuck
        # (or stalling on purpose): the ping deadline alone would let the transfer hang
        # forever. A real receiver returns credit every quarter window written.
        stall_s = self.tuning.credit_stall_s
        try:
            async for piece in pieces:
                if isinstance(piece, ResumeAt):
                    link.send(proto.resume(piece.index, piece.offset))
                    self.resumed += piece.offset
                    self._progress()
                    continue
                try:
                    async with asyncio.timeout(stall_s):
                        await self.wire.until(functools.partial(proto.can_send, piece.size))
                except TimeoutError:
                    stalled = PeerLostError(
                        f"the other side granted no credit for {stall_s:g} s while "
                        "answering pings: it is stuck, or stalling on purpose"
                    )
                    stalled.path_died = False  # the path works: a reconnect cannot help
                    raise stalled from None
                if isinstance(piece, Batch):
                    link.send(proto.data_batch(list(piece.files)))
                    for _, digest in piece.files:
                        self.digests.add(digest)
                else:
                    frames = proto.chunk(piece.payload, raw_len=piece.raw_len, digest=piece.digest)
                    for frame in frames:
                        link.send(frame)
                    if piece.digest is not None:
                        self.digests.add(piece.digest)
                self.sent += piece.size
                await link.drain()
                self._progress()
        finally:
            pieces.stop()
        await self.wire.until(lambda: self.finished)
        self.wire.closing = True
        if self.resumed:
            logger.info("resumed: %d bytes checked, not sent again", self.resumed)
        sources = self.data_sources
        return TransferResult(
            self.reader.read_bytes + self.resumed,
            time.monotonic() - started,
            len(sources),
            self.digests.only,
            sources[0].path if len(sources) == 1 else None,
            self.reader.read_bytes,
            hash=proto.hash,
        )
