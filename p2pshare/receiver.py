"""The receiving side of an open data channel: check the offer, ask, write what arrives, and
return once everything is verified and in place.

:class:`p2pshare.transfer.ReceiverProtocol` enforces the protocol and decides what to answer;
:func:`p2pshare.layout.plan` decides where everything goes; the writing happens in the worker
thread of :func:`p2pshare.sinks.write_worker`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from p2pshare import codec, digests, sinks, transfer, transfer_events
from p2pshare import messages as m
from p2pshare.config import Settings, Tuning
from p2pshare.errors import DeclinedError
from p2pshare.events import (
    Confirm,
    EventSink,
    OfferSummary,
    Progress,
    ResolveExisting,
    TransferResult,
)
from p2pshare.files import PathParts, printable
from p2pshare.fs import Writeback
from p2pshare.layout import Layout, check_free_space, existing_files, free_name, plan
from p2pshare.partials import worth_keeping
from p2pshare.sinks import Sink, StreamSink
from p2pshare.tree import Tree
from p2pshare.wire import GOODBYE_WAIT_S, Wire
from p2pshare.worker import Worker

if TYPE_CHECKING:  # a Protocol, for type checking only: nothing to load at run time
    from p2pshare.channel import Channel

logger = logging.getLogger(__name__)

WRITER_JOIN_S = 10.0


class Receiver:
    """Receives one offer over ``link``; :meth:`run` once. ``confirm`` is asked before anything
    is written (None: accept)."""

    def __init__(
        self,
        link: Channel,
        settings: Settings,
        on_event: EventSink,
        confirm: Confirm | None,
        resolve_existing: ResolveExisting | None = None,
    ) -> None:
        self.link = link
        self.settings = settings
        self.on_event = on_event
        self.confirm = confirm
        self.resolve_existing = resolve_existing
        self.proto = transfer.ReceiverProtocol(
            settings.max_offer_entries, settings.max_offer_bytes, check_names=True
        )
        self.offers: asyncio.Future[m.Offer] = asyncio.get_running_loop().create_future()
        self.wire = Wire(link, settings, self._handle)
        self.writer: Worker[sinks.WriteJob, sinks.WriteReport] | None = None
        self.sink: Sink | None = None
        self.begun = -1
        """The entry the writer was last told to begin."""
        self.written = 0
        """Bytes that reached the sink this time."""
        self.resumed = 0
        """Bytes already on disk that the sender confirmed."""
        self.total: int | None = None
        self.digests = transfer_events.Digests()

    async def run(self) -> TransferResult:
        try:
            return await self.wire.run(self._main())
        except BaseException as exc:
            self._judge(exc)
            raise
        finally:
            if self.writer is not None:
                self.writer.stop()
                await asyncio.to_thread(self.writer.join, WRITER_JOIN_S)

    def _progress(self) -> None:
        self.on_event(Progress(self.written + self.resumed, self.total))

    def _judge(self, error: BaseException) -> None:
        """Partial data stays only if ``error`` leaves the sender unsuspected; decided
        before the writer is stopped, since it closes the sink then."""
        if self.sink is not None and not worth_keeping(error):
            self.sink.keep_partial = False

    def _handle(self, frame: bytes) -> None:
        """A frame from the sender; data goes to the writer thread, in order."""
        try:
            events = self.proto.receive(frame)
        except BaseException as exc:
            self._judge(exc)
            raise
        for event in events:
            if isinstance(event, transfer_events.PeerAborted):
                raise event.error
            if isinstance(event, transfer_events.OfferReceived):
                self.offers.set_result(event.offer)
                continue
            writer = self.writer
            assert writer is not None
            if isinstance(event, transfer_events.Resumed):
                writer.submit(sinks.Resume(event.index, event.offset))
                self.resumed += event.offset
                self._progress()
            elif isinstance(event, transfer_events.BatchReceived):
                writer.submit(sinks.WriteBatch(event.files, event.files[0][0] == self.begun))
                self.begun = event.files[-1][0]
            elif isinstance(event, transfer_events.ChunkReceived | transfer_events.FileEnded):
                if event.index != self.begun:
                    writer.submit(sinks.Begin(event.index))
                    self.begun = event.index
                if isinstance(event, transfer_events.FileEnded):
                    writer.submit(sinks.End(event.index, event.digest))
                elif event.raw_len is None:
                    writer.submit(sinks.Write(event.payload))
                else:
                    writer.submit(sinks.WriteCompressed(event.payload, event.raw_len))

    def _written(self, nbytes: int) -> None:
        self.written += nbytes
        grant = self.proto.consumed(nbytes)
        if grant is not None:
            self.link.send(grant)
        self._progress()

    def _report(self, report: sinks.WriteReport) -> bool:
        """A report from the writer thread; True once everything is done."""
        assert self.writer is not None
        if isinstance(report, sinks.Written):
            self._written(report.nbytes)
        elif isinstance(report, sinks.Verified | sinks.BatchVerified):
            if isinstance(report, sinks.BatchVerified):
                self._written(report.nbytes)
                verified = report.verified
            else:
                verified = ((report.index, report.digest),)
            for index, digest in verified:
                self.digests.add(digest)
                for frame in self.proto.file_verified(index):
                    self.link.send(frame)
            if self.proto.received_all:
                self.writer.submit(sinks.FinishDirs())
        elif isinstance(report, sinks.DirsFinished):
            self.wire.closing = True
            for frame in self.proto.finish():
                self.link.send(frame)
            return True
        return False

    async def _main(self) -> TransferResult:
        offer = await self.offers
        hash = digests.choose(
            offer.hashes, self.settings.tuning.hash
        )  # once: the sink, the tree and Accept all use it
        prepared, summary = await prepare(offer, self.settings, self.resolve_existing, hash=hash)
        if self.confirm is not None and not await self.confirm(summary):
            raise DeclinedError("declined", peer_message="declined by the receiver")
        sink, prefixes = await _open(prepared, offer, hash, self.settings.tuning)
        self.sink = sink
        self.total = offer.total_bytes
        writer = self.writer = sinks.write_worker(sink)
        writer.start()
        writer.submit(sinks.MakeDirs())
        window = self.settings.window_bytes
        accept = self.proto.accept(window, codec.preferred(), prefixes, hash, batch=True)
        for frame in accept:
            self.link.send(frame)
        logger.info("accepted; compression: %s, hash: %s", self.proto.compression or "none", hash)
        started = time.monotonic()
        self.on_event(Progress(0, self.total))
        if self.proto.received_all:  # directories only
            writer.submit(sinks.FinishDirs())
        try:
            async for report in writer:
                if self._report(report):
                    break
        finally:
            writer.stop()
        seconds = time.monotonic() - started
        # The sender closes once it has read Done; closing first could lose Done (DESIGN.md).
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.link.wait_lost(), GOODBYE_WAIT_S)
        text = None
        if summary.is_text and isinstance(sink, StreamSink):
            text = bytes(sink.buffer).decode("utf-8", errors="replace")
        return TransferResult(
            self.written + self.resumed,
            seconds,
            summary.files,
            self.digests.only,
            summary.destination,
            self.written,
            text,
            hash,
        )


async def _open(
    prepared: StreamSink | Layout, offer: m.Offer, hash: str, tuning: Tuning
) -> tuple[Sink, list[m.Prefix]]:
    """The sink to write to, and the prefixes already on disk (hashed with ``hash``) to
    offer the sender."""
    if not isinstance(prepared, Layout):
        return prepared, []
    writeback = Writeback.choose(tuning)
    logger.debug("early writeback %s", "on" if writeback.start else "off")
    logger.debug("drop-behind %s", "on" if writeback.drop_behind else "off")
    tree = await asyncio.to_thread(Tree, prepared, offer, hash, writeback)
    prefixes: list[m.Prefix] = []
    if prepared.found:
        try:
            prefixes = await asyncio.to_thread(tree.check_held)
        except BaseException:
            tree.close()
            raise
        logger.info("offering %d prefixes from an earlier attempt", len(prefixes))
    return tree, prefixes


def summarize(offer: m.Offer, parts: Sequence[tuple[str, ...]], where: Path | None) -> OfferSummary:
    """What the user is asked to accept; names made printable. One pass over the paths,
    nothing kept per entry (a million of them, issue 31)."""
    files = offer.files
    tops: dict[str, None] = {}
    if len(parts) == 1:  # perhaps renamed (--output FILE): its parts say how
        tops[printable(parts[0][0]) + ("/" if len(parts[0]) > 1 or files.dirs else "")] = None
    else:
        seen: set[tuple[str, bool]] = set()
        for index in range(len(files)):
            top, sep, _ = files.path(index).partition("/")
            key = (top, bool(sep) or files.kind(index) == "dir")
            if key not in seen:
                seen.add(key)
                tops.setdefault(printable(top) + ("/" if key[1] else ""))
    return OfferSummary(
        files=len(files) - files.dirs,
        dirs=files.dirs,
        total_bytes=offer.total_bytes,
        names=tuple(list(tops)[:10]),
        destination=where,
        is_text=files.kind(0) == "text",
    )


async def prepare(
    offer: m.Offer,
    settings: Settings,
    resolve_existing: ResolveExisting | None = None,
    *,
    hash: str,
) -> tuple[StreamSink | Layout, OfferSummary]:
    """Check the offer against our rules and the disk, before asking anyone or writing.

    Returns where the data goes: a stream sink (text, stdout) or the layout of the tree to
    create once the user accepted. Files that already exist are refused unless
    ``settings.overwrite``, or unless ``resolve_existing`` (a person at a terminal) says to
    overwrite them or, for a single file, to save it under another name.
    """
    # Every name was checked as it arrived (the protocol's check_names, OfferCheck).
    parts = PathParts(offer.files)
    if offer.files.kind(0) == "text":
        return StreamSink(None, hash), summarize(offer, parts, None)
    if settings.to_stdout:
        if len(offer.files) != 1 or offer.files.dirs:
            raise DeclinedError(
                f"--output - takes a single file; the offer has {len(offer.files)} entries"
            )
        return StreamSink(sys.stdout.buffer, hash), summarize(offer, parts, None)
    if resolve_existing is not None and not settings.overwrite:
        layout = await _plan_asking(offer, parts, settings, resolve_existing)
    else:
        layout = await asyncio.to_thread(
            plan, settings.output, offer, parts, settings.overwrite, settings.resume
        )
    if offer.total_bytes is not None:
        needed = offer.total_bytes - layout.found_bytes
        await asyncio.to_thread(check_free_space, layout.space_needed_in(), needed)
    where = layout.destination(len(offer.files))
    summary = await asyncio.to_thread(summarize, offer, layout.parts, where)
    return layout, dataclasses.replace(summary, found_bytes=layout.found_bytes)


async def _plan_asking(
    offer: m.Offer,
    parts: Sequence[tuple[str, ...]],
    settings: Settings,
    resolve_existing: ResolveExisting,
) -> Layout:
    """:func:`plan` refuses existing files; so plan with overwrite, find what would really
    be replaced, and ask about it (without existing files: plan as usual)."""
    layout = await asyncio.to_thread(plan, settings.output, offer, parts, True, settings.resume)
    existing = await asyncio.to_thread(existing_files, layout, offer)
    if not existing:
        return await asyncio.to_thread(plan, settings.output, offer, parts, False, settings.resume)
    other = (
        await asyncio.to_thread(free_name, existing[0])
        if len(offer.files) == 1 and offer.files[0].carries_data
        else None
    )
    where = layout.destination(len(offer.files))
    summary = await asyncio.to_thread(summarize, offer, layout.parts, where)
    found = dataclasses.replace(summary, found_bytes=layout.found_bytes)
    choice = await resolve_existing(existing, other, found)
    if choice == "overwrite":
        return layout
    if choice == "rename" and other is not None:
        return await asyncio.to_thread(plan, other, offer, parts, False, settings.resume)
    names = ", ".join(printable(p.name) for p in existing[:3])
    raise DeclinedError(f"declined: {names} already exist{'s' if len(existing) == 1 else ''}")
